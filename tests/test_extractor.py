"""The trajectory-conditioned extractor: starts as the spatial stage, learns, round-trips, perturbs like a finder."""

import numpy as np
import pytest
import torch

from deepasa.model.extractor import ExtractorConfig, TrajectoryExtractor, extract, extractor_features
from deepasa.separation import separate
from deepasa.separation.spatial import check_trajectories, istft, spatial_stft
from deepasa.train.extractor import perturb, snr_loss

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def scene():
    from deepasa.scenes.simulator import simulate_scene

    rng = np.random.default_rng(2)
    tone = np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)
    return simulate_scene(seed=5, sources=[("noise", rng.standard_normal(12000)), ("tone", tone)])


def test_untrained_extractor_is_the_spatial_stage(scene):
    model = TrajectoryExtractor(ExtractorConfig(hidden=8, n_blocks=1)).eval()
    out = extract(scene.mixture, scene.activity, scene.doa, model)
    ref = separate(scene.mixture, scene.activity, scene.doa)
    np.testing.assert_allclose(out.image, ref.image, atol=1e-5)
    np.testing.assert_allclose(out.direct, ref.direct, atol=1e-5)
    np.testing.assert_allclose(out.image.sum(0) + out.remainder, scene.mixture, atol=1e-5)


def test_features_have_the_documented_shape(scene):
    x, act, unit, offs = check_trajectories(scene.mixture, scene.activity, scene.doa)
    st = spatial_stft(x, act, unit, 16000, 0.1, offs, ExtractorConfig().spatial_config())
    feats = extractor_features(st)
    assert feats.shape == (2, 257, st.spec.shape[-1], 31) and torch.isfinite(feats).all()


def test_a_few_steps_fit_one_scene_better_than_the_stage(scene):
    torch.manual_seed(0)
    model = TrajectoryExtractor(ExtractorConfig(hidden=16, n_blocks=1))
    x, act, unit, offs = check_trajectories(scene.mixture[:, :16000], scene.activity[:, :10], scene.doa[:, :10])
    cfg = model.config.spatial_config()
    st = spatial_stft(x, act, unit, 16000, 0.1, offs, cfg)
    target = torch.as_tensor((scene.direct + scene.reverb)[:, :, :16000])
    feats = extractor_features(st)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        img, _ = model(feats, st)
        loss = snr_loss(istft(img, 16000, cfg), target).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 1.0, losses  # more than 1 dB better than where it started (the stage)


def test_serialization_round_trip(tmp_path, scene):
    model = TrajectoryExtractor(ExtractorConfig(hidden=8, n_blocks=1))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    torch.save(model.serialize(), tmp_path / "e.pt")
    again = TrajectoryExtractor.from_pretrained(tmp_path / "e.pt")
    a = extract(scene.mixture, scene.activity, scene.doa, model.eval())
    b = extract(scene.mixture, scene.activity, scene.doa, again)
    np.testing.assert_allclose(a.image, b.image, atol=1e-6)


def test_stage_parameters_travel_with_the_weights(tmp_path):
    """A checkpoint stores every field of the stage it was trained on, so later default changes cannot reach it."""
    from dataclasses import asdict, fields

    from deepasa.separation import SpatialConfig

    model = TrajectoryExtractor(ExtractorConfig(hidden=8, n_blocks=1, spatial={"beta": 10.0}))
    stored = model.serialize()["config"]["spatial"]
    assert set(stored) == {f.name for f in fields(SpatialConfig)}  # every field, not only the ones given
    assert stored == {**asdict(SpatialConfig()), "beta": 10.0}
    torch.save(model.serialize(), tmp_path / "e.pt")
    assert TrajectoryExtractor.from_pretrained(tmp_path / "e.pt").config.spatial_config() == SpatialConfig(
        **stored)


def test_not_a_checkpoint_is_a_one_line_error(tmp_path):
    from deepasa.errors import DeepASAError

    (tmp_path / "x.pt").write_text("nope")
    with pytest.raises(DeepASAError, match="not a trajectory-extractor checkpoint"):
        TrajectoryExtractor.from_pretrained(tmp_path / "x.pt")


def test_perturbation_looks_like_a_finder(scene):
    rng = np.random.default_rng(0)
    act = np.zeros((3, 40), bool)
    act[:, 5:30] = True
    doa = np.tile([1.0, 0.0, 0.0], (3, 40, 1))
    errors, changed = [], []
    for _ in range(50):
        a, d = perturb(act, doa, rng)
        errors.append(np.degrees(np.arccos(np.clip(d[..., 0], -1, 1))).mean())
        changed.append((a != act).mean())
        np.testing.assert_allclose(np.linalg.norm(d, axis=-1), 1.0, atol=1e-9)
    assert 4.0 < np.mean(errors) < 20.0  # ~8° per axis
    assert 0.01 < np.mean(changed) < 0.08  # a few frames, not the trajectory


def test_si_sdr_loss_is_minus_the_metric():
    """The scale-invariant training loss equals −SI-SDR of deepasa.metrics (one channel, cap far away), and is
    blind to the estimate's scale."""
    from deepasa.metrics.separation import si_sdr
    from deepasa.train.extractor import si_sdr_loss

    rng = np.random.default_rng(0)
    t = rng.standard_normal((2, 1, 4000))
    e = t + 0.3 * rng.standard_normal((2, 1, 4000))
    loss = si_sdr_loss(torch.as_tensor(e), torch.as_tensor(t), cap_db=200.0).numpy()
    np.testing.assert_allclose(loss, [-si_sdr(e[k, 0], t[k, 0], zero_mean=False) for k in range(2)], atol=1e-4)
    np.testing.assert_allclose(si_sdr_loss(torch.as_tensor(3 * e), torch.as_tensor(t), cap_db=200.0).numpy(), loss,
                               atol=1e-6)


def test_si_sdr_loss_is_finite_for_a_silent_object():
    """A silent target with a silent (gated) estimate must not give 0/0 (a NaN stopped an A/B arm at step 171)."""
    from deepasa.train.extractor import si_sdr_loss

    zero = torch.zeros(1, 4, 800)
    assert torch.isfinite(si_sdr_loss(zero, zero)).all()


def test_mix_option_sets_the_scene_kinds():
    from deepasa.errors import DeepASAError
    from deepasa.train.extractor import MIX, SceneStream, parse_mix

    assert parse_mix("default=0.45,dense=0.25,1-2=0.3") == (("default", 0.45), ("dense", 0.25), ("1-2", 0.3))
    for bad in ("default=0.5,dense=0.2", "default=1.2,1-2=-0.2", "studio=1", "default"):
        with pytest.raises(DeepASAError, match="--mix"):
            parse_mix(bad)
    stream = iter(SceneStream(ExtractorConfig(hidden=8, n_blocks=1), start=0, mix=parse_mix("1-2=1")))
    assert next(stream)["kind"] == "1-2"
    assert dict(MIX)["1-2"] == 0.15  # the runs so far: the default mix is unchanged
