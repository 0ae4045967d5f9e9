"""The zero-training spatial stage against physics: plane waves, anechoic separation, array symmetries, energy."""

import numpy as np
import pytest
import torch

from deepasa.audio.geometry import SPEED_OF_SOUND, tetra_mic_offsets, unit_vector
from deepasa.metrics.separation import si_sdr
from deepasa.separation import SpatialConfig, separate
from deepasa.separation.spatial import direction_masks

torch.set_num_threads(1)
FS = 16000


def plane_wave(signal: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """(N,) source at the array centre → (4, N) capsule signals of a plane wave from unit ``direction``.

    Each capsule hears the wave ``p·u / c`` earlier than the centre: an exact (circular) fractional advance
    in the frequency domain, independent of the stage's own STFT convention.
    """
    n = len(signal)
    lead = tetra_mic_offsets() @ direction / SPEED_OF_SOUND  # (4,) seconds
    freqs = np.fft.rfftfreq(n, 1 / FS)  # (n//2 + 1,)
    spec = np.fft.rfft(signal)[None] * np.exp(2j * np.pi * freqs[None] * lead[:, None])  # (4, n//2 + 1)
    return np.fft.irfft(spec, n)  # (4, N)


def noise(seed: int, n: int = 2 * FS) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n)


def tetra_symmetries() -> list[tuple[np.ndarray, np.ndarray]]:
    """Orthogonal maps R that carry the capsule set onto itself, with the channel permutation π: R p_i = p_π(i).

    The capsules sit at elevation ±35°, not the regular tetrahedron's ±35.26°, so of the 24 symmetries of a
    regular tetrahedron only 8 are exact here: the identity, the three half-turns about x, y, z and four
    mirror planes. A linear map that permutes the capsules but is not orthogonal does not map plane waves
    onto plane waves.
    """
    p = tetra_mic_offsets()  # (4, 3)
    out = []
    for perm in __import__("itertools").permutations(range(4)):
        r, *_ = np.linalg.lstsq(p, p[list(perm)], rcond=None)  # p @ r = p[perm], r = Rᵀ
        rot = r.T
        if np.allclose(p @ rot.T, p[list(perm)], atol=1e-12) and np.allclose(rot @ rot.T, np.eye(3), atol=1e-9):
            out.append((rot, np.array(perm)))
    return out


def test_the_array_has_eight_exact_symmetries():
    syms = tetra_symmetries()
    assert len(syms) == 8
    assert sorted(round(float(np.linalg.det(r))) for r, _ in syms) == [-1] * 4 + [1] * 4


@pytest.mark.parametrize("az, el", [(0, 0), (60, 20), (-120, -40), (170, 45)])
def test_plane_wave_gets_its_object_mask(az, el):
    u = unit_vector(az, el)
    other = unit_vector(az + 90, -el / 2)  # a second object far from the wave
    x = torch.as_tensor(plane_wave(noise(0), u), dtype=torch.float32)  # (4, N)
    spec = torch.stft(x, 512, 128, window=torch.hann_window(512), return_complex=True)  # (4, F, T)
    t = spec.shape[-1]
    doa = torch.as_tensor(np.stack([np.tile(u, (t, 1)), np.tile(other, (t, 1))]))  # (2, T, 3)
    mask = direction_masks(spec, torch.ones(2, t, dtype=torch.bool), doa, torch.as_tensor(tetra_mic_offsets()),
                           FS, SpatialConfig(diffuse_score=None))  # (3, F, T)
    freqs = np.arange(spec.shape[1]) * FS / 512
    band = (freqs > 500) & (freqs < 2500)  # where the 4.2-cm array tells directions apart without aliasing
    assert mask[0, band].mean() > 0.95
    assert torch.allclose(mask.sum(0), torch.ones_like(mask[0]))


def test_two_anechoic_sources_separate_beyond_20_db_with_true_directions():
    dirs = [unit_vector(30, 10), unit_vector(-100, -20)]
    images = np.stack([plane_wave(noise(1 + k), d) for k, d in enumerate(dirs)])  # (2, 4, N)
    mix = images.sum(0)  # (4, N)
    t_label = 20  # 2 s of 100-ms frames
    doa = np.stack([np.tile(d, (t_label, 1)) for d in dirs])  # (2, T', 3)
    out = separate(mix, np.ones((2, t_label), bool), doa, config=SpatialConfig(covariance="plane_wave", lstsq_loading=0.01))
    score = si_sdr(out.image[:, 0], images[:, 0])  # (2,) reference channel
    assert score.min() > 20.0, score


@pytest.mark.parametrize("which", [1, 2, 3, 5])
def test_invariant_to_the_tetrahedral_channel_symmetries(which):
    rot, perm = tetra_symmetries()[which]
    dirs = [unit_vector(40, 15), unit_vector(-70, -10), unit_vector(170, 30)]
    rng = np.random.default_rng(3)
    mix = sum(plane_wave(noise(10 + k), d) for k, d in enumerate(dirs)) + 0.1 * rng.standard_normal((4, 2 * FS))
    active = np.ones((3, 20), bool)
    active[1, :8] = False  # an object that starts late
    doa = np.stack([np.tile(d, (20, 1)) for d in dirs])  # (3, T', 3)
    ref = separate(mix, active, doa)
    # rotating the scene by R moves the wave of capsule i to capsule π(i): channel π(i) of the rotated mixture
    # is channel i of this one; the objects' directions rotate with it
    rotated = np.empty_like(mix)
    rotated[perm] = mix
    out = separate(rotated, active, doa @ rot.T)
    np.testing.assert_allclose(out.image[:, perm], ref.image, atol=2e-4 * np.abs(ref.image).max())
    np.testing.assert_allclose(out.direct[:, perm], ref.direct, atol=2e-4 * np.abs(ref.direct).max())


def test_rotated_plane_wave_equals_the_channel_permuted_one():
    # the physics behind the symmetry test: a wave from R u at the capsules equals the wave from u, permuted
    rot, perm = tetra_symmetries()[6]
    u = unit_vector(25, 5)
    a, b = plane_wave(noise(5), u), plane_wave(noise(5), rot @ u)
    np.testing.assert_allclose(b[perm], a, atol=1e-9)


def test_parts_add_up_to_the_mixture_and_none_is_louder():
    from deepasa.scenes.simulator import simulate_scene

    rng = np.random.default_rng(0)
    s = simulate_scene(seed=11, sources=[("noise", rng.standard_normal(FS)), ("tone", np.sin(np.arange(FS) * 0.3))])
    out = separate(s.mixture, s.activity, s.doa)
    err = out.image.sum(0) + out.remainder - s.mixture
    assert 10 * np.log10((err ** 2).sum() / (s.mixture ** 2).sum()) < -40
    rms = lambda x: np.sqrt((x ** 2).mean())  # noqa: E731
    for part in [*out.image, *out.direct, *out.reverb, out.remainder]:
        assert rms(part) <= rms(s.mixture) * 1.001
    np.testing.assert_allclose(out.direct + out.reverb, out.image, atol=1e-5)


def test_gate_leaves_nothing_outside_the_activity():
    x = plane_wave(noise(2), unit_vector(0, 0))
    active = np.zeros((1, 20), bool)
    active[0, 5:12] = True
    out = separate(x, active, np.tile(unit_vector(0, 0), (1, 20, 1)))
    assert np.abs(out.image[0, :, :4000]).max() == 0.0  # frames 0-2.5: no STFT frame of them is active
    np.testing.assert_allclose(out.remainder[:, :4000], x[:, :4000], atol=1e-5)


def test_activity_alone_shares_each_frame_equally():
    spec = torch.randn(4, 257, 30, dtype=torch.complex64)
    active = torch.zeros(3, 30, dtype=torch.bool)
    active[0], active[1, 10:] = True, True
    doa = torch.tensor([1.0, 0, 0]).expand(3, 30, 3).double()
    mask = direction_masks(spec, active, doa, torch.as_tensor(tetra_mic_offsets()), FS,
                           SpatialConfig(use_direction=False, diffuse_score=None))  # (4, F, T)
    assert torch.allclose(mask[0, :, :10], torch.ones(257, 10))
    assert torch.allclose(mask[:2, :, 10:], torch.full((2, 257, 20), 0.5))
    assert mask[2].abs().max() == 0 and mask[3].abs().max() == 0


def test_single_plane_wave_direct_path_is_the_image():
    x = plane_wave(noise(4), unit_vector(-30, 20))
    out = separate(x, np.ones((1, 20), bool), np.tile(unit_vector(-30, 20), (1, 20, 1)))
    assert si_sdr(out.direct[0, 0], x[0]) > 20.0


def test_bad_shapes_are_one_line_errors():
    from deepasa.errors import DeepASAError

    with pytest.raises(DeepASAError, match="disagree"):
        separate(np.zeros((4, 1600)), np.ones((2, 10), bool), np.ones((2, 9, 3)))
    with pytest.raises(DeepASAError, match="mixture"):
        separate(np.zeros((2, 1600)), np.ones((1, 1), bool), np.ones((1, 1, 3)))


def test_noise_prior_reads_only_frames_far_from_every_object():
    from deepasa.separation.spatial import stationary_noise

    cfg = SpatialConfig(noise_tail_s=0.6)
    act = np.zeros((2, 40), bool)
    act[0, 10:20], act[1, 30:32] = True, True
    near = np.zeros(40, bool)
    near[9:26], near[29:38] = True, True  # one frame before each onset, 0.6 s (6 frames) after each offset
    t = np.arange(4 * FS // cfg.hop + 1)  # STFT frames of a 4-s clip
    label = np.minimum(t * cfg.hop // (FS // 10), 39)  # the label frame each STFT frame centre falls in
    spec = torch.where(torch.as_tensor(near[label]), 1000.0, 1.0).to(torch.complex64).expand(4, 257, -1)
    cov = stationary_noise(spec, act, cfg, 0.1, FS / 10)  # (F, M, M)
    torch.testing.assert_close(cov, torch.ones(257, 4, 4, dtype=torch.complex64))  # no near frame leaked in
    assert stationary_noise(spec, np.ones((1, 40), bool), cfg, 0.1, FS / 10) is None  # nothing far: no prior


def test_noise_prior_denoises_a_lone_plane_wave_and_keeps_the_sum():
    rng = np.random.default_rng(5)
    u = unit_vector(40, 10)
    src = np.zeros(4 * FS)
    src[FS:3 * FS] = rng.standard_normal(2 * FS)
    clean = plane_wave(src, u)  # (4, N) active from 1 s to 3 s
    x = clean + 0.5 * rng.standard_normal(clean.shape)  # spatially white, stationary noise at ~6 dB SNR
    act = np.zeros((1, 40), bool)
    act[0, 10:30] = True
    doa = np.tile(u, (1, 40, 1))
    plain = separate(x, act, doa, config=SpatialConfig(noise_prior=False))
    prior = separate(x, act, doa, config=SpatialConfig(noise_prior=True))
    gain = si_sdr(prior.image[0, 0], clean[0]) - si_sdr(plain.image[0, 0], clean[0])
    assert gain > 3.0, gain  # a 4-channel Wiener filter against white noise at 6 dB SNR gains several dB
    np.testing.assert_allclose(prior.image.sum(0) + prior.remainder, x, atol=1e-4)  # still adds up
