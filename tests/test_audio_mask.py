"""``audio_output: mask`` (docs/model.md, deviation 15): the audio heads' channels as complex ratio masks.

Independent truths: the channel-layout mask equals numpy's complex product; a unit direct-path mask (and zero
reverb and noise masks) returns the input mixture itself, because the masked STFT is the Hann analysis that
the output iSTFT inverts; the paper's mapping stays the default.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepasa.errors import DeepASAError
from deepasa.model import DeepASA, get_config
from deepasa.model.frontend import complex_mask


def _channels(z: np.ndarray) -> torch.Tensor:
    """(..., K, F, T) complex numpy -> (..., 2K, T, F) real torch in the heads' layout (channel 2k + r)."""
    parts = np.stack([z.real, z.imag], axis=-3)  # (..., K, 2, F, T)
    parts = np.swapaxes(parts, -1, -2)  # (..., K, 2, T, F)
    return torch.from_numpy(parts.reshape(*z.shape[:-3], 2 * z.shape[-3], z.shape[-1], z.shape[-2]).copy())


def test_complex_mask_is_the_complex_product_per_mic_and_bin():
    rng = np.random.default_rng(0)
    mask = rng.standard_normal((2, 3, 4, 6, 5)) + 1j * rng.standard_normal((2, 3, 4, 6, 5))  # (B, J, K, F, T)
    mix = rng.standard_normal((2, 1, 4, 6, 5)) + 1j * rng.standard_normal((2, 1, 4, 6, 5))  # (B, 1, K, F, T)
    got = complex_mask(_channels(mask), _channels(mix))  # (B, J, 2K, T, F)
    assert torch.allclose(got, _channels(mask * mix), atol=1e-12)


def _unit_masks(model: DeepASA) -> None:
    """Direct-path heads output 1 + 0i on every mic, reverb and noise heads 0."""
    with torch.no_grad():
        for conv, value in ((model.audio.direct, 1.0), (model.audio.reverb, 0.0), (model.audio.noise, 0.0)):
            conv.weight.zero_()
            conv.bias.zero_()
            conv.bias[0::2] = value  # the real channels


@pytest.mark.parametrize("output_mode", ["multichannel", "reference"])
def test_a_unit_mask_returns_the_mixture(output_mode):
    torch.manual_seed(0)
    model = DeepASA(get_config("tiny", audio_output="mask", output_mode=output_mode, doa_spatial="")).eval()
    _unit_masks(model)
    x = torch.randn(2, 4, model.config.clip_samples)  # (B, M, N)
    with torch.no_grad():
        out = model(x)
    want = x if output_mode == "multichannel" else x[:, model.config.ref_mic: model.config.ref_mic + 1]  # (B, K, N)
    for j in range(model.config.n_slots):
        assert torch.allclose(out.image[:, j], want, atol=1e-5), j
        assert torch.allclose(out.direct[:, j], want, atol=1e-5), j
    assert out.reverb.abs().max() == 0 and out.noise.abs().max() == 0


def test_the_same_unit_output_under_mapping_is_not_the_mixture():
    """The contrast: under the paper's mapping, constant head channels are a constant spectrum, not the mixture."""
    torch.manual_seed(0)
    model = DeepASA(get_config("tiny", doa_spatial="")).eval()
    _unit_masks(model)
    x = torch.randn(1, 4, model.config.clip_samples)
    with torch.no_grad():
        out = model(x)
    assert not torch.allclose(out.image[:, 0], x, atol=1e-2)


def test_mask_heads_learn_and_the_default_is_mapping():
    assert get_config("small").audio_output == "mapping" and get_config("paper").audio_output == "mapping"
    torch.manual_seed(0)
    model = DeepASA(get_config("tiny", audio_output="mask"))
    x = torch.randn(1, 4, model.config.clip_samples)
    model(x).image.pow(2).mean().backward()
    for conv in (model.audio.direct, model.audio.reverb):
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    with pytest.raises(DeepASAError, match="audio_output"):
        get_config("tiny", audio_output="ratio")
