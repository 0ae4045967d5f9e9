"""Spatial augmentation of the tetrahedral array: the channel swaps of the DCASE SELD baselines.

The four capsules of the MIC array sit at (azimuth, elevation) = (45°, 35°), (−45°, −35°), (135°, −35°),
(−135°, 35°). Some orthogonal maps R of the sphere (rotations about z by multiples of 90° and mirrorings
az → −az, el → −el) carry this capsule set onto itself: R p_i = p_{π(i)}. For a free-field plane wave from u,
capsule i receives the source with delay −p_i·u / c; in the scene turned by R (source at R u, room turned
with it) capsule i receives what capsule σ(i) received originally, where p_σ(i) = Rᵀ p_i. So
``x'[i] = x[σ(i)]`` and ``u' = R u`` is an exact new training scene: the audio moves as the label moves.
:func:`tetra_swaps` finds these maps by search (no table typed in); there are 8.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from deepasa.audio.geometry import tetra_mic_offsets

def tetra_swaps() -> list[tuple[tuple[int, ...], np.ndarray]]:
    """The symmetries of the tetrahedral array among {rotate z by k·90°} × {mirror y} × {mirror z}.

    Returns:
        list of (σ, R): σ a channel order (new channel i = old channel σ[i]) and R (3, 3) the direction map
        (new DoA = R · old DoA). The identity comes first.
    """
    p = tetra_mic_offsets(1.0)  # (4, 3) capsule directions (unit vectors), channel order
    out = []
    for k, flip_y, flip_z in itertools.product(range(4), (1, -1), (1, -1)):
        c, s = np.cos(k * np.pi / 2), np.sin(k * np.pi / 2)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        r = rot @ np.diag([1.0, flip_y, flip_z])  # (3, 3), orthogonal
        target = p @ r  # (4, 3): row i = Rᵀ p_i
        dist = np.linalg.norm(target[:, None, :] - p[None, :, :], axis=-1)  # (4, 4)
        sigma = tuple(int(v) for v in dist.argmin(axis=1))
        if np.allclose(dist.min(axis=1), 0.0, atol=1e-9) and len(set(sigma)) == 4:
            out.append((sigma, np.round(r, 12)))
    return out


def apply_swap(item: dict, sigma, rot: np.ndarray) -> dict:
    """One channel swap applied to a training item (in place of a copy).

    Args:
        item: mixture (M, N), direct/reverb (J, M, N), noise (M, N), doa (J, T', 3), other keys kept.
        sigma: channel order (new channel i = old channel σ[i]).
        rot: (3, 3) direction map.

    Returns:
        a new dict with the channels reordered and every DoA label turned by ``rot`` (zero vectors stay zero).
    """
    idx = torch.as_tensor(sigma, dtype=torch.long)
    r = torch.as_tensor(rot, dtype=torch.float32)
    out = dict(item)
    out["mixture"] = item["mixture"][..., idx, :]  # (M, N)
    out["noise"] = item["noise"][..., idx, :]  # (M, N)
    out["direct"] = item["direct"][..., idx, :]  # (J, M, N)
    out["reverb"] = item["reverb"][..., idx, :]  # (J, M, N)
    out["doa"] = item["doa"] @ r.T.to(item["doa"].dtype)  # (J, T', 3)
    return out


class RandomSwap:
    """Callable augmentation: a uniformly drawn tetrahedral channel swap per item (:func:`tetra_swaps`)."""

    def __init__(self, seed: int = 0) -> None:
        self.swaps = tetra_swaps()
        self.rng = np.random.default_rng(seed)

    def __call__(self, item: dict) -> dict:
        """item dict (see :func:`apply_swap`) -> augmented copy."""
        sigma, rot = self.swaps[int(self.rng.integers(len(self.swaps)))]
        return apply_swap(item, sigma, rot)
