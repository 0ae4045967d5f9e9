"""The DCASE 2023 SELDnet baseline: features, ADPIT, track → object conversion, training and checkpoints.

Independent truths: a pure delayed copy has its GCC-PHAT peak at the true lag; the intensity vector of an FOA
plane wave points to the source; ADPIT equals a brute-force minimum over every assignment of the three output
tracks onto the same-class sources (written here with loops, not with the 13-permutation table); a hand-built
multi-ACCDOA tensor gives the objects it was built from; a saved model reloads to identical outputs.
"""

import itertools
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from deepasa.audio.geometry import azimuth_elevation, foa_gains, unit_vector
from deepasa.baselines.seldnet import (
    SELDFeatures,
    SELDnet,
    SELDnetBaseline,
    SELDnetConfig,
    accdoa_to_objects,
    adpit_loss,
    adpit_targets,
    unify_tracks,
)


# ------------------------------------------------------------------------------------------------ features
def test_gcc_phat_of_a_delayed_copy_peaks_at_the_true_lag():
    cfg = SELDnetConfig()
    rng = np.random.default_rng(0)
    n = 16000
    src = rng.standard_normal(n + 100)
    delays = [0, 3, -5, 11]                                       # channel m = source delayed by delays[m]
    x = np.stack([src[50 - d: 50 - d + n] for d in delays])       # (4, N): x_m[i] = src[i - d_m + 50]
    feats = SELDFeatures(cfg)(torch.from_numpy(x).float()[None])  # (1, 10, T, 64)
    gcc = feats[0, 4:].mean(1)                                    # (6, 64) averaged over frames
    pairs = list(itertools.combinations(range(4), 2))
    for p, (m, k) in enumerate(pairs):
        lag = int(gcc[p].argmax()) - cfg.n_mels // 2              # index 32 is lag 0
        assert lag == delays[k] - delays[m], (m, k)
        assert float(gcc[p].max()) > 0.9                          # a pure delay is one clean peak


def test_feature_shapes_for_mic_and_foa_and_label_frames_match_deepasa():
    from deepasa.model import get_config

    x = torch.randn(2, 4, 64000) * 0.1
    mic = SELDFeatures(SELDnetConfig(audio_format="mic"))(x)
    foa = SELDFeatures(SELDnetConfig(audio_format="foa"))(x)
    assert mic.shape == (2, 4 + 6, 200, 64) and foa.shape == (2, 4 + 3, 200, 64)
    assert torch.isfinite(mic).all() and torch.isfinite(foa).all()
    net = SELDnet(SELDnetConfig(n_classes=7)).eval()
    t_deepasa = get_config("paper").label_frames(64000)
    assert t_deepasa == 40
    with torch.no_grad():
        assert net(x).shape == (2, t_deepasa, 3, 3, 7)
        # a length that is not a whole number of label frames is padded: T' = ceil(N / 1600), as DeepASA
        assert net(x[..., :20000]).shape[1] == get_config("paper").label_frames(20000) == 13


@pytest.mark.parametrize("az,el", [(0.0, 0.0), (90.0, 0.0), (-135.0, 30.0), (60.0, -50.0), (10.0, 85.0)])
def test_foa_intensity_points_to_the_plane_wave_source(az, el):
    cfg = SELDnetConfig(audio_format="foa")
    u = unit_vector(az, el)                                       # (3,)
    s = np.random.default_rng(1).standard_normal(16000)
    x = foa_gains(u)[:, None] * s[None]                           # (4, N) ACN/SN3D plane wave
    iv = SELDFeatures(cfg)(torch.from_numpy(x).float()[None])[0, 4:]   # (3, T, 64)
    v = iv.mean(dim=(1, 2)).double().numpy()                      # (3,)
    assert np.dot(v, u) / np.linalg.norm(v) > 0.9999
    # per band, the normalised intensity of a plane wave is 0.75 u times the band's weight sum
    band = iv[:, 20:-5, 30]                                       # (3, T) one mel band, away from the edges
    direction = band / band.norm(dim=0, keepdim=True)
    assert torch.allclose(direction, torch.from_numpy(u).float()[:, None].expand_as(direction), atol=1e-3)
    got_az, got_el = azimuth_elevation(v)
    assert abs((got_az - az + 180) % 360 - 180) < 0.5 or abs(el) > 80
    assert abs(got_el - el) < 0.5


# ------------------------------------------------------------------------------------------------ ADPIT
def _brute_force_adpit(out, cls, act, doa):
    """Min over every surjective assignment of the 3 tracks onto the ≤ 3 active same-class sources, per (b, t, c)."""
    B, T = out.shape[:2]
    C = out.shape[-1]
    losses = np.zeros((B, T, C))
    for b, t, c in itertools.product(range(B), range(T), range(C)):
        srcs = [doa[b, j, t] for j in range(cls.shape[1]) if cls[b, j] == c and act[b, j, t] > 0.5][:3]
        o = out[b, t, :, :, c]                                    # (3 tracks, 3 xyz)
        if not srcs:
            losses[b, t, c] = np.mean(o ** 2)
            continue
        best = np.inf
        for assign in itertools.product(range(len(srcs)), repeat=3):
            if len(set(assign)) != len(srcs):                     # every source must get a track
                continue
            tgt = np.stack([srcs[a] for a in assign])             # (3, 3)
            best = min(best, np.mean((o - tgt) ** 2))
        losses[b, t, c] = best
    return losses


def _random_labels(seed, B=3, J=5, T=8, C=2):
    g = torch.Generator().manual_seed(seed)
    cls = torch.randint(-1, C, (B, J), generator=g)
    act = (torch.rand(B, J, T, generator=g) > 0.3).float() * (cls >= 0).unsqueeze(-1)
    doa = torch.nn.functional.normalize(torch.randn(B, J, T, 3, generator=g), dim=-1) * act.unsqueeze(-1)
    return cls, act, doa


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_adpit_equals_brute_force_min_over_track_assignments(seed):
    cls, act, doa = _random_labels(seed)
    cls[0, :4] = 1                                                # force 3+ same-class overlaps somewhere
    act[0, :4, :3] = 1.0
    doa = torch.nn.functional.normalize(doa + 1e-3, dim=-1) * act.unsqueeze(-1)
    out = torch.tanh(torch.randn(3, 8, 3, 3, 2, generator=torch.Generator().manual_seed(seed + 10)))
    tgt = adpit_targets(cls, act, doa, n_classes=2)
    got = adpit_loss(out, tgt, reduction="none").numpy()          # (B, T, C)
    ref = _brute_force_adpit(out.numpy(), cls.numpy(), act.numpy(), doa.numpy())
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)
    assert float(adpit_loss(out, tgt)) == pytest.approx(ref.mean(), rel=1e-5)


def test_adpit_is_zero_for_perfect_predictions():
    cls, act, doa = _random_labels(5)
    B, J, T = act.shape
    out = torch.zeros(B, T, 3, 3, 2)
    for b, t, c in itertools.product(range(B), range(T), range(2)):
        srcs = [doa[b, j, t] for j in range(J) if cls[b, j] == c and act[b, j, t] > 0.5][:3]
        for k in range(3):                                        # tracks 0,1,2 -> sources 0,1,min(2,n−1)
            if srcs:
                out[b, t, k, :, c] = srcs[min(k, len(srcs) - 1)]
    assert float(adpit_loss(out, adpit_targets(cls, act, doa, 2))) < 1e-12


# ------------------------------------------------------------------------------------------------ objects
def test_output_conversion_gives_the_objects_of_a_hand_built_multi_accdoa():
    T, C = 10, 4
    u1, u2, u3 = (torch.tensor(unit_vector(a, e), dtype=torch.float32) for a, e in ((30, 10), (-100, 0), (150, -40)))
    acc = torch.zeros(1, T, 3, 3, C)
    for k in range(3):                                            # class 1: one source, duplicated on all tracks
        jitter = torch.tensor(unit_vector(30 + 2 * k, 10), dtype=torch.float32)   # within the 15° unification
        acc[0, 0:6, k, :, 1] = 0.9 * jitter
    acc[0, 2:10, 0, :, 3] = 0.8 * u2                              # class 3: two sources (B0 B1 B0 pattern)
    acc[0, 2:10, 2, :, 3] = 0.8 * u2
    acc[0, 2:10, 1, :, 3] = 0.95 * u3
    acc[0, :, 2, :, 0] = 0.3 * u1                                 # class 0: below the 0.5 threshold everywhere
    out = accdoa_to_objects(acc, n_slots=5)
    assert out.image is None and out.direct is None and out.noise is None
    assert out.cls_logits.shape == (1, 5, C) and out.onoff.shape == (1, 5, T) and out.doa.shape == (1, 5, T, 3)
    from deepasa.model.deepasa import decide

    d = decide(out)
    # slots by activity mass: u3 (0.95·8) > u2 (0.8·8) > u1 (0.9·6); two empty slots
    assert d.present[0].tolist() == [True, True, True, False, False]
    assert d.class_index[0, :3].tolist() == [3, 3, 1]
    expect_active = [range(2, 10), range(2, 10), range(0, 6)]
    for j, (u, frames) in enumerate(zip((u3, u2, u1), expect_active)):
        assert d.active[0, j].nonzero().flatten().tolist() == list(frames)
        err = torch.rad2deg(torch.arccos((d.doa[0, j, list(frames)] @ u).clamp(-1, 1)))
        assert float(err.max()) < (2.5 if j == 2 else 0.1)       # class 1 is the mean of 30°, 32°, 34°
    assert float(out.doa[0, 0, 5].norm()) == pytest.approx(0.95, abs=1e-5)   # the norm carries the activity
    assert (out.onoff[0, 3:] < 0).all() and (out.doa[0, 3:] == 0).all()
    # per-frame unification: frame 3 holds one class-1 event and two class-3 events
    active, _ = unify_tracks(acc)
    assert int(active[0, 3, :, 1].sum()) == 1 and int(active[0, 3, :, 3].sum()) == 2
    assert int(active[0, :, :, 0].sum()) == 0


# ------------------------------------------------------------------------------------------------ training
def _write_scenes(root, split, n, seed, sr=16000, seconds=1.0, classes=("alarm", "speech", "water")):
    """Tiny scenes in the SceneDataset layout: 1-2 plane-wave noise sources on the MIC tetrahedron."""
    from deepasa.audio.geometry import SPEED_OF_SOUND, tetra_mic_offsets

    rng = np.random.default_rng(seed)
    d = root / split
    for sub in ("mixed", "anechoic", "reverb", "info", "meta"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps(list(classes)))
    N, n_frames = int(sr * seconds), int(round(seconds * 10))
    mics = tetra_mic_offsets()                                    # (4, 3)
    for i in range(n):
        sid = f"{i:03d}"
        (d / "anechoic" / sid).mkdir(exist_ok=True)
        (d / "reverb" / sid).mkdir(exist_ok=True)
        mix, rows, sources = np.zeros((N, 4)), [], []
        for k in range(rng.integers(1, 3)):
            c, az, el = int(rng.integers(len(classes))), float(rng.uniform(-180, 180)), float(rng.uniform(-40, 40))
            on, off = sorted(rng.choice(np.arange(n_frames + 1), 2, replace=False))
            s = np.zeros(N)
            s[on * sr // 10: off * sr // 10] = 0.2 * rng.standard_normal((off - on) * sr // 10)
            lags = np.round(-(mics @ unit_vector(az, el)) / SPEED_OF_SOUND * sr).astype(int)   # arrival earlier
            img = np.stack([np.roll(s, lag) for lag in lags], axis=1)                        # (N, 4)
            sf.write(d / "anechoic" / sid / f"{k}.wav", img.astype(np.float32), sr, subtype="FLOAT")
            sf.write(d / "reverb" / sid / f"{k}.wav", np.zeros((N, 4), np.float32), sr, subtype="FLOAT")
            mix += img
            rows += [f"{f},{k},{c},{az:.2f},{el:.2f}" for f in range(on, off)]
            sources.append({"class_index": c})
        sf.write(d / "mixed" / f"{sid}.wav", mix.astype(np.float32), sr, subtype="FLOAT")
        (d / "info" / f"{sid}.csv").write_text("\n".join(rows) + "\n")
        (d / "meta" / f"{sid}.json").write_text(json.dumps({"format": "mic", "sources": sources}))


@pytest.fixture(scope="module")
def tiny_scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("seldnet_data")
    _write_scenes(root, "train", 6, seed=0)
    _write_scenes(root, "val", 2, seed=1)
    return root


def test_training_decreases_the_loss_and_the_checkpoint_reloads_identically(tiny_scenes, tmp_path):
    from deepasa.baselines.seldnet_train import resume_path, train_seldnet

    out = tmp_path / "seldnet.pt"
    info = train_seldnet(tiny_scenes, out, max_minutes=2.0, batch_size=3, max_steps=24, val_every=8, log_every=4,
                         scaler_clips=6, verbose=False)
    assert info["steps"] == 24 and info["threads"] == 1
    train_curve = [h["train_loss"] for h in info["history"] if "train_loss" in h]
    assert len(train_curve) == 6 and train_curve[-1] < 0.7 * train_curve[0]
    assert "seld" in info["val_metrics"] and "dcase" in info["val_metrics"]

    base = SELDnetBaseline.load(out)
    assert base.class_names == ["alarm", "speech", "water"] and base.config.n_classes == 3
    assert base.train_info["steps"] == 24 and base.train_info["best_step"] in (8, 16, 24)
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["format"] == "deepasa-seldnet-1" and set(ckpt) >= {"config", "state_dict", "class_names", "train_info"}
    # the features are standardised with fitted statistics, stored with the weights
    assert not torch.equal(ckpt["state_dict"]["feat_std"], torch.ones_like(ckpt["state_dict"]["feat_std"]))

    x = torch.randn(2, 4, 16000) * 0.1
    again = SELDnetBaseline.load(base.save(tmp_path / "copy.pt"))
    assert torch.equal(base.accdoa(x), again.accdoa(x))
    a, b = base(x), again(x)
    for name in ("cls_logits", "sed", "onoff", "doa"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert a.doa.shape == (2, 5, 10, 3)
    frames = base.dcase_frames(x)
    assert len(frames) == 2 and all(isinstance(f, dict) for f in frames)

    # resume continues the step count from the saved state
    assert resume_path(out).is_file()
    info2 = train_seldnet(tiny_scenes, out, max_minutes=2.0, batch_size=3, max_steps=28, val_every=8, log_every=4,
                          resume=True, final_metrics=False, verbose=False)
    assert info2["steps"] == 28 and info2["wall_seconds"] > info["wall_seconds"]


def test_scoring_path_accepts_the_baseline(tiny_scenes):
    from deepasa.data.scenes import SceneDataset
    from deepasa.train.evaluate import score_system

    ds = SceneDataset(tiny_scenes, "val")
    base = SELDnetBaseline(SELDnetConfig(n_classes=3))
    rep = score_system(base, ds, n_classes=3, class_names=ds.class_names, with_sdr=False, progress=False)
    assert set(rep) >= {"seld", "dcase", "localization"} and "separation" not in rep


def test_load_rejects_other_files(tmp_path):
    from deepasa.errors import DeepASAError

    bad = tmp_path / "bad.pt"
    torch.save({"format": "something-else"}, bad)
    with pytest.raises(DeepASAError):
        SELDnetBaseline.load(bad)
    with pytest.raises(DeepASAError):
        SELDnetBaseline.load(tmp_path / "missing.pt")


def test_docstring_examples_hold():
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module("deepasa.baselines.seldnet"))
    assert result.attempted >= 2 and result.failed == 0
