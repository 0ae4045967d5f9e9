"""Where the shipped finder's wrong object frames sit, and what trimming the ends of its tracks does.

    python experiments/2026-12-08-finder-edges/edges.py --scenes 40 --sets 1-2 default --trim 0 1

A wrong object frame (active, no true source active within 20° in it) is classed by its distance to the
nearest true activity of a source within 20° of the object's direction: ``after+1``/``after+2``/``after+3+``
frames after such a source's offset, ``before-1``/``before-2+`` before its onset, or ``elsewhere`` (no source in
that direction at all). ``--trim n`` removes n frames at the start and the end of every active run of every
object (``-n``: n frames at the end of every run longer than n only) (the stage's gate widens activity by one frame again), and reports the benchmark's recall, precision and
downstream SI-SDRi (benchmarks/trajectories.py's scenes and scoring).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import trajectories as tb  # noqa: E402


def wrong_frame_places(ta, td, ea, ed, max_deg=20.0) -> Counter:
    """Counts of wrong object frames by their place relative to same-direction source activity."""
    t = min(ta.shape[1], ea.shape[1])
    ta, ea = ta[:, :t], ea[:, :t]
    td = td[:, :t] / np.maximum(np.linalg.norm(td[:, :t], axis=-1, keepdims=True), 1e-12)  # (K, T, 3)
    ed = ed[:, :t] / np.maximum(np.linalg.norm(ed[:, :t], axis=-1, keepdims=True), 1e-12)  # (J, T, 3)
    # a source's direction where it is silent: that of its nearest active frame
    out = Counter()
    for j in range(len(ea)):
        for f in np.flatnonzero(ea[j]):
            best = None
            for k in range(len(ta)):
                on = np.flatnonzero(ta[k])
                if not len(on):
                    continue
                near = on[np.argmin(np.abs(on - f))]
                if np.degrees(np.arccos(np.clip(td[k, near] @ ed[j, f], -1, 1))) > max_deg:
                    continue
                d = f - near  # > 0: after the source's nearest active frame
                if ta[k, f]:
                    best = 0
                    break
                best = d if best is None or abs(d) < abs(best) else best
            if best == 0:
                continue
            if best is None:
                out["elsewhere"] += 1
            elif best > 0:
                out["after+1" if best == 1 else "after+2" if best == 2 else "after+3+"] += 1
            else:
                out["before-1" if best == -1 else "before-2+"] += 1
    return out


def trim(act: np.ndarray, n: int) -> np.ndarray:
    """Remove n frames at each end of every active run: (J, T) bool → (J, T) bool.

    n < 0: remove |n| frames at the *end* of every run longer than |n| frames only (onsets and short runs kept).
    """
    out = act.copy()
    if n < 0:
        for _ in range(-n):
            pad = np.pad(out, ((0, 0), (1, 1)))  # (J, T + 2)
            last = out & ~pad[:, 2:]  # (J, T) the last frame of each run
            out = out & ~(last & pad[:, :-2])  # drop it where the run has a frame before it
        return out
    for _ in range(n):
        pad = np.pad(out, ((0, 0), (1, 1)))  # (J, T + 2)
        out = out & pad[:, :-2] & pad[:, 2:]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=40)
    ap.add_argument("--sets", nargs="+", default=["1-2", "default"])
    ap.add_argument("--trim", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--finder", default="finder:checkpoints/finder.pt")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from deepasa.metrics.trajectory import pool, score_trajectories

    find = tb.make_finder(args.finder)
    for set_name in args.sets:
        scenes = tb.scene_set(set_name, args.scenes)
        tracks = [find(s.mixture)[:2] for s in scenes]
        places = Counter()
        for s, (act, doa) in zip(scenes, tracks):
            places += wrong_frame_places(s.activity, s.doa, act, doa)
        print(json.dumps({"set": set_name, "wrong_frames": dict(places)}), flush=True)
        for n in args.trim:
            scores, gains = [], []
            for s, (act, doa) in zip(scenes, tracks):
                a = trim(act, n)
                scores.append(score_trajectories(s.activity, s.doa, a, doa))
                gains += tb.downstream(s, a, doa)[0]
            p = pool(scores)
            print(json.dumps({"set": set_name, "trim": n, "recall": round(p["recall"], 3),
                              "precision": round(p["precision"], 3), "detection": round(p["detection"], 3),
                              "downstream_db": round(float(np.mean(gains)), 3)}), flush=True)


if __name__ == "__main__":
    main()
