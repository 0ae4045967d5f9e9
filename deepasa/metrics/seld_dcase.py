"""The **official DCASE 2023 Task 3 segment-level** SELD metrics (ER20, F20, LE_CD, LR_CD, SELD score).

An independent re-implementation of the behaviour of the challenge's ``SELDMetricsSegmentLevel`` and
``ComputeSELDResults`` (seld-dcase2023; kept as "used till DCASE2024" in the 2024 baseline), scored from
DCASE-format CSV files. Not to be confused with DeepASA's frame-level object metrics
(:mod:`deepasa.metrics.seld_frame`), which the paper's tables use.

What the official code does, and so what this module does:

* **Files.** No header (a first line starting with a letter is skipped); one row per (frame, event), frames
  of 100 ms. Accepted rows: 5 columns
  ``frame,class,track,azimuth,elevation`` (degrees), 6 columns (the same + distance, ignored), 7 columns
  ``frame,class,track,x,y,z,distance`` (Cartesian; normalised to a unit vector), and the 2024 reader's
  4 columns ``frame,class,azimuth,elevation`` (track 0). Polar becomes
  ``(cos e·cos a, cos e·sin a, sin e)``.
* **Length.** A recording is ``max(reference frame index)`` frames long — the official code uses the largest
  index, not index + 1 — so a last reference frame whose index is a multiple of 10 is not scored, and
  prediction frames beyond the reference length are ignored.
* **Segments.** 1-s segments of 10 label frames. Per segment and class, the number of tracks is the
  largest number of rows of that class in any one frame of the segment.
* **Association.** For a class present in both reference and prediction of a segment, in every frame of
  the segment where both have it, reference and predicted DoAs are matched by the Hungarian algorithm on the
  angular distance. A reference track is identified by its *position* among that frame's rows of the class
  (file order), as in the official code; each matched reference track contributes its mean angular error
  over the frames where it was matched: one ``DE_TP``; a TP when the mean is ≤ 20°, else a spatial FP.
  Then ``|#pred − #ref|`` extra FPs or FNs. If the class is in both but no frame coincides, the official
  code counts ``#pred`` FNs (an odd rule, reproduced).
* **ER** ``= (S + D + I) / N_ref`` with per-segment ``S = min(FP, FN)``, ``D = max(0, FN − FP)``,
  ``I = max(0, FP − FN)`` summed over classes first; ER is always global.
* **F** ``= TP / (TP + FP_spatial + ½(FP + FN))``; **LE** = ``Σ DE / DE_TP`` (180° when ``DE_TP = 0``);
  **LR** ``= DE_TP / (DE_TP + DE_FN)``.
* **Macro** (the challenge setting): F, LE, LR and the SELD score are computed per class and averaged over
  **all** ``n_classes`` classes, including classes absent from both the references and the predictions,
  which therefore count as F = 0, LE = 180°, LR = 0. **Micro** pools the counts.
* **SELD score** ``= mean(ER, 1 − F, LE/180, 1 − LR)``.
* **Jackknife**: leave-one-file-out estimates; bias-corrected estimate, standard error and a 95 % t
  interval (``jackknife_estimation``), computed here from per-file sums (every counter is additive).

Deviations (stricter, never different numbers on valid input): malformed rows, class indices outside
``[0, n_classes)``, mixed polar/Cartesian rows in one file, empty reference files, and prediction/reference
files that do not pair up raise :class:`deepasa.errors.DeepASAError` instead of crashing or being ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from scipy import stats
from scipy.optimize import linear_sum_assignment

from deepasa.errors import DeepASAError

__all__ = [
    "FRAMES_PER_SEGMENT",
    "DCASESegmentCounts",
    "read_dcase_csv",
    "parse_dcase_rows",
    "write_dcase_csv",
    "frames_from_slots",
    "segment_labels",
    "dcase_seld_metrics",
    "evaluate_folders",
    "jackknife_estimation",
]

#: 10 label frames of 100 ms = one 1-s segment.
FRAMES_PER_SEGMENT = 10
_EPS = float(np.finfo(float).eps)

# A frame dictionary: frame index → list of (class, track, unit vector (3,)).
FrameDict = dict[int, list[tuple[int, int, np.ndarray]]]
# A segment: class → {frame within segment → (K, 3) DoAs in file order}, frames in ascending order.
Segment = dict[int, dict[int, np.ndarray]]


# ------------------------------------------------------------------------------------------------
# CSV I/O
# ------------------------------------------------------------------------------------------------
def _polar_to_unit(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])


def _cartesian_to_unit(x: float, y: float, z: float) -> np.ndarray:
    norm = math.sqrt(x * x + y * y + z * z)
    if norm == 0.0:  # the official loader goes through atan2 → azimuth 0, elevation 0
        return np.array([1.0, 0.0, 0.0])
    return np.array([x, y, z]) / norm


def parse_dcase_rows(lines: Iterable[str], source: str = "<rows>") -> FrameDict:
    """Parse DCASE-format CSV lines (see the module docstring for the accepted forms).

    Args:
        lines: text lines, no header (a first line starting with a letter is skipped as a header).
        source: name used in error messages.

    Returns:
        ``{frame: [(class, track, xyz unit vector (3,)), ...]}`` in file order.

    Raises:
        DeepASAError: malformed row, or polar and Cartesian rows mixed.

    >>> frames = parse_dcase_rows(["12,3,0,90,0", "12,5,1,0,90,2.0"])   # 5- and 6-column polar rows
    >>> [(c, t, xyz.round(6).tolist()) for c, t, xyz in frames[12]]
    [(3, 0, [0.0, 1.0, 0.0]), (5, 1, [0.0, 0.0, 1.0])]
    """
    frames: FrameDict = {}
    kind = None
    for lineno, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        words = [w.strip() for w in text.split(",")]
        if lineno == 1 and words[0][:1].isalpha():
            continue                                                # tolerate a header row
        n = len(words)
        try:
            frame, cls = int(float(words[0])), int(float(words[1]))
            if n == 4:
                row_kind, track, xyz = "polar", 0, _polar_to_unit(float(words[2]), float(words[3]))
            elif n in (5, 6):
                row_kind, track = "polar", int(float(words[2]))
                xyz = _polar_to_unit(float(words[3]), float(words[4]))
            elif n == 7:
                row_kind, track = "cartesian", int(float(words[2]))
                xyz = _cartesian_to_unit(float(words[3]), float(words[4]), float(words[5]))
            else:
                raise DeepASAError(f"{source}:{lineno}: expected 4, 5, 6 or 7 columns, found {n}")
            if not np.all(np.isfinite(xyz)):
                raise ValueError("non-finite direction")
        except (ValueError, IndexError) as exc:
            raise DeepASAError(f"{source}:{lineno}: malformed row {text!r} ({exc})") from None
        if frame < 0:
            raise DeepASAError(f"{source}:{lineno}: negative frame index {frame}")
        if kind is None:
            kind = row_kind
        elif kind != row_kind:
            raise DeepASAError(f"{source}:{lineno}: polar and Cartesian rows mixed in one file")
        frames.setdefault(frame, []).append((cls, track, xyz))
    return frames


def read_dcase_csv(path: str | Path) -> FrameDict:
    """Read one DCASE-format CSV file (polar 4/5/6 columns or Cartesian 7 columns).

    Args:
        path: the file.

    Returns:
        frame dictionary, see :func:`parse_dcase_rows`.
    """
    path = Path(path)
    try:
        with path.open("r", encoding="utf-8") as fh:
            return parse_dcase_rows(fh, source=str(path))
    except OSError as exc:
        raise DeepASAError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DeepASAError(f"{path}: not a text CSV file") from None


def write_dcase_csv(path: str | Path, frames: Mapping[int, Iterable[tuple]], *, cartesian: bool = False) -> None:
    """Write a frame dictionary in DCASE 2023 output format.

    Args:
        path: output file.
        frames: ``{frame: [(class, track, xyz (3,)), ...]}``.
        cartesian: write ``frame,class,track,x,y,z,0`` (7 columns, as the baseline) instead of
            ``frame,class,track,azimuth,elevation`` (5 columns, degrees).
    """
    with Path(path).open("w", encoding="utf-8") as fh:
        for frame in sorted(frames):
            for cls, track, xyz in frames[frame]:
                x, y, z = (float(v) for v in xyz)
                if cartesian:
                    fh.write(f"{int(frame)},{int(cls)},{int(track)},{x:.6f},{y:.6f},{z:.6f},0\n")
                else:
                    azi = math.degrees(math.atan2(y, x))
                    ele = math.degrees(math.atan2(z, math.hypot(x, y)))
                    fh.write(f"{int(frame)},{int(cls)},{int(track)},{azi:.2f},{ele:.2f}\n")


def frames_from_slots(sed, doa, *, frame_offset: int = 0) -> FrameDict:
    """DCASE frame dictionary from object-slot outputs (one DCASE track per slot).

    Args:
        sed: ``(S, T, C)`` binary decisions (e.g. :func:`deepasa.metrics.seld_frame.seld_decisions` of one clip)
            or labels.
        doa: ``(S, T, 3)`` Cartesian DoA per slot and frame.
        frame_offset: added to the frame index (to place a 4-s clip inside a longer recording).

    Returns:
        ``{frame: [(class, slot, unit xyz), ...]}`` with slots in ascending order.
    """
    sed_np = np.asarray(sed.detach().cpu() if hasattr(sed, "detach") else sed)
    doa_np = np.asarray(doa.detach().cpu() if hasattr(doa, "detach") else doa, dtype=np.float64)
    frames: FrameDict = {}
    for slot, t, c in zip(*np.nonzero(sed_np > 0.5)):
        xyz = _cartesian_to_unit(*(float(v) for v in doa_np[slot, t]))
        frames.setdefault(int(t) + frame_offset, []).append((int(c), int(slot), xyz))
    for rows_ in frames.values():
        rows_.sort(key=lambda r: (r[1], r[0]))
    return frames


# ------------------------------------------------------------------------------------------------
# Segmentation and counting
# ------------------------------------------------------------------------------------------------
def segment_labels(frames: FrameDict, n_frames: int, frames_per_segment: int = FRAMES_PER_SEGMENT
                   ) -> list[Segment]:
    """Group frames ``0 .. n_frames−1`` into segments of ``frames_per_segment`` frames.

    Args:
        frames: frame dictionary.
        n_frames: frames to score (official: the largest reference frame index).

    Returns:
        ``ceil(n_frames / frames_per_segment)`` segments; each maps class → {frame within segment →
        ``(K, 3)`` DoAs in file order}.
    """
    n_segments = int(math.ceil(n_frames / frames_per_segment))
    segments: list[Segment] = [{} for _ in range(n_segments)]
    for frame in sorted(f for f in frames if f < n_segments * frames_per_segment):
        seg, offset = divmod(frame, frames_per_segment)
        per_class: dict[int, list[np.ndarray]] = {}
        for cls, _track, xyz in frames[frame]:
            per_class.setdefault(cls, []).append(xyz)
        for cls, doas in per_class.items():
            segments[seg].setdefault(cls, {})[offset] = np.stack(doas)   # (K, 3)
    return segments


def _angles_deg(ref: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Angular distance matrix in degrees: ``(K_r, 3), (K_p, 3) → (K_r, K_p)``."""
    r = ref / np.sqrt((ref ** 2).sum(-1, keepdims=True) + 1e-10)
    p = pred / np.sqrt((pred ** 2).sum(-1, keepdims=True) + 1e-10)
    return np.degrees(np.arccos(np.clip(r @ p.T, -1.0, 1.0)))


@dataclass
class DCASESegmentCounts:
    """Additive counters of the segment-level metric (per class arrays, global S/D/I)."""

    n_classes: int
    doa_threshold: float = 20.0
    tp: np.ndarray = field(init=False)
    fp: np.ndarray = field(init=False)
    fp_spatial: np.ndarray = field(init=False)
    fn: np.ndarray = field(init=False)
    n_ref: np.ndarray = field(init=False)
    de_total: np.ndarray = field(init=False)
    de_tp: np.ndarray = field(init=False)
    de_fp: np.ndarray = field(init=False)
    de_fn: np.ndarray = field(init=False)
    S: float = 0.0
    D: float = 0.0
    I: float = 0.0  # noqa: E741  (the challenge's name for insertions)

    _ARRAYS = ("tp", "fp", "fp_spatial", "fn", "n_ref", "de_total", "de_tp", "de_fp", "de_fn")

    def __post_init__(self) -> None:
        for name in self._ARRAYS:
            setattr(self, name, np.zeros(self.n_classes))

    def copy(self) -> "DCASESegmentCounts":
        out = DCASESegmentCounts(self.n_classes, self.doa_threshold)
        for name in self._ARRAYS:
            setattr(out, name, getattr(self, name).copy())
        out.S, out.D, out.I = self.S, self.D, self.I
        return out

    def __iadd__(self, other: "DCASESegmentCounts") -> "DCASESegmentCounts":
        for name in self._ARRAYS:
            getattr(self, name).__iadd__(getattr(other, name))
        self.S, self.D, self.I = self.S + other.S, self.D + other.D, self.I + other.I
        return self

    def __isub__(self, other: "DCASESegmentCounts") -> "DCASESegmentCounts":
        for name in self._ARRAYS:
            getattr(self, name).__isub__(getattr(other, name))
        self.S, self.D, self.I = self.S - other.S, self.D - other.D, self.I - other.I
        return self

    def update(self, pred: list[Segment], ref: list[Segment]) -> None:
        """Count one recording (segment lists from :func:`segment_labels`, same length)."""
        for seg_ref, seg_pred in zip(ref, pred):
            seg_fp = seg_fn = 0
            for c in range(self.n_classes):
                g, p = seg_ref.get(c), seg_pred.get(c)
                n_g = max(len(v) for v in g.values()) if g else 0
                n_p = max(len(v) for v in p.values()) if p else 0
                self.n_ref[c] += n_g
                if g and p:
                    matched: dict[int, list[float]] = {}          # reference track position → errors
                    for offset, ref_doas in g.items():
                        if offset not in p:
                            continue
                        cost = _angles_deg(ref_doas, p[offset])   # (K_r, K_p)
                        rows, cols = linear_sum_assignment(cost)
                        for r, k in zip(rows, cols):
                            matched.setdefault(int(r), []).append(float(cost[r, k]))
                    if not matched:
                        # Official rule when no frame coincides: #pred FNs (sic).
                        seg_fn += n_p
                        self.fn[c] += n_p
                        self.de_fn[c] += n_p
                        continue
                    for errors in matched.values():
                        mean_err = sum(errors) / len(errors)
                        self.de_total[c] += mean_err
                        self.de_tp[c] += 1
                        if mean_err <= self.doa_threshold:
                            self.tp[c] += 1
                        else:
                            seg_fp += 1
                            self.fp_spatial[c] += 1
                    if n_p > n_g:
                        seg_fp += n_p - n_g
                        self.fp[c] += n_p - n_g
                        self.de_fp[c] += n_p - n_g
                    elif n_p < n_g:
                        seg_fn += n_g - n_p
                        self.fn[c] += n_g - n_p
                        self.de_fn[c] += n_g - n_p
                elif g:
                    seg_fn += n_g
                    self.fn[c] += n_g
                    self.de_fn[c] += n_g
                elif p:
                    seg_fp += n_p
                    self.fp[c] += n_p
                    self.de_fp[c] += n_p
            self.S += min(seg_fp, seg_fn)
            self.D += max(0, seg_fn - seg_fp)
            self.I += max(0, seg_fp - seg_fn)

    def compute(self, average: str = "macro") -> dict:
        """Scores from the counts.

        Args:
            average: ``"macro"`` (challenge) or ``"micro"``.

        Returns:
            ``{"ER", "F", "LE", "LR", "SELD"}`` (fractions; LE in degrees) and, for macro, ``"classwise"``:
            ``{"F": [...], "LE": [...], "LR": [...], "SELD": [...]}`` per class.
        """
        er = (self.S + self.D + self.I) / (self.n_ref.sum() + _EPS)
        if average == "micro":
            f = self.tp.sum() / (_EPS + self.tp.sum() + self.fp_spatial.sum()
                                 + 0.5 * (self.fp.sum() + self.fn.sum()))
            le = self.de_total.sum() / (self.de_tp.sum() + _EPS) if self.de_tp.sum() else 180.0
            lr = self.de_tp.sum() / (_EPS + self.de_tp.sum() + self.de_fn.sum())
            seld = float(np.mean([er, 1 - f, le / 180.0, 1 - lr]))
            return {"ER": float(er), "F": float(f), "LE": float(le), "LR": float(lr), "SELD": seld}
        if average != "macro":
            raise ValueError(f"average must be 'macro' or 'micro', not {average!r}")
        f_c = self.tp / (_EPS + self.tp + self.fp_spatial + 0.5 * (self.fp + self.fn))
        le_c = np.where(self.de_tp > 0, self.de_total / (self.de_tp + _EPS), 180.0)
        lr_c = self.de_tp / (_EPS + self.de_tp + self.de_fn)
        seld_c = (er + (1 - f_c) + le_c / 180.0 + (1 - lr_c)) / 4.0
        return {
            "ER": float(er), "F": float(f_c.mean()), "LE": float(le_c.mean()), "LR": float(lr_c.mean()),
            "SELD": float(seld_c.mean()),
            "classwise": {"F": f_c.tolist(), "LE": le_c.tolist(), "LR": lr_c.tolist(), "SELD": seld_c.tolist()},
        }


# ------------------------------------------------------------------------------------------------
# Jackknife
# ------------------------------------------------------------------------------------------------
def jackknife_estimation(global_value: float, partial_estimates, significance_level: float = 0.05) -> dict:
    """Jackknife statistics from the all-files value and the leave-one-out values.

    Args:
        global_value: metric on all ``n`` files.
        partial_estimates: ``(n,)`` metric with each file left out in turn.
        significance_level: two-sided level of the t interval.

    Returns:
        ``{"estimate", "bias", "std_err", "ci": [low, high]}``: bias ``(n−1)(mean − global)``, estimate
        ``global − bias``, std_err ``sqrt((n−1)·mean((θ_i − mean)²))``, interval ``estimate ± t·std_err`` with
        ``t`` the ``1 − α/2`` quantile of Student's t with ``n−1`` degrees of freedom.
    """
    theta = np.asarray(partial_estimates, dtype=float)
    n = theta.size
    mean = theta.mean()
    bias = (n - 1) * (mean - global_value)
    std_err = math.sqrt((n - 1) * np.mean((theta - mean) ** 2))
    estimate = global_value - bias
    t = float(stats.t.ppf(1 - significance_level / 2, n - 1))
    return {"estimate": float(estimate), "bias": float(bias), "std_err": float(std_err),
            "ci": [float(estimate - t * std_err), float(estimate + t * std_err)]}


# ------------------------------------------------------------------------------------------------
# Scoring recordings
# ------------------------------------------------------------------------------------------------
def _check_classes(frames: FrameDict, n_classes: int, name: str) -> None:
    for frame, rows in frames.items():
        for cls, _t, _x in rows:
            if not 0 <= cls < n_classes:
                raise DeepASAError(f"{name}: frame {frame} has class {cls}, outside 0..{n_classes - 1} "
                                   f"(use --classes to set the number of classes)")


_METRIC_KEYS = ("ER", "F", "LE", "LR", "SELD")


def dcase_seld_metrics(pred: Mapping[str, FrameDict], ref: Mapping[str, FrameDict], n_classes: int = 13, *,
                       doa_threshold: float = 20.0, average: str = "macro", jackknife: bool = False,
                       frames_per_segment: int = FRAMES_PER_SEGMENT) -> dict:
    """Official DCASE 2023 segment-level metrics of paired recordings held in memory.

    Args:
        pred: recording name → predicted frame dictionary.
        ref: recording name → reference frame dictionary (same names).
        n_classes: number of classes (13 for STARSS23).
        doa_threshold: degrees (20).
        average: ``"macro"`` (challenge) or ``"micro"``.
        jackknife: add leave-one-recording-out statistics under ``"jackknife"``.

    Returns:
        ``{"ER", "F", "LE", "LR", "SELD", "n_files", "average", "n_classes"}`` (+ ``"classwise"`` for macro,
        + ``"jackknife": {key: jackknife_estimation(...)}``).
    """
    if set(pred) != set(ref):
        missing, extra = sorted(set(ref) - set(pred)), sorted(set(pred) - set(ref))
        raise DeepASAError(f"predictions and references do not pair up: {len(missing)} reference file(s) "
                           f"without prediction {missing[:3]}, {len(extra)} prediction file(s) without "
                           f"reference {extra[:3]}")
    if not ref:
        raise DeepASAError("no recordings to score")
    per_file: dict[str, DCASESegmentCounts] = {}
    total = DCASESegmentCounts(n_classes, doa_threshold)
    for name in sorted(ref):
        _check_classes(ref[name], n_classes, f"reference {name}")
        _check_classes(pred[name], n_classes, f"prediction {name}")
        if not ref[name]:
            raise DeepASAError(f"reference {name} has no events: its length cannot be known")
        n_frames = max(ref[name])                                   # official: largest index, not + 1
        counts = DCASESegmentCounts(n_classes, doa_threshold)
        counts.update(segment_labels(pred[name], n_frames, frames_per_segment),
                      segment_labels(ref[name], n_frames, frames_per_segment))
        per_file[name] = counts
        total += counts
    result = total.compute(average)
    result.update({"n_files": len(ref), "average": average, "n_classes": n_classes})
    if jackknife:
        if len(per_file) < 2:
            raise DeepASAError("the jackknife needs at least two recordings")
        partial = []
        for name in per_file:
            loo = total.copy()
            loo -= per_file[name]
            scores = loo.compute(average)
            partial.append([scores[k] for k in _METRIC_KEYS])
        partial_arr = np.array(partial)                             # (n_files, 5)
        result["jackknife"] = {k: jackknife_estimation(result[k], partial_arr[:, i])
                               for i, k in enumerate(_METRIC_KEYS)}
    return result


def _csv_files(folder: Path, role: str) -> dict[str, Path]:
    """File name → path for the CSVs in ``folder`` and its sub-folders (the official references sit in
    split sub-folders, e.g. ``metadata_dev/dev-test-sony``)."""
    if not folder.exists():
        raise DeepASAError(f"{role} folder {folder} does not exist")
    if not folder.is_dir():
        raise DeepASAError(f"{role} path {folder} is not a folder")
    files: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.csv")):
        if path.name in files:
            raise DeepASAError(f"{role} folder has two files named {path.name}: {files[path.name]} and {path}")
        files[path.name] = path
    if not files:
        raise DeepASAError(f"{role} folder {folder} holds no .csv files")
    return files


def evaluate_folders(pred_dir: str | Path, ref_dir: str | Path, n_classes: int = 13, *,
                     doa_threshold: float = 20.0, average: str = "macro", jackknife: bool = False,
                     frames_per_segment: int = FRAMES_PER_SEGMENT) -> dict:
    """Official DCASE 2023 Task 3 metrics of a folder of predicted CSVs against a folder of references.

    Files pair up by name (references may sit in sub-folders, as the official ``metadata_dev/<split>``).

    Args:
        pred_dir: predicted CSV files.
        ref_dir: reference CSV files.
        n_classes: number of classes.
        doa_threshold: degrees.
        average: ``"macro"`` or ``"micro"``.
        jackknife: add leave-one-file-out statistics.

    Returns:
        see :func:`dcase_seld_metrics`.

    Raises:
        DeepASAError: missing folder, no CSVs, malformed CSV, unpaired files, bad class index.
    """
    preds, refs = _csv_files(Path(pred_dir), "prediction"), _csv_files(Path(ref_dir), "reference")
    if set(preds) != set(refs):
        missing, extra = sorted(set(refs) - set(preds)), sorted(set(preds) - set(refs))
        raise DeepASAError(f"prediction and reference files do not pair up by name: {len(missing)} "
                           f"reference file(s) without prediction {missing[:3]}, {len(extra)} prediction "
                           f"file(s) without reference {extra[:3]}")
    return dcase_seld_metrics({n: read_dcase_csv(p) for n, p in preds.items()},
                              {n: read_dcase_csv(p) for n, p in refs.items()}, n_classes,
                              doa_threshold=doa_threshold, average=average, jackknife=jackknife,
                              frames_per_segment=frames_per_segment)
