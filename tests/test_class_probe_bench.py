"""benchmarks/class_probe.py: its features against independent computations; a missing aisfx is a one-line error."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "class_probe.py"


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
