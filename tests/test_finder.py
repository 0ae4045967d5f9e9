"""The localisation-map finder: targets, array symmetries, shapes, training, resume, inference (docs/finder.md)."""

import io

import numpy as np
import pytest
import torch

from deepasa.audio.geometry import SPEED_OF_SOUND, tetra_mic_offsets, unit_vector
from deepasa.errors import DeepASAError
from deepasa.model.finder import (Finder, FinderConfig, find_objects, finder_scores, symmetry_subset,
                                  target_map, tetra_symmetries)
from deepasa.scenes.simulator import simulate_scene
from deepasa.tracking.grid import angle_deg
from deepasa.train.finder import FinderTrainer, Scene, SyncSource, TrainConfig, score_clip

torch.set_num_threads(1)
TINY = {"conv_channels": 32, "gru_hidden": 32}


def _plane_wave(u: np.ndarray, n: int = 8192, fs: int = 16000, seed: int = 0) -> np.ndarray:
    """Band-limited noise arriving from unit direction u at the tetrahedral capsules, fractional delays applied
    in the frequency domain (capsule a hears s(t + p_a·u / c)): (4, n)."""
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))  # (F,)
    f = np.fft.rfftfreq(n, 1 / fs)  # (F,)
    advance = tetra_mic_offsets() @ u / SPEED_OF_SOUND  # (4,) s
    return np.fft.irfft(spec[None] * np.exp(2j * np.pi * f[None] * advance[:, None]), n)  # (4, n)


def test_target_map_peaks_at_planted_sources():
    u = torch.tensor(unit_vector([30.0, -120.0], [10.0, -40.0]), dtype=torch.float32)  # (2, 3)
    doa = u[None, :, None, :].expand(1, 2, 3, 3).clone()  # (1, K=2, T'=3, 3)
    act = torch.tensor([[[True, True, False], [True, False, False]]])  # (1, 2, 3)
    grid = torch.cat([u, torch.nn.functional.normalize(torch.randn(500, 3), dim=-1)])  # planted first
    m = target_map(doa, act, grid, 0.15)  # (1, 3, G)
    assert m.shape == (1, 3, 502)
    assert torch.allclose(m[0, 0, :2], torch.ones(2)) and m[0, 1, 0] == 1.0  # 1 at active sources' directions
    assert m[0, 1, 1] < 1e-3  # source 2 inactive in frame 1: nothing at its direction
    assert m.max() <= 1.0 and (m[0, 2] == 0).all()  # never above the peak; silent frame empty
    # a grid point 20° from source 1 along its meridian: exp((cos 20° − 1) / σ²)
    g20 = torch.tensor(unit_vector(30.0, 30.0), dtype=torch.float32)[None]
    val = target_map(doa[:, :1], act[:, :1], g20, 0.15)[0, 0, 0]
    assert val == pytest.approx(np.exp((np.cos(np.radians(20.0)) - 1) / 0.15 ** 2), rel=1e-3)


def test_symmetries_permute_plane_waves():
    syms = tetra_symmetries()
    assert len(syms) == 12 and np.allclose(syms[0][0], np.eye(3)) and list(syms[0][1]) == [0, 1, 2, 3]
    assert len({tuple(s) for _, s in syms}) == 12
    u = unit_vector(20.0, 15.0)
    x = _plane_wave(u)
    for r, sigma in syms:
        assert np.allclose(r @ r.T, np.eye(3), atol=1e-9) and np.linalg.det(r) == pytest.approx(1.0)
        rotated = _plane_wave(r @ u)  # independent truth: the recording of the rotated direction
        err = np.linalg.norm(x[sigma] - rotated) / np.linalg.norm(rotated)
        assert err < 0.03, err  # the capsules sit 0.26° off an exact tetrahedron: ~1 % residual
        if list(sigma) != [0, 1, 2, 3]:  # the permutation matters: unpermuted channels do not match
            assert np.linalg.norm(x - rotated) / np.linalg.norm(rotated) > 0.2


@pytest.mark.parametrize("edges", [(), (0.0, 700.0, 2000.0, 8000.0)])
def test_feature_permutation_matches_permuted_mixture(edges):
    f = Finder(FinderConfig(**TINY, gcc_band_edges_hz=edges))
    x = torch.randn(1, 4, 16000)
    feats = f.features(x)
    for _, sigma in tetra_symmetries(reflections=True):
        idx = f.features.permutation_index(sigma)
        torch.testing.assert_close(f.features(x[:, torch.as_tensor(sigma)]), feats[:, idx], atol=1e-5, rtol=0)


def test_band_gcc_peaks_at_the_delay_in_its_band_and_adds_up():
    """Band-wise GCC: a plane wave peaks at each pair's true delay in every band; the bands' GCCs weighted by
    their bin counts add up to the one-band GCC over all bins (same lags, same frames)."""
    edges = (0.0, 700.0, 2000.0, 8000.0)
    one = Finder(FinderConfig(**TINY)).features
    banded = Finder(FinderConfig(**TINY, gcc_band_edges_hz=edges)).features
    u = unit_vector(40.0, 10.0)
    x = torch.from_numpy(_plane_wave(u, n=16000)).float()[None]  # (1, 4, N)
    full, per_band = one(x), banded(x)  # (1, P·L + 64, T), (1, 3·P·L + 64, T)
    pl = len(one.gcc.pairs) * one.cfg.n_lags
    counts = (banded.band_weight > 0).sum(dim=1).float()  # (3,) bins per band
    bands = per_band[0, :3 * pl].reshape(3, pl, -1)  # (Q, P·L, T)
    total = (bands * counts[:, None, None]).sum(0) / counts.sum()  # (P·L, T)
    torch.testing.assert_close(total, full[0, :pl], atol=1e-5, rtol=0)
    torch.testing.assert_close(per_band[0, 3 * pl:], full[0, pl:])  # the log-mel rows are unchanged
    offsets = tetra_mic_offsets()
    lags = one.gcc.lags_s.numpy()  # (L,)
    for p, (a, b) in enumerate(one.gcc.pairs):
        tdoa = (offsets[b] - offsets[a]) @ u / SPEED_OF_SOUND  # a hears s(t + p_a·u/c): GCC_ab peaks at (p_b − p_a)·u/c
        for q in range(3):
            curve = bands[q, p * one.cfg.n_lags:(p + 1) * one.cfg.n_lags, 20:80].mean(-1).numpy()  # (L,)
            assert abs(lags[curve.argmax()] - tdoa) <= (lags[1] - lags[0]), (p, q)


def test_symmetry_averaged_map_equals_the_loop_over_turned_mixtures():
    """finder_scores(symmetries=n) = the mean over the n rotations (R, σ) of the map of mixture[σ] read at the grid
    point nearest R·g — computed here naively, one network pass per turned mixture."""
    torch.manual_seed(0)
    f = Finder(FinderConfig(**TINY)).eval()
    x = np.random.default_rng(0).standard_normal((4, 8000)).astype(np.float32)
    grid = f.grid.double().numpy()  # (G, 3)
    assert np.array_equal(finder_scores(x, f, 1), finder_scores(x, f))
    for n in (4, 12):
        syms = symmetry_subset(n)
        assert len(syms) == n and np.allclose(syms[0][0], np.eye(3))
        if n == 4:  # the identity and the three half turns
            assert all(np.trace(r) == pytest.approx(-1.0, abs=0.02) for r, _ in syms[1:])
        naive = [finder_scores(x[sigma], f, 1)[:, np.argmax((grid @ r.T) @ grid.T, axis=1)] for r, sigma in syms]
        np.testing.assert_allclose(finder_scores(x, f, n), np.mean(naive, axis=0), atol=1e-6)
    with pytest.raises(DeepASAError, match="1, 4 or 12"):
        finder_scores(x, f, 3)


def test_shapes_2s_4s():
    f = Finder().eval()
    assert 3e5 < f.n_parameters() < 1e6
    with torch.no_grad():
        assert f(torch.randn(1, 4, 32000)).shape == (1, 20, 600)
        assert f(torch.randn(2, 4, 64000)).shape == (2, 40, 600)
        assert f(torch.randn(1, 4, 32100)).shape == (1, 21, 600)  # a partial last frame is padded


def _noise_scenes():
    rng = np.random.default_rng(0)
    out = []
    for i in range(2):
        s = simulate_scene(seed=1, index=i, sources=[("noise", rng.standard_normal(32000))])
        out.append(Scene(i, s.mixture.astype(np.float32), s.activity, s.doa.astype(np.float32)))
    return out


@pytest.fixture(scope="module")
def noise_scenes():
    return _noise_scenes()


def _trainer(scenes, **kw):
    torch.manual_seed(0)
    tr = FinderTrainer(TrainConfig(batch=4, lr=3e-3, min_fill=1, finder=TINY, **kw))
    src = SyncSource(lambda i: scenes[i], range(len(scenes)))
    tr.pull(src, block=False)
    return tr


def test_tiny_training_decreases_loss(noise_scenes):
    tr = _trainer(noise_scenes)
    losses = [tr.step() for _ in range(25)]
    assert len(tr.buffer) == 2 and tr.scene_passes == 100 and tr.next_scene == 2
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses


def test_focal_loss_against_a_naive_sum(noise_scenes):
    """γ = 2 equals a per-value loop written from the formula; γ = 0 is the weighted BCE."""
    import math

    tr, plain = _trainer(noise_scenes, focal_gamma=2.0), _trainer(noise_scenes)
    feats, act, doa = tr.buffer.sample(2, torch.Generator().manual_seed(1), tr.symmetries, tr.perm_rows)
    with torch.no_grad():
        logits = tr.model.forward_features(feats)  # (B, T', G), the same weights in both trainers
        target = target_map(doa, act, tr.model.grid, tr.model.cfg.sigma)  # (B, T', G)
        focal = bce = 0.0
        for z, y in zip(logits.flatten().tolist(), target.flatten().tolist()):
            p = 1 / (1 + math.exp(-z))
            term = -(y * math.log(p) + (1 - y) * math.log(1 - p)) * (1 + 4 * y)  # pos_weight 5
            focal += term * abs(y - p) ** 2
            bce += term
        n = logits.numel()
        assert float(tr.loss(feats, act, doa)) == pytest.approx(focal / n, rel=1e-4)
        assert float(plain.loss(feats, act, doa)) == pytest.approx(bce / n, rel=1e-4)


def test_resume_gives_the_same_next_step(noise_scenes):
    tr = _trainer(noise_scenes)
    for _ in range(3):
        tr.step()
    buf = io.BytesIO()
    torch.save(tr.state_dict(), buf)
    expected = tr.step()  # the uninterrupted run's 4th step
    buf.seek(0)
    torch.manual_seed(123)  # the state restores the global generator too
    resumed = FinderTrainer.from_state(torch.load(buf, weights_only=False))
    assert resumed.pending_rebuild == [0, 1] and resumed.step_count == 3
    resumed.pull(SyncSource(lambda i: noise_scenes[i], resumed.pending_rebuild), block=False)
    assert resumed.scenes_added == 2 and resumed.next_scene == 2  # re-made scenes are not counted again
    assert resumed.step() == pytest.approx(expected, abs=1e-6)


def test_find_objects_with_an_ideal_map(monkeypatch):
    f = Finder(FinderConfig(**TINY)).eval()
    t = 30
    u = torch.tensor(unit_vector([40.0, -100.0], [0.0, 30.0]), dtype=torch.float32)  # (2, 3)
    doa = u[None, :, None, :].expand(1, 2, t, 3).clone()  # (1, 2, T', 3)
    act = torch.zeros(1, 2, t, dtype=torch.bool)
    act[0, 0, 2:20] = True
    act[0, 1, 10:28] = True
    ideal = target_map(doa, act, f.grid, f.cfg.sigma).clamp(1e-4, 1 - 1e-4)  # (1, T', G)
    monkeypatch.setattr(f, "forward_features", lambda feats: torch.logit(ideal))
    tracks = find_objects(np.zeros((4, t * 1600), np.float32), f, threshold=0.5)
    assert tracks.n_objects == 2
    for j, k in enumerate(np.argsort([np.flatnonzero(a)[0] for a in tracks.activity])):
        on = tracks.activity[k]
        assert (on == act[0, j].numpy()).mean() > 0.9
        assert angle_deg(tracks.doa[k][on], u[j].numpy().astype(np.float64)).max() < 4.0
    c = score_clip(tracks, act[0].numpy(), doa[0].numpy() * act[0, ..., None].numpy())
    assert c["detected"] == 2 and c["false_objects"] == 0 and c["src_hit"] / c["src_frames"] > 0.9


def test_export_roundtrip(tmp_path):
    f = Finder(FinderConfig(**TINY)).eval()
    f.save(tmp_path / "f.pt", half=True, threshold=0.3)
    g = Finder.from_pretrained(tmp_path / "f.pt")
    x = torch.randn(1, 4, 16000)
    with torch.no_grad():
        torch.testing.assert_close(g(x), f(x), atol=2e-2, rtol=0)
    assert g.meta["threshold"] == 0.3 and g.cfg == f.cfg


def test_export_command_stores_threshold_and_symmetries(noise_scenes, tmp_path):
    from deepasa.train.finder import main, save_atomic

    tr = _trainer(noise_scenes)
    tr.step()
    run = tmp_path / "run"
    run.mkdir()
    save_atomic(tr.state_dict(), run / "last.pt")
    (run / "curve.csv").write_text("step,tuned,threshold\n1,1,0.3\n")  # the latest tuned curve threshold
    out, state = tmp_path / "f.pt", tmp_path / "state.pt"
    assert main(["export", "--run", str(run), "--out", str(out), "--state-out", str(state)]) == 0
    g = Finder.from_pretrained(out)
    assert g.meta["threshold"] == 0.3 and g.meta["symmetries"] == 12 and g.meta["step"] == 1
    assert state.read_bytes() == (run / "last.pt").read_bytes()
    assert main(["export", "--run", str(run), "--out", str(out), "--state-out", str(state),
                 "--threshold", "0.15", "--symmetries", "4"]) == 0
    g = Finder.from_pretrained(out)
    assert g.meta["threshold"] == 0.15 and g.meta["symmetries"] == 4
    with torch.no_grad():  # the export's weights are the trainer's (fp16)
        x = torch.randn(1, 4, 16000)
        torch.testing.assert_close(g(x), tr.model.eval()(x), atol=2e-2, rtol=0)


def test_export_of_a_missing_run_is_a_one_line_error(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "f.pt"
    run = subprocess.run([sys.executable, "-m", "deepasa.train.finder", "export", "--run", str(tmp_path / "none"),
                          "--out", str(out), "--state-out", str(tmp_path / "s.pt")], capture_output=True, text=True)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "no finder run state" in run.stderr and not list(tmp_path.iterdir())  # nothing written


def test_a_negative_focal_gamma_is_a_one_line_error(tmp_path, capsys):
    from deepasa.train.finder import main

    assert main(["train", "--run", str(tmp_path / "run"), "--focal-gamma", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "error: --focal-gamma must be >= 0"
    assert not (tmp_path / "run").exists()  # nothing written
