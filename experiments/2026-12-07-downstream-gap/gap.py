"""Where does the separation lose against true trajectories: sources the finder misses, or the found ones?

    python experiments/2026-12-07-downstream-gap/gap.py [--scenes 20] [--checkpoint checkpoints/finder.pt]

On the tuning scenes of experiments/2026-12-07-finder-threshold (val split, seeds 7500 / 7501), per true source:
its image SI-SDRi with the shipped finder's trajectories and with the true ones, whether the finder found it
(an object within 20° in at least one of its active frames: the benchmark's detection), its frame recall, its
level against the mixture and its active duration. Prints the gap split into missed and found sources, and the
found sources by frame recall.
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

from trajectories import downstream  # noqa: E402
from tune import SETS, scenes_of  # noqa: E402


def per_source_recall(true_act: np.ndarray, true_doa: np.ndarray, act: np.ndarray, doa: np.ndarray) -> np.ndarray:
    """(K,) share of each source's active frames with an active object within 20° (K, T') / (J, T') inputs."""
    k, t = true_act.shape
    out = np.zeros(k)
    for i in range(k):
        frames = np.flatnonzero(true_act[i])
        hit = 0
        for f in frames:
            u = true_doa[i, f] / max(np.linalg.norm(true_doa[i, f]), 1e-9)
            for j in range(act.shape[0]):
                if act[j, f] and float(u @ doa[j, f]) >= np.cos(np.radians(20.0)):
                    hit += 1
                    break
        out[i] = hit / max(len(frames), 1)
    return out


def main() -> int:
    from deepasa.model.finder import Finder, find_objects

    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--checkpoint", default="checkpoints/finder.pt")
    args = ap.parse_args()
    finder = Finder.from_pretrained(args.checkpoint)
    rows = []
    for name in SETS:
        for scene in scenes_of(name, args.scenes):
            tracks = find_objects(scene.mixture, finder)
            found, _ = downstream(scene, tracks.activity, tracks.doa)
            true, _ = downstream(scene, scene.activity, scene.doa)
            recall = per_source_recall(scene.activity, scene.doa, tracks.activity, tracks.doa)
            ref = scene.direct + scene.reverb  # (K, M, N)
            level = 10 * np.log10((ref[:, 0] ** 2).sum(-1) / (scene.mixture[0] ** 2).sum() + 1e-12)  # (K,)
            for i in range(len(found)):
                rows.append({"set": name, "finder_db": found[i], "true_db": true[i], "recall": float(recall[i]),
                             "level_db": float(level[i]), "active_s": float(scene.activity[i].sum() * 0.1)})
    for name in SETS:
        r = [x for x in rows if x["set"] == name]
        missed = [x for x in r if x["recall"] == 0]
        found = [x for x in r if x["recall"] > 0]
        gap = np.mean([x["true_db"] - x["finder_db"] for x in r])
        out = {"set": name, "sources": len(r), "finder_db": np.mean([x["finder_db"] for x in r]),
               "true_db": np.mean([x["true_db"] for x in r]), "gap_db": gap,
               "missed": len(missed), "gap_from_missed_db": sum(x["true_db"] - x["finder_db"] for x in missed) / len(r),
               "gap_from_found_db": sum(x["true_db"] - x["finder_db"] for x in found) / len(r),
               "missed_true_db": np.mean([x["true_db"] for x in missed]) if missed else None,
               "missed_level_db": np.median([x["level_db"] for x in missed]) if missed else None,
               "missed_active_s": np.median([x["active_s"] for x in missed]) if missed else None,
               "found_level_db": np.median([x["level_db"] for x in found]),
               "found_active_s": np.median([x["active_s"] for x in found])}
        for lo, hi in ((0.0, 0.5), (0.5, 0.8), (0.8, 1.01)):
            b = [x for x in found if lo < x["recall"] <= hi] if lo > 0 else [x for x in found if x["recall"] <= hi]
            out[f"found_recall_{lo}-{min(hi, 1.0)}"] = {
                "n": len(b), "finder_db": np.mean([x["finder_db"] for x in b]) if b else None,
                "true_db": np.mean([x["true_db"] for x in b]) if b else None}
        print(json.dumps(out, default=lambda v: round(float(v), 2)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
