"""Real-time factor and peak memory of ``analyze`` (and of writing its outputs + report) vs input length.

Each length runs in a fresh subprocess so its peak resident memory (``VmHWM`` of the process) is its own; the
input is a 4-channel 16-kHz file built from simulated scenes (two noise sources each, ``sources=`` so no sound
bank is needed) concatenated to the length, written to disk first, and analysed from the file (streamed).
The model is the shipped ``checkpoints/default.pt``; while it is absent, the ``small`` config with random
weights (same architecture and cost; meaningless outputs) — the JSON says which.

    python benchmarks/analyze.py [--seconds 10 60 240 600] [--threads 1] [--max-minutes 5]

A length whose estimated run time (from the previous length's real-time factor) exceeds ``--max-minutes``
is skipped and listed as such. Writes ``benchmarks/results/analyze.json``.
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


def child(seconds: float, threads: int, out_dir: str) -> dict:
    """Analyse ``out_dir/input.wav`` (made by the parent) in this process; returns a JSON-ready dict."""
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
        return out

    t0 = time.perf_counter()
    result = analyze(model, wav, log=lambda m: None, run_window=run_window)
    t_analyze = time.perf_counter() - t0
    rss_analyze = _hwm_mb()
    t0 = time.perf_counter()
    result.save(Path(out_dir) / "out")
    t_save = time.perf_counter() - t0
    return {
        "seconds": seconds, "model": which, "config": {"n_slots": model.config.n_slots,
                                                        "sample_rate": model.sample_rate,
                                                        "clip_seconds": model.config.clip_seconds},
        "threads": threads, "windows": result.n_windows, "window_s": result.window_s, "hop_s": result.hop_s,
        "objects": len(result.objects),
        "analyze_s": round(t_analyze, 2), "real_time_factor": round(t_analyze / seconds, 3),
        "save_and_report_s": round(t_save, 2),
        "real_time_factor_with_outputs": round((t_analyze + t_save) / seconds, 3),
        "rss_before_analyze_mb": round(rss_ready, 1), "peak_rss_analyze_mb": round(rss_analyze, 1),
        "peak_rss_after_window_mb": {str(i + 1): round(hwm[i], 1) for i in sorted(
            {0, min(4, len(hwm) - 1), len(hwm) // 4, len(hwm) // 2, 3 * len(hwm) // 4, len(hwm) - 1})},
        "peak_rss_total_mb": round(_hwm_mb(), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", nargs="+", type=float, default=[10, 60, 240, 600])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-minutes", type=float, default=5.0)
    ap.add_argument("--child", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.threads, args.dir)))
        return
    runs, skipped, rtf = [], [], None
    for seconds in sorted(args.seconds):
        if rtf is not None and rtf * seconds / 60 > args.max_minutes:
            skipped.append({"seconds": seconds, "reason": f"estimated {rtf * seconds / 60:.1f} min "
                            f"(real-time factor {rtf:.2f} with outputs) > --max-minutes {args.max_minutes:g}"})
            print(json.dumps(skipped[-1]))
            continue
        with tempfile.TemporaryDirectory(prefix="deepasa-bench-") as tmp:
            make_input(Path(tmp) / "input.wav", seconds)
            cmd = [sys.executable, __file__, "--child", str(seconds), "--threads", str(args.threads), "--dir", tmp]
            proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{seconds} s failed:\n{proc.stderr}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        rtf = runs[-1]["real_time_factor_with_outputs"]
        print(json.dumps(runs[-1]))
    peaks = [r["peak_rss_total_mb"] for r in runs]
    result = {
        "benchmark": "deepasa analyze: real-time factor (wall time / audio duration) and peak RSS vs input length",
        "command": "python benchmarks/analyze.py --seconds " + " ".join(f"{s:g}" for s in args.seconds)
                   + f" --threads {args.threads} --max-minutes {args.max_minutes:g}",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine(),
                    "note": "shared, noisy CPU (other jobs running); compare lengths within one run"},
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": runs, "skipped": skipped,
        "peak_rss_ratio_longest_to_shortest": round(peaks[-1] / peaks[0], 3) if len(peaks) > 1 else None,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
