"""Gradients reach every trainable parameter of the active configuration."""

import pytest
import torch

from deepasa.model import DeepASA, get_config

torch.set_num_threads(1)


def _loss(out):
    return sum((v.float() ** 2).mean() for v in out.tensors().values())


#: Parameters whose gradient is zero analytically: the bias of the attentive pooling's single attention logit
#: (heads.py, ``att = Linear(.., hidden), Tanh, Linear(hidden, 1)``, then a softmax over time) shifts every
#: logit alike, and a softmax does not change under a shift; rounding decides whether its float grad is 0 or 1e-9.
SHIFT_INVARIANT = (".asp.att.2.bias",)


def _assert_all_grads(model):
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())
               and not n.endswith(SHIFT_INVARIANT)]
    assert not missing, f"no gradient for: {missing}"


@pytest.mark.parametrize("overrides", [
    {"trainable_window": True},
    {"time_ffn": "ffn"},
    {"noise_object": True, "output_mode": "reference", "reverb_head": False, "seld_heads": False},
])
def test_gradients_reach_every_parameter_net1(overrides):
    torch.manual_seed(0)
    model = DeepASA(get_config("tiny", **overrides)).train()
    _loss(model(torch.randn(2, 4, 8000))).backward()
    _assert_all_grads(model)


@pytest.mark.parametrize("combine", ["product", "residual_sum"])
def test_gradients_reach_every_parameter_with_coi(combine):
    torch.manual_seed(0)
    model = DeepASA(get_config("tiny", coi_steps=1, tcm_combine=combine)).train()
    with torch.no_grad():
        # the hard SED map is zero where Net 1 detects nothing, which (in "product" mode, as in the released
        # code) zeroes the SED attention's gradient; bias Net 1 towards detections so every path is exercised
        model.seld.classnet.onoff[1].bias.fill_(5.0)
        model.seld.doanet.out[1].bias.fill_(1.0)
    out = model(torch.randn(2, 4, 8000))
    assert out.net1 is not None
    _loss(out).backward()
    _assert_all_grads(model)


def test_frozen_window_gets_no_gradient():
    model = DeepASA("tiny").train()
    _loss(model(torch.randn(1, 4, 8000))).backward()
    assert all(p.grad is None for p in model.stft.parameters())
