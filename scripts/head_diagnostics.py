"""What the SELD heads of a model output on labelled scenes, before any decision rule.

    python scripts/head_diagnostics.py checkpoints/default.pt --data /work/data/sim --split val --scenes 12

Slots are aligned with the sources by the training loss's permutation (PIT on the reference-channel image,
docs/spec.md §4). Prints, over the aligned slots: the clip-class accuracy of the slots of true sources; the mean
on/off probability and the share above 0.5 on active and on silent frames; the mean DoA-vector norm on
active and silent frames (the decision rule needs > 0.5); the median and mean angle between the DoA vector
and the true direction on active frames (90° is chance). The model card quotes it for the shipped model.
"""

from __future__ import annotations

import argparse

import numpy as np

from deepasa.errors import DeepASAError, run_script


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True, help="dataset root (deepasa simulate layout)")
    p.add_argument("--split", default="val")
    p.add_argument("--scenes", type=int, default=12, help="the first N scenes of the split")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    import torch

    from deepasa.losses import LossWeights, apply_permutation, multitask_loss
    from deepasa.metrics.seld_frame import angular_error_deg
    from deepasa.train.data import open_dataset
    from deepasa.train.module import load_model

    torch.set_num_threads(args.threads)
    model = load_model(args.checkpoint).eval()
    cfg = model.config
    try:
        ds = open_dataset("scenes", args.data, args.split, n_slots=cfg.n_slots, sample_rate=cfg.sample_rate,
                          clip_seconds=cfg.clip_seconds)
    except OSError as exc:
        raise DeepASAError(f"cannot read {args.data}/{args.split}: {exc}") from None
    cls_ok, on_act, on_sil, norm_act, norm_sil, angle = [], [], [], [], [], []
    for i in range(min(args.scenes, len(ds))):
        batch = {k: v.unsqueeze(0) for k, v in ds[i].items() if torch.is_tensor(v)}
        with torch.inference_mode():
            out = model(batch["mixture"])                                          # (1, M, N) in
            perm = multitask_loss(out, batch, LossWeights.asa2(), ref_channel=cfg.ref_mic).perm   # (1, J)
        cls = apply_permutation(out.cls_logits, perm)[0]                           # (J, C)
        prob = torch.sigmoid(apply_permutation(out.onoff, perm)[0])                # (J, T')
        doa = apply_permutation(out.doa, perm)[0]                                  # (J, T', 3)
        act = batch["activity"][0] > 0.5                                           # (J, T')
        present = (batch["cls"][0] >= 0) & act.any(-1)                             # (J,)
        cls_ok += (cls.argmax(-1) == batch["cls"][0])[present].tolist()
        on_act += prob[act].tolist()
        on_sil += prob[~act].tolist()
        norm = doa.norm(dim=-1)                                                    # (J, T')
        norm_act += norm[act].tolist()
        norm_sil += norm[~act].tolist()
        angle += angular_error_deg(doa, batch["doa"][0])[act.numpy()].tolist()
    n = min(args.scenes, len(ds))
    print(f"{args.checkpoint} on {n} scenes of {args.data}/{args.split}, {len(cls_ok)} sources")
    print(f"clip class right for {np.mean(cls_ok):.1%} of the sources' slots (chance {1 / cfg.n_classes:.0%})")
    fires_act, fires_sil = np.mean(np.array(on_act) > 0.5), np.mean(np.array(on_sil) > 0.5)
    print(f"on/off probability: active frames mean {np.mean(on_act):.3f}, > 0.5 on {fires_act:.1%}; "
          f"silent frames mean {np.mean(on_sil):.3f}, > 0.5 on {fires_sil:.1%}")
    print(f"DoA-vector norm: active frames {np.mean(norm_act):.3f}, silent frames {np.mean(norm_sil):.3f} "
          f"(the decision rule needs > 0.5)")
    print(f"DoA direction error on active frames: median {np.median(angle):.1f}°, mean {np.mean(angle):.1f}° "
          "(chance 90°)")
    return 0


if __name__ == "__main__":
    run_script(main)
