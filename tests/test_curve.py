"""recipes.curve: one learning-curve point from a real (tiny) training checkpoint."""

import csv
import json

import pytest

from deepasa.cli import main
from recipes import curve

from tests.test_train_cli import RECIPE, SIM


def test_curve_point_exports_evaluates_and_appends_a_row(tiny_bank_home, tmp_path, monkeypatch):
    data = tmp_path / "data"
    for split, n, seed in (("train", 2, 1), ("val", 2, 2)):
        assert main(["simulate", "--home", str(tiny_bank_home), "--out", str(data), "--split", split,
                     "--num-scenes", str(n), "--seed", str(seed), *SIM]) == 0
    run = tmp_path / "run"
    assert main(["train", "--config", RECIPE, f"--data.root={data}", f"--trainer.default_root_dir={run}",
                 "--trainer.enable_progress_bar=false", "--trainer.max_steps=2"]) == 0
    # a fixed set the tiny model can read: 8 kHz, 1 s (the shipped sets are 16 kHz, 4 s)
    sets = [s for s in SIM if s != "--set" and s != "--quiet"]
    monkeypatch.setitem(curve.SCENE_SETS, "tiny", (2, sets, "2 tiny val scenes"))
    ckpt, model, table = run / "checkpoints" / "last.ckpt", tmp_path / "m.pt", tmp_path / "curve.csv"
    args = [str(ckpt), "--model", str(model), "--scenes", "tiny", "--cache", str(tmp_path / "cache"),
            "--csv", str(table), "--json", str(tmp_path / "r.json"), "--home", str(tiny_bank_home)]
    assert curve.main(args) == 0
    assert curve.main(args) == 0                         # a second point: the scenes are reused, a row appended
    rows = list(csv.DictReader(open(table)))
    assert [r["global_step"] for r in rows] == ["2", "2"] and rows[0]["scene_passes"] == "4"   # 2 steps × batch 2
    report = json.loads((tmp_path / "r.json").read_text())
    assert float(rows[0]["detection_rate"]) == pytest.approx(report["objects"]["detection_rate"], abs=1e-4)
    assert float(rows[0]["frame_seld"]) == pytest.approx(report["seld"]["SELD"], abs=1e-4)
    assert rows[0] == rows[1] and model.is_file() and rows[0]["eval"].endswith("2 tiny val scenes")


def test_curve_bad_checkpoint_is_one_line(tmp_path, capsys):
    bad = tmp_path / "x.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as exc:
        from deepasa.errors import run_script
        run_script(lambda: curve.main([str(bad), "--model", str(tmp_path / "m.pt"), "--csv", str(tmp_path / "c.csv")]))
    assert exc.value.code == 2 and "not a readable training checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "c.csv").exists()


def test_scene_passes_count_the_runs_a_checkpoint_was_initialised_from():
    # run 3 of the shipped model starts from run 2's weights after 2,568 scenes (data.first_scene)
    ckpt = {"global_step": 250, "datamodule_hyper_parameters": {"batch_size": 4, "first_scene": 2568}}
    assert curve.scene_passes(ckpt) == 2568 + 250 * 4
    assert curve.scene_passes({"global_step": 3, "datamodule_hyper_parameters": {"batch_size": 2}}) == 6
    assert curve.scene_passes({"global_step": 5}) == 5                      # no data hyper-parameters: batch 1
