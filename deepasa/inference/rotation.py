"""Rotation consistency: a check of the analysis that needs no labels (``deepasa rotation-check``).

Turning the scene about the array turns every source with it and changes nothing else. For the two 4-channel
formats the recording of the turned scene can be made from the recording itself, exactly:

* **FOA** (first-order Ambisonics, ACN/SN3D "AmbiX": W, Y, Z, X). A plane wave from ``u`` gives the gains
  ``(1, u_y, u_z, u_x)`` (:func:`deepasa.audio.geometry.foa_gains`), so the first-order channels are the
  components of a vector and a rotation ``R`` of the scene is ``(X, Y, Z) -> R (X, Y, Z)`` with W unchanged
  (:func:`foa_rotation_matrix`); for every signal, reverberation and diffuse noise included. About the vertical
  axis by θ (axes x front, y left, z up; azimuth counter-clockwise from x, :mod:`deepasa.audio.geometry`):
  ``X' = cos θ X − sin θ Y``, ``Y' = sin θ X + cos θ Y``, W and Z unchanged: a source at azimuth φ moves to
  φ + θ (the matrix of ``deepasa remix --rotate-scene``). :func:`rotations` gives θ = step, 2·step, ... below
  360°.
* **MIC** (the tetrahedral array). The 12 rotations that map the capsule set onto itself
  (:func:`deepasa.model.finder.tetra_symmetries`): the recording of the scene turned by ``R`` is the recording
  with its channels permuted, ``x[σ]``. The three half turns about x, y and z are exact; the eight 120° turns
  about the diagonals are exact up to the capsules' 0.26° offset from a regular tetrahedron (1-2 % of a point
  source's direct path, tests/test_rotation_check.py). :func:`rotations` gives the 11 that are not the identity.

FuMa B-format (W, X, Y, Z; W at −3 dB) is converted to AmbiX first, as ``analyze --foa-convention fuma`` does.

:func:`rotation_consistency` analyses the recording and every rotated copy with the same analysis (by default
the trajectory-first pipeline of ``deepasa analyze``, :func:`pipeline_analyzer`), turns every direction of a
rotated copy back by ``Rᵀ``, pairs the copy's objects with the original's (:func:`match_objects`) and says
how far the two analyses differ: the direction error after undoing the rotation, and whether the same objects
were found (count, pairing), active in the same frames and given the same classes. A perfectly equivariant
analysis scores 0° and 1.0 everywhere; nothing about the true scene is needed.

    report = rotation_consistency(x, 48000, fmt="foa", step_deg=30)   # x: (4, N) AmbiX
    print(report.table()); report.median_error_deg
    deepasa rotation-check rec.wav --format foa --step 30 --json rotation.json
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from deepasa.audio.geometry import FUMA_TO_AMBIX
from deepasa.audio.io import check_format
from deepasa.errors import DeepASAError

__all__ = ["SceneRotation", "FoundObject", "RotationOutcome", "RotationConsistency", "z_rotation",
           "foa_rotation_matrix", "rotate_foa", "rotations", "pipeline_analyzer", "match_objects",
           "rotation_consistency", "detect_format", "MAX_MATCH_DEG"]

#: Pairs of objects whose mean angular distance over their common active frames (after undoing the rotation)
#: is above this are not paired: a rotated run's object that far from every original object counts as a
#: different object (it lowers the matched share), not as a direction error.
MAX_MATCH_DEG = 45.0


# ---------------------------------------------------------------------------------------------- rotations
def z_rotation(theta_deg: float) -> np.ndarray:
    """The rotation by ``theta_deg`` about the vertical axis z (counter-clockwise seen from above).

    Returns:
        (3, 3) float64 ``R`` with ``R @ unit_vector(φ, e) == unit_vector(φ + θ, e)``.
    """
    t = math.radians(theta_deg)
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def foa_rotation_matrix(rotation: np.ndarray) -> np.ndarray:
    """The channel matrix that turns an AmbiX (ACN/SN3D: W, Y, Z, X) recording's scene by ``rotation``.

    The first-order channels of a plane wave from ``u`` are ``(Y, Z, X) = (u_y, u_z, u_x)``, so the scene
    turned by ``R`` (every source at ``R u``) has ``(X, Y, Z)' = R (X, Y, Z)`` and W unchanged.

    Args:
        rotation: (3, 3) rotation matrix ``R`` in array axes (x front, y left, z up).
    Returns:
        (4, 4) float64 ``M`` with ``rotated = M @ mixture`` for ``mixture`` (4, N) in ACN order.
    """
    r = np.asarray(rotation, dtype=np.float64)
    acn_xyz = [3, 1, 2]  # the ACN channel of x, y, z
    m = np.zeros((4, 4))
    m[0, 0] = 1.0
    m[np.ix_(acn_xyz, acn_xyz)] = r  # (3, 3) block: channel acn_xyz[i] gets Σ_j R[i, j] · channel acn_xyz[j]
    return m


def rotate_foa(mixture: np.ndarray, rotation: np.ndarray | float) -> np.ndarray:
    """An AmbiX recording of the scene turned by ``rotation``.

    Args:
        mixture: (4, N) AmbiX (ACN/SN3D: W, Y, Z, X).
        rotation: a (3, 3) rotation matrix, or an angle in degrees about the vertical axis (:func:`z_rotation`).
    Returns:
        (4, N) float32: every source at azimuth φ moved to φ + θ (or to ``R u``).
    """
    r = z_rotation(float(rotation)) if np.ndim(rotation) == 0 else np.asarray(rotation)
    x = np.asarray(mixture)
    return (foa_rotation_matrix(r) @ x.astype(np.float64)).astype(np.float32)  # (4, 4) @ (4, N) -> (4, N)


@dataclass(frozen=True)
class SceneRotation:
    """One rotation of the scene and how it is applied to a recording.

    Attributes:
        label: how tables name it (``"az +30°"``, ``"120° about (+0.58, +0.58, +0.58)"``).
        rotation: (3, 3) ``R``: a source from ``u`` is, in the rotated recording, at ``R u``.
        channels: (4, 4) matrix ``C`` with ``rotated = C @ mixture`` (for MIC a permutation matrix).
    """

    label: str
    rotation: np.ndarray
    channels: np.ndarray

    def apply(self, mixture: np.ndarray) -> np.ndarray:
        """mixture (4, N) -> the rotated recording (4, N) float32."""
        return (self.channels @ np.asarray(mixture, dtype=np.float64)).astype(np.float32)  # (4, N)

    def undo(self, doa: np.ndarray) -> np.ndarray:
        """Directions estimated on the rotated recording, turned back: doa (..., 3) -> Rᵀ doa (..., 3)."""
        return np.asarray(doa, dtype=np.float64) @ self.rotation  # (..., 3) @ (3, 3): row vectors times R = Rᵀ d


def _axis_angle_label(r: np.ndarray) -> str:
    """'120° about (+0.58, +0.58, +0.58)' for a (3, 3) rotation."""
    angle = math.degrees(math.acos(float(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))))
    w, v = np.linalg.eig(r)
    axis = np.real(v[:, np.argmin(np.abs(w - 1.0))])  # (3,) the eigenvector of eigenvalue 1
    if angle < 179.0:  # the sense of the axis: R − Rᵀ holds sin(angle) [axis]_×
        skew = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
        axis = axis * np.sign(axis @ skew)
    elif axis[np.argmax(np.abs(axis))] < 0:  # a half turn: either sense, pick the one with a positive lead
        axis = -axis
    axis = np.round(axis, 2) + 0.0  # + 0.0: no "-0.00"
    return f"{angle:.0f}° about ({', '.join(f'{a:+.2f}' for a in axis)})"


def rotations(fmt: str, step_deg: float = 30.0) -> list[SceneRotation]:
    """The rotations the check applies (module docstring), the identity left out.

    Args:
        fmt: ``"foa"`` (turns about the vertical axis by step, 2·step, ... < 360°) or ``"mic"`` (the 11
            non-identity rotational symmetries of the tetrahedral array; ``step_deg`` is not used).
        step_deg: the FOA step in degrees, in (0, 180].
    Returns:
        list of :class:`SceneRotation` (FOA: ``ceil(360 / step) − 1`` of them; MIC: 11).
    """
    if fmt == "foa":
        if not 0.0 < step_deg <= 180.0:
            raise DeepASAError(f"the rotation step must be in (0, 180] degrees, got {step_deg:g}")
        out = []
        for k in range(1, math.ceil(360.0 / step_deg - 1e-9)):
            theta = k * step_deg
            r = z_rotation(theta)
            out.append(SceneRotation(f"az {theta:+g}°", r, foa_rotation_matrix(r)))
        return out
    if fmt == "mic":
        from deepasa.model.finder import tetra_symmetries

        out = []
        for r, sigma in tetra_symmetries()[1:]:  # [0] is the identity
            perm = np.eye(4)[sigma]  # (4, 4): row a picks channel σ(a), so perm @ x == x[σ]
            out.append(SceneRotation(_axis_angle_label(r), r, perm))
        return out
    raise DeepASAError(f"unknown format {fmt!r} (mic or foa)")


# ---------------------------------------------------------------------------------------------- analyses
@dataclass
class FoundObject:
    """What the check reads of one object of an analysis.

    Attributes:
        activity: (T',) bool per label frame.
        doa: (T', 3) direction per frame (any norm > 0 where active; ignored where inactive).
        class_name: its class.
    """

    activity: np.ndarray
    doa: np.ndarray
    class_name: str


#: An analysis as the check sees it: ``analyzer(mixture (4, N) float32, sample_rate) -> list[FoundObject]``.
Analyzer = Callable[[np.ndarray, int], "list[FoundObject]"]


def pipeline_analyzer(fmt: str, finder="finder", classifier=None) -> Analyzer:
    """The analysis ``deepasa analyze`` runs by default: the trajectory-first pipeline
    (:func:`~deepasa.inference.trajectory_first.analyze_trajectories`), at 16 kHz after resampling as there.

    Args:
        fmt: ``"foa"`` (AmbiX; found by the active-intensity map, the learned finder reading MIC only) or
            ``"mic"``.
        finder: as for ``analyze_trajectories`` (default the shipped learned finder; FOA falls back to the
            intensity map as ``analyze`` does).
        classifier: as for ``analyze_trajectories`` (None: the shipped class read-out when present).
    Returns:
        an :data:`Analyzer`; each call analyses in a temporary folder that is removed before it returns.
    """
    from deepasa.inference.trajectory_first import MapFinder, analyze_trajectories, load_classifier

    if classifier is None:  # load once, not once per rotated copy
        classifier = load_classifier(None)
        classifier = False if classifier is None else classifier
    if fmt == "mic" and not isinstance(finder, MapFinder):  # the learned finder too (FOA maps "finder" to srp)
        finder = MapFinder(finder, fmt="mic")

    def analyze(mixture: np.ndarray, sample_rate: int) -> list[FoundObject]:
        with tempfile.TemporaryDirectory(prefix="deepasa-rotation-") as work:
            result = analyze_trajectories(mixture, finder, sample_rate=sample_rate, classifier=classifier,
                                          workdir=work, log=lambda msg: None, fmt=fmt)
            return [FoundObject(np.asarray(o.activity, bool), np.asarray(o.doa, np.float64), o.class_name)
                    for o in result.objects]

    return analyze


# ---------------------------------------------------------------------------------------------- matching
def _angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angles between direction rows: a (F, 3), b (F, 3) -> (F,) degrees."""
    na = np.linalg.norm(a, axis=-1)  # (F,)
    nb = np.linalg.norm(b, axis=-1)  # (F,)
    cos = (a * b).sum(axis=-1) / np.maximum(na * nb, 1e-12)  # (F,)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def match_objects(original: list[FoundObject], rotated: list[FoundObject],
                  max_match_deg: float = MAX_MATCH_DEG) -> list[tuple[int, int, np.ndarray]]:
    """Pair a rotated run's objects (directions already turned back) with the original run's.

    The cost of a pair is the mean angular distance over the frames where both are active; pairs with no
    such frame cannot be paired. Every object may also stay unpaired at a cost of ``max_match_deg / 2`` (the
    usual augmented assignment: I + J rows and columns), so the assignment of least total cost (Hungarian)
    pairs two objects only when their distance is below ``max_match_deg``, and a well-matched pair is never
    broken up to give a partner to a fragment that would otherwise stay alone.

    Args:
        original: I objects; rotated: J objects, their ``doa`` in the original's frame (``SceneRotation.undo``).
        max_match_deg: the largest mean distance of a pair, degrees.
    Returns:
        list of (i, j, errors (F_ij,) degrees on the F_ij common active frames), ordered by i.
    """
    from scipy.optimize import linear_sum_assignment

    n_i, n_j = len(original), len(rotated)
    errors: dict[tuple[int, int], np.ndarray] = {}
    forbidden = 1e6 + 2.0 * max_match_deg  # dearer than leaving both objects unpaired
    cost = np.full((n_i + n_j, n_j + n_i), forbidden)  # (I + J, J + I): [pairs, i alone; j alone, dummies]
    for i, a in enumerate(original):
        for j, b in enumerate(rotated):
            both = a.activity & b.activity  # (T',)
            if both.any():
                errors[i, j] = _angles_deg(a.doa[both], b.doa[both])  # (F_ij,)
                cost[i, j] = float(errors[i, j].mean())
    cost[np.arange(n_i), n_j + np.arange(n_i)] = max_match_deg / 2.0  # original i unpaired
    cost[n_i + np.arange(n_j), np.arange(n_j)] = max_match_deg / 2.0  # rotated j unpaired
    cost[n_i:, n_j:] = 0.0  # (J, I) dummy to dummy
    rows, cols = linear_sum_assignment(cost)  # (I + J,) each
    return [(int(i), int(j), errors[i, j]) for i, j in zip(rows, cols)
            if i < n_i and j < n_j and (i, j) in errors and cost[i, j] <= max_match_deg]


# ---------------------------------------------------------------------------------------------- report
def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if len(values) else float("nan")


@dataclass
class RotationOutcome:
    """The comparison of one rotated copy's analysis with the original's.

    Attributes:
        label: the rotation (:class:`SceneRotation`).
        n_original, n_rotated: objects found in the original and in the rotated copy (I, J).
        n_matched: pairs kept by :func:`match_objects`.
        errors_deg: (F,) direction errors after undoing the rotation, on every common active frame of the pairs.
        active_both, active_either: frames where both / either object of a pair is active, summed over pairs.
        same_class: pairs whose two objects have the same class.
    """

    label: str
    n_original: int
    n_rotated: int
    n_matched: int
    errors_deg: np.ndarray
    active_both: int
    active_either: int
    same_class: int

    @property
    def median_error_deg(self) -> float:
        """Median of :attr:`errors_deg` (NaN when no pair shares an active frame)."""
        return _median(self.errors_deg)

    @property
    def matched_share(self) -> float:
        """2·matched / (I + J): the share of both runs' objects that found a partner (1.0 when I = J = 0)."""
        total = self.n_original + self.n_rotated
        return 2.0 * self.n_matched / total if total else 1.0

    @property
    def activity_iou(self) -> float:
        """Frame-wise IoU of the pairs' activities, pooled: Σ |a ∧ b| / Σ |a ∨ b| (NaN without pairs)."""
        return self.active_both / self.active_either if self.active_either else float("nan")

    @property
    def class_agreement(self) -> float:
        """Share of pairs whose classes agree (NaN without pairs)."""
        return self.same_class / self.n_matched if self.n_matched else float("nan")

    def to_dict(self) -> dict:
        return {"rotation": self.label, "objects_original": self.n_original, "objects_rotated": self.n_rotated,
                "matched": self.n_matched, "matched_share": self.matched_share,
                "median_error_deg": self.median_error_deg, "frames": int(len(self.errors_deg)),
                "activity_iou": self.activity_iou, "class_agreement": self.class_agreement}


def _nan_to_none(value: float):
    return None if isinstance(value, float) and math.isnan(value) else value


@dataclass
class RotationConsistency:
    """What :func:`rotation_consistency` returns: one :class:`RotationOutcome` per rotation, and their pool.

    Attributes:
        fmt: ``"foa"`` or ``"mic"``; step_deg: the FOA step (None for MIC).
        n_objects: objects of the original analysis.
        outcomes: per rotation.
        max_match_deg: the pairing threshold used.
    """

    fmt: str
    step_deg: float | None
    n_objects: int
    outcomes: list[RotationOutcome] = field(default_factory=list)
    max_match_deg: float = MAX_MATCH_DEG

    @property
    def errors_deg(self) -> np.ndarray:
        """(F,) every direction error of every rotation (pairs' common active frames), degrees."""
        return np.concatenate([o.errors_deg for o in self.outcomes]) if self.outcomes else np.zeros(0)

    @property
    def median_error_deg(self) -> float:
        """The figure of the check: median direction error after undoing the rotation, over all of them."""
        return _median(self.errors_deg)

    @property
    def p90_error_deg(self) -> float:
        """90th percentile of :attr:`errors_deg` (NaN when empty)."""
        e = self.errors_deg
        return float(np.percentile(e, 90)) if len(e) else float("nan")

    @property
    def per_rotation_median_deg(self) -> list[float]:
        """Median error of each rotation, in :attr:`outcomes` order."""
        return [o.median_error_deg for o in self.outcomes]

    @property
    def matched_share(self) -> float:
        """2·Σ matched / Σ (I + J) over the rotations."""
        total = sum(o.n_original + o.n_rotated for o in self.outcomes)
        return 2.0 * sum(o.n_matched for o in self.outcomes) / total if total else 1.0

    @property
    def mean_abs_count_change(self) -> float:
        """Mean over rotations of |J − I|: how many objects appear or vanish when the scene turns."""
        return float(np.mean([abs(o.n_rotated - o.n_original) for o in self.outcomes])) if self.outcomes else 0.0

    @property
    def activity_iou(self) -> float:
        """Activity IoU pooled over every pair of every rotation."""
        either = sum(o.active_either for o in self.outcomes)
        return sum(o.active_both for o in self.outcomes) / either if either else float("nan")

    @property
    def class_agreement(self) -> float:
        """Share of all pairs whose classes agree."""
        matched = sum(o.n_matched for o in self.outcomes)
        return sum(o.same_class for o in self.outcomes) / matched if matched else float("nan")

    def to_dict(self) -> dict:
        """JSON-able summary (NaN written as null)."""
        summary = {"format": self.fmt, "step_deg": self.step_deg, "objects": self.n_objects,
                   "rotations": len(self.outcomes), "max_match_deg": self.max_match_deg,
                   "median_error_deg": self.median_error_deg, "p90_error_deg": self.p90_error_deg,
                   "frames": int(len(self.errors_deg)), "matched_share": self.matched_share,
                   "mean_abs_count_change": self.mean_abs_count_change, "activity_iou": self.activity_iou,
                   "class_agreement": self.class_agreement}
        return {**{k: _nan_to_none(v) for k, v in summary.items()},
                "per_rotation": [{k: _nan_to_none(v) for k, v in o.to_dict().items()} for o in self.outcomes]}

    def table(self) -> str:
        """A few lines: one per rotation, then the pooled figures (objects: original → mean over the copies)."""
        fmt_f = lambda v, spec: "-" if math.isnan(v) else format(v, spec)  # noqa: E731
        width = max([len(o.label) for o in self.outcomes] + [8])
        lines = [f"{'rotation':<{width}}  objects  matched  median err  act IoU  same class"]
        for o in self.outcomes:
            lines.append(f"{o.label:<{width}}  {o.n_original:>3} → {o.n_rotated:<3}  {o.matched_share:>7.2f}  "
                         f"{fmt_f(o.median_error_deg, '>9.1f')}°  {fmt_f(o.activity_iou, '>7.2f')}  "
                         f"{fmt_f(o.class_agreement, '>10.2f')}")
        mean_rotated = float(np.mean([o.n_rotated for o in self.outcomes])) if self.outcomes else float("nan")
        lines.append(f"{'all':<{width}}  {self.n_objects:>3} → {fmt_f(mean_rotated, '<4.1f')}"
                     f"{self.matched_share:>6.2f}  {fmt_f(self.median_error_deg, '>9.1f')}°  "
                     f"{fmt_f(self.activity_iou, '>7.2f')}  {fmt_f(self.class_agreement, '>10.2f')}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- the check
def _checked(mixture, sample_rate: int, name: str) -> np.ndarray:
    """analyze's input checks on an array: 4 channels, samples, finite, not silent; returns (4, N) float32."""
    from deepasa.inference.analyze import AudioSource

    src = AudioSource(mixture, sample_rate)
    src.name = name
    if src.n_channels != 4:
        raise DeepASAError(f"{name} has {src.n_channels} channel(s); the rotation check reads 4 (tetrahedral "
                           "microphone array or first-order Ambisonics)")
    src.scan()  # empty, NaN/Inf or silent input: one-line DeepASAError
    return src.array


def detect_format(mixture: np.ndarray, name: str = "input") -> str:
    """``"foa"`` or ``"mic"`` from the channel energies, by the rule of ``analyze`` (its messages too).

    Args:
        mixture: (4, N).
    Raises:
        DeepASAError: the energies fit FuMa B-format or an unbalanced array (say which).
    """
    from deepasa.inference.trajectory_first import format_from_energies

    return format_from_energies((np.asarray(mixture, dtype=np.float64) ** 2).sum(axis=1), name)  # energies (4,)


def rotation_consistency(mixture, sample_rate: int, fmt: str | None = "foa", *, step_deg: float = 30.0,
                         foa_convention: str = "ambix", analyzer: Analyzer | None = None, finder="finder",
                         max_match_deg: float = MAX_MATCH_DEG, name: str = "<array>",
                         log: Callable[[str], None] | None = None) -> RotationConsistency:
    """Analyse a recording and its rotated copies; how consistently do the directions turn (module docstring)?

    Args:
        mixture: (4, N) recording (AmbiX W, Y, Z, X; FuMa W, X, Y, Z with ``foa_convention="fuma"``; or the
            four capsules of the tetrahedral array), at ``sample_rate``.
        sample_rate: Hz (the default analysis resamples to its 16 kHz as ``analyze`` does).
        fmt: ``"foa"``, ``"mic"`` or None (told from the channel energies as ``analyze`` does).
        step_deg: FOA: turn by step, 2·step, ... below 360° about the vertical axis (MIC: unused).
        foa_convention: ``"ambix"`` or ``"fuma"`` (converted to AmbiX first; directions are array-frame either way).
        analyzer: the analysis to check (default :func:`pipeline_analyzer` of ``fmt`` and ``finder``).
        finder: the default analyzer's finder (``"finder"``, ``"srp"`` or a finder checkpoint).
        max_match_deg: pairs further apart than this are not paired (:func:`match_objects`).
        name: how error messages name the input.
        log: receives one line per analysed copy (default: nothing).
    Returns:
        :class:`RotationConsistency` (``median_error_deg`` is the headline figure).
    Raises:
        DeepASAError: not 4 channels, empty, NaN/Inf, silent, or an unknown format or convention.
    """
    log = log or (lambda msg: None)
    if foa_convention not in ("ambix", "fuma"):
        raise DeepASAError(f"unknown FOA convention {foa_convention!r} (ambix or fuma)")
    if fmt not in (None, "foa", "mic"):
        raise DeepASAError(f"unknown format {fmt!r} (mic or foa)")
    if foa_convention == "fuma":
        if fmt == "mic":
            raise DeepASAError("--foa-convention fuma is for FOA recordings, not --format mic")
        fmt = "foa"
    x = _checked(mixture, sample_rate, name)  # (4, N) float32
    if foa_convention == "fuma":
        x = (FUMA_TO_AMBIX @ x.astype(np.float64)).astype(np.float32)  # (4, 4) @ (4, N) -> (4, N) AmbiX
    fmt = fmt or detect_format(x, name)
    check_format((x.astype(np.float64) ** 2).sum(axis=1), fmt, name)  # (4,) energies: the format is plausible
    turns = rotations(fmt, step_deg)
    analyzer = analyzer or pipeline_analyzer(fmt, finder)
    original = analyzer(x, sample_rate)
    log(f"original: {len(original)} object(s)")
    report = RotationConsistency(fmt, step_deg if fmt == "foa" else None, len(original), [], max_match_deg)
    for turn in turns:
        found = analyzer(turn.apply(x), sample_rate)
        back = [FoundObject(o.activity, turn.undo(o.doa), o.class_name) for o in found]
        pairs = match_objects(original, back, max_match_deg)
        errors = np.concatenate([e for _, _, e in pairs]) if pairs else np.zeros(0)  # (F,)
        both = sum(int((original[i].activity & back[j].activity).sum()) for i, j, _ in pairs)
        either = sum(int((original[i].activity | back[j].activity).sum()) for i, j, _ in pairs)
        same = sum(original[i].class_name == back[j].class_name for i, j, _ in pairs)
        report.outcomes.append(RotationOutcome(turn.label, len(original), len(found), len(pairs), errors, both,
                                               either, same))
        log(f"{turn.label}: {len(found)} object(s), median error {report.outcomes[-1].median_error_deg:.1f}°")
    return report
