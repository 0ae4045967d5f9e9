"""The activity decision rule as a model option (``DeepASAConfig.detect_doa_norm``, docs/model.md deviation 17).

Independent truth: an oracle whose outputs are the true activity, class and direction, with its DoA vectors
shrunk to a known norm. Under docs/spec.md §1's rule (‖doa‖ > 0.5) a norm of 0.3 hides every source; under
the on/off rule (``detect_doa_norm: 0``) every source is found, with the oracle's (zero) direction error.
The same oracle run through ``analyze`` (as its ``run_window``) must follow the model's rule, not the
window's, so the one object appears exactly when the model's threshold is below the norm.
"""

import numpy as np
import pytest
import torch

from deepasa.inference.analyze import analyze
from deepasa.inference.stitching import WindowOutput
from deepasa.model import get_config
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


def test_config_field_is_checked():
    from deepasa.errors import DeepASAError

    assert get_config("paper").detect_doa_norm == 0.5                   # the spec's rule by default
    assert get_config("tiny").replace(detect_doa_norm=0.0).detect_doa_norm == 0.0
    with pytest.raises(DeepASAError, match="detect_doa_norm"):
        get_config("tiny").replace(detect_doa_norm=1.0)


class _Model:
    """A stand-in model for analyze(): a config, no network."""

    def __init__(self, detect_doa_norm: float):
        self.config = get_config("tiny").replace(detect_doa_norm=detect_doa_norm)


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


@pytest.mark.parametrize("threshold, found", [(0.5, 0), (0.0, 1), (0.2, 1)])
def test_analyze_follows_the_model_rule(threshold, found):
    model = _Model(threshold)
    x = np.random.default_rng(0).standard_normal((4, 3 * model.config.sample_rate)).astype(np.float32)  # (4, 3 s)
    res = analyze(model, x, run_window=_one_source_window(model.config), log=lambda m: None)
    assert len(res.objects) == found
    if found:
        obj = res.objects[0]
        assert obj.activity.all()
        np.testing.assert_allclose(obj.azimuth, 90.0, atol=1e-6)        # +y
