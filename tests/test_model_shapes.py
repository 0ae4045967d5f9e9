"""Output shapes of DeepASA for several (M, J, C, length) combinations, plus input validation and decide()."""

import pytest
import torch

from deepasa.errors import DeepASAError
from deepasa.model import DeepASA, DeepASAOutput, decide, get_config

torch.set_num_threads(1)


@pytest.mark.parametrize(
    "n_mics, n_slots, n_classes, n_samples",
    [
        (4, 5, 13, 8000),   # tiny defaults: T = 101, T' = 10 (fixed pools divide exactly)
        (2, 3, 7, 6500),    # T = 82, T' = 9: 82 // 10 = 8 != 9, adaptive-pool path
        (6, 1, 2, 1234),    # one slot, T' = 2
        (1, 2, 4, 24000),   # mono input, 3-s input longer than the training clip
    ],
)
def test_output_shapes(n_mics, n_slots, n_classes, n_samples):
    cfg = get_config("tiny", n_mics=n_mics, n_slots=n_slots, n_classes=n_classes)
    model = DeepASA(cfg).eval()
    b = 2
    with torch.no_grad():
        out = model(torch.randn(b, n_mics, n_samples))
    t_lab = cfg.label_frames(n_samples)
    assert t_lab == -(-n_samples // 800)
    for name in ("direct", "reverb", "image"):
        assert getattr(out, name).shape == (b, n_slots, n_mics, n_samples), name
    assert out.noise.shape == (b, n_mics, n_samples)
    assert out.cls_logits.shape == (b, n_slots, n_classes)
    assert out.sed.shape == (b, n_slots, t_lab, n_classes)
    assert out.onoff.shape == (b, n_slots, t_lab)
    assert out.doa.shape == (b, n_slots, t_lab, 3)
    assert out.net1 is None
    torch.testing.assert_close(out.image, out.direct + out.reverb)
    torch.testing.assert_close(out.sed.sum(-1), torch.ones(b, n_slots, t_lab))  # softmax over classes
    assert out.doa.abs().max() <= 1.0  # tanh-bounded
    assert all(torch.isfinite(v).all() for v in out.tensors().values())


def test_paper_sizes_are_derived():
    cfg = get_config("paper")
    assert (cfg.n_frames, cfg.n_freqs, cfg.n_label_frames, cfg.label_time_pool) == (201, 321, 40, 5)
    cfg = get_config("paper", sample_rate=24000, clip_seconds=2.0, hop=480, n_fft=960)
    assert (cfg.n_frames, cfg.n_freqs, cfg.n_label_frames) == (101, 481, 20)


def test_coi_output_has_net1_and_same_shapes():
    model = DeepASA(get_config("tiny", coi_steps=1)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 4, 8000))
    assert isinstance(out.net1, DeepASAOutput)
    for name in ("cls_logits", "sed", "onoff", "doa"):
        assert getattr(out.net1, name).shape == getattr(out, name).shape
    assert out.net1.direct is None  # Net-1 audio only on request (net1_audio=True)
    assert out.sed.max() <= 2.0 and out.doa.abs().max() <= 2.0  # sums of two softmax / tanh stages


def test_uss_variant_reference_output_and_noise_object():
    cfg = get_config("uss", **{k: v for k, v in get_config("tiny").to_dict().items()
                               if k not in ("n_slots", "noise_object", "output_mode", "reverb_head", "seld_heads")})
    model = DeepASA(cfg).eval()
    assert model.splitter.n_objects == cfg.n_slots + 1 == 5
    with torch.no_grad():
        out = model(torch.randn(2, 4, 8000))
    assert out.image.shape == (2, 4, 1, 8000) and out.noise.shape == (2, 1, 8000)
    assert out.direct is None and out.reverb is None and out.cls_logits is None
    with pytest.raises(DeepASAError, match="SELD heads"):
        model.decide(out)


def test_bad_inputs_raise_clear_errors():
    model = DeepASA("tiny").eval()
    with pytest.raises(DeepASAError, match="4 mics"):
        model(torch.randn(1, 3, 8000))
    with pytest.raises(DeepASAError, match="shorter than one hop"):
        model(torch.randn(1, 4, 10))
    with pytest.raises(DeepASAError, match="built without chain-of-inference"):
        model(torch.randn(1, 4, 8000), coi_steps=1)
    coi = DeepASA(get_config("tiny", coi_steps=1)).eval()
    with pytest.raises(DeepASAError, match="exactly 8000 samples"):
        coi(torch.randn(1, 4, 6000))
    with pytest.raises(DeepASAError, match="1 CoI step"):
        coi(torch.randn(1, 4, 8000), coi_steps=2)


def test_decide_rules():
    j, t, c = 2, 3, 4
    out = DeepASAOutput(
        cls_logits=torch.tensor([[[0.0, 3.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]]),
        onoff=torch.tensor([[[5.0, 5.0, -5.0], [5.0, 5.0, 5.0]]]),
        doa=torch.tensor([[[[0.0, 0.0, 0.9], [0.0, 0.2, 0.0], [0.9, 0.0, 0.0]],
                           [[0.0, 0.6, 0.0], [0.6, 0.0, 0.0], [0.0, 0.0, -0.7]]]]),
    )
    dec = decide(out)
    # slot 0: frame 1 has a short DoA vector, frame 2 is off; slot 1: all frames on with |doa| > 0.5
    assert dec.active.tolist() == [[[True, False, False], [True, True, True]]]
    assert dec.present.tolist() == [[True, True]]
    assert dec.class_index.tolist() == [[1, 0]]
    assert dec.sed.shape == (1, j, t, c) and dec.sed[0, 0, 0].tolist() == [False, True, False, False]
    torch.testing.assert_close(dec.doa[0, 1, 2], torch.tensor([0.0, 0.0, -1.0]))
    p = torch.softmax(out.cls_logits, -1).amax(-1)
    torch.testing.assert_close(dec.confidence, p)


def test_runs_under_bf16_autocast():
    model = DeepASA(get_config("tiny", coi_steps=1)).eval()
    x = torch.randn(1, 4, 8000)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    assert out.image.dtype == torch.float32 and torch.isfinite(out.image).all()
    assert out.doa.shape == ref.doa.shape
