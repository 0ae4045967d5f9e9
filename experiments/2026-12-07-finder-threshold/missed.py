"""Which sources does the finder miss? Per true source of the tuning scenes: found or not (detection: any
frame of its activity covered by an object within 20°), its level against the mixture, its active time, and the
nearest other source's angle — to see whether a miss is the network's (weak, short) or the peak picker's
(two sources closer than the 25° minimum separation).

    python experiments/2026-12-07-finder-threshold/missed.py CKPT [--scenes 30] [--threshold 0.2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune import scenes_of  # noqa: E402


def main() -> int:
    from deepasa.model.finder import Finder, find_objects, finder_scores

    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--scenes", type=int, default=30)
    ap.add_argument("--threshold", type=float, default=0.2)
    ap.add_argument("--set", default="2-5")
    args = ap.parse_args()
    finder = Finder.from_pretrained(args.checkpoint)
    rows = []
    for scene in scenes_of(args.set, args.scenes):
        m = finder_scores(scene.mixture, finder)  # (T', G)
        tr = find_objects(None, finder, threshold=args.threshold, scores=m)
        img = (scene.direct + scene.reverb)[:, 0]  # (K, N)
        mix_db = 10 * np.log10(np.mean(scene.mixture[0] ** 2) + 1e-12)
        act, doa = scene.activity, scene.doa  # (K, T'), (K, T', 3)
        for k in range(len(act)):
            on = act[k]
            if not on.any():
                continue
            cos = np.einsum("jtc,tc->jt", tr.doa, doa[k]) if tr.n_objects else np.zeros((0, len(on)))  # (J, T')
            near = (np.degrees(np.arccos(np.clip(cos, -1, 1))) <= 20) & tr.activity  # (J, T')
            covered = near.any(axis=0) & on  # (T',)
            seg = img[k][np.repeat(on, len(img[k]) // len(on))[: len(img[k])]]
            level = 10 * np.log10(np.mean(seg ** 2) + 1e-12) - mix_db
            others = [j for j in range(len(act)) if j != k and (act[j] & on).any()]
            ang = min((np.degrees(np.arccos(np.clip(np.sum(doa[j][act[j] & on] * doa[k][act[j] & on], -1).mean(), -1, 1)))
                       for j in others), default=180.0)
            rows.append((covered.any(), covered.sum() / on.sum(), level, on.sum() / 10, ang, len(others)))
    r = np.array(rows, dtype=float)
    found, missed = r[r[:, 0] == 1], r[r[:, 0] == 0]
    print(f"{len(r)} sources, {len(missed)} never found ({len(missed) / len(r):.0%})")
    for name, g in (("found", found), ("missed", missed)):
        print(f"{name:7s} level vs mixture median {np.median(g[:, 2]):+.1f} dB, active {np.median(g[:, 3]):.1f} s, "
              f"nearest concurrent source {np.median(g[:, 4]):.0f} deg, concurrent sources {np.mean(g[:, 5]):.1f}")
    for lo, hi in ((-99, -15), (-15, -10), (-10, -5), (-5, 0), (0, 99)):
        g = r[(r[:, 2] >= lo) & (r[:, 2] < hi)]
        if len(g):
            print(f"level {lo:+d}..{hi:+d} dB: {len(g):3d} sources, found {g[:, 0].mean():.0%}, frame recall {g[:, 1].mean():.2f}")
    for lo, hi in ((0, 25), (25, 45), (45, 181)):
        g = r[(r[:, 4] >= lo) & (r[:, 4] < hi)]
        if len(g):
            print(f"nearest {lo}..{hi} deg: {len(g):3d} sources, found {g[:, 0].mean():.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
