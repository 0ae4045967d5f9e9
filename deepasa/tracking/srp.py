"""A classical, training-free object finder: SRP-PHAT maps on label frames, multi-peak picking, tracking.

SRP-PHAT (steered response power with the phase transform) scores every candidate direction u by how well the
inter-capsule phase differences of the mixture match a plane wave from u:

    SRP(t', u) = 1/(P·F) Σ_ab Σ_f Re[ P̄_ab(t', f) · e^{+iω_f (d_a(u) − d_b(u))} ],
    P̄_ab(t', f) = mean over the STFT frames of label frame t' of X_a X_b* / |X_a X_b*|,

with d_a(u) = −(p_a · u) / c the arrival delay of a plane wave from u at capsule a (capsule position p_a): a
plane wave from u gives X_a X_b* ∝ e^{−iω(d_a − d_b)}, so the steered sum is P·F at u (1 after the
normalisation) and smaller elsewhere. The PHAT cross-spectra are averaged per label frame before steering (the
steering is linear, so this equals averaging the per-frame maps, at a fraction of the cost).

:func:`srp_find_objects` turns the map into objects: per-frame normalisation (the grid mean removed: diffuse
noise is coherent across a 4.2-cm array below ~2.5 kHz and lifts every direction alike), frames far below the
clip's loudest (:func:`frame_energy_db`) emptied, :func:`~deepasa.tracking.peaks.pick_peaks` or, by default, iterative cancellation
(:meth:`SRPTracker._clean`), then :func:`~deepasa.tracking.tracker.track`.
"""

from __future__ import annotations

import math

import numpy as np

from deepasa.audio.geometry import SPEED_OF_SOUND, tetra_mic_offsets
from deepasa.tracking.grid import direction_grid
from deepasa.tracking.peaks import PeakPicker
from deepasa.tracking.tracker import Tracks, track


def n_label_frames(n_samples: int, sample_rate: int = 16000, label_hop: float = 0.1) -> int:
    """T' = ceil(N / (label_hop · fs)), the simulator's frame count for whole clips."""
    return int(math.ceil(n_samples / (label_hop * sample_rate) - 1e-9))


def _stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Centred Hann STFT: x (M, N) -> (M, F, K) complex, F = n_fft/2 + 1, frame k centred on sample k·hop,
    K = ceil(N / hop) (the signal zero-padded by n_fft/2 at both ends)."""
    m, n = x.shape
    k = int(math.ceil(n / hop))
    pad = np.zeros((m, max((k - 1) * hop + n_fft, n_fft // 2 + n)))  # (M, ≥ N + n_fft/2)
    pad[:, n_fft // 2: n_fft // 2 + n] = x
    idx = np.arange(k)[:, None] * hop + np.arange(n_fft)[None, :]  # (K, n_fft)
    frames = pad[:, idx] * np.hanning(n_fft + 1)[:-1]  # (M, K, n_fft), periodic Hann
    return np.fft.rfft(frames, axis=-1).transpose(0, 2, 1)  # (M, F, K)


def _label_index(n_stft: int, hop: int, label_samples: float, n_label: int) -> np.ndarray:
    """The label frame of each STFT frame (by its centre sample): (K,) int in [0, T')."""
    return np.minimum((np.arange(n_stft) * hop / label_samples).astype(int), n_label - 1)  # (K,)


def pair_delays(grid: np.ndarray, mic_offsets: np.ndarray, speed_of_sound: float = SPEED_OF_SOUND) -> np.ndarray:
    """d_a(u) − d_b(u) for every capsule pair a < b and direction: grid (G, 3), mic_offsets (M, 3) -> (P, G) s."""
    delay = -(np.asarray(grid) @ np.asarray(mic_offsets).T) / speed_of_sound  # (G, M) arrival delays
    a, b = np.triu_indices(len(mic_offsets), k=1)  # (P,) each: pairs in lexicographic order
    return (delay[:, a] - delay[:, b]).T  # (P, G)


def _band(n_fft: int, sample_rate: int, f_min: float, f_max: float) -> np.ndarray:
    """Indices of the rfft bins with f_min ≤ f ≤ f_max, DC excluded (it carries no phase): (F_b,)."""
    f = np.arange(n_fft // 2 + 1) * sample_rate / n_fft  # (F,) Hz
    return np.flatnonzero((f >= max(f_min, 1e-9)) & (f <= f_max))


def srp_phat_map(mixture: np.ndarray, *, sample_rate: int = 16000, label_hop: float = 0.1,
                 grid: np.ndarray | None = None, mic_offsets: np.ndarray | None = None, n_fft: int = 512,
                 hop: int = 128, f_max: float = 4000.0, f_min: float = 100.0) -> np.ndarray:
    """SRP-PHAT direction map per label frame (module docstring), normalised so a lone plane wave scores 1.

    Args:
        mixture: (M, N) array signals (M = 4 for the tetrahedral array).
        sample_rate: Hz.
        label_hop: seconds per label frame.
        grid: (G, 3) candidate unit vectors (default :func:`~deepasa.tracking.grid.direction_grid` ()).
        mic_offsets: (M, 3) capsule positions in metres (default ``tetra_mic_offsets()``).
        n_fft, hop: STFT size and hop in samples.
        f_max, f_min: the band summed over, Hz.
    Returns:
        (T', G) float64 map in [−1, 1], T' = ceil(N / (label_hop · sample_rate)); 0 in digitally silent frames.
    """
    grid = direction_grid() if grid is None else np.asarray(grid, dtype=np.float64)
    mics = tetra_mic_offsets() if mic_offsets is None else np.asarray(mic_offsets, dtype=np.float64)
    x = np.asarray(mixture, dtype=np.float64)
    n_label = n_label_frames(x.shape[1], sample_rate, label_hop)
    band = _band(n_fft, sample_rate, f_min, f_max)  # (F_b,)
    spec = _stft(x, n_fft, hop)[:, band]  # (M, F_b, K)
    a, b = np.triu_indices(len(mics), k=1)
    cross = spec[a] * spec[b].conj()  # (P, F_b, K)
    phat = cross / np.maximum(np.abs(cross), 1e-20)  # (P, F_b, K), unit modulus (≈0 where silent)
    phat[np.abs(cross) < 1e-20] = 0.0
    lab = _label_index(spec.shape[-1], hop, label_hop * sample_rate, n_label)  # (K,)
    pooled = np.zeros(phat.shape[:2] + (n_label,), dtype=np.complex128)  # (P, F_b, T')
    np.add.at(pooled, (slice(None), slice(None), lab), phat)
    count = np.bincount(lab, minlength=n_label).astype(np.float64)  # (T',)
    pooled /= np.maximum(count, 1.0)
    omega = 2.0 * np.pi * np.arange(n_fft // 2 + 1)[band] * sample_rate / n_fft  # (F_b,) rad/s
    tdoa = pair_delays(grid, mics)  # (P, G)
    steer = np.exp(1j * omega[None, :, None] * tdoa[:, None, :])  # (P, F_b, G)
    p, f = pooled.shape[:2]
    srp = (pooled.reshape(p * f, n_label).T @ steer.reshape(p * f, -1)).real  # (T', G)
    return srp / (p * f)


def frame_energy_db(mixture: np.ndarray, *, sample_rate: int = 16000, label_hop: float = 0.1) -> np.ndarray:
    """Mean power of each label frame over capsules, in dB: mixture (M, N) -> (T',) (−200 dB where silent)."""
    x = np.asarray(mixture, dtype=np.float64)
    n_label = n_label_frames(x.shape[1], sample_rate, label_hop)
    step = label_hop * sample_rate
    lab = np.minimum((np.arange(x.shape[1]) / step).astype(int), n_label - 1)  # (N,)
    power = np.bincount(lab, weights=(x**2).mean(axis=0), minlength=n_label)  # (T',)
    power /= np.maximum(np.bincount(lab, minlength=n_label), 1)
    return 10.0 * np.log10(np.maximum(power, 1e-20))


class SRPTracker:
    """SRP-PHAT → per-frame normalisation → multi-peak picking → tracking, with precomputed grid and peaks.

    Args:
        sample_rate, label_hop, n_fft, hop, f_max, f_min, mic_offsets: as :func:`srp_phat_map`.
        n_directions: grid size G.
        threshold: minimum peak height above the frame's grid mean (normalised SRP units).
        relative_threshold: a secondary peak must also reach this fraction of the frame's strongest peak.
        energy_range_db: frames more than this below the clip's loudest frame get no peaks.
        max_sources: at most this many peaks per frame.
        cancel: find a frame's peaks by iterative cancellation (CLEAN: subtract each found source's lone
            plane-wave map before looking for the next) instead of :func:`~deepasa.tracking.peaks.pick_peaks`
            on the map as is. On 40 simulated 2–5-source test scenes it raised the frame precision from 0.78 to
            0.88 at the same recall (0.55): the broad main lobe of the 4.2-cm array no longer yields
            secondary peaks on its skirt.
        min_separation_deg: minimum angle between two peaks of a frame.
        track_kwargs: passed to :func:`~deepasa.tracking.tracker.track`.
    """

    def __init__(self, *, sample_rate: int = 16000, label_hop: float = 0.1, threshold: float = 0.05,
                 relative_threshold: float = 0.5, energy_range_db: float = 40.0, max_sources: int = 5,
                 min_separation_deg: float = 30.0, n_directions: int = 600, n_fft: int = 512, hop: int = 128,
                 f_max: float = 4000.0, f_min: float = 100.0, mic_offsets: np.ndarray | None = None,
                 cancel: bool = True, track_kwargs: dict | None = None):
        self.sample_rate, self.label_hop = sample_rate, label_hop
        self.threshold, self.relative_threshold = threshold, relative_threshold
        self.energy_range_db = energy_range_db
        self.max_sources, self.min_separation_deg = max_sources, min_separation_deg
        self.n_fft, self.hop, self.f_max, self.f_min = n_fft, hop, f_max, f_min
        self.mic_offsets = tetra_mic_offsets() if mic_offsets is None else np.asarray(mic_offsets)
        self.grid = direction_grid(n_directions)
        self.picker = PeakPicker(self.grid)
        self.track_kwargs = dict(track_kwargs or {})
        self.cancel = cancel
        self._psf: np.ndarray | None = None

    @property
    def psf(self) -> np.ndarray:
        """(G, G): row i is the normalised map (grid mean removed, 1 at i) of a lone plane wave from grid[i]."""
        if self._psf is None:
            omega = 2.0 * np.pi * np.arange(self.n_fft // 2 + 1) * self.sample_rate / self.n_fft  # (F,) rad/s
            omega = omega[_band(self.n_fft, self.sample_rate, self.f_min, self.f_max)]  # (F_b,)
            tdoa = pair_delays(self.grid, self.mic_offsets)  # (P, G)
            steer = np.exp(1j * omega[None, :, None] * tdoa[:, None, :]).reshape(-1, len(self.grid))  # (P*F_b, G)
            psf = (steer.conj().T @ steer).real / steer.shape[0]  # (G, G), the SRP of plane wave i at u
            psf -= psf.mean(axis=1, keepdims=True)  # (G, G), as the score map
            self._psf = psf / np.diag(psf)[:, None]  # (G, G)
        return self._psf

    def score_map(self, mixture: np.ndarray) -> np.ndarray:
        """mixture (M, N) -> normalised map (T', G): SRP minus its grid mean, 0 in frames too quiet to use."""
        srp = srp_phat_map(mixture, sample_rate=self.sample_rate, label_hop=self.label_hop, grid=self.grid,
                           mic_offsets=self.mic_offsets, n_fft=self.n_fft, hop=self.hop, f_max=self.f_max,
                           f_min=self.f_min)  # (T', G)
        score = srp - srp.mean(axis=1, keepdims=True)  # (T', G)
        energy = frame_energy_db(mixture, sample_rate=self.sample_rate, label_hop=self.label_hop)  # (T',)
        quiet = energy < energy.max() - self.energy_range_db
        score[quiet] = 0.0
        return score

    def detections(self, score: np.ndarray) -> list[list[tuple[np.ndarray, float]]]:
        """score (T', G) -> per frame the peaks (unit vector (3,), height), strongest first."""
        if self.cancel:
            peaks = [self._clean(row) for row in score]
        else:
            peaks = self.picker(score, threshold=self.threshold, min_separation_deg=self.min_separation_deg,
                                max_peaks=self.max_sources)
        # a sidelobe or reflection of a strong source can exceed the absolute threshold: secondary peaks must
        # also be a fair share of the frame's strongest
        return [[(u, s) for u, s in frame if s >= self.relative_threshold * frame[0][1]] for frame in peaks]

    def _clean(self, row: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Iterative cancellation (CLEAN) on one frame's map row (G,): take the highest point, subtract a lone
        plane wave's map scaled to its height, repeat; -> peaks (unit vector (3,), height), strongest first."""
        residual = row.copy()
        cos_sep = math.cos(math.radians(self.min_separation_deg))
        out: list[tuple[np.ndarray, float]] = []
        for _ in range(self.max_sources):
            i = int(np.argmax(residual))
            h = float(residual[i])
            if h <= self.threshold:
                break
            u = self.picker.refine_direction(residual, i)
            residual = residual - h * self.psf[i]  # (G,)
            if all(u @ v < cos_sep for v, _ in out):
                out.append((u, h))
        return out

    def __call__(self, mixture: np.ndarray) -> Tracks:
        """mixture (M, N) -> :class:`~deepasa.tracking.tracker.Tracks` over T' label frames."""
        dets = self.detections(self.score_map(mixture))
        return track(dets, max_objects=self.max_sources, **self.track_kwargs)


def srp_find_objects(mixture: np.ndarray, *, sample_rate: int = 16000, label_hop: float = 0.1,
                     threshold: float = 0.05, max_sources: int = 5, **kwargs) -> Tracks:
    """Find and track sound objects in a multichannel mixture without training (SRP-PHAT, module docstring).

    Args:
        mixture: (M, N) array signals.
        sample_rate, label_hop: Hz, seconds per label frame.
        threshold: minimum peak height above the frame's grid mean.
        max_sources: at most this many peaks per frame and objects per clip.
        **kwargs: further :class:`SRPTracker` arguments.
    Returns:
        :class:`~deepasa.tracking.tracker.Tracks`: activity (J, T'), doa (J, T', 3), score (J, T').
    """
    return SRPTracker(sample_rate=sample_rate, label_hop=label_hop, threshold=threshold, max_sources=max_sources,
                      **kwargs)(mixture)
