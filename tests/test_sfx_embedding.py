"""The optional pretrained clip embedding of the class output (``cls_embedding: aisfx``, deviation 14).

Checked against independent truth: the resampler against scipy's FFT resampler, the mel filters against the
HTK formula, the log-mel front end against a numpy computation of the package's recipe, the CNN against the
package's own ``EmbeddingNet`` with the same weights; and in the model: the head starts as without it, no
gradient leaves through it, its weights stay out of state dicts and checkpoints.
"""

import numpy as np
import pytest
import scipy.signal
import torch

from deepasa.errors import DeepASAError
from deepasa.model import DeepASA
from deepasa.model.configs import get_config
from deepasa.model.sfx_embedding import (SFXEmbedding, aisfx_weights_path, htk_mel_filterbank, resample_fft)

KW = dict(n_classes=10, clip_seconds=1.0)


@pytest.fixture(scope="module")
def sfx():
    return SFXEmbedding(16000)


@pytest.mark.parametrize("n, sr_in, sr_out", [(32000, 16000, 44100), (32001, 16000, 44100), (8820, 44100, 16000),
                                              (1000, 16000, 8000)])
def test_resampling_equals_scipys_fft_resampler(n, sr_in, sr_out):
    x = np.random.default_rng(n).standard_normal((2, n))
    ours = resample_fft(torch.tensor(x), sr_in, sr_out).double().numpy()
    ref = scipy.signal.resample(x, int(round(n * sr_out / sr_in)), axis=-1)
    np.testing.assert_allclose(ours, ref, atol=2e-5 * np.abs(ref).max())


def test_mel_filters_peak_at_the_htk_centres_and_have_unit_area():
    fb = htk_mel_filterbank(44100, 2048, 96).double().numpy()
    np.testing.assert_allclose(fb.sum(1), 1.0, rtol=1e-5)
    mel_top = 2595 * np.log10(1 + 22050 / 700)
    centres = 700 * (10 ** (np.arange(1, 97) * mel_top / 97 / 2595) - 1)
    assert np.all(np.abs(fb.argmax(1) * 44100 / 2048 - centres) <= 44100 / 2048)


def _numpy_log_mel(x16: np.ndarray) -> np.ndarray:
    """The package's features by its recipe, in numpy: (frames, 96) of a 16-kHz signal."""
    y = scipy.signal.resample(x16.astype(np.float64), int(round(len(x16) * 44100 / 16000)))
    y = y / np.abs(y).max()
    y = np.pad(y, 1024, mode="reflect")
    n = 1 + (len(y) - 2048) // 1024
    frames = np.stack([y[i * 1024: i * 1024 + 2048] for i in range(n)]) * np.hanning(2049)[:-1]
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(2048, 1 / 44100)
    mel = lambda f: 2595 * np.log10(1 + f / 700)                                     # noqa: E731
    edges = 700 * (10 ** (np.linspace(0, mel(22050), 98) / 2595) - 1)
    fb = np.array([np.interp(freqs, edges[i:i + 3], [0, 1, 0]) for i in range(96)])
    fb /= fb.sum(1, keepdims=True)
    return np.log10(power @ fb.T * 1e4 + 1) / 9.457798957824707


def test_log_mel_front_end_equals_the_packages_recipe_in_numpy(sfx):
    x = np.random.default_rng(1).standard_normal(32000) * np.hanning(32000)
    ours = sfx.features(torch.tensor(x, dtype=torch.float32)[None])[0].numpy()
    ref = _numpy_log_mel(x)
    assert ours.shape == ref.shape == (87, 96)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_the_cnn_equals_the_packages_embedding_net(sfx):
    import aisfx
    from aisfx.models.cnn2d import EmbeddingNet

    ref = EmbeddingNet("max", 3, 1, 64).eval()
    weights, _ = torch.load(aisfx_weights_path(), map_location="cpu", weights_only=False)
    ref.load_state_dict({k[len("embedding_net."):]: v for k, v in weights.items() if k.startswith("embedding_net.")})
    assert aisfx.__file__
    spec = torch.rand(3, 87, 96)
    with torch.no_grad():
        expected = ref(spec)                                                       # (3, 512)
        h = spec.unsqueeze(1)
        for blk in sfx.blocks:
            h = blk(h)
        ours = h.mean(3).amax(2)
    torch.testing.assert_close(ours, expected)
    x = torch.randn(2, 16000)
    assert sfx(x).shape == (2, 512) and not sfx(x).requires_grad


def test_a_missing_wheel_is_one_line_naming_the_install_command(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DeepASAError, match=r"pip install --no-deps aisfx==0\.1\.2"):
        DeepASA(get_config("tiny", cls_embedding="aisfx", **KW))
    with pytest.raises(DeepASAError, match="cls_embedding is one of"):
        get_config("tiny", cls_embedding="panns")


def test_in_the_model_it_starts_at_zero_keeps_out_of_state_and_passes_no_gradient(tmp_path):
    torch.manual_seed(0)
    plain = DeepASA(get_config("tiny", **KW)).eval()
    model = DeepASA(get_config("tiny", cls_embedding="aisfx", **KW)).eval()
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == [f"seld.classnet.embed_out.{i}.{p}" for i in (0, 1) for p in ("bias", "weight")]
    assert not unexpected and not any("sfx" in k for k in model.state_dict())
    assert not any(p is q for p in model.parameters() for q in model.sfx.parameters())
    x = torch.randn(2, 4, model.config.clip_samples) * 0.1
    with torch.no_grad():
        a, b = plain(x), model(x)
    torch.testing.assert_close(b.cls_logits, a.cls_logits)                       # zero Linear: as without it
    torch.testing.assert_close(b.image, a.image)
    # once trained, the class of slot j reads slot j's own signal; no gradient reaches the separation through it
    with torch.no_grad():
        model.seld.classnet.embed_out[1].weight.normal_()
    model.train()
    out = model(x)
    out.cls_logits.sum().backward()
    assert model.seld.classnet.embed_out[1].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.audio.parameters())
    assert all(p.grad is None for p in model.sfx.parameters())
    # a checkpoint round trip rebuilds the embedding from the wheel and gives the same outputs
    model.eval()
    path = model.save(tmp_path / "m.pt")
    again = DeepASA.from_pretrained(path).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x).cls_logits, model(x).cls_logits)


def test_chain_of_inference_with_identity_init_starts_as_net_1_with_the_embedding():
    torch.manual_seed(1)
    model = DeepASA(get_config("tiny", cls_embedding="aisfx", coi_steps=1, coi_sed_sum="logits",
                               coi_init="identity", **KW)).eval()
    with torch.no_grad():
        model.seld.classnet.embed_out[1].weight.normal_()                          # Net 1 uses its embedding
        out = model(torch.randn(1, 4, model.config.clip_samples) * 0.1, net1_audio=True)
    torch.testing.assert_close(out.cls_logits, out.net1.cls_logits)
