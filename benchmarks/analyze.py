"""Real-time factor and peak memory of ``analyze`` (and of writing its outputs + report) vs input length.

Each length runs in a fresh subprocess so its peak resident memory (``VmHWM`` of the process) is its own; the
input is a 4-channel 16-kHz file built from simulated scenes (two noise sources each, ``sources=`` so no sound
bank is needed) concatenated to the length, written to disk first, and analysed from the file (streamed).
``--pipeline trajectory`` (the default: what ``deepasa analyze`` runs) is the shipped trajectory-first pipeline
(learned finder ``checkpoints/finder.pt`` → spatial stage → class read-out ``checkpoints/object_classes.pt``);
its start-up (loading the finder and the read-out's embedding) is timed apart from the analysis
(``startup_s``). ``--pipeline network`` is the DeepASA network's own analysis (``deepasa analyze --finder
network``) with the shipped ``checkpoints/default.pt``; while it is absent, the ``small`` config with random
weights (same architecture and cost; meaningless outputs) — the JSON says which.

    python benchmarks/analyze.py [--pipeline trajectory|network] [--seconds 10 60 240 600] [--threads 1] [--max-minutes 5]
    python benchmarks/analyze.py --seconds 3600 --threads 2 --max-minutes 0   # one hour of audio: ~2 h here

(On the 2-core AVX2 machine the one-hour file was half analysed after 67 min at 2 threads with other jobs
beside it; give it the cores: `scripts/train_shipped.sh priority 19` while it runs.)

A length whose estimated run time (from the previous length's real-time factor) exceeds ``--max-minutes``
(0: no limit) is skipped and listed as such. The peak RSS is recorded after windows 1, 5, 10, 100, 1000 and
the last one (and at the quarters); the child prints each of windows 10, 100, 1000 and every 250th to stderr as it
passes them, so a long background run can be followed. ``memory_growth_from_window_100`` is the relative growth of
the peak RSS from window 100 to the end (the issue-15 bound: at most 5 %). Rows are merged into
``benchmarks/results/analyze.json`` by length (a length run again replaces its row; the others are kept,
each with its own command and time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "analyze.json"
MILESTONES = (10, 100, 1000)  # windows after which the child reports its peak RSS on stderr


def _hwm_mb() -> float:
    """Peak RSS of this process image in MB (VmHWM)."""
    with open("/proc/self/status") as fh:
        return int(next(line for line in fh if line.startswith("VmHWM")).split()[1]) / 1024


def make_input(path: Path, seconds: float) -> None:
    """Write a (4, seconds * 16000) scene-built float WAV to ``path`` in blocks."""
    import numpy as np
    import soundfile as sf

    from deepasa.scenes.simulator import simulate_scene

    rng = np.random.default_rng(0)
    scenes = [simulate_scene(seed=s, sources=[("speech", rng.standard_normal(40000)),
                                             ("machine", rng.standard_normal(30000))]).mixture for s in range(3)]
    n = int(seconds * 16000)
    with sf.SoundFile(str(path), "w", samplerate=16000, channels=4, subtype="FLOAT") as fh:
        done, k = 0, 0
        while done < n:
            block = scenes[k % 3][:, : n - done]  # (4, <= 64000)
            fh.write(block.T)
            done, k = done + block.shape[1], k + 1


def timed_analysis(run, out_dir: str, seconds: float):
    """Run ``run()`` (an analysis returning a SceneAnalysis), then save it with its report under ``out_dir/out``;
    returns (the analysis, the timing and peak-RSS fields both pipelines' rows share)."""
    t0 = time.perf_counter()
    result = run()
    t_analyze = time.perf_counter() - t0
    rss_analyze = _hwm_mb()
    t0 = time.perf_counter()
    result.save(Path(out_dir) / "out")
    t_save = time.perf_counter() - t0
    return result, {
        "windows": result.n_windows, "window_s": result.window_s, "hop_s": result.hop_s,
        "objects": len(result.objects),
        "analyze_s": round(t_analyze, 2), "real_time_factor": round(t_analyze / seconds, 3),
        "save_and_report_s": round(t_save, 2),
        "real_time_factor_with_outputs": round((t_analyze + t_save) / seconds, 3),
        "peak_rss_analyze_mb": round(rss_analyze, 1),
    }


def child_trajectory(seconds: float, threads: int, out_dir: str) -> dict:
    """The shipped trajectory-first pipeline on ``out_dir/input.wav`` in this process; returns a JSON-ready dict."""
    import torch

    from deepasa.inference.trajectory_first import analyze_trajectories
    from deepasa.model.finder import MapFinder
    from deepasa.model.object_classes import load_classifier

    torch.set_num_threads(threads)
    rss_start = _hwm_mb()
    t0 = time.perf_counter()
    finder, classifier = MapFinder("finder"), load_classifier(None)
    t_startup = time.perf_counter() - t0
    rss_ready = _hwm_mb()
    _, fields = timed_analysis(lambda: analyze_trajectories(Path(out_dir) / "input.wav", finder, classifier=classifier,
                                                            log=lambda m: None), out_dir, seconds)
    return {
        "pipeline": "trajectory", "seconds": seconds,
        "model": f"{finder.name} + spatial stage + {getattr(classifier, 'source', None)}", "threads": threads,
        "startup_s": round(t_startup, 2), **fields,
        "rss_at_start_mb": round(rss_start, 1), "rss_before_analyze_mb": round(rss_ready, 1),
        "peak_rss_total_mb": round(_hwm_mb(), 1),
    }


def child(seconds: float, threads: int, out_dir: str) -> dict:
    """The network's analysis of ``out_dir/input.wav`` (made by the parent) in this process; returns a JSON-ready
    dict."""
    import torch

    from deepasa.inference.analyze import DEFAULT_CHECKPOINT, _run_window, analyze, load_model
    from deepasa.model import DeepASA, get_config

    torch.set_num_threads(threads)
    if DEFAULT_CHECKPOINT.is_file():
        model, which = load_model(), f"shipped {DEFAULT_CHECKPOINT.name}"
    else:
        torch.manual_seed(0)
        model, which = DeepASA(get_config("small")).eval(), "small config, random weights (checkpoints/default.pt absent)"
    wav = Path(out_dir) / "input.wav"
    rss_ready = _hwm_mb()
    hwm = []  # peak RSS after each window: flat if memory does not grow with the length

    def run_window(x):
        out = _run_window(model, x)
        hwm.append(_hwm_mb())
        if len(hwm) in MILESTONES or len(hwm) % 250 == 0:  # milestones, and every 250 windows to follow a long run
            print(f"window {len(hwm)}: peak RSS {hwm[-1]:.1f} MB after {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)
        return out

    t0 = time.perf_counter()  # run_window's progress lines count from here
    _, fields = timed_analysis(lambda: analyze(model, wav, log=lambda m: None, run_window=run_window), out_dir, seconds)
    return {
        "pipeline": "network", "seconds": seconds, "model": which, "config": {"n_slots": model.config.n_slots,
                                                        "sample_rate": model.sample_rate,
                                                        "clip_seconds": model.config.clip_seconds},
        "threads": threads, **fields, "rss_before_analyze_mb": round(rss_ready, 1),
        "peak_rss_after_window_mb": {str(i + 1): round(hwm[i], 1) for i in sorted(
            {0, min(4, len(hwm) - 1), len(hwm) // 4, len(hwm) // 2, 3 * len(hwm) // 4, len(hwm) - 1}
            | {m - 1 for m in MILESTONES if m <= len(hwm)})},
        "memory_growth_from_window_100": round(hwm[-1] / hwm[99] - 1, 4) if len(hwm) >= 100 else None,
        "peak_rss_total_mb": round(_hwm_mb(), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", choices=("trajectory", "network"), default="trajectory",
                    help="trajectory: the shipped trajectory-first pipeline (deepasa analyze's default); network: "
                    "the DeepASA network's own analysis (--finder network)")
    ap.add_argument("--seconds", nargs="+", type=float, default=[10, 60, 240, 600])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-minutes", type=float, default=5.0)
    ap.add_argument("--results", type=Path, default=RESULTS, help="JSON file to merge the rows into")
    ap.add_argument("--child", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        run_child = child_trajectory if args.pipeline == "trajectory" else child
        print(json.dumps(run_child(args.child, args.threads, args.dir)))
        return
    command = (f"python benchmarks/analyze.py --pipeline {args.pipeline} --seconds "
               + " ".join(f"{s:g}" for s in args.seconds)
               + f" --threads {args.threads} --max-minutes {args.max_minutes:g}")
    runs, skipped, rtf = [], [], None
    for seconds in sorted(args.seconds):
        if args.max_minutes > 0 and rtf is not None and rtf * seconds / 60 > args.max_minutes:
            skipped.append({"pipeline": args.pipeline, "seconds": seconds, "reason": f"estimated {rtf * seconds / 60:.1f} min "
                            f"(real-time factor {rtf:.2f} with outputs) > --max-minutes {args.max_minutes:g}"})
            print(json.dumps(skipped[-1]))
            continue
        with tempfile.TemporaryDirectory(prefix="deepasa-bench-") as tmp:
            make_input(Path(tmp) / "input.wav", seconds)
            cmd = [sys.executable, __file__, "--child", str(seconds), "--threads", str(args.threads), "--dir", tmp,
                   "--pipeline", args.pipeline]
            # stderr passes through: the child's per-milestone lines show the progress of a long run
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            sys.exit(f"{seconds} s failed (exit {proc.returncode}; its error is above)")
        runs.append({**json.loads(proc.stdout.strip().splitlines()[-1]), "command": command,
                     "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        rtf = runs[-1]["real_time_factor_with_outputs"]
        print(json.dumps(runs[-1]), flush=True)
    write_results(args.results, runs, skipped, command)


def write_results(path: Path, runs: list[dict], skipped: list[dict], command: str) -> None:
    """Merge this invocation's rows into the JSON at ``path`` by (pipeline, length): a new row replaces the old one
    of its pipeline and length (rows written before the pipeline was recorded are the network's)."""
    from deepasa.staging import write_json

    def key(r: dict) -> tuple[str, float]:
        return r.get("pipeline", "network"), r["seconds"]

    old = json.loads(path.read_text()) if path.is_file() else {}
    new_keys = {key(r) for r in runs} | {key(s) for s in skipped}
    kept = [{"command": old.get("command"), "time_utc": old.get("time_utc"), "pipeline": "network", **r}
            for r in old.get("runs", []) if key(r) not in new_keys]
    merged = sorted(kept + runs, key=key)
    last = runs[-1] if runs else (merged[-1] if merged else None)
    same = [r for r in merged if key(r)[0] == key(last)[0] and r["threads"] == last["threads"]] if last else []
    peaks = [r["peak_rss_total_mb"] for r in same]
    result = {
        "benchmark": "deepasa analyze: real-time factor (wall time / audio duration) and peak RSS vs input length",
        "command": command,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine(),
                    "note": "shared, noisy CPU (other jobs running); compare lengths within one run"},
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": merged,
        "skipped": [s for s in old.get("skipped", []) if key(s) not in new_keys] + skipped,
        "peak_rss_ratio_longest_to_shortest": round(peaks[-1] / peaks[0], 3) if len(peaks) > 1 else None,
        "peak_rss_ratio_note": "over this run's pipeline and thread count",
    }
    write_json(path, result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
