"""Direction grids on the unit sphere for map-based localisation (numpy only).

A Fibonacci (golden-angle) lattice places n points near-uniformly: each covers ~4π/n sr, so neighbours are
about ``grid_spacing_deg(n)`` apart (8.3° for the default 600), and any direction is within ~0.6 spacing of its
nearest grid point. Peak picking (:mod:`deepasa.tracking.peaks`) then refines below the grid spacing.
"""

from __future__ import annotations

import math

import numpy as np


def direction_grid(n: int = 600) -> np.ndarray:
    """n near-uniform unit vectors on the sphere (Fibonacci lattice), x front / y left / z up.

    Args:
        n: number of directions G.
    Returns:
        (G, 3) float64 unit vectors.
    """
    i = np.arange(n, dtype=np.float64) + 0.5  # (G,)
    polar = np.arccos(1.0 - 2.0 * i / n)  # (G,) angle from +z, equal-area steps in cos(polar)
    azim = math.pi * (1.0 + math.sqrt(5.0)) * i  # (G,) golden-angle steps in azimuth
    return np.stack([np.cos(azim) * np.sin(polar), np.sin(azim) * np.sin(polar), np.cos(polar)], axis=-1)  # (G, 3)


def grid_spacing_deg(n: int) -> float:
    """Typical angle (degrees) between neighbouring points of an n-point near-uniform grid: sqrt(4π / n) rad."""
    return math.degrees(math.sqrt(4.0 * math.pi / n))


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angles in degrees between unit vectors, broadcasting: a (..., 3), b (..., 3) -> (...)."""
    return np.degrees(np.arccos(np.clip(np.sum(a * b, axis=-1), -1.0, 1.0)))


def grid_neighbours(grid: np.ndarray, max_deg: float) -> list[np.ndarray]:
    """For every grid point, the indices of the grid points within ``max_deg`` of it (itself included).

    Args:
        grid: (G, 3) unit vectors.
        max_deg: angular radius in degrees.
    Returns:
        G int64 arrays of indices, each sorted ascending and containing the point itself.
    """
    grid = np.asarray(grid, dtype=np.float64)
    cos_max = math.cos(math.radians(max_deg))
    out = []
    for start in range(0, len(grid), 1024):  # blocks bound the (block, G) memory for large grids
        close = grid[start:start + 1024] @ grid.T >= cos_max - 1e-12  # (block, G)
        out.extend(np.flatnonzero(row) for row in close)
    return out
