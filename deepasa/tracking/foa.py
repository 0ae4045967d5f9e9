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
"""

from __future__ import annotations

import numpy as np

from deepasa.tracking.srp import SRPTracker, _band, _label_index, _stft, n_label_frames

__all__ = ["intensity_map", "IntensityTracker"]


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
