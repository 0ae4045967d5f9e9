"""Object-oriented processing: permuting the splitter's object groups permutes every head identically."""

import pytest
import torch

from deepasa.model import DeepASA, get_config

torch.set_num_threads(1)
SLOT_FIELDS = ("direct", "reverb", "image", "cls_logits", "sed", "onoff", "doa")
SELD_FIELDS = ("cls_logits", "sed", "onoff", "doa")


def _permute_hook(perm):
    def hook(module, inputs, output):  # output (B, K, D, T, F); a trailing noise object stays in place
        idx = torch.cat([perm, torch.arange(len(perm), output.shape[1])])
        return output[:, idx]
    return hook


def _run(model, x, splitter=None, perm=None, **kw):
    handle = splitter.register_forward_hook(_permute_hook(perm)) if splitter is not None else None
    try:
        with torch.no_grad():
            return model(x, **kw)
    finally:
        if handle is not None:
            handle.remove()


@pytest.mark.parametrize("overrides", [{}, {"noise_object": True}, {"time_ffn": "ffn"}])
def test_slot_equivariance_without_coi(overrides):
    torch.manual_seed(0)
    model = DeepASA(get_config("tiny", **overrides)).eval()
    x = torch.randn(2, 4, 8000)
    perm = torch.tensor([3, 0, 4, 2, 1])
    ref = _run(model, x)
    out = _run(model, x, model.splitter, perm)
    for name in SLOT_FIELDS:
        torch.testing.assert_close(getattr(out, name), getattr(ref, name)[:, perm], msg=name)
    torch.testing.assert_close(out.noise, ref.noise)


def test_slot_equivariance_with_coi():
    torch.manual_seed(0)
    model = DeepASA(get_config("tiny", coi_steps=1)).eval()
    x = torch.randn(2, 4, 8000)
    perm = torch.tensor([1, 2, 0, 4, 3])
    ref = _run(model, x, net1_audio=True)
    # Net 1: permuting splitter 1 permutes every Net-1 head (audio included) the same way
    out1 = _run(model, x, model.splitter, perm, net1_audio=True)
    for name in SLOT_FIELDS:
        torch.testing.assert_close(getattr(out1.net1, name), getattr(ref.net1, name)[:, perm], msg=name)
    # Net 2: permuting splitter 2 permutes the audio and every Net-2 head's contribution the same way
    out2 = _run(model, x, model.coi[0].splitter, perm, net1_audio=True)
    for name in ("direct", "reverb", "image"):
        torch.testing.assert_close(getattr(out2, name), getattr(ref, name)[:, perm], msg=name)
    for name in SELD_FIELDS:
        delta_ref = getattr(ref, name) - getattr(ref.net1, name)
        delta = getattr(out2, name) - getattr(out2.net1, name)
        torch.testing.assert_close(delta, delta_ref[:, perm], msg=name)
    torch.testing.assert_close(out2.noise, ref.noise)


def test_tcm_mixes_slots_by_design():
    """The TCM's Linear(C·J → D) reads slot identity (docs/spec.md §3.7), so Net 2 is not equivariant to Net-1 slots."""
    torch.manual_seed(0)
    model = DeepASA(get_config("tiny", coi_steps=1)).eval()
    with torch.no_grad():  # make Net 1 detect something so that the hard SED map is not all zero
        model.seld.classnet.onoff[1].bias.fill_(5.0)
        model.seld.doanet.out[1].bias.fill_(1.0)
    x = torch.randn(1, 4, 8000)
    perm = torch.tensor([1, 2, 3, 4, 0])
    ref = _run(model, x)
    out = _run(model, x, model.splitter, perm)
    delta_ref = ref.doa - ref.net1.doa
    delta = out.doa - out.net1.doa
    assert not torch.allclose(delta, delta_ref[:, perm], atol=1e-6)
