"""The activity decision rule, once (docs/spec.md §1; docs/model.md deviations 17–19), below the metrics layer.

:class:`DecisionRule` holds its three values (a model carries one as ``DeepASA.decision_rule``, apart from its
architecture, :class:`~deepasa.model.configs.DeepASAConfig`; :func:`split_decision` reads the rule of files
written before it left the config); :func:`frame_activity` is the rule — a slot is active in a frame where its
on/off probability exceeds ``onoff_threshold`` and its ‖doa‖ exceeds ``doa_threshold`` — and
:func:`merge_duplicates` its optional duplicate half. :meth:`DeepASA.decide <deepasa.model.deepasa.DeepASA.decide>`,
the CoI step's hard SED map, :func:`deepasa.metrics.seld_frame.activity_decisions` and ``deepasa analyze``'s
stitching all call them, so a model, its evaluation and its report apply one rule.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from deepasa.errors import DeepASAError

__all__ = ["DecisionRule", "LEGACY_KEYS", "frame_activity", "merge_duplicates", "split_decision"]

#: The config keys that held the rule before it left :class:`~deepasa.model.configs.DeepASAConfig` (issue 38):
#: old name -> :class:`DecisionRule` field. Stored configs of older files carry them (``checkpoints/default.pt``:
#: ``detect_onoff: 0.8, detect_doa_norm: 0.15``); :func:`split_decision` reads them into a rule.
LEGACY_KEYS: dict[str, str] = {"detect_onoff": "onoff", "detect_doa_norm": "doa_norm", "detect_merge_deg": "merge_deg"}


def _check(values: dict[str, Any], names: dict[str, str]) -> None:
    """Raise :class:`DeepASAError` (one line) where a rule value is not a number or out of its range.

    ``values``: field -> value (``onoff``, ``doa_norm``, ``merge_deg``, any subset); ``names``: field -> the name
    the message uses (the field itself, or the old config key the value came under).
    """
    for f, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise DeepASAError(f"invalid decision rule: {names[f]} must be a number, got {v!r}")
    ranges = {"onoff": (lambda v: 0.0 < v < 1.0, "need 0 < {} < 1"),
              "doa_norm": (lambda v: 0.0 <= v < 1.0, "need 0 <= {} < 1"),
              "merge_deg": (lambda v: 0.0 <= v <= 180.0, "need 0 <= {} <= 180")}
    for f, v in values.items():
        ok, msg = ranges[f]
        if not ok(v):
            raise DeepASAError(f"invalid decision rule: {msg.format(names[f])}, got {v!r}")


@dataclass(frozen=True)
class DecisionRule:
    """The activity decision of a model's outputs: which slot is an active object in which label frame.

    A slot is active in a frame where ``sigmoid(onoff) > onoff`` and, when ``doa_norm > 0``, ‖doa‖ > ``doa_norm``;
    with ``merge_deg > 0``, a slot of the same clip class as a slot with a higher on/off output and a DoA within
    ``merge_deg`` degrees in that frame is not (:func:`frame_activity`, :func:`merge_duplicates`). The defaults
    are the paper's rule, docs/spec.md §1 (on/off > 0.5 and ‖doa‖ > 0.5, no merge); docs/model.md deviations
    17–19 say why each value can differ (``doa_norm = 0``: the STARSS23 code's on/off rule; ``onoff``: a model
    trained with an on/off positive-class weight w calls a posterior of 0.5 at w / (1 + w); ``merge_deg``: the
    duplicate merge).

    It changes no weight, so it is not part of :class:`~deepasa.model.configs.DeepASAConfig` (the architecture):
    a :class:`~deepasa.model.DeepASA` carries one as ``decision_rule``, ``DeepASA.save`` stores it in the file's
    ``meta["decision_rule"]`` (a ``deepasa train`` checkpoint: ``ckpt["deepasa_decision"]``), and files written
    before it was split off hold it as the config keys of :data:`LEGACY_KEYS` (:func:`split_decision`).

    Attributes:
        onoff: on/off probability threshold, ``0 < onoff < 1`` (docs/spec.md §1: 0.5).
        doa_norm: ‖doa‖ threshold, ``0 <= doa_norm < 1`` (0.5; 0 = the on/off output alone).
        merge_deg: duplicate-merge angle in degrees, ``0 <= merge_deg <= 180`` (0 = no merge).

    >>> DecisionRule(onoff=0.8, doa_norm=0.15).to_dict()
    {'onoff': 0.8, 'doa_norm': 0.15, 'merge_deg': 0.0}
    """

    onoff: float = 0.5
    doa_norm: float = 0.5
    merge_deg: float = 0.0

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        _check(values, {k: k for k in values})
        for k, v in values.items():                                   # ints (YAML's 0) are stored as floats
            object.__setattr__(self, k, float(v))

    def to_dict(self) -> dict[str, float]:
        """``{"onoff", "doa_norm", "merge_deg"}``, for checkpoints, recipes and reports."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DecisionRule":
        """Build from a mapping of (some of) the fields; the others keep their defaults.

        Raises:
            DeepASAError: not a mapping, an unknown key, or an invalid value.
        """
        if isinstance(d, DecisionRule):
            return d
        if not isinstance(d, dict):
            raise DeepASAError(f"decision rule must be a mapping of onoff, doa_norm, merge_deg; got {type(d).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise DeepASAError(f"unknown decision rule key(s): {', '.join(map(str, unknown))} "
                               f"(valid: {', '.join(known)})")
        return cls(**d)

    def replace(self, **changes: Any) -> "DecisionRule":
        """A copy with some fields changed; unknown keys raise :class:`DeepASAError`."""
        return DecisionRule.from_dict({**self.to_dict(), **changes})


def split_decision(d: dict[str, Any]) -> tuple[dict[str, Any], DecisionRule | None]:
    """Split the rule's old config keys (:data:`LEGACY_KEYS`) off a stored config or a set of overrides.

    Args:
        d: a mapping of config fields, perhaps with ``detect_onoff``, ``detect_doa_norm``, ``detect_merge_deg``.
    Returns:
        ``(d without those keys, the rule they give)``: a new dict; the rule is None where ``d`` has none of them,
        else a :class:`DecisionRule` of their values with the defaults (the defaults those config fields had)
        for the missing ones.
    Raises:
        DeepASAError: a value that is not a number or out of range (the message names the old key).
    """
    if not isinstance(d, dict):
        return d, None
    rest = {k: v for k, v in d.items() if k not in LEGACY_KEYS}
    given = {LEGACY_KEYS[k]: v for k, v in d.items() if k in LEGACY_KEYS}
    if not given:
        return rest, None
    _check(given, {v: k for k, v in LEGACY_KEYS.items()})
    return rest, DecisionRule(**given)


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
