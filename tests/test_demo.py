"""`deepasa demo` on a tiny bank: prints the per-object table, writes the scene and the figure."""

import json

from deepasa.cli import main


def test_demo_writes_ground_truth(tiny_bank_home, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--home", str(tiny_bank_home), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "held-out test split" in text and "azimuth_deg" in text
    rows = json.loads((out / "ground_truth.json").read_text())
    assert rows and all(r["class"] in text for r in rows)
    assert (out / "ground_truth.png").stat().st_size > 10_000
    assert (out / "scene" / "test" / "mixed" / "000000.wav").is_file()
    if "\n0 object(s) estimated" in text:            # the model found nothing: the demo says why
        from deepasa.inference.result import NO_OBJECT

        assert NO_OBJECT in text
    # refuses to overwrite without --overwrite, and leaves the old result alone
    assert main(["demo", "--home", str(tiny_bank_home), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and (out / "ground_truth.png").is_file()
