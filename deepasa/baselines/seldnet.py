"""The DCASE 2023 Task 3 SELDnet baseline (``sharathadavanne/seld-dcase2023``), track-wise multi-ACCDOA.

What is the same as the DCASE 2023 baseline (docs/baselines.md; ``parameters.py``, ``cls_feature_class.py``,
``seldnet_model.py`` of that repository):

* **Features.** STFT with hop 20 ms, Hann window of 2 hops (40 ms), FFT size the next power of two; 64 mel
  bands (Slaney mel scale and area normalisation, as ``librosa.filters.mel``); per channel
  ``10·log10(max(mel power, 1e-10))`` floored at 80 dB below the channel's maximum (``librosa.power_to_db``).
  MIC format: 4 log-mel + 6 GCC-PHAT channels (every mic pair m < n, ``irfft(exp(j·angle(X_m* X_n)))``,
  64 lags from −32 to +31 samples; a positive lag means channel n lags channel m). FOA format: 4 log-mel + 3
  mel-binned normalised intensity vectors ``Re(W*·[X, Y, Z]) / (|W|² + (|X|²+|Y|²+|Z|²)/3)``.
  Features are standardised per (channel, band) with statistics fitted on training clips (the baseline's
  ``StandardScaler``), kept in the model's buffers.
* **Network.** 3 conv blocks (3×3 conv, 64 filters, BatchNorm, ReLU, max-pool (time, freq) = (5, 4), (1, 4),
  (1, 2), Dropout2d 0.05) → 2-layer bidirectional GRU (128) → ``tanh`` and the product of the two directions
  → 2 multi-head self-attention layers (8 heads, residual, LayerNorm) → Linear(128) → Linear(3·3·C) → ``tanh``.
  (The baseline puts no non-linearity between its two linear layers; neither do we.) Set ``attn_layers=0``
  for the 2022 CRNN without attention.
* **Output and loss.** Multi-ACCDOA: per label frame, 3 tracks × (x, y, z) × C classes, activity coded as the
  vector length; ADPIT (auxiliary duplicating permutation-invariant training) over the 13 track assignments,
  MSE, the minimum taken per (frame, class) (:func:`adpit_loss`).
* **Inference.** A (track, class) is active where ‖accdoa‖ > 0.5; active tracks of one class within 15° of
  each other in a frame are unified (``thresh_unify``), their vectors averaged.

What differs, each deliberately:

* 16 kHz input (the project's scenes) instead of 24 kHz: hop 320, window 640, FFT 1024, label frame 100 ms =
  5 feature frames; the clip is zero-padded to a whole number of label frames so the network gives exactly
  ``T' = ceil(N / 1600)`` frames, the T' of :class:`deepasa.model.DeepASA` (40 for a 4-s clip).
* The intensity vector is returned in (x, y, z) order, read from ACN channels (W, Y, Z, X) as
  :mod:`deepasa.audio.geometry` defines the FOA format (the baseline used the channel order Y, Z, X).
* ADPIT targets are built from the project's per-slot labels (:func:`adpit_targets`).
* Merged (unified) vectors point along the mean direction and have the mean length of the merged vectors
  (the baseline's plain average can fall just below the 0.5 activity threshold).

Two options, off by default (the defaults are the DCASE 2023 network), measured in docs/notebook/seldnet-one-source.md
("SELDnet on one static source"):

* ``doa_head="agnostic"``: class-wise multi-ACCDOA codes activity as the vector length of the right class, so
  while the class is unknown the mean-square optimum is p(c)·u, below the 0.5 threshold, and learning the
  direction u lowers the loss by only Σ p(c)² (1/C with a uniform posterior). From 800 one-source scenes of 10
  classes the DCASE network stays at the all-zero output (val ADPIT above that of zeros, LE 76–85°). This option
  adds a class-agnostic multi-ACCDOA output (3 tracks × xyz, ADPIT with every class merged, weight
  ``agnostic_weight``) whose events are detected and localised whatever the class, and classified from the
  class-wise output (:func:`classify_agnostic_events`).
* ``gcc_upsample=U``: GCC-PHAT lags at 1/U-sample steps. The DCASE crop of 64 integer lags (±32 samples)
  holds the direct-path delays of this 4.2-cm array (≤ 3.2 samples at 16 kHz) in 9 of its 64 lags; U = 4 spends
  the same 64 lags on ±8 samples.

**Tracks to object slots** (:func:`accdoa_to_objects`), so that the project's scoring
(:func:`deepasa.evaluation.score_system`) applies to SELDnet as to any system: after unification, every
(track, class) pair that is active in at least one frame is a candidate object; candidates are ranked by their
activity mass ``Σ_t ‖accdoa‖·active``; the J largest become slots 0…J−1 in that order. Slot fields:
``cls_logits`` = +``logit`` for its class and −``logit`` for the others; ``onoff`` = ±10 from the unified
activity; ``doa`` = the (unified) accdoa vector of every frame (norm ≈ activity); ``sed`` = one-hot class ×
activity. Unused slots have all-negative logits, ``onoff`` −10 and zero ``doa``. With ``doa_head="agnostic"`` the
conversion reads the classified agnostic events instead of the raw class-wise tracks. Audio fields are ``None``:
SELDnet does no separation. A multi-ACCDOA track has no object identity — with ADPIT a lone source of a class
is duplicated on all three tracks, and two same-class sources may swap tracks between frames — so a source
can be split over two slots; that is the track-wise model's nature, not a conversion error.

Not yet split (about 790 lines; the natural seam is features / network / training-time targets and
the ``SELDnetBaseline`` system): the file was still being changed for issue 12 when issue 16 split the other
long files, and a split under someone's open work would have cost them a merge.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepasa.audio.geometry import FOA_CHANNELS
from deepasa.errors import DeepASAError
from deepasa.model.deepasa import DeepASAOutput, read_checkpoint, versions, write_checkpoint

__all__ = [
    "CHECKPOINT_FORMAT",
    "SELDnetConfig",
    "mel_filterbank",
    "log_mel",
    "gcc_phat",
    "foa_intensity",
    "SELDFeatures",
    "SELDnet",
    "adpit_targets",
    "adpit_loss",
    "seldnet_loss",
    "unify_tracks",
    "classify_agnostic_events",
    "accdoa_to_objects",
    "SELDnetBaseline",
]

CHECKPOINT_FORMAT = "deepasa-seldnet-1"

# ADPIT (seld-dcase2023 ``MSELoss_ADPIT``): dummy target tracks A0 | B0 B1 | C0 C1 C2 (indices 0 | 1 2 | 3 4 5)
# for 1, 2 or 3 same-class sources, and the 13 assignments of dummy tracks to the 3 output tracks.
_ADPIT_PERMS = ((0, 0, 0),
                (1, 1, 2), (1, 2, 1), (1, 2, 2), (2, 1, 1), (2, 1, 2), (2, 2, 1),
                (3, 4, 5), (3, 5, 4), (4, 3, 5), (4, 5, 3), (5, 3, 4), (5, 4, 3))
# Padding added to each group so that an empty group never wins with an all-zero target (baseline's pad4A/B/C).
_ADPIT_PADS = {0: ((1, 1, 2), (3, 4, 5)), 1: ((0, 0, 0), (3, 4, 5)), 2: ((0, 0, 0), (1, 1, 2))}


@dataclass
class SELDnetConfig:
    """Hyper-parameters of the baseline; the defaults are the DCASE 2023 ones at 16 kHz.

    Attributes:
        n_classes: C.
        audio_format: ``"mic"`` (log-mel + GCC-PHAT) or ``"foa"`` (log-mel + intensity vectors, ACN/SN3D).
        n_channels: M input channels (4 for FOA).
        sample_rate: Hz.
        hop_s: STFT hop in seconds (window = 2 hops, FFT = next power of two).
        label_hop_s: output frame in seconds (100 ms).
        n_mels: mel bands, also the number of GCC lags.
        n_filters: conv filters per block.
        f_pool: frequency max-pool per conv block.
        t_pool: time max-pool per conv block; empty = (label_hop / hop, 1, …, 1).
        rnn_size, rnn_layers: bidirectional GRU.
        attn_layers, attn_heads: multi-head self-attention after the GRU (0 = the 2022 CRNN).
        fnn_layers, fnn_size: linear layers before the output layer.
        dropout: dropout rate everywhere.
        n_tracks: multi-ACCDOA tracks (ADPIT needs 3).
        n_slots: J object slots of :func:`accdoa_to_objects`.
        activity_threshold: ‖accdoa‖ above which a track is active.
        thresh_unify_deg: same-class tracks closer than this are one event.
        gcc_upsample: GCC-PHAT lag resolution 1/U sample (irfft of U·n_fft points); the ``n_mels`` lags kept span
            ±n_mels / (2U) samples. 1 = DCASE 2023 (±32 samples, of which only |τ| ≤ 3.2 can hold a direct
            path on the 4.2-cm tetrahedron at 16 kHz); 4 = ±8 samples at 1/4-sample steps (every lag can).
        doa_head: ``"classwise"`` (DCASE 2023: direction only in the class-wise multi-ACCDOA vectors) or
            ``"agnostic"``: a second, class-agnostic multi-ACCDOA output (3 tracks × xyz, ADPIT with every class
            merged) that detects and localises; the class of each of its events is read from the class-wise
            output (:func:`classify_agnostic_events`). Why: docs/notebook/seldnet-one-source.md.
        agnostic_weight: weight of the class-agnostic ADPIT term in the loss (``doa_head="agnostic"``).
    """

    n_classes: int = 10
    audio_format: str = "mic"
    n_channels: int = 4
    sample_rate: int = 16000
    hop_s: float = 0.02
    label_hop_s: float = 0.1
    n_mels: int = 64
    n_filters: int = 64
    f_pool: tuple[int, ...] = (4, 4, 2)
    t_pool: tuple[int, ...] = ()
    rnn_size: int = 128
    rnn_layers: int = 2
    attn_layers: int = 2
    attn_heads: int = 8
    fnn_layers: int = 1
    fnn_size: int = 128
    dropout: float = 0.05
    n_tracks: int = 3
    n_slots: int = 5
    activity_threshold: float = 0.5
    thresh_unify_deg: float = 15.0
    gcc_upsample: int = 1
    doa_head: str = "classwise"
    agnostic_weight: float = 1.0

    def __post_init__(self) -> None:
        self.f_pool, self.t_pool = tuple(int(v) for v in self.f_pool), tuple(int(v) for v in self.t_pool)
        if self.audio_format not in ("mic", "foa"):
            raise DeepASAError(f"audio_format must be mic or foa, got {self.audio_format!r}")
        if self.doa_head not in ("classwise", "agnostic"):
            raise DeepASAError(f"doa_head must be classwise or agnostic, got {self.doa_head!r}")
        if int(self.gcc_upsample) < 1:
            raise DeepASAError(f"gcc_upsample must be >= 1, got {self.gcc_upsample}")
        if self.audio_format == "foa" and self.n_channels != 4:
            raise DeepASAError(f"FOA input has 4 channels (W, Y, Z, X), got n_channels={self.n_channels}")
        if self.label_samples % self.hop:
            raise DeepASAError(f"label hop ({self.label_samples} samples) must be a multiple of the STFT hop ({self.hop})")
        if not self.t_pool:
            self.t_pool = (self.frames_per_label,) + (1,) * (len(self.f_pool) - 1)
        if len(self.t_pool) != len(self.f_pool) or math.prod(self.t_pool) != self.frames_per_label:
            raise DeepASAError(f"t_pool {self.t_pool} must have one entry per conv block and pool "
                               f"{self.frames_per_label} feature frames into one label frame")
        if self.n_mels % math.prod(self.f_pool):
            raise DeepASAError(f"n_mels {self.n_mels} must be divisible by the frequency pooling {self.f_pool}")

    @property
    def hop(self) -> int:
        """STFT hop in samples (320 at 16 kHz)."""
        return int(round(self.hop_s * self.sample_rate))

    @property
    def win_length(self) -> int:
        """Hann window length: two hops (640)."""
        return 2 * self.hop

    @property
    def n_fft(self) -> int:
        """FFT size: the next power of two of the window (1024)."""
        return 1 << (self.win_length - 1).bit_length()

    @property
    def label_samples(self) -> int:
        """Samples per label frame (1600)."""
        return int(round(self.label_hop_s * self.sample_rate))

    @property
    def frames_per_label(self) -> int:
        """Feature frames per label frame (5)."""
        return self.label_samples // self.hop

    @property
    def n_pairs(self) -> int:
        """Microphone pairs of the GCC-PHAT features (6 for 4 mics)."""
        return self.n_channels * (self.n_channels - 1) // 2

    @property
    def in_channels(self) -> int:
        """Feature channels: M log-mel + pairs (MIC) or + 3 intensity (FOA); 10 or 7."""
        return self.n_channels + (self.n_pairs if self.audio_format == "mic" else 3)

    @property
    def n_outputs(self) -> int:
        """Output "classes" of the network: C, plus one class-agnostic set where ``doa_head == "agnostic"``."""
        return self.n_classes + (self.doa_head == "agnostic")

    def label_frames(self, n_samples: int) -> int:
        """T' of an n-sample input: ceil(N / label_samples) (40 for 4 s at 16 kHz)."""
        return math.ceil(n_samples / self.label_samples)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (tuples as lists) for checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SELDnetConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        extra = set(d) - known
        if extra:
            raise DeepASAError(f"unknown SELDnet config keys: {sorted(extra)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# ------------------------------------------------------------------------------------------------ features
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Slaney-style mel filterbank (``librosa.filters.mel`` defaults: Slaney scale, area normalisation).

    Args:
        sample_rate: Hz.
        n_fft: FFT size; F = n_fft // 2 + 1 bins.
        n_mels: bands.
        fmin, fmax: band edges in Hz (fmax default sample_rate / 2).

    Returns:
        (F, n_mels) float64 weights (the baseline's ``mel_wts``).
    """
    fmax = sample_rate / 2.0 if fmax is None else fmax
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, math.log(6.4) / 27.0

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, dtype=np.float64)
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)                   # (F,)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))      # (n_mels + 2,)
    fdiff = np.diff(mel_f)                                                             # (n_mels + 1,)
    ramps = mel_f[:, None] - fft_freqs[None, :]                                        # (n_mels + 2, F)
    lower = -ramps[:-2] / fdiff[:-1, None]                                             # (n_mels, F)
    upper = ramps[2:] / fdiff[1:, None]                                                # (n_mels, F)
    weights = np.maximum(0.0, np.minimum(lower, upper))                                # (n_mels, F)
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]                               # Slaney area norm
    return weights.T                                                                   # (F, n_mels)


def log_mel(spec: torch.Tensor, mel_wts: torch.Tensor, top_db: float = 80.0) -> torch.Tensor:
    """Log-mel power per channel, as ``librosa.power_to_db(|X|² · mel_wts)`` (ref 1, amin 1e-10, top_db 80).

    Args:
        spec: (B, M, F, T) complex STFT.
        mel_wts: (F, K) mel weights.
        top_db: floor relative to each (clip, channel) maximum.

    Returns:
        (B, M, T, K) in dB.
    """
    power = spec.real ** 2 + spec.imag ** 2                                           # (B, M, F, T)
    mel = torch.einsum("bmft,fk->bmtk", power, mel_wts)                               # (B, M, T, K)
    db = 10.0 * torch.log10(mel.clamp_min(1e-10))                                      # (B, M, T, K)
    peak = db.amax(dim=(-2, -1), keepdim=True)                                         # (B, M, 1, 1)
    return torch.maximum(db, peak - top_db)


def gcc_phat(spec: torch.Tensor, n_lags: int, n_fft: int, upsample: int = 1) -> torch.Tensor:
    """GCC-PHAT of every microphone pair m < n, cropped to ``n_lags`` lags around zero (DCASE 2023 ``_get_gcc``).

    ``cc_mn[τ] = irfft(exp(j·angle(X_m* · X_n)), U·n_fft)[U·τ]`` peaks at τ = d when channel n is channel m
    delayed by d samples. Lag index i holds τ = (i − n_lags/2) / U samples (lag 0 at index n_lags // 2). U = 1 is
    the DCASE 2023 feature; U > 1 zero-pads the phase-transformed cross-spectrum, which samples the same
    band-limited correlation at 1/U-sample steps.

    Args:
        spec: (B, M, F, T) complex STFT with F = n_fft // 2 + 1.
        n_lags: lags kept (even).
        n_fft: FFT size of ``spec``.
        upsample: U, lag steps per sample.

    Returns:
        (B, P, T, n_lags) with P = M(M−1)/2 pairs in the order (0,1), (0,2), …, (M−2, M−1).
    """
    m_idx, n_idx = zip(*itertools.combinations(range(spec.shape[1]), 2))
    cross = spec[:, list(m_idx)].conj() * spec[:, list(n_idx)]                       # (B, P, F, T)
    phat = torch.polar(torch.ones_like(cross.real), torch.angle(cross))              # (B, P, F, T) unit modulus
    cc = torch.fft.irfft(phat, n=n_fft * upsample, dim=2) * upsample                  # (B, P, U·n_fft, T)
    half = n_lags // 2
    cc = torch.cat([cc[:, :, -half:], cc[:, :, :half]], dim=2)                        # (B, P, n_lags, T)
    return cc.transpose(2, 3)                                                         # (B, P, T, n_lags)


def foa_intensity(spec: torch.Tensor, mel_wts: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mel-binned normalised active intensity of an FOA (ACN/SN3D) STFT (DCASE 2023 ``_get_foa_intensity_vectors``).

    ``I = Re(W* · [X, Y, Z]) / (eps + |W|² + (|X|² + |Y|² + |Z|²)/3)`` per bin, then mel-weighted. A plane wave
    from unit direction u gives I = 0.75 · u (with SN3D gains (1, u_y, u_z, u_x)), so I points to the source.

    Args:
        spec: (B, 4, F, T) complex STFT, channels in ACN order (W, Y, Z, X).
        mel_wts: (F, K).
        eps: regulariser of the energy.

    Returns:
        (B, 3, T, K) intensity in (x, y, z) order.
    """
    w = spec[:, FOA_CHANNELS.index("W")]                                              # (B, F, T)
    xyz = spec[:, [FOA_CHANNELS.index(c) for c in ("X", "Y", "Z")]]                   # (B, 3, F, T)
    intensity = (w.conj().unsqueeze(1) * xyz).real                                    # (B, 3, F, T)
    energy = eps + w.abs() ** 2 + (xyz.abs() ** 2).sum(1) / 3.0                        # (B, F, T)
    return torch.einsum("bcft,fk->bctk", intensity / energy.unsqueeze(1), mel_wts)   # (B, 3, T, K)


class SELDFeatures(nn.Module):
    """Waveforms to the DCASE 2023 SELD features (no learnable parameters).

    Args:
        config: :class:`SELDnetConfig`.

    ``forward(x (B, M, N)) -> (B, C_in, T, n_mels)`` with C_in = ``config.in_channels`` and
    T = ``frames_per_label · ceil(N / label_samples)`` (200 for 4 s at 16 kHz); the input is zero-padded to a
    whole number of label frames.

    >>> f = SELDFeatures(SELDnetConfig())
    >>> tuple(f(torch.zeros(2, 4, 64000)).shape)
    (2, 10, 200, 64)
    """

    def __init__(self, config: SELDnetConfig) -> None:
        super().__init__()
        self.config = config
        wts = mel_filterbank(config.sample_rate, config.n_fft, config.n_mels)
        self.register_buffer("mel_wts", torch.from_numpy(wts).float(), persistent=False)      # (F, K)
        self.register_buffer("window", torch.hann_window(config.win_length), persistent=False)  # (win,)

    def stft(self, x: torch.Tensor) -> torch.Tensor:
        """(B, M, N) -> (B, M, F, T) complex, T = frames_per_label · T' (centred frames, the last one cropped)."""
        cfg = self.config
        b, m, n = x.shape
        n_label = cfg.label_frames(n)
        x = F.pad(x.float(), (0, n_label * cfg.label_samples - n))                      # (B, M, T'·L)
        spec = torch.stft(x.reshape(b * m, -1), cfg.n_fft, cfg.hop, cfg.win_length, self.window,
                          center=True, pad_mode="constant", return_complex=True)       # (B·M, F, T + 1)
        spec = spec[..., : n_label * cfg.frames_per_label]                              # (B·M, F, T)
        return spec.reshape(b, m, *spec.shape[-2:])                                     # (B, M, F, T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features of a batch. x (B, M, N) -> (B, C_in, T, n_mels)."""
        cfg = self.config
        if x.dim() != 3 or x.shape[1] != cfg.n_channels:
            raise DeepASAError(f"expected input (batch, {cfg.n_channels} channels, samples), got {tuple(x.shape)}")
        spec = self.stft(x)                                                             # (B, M, F, T)
        mel = log_mel(spec, self.mel_wts)                                               # (B, M, T, K)
        if cfg.audio_format == "mic":
            spatial = gcc_phat(spec, cfg.n_mels, cfg.n_fft, cfg.gcc_upsample)          # (B, P, T, K)
        else:
            spatial = foa_intensity(spec, self.mel_wts)                                 # (B, 3, T, K)
        return torch.cat([mel, spatial], dim=1)                                         # (B, C_in, T, K)


# ------------------------------------------------------------------------------------------------ network
class _ConvBlock(nn.Module):
    """3×3 conv, BatchNorm, ReLU, max-pool (time, freq), Dropout2d. (B, Ci, T, K) -> (B, Co, T/tp, K/fp)."""

    def __init__(self, c_in: int, c_out: int, t_pool: int, f_pool: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(c_out)
        self.pool = nn.MaxPool2d((t_pool, f_pool))
        self.drop = nn.Dropout2d(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.pool(F.relu(self.bn(self.conv(x)))))


class SELDnet(nn.Module):
    """The DCASE 2023 SELDnet: features → standardisation → CNN → bi-GRU → MHSA → FC → tanh (multi-ACCDOA).

    Args:
        config: :class:`SELDnetConfig`.

    ``forward(x (B, M, N)) -> accdoa (B, T', n_tracks, 3, C_out)``; ``forward_features`` takes the
    (unnormalised) features (B, C_in, T, n_mels) instead, for training on cached features. C_out =
    ``config.n_outputs``: the C class-wise vectors, and with ``doa_head="agnostic"`` one more, the class-agnostic
    multi-ACCDOA tracks at index C.

    >>> net = SELDnet(SELDnetConfig(n_classes=10)).eval()
    >>> tuple(net(torch.zeros(1, 4, 64000)).shape)
    (1, 40, 3, 3, 10)
    """

    def __init__(self, config: SELDnetConfig) -> None:
        super().__init__()
        cfg = self.config = config
        self.features = SELDFeatures(cfg)
        # standardisation statistics (the baseline's StandardScaler), fitted by ``fit_scaler``
        self.register_buffer("feat_mean", torch.zeros(cfg.in_channels, cfg.n_mels))
        self.register_buffer("feat_std", torch.ones(cfg.in_channels, cfg.n_mels))
        blocks, c_in = [], cfg.in_channels
        for tp, fp in zip(cfg.t_pool, cfg.f_pool):
            blocks.append(_ConvBlock(c_in, cfg.n_filters, tp, fp, cfg.dropout))
            c_in = cfg.n_filters
        self.cnn = nn.Sequential(*blocks)
        self.gru = nn.GRU(cfg.n_filters * (cfg.n_mels // math.prod(cfg.f_pool)), cfg.rnn_size,
                          num_layers=cfg.rnn_layers, batch_first=True, dropout=cfg.dropout, bidirectional=True)
        self.attn = nn.ModuleList(nn.MultiheadAttention(cfg.rnn_size, cfg.attn_heads, dropout=cfg.dropout,
                                                        batch_first=True) for _ in range(cfg.attn_layers))
        self.attn_norm = nn.ModuleList(nn.LayerNorm(cfg.rnn_size) for _ in range(cfg.attn_layers))
        sizes = [cfg.rnn_size] + [cfg.fnn_size] * cfg.fnn_layers
        self.fnn = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(sizes[-1], cfg.n_tracks * 3 * cfg.n_outputs)

    @torch.no_grad()
    def fit_scaler(self, features: torch.Tensor) -> None:
        """Set the standardisation from training features. features (B, C_in, T, n_mels) -> None."""
        x = features.float().transpose(0, 1).reshape(features.shape[1], -1, features.shape[-1])  # (C_in, B·T, K)
        self.feat_mean.copy_(x.mean(1))                                                  # (C_in, K)
        self.feat_std.copy_(x.std(1).clamp_min(1e-5))                                    # (C_in, K)

    def forward_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Network on features. feats (B, C_in, T, n_mels) -> accdoa (B, T', n_tracks, 3, C_out)."""
        cfg = self.config
        x = (feats.float() - self.feat_mean[:, None]) / self.feat_std[:, None]          # (B, C_in, T, K)
        x = self.cnn(x)                                                                  # (B, D, T', K')
        b, _, t, _ = x.shape
        x = x.transpose(1, 2).reshape(b, t, -1)                                          # (B, T', D·K')
        x, _ = self.gru(x)                                                               # (B, T', 2H)
        x = torch.tanh(x)
        x = x[..., cfg.rnn_size:] * x[..., : cfg.rnn_size]                               # (B, T', H) backward·forward
        for attn, norm in zip(self.attn, self.attn_norm):
            y, _ = attn(x, x, x, need_weights=False)                                     # (B, T', H)
            x = norm(x + y)
        for lin in self.fnn:                                                             # no activation (as the baseline)
            x = lin(x)                                                                   # (B, T', fnn_size)
        y = torch.tanh(self.out(x))                                                      # (B, T', n_tracks·3·C_out)
        return y.reshape(b, t, cfg.n_tracks, 3, cfg.n_outputs)                           # (B, T', tracks, xyz, C_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, M, N) waveforms -> accdoa (B, T', n_tracks, 3, C_out)."""
        return self.forward_features(self.features(x))


# ------------------------------------------------------------------------------------------------ ADPIT
def adpit_targets(cls: torch.Tensor, activity: torch.Tensor, doa: torch.Tensor, n_classes: int) -> torch.Tensor:
    """ADPIT dummy-track targets from per-slot labels (DCASE 2023 ``get_adpit_labels_for_file``).

    At each frame, the active sources of one class go to dummy track A0 when alone, B0/B1 when two, C0/C1/C2
    when three or more (the first three by slot order; the rest are dropped, as the baseline does).

    Args:
        cls: (B, J) class per slot, −1 for an empty slot.
        activity: (B, J, T') in {0, 1}.
        doa: (B, J, T', 3) unit vectors where active.
        n_classes: C.

    Returns:
        (B, T', 6, 3, C) accdoa targets (activity × unit DoA) of dummy tracks A0, B0, B1, C0, C1, C2.
    """
    b, j, t = activity.shape
    onehot = F.one_hot(cls.clamp(min=0), n_classes).float() * (cls >= 0).unsqueeze(-1).float()   # (B, J, C)
    act = (activity.float() > 0.5).float().unsqueeze(-1) * onehot.unsqueeze(2)       # (B, J, T', C)
    rank = act.cumsum(dim=1) - 1.0                                                   # (B, J, T', C) same-class rank
    count = act.sum(dim=1)                                                           # (B, T', C)
    base = torch.where(count == 1, 0.0, torch.where(count == 2, 1.0, 3.0))          # (B, T', C) first dummy
    target = doa.new_zeros(b, t, 6, 3, n_classes, dtype=torch.float32)               # (B, T', 6, 3, C)
    for k in range(j):
        keep = act[:, k] * (rank[:, k] < 3).float()                                  # (B, T', C)
        dummy = (base + rank[:, k]).clamp(0, 5).long()                               # (B, T', C)
        place = F.one_hot(dummy, 6).float().permute(0, 1, 3, 2) * keep.unsqueeze(2)  # (B, T', 6, C)
        target = target + place.unsqueeze(3) * doa[:, k].float()[:, :, None, :, None]  # (B, T', 6, 3, C)
    return target


def adpit_loss(accdoa: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """ADPIT: MSE to the best of the 13 duplicating track assignments, chosen per (frame, class).

    Same as DCASE 2023 ``MSELoss_ADPIT``: each of the 13 assignments of the dummy tracks (A0A0A0; the 6 of
    B0/B1 over 3 tracks using both; the 6 permutations of C0C1C2) is padded with the other two groups' targets
    (so an empty group never matches as "all zero"), the MSE is averaged over tracks and axes, and the minimum
    over assignments is taken per (batch, frame, class).

    Args:
        accdoa: (B, T', 3, 3, C) network output (tracks, xyz, classes).
        target: (B, T', 6, 3, C) from :func:`adpit_targets`.
        reduction: ``"mean"`` (scalar) or ``"none"`` ((B, T', C) minimum per frame and class).

    Returns:
        scalar, or (B, T', C).
    """
    if accdoa.shape[2] != 3:
        raise DeepASAError(f"ADPIT is defined for 3 tracks, got {accdoa.shape[2]}")
    idx = torch.tensor(_ADPIT_PERMS, device=target.device)                           # (13, 3)
    cand = target[:, :, idx]                                                         # (B, T', 13, 3, 3, C)
    group = torch.tensor([0] + [1] * 6 + [2] * 6, device=target.device)              # (13,)
    pads = torch.stack([target[:, :, list(p)] + target[:, :, list(q)] for p, q in
                        (_ADPIT_PADS[g] for g in range(3))], dim=2)                   # (B, T', 3, 3, 3, C)
    cand = cand + pads[:, :, group]                                                  # (B, T', 13, 3, 3, C)
    err = ((accdoa.unsqueeze(2) - cand) ** 2).mean(dim=(3, 4))                       # (B, T', 13, C)
    best = err.min(dim=2).values                                                     # (B, T', C)
    return best.mean() if reduction == "mean" else best


def seldnet_loss(accdoa: torch.Tensor, cls: torch.Tensor, activity: torch.Tensor, doa: torch.Tensor,
                 config: SELDnetConfig) -> torch.Tensor:
    """Training loss of a :class:`SELDnet` output: class-wise ADPIT, plus the class-agnostic ADPIT term.

    With ``doa_head="classwise"`` this is :func:`adpit_loss` (DCASE 2023). With ``"agnostic"``, the output at
    class index C is trained with ADPIT against the same labels with every class merged into one (so a source's
    direction is learnt whatever its class), weighted by ``config.agnostic_weight``.

    Args:
        accdoa: (B, T', 3, 3, C_out) network output.
        cls: (B, J) class per slot, −1 for an empty slot.
        activity: (B, J, T') in {0, 1}.
        doa: (B, J, T', 3) unit vectors where active.
        config: the network's :class:`SELDnetConfig`.

    Returns:
        scalar.
    """
    c = config.n_classes
    loss = adpit_loss(accdoa[..., :c], adpit_targets(cls, activity, doa, c))
    if config.doa_head == "agnostic":
        merged = cls.clamp(max=0)                                                    # (B, J): 0, or −1 if empty
        loss = loss + config.agnostic_weight * adpit_loss(accdoa[..., c:], adpit_targets(merged, activity, doa, 1))
    return loss


# ------------------------------------------------------------------------------------------------ inference
def _merge(*vectors: torch.Tensor) -> torch.Tensor:
    """Unified vector of same-class tracks: mean direction, mean length. each (..., 3, C) -> (..., 3, C)."""
    stack = torch.stack(vectors)                                                     # (k, ..., 3, C)
    mean = stack.mean(0)                                                             # (..., 3, C)
    length = stack.norm(dim=-2, keepdim=True).mean(0)                                # (..., 1, C)
    return mean / mean.norm(dim=-2, keepdim=True).clamp_min(1e-8) * length


def unify_tracks(accdoa: torch.Tensor, threshold: float = 0.5, thresh_unify_deg: float = 15.0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame track unification of the DCASE 2023 multi-ACCDOA inference (``determine_similar_location``).

    In each (frame, class): tracks with ‖accdoa‖ > ``threshold`` are active; a pair of active tracks closer than
    ``thresh_unify_deg`` is "similar". No similar pair: every active track is an event. One similar pair: the
    pair is one event (kept on its lower track, (2, 0) on track 0) and the third track is an event if active.
    Two or more similar pairs: one event from all three, on track 0.

    Args:
        accdoa: (B, T', 3, 3, C).
        threshold: activity threshold on the vector length.
        thresh_unify_deg: unification angle.

    Returns:
        ``active (B, T', 3, C)`` bool and ``vectors (B, T', 3, 3, C)`` (unified where merged).
    """
    if accdoa.shape[2] != 3:
        raise DeepASAError(f"track unification is defined for 3 tracks, got {accdoa.shape[2]}")
    v = list(accdoa.float().unbind(2))                                               # 3 × (B, T', 3, C)
    a = [vi.norm(dim=-2) > threshold for vi in v]                                    # 3 × (B, T', C)
    cos_max = math.cos(math.radians(thresh_unify_deg))

    def similar(i: int, k: int) -> torch.Tensor:
        cos = F.cosine_similarity(v[i], v[k], dim=-2, eps=1e-8)                      # (B, T', C)
        return a[i] & a[k] & (cos > cos_max)

    s01, s12, s20 = similar(0, 1), similar(1, 2), similar(2, 0)
    n_sim = s01.int() + s12.int() + s20.int()                                        # (B, T', C)
    out_v, out_a = [x.clone() for x in v], [x.clone() for x in a]
    for m, (keep, drop), pair in (((n_sim == 1) & s01, (0, 1), (0, 1)), ((n_sim == 1) & s12, (1, 2), (1, 2)),
                                  ((n_sim == 1) & s20, (0, 2), (2, 0))):
        out_v[keep] = torch.where(m.unsqueeze(-2), _merge(v[pair[0]], v[pair[1]]), out_v[keep])
        out_a[drop] = out_a[drop] & ~m
    m = n_sim >= 2
    out_v[0] = torch.where(m.unsqueeze(-2), _merge(*v), out_v[0])
    out_a[1], out_a[2] = out_a[1] & ~m, out_a[2] & ~m
    return torch.stack(out_a, dim=2), torch.stack(out_v, dim=2)                     # (B, T', 3, C), (B, T', 3, 3, C)


def classify_agnostic_events(accdoa: torch.Tensor, threshold: float = 0.5, thresh_unify_deg: float = 15.0
                             ) -> torch.Tensor:
    """Class-wise multi-ACCDOA from the class-agnostic tracks of a ``doa_head="agnostic"`` output.

    The agnostic tracks (index C) are unified as :func:`unify_tracks` does; each active event (‖v‖ > threshold)
    at frame t gets the class c that maximises ``Σ_s max_k ‖a_kc(s)‖ · (1 + cos(a_kc(s), v)) / 2`` over the
    class-wise vectors a_kc(s) of every frame s of the clip (the class most active in that direction over the
    clip, so that a source keeps one class from frame to frame instead of being split over several slots), and
    is written, with its agnostic vector, into that class's channel of the same track. Inactive events are zero.

    Args:
        accdoa: (B, T', 3, 3, C + 1) network output, agnostic tracks last.
        threshold: activity threshold on the agnostic vector length.
        thresh_unify_deg: unification angle of the agnostic tracks.

    Returns:
        (B, T', 3, 3, C) multi-ACCDOA for :func:`accdoa_to_objects` / :func:`unify_tracks`.
    """
    cw, ag = accdoa[..., :-1].float(), accdoa[..., -1:].float()                     # (B, T', 3, 3, C), (..., 1)
    c = cw.shape[-1]
    active, vec = unify_tracks(ag, threshold, thresh_unify_deg)                      # (B, T', 3, 1), (B, T', 3, 3, 1)
    active, vec = active[..., 0], vec[..., 0]                                        # (B, T', 3), (B, T', 3, 3)
    cos = torch.einsum("btkx,bsjxc->btksjc", F.normalize(vec, dim=-1, eps=1e-8),
                       F.normalize(cw, dim=-2, eps=1e-8))                             # (B, T', events, T', tracks, C)
    norm = cw.norm(dim=-2)[:, None, None]                                            # (B, 1, 1, T', tracks, C)
    score = (norm * (1.0 + cos) / 2.0).amax(dim=4).sum(dim=3)                        # (B, T', events, C)
    onehot = F.one_hot(score.argmax(-1), c).float() * active.unsqueeze(-1).float()  # (B, T', events, C)
    return vec.unsqueeze(-1) * onehot.unsqueeze(-2)                                  # (B, T', 3, 3, C)


def accdoa_to_objects(accdoa: torch.Tensor, n_slots: int = 5, *, threshold: float = 0.5,
                      thresh_unify_deg: float = 15.0, logit: float = 10.0) -> DeepASAOutput:
    """Multi-ACCDOA tracks to J object slots (the mapping of the module docstring).

    Args:
        accdoa: (B, T', 3, 3, C).
        n_slots: J.
        threshold: activity threshold on ‖accdoa‖.
        thresh_unify_deg: same-class unification angle.
        logit: magnitude of the class and on/off logits that encode the decisions.

    Returns:
        :class:`DeepASAOutput` with ``cls_logits (B, J, C)``, ``sed (B, J, T', C)``, ``onoff (B, J, T')``,
        ``doa (B, J, T', 3)``; audio fields ``None``.
    """
    b, t, k, _, c = accdoa.shape
    active, vec = unify_tracks(accdoa, threshold, thresh_unify_deg)                  # (B, T', K, C), (B, T', K, 3, C)
    act_flat = active.permute(0, 2, 3, 1).reshape(b, k * c, t)                       # (B, K·C, T') index k·C + c
    vec_flat = vec.permute(0, 2, 4, 1, 3).reshape(b, k * c, t, 3)                    # (B, K·C, T', 3)
    mass = (vec_flat.norm(dim=-1) * act_flat).sum(-1)                                # (B, K·C) activity mass
    n_take = min(n_slots, k * c)
    top_mass, top = mass.topk(n_take, dim=1)                                         # (B, J') each, descending
    used = top_mass > 0                                                              # (B, J') real candidates
    cls = top % c                                                                    # (B, J')
    on = torch.gather(act_flat, 1, top.unsqueeze(-1).expand(-1, -1, t)) & used.unsqueeze(-1)   # (B, J', T')
    doa = torch.gather(vec_flat, 1, top[..., None, None].expand(-1, -1, t, 3))       # (B, J', T', 3)
    doa = doa * used[..., None, None]                                                # (B, J', T', 3)
    onehot = F.one_hot(cls, c).float() * used.unsqueeze(-1)                          # (B, J', C)
    cls_logits = logit * (2.0 * onehot - 1.0)                                        # (B, J', C)
    onoff = torch.where(on, logit, -logit)                                           # (B, J', T')
    sed = on.float().unsqueeze(-1) * onehot.unsqueeze(2)                             # (B, J', T', C)
    if n_take < n_slots:                                                             # fewer candidates than slots
        pad = n_slots - n_take
        cls_logits = torch.cat([cls_logits, cls_logits.new_full((b, pad, c), -logit)], 1)
        onoff = torch.cat([onoff, onoff.new_full((b, pad, t), -logit)], 1)
        doa = torch.cat([doa, doa.new_zeros(b, pad, t, 3)], 1)
        sed = torch.cat([sed, sed.new_zeros(b, pad, t, c)], 1)
    return DeepASAOutput(cls_logits=cls_logits, sed=sed, onoff=onoff, doa=doa)


# ------------------------------------------------------------------------------------------------ system
class SELDnetBaseline:
    """A SELDnet as a system of :func:`deepasa.evaluation.score_system`: waveforms in, object slots out.

    Args:
        model: a :class:`SELDnet` (or a :class:`SELDnetConfig` to build an untrained one).
        class_names: the C class names (index → name).
        train_info: what :func:`deepasa.baselines.seldnet_train.train_seldnet` recorded (steps, seconds, …).

    ``baseline(mixture (B, M, N))`` (or a batch dict holding ``mixture``) returns a
    :class:`~deepasa.model.deepasa.DeepASAOutput` with J = ``config.n_slots`` slots (:func:`accdoa_to_objects`).
    """

    def __init__(self, model: SELDnet | SELDnetConfig, class_names: list[str] | None = None,
                 train_info: dict | None = None) -> None:
        self.model = model if isinstance(model, SELDnet) else SELDnet(model)
        self.class_names = list(class_names) if class_names else None
        self.train_info = dict(train_info or {})

    @property
    def config(self) -> SELDnetConfig:
        """The network's :class:`SELDnetConfig`."""
        return self.model.config

    @property
    def sample_rate(self) -> int:
        """Sample rate the model expects (Hz)."""
        return self.config.sample_rate

    @property
    def in_channels(self) -> int:
        """Input channels M."""
        return self.config.n_channels

    @staticmethod
    def _mixture(x) -> torch.Tensor:
        return x["mixture"] if isinstance(x, dict) else torch.as_tensor(x)

    @torch.no_grad()
    def accdoa(self, mixture) -> torch.Tensor:
        """Raw network output in eval mode. mixture (B, M, N) -> (B, T', 3, 3, C_out)."""
        self.model.eval()
        return self.model(self._mixture(mixture).float())

    def classwise(self, mixture) -> torch.Tensor:
        """The class-wise multi-ACCDOA the decisions are read from. mixture (B, M, N) -> (B, T', 3, 3, C).

        The raw output for ``doa_head="classwise"``; the classified agnostic events
        (:func:`classify_agnostic_events`) for ``"agnostic"``.
        """
        cfg, acc = self.config, self.accdoa(mixture)
        if cfg.doa_head == "agnostic":
            return classify_agnostic_events(acc, cfg.activity_threshold, cfg.thresh_unify_deg)
        return acc

    def __call__(self, mixture) -> DeepASAOutput:
        """Object slots of a batch. mixture (B, M, N) or a batch dict -> :class:`DeepASAOutput` (J slots)."""
        cfg = self.config
        return accdoa_to_objects(self.classwise(mixture), cfg.n_slots, threshold=cfg.activity_threshold,
                                 thresh_unify_deg=cfg.thresh_unify_deg)

    def dcase_frames(self, mixture) -> list[dict[int, list[tuple]]]:
        """DCASE-style per-frame events, as the baseline writes them (after track unification).

        Args:
            mixture: (B, M, N) or a batch dict.

        Returns:
            B frame dictionaries ``{frame: [(class, track, xyz (3,) numpy), ...]}``, the format of
            :func:`deepasa.metrics.write_dcase_csv` (``cartesian=True`` writes the baseline's 7 columns).
        """
        cfg = self.config
        active, vec = unify_tracks(self.classwise(mixture), cfg.activity_threshold, cfg.thresh_unify_deg)
        out = []
        for a_b, v_b in zip(active.numpy(), vec.numpy()):                            # (T', 3, C), (T', 3, 3, C)
            frames: dict[int, list[tuple]] = {}
            for t, k, c in zip(*np.nonzero(a_b)):
                frames.setdefault(int(t), []).append((int(c), int(k), v_b[t, k, :, c].copy()))
            out.append(frames)
        return out

    # -------------------------------------------------------------- serialisation
    def serialize(self) -> dict[str, Any]:
        """Checkpoint dict: ``format``, ``config``, ``state_dict``, ``class_names``, ``train_info``, ``versions``."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "class_names": self.class_names,
            "train_info": self.train_info,
            "versions": versions(),
        }

    def save(self, path: str | Path) -> Path:
        """Write :meth:`serialize` to ``path`` (via a temporary file moved into place)."""
        return write_checkpoint(self.serialize(), path)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "SELDnetBaseline":
        """Rebuild a baseline saved by :meth:`save` (weights only, no pickled code).

        Raises:
            DeepASAError: missing or unreadable file, or not a ``deepasa-seldnet-1`` checkpoint.
        """
        path = Path(path)
        ckpt = read_checkpoint(path, map_location)
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise DeepASAError(f"{path} is not a SELDnet checkpoint ({CHECKPOINT_FORMAT})")
        model = SELDnet(SELDnetConfig.from_dict(ckpt["config"]))
        model.load_state_dict(ckpt["state_dict"], strict=True)
        return cls(model.eval(), ckpt.get("class_names"), ckpt.get("train_info"))
