"""One FOA intensity-finder setting per argument (JSON of IntensityTracker options) on the 15 tuning scenes:
trajectory metrics and the downstream image SI-SDRi of the FOA spatial stage. README.md has the table.

    python experiments/2026-12-07-foa-pipeline/sweep.py '{"threshold":0.02}' '{"threshold":0.02,"kappa":6}'
"""

import json
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
from deepasa.tracking.tracker import track  # noqa: E402


def main() -> None:
    scenes = [simulate_scene(seed=7500, index=i, split="val", config=SceneConfig(), fmt="foa") for i in range(15)]
    for spec in sys.argv[1:]:
        tracker = IntensityTracker(**json.loads(spec))
        scores, gains = [], []
        for s in scenes:
            t = track(tracker.detections(tracker.score_map(s.mixture)), max_objects=None, **tracker.track_kwargs)
            scores.append(score_trajectories(s.activity, s.doa, t.activity, t.doa))
            gains += score_images(s, separate(s.mixture, t.activity, t.doa, fmt="foa").image)
        p = pool(scores)
        print(spec, {k: round(p[k], 3) for k in ("recall", "precision", "doa_error_median_deg", "detection",
                                                  "false_alarms_per_clip")}, f"{np.mean(gains):+.2f} dB", flush=True)


if __name__ == "__main__":
    main()
