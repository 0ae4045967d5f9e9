"""Front end: Gabor STFT with a learned per-frame Gaussian window, reference-channel normalisation, iSTFT.

docs/spec.md §2 (paper: "dynamic temporal kernel"). The analysis window of frame t of mic m is a Gaussian whose centre
μ[m, t] and width σ[m, t] are predicted from a strided Conv1d of that mic's waveform; synthesis is a plain Hann
iSTFT (the mismatch is learned away because every loss is computed on waveforms).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GaborSTFT(nn.Module):
    """STFT whose window is a per-frame, per-mic Gaussian predicted from the signal (docs/spec.md §2.2).

    Args:
        n_fft: FFT size = window length (640).
        hop: frame step (320).
        width: channels D_w of the conv that predicts the window (64).
        trainable: whether the window predictor learns (the released config freezes it: False).

    Input ``x`` (B, M, N) real; output (B, M, F, T) complex with F = n_fft/2 + 1 and T = N // hop + 1.
    Initialisation as the released ``reset_parameters`` (μ ≈ 0, σ ≈ n_fft / 6 samples).
    """

    def __init__(self, n_fft: int = 640, hop: int = 320, width: int = 64, trainable: bool = False) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.conv = nn.Conv1d(1, width, kernel_size=n_fft, stride=hop, padding=n_fft // 2)
        self.mu = nn.Linear(width, 1)
        self.sigma = nn.Linear(width, 1)
        # sample offsets of a frame relative to its centre: n = -n_fft/2 ... n_fft/2 - 1
        self.register_buffer("offsets", torch.arange(n_fft, dtype=torch.float32) - n_fft // 2, persistent=False)
        self.reset_parameters()
        self.requires_grad_(trainable)

    def reset_parameters(self) -> None:
        """μ-linear and conv at 1e-4 (μ ≈ 0), σ bias n_fft/6 (σ ≈ 106.7 samples for n_fft 640)."""
        for p in (self.conv.weight, self.conv.bias, self.mu.weight, self.mu.bias, self.sigma.weight):
            nn.init.constant_(p, 1e-4)
        nn.init.constant_(self.sigma.bias, self.n_fft / 6)

    def windows(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-L2-norm Gaussian windows. x (B*M, N) -> (B*M, T, n_fft)."""
        feat = self.conv(x.unsqueeze(1)).transpose(1, 2)  # (B*M, T, D_w)
        mu = torch.sigmoid(self.mu(feat)) * self.n_fft - self.n_fft / 2  # (B*M, T, 1), samples in (-n/2, n/2)
        sigma = F.softplus(self.sigma(feat))  # (B*M, T, 1), samples
        w = torch.exp(-((self.offsets - mu) ** 2) / (2 * sigma**2))  # (B*M, T, n_fft)
        return w / w.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, M, N) -> X (B, M, F, T) complex. Runs in float32 (or float64) even under autocast."""
        if x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return self.forward(x.float())
        b, m, n = x.shape
        x = x.reshape(b * m, n)  # (B*M, N)
        w = self.windows(x)  # (B*M, T, n_fft)
        frames = F.pad(x, (self.n_fft // 2, self.n_fft // 2)).unfold(-1, self.n_fft, self.hop)  # (B*M, T, n_fft)
        spec = torch.fft.rfft(frames * w, dim=-1)  # (B*M, T, F)
        return spec.reshape(b, m, spec.shape[1], spec.shape[2]).transpose(2, 3)  # (B, M, F, T)


class FrequencyNorm(nn.Module):
    """NBSS ``Norm(frequency)``: divide every channel by the per-frame mean |X_ref| over frequency (docs/spec.md §2.3).

    ``forward`` returns the normalised spectrum and the scale (B, 1, 1, T); ``inverse`` multiplies it back.
    """

    def __init__(self, ref_mic: int = 0, eps: float = 1e-8) -> None:
        super().__init__()
        self.ref_mic, self.eps = ref_mic, eps

    def forward(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """X (B, M, F, T) complex -> (X / s (B, M, F, T), s (B, 1, 1, T))."""
        scale = X[:, self.ref_mic : self.ref_mic + 1].abs().mean(dim=2, keepdim=True) + self.eps  # (B, 1, 1, T)
        return X / scale, scale

    @staticmethod
    def inverse(Y: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Y (B, ..., F, T) complex, scale (B, 1, 1, T) -> Y * scale broadcast over the middle axes."""
        scale = scale.reshape(scale.shape[0], *([1] * (Y.dim() - 2)), scale.shape[-1])  # (B, 1, ..., 1, T)
        return Y * scale


class HannISTFT(nn.Module):
    """Inverse STFT with a Hann window (centred, float32), the synthesis of docs/spec.md §2.2.

    Input (..., F, T) complex, output (..., N) real. On the meta device (complexity counting) it returns an
    empty tensor of the right shape, because ``torch.istft`` has no meta kernel; the FFT costs no MACs in
    the counts anyway (ptflops does not count it either).
    """

    def __init__(self, n_fft: int = 640, hop: int = 320) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, Y: torch.Tensor, length: int) -> torch.Tensor:
        """Y (..., F, T) complex -> y (..., length) float32."""
        lead = Y.shape[:-2]
        if Y.device.type == "meta":
            return torch.empty(*lead, length, device="meta")
        Y = Y.reshape(-1, Y.shape[-2], Y.shape[-1]).to(torch.complex64)  # (prod(lead), F, T)
        y = torch.istft(Y, self.n_fft, self.hop, window=self.window.float(), center=True, length=length)
        return y.reshape(*lead, length)  # (..., N)

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        """The STFT that :meth:`forward` inverts exactly (same Hann window, centred). x (B, M, N) real ->
        (B, M, F, T) complex64, F = n_fft/2 + 1, T = N // hop + 1 (the grid of :class:`GaborSTFT`)."""
        b, m, n = x.shape
        if x.device.type == "meta":  # complexity counting: no stft kernel there (see the class docstring)
            return torch.empty(b, m, self.n_fft // 2 + 1, n // self.hop + 1, dtype=torch.complex64, device="meta")
        X = torch.stft(x.reshape(b * m, n).float(), self.n_fft, self.hop, window=self.window.float(), center=True,
                       return_complex=True)  # (B*M, F, T)
        return X.reshape(b, m, *X.shape[-2:])  # (B, M, F, T)


def spec_to_channels(X: torch.Tensor) -> torch.Tensor:
    """Network input layout (docs/spec.md §2.4). X (B, M, F, T) complex -> (B, 2M, T, F) real, order m0.re, m0.im, ..."""
    b, m, f, t = X.shape
    x = torch.view_as_real(X)  # (B, M, F, T, 2)
    return x.permute(0, 1, 4, 3, 2).reshape(b, 2 * m, t, f)  # (B, 2M, T, F)


def complex_mask(mask: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """Apply a complex ratio mask in the head-channel layout (channel 2k + r = mic k, real/imag r).

    mask (..., 2K, T, F) real, mix (..., 2K, T, F) real (broadcastable, e.g. (B, 1, 2K, T, F) against
    (B, J, 2K, T, F)) -> (..., 2K, T, F): per mic k and bin, (m_re + i m_im)(x_re + i x_im).
    """
    m = mask.unflatten(-3, (-1, 2))  # (..., K, 2, T, F)
    x = mix.unflatten(-3, (-1, 2))  # (..., K, 2, T, F)
    m_re, m_im, x_re, x_im = m[..., 0, :, :], m[..., 1, :, :], x[..., 0, :, :], x[..., 1, :, :]  # (..., K, T, F)
    out = torch.stack((m_re * x_re - m_im * x_im, m_re * x_im + m_im * x_re), dim=-3)  # (..., K, 2, T, F)
    return out.flatten(-4, -3)  # (..., 2K, T, F)


def channels_to_spec(y: torch.Tensor, n_out: int) -> torch.Tensor:
    """Inverse of :func:`spec_to_channels` for head outputs. y (..., 2K, T, F) real -> (..., K, F, T) complex.

    Channel 2k + r of the head is (output mic k, real/imag r): object j's channels stay with object j (the
    intended mapping of docs/spec.md §3.4, not the released code's scrambled one).
    """
    lead, (t, f) = y.shape[:-3], y.shape[-2:]
    y = y.reshape(*lead, n_out, 2, t, f)  # (..., K, 2, T, F)
    y = y.movedim(-3, -1).transpose(-3, -2).contiguous()  # (..., K, F, T, 2)
    return torch.view_as_complex(y.float())  # (..., K, F, T)
