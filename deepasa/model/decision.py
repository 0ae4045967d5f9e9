"""The activity decision rule, once (docs/spec.md §1; docs/model.md deviations 18 and 19), below the metrics layer.

:func:`frame_activity` is the rule — a slot is active in a frame where its on/off probability exceeds
``onoff_threshold`` and its ‖doa‖ exceeds ``doa_threshold`` — and :func:`merge_duplicates` its optional duplicate
half. :meth:`DeepASA.decide <deepasa.model.deepasa.DeepASA.decide>`, the CoI step's hard SED map,
:func:`deepasa.metrics.seld_frame.activity_decisions` and ``deepasa analyze``'s stitching all call them, so a
model, its evaluation and its report apply one rule.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["frame_activity", "merge_duplicates"]


def frame_activity(onoff, doa, onoff_threshold: float = 0.5, doa_threshold: float = 0.5, *,
                   probabilities: bool = False):
    """The activity rule: ``sigmoid(onoff) > onoff_threshold`` and, when ``doa_threshold > 0``, ‖doa‖ > it.

    The on/off half compares the logit with ``log(p / (1 − p))`` (the same decision as the probability with
    ``p``, without computing a sigmoid); ``doa_threshold = 0`` decides on the on/off output alone (the STARSS23
    protocol).

    Args:
        onoff: ``(..., T)`` on/off logits (or probabilities with ``probabilities=True``), torch or numpy.
        doa: ``(..., T, 3)`` of the same kind.
        onoff_threshold: the on/off probability threshold (``0 < p < 1``).
        doa_threshold: the ‖doa‖ threshold (``>= 0``).
        probabilities: ``onoff`` holds probabilities, not logits.
    Returns:
        ``(..., T)`` bool, a torch tensor for torch input, else a numpy array.
    """
    cut = onoff_threshold if probabilities else math.log(onoff_threshold / (1.0 - onoff_threshold))
    if hasattr(onoff, "detach"):  # torch
        on = onoff > cut
        return on & (doa.norm(dim=-1) > doa_threshold) if doa_threshold > 0.0 else on
    on = np.asarray(onoff) > cut
    if doa_threshold > 0.0:
        return on & (np.linalg.norm(np.asarray(doa, dtype=np.float64), axis=-1) > doa_threshold)
    return on


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
