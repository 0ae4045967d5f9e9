"""Do sub-threshold map peaks, passed to the spatial stage as *absorber* objects (they take their share of the
masks but are not reported), keep a missed neighbour's energy out of the found objects?

    python experiments/2026-12-07-absorbers/absorb.py [--scenes 20] [--low 0.02 0.03 0.05] [--checkpoint C]

Tuning scenes of experiments/2026-12-07-finder-threshold (val split, seeds 7500 / 7501). Per scene the map is
computed once; the reported objects are the shipped tracks (the export's threshold); the absorbers are the
tracks of a lower threshold, each cleared in the frames where a reported object is active within 25° of it.
Only the reported objects are scored (benchmarks/trajectories.py's score_images), so an absorber can only help
by what it takes out of the reported images.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "experiments" / "2026-12-07-finder-threshold"))

from trajectories import score_images  # noqa: E402
from tune import SETS, scenes_of  # noqa: E402


def absorbers(main_act, main_doa, low_act, low_doa, sep_deg: float = 25.0):
    """Low-threshold tracks (J2, T'), (J2, T', 3) minus the frames a reported object (J, T') covers within
    sep_deg -> (A, T') bool, (A, T', 3): the absorbers (tracks left with no active frame dropped)."""
    cos = np.cos(np.radians(sep_deg))
    act = low_act.copy()
    for j in range(len(main_act)):
        near = (low_doa * main_doa[j][None]).sum(-1) >= cos  # (J2, T')
        act &= ~(near & main_act[j][None])
    keep = act.any(axis=1)
    return act[keep], low_doa[keep]


def main() -> int:
    from deepasa.model.finder import Finder, find_objects, finder_scores
    from deepasa.separation import separate

    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--low", type=float, nargs="+", default=[0.02, 0.03, 0.05])
    ap.add_argument("--checkpoint", default="checkpoints/finder.pt")
    args = ap.parse_args()
    finder = Finder.from_pretrained(args.checkpoint)
    for name in SETS:
        scenes = scenes_of(name, args.scenes)
        gains = {"none": []} | {lo: [] for lo in args.low}
        n_abs = {lo: 0 for lo in args.low}
        for scene in scenes:
            m = finder_scores(scene.mixture, finder)  # (T', G)
            main_tr = find_objects(None, finder, scores=m)
            j = len(main_tr.activity)
            out = separate(scene.mixture, main_tr.activity, main_tr.doa)
            gains["none"] += score_images(scene, out.image)
            for lo in args.low:
                low_tr = find_objects(None, finder, scores=m, threshold=lo, max_objects=None)
                a_act, a_doa = absorbers(main_tr.activity, main_tr.doa, low_tr.activity, low_tr.doa)
                n_abs[lo] += len(a_act)
                act = np.concatenate([main_tr.activity, a_act]) if len(a_act) else main_tr.activity
                doa = np.concatenate([main_tr.doa, a_doa]) if len(a_act) else main_tr.doa
                out = separate(scene.mixture, act, doa)
                gains[lo] += score_images(scene, out.image[:j])
        for key, g in gains.items():
            print(json.dumps({"set": name, "low_threshold": key, "si_sdri_db": round(float(np.mean(g)), 2),
                              "absorbers_per_scene": None if key == "none" else n_abs[key] / len(scenes),
                              "sources": len(g)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
