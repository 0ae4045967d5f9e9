"""The trajectory-first pipeline (finder → spatial stage → class read-out) end to end, and its command line.

Independent truth: the recording (objects + noise must add up to it, at its own sample rate) and the
simulator's directions (a lone source must be found where it is).
"""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from deepasa.errors import DeepASAError
from deepasa.inference.trajectory_first import analyze_trajectories

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def scene():
    from deepasa.scenes.config import SceneConfig
    from deepasa.scenes.simulator import simulate_scene

    rng = np.random.default_rng(4)
    cfg = SceneConfig.from_dict({**SceneConfig().to_dict(), "moving_prob": 0.0, "rt60": [0.2, 0.3],
                                 "snr_db": [25.0, 30.0]})
    return simulate_scene(seed=8, config=cfg, sources=[("noise", rng.standard_normal(40000))])


def test_a_lone_source_is_found_where_it_is_and_the_parts_add_up(scene):
    result = analyze_trajectories(scene.mixture, "srp", classifier=False, log=lambda _m: None)
    assert len(result.objects) >= 1
    best = max(result.objects, key=lambda o: o.activity.sum())
    both = best.activity & scene.activity[0]
    assert both.sum() >= 0.5 * scene.activity[0].sum()
    cos = (best.doa[both] * scene.doa[0][both]).sum(-1)
    assert np.degrees(np.arccos(np.clip(np.median(cos), -1, 1))) < 15.0
    x = scene.mixture.astype(np.float64)
    parts = sum(o.signal("image") for o in result.objects) + result.noise
    assert 10 * np.log10(((parts - x) ** 2).sum() / (x ** 2).sum()) < -40
    assert all(o.class_name == "object" for o in result.objects)  # no read-out given: no class claimed


def test_other_sample_rates_come_back_at_their_rate(scene, tmp_path):
    from deepasa.audio.io import resample

    x48 = np.stack([resample(ch, 16000, 48000) for ch in scene.mixture]).astype(np.float32)  # (4, 3N)
    sf.write(tmp_path / "rec.wav", x48.T, 48000, subtype="FLOAT")
    result = analyze_trajectories(tmp_path / "rec.wav", "srp", classifier=False, log=lambda _m: None)
    parts = sum(o.signal("image") for o in result.objects) + result.noise
    assert parts.shape == x48.shape
    # the noise is the complement at the recording's rate, so the band above the pipeline's 8 kHz is kept too
    assert 10 * np.log10(((parts - x48) ** 2).sum() / (x48 ** 2).sum()) < -60


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(DeepASAError, match="expects 4"):
        analyze_trajectories(np.random.default_rng(0).standard_normal((2, 16000)), "srp", classifier=False)
    with pytest.raises(DeepASAError, match="no finder checkpoint"):
        analyze_trajectories(np.zeros((4, 16000)), "/nonexistent/finder.pt")


def test_command_line(scene, tmp_path):
    sf.write(tmp_path / "rec.wav", scene.mixture.T, 16000, subtype="FLOAT")
    cmd = [sys.executable, "-m", "deepasa.cli", "analyze", str(tmp_path / "rec.wav")]
    ok = subprocess.run(cmd + ["--out", str(tmp_path / "a"), "--finder", "srp", "--no-report"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "a" / "objects.json").is_file() and (tmp_path / "a" / "noise.wav").is_file()
    bad = subprocess.run(cmd + ["--out", str(tmp_path / "b"), "--finder", str(tmp_path / "none.pt")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert not (tmp_path / "b").exists()


def test_the_untrained_extractor_gives_the_spatial_stage(scene):
    from deepasa.model.extractor import ExtractorConfig, TrajectoryExtractor

    ext = TrajectoryExtractor(ExtractorConfig(hidden=8, n_blocks=1)).eval()
    a = analyze_trajectories(scene.mixture, "srp", classifier=False, extractor=ext, log=lambda _m: None)
    b = analyze_trajectories(scene.mixture, "srp", classifier=False, log=lambda _m: None)
    assert len(a.objects) == len(b.objects) >= 1
    for oa, ob in zip(a.objects, b.objects):
        np.testing.assert_allclose(oa.signal("image"), ob.signal("image"), atol=1e-5)


def test_pipeline_defaults_and_a_contradiction():
    from argparse import Namespace
    from pathlib import Path

    from deepasa.inference.commands import resolve_pipeline

    plain = Namespace(finder=None, separation=None, checkpoint=None, format=None)
    resolve_pipeline(plain)
    assert (plain.finder, plain.separation) == ("finder", "spatial")
    model = Namespace(finder=None, separation=None, checkpoint=Path("m.pt"), format=None)
    resolve_pipeline(model)  # a DeepASA checkpoint named: the network's analysis, as before
    assert (model.finder, model.separation) == ("network", "network")
    with pytest.raises(DeepASAError, match="needs --finder network"):
        resolve_pipeline(Namespace(finder="srp", separation="network", checkpoint=None, format=None))
