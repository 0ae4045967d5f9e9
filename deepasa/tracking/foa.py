"""A training-free object finder for first-order Ambisonics: active-intensity direction maps, peaks, tracking.

In ACN/SN3D (W, Y, Z, X) a plane wave from ``u`` with spectrum ``S`` gives ``X = S u_x``, ``Y = S u_y``,
``Z = S u_z`` beside ``W = S``, so the active intensity of a time-frequency bin,

    I(f, t) = Re(W*(f, t) · (X, Y, Z)(f, t)) = |S|² u,

points at the source. Where two sources share a bin it points between them, weighted by their power. The map of
a label frame t' scores every grid direction ``v`` by a von Mises kernel around each bin's intensity direction,
averaged over the frame's bins:

    map(t', v) = mean over bins b of frame t' of  exp(κ (v · î_b − 1)),     î_b = I_b / |I_b|,

every bin above the frame's energy floor counting once (the analogue of the phase transform: a loud source
does not hide a quiet one that owns its own bins). A lone plane wave gives 1 at its direction. The rest is the
SRP-PHAT finder's (:class:`~deepasa.tracking.srp.SRPTracker`): the map minus its grid mean, quiet frames
emptied, peaks by iterative cancellation with this map's own point-spread function, then
:func:`~deepasa.tracking.tracker.track`.

:func:`virtual_mic` renders an FOA recording as the tetrahedral MIC array would have recorded it (DirAC-style
parametric rendering, no training): per bin, W delayed to each capsule for the bin's intensity direction, so the
learned MIC finder can read FOA (experiments/2026-12-07-foa-virtual-mic).
"""

from __future__ import annotations

import numpy as np

from deepasa.errors import DeepASAError
from deepasa.tracking.srp import SRPTracker, _band, _label_index, _stft, n_label_frames

__all__ = ["intensity_map", "IntensityTracker", "virtual_mic"]


def intensity_map(mixture: np.ndarray, *, sample_rate: int = 16000, label_hop: float = 0.1, grid: np.ndarray,
                  n_fft: int = 512, hop: int = 128, f_min: float = 100.0, f_max: float = 8000.0,
                  kappa: float = 12.0, floor_db: float = 40.0) -> np.ndarray:
    """Active-intensity direction map per label frame (module docstring).

    Args:
        mixture: (4, N) FOA signals in ACN/SN3D order (W, Y, Z, X).
        sample_rate: Hz; label_hop: seconds per label frame.
        grid: (G, 3) candidate unit vectors.
        n_fft, hop: STFT size and hop in samples; f_min, f_max: the band used, Hz.
        kappa: concentration of the von Mises kernel (12: about 17° wide).
        floor_db: bins more than this below the frame's loudest bin do not vote.
    Returns:
        (T', G) float64 map in [0, 1], T' = ceil(N / (label_hop · sample_rate)); 0 in silent frames.
    """
    x = np.asarray(mixture, dtype=np.float64)
    n_label = n_label_frames(x.shape[1], sample_rate, label_hop)
    band = _band(n_fft, sample_rate, f_min, f_max)  # (F_b,)
    spec = _stft(x, n_fft, hop)[:, band]  # (4, F_b, K)
    w = spec[0].conj()  # (F_b, K)
    inten = np.stack([(w * spec[3]).real, (w * spec[1]).real, (w * spec[2]).real])  # (3, F_b, K): x, y, z
    norm = np.linalg.norm(inten, axis=0)  # (F_b, K)
    lab = _label_index(spec.shape[-1], hop, label_hop * sample_rate, n_label)  # (K,)
    out = np.zeros((n_label, len(grid)))
    for t in range(n_label):
        cols = np.flatnonzero(lab == t)
        n_t = norm[:, cols]  # (F_b, K_t)
        if n_t.size == 0 or n_t.max() <= 0:
            continue
        use = n_t > n_t.max() * 10 ** (-floor_db / 10)  # (F_b, K_t)
        dirs = (inten[:, :, cols][:, use] / n_t[use]).T  # (B, 3) unit intensity directions of the voting bins
        out[t] = np.exp(kappa * (dirs @ grid.T - 1.0)).mean(axis=0)  # (G,)
    return out


class IntensityTracker(SRPTracker):
    """The FOA counterpart of :class:`~deepasa.tracking.srp.SRPTracker`: the intensity map in place of SRP-PHAT.

    Args:
        kappa, floor_db: as :func:`intensity_map`.
        f_max: top of the band (FOA has no spatial aliasing: default 8 kHz).
        threshold: minimum peak height above the frame's grid mean (0.02: the best downstream separation of
            0.02 / 0.03 / 0.05 on tuning scenes, experiments/2026-12-07-foa-pipeline).
        **kwargs: the :class:`~deepasa.tracking.srp.SRPTracker` arguments (thresholds, grid size, tracking).
    """

    def __init__(self, *, kappa: float = 12.0, floor_db: float = 40.0, f_max: float = 8000.0,
                 threshold: float = 0.02, **kwargs) -> None:
        super().__init__(f_max=f_max, threshold=threshold, **kwargs)
        self.kappa, self.floor_db = kappa, floor_db

    @property
    def psf(self) -> np.ndarray:
        """(G, G): row i is the normalised map (grid mean removed, 1 at i) of a lone plane wave from grid[i]."""
        if self._psf is None:
            psf = np.exp(self.kappa * (self.grid @ self.grid.T - 1.0))  # (G, G)
            psf -= psf.mean(axis=1, keepdims=True)
            self._psf = psf / np.diag(psf)[:, None]
        return self._psf

    def score_map(self, mixture: np.ndarray) -> np.ndarray:
        """mixture (4, N) FOA -> normalised map (T', G): the intensity map minus its grid mean, 0 in quiet frames."""
        from deepasa.tracking.srp import frame_energy_db

        m = intensity_map(mixture, sample_rate=self.sample_rate, label_hop=self.label_hop, grid=self.grid,
                          n_fft=self.n_fft, hop=self.hop, f_min=self.f_min, f_max=self.f_max, kappa=self.kappa,
                          floor_db=self.floor_db)  # (T', G)
        score = m - m.mean(axis=1, keepdims=True)  # (T', G)
        energy = frame_energy_db(np.asarray(mixture)[:1], sample_rate=self.sample_rate,
                                 label_hop=self.label_hop)  # (T',) from W
        score[energy < energy.max() - self.energy_range_db] = 0.0
        return score


def virtual_mic(foa, sample_rate: int = 16000, *, n_fft: int = 512, hop: int = 128,
                mic_offsets: np.ndarray | None = None, diffuse: bool = False, diffuse_frames: int = 5,
                seed: int = 0) -> np.ndarray:
    """Render an FOA recording as a virtual recording of the tetrahedral MIC array (parametric, DirAC-style).

    Per STFT bin the direction is the normalised active intensity ``û = Re(W* (X, Y, Z)) / |·|``; capsule m at
    ``p_m`` receives ``W · e^{+jω p_m·û / c}``, the phase a plane wave from ``û`` has there (the convention of
    :func:`deepasa.separation.spatial.plane_wave_phase`, which the simulator's capsule distances follow: a
    capsule hears the wave ``p·u / c`` early). A lone plane wave in FOA thus becomes the plane wave the array
    records, up to the STFT's narrow-band approximation (capsule delays of at most 0.25 ms, 4 samples, against a
    32-ms window). Bins without intensity keep W on every capsule.

    With ``diffuse=True`` each bin is split by its diffuseness ``ψ = 1 − |⟨I⟩| / ⟨E⟩`` (``E = (|W|² + |X|² +
    |Y|² + |Z|²) / 2``, SN3D: 0 for one plane wave, 1 for an isotropic field; ``⟨·⟩`` a centred moving mean over
    ``diffuse_frames`` STFT frames): the direct part ``√(1 − ψ) W e^{jω p·û/c}`` plus a diffuse part
    ``√ψ L(f) (W e^{jφ_m(f, t)})_m``, where ``φ_m(f, t)`` are independent random phases per capsule and bin
    (decorrelating the capsules) and ``L(f)`` the Cholesky factor of the array's diffuse coherence
    ``sin(kd)/(kd)``, so the diffuse part has the inter-capsule coherence a real diffuse field has on the 4.2-cm
    array. (Without it an isotropic field still gets uniform per-bin directions, but the re-synthesis mixes
    neighbouring bins of independent directions, which pulls a pair's coherence from ``sin(kd)/(kd)`` towards
    ``(sin(kr)/(kr))²``, r the array radius: 0.64 instead of 0.51 at 1.5 kHz; tests/test_foa_virtual_mic.py.)

    Args:
        foa: (4, N) FOA in ACN/SN3D order (W, Y, Z, X), numpy or torch.
        sample_rate: Hz.
        n_fft, hop: the STFT (periodic Hann; default: the spatial stage's 512 / 128 at 16 kHz).
        mic_offsets: (4, 3) capsule positions in metres (default: the tetrahedral MIC array,
            :func:`deepasa.audio.geometry.tetra_mic_offsets`).
        diffuse: render a diffuseness-dependent decorrelated part (above).
        diffuse_frames: STFT frames of the moving mean in ψ.
        seed: the decorrelating phases' seed (diffuse only).
    Returns:
        (4, N) float32 virtual capsule signals, in the MIC channel order.
    Raises:
        DeepASAError: ``foa`` is not (4, N) with N > 0, or is not finite.

    Example:
        >>> x = np.random.default_rng(0).standard_normal((4, 16000))
        >>> virtual_mic(x).shape, virtual_mic(x).dtype
        ((4, 16000), dtype('float32'))
    """
    import torch

    from deepasa.audio.geometry import SPEED_OF_SOUND, tetra_mic_offsets

    x = torch.as_tensor(foa) if torch.is_tensor(foa) else torch.from_numpy(np.asarray(foa, dtype=np.float64))
    if x.ndim != 2 or x.shape[0] != 4 or x.shape[1] == 0:
        raise DeepASAError(f"virtual_mic reads FOA as (4, N) (W, Y, Z, X), got shape {tuple(x.shape)}")
    x = x.double()
    if not torch.isfinite(x).all():
        raise DeepASAError("virtual_mic: the FOA signals hold NaN or Inf")
    n = x.shape[1]
    offs = torch.as_tensor(tetra_mic_offsets() if mic_offsets is None else mic_offsets, dtype=torch.float64)
    window = torch.hann_window(n_fft, dtype=torch.float64)
    spec = torch.stft(x, n_fft, hop, window=window, return_complex=True)  # (4, F, T)
    w = spec[0]  # (F, T)
    inten = torch.stack([(w.conj() * spec[3]).real, (w.conj() * spec[1]).real,
                         (w.conj() * spec[2]).real])  # (3, F, T): x, y, z
    unit = inten / inten.norm(dim=0).clamp_min(1e-30)  # (3, F, T), zero where the bin carries no intensity
    freqs = torch.arange(spec.shape[1], dtype=torch.float64) * sample_rate / n_fft  # (F,)
    # deepasa.separation.spatial.plane_wave_phase's convention: capsule p hears the wave p·u / c before the
    # centre, so with the STFT's e^{−jωt} kernel its bin is the centre's × e^{+jω p·u / c}
    lead = torch.einsum("cft,mc->ftm", unit, offs) / SPEED_OF_SOUND  # (F, T, M) seconds
    phase = 2 * np.pi * freqs[:, None, None] * lead  # (F, T, M)
    out = w[:, :, None] * torch.polar(torch.ones_like(phase), phase)  # (F, T, M)
    if diffuse:
        psi = _diffuseness(spec, inten, diffuse_frames)  # (F, T)
        # independent random phases per bin and capsule: the capsules' copies of W are incoherent over time (a
        # phase fixed per frequency would only be an all-pass filter, fully coherent across capsules)
        phi = torch.from_numpy(np.random.default_rng(seed).uniform(-np.pi, np.pi, (*w.shape, 4)))  # (F, T, M)
        phi[0] = 0.0  # the DC bin stays real
        decor = w[:, :, None] * torch.polar(torch.ones_like(phi), phi)  # (F, T, M)
        kd = 2 * np.pi * freqs[:, None, None] * torch.cdist(offs, offs)[None] / SPEED_OF_SOUND  # (F, M, M)
        # diffuse coherence sin(kd)/(kd) (as deepasa.separation.spatial.diffuse_coherence; tracking may not import
        # separation), lightly loaded so that its Cholesky factor exists at every frequency
        coh = torch.sinc(kd / np.pi) + 1e-9 * torch.eye(4, dtype=torch.float64)  # (F, M, M)
        chol = torch.linalg.cholesky(coh).to(torch.complex128)  # (F, M, M)
        spread = torch.einsum("fmn,ftn->ftm", chol, decor)  # (F, T, M), coherence sin(kd)/(kd)
        out = (1 - psi).sqrt()[:, :, None] * out + psi.sqrt()[:, :, None] * spread  # (F, T, M)
    sig = torch.istft(out.permute(2, 0, 1), n_fft, hop, window=window, length=n)  # (M, N)
    return sig.float().numpy()


def _diffuseness(spec, inten, frames: int):
    """ψ = 1 − |⟨I⟩| / ⟨E⟩ per bin, ⟨·⟩ a centred moving mean over ``frames`` STFT frames.

    Args:
        spec: (4, F, T) complex FOA STFT (W, Y, Z, X); inten: (3, F, T) active intensity.
    Returns:
        (F, T) float64 in [0, 1].
    """
    import torch

    energy = 0.5 * spec.abs().pow(2).sum(dim=0)  # (F, T): (|W|² + |Y|² + |Z|² + |X|²) / 2, SN3D
    kernel = torch.ones(1, 1, frames, dtype=torch.float64) / frames

    def smooth(a):
        flat = a.reshape(-1, 1, a.shape[-1])  # (R, 1, T)
        return torch.nn.functional.conv1d(flat, kernel, padding=frames // 2)[..., :a.shape[-1]].reshape(a.shape)

    psi = 1 - smooth(inten).norm(dim=0) / smooth(energy).clamp_min(1e-30)  # (F, T)
    return psi.clamp(0.0, 1.0)
