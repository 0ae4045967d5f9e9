"""model_size.py (beside this file): interleaved costs of model sizes, joined to their learning-speed rows.

Run by hand (CI runs tests/ only): ``python -m pytest -q experiments/2026-12-07-model-size``.
"""

import json
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import model_size  # noqa: E402


def test_measure_times_every_size_and_counts_its_parameters():
    torch.set_num_threads(1)
    cases = model_size.measure({"D8": {}, "D16": {"emb_dim": 16}}, batch=1, repeats=2, config="tiny", base={},
                               log=lambda _: None)
    assert [c["size"] for c in cases] == ["D8", "D16"]
    assert all(len(c["steps_s"]) == 2 and c["step_s"] > 0 for c in cases)
    assert cases[0]["cost_ratio"] == 1.0
    assert abs(cases[1]["cost_ratio"] - cases[1]["step_s"] / cases[0]["step_s"]) < 0.01
    assert abs(cases[0]["scene_passes_per_s"] - 1 / cases[0]["step_s"]) < 1e-3 * cases[0]["scene_passes_per_s"] + 1e-3
    # a wider trunk has more parameters on the separation path; the width-independent parts stay
    assert cases[1]["trunk_params"] > cases[0]["trunk_params"]
    assert cases[1]["params"] - cases[0]["params"] >= cases[1]["trunk_params"] - cases[0]["trunk_params"]
    assert cases[1]["set"] == ["emb_dim=16"] and cases[0]["set"] == []


def test_learning_rows_are_joined_by_the_model_they_trained(tmp_path):
    learn = tmp_path / "learn.json"
    rows = [{"variant": "v", "scenes": "2-moving", "model": m, "set": s, "scene_passes": 500, "si_sdri_db": x,
             "detection_rate": 0.5, "doa_error_median_deg": 20.0, "class_accuracy_all": 0.1, "loss": 1.0,
             "scene_passes_per_s": 0.2}
            for m, s, x in (("small2s", ["emb_dim=32"], 1.5), ("small2s", ["emb_dim=16"], 0.5),
                            ("small2s", ["emb_dim=48"], 9.0), ("bench", ["emb_dim=32"], 7.0))]
    learn.write_text(json.dumps({"rows": rows}))
    cases = [{"size": "D16 (shipped)", "overrides": {}, "set": [], "params": 1, "trunk_params": 1, "step_s": 1.0,
              "scene_passes_per_s": 4.0, "cost_ratio": 1.0},
             {"size": "D32", "overrides": {"emb_dim": 32}, "set": ["emb_dim=32"], "params": 2, "trunk_params": 2,
              "step_s": 1.5, "scene_passes_per_s": 2.7, "cost_ratio": 1.5}]
    joined = model_size.learning_rows(learn, cases)
    # emb_dim=16 is the shipped width (no override); emb_dim=48 is no size here; the bench model is another model
    assert sorted((r["size"], r["si_sdri_db"]) for r in joined) == [("D16 (shipped)", 0.5), ("D32", 1.5)]
    text = model_size.table({"cases": cases, "learning": joined})
    assert "| D32 | 2-moving | 500 | 1.50 |" in text and "| D16 (shipped) | 2-moving | 500 | 0.50 |" in text


def test_bad_input_exits_2_with_one_line(tmp_path):
    out = tmp_path / "m.json"
    for args in (["--repeats", "0", "--out", str(out)], ["--table", "--out", str(out)], ["--join", "--out", str(out)]):
        proc = subprocess.run([sys.executable, str(HERE / "model_size.py"), *args],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert not out.exists()
    bad = tmp_path / "bad.json"                                   # a results or learning file that is not JSON
    bad.write_text("garbage")
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"cases": []}))
    for args in (["--table", "--out", str(bad)], ["--join", "--out", str(good), "--learning", str(bad)]):
        proc = subprocess.run([sys.executable, str(HERE / "model_size.py"), *args],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert json.loads(good.read_text()) == {"cases": []}          # nothing written on the error
