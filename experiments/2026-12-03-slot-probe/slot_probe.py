"""Which slots carry the objects: a probe of the network's slots on 2-source scenes.

    python experiments/2026-12-03-slot-probe/slot_probe.py --model checkpoints/shipped_latest.pt \
        --data /work/data/sim_1-2 --split test

The question (issue 14, detection of the second source): when the shipped model finds one source of two, is a
second slot weakly on (a decision-rule matter) or does one slot carry a mixture-like output while the others are
dead (a training matter)? For the first ``--scenes`` 2-source scenes of a ``deepasa simulate`` split (both
sources with energy in the first ``--seconds``), the network alone (no windowing, no stitching) runs on the first
``--seconds`` of the mixture, and for every slot j and source k it reports SI-SDR(image estimate of slot j at mic
0, image of source k at mic 0); per source the best slot and its SI-SDR improvement over the mixture's; per slot
the mean sigmoid(on/off) and the mean ‖doa‖ over label frames. Results:
``experiments/2026-12-03-slot-probe/results/slot_probe.json`` (per scene and the summary: how often both sources' best slot is the same one, mean SI-SDRi per source, and
each slot's mean on/off probability and ‖doa‖ over the scenes).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from deepasa.data.scenes import SceneDataset
from deepasa.errors import DeepASAError, run_script
from deepasa.metrics.separation import si_sdr
from deepasa.model.loading import load_model

HERE = Path(__file__).resolve().parent                    # experiments/2026-12-03-slot-probe
REPO = HERE.parents[1]


def probe(model, ds: SceneDataset, n_scenes: int, seconds: float) -> dict:
    """Slot statistics on the first n_scenes usable 2-source scenes of ds -> {"scenes": [...], "summary": {...}}."""
    n = int(seconds * ds.sample_rate)
    rows = []
    for i in range(len(ds)):
        item = ds[i]
        if int(item["num_sources"]) != 2:
            continue
        image = (item["direct"] + item["reverb"])[:2, 0, :n]  # (2, n): mic 0 of the two sources
        if (image.pow(2).sum(-1) < 1e-6).any():
            continue  # a source silent in the window: nothing to separate
        mixture = item["mixture"][:, :n].unsqueeze(0)  # (1, M, n)
        with torch.no_grad():
            out = model(mixture)
        est = out.image[0, :, 0, :n]  # (J, n): mic 0 of every slot
        n_slots = est.shape[0]
        sdr = si_sdr(est[:, None].expand(-1, 2, -1), image[None].expand(n_slots, -1, -1))  # (J, 2): slot j, source k
        mix = si_sdr(mixture[0, 0].expand(2, -1), image)  # (2,)
        best = sdr.argmax(axis=0)  # (2,)
        rows.append({
            "scene_id": item["scene_id"],
            "best_slot": best.tolist(),
            "si_sdri_db": (sdr.max(axis=0) - mix).round(2).tolist(),
            "mixture_si_sdr_db": mix.round(2).tolist(),
            "onoff_prob": torch.sigmoid(out.onoff[0]).mean(-1).double().numpy().round(3).tolist(),  # (J,)
            "doa_norm": out.doa[0].norm(dim=-1).mean(-1).double().numpy().round(3).tolist(),  # (J,)
        })
        if len(rows) >= n_scenes:
            break
    if not rows:
        raise DeepASAError(f"no 2-source scene with both sources sounding in the first {seconds:g} s in {ds.dir}")
    summary = {
        "scenes": len(rows),
        "same_best_slot_fraction": float(np.mean([r["best_slot"][0] == r["best_slot"][1] for r in rows])),
        "si_sdri_db_mean": np.mean([r["si_sdri_db"] for r in rows], axis=0).round(2).tolist(),
        "onoff_prob_mean_per_slot": np.mean([r["onoff_prob"] for r in rows], axis=0).round(3).tolist(),
        "doa_norm_mean_per_slot": np.mean([r["doa_norm"] for r in rows], axis=0).round(3).tolist(),
    }
    return {"scenes": rows, "summary": summary}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(REPO / "checkpoints" / "shipped_latest.pt"))
    p.add_argument("--data", required=True, help="a deepasa simulate root with 2-source scenes")
    p.add_argument("--split", default="test")
    p.add_argument("--scenes", type=int, default=25)
    p.add_argument("--seconds", type=float, default=2.0, help="window from the start (the model's clip length)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(HERE / "results" / "slot_probe.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model).eval()
    result = probe(model, SceneDataset(args.data, args.split), args.scenes, args.seconds)
    result["command"] = {"model": args.model, "data": args.data, "split": args.split, "seconds": args.seconds}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"]))
    return 0


if __name__ == "__main__":
    run_script(main)
