"""Net-1 objects fused with SRP-PHAT tracks: does the union find more of each source's activity?

    python experiments/2026-12-07-fusion/probe.py --scenes 20 --checkpoint checkpoints/default.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import trajectories as bench  # noqa: E402

from deepasa.metrics.trajectory import pool, score_trajectories  # noqa: E402


def fuse(a_act, a_doa, b_act, b_doa, max_deg=20.0, min_overlap=3, union=True):
    """Objects of finder A (kept as they are, A's directions first) and finder B: a B object that shares at
    least ``min_overlap`` co-active frames within ``max_deg`` with an A object is the same object (its activity
    joins the A object's when ``union``); the other B objects are added. Returns (activity, doa)."""
    t = min(a_act.shape[1] if len(a_act) else b_act.shape[1], b_act.shape[1] if len(b_act) else 10 ** 9)
    acts = [a[:t].copy() for a in a_act]
    doas = [d[:t].copy() for d in a_doa]
    for i in range(len(b_act)):
        ba, bd = b_act[i, :t], b_doa[i, :t]
        best, best_n = None, 0
        for j in range(len(acts)):
            cos = (doas[j] * bd).sum(-1) / np.maximum(np.linalg.norm(doas[j], axis=-1) * np.linalg.norm(bd, axis=-1), 1e-12)
            n = int((acts[j] & ba & (np.degrees(np.arccos(np.clip(cos, -1, 1))) <= max_deg)).sum())
            if n > best_n:
                best, best_n = j, n
        if best is not None and best_n >= min_overlap:
            if union:
                add = ba & ~acts[best]
                doas[best][add] = bd[add]
                acts[best] = acts[best] | ba
        else:
            acts.append(ba.copy())
            doas.append(bd.copy())
    if not acts:
        return np.zeros((0, t), bool), np.zeros((0, t, 3))
    return np.stack(acts), np.stack(doas)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--set", default="default")
    ap.add_argument("--checkpoint", default="checkpoints/default.pt")
    args = ap.parse_args()
    torch.set_num_threads(1)
    scenes = bench.scene_set(args.set, args.scenes)
    net1, srp = bench.make_finder("net1:" + args.checkpoint), bench.make_finder("srp")
    outs = {"net1": [], "srp": [], "srp+net1": [], "net1+srp": [], "srp+net1 (no union)": []}
    gains = {k: [] for k in outs}
    for s in scenes:
        na, nd, _ = net1(s.mixture)
        sa, sd, _ = srp(s.mixture)
        cand = {"net1": (na, nd), "srp": (sa, sd), "srp+net1": fuse(sa, sd, na, nd),
                "net1+srp": fuse(na, nd, sa, sd), "srp+net1 (no union)": fuse(sa, sd, na, nd, union=False)}
        for k, (a, d) in cand.items():
            outs[k].append(score_trajectories(s.activity, s.doa, a, d))
            gains[k] += bench.downstream(s, a, d)[0]
    for k in outs:
        p = pool(outs[k])
        print(json.dumps({"finder": k, "set": args.set, "recall": round(p["recall"], 3),
                          "precision": round(p["precision"], 3), "doa_deg": round(p["doa_error_median_deg"], 1),
                          "detection": round(p["detection"], 3), "fa_per_clip": round(p["false_alarms_per_clip"], 2),
                          "switches": round(p["identity_switches_per_source"], 2),
                          "downstream_db": round(float(np.mean(gains[k])), 2)}), flush=True)


if __name__ == "__main__":
    main()
