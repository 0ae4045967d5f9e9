"""Trajectory metrics on hand-built cases, and the benchmark's downstream number against the stage's own."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from deepasa.audio.geometry import unit_vector
from deepasa.metrics.trajectory import pool, score_trajectories

REPO = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("trajectories_bench", REPO / "benchmarks" / "trajectories.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _track(az, active):
    active = np.asarray(active, bool)
    return active, np.tile(unit_vector(az, 0), (len(active), 1))


def test_counts_on_a_hand_checked_case():
    # two sources: A at 0° active frames 0-5, B at 90° active frames 3-9
    ta = np.zeros((2, 10), bool)
    ta[0, :6], ta[1, 3:] = True, True
    td = np.stack([np.tile(unit_vector(0, 0), (10, 1)), np.tile(unit_vector(90, 0), (10, 1))])
    # objects: X at 10° on 0-3 (finds A's frames 0-3), Y at 95° on 5-9 and Z at 88° on 3-4 (B split in two
    # pieces: one switch), W at -120° on 0-9 (a false alarm)
    est = [_track(10, [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]), _track(95, [0] * 5 + [1] * 5),
           _track(88, [0, 0, 0, 1, 1, 0, 0, 0, 0, 0]), _track(-120, [1] * 10)]
    ea, ed = np.stack([a for a, _ in est]), np.stack([d for _, d in est])
    s = score_trajectories(ta, td, ea, ed)
    assert (s.source_frames, s.found_frames) == (13, 4 + 7)
    assert (s.object_frames, s.right_frames) == (4 + 5 + 2 + 10, 4 + 5 + 2)
    assert s.identity_switches == 1 and s.fragments == [1, 2]
    assert s.false_alarms == 1 and s.detected == 2  # A: 4 of 6 found (at least half: detected); B: 7 of 7
    np.testing.assert_allclose(sorted(s.doa_errors)[:2], [2.0, 2.0], atol=1e-6)
    pooled = pool([s, s])
    assert pooled["recall"] == pytest.approx(11 / 13) and pooled["precision"] == pytest.approx(11 / 21)
    assert pooled["false_alarms_per_clip"] == 1.0 and pooled["fragments_per_source"] == 1.5


def test_no_objects_finds_nothing():
    ta = np.ones((2, 5), bool)
    s = score_trajectories(ta, np.ones((2, 5, 3)), np.zeros((0, 5), bool), np.zeros((0, 5, 3)))
    assert s.found_frames == 0 and s.n_objects == 0 and pool([s])["recall"] == 0.0


def test_downstream_equals_the_spatial_stage_on_the_same_input():
    from deepasa.metrics.separation import si_sdr
    from deepasa.scenes.simulator import simulate_scene
    from deepasa.separation import separate

    rng = np.random.default_rng(1)
    scene = simulate_scene(seed=3, sources=[("a", rng.standard_normal(24000)), ("b", rng.standard_normal(30000))])
    gains, _ = _bench().downstream(scene, scene.activity, scene.doa)
    out = separate(scene.mixture, scene.activity, scene.doa)
    target = (scene.direct + scene.reverb)[:, 0]
    own = [si_sdr(out.image[k, 0], target[k]) - si_sdr(scene.mixture[0], target[k]) for k in range(2)]
    np.testing.assert_allclose(sorted(gains), sorted(own), atol=1e-9)
    # a finder that reports nothing scores 0 dB for every source
    none, _ = _bench().downstream(scene, np.zeros((0, 40), bool), np.zeros((0, 40, 3)))
    assert none == [0.0, 0.0]


def test_unknown_finder_is_a_one_line_error():
    from deepasa.errors import DeepASAError

    with pytest.raises(DeepASAError, match="no checkpoint"):
        _bench().make_finder("net1:/nonexistent.pt")
    with pytest.raises(DeepASAError, match="unknown finder"):
        _bench().make_finder("magic")


@pytest.mark.parametrize("spec", ["srp", "finder:checkpoints/finder.pt"])
def test_map_finders_give_trajectories_of_the_clip(spec):
    x = np.random.default_rng(0).standard_normal((4, 32000)).astype(np.float32)
    act, doa, images = _bench().make_finder(spec.replace("checkpoints/", str(REPO / "checkpoints") + "/"))(x)
    assert act.dtype == bool and act.shape[1] == 20 and doa.shape == (*act.shape, 3) and images is None
