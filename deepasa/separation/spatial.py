"""Separate by when and where: each object's multichannel image from its trajectory, with no training.

Given a mixture and, for every object, *when* it is active (per label frame) and *where* it is (a direction per
label frame) — from the network, a tracker, the oracle or a user's edit — this stage returns each object's
M-channel image, a direct-path / reverberant split of it, and the remainder (everything no object explains).

The stage, in three steps (docs/separation.md):

1. **Direction masks.** Per STFT bin (f, t) and object k, the direction score is the mean over the M(M−1)/2
   capsule pairs of ``cos(∠(X_m X_n*) − ω τ_mn(u_k))``, where ``τ_mn(u) = (p_m − p_n)·u / c`` is the pair's
   plane-wave delay difference for the object's direction ``u_k(t)``: 1 when the bin's phase differences are the
   ones a plane wave from ``u_k`` makes. The masks are a soft-max with inverse temperature ``beta`` over the
   objects *active in that frame* plus one constant diffuse score (the remainder's class), so they sum to one
   in every bin. With ``use_direction=False`` each frame is shared equally among its active objects (what
   activity alone is worth); an object marked active everywhere gives what direction alone is worth.
2. **Multichannel Wiener filter** (MWF). Covariances over a sliding window (``cov_window_s``, centred) so moving
   sources are followed: ``Φ_k = Σ |m_k|² x xᴴ`` per object and ``Φ_r`` for the remainder's mask. Each
   object's image is ``y_k = Φ_k (Σ_j Φ_j + Φ_r + δ)⁻¹ x``: the filters sum to the identity (up to the loading
   ``δ``, which the remainder takes), so the objects and the remainder add up to the mixture exactly.
   With ``noise_prior`` (default) a stationary noise covariance — measured in the frames far from every
   object's activity and reverberant tail — moves, in proportion to each object's mask weight in the window,
   from ``Φ_k`` to ``Φ_r`` (the sum unchanged): a lone object is denoised instead of passed whole.
   The output is gated by the object's activity (a frame the object is not active in keeps nothing of it).
3. **Direct path.** An MVDR beamformer toward the object's direction under a diffuse-field noise model
   (coherence ``sin(kd)/(kd)`` between capsules, diagonal loading), applied to the object's image and
   re-spatialised with the plane-wave steering vector: ``direct_k = d (wᴴ y_k)``; ``reverb_k = y_k − direct_k``.
   On a 4.2-cm array this beamformer is nearly omnidirectional below ~1 kHz, so the direct part there is
   close to the image: a stated, physical estimate, not a learned one.

Geometry comes from the array definition (:func:`deepasa.audio.geometry.tetra_mic_offsets` for the MIC
format). **First-order Ambisonics** (``fmt="foa"``, ACN/SN3D: W, Y, Z, X; :data:`FOA` in place of the capsule
offsets) has no time delays to read: its direction score is the cosine between the bin's active intensity
vector ``Re(W* [X, Y, Z])`` and the object's direction, its steering vector the frequency-independent
first-order gains ``(1, y, z, x)`` (:func:`deepasa.audio.geometry.foa_gains`), and its diffuse field the
covariance ``diag(1, 1/3, 1/3, 1/3)``; the masks and the MWF are the same. The measurements behind the choices (``beta``, the diffuse score, the window) are in
``experiments/2026-12-07-spatial-stage/README.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from deepasa.audio.geometry import SPEED_OF_SOUND, foa_gains, tetra_mic_offsets
from deepasa.errors import DeepASAError

FORMATS = ("mic", "foa")


class FOAFormat:
    """First-order Ambisonics (ACN/SN3D: W, Y, Z, X) where the stage takes capsule offsets (:data:`FOA`)."""

    n_channels = 4

    def __repr__(self) -> str:
        return "FOA"


#: Pass as ``mic_offsets`` (or ``separate(..., fmt="foa")``) for FOA recordings.
FOA = FOAFormat()


def foa_direction_scores(spec: torch.Tensor, doa: torch.Tensor) -> torch.Tensor:
    """Cosine between each bin's active intensity direction and each object's direction (FOA).

    A plane wave from ``u`` gives ACN/SN3D channels ``s (1, u_y, u_z, u_x)``, so the active intensity
    ``Re(W* (X, Y, Z))`` of its bins is ``|s|² u``: it points at the source.

    Args:
        spec: (4, F, T) complex STFT in ACN order (W, Y, Z, X).
        doa: (K, T, 3) each object's unit direction at each STFT frame.
    Returns:
        (K, F, T) float32 scores in [−1, 1] (0 in silent bins).
    """
    w = spec[0].conj()  # (F, T)
    inten = torch.stack([(w * spec[3]).real, (w * spec[1]).real, (w * spec[2]).real]).double()  # (3, F, T): x, y, z
    unit = inten / inten.norm(dim=0, keepdim=True).clamp_min(1e-30)  # (3, F, T)
    return torch.einsum("ktc,cft->kft", doa.double(), unit).float()  # (K, F, T)


def steering_vectors(doa: torch.Tensor, geometry, freqs: torch.Tensor) -> torch.Tensor:
    """Plane-wave steering vectors: doa (K, T, 3), freqs (F,) → (K, T, F, M) complex128.

    MIC: ``e^{+jω p_m·u / c}`` per capsule (:func:`plane_wave_phase`); FOA: the gains ``(1, u_y, u_z, u_x)`` at
    every frequency.
    """
    if isinstance(geometry, FOAFormat):
        g = torch.as_tensor(foa_gains(doa.double().numpy()))  # (K, T, 4)
        return g[:, :, None, :].expand(-1, -1, len(freqs), -1).to(torch.complex128)  # (K, T, F, 4)
    phase = plane_wave_phase(doa.double(), geometry.double(), freqs)  # (K, T, M, F)
    return torch.polar(torch.ones(1, dtype=torch.float64), phase).permute(0, 1, 3, 2)  # (K, T, F, M)


def diffuse_coherence(geometry, freqs: torch.Tensor) -> torch.Tensor:
    """The spatial covariance of an isotropic diffuse field, per frequency: (F,) → (F, M, M) float64.

    MIC: ``sin(kd)/(kd)`` between capsules ``d`` apart; FOA (SN3D): ``diag(1, 1/3, 1/3, 1/3)``.
    """
    if isinstance(geometry, FOAFormat):
        return torch.diag(torch.tensor([1.0, 1 / 3, 1 / 3, 1 / 3], dtype=torch.float64)).expand(len(freqs), 4, 4)
    offs = geometry.double()
    dist = torch.cdist(offs, offs)  # (M, M) metres
    kd = 2 * math.pi * freqs[:, None, None] * dist[None] / SPEED_OF_SOUND  # (F, M, M)
    return torch.sinc(kd / math.pi)  # (F, M, M), sin(kd)/kd


@dataclass
class SpatialSeparation:
    """The spatial stage's output for one clip (float32 numpy arrays).

    Attributes:
        image: (K, M, N) each object's multichannel image.
        direct: (K, M, N) its direct-path estimate.
        reverb: (K, M, N) ``image − direct``.
        remainder: (M, N) ``mixture − Σ_k image_k``: noise and whatever no object explains.
        mask: (K + 1, F, T) the direction masks (last row: the remainder's), each bin summing to one.
    """

    image: np.ndarray
    direct: np.ndarray
    reverb: np.ndarray
    remainder: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class SpatialConfig:
    """Parameters of the spatial stage (defaults: the measured choice, experiments/2026-12-07-spatial-stage and
    experiments/2026-12-08-stage-window).

    Attributes:
        n_fft, hop: STFT (Hann window); 512 / 128 at 16 kHz = 32-ms frames, 8-ms hop.
        beta: inverse temperature of the mask soft-max over direction scores in [−1, 1].
        diffuse_score: the remainder's constant score in the soft-max (None: no remainder class; every bin
            is shared among the active objects, and frames without any go to the remainder).
        use_direction: False = every active object scores the same (activity alone).
        mwf: apply the multichannel Wiener filter after the masks (False: the masked mixture).
        cov_window_s: length of the MWF's sliding covariance window.
        loading: diagonal loading of the MWF's inverse, relative to the mean channel power of the bin.
        gate: zero an object's MWF output in the STFT frames where it is inactive.
        gate_dilate: label frames the gate is widened by on each side (onsets and tails at frame edges).
        mask_power: exponent p of the masks weighting the covariances (``Σ m_kᵖ x xᴴ``).
        lstsq_loading: λ of the plane-wave decomposition (``covariance="plane_wave"``), relative to M.
        covariance: "masked" (mask-weighted mixture covariances: measured best in reverberant rooms) or
            "plane_wave" (each object's direct path from a least-squares plane-wave decomposition, the
            residual shared by the masks: exact for plane waves, > 20 dB on two anechoic sources).
        mvdr_loading: diagonal loading of the diffuse coherence matrix in the direct-path beamformer.
        noise_prior: subtract a stationary noise covariance, measured in the frames far from every object's
            activity, from each object's covariance (its share goes to the remainder): the masked MWF alone
            passes a lone object's noise. Used by the masked covariance only (not by ``plane_wave``).
        noise_tail_s: seconds after an object's last active frame that still count as its reverberant tail
            (not noise) for ``noise_prior``.
    """

    n_fft: int = 512
    hop: int = 128
    beta: float = 80.0
    diffuse_score: float | None = None
    use_direction: bool = True
    mwf: bool = True
    cov_window_s: float = 1.0
    loading: float = 1e-3
    gate: bool = True
    gate_dilate: int = 1
    mask_power: float = 2.0
    lstsq_loading: float = 0.05
    covariance: str = "masked"
    mvdr_loading: float = 1e-2
    noise_prior: bool = True
    noise_tail_s: float = 0.6


def plane_wave_phase(doa: torch.Tensor, mic_offsets: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Phase of a plane wave from ``doa`` at each capsule, relative to the array centre.

    A capsule at ``p`` hears a plane wave from unit direction ``u`` earlier by ``p·u / c``; with the STFT's
    ``e^{−jωt}`` kernel its spectrum is the centre's times ``e^{+jω p·u / c}``.

    Args:
        doa: (..., 3) unit vectors towards the source.
        mic_offsets: (M, 3) capsule positions relative to the centre, metres.
        freqs: (F,) Hz.
    Returns:
        (..., M, F) phase in radians (float64 when the inputs are).
    """
    lead = doa @ mic_offsets.T / SPEED_OF_SOUND  # (..., M) seconds of lead over the centre
    return 2 * math.pi * lead[..., :, None] * freqs  # (..., M, F)


def direction_scores(spec: torch.Tensor, doa: torch.Tensor, mic_offsets: torch.Tensor,
                     sample_rate: int) -> torch.Tensor:
    """Mean over capsule pairs of cos(observed phase difference − plane-wave phase difference).

    Args:
        spec: (M, F, T) complex STFT of the mixture.
        doa: (K, T, 3) each object's unit direction at each STFT frame.
        mic_offsets: (M, 3) metres, or :data:`FOA` (then :func:`foa_direction_scores`).
        sample_rate: Hz.
    Returns:
        (K, F, T) float32 scores in [−1, 1] (0 in silent bins, where the phase is undefined).
    """
    if isinstance(mic_offsets, FOAFormat):
        return foa_direction_scores(spec, doa)
    m, f, _ = spec.shape
    freqs = torch.arange(f, dtype=torch.float64) * sample_rate / (2 * (f - 1))  # (F,)
    ia, ib = torch.triu_indices(m, m, offset=1)  # the P = M(M−1)/2 pairs
    cross = spec[ia] * spec[ib].conj()  # (P, F, T)
    unit = (cross / cross.abs().clamp_min(1e-20)).to(torch.complex64)  # (P, F, T), |·| = 1
    phase = plane_wave_phase(doa.double(), mic_offsets.double(), freqs)  # (K, T, M, F)
    expected = (phase[:, :, ia] - phase[:, :, ib]).permute(0, 2, 3, 1)  # (K, P, F, T)
    steer = torch.polar(torch.ones_like(expected), -expected).to(torch.complex64)  # (K, P, F, T)
    return (unit[None] * steer).real.mean(dim=1)  # (K, F, T)


def direction_masks(spec: torch.Tensor, active: torch.Tensor, doa: torch.Tensor, mic_offsets: torch.Tensor,
                    sample_rate: int, config: SpatialConfig, score: torch.Tensor | None = None) -> torch.Tensor:
    """Soft-max masks over the active objects and the remainder, per STFT bin.

    Args:
        spec: (M, F, T) complex mixture STFT.
        active: (K, T) bool, each object's activity at each STFT frame.
        doa: (K, T, 3) unit directions at each STFT frame.
        mic_offsets: (M, 3) metres.
        sample_rate: Hz.
        config: the stage's parameters.
        score: (K, F, T) the direction scores when already computed.
    Returns:
        (K + 1, F, T) float32 masks summing to one over the first axis (last row: the remainder).
    """
    k = active.shape[0]
    _, f, t = spec.shape
    if config.use_direction and k:
        raw = direction_scores(spec, doa, mic_offsets, sample_rate) if score is None else score  # (K, F, T)
        score = config.beta * raw  # (K, F, T)
    else:
        score = torch.zeros(k, f, t)  # (K, F, T): every active object alike
    score = score.masked_fill(~active[:, None, :], float("-inf"))  # (K, F, T)
    if config.diffuse_score is None:
        # no remainder class: frames with no active object go wholly to the remainder
        rest = torch.where(active.any(dim=0), float("-inf"), 0.0).expand(1, f, t)  # (1, F, T)
    else:
        rest = torch.full((1, f, t), config.beta * config.diffuse_score)  # (1, F, T)
    return torch.softmax(torch.cat([score, rest], dim=0), dim=0)  # (K + 1, F, T)


def _window_sum(x: torch.Tensor, width: int) -> torch.Tensor:
    """Centred moving sum over the last-but-two axis (time) of (..., T, M, M) with ``width`` frames."""
    t = x.shape[-3]
    csum = torch.cat([torch.zeros_like(x[..., :1, :, :]), x.cumsum(dim=-3)], dim=-3)  # (..., T + 1, M, M)
    lo = (torch.arange(t) - width // 2).clamp(0, t)
    hi = (torch.arange(t) + width - width // 2).clamp(0, t)
    return csum[..., hi, :, :] - csum[..., lo, :, :]  # (..., T, M, M)


def wiener_images(spec: torch.Tensor, mask: torch.Tensor, width: int, loading: float,
                  mask_power: float = 2.0, freq_block: int = 32, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Multichannel Wiener filter per object from mask-weighted sliding covariances.

    Args:
        spec: (M, F, T) complex mixture STFT.
        mask: (K + 1, F, T) masks summing to one (last: the remainder's).
        width: covariance window, STFT frames.
        loading: diagonal loading relative to the bin's mean channel power.
        freq_block: bins processed at once (bounds memory on long inputs).
        noise: (F, M, M) a stationary noise covariance per frame, or None. Each object's covariance loses
            ``c · n_k · N`` (n_k = its mask weight in the window, c ≤ 1 so that no diagonal entry falls below
            a tenth of its value) and the remainder's gains it: the sum, and so the filters' sum, is unchanged.
    Returns:
        (K, M, F, T) complex64 images ``Φ_k (Σ_j Φ_j + δ I)⁻¹ x`` (the sum over j includes the remainder).
    """
    m, f, t = spec.shape
    k = mask.shape[0] - 1
    out = torch.zeros(k, m, f, t, dtype=torch.complex64)
    eye = torch.eye(m, dtype=torch.complex64)
    for f0 in range(0, f, freq_block):
        x = spec[:, f0:f0 + freq_block].permute(1, 2, 0).to(torch.complex64)  # (Fb, T, M)
        outer = x[..., :, None] * x[..., None, :].conj()  # (Fb, T, M, M)
        w = mask[:, f0:f0 + freq_block].float() ** mask_power  # (K + 1, Fb, T)
        phi = _window_sum(w[..., None, None] * outer[None], width)  # (K + 1, Fb, T, M, M)
        total = phi.sum(dim=0)  # (Fb, T, M, M)
        if noise is not None:
            n_k = _window_sum(w[:k, ..., None, None], width)[..., 0, 0]  # (K, Fb, T) mask weight in the window
            sub = n_k[..., None, None] * noise[None, f0:f0 + freq_block, None]  # (K, Fb, T, M, M)
            ratio = phi[:k].diagonal(dim1=-2, dim2=-1).real / sub.diagonal(dim1=-2, dim2=-1).real.clamp_min(1e-20)
            moved = (0.9 * ratio.amin(dim=-1)).clamp(max=1.0)[..., None, None] * sub  # (K, Fb, T, M, M)
            phi[:k] -= moved  # phi is this block's own tensor: in place, no second (K + 1)-sized copy
            phi[k] += moved.sum(dim=0)  # the remainder takes it: Σ unchanged
        power = total.diagonal(dim1=-2, dim2=-1).real.mean(dim=-1)  # (Fb, T)
        total = total + (loading * power + 1e-12)[..., None, None] * eye  # (Fb, T, M, M)
        z = torch.linalg.solve(total, x[..., None])  # (Fb, T, M, 1) = (Σ Φ + δ)⁻¹ x
        y = (phi[:k] @ z[None]).squeeze(-1)  # (K, Fb, T, M)
        out[:, :, f0:f0 + freq_block] = y.permute(0, 3, 1, 2)  # (K, M, Fb, T)
    return out


def plane_wave_wiener_images(spec: torch.Tensor, mask: torch.Tensor, active: torch.Tensor, doa: torch.Tensor,
                             mic_offsets: torch.Tensor, sample_rate: int, width: int, loading: float,
                             lstsq_loading: float, mask_power: float = 2.0, freq_block: int = 32) -> torch.Tensor:
    """Multichannel Wiener filter whose object covariances come from a plane-wave decomposition.

    Per bin, the least-squares decomposition ``s = (Dᴴ D + λ M I)⁻¹ Dᴴ x`` over the active objects' plane-wave
    steering vectors gives each object's direct-path part ``d_k s_k``; the residual ``r = x − D s`` (reverb,
    diffuse noise) is shared by the masks. Object k's covariance is the window sum of
    ``(d_k s_k)(d_k s_k)ᴴ + m_kᵖ r rᴴ``, the remainder's of ``m_restᵖ r rᴴ``. A mask-weighted mixture
    covariance carries every other source active in the same bins; the decomposition does not, so two
    plane waves are told apart even where their masks are near one half (low frequencies, equal levels).

    Args:
        spec: (M, F, T) complex mixture STFT.
        mask: (K + 1, F, T) masks (last: the remainder's), used for the residual.
        active: (K, T) bool; doa: (K, T, 3) unit vectors per STFT frame; mic_offsets: (M, 3) metres or
        :data:`FOA`.
        sample_rate: Hz.
        width: covariance window, STFT frames.
        loading: diagonal loading of the filter's inverse, relative to the bin's mean channel power.
        lstsq_loading: λ of the decomposition, relative to M.
        mask_power: exponent p of the masks weighting the residual.
        freq_block: bins processed at once.
    Returns:
        (K, M, F, T) complex64 images ``Φ_k (Σ_j Φ_j + δ I)⁻¹ x``.
    """
    m, f, t = spec.shape
    k = mask.shape[0] - 1
    freqs = torch.arange(f, dtype=torch.float64) * sample_rate / (2 * (f - 1))  # (F,)
    steer = steering_vectors(doa, mic_offsets, freqs) * active[:, :, None, None]  # (K, T, F, M)
    steer = steer.to(torch.complex64).permute(2, 1, 3, 0)  # (F, T, M, K), inactive objects' columns zero
    out = torch.zeros(k, m, f, t, dtype=torch.complex64)
    eye_k = torch.eye(k, dtype=torch.complex64)
    eye_m = torch.eye(m, dtype=torch.complex64)
    for f0 in range(0, f, freq_block):
        x = spec[:, f0:f0 + freq_block].permute(1, 2, 0).to(torch.complex64)[..., None]  # (Fb, T, M, 1)
        d = steer[f0:f0 + freq_block]  # (Fb, T, M, K)
        dh = d.conj().transpose(-1, -2)  # (Fb, T, K, M)
        s = torch.linalg.solve(dh @ d + lstsq_loading * m * eye_k, dh @ x)  # (Fb, T, K, 1)
        comp = d * s.transpose(-1, -2)  # (Fb, T, M, K): column k = d_k s_k
        r = (x - comp.sum(dim=-1, keepdim=True)).squeeze(-1)  # (Fb, T, M) residual
        comp = comp.permute(3, 0, 1, 2)  # (K, Fb, T, M)
        w = mask[:, f0:f0 + freq_block].float() ** mask_power  # (K + 1, Fb, T)
        rr = r[..., :, None] * r[..., None, :].conj()  # (Fb, T, M, M)
        own = comp[..., :, None] * comp[..., None, :].conj()  # (K, Fb, T, M, M)
        phi = w[..., None, None] * rr[None]  # (K + 1, Fb, T, M, M)
        phi[:k] = phi[:k] + own
        phi = _window_sum(phi, width)  # (K + 1, Fb, T, M, M)
        total = phi.sum(dim=0)  # (Fb, T, M, M)
        power = total.diagonal(dim1=-2, dim2=-1).real.mean(dim=-1)  # (Fb, T)
        total = total + (loading * power + 1e-12)[..., None, None] * eye_m  # (Fb, T, M, M)
        z = torch.linalg.solve(total, x)  # (Fb, T, M, 1)
        out[:, :, f0:f0 + freq_block] = (phi[:k] @ z[None]).squeeze(-1).permute(0, 3, 1, 2)  # (K, M, Fb, T)
    return out


def diffuse_mvdr_direct(image: torch.Tensor, doa: torch.Tensor, mic_offsets: torch.Tensor, sample_rate: int,
                        loading: float) -> torch.Tensor:
    """Direct-path estimate: MVDR toward the object under a diffuse field, re-spatialised as a plane wave.

    Args:
        image: (K, M, F, T) complex object images.
        doa: (K, T, 3) unit directions per STFT frame.
        mic_offsets: (M, 3) metres, or :data:`FOA`.
        sample_rate: Hz.
        loading: diagonal loading of the diffuse coherence matrix.
    Returns:
        (K, M, F, T) complex64 direct-path images ``d (wᴴ y)`` with ``w = Γ⁻¹d / (dᴴΓ⁻¹d)``.

    One object at a time: the complex128 steering and beamformer tensors of all K objects at once took ~0.2 GB
    per object and 30 s of input (3 GB of the stage's 7-GB peak with 15 objects).
    """
    k, m, f, _ = image.shape
    freqs = torch.arange(f, dtype=torch.float64) * sample_rate / (2 * (f - 1))  # (F,)
    gamma = diffuse_coherence(mic_offsets, freqs) + loading * torch.eye(m, dtype=torch.float64)  # (F, M, M)
    gamma_inv = torch.linalg.inv(gamma).to(torch.complex128)  # (F, M, M)
    out = torch.empty(image.shape, dtype=torch.complex64)  # (K, M, F, T)
    for j in range(k):
        d = steering_vectors(doa[j:j + 1], mic_offsets, freqs)  # (1, T, F, M) steering vectors
        gd = (gamma_inv[None, None] @ d[..., None]).squeeze(-1)  # (1, T, F, M)
        w = gd / (d.conj() * gd).sum(dim=-1, keepdim=True).real  # (1, T, F, M), distortionless toward d
        y = image[j:j + 1].permute(0, 3, 2, 1).to(torch.complex128)  # (1, T, F, M)
        s = (w.conj() * y).sum(dim=-1, keepdim=True)  # (1, T, F, 1) the source at the array centre
        out[j:j + 1] = (d * s).permute(0, 3, 2, 1).to(torch.complex64)  # (1, M, F, T)
    return out


def stationary_noise(spec: torch.Tensor, act: np.ndarray, cfg: SpatialConfig, label_hop: float,
                     label_samples: float, min_frames: int = 16) -> torch.Tensor | None:
    """Mean covariance of the STFT frames far from every object: no object active, nor within one label frame
    before an onset or ``cfg.noise_tail_s`` after an offset (the reverberant tail belongs to the object).

    Args:
        spec: (M, F, T) complex mixture STFT; act: (K, T') bool label-frame activity; cfg: the parameters;
        label_hop: seconds per label frame; label_samples: samples per label frame; min_frames: fewer far STFT
        frames than this give None.
    Returns:
        (F, M, M) complex64, or None.
    """
    busy = act.any(axis=0)  # (T',)
    near = busy.copy()
    for lag in range(1, int(np.ceil(cfg.noise_tail_s / label_hop - 1e-9)) + 1):  # the tail after every active frame
        near[lag:] |= busy[:-lag]
    near[:-1] |= busy[1:]  # the frame before an onset
    far = ~_frames_to_stft(near[None], spec.shape[-1], cfg.hop, label_samples)[0]  # (T,)
    if far.sum() < min_frames:
        return None
    x = spec[..., torch.as_tensor(far)].permute(1, 2, 0).to(torch.complex64)  # (F, Tf, M)
    return (x[..., :, None] * x[..., None, :].conj()).mean(dim=1)  # (F, M, M)


def _frames_to_stft(x: np.ndarray, n_stft: int, hop: int, label_samples: float) -> np.ndarray:
    """Label-frame values (K, T', ...) sampled at each STFT frame centre → (K, T, ...)."""
    idx = np.minimum((np.arange(n_stft) * hop / label_samples).astype(int), x.shape[1] - 1)  # (T,)
    return x[:, idx]


@dataclass
class StageSTFT:
    """The spatial stage in the STFT domain (what a learned extractor reads; :func:`spatial_stft`).

    Attributes:
        spec: (M, F, T) complex64 mixture STFT.
        mask: (K + 1, F, T) direction masks (last: the remainder's).
        image: (K, M, F, T) complex64 object images; direct: (K, M, F, T) their direct paths (None when
            :func:`spatial_stft` was asked for the images only).
        active: (K, T) bool activity at each STFT frame (the gate, widened as configured).
        doa: (K, T, 3) float64 unit directions at each STFT frame.
        score: (K, F, T) float32 direction scores in [−1, 1] (see :func:`direction_scores`).
    """

    spec: torch.Tensor
    mask: torch.Tensor
    image: torch.Tensor
    direct: torch.Tensor | None
    active: torch.Tensor
    doa: torch.Tensor
    score: torch.Tensor


def spatial_stft(x: torch.Tensor, act: np.ndarray, unit: np.ndarray, sample_rate: int, label_hop: float,
                 offsets: np.ndarray, cfg: SpatialConfig, *, with_direct: bool = True) -> StageSTFT:
    """The spatial stage up to the STFT-domain images (inputs already checked; see :func:`separate`).

    Args:
        x: (M, N) float32 mixture; act: (K, T') bool; unit: (K, T', 3) unit directions; sample_rate: Hz;
        label_hop: seconds per label frame; offsets: (M, 3) capsule positions or :data:`FOA`; cfg: the
        parameters; with_direct: also the direct paths (the MVDR beamformer, ~40 % of the stage's cost; False:
        ``direct`` is None, for callers that need the images only).
    Returns:
        :class:`StageSTFT`.
    """
    k = act.shape[0]
    spec = torch.stft(x, cfg.n_fft, cfg.hop, window=torch.hann_window(cfg.n_fft), return_complex=True)  # (M, F, T)
    n_stft = spec.shape[-1]
    label_samples = label_hop * sample_rate
    if k and act.shape[1]:
        active_t = torch.as_tensor(_frames_to_stft(act, n_stft, cfg.hop, label_samples))  # (K, T)
        doa_t = torch.as_tensor(_frames_to_stft(unit, n_stft, cfg.hop, label_samples))  # (K, T, 3)
    else:
        active_t = torch.zeros(k, n_stft, dtype=torch.bool)  # (K, T)
        doa_t = torch.zeros(k, n_stft, 3, dtype=torch.float64) + torch.tensor([1.0, 0.0, 0.0])  # (K, T, 3)
    offs = offsets if isinstance(offsets, FOAFormat) else torch.as_tensor(offsets)
    score = direction_scores(spec, doa_t, offs, sample_rate) if k else torch.zeros(0, *spec.shape[1:])
    mask = direction_masks(spec, active_t, doa_t, offs, sample_rate, cfg, score=score)  # (K + 1, F, T)
    width = max(1, int(round(cfg.cov_window_s * sample_rate / cfg.hop)))
    if cfg.mwf and k and cfg.covariance == "plane_wave":
        images = plane_wave_wiener_images(spec, mask, active_t, doa_t, offs, sample_rate, width, cfg.loading,
                                          cfg.lstsq_loading, cfg.mask_power)  # (K, M, F, T)
    elif cfg.mwf and k:
        noise = stationary_noise(spec, act, cfg, label_hop, label_samples) if cfg.noise_prior else None  # (F, M, M) or None
        images = wiener_images(spec, mask, width, cfg.loading, cfg.mask_power, noise=noise)  # (K, M, F, T)
    else:
        images = mask[:k, None] * spec[None]  # (K, M, F, T)
    gate_t = active_t
    if cfg.gate and k:
        gate = act
        for _ in range(cfg.gate_dilate):  # widen by one label frame on each side
            gate = gate | np.pad(gate[:, 1:], ((0, 0), (0, 1))) | np.pad(gate[:, :-1], ((0, 0), (1, 0)))
        gate_t = torch.as_tensor(_frames_to_stft(gate, n_stft, cfg.hop, label_samples))  # (K, T)
        images = images * gate_t[:, None, None, :]  # (K, M, F, T): nothing where the object is inactive
    direct = None
    if with_direct:
        direct = diffuse_mvdr_direct(images, doa_t, offs, sample_rate, cfg.mvdr_loading) if k else images
    return StageSTFT(spec=spec, mask=mask, image=images.to(torch.complex64), direct=direct, active=gate_t,
                     doa=doa_t, score=score)


def check_trajectories(mixture, activity, doa, mic_offsets=None) -> tuple[torch.Tensor, np.ndarray, np.ndarray,
                                                                          np.ndarray]:
    """Validate and normalise the stage's inputs.

    Returns:
        (x (M, N) float32 tensor, activity (K, T') bool, unit directions (K, T', 3), offsets (M, 3) or
        :data:`FOA`).
    Raises:
        DeepASAError: shapes that do not fit (one line).
    """
    x = torch.as_tensor(np.asarray(mixture, dtype=np.float32))  # (M, N)
    act = np.asarray(activity).astype(bool)
    direction = np.asarray(doa, dtype=np.float64)
    if isinstance(mic_offsets, FOAFormat):
        offsets, n_ch = mic_offsets, mic_offsets.n_channels
    else:
        offsets = tetra_mic_offsets() if mic_offsets is None else np.asarray(mic_offsets, dtype=np.float64)
        n_ch = offsets.shape[0]
    if x.ndim != 2 or x.shape[0] != n_ch:
        raise DeepASAError(f"the mixture must be ({n_ch}, samples); got {tuple(x.shape)}")
    if act.ndim != 2 or direction.shape != (*act.shape, 3):
        raise DeepASAError(f"activity (K, T') and doa (K, T', 3) disagree: {act.shape} and {direction.shape}")
    norm = np.linalg.norm(direction, axis=-1, keepdims=True)  # (K, T', 1)
    unit = np.where(norm > 0, direction / np.maximum(norm, 1e-12), [1.0, 0.0, 0.0])  # (K, T', 3)
    return x, act, unit, offsets


def istft(spec: torch.Tensor, n: int, cfg: SpatialConfig) -> torch.Tensor:
    """(..., F, T) complex → (..., n) real with the stage's STFT."""
    flat = spec.reshape(-1, *spec.shape[-2:])  # (B, F, T)
    out = torch.istft(flat, cfg.n_fft, cfg.hop, window=torch.hann_window(cfg.n_fft), length=n)  # (B, n)
    return out.reshape(*spec.shape[:-2], n)  # (..., n)


def separate(mixture, activity, doa, *, sample_rate: int = 16000, label_hop: float = 0.1,
             mic_offsets: np.ndarray | None = None, config: SpatialConfig | None = None,
             fmt: str = "mic") -> SpatialSeparation:
    """Each object's image, direct path and reverb from the mixture and the objects' trajectories.

    Args:
        mixture: (M, N) float array (numpy or torch).
        activity: (K, T') bool or {0, 1}: object k active in label frame t' (frames of ``label_hop`` s; a
            trajectory shorter than the clip holds its last frame).
        doa: (K, T', 3) direction vectors per label frame (any norm > 0 where active; normalised here).
            Where an object is inactive its direction is not used.
        sample_rate: Hz.
        label_hop: seconds per label frame.
        mic_offsets: (M, 3) capsule positions relative to the centre (default: the tetrahedral MIC array).
        config: the stage's parameters (default :class:`SpatialConfig`).
        fmt: ``"mic"`` (capsule signals, ``mic_offsets``) or ``"foa"`` (ACN/SN3D first-order Ambisonics).
    Returns:
        :class:`SpatialSeparation`; ``image.sum(0) + remainder`` equals the mixture (to float32 rounding).

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).standard_normal((4, 16000))
        >>> out = separate(x, np.ones((2, 10), bool), np.tile([[[1.0, 0, 0]], [[0, 1.0, 0]]], (1, 10, 1)))
        >>> out.image.shape, out.remainder.shape, out.mask.shape
        ((2, 4, 16000), (4, 16000), (3, 257, 126))
        >>> bool(np.abs(out.image.sum(0) + out.remainder - x).max() < 1e-4)
        True
    """
    cfg = config or SpatialConfig()
    if fmt not in FORMATS:
        raise DeepASAError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    x, act, unit, offsets = check_trajectories(mixture, activity, doa, FOA if fmt == "foa" else mic_offsets)
    m, n = x.shape
    st = spatial_stft(x, act, unit, sample_rate, label_hop, offsets, cfg)
    image = istft(st.image, n, cfg) if len(act) else torch.zeros(0, m, n)  # (K, M, N)
    direct = istft(st.direct, n, cfg) if len(act) else torch.zeros(0, m, n)  # (K, M, N)
    remainder = x - image.sum(dim=0)  # (M, N): the complement, so the parts add up to the mixture
    return SpatialSeparation(image=image.numpy(), direct=direct.numpy(), reverb=(image - direct).numpy(),
                             remainder=remainder.numpy(), mask=st.mask.numpy().astype(np.float32))
