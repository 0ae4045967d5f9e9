"""Multi-peak picking on direction maps: local maxima, angular non-maximum suppression, sub-grid refinement."""

from __future__ import annotations

import math

import numpy as np

from deepasa.tracking.grid import grid_neighbours


def _typical_spacing_deg(grid: np.ndarray) -> float:
    """sqrt(4π / G) in degrees: the neighbour distance of a near-uniform grid of G points."""
    return math.degrees(math.sqrt(4.0 * math.pi / len(grid)))


class PeakPicker:
    """:func:`pick_peaks` with the grid's neighbour lists computed once (reused over clips).

    Args:
        grid: (G, 3) unit vectors.
        local_deg: the local-maximum neighbourhood radius (default 1.5 grid spacings).
        refine_deg: the radius of the score-weighted mean (default 1.5 grid spacings).
    """

    def __init__(self, grid: np.ndarray, local_deg: float | None = None, refine_deg: float | None = None):
        self.grid = np.asarray(grid, dtype=np.float64)
        spacing = _typical_spacing_deg(self.grid)
        self.local = grid_neighbours(self.grid, local_deg if local_deg is not None else 1.5 * spacing)
        self.refine_cos = math.cos(math.radians(refine_deg if refine_deg is not None else 1.5 * spacing))
        self.refine_iterations = 3

    def refine_direction(self, score: np.ndarray, i: int) -> np.ndarray:
        """score (G,), peak index i -> (3,) unit vector: the score-weighted mean of the grid points near the peak.

        Weights are the scores above the neighbourhood's lowest value, so a constant floor under the peak
        (diffuse noise, a second source's skirt) does not pull the mean towards the neighbourhood's centroid.
        The neighbourhood is re-centred on the estimate a few times: the grid points around a grid node are not
        symmetric about the true peak, and one pass leaves errors up to ~0.4 spacing (measured 3.4° at 600
        points), three leave < 2°.
        """
        v = self.grid[i]
        for _ in range(self.refine_iterations):
            nb = np.flatnonzero(self.grid @ v >= self.refine_cos)  # (n_nb,) points within the radius of v
            w = score[nb] - score[nb].min()  # (n_nb,)
            if w.sum() <= 0:
                break
            m = w @ self.grid[nb]  # (3,)
            v = m / np.linalg.norm(m)
        return v.copy()

    def __call__(self, score: np.ndarray, *, threshold: float, min_separation_deg: float = 25.0,
                 max_peaks: int = 5) -> list[list[tuple[np.ndarray, float]]]:
        """See :func:`pick_peaks`."""
        score = np.asarray(score, dtype=np.float64)
        if score.ndim != 2 or score.shape[1] != len(self.grid):
            raise ValueError(f"score must be (T', {len(self.grid)}), got {score.shape}")
        cos_sep = math.cos(math.radians(min_separation_deg))
        out: list[list[tuple[np.ndarray, float]]] = []
        for row in score:  # row (G,)
            peaks: list[tuple[np.ndarray, float]] = []
            cand = np.flatnonzero(row > threshold)
            if len(cand):
                cand = cand[self.local_maxima_at(row, cand)]
                cand = cand[np.argsort(-row[cand], kind="stable")]  # strongest first, ties by index
                kept: list[int] = []
                for i in cand:
                    # greedy NMS on the grid directions, so refinement cannot reorder suppression
                    if all(self.grid[i] @ self.grid[k] < cos_sep for k in kept):
                        kept.append(int(i))
                        if len(kept) == max_peaks:
                            break
                peaks = [(self.refine_direction(row, i), float(row[i])) for i in kept]
            out.append(peaks)
        return out

    def local_maxima_at(self, score: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """score (G,), candidate indices idx (n,) -> bool (n,): which candidates are local maxima."""
        return np.array([score[i] >= score[self.local[i]].max() for i in idx], dtype=bool)


def pick_peaks(score: np.ndarray, grid: np.ndarray, *, threshold: float, min_separation_deg: float = 25.0,
               max_peaks: int = 5) -> list[list[tuple[np.ndarray, float]]]:
    """Per frame, the directions of the strongest separated local maxima of a direction map.

    A peak is a grid point whose score exceeds ``threshold`` and is not below any grid point within 1.5 grid
    spacings; peaks are kept strongest first, each at least ``min_separation_deg`` from every kept one (greedy
    non-maximum suppression), at most ``max_peaks``. Each direction is refined below the grid spacing by the
    score-weighted mean of the grid points within 1.5 spacings of the peak, renormalised.

    Args:
        score: (T', G) map, larger = more likely a source.
        grid: (G, 3) unit vectors of the map's columns.
        threshold: minimum peak score.
        min_separation_deg: minimum angle between two peaks of one frame.
        max_peaks: at most this many peaks per frame.
    Returns:
        T' lists of (unit vector (3,) float64, peak score) tuples, strongest first (empty where none).
    """
    return PeakPicker(grid)(score, threshold=threshold, min_separation_deg=min_separation_deg, max_peaks=max_peaks)
