"""The whole analysis pipelines side by side, scored as ``deepasa analyze`` outputs them (issues 36 and 37).

    python benchmarks/pipeline.py [--pipelines network network+spatial srp srp+extractor finder]
        [--sets default 1-2] [--scenes 40] [--threads 2]

Pipelines (``--pipelines``; each is what ``deepasa analyze`` writes with the options named):

* ``network``            ``--finder network --separation network`` (today's default: the DeepASA model, its audio)
* ``network+spatial``    ``--finder network --separation spatial``
* ``srp``                ``--finder srp`` (SRP-PHAT map + tracker, spatial stage, class read-out)
* ``finder``             ``--finder checkpoints/finder.pt`` (the learned map finder, spatial stage, read-out)
* ``<p>+extractor``      the same with ``--separation extractor`` (``checkpoints/extractor.pt``)

Scenes: the trajectory benchmark's unseen sets (test split; ``default`` 2–5 sources seed 7400, ``1-2`` seed
7401, ``dense`` seed 7402). Per true source, the object assigned to it by the Hungarian algorithm on the
reference-channel image SI-SDR (an object never active is no object; a source without one scores 0 dB and
is not detected): **image SI-SDRi**; **detected** when its object is active in at least half of the source's
active frames within 20°; **class accuracy of the detected**; **median DoA error** of the detected over the
frames both are active. Per pipeline also the frame recall/precision of the trajectories
(:mod:`deepasa.metrics.trajectory`) and the **CPU seconds per second of audio** on ``--threads`` threads
(same run, same machine: compare ratios).

Writes ``benchmarks/results/pipeline.json`` (a rerun replaces the rows of the same pipeline and set).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from deepasa.errors import DeepASAError, run_script

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import trajectories as tb  # noqa: E402  (the scene sets and the image scoring)

RESULTS = REPO / "benchmarks" / "results" / "pipeline.json"
PIPELINES = ("network", "network+spatial", "srp", "finder", "srp+extractor", "finder+extractor")


def make_pipeline(name: str, threads: int):
    """``name`` → a callable ``mixture (4, N) → SceneAnalysis`` (the objects as ``analyze`` outputs them)."""
    from deepasa.inference.analyze import analyze, load_model
    from deepasa.inference.trajectory_first import analyze_trajectories, load_extractor

    base, _, extra = name.partition("+")
    if name not in PIPELINES:
        raise DeepASAError(f"unknown pipeline {name!r} ({', '.join(PIPELINES)})")
    extractor = load_extractor(REPO / "checkpoints" / "extractor.pt") if extra == "extractor" else None
    quiet = lambda _m: None  # noqa: E731
    if base == "network":
        model = load_model()
        separation = extra or "network"
        return lambda x: analyze(model, x, log=quiet, separation=separation, extractor=extractor)
    finder = "srp" if base == "srp" else str(REPO / "checkpoints" / "finder.pt")
    from deepasa.inference.trajectory_first import MapFinder

    mf = MapFinder(finder)
    return lambda x: analyze_trajectories(x, mf, extractor=extractor, log=quiet)


def score_analysis(scene, result, class_names: list[str], max_deg: float = 20.0) -> list[dict]:
    """Per true source: SI-SDRi, detected, class right, DoA error (see the module docstring)."""
    from scipy.optimize import linear_sum_assignment

    from deepasa.metrics.separation import si_sdr

    objects = [o for o in result.objects if o.activity.any()]
    target = (scene.direct + scene.reverb)[:, 0]  # (K, N)
    k = len(target)
    base = si_sdr(np.repeat(scene.mixture[:1], k, axis=0), target)  # (K,)
    rows = [{"si_sdri_db": 0.0, "detected": False, "class_right": None, "doa_error_deg": None} for _ in range(k)]
    if not objects:
        return rows
    est = np.stack([o.signal("image")[0] for o in objects])  # (J, N)
    pair = np.array([[si_sdr(e, t) for e in est] for t in target])  # (K, J)
    for r, c in zip(*linear_sum_assignment(-np.nan_to_num(pair, nan=-1e3, neginf=-1e3))):
        o = objects[c]
        rows[r]["si_sdri_db"] = float(pair[r, c] - base[r])
        t = min(len(o.activity), scene.activity.shape[1])
        both = o.activity[:t] & scene.activity[r, :t]
        cos = (o.doa[:t] * scene.doa[r, :t]).sum(-1) / np.maximum(
            np.linalg.norm(o.doa[:t], axis=-1) * np.linalg.norm(scene.doa[r, :t], axis=-1), 1e-12)  # (T',)
        angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
        near = both & (angle <= max_deg)
        rows[r]["detected"] = bool(near.sum() >= 0.5 * scene.activity[r].sum() > 0)
        if rows[r]["detected"]:
            rows[r]["class_right"] = o.class_name == class_names[scene.meta["sources"][r]["class_index"]]
            rows[r]["doa_error_deg"] = float(np.median(angle[both]))
    return rows


def run(pipelines: list[str], sets: list[str], n_scenes: int, threads: int, log=print) -> list[dict]:
    """Every pipeline on every set; one row per (pipeline, set)."""
    from deepasa.metrics.trajectory import pool, score_trajectories
    from deepasa.scenes.soundbank import SoundBank

    class_names = list(SoundBank.open().classes)
    built = {p: make_pipeline(p, threads) for p in pipelines}
    out = []
    for set_name in sets:
        scenes = tb.scene_set(set_name, n_scenes)
        for name in pipelines:
            per, traj, cpu, audio = [], [], 0.0, 0.0
            for scene in scenes:
                c0 = time.process_time()
                result = built[name](scene.mixture)
                cpu += time.process_time() - c0
                audio += scene.mixture.shape[1] / scene.meta["sample_rate"]
                per += score_analysis(scene, result, class_names)
                act = np.stack([o.activity for o in result.objects]) if result.objects else np.zeros((0, 1), bool)
                doa = np.stack([o.doa for o in result.objects]) if result.objects else np.zeros((0, 1, 3))
                traj.append(score_trajectories(scene.activity, scene.doa, act, doa))
            det = [r for r in per if r["detected"]]
            doa_err = [r["doa_error_deg"] for r in det]
            pooled = pool(traj)
            row = {"pipeline": name, "set": set_name, "scenes": len(scenes), "n_sources": len(per),
                   "si_sdri_db": float(np.mean([r["si_sdri_db"] for r in per])),
                   "detection": len(det) / max(len(per), 1),
                   "class_accuracy_detected": (float(np.mean([r["class_right"] for r in det])) if det else None),
                   "doa_error_median_deg": float(np.median(doa_err)) if doa_err else None,
                   "frame_recall": pooled["recall"], "frame_precision": pooled["precision"],
                   "false_alarms_per_clip": pooled["false_alarms_per_clip"],
                   "cpu_s_per_audio_s": cpu / audio}
            out.append(row)
            log(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
    return out


COLUMNS = (("si_sdri_db", "image SI-SDRi dB", "{:+.1f}"), ("detection", "detection", "{:.2f}"),
           ("class_accuracy_detected", "class acc. (detected)", "{:.2f}"),
           ("doa_error_median_deg", "DoA err °", "{:.1f}"), ("frame_recall", "frame recall", "{:.2f}"),
           ("frame_precision", "frame precision", "{:.2f}"), ("false_alarms_per_clip", "FA/clip", "{:.2f}"),
           ("cpu_s_per_audio_s", "CPU s / audio s", "{:.2f}"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipelines", nargs="+", default=["network", "network+spatial", "srp"])
    tb.add_common_arguments(ap, RESULTS)
    args = ap.parse_args()
    if args.table:
        print(tb.table(args.out, key="pipeline", columns=COLUMNS))
        return 0
    if args.scenes < 1:
        raise DeepASAError("--scenes must be at least 1")
    import torch

    torch.set_num_threads(args.threads)
    rows = run(args.pipelines, args.sets, args.scenes, args.threads)
    tb.merge(rows, args.out, "python benchmarks/pipeline.py " + " ".join(sys.argv[1:]), args.threads,
             key="pipeline", title="analysis pipelines scored as analyze outputs them")
    return 0


if __name__ == "__main__":
    run_script(main)
