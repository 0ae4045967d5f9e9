"""With the finder's trajectories a missed source's energy goes to the found objects active with it (the masks
share every bin among the active objects). Does a remainder class (``SpatialConfig.diffuse_score``: a constant
score in the masks' soft-max, off by default because with *true* trajectories it takes reverb from the targets)
catch it?

    python experiments/2026-12-07-downstream-gap/remainder.py [--scenes 20] [--scores None 0.3 0.5 0.7]

Tuning scenes as gap.py; per set and score: the mean image SI-SDRi with the shipped finder's trajectories and with
the true ones.
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


def main() -> int:
    from deepasa.model.finder import Finder, find_objects

    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--scores", nargs="+", default=["None", "0.3", "0.5", "0.7"])
    args = ap.parse_args()
    finder = Finder.from_pretrained("checkpoints/finder.pt")
    for name in SETS:
        scenes = scenes_of(name, args.scenes)
        tracks = [find_objects(s.mixture, finder) for s in scenes]
        for text in args.scores:
            score = None if text == "None" else float(text)
            found, true = [], []
            for scene, tr in zip(scenes, tracks):
                found += downstream(scene, tr.activity, tr.doa, diffuse_score=score)[0]
                true += downstream(scene, scene.activity, scene.doa, diffuse_score=score)[0]
            print(json.dumps({"set": name, "diffuse_score": score, "finder_db": round(float(np.mean(found)), 2),
                              "true_db": round(float(np.mean(true)), 2), "sources": len(found)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
