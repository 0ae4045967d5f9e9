"""Does each object come out of one slot on every mic? A check of the object premise on 1-source scenes.

    python scripts/slot_agreement.py runs/shipped/checkpoints/last.ckpt --data runs/shipped/curve_scenes/1-static \
        --split val --scenes 8

For every scene with one source, the slot whose image best matches the source (SI-SDR) is found separately on
each mic. A model whose slots are objects picks the same slot on every mic; one trained with the auxiliary
separation terms on their own permutations learned to put the reference mic's image in one slot and other mics'
images in another (docs/notebook/shipped-run-recipe.md, "One assignment per object"). Prints one line per scene and a JSON summary:
the share of scenes with one slot on every mic and the median SI-SDR, on the other mics, of the reference mic's
best slot.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from deepasa.data.scenes import SceneDataset
from deepasa.errors import DeepASAError, run_script
from deepasa.metrics.separation import si_sdr
from deepasa.model.loading import load_model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="a model file or training checkpoint")
    ap.add_argument("--data", required=True, help="`deepasa simulate` output with 1-source scenes")
    ap.add_argument("--split", default="val")
    ap.add_argument("--scenes", type=int, default=8)
    args = ap.parse_args(argv)
    model = load_model(args.checkpoint).eval()
    ds = SceneDataset(args.data, args.split)
    agree, other_mics = [], []
    for i in range(min(args.scenes, len(ds))):
        item = ds[i]
        if int((item["cls"] >= 0).sum()) != 1:
            continue
        with torch.no_grad():
            image = model(item["mixture"][None]).image[0].double().numpy()  # (J, M, N)
        truth = (item["direct"] + item["reverb"])[0].double().numpy()  # (M, N): the one source's image
        score = torch.from_numpy(si_sdr(image, np.broadcast_to(truth, image.shape)))  # (J, M)
        best = score.argmax(0)  # (M,) best slot per mic
        ref = int(best[0])
        agree.append(bool((best == ref).all()))
        other_mics += score[ref, 1:].tolist()
        print(f"scene {i}: best slot per mic {best.tolist()}, SI-SDR of slot {ref} per mic "
              f"{[round(float(v), 1) for v in score[ref]]} dB")
    if not agree:
        raise DeepASAError(f"no 1-source scene among the first {args.scenes} of {args.data}/{args.split}")
    print(json.dumps({"scenes": len(agree), "one_slot_on_every_mic": round(float(np.mean(agree)), 3),
                      "median_other_mic_si_sdr_db": round(float(np.median(other_mics)), 2)}))
    return 0


if __name__ == "__main__":
    run_script(main)
