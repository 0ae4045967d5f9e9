"""Per-bin direction votes vs broadband SRP-PHAT as the map of a classical finder (trajectory benchmark metrics).

    python experiments/2026-12-07-bin-votes/probe.py --scenes 20 --variants srp votes votes:tau=0.8 ...
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import trajectories as bench  # noqa: E402

from deepasa.audio.geometry import tetra_mic_offsets  # noqa: E402
from deepasa.metrics.trajectory import pool, score_trajectories  # noqa: E402
from deepasa.tracking.grid import direction_grid  # noqa: E402
from deepasa.tracking.peaks import PeakPicker  # noqa: E402
from deepasa.tracking.srp import _band, _label_index, _stft, frame_energy_db, n_label_frames, pair_delays  # noqa: E402
from deepasa.tracking.tracker import track  # noqa: E402

GRID = direction_grid(600)


def vote_map(x, *, tau=0.7, f_min=200.0, f_max=4000.0, kappa_deg=8.0, power=0.5, fs=16000, hop=128, n_fft=512):
    """Each TF bin votes for its best grid direction (per-bin SRP-PHAT argmax) if its best score > tau,
    weighted by its energy**power; votes summed per label frame, smoothed over the sphere; (T', G)."""
    mics = tetra_mic_offsets()
    n_label = n_label_frames(x.shape[1], fs, 0.1)
    band = _band(n_fft, fs, f_min, f_max)
    spec = _stft(np.asarray(x, np.float64), n_fft, hop)[:, band]  # (M, F_b, K)
    a, b = np.triu_indices(4, k=1)
    cross = spec[a] * spec[b].conj()  # (P, F_b, K)
    phat = cross / np.maximum(np.abs(cross), 1e-20)
    omega = 2 * np.pi * np.arange(n_fft // 2 + 1)[band] * fs / n_fft
    tdoa = pair_delays(GRID, mics)  # (P, G)
    lab = _label_index(spec.shape[-1], hop, 0.1 * fs, n_label)
    energy = (np.abs(spec) ** 2).mean(axis=0)  # (F_b, K)
    votes = np.zeros((n_label, len(GRID)))
    for i, w in enumerate(omega):
        steer = np.exp(1j * w * tdoa)  # (P, G)
        s = (phat[:, i, :].T @ steer).real / len(a)  # (K, G)
        best = s.argmax(axis=1)  # (K,)
        ok = s[np.arange(len(best)), best] > tau
        np.add.at(votes, (lab[ok], best[ok]), energy[i, ok] ** power)
    kern = np.exp((GRID @ GRID.T - 1) / np.radians(kappa_deg) ** 2)  # (G, G)
    sm = votes @ kern
    total = votes.sum(axis=1, keepdims=True)
    out = sm / np.maximum(total, 1e-20)
    e = frame_energy_db(x)
    out[e < e.max() - 40] = 0
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--set", default="default")
    ap.add_argument("--variants", nargs="+", default=["srp", "votes"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    scenes = bench.scene_set(args.set, args.scenes)
    picker = PeakPicker(GRID)
    for v in args.variants:
        name, _, opts = v.partition(":")
        kw = {k: float(val) for k, val in (o.split("=") for o in opts.split(",") if o)}
        thr = kw.pop("thr", 0.15) if name != "srp" else None
        rel = kw.pop("rel", 0.3) if name != "srp" else None
        scores, gains, t = [], [], 0.0
        for s in scenes:
            t0 = time.perf_counter()
            if name == "srp":
                from deepasa.tracking.srp import SRPTracker

                fill = int(kw.pop("fill", 1)) if "fill" in kw else 1
                kw2 = {k: val for k, val in kw.items() if k != "fill"}
                tr = SRPTracker(**kw2, track_kwargs={"fill_gap_frames": fill})(s.mixture)
                kw["fill"] = fill
                act, doa = tr.activity, tr.doa
            else:
                m = vote_map(s.mixture, **kw)
                dets = picker(m, threshold=thr, min_separation_deg=25.0, max_peaks=5)
                dets = [[(u, h) for u, h in fr if h >= rel * fr[0][1]] for fr in dets]
                tr = track(dets, max_objects=6)
                act, doa = tr.activity, tr.doa
            t += time.perf_counter() - t0
            scores.append(score_trajectories(s.activity, s.doa, act, doa))
            g, _ = bench.downstream(s, act, doa)
            gains += g
        row = {"variant": v, "set": args.set, **{k: round(val, 3) for k, val in pool(scores).items()},
               "downstream_db": round(float(np.mean(gains)), 2), "s_per_clip": round(t / len(scenes), 2)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
