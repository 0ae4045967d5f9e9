"""Issue 38: the config was trimmed (unused fields removed, named configs read from configs/model/*.yaml only, the
shipped architecture named ``shipped``) and the model loaders merged; the shipped model must compute exactly what
it computed before, for the same weights, and load under its new name.

The numbers were produced by the code before those changes (commit 79aaedd) with ``checkpoints/default.pt`` on a
fixed input: a digest of the state-dict keys and shapes, and for every output tensor its sum, absolute sum and
one element. ``paper``, ``paper-coi``, ``small`` and ``tiny`` are pinned by tests/test_issue_16_bit_identity.py.
Tolerances as there (1e-5 relative; they absorb another CPU's kernels and summation order).
"""

from __future__ import annotations

import hashlib

import torch

from deepasa.model import DecisionRule, get_config
from tests.bit_identity import assert_outputs_match

KEYS = '65eb379ef009c81c8fbf35fd0f6f87b094367957'
OUT = {
    'cls_logits': [0.68073695153, 13.727675207, -0.259860634804],
    'direct': [-0.223656403411, 1613.65348742, -0.00151824031491],
    'doa': [1.3945154248, 5.36645075975, 0.0167799945921],
    'image': [-3.50186395694, 3010.39775444, -0.0184425376356],
    'noise': [910.84225802, 1336080.72026, 2.94866657257],
    'onoff': [-95.9530436993, 191.930270672, -1.76436769962],
    'reverb': [-3.27820756439, 2386.3695622, -0.0169242974371],
    'sed': [100.000000134, 100.000000134, 0.0900357738137],
}


def test_shipped_model_outputs_unchanged(shipped_default_forward):
    """``shipped_default_forward`` (tests/conftest.py): ``DeepASA.from_pretrained(DEFAULT_CHECKPOINT,
    config="shipped").eval()`` run once, without gradients, on the fixed input below (shared with the ``shipped``
    case of tests/test_issue_38_forward_paths.py, which runs the same forward)."""
    torch.set_num_threads(1)
    model = shipped_default_forward.model
    text = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items())
    assert hashlib.sha1(text.encode()).hexdigest() == KEYS
    cfg = model.config
    assert cfg == get_config("shipped")
    # the decision rule left the config (configs/model/shipped.yaml no longer holds it): the checkpoint's stored
    # config keys detect_onoff / detect_doa_norm come back as the model's rule
    assert model.decision_rule == DecisionRule(onoff=0.8, doa_norm=0.15, merge_deg=0.0)
    x = 0.1 * torch.randn(1, cfg.n_mics, cfg.clip_samples, generator=torch.Generator().manual_seed(1))  # (1, M, N)
    assert torch.equal(shipped_default_forward.x, x)  # the forward ran on this input
    out = {k: v for k, v in shipped_default_forward.out.items() if v is not None}
    assert_outputs_match(out, OUT, "shipped")
