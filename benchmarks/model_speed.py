"""CPU forward time, real-time factor and peak memory of DeepASA configs on a 4-s, 4-channel input.

Each config runs in a fresh subprocess, so its peak resident memory (``resource.getrusage(RUSAGE_SELF)
.ru_maxrss``) is its own: we report the RSS after building the model (imports + weights) and the peak after
the timed forwards; their difference is the forward's working memory. Forwards run under
``torch.inference_mode()`` in eval mode with a fixed number of threads (default 1: the development machine
has 2 cores shared by several people, so absolute times are noisy; compare configs within one run).

    python benchmarks/model_speed.py [--configs paper paper-coi small] [--threads 1] [--repeats 2]

Writes ``benchmarks/results/model_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "model_speed.json"


def child(name: str, threads: int, repeats: int, seconds: float) -> dict:
    """Time one config in this process; returns a JSON-ready dict."""
    import torch

    from deepasa.model import DeepASA, get_config
    from deepasa.model.complexity import measure

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = get_config(name)
    model = DeepASA(cfg).eval()
    x = torch.randn(1, cfg.n_mics, int(round(seconds * cfg.sample_rate))) * 0.1
    rss_model_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = []
    with torch.inference_mode():
        t0 = time.perf_counter()
        model(x)  # warm-up (allocator, one-time kernel selection); reported separately
        warmup = time.perf_counter() - t0
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cx = measure(name)
    med = statistics.median(times)
    return {
        "config": name,
        "input": f"1 x {cfg.n_mics} ch x {seconds:g} s at {cfg.sample_rate} Hz",
        "threads": threads,
        "trainable_params": cx.trainable_params,
        "gmacs_per_second": round(cx.gmacs_per_second, 2),
        "warmup_s": round(warmup, 3),
        "forward_s": [round(t, 3) for t in times],
        "forward_median_s": round(med, 3),
        "real_time_factor": round(med / seconds, 3),
        "rss_after_build_mb": round(rss_model_mb, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "forward_working_memory_mb": round(peak_mb - rss_model_mb, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["paper", "paper-coi", "small"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.threads, args.repeats, args.seconds)))
        return
    runs = []
    for name in args.configs:
        cmd = [sys.executable, __file__, "--child", name, "--threads", str(args.threads),
               "--repeats", str(args.repeats), "--seconds", str(args.seconds)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{name} failed:\n{proc.stderr}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]))
    result = {
        "benchmark": "DeepASA CPU forward time, real-time factor (forward time / audio duration) and peak RSS",
        "command": "python benchmarks/model_speed.py " + " ".join(
            ["--configs", *args.configs, "--threads", str(args.threads), "--repeats", str(args.repeats)]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine(), "note": "shared, noisy CPU"},
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
