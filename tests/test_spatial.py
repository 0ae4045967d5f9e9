"""Direction features and spatial augmentation against independent truth.

* GCC-PHAT features (deepasa.model.spatial): a plane wave from a known direction peaks at the inter-capsule
  delays that the array geometry predicts; the batched features equal a naive per-pair, per-frame loop.
* Tetrahedral channel swaps (deepasa.data.augment): swapping the channels of a plane wave from u gives exactly
  the plane wave from R u; on a scene of the project's simulator the swapped direct-path image has the delays
  of the turned label.
* The trunk is frequency-shift equivariant (why the paper's DoANet must learn τ = Δφ / 2πf from coarse bands).
* The object weight is the heads' ratio mask against the mixture in their own spectrum.
* SRP-PHAT refinement (``doa_refine``): a plane wave of known direction is found within the grid spacing, each
  object reads its own band through its weight and stays in its cone; in the model it moves only the direction.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepasa.audio.geometry import SPEED_OF_SOUND as C, tetra_mic_offsets, unit_vector
from deepasa.data.augment import apply_swap, tetra_swaps
from deepasa.model import DeepASA, get_config
from deepasa.model.spatial import GCCPhatFeatures, SRPRefine, capsule_pairs, object_weight

FS, NFFT, HOP = 16000, 640, 320
CAPSULES = tetra_mic_offsets()  # (4, 3) metres, radius 4.2 cm


def plane_wave(direction: np.ndarray, n: int = 16000, seed: int = 0) -> np.ndarray:
    """White noise arriving from ``direction`` (unit, (3,)) at the 4 capsules: (4, n), exact fractional delays.

    Capsule i hears the wave (p_i · u) / c earlier than the array centre (frequency-domain delay).
    """
    s = np.random.default_rng(seed).standard_normal(n)
    S = np.fft.rfft(s)
    f = np.fft.rfftfreq(n, 1.0 / FS)
    lead = CAPSULES @ direction / C  # (4,) seconds ahead of the centre
    return np.stack([np.fft.irfft(S * np.exp(2j * np.pi * f * t), n) for t in lead])


def stft(x: np.ndarray) -> torch.Tensor:
    """(M, N) -> (1, M, F, T) complex (Hann, centred)."""
    X = torch.stft(torch.as_tensor(x, dtype=torch.float32), NFFT, HOP, window=torch.hann_window(NFFT),
                   return_complex=True)
    return X.unsqueeze(0)


def test_gcc_phat_peaks_at_geometric_delays():
    u = unit_vector(70.0, 20.0)
    X = stft(plane_wave(u))  # (1, 4, F, T)
    gcc = GCCPhatFeatures(NFFT, FS, 4, max_lag_s=3e-4, n_lags=121)
    w = torch.ones(1, 1, X.shape[2], X.shape[3])
    feats = gcc(X.unsqueeze(1), w, n_label=10)[0, 0]  # (T', P*L + 1)
    lags = gcc.lags_s.numpy()
    lead = CAPSULES @ u / C
    for p, (a, b) in enumerate(capsule_pairs(4)):
        curve = feats[:, p * 121:(p + 1) * 121].mean(0).numpy()  # (L,)
        # X_a X_b* = e^{iω(lead_a − lead_b)}: the GCC peaks at τ = −(lead_a − lead_b) = delay of a relative to b
        expected = -(lead[a] - lead[b])
        assert abs(lags[curve.argmax()] - expected) <= 0.6 * (lags[1] - lags[0]) + 1e-9, (a, b)


def test_gcc_features_equal_naive_loop():
    torch.manual_seed(0)
    b, j, m, f, t, n_label, n_lags = 2, 3, 4, 17, 10, 5, 7
    spec = torch.randn(b, 1, m, f, t, dtype=torch.complex64)
    weight = torch.rand(b, j, f, t)
    gcc = GCCPhatFeatures(32, 8000, m, max_lag_s=5e-4, n_lags=n_lags)
    got = gcc(spec, weight, n_label)  # (B, J, T', P*L + 1)
    freqs = np.arange(f) * 8000 / 32
    lags = np.linspace(-5e-4, 5e-4, n_lags)
    S, W = spec.numpy().astype(np.complex128), weight.numpy().astype(np.float64)
    for bi in range(b):
        for ji in range(j):
            for k in range(n_label):
                frames = range(k * 2, k * 2 + 2)  # T = 10 frames into 5 label frames
                den = sum(W[bi, ji, fi, ti] for ti in frames for fi in range(1, f))
                for p, (a, c) in enumerate(capsule_pairs(m)):
                    for li, tau in enumerate(lags):
                        acc = 0.0
                        for ti in frames:
                            for fi in range(1, f):
                                cross = S[bi, 0, a, fi, ti] * np.conj(S[bi, 0, c, fi, ti])
                                acc += W[bi, ji, fi, ti] * np.real(cross / abs(cross) * np.exp(2j * np.pi * freqs[fi] * tau))
                        assert got[bi, ji, k, p * n_lags + li].item() == pytest.approx(acc / den, abs=1e-4)
                level = np.log(W[bi, ji, :, list(frames)].mean() + 1e-4)
                assert got[bi, ji, k, -1].item() == pytest.approx(level, abs=1e-4)


def test_object_weight_is_a_detached_ratio_mask():
    d = torch.tensor([[[[2.0 + 0j, 0.5j]]]], requires_grad=False)  # (1, 1, 1, 2)
    x = torch.tensor([[[1.0 + 0j, 1.0 + 0j]]])  # (1, 1, 2)
    w = object_weight(d, x)
    assert w.tolist() == [[[[1.0, 0.5]]]]


def test_tetra_swaps_are_the_eight_array_symmetries():
    swaps = tetra_swaps()
    assert len(swaps) == 8 and swaps[0][0] == (0, 1, 2, 3)
    for sigma, r in swaps:
        assert np.allclose(r @ r.T, np.eye(3))
        # R maps the capsule set onto itself: R p_σ(i) = p_i
        assert np.allclose((r @ CAPSULES[list(sigma)].T).T, CAPSULES, atol=1e-12)


@pytest.mark.parametrize("k", range(8))
def test_channel_swap_of_a_plane_wave_is_the_turned_plane_wave(k):
    sigma, r = tetra_swaps()[k]
    u = unit_vector(33.0, -12.0)
    x = plane_wave(u)
    n = x.shape[1]
    item = {"mixture": torch.as_tensor(x, dtype=torch.float32), "noise": torch.zeros(4, n),
            "direct": torch.as_tensor(x, dtype=torch.float32)[None], "reverb": torch.zeros(1, 4, n),
            "doa": torch.as_tensor(u, dtype=torch.float32).reshape(1, 1, 3)}
    out = apply_swap(item, sigma, r)
    turned = plane_wave(r @ u)
    assert np.allclose(out["mixture"].numpy(), turned, atol=1e-4)
    assert np.allclose(out["doa"][0, 0].numpy(), r @ u, atol=1e-6)


def _delay_between(x: np.ndarray, a: int, b: int) -> float:
    """GCC-PHAT delay (s) of channel a relative to channel b, 16× upsampled. x (M, N)."""
    n = x.shape[1]
    G = np.fft.rfft(x[a], 2 * n) * np.conj(np.fft.rfft(x[b], 2 * n))
    cc = np.fft.irfft(G / (np.abs(G) + 1e-12), 2 * n * 16)
    lag = int(np.argmax(np.concatenate([cc[-64:], cc[:65]]))) - 64
    return lag / (FS * 16)


def test_channel_swap_on_a_simulated_scene_moves_label_and_audio_together():
    from deepasa.scenes.config import SceneConfig
    from deepasa.scenes.simulator import simulate_scene

    cfg = SceneConfig.from_dict({"num_sources": [1], "num_sources_weights": [1.0], "moving_prob": 0.0,
                                 "duration": 1.0, "event_duration": [1.0, 1.0], "snr_db": [60.0, 60.0],
                                 "source_distance": [1.5, 3.0]})
    dry = np.random.default_rng(3).standard_normal(FS)
    scene = simulate_scene(seed=3, config=cfg, sources=[("c0", dry)])
    direct = scene.direct[0]  # (4, N), direct path only: free-field delays
    active = scene.activity[0] > 0.5
    u = scene.doa[0][active][0]  # (3,) static source
    for sigma, r in tetra_swaps()[1:]:
        item = {"mixture": torch.as_tensor(scene.mixture), "noise": torch.as_tensor(scene.noise),
                "direct": torch.as_tensor(direct)[None], "reverb": torch.as_tensor(scene.reverb[:1]),
                "doa": torch.as_tensor(scene.doa[:1])}
        out = apply_swap(item, sigma, r)
        v = out["doa"][0][torch.as_tensor(active)][0].numpy()
        assert np.allclose(v, r @ u, atol=1e-5)
        swapped = out["direct"][0].numpy()
        lead = CAPSULES @ v / C
        for a, b in capsule_pairs(4):
            assert _delay_between(swapped, a, b) == pytest.approx(-(lead[a] - lead[b]), abs=12e-6)


def _trunk_shift_error(model: DeepASA, k: int = 7) -> float:
    """Relative interior difference between trunk(shift_F(x)) and shift_F(trunk(x)) for a random map."""
    cfg = model.config
    torch.manual_seed(0)
    x = torch.randn(1, 2 * cfg.n_mics, 9, cfg.n_freqs)  # (1, 2M, T, F)
    xs = torch.zeros_like(x)
    xs[..., k:] = x[..., :-k]

    def trunk(inp: torch.Tensor) -> torch.Tensor:
        z = model.encoder(inp)
        for blk in model.blocks:
            z = blk(z)
        return model.splitter(z)  # (1, J, D, T, F)

    with torch.no_grad():
        z, zs = trunk(x), trunk(xs)
    f = cfg.n_freqs
    a, b = z[..., 20:f - 20 - k], zs[..., 20 + k:f - 20]
    return float((a - b).norm() / a.norm())


def test_trunk_is_frequency_shift_equivariant():
    """A frequency shift of the input shifts the trunk's output (up to the borders' reach): the trunk cannot tell
    frequencies apart, so a direction must be read from phase differences across bands (docs/model.md,
    deviation 11). A trunk with per-frequency weights fails the check (below)."""
    model = DeepASA(get_config("small")).eval()
    assert _trunk_shift_error(model) < 0.02  # 0.5 % measured
    # independent check that the measure can fail: a fixed per-frequency offset on the encoder output
    torch.manual_seed(0)
    offset = 0.1 * torch.randn(1, model.config.emb_dim, 1, model.config.n_freqs)  # (1, D, 1, F)
    model.encoder.register_forward_hook(lambda _m, _i, out: out + offset)
    assert _trunk_shift_error(model) > 0.04


def test_doa_head_reads_the_object_spatial_features():
    """With doa_spatial the DoA output changes when only the inter-channel phase of the input changes."""
    torch.manual_seed(0)
    model = DeepASA(get_config("tiny", doa_spatial="gcc_mixture")).eval()
    base = DeepASA(get_config("tiny")).eval()
    x = torch.randn(1, 4, 8000)
    swapped = x[:, [1, 0, 3, 2]]
    with torch.no_grad():
        d1, d2 = model(x).doa, model(swapped).doa
    assert not torch.allclose(d1, d2, atol=1e-4)
    assert model.seld.doanet.spatial is not None and base.seld.doanet.spatial is None
    assert model.seld.doanet.n_spatial == 6 * model.config.doa_gcc_lags + 1


@pytest.mark.parametrize("audio_output", ["mapping", "mask"])
def test_model_object_weight_is_the_heads_ratio_mask(monkeypatch, audio_output):
    """The DoA features' object weight is |direct| / |mixture| in the heads' own (Hann) spectrum: heads that
    return 0.3 × the mixture give a weight of 0.3 in every bin (not the 15×-saturated ratio against the
    unit-norm Gabor spectrum that the weight used before 2026-12-02)."""
    import deepasa.model.deepasa as dm

    model = DeepASA(get_config("tiny", doa_spatial="gcc_mixture", audio_output=audio_output)).eval()
    x = torch.as_tensor(plane_wave(unit_vector(30.0, 10.0), n=model.config.clip_samples), dtype=torch.float32)[None]
    _, scale = model.aggregate(x)
    mix = model._mixture_channels(x, scale)  # (1, 2M, T, F): the mixture in head-channel layout

    def heads(obj):  # 0.3 × the mixture, as a mapping (spectra) or as a mask (re 0.3, im 0)
        b, j = obj.shape[:2]
        out = 0.3 * mix
        if audio_output == "mask":
            out = torch.zeros_like(mix)  # (1, 2M, T, F)
            out[:, 0::2] = 0.3  # channel 2k = real part of mic k's mask
        return out.unsqueeze(1).expand(b, j, *mix.shape[1:]), None

    seen = []
    monkeypatch.setattr(model.audio, "objects", heads)
    monkeypatch.setattr(dm, "object_weight", lambda d, m: seen.append(object_weight(d, m)) or seen[-1])
    with torch.no_grad():
        model(x)
    w = seen[0]  # (1, J, F, T)
    keep = torch.as_tensor(mix[0, 0].abs().T > 1e-6)  # bins where the mixture is not silent, (F, T)
    assert torch.allclose(w[0, :, keep], torch.full_like(w[0, :, keep], 0.3), atol=1e-3)


def srp_refine(**kw) -> SRPRefine:
    """The refinement for the test array (16 kHz, n_fft 640)."""
    return SRPRefine(NFFT, FS, CAPSULES, **kw)


@pytest.mark.parametrize("az_el", [(30.0, 10.0), (-120.0, 45.0), (170.0, -30.0), (75.0, -70.0)])
def test_srp_refine_finds_a_plane_wave_within_the_grid_spacing(az_el):
    """White noise from a known direction, the network's guess 20° off: the refined DoA lands on the true
    direction (within the 4000-point grid's ~1.8° covering radius), with the guess's norm."""
    u = unit_vector(*az_el)
    spec = stft(plane_wave(u))  # (1, M, F, T)
    guess = torch.as_tensor(unit_vector(az_el[0] + 20.0 / max(np.cos(np.radians(az_el[1])), 0.3), az_el[1]))
    doa = (0.8 * guess).float().expand(1, 1, 10, 3)  # (B=1, J=1, T'=10, 3), norm 0.8
    out = srp_refine()(spec.unsqueeze(1), torch.ones(1, 1, *spec.shape[-2:]), doa)  # (1, 1, 10, 3)
    err = np.degrees(np.arccos(np.clip((out[0, 0] / out[0, 0].norm(dim=-1, keepdim=True)).double().numpy() @ u,
                                       -1, 1)))  # (10,)
    assert err.max() < 2.0
    assert torch.allclose(out.norm(dim=-1), torch.full((1, 1, 10), 0.8), atol=1e-5)


def test_srp_refine_reads_each_object_through_its_weight_and_its_cone():
    """Two plane waves in disjoint frequency bands: an object weighted to one band refines to that wave's
    direction; an object whose cone excludes both keeps the best direction inside its cone; a zero DoA or a
    zero weight returns the network's vector unchanged."""
    u1, u2 = unit_vector(40.0, 0.0), unit_vector(-100.0, 20.0)
    s1, s2 = stft(plane_wave(u1, seed=1)), stft(plane_wave(u2, seed=2))  # (1, M, F, T) each
    band = torch.arange(s1.shape[-2]) < s1.shape[-2] // 2  # (F,) the lower half of the spectrum
    spec = torch.where(band[:, None], s1, s2)  # (1, M, F, T): wave 1 below, wave 2 above
    w = torch.stack([band, ~band, band, torch.zeros_like(band)]).float()  # (J=4, F)
    w = w[None, :, :, None].expand(1, 4, -1, spec.shape[-1])  # (1, 4, F, T)
    g1, g2 = unit_vector(55.0, 5.0), unit_vector(-85.0, 10.0)  # guesses ~15° off
    doa = torch.tensor(np.stack([g1, g2, np.zeros(3), g2]), dtype=torch.float32)[None, :, None].expand(1, 4, 6, 3)
    out = srp_refine()(spec.unsqueeze(1), w, doa)  # (1, 4, 6, 3)
    ang = lambda v, u: np.degrees(np.arccos(np.clip(v.double().numpy() @ u, -1, 1)))
    assert ang(out[0, 0], u1).max() < 2.0        # object 1 reads band 1
    assert ang(out[0, 1], u2).max() < 2.0        # object 2 reads band 2
    assert torch.equal(out[0, 2], doa[0, 2])     # zero DoA: unchanged
    assert torch.equal(out[0, 3], doa[0, 3])     # zero weight: unchanged
    narrow = srp_refine(cone_deg=5.0)(spec.unsqueeze(1), w, doa)  # cones of 5° around guesses ~15° off
    assert (ang(narrow[0, 0], g1) <= 5.0 + 1e-3).all()


def test_model_refines_doa_in_eval_only_and_keeps_the_decisions():
    """``doa_refine: srp`` changes only the DoA's direction, only in eval mode (or on request); the norm, and so
    the activity decisions, are the network's."""
    torch.manual_seed(0)
    model = DeepASA(get_config("tiny", doa_spatial="gcc_mixture", doa_refine="srp", dropout=0.0,
                               attn_dropout=0.0)).eval()  # no dropout: train-mode passes compare exactly
    x = torch.as_tensor(plane_wave(unit_vector(60.0, 0.0), n=model.config.clip_samples), dtype=torch.float32)[None]
    with torch.no_grad():
        raw, ref = model(x, refine_doa=False), model(x)
    assert torch.allclose(raw.doa.norm(dim=-1), ref.doa.norm(dim=-1), atol=1e-5)
    assert not torch.allclose(raw.doa, ref.doa)
    assert torch.equal(raw.onoff, ref.onoff) and torch.equal(raw.cls_logits, ref.cls_logits)
    model.train()
    with torch.no_grad():
        assert torch.allclose(model(x).doa, model(x, refine_doa=False).doa)
