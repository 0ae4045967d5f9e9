"""Does widening the finder's activity help the separation it drives? Missed frames cost the spatial stage more
than false ones (experiments/2026-12-07-finder-threshold), and the finder misses the quiet parts of events.

    python experiments/2026-12-07-activity-dilation/dilate.py CKPT [--scenes 20] [--dilate 0 1 2 3] [--fill 1 3 5]

For each scene of the tuning sets (val split, seeds 7500 / 7501; experiments/2026-12-07-finder-threshold) the map
is computed once; per tracker gap-fill ``fill`` (``track(fill_gap_frames=...)``) and per dilation ``d`` (each
object's activity widened by d label frames on both sides, its direction held from the nearest active frame),
the trajectory metrics and the downstream image SI-SDRi of the spatial stage. One JSON row per setting.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "experiments" / "2026-12-07-finder-threshold"))

from tune import SETS, print_row, scenes_of, set_row  # noqa: E402


def dilate(activity: np.ndarray, d: int) -> np.ndarray:
    """activity (J, T') bool -> (J, T') bool, each run widened by d frames on both sides."""
    if d <= 0:
        return activity
    out = activity.copy()
    for k in range(1, d + 1):
        out[:, k:] |= activity[:, :-k]
        out[:, :-k] |= activity[:, k:]
    return out


def main() -> int:
    from deepasa.model.finder import Finder, find_objects, finder_scores

    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--dilate", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--fill", type=int, nargs="+", default=[1])
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    args = ap.parse_args()
    finder = Finder.from_pretrained(args.checkpoint)
    for name in args.sets:
        t0 = time.time()
        scenes = scenes_of(name, args.scenes)
        maps = [finder_scores(s.mixture, finder) for s in scenes]  # (T', G) each
        for fill in args.fill:
            tracks = [find_objects(None, finder, scores=m, fill_gap_frames=fill) for m in maps]
            for d in args.dilate:
                # (J, T') dilated; tr.doa already holds directions in inactive frames
                trajectories = [(dilate(tr.activity, d), tr.doa) for tr in tracks]
                print_row({"set": name, "fill": fill, "dilate": d, **set_row(scenes, trajectories),
                           "scenes": len(scenes)})
        print(f"# {name}: {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
