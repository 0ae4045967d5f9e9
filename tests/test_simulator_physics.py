"""The scene simulator checked against physics and geometry, not against itself.

Independent truths used here: far-field plane-wave delays of the tetrahedral array; the direction of the
source positions stored in meta; spherical spreading 1/(4πd); the ACN/SN3D gains of a plane wave;
pyroomacoustics' own RIR builder; Schroeder's backward integration for the reverberation time; the
sin(kd)/(kd) coherence of a diffuse field.
"""

import numpy as np
import pytest

from deepasa.audio.geometry import SPEED_OF_SOUND, azimuth_elevation, tetra_mic_offsets, unit_vector
from deepasa.scenes import acoustics as ac
from deepasa.scenes.config import SceneConfig
from deepasa.scenes.simulator import frame_activity, render_scene, simulate_scene

FS = 16000


def cfg(**kw) -> SceneConfig:
    base = dict(duration=2.0, snr_db=(60.0, 60.0), source_distance=(1.5, 3.0))
    base.update(kw)
    return SceneConfig.from_dict(base)


def noise_sources(n, seconds=2.0, seed=0):
    rng = np.random.default_rng(seed)
    return [(f"c{k}", rng.standard_normal(int(seconds * FS))) for k in range(n)]


def gcc_phat_tdoa(a, b, max_lag=8, up=64):
    """Delay of b relative to a, in samples (positive: b arrives later), sub-sample by band-limited upsampling.

    The up-sampled correlation is ``np.fft.irfft(cross, n * up)`` (the spectrum zero-padded) at the lags within
    ±max_lag samples; a chirp-z transform evaluates exactly those 2·max_lag·up + 1 points of that sum instead of
    all n·up of them (4 M points for 2-s signals; same argmax on every pair these tests measure, values equal to
    ~1e-9 of the peak)."""
    from scipy.signal import czt

    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    cross = np.fft.rfft(b, n) * np.conj(np.fft.rfft(a, n))
    cross /= np.maximum(np.abs(cross), 1e-12)
    big = n * up
    twice = np.full(len(cross), 2.0)  # irfft of a real signal: bins 1..n/2-1 stand for themselves and their mirror
    twice[0] = twice[-1] = 1.0  # DC and Nyquist (n is even) stand for themselves only
    first = -max_lag * up  # cc[m] = Re Σ_k twice_k X_k e^{2πi k m / big} / big for m = first, ..., -first
    cc = czt(cross * twice, m=2 * max_lag * up + 1, w=np.exp(2j * np.pi / big),
             a=np.exp(-2j * np.pi * first / big)).real / big  # up-sampled correlation at lags -max_lag..max_lag
    return (np.argmax(cc) - max_lag * up) / up


def tdoas(x):
    """(6,) delays of capsule j relative to capsule i for i < j, samples."""
    return np.array([gcc_phat_tdoa(x[i], x[j]) for i in range(4) for j in range(i + 1, 4)])


def predicted_tdoas(u):
    """Far-field: a plane wave from u reaches capsule m at t = −u·r_m / c."""
    r = tetra_mic_offsets()
    t = -(r @ u) / SPEED_OF_SOUND * FS
    return np.array([t[j] - t[i] for i in range(4) for j in range(i + 1, 4)])


def doa_from_tdoas(d):
    r = tetra_mic_offsets()
    rows = np.array([r[j] - r[i] for i in range(4) for j in range(i + 1, 4)])
    u = -np.linalg.lstsq(rows, d * SPEED_OF_SOUND / FS, rcond=None)[0]
    return u / np.linalg.norm(u)


def angle_deg(u, v):
    return np.degrees(np.arccos(np.clip(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v), -1, 1)))


@pytest.mark.parametrize("seed", [1, 2])
def test_static_direct_path_delays_match_labelled_doa(seed):
    c = cfg(moving_prob=0.0, event_duration=(2.0, 2.0))
    s = simulate_scene(seed=seed, config=c, sources=noise_sources(3, seed=seed))
    for k in range(3):
        act = np.flatnonzero(s.activity[k])
        t = act[len(act) // 2]
        u = unit_vector(s.azimuth[k, t], s.elevation[k, t])
        measured = tdoas(s.direct[k].astype(np.float64))
        assert np.allclose(measured, predicted_tdoas(u), atol=0.2), (measured, predicted_tdoas(u))
        assert angle_deg(doa_from_tdoas(measured), u) < 4.0


def test_moving_direct_path_delays_follow_labelled_trajectory():
    c = cfg(moving_prob=1.0, event_duration=(2.0, 2.0), trajectory_amplitude=(0.8, 1.0),
            trajectory_cycles=(1.0, 1.5), source_distance=(1.5, 2.0))
    s = simulate_scene(seed=5, config=c, sources=noise_sources(2, seed=5))
    hop = int(0.1 * FS)
    for k in range(2):
        assert s.meta["sources"][k]["moving"]
        errors, spans = [], []
        for t in np.flatnonzero(s.activity[k])[1:-1]:
            seg = s.direct[k][:, t * hop:(t + 1) * hop].astype(np.float64)
            u = unit_vector(s.azimuth[k, t], s.elevation[k, t])
            errors.append(angle_deg(doa_from_tdoas(tdoas(seg)), u))
            spans.append(u)
        spans = np.array(spans)
        # the source really moves (its labelled direction sweeps more than the tolerance) ...
        assert max(angle_deg(a, b) for a in spans for b in spans) > 10.0
        # ... and the direct path follows the labelled direction frame by frame
        # (within one 100-ms frame a fast source moves several degrees: the frame-centre label is an average)
        assert np.median(errors) < 3.0 and np.percentile(errors, 90) < 6.0 and np.max(errors) < 12.0, errors


def test_static_label_equals_direction_of_meta_position():
    s = simulate_scene(seed=3, config=cfg(moving_prob=0.0), sources=noise_sources(4, seed=3))
    centre = np.asarray(s.meta["array_centre"])
    for k, src in enumerate(s.meta["sources"]):
        az, el = azimuth_elevation(np.asarray(src["trajectory"][0]) - centre)
        assert np.allclose(s.azimuth[k], az, atol=1e-9) and np.allclose(s.elevation[k], el, atol=1e-9)


def test_direct_path_amplitude_is_spherical_spreading():
    c = cfg(moving_prob=0.0, event_duration=(2.0, 2.0), source_gain_db=(0.0, 0.0), peak=(0.5, 0.5))
    srcs = noise_sources(2, seed=9)
    s = simulate_scene(seed=9, config=c, sources=srcs)
    centre = np.asarray(s.meta["array_centre"])
    for k, src in enumerate(s.meta["sources"]):
        d = np.linalg.norm(np.asarray(src["trajectory"][0]) - centre)
        dry = srcs[k][1][src["crop_start"]:src["crop_start"] + src["length"]]
        dry_rms = 1.0  # place_source normalises the clip to unit RMS before the 0 dB gain
        img = s.direct[k][0] / s.meta["output_gain"]
        img_rms = np.sqrt(np.sum(img.astype(np.float64) ** 2) / src["length"])
        assert img_rms == pytest.approx(dry_rms / (4 * np.pi * d), rel=0.03)
        assert len(dry) == src["length"]


def test_mixture_is_sum_of_parts():
    s = simulate_scene(seed=11, config=cfg(snr_db=(6.0, 10.0)), sources=noise_sources(5, seed=11))
    parts = s.direct.astype(np.float64).sum(0) + s.reverb.astype(np.float64).sum(0) + s.noise
    assert np.abs(s.mixture - parts).max() < 1e-6 * max(1.0, np.abs(s.mixture).max())
    assert s.reverb.any() and s.noise.any()


def test_snr_of_noise_matches_meta():
    s = simulate_scene(seed=12, config=cfg(snr_db=(6.0, 30.0)), sources=noise_sources(3, seed=12))
    d = s.direct.astype(np.float64).sum(0)  # (C, N)
    fpow = (d.reshape(4, 20, -1) ** 2).mean(axis=(0, 2))
    p_sig = fpow[fpow >= 0.01 * fpow.max()].mean()
    snr = 10 * np.log10(p_sig / np.mean(s.noise.astype(np.float64) ** 2))
    assert snr == pytest.approx(s.meta["snr_db"], abs=0.05)


def test_activity_matches_energy_of_source_image():
    rng = np.random.default_rng(4)
    c = cfg(event_duration=(0.7, 1.2), moving_prob=0.5)
    s = simulate_scene(seed=4, config=c, sources=[("a", rng.standard_normal(FS)), ("b", rng.standard_normal(FS))])
    hop = int(0.1 * FS)
    for k, src in enumerate(s.meta["sources"]):
        img = s.direct[k][0].astype(np.float64)
        energy = (img.reshape(-1, hop) ** 2).mean(axis=1)
        quiet, loud = energy < 1e-4 * energy.max(), energy > 0.05 * energy.max()
        assert not s.activity[k][quiet].any()
        assert s.activity[k][loud].all()
        # the labelled event spans the frames of the placed clip (±1 frame for fades and propagation)
        act = np.flatnonzero(s.activity[k])
        on, off = src["onset"] / hop, (src["onset"] + src["length"]) / hop
        assert abs(act[0] - np.floor(on)) <= 1 and abs(act[-1] + 1 - np.ceil(off)) <= 1


def test_frame_activity_threshold():
    x = np.zeros(FS)
    x[4000:8000] = 1.0
    x[12000:12800] = 0.05  # −26 dB: below the 20-dB threshold
    act = frame_activity(x, FS, 0.1, 10, 20.0)
    assert act.tolist() == [False, False, True, True, True, False, False, False, False, False]


def test_foa_direct_path_has_sn3d_plane_wave_ratios():
    c = cfg(moving_prob=0.0, event_duration=(2.0, 2.0))
    s = simulate_scene(seed=6, config=c, sources=noise_sources(3, seed=6), fmt="foa")
    for k in range(3):
        x = s.direct[k].astype(np.float64)
        ratios = x[1:] @ x[0] / (x[0] @ x[0])  # least-squares gain of Y, Z, X against W
        t = np.flatnonzero(s.activity[k])[0]
        u = unit_vector(s.azimuth[k, t], s.elevation[k, t])
        assert np.allclose(ratios, [u[1], u[2], u[0]], atol=0.01), (ratios, u)


def test_image_rirs_match_pyroomacoustics():
    import pyroomacoustics as pra

    room, centre, src = (6.0, 5.0, 3.0), np.array([3.0, 2.5, 1.5]), np.array([[4.5, 3.1, 1.2]])
    alpha = ac.eyring_absorption(room, 0.4)
    rx = ac.Receiver("mic", centre)
    ours = ac.image_rirs(ac.image_sources(room, alpha, src, 8, FS), rx, FS, 3000)[0]
    old = pra.constants.get("rir_hpf_enable")
    pra.constants.set("rir_hpf_enable", False)  # pra high-passes its RIRs by default
    try:
        r = pra.ShoeBox(list(room), fs=FS, materials=pra.Material(alpha), max_order=8, air_absorption=False)
        r.add_microphone_array(rx.positions().T)
        r.add_source(src[0])
        r.compute_rir()
    finally:
        pra.constants.set("rir_hpf_enable", old)
    for m in range(4):
        theirs = np.asarray(r.rir[m][0])[:3000] / (4 * np.pi)  # pra's amplitude is damping/d, ours damping/(4πd)
        n = min(len(theirs), 3000)
        assert np.linalg.norm(ours[m, :n] - theirs[:n]) / np.linalg.norm(theirs[:n]) < 0.01


def test_early_part_is_complete_up_to_crossfade():
    """Order ism_order holds every image that arrives before t_mix + t_fade, even in the smallest room."""
    c = SceneConfig()
    room, centre = (c.room_xy[0], c.room_xy[0], c.room_z[0]), np.array([1.0, 1.0, 1.0])
    alpha = ac.eyring_absorption(room, 0.3)
    src = np.array([[4.0, 4.0, 2.5]])
    t_end = c.t_mix + c.t_fade
    capsules = centre + tetra_mic_offsets()  # (4, 3)
    counts = []
    for order in (c.ism_order, 30):
        images, _, _ = ac.image_sources(room, alpha, src, order, FS)[0]
        d = np.linalg.norm(images.T[:, None, :] - capsules[None], axis=-1).min(axis=1)  # (I,) to the nearest capsule
        counts.append(int(np.sum(d / SPEED_OF_SOUND < t_end + 0.003)))
    assert counts[0] == counts[1]


@pytest.mark.parametrize("rt60", [0.3, 0.6])
def test_reverberation_time_of_full_response(rt60):
    room, centre = (6.5, 5.5, 3.2), np.array([3.0, 2.5, 1.5])
    alpha = ac.eyring_absorption(room, rt60)
    rx = ac.Receiver("mic", centre)
    images = ac.image_sources(room, alpha, np.array([[4.6, 3.4, 1.3]]), 10, FS)
    c = SceneConfig()
    n_early = ac.PRE + int((c.t_mix + c.t_fade) * FS) + ac.FD_HALF + 1
    early = ac.image_rirs(images, rx, FS, n_early)[0] * ac.early_fade_out(n_early, FS, c.t_mix, c.t_fade)
    t30 = []
    for seed in range(3):
        tail = ac.late_tail(room, alpha, rt60, rx, FS, c.t_mix, c.t_fade, np.random.default_rng(seed), images[0])
        h = tail.copy()
        h[:, :n_early] += early
        edc = np.cumsum(h[0, ::-1] ** 2)[::-1]
        edc_db = 10 * np.log10(edc / edc[0])
        i5, i35 = np.argmax(edc_db < -5), np.argmax(edc_db < -35)
        t30.append(2.0 * (i35 - i5) / FS)
    assert np.mean(t30) == pytest.approx(rt60, rel=0.15)


def test_diffuse_noise_coherence_mic_and_foa():
    from scipy.signal import coherence, welch

    n = 8 * FS
    x = ac.diffuse_field(n, ac.Receiver("mic", np.zeros(3)), FS, np.random.default_rng(0))
    r = tetra_mic_offsets()
    for i, j in [(0, 1), (1, 3)]:
        f, msc = coherence(x[i], x[j], fs=FS, nperseg=512)
        d = np.linalg.norm(r[i] - r[j])
        theory = np.sinc(2 * f * d / SPEED_OF_SOUND) ** 2  # |sin(kd)/(kd)|²
        band = (f > 100) & (f < 7000)
        assert np.mean(np.abs(msc[band] - theory[band])) < 0.05
    foa = ac.diffuse_field(n, ac.Receiver("foa", np.zeros(3)), FS, np.random.default_rng(1))
    powers = foa.var(axis=1)
    assert np.allclose(powers[1:] / powers[0], 1 / 3, rtol=0.05)
    corr = np.corrcoef(foa)
    assert np.abs(corr[np.triu_indices(4, 1)]).max() < 0.05
    _, pxx = welch(x[0], fs=FS, nperseg=512)
    assert pxx.std() / pxx.mean() < 0.3  # slope 0: white


def test_rerender_from_meta_is_identical():
    srcs = noise_sources(3, seed=21)
    s = simulate_scene(seed=21, config=cfg(), sources=srcs)
    again = render_scene(s.meta, [sig for _, sig in srcs], "mic")
    assert np.array_equal(again.mixture, s.mixture) and np.array_equal(again.direct, s.direct)


def test_same_seed_same_scene_other_seed_other_scene():
    srcs = noise_sources(3, seed=0)
    a = simulate_scene(seed=7, config=cfg(), sources=srcs)
    b = simulate_scene(seed=7, config=cfg(), sources=srcs)
    c = simulate_scene(seed=8, config=cfg(), sources=srcs)
    assert np.array_equal(a.mixture, b.mixture)
    assert not np.array_equal(a.mixture, c.mixture)
