"""Where a model's frame insertions come from: duplicate slots, or extra objects.

For every frame of every scene of a simulated set, the slots active under the model's own rule
(``config.detect_onoff``, ``config.detect_doa_norm``) are compared with the number of true active sources.
A slot is a *duplicate* when an earlier active slot of the same frame has the same clip class and a DoA within
20°. Printed as one JSON line: frames, true active source-frames (``ref``), active slot-frames (``act``),
``excess`` = Σ max(0, active − true), the same after a greedy merge of duplicates (``excess_if_merged``), frames
with a duplicate, and active slot-frames in frames without any source (``act_silent_frames``).

    python experiments/2026-12-03-dup-slots/dup_slots.py checkpoints/default.pt /work/data/sel_def [--split val]
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from deepasa.data.scenes import SceneDataset
from deepasa.errors import run_script
from deepasa.metrics.seld_frame import activity_decisions, merge_duplicates
from deepasa.model.loading import load_model

MERGE_DEG = 20.0


def count(model, ds: SceneDataset) -> dict[str, int]:
    """Frame counts over ``ds`` (see the module docstring); each item's mixture is (M, N), activity (J, T)."""
    cfg = model.config
    tot = dict.fromkeys(("frames", "ref", "act", "excess", "excess_if_merged", "dup_frames", "excess_frames",
                         "excess_frames_with_dup", "act_silent_frames"), 0)
    for i in range(len(ds)):
        item = ds[i]
        with torch.no_grad():
            out = model(item["mixture"].unsqueeze(0))  # one clip: (1, M, N)
        act = activity_decisions(out.onoff[0], out.doa[0], cfg.detect_doa_norm, cfg.detect_onoff)  # (J, T')
        t_max = min(act.shape[1], item["activity"].shape[1])
        act, ref = act[:, :t_max], item["activity"].numpy()[:, :t_max] > 0.5  # (J, T), (J_true, T)
        cls = out.cls_logits[0].argmax(-1).numpy()  # (J,)
        d = out.doa[0, :, :t_max].numpy()  # (J, T, 3)
        # the rule's merge with one score for all: each frame's slots in index order, as "an earlier active slot"
        kept = merge_duplicates(act, cls, d, np.zeros(act.shape), MERGE_DEG)  # (J, T)
        for t in range(t_max):
            active, n_ref = np.flatnonzero(act[:, t]), int(ref[:, t].sum())
            n_kept = int(kept[:, t].sum())
            dup = n_kept < len(active)  # some active slot of this frame was a duplicate
            excess = max(0, len(active) - n_ref)
            tot["frames"] += 1
            tot["ref"] += n_ref
            tot["act"] += len(active)
            tot["act_silent_frames"] += len(active) if n_ref == 0 else 0
            tot["dup_frames"] += int(dup)
            tot["excess"] += excess
            tot["excess_if_merged"] += max(0, n_kept - n_ref)
            tot["excess_frames"] += int(excess > 0)
            tot["excess_frames_with_dup"] += int(excess > 0 and dup)
    return tot


def model_set_main(doc: str, tally) -> int:
    """``MODEL DATA [--split val]`` on the command line: print ``tally(model, scenes)`` as one JSON line.

    Shared by this probe, ``experiments/2026-12-04-dup-keep/dup_keep.py`` and
    ``experiments/2026-12-06-split-objects/split_objects.py`` (both put this folder on ``sys.path``); ``tally`` maps a loaded model and a :class:`SceneDataset`
    to a dict of counts.
    """
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--split", default="val")
    args = p.parse_args()
    model = load_model(args.model).eval()
    print(json.dumps({"model": args.model, "data": args.data, **tally(model, SceneDataset(args.data, args.split))}))
    return 0


def main() -> int:
    return model_set_main(__doc__, count)


if __name__ == "__main__":
    run_script(main)
