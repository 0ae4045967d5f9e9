"""benchmarks/train_speed.py: its quick run writes the documented JSON; bad options are one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "train_speed.py"
KEYS = {"config", "coi", "batch", "threads", "baseline_scene_passes_per_s", "fast_scene_passes_per_s", "speedup",
        "data_wait_fraction"}


def test_quick_run_writes_the_cases(tmp_path):
    out = tmp_path / "speed.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["benchmark"] == "train_speed" and "--quick" in res["command"].split()  # the command as run
    (case,) = res["cases"]
    assert KEYS <= set(case) and case["config"] == "tiny" and case["batch"] == 1
    # passes per second are batch / median step time, and the speedup their ratio
    assert abs(case["baseline_scene_passes_per_s"] - 1 / case["baseline_step_s"]) < 1e-3 * case[
        "baseline_scene_passes_per_s"] + 1e-4
    assert abs(case["speedup"] - case["baseline_step_s"] / case["fast_step_s"]) < 1e-2
    assert isinstance(res["machine"]["bf16_matrix_units"], bool)


def test_bad_options_are_one_line_errors(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--threads", "0", "--out", str(tmp_path / "x.json")],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()
