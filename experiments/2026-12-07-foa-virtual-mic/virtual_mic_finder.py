"""The learned MIC finder reading FOA through a virtual tetrahedral recording (issue 39): the same tuning scenes in
MIC and FOA (as experiments/2026-12-07-foa-pipeline/foa_vs_mic.py), every finder's trajectories driving the
spatial stage *in FOA format*. README.md has the answer.

    python experiments/2026-12-07-foa-virtual-mic/virtual_mic_finder.py [--set 2-5|1-2] [--scenes 15]
        [--rows mic-finder foa-intensity virtual virtual-diffuse ...] [--finder checkpoints/finder.pt]
        [--out results.json]

Rows:
    mic-finder        the shipped learned finder (checkpoints/finder.pt, 12 symmetries) on the MIC scene
    foa-intensity     FOA's classical finder (the active-intensity map, IntensityTracker defaults)
    virtual           FOA -> deepasa.tracking.foa.virtual_mic -> the learned finder
    virtual-diffuse   the same with the diffuse part rendered decorrelated (virtual_mic(diffuse=True))
    true              the true trajectories (the stage's ceiling)
Each row's "image SI-SDRi (FOA)" is the FOA stage driven by its trajectories; the MIC finder row also gives the
MIC stage's (the same trajectories on the MIC scene).
"""

import argparse
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "benchmarks"))

from trajectories import score_images  # noqa: E402  (the scoring foa_vs_mic.py uses)

from deepasa.errors import run_script  # noqa: E402
from deepasa.metrics.trajectory import pool, score_trajectories  # noqa: E402
from deepasa.model.finder import Finder, find_objects  # noqa: E402
from deepasa.scenes.config import SceneConfig  # noqa: E402
from deepasa.scenes.simulator import simulate_scene  # noqa: E402
from deepasa.separation import separate  # noqa: E402
from deepasa.tracking.foa import IntensityTracker, virtual_mic  # noqa: E402
from deepasa.tracking.tracker import track  # noqa: E402

SETS = {"2-5": (7500, {}), "1-2": (7501, {"num_sources": [1, 2], "num_sources_weights": [0.5, 0.5]})}  # seed, config
CACHE = Path("/tmp/deepasa-foa-virtual-mic")


def scene_pair(set_name: str, index: int):
    """The ``index``-th tuning scene of a set in both formats (same rooms, sources, trajectories), cached in /tmp."""
    seed, spec = SETS[set_name]
    path = CACHE / f"{set_name}_{index}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    config = SceneConfig.from_dict({**SceneConfig().to_dict(), **spec})
    pair = {fmt: simulate_scene(seed=seed, index=index, split="val", config=config, fmt=fmt)
            for fmt in ("mic", "foa")}
    CACHE.mkdir(exist_ok=True)
    path.write_bytes(pickle.dumps(pair))
    return pair


def trajectories(row: str, pair: dict, finder: Finder, intensity: IntensityTracker):
    """Row name, the scene pair -> (activity (J, T') bool, doa (J, T', 3), finder seconds)."""
    t0 = time.perf_counter()
    if row == "true":
        act, doa = pair["foa"].activity, pair["foa"].doa
    elif row == "mic-finder":
        t = find_objects(pair["mic"].mixture, finder)
        act, doa = t.activity, t.doa
    elif row == "foa-intensity":
        x = pair["foa"].mixture  # (4, N)
        t = track(intensity.detections(intensity.score_map(x)), max_objects=None, **intensity.track_kwargs)
        act, doa = t.activity, t.doa
    elif row in ("virtual", "virtual-diffuse"):
        mic = virtual_mic(pair["foa"].mixture, diffuse=row == "virtual-diffuse")  # (4, N) virtual capsules
        t = find_objects(mic, finder)
        act, doa = t.activity, t.doa
    else:
        raise ValueError(row)
    return act, doa, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", default="2-5", choices=sorted(SETS))
    ap.add_argument("--scenes", type=int, default=15)
    ap.add_argument("--rows", nargs="+", default=["mic-finder", "foa-intensity", "virtual", "virtual-diffuse"])
    ap.add_argument("--finder", default="checkpoints/finder.pt", help="the learned finder's export")
    ap.add_argument("--out", default=str(HERE / "results.json"))
    args = ap.parse_args()
    finder = Finder.from_pretrained(args.finder)
    intensity = IntensityTracker()
    pairs = [scene_pair(args.set, i) for i in range(args.scenes)]
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.is_file() else {}
    for row in args.rows:
        scores, foa_gain, mic_gain, seconds = [], [], [], 0.0
        for pair in pairs:
            act, doa, sec = trajectories(row, pair, finder, intensity)
            seconds += sec
            scores.append(score_trajectories(pair["foa"].activity, pair["foa"].doa, act, doa))
            foa_gain += score_images(pair["foa"], separate(pair["foa"].mixture, act, doa, fmt="foa").image)
            if row == "mic-finder":
                mic_gain += score_images(pair["mic"], separate(pair["mic"].mixture, act, doa, fmt="mic").image)
        p = pool(scores)
        res = {k: round(float(p[k]), 3) for k in ("recall", "precision", "doa_error_median_deg", "detection",
                                                   "false_alarms_per_clip")}
        res.update(si_sdri_foa_db=round(float(np.mean(foa_gain)), 2), finder_s_per_clip=round(seconds / len(pairs), 2),
                   scenes=len(pairs), sources=len(foa_gain))
        if mic_gain:
            res["si_sdri_mic_db"] = round(float(np.mean(mic_gain)), 2)
        results[f"{args.set}/{row}"] = res
        print(args.set, row, json.dumps(res), flush=True)
        out_path.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    run_script(main)
