"""class_probe.py (beside this file): its features against independent computations; a missing aisfx is a one-line
error. Run by hand (CI runs tests/ only): ``python -m pytest -q experiments/2026-12-01-class-probe``."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).resolve().parent / "class_probe.py"


@pytest.fixture(scope="module")
def cp():
    spec = importlib.util.spec_from_file_location("class_probe", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mel_filters_are_htk_triangles_of_unit_area(cp):
    fb = cp.mel_filterbank(sr=44100, n_fft=2048, n_mels=96)
    assert fb.shape == (96, 1025)
    np.testing.assert_allclose(fb.sum(1), 1.0, rtol=1e-9)
    # each filter peaks at its HTK centre frequency: mel(f) = 2595 log10(1 + f / 700), 98 equal steps to 22.05 kHz
    centres = 700 * (10 ** (np.arange(1, 97) * (2595 * np.log10(1 + 22050 / 700)) / 97 / 2595) - 1)
    bin_hz = 44100 / 2048
    peaks = fb.argmax(1) * bin_hz
    assert np.all(np.abs(peaks - centres) <= bin_hz)


def test_log_mel_of_a_tone_peaks_in_the_band_of_the_tone(cp):
    sr, f0 = 44100, 1000.0
    t = np.arange(2 * sr) / sr
    spec = cp.log_mel(0.3 * np.sin(2 * np.pi * f0 * t), cp.mel_filterbank())
    assert spec.shape == (1 + 2 * sr // 1024, 96)
    band = int(np.argmax(spec[5:-5].mean(0)))
    fb = cp.mel_filterbank()
    assert fb[band, int(round(f0 / (sr / 2048)))] == fb[:, int(round(f0 / (sr / 2048)))].max()
    # peak-normalised: the same features at any level
    np.testing.assert_allclose(cp.log_mel(0.01 * np.sin(2 * np.pi * f0 * t), fb), spec, atol=1e-9)


def test_the_probe_classifier_separates_separable_features(cp):
    rng = np.random.default_rng(0)
    means = rng.normal(0, 3, (4, 8))
    y_train, y_test = rng.integers(0, 4, 200), rng.integers(0, 4, 100)
    x_train = means[y_train] + rng.normal(0, 0.5, (200, 8))
    x_test = means[y_test] + rng.normal(0, 0.5, (100, 8))
    res = cp.probe(x_train, y_train, x_test, y_test, 4, steps=300)
    assert res["accuracy"] > 0.95 and res["balanced_accuracy"] > 0.95
    chance = cp.probe(x_train, y_train, rng.normal(0, 3, (100, 8)), y_test, 4, steps=300)
    assert chance["accuracy"] < 0.5                                    # no signal in the test features


def test_without_aisfx_the_script_says_how_to_install_it(tmp_path):
    # a module named aisfx that fails to import stands in for a machine without the package
    (tmp_path / "shadow").mkdir()
    (tmp_path / "shadow" / "aisfx.py").write_text('raise ImportError("No module named aisfx")\n')
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "shadow")}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--results", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "pip install --no-deps aisfx==0.1.2" in proc.stderr and not (tmp_path / "r.json").exists()


def test_scenes_mode_probes_the_separated_object_and_the_mixture(cp, tiny_bank_home, tmp_path, monkeypatch):
    import json

    import torch

    from deepasa.cli import main
    from deepasa.model import DeepASA
    from deepasa.model.configs import get_config
    from deepasa.scenes.soundbank import class_names

    one = ["--set", "duration=1.0", "--set", "sample_rate=8000", "--set", "num_sources=[1]",
           "--set", "num_sources_weights=[1.0]", "--quiet"]
    data = tmp_path / "scenes"
    for split, n, seed in (("train", 6, 1), ("val", 4, 2)):
        assert main(["simulate", "--home", str(tiny_bank_home), "--out", str(data), "--split", split,
                     "--num-scenes", str(n), "--seed", str(seed), *one]) == 0
    torch.manual_seed(0)
    model = DeepASA(get_config("tiny", n_classes=10))
    model.class_names = class_names()
    path = model.save(tmp_path / "m.pt")
    monkeypatch.setenv("DEEPASA_HOME", str(tiny_bank_home))
    out = tmp_path / "r.json"
    monkeypatch.setattr(sys, "argv", ["class_probe.py", "--scenes", str(data), "--model", str(path),
                                      "--train-scenes", "6", "--results", str(out)])
    assert cp.main() == 0
    res = json.loads(out.read_text())
    assert res["train_scenes"] == 6 and res["val_scenes"] == 4 and len(res["rows"]) == 5
    assert all(0 <= r["accuracy"] <= 1 and 0 <= r["balanced_accuracy"] <= 1 for r in res["rows"])
    assert res["rows"][-1]["features"].startswith("the model's own class output")
    assert res["command"].startswith("python experiments/2026-12-01-class-probe/class_probe.py --scenes")


def test_the_object_is_the_slot_closest_to_the_sources_image(cp):
    import torch

    n = 4000
    src = torch.randn(n)
    item = {"mixture": torch.randn(4, n), "direct": torch.zeros(5, 4, n), "reverb": torch.zeros(5, 4, n),
            "cls": torch.tensor([3, -1, -1, -1, -1])}
    item["direct"][0, 0] = src

    class Fake:                                       # slot 2 holds the source, the others noise
        class config:
            ref_mic, n_slots, n_classes = 0, 5, 10

        def __call__(self, x):
            image = torch.randn(1, 5, 4, n)
            image[0, 2, 0] = 0.5 * src + 0.01 * torch.randn(n)
            logits = torch.zeros(1, 5, 10)
            logits[0, 2, 7] = 1.0                      # the object's slot says class 7
            return type("Out", (), {"image": image, "cls_logits": logits})()

    seen = []
    emb = cp.scene_embeddings(Fake(), [item], 1, lambda w: seen.append(w) or torch.zeros(w.shape[0], 512))
    torch.testing.assert_close(seen[0][0], 0.5 * src, atol=0.05, rtol=0)      # the slot-2 image was embedded
    assert emb["model_pred"].tolist() == [7] and emb["label"].tolist() == [3]
