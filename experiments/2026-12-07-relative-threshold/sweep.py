"""A second peak of a frame must also reach a share of the frame's strongest peak: does that cut the 1-2-source
scenes' spurious frames (reflections, a loud source's side lobes) without losing the 2-5-source scenes' weak
sources?

    python experiments/2026-12-07-relative-threshold/sweep.py [--scenes 20] [--relative 0 0.2 0.3 0.4 0.5]
        [--thresholds 0.1] [--checkpoint checkpoints/finder.pt]

Tuning scenes of experiments/2026-12-07-finder-threshold (val split, seeds 7500 / 7501). Per scene the map is
computed once (the export's symmetries); per (threshold, relative) the peaks are picked as the shipped finder
picks them, then every peak below ``relative`` x the frame's strongest is dropped, then the shipped tracker.
Prints a JSON row per (set, threshold, relative): the trajectory metrics and the spatial stage's image SI-SDRi.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "experiments" / "2026-12-07-finder-threshold"))

from tune import SETS, print_row, scenes_of, set_row  # noqa: E402


def relative_filter(detections: list, relative: float) -> list:
    """Per frame, keep the peaks (unit vector, score) whose score ≥ relative x the frame's strongest."""
    return [[(u, s) for u, s in frame if s >= relative * frame[0][1]] if frame else [] for frame in detections]


def main() -> int:
    from deepasa.model.finder import Finder, finder_scores
    from deepasa.tracking.peaks import PeakPicker
    from deepasa.tracking.tracker import track

    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--relative", type=float, nargs="+", default=[0.0, 0.2, 0.3, 0.4, 0.5])
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.1])
    ap.add_argument("--checkpoint", default="checkpoints/finder.pt")
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    args = ap.parse_args()
    finder = Finder.from_pretrained(args.checkpoint)
    picker = PeakPicker(finder.grid.double().numpy())
    for name in args.sets:
        scenes = scenes_of(name, args.scenes)
        maps = [finder_scores(s.mixture, finder) for s in scenes]  # (T', G) each
        for thr in args.thresholds:
            peaks = [picker(m, threshold=thr) for m in maps]  # sorted strongest first
            for rel in args.relative:
                tracks = [track(relative_filter(det, rel), **(finder.meta.get("track") or {})) for det in peaks]
                print_row({"set": name, "threshold": thr, "relative": rel, "step": finder.meta.get("step"),
                           **set_row(scenes, [(t.activity, t.doa) for t in tracks])})
    return 0


if __name__ == "__main__":
    sys.exit(main())
