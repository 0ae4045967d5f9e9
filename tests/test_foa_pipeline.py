"""First-order Ambisonics through the trajectory-first pipeline: the spatial stage, the intensity finder and
``analyze`` on FOA (issue 39).

Independent truth: ACN/SN3D plane waves built from the encoding gains (1, y, z, x) of known directions; a
rotation about the vertical axis is exact in FOA (a linear map of X and Y), so every estimated direction must
turn with it and W-channel outputs must not change.
"""

import numpy as np
import pytest
import torch

from deepasa.audio.geometry import azimuth_elevation, foa_gains, unit_vector
from deepasa.errors import DeepASAError
from deepasa.metrics.separation import si_sdr
from deepasa.separation import SpatialConfig, separate
from deepasa.separation.spatial import FOA, direction_masks

FS = 16000


def _foa(sig: np.ndarray, az: float, el: float = 0.0) -> np.ndarray:
    """(N,) → (4, N): an ACN/SN3D plane wave from (az, el) degrees."""
    return foa_gains(unit_vector(az, el))[:, None] * sig[None]


def _rotate(x: np.ndarray, deg: float) -> np.ndarray:
    """Rotate an FOA signal (4, N) about the vertical axis by ``deg`` (azimuths grow by deg)."""
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    w, y, z, xx = x
    return np.stack([w, s * xx + c * y, z, c * xx - s * y])


def _two_sources(n_s: float = 3.0):
    rng = np.random.default_rng(1)
    n = int(n_s * FS)
    t = int(n_s * 10)
    act = np.ones((2, t), bool)
    act[1, : t // 3] = False
    gate = np.repeat(act[1], FS // 10)[:n]
    s1, s2 = rng.standard_normal(n), rng.standard_normal(n) * gate
    refs = np.stack([_foa(s1, 40, 0), _foa(s2, -110, 20)])  # (2, 4, N)
    doa = np.stack([np.tile(unit_vector(40, 0), (t, 1)), np.tile(unit_vector(-110, 20), (t, 1))])  # (2, T', 3)
    return refs.sum(0), refs, act, doa


def test_foa_plane_wave_gets_its_object():
    x = _foa(np.random.default_rng(0).standard_normal(FS), 70, 10)
    spec = torch.stft(torch.as_tensor(x, dtype=torch.float32), 512, 128, window=torch.hann_window(512),
                      return_complex=True)  # (4, F, T)
    t = spec.shape[-1]
    doa = torch.stack([torch.as_tensor(unit_vector(70, 10)).expand(t, 3),
                       torch.as_tensor(unit_vector(-60, 0)).expand(t, 3)])  # (2, T, 3)
    mask = direction_masks(spec, torch.ones(2, t, dtype=torch.bool), doa, FOA, FS, SpatialConfig())
    assert mask[0, 5:].mean() > 0.99                                   # every audible bin to the right object


def test_two_foa_plane_waves_separate_and_add_up():
    x, refs, act, doa = _two_sources()
    exact = separate(x, act, doa, fmt="foa", config=SpatialConfig(covariance="plane_wave"))
    for k in range(2):
        assert si_sdr(exact.image[k, 0], refs[k, 0]) > 20.0            # the plane-wave model is exact here
    masked = separate(x, act, doa, fmt="foa")
    for k in range(2):
        assert si_sdr(masked.image[k, 0], refs[k, 0]) > 8.0
    assert np.abs(masked.image.sum(0) + masked.remainder - x).max() < 1e-4
    np.testing.assert_allclose(masked.direct + masked.reverb, masked.image, atol=1e-5)


def test_foa_stage_commutes_with_rotation():
    x, _, act, doa = _two_sources(2.0)
    act, doa = act[:, :20], doa[:, :20]
    out = separate(x, act, doa, fmt="foa")
    rot = np.array([[np.cos(np.radians(75)), -np.sin(np.radians(75)), 0],
                    [np.sin(np.radians(75)), np.cos(np.radians(75)), 0], [0, 0, 1]])
    turned = separate(_rotate(x, 75), act, doa @ rot.T, fmt="foa")
    np.testing.assert_allclose(turned.image[:, 0], out.image[:, 0], atol=1e-4 * np.abs(out.image).max())
    np.testing.assert_allclose(turned.image, np.stack([_rotate(im, 75) for im in out.image]),
                               atol=1e-4 * np.abs(out.image).max())


def _found_azimuths(x):
    from deepasa.tracking.foa import IntensityTracker
    from deepasa.tracking.tracker import track

    tr = IntensityTracker()
    tracks = track(tr.detections(tr.score_map(x)), max_objects=None, **tr.track_kwargs)
    out = []
    for k in range(tracks.n_objects):
        az, el = azimuth_elevation(tracks.doa[k][tracks.activity[k]])
        out.append((float(np.median(az)), float(np.median(el)), int(tracks.activity[k].sum())))
    return sorted(out, key=lambda r: -r[2])


def test_intensity_finder_finds_planted_sources_and_turns_with_the_scene():
    x, _, _, _ = _two_sources()
    found = _found_azimuths(x)
    assert len(found) >= 2
    top = sorted(found[:2])
    # shared bins pull each intensity direction towards the other source: a few degrees of bias
    assert abs(top[0][0] + 110) < 8 and abs(top[0][1] - 20) < 8 and abs(top[1][0] - 40) < 8 and abs(top[1][1]) < 8
    errors = []
    for theta in range(30, 360, 30):
        turned = sorted(_found_azimuths(_rotate(x, theta))[:2])
        undone = sorted(((a - theta + 180) % 360 - 180, e) for a, e, _ in turned)
        for (a, e), (a0, e0, _) in zip(undone, top):
            errors.append(abs((a - a0 + 180) % 360 - 180) + abs(e - e0))
    assert np.median(errors) <= 3.0                                    # the rotation-consistency check


def test_analyze_reads_foa_by_itself(tmp_path):
    from deepasa.inference.trajectory_first import analyze_trajectories

    x, _, _, _ = _two_sources()
    notes = []
    result = analyze_trajectories(0.05 * x, sample_rate=FS, classifier=False, log=notes.append)
    assert result.fmt == "foa" and result.model_info["format"] == "foa"
    assert any("first-order Ambisonics" in m for m in result.messages)
    az = sorted(float(np.median(o.azimuth[o.activity])) for o in result.objects[:2])
    assert abs(az[0] + 110) < 8 and abs(az[1] - 40) < 8
    with pytest.raises(DeepASAError, match="looks like first-order Ambisonics"):
        analyze_trajectories(0.05 * x, sample_rate=FS, classifier=False, fmt="mic", log=notes.append)
    assert result.model_info["finder"] == "srp"  # FOA's default finder: the active-intensity map
    # a finder checkpoint reads FOA through the virtual MIC rendering (its physics: tests/test_foa_virtual_mic.py;
    # two equal white noises share every bin, so its directions here are not the sources': not checked)
    bridged = analyze_trajectories(0.05 * x, "checkpoints/finder.pt", sample_rate=FS, classifier=False, fmt="foa",
                                   log=notes.append)
    assert bridged.fmt == "foa" and bridged.model_info["finder"].endswith("finder.pt") and bridged.objects


def test_fuma_is_converted_and_told_apart():
    from deepasa.audio.geometry import FUMA_TO_AMBIX
    from deepasa.inference.trajectory_first import analyze_trajectories

    x, _, _, _ = _two_sources()
    fuma = np.linalg.solve(FUMA_TO_AMBIX, 0.05 * x)                     # the same field as FuMa B-format
    notes = []
    result = analyze_trajectories(fuma, sample_rate=FS, classifier=False, fmt="foa", foa_convention="fuma",
                                  log=notes.append)
    az = sorted(float(np.median(o.azimuth[o.activity])) for o in result.objects[:2])
    assert abs(az[0] + 110) < 8 and abs(az[1] - 40) < 8
    assert any("converted to AmbiX" in m for m in result.messages)
    parts = sum(o.signal("image") for o in result.objects) + result.noise  # AmbiX outputs add up to AmbiX input
    np.testing.assert_allclose(parts, 0.05 * x, atol=1e-4 * np.abs(x).max())
    with pytest.raises(DeepASAError, match="FuMa"):                    # not told which: refuse, say how
        analyze_trajectories(fuma, sample_rate=FS, classifier=False, log=notes.append)
    declared = analyze_trajectories(fuma, sample_rate=FS, classifier=False, fmt="foa", log=notes.append)
    assert any("--foa-convention fuma" in m for m in declared.messages)
