"""scripts/train_shipped.sh on bad input: one line on stderr, exit code 2, nothing written.

The script works relative to its own folder's parent (the repository root), so a copy of it in an empty
folder is a checkout with no run: ``save`` and ``curve`` have no ``last.ckpt`` to work from.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("args, message", [(["save"], "to save"), (["curve"], "to evaluate"),
                                            (["frobnicate"], "usage:"), (["status", "extra"], "usage:")])
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "train_shipped.sh", tmp_path / "scripts" / "train_shipped.sh")
    proc = subprocess.run(["bash", str(tmp_path / "scripts" / "train_shipped.sh"), *args], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr
    assert proc.stdout == ""
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "scripts", "scripts/train_shipped.sh"]                     # nothing written: no checkpoints/, no runs/
