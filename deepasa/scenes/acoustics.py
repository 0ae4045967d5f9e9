"""Room acoustics for the scene simulator: image sources, RIRs, late tails, diffuse noise (no torch).

The model, in one paragraph (docs/sound-bank.md, "Scene simulator"):

* **Early part** — pyroomacoustics' image-source model (shoebox, frequency-independent absorption) gives the
  image positions and their reflection products up to ``ism_order``. We build the impulse responses
  ourselves from that list, so that one list serves both formats: each image is a fractional delay (a
  Hann-windowed sinc, 81 taps, as pyroomacoustics uses) with amplitude ``damping / (4 π d)``; for the
  tetrahedral MIC format ``d`` is the distance to each capsule, for FOA it is the distance to the array
  centre and the image is encoded with ACN/SN3D gains of its direction.
* **Late part** — past ``t_mix`` (when the image list is still complete) the response is a *diffuse* tail:
  Gaussian noise with the inter-channel coherence of a diffuse field (``sin(kd)/(kd)`` between omni
  capsules; uncorrelated W/Y/Z/X with 1/3 of W's power in Y, Z, X for SN3D) — ray-traced tails do not have
  it (docs/sound-bank.md, "How it is rendered") — under the statistical-acoustics envelope of the image model,
  ``σ²(t) = c / (4 π V fs) · (1 − α)^(c S t / 4V)`` (image density × image energy, Eyring decay), its
  level matched to the image energy around ``t_mix``.
* **Direct path** — the order-0 image alone, with the very same fractional-delay filter, so
  ``reverb = image − direct`` is exactly the reflections.
* **Absorption** — chosen so that the *Eyring* reverberation time equals the requested RT60; the image
  model decays by ``(1 − α)`` per reflection, which is Eyring's law, so ISM and tail agree.
* **Diffuse background noise** — the same diffuse-coherence construction with a coloured spectrum.

Impulse responses are returned with ``PRE`` samples of pre-roll (index 0 ↔ time −PRE/fs) so that the
non-causal half of the fractional-delay filter is kept; :func:`convolve_aligned` removes it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import oaconvolve

from deepasa.audio.geometry import SPEED_OF_SOUND, foa_gains, tetra_mic_offsets

PRE = 40          # pre-roll samples of every impulse response (half the fractional-delay filter)
FD_HALF = 40      # fractional delay filter: 2 * FD_HALF + 1 taps


@dataclass(frozen=True)
class Receiver:
    """Where and how the array picks up sound.

    Attributes:
        fmt: "mic" (omni capsules at ``centre + offsets``) or "foa" (ACN/SN3D at ``centre``).
        centre: (3,) array centre in room coordinates.
    """

    fmt: str
    centre: np.ndarray

    @property
    def n_channels(self) -> int:
        """Number of output channels (4 for both formats)."""
        return 4

    def positions(self) -> np.ndarray:
        """(C, 3) positions whose distance to an image sets its delay."""
        if self.fmt == "mic":
            return self.centre[None, :] + tetra_mic_offsets()  # (4, 3)
        return np.repeat(self.centre[None, :], 4, axis=0)  # (4, 3)

    def gains(self, directions: np.ndarray) -> np.ndarray:
        """Directional gains.

        Args:
            directions: (I, 3) unit vectors from the array centre towards each image.
        Returns:
            (C, I) gains (ones for omni capsules).
        """
        if self.fmt == "mic":
            return np.ones((4, directions.shape[0]))
        return foa_gains(directions).T  # (4, I)


def eyring_absorption(room_dim, rt60: float) -> float:
    """Energy absorption coefficient α whose Eyring RT60 equals ``rt60`` in a shoebox ``room_dim``.

    Eyring: ``RT60 = 24 ln(10) V / (−c S ln(1 − α))``.
    """
    lx, ly, lz = room_dim
    volume = lx * ly * lz
    surface = 2 * (lx * ly + lx * lz + ly * lz)
    return float(1.0 - np.exp(-24.0 * np.log(10.0) * volume / (SPEED_OF_SOUND * surface * rt60)))


def image_sources(room_dim, alpha: float, points: np.ndarray, max_order: int, fs: int):
    """Image sources of every trajectory point, from pyroomacoustics' shoebox image-source model.

    Args:
        room_dim: (3,) room size in metres.
        alpha: energy absorption of every wall.
        points: (P, 3) source positions.
        max_order: maximum reflection order.
    Returns:
        list of P tuples ``(images (3, I_p), damping (I_p,), orders (I_p,))``.
    """
    import pyroomacoustics as pra

    room = pra.ShoeBox(list(room_dim), fs=fs, materials=pra.Material(float(alpha)), max_order=int(max_order),
                       air_absorption=False)
    room.add_microphone_array(np.asarray(room_dim, dtype=np.float64)[:, None] / 2)  # needed by pra; unused
    for p in points:
        room.add_source(np.asarray(p, dtype=np.float64))
    room.image_source_model()
    out = []
    for s in room.sources:
        # pra's image order may vary between runs/processes: sort, so that sums are bit-reproducible
        order = np.lexsort((s.images[2], s.images[1], s.images[0], s.orders))
        out.append((s.images[:, order], s.damping[0][order], s.orders[order]))
    return out


def _fractional_delay_taps(t: np.ndarray):
    """Hann-windowed sinc taps for delays ``t`` (samples, shape (K,)): returns (start (K,), taps (K, 81))."""
    n0 = np.floor(t).astype(np.int64)
    offs = np.arange(-FD_HALF, FD_HALF + 1)
    x = (n0[:, None] + offs[None, :]) - t[:, None]  # (K, 81) distance of each tap to the true delay
    taps = np.sinc(x) * 0.5 * (1.0 + np.cos(np.pi * x / (FD_HALF + 1)))
    return n0 - FD_HALF, taps


def image_rirs(image_lists, receiver: Receiver, fs: int, n_samples: int, max_order: int | None = None) -> np.ndarray:
    """Impulse responses from image lists, for every trajectory point at once.

    Args:
        image_lists: list of P ``(images (3, I), damping (I,), orders (I,))`` (see :func:`image_sources`).
        receiver: the array.
        n_samples: length of each response, pre-roll included; images arriving later are dropped.
        max_order: keep only images up to this order (0 gives the direct path).
    Returns:
        (P, C, n_samples) float64, index 0 ↔ time −PRE/fs.
    """
    pos = receiver.positions()  # (C, 3)
    n_ch = pos.shape[0]
    idx_all, w_all = [], []
    for p, (images, damping, orders) in enumerate(image_lists):
        keep = np.ones(images.shape[1], dtype=bool) if max_order is None else orders <= max_order
        img = images[:, keep].T  # (I, 3)
        damp = damping[keep]  # (I,)
        rel = img[None, :, :] - pos[:, None, :]  # (C, I, 3)
        dist = np.linalg.norm(rel, axis=-1)  # (C, I)
        to_img = img - receiver.centre[None, :]  # (I, 3)
        dirs = to_img / np.maximum(np.linalg.norm(to_img, axis=-1, keepdims=True), 1e-9)  # (I, 3)
        amp = receiver.gains(dirs) * damp[None, :] / (4.0 * np.pi * dist)  # (C, I)
        delay = dist * fs / SPEED_OF_SOUND + PRE  # (C, I) in samples, pre-roll included
        ok = delay < n_samples - FD_HALF - 1  # (C, I)
        ch = np.broadcast_to(np.arange(n_ch)[:, None], ok.shape)[ok]  # (K,)
        start, taps = _fractional_delay_taps(delay[ok])  # (K,), (K, 81)
        idx = (p * n_ch + ch)[:, None] * n_samples + start[:, None] + np.arange(2 * FD_HALF + 1)[None, :]  # (K, 81)
        idx_all.append(idx.ravel())
        w_all.append((taps * amp[ok][:, None]).ravel())
    n_pts = len(image_lists)
    flat = np.bincount(np.concatenate(idx_all), weights=np.concatenate(w_all), minlength=n_pts * n_ch * n_samples)
    return flat.reshape(n_pts, n_ch, n_samples)  # (P, C, n_samples)


def tail_variance(t: np.ndarray, room_dim, alpha: float, fs: int) -> np.ndarray:
    """Expected per-sample energy of the image-model response at times ``t`` (s): ``σ²(t)`` (same shape).

    Image count in [t, t+dt] is ``4π (ct)² c dt / V``; each carries energy ``(1−α)^n / (4π c t)²``; with
    ``n = c S t / 4V`` reflections on average this gives ``c dt (1−α)^n / (4π V)``.
    """
    lx, ly, lz = room_dim
    volume = lx * ly * lz
    surface = 2 * (lx * ly + lx * lz + ly * lz)
    n_refl = SPEED_OF_SOUND * surface * t / (4.0 * volume)
    return SPEED_OF_SOUND / (4.0 * np.pi * volume * fs) * (1.0 - alpha) ** n_refl


@lru_cache(maxsize=8)
def _diffuse_mixing(fmt: str, n: int, fs: int) -> np.ndarray:
    """Per-frequency mixing matrices ``A(f)`` with ``A Aᴴ = Γ(f)``, the coherence of a diffuse field.

    MIC (omni capsules ``d_ij`` apart in a spherically isotropic field): ``Γ_ij = sin(k d_ij) / (k d_ij)``.
    FOA (ACN/SN3D): W, Y, Z, X are uncorrelated and Y, Z, X carry 1/3 of W's power.

    Returns:
        (K, C, C) real, K = n // 2 + 1.
    """
    freqs = np.fft.rfftfreq(n, 1.0 / fs)  # (K,)
    if fmt == "foa":
        return np.broadcast_to(np.diag([1.0, 3**-0.5, 3**-0.5, 3**-0.5]), (len(freqs), 4, 4))
    pos = tetra_mic_offsets()  # (4, 3)
    dist = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)  # (4, 4)
    gamma = np.sinc(2.0 * freqs[:, None, None] * dist[None] / SPEED_OF_SOUND)  # (K, 4, 4); np.sinc(x) = sin(πx)/(πx)
    lam, vec = np.linalg.eigh(gamma)  # (K, 4), (K, 4, 4)
    return vec * np.sqrt(np.clip(lam, 0.0, None))[:, None, :]  # (K, 4, 4)


def diffuse_field(n: int, receiver: Receiver, fs: int, rng: np.random.Generator, slope: float = 0.0) -> np.ndarray:
    """Stationary Gaussian noise with the inter-channel coherence of a diffuse (spherically isotropic) field.

    Drawn in the frequency domain (Habets' method with the analytic coherence), with a 1/f^slope power
    spectrum (0 white, 1 pink, 2 brown).

    Returns:
        (C, n) float64; the reference channel (mic 0 / W) has unit variance.
    """
    mix = _diffuse_mixing(receiver.fmt, n, fs)  # (K, C, C)
    k = mix.shape[0]
    z = (rng.standard_normal((k, 4)) + 1j * rng.standard_normal((k, 4))) / np.sqrt(2.0)  # (K, C)
    f = np.fft.rfftfreq(n, 1.0 / fs)
    colour = np.zeros_like(f)  # (K,): no DC, |X(f)|² ∝ (f / 1 kHz)^-slope
    colour[1:] = (f[1:] / 1000.0) ** (-slope / 2.0)
    spec = np.einsum("kcd,kd->ck", mix, z) * colour[None, :]  # (C, K)
    x = np.fft.irfft(spec, n=n, axis=-1)  # (C, n)
    return x / max(x[0].std(), 1e-12)


def late_tail(room_dim, alpha: float, rt60: float, receiver: Receiver, fs: int, t_mix: float, t_fade: float,
              rng: np.random.Generator, calibration=None) -> np.ndarray:
    """Diffuse late reverberation, faded in over [t_mix, t_mix + t_fade].

    Args:
        calibration: optional ``(images (3, I), damping (I,), orders (I,))`` of the source; the tail level is
            then matched to the energy those images carry in [t_mix − 20 ms, t_mix + t_fade] (a shoebox
            image model is not perfectly diffuse, so the statistical level alone can be off by a few dB).
    Returns:
        (C, L) float64 with the same pre-roll convention as :func:`image_rirs` (index 0 ↔ −PRE/fs);
        L covers the decay to −70 dB.
    """
    n = PRE + int(np.ceil((t_mix + 1.17 * rt60 + t_fade) * fs))  # −70 dB at 1.17·RT60
    t = (np.arange(n) - PRE) / fs  # (L,)
    var = tail_variance(np.maximum(t, 0.0), room_dim, alpha, fs)  # (L,)
    if calibration is not None:
        images, damping, _ = calibration
        dist = np.linalg.norm(images.T - receiver.centre[None, :], axis=1)  # (I,)
        t_a, t_b = max(t_mix - 0.02, 0.0), t_mix + t_fade
        arrive = dist / SPEED_OF_SOUND
        in_win = (arrive >= t_a) & (arrive < t_b)
        e_img = np.sum((damping[in_win] / (4.0 * np.pi * dist[in_win])) ** 2)
        win = (t >= t_a) & (t < t_b)
        e_model = var[win].sum()
        if e_img > 0 and e_model > 0:
            var = var * float(np.clip(e_img / e_model, 0.25, 4.0))
    field = diffuse_field(n, receiver, fs, rng) * np.sqrt(var)[None, :]  # (C, L)
    return field * tail_fade_in(t, t_mix, t_fade)[None, :]


def tail_fade_in(t: np.ndarray, t_mix: float, t_fade: float) -> np.ndarray:
    """Power-complementary crossfade weight of the tail (sin), 0 before t_mix and 1 after t_mix + t_fade."""
    x = np.clip((t - t_mix) / t_fade, 0.0, 1.0)
    return np.sin(0.5 * np.pi * x)


def early_fade_out(n_samples: int, fs: int, t_mix: float, t_fade: float) -> np.ndarray:
    """The complementary weight of the early (image) part (cos): (n_samples,), pre-roll convention."""
    t = (np.arange(n_samples) - PRE) / fs
    x = np.clip((t - t_mix) / t_fade, 0.0, 1.0)
    return np.cos(0.5 * np.pi * x)


def convolve_aligned(x: np.ndarray, rir: np.ndarray, n_out: int) -> np.ndarray:
    """Convolve a signal with multichannel responses that carry ``PRE`` samples of pre-roll.

    Args:
        x: (N,) signal.
        rir: (C, L) responses.
        n_out: output length.
    Returns:
        (C, n_out), aligned so that a response impulse at index PRE leaves ``x`` undelayed.
    """
    y = oaconvolve(x[None, :], rir, axes=-1)  # (C, N + L - 1)
    y = y[:, PRE:PRE + n_out]
    if y.shape[1] < n_out:
        y = np.pad(y, ((0, 0), (0, n_out - y.shape[1])))
    return y
