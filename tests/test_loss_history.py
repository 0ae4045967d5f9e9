"""recipes.loss_history: two sessions' Lightning logs merged into one training-loss curve."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recipes import loss_history

HEADER = ["epoch", "lr-Adam", "step", "train/loss", "train/doa", "train_epoch/loss", "val/loss"]


def write_metrics(path: Path, steps, loss_of, lr: float) -> Path:
    """A metrics.csv as Lightning writes it: the learning rate and the losses on separate rows, a val row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for s in steps:
            w.writerow(["", lr, s, "", "", "", ""])
            w.writerow([s // 50, "", s, loss_of(s), 0.5 * loss_of(s), "", ""])
        w.writerow([0, "", steps[-1], "", "", 100.0 + steps[-1], ""])   # the epoch mean, on its last step
        w.writerow([0, "", steps[-1], "", "", "", 9.0])  # validation only: no training value
    return path


def read(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_two_sessions_merge_by_step_and_a_rerun_adds_nothing(tmp_path):
    first = write_metrics(tmp_path / "a/metrics.csv", list(range(0, 100, 10)), lambda s: 10.0 - s / 10, 1e-3)
    # the second session resumed at step 60 (a kill lost steps 60-90): its values for those steps win
    second = write_metrics(tmp_path / "b/metrics.csv", list(range(60, 160, 10)), lambda s: -s / 10, 5e-4)
    out = tmp_path / "hist.csv"
    assert loss_history.main([str(first), "--out", str(out)]) == 0
    assert len(read(out)) == 10 and float(read(out)[-1]["train_epoch/loss"]) == 190.0
    assert loss_history.main([str(second), "--out", str(out)]) == 0
    rows = read(out)
    assert [int(r["step"]) for r in rows] == list(range(0, 160, 10))
    by_step = {int(r["step"]): r for r in rows}
    assert float(by_step[50]["train/loss"]) == pytest.approx(5.0) and float(by_step[50]["lr"]) == 1e-3
    assert float(by_step[60]["train/loss"]) == pytest.approx(-6.0) and float(by_step[60]["lr"]) == 5e-4
    assert float(by_step[150]["train/doa"]) == pytest.approx(-7.5)
    # the epoch means: the second session's at its last step; the first one's step 90 was logged again by the
    # second session (without an epoch end there), and that later row wins
    assert float(by_step[150]["train_epoch/loss"]) == 250.0
    assert by_step[90]["train_epoch/loss"] == "" and by_step[80]["train_epoch/loss"] == ""
    assert "val/loss" not in rows[0]
    before = out.read_text()
    assert loss_history.main([str(second), "--out", str(out)]) == 0
    assert out.read_text() == before


def test_bin_means_match_a_direct_mean(tmp_path):
    rng = np.random.default_rng(0)
    values = {s: float(v) for s, v in zip(range(0, 300, 10), rng.normal(size=30))}
    path = write_metrics(tmp_path / "m.csv", list(values), values.__getitem__, 1e-3)
    rows = loss_history.merge_into(tmp_path / "h.csv", *loss_history.read_metrics([path]))
    bins = loss_history.bin_means(rows, 100)
    assert [(b["step_start"], b["rows"]) for b in bins] == [(0, 10), (100, 10), (200, 10)]
    for b in bins:
        direct = np.mean([v for s, v in values.items() if b["step_start"] <= s < b["step_end"]])
        assert b["train/loss"] == pytest.approx(direct, rel=1e-5)


@pytest.mark.parametrize("case", ["missing", "not_metrics", "not_history", "bad_step"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, case):
    good = write_metrics(tmp_path / "m.csv", [0, 10], lambda s: 1.0, 1e-3)
    out = tmp_path / "h.csv"
    if case == "missing":
        args = [str(tmp_path / "nope.csv"), "--out", str(out)]
    elif case == "not_metrics":
        (tmp_path / "x.csv").write_text("a,b\n1,2\n")
        args = [str(tmp_path / "x.csv"), "--out", str(out)]
    elif case == "not_history":
        out.write_text("foo,bar\n1,2\n")
        args = [str(good), "--out", str(out)]
    else:
        out.write_text("step,lr,train/loss\n10,0.001,1.5\nabc,0.001,1.0\n")
        args = [str(good), "--out", str(out)]
    before = out.read_text() if out.exists() else None
    proc = subprocess.run([sys.executable, "-m", "recipes.loss_history", *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "error:" in proc.stderr
    assert (out.read_text() if out.exists() else None) == before
