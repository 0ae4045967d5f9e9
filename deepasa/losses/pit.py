"""Permutation-invariant training (PIT) with one shared permutation, and the signal losses it uses.

The object-oriented idea of DeepASA (docs/spec.md §4) is that every task head of slot ``j`` reads the same object
feature, so **one** permutation aligns separation, class, SED, on/off and DoA at once. This module therefore
never hides the permutation: :func:`find_best_permutation` returns it, and :func:`apply_permutation` reorders
any ``(B, J, ...)`` tensor with it.

Conventions used throughout:

* ``loss_matrix[b, t, e]`` is the loss of pairing **target** slot ``t`` with **estimate** slot ``e``.
* ``perm[b, t]`` is the estimate slot assigned to target slot ``t``; hence
  ``apply_permutation(estimate, perm)[:, t]`` is aligned with ``target[:, t]``.
* Every signal loss here is a *loss* (lower is better): ``neg_*`` functions return minus the dB ratio.

Example (shapes only)::

    >>> import torch
    >>> est, tgt = torch.randn(2, 3, 100), torch.randn(2, 3, 100)
    >>> loss, perm = pit_sa_sdr(est, tgt)            # loss (2,), perm (2, 3)
    >>> apply_permutation(est, perm).shape
    torch.Size([2, 3, 100])
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

__all__ = [
    "EXHAUSTIVE_MAX_SOURCES",
    "si_sdr",
    "snr",
    "sa_sdr",
    "neg_si_sdr",
    "neg_snr",
    "neg_sa_sdr",
    "pairwise_neg_si_sdr",
    "pairwise_neg_snr",
    "pairwise_squared_error",
    "find_best_permutation",
    "apply_permutation",
    "permutation_cost",
    "pit_loss",
    "pit_sa_sdr",
]

#: Up to this many slots the best permutation is found by exhaustive search (6! = 720 candidates);
#: beyond it the Hungarian algorithm (scipy ``linear_sum_assignment``) is used. Both are exact for a
#: pairwise-additive cost; the exhaustive path stays on the tensor device and is what the paper used (J = 5).
EXHAUSTIVE_MAX_SOURCES = 6

_EPS = 1e-8


# ------------------------------------------------------------------------------------------------
# Signal ratios (differentiable, eps-safe, zero targets allowed)
# ------------------------------------------------------------------------------------------------
def si_sdr(estimate: torch.Tensor, target: torch.Tensor, *, zero_mean: bool = True,
           eps: float = _EPS) -> torch.Tensor:
    """Scale-invariant SDR in dB over the last axis.

    ``10·log10(‖α s‖² / ‖α s − ŝ‖²)`` with ``α = <ŝ, s>/‖s‖²``. ``eps`` is added to every inner product so
    that an all-zero target or estimate gives a finite value (and a finite gradient).

    Args:
        estimate: ``(..., N)``.
        target: ``(..., N)``, same shape.
        zero_mean: remove the mean of both signals first (the torchmetrics option of the same name).

    Returns:
        ``(...)`` SI-SDR in dB.
    """
    if estimate.shape != target.shape:
        raise ValueError(f"estimate {tuple(estimate.shape)} and target {tuple(target.shape)} differ")
    if zero_mean:
        estimate = estimate - estimate.mean(dim=-1, keepdim=True)
        target = target - target.mean(dim=-1, keepdim=True)
    alpha = ((estimate * target).sum(-1, keepdim=True) + eps) / ((target ** 2).sum(-1, keepdim=True) + eps)
    scaled = alpha * target                                          # (..., N)
    num = (scaled ** 2).sum(-1) + eps                                # (...)
    den = ((scaled - estimate) ** 2).sum(-1) + eps                   # (...)
    return 10.0 * torch.log10(num / den)


def snr(estimate: torch.Tensor, target: torch.Tensor, *, eps: float = _EPS) -> torch.Tensor:
    """Plain SNR ``10·log10(‖s‖² / ‖s − ŝ‖²)`` in dB over the last axis (not scale invariant).

    Args:
        estimate: ``(..., N)``.
        target: ``(..., N)``.

    Returns:
        ``(...)`` SNR in dB.
    """
    if estimate.shape != target.shape:
        raise ValueError(f"estimate {tuple(estimate.shape)} and target {tuple(target.shape)} differ")
    num = (target ** 2).sum(-1) + eps
    den = ((target - estimate) ** 2).sum(-1) + eps
    return 10.0 * torch.log10(num / den)


def sa_sdr(estimate: torch.Tensor, target: torch.Tensor, *, eps: float = _EPS) -> torch.Tensor:
    """Source-aggregated SDR (docs/spec.md §4): one ratio over all slots of a sample, slot order as given.

    ``SA-SDR = 10·log10( Σ_j ‖s_j‖² / Σ_j ‖s_j − ŝ_j‖² )``. Silent (zero-padded) target slots are fine:
    they add nothing to the numerator and their estimate's energy to the denominator.

    Args:
        estimate: ``(B, J, ...)``.
        target: ``(B, J, ...)``.

    Returns:
        ``(B,)`` SA-SDR in dB.
    """
    if estimate.shape != target.shape:
        raise ValueError(f"estimate {tuple(estimate.shape)} and target {tuple(target.shape)} differ")
    num = (target ** 2).flatten(1).sum(-1) + eps                     # (B,)
    den = ((target - estimate) ** 2).flatten(1).sum(-1) + eps        # (B,)
    return 10.0 * torch.log10(num / den)


def neg_si_sdr(estimate: torch.Tensor, target: torch.Tensor, **kw) -> torch.Tensor:
    """``−si_sdr``: ``(..., N), (..., N) → (...)``."""
    return -si_sdr(estimate, target, **kw)


def neg_snr(estimate: torch.Tensor, target: torch.Tensor, **kw) -> torch.Tensor:
    """``−snr``: ``(..., N), (..., N) → (...)``."""
    return -snr(estimate, target, **kw)


def neg_sa_sdr(estimate: torch.Tensor, target: torch.Tensor, **kw) -> torch.Tensor:
    """``−sa_sdr`` in the given slot order: ``(B, J, ...), (B, J, ...) → (B,)``."""
    return -sa_sdr(estimate, target, **kw)


# ------------------------------------------------------------------------------------------------
# Pairwise loss matrices  [b, target t, estimate e]
# ------------------------------------------------------------------------------------------------
def _pairs(estimate: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Broadcast ``(B, J, ...)`` pairs to ``(B, J_t, J_e, L)`` with the trailing axes flattened."""
    if estimate.shape[0] != target.shape[0] or estimate.shape[2:] != target.shape[2:]:
        raise ValueError(f"estimate {tuple(estimate.shape)} and target {tuple(target.shape)} do not pair")
    est = estimate.flatten(2).unsqueeze(1)                           # (B, 1, J_e, L)
    tgt = target.flatten(2).unsqueeze(2)                             # (B, J_t, 1, L)
    return est, tgt


def pairwise_neg_si_sdr(estimate: torch.Tensor, target: torch.Tensor, **kw) -> torch.Tensor:
    """Matrix of ``−SI-SDR(ŝ_e, s_t)``.

    Args:
        estimate: ``(B, J, ...)`` (trailing axes are concatenated into one signal).
        target: ``(B, J, ...)``.

    Returns:
        ``(B, J_t, J_e)``.
    """
    est, tgt = _pairs(estimate, target)
    est, tgt = torch.broadcast_tensors(est, tgt)                     # (B, J_t, J_e, L)
    return neg_si_sdr(est, tgt, **kw)


def pairwise_neg_snr(estimate: torch.Tensor, target: torch.Tensor, **kw) -> torch.Tensor:
    """Matrix of ``−SNR(ŝ_e, s_t)``: ``(B, J, ...), (B, J, ...) → (B, J_t, J_e)``."""
    est, tgt = _pairs(estimate, target)
    est, tgt = torch.broadcast_tensors(est, tgt)                     # (B, J_t, J_e, L)
    return neg_snr(est, tgt, **kw)


def pairwise_squared_error(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Matrix of ``‖s_t − ŝ_e‖²`` (the building block of SA-SDR PIT).

    Computed as ``‖s_t‖² + ‖ŝ_e‖² − 2<s_t, ŝ_e>`` so that memory stays ``O(B·J·L)`` rather than
    ``O(B·J²·L)``; clamped at 0 against round-off.

    Args:
        estimate: ``(B, J, ...)``.
        target: ``(B, J, ...)``.

    Returns:
        ``(B, J_t, J_e)``.
    """
    est = estimate.flatten(2)                                        # (B, J_e, L)
    tgt = target.flatten(2)                                          # (B, J_t, L)
    cross = torch.einsum("btl,bel->bte", tgt, est)                   # (B, J_t, J_e)
    e_tgt = (tgt ** 2).sum(-1).unsqueeze(2)                          # (B, J_t, 1)
    e_est = (est ** 2).sum(-1).unsqueeze(1)                          # (B, 1, J_e)
    return (e_tgt + e_est - 2.0 * cross).clamp_min(0.0)


# ------------------------------------------------------------------------------------------------
# Permutation search
# ------------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _all_permutations(n: int) -> np.ndarray:
    """All ``n!`` permutations of ``range(n)`` as an ``(n!, n)`` int64 array (cached)."""
    return np.array(list(itertools.permutations(range(n))), dtype=np.int64).reshape(-1, n)


def permutation_cost(loss_matrix: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Sum of ``loss_matrix[b, t, perm[b, t]]`` over ``t``: ``(B, J, J), (B, J) → (B,)`` (differentiable)."""
    picked = torch.gather(loss_matrix, 2, perm.unsqueeze(-1)).squeeze(-1)   # (B, J_t)
    return picked.sum(-1)


def find_best_permutation(loss_matrix: torch.Tensor, *, method: str = "auto"
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Assignment of estimates to targets with the smallest summed pairwise loss.

    Args:
        loss_matrix: ``(B, J, J)``, ``[b, target t, estimate e]``.
        method: ``"auto"`` (exhaustive for ``J ≤ EXHAUSTIVE_MAX_SOURCES``, Hungarian beyond),
            ``"exhaustive"`` or ``"hungarian"``.

    Returns:
        ``(min_cost, perm)``: ``min_cost (B,)`` = ``Σ_t loss_matrix[b, t, perm[b, t]]``, differentiable
        w.r.t. ``loss_matrix``; ``perm (B, J)`` int64 on the same device, ``perm[b, t]`` = estimate slot
        for target ``t``.

    Example::

        >>> m = torch.tensor([[[5., 0., 9.], [0., 5., 9.], [9., 9., 1.]]])   # (1, 3, 3)
        >>> cost, perm = find_best_permutation(m)
        >>> cost.tolist(), perm.tolist()
        ([1.0], [[1, 0, 2]])
    """
    if loss_matrix.dim() != 3 or loss_matrix.shape[1] != loss_matrix.shape[2]:
        raise ValueError(f"loss_matrix must be (B, J, J), got {tuple(loss_matrix.shape)}")
    B, J, _ = loss_matrix.shape
    if method == "auto":
        method = "exhaustive" if J <= EXHAUSTIVE_MAX_SOURCES else "hungarian"
    if method == "exhaustive":
        perms = torch.as_tensor(_all_permutations(J), device=loss_matrix.device)   # (P, J)
        rows = torch.arange(J, device=loss_matrix.device)
        costs = loss_matrix[:, rows, perms].sum(-1)                   # (B, P): [:, t, perms[p, t]] summed over t
        best = costs.detach().argmin(dim=1)                           # (B,)
        perm = perms[best]                                            # (B, J)
    elif method == "hungarian":
        mats = loss_matrix.detach().to("cpu", torch.float64).numpy()  # (B, J, J)
        perm_np = np.empty((B, J), dtype=np.int64)
        for b in range(B):
            rows, cols = linear_sum_assignment(mats[b])               # rows == arange(J)
            perm_np[b, rows] = cols
        perm = torch.as_tensor(perm_np, device=loss_matrix.device)    # (B, J)
    else:
        raise ValueError(f"unknown method {method!r}")
    return permutation_cost(loss_matrix, perm), perm


def apply_permutation(tensor: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Reorder the slot axis of a ``(B, J, ...)`` tensor: ``out[b, t] = tensor[b, perm[b, t]]``.

    Args:
        tensor: ``(B, J, ...)`` any dtype (audio, logits, SED, DoA, ...).
        perm: ``(B, J)`` int64 from :func:`find_best_permutation`.

    Returns:
        ``(B, J, ...)`` aligned with the targets.
    """
    if tensor.shape[:2] != perm.shape:
        raise ValueError(f"tensor {tuple(tensor.shape)} does not start with perm shape {tuple(perm.shape)}")
    batch = torch.arange(perm.shape[0], device=perm.device).unsqueeze(1)   # (B, 1)
    return tensor[batch, perm.to(tensor.device)]


# ------------------------------------------------------------------------------------------------
# PIT losses
# ------------------------------------------------------------------------------------------------
def pit_loss(estimate: torch.Tensor, target: torch.Tensor,
             pairwise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = pairwise_neg_si_sdr,
             *, method: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """PIT for a loss that is a **mean over slots of a pairwise loss** (SI-SDR, SNR, ...).

    Args:
        estimate: ``(B, J, ...)``.
        target: ``(B, J, ...)``.
        pairwise: ``(B, J, ...), (B, J, ...) → (B, J_t, J_e)`` loss matrix.
        method: see :func:`find_best_permutation`.

    Returns:
        ``(loss, perm)``: ``loss (B,)`` = mean over slots of the pairwise loss at the best permutation;
        ``perm (B, J)``.
    """
    matrix = pairwise(estimate, target)                               # (B, J, J)
    cost, perm = find_best_permutation(matrix, method=method)
    return cost / matrix.shape[1], perm


def pit_sa_sdr(estimate: torch.Tensor, target: torch.Tensor, *, method: str = "auto",
               eps: float = _EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """PIT with negative source-aggregated SDR (the ``PIT-SA`` of docs/spec.md §4/§5).

    SA-SDR is *not* a sum of per-pair terms: it is one ratio over all slots,
    ``10·log10(Σ_j‖s_j‖² / Σ_j‖s_j − ŝ_π(j)‖²)``. Its numerator does not depend on the permutation π and
    ``−10·log10(c / x)`` is strictly increasing in ``x``, so the permutation that maximises SA-SDR is
    exactly the one minimising the *sum* of pairwise squared errors ``Σ_j ‖s_j − ŝ_π(j)‖²``. That sum is
    pairwise-additive, so we build the ``(B, J, J)`` matrix of squared errors once, search it (exhaustively
    or with the Hungarian algorithm, both exact), and only then form the ratio for the chosen π.

    Args:
        estimate: ``(B, J, ...)``.
        target: ``(B, J, ...)``; zero-padded (silent) slots allowed.

    Returns:
        ``(loss, perm)``: ``loss (B,)`` = ``−SA-SDR`` at the best permutation (dB); ``perm (B, J)``.
    """
    with torch.no_grad():  # the search needs no gradient; the ratio below is recomputed exactly
        sq_err = pairwise_squared_error(estimate, target)             # (B, J_t, J_e)
        _, perm = find_best_permutation(sq_err, method=method)        # (B, J)
    # The expanded form used for the search loses precision at high SDR in float32, so the loss itself is
    # formed from the directly computed residual of the chosen assignment.
    loss = neg_sa_sdr(apply_permutation(estimate, perm), target, eps=eps)   # (B,)
    return loss, perm
