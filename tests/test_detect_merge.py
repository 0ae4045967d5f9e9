"""The duplicate merge of the activity rule (``DecisionRule.merge_deg``, docs/model.md deviation 19).

Independent truths: (1) a naive reference, written from the rule's words with one ``math.acos`` per pair of
slots and a sort per frame, decides the same as the vectorised :func:`merge_duplicates` on random scenes with
planted near-duplicates; (2) geometry: two same-class slots 19° apart are one object under a 20° merge and two
under 15°, slots of different classes or with a zero DoA vector never merge; (3) an oracle whose every true
source is written into a second slot as well (same class, DoA turned by 5°, lower on/off output) makes one false
slot-frame per true one without the merge, and scores exactly as the oracle alone with it, in ``score_system``,
in ``DeepASA.decide`` and through ``analyze``.
"""

import math

import numpy as np
import pytest
import torch

from deepasa.inference.analyze import analyze
from deepasa.inference.stitching import WindowOutput
from deepasa.metrics.seld_frame import activity_decisions, merge_duplicates
from deepasa.model import get_config
from conftest import simulated_noise_scenes

CLASSES = ["a", "b", "c"]


def _naive_merge(active, cls, doa, score, max_deg):
    """The rule in words: per frame, slots by decreasing score (ties: lower index first); a slot stays on unless
    a slot kept before it in that frame has the same class and lies within max_deg. (J, T), (J,), (J, T, 3),
    (J, T) -> (J, T)."""
    n_slots, n_frames = active.shape
    out = np.zeros_like(active, dtype=bool)
    for t in range(n_frames):
        kept = []
        for j in sorted(range(n_slots), key=lambda j: (-score[j, t], j)):
            if not active[j, t]:
                continue
            dup = False
            for k in kept:
                a, b = doa[j, t], doa[k, t]
                na, nb = math.sqrt(sum(v * v for v in a)), math.sqrt(sum(v * v for v in b))
                if cls[j] != cls[k] or na == 0 or nb == 0:
                    continue
                angle = math.degrees(math.acos(max(-1.0, min(1.0, sum(x * y for x, y in zip(a, b)) / (na * nb)))))
                dup |= angle < max_deg
            if not dup:
                kept.append(j)
                out[j, t] = True
    return out


def _rotated(v, deg):
    """v (3,) turned by deg about the z axis."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1], v[2]])


@pytest.mark.parametrize("seed", range(6))
def test_merge_equals_the_naive_reference(seed):
    rng = np.random.default_rng(seed)
    batch, n_slots, n_frames = 3, 5, 12
    active = rng.random((batch, n_slots, n_frames)) < 0.7                     # (B, J, T)
    cls = rng.integers(0, 2, (batch, n_slots))                                # (B, J): two classes, many clashes
    doa = rng.standard_normal((batch, n_slots, n_frames, 3))                  # (B, J, T, 3)
    for b in range(batch):                                                    # plant near-duplicates of slot 0
        for j in (1, 3):
            turn = rng.uniform(0, 40, n_frames)                               # (T,) degrees
            doa[b, j] = [_rotated(doa[b, 0, t], turn[t]) * rng.uniform(0.5, 2) for t in range(n_frames)]
    doa[0, 2, :4] = 0.0                                                       # zero vectors close to nothing
    score = rng.integers(0, 4, (batch, n_slots, n_frames)).astype(float)      # (B, J, T): ties on purpose
    for max_deg in (0.0, 10.0, 20.0, 35.0, 180.0):
        got = merge_duplicates(active, cls, doa, score, max_deg)             # (B, J, T)
        want = np.stack([_naive_merge(active[b], cls[b], doa[b], score[b], max_deg) for b in range(batch)])
        np.testing.assert_array_equal(got, want)
    assert (merge_duplicates(active, cls, doa, score, 20.0) <= active).all()  # only ever switches slots off


def test_merge_geometry():
    x = np.array([1.0, 0.0, 0.0])
    doa = np.stack([x, _rotated(x, 19.0) * 0.6])[:, None]                     # (2, 1, 3): 19° apart
    on = np.ones((2, 1), bool)
    score = np.array([[0.7], [0.9]])                                          # slot 1 leads
    np.testing.assert_array_equal(merge_duplicates(on, [0, 0], doa, score, 20.0), [[False], [True]])
    np.testing.assert_array_equal(merge_duplicates(on, [0, 0], doa, score, 15.0), on)
    np.testing.assert_array_equal(merge_duplicates(on, [0, 1], doa, score, 20.0), on)   # other class
    np.testing.assert_array_equal(merge_duplicates(on, [0, 0], doa * [[[1]], [[0]]], score, 20.0), on)  # zero DoA
    np.testing.assert_array_equal(merge_duplicates(on, [0, 0], doa, score, 0.0), on)    # off
    off = np.array([[False], [True]])                                         # an inactive leader suppresses nothing
    np.testing.assert_array_equal(merge_duplicates(~off, [0, 0], doa, score, 20.0), ~off)
    logits = np.log(score / (1 - score))                                      # (2, 1) on/off logits
    cls_logits = np.array([[2.0, 0.0], [3.0, 1.0]])                           # both class 0
    np.testing.assert_array_equal(activity_decisions(logits, doa, 0.5, 0.5, cls_logits, 20.0), [[False], [True]])
    with pytest.raises(ValueError, match="class logits"):
        activity_decisions(logits, doa, 0.5, 0.5, None, 20.0)


def test_rule_field_is_checked():
    from deepasa.errors import DeepASAError
    from deepasa.model import DecisionRule

    assert DecisionRule().merge_deg == 0.0                                    # docs/spec.md §1: no merge
    assert DecisionRule(merge_deg=20).merge_deg == 20.0
    for bad in (-1.0, 181.0):
        with pytest.raises(DeepASAError, match="merge_deg"):
            DecisionRule(merge_deg=bad)


DUP_TURN_DEG = 5.0


def _doubled_oracle(batch):
    """The oracle with every true source copied into an empty slot too: same class, DoA turned by DUP_TURN_DEG,
    on/off logit 2 below the original's, a silent image (so PIT keeps the true assignment)."""
    from deepasa.baselines.oracle import OracleBaseline

    out = OracleBaseline(n_classes=3)(batch)
    used = (batch["activity"] > 0.5).any(-1)                                  # (B, J)
    for b in range(used.shape[0]):
        free = [k for k in range(used.shape[1]) if not used[b, k]]
        for j in np.flatnonzero(used[b].numpy()):
            k = free.pop(0)
            out.cls_logits[b, k] = out.cls_logits[b, j]
            out.onoff[b, k] = out.onoff[b, j] - 2.0
            turned = [_rotated(v, DUP_TURN_DEG) for v in out.doa[b, j].double().numpy()]
            out.doa[b, k] = torch.as_tensor(np.stack(turned), dtype=out.doa.dtype)
    return out


@pytest.fixture(scope="module")
def scenes():
    """Four 1-s, 8-kHz simulated scenes with 1-2 noise sources in 4 slots: a free slot for every source."""
    return simulated_noise_scenes([1, 2, 1, 2], CLASSES, rng_seed=3, scene_seed=9, n_slots=4)


def test_merge_removes_planted_duplicates_in_score_system(scenes):
    from deepasa.baselines.oracle import OracleBaseline
    from deepasa.evaluation.scoring import score_system

    kw = dict(n_classes=3, class_names=CLASSES, with_sdr=False, progress=False, by_num_sources=False, doa_threshold=0.0)
    oracle = score_system(OracleBaseline(n_classes=3), scenes, **kw)
    doubled = score_system(_doubled_oracle, scenes, **kw)
    merged = score_system(_doubled_oracle, scenes, merge_deg=20.0, **kw)
    assert oracle["seld"]["ER"] == pytest.approx(0.0, abs=1e-9) and oracle["seld"]["F"] == pytest.approx(1.0)
    assert doubled["seld"]["ER"] == pytest.approx(1.0)                       # one false slot-frame per true one
    assert doubled["seld"]["F"] == pytest.approx(2 / 3)                     # 2 TP / (2 TP + FP), FP = TP
    assert doubled["dcase"]["F"] < 1.0
    for block in ("seld", "localization", "objects", "dcase"):
        for key, value in oracle[block].items():
            if isinstance(value, float) and not np.isnan(value):
                assert merged[block][key] == pytest.approx(value, abs=1e-5), (block, key)
    narrow = score_system(_doubled_oracle, scenes, merge_deg=DUP_TURN_DEG / 2, **kw)   # too narrow to merge
    assert narrow["seld"]["ER"] == pytest.approx(1.0)
    macro = score_system(_doubled_oracle, scenes, merge_deg=20.0, seld_average="macro", **kw)
    assert macro["seld"]["F"] < 1.0                                           # STARSS23: never merged


def test_model_decide_merges_under_its_rule():
    from deepasa.model import DeepASA

    model = DeepASA("tiny", decision_rule={"doa_norm": 0.0, "merge_deg": 20.0}).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 4, model.config.sample_rate))
    j, t = out.onoff.shape[1:]
    out.cls_logits = torch.zeros_like(out.cls_logits)                          # every slot class 0
    out.cls_logits[..., 0] = 1.0
    out.doa = torch.tensor([1.0, 0.0, 0.0]).expand(1, j, t, 3).clone()         # one direction for all
    out.onoff = torch.arange(j, dtype=torch.float32)[None, :, None].expand(1, j, t).clone() + 1.0  # slot J-1 leads
    dec = model.decide(out)
    assert dec.present.tolist() == [[False] * (j - 1) + [True]]
    assert model.decide(out, merge_deg=0.0).present.all()                     # an explicit value wins


class _Model:
    """A stand-in model for analyze(): a config and a decision rule, no network."""

    def __init__(self, merge_deg: float):
        from deepasa.model import DecisionRule

        self.config = get_config("tiny")
        self.decision_rule = DecisionRule(doa_norm=0.0, merge_deg=merge_deg)


def _twin_window(config, second_class: int = 0):
    """run_window: slots 1 and 3 hear the same source (+y and 8° from it), slot 1 with the higher on/off output."""
    J, C, T = config.n_slots, config.n_classes, config.n_label_frames

    def run_window(x):  # x (M, L)
        image = np.zeros((J,) + x.shape)                                      # (J, M, L)
        image[1], image[3] = x, 0.5 * x
        onoff = np.full((J, T), 0.05)                                          # (J, T')
        onoff[1], onoff[3] = 0.95, 0.9
        doa = np.zeros((J, T, 3))                                              # (J, T', 3)
        doa[1] = (0.0, 1.0, 0.0)
        doa[3] = _rotated(np.array([0.0, 1.0, 0.0]), 8.0)
        cls = np.full((J, C), 0.1 / (C - 1))                                   # (J, C)
        cls[1, 0] = cls[3, second_class] = 0.9
        return WindowOutput(image=image, direct=image, reverb=0 * image, noise=np.zeros_like(x), cls_prob=cls,
                            onoff_prob=onoff, doa=doa)

    return run_window


@pytest.mark.parametrize("merge_deg, second_class, found", [(0.0, 0, 2), (20.0, 0, 1), (5.0, 0, 2), (20.0, 1, 2)])
def test_analyze_merges_stitched_duplicates(merge_deg, second_class, found):
    model = _Model(merge_deg)
    x = np.random.default_rng(0).standard_normal((4, 3 * model.config.sample_rate)).astype(np.float32)  # (4, 3 s)
    res = analyze(model, x, run_window=_twin_window(model.config, second_class), log=lambda m: None)
    assert len(res.objects) == found
    if found == 1:
        np.testing.assert_allclose(res.objects[0].azimuth, 90.0, atol=1e-6)    # the leader's direction (+y)
