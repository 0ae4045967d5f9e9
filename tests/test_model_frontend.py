"""Front end: Gabor STFT against torch.stft, normalisation, channel layout, Hann iSTFT."""

import math

import torch

from deepasa.model.frontend import FrequencyNorm, GaborSTFT, HannISTFT, channels_to_spec, spec_to_channels

torch.set_num_threads(1)


def test_gabor_init_is_released_reset_parameters_and_frozen():
    g = GaborSTFT(640, 320, 64, trainable=False)
    assert sum(p.numel() for p in g.parameters()) == 41154  # docs/spec.md §2.2
    assert not any(p.requires_grad for p in g.parameters())
    w = g.windows(torch.randn(2, 3200) * 0.1)  # (2, T, 640)
    n = torch.arange(640) - 320.0
    centre = (w**2 * n).sum(-1)  # energy-weighted centre in samples
    width = torch.sqrt((w**2 * (n - centre[..., None]) ** 2).sum(-1)) * math.sqrt(2)  # sigma of w
    assert centre.abs().max() < 1.0
    torch.testing.assert_close(width, torch.full_like(width, 640 / 6), rtol=1e-3, atol=0)
    assert all(p.requires_grad for p in GaborSTFT(trainable=True).parameters())


def test_gabor_with_fixed_window_equals_torch_stft():
    n_fft, hop = 64, 16
    g = GaborSTFT(n_fft, hop, 8).double()
    with torch.no_grad():  # μ = sigmoid(0)·n − n/2 = 0 exactly; σ = softplus(bias)
        for p in (g.mu.weight, g.mu.bias, g.sigma.weight):
            p.zero_()
        g.sigma.bias.fill_(7.0)
    sigma = torch.nn.functional.softplus(torch.tensor(7.0, dtype=torch.float64))
    n = torch.arange(n_fft, dtype=torch.float64) - n_fft // 2
    win = torch.exp(-(n**2) / (2 * sigma**2))
    win = win / win.norm()
    x = torch.randn(2, 3, 1000, dtype=torch.float64)
    ref = torch.stft(x.reshape(6, 1000), n_fft, hop, window=win, center=True, pad_mode="constant",
                     return_complex=True).reshape(2, 3, n_fft // 2 + 1, -1)
    torch.testing.assert_close(g(x), ref)


def test_frequency_norm_uses_reference_channel_and_inverts():
    X = torch.randn(2, 3, 9, 5, dtype=torch.complex64)
    Xn, s = FrequencyNorm(ref_mic=1)(X)
    assert s.shape == (2, 1, 1, 5)
    torch.testing.assert_close(s[:, 0, 0], X[:, 1].abs().mean(1) + 1e-8)
    torch.testing.assert_close(FrequencyNorm.inverse(Xn, s), X)
    Y = torch.randn(2, 4, 3, 9, 5, dtype=torch.complex64)  # (B, J, M, F, T) head outputs
    torch.testing.assert_close(FrequencyNorm.inverse(Y, s), Y * s[:, None])


def test_channel_layout_and_inverse():
    X = torch.randn(1, 2, 4, 3, dtype=torch.complex64)  # (B, M, F, T)
    ch = spec_to_channels(X)  # (1, 4, T, F)
    assert ch.shape == (1, 4, 3, 4)
    torch.testing.assert_close(ch[0, 2], X[0, 1].real.T)  # channel 2 = m1.re
    torch.testing.assert_close(ch[0, 3], X[0, 1].imag.T)  # channel 3 = m1.im
    torch.testing.assert_close(channels_to_spec(ch, 2), X)


def test_hann_istft_inverts_hann_stft():
    x = torch.randn(2, 3, 4000)
    win = torch.hann_window(640)
    X = torch.stft(x.reshape(6, 4000), 640, 320, window=win, center=True, return_complex=True)
    y = HannISTFT(640, 320)(X.reshape(2, 3, 321, -1), 4000)
    torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-4)
