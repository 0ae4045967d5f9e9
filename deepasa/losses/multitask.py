"""DeepASA training objectives (docs/spec.md §5): the ASA2 multi-task loss, the SELD-only and the USS variants.

The losses work on plain tensors held by any object with the right field names (a dataclass such as
:class:`Estimates` / :class:`Targets`, the model's output dataclass, or a ``dict``), so this module does not
import the model.

Estimate fields (``B`` batch, ``J`` slots, ``M`` mics, ``N`` samples, ``T'`` label frames, ``C`` classes)::

    direct      (B, J, M, N)   direct-path image per slot
    reverb      (B, J, M, N)   reverberant image minus direct path
    noise       (B, M, N)      background-noise estimate (optional)
    cls_logits  (B, J, C)      clip-level class logits
    sed         (B, J, T', C)  frame-level class posteriors (softmax outputs, docs/spec.md §1)
    onoff       (B, J, T')     activity logits
    doa         (B, J, T', 3)  Cartesian DoA (ACCDOA-like norm)

Target fields::

    mixture     (B, M, N)
    direct      (B, J, M, N)   zeros for empty slots
    reverb      (B, J, M, N)
    noise       (B, M, N)      optional; mixture − Σ_j (direct_j + reverb_j) when missing
    cls         (B, J)         int64 class index, −1 for an empty slot
    activity    (B, J, T')     {0, 1}
    doa         (B, J, T', 3)  unit vectors when active, zeros when not
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from deepasa.losses.pit import (
    apply_permutation,
    find_best_permutation,
    pit_sa_sdr,
    sa_sdr,
    si_sdr,
)

__all__ = [
    "Estimates",
    "Targets",
    "LossWeights",
    "LossOutput",
    "class_loss",
    "sed_targets",
    "seld_losses_per_slot",
    "seld_loss_matrix",
    "multitask_loss",
    "seld_loss",
    "uss_loss",
]


@dataclass
class Estimates:
    """Network outputs needed by the losses (field shapes in the module docstring)."""

    direct: torch.Tensor | None = None
    reverb: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    cls_logits: torch.Tensor | None = None
    sed: torch.Tensor | None = None
    onoff: torch.Tensor | None = None
    doa: torch.Tensor | None = None


@dataclass
class Targets:
    """Ground truth needed by the losses (field shapes in the module docstring)."""

    mixture: torch.Tensor | None = None
    direct: torch.Tensor | None = None
    reverb: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    cls: torch.Tensor | None = None
    activity: torch.Tensor | None = None
    doa: torch.Tensor | None = None


@dataclass
class LossWeights:
    """Every weight of the DeepASA objective. Defaults reproduce docs/spec.md §5.1 (ASA2, as intended).

    ``L = image_ref·PIT-SA(ŷ_ref) + direct_ref·PIT-SA(ŷᵈ_ref) + reverb_ref·PIT-SA(ŷʳ_ref)
         + nonref·Σ_{m≠ref}[image·… + direct·… + reverb·…]  − noise·SI-SDR(n̂, n)
         + cls·L_cls + sed·L_sed + doa·L_doa + cos·L_cos + onoff·L_onoff``

    ``cos`` defaults to 0 because §5.1 has no cosine term (the released ASA2 trainer does not use it); the
    SELD fine-tuning recipe (§5.2) sets it to 1, see :meth:`seld`.

    ``onoff_pos_weight`` is not a weight of ``L`` but the positive-class weight inside ``L_onoff``'s BCE
    (``−[w_pos·y·log σ(z) + (1−y)·log(1−σ(z))]``); 1 is §5.1's plain BCE. With one active slot of J = 5 the
    positives are a minority of the on/off frames; ``w_pos`` > 1 moves the head's optimum posterior from ``p``
    to ``w_pos·p / (w_pos·p + 1 − p)`` (docs/notebook/direction-learning.md).
    """

    image_ref: float = 1.0
    direct_ref: float = 1.0
    reverb_ref: float = 1.0
    nonref: float = 0.1
    nonref_image: float = 1.0
    nonref_direct: float = 1.0
    nonref_reverb: float = 1.0
    noise: float = 0.01
    cls: float = 1.0
    sed: float = 1.0
    doa: float = 1.0
    cos: float = 0.0
    onoff: float = 1.0
    onoff_pos_weight: float = 1.0

    @classmethod
    def asa2(cls) -> "LossWeights":
        """docs/spec.md §5.1: all task weights 1, other channels 0.1, noise 0.01, no cosine term."""
        return cls()

    @classmethod
    def seld(cls) -> "LossWeights":
        """docs/spec.md §5.2 (STARSS23 fine-tuning): cls + sed + doa + cos + on/off, all 1; no audio terms."""
        return cls(image_ref=0.0, direct_ref=0.0, reverb_ref=0.0, nonref=0.0, noise=0.0, cos=1.0)


@dataclass
class LossOutput:
    """What every loss here returns.

    Attributes:
        total: scalar tensor to back-propagate.
        components: named scalar tensors (detached) for logging; weighted sums give ``total``.
        perm: ``(B, J)`` int64, the shared (master) permutation, ``perm[b, t]`` = estimate slot for target
            slot ``t`` (see :func:`deepasa.losses.pit.apply_permutation`).
    """

    total: torch.Tensor
    components: dict[str, torch.Tensor] = field(default_factory=dict)
    perm: torch.Tensor | None = None


def _get(obj: Any, name: str, required: bool = True) -> torch.Tensor | None:
    """Field ``name`` from a dataclass/namespace or a mapping."""
    value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
    if value is None and required:
        raise ValueError(f"the loss needs the field {name!r}")
    return value


# ------------------------------------------------------------------------------------------------
# SELD task terms
# ------------------------------------------------------------------------------------------------
def class_loss(logits: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """Per-slot class loss ``CLS(z, c)`` of docs/spec.md §5.1.

    Cross-entropy for ``c ≥ 0``; for an empty slot (``c = −1``) the KL divergence from the uniform
    distribution ``u`` to the posterior, ``Σ_k u_k·log(u_k / softmax(z)_k)``, which pushes an empty slot's
    posterior towards uniform.

    Args:
        logits: ``(..., C)``.
        cls: ``(...)`` int64, −1 for empty.

    Returns:
        ``(...)`` loss per slot.
    """
    log_p = F.log_softmax(logits.float(), dim=-1)                                 # (..., C)
    n_classes = logits.shape[-1]
    ce = -torch.gather(log_p, -1, cls.clamp_min(0).unsqueeze(-1)).squeeze(-1)     # (...)
    log_u = -math.log(n_classes)
    kl_uniform = (math.exp(log_u) * (log_u - log_p)).sum(-1)                      # (...)
    return torch.where(cls >= 0, ce, kl_uniform)


def sed_targets(cls: torch.Tensor, activity: torch.Tensor, n_classes: int) -> torch.Tensor:
    """One-hot-per-active-frame SED targets.

    Args:
        cls: ``(B, J)`` int64, −1 for empty.
        activity: ``(B, J, T')`` {0, 1}.
        n_classes: ``C``.

    Returns:
        ``(B, J, T', C)`` float: ``activity[b, j, t] · onehot(cls[b, j])``.
    """
    onehot = F.one_hot(cls.clamp_min(0), n_classes).to(activity.dtype if activity.is_floating_point()
                                                       else torch.float32)       # (B, J, C)
    onehot = onehot * (cls >= 0).unsqueeze(-1)                                    # empty slots → 0
    return activity.float().unsqueeze(-1) * onehot.unsqueeze(2)                   # (B, J, T', C)


def seld_losses_per_slot(est: Any, tgt: Any, onoff_pos_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """The SELD terms per (sample, slot), slots already aligned.

    Args:
        est: fields ``cls_logits (B,J,C)``, ``sed (B,J,T',C)``, ``onoff (B,J,T')``, ``doa (B,J,T',3)``.
        tgt: fields ``cls (B,J)``, ``activity (B,J,T')``, ``doa (B,J,T',3)``.
        onoff_pos_weight: the BCE's weight of active frames (:class:`LossWeights`; 1 = plain BCE).

    Returns:
        dict of ``(B, J)`` tensors: ``cls``, ``sed`` (MSE), ``doa`` (MSE), ``cos``
        (``1 − mean_t cos·1[active]``) and ``onoff`` (BCE with target ``1[‖doa_label‖ > 0.5]``).
    """
    logits = _get(est, "cls_logits")
    sed = _get(est, "sed").float()
    onoff = _get(est, "onoff").float()
    doa = _get(est, "doa").float()
    cls = _get(tgt, "cls").long()
    activity = _get(tgt, "activity").float()
    doa_label = _get(tgt, "doa").float()

    sed_label = sed_targets(cls, activity, logits.shape[-1])                      # (B, J, T', C)
    active = (doa_label.norm(dim=-1) > 0.5).float()                               # (B, J, T')
    cosine = F.cosine_similarity(doa, doa_label, dim=-1, eps=1e-8)                # (B, J, T')
    return {
        "cls": class_loss(logits, cls),                                           # (B, J)
        "sed": ((sed - sed_label) ** 2).mean(dim=(-2, -1)),                       # (B, J)
        "doa": ((doa - doa_label) ** 2).mean(dim=(-2, -1)),                       # (B, J)
        "cos": 1.0 - (cosine * active).mean(dim=-1),                              # (B, J)
        "onoff": F.binary_cross_entropy_with_logits(                              # (B, J)
            onoff, active, reduction="none",
            pos_weight=None if onoff_pos_weight == 1.0 else onoff.new_tensor(onoff_pos_weight)).mean(-1),
    }


def _weighted_seld(parts: dict[str, torch.Tensor], w: LossWeights) -> torch.Tensor:
    """``Σ_k w_k · parts[k]`` over the five SELD terms (any common shape)."""
    return (w.cls * parts["cls"] + w.sed * parts["sed"] + w.doa * parts["doa"]
            + w.cos * parts["cos"] + w.onoff * parts["onoff"])


# ------------------------------------------------------------------------------------------------
# ASA2 multi-task loss (docs/spec.md §5.1)
# ------------------------------------------------------------------------------------------------
def multitask_loss(est: Any, tgt: Any, weights: LossWeights | None = None, *, ref_channel: int = 0,
                   aux_own_permutation: bool = True, master: str = "image", method: str = "auto") -> LossOutput:
    """The DeepASA ASA2 multi-task loss of docs/spec.md §5.1, *as intended*.

    * Master permutation π*: PIT with −SA-SDR on the **reference-channel full image** (direct + reverb).
    * The direct and reverb terms on the reference channel and the three terms on every **other** channel
      ``m ∈ {0..M−1} \\ {ref}`` (the released code's ``range(0, M−1)`` off-by-one, which re-used the reference
      and skipped the last mic, is fixed) each get their own PIT (``aux_own_permutation=True``, as the
      released trainer) or reuse π* (``False``).
    * Noise: ``−SI-SDR(n̂, n)`` over all channels, mean over batch and channels, weight 0.01.
    * Class, SED, DoA (MSE and, if weighted, cosine) and on/off terms use π*: one assignment for every head.

    Args:
        est: estimate fields (module docstring); ``noise`` may be ``None`` (the noise term is then skipped).
        tgt: target fields.
        weights: :class:`LossWeights` (default docs/spec.md §5.1).
        ref_channel: reference mic.
        aux_own_permutation: independent PIT for the auxiliary separation terms.
        master: ``"image"`` (docs/spec.md §4: π* from −SA-SDR of the reference-channel image) or ``"seld"``
            (π* from the SELD pair losses, as :func:`seld_loss`; the image term is then scored under π*).
        method: permutation search, see :func:`deepasa.losses.pit.find_best_permutation`.

    Returns:
        :class:`LossOutput` with ``total`` (scalar), ``components`` and ``perm (B, J)`` = π*.
    """
    w = weights or LossWeights()
    # Losses in float32 even when the network runs under bf16 autocast (docs/spec.md §5.1).
    direct, reverb = _get(est, "direct").float(), _get(est, "reverb").float()     # (B, J, M, N)
    t_direct, t_reverb = _get(tgt, "direct").float(), _get(tgt, "reverb").float() # (B, J, M, N)
    image, t_image = direct + reverb, t_direct + t_reverb                         # (B, J, M, N)
    n_mics = image.shape[2]
    if not 0 <= ref_channel < n_mics:
        raise ValueError(f"ref_channel {ref_channel} out of range for {n_mics} channels")

    comps: dict[str, torch.Tensor] = {}

    if master == "image":  # docs/spec.md §4: π* from the reference-channel full image
        loss_img_ref, perm = pit_sa_sdr(image[:, :, ref_channel], t_image[:, :, ref_channel], method=method)
    elif master == "seld":
        with torch.no_grad():
            _, perm = find_best_permutation(seld_loss_matrix(est, tgt, w)[0], method=method)
        loss_img_ref = -sa_sdr(apply_permutation(image[:, :, ref_channel], perm), t_image[:, :, ref_channel])
    else:
        raise ValueError(f"master must be 'image' or 'seld', not {master!r}")

    def sep_term(e: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Batch-mean −SA-SDR of ``(B, J, N)`` signals, own PIT or π*."""
        if aux_own_permutation:
            return pit_sa_sdr(e, t, method=method)[0].mean()
        return -sa_sdr(apply_permutation(e, perm), t).mean()

    comps["image_ref"] = loss_img_ref.mean()
    comps["direct_ref"] = sep_term(direct[:, :, ref_channel], t_direct[:, :, ref_channel])
    comps["reverb_ref"] = sep_term(reverb[:, :, ref_channel], t_reverb[:, :, ref_channel])
    total = (w.image_ref * comps["image_ref"] + w.direct_ref * comps["direct_ref"]
             + w.reverb_ref * comps["reverb_ref"])

    others = [m for m in range(n_mics) if m != ref_channel]
    if others and w.nonref:
        nonref = image.new_zeros(())
        for m in others:
            nonref = nonref + (w.nonref_image * sep_term(image[:, :, m], t_image[:, :, m])
                               + w.nonref_direct * sep_term(direct[:, :, m], t_direct[:, :, m])
                               + w.nonref_reverb * sep_term(reverb[:, :, m], t_reverb[:, :, m]))
        comps["nonref"] = nonref
        total = total + w.nonref * nonref

    noise = _get(est, "noise", required=False)
    if noise is not None and w.noise:
        t_noise = _get(tgt, "noise", required=False)
        if t_noise is None:
            t_noise = _get(tgt, "mixture") - t_image.sum(1)                       # (B, M, N)
        comps["noise"] = -si_sdr(noise.float(), t_noise.float()).mean()
        total = total + w.noise * comps["noise"]

    aligned = {k: apply_permutation(_get(est, k), perm) for k in ("cls_logits", "sed", "onoff", "doa")}
    parts = seld_losses_per_slot(aligned, tgt, w.onoff_pos_weight)                # each (B, J)
    for k, v in parts.items():
        comps[k] = v.mean()
    total = total + _weighted_seld({k: comps[k] for k in parts}, w)

    return LossOutput(total=total, components={k: v.detach() for k, v in comps.items()}, perm=perm)


# ------------------------------------------------------------------------------------------------
# SELD-only variant (docs/spec.md §5.2)
# ------------------------------------------------------------------------------------------------
def seld_loss_matrix(est: Any, tgt: Any, weights: LossWeights) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted SELD loss of every (target slot, estimate slot) pair.

    Args:
        est: fields ``cls_logits (B,J,C)``, ``sed (B,J,T',C)``, ``onoff (B,J,T')``, ``doa (B,J,T',3)``.
        tgt: fields ``cls (B,J)``, ``activity (B,J,T')``, ``doa (B,J,T',3)``.
        weights: the SELD weights used (``cls``, ``sed``, ``doa``, ``cos``, ``onoff``).

    Returns:
        ``(matrix, parts)``: ``matrix (B, J_t, J_e)`` weighted sum; ``parts`` the five unweighted terms,
        each ``(B, J_t, J_e)``.
    """
    logits = _get(est, "cls_logits")
    B, J = logits.shape[:2]
    # Pair every target slot t with every estimate slot e: a new target axis on the estimates and a new
    # estimate axis on the targets, then fold (B, J_t) into one batch axis.
    est_pairs = {k: _get(est, k).unsqueeze(1).expand(B, J, *_get(est, k).shape[1:]).flatten(0, 1)
                 for k in ("cls_logits", "sed", "onoff", "doa")}                  # each (B·J_t, J_e, ...)
    tgt_pairs = {k: _get(tgt, k).unsqueeze(2).expand(B, J, J, *_get(tgt, k).shape[2:]).flatten(0, 1)
                 for k in ("cls", "activity", "doa")}                             # each (B·J_t, J_e, ...)
    parts = {k: v.view(B, J, J)                                                   # each (B, J_t, J_e)
             for k, v in seld_losses_per_slot(est_pairs, tgt_pairs, weights.onoff_pos_weight).items()}
    return _weighted_seld(parts, weights), parts


def seld_loss(est: Any, tgt: Any, weights: LossWeights | None = None, *, method: str = "auto") -> LossOutput:
    """SELD-only objective with the permutation chosen from the SELD loss itself (docs/spec.md §5.2).

    For data without isolated sources (STARSS23). The per-slot loss
    ``w_cls·CLS + w_sed·MSE(sed) + w_doa·MSE(doa) + w_cos·L_cos + w_onoff·BCE(onoff)`` is
    pairwise-additive over slots, so the ``(B, J_t, J_e)`` matrix of per-pair losses is computed once and
    the permutation minimising its slot mean is found exactly (exhaustive search over all J! permutations,
    as the released ``FineTuning_SELD``, for ``J ≤ 6``; Hungarian beyond). The batch mean of that minimum is
    the loss.

    Args:
        est: fields ``cls_logits``, ``sed``, ``onoff``, ``doa`` (module docstring).
        tgt: fields ``cls``, ``activity``, ``doa``.
        weights: default :meth:`LossWeights.seld`.
        method: permutation search.

    Returns:
        :class:`LossOutput` (``perm`` is the SELD-chosen permutation, to reorder the audio outputs too).
    """
    w = weights or LossWeights.seld()
    matrix, parts = seld_loss_matrix(est, tgt, w)                                 # (B, J, J)
    cost, perm = find_best_permutation(matrix, method=method)
    J = matrix.shape[1]
    comps = {k: apply_permutation_matrix(v, perm).mean() for k, v in parts.items()}
    total = (cost / J).mean()
    return LossOutput(total=total, components={k: v.detach() for k, v in comps.items()}, perm=perm)


def apply_permutation_matrix(matrix: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Pick ``matrix[b, t, perm[b, t]]``: ``(B, J, J), (B, J) → (B, J)``."""
    return torch.gather(matrix, 2, perm.unsqueeze(-1)).squeeze(-1)


# ------------------------------------------------------------------------------------------------
# USS variant (docs/spec.md §5.3)
# ------------------------------------------------------------------------------------------------
def uss_loss(sources: torch.Tensor, noise: torch.Tensor | None, target_sources: torch.Tensor,
             target_noise: torch.Tensor | None, *, ref_channel: int = 0, noise_weight: float = 0.01,
             method: str = "auto") -> LossOutput:
    """MC-FUSS separation objective ``PIT-SA(ŷ_ref, y_ref) − 0.01·SI-SDR(n̂_ref, n_ref)`` (docs/spec.md §5.3).

    Args:
        sources: ``(B, J, N)`` reference-channel estimates, or ``(B, J, M, N)`` (the reference channel is taken).
        noise: ``(B, N)`` or ``(B, M, N)`` noise estimate, or ``None`` to skip the noise term.
        target_sources: same layout as ``sources``; absent sources zero-padded.
        target_noise: same layout as ``noise``.
        ref_channel: used when 4-D / 3-D multichannel tensors are given.
        noise_weight: weight of ``−SI-SDR`` of the noise.

    Returns:
        :class:`LossOutput` with ``components`` ``sep`` and ``noise`` and ``perm (B, J)``.
    """
    sources, target_sources = sources.float(), target_sources.float()
    if sources.dim() == 4:
        sources, target_sources = sources[:, :, ref_channel], target_sources[:, :, ref_channel]   # (B, J, N)
    sep, perm = pit_sa_sdr(sources, target_sources, method=method)
    comps = {"sep": sep.mean()}
    total = comps["sep"]
    if noise is not None and target_noise is not None and noise_weight:
        if noise.dim() == 3:
            noise, target_noise = noise[:, ref_channel], target_noise[:, ref_channel]           # (B, N)
        comps["noise"] = -si_sdr(noise.float(), target_noise.float()).mean()
        total = total + noise_weight * comps["noise"]
    return LossOutput(total=total, components={k: v.detach() for k, v in comps.items()}, perm=perm)
