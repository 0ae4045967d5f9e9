"""``deepasa evaluate-seld`` on temporary CSV folders: one JSON object, and exit code 2 on bad input."""

import json

import pytest

from deepasa.cli import main


def _write(folder, name, lines):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(lines) + "\n")


@pytest.fixture
def folders(tmp_path):
    ref, pred = tmp_path / "ref" / "dev-test-sony", tmp_path / "pred"       # references in a split sub-folder
    _write(ref, "fold4_room1_mix001.csv", [f"{f},0,0,30,0" for f in range(20)])
    _write(ref, "fold4_room1_mix002.csv", [f"{f},1,0,-90,10" for f in range(10, 30)])
    _write(pred, "fold4_room1_mix001.csv", [f"{f},0,0,30,0" for f in range(20)])
    _write(pred, "fold4_room1_mix002.csv", [f"{f},1,0,0.0,-1.0,0.0,0" for f in range(10, 30)])   # Cartesian
    return tmp_path / "pred", tmp_path / "ref"


def test_evaluate_seld_prints_one_json_object(folders, capsys):
    pred, ref = folders
    assert main(["evaluate-seld", "--pred", str(pred), "--ref", str(ref), "--classes", "2", "--average", "micro"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    result = json.loads(out[0])
    assert {"ER", "F", "LE", "LR", "SELD"} <= set(result)
    # mix001: 2 TPs at 0°; mix002: frames 10..29 → length 29 → segments 1 and 2, DoA (-90°, 10°) vs (-90°, 0°)
    # → 10° → 2 TPs. ER 0, F 1, LE (0+0+10+10)/4 = 5, LR 1.
    assert result["ER"] == pytest.approx(0.0)
    assert result["F"] == pytest.approx(1.0)
    assert result["LE"] == pytest.approx(5.0, abs=1e-2)
    assert result["LR"] == pytest.approx(1.0)


def test_evaluate_seld_jackknife(folders, capsys):
    pred, ref = folders
    assert main(["evaluate-seld", "--pred", str(pred), "--ref", str(ref), "--classes", "2", "--jackknife"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["jackknife"]) == {"ER", "F", "LE", "LR", "SELD"}
    assert len(result["jackknife"]["SELD"]["ci"]) == 2


@pytest.mark.parametrize("breakage", ["missing_dir", "no_csv", "malformed", "unmatched", "bad_class"])
def test_bad_input_exits_2_with_one_line(folders, capsys, breakage, tmp_path):
    pred, ref = folders
    if breakage == "missing_dir":
        pred = tmp_path / "nope"
    elif breakage == "no_csv":
        pred = tmp_path / "empty"
        pred.mkdir()
    elif breakage == "malformed":
        (pred / "fold4_room1_mix001.csv").write_text("0,0,0,thirty,0\n")
    elif breakage == "unmatched":
        (pred / "fold4_room1_mix002.csv").rename(pred / "other.csv")
    elif breakage == "bad_class":
        (pred / "fold4_room1_mix001.csv").write_text("0,7,0,30,0\n")
    code = main(["evaluate-seld", "--pred", str(pred), "--ref", str(ref), "--classes", "2"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deepasa evaluate-seld: error:")
