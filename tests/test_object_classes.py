"""The object class read-out (deepasa/model/object_classes.py): which samples it reads, shapes, files, and that
the fitted checkpoint names held-out clean bank clips far better than chance."""

from pathlib import Path

import numpy as np
import pytest
import torch

from deepasa.errors import DeepASAError
from deepasa.model.object_classes import ObjectClassifier, object_signal

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "checkpoints" / "object_classes.pt"
HOP = 1600  # samples per 100-ms label frame at 16 kHz


def _ramp(n_frames: int) -> np.ndarray:
    return np.arange(n_frames * HOP, dtype=np.float32)  # sample i has value i: what was taken is readable


def test_object_signal_takes_active_frames_widened_by_one():
    x = _ramp(30)
    act = np.zeros(30, bool)
    act[[3, 4, 12, 20]] = True  # widened: 2..5, 11..13, 19..21 (10 frames = 1 s ≥ min_seconds)
    y = object_signal(x, act)
    frames = [2, 3, 4, 5, 11, 12, 13, 19, 20, 21]
    want = np.concatenate([np.arange(f * HOP, (f + 1) * HOP) for f in frames])
    np.testing.assert_array_equal(y, want)


def test_object_signal_edges_and_short_objects_are_tiled_to_min_seconds():
    x = _ramp(20)
    act = np.zeros(20, bool)
    act[0] = True  # widened: frames 0, 1 (0.2 s) -> repeated to 0.5 s
    y = object_signal(x, act, min_seconds=0.5)
    base = np.arange(2 * HOP)
    np.testing.assert_array_equal(y, np.concatenate([base, base, base[:HOP]]))
    assert len(y) == 8000
    act = np.zeros(20, bool)
    act[-1] = True  # last frame: widened to 18, 19 only
    np.testing.assert_array_equal(object_signal(x, act, min_seconds=0), np.arange(18 * HOP, 20 * HOP))


def test_object_signal_without_activity_is_the_whole_signal_and_short_trajectories_hold():
    x = _ramp(20)
    np.testing.assert_array_equal(object_signal(x, np.zeros(20, bool)), x)
    act = np.zeros(10, bool)
    act[-1] = True  # a 10-frame trajectory for a 20-frame signal: frame 9 held to the end -> frames 8..19
    np.testing.assert_array_equal(object_signal(x, act), np.arange(8 * HOP, 20 * HOP))


def test_object_signal_cap_keeps_the_loudest_window():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(40 * HOP).astype(np.float32) * 0.01
    x[25 * HOP:35 * HOP] *= 100  # frames 25..34 are loud
    act = np.ones(40, bool)
    y = object_signal(x, act, max_seconds=1.0)  # 10 frames
    np.testing.assert_array_equal(y, x[25 * HOP:35 * HOP])


def _random_classifier(hidden: int, seed: int = 0) -> ObjectClassifier:
    torch.manual_seed(seed)
    clf = ObjectClassifier(["a", "b", "c"], hidden=hidden)
    rng = np.random.default_rng(seed)
    clf.set_standardisation(rng.random(512), 0.5 + rng.random(512))
    return clf.eval()


@pytest.mark.parametrize("hidden", [0, 16])
def test_classify_objects_shapes_and_probabilities(hidden):
    clf = _random_classifier(hidden)
    rng = np.random.default_rng(1)
    images = rng.standard_normal((4, 3 * 16000)).astype(np.float32)
    act = np.zeros((4, 30), bool)
    act[0, 2:6] = True
    act[1, :] = True
    act[3, 29] = True  # object 2: no active frame (whole signal)
    cls, prob = clf.classify_objects(images, act)
    assert cls.shape == (4,) and prob.shape == (4, 3)
    np.testing.assert_allclose(prob.sum(1), 1.0, atol=1e-6)
    assert (prob >= 0).all()
    np.testing.assert_array_equal(cls, prob.argmax(1))
    assert clf.embed([images[0], images[1, :8000]]).shape == (2, 512)
    c0, p0 = clf.classify_objects(np.zeros((0, 16000)), np.zeros((0, 10), bool))
    assert c0.shape == (0,) and p0.shape == (0, 3)


def test_serialization_round_trip_gives_identical_outputs(tmp_path):
    clf = _random_classifier(hidden=32, seed=3)
    path = tmp_path / "oc.pt"
    torch.save(clf.serialize(), path)
    back = ObjectClassifier.from_pretrained(path)
    assert back.class_names == ["a", "b", "c"] and back.config == clf.config
    assert not any(k.startswith("sfx") for k in back.state_dict())  # the aisfx weights stay in the wheel
    rng = np.random.default_rng(2)
    signals = [rng.standard_normal(n).astype(np.float32) for n in (8000, 16000, 16000)]
    np.testing.assert_array_equal(back.predict_proba(signals), clf.predict_proba(signals))


@pytest.mark.parametrize("content", ["garbage", "foreign", "missing", "truncated"])
def test_bad_checkpoint_is_a_one_line_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content == "garbage":
        path.write_bytes(b"not a checkpoint\n" * 10)
    elif content == "foreign":
        torch.save({"kind": "trajectory-extractor", "state_dict": {}}, path)
    elif content == "truncated":
        torch.save(_random_classifier(0).serialize(), path)
        path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DeepASAError) as info:
        ObjectClassifier.from_pretrained(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg


def test_fitted_checkpoint_names_held_out_clean_clips(held_out_bank):
    bank = held_out_bank
    clf = ObjectClassifier.from_pretrained(CHECKPOINT)
    assert clf.class_names == bank.classes
    classes = ["speech", "music", "bell_ringtone", "ui_alert", "percussion", "animal"]
    signals, labels = [], []
    for name in classes:
        for clip in bank.clips("test", [name])[:5]:  # the first five held-out clips of each class
            x = bank.load(clip)[:4 * 16000]  # (≤ 64000,)
            signals.append(object_signal(x, np.ones(40, bool)))
            labels.append(bank.classes.index(name))
    pred = clf.predict_proba(signals).argmax(1)
    acc = float((pred == np.array(labels)).mean())
    assert len(labels) == 30 and acc >= 0.5, acc  # chance: 0.1 over the 10 classes
