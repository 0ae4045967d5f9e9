"""Chain-of-inference: coi_steps=0 is Net 1 of the same weights; TCM maps; iteration; upsampling geometry."""

import pytest
import torch

from deepasa.errors import DeepASAError
from deepasa.model import DeepASA, get_config
from deepasa.model.coi import doa_map, hard_sed_map, upsample_geometry

torch.set_num_threads(1)


def test_coi_steps_zero_equals_net1_of_same_weights():
    torch.manual_seed(0)
    model = DeepASA(get_config("tiny", coi_steps=1)).eval()
    x = torch.randn(2, 4, 8000)
    with torch.no_grad():
        net1_only = model(x, coi_steps=0)
        full = model(x, net1_audio=True)
    assert net1_only.net1 is None and full.net1 is not None
    for name, value in net1_only.tensors().items():
        torch.testing.assert_close(getattr(full.net1, name), value, msg=name)
    assert not torch.allclose(full.cls_logits, net1_only.cls_logits)  # Net 2 did change the outputs
    # and a model built without CoI, given the same Net-1 weights, computes the same thing
    plain = DeepASA(get_config("tiny")).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("coi.")})
    with torch.no_grad():
        torch.testing.assert_close(plain(x).image, net1_only.image)


def test_iterated_chain():
    torch.manual_seed(0)
    model = DeepASA(get_config("tiny", coi_steps=2)).eval()
    assert len(model.coi) == 2  # each step its own weights
    x = torch.randn(1, 4, 8000)
    with torch.no_grad():
        one, two = model(x, coi_steps=1), model(x)
        with pytest.raises(DeepASAError, match="2 CoI step"):
            model(x, coi_steps=3)
    torch.testing.assert_close(one.net1.doa, two.net1.doa)
    assert not torch.allclose(one.doa, two.doa)


def test_hard_sed_and_doa_map_layout():
    b, j, t, c = 1, 2, 3, 4
    cls = torch.tensor([[[0.0, 0.0, 9.0, 0.0], [9.0, 0.0, 0.0, 0.0]]])  # slot 0 -> class 2, slot 1 -> class 0
    onoff = torch.tensor([[[9.0, -9.0, 9.0], [9.0, 9.0, 9.0]]])
    doa = torch.zeros(b, j, t, 3)
    doa[0, 0, :, 0] = 0.9
    doa[0, 1, :2, 1] = 0.9  # slot 1 frame 2 has a short DoA: inactive
    e = hard_sed_map(cls, onoff, doa)
    assert e.shape == (b, t, c * j)
    expected = torch.zeros(b, t, c, j)
    expected[0, [0, 2], 2, 0] = 1.0
    expected[0, [0, 1], 0, 1] = 1.0
    torch.testing.assert_close(e, expected.reshape(b, t, c * j))  # index c·J + j
    d = doa_map(doa)
    assert d.shape == (b, t, 3 * j)
    torch.testing.assert_close(d[0, :, 0 * j + 0], doa[0, 0, :, 0])  # x of slot 0
    torch.testing.assert_close(d[0, :, 1 * j + 1], doa[0, 1, :, 1])  # y of slot 1


@pytest.mark.parametrize("n_frames, n_label", [(201, 40), (101, 10), (76, 15), (51, 10), (401, 80)])
def test_upsample_geometry_reaches_stft_frames(n_frames, n_label):
    kernel, stride = upsample_geometry(n_frames, n_label)
    assert (n_label - 1) * stride + kernel == n_frames and kernel >= stride
    assert upsample_geometry(201, 40) == (6, 5)  # the released ConvTranspose1d(kernel 6, stride 5)
    up = torch.nn.ConvTranspose1d(2, 2, kernel, stride)
    assert up(torch.zeros(1, 2, n_label)).shape[-1] == n_frames


def test_tcm_combine_modes_differ():
    torch.manual_seed(0)
    a = DeepASA(get_config("tiny", coi_steps=1, tcm_combine="product")).eval()
    b = DeepASA(get_config("tiny", coi_steps=1, tcm_combine="residual_sum")).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 4, 8000)
    with torch.no_grad():
        assert not torch.allclose(a(x).cls_logits, b(x).cls_logits)


def test_identity_init_starts_as_net1_and_still_learns():
    """coi_init identity: the full model's every output equals its own Net-1 pass (audio included) at the
    first step, and every Net-2 parameter group receives a gradient within two optimiser steps."""
    torch.manual_seed(0)
    cfg = get_config("tiny", coi_steps=1, coi_sed_sum="logits", coi_init="identity")
    model = DeepASA(cfg).eval()
    x = torch.randn(2, 4, 8000)
    with torch.no_grad():
        full = model(x, net1_audio=True)
    for name, value in full.net1.tensors().items():
        torch.testing.assert_close(getattr(full, name), value, msg=name, rtol=1e-5, atol=1e-6)
    # the naive reference: SED posteriors of the summed logits = Net 1's own softmax when Net 2 adds zero
    torch.testing.assert_close(full.sed.sum(-1), torch.ones_like(full.sed[..., 0]))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in model.coi.state_dict().items()}
    for _ in range(2):
        out = model(x)
        loss = out.doa.pow(2).sum() + out.cls_logits.pow(2).sum() + out.sed[..., 0].sum() + out.onoff.sum() \
            + out.image.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.coi.state_dict()
    for part in ("film", "splitter", "heads.classnet.strong", "heads.classnet.onoff", "heads.classnet.freq_out",
                 "heads.doanet.out", "heads.doanet.gru"):
        keys = [k for k in before if part in k and before[k].is_floating_point()]
        assert keys and any(not torch.equal(before[k], after[k]) for k in keys), part


def test_sed_logit_sum_is_a_posterior_and_prob_sum_is_not():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 8000)
    probs = DeepASA(get_config("tiny", coi_steps=1)).eval()
    logits = DeepASA(get_config("tiny", coi_steps=1, coi_sed_sum="logits")).eval()
    logits.load_state_dict(probs.state_dict())                 # same weights, only the combination differs
    with torch.no_grad():
        a, b = probs(x), logits(x)
    torch.testing.assert_close(a.sed.sum(-1), torch.full_like(a.sed[..., 0], 2.0))   # two softmaxes
    torch.testing.assert_close(b.sed.sum(-1), torch.ones_like(b.sed[..., 0]))
    # reference: softmax(strong₁ + strong₂) from the two stages' posteriors (log p = logit − logsumexp)
    n1, n2 = a.net1.sed, a.sed - a.net1.sed
    ref = torch.softmax(n1.log() + n2.log(), dim=-1)          # per-frame constants cancel in the softmax
    torch.testing.assert_close(b.sed, ref, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(b.cls_logits, a.cls_logits)     # nothing else changes
    torch.testing.assert_close(b.doa, a.doa)


def test_identity_init_needs_the_logit_sum():
    from deepasa.errors import DeepASAError

    with pytest.raises(DeepASAError, match="coi_init 'identity' needs coi_sed_sum 'logits'"):
        get_config("tiny", coi_steps=1, coi_init="identity")


def test_channels_last_head_input_changes_no_value():
    """SELDHeads.channels_last is a memory layout for speed: the same outputs as contiguous input."""
    from deepasa.model.heads import SELDHeads

    torch.manual_seed(0)
    model = DeepASA(get_config("tiny", coi_steps=1)).eval()
    x = torch.randn(2, 4, 8000)
    try:
        with torch.no_grad():
            SELDHeads.channels_last = False
            a = model(x)
            SELDHeads.channels_last = True
            b = model(x)
    finally:
        SELDHeads.channels_last = True
    for name, value in a.tensors().items():
        torch.testing.assert_close(getattr(b, name) if "." not in name else b.tensors()[name], value,
                                   rtol=1e-4, atol=1e-5, msg=name)
