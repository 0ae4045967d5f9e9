"""The trajectory-first pipeline as a scored system (``deepasa evaluate --finder``): its outputs against the
spatial stage run by hand on the reference trajectories, the trivial gate oracle against the mixture, the J-slot
cut, the class mapping by name, and the command end to end on simulated scenes."""

import json

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from conftest import simulated_noise_scenes
from deepasa.cli import main
from deepasa.evaluation import score_system
from deepasa.evaluation.trajectory_system import TrajectoryFirstSystem
from deepasa.model.finder import MapFinder
from deepasa.tracking.tracker import Tracks

CLASSES = ["alarm", "bell", "machine"]
RATE = 8000


@pytest.fixture(scope="module")
def scenes():
    return simulated_noise_scenes([1, 2, 3], CLASSES, rng_seed=1, scene_seed=5)


def reference(item):
    """The reference trajectories of one item, as the oracle must pass them: active slots only, unit
    directions, each source's mean direction where it is silent."""
    act = item["activity"].numpy() > 0.5  # (J, T')
    keep = act.any(axis=1)
    act, doa = act[keep], item["doa"].numpy()[keep].astype(np.float64)  # (K, T'), (K, T', 3)
    mean = np.stack([d[a].mean(axis=0) / np.linalg.norm(d[a].mean(axis=0)) for d, a in zip(doa, act)])  # (K, 3)
    return act, np.where(act[..., None], doa, mean[:, None, :])


def test_true_oracle_is_the_spatial_stage_on_the_reference_trajectories(scenes):
    from deepasa.separation import separate

    system = TrajectoryFirstSystem("true", CLASSES, sample_rate=RATE)
    for item in scenes:
        out = system(default_collate([item]))
        act, doa = reference(item)
        k = len(act)
        by_hand = separate(item["mixture"].numpy(), act, doa, sample_rate=RATE, label_hop=0.1)
        np.testing.assert_allclose(out.image[0, :k].numpy(), by_hand.image, atol=1e-6)
        np.testing.assert_allclose(out.direct[0, :k].numpy(), by_hand.direct, atol=1e-6)
        assert torch.all(out.image[0, k:] == 0)                          # empty slots are silence
        assert torch.equal(out.onoff[0, :k] > 0, torch.from_numpy(act))   # the decision is the trajectory
        assert torch.all(out.onoff[0, k:] < 0)
        on = torch.from_numpy(act)
        np.testing.assert_allclose(out.doa[0, :k][on].numpy(), item["doa"][item["activity"].amax(-1) > 0.5][on].numpy(),
                                   atol=1e-5)
        # no read-out: one class, every object of it (only the class-agnostic blocks mean anything)
        assert torch.all(out.cls_logits[0, :k].argmax(-1) == 0)


def test_true_oracle_scores_every_source_found_where_it_is(scenes):
    system = TrajectoryFirstSystem("true", CLASSES, sample_rate=RATE)
    report = score_system(system, scenes, n_classes=3, class_names=CLASSES, progress=False, with_sdr=False,
                          by_num_sources=False)
    assert report["objects"]["detection_rate"] == 1.0
    assert report["objects"]["doa_error_median_deg"] < 1e-3
    assert report["localization"]["F"] > 0.99                         # activity = the reference's, frame by frame
    assert report["separation"]["si_sdri_db"] > 1.0  # white-noise sources overlapping most of 1 s: direction alone


def test_gated_oracle_is_the_mixture_where_the_source_is_active(scenes):
    system = TrajectoryFirstSystem("gated", CLASSES, sample_rate=RATE)
    item = scenes[2]
    out = system(default_collate([item]))
    act, _ = reference(item)
    mix = item["mixture"].numpy()
    hop = RATE // 10
    for k, a in enumerate(act):
        gate = np.repeat(a, hop)[: mix.shape[-1]]  # (N,)
        np.testing.assert_array_equal(out.image[0, k].numpy(), mix * gate)
    assert "gate" in system.name


class PlantedFinder(MapFinder):
    """A map finder that returns planted tracks (the test's independent truth), without a network."""

    def __init__(self, tracks: Tracks) -> None:
        self.spec, self._tracks = "planted", tracks

    def scores(self, x):
        return np.zeros((x.shape[-1] // (RATE // 10), 1))

    def track(self, scores):
        return self._tracks


def test_more_objects_than_slots_keeps_the_strongest(scenes):
    t = 10
    doa = np.zeros((4, t, 3))
    doa[..., 0] = 1.0
    act = np.ones((4, t), bool)
    act[3] = False                                                     # a track never active is no object
    act[3, 0] = True
    score = np.array([0.9, 0.2, 0.6, 0.99])[:, None] * act               # object 3: one strong frame only
    finder = PlantedFinder(Tracks(activity=act, doa=doa, score=score))
    system = TrajectoryFirstSystem(finder, CLASSES, sample_rate=RATE)
    out = system(default_collate([scenes[0]]))                         # J = 3 slots
    assert system.dropped == 1
    # kept: 0 (sum 9), 2 (6) and 1 (2) beat 3 (0.99); order of the finder kept
    assert torch.equal(out.onoff[0, :, 0] > 0, torch.tensor([True, True, True]))
    assert torch.all(out.onoff[0, :, 1:] > 0)                          # object 3 (active in frame 0 only) is gone


class FixedClassifier:
    """A read-out double: fixed probabilities over its own class order."""

    class_names = ["machine", "siren", "alarm"]

    def predict_proba(self, signals):
        return np.tile([0.7, 0.2, 0.1], (len(signals), 1))


def test_read_out_classes_land_on_the_data_classes_by_name(scenes):
    system = TrajectoryFirstSystem("true", CLASSES, classifier=FixedClassifier(), sample_rate=RATE)
    out = system(default_collate([scenes[1]]))
    logp = out.cls_logits[0, 0].numpy()
    np.testing.assert_allclose(np.exp(logp), [0.1, 1e-6, 0.7], rtol=1e-5)  # alarm, bell (not read out), machine
    assert out.cls_logits[0, :2].argmax(-1).tolist() == [2, 2]


def test_evaluate_command_on_simulated_scenes(tiny_bank_home, tmp_path, capsys):
    data = tmp_path / "sim"
    assert main(["simulate", "--home", str(tiny_bank_home), "--out", str(data), "--split", "test", "--num-scenes", "2",
                 "--seed", "4", "--set", "duration=2.0", "--set", "num_sources=[1,2]",
                 "--set", "num_sources_weights=[1,1]", "--quiet"]) == 0
    out = tmp_path / "report.json"
    assert main(["evaluate", "--finder", "true", "--data", str(data), "--no-classes", "--no-sdr", "--quiet",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["pipeline"]["trajectories"] == "true" and report["pipeline"]["separation"] == "spatial"
    assert report["objects"]["detection_rate"] == 1.0
    assert "trajectory-first pipeline: true + spatial stage" in capsys.readouterr().out
    assert main(["evaluate", "--finder", "srp", "--data", str(data), "--no-classes", "--no-sdr", "--quiet",
                 "--no-by-num-sources"]) == 0


@pytest.mark.parametrize("argv, needle", [
    (["--finder", "true", "--checkpoint", "x.pt"], "not allowed with"),
    (["--checkpoint", "x.pt", "--classes", "c.pt"], "go with --finder"),
    (["--finder", "/nowhere/finder.pt"], "no finder checkpoint"),
    (["--finder", "true", "--classes", "/nowhere/c.pt"], "no class read-out"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, argv, needle):
    (tmp_path / "data").mkdir()
    rc = 2
    try:
        rc = main(["evaluate", "--data", str(tmp_path / "data"), *argv])
    except SystemExit as exc:                                          # argparse's own usage error
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_evaluate_command_on_foa_scenes(tiny_bank_home, tmp_path, capsys):
    data = tmp_path / "sim_foa"
    assert main(["simulate", "--home", str(tiny_bank_home), "--out", str(data), "--split", "test", "--num-scenes", "2",
                 "--seed", "4", "--set", "duration=2.0", "--set", "num_sources=[1,2]",
                 "--set", "num_sources_weights=[1,1]", "--format", "foa", "--quiet"]) == 0
    out = tmp_path / "report.json"
    assert main(["evaluate", "--finder", "true", "--format", "foa", "--data", str(data), "--no-classes", "--no-sdr",
                 "--quiet", "--no-by-num-sources", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["format"] == "foa" and report["objects"]["detection_rate"] == 1.0
    assert report["separation"]["si_sdri_db"] > 0.0
    capsys.readouterr()
    assert main(["evaluate", "--finder", "true", "--data", str(data), "--no-classes", "--quiet"]) == 2  # FOA as MIC
    err = capsys.readouterr().err
    assert "Ambisonics" in err and len(err.strip().splitlines()) == 1
