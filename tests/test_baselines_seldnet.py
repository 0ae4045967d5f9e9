"""The DCASE 2023 SELDnet baseline: features, ADPIT, track → object conversion, training and checkpoints.

Independent truths: a pure delayed copy has its GCC-PHAT peak at the true lag; the upsampled GCC-PHAT of a
plane wave of known direction equals the band-limited correlation written as an explicit cosine sum and peaks
at the geometric delay; the label frames of a simulated scene are where its direct path has energy in the
network's feature frames, and the ADPIT targets hold the simulator's directions; the intensity vector of an FOA
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
    classify_agnostic_events,
    seldnet_loss,
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


def _plane_wave(u, n=32000, seed=0):
    """Tetrahedral capsule signals of a white plane wave from unit direction u (exact fractional delays).

    Returns (x (4, N) float32, delay (4,) arrival delay of each capsule in samples at 16 kHz)."""
    from deepasa.audio.geometry import SPEED_OF_SOUND, tetra_mic_offsets

    delay = -(tetra_mic_offsets() @ u) / SPEED_OF_SOUND * 16000          # (4,) a capsule nearer the source: earlier
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))   # (n/2+1,)
    w = 2 * np.pi * np.fft.rfftfreq(n)                                   # (n/2+1,) rad/sample
    x = np.stack([np.fft.irfft(spec * np.exp(-1j * w * d), n) for d in delay])   # (4, N)
    return x.astype(np.float32), delay


@pytest.mark.parametrize("az,el", [(0.0, 0.0), (75.0, 20.0), (-140.0, -35.0), (20.0, 80.0)])
def test_upsampled_gcc_phat_of_a_plane_wave_is_the_band_limited_correlation(az, el):
    cfg = SELDnetConfig(gcc_upsample=4)
    x, delay = _plane_wave(unit_vector(az, el))
    gcc = SELDFeatures(cfg)(torch.from_numpy(x)[None])[0, 4:, 10:-10].mean(1).double().numpy()   # (6, 64)
    tau = (np.arange(cfg.n_mels) - cfg.n_mels // 2) / 4.0               # (64,) lag of each index, samples
    k = np.arange(1, cfg.n_fft // 2)                                     # interior bins
    for p, (m, n) in enumerate(itertools.combinations(range(4), 2)):
        d = delay[n] - delay[m]                                          # channel n lags channel m by d
        # PHAT cross-spectrum of a pure delay: exp(-j w d) on every bin; its inverse DFT as an explicit sum
        ideal = (1 + 2 * np.cos(2 * np.pi * np.outer(tau - d, k) / cfg.n_fft).sum(1)
                 + np.cos(np.pi * (tau - d))) / cfg.n_fft                # (64,)
        np.testing.assert_allclose(gcc[p], ideal, atol=0.03)
        assert abs(tau[int(gcc[p].argmax())] - d) <= 0.125 + 1e-9      # peak within half a lag step
    assert np.abs(tau).max() >= 8 > np.abs(delay[:, None] - delay[None]).max()   # every direct-path delay is kept


def test_label_frames_of_a_simulated_scene_match_the_feature_frames_and_targets():
    from deepasa.scenes.config import SceneConfig
    from deepasa.scenes.simulator import simulate_scene

    cfg = SceneConfig.from_dict({"num_sources": [1], "num_sources_weights": [1.0], "moving_prob": 0.0,
                                 "duration": 2.0, "event_duration": [0.8, 0.8], "snr_db": [60.0, 60.0]})
    dry = np.random.default_rng(4).standard_normal(16000)
    scene = simulate_scene(seed=4, config=cfg, sources=[("c0", dry)])
    act = scene.activity[0]                                              # (20,) simulator label frames
    assert 4 <= act.sum() <= 12 and not act.all()
    scfg = SELDnetConfig(n_classes=1)
    mel = SELDFeatures(scfg)(torch.from_numpy(scene.direct[0])[None])[0, :4]       # (4, T, 64) dB
    power = (10 ** (mel / 10)).sum(dim=(0, 2)).reshape(-1, scfg.frames_per_label)  # (T', 5)
    db = 10 * np.log10(power.mean(1).numpy())                           # (T',) direct-path level per label frame
    assert db.shape == act.shape
    # label frame i pools the STFT frames centred in [1600 i, 1600 i + 1600) (as DCASE 2023): an edge frame the
    # event only grazes may be at either level, every other frame must sound exactly where it is labelled
    inner_on = act & np.roll(act, 1) & np.roll(act, -1)                 # (T',) active with active neighbours
    inner_off = ~act & ~np.roll(act, 1) & ~np.roll(act, -1)             # (T',) silent with silent neighbours
    assert inner_on.sum() >= 4 and inner_off.sum() >= 4
    assert db[inner_on].min() > db.max() - 6.0 and db[inner_off].max() < db.max() - 60.0
    # the grid itself: a burst filling label frame 7 only is in frame 7's STFT frames; frame 8's first frame
    # (centred on the boundary) sees its last half window, so max-pooling shows it there 3-6 dB lower; no other
    burst = np.zeros((1, 4, 32000), np.float32)
    burst[..., 7 * 1600: 8 * 1600] = np.random.default_rng(5).standard_normal(1600)
    mel = SELDFeatures(scfg)(torch.from_numpy(burst))[0, 0]             # (T, 64) dB, channel 0
    peak = mel.amax(1).reshape(-1, scfg.frames_per_label).amax(1).numpy()   # (T',) max-pooled level
    assert int(peak.argmax()) == 7 and peak[7] - 7.0 < peak[8] < peak[7] - 2.0
    assert np.all(np.delete(peak, [7, 8]) < peak[7] - 60.0)
    doa = torch.from_numpy(scene.doa[None]).float()                      # (1, 1, T', 3)
    tgt = adpit_targets(torch.tensor([[0]]), torch.from_numpy(act[None, None]).float(), doa, 1)  # (1, T', 6, 3, 1)
    np.testing.assert_allclose(tgt[0, :, 0, :, 0].numpy(), scene.doa[0], atol=1e-6)
    assert float(tgt[0, :, 1:].abs().sum()) == 0.0                       # one source: dummy track A0 only


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


def test_agnostic_term_is_adpit_of_the_labels_with_classes_merged():
    cls, act, doa = _random_labels(3, C=3)
    cfg = SELDnetConfig(n_classes=3, doa_head="agnostic", agnostic_weight=0.5)
    out = torch.tanh(torch.randn(3, 8, 3, 3, 4, generator=torch.Generator().manual_seed(7)))   # C + 1 outputs
    got = float(seldnet_loss(out, cls, act, doa, cfg))
    classwise = float(adpit_loss(out[..., :3], adpit_targets(cls, act, doa, 3)))
    merged = _brute_force_adpit(out[..., 3:].numpy(), np.where(cls.numpy() >= 0, 0, -1),
                                act.numpy(), doa.numpy()).mean()          # every source one class (0)
    assert got == pytest.approx(classwise + 0.5 * merged, rel=1e-5)
    plain = SELDnetConfig(n_classes=3)
    assert float(seldnet_loss(out[..., :3], cls, act, doa, plain)) == pytest.approx(classwise, rel=1e-6)


def test_agnostic_events_take_the_class_that_is_active_where_they_point():
    T, C = 4, 3
    u1, u2 = (torch.tensor(unit_vector(a, e), dtype=torch.float32) for a, e in ((40, 0), (-120, 30)))
    acc = torch.zeros(1, T, 3, 3, C + 1)
    acc[0, :, :, :, C] = 0.9 * u1                                        # one agnostic event, duplicated on 3 tracks
    acc[0, :, 0, :, 2] = 0.3 * u1                                        # class 2: weak but pointing there
    acc[0, :, 1, :, 0] = 0.45 * u2                                       # class 0: stronger, elsewhere
    acc[0, 2, 2, :, 1] = 0.4 * u1                                        # class 1: one frame only
    dec = classify_agnostic_events(acc)                                  # (1, T, 3, 3, C)
    active, vec = unify_tracks(dec)
    assert active[0].sum(dim=(1, 2)).tolist() == [1] * T                 # one event per frame
    assert active[0, :, 0].nonzero()[:, 1].tolist() == [2] * T           # the same class in every frame
    assert torch.allclose(vec[0, :, 0, :, :].sum(-1), 0.9 * u1.expand(T, 3), atol=1e-6)
    acc[0, :, 1, :, 0] = 0.45 * u1                                       # class 0 now points at the event
    assert unify_tracks(classify_agnostic_events(acc))[0][0, :, 0].nonzero()[:, 1].tolist() == [0] * T
    assert float(classify_agnostic_events(acc * 0.5).abs().sum()) == 0.0  # ||v|| = 0.45: no event
    base = SELDnetBaseline(SELDnetConfig(n_classes=C, doa_head="agnostic"))
    assert base.model(torch.zeros(1, 4, 3200)).shape == (1, 2, 3, 3, C + 1)
    assert base(torch.zeros(1, 4, 3200)).cls_logits.shape == (1, 5, C)


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
    from deepasa.evaluation.scoring import score_system

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
