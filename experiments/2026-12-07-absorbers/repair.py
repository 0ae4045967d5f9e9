"""Which flaw of the finder's trajectories costs the found sources their separation? Repair one at a time
with the truth and measure the spatial stage's image SI-SDRi.

    python experiments/2026-12-07-absorbers/repair.py [--scenes 20] [--checkpoint checkpoints/finder.pt]

Tuning scenes as absorb.py. Each estimated object is assigned to the true source it matches in most frames
(both active, within 20°), or to none (a false alarm). Variants, each one change from the finder's tracks:

* ``finder``      the tracks as they are;
* ``+missed``     the true trajectories of the sources no object is assigned to, added as objects;
* ``-false``      false-alarm objects removed;
* ``clip``        each assigned object's activity cut to its source's true activity (no spurious frames);
* ``merge``       the objects assigned to one source merged into one (activity OR; fragments joined);
* ``true-dir``    each assigned object's direction replaced by its source's true one (activity kept);
* ``all``         every repair above at once.
Only estimated objects (and, in ``+missed``/``all``, the added true ones) are scored, by score_images.
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
from tune import scenes_of  # noqa: E402

COS20 = np.cos(np.radians(20.0))


def assign(true_act, true_doa, act, doa) -> np.ndarray:
    """(J,) index of the true source each object matches in most frames (both active, within 20°), -1 if none."""
    t = min(true_act.shape[1], act.shape[1])
    u = true_doa[:, :t] / np.maximum(np.linalg.norm(true_doa[:, :t], axis=-1, keepdims=True), 1e-9)  # (K, T, 3)
    out = np.full(len(act), -1)
    for j in range(len(act)):
        hits = ((u * doa[j, :t][None]).sum(-1) >= COS20) & true_act[:, :t] & act[j, :t][None]  # (K, T)
        counts = hits.sum(1)
        if counts.max() > 0:
            out[j] = int(counts.argmax())
    return out


def repaired(scene, act, doa, owner, fixes: set):
    """The finder's (J, T'), (J, T', 3) with the named fixes -> (J', T'), (J', T', 3)."""
    k, t = scene.activity.shape
    act, doa = act[:, :t].copy(), doa[:, :t].copy()
    t_act, t_doa = scene.activity, scene.doa / np.maximum(np.linalg.norm(scene.doa, axis=-1, keepdims=True), 1e-9)
    if act.shape[1] < t:  # hold the last frame, as the stage does
        pad = t - act.shape[1]
        act = np.concatenate([act, np.repeat(act[:, -1:], pad, 1)], 1)
        doa = np.concatenate([doa, np.repeat(doa[:, -1:], pad, 1)], 1)
    if "true-dir" in fixes:
        for j, s in enumerate(owner):
            if s >= 0:
                doa[j] = np.where(t_act[s][:, None], t_doa[s], doa[j])
    if "clip" in fixes:
        for j, s in enumerate(owner):
            if s >= 0:
                act[j] &= t_act[s]
    if "merge" in fixes:
        keep = []
        for s in sorted(set(owner.tolist()) - {-1}):
            js = np.flatnonzero(owner == s)
            first = js[0]
            for j in js[1:]:
                doa[first] = np.where((act[j] & ~act[first])[:, None], doa[j], doa[first])
                act[first] |= act[j]
            keep.append(first)
        keep += list(np.flatnonzero(owner == -1))
        keep = sorted(keep)
        act, doa, owner = act[keep], doa[keep], owner[keep]
    if "-false" in fixes:
        keep = owner >= 0
        act, doa, owner = act[keep], doa[keep], owner[keep]
    if "+missed" in fixes:
        missed = sorted(set(range(k)) - set(owner.tolist()))
        if missed:
            act = np.concatenate([act, t_act[missed]])
            doa = np.concatenate([doa, t_doa[missed]])
    return act, doa


VARIANTS = {"finder": set(), "+missed": {"+missed"}, "-false": {"-false"}, "clip": {"clip"}, "merge": {"merge"},
            "true-dir": {"true-dir"}, "all": {"+missed", "-false", "clip", "merge", "true-dir"}}


def main() -> int:
    from deepasa.model.finder import Finder, find_objects

    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--checkpoint", default="checkpoints/finder.pt")
    ap.add_argument("--sets", nargs="+", default=["2-5"])
    args = ap.parse_args()
    finder = Finder.from_pretrained(args.checkpoint)
    for name in args.sets:
        gains = {v: [] for v in VARIANTS} | {"true": []}
        for scene in scenes_of(name, args.scenes):
            tr = find_objects(scene.mixture, finder)
            owner = assign(scene.activity, scene.doa, tr.activity, tr.doa)
            for v, fixes in VARIANTS.items():
                act, doa = repaired(scene, tr.activity, tr.doa, owner, fixes)
                gains[v] += downstream(scene, act, doa)[0]
            gains["true"] += downstream(scene, scene.activity, scene.doa)[0]
        for v, g in gains.items():
            print(json.dumps({"set": name, "variant": v, "si_sdri_db": round(float(np.mean(g)), 2),
                              "sources": len(g)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
