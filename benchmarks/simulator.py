"""Simulator throughput: four-second MIC scenes per hour with 1 and 2 workers, and where the time goes.

Runs the real command (``deepasa simulate``, defaults = the ASA recipe, MIC format, float32 wav) on the
fetched sound bank into a temporary folder, and writes ``benchmarks/results/simulator.json``.

    python benchmarks/simulator.py [--scenes 120]

The issue's target: ≥ 2000 scenes per hour with 2 workers on the 2-core development machine. Both worker
counts are measured in the same run, so their ratio is meaningful even on a noisy, shared machine.
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

RESULTS = Path(__file__).resolve().parent / "results" / "simulator.json"


def run(workers: int, scenes: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "deepasa.cli", "simulate", "--out", str(out), "--num-scenes", str(scenes),
           "--split", "train", "--seed", "0", "--workers", str(workers), "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"deepasa simulate failed: {proc.stderr.strip()}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    cpu = summary["cpu_s"]
    total = sum(cpu.values())
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {
        "workers": workers, "scenes": scenes, "wall_s": round(wall, 2),
        "scenes_per_hour": round(3600 * scenes / wall, 1),
        "time_split_s": cpu, "time_split_fraction": {k: round(v / total, 3) for k, v in cpu.items()},
        "mean_scene_cpu_s": round(total / scenes, 3), "disk_mb_per_scene": round(size / scenes / 1e6, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=120)
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            runs.append(run(workers, args.scenes, Path(tmp) / f"w{workers}"))
            print(json.dumps(runs[-1]))
    two = runs[1]["scenes_per_hour"]
    result = {
        "benchmark": "simulator throughput (deepasa simulate, defaults, MIC, 4 s, 16 kHz)",
        "command": f"python benchmarks/simulator.py --scenes {args.scenes}",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "runs": runs,
        "speedup_2_vs_1_workers": round(two / runs[0]["scenes_per_hour"], 2),
        "target_scenes_per_hour_2_workers": 2000, "meets_target": two >= 2000,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}: {two:.0f} scenes/hour with 2 workers")


if __name__ == "__main__":
    main()
