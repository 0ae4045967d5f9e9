"""Sweep the finder's peak threshold (and the tracker's options) on tuning scenes; score each setting by the
trajectory metrics *and* the downstream separation (the spatial stage driven by its trajectories).

    python experiments/2026-12-07-finder-threshold/tune.py CKPT [--scenes 20] [--thresholds 0.1 0.15 0.2 0.25 0.3]

Tuning scenes: the sound bank's *val* split, seeds 7500 (2-5 sources) and 7501 (1-2 sources): neither the
benchmark's sets (test split, seeds 7400-7402) nor the training run's validation scenes (seeds 7200/7201).
The map of each scene is computed once; every threshold reuses it. Prints one JSON row per (set, threshold).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from trajectories import downstream  # noqa: E402

SETS = {"2-5": ({}, 7500), "1-2": ({"num_sources": [1, 2], "num_sources_weights": [0.5, 0.5]}, 7501)}


def scenes_of(name: str, n: int) -> list:
    from deepasa.scenes.config import SceneConfig
    from deepasa.scenes.simulator import simulate_scene

    spec, seed = SETS[name]
    cfg = SceneConfig.from_dict({**SceneConfig().to_dict(), **spec})
    return [simulate_scene(seed=seed, index=i, split="val", config=cfg) for i in range(n)]


def set_row(scenes: list, trajectories: list) -> dict:
    """The trajectory metrics (pooled over the set) and the mean downstream image SI-SDRi of one set.

    Args:
        scenes: simulated scenes; trajectories: per scene, (activity (J, T') bool, doa (J, T', 3)).
    """
    from deepasa.metrics.trajectory import pool, score_trajectories

    scores, gains = [], []
    for scene, (act, doa) in zip(scenes, trajectories):
        scores.append(score_trajectories(scene.activity, scene.doa, act, doa))
        gains += downstream(scene, act, doa)[0]
    return {**pool(scores), "downstream_si_sdri_db": float(np.mean(gains))}


def print_row(row: dict) -> None:
    """One JSON line, floats to 3 decimals."""
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)


def main() -> int:
    from deepasa.model.finder import Finder, find_objects, finder_scores

    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.1, 0.15, 0.2, 0.25, 0.3])
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--track", action="append", default=[], metavar="KEY=VALUE",
                    help="a tracker option (deepasa.tracking.tracker.track), e.g. birth_frames=1")
    args = ap.parse_args()
    track_kwargs = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.track)}
    finder = Finder.from_pretrained(args.checkpoint)
    for name in args.sets:
        t0 = time.time()
        scenes = scenes_of(name, args.scenes)
        maps = [finder_scores(s.mixture, finder) for s in scenes]  # (T', G) each
        for thr in args.thresholds:
            tracks = [find_objects(None, finder, threshold=thr, scores=m, **track_kwargs) for m in maps]
            print_row({"set": name, "threshold": thr, "step": finder.meta.get("step"), **track_kwargs,
                       **set_row(scenes, [(t.activity, t.doa) for t in tracks]), "scenes": len(scenes)})
        print(f"# {name}: {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
