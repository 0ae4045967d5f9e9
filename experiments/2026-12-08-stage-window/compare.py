"""The spatial stage's covariance window and β, driven by the shipped finder's tracks and by the true ones.

    python experiments/2026-12-08-stage-window/compare.py --scenes 40 --sets default 1-2 dense \
        --variants cov_window_s=0.5,beta=40 cov_window_s=1.0,beta=80 [--out results.json]

The finder runs once per scene; every variant separates the same tracks (benchmarks/trajectories.py's scenes,
``downstream`` and scoring), so the rows differ only by the stage's parameters.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import trajectories as tb  # noqa: E402


def parse(text: str) -> dict:
    """'key=value,...' -> SpatialConfig overrides (True/False or floats)."""
    cast = lambda v: {"True": True, "False": False}.get(v, None) if v in ("True", "False") else float(v)  # noqa: E731
    return {k: cast(v) for k, v in (item.split("=") for item in text.split(","))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=40)
    ap.add_argument("--sets", nargs="+", default=["default", "1-2", "dense"])
    ap.add_argument("--variants", nargs="+", required=True)
    ap.add_argument("--finder", default="finder:checkpoints/finder.pt")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    find = tb.make_finder(args.finder)
    rows = []
    for set_name in args.sets:
        scenes = tb.scene_set(set_name, args.scenes)
        tracks = [find(s.mixture)[:2] for s in scenes]
        for text in args.variants:
            opts = parse(text)
            for source, per_scene in (("finder", tracks), ("true", [(s.activity, s.doa) for s in scenes])):
                gains = []
                for s, (act, doa) in zip(scenes, per_scene):
                    gains += tb.downstream(s, act, doa, **opts)[0]
                row = {"set": set_name, "variant": text, "trajectories": source, "n_sources": len(gains),
                       "si_sdri_db": round(float(np.mean(gains)), 3), "median_db": round(float(np.median(gains)), 3)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
