"""The activity decision rule a model carries (``DeepASA.decision_rule``, a :class:`DecisionRule` apart from the
config: ``doa_norm`` and ``onoff``, docs/model.md deviations 17 and 18).

Independent truth: an oracle whose outputs are the true activity, class and direction, with its DoA vectors
shrunk to a known norm (or its on/off probability set to a known value). Under docs/spec.md §1's rule
(‖doa‖ > 0.5) a norm of 0.3 hides every source; under the on/off rule (``doa_norm: 0``) every source is
found, with the oracle's (zero) direction error; an on/off probability of 0.7 is a detection exactly when the
on/off threshold is below 0.7. The same oracle run through ``analyze`` (as its ``run_window``) must follow the
model's rule, not the window's, so the one object appears exactly when the model's thresholds are below the
window's values. And the reason for ``onoff``: the minimiser of the project's pos-weighted on/off BCE,
found by gradient descent, is the closed form p = w q / (w q + 1 − q), so q = 0.5 lies at p = w / (1 + w).
"""

import numpy as np
import pytest
import torch

from deepasa.inference.analyze import analyze
from deepasa.inference.stitching import WindowOutput
from deepasa.model import DecisionRule, get_config
from conftest import simulated_noise_scenes

CLASSES = ["a", "b", "c"]
NORM = 0.3                                           # the oracle's ‖doa‖ on active frames


@pytest.fixture(scope="module")
def scenes():
    """Four 1-s, 8-kHz simulated scenes with 1-2 noise sources of known class."""
    return simulated_noise_scenes([1, 2, 1, 2], CLASSES, rng_seed=1, scene_seed=5)


def _shrunk_oracle(batch):
    """The oracle with every DoA vector scaled to norm NORM (directions unchanged)."""
    from deepasa.baselines.oracle import OracleBaseline

    out = OracleBaseline(n_classes=3)(batch)
    norm = out.doa.norm(dim=-1, keepdim=True)                          # (B, J, T', 1)
    out.doa = torch.where(norm > 0, out.doa / norm.clamp_min(1e-12) * NORM, out.doa)  # (B, J, T', 3)
    return out


def _objects(scenes, **kw):
    from deepasa.evaluation.scoring import score_system

    rep = score_system(_shrunk_oracle, scenes, n_classes=3, class_names=CLASSES, with_sdr=False, progress=False,
                       by_num_sources=False, **kw)
    return rep["objects"], rep["localization"]


def test_threshold_decides_detection_in_score_system(scenes):
    n_sources = 6
    spec, loc = _objects(scenes)                                        # docs/spec.md §1: 0.5
    assert spec["n_sources"] == n_sources and spec["detection_rate"] == 0.0 and np.isnan(spec["class_accuracy"])
    onoff, loc0 = _objects(scenes, doa_threshold=0.0)                   # on/off alone
    assert onoff["detection_rate"] == 1.0 and onoff["class_accuracy"] == 1.0
    assert onoff["doa_error_median_deg"] == pytest.approx(0.0, abs=1e-3)
    assert loc0["LR"] == pytest.approx(1.0) and loc["LR"] == pytest.approx(0.0)
    below, _ = _objects(scenes, doa_threshold=0.25)                     # any threshold under the norm
    assert below["detection_rate"] == 1.0
    macro, _ = _objects(scenes, seld_average="macro")                   # STARSS23: on/off whatever the threshold
    assert macro["detection_rate"] == 1.0


ONOFF_PROB = 0.7                                     # the second oracle's on/off probability on active frames


def _soft_oracle(batch):
    """The oracle with on/off probability ONOFF_PROB on its active frames (1 − ONOFF_PROB elsewhere)."""
    from deepasa.baselines.oracle import OracleBaseline

    out = OracleBaseline(n_classes=3)(batch)
    logit = float(np.log(ONOFF_PROB / (1.0 - ONOFF_PROB)))
    out.onoff = torch.sign(out.onoff) * logit                          # (B, J, T')
    return out


@pytest.mark.parametrize("onoff_threshold, rate", [(0.5, 1.0), (0.65, 1.0), (0.75, 0.0), (0.9, 0.0)])
def test_onoff_threshold_decides_detection_in_score_system(scenes, onoff_threshold, rate):
    from deepasa.evaluation.scoring import score_system

    rep = score_system(_soft_oracle, scenes, n_classes=3, class_names=CLASSES, with_sdr=False, progress=False,
                       by_num_sources=False, doa_threshold=0.0, onoff_threshold=onoff_threshold)
    assert rep["objects"]["detection_rate"] == rate
    assert rep["localization"]["LR"] == pytest.approx(rate)
    macro = score_system(_soft_oracle, scenes, n_classes=3, class_names=CLASSES, with_sdr=False, progress=False,
                         by_num_sources=False, seld_average="macro", onoff_threshold=onoff_threshold)
    assert macro["objects"]["detection_rate"] == 1.0                    # STARSS23: on/off > 0.5, whatever is asked


def test_rule_is_checked_and_is_no_config_field():
    from deepasa.errors import DeepASAError
    from deepasa.model import DeepASA

    assert DecisionRule() == DecisionRule(onoff=0.5, doa_norm=0.5, merge_deg=0.0)   # the spec's rule by default
    assert DeepASA("tiny").decision_rule == DecisionRule()
    assert DecisionRule(doa_norm=0).doa_norm == 0.0 and DecisionRule().replace(doa_norm=0.0).onoff == 0.5
    with pytest.raises(DeepASAError, match="doa_norm"):
        DecisionRule(doa_norm=1.0)
    for bad in (0.0, 1.0):
        with pytest.raises(DeepASAError, match="need 0 < onoff < 1"):
            DecisionRule(onoff=bad)
    with pytest.raises(DeepASAError, match="onoff must be a number, got 'abc'"):
        DecisionRule(onoff="abc")
    with pytest.raises(DeepASAError, match="onoff must be a number, got True"):
        DecisionRule(onoff=True)
    with pytest.raises(DeepASAError, match=r"unknown decision rule key\(s\): onof "):
        DecisionRule.from_dict({"onof": 0.8})
    assert DecisionRule.from_dict(DecisionRule(onoff=0.8).to_dict()) == DecisionRule(onoff=0.8)
    for name in ("detect_onoff", "detect_doa_norm", "detect_merge_deg"):   # the old config fields: one line, pointing
        for call in (lambda: get_config("tiny", **{name: 0.2}), lambda: get_config("tiny").replace(**{name: 0.2})):
            with pytest.raises(DeepASAError, match=f"{name}: .*DecisionRule") as err:
                call()
            assert "\n" not in str(err.value)


def test_model_decide_uses_the_model_rule():
    from deepasa.model import DeepASA

    model = DeepASA(get_config("tiny"), decision_rule=DecisionRule(onoff=0.8, doa_norm=0.0)).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 4, model.config.sample_rate))
    j, t = out.onoff.shape[1:]
    out.onoff = torch.full((1, j, t), float(np.log(0.7 / 0.3)))          # p = 0.7 everywhere
    assert not model.decide(out).present.any()                          # 0.7 < 0.8: the model's rule
    assert model.decide(out, onoff_threshold=0.5).present.all()         # an explicit threshold wins


def test_pos_weighted_bce_minimiser_puts_even_odds_at_w_over_1_plus_w():
    """Gradient descent on the project's on/off loss, one free logit per frame posterior q, against the closed form."""
    from deepasa.losses.multitask import seld_losses_per_slot

    w = 4.0
    q = torch.tensor([0.1, 0.2, 0.5, 0.8])                                # activity posteriors
    z = torch.zeros(len(q), requires_grad=True)                          # one logit per posterior
    opt = torch.optim.LBFGS([z], max_iter=200, tolerance_grad=1e-10, line_search_fn="strong_wolfe")
    doa_on, doa_off = torch.tensor([1.0, 0.0, 0.0]), torch.zeros(3)

    def loss():
        opt.zero_grad()
        # each posterior as an expectation over a 2-frame batch: an active frame with weight q, an inactive with 1 - q
        est = {"onoff": z[:, None, None].expand(-1, 1, 2), "cls_logits": torch.zeros(len(q), 1, 3),
               "sed": torch.zeros(len(q), 1, 2, 3), "doa": torch.zeros(len(q), 1, 2, 3)}
        tgt = {"cls": torch.zeros(len(q), 1), "activity": torch.ones(len(q), 1, 2),
               "doa": torch.stack([doa_on, doa_off])[None, None].expand(len(q), 1, 2, 3)}
        parts = seld_losses_per_slot(est, tgt, onoff_pos_weight=w)     # mean over the 2 frames: unweighted
        active = torch.nn.functional.binary_cross_entropy_with_logits(
            z, torch.ones_like(z), pos_weight=torch.tensor(w), reduction="none")
        inactive = torch.nn.functional.binary_cross_entropy_with_logits(z, torch.zeros_like(z), reduction="none")
        np.testing.assert_allclose(parts["onoff"][:, 0].detach(), ((active + inactive) / 2).detach(), rtol=1e-6)
        total = (q * active + (1 - q) * inactive).sum()
        total.backward()
        return total

    opt.step(loss)
    p = torch.sigmoid(z).detach()
    np.testing.assert_allclose(p, w * q / (w * q + 1 - q), atol=1e-4)         # float32 optimum
    assert float(p[2]) == pytest.approx(w / (1 + w), abs=1e-4)          # even odds at 0.8 for w = 4
    assert float(p[1]) == pytest.approx(0.5, abs=1e-4)                  # and p = 0.5 already at q = 1 / (1 + w)


class _Model:
    """A stand-in model for analyze(): a config and a decision rule, no network."""

    def __init__(self, doa_norm: float, onoff: float = 0.5):
        self.config = get_config("tiny")
        self.decision_rule = DecisionRule(onoff=onoff, doa_norm=doa_norm)


def _one_source_window(config):
    """run_window: slot 1 holds the input, on/off probability 0.9, direction +y at norm NORM; the window says
    no rule of its own: analyze must decide it by the model's."""
    J, C, T = config.n_slots, config.n_classes, config.n_label_frames

    def run_window(x):  # x (M, L)
        image = np.zeros((J,) + x.shape)                               # (J, M, L)
        image[1] = x
        onoff = np.full((J, T), 0.05)                                   # (J, T')
        onoff[1] = 0.9
        doa = np.zeros((J, T, 3))                                       # (J, T', 3)
        doa[1] = (0.0, NORM, 0.0)
        cls = np.full((J, C), 1.0 / C)                                  # (J, C)
        return WindowOutput(image=image, direct=image, reverb=0 * image, noise=np.zeros_like(x), cls_prob=cls,
                            onoff_prob=onoff, doa=doa)

    return run_window


@pytest.mark.parametrize("threshold, onoff, found", [(0.5, 0.5, 0), (0.0, 0.5, 1), (0.2, 0.5, 1), (0.2, 0.8, 1),
                                                    (0.2, 0.95, 0), (0.0, 0.95, 0)])
def test_analyze_follows_the_model_rule(threshold, onoff, found):
    model = _Model(threshold, onoff)                                    # the window's on/off probability is 0.9
    x = np.random.default_rng(0).standard_normal((4, 3 * model.config.sample_rate)).astype(np.float32)  # (4, 3 s)
    res = analyze(model, x, run_window=_one_source_window(model.config), log=lambda m: None)
    assert len(res.objects) == found
    if found:
        obj = res.objects[0]
        assert obj.activity.all()
        np.testing.assert_allclose(obj.azimuth, 90.0, atol=1e-6)        # +y
