"""How dense simulated scenes are: label statistics and a command that measures them (no torch).

Dense scenes are the simulator's ``fill: chain`` (``configs/data/scenes_dense.yaml``; the events are made by
``deepasa.scenes.simulator.sample_event`` and ``build_chain``): events of 3.5–4 s filled with real clips of
their class. The statistics are computed from the activity labels, i.e. from what a model is trained and
scored on.

``python -m deepasa.scenes.dense --split test --seed 7100 --num-scenes 100 [--config YAML]`` prints them as
one JSON line (docs/sound-bank.md, "Dense scenes").
"""

from __future__ import annotations

import numpy as np


# ---------------------------------------------------------------------------------------------- statistics
def density_statistics(activities: list[np.ndarray], hop_s: float) -> dict:
    """How dense a set of scenes is, from their activity labels.

    Args:
        activities: per scene a (K, T') bool array (``SceneAudio.activity``).
        hop_s: label frame length, seconds.
    Returns:
        ``frames``, ``active_share`` (frames with ≥ 1 active source), ``silent_share`` (no source active),
        ``polyphonic_share`` (≥ 2 active, among active frames), ``mean_active`` (active sources per active
        frame), ``polyphony`` (share of active frames with 1, 2, … sources), ``median_event_s`` (median over
        sources of active frames × hop), ``sources``.
    """
    counts = np.concatenate([a.sum(axis=0) for a in activities])  # (Σ T',) active sources per frame
    per_source = np.concatenate([a.sum(axis=1) for a in activities]) * hop_s  # (Σ K,) seconds active
    active = counts[counts > 0]
    top = int(counts.max()) if len(counts) else 0
    return {
        "scenes": len(activities), "frames": int(len(counts)), "sources": int(len(per_source)),
        "active_share": round(float(np.mean(counts > 0)), 4), "silent_share": round(float(np.mean(counts == 0)), 4),
        "polyphonic_share": round(float(np.mean(active >= 2)), 4) if len(active) else 0.0,
        "mean_active": round(float(active.mean()), 3) if len(active) else 0.0,
        "polyphony": {str(k): round(float(np.mean(active == k)), 4) for k in range(1, top + 1)} if len(active) else {},
        "median_event_s": round(float(np.median(per_source)), 3) if len(per_source) else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    """Render scenes of the bank's split and print their density statistics as one JSON line."""
    import argparse
    import json
    from pathlib import Path

    from deepasa.scenes.config import SceneConfig
    from deepasa.scenes.simulator import clips_for_split, load_dry, render_scene, sample_scene_spec, scene_rng
    from deepasa.scenes.soundbank import SoundBank

    p = argparse.ArgumentParser(prog="python -m deepasa.scenes.dense", description=main.__doc__)
    p.add_argument("--split", default="test")
    p.add_argument("--seed", type=int, default=7100)
    p.add_argument("--num-scenes", type=int, default=100)
    p.add_argument("--config", type=Path, help="scene YAML, as for deepasa simulate")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--home", type=Path, help="sound-bank folder")
    args = p.parse_args(argv)
    cfg = SceneConfig.from_sources(args.config, args.set)
    bank = SoundBank.open(args.home)
    pool, names = clips_for_split(bank, args.split, cfg), list(bank.classes)
    acts, chained = [], 0
    for i in range(args.num_scenes):
        spec = sample_scene_spec(scene_rng(args.seed, args.split, i), cfg, pool, names, f"{i:06d}", args.split)
        chained += sum("segments" in s for s in spec["sources"])
        acts.append(render_scene(spec, load_dry(bank, spec), "mic").activity)
    stats = density_statistics(acts, cfg.label_hop)
    print(json.dumps({"config": str(args.config) if args.config else "defaults", "split": args.split,
                      "seed": args.seed, **stats, "chained_sources": chained}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
