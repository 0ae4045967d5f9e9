"""DeepASA's **frame-level object** SELD metrics (docs/spec.md §8) — the numbers in the paper's tables.

These are *not* the official DCASE metrics (see :mod:`deepasa.metrics.seld_dcase`): they are computed per
100-ms label frame and per object slot after PIT, with no 1-s segmentation and no per-class Hungarian
association, and LE covers every reference-active (slot, frame) whether detected or not.

Inputs, for ``B`` clips, ``S`` slots, ``T`` label frames, ``C`` classes::

    sed_out    (B, S, T, C)  binary decisions (see :func:`seld_decisions`)
    sed_label  (B, S, T, C)  binary one-hot-per-active-frame labels (see :func:`deepasa.losses.sed_targets`)
    doa_out    (B, S, T, 3)
    doa_label  (B, S, T, 3)  unit vectors when active, zeros when not

Per element: ``TP = o·l``, ``FP = o·(1−l)``, ``FN = (1−o)·l``; per (slot, frame) the angle ``θ`` between
``doa_out`` and ``doa_label``; ``TP20 = TP·1[θ ≤ 20°]``, ``FP20 = FP + TP − TP20``.

* ``ER = (ΣFP20 + ΣFN) / (ΣTP + ΣFN)`` (a wrong class is one FP and one FN);
* micro ``F1 = 2·ΣTP20 / (2·ΣTP + ΣFP + ΣFN)``; class-macro: ``P_c = TP20_c/(TP20_c + FP20_c)``,
  ``R_c = TP20_c/(TP_c + FN_c)``, ``F1_c = 2P_cR_c/(P_c + R_c)``, mean over classes;
* micro ``LE`` = mean ``θ`` over the (slot, frame) pairs with ``‖doa_label‖ > 0.5``; class-macro: per class
  over the frames labelled with it, then the mean over classes;
* ``LR = ΣTP/(ΣTP + ΣFN)`` (macro: mean of per-class values);
* ``SELD = (ER + (1 − F1) + LE/180 + (1 − LR)) / 4``.

ER, F1 and LR are returned as fractions and LE in degrees. Like the released ``SELD_metrics_c``, the
class-macro mean runs over **all** ``C`` classes by default; a class with no reference frames then counts
F1 = 0, LR = 0 and LE = 0 (``macro_classes="present"`` averages over the classes that occur in the labels
instead). Statistics are accumulated as sums (:class:`FrameSELDStats`), so pooling over batches equals
computing on the concatenation (the STARSS23 protocol); the ASA2 protocol averaged per-batch values instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from deepasa.model.decision import frame_activity, merge_duplicates

__all__ = ["FrameSELDStats", "frame_seld_metrics", "seld_score", "seld_decisions", "activity_decisions",
           "merge_duplicates", "angular_error_deg"]

_EPS = 1e-8
_DOA_THRESHOLD_DEG = 20.0


def seld_score(er: float, f1: float, le_deg: float, lr: float) -> float:
    """``(ER + (1 − F1) + LE/180 + (1 − LR)) / 4`` with ER, F1, LR as fractions and LE in degrees.

    >>> round(seld_score(0.257, 0.740, 16.8, 0.783), 3)   # ASA2, DeepASA + CoI (docs/spec.md §8)
    0.207
    """
    return (er + (1.0 - f1) + le_deg / 180.0 + (1.0 - lr)) / 4.0


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def angular_error_deg(doa_out, doa_label) -> np.ndarray:
    """Angle in degrees between two vector fields; a zero vector counts as orthogonal (90°).

    Args:
        doa_out: ``(..., 3)``.
        doa_label: ``(..., 3)``.

    Returns:
        ``(...)`` in ``[0, 180]``.
    """
    a, b = _np(doa_out), _np(doa_label)
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0)))


def activity_decisions(onoff_logits, doa, doa_threshold: float = 0.5, onoff_threshold: float = 0.5,
                       cls_logits=None, merge_deg: float = 0.0) -> np.ndarray:
    """Frame activity of each slot (docs/spec.md §1, and the duplicate merge of deviation 19).

    ``active[j, t] = sigmoid(onoff[j, t]) > onoff_threshold and ‖doa[j, t]‖ > doa_threshold``. ``0.5`` and
    ``0.5`` are the ASA protocol; ``doa_threshold = 0`` decides on the on/off output alone, as the STARSS23 code
    does. With ``merge_deg > 0`` (and ``cls_logits``), :func:`merge_duplicates` then clears, frame by frame, a
    slot of the same clip class as a slot with a higher on/off output and a DoA within ``merge_deg``. A model's
    own rule is its ``decision_rule`` (``onoff``, ``doa_norm``, ``merge_deg``; deepasa.model.decision.DecisionRule).

    Args:
        onoff_logits: ``(..., J, T)``.
        doa: ``(..., J, T, 3)``.
        doa_threshold: the ‖doa‖ threshold (``>= 0``; ``0`` = on/off only).
        onoff_threshold: the on/off probability threshold (``0 < p < 1``).
        cls_logits: ``(..., J, C)`` clip class logits; needed when ``merge_deg > 0``.
        merge_deg: the duplicate-merge angle in degrees (``0`` = no merge, docs/spec.md §1).

    Returns:
        ``(..., J, T)`` bool.
    """
    logits = _np(onoff_logits)
    active = frame_activity(logits, _np(doa), onoff_threshold, doa_threshold)  # the rule (deepasa.model.decision)
    if merge_deg > 0.0:
        if cls_logits is None:
            raise ValueError("merge_deg > 0 needs the clip class logits")
        active = merge_duplicates(active, _np(cls_logits).argmax(-1), doa, logits, merge_deg)
    return active


def seld_decisions(cls_logits, onoff_logits, doa, *, doa_threshold: float = 0.5,
                   onoff_threshold: float = 0.5, merge_deg: float = 0.0) -> np.ndarray:
    """Binary SED decisions of docs/spec.md §1 from the model outputs.

    ``active`` is :func:`activity_decisions` (on/off and, where ``doa_threshold > 0``, ‖doa‖ > ``doa_threshold``);
    ``class[j] = argmax cls_logits[j]``.

    Args:
        cls_logits: ``(B, S, C)``.
        onoff_logits: ``(B, S, T)``.
        doa: ``(B, S, T, 3)``.
        doa_threshold: ‖doa‖ threshold of the activity decision (0.5: ASA protocol; 0: STARSS23, on/off only).
        onoff_threshold: on/off probability threshold of the activity decision (0.5: both protocols).
        merge_deg: duplicate-merge angle of the activity decision (0: both protocols; :func:`merge_duplicates`).

    Returns:
        ``(B, S, T, C)`` float64 in {0, 1}.
    """
    logits = _np(cls_logits)
    active = activity_decisions(onoff_logits, doa, doa_threshold, onoff_threshold, logits, merge_deg)  # (B, S, T)
    onehot = np.eye(logits.shape[-1])[logits.argmax(-1)]            # (B, S, C)
    return active[..., None] * onehot[:, :, None, :]                # (B, S, T, C)


@dataclass
class FrameSELDStats:
    """Running sums for the frame-level metrics; ``update`` per batch, ``compute`` at the end."""

    n_classes: int
    tp: np.ndarray = field(init=False)
    fp: np.ndarray = field(init=False)
    fn: np.ndarray = field(init=False)
    tp20: np.ndarray = field(init=False)
    fp20: np.ndarray = field(init=False)
    angle_sum_c: np.ndarray = field(init=False)
    active_c: np.ndarray = field(init=False)
    angle_sum: float = 0.0
    active: float = 0.0

    def __post_init__(self) -> None:
        for name in ("tp", "fp", "fn", "tp20", "fp20", "angle_sum_c", "active_c"):
            setattr(self, name, np.zeros(self.n_classes))

    def update(self, sed_out, sed_label, doa_out, doa_label) -> None:
        """Add one batch (shapes in the module docstring)."""
        o, lab = _np(sed_out), _np(sed_label)
        if o.shape != lab.shape or o.shape[-1] != self.n_classes:
            raise ValueError(f"sed_out {o.shape} / sed_label {lab.shape} do not match {self.n_classes} classes")
        theta = angular_error_deg(doa_out, doa_label)               # (B, S, T)
        ref_active = np.linalg.norm(_np(doa_label), axis=-1) > 0.5  # (B, S, T)
        tp, fp, fn = o * lab, o * (1 - lab), (1 - o) * lab          # (B, S, T, C)
        tp20 = tp * (theta <= _DOA_THRESHOLD_DEG)[..., None]        # (B, S, T, C)
        fp20 = fp + tp - tp20
        axes = tuple(range(o.ndim - 1))
        self.tp += tp.sum(axes)
        self.fp += fp.sum(axes)
        self.fn += fn.sum(axes)
        self.tp20 += tp20.sum(axes)
        self.fp20 += fp20.sum(axes)
        self.angle_sum_c += (theta[..., None] * lab).sum(axes)
        self.active_c += (ref_active[..., None] * lab).sum(axes)
        self.angle_sum += float((theta * ref_active).sum())
        self.active += float(ref_active.sum())

    def compute(self, average: str = "micro", macro_classes: str = "all") -> dict[str, float]:
        """Metrics from the sums.

        Args:
            average: ``"micro"`` (ASA2 tables) or ``"macro"`` (class-macro F1/LE/LR, STARSS23 table).
            macro_classes: ``"all"`` (as the released code) or ``"present"``.

        Returns:
            ``{"ER", "F", "LE", "LR", "SELD"}`` (fractions, LE in degrees).
        """
        er = (self.fp20.sum() + self.fn.sum()) / (self.tp.sum() + self.fn.sum() + _EPS)
        if average == "micro":
            f1 = 2 * self.tp20.sum() / (2 * self.tp.sum() + self.fp.sum() + self.fn.sum() + _EPS)
            le = self.angle_sum / (self.active + _EPS)
            lr = self.tp.sum() / (self.tp.sum() + self.fn.sum() + _EPS)
        elif average == "macro":
            prec = self.tp20 / (self.tp20 + self.fp20 + _EPS)
            rec = self.tp20 / (self.tp + self.fn + _EPS)
            f1_c = 2 * prec * rec / (prec + rec + _EPS)
            le_c = self.angle_sum_c / (self.active_c + _EPS)
            lr_c = self.tp / (self.tp + self.fn + _EPS)
            if macro_classes == "all":
                keep = np.ones(self.n_classes, dtype=bool)
            elif macro_classes == "present":
                keep = (self.tp + self.fn) > 0
            else:
                raise ValueError(f"macro_classes must be 'all' or 'present', not {macro_classes!r}")
            if not keep.any():
                keep = np.ones(self.n_classes, dtype=bool)
            f1, le, lr = f1_c[keep].mean(), le_c[keep].mean(), lr_c[keep].mean()
        else:
            raise ValueError(f"average must be 'micro' or 'macro', not {average!r}")
        er, f1, le, lr = float(er), float(f1), float(le), float(lr)
        return {"ER": er, "F": f1, "LE": le, "LR": lr, "SELD": seld_score(er, f1, le, lr)}


def frame_seld_metrics(sed_out, sed_label, doa_out, doa_label, *, average: str = "micro",
                       macro_classes: str = "all") -> dict[str, float]:
    """DeepASA frame-level metrics of one pooled set (shapes in the module docstring).

    Returns:
        ``{"ER", "F", "LE", "LR", "SELD"}``: ER/F/LR fractions, LE degrees.
    """
    stats = FrameSELDStats(n_classes=np.shape(sed_out)[-1])
    stats.update(sed_out, sed_label, doa_out, doa_label)
    return stats.compute(average=average, macro_classes=macro_classes)
