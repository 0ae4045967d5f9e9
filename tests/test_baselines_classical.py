"""The classical baseline (BSS + WPE + SRP-PHAT) against physical truth from independent simulations.

Scenes are simulated with pyroomacoustics directly (not with deepasa's simulator), with the tetrahedral MIC
array of deepasa.audio.geometry; true directions are computed from the positions here.
"""

import functools

import numpy as np
import pyroomacoustics as pra
import pytest
import torch

from deepasa.audio.geometry import tetra_mic_offsets
from deepasa.baselines.classical import ClassicalBaseline, srp_phat_maps
from deepasa.metrics import angular_error_deg, si_sdr

FS = 16000
ROOM = [6.0, 5.0, 3.0]
CENTRE = np.array([2.6, 2.4, 1.4])


def _modulated_noise(rng, n, block=800):
    """Non-stationary, non-Gaussian test signal (IVA needs one): noise with a random envelope per 50 ms."""
    env = np.repeat(rng.exponential(1.0, n // block + 1) ** 2, block)[:n]  # (n,)
    return rng.standard_normal(n) * env


def _room_signals(sources, rt60=None, n=4 * FS):
    """Mic signals of static point sources in a shoebox room.

    Args:
        sources: list of (position (3,), dry signal (n,)).
        rt60: None = anechoic (direct path only), else the Sabine RT60 in seconds.
    Returns:
        mixture (M, n), per-source images (K, M, n) and direct paths (K, M, n).
    """
    def simulate(only, max_order, absorption):
        mat = pra.Material(absorption) if absorption is not None else pra.Material(1.0)
        room = pra.ShoeBox(ROOM, fs=FS, max_order=max_order, materials=mat, air_absorption=False)
        room.add_microphone_array((CENTRE + tetra_mic_offsets()).T)  # (3, M)
        pos, sig = only
        room.add_source(pos, signal=sig)
        room.simulate()
        return room.mic_array.signals[:, :n]  # (M, n)

    if rt60 is None:
        absorption, order = None, 0
    else:
        e_abs, order = pra.inverse_sabine(rt60, ROOM)
        absorption = e_abs
    images = np.stack([simulate(s, order, absorption) for s in sources])  # (K, M, n)
    direct = np.stack([simulate(s, 0, absorption) for s in sources])  # (K, M, n)
    return images.sum(0), images, direct


def _direction(az_deg, el_deg, dist):
    az, el = np.radians(az_deg), np.radians(el_deg)
    u = np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)])
    return CENTRE + dist * u, u


@functools.lru_cache(maxsize=None)
def _two_sources():
    rng = np.random.default_rng(1)
    (p1, u1), (p2, u2) = _direction(30.0, 10.0, 1.5), _direction(-100.0, -15.0, 1.3)
    mix, images, direct = _room_signals([(p1, _modulated_noise(rng, 4 * FS)), (p2, _modulated_noise(rng, 4 * FS))],
                                        rt60=0.15)
    return mix, images, (u1, u2)


def test_output_structure_equals_the_networks():
    """Same fields, shapes and dtypes as DeepASA (tiny: 8 kHz, 5 slots) for the same (B, M, N) input."""
    from deepasa.model import DeepASA, get_config

    cfg = get_config("tiny")
    x = torch.randn(2, cfg.n_mics, 8000)
    with torch.no_grad():
        ref = DeepASA(cfg).eval()(x)
    out = ClassicalBaseline(n_slots=cfg.n_slots, sample_rate=cfg.sample_rate, label_hop=cfg.label_hop_s,
                            n_fft=256, hop=64)(x)
    for name in ("direct", "reverb", "image", "noise", "onoff", "doa"):
        assert getattr(out, name).shape == getattr(ref, name).shape, name
        assert getattr(out, name).dtype == getattr(ref, name).dtype, name
    assert out.cls_logits is None and out.sed is None  # no classifier
    torch.testing.assert_close(out.image, out.direct + out.reverb)
    torch.testing.assert_close(out.noise + out.image.sum(1), x, atol=1e-5, rtol=0)


def test_srp_maps_equal_pyroomacoustics_srp():
    """The batched SRP-PHAT map is pyroomacoustics' own SRP map, frame by frame."""
    base = ClassicalBaseline(doa_grid_points=200)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 513, 9)) + 1j * rng.standard_normal((4, 513, 9))  # (M, F, S)
    frame_of = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    maps = srp_phat_maps(base.doa, X, frame_of, 3, base.freq_bins)  # (3, G)
    for t, cols in ((0, slice(0, 4)), (1, slice(4, 9))):
        base.doa.locate_sources(X[:, :, cols], freq_bins=base.freq_bins)
        np.testing.assert_allclose(maps[t], base.doa.grid.values, rtol=1e-10, atol=1e-12)
    assert not maps[2].any()  # a frame without STFT frames


def test_single_static_source_doa_within_10_degrees():
    """Anechoic single source: every active frame's DoA is within 10° of the geometric direction."""
    rng = np.random.default_rng(3)
    pos, u = _direction(-135.0, 25.0, 2.0)
    mix, _, _ = _room_signals([(pos, _modulated_noise(rng, 2 * FS))], rt60=None, n=2 * FS)
    res = ClassicalBaseline().analyze_clip(mix)
    assert res["present"].sum() == 1
    active = res["onoff"][0] > 0
    assert active.mean() > 0.5  # the test signal has quiet 50-ms blocks: not every frame is active
    err = angular_error_deg(res["doa"][0][active], np.broadcast_to(u, (active.sum(), 3)))
    assert np.median(err) < 10.0 and np.percentile(err, 90) < 15.0, err


def test_two_sources_are_counted_separated_and_localised():
    """Two sources, RT60 0.15 s: count 2, reference-channel SI-SDR up by > 6 dB for both, DoA within 10°."""
    mix, images, dirs = _two_sources()
    res = ClassicalBaseline().analyze_clip(mix)
    assert res["present"].sum() == 2
    assert not res["image"][2:].any() and (res["onoff"][2:] < 0).all()
    est, tgt = res["image"][:2, 0], images[:, 0]  # (2, N) reference channel
    pairs = si_sdr(np.broadcast_to(est[:, None], (2, 2, est.shape[-1])), np.broadcast_to(tgt[None], (2, 2, tgt.shape[-1])))
    gain = pairs - si_sdr(np.broadcast_to(mix[0], tgt.shape), tgt)[None]  # (2 est, 2 tgt)
    best = max(gain[0, 0] + gain[1, 1], gain[0, 1] + gain[1, 0])
    perm = (0, 1) if gain[0, 0] + gain[1, 1] == best else (1, 0)
    assert min(gain[perm[0], 0], gain[perm[1], 1]) > 6.0, gain
    for j, k in enumerate(perm):
        active = res["onoff"][k] > 0
        err = angular_error_deg(res["doa"][k][active], np.broadcast_to(dirs[j], (active.sum(), 3)))
        assert np.median(err) < 10.0, err


def test_wpe_direct_path_is_closer_to_the_direct_path_than_the_image():
    """Reverberant single source (RT60 0.5 s): the direct estimate is > 3 dB closer to the true direct path.

    BSS splits one reverberant source over several outputs, so the outputs' sum is compared (this checks
    the dereverberation chain WPE → demixing → projection back, independently of source counting).
    """
    rng = np.random.default_rng(5)
    pos, _ = _direction(60.0, 0.0, 2.5)
    mix, _, direct = _room_signals([(pos, _modulated_noise(rng, 3 * FS))], rt60=0.5, n=3 * FS)
    base = ClassicalBaseline()
    image_spec, direct_spec = base.separate(mix)  # (S, M, F, T) each
    image = base._istft(image_spec.sum(0), mix.shape[1])  # (M, N)
    est_direct = base._istft(direct_spec.sum(0), mix.shape[1])  # (M, N)
    d_ref = direct[0, 0]
    sdr_direct, sdr_image = si_sdr(est_direct[0], d_ref), si_sdr(image[0], d_ref)
    assert sdr_direct > sdr_image + 3.0, (sdr_direct, sdr_image)


def test_scene_of_the_simulator_scores_end_to_end():
    """A deepasa simulator scene (explicit dry signals, no sound bank) runs through score_system.

    2 s rather than the simulator's default 4 s: what is checked (the report's structure, finite scores) does not
    depend on the length, and the baseline took 8-17 s on the 4-s scene against ~1.5 s here on a loaded 2-core box.
    """
    from deepasa.scenes.config import SceneConfig
    from deepasa.scenes.simulator import simulate_scene
    from deepasa.evaluation.scoring import score_system

    rng = np.random.default_rng(0)
    scene = simulate_scene(seed=2, config=SceneConfig.from_dict({"duration": 2.0}),
                           sources=[("speech", _modulated_noise(rng, 20000)), ("machine", _modulated_noise(rng, 15000))])
    assert scene.activity.any(axis=1).all()  # both sources are in the shortened scene
    J, k = 5, scene.direct.shape[0]
    pad = lambda a: np.concatenate([a, np.zeros((J - k, *a.shape[1:]), a.dtype)])  # noqa: E731 (K, ...) → (J, ...)
    item = {"mixture": torch.from_numpy(scene.mixture), "direct": torch.from_numpy(pad(scene.direct)),
            "reverb": torch.from_numpy(pad(scene.reverb)), "noise": torch.from_numpy(scene.noise),
            "cls": torch.tensor([0, 1] + [-1] * (J - k)), "activity": torch.from_numpy(pad(scene.activity).astype(np.float32)),
            "doa": torch.from_numpy(pad(scene.doa).astype(np.float32)), "num_sources": torch.tensor(k),
            "scene_id": "scene"}
    report = score_system(ClassicalBaseline(n_slots=J), [item], n_classes=2, with_sdr=False, progress=False)
    assert np.isfinite(report["separation"]["si_sdri_db"])
    assert np.isfinite(report["separation"]["direct_si_sdri_db"])
    assert "localization" in report and "seld" not in report


def test_rejects_bad_input():
    from deepasa.errors import DeepASAError

    with pytest.raises(DeepASAError):
        ClassicalBaseline()(torch.zeros(1, 3, 16000))
    with pytest.raises(DeepASAError):
        ClassicalBaseline(bss="nmf")
