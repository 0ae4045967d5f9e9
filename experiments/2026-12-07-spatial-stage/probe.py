"""Spatial stage with true trajectories: image SI-SDRi (reference channel) for variants of its parameters.

    python experiments/2026-12-07-spatial-stage/probe.py --scenes 20 --variant default beta=10 ...
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch

from deepasa.metrics.separation import si_sdr
from deepasa.scenes.config import SceneConfig
from deepasa.scenes.simulator import simulate_scene
from deepasa.separation import SpatialConfig, separate

SETS = {"default": ({}, 7300), "1-2": ({"num_sources": [1, 2], "num_sources_weights": [0.5, 0.5]}, 7301)}


def parse_variant(text: str) -> tuple[str, SpatialConfig, str]:
    """'name' or 'key=value,key=value[,cue=activity|direction]' -> (label, config, cue)."""
    cfg, cue = SpatialConfig(), "both"
    if text != "default":
        for item in text.split(","):
            key, value = item.split("=")
            if key == "cue":
                cue = value
                continue
            old = getattr(cfg, key)
            if isinstance(old, str):
                cfg = replace(cfg, **{key: value})
                continue
            cast = (lambda v: None if v == "None" else float(v)) if key == "diffuse_score" else type(old)
            cast = (lambda v: v == "True") if isinstance(old, bool) else cast
            cast = float if isinstance(old, float) and key != "diffuse_score" else cast
            cfg = replace(cfg, **{key: cast(value)})
    return text, cfg, cue


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--variant", nargs="+", default=["default"])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for set_name in args.sets:
        over, seed = SETS[set_name]
        cfg = SceneConfig.from_dict({**SceneConfig().to_dict(), **over})
        scenes = [simulate_scene(seed=seed, index=i, split="test", config=cfg) for i in range(args.scenes)]
        for text in args.variant:
            label, scfg, cue = parse_variant(text)
            gains, dgains, t0 = [], [], time.perf_counter()
            for s in scenes:
                act = s.activity if cue != "direction" else np.ones_like(s.activity)
                doa = s.doa if cue != "direction" else np.repeat(
                    np.array([s.doa[k][s.activity[k]].mean(0) if s.activity[k].any() else [1, 0, 0]
                              for k in range(len(s.activity))])[:, None], s.activity.shape[1], axis=1)
                if cue == "activity":
                    scfg = replace(scfg, use_direction=False)
                out = separate(s.mixture, act, doa, config=scfg)
                tgt = s.direct + s.reverb  # (K, M, N)
                base = si_sdr(np.repeat(s.mixture[:1], len(tgt), 0), tgt[:, 0])
                gains += list(si_sdr(out.image[:, 0], tgt[:, 0]) - base)
                dgains += list(si_sdr(out.direct[:, 0], s.direct[:, 0]) - si_sdr(np.repeat(s.mixture[:1], len(tgt), 0), s.direct[:, 0]))
            row = {"set": set_name, "variant": label, "cue": cue, "si_sdri_db": float(np.mean(gains)), "median_db": float(np.median(gains)),
                   "p10_db": float(np.percentile(gains, 10)),
                   "direct_si_sdri_db": float(np.mean(dgains)), "n_sources": len(gains),
                   "s_per_clip": (time.perf_counter() - t0) / len(scenes)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
