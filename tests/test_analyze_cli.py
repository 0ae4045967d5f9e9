"""``deepasa analyze`` end to end with a saved tiny model, its output layout and files, and every bad input.

The tiny model is untrained, so its decisions are meaningless; its activity and DoA output biases are set so
that every slot is active (towards a known direction), which makes every slot an object and lets the test
check the plumbing: files, formats, schema, report. The content checks against independent truth are in
test_analyze_stitching.py / test_analyze_longfile.py (known outputs) and test_analyze_shipped.py.
"""

import base64
import json
import shutil
import re

import numpy as np
import pytest
import soundfile as sf
from conftest import tiny_model_with_fixed_heads
from deepasa.cli import main
from deepasa.metrics.seld_dcase import read_dcase_csv

DOA_BIAS = (3.0, 1.0, 0.5)  # tanh -> (0.995, 0.762, 0.462): azimuth 37.4°, elevation 19.2°


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """A saved tiny model whose slots are all active towards DOA_BIAS."""
    model = tiny_model_with_fixed_heads(8.0, DOA_BIAS)
    return model.save(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def scene_wav(tmp_path_factory):
    """A simulated 4-s, 4-channel, 16-kHz scene with two sources (the tiny model runs at 8 kHz)."""
    from deepasa.scenes.simulator import simulate_scene

    rng = np.random.default_rng(0)
    scene = simulate_scene(seed=1, sources=[("speech", rng.standard_normal(48000)),
                                            ("machine", rng.standard_normal(32000))])
    path = tmp_path_factory.mktemp("in") / "scene.wav"
    sf.write(path, scene.mixture.T, 16000, subtype="FLOAT")
    return path


def test_analyze_writes_the_design_layout(tiny_ckpt, scene_wav, tmp_path, capsys):
    out = tmp_path / "analysis"
    rc = main(["analyze", str(scene_wav), "--out", str(out), "--checkpoint", str(tiny_ckpt), "--hop", "1"])
    assert rc == 0
    captured = capsys.readouterr()
    assert "resampling" in captured.err and "16000 Hz to 8000 Hz" in captured.err
    doc = json.loads((out / "objects.json").read_text())
    # --- objects.json schema
    assert doc["format"] == "deepasa-objects/1" and doc["sample_rate"] == 16000 and doc["model_sample_rate"] == 8000
    assert doc["n_frames"] == 40 and doc["label_hop_s"] == 0.1 and doc["n_windows"] == 4
    assert len(doc["class_names"]) == 13 and doc["noise"] == "noise.wav"
    objs = doc["objects"]
    assert [o["id"] for o in objs] == list(range(5))  # all five slots are active everywhere
    az_true = np.degrees(np.arctan2(np.tanh(DOA_BIAS[1]), np.tanh(DOA_BIAS[0])))
    for o in objs:
        assert set(o) >= {"id", "class", "class_index", "confidence", "segments", "doa", "files", "folder"}
        assert o["folder"] == f"objects/{o['id']}_{o['class']}" and 0 < o["confidence"] <= 1
        assert o["segments"] == [{"onset_s": 0.0, "offset_s": 4.0}]
        assert len(o["doa"]) == 40 and [d["frame"] for d in o["doa"]] == list(range(40))
        assert all(abs(d["azimuth_deg"] - az_true) < 0.01 for d in o["doa"])
        for kind in ("image", "direct", "reverb"):
            info = sf.info(str(out / o["files"][kind]))
            assert (info.channels, info.samplerate, info.frames) == (4, 16000, 64000)
    # image = direct + reverb (the model's image head is their sum)
    o0 = out / objs[0]["folder"]
    img, direct, rev = (sf.read(o0 / f"{k}.wav", always_2d=True)[0] for k in ("image", "direct", "reverb"))
    np.testing.assert_allclose(img, direct + rev, atol=1e-4)
    assert sf.info(str(out / "noise.wav")).frames == 64000
    # --- events.csv: DCASE 2023 5-column rows, parsed by the metric's reader, consistent with objects.json
    lines = (out / "events.csv").read_text().splitlines()
    assert len(lines) == 5 * 40 and all(re.fullmatch(r"\d+,\d+,\d+,-?\d+\.\d\d,-?\d+\.\d\d", ln) for ln in lines)
    frames = read_dcase_csv(out / "events.csv")
    assert sorted(frames) == list(range(40))
    by_id = {o["id"]: o for o in objs}
    for frame, rows in frames.items():
        assert sorted(r[1] for r in rows) == list(range(5))
        for cls, track, xyz in rows:
            assert cls == by_id[track]["class_index"]
            d = by_id[track]["doa"][frame]
            np.testing.assert_allclose(xyz, d["xyz"] / np.linalg.norm(d["xyz"]), atol=1e-3)
    # --- report: self-contained, with embedded figures and audio; PNGs beside it
    html = (out / "report.html").read_text()
    pngs = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    wavs = re.findall(r"data:audio/wav;base64,([A-Za-z0-9+/=]+)", html)
    assert len(pngs) == 2 + 5 and len(wavs) == 1 + 5
    assert all(base64.b64decode(p)[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert all(base64.b64decode(w)[:4] == b"RIFF" for w in wavs)
    assert not re.search(r"(src|href)=['\"](?!data:)", html)  # nothing loaded from elsewhere
    assert {p.name for p in (out / "figures").iterdir()} == {"mixture.png", "directions_top_view.png"} | {
        f"object_{i}.png" for i in range(5)}
    assert not list(tmp_path.glob(".analysis*"))  # no temporary folder left
    # --- an existing output is refused, then replaced with --overwrite
    assert main(["analyze", str(scene_wav), "--out", str(out), "--checkpoint", str(tiny_ckpt)]) == 2
    assert "exists" in capsys.readouterr().err


def test_a_model_that_detects_nothing_says_so(scene_wav, tmp_path, capsys):
    """All slots silent (on/off bias −8): no object, an empty events.csv, and the summary and the report say
    why (the decision rule) instead of showing an empty table."""
    from deepasa.inference.result import NO_OBJECT

    ckpt = tiny_model_with_fixed_heads(-8.0).save(tmp_path / "silent.pt")
    out = tmp_path / "analysis"
    assert main(["analyze", str(scene_wav), "--out", str(out), "--checkpoint", str(ckpt)]) == 0
    assert NO_OBJECT in capsys.readouterr().out
    assert json.loads((out / "objects.json").read_text())["objects"] == []
    assert (out / "events.csv").read_text() == "" and not any((out / "objects").iterdir())
    assert "No object found: no slot had a 100-ms frame" in (out / "report.html").read_text()


def _write(path, data, rate=8000, **kw):
    sf.write(path, data, rate, **kw)
    return path


def _bad_inputs(tmp_path):
    rng = np.random.default_rng(1)
    good = rng.standard_normal((8000, 4)).astype(np.float32) * 0.1
    nan = good.copy()
    nan[100, 2] = np.nan
    inf = good.copy()
    inf[5, 0] = np.inf
    foa = good.copy()
    foa[:, 1:] *= 0.3  # W dominant: first-order Ambisonics, not four omni capsules
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage" + bytes(100))
    return {
        "nan": (_write(tmp_path / "nan.wav", nan, subtype="FLOAT"), "NaN or Inf"),
        "inf": (_write(tmp_path / "inf.wav", inf, subtype="FLOAT"), "NaN or Inf"),
        "empty": (_write(tmp_path / "empty.wav", np.zeros((0, 4), np.float32)), "no samples"),
        "silent": (_write(tmp_path / "silent.wav", np.zeros((8000, 4), np.float32)), "silent"),
        "corrupt": (corrupt, "cannot read"),
        "missing": (tmp_path / "nope.wav", "no such audio file"),
        "stereo": (_write(tmp_path / "stereo.flac", good[:, :2]), "2 channel(s); the model expects 4"),
        "foa_as_mic": (_write(tmp_path / "foa.ogg", foa, format="OGG", subtype="VORBIS"), "Ambisonics"),
    }


def test_bad_inputs_exit_2_and_leave_no_output(tiny_ckpt, tmp_path, capsys):
    cases = _bad_inputs(tmp_path)
    for name, (path, message) in cases.items():
        out = tmp_path / f"out_{name}"
        rc = main(["analyze", str(path), "--out", str(out), "--checkpoint", str(tiny_ckpt)])
        err = capsys.readouterr().err.strip()
        assert rc == 2, name
        assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err, (name, err)
        assert not out.exists() and not list(tmp_path.glob(f".out_{name}*")), name
    # model-level refusals: a format the model was not trained on, a missing checkpoint, bad windows
    good = _write(tmp_path / "good.wav", np.random.default_rng(2).standard_normal((8000, 4)) * 0.1)
    for args, message in ((["--format", "foa"], "trained on mic"),
                          (["--checkpoint", str(tmp_path / "none.pt")], "checkpoint not found"),
                          (["--window", "1", "--hop", "2"], "hop <= window")):
        argv = ["analyze", str(good), "--out", str(tmp_path / "o")]
        argv += ([] if "--checkpoint" in args else ["--checkpoint", str(tiny_ckpt)]) + args
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
        assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.*"))


def test_python_api_array_input_and_save(tiny_ckpt, tmp_path):
    from deepasa.inference import analyze, load_model

    model = load_model(tiny_ckpt)
    x = np.random.default_rng(3).standard_normal((4, 12000)).astype(np.float32) * 0.1  # 1.5 s at 8 kHz
    res = analyze(model, x, hop=1.0, log=lambda m: None)
    root = res.root
    assert root.exists() and len(res.objects) == 5 and res.n_windows == 2
    assert res.objects[0].image.shape == (4, 12000)
    saved = res.save(tmp_path / "a", report=False)
    assert not root.exists() and res.root == saved and res.objects[0].path().is_file()
    assert res.save(tmp_path / "b", report=False).is_dir() and (tmp_path / "a" / "objects.json").is_file()
    assert (tmp_path / "b" / res.objects[4].files["reverb"]).is_file()  # copied once saved
    with pytest.raises(Exception, match="expects 4"):
        analyze(model, x[:3], log=lambda m: None)


def test_demo_with_a_model_prints_the_per_object_table(tiny_bank_home, tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--home", str(tiny_bank_home), "--out", str(out), "--checkpoint", str(tiny_ckpt)]) == 0
    text = capsys.readouterr().out
    assert "true_class" in text and "si_sdr_db" in text and "doa_error_deg" in text
    scores = json.loads((out / "scores.json").read_text())
    truth = json.loads((out / "ground_truth.json").read_text())
    assert [r["true_class"] for r in scores] == [r["class"] for r in truth]
    assert all(r["estimate"] is not None and np.isfinite(r["si_sdr_db"]) for r in scores)
    assert (out / "analysis" / "report.html").is_file() and str(out / "analysis" / "report.html") in text


def test_demo_without_a_model_says_so(tiny_bank_home, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--home", str(tiny_bank_home), "--out", str(out), "--checkpoint",
                 str(tmp_path / "absent.pt")]) == 0
    text = capsys.readouterr().out
    assert "model missing" in text and "azimuth_deg" in text and not (out / "analysis").exists()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium not installed")
def test_report_renders_in_headless_chromium(tiny_ckpt, scene_wav, tmp_path):
    """The self-contained report opens offline in a real browser and draws its figures (not a blank page)."""
    import subprocess

    import matplotlib.image as mpimg

    out = tmp_path / "analysis"
    assert main(["analyze", str(scene_wav), "--out", str(out), "--checkpoint", str(tiny_ckpt)]) == 0
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                    f"--screenshot={shot}", "--window-size=1200,1600", (out / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    img = mpimg.imread(shot)  # (H, W, 3|4) in [0, 1]
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    dark = (img[..., :3].mean(axis=-1) < 0.5).mean()  # spectrograms and text, not an empty white page
    assert dark > 0.02 and img[..., :3].std() > 0.1
