"""doa_learning.py (beside this file): the scoring against hand-computed truth, and a quick end-to-end run.

Run by hand (CI runs tests/ only): ``python -m pytest -q experiments/2026-12-01-doa-learning``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(ROOT))                                   # tests.conftest

import doa_learning  # noqa: E402

from deepasa.cli import main  # noqa: E402
from tests.conftest import tiny_model_with_fixed_heads  # noqa: E402


@pytest.fixture(scope="module")
def sets(tiny_bank_home, tmp_path_factory):
    """A '1-static' scene set (8 kHz, 1 s, one static source): 8 training and 4 unseen scenes."""
    out = tmp_path_factory.mktemp("doa_sets")
    for split, n, seed in (("train", 8, 1), ("val", 4, 2)):
        assert main(["simulate", "--home", str(tiny_bank_home), "--out", str(out / "1-static"), "--split",
                     split, "--num-scenes", str(n), "--seed", str(seed),
                     "--quiet", "--set", "sample_rate=8000", "--set", "duration=1.0",
                     "--set", "event_duration=0.8,1.0", "--set", "num_sources=[1]",
                     "--set", "num_sources_weights=[1.0]", "--set", "moving_prob=0.0"]) == 0
    return out


def items(root, split, n):
    from deepasa.data.scenes import SceneDataset

    ds = SceneDataset(root, split)
    return [ds[i] for i in range(n)]


def test_score_of_a_fixed_direction_model_equals_the_hand_computed_angles(sets):
    """Every slot always active and pointing at +x: detection 1 and the angle to +x of each label."""
    model = tiny_model_with_fixed_heads(8.0, doa=[5.0, 0.0, 0.0])  # tanh(5) ≈ 1: ‖doa‖ > 0.5, direction +x
    its = items(sets / "1-static", "val", 4)
    m = doa_learning.score(model, its)
    expected = []
    for it in its:
        act = it["activity"][0] > 0.5
        ref = it["doa"][0][act]  # (n, 3) unit
        expected.append(float(torch.rad2deg(torch.acos(ref[:, 0].clamp(-1, 1))).mean()))
    assert m["n_sources"] == 4 and m["detection_rate"] == 1.0 and m["onoff_recall"] == 1.0
    assert m["false_alarm_rate"] == 1.0  # every empty slot (J - 1 per scene) is "active" too
    assert m["detection_rate_onoff"] == m["false_alarm_rate_onoff"] == 1.0
    assert m["doa_norm_active"] == pytest.approx(float(np.tanh(5.0)), abs=1e-5)
    assert m["doa_error_median_deg"] == pytest.approx(float(np.median(expected)), abs=1e-3)
    assert m["doa_error_detected_deg"] == pytest.approx(float(np.median(expected)), abs=1e-3)


def test_score_of_a_silent_model_detects_nothing(sets):
    model = tiny_model_with_fixed_heads(-8.0)
    m = doa_learning.score(model, items(sets / "1-static", "val", 4))
    assert m["detection_rate"] == 0.0 and m["doa_error_detected_deg"] != m["doa_error_detected_deg"]  # NaN
    assert m["false_alarm_rate"] == m["detection_rate_onoff"] == m["false_alarm_rate_onoff"] == 0.0


def test_quick_run_writes_rows_with_the_required_fields(sets, tmp_path):
    out = tmp_path / "doa.json"
    proc = subprocess.run([sys.executable, str(HERE / "doa_learning.py"), "--data", str(sets),
                           "--scenes", "1-static", "--variants", "gcc_mixture", "--model", "tiny",
                           "--quick", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["scene_passes"] for r in rows] == [8, 16]
    need = {"variant", "scenes", "scene_passes", "doa_error_median_deg", "doa_error_detected_deg",
            "detection_rate", "class_accuracy", "si_sdri_db", "command", "chosen", "scene_passes_per_s"}
    assert all(need <= set(r) for r in rows)
    assert rows[0]["model_overrides"] == {"doa_spatial": "gcc_mixture"} and "doa_learning.py" in rows[0]["command"]
    table = subprocess.run([sys.executable, str(HERE / "doa_learning.py"), "--table", "--out",
                            str(out)], capture_output=True, text=True, timeout=60)
    assert table.returncode == 0 and table.stdout.count("| gcc_mixture | 1-static |") == 2


def test_bad_input_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(HERE / "doa_learning.py"), "--data", str(tmp_path),
                           "--scenes", "1-static"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no scenes at" in proc.stderr
    bad = tmp_path / "bad.json"                                   # a results file that is not JSON
    bad.write_text("not json")
    table = subprocess.run([sys.executable, str(HERE / "doa_learning.py"), "--table", "--out", str(bad)],
                           capture_output=True, text=True, timeout=60)
    assert table.returncode == 2 and table.stderr.count("\n") == 1 and "is not a results file" in table.stderr


class _Stop(Exception):
    pass


def _args(sets, state, budgets):
    import argparse

    return argparse.Namespace(data=str(sets), model="tiny", set=[], batch=4, lr=1e-3, seed=0, val_n=2,
                              budgets=budgets, state=str(state) if state else None, state_every=1e9,
                              compile=False, command="test")


def test_a_stopped_run_continues_from_its_state_as_if_it_had_not_stopped(sets, tmp_path):
    """Stopped after the first budget, rerun: the second budget's row equals an uninterrupted run's."""
    torch.set_num_threads(1)
    straight = doa_learning.run_variant(_args(sets, None, [8, 16]), "gcc_mixture", "1-static", lambda _: None)

    def stop_after_first(rows):
        if len(rows) == 1:
            raise _Stop

    with pytest.raises(_Stop):
        doa_learning.run_variant(_args(sets, tmp_path, [8, 16]), "gcc_mixture", "1-static", lambda _: None,
                                 on_row=stop_after_first)
    assert (tmp_path / "gcc_mixture__1-static.pt").is_file()
    lines = []
    resumed = doa_learning.run_variant(_args(sets, tmp_path, [8, 16]), "gcc_mixture", "1-static", lines.append)
    assert any("continuing gcc_mixture on 1-static" in line for line in lines)
    assert [r["scene_passes"] for r in resumed] == [8, 16]
    for k in ("doa_error_median_deg", "si_sdri_db", "loss", "class_accuracy_all"):
        assert resumed[1][k] == pytest.approx(straight[1][k], rel=1e-4, abs=1e-4), k
    with pytest.raises(doa_learning.DeepASAError, match="other arguments"):
        doa_learning.run_variant(_args(sets, tmp_path, [8, 32]), "gcc_mixture", "1-static", lambda _: None)

    # a finished run extended by one more budget gives the uninterrupted run's row
    ext = tmp_path / "extend"
    doa_learning.run_variant(_args(sets, ext, [8]), "gcc_mixture", "1-static", lambda _: None)
    extended = doa_learning.run_variant(_args(sets, ext, [8, 16]), "gcc_mixture", "1-static", lambda _: None)
    assert [r["scene_passes"] for r in extended] == [8, 16]
    for k in ("doa_error_median_deg", "si_sdri_db", "loss", "class_accuracy_all"):
        assert extended[1][k] == pytest.approx(straight[1][k], rel=1e-4, abs=1e-4), k
    # --score-state re-scores the saved weights: the metrics of the row written at that pass count
    rescored = doa_learning.score_state(_args(sets, ext, [8, 16]), "gcc_mixture", "1-static")
    assert rescored["scene_passes"] == 16
    for k in ("doa_error_median_deg", "detection_rate", "si_sdri_db", "onoff_recall", "class_accuracy_all"):
        assert rescored[k] == pytest.approx(extended[1][k], rel=1e-5, abs=1e-6), k


def test_score_model_scores_a_saved_model_as_score_does(sets, tmp_path):
    """--score-model on a saved model gives the same numbers as score() on the loaded model, and a CSV row."""
    model = tiny_model_with_fixed_heads(8.0, doa=[5.0, 0.0, 0.0])
    path = tmp_path / "fixed.pt"
    model.save(path)
    csv_path = tmp_path / "scores.csv"
    proc = subprocess.run([sys.executable, str(HERE / "doa_learning.py"), "--data", str(sets),
                           "--scenes", "1-static", "--score-model", str(path), "--val-n", "4", "--threads", "1",
                           "--score-label", "fixed", "--score-csv", str(csv_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    direct = doa_learning.score(model, items(sets / "1-static", "val", 4))
    assert row["label"] == "fixed" and row["val_scenes"] == 4
    assert row["doa_error_median_deg"] == pytest.approx(direct["doa_error_median_deg"], abs=1e-3)
    assert row["detection_rate"] == direct["detection_rate"] == 1.0
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("label,scenes,val_scenes,doa_error_median_deg") and lines[1].startswith("fixed,1-static,4,")


def test_runs_that_differ_only_in_their_overrides_keep_rows_and_states_of_their_own(tmp_path):
    """A model-size sweep (the same variant and scenes, --set emb_dim=16 / 32) must not overwrite itself."""
    import argparse

    out = tmp_path / "size.json"

    def row(sets, passes):
        return {"variant": "gcc_mixture", "scenes": "2-moving", "model": "small2s", "set": sets,
                "scene_passes": passes}

    doa_learning.merge(out, [row(["emb_dim=16"], 500), row(["emb_dim=16"], 1000)])
    doa_learning.merge(out, [row(["emb_dim=32"], 500)])
    doa_learning.merge(out, [row(["emb_dim=16"], 500)])                      # a rerun replaces its own rows only
    rows = json.loads(out.read_text())["rows"]
    assert sorted((r["set"][0], r["scene_passes"]) for r in rows) == [("emb_dim=16", 500), ("emb_dim=32", 500)]
    paths = {doa_learning.state_path(argparse.Namespace(state=str(tmp_path), set=s), "v", "2-moving")
             for s in ([], ["emb_dim=16"], ["emb_dim=32"])}
    assert len(paths) == 3
