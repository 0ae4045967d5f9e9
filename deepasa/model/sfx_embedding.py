"""A frozen pretrained sound-effect embedding of each object's separated signal (``cls_embedding: aisfx``).

The paper's ClassNet has a pretrained branch (ATST-Frame, docs/spec.md §3.5, "branch B") whose weights cannot be
had here. This module is the substitute the class head can read instead: the 512-d clip embedding of the
CNN of ``aisfx`` 0.1.2 (a nine-layer VGG-style CNN, cross-dataset trained on sound-effect libraries; weights
inside its PyPI wheel, CC-BY-4.0, so nothing is fetched at run time), computed from the object's *estimated*
reference-channel image. It reads the object's own signal, so the class of slot j stays a function of object
j alone (the premise of docs/spec.md §4).

Why: on clean 2-s crops of the held-out sound bank the embedding gives 0.64 balanced accuracy over our 10
classes with one linear layer, against 0.41 for log-mel statistics and 0.31 for the network trained from
scratch after 2,220 scene passes (``experiments/2026-12-01-class-probe/class_probe.py``, docs/notebook/class-accuracy.md).

The front end reproduces the package's: the signal resampled to 44.1 kHz (band-limited, by zero-padding its
spectrum), peak-normalised, a 2048-point periodic-Hann STFT with hop 1024 (centred, reflect padding), power,
96 HTK mel bands over 0–22.05 kHz each of unit L1 norm, ``log10(1 + 10⁴·mel) / 9.4578`` (the package's
"original" range). The CNN (four blocks of two 3×3 conv + BatchNorm + ReLU, max-pooled 2×2, 2×2, 2×2, 1×1;
64, 128, 256, 512 channels) ends with the mean over mel bands and the max over time: one vector per signal,
for any length of at least ~0.2 s.

The embedding is computed without gradient (the network and its input are both detached): it adds
information to the class head and never pulls the separation. The model holds it outside its module tree
(:class:`~deepasa.model.DeepASA` ``sfx``): its weights are always those of the installed wheel, never in a
state dict, a checkpoint, a resume state or an optimizer.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from deepasa.errors import DeepASAError

AISFX_VERSION = "0.1.2"
INSTALL_HINT = f"pip install --no-deps aisfx=={AISFX_VERSION}"
SAMPLE_RATE = 44100
N_FFT, HOP, N_MELS = 2048, 1024, 96
SPEC_MAX = 9.457798957824707          # the package's min-max range of the log-mel ("original", min 0)
CHANNELS = (64, 128, 256, 512)
POOLS = ((2, 2), (2, 2), (2, 2), (1, 1))


def aisfx_weights_path() -> Path:
    """The weight file inside the installed ``aisfx`` wheel (found without importing the package).

    Raises:
        DeepASAError: aisfx is not installed or its weight file is missing.
    """
    spec = importlib.util.find_spec("aisfx")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc) / "models" / "checkpoint.pth"
        if path.is_file():
            return path
    raise DeepASAError(f"cls_embedding 'aisfx' needs the aisfx {AISFX_VERSION} wheel, which holds the weights: "
                       f"{INSTALL_HINT}")


def htk_mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> torch.Tensor:
    """Triangular HTK mel filters over 0..sample_rate/2, each of unit L1 norm: (n_mels, n_fft // 2 + 1)."""
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)  # (n_fft // 2 + 1,)
    top = 2595 * math.log10(1 + sample_rate / 2 / 700)
    edges = 700 * (10 ** (torch.linspace(0, top, n_mels + 2, dtype=torch.float64) / 2595) - 1)  # (n_mels + 2,)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (n_mels, 1) each
    fb = torch.clamp(torch.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), min=0)  # (n_mels, n_freq)
    return (fb / fb.sum(1, keepdim=True).clamp_min(1e-12)).float()


def resample_fft(x: torch.Tensor, sr_in: int, sr_out: int) -> torch.Tensor:
    """Band-limited resampling by the DFT: x (N, L) -> (N, round(L · sr_out / sr_in)), same amplitude."""
    n_in = x.shape[-1]
    n_out = int(round(n_in * sr_out / sr_in))
    if n_out == n_in:
        return x
    X = torch.fft.rfft(x.float(), dim=-1)  # (N, L // 2 + 1)
    keep = min(X.shape[-1], n_out // 2 + 1)
    Y = X.new_zeros(*X.shape[:-1], n_out // 2 + 1)  # (N, n_out // 2 + 1)
    Y[..., :keep] = X[..., :keep]
    if n_out > n_in and n_in % 2 == 0:
        Y[..., n_in // 2] *= 0.5  # the old Nyquist bin stood for +f and -f: half of it at each now
    if n_out < n_in and n_out % 2 == 0:
        Y[..., -1] = Y[..., -1].real * 2  # the new Nyquist bin gathers +f and -f of a real signal
    return torch.fft.irfft(Y, n=n_out, dim=-1) * (n_out / n_in)  # (N, n_out)


class _ConvBlock(nn.Module):
    """Two 3×3 conv (no bias) + BatchNorm + ReLU, then max pooling. (N, C_in, T, F) -> (N, C_out, T/p, F/q)."""

    def __init__(self, c_in: int, c_out: int, pool: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(c_out), nn.BatchNorm2d(c_out)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))  # (N, C_out, T, F)
        x = F.relu(self.bn2(self.conv2(x)))  # (N, C_out, T, F)
        return F.max_pool2d(x, self.pool) if self.pool != (1, 1) else x  # (N, C_out, T/p, F/q)


class SFXEmbedding(nn.Module):
    """Frozen aisfx clip embedding of mono signals: (N, L) at ``sample_rate`` -> (N, 512).

    Args:
        sample_rate: rate of the input signals (the model's).
        load_weights: read the pretrained weights of the installed wheel (False: random weights, for tests
            of the shapes only).
    """

    out_dim = CHANNELS[-1]

    def __init__(self, sample_rate: int, load_weights: bool = True) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        c_in = (1,) + CHANNELS[:-1]
        self.blocks = nn.ModuleList(_ConvBlock(a, b, p) for a, b, p in zip(c_in, CHANNELS, POOLS))
        self.register_buffer("mel_fb", htk_mel_filterbank(), persistent=False)  # (96, 1025)
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)  # (2048,)
        # on the meta device (complexity counting) a copy into the parameters is a no-op that warns per tensor
        if load_weights and self.mel_fb.device.type != "meta":
            self.load_aisfx(aisfx_weights_path())
        self.requires_grad_(False)
        self.eval()

    def load_aisfx(self, path: Path) -> None:
        """Copy the wheel's ``embedding_net`` weights (``conv_block{k}.{conv1,conv2,bn1,bn2}``) into the blocks."""
        import numpy as np

        # the file is (state_dict, {dataset: (numpy int64 index, n_classes)}): allow exactly those numpy types
        allowed = [(np._core.multiarray.scalar, "numpy.core.multiarray.scalar"), np.dtype,
                   type(np.dtype(np.int64))]
        try:
            with torch.serialization.safe_globals(allowed):
                state, _ = torch.load(path, map_location="cpu", weights_only=True)  # (state_dict, dataset heads)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a broken install
            raise DeepASAError(f"cannot read the aisfx weights {path}: {str(exc).splitlines()[0]}; "
                               f"reinstall: {INSTALL_HINT}") from None
        prefix = "embedding_net.conv_block"
        ours = {}
        for key, value in state.items():
            if key.startswith(prefix):
                number, rest = key[len(prefix):].split(".", 1)
                ours[f"blocks.{int(number) - 1}.{rest}"] = value
        missing, unexpected = self.load_state_dict(ours, strict=False)
        if missing or unexpected:
            raise DeepASAError(f"the aisfx weights {path} do not fit the embedding network "
                               f"(missing {len(missing)}, unexpected {len(unexpected)}): {INSTALL_HINT}")

    def train(self, mode: bool = True) -> "SFXEmbedding":
        """Always in eval mode (BatchNorm keeps the pretrained statistics)."""
        return super().train(False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The package's log-mel input: x (N, L) at ``sample_rate`` -> (N, frames, 96), frames = 1 + L'/1024."""
        y = resample_fft(x, self.sample_rate, SAMPLE_RATE)  # (N, L') at 44.1 kHz
        y = y / y.abs().amax(dim=-1, keepdim=True).clamp_min(1e-9)  # (N, L') peak-normalised
        spec = torch.stft(y, N_FFT, HOP, window=self.window, center=True, pad_mode="reflect",
                          return_complex=True)  # (N, 1025, frames)
        mel = self.mel_fb @ spec.abs().square()  # (N, 96, frames)
        return (torch.log10(mel * 1e4 + 1) / SPEC_MAX).transpose(1, 2)  # (N, frames, 96)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, L) mono at ``sample_rate`` -> (N, 512) embeddings (no gradient)."""
        if x.device.type == "meta":  # complexity counting: no FFT kernels on meta
            return torch.empty(x.shape[0], self.out_dim, device="meta")
        h = self.features(x.detach().float()).unsqueeze(1)  # (N, 1, frames, 96)
        for blk in self.blocks:
            h = blk(h)  # (N, C, frames / 8, 12) after the last block
        return h.mean(dim=3).amax(dim=2)  # (N, 512): mean over mel bands, max over time
