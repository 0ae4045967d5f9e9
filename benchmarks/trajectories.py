"""Trajectory benchmark: how well each object finder says *when* and *where* every source is (issue 37).

    python benchmarks/trajectories.py [--finders true srp net1:checkpoints/default.pt finder:checkpoints/finder.pt]
        [--sets default 1-2 dense] [--scenes 40] [--threads 2]

Scenes: unseen simulated scenes of the held-out (test) split of the sound bank, 16 kHz, 4 s, default rooms,
seeds of this benchmark's own (never the model card's 2025/2026): ``default`` (2–5 sources, seed 7400),
``1-2`` (seed 7401) and ``dense`` (events of 3.5–4 s, ``configs/data/scenes_dense.yaml``, seed 7402).

Finders (``--finders``):

* ``true``            the simulator's labels (the ceiling);
* ``true-activity``   true activity, no direction (every active object alike): the downstream number only;
* ``true-direction``  true directions, every source active all the time: the downstream number only;
* ``srp``             the classical SRP-PHAT map + peaks + tracker (:mod:`deepasa.tracking.srp`, no training);
* ``net1:<ckpt>``     the objects ``deepasa analyze`` reports with a DeepASA checkpoint (its decision rule);
* ``finder:<ckpt>``   the learned localisation-map finder (:mod:`deepasa.model.finder`).

Per finder and set (:mod:`deepasa.metrics.trajectory`): frame recall and precision of the sources' activity
(a frame counts when an object within 20° is active), median DoA error, identity switches and fragments per
source, false-alarm objects per clip, detection; and the **downstream number**: reference-channel image
SI-SDRi of the spatial stage (:func:`deepasa.separation.separate`, default parameters) driven by the
finder's trajectories, objects assigned to sources by the Hungarian algorithm on SI-SDR; a source with no
object scores 0 dB (silence is not credited, the mixture is not either). For ``net1`` rows also
``network_audio_si_sdri_db``: the network's own audio, as ``analyze`` writes it, scored the same way. Cost: seconds per 4-s clip of the
finder alone and of the spatial stage, on ``--threads`` threads of this machine.

Writes ``benchmarks/results/trajectories.json`` (a rerun replaces the rows of the same finder and set).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from deepasa.errors import DeepASAError, run_script

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "trajectories.json"
SETS = {
    "default": ({}, 7400),
    "1-2": ({"num_sources": [1, 2], "num_sources_weights": [0.5, 0.5]}, 7401),
    "dense": ("configs/data/scenes_dense.yaml", 7402),
}
ORACLES = ("true", "true-activity", "true-direction")


def scene_set(name: str, n: int) -> list:
    """The first ``n`` scenes of set ``name`` (simulated from the bank's test split)."""
    from deepasa.scenes.config import SceneConfig
    from deepasa.scenes.simulator import simulate_scene

    spec, seed = SETS[name]
    if isinstance(spec, str):
        cfg = SceneConfig.from_sources(REPO / spec)
    else:
        cfg = SceneConfig.from_dict({**SceneConfig().to_dict(), **spec})
    return [simulate_scene(seed=seed, index=i, split="test", config=cfg) for i in range(n)]


def make_finder(spec: str):
    """``spec`` → a callable ``mixture (4, N) → (activity (J, T') bool, doa (J, T', 3))`` (None for oracles)."""
    if spec in ORACLES:
        return None
    if spec == "srp":
        from deepasa.tracking.srp import srp_find_objects

        def run_srp(mixture):
            tracks = srp_find_objects(mixture)
            return tracks.activity, tracks.doa, None
        return run_srp
    kind, _, path = spec.partition(":")
    if kind not in ("net1", "finder"):
        raise DeepASAError(f"unknown finder {spec!r} (true, true-activity, true-direction, srp, net1:<ckpt>, "
                           "finder:<ckpt>)")
    if not Path(path).is_file():
        raise DeepASAError(f"finder {spec!r}: no checkpoint at {path}")
    if kind == "net1":
        from deepasa.inference.analyze import analyze, load_model

        model = load_model(path)

        def run_net1(mixture):
            result = analyze(model, mixture, log=lambda _msg: None)
            if not result.objects:
                empty = np.zeros((0, *mixture.shape), np.float32)
                return np.zeros((0, result.n_frames), bool), np.zeros((0, result.n_frames, 3)), empty
            return (np.stack([o.activity for o in result.objects]),  # (J, T')
                    np.stack([o.doa for o in result.objects]),  # (J, T', 3)
                    np.stack([o.signal("image") for o in result.objects]))  # (J, M, N) the network's audio
        return run_net1
    if kind == "finder":
        from deepasa.model.finder import Finder, find_objects

        finder = Finder.from_pretrained(path)

        def run_finder(mixture):
            tracks = find_objects(mixture, finder)
            return tracks.activity, tracks.doa, None
        return run_finder
    raise DeepASAError(f"unknown finder {spec!r} (true, true-activity, true-direction, srp, net1:<ckpt>, "
                       "finder:<ckpt>)")


def oracle_trajectories(spec: str, scene) -> tuple[np.ndarray, np.ndarray, dict]:
    """The oracle rows' trajectories and the spatial-stage options they imply."""
    act, doa = scene.activity, scene.doa  # (K, T'), (K, T', 3)
    if spec == "true-activity":
        return act, np.tile([1.0, 0.0, 0.0], (*act.shape, 1)), {"use_direction": False}
    if spec == "true-direction":
        mean = np.stack([doa[k][act[k]].mean(axis=0) if act[k].any() else np.array([1.0, 0.0, 0.0])
                         for k in range(len(act))])  # (K, 3) each source's mean direction
        # a moving source keeps its true trajectory where it is active and its mean direction elsewhere
        full = np.where(act[..., None], doa, mean[:, None, :])  # (K, T', 3)
        return np.ones_like(act), full, {}
    return act, doa, {}


def downstream(scene, activity: np.ndarray, doa: np.ndarray, **options) -> tuple[list[float], float]:
    """Image SI-SDRi (reference channel) of the spatial stage driven by these trajectories, per true source.

    Args:
        scene: a simulated scene (mixture (M, N), direct/reverb (K, M, N)).
        activity: (J, T') bool; doa: (J, T', 3).
        options: :class:`~deepasa.separation.SpatialConfig` fields.
    Returns:
        (per-source SI-SDRi in dB, a source without an object at 0; seconds the stage took).
    """
    from deepasa.separation import SpatialConfig, separate

    t0 = time.perf_counter()
    out = separate(scene.mixture, activity, doa, config=SpatialConfig(**options))
    seconds = time.perf_counter() - t0
    return score_images(scene, out.image), seconds


def score_images(scene, images: np.ndarray) -> list[float]:
    """Per true source, the reference-channel image SI-SDRi of the object assigned to it.

    Args:
        scene: a simulated scene; images: (J, M, N) the objects' images (as ``analyze`` writes them).
    Returns:
        (K,) SI-SDRi in dB; objects assigned to sources by the Hungarian algorithm on SI-SDR, an all-zero
        object is no object, and a source without one scores 0 dB.
    """
    from deepasa.metrics.separation import si_sdr

    target = (scene.direct + scene.reverb)[:, 0]  # (K, N) reference channel images
    k = len(target)
    base = si_sdr(np.repeat(scene.mixture[:1], k, axis=0), target)  # (K,)
    gains = np.zeros(k)
    if len(images):
        est = images[:, 0]  # (J, N)
        pair = np.array([[si_sdr(e, t) if np.abs(e).max() > 0 else -np.inf for e in est] for t in target])  # (K, J)
        rows, cols = linear_sum_assignment(-np.nan_to_num(pair, neginf=-1e3))
        for r, c in zip(rows, cols):
            if np.isfinite(pair[r, c]):
                gains[r] = pair[r, c] - base[r]
    return gains.tolist()


def run(finders: list[str], sets: list[str], n_scenes: int, log=print) -> list[dict]:
    """Every finder on every set; one row per (finder, set)."""
    from dataclasses import asdict

    from deepasa.metrics.trajectory import pool, score_trajectories
    from deepasa.separation import SpatialConfig

    built = {spec: make_finder(spec) for spec in finders}
    rows = []
    for set_name in sets:
        scenes = scene_set(set_name, n_scenes)
        for spec in finders:
            scores, gains, own, t_find, t_sep = [], [], [], 0.0, 0.0
            for scene in scenes:
                options = {}
                if built[spec] is None:
                    act, doa, options = oracle_trajectories(spec, scene)
                else:
                    t0 = time.perf_counter()
                    act, doa, images = built[spec](scene.mixture)
                    t_find += time.perf_counter() - t0
                    if images is not None:
                        own += score_images(scene, images)
                if spec not in ORACLES[1:]:
                    scores.append(score_trajectories(scene.activity, scene.doa, act, doa))
                g, sec = downstream(scene, act, doa, **options)
                gains += g
                t_sep += sec
            row = {"finder": spec, "set": set_name, "scenes": len(scenes), "n_sources": len(gains),
                   **(pool(scores) if scores else {}),
                   "downstream_si_sdri_db": float(np.mean(gains)),
                   "downstream_si_sdri_median_db": float(np.median(gains)),
                   **({"network_audio_si_sdri_db": float(np.mean(own))} if own else {}),
                   "finder_s_per_clip": t_find / len(scenes), "separation_s_per_clip": t_sep / len(scenes),
                   "stage": asdict(SpatialConfig(**options))}  # the spatial stage's parameters behind the dB
            rows.append(row)
            log(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
    return rows


def merge(rows: list[dict], path: Path, command: str, threads: int, key: str = "finder",
          title: str = "object trajectories and the spatial stage they drive (issue 37)") -> None:
    """Replace the rows of the same (``key``, set) in ``path`` and write it atomically."""
    from deepasa.staging import write_json

    old = []
    if path.is_file():
        try:
            old = json.loads(path.read_text())["rows"]
        except (ValueError, KeyError) as exc:
            raise DeepASAError(f"{path} is not a results file of this benchmark ({exc})") from exc
    keys = {(r[key], r["set"]) for r in rows}
    kept = [r for r in old if (r[key], r["set"]) not in keys]
    write_json(path, {"benchmark": title,
                      "command": command, "threads": threads,
                      "machine": {"platform": platform.platform(), "processor": platform.processor()},
                      "rows": kept + rows})


COLUMNS = (("recall", "recall", "{:.2f}"), ("precision", "precision", "{:.2f}"),
           ("doa_error_median_deg", "DoA err °", "{:.1f}"), ("identity_switches_per_source", "switches/src", "{:.2f}"),
           ("fragments_per_source", "fragments", "{:.2f}"), ("false_alarms_per_clip", "FA/clip", "{:.2f}"),
           ("detection", "detection", "{:.2f}"), ("downstream_si_sdri_db", "spatial SI-SDRi dB", "{:+.1f}"),
           ("network_audio_si_sdri_db", "network audio dB", "{:+.1f}"), ("finder_s_per_clip", "finder s/clip", "{:.2f}"))


def table(path: Path, key: str = "finder", columns=COLUMNS) -> str:
    """The results file as one Markdown table per set (rows named by ``key``, ``columns`` as :data:`COLUMNS`)."""
    if not path.is_file():
        raise DeepASAError(f"no results file at {path}")
    try:
        rows = json.loads(path.read_text())["rows"]
    except (ValueError, KeyError) as exc:
        raise DeepASAError(f"{path} is not a results file of this benchmark ({exc})") from exc
    out = []
    for set_name in dict.fromkeys(r["set"] for r in rows):
        sel = [r for r in rows if r["set"] == set_name]
        out += [f"**{set_name}** ({sel[0]['scenes']} scenes, {sel[0]['n_sources']} sources)", "",
                f"| {key} | " + " | ".join(h for _, h, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
        for r in sel:
            cells = [f.format(r[k]) if r.get(k) is not None and r[k] == r[k] else "—" for k, _, f in columns]
            out.append(f"| {r[key]} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def add_common_arguments(ap: argparse.ArgumentParser, out: Path) -> None:
    """The options this benchmark shares with ``benchmarks/pipeline.py``: sets, scenes, threads, out, table."""
    ap.add_argument("--sets", nargs="+", default=["default", "1-2"], choices=list(SETS))
    ap.add_argument("--scenes", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=out)
    ap.add_argument("--table", action="store_true", help="print the results file as Markdown tables and stop")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--finders", nargs="+", default=["true", "true-activity", "true-direction", "srp"])
    add_common_arguments(ap, RESULTS)
    args = ap.parse_args()
    if args.table:
        print(table(args.out))
        return 0
    if args.scenes < 1:
        raise DeepASAError("--scenes must be at least 1")
    import sys

    import torch

    torch.set_num_threads(args.threads)
    rows = run(args.finders, args.sets, args.scenes)
    merge(rows, args.out, "python benchmarks/trajectories.py " + " ".join(sys.argv[1:]), args.threads)
    return 0


if __name__ == "__main__":
    run_script(main)
