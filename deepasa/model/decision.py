"""The duplicate half of the activity decision rule (docs/model.md deviation 19), below the metrics layer.

:meth:`DeepASA.decide <deepasa.model.deepasa.DeepASA.decide>`, :func:`deepasa.metrics.seld_frame.activity_decisions`
and ``deepasa analyze`` all merge duplicates with :func:`merge_duplicates`, so a model, its evaluation and its
report apply one rule.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["merge_duplicates"]


def merge_duplicates(active, cls, doa, score, max_deg: float) -> np.ndarray:
    """One object per class and direction in every frame: greedy non-maximum suppression of duplicate slots.

    In each frame the active slots are visited by decreasing ``score``; a slot stays active unless a slot
    already kept in that frame has the same class and a DoA within ``max_deg`` degrees of its own, as the
    multi-ACCDOA decoders unify same-class tracks closer than a threshold. A zero DoA vector is close to none.
    Ties in ``score`` keep the lower slot index. ``max_deg = 0`` returns ``active`` unchanged.

    Args:
        active: ``(..., J, T)`` bool, the decisions before the merge.
        cls: ``(..., J)`` int, each slot's clip class.
        doa: ``(..., J, T, 3)``.
        score: ``(..., J, T)``, the order of precedence (the on/off probability or logit).
        max_deg: the angle under which two same-class slots are one object (``0 <= max_deg <= 180``).

    Returns:
        ``(..., J, T)`` bool, ``active`` with the suppressed duplicates cleared.
    """
    active = np.asarray(active, dtype=bool)
    if max_deg <= 0.0:
        return active
    lead = active.shape[:-2]
    n_slots, n_frames = active.shape[-2:]
    act = active.reshape(-1, n_slots, n_frames).copy()                            # (P, J, T)
    c = np.broadcast_to(np.asarray(cls), lead + (n_slots,)).reshape(-1, n_slots)  # (P, J)
    d = np.asarray(doa, dtype=np.float64).reshape(-1, n_slots, n_frames, 3)       # (P, J, T, 3)
    sc = np.asarray(score, dtype=np.float64).reshape(-1, n_slots, n_frames)       # (P, J, T)
    norm = np.linalg.norm(d, axis=-1)                                              # (P, J, T)
    unit = d / np.maximum(norm, 1e-12)[..., None]                                  # (P, J, T, 3)
    cos = np.einsum("pjtx,pktx->pjkt", unit, unit)                                 # (P, J, J, T): slots j, k at t
    close = (cos > math.cos(math.radians(max_deg))) & (norm[:, :, None] > 0) & (norm[:, None] > 0)  # (P, J, J, T)
    close &= (c[:, :, None] == c[:, None, :])[..., None]                           # (P, J, J, T) same class too
    order = np.argsort(-sc, axis=1, kind="stable")                                 # (P, J, T) by decreasing score
    for p, t in zip(*np.nonzero(act.sum(axis=1) > 1)):                             # frames with 2+ active slots
        kept: list[int] = []
        for j in order[p, :, t]:
            if not act[p, j, t]:
                continue
            if any(close[p, j, k, t] for k in kept):
                act[p, j, t] = False
            else:
                kept.append(int(j))
    return act.reshape(active.shape)                                               # (..., J, T)
