"""Chain-of-inference: coi_steps=0 is Net 1 of the same weights; TCM maps; iteration; upsampling geometry."""

import pytest
import torch

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


@pytest.mark.parametrize("share", [False, True])
def test_iterated_chain(share):
    torch.manual_seed(0)
    model = DeepASA(get_config("tiny", coi_steps=2, coi_share_weights=share)).eval()
    assert len(model.coi) == (1 if share else 2)
    x = torch.randn(1, 4, 8000)
    with torch.no_grad():
        one, two = model(x, coi_steps=1), model(x)
        if share:
            three = model(x, coi_steps=3)  # a shared step can be iterated any number of times
            assert three.doa.shape == two.doa.shape
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
