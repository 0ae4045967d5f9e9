"""deepasa.tracking: grid, peak picking, multi-target tracking and the SRP-PHAT object finder.

Every expectation comes from an independent truth: planted directions, hand-written detection sequences
with known identities, and plane waves delayed by the array geometry (not by the code under test).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from deepasa.audio.geometry import SPEED_OF_SOUND, tetra_mic_offsets, unit_vector
from deepasa.tracking import (SRPTracker, Tracks, direction_grid, grid_neighbours, pick_peaks, srp_find_objects,
                              srp_phat_map, track)


def angle(a, b) -> np.ndarray:
    """Degrees between unit vectors a (..., 3) and b (..., 3)."""
    return np.degrees(np.arccos(np.clip(np.sum(a * b, axis=-1), -1.0, 1.0)))


# ---------------------------------------------------------------------------------------------- grid
def test_grid_is_unit_and_near_uniform():
    g = direction_grid(600)
    assert g.shape == (600, 3) and g.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), 1.0, atol=1e-12)
    dots = g @ g.T  # (G, G)
    np.fill_diagonal(dots, -2.0)
    nearest = np.degrees(np.arccos(dots.max(axis=1)))  # (G,)
    spacing = math.degrees(math.sqrt(4 * math.pi / 600))  # 8.3°
    assert 0.8 * spacing < nearest.min() and nearest.max() < 1.1 * spacing
    # the two hemispheres hold the same number of points (no pole bias)
    assert abs(int((g[:, 2] > 0).sum()) - 300) <= 1


def test_grid_neighbours_match_brute_force():
    g = direction_grid(200)
    nbs = grid_neighbours(g, 20.0)
    for i in (0, 57, 199):
        want = np.flatnonzero(angle(g[i], g) <= 20.0 + 1e-9)
        np.testing.assert_array_equal(np.sort(nbs[i]), want)
        assert i in nbs[i]


# ---------------------------------------------------------------------------------------------- peaks
def vmf_map(grid, directions, heights, kappa=30.0, floor=0.0):
    """A (1, G) map of von Mises–Fisher bumps exp(κ(u·d − 1)) scaled by heights, plus a constant floor."""
    return (floor + sum(h * np.exp(kappa * (grid @ d - 1.0)) for d, h in zip(directions, heights)))[None]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_pick_peaks_finds_planted_bumps_strongest_first(seed):
    rng = np.random.default_rng(seed)
    g = direction_grid()
    n_src = 2 + seed % 2
    while True:  # random directions at least 40° apart
        d = rng.standard_normal((n_src, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        pair = angle(d[:, None], d[None])
        if (pair + 180 * np.eye(n_src)).min() >= 40.0:
            break
    # heights far enough apart that sampling a bump off its top (≤ 15 % at these widths) keeps the order
    heights = rng.uniform(0.8, 1.0) * np.array([1.0, 0.65, 0.4])[:n_src]
    kappa = rng.uniform(20, 40)
    peaks = pick_peaks(vmf_map(g, d, heights, kappa, floor=0.1), g, threshold=0.3)
    assert len(peaks) == 1 and len(peaks[0]) == n_src
    for (u, s), want, h in zip(peaks[0], d, heights):
        assert angle(u, want) < 3.0
        assert abs(np.linalg.norm(u) - 1.0) < 1e-9
        assert 0.8 * h + 0.1 <= s <= h + 0.1 + 1e-9  # the grid value at the peak: at most the bump's top
    scores = [s for _, s in peaks[0]]
    assert scores == sorted(scores, reverse=True)


def test_pick_peaks_threshold_separation_and_max_peaks():
    g = direction_grid()
    flat = np.full((3, len(g)), 0.2)
    assert pick_peaks(flat, g, threshold=0.5) == [[], [], []]
    d = unit_vector([0.0, 15.0, 90.0, -120.0], [0.0, 0.0, 30.0, -10.0])  # the second within 25° of the first
    m = vmf_map(g, d, [1.0, 0.5, 0.8, 0.7], kappa=60.0)
    got = pick_peaks(m, g, threshold=0.1)[0]
    assert [int(np.argmin(angle(u, d))) for u, _ in got] == [0, 2, 3]
    assert len(pick_peaks(m, g, threshold=0.1, max_peaks=2)[0]) == 2
    assert len(pick_peaks(m, g, threshold=0.85)[0]) == 1  # only the 1.0 bump samples above 0.85


# ---------------------------------------------------------------------------------------------- tracker
def dets_from(paths: list[np.ndarray], n_frames: int, score: float = 1.0) -> list[list[tuple[np.ndarray, float]]]:
    """Detections from per-source direction arrays (T', 3), NaN rows = no detection in that frame."""
    out = []
    for t in range(n_frames):
        out.append([(p[t], score) for p in paths if not np.isnan(p[t]).any()])
    return out


def test_tracks_empty_and_types():
    e = Tracks.empty(7)
    assert e.n_objects == 0 and e.activity.shape == (0, 7) and e.doa.shape == (0, 7, 3) and e.score.shape == (0, 7)
    assert track([[] for _ in range(5)]).n_objects == 0


@pytest.mark.parametrize("merge", [False, True])
def test_two_sources_crossing_keep_identities(merge):
    n = 17
    az = np.linspace(-64, 64, n)  # 8°/frame
    a = unit_vector(az, np.full(n, 4.0))  # (T', 3) left to right
    b = unit_vector(-az, np.full(n, -4.0))  # right to left
    dets = []
    for t in range(n):
        if merge and angle(a[t], b[t]) < 20:  # the peaks merge into one detection where they overlap
            m = a[t] + b[t]
            dets.append([(m / np.linalg.norm(m), 1.0)])
        else:  # alternate the order so identity cannot come from the list order
            pair = [(a[t], 1.0), (b[t], 0.9)]
            dets.append(pair if t % 2 else pair[::-1])
    tr = track(dets)
    assert tr.n_objects == 2
    # assign identities on the first frame, then check every frame after the crossing keeps them
    first = [int(np.argmin([angle(tr.doa[j, 0], a[0]), angle(tr.doa[j, 0], b[0])])) for j in range(2)]
    assert sorted(first) == [0, 1]
    ja, jb = first.index(0), first.index(1)
    late = slice(n - 5, n)
    assert angle(tr.doa[ja, late], a[late]).max() < 6.0
    assert angle(tr.doa[jb, late], b[late]).max() < 6.0
    assert tr.activity[:, late].all()


def test_pause_within_max_gap_keeps_identity_longer_gives_new():
    u = unit_vector(30.0, 10.0)
    path = np.tile(u, (20, 1))
    path[10:13] = np.nan  # 3 frames of silence
    tr = track(dets_from([path], 20), max_gap_frames=5)
    assert tr.n_objects == 1
    want = ~np.isnan(path[:, 0])
    np.testing.assert_array_equal(tr.activity[0], want)
    assert np.all(np.linalg.norm(tr.doa[0], axis=-1) > 0.99)  # held direction in the pause, never zero
    path = np.tile(u, (24, 1))
    path[8:15] = np.nan  # 7 frames > max_gap
    tr = track(dets_from([path], 24), max_gap_frames=5)
    assert tr.n_objects == 2
    np.testing.assert_array_equal(tr.activity[0], np.arange(24) < 8)
    np.testing.assert_array_equal(tr.activity[1], np.arange(24) >= 15)


def test_rejoin_joins_a_paused_source_at_its_place_only():
    """A source that pauses longer than max_gap_frames and resumes where it was is one object with merge_gap_frames;
    a source resuming 60° away, one resuming after a too-long pause, and a second source active all along stay
    apart."""
    n = 40
    u, v, w = unit_vector(30.0, 10.0), unit_vector(-120.0, 0.0), unit_vector(90.0, 10.0)
    a = np.tile(u, (n, 1))
    a[10:25] = np.nan                       # pause of 15 frames (> max_gap 5), resumes at its place
    b = np.tile(v, (n, 1))                  # a second source, active throughout
    c = np.full((n, 3), np.nan)
    c[28:36] = w                            # a third source after a's first part ended: 60° from a's place
    dets = dets_from([a, b, c], n)
    plain = track(dets, max_gap_frames=5)
    assert plain.n_objects == 4             # a's two fragments, b, c
    joined = track(dets, max_gap_frames=5, merge_gap_frames=20, merge_deg=20.0)
    assert joined.n_objects == 3
    ja = int(np.argmin([angle(joined.doa[j, 0], u) for j in range(3)]))
    np.testing.assert_array_equal(joined.activity[ja], ~np.isnan(a[:, 0]))   # both parts, the pause inactive
    assert angle(joined.doa[ja], u).max() < 1e-6                            # held at its place in the pause
    jb = int(np.argmin([angle(joined.doa[j, 0], v) for j in range(3)]))
    assert joined.activity[jb].all()
    # a pause longer than merge_gap_frames is not bridged
    assert track(dets, max_gap_frames=5, merge_gap_frames=10, merge_deg=20.0).n_objects == 4


def test_single_missed_frame_is_filled():
    path = np.tile(unit_vector(-90.0, 0.0), (10, 1))
    path[4] = np.nan
    tr = track(dets_from([path], 10))
    assert tr.n_objects == 1 and tr.activity[0].all()


def test_birth_mid_clip_death_and_spurious_detection():
    n = 20
    a = np.tile(unit_vector(0.0, 0.0), (n, 1))
    b = np.full((n, 3), np.nan)
    b[8:15] = unit_vector(120.0, 20.0)
    dets = dets_from([a, b], n)
    dets[3].append((unit_vector(-100.0, -30.0), 1.0))  # one spurious detection: must not become an object
    tr = track(dets)
    assert tr.n_objects == 2
    np.testing.assert_array_equal(tr.activity[0], np.ones(n, bool))
    np.testing.assert_array_equal(tr.activity[1], (np.arange(n) >= 8) & (np.arange(n) < 15))
    assert angle(tr.doa[1, 8:15], b[8:15]).max() < 1e-6
    # outside its life the object holds its first/last direction
    assert angle(tr.doa[1, :8], b[8]).max() < 1e-6 and angle(tr.doa[1, 15:], b[14]).max() < 1e-6
    assert (tr.score[1, 8:15] == 1.0).all() and (tr.score[1, :8] == 0).all()
    assert track(dets, max_objects=1).n_objects == 1


def test_smoothing_reduces_noise_and_follows_motion():
    rng = np.random.default_rng(5)
    n = 40
    truth = unit_vector(np.linspace(-40, 40, n), np.linspace(0, 20, n))  # (T', 3), 2°/frame
    noisy = truth + rng.normal(scale=math.radians(4.0), size=truth.shape)  # ~4° per axis
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    raw_err = angle(noisy, truth).mean()
    tr = track(dets_from([noisy], n), smoothing=0.5)
    assert tr.n_objects == 1 and tr.activity[0].all()
    err = angle(tr.doa[0], truth).mean()
    assert err < 0.8 * raw_err, (err, raw_err)
    np.testing.assert_allclose(np.linalg.norm(tr.doa, axis=-1), 1.0, atol=1e-9)
    again = track(dets_from([noisy], n), smoothing=0.5)  # deterministic
    np.testing.assert_array_equal(again.doa, tr.doa)
    raw = track(dets_from([noisy], n), smoothing=0.0)
    assert angle(raw.doa[0], noisy).max() < 1e-6


# ---------------------------------------------------------------------------------------------- SRP-PHAT
def plane_wave(direction: np.ndarray, n: int = 8000, fs: int = 16000, seed: int = 0) -> np.ndarray:
    """White noise arriving as a plane wave from ``direction`` at the tetrahedral capsules: (4, n).

    Each capsule gets the source delayed by −(p · u)/c (fractional delays applied in the frequency domain).
    """
    s = np.random.default_rng(seed).standard_normal(n)
    spec = np.fft.rfft(s, 2 * n)
    f = np.fft.rfftfreq(2 * n, 1.0 / fs)
    delays = -(tetra_mic_offsets() @ direction) / SPEED_OF_SOUND  # (4,) s
    return np.stack([np.fft.irfft(spec * np.exp(-2j * np.pi * f * d), 2 * n)[:n] for d in delays])


@pytest.mark.parametrize("az,el", [(0, 0), (90, 40), (-135, -40), (170, 15), (-60, 25), (45, -35)])
def test_srp_map_peaks_at_plane_wave_direction(az, el):
    u = unit_vector(az, el)
    x = plane_wave(u)
    grid = direction_grid()
    m = srp_phat_map(x, grid=grid)
    assert m.shape == (5, len(grid))  # ceil(8000 / 1600)
    best = grid[np.argmax(m, axis=1)]  # (T', 3)
    assert angle(best, u).max() < 10.0
    assert m.max() <= 1.0 + 1e-9
    tr = srp_find_objects(x)
    assert tr.n_objects == 1 and tr.activity[0].all()
    assert angle(tr.doa[0], u).max() < 5.0


@pytest.mark.parametrize("cancel", [True, False])
def test_srp_two_plane_waves_two_objects(cancel):
    u, v = unit_vector(20.0, 10.0), unit_vector(-100.0, -20.0)
    x = plane_wave(u, n=16000, seed=1) + plane_wave(v, n=16000, seed=2)
    tr = SRPTracker(cancel=cancel)(x)
    assert tr.n_objects == 2
    found = sorted([int(np.argmin([angle(tr.doa[j, 5], u), angle(tr.doa[j, 5], v)])) for j in range(2)])
    assert found == [0, 1]
    for j in range(2):
        want = u if angle(tr.doa[j, 5], u) < angle(tr.doa[j, 5], v) else v
        # two white sources overlap in every bin, so each biases the other's peak (~10° measured at 120° apart)
        assert np.median(angle(tr.doa[j, tr.activity[j]], want)) < 15.0
        assert tr.activity[j].mean() > 0.7


def test_srp_frame_count_and_silence():
    x = plane_wave(unit_vector(10, 0), n=16000 * 2 + 100)
    assert srp_phat_map(x).shape[0] == 21
    x = plane_wave(unit_vector(10, 0), n=32000)
    x[:, 16000:] = 0.0  # the second half silent: no object there
    tr = srp_find_objects(x)
    assert tr.n_objects == 1
    assert tr.activity[0, :9].all() and not tr.activity[0, 11:].any()


@pytest.mark.parametrize("seed", [7001, 7005])
def test_srp_finds_the_source_of_a_simulated_scene(seed):
    from deepasa.scenes.config import SceneConfig
    from deepasa.scenes.simulator import simulate_scene

    cfg = SceneConfig.from_dict({**SceneConfig().to_dict(), "rt60": [0.2, 0.2], "snr_db": [20.0, 30.0]})
    rng = np.random.default_rng(seed)
    s = simulate_scene(seed=seed, sources=[("noise", rng.standard_normal(4 * 16000))], config=cfg)
    tr = SRPTracker()(s.mixture)
    assert tr.n_objects >= 1
    act = s.activity[0]
    truth = s.doa[0]  # (T', 3), unit where active
    j = int(np.argmax(tr.activity[:, act].sum(axis=1)))  # the object most active while the source is
    both = act & tr.activity[j]
    assert both.sum() >= 0.7 * act.sum()
    assert np.median(angle(tr.doa[j, both], truth[both])) < 15.0
