"""The same 15 tuning scenes in MIC and FOA: the spatial stage on the true trajectories, and each format's
classical finder (MIC: SRP-PHAT, FOA: the active-intensity map) driving it. README.md has the answer.

    python experiments/2026-12-07-foa-pipeline/foa_vs_mic.py [--scenes 15]
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from trajectories import score_images  # noqa: E402

from deepasa.metrics.trajectory import pool, score_trajectories  # noqa: E402
from deepasa.scenes.config import SceneConfig  # noqa: E402
from deepasa.scenes.simulator import simulate_scene  # noqa: E402
from deepasa.separation import separate  # noqa: E402
from deepasa.tracking.foa import IntensityTracker  # noqa: E402
from deepasa.tracking.srp import SRPTracker  # noqa: E402
from deepasa.tracking.tracker import track  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=15)
    args = ap.parse_args()
    for fmt, tracker in (("foa", IntensityTracker()), ("mic", SRPTracker())):
        scenes = [simulate_scene(seed=7500, index=i, split="val", config=SceneConfig(), fmt=fmt)
                  for i in range(args.scenes)]
        scores, found, true = [], [], []
        for s in scenes:
            t = track(tracker.detections(tracker.score_map(s.mixture)), max_objects=None, **tracker.track_kwargs)
            scores.append(score_trajectories(s.activity, s.doa, t.activity, t.doa))
            found += score_images(s, separate(s.mixture, t.activity, t.doa, fmt=fmt).image)
            true += score_images(s, separate(s.mixture, s.activity, s.doa, fmt=fmt).image)
        p = pool(scores)
        print(fmt, {k: round(p[k], 3) for k in ("recall", "precision", "doa_error_median_deg", "detection",
                                                 "false_alarms_per_clip")},
              f"finder {np.mean(found):+.2f} dB, true trajectories {np.mean(true):+.2f} dB")


if __name__ == "__main__":
    main()
