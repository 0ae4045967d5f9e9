"""Segment-wise inference for any length: overlapping windows, cross-window object stitching, overlap-add.

A recording longer than the model's clip is cut into windows of ``L`` samples every ``H`` samples (the last
window is zero-padded). The network returns J object slots per window, but slot ``j`` of one window need not
be slot ``j`` of the next (the model is permutation-invariant). Following ESPnet's segment-wise enhancement,
which re-aligns output streams of consecutive segments by their agreement on the overlap, the
:class:`Stitcher` aligns slots by three cues together (docs/analyze.md, "Long recordings and stitching"):

* **signal**: 1 − normalised correlation of the two slots' multichannel images on the overlap samples
  (neutral 0.5 when either is quieter than −30 dB re the mixture on the overlap);
* **class**: total-variation distance between the object's class distribution so far and the new slot's
  clip-level class posterior (neutral when either has no active frame);
* **direction**: mean angle / 180° between the two slots' DoAs on the overlap frames where both are active,
  else between the object's last direction and the slot's first direction (neutral when unknown).

The Hungarian algorithm (:func:`scipy.optimize.linear_sum_assignment`) assigns the J slots of the new window
to the J slots (hence objects) of the previous one on the weighted mean of the three costs. A slot keeps the
object id of its partner unless it is active in the new window, the partner's object has been active
before, and the cost exceeds ``threshold``: then the old object ends and a new one begins.

Signals are overlap-added with complementary cross-fade windows (sin² ramp-in, cos² ramp-out over the
overlap, none at the file's edges) and divided by the summed weights, so a source seen identically by two
windows is reconstructed exactly: no seams. Frame-level outputs (activity probability, DoA) are averaged per
object with the same weights at the frame centres.

Memory is bounded by the window, not the recording: after a window is added, everything before the next
window's start is final and handed to a :class:`Sink` (in memory for tests, raw float32 files on disk for
:func:`deepasa.inference.analyze.analyze`). Only per-object frame summaries (a few numbers per 100 ms)
grow with the length.

This module is the *matching* (slot costs, assignment, object tracks, the :class:`Stitcher`); the windows,
cross-fades and sinks of the overlap-add are :mod:`deepasa.inference.overlap_add` (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from deepasa.errors import DeepASAError
from deepasa.inference.overlap_add import MemorySink, RawFileSink, Sink, crossfade_weights, window_starts
from deepasa.model.decision import frame_activity

KINDS = ("image", "direct", "reverb")

__all__ = [
    "KINDS", "WindowOutput", "StitchWeights", "Sink", "MemorySink", "RawFileSink", "ObjectTrack", "Stitcher",
    "window_starts", "crossfade_weights", "slot_activity", "pair_costs",
]


# ---------------------------------------------------------------------------------------------- data
@dataclass
class WindowOutput:
    """Model outputs of one window, as numpy (J slots, M channels, L samples, T' label frames, C classes).

    Attributes:
        image: (J, M, L) full image per slot.
        direct, reverb: (J, M, L) or None (models without a reverb head).
        noise: (M, L) background estimate.
        cls_prob: (J, C) clip-level class posteriors (softmax of the logits).
        onoff_prob: (J, T') activity probabilities (sigmoid of the logits).
        doa: (J, T', 3) raw Cartesian DoA (norm ≈ activity).

    The activity decision is not the window's: the :class:`Stitcher` applies the model's rule
    (:meth:`activity` with the model's ``decision_rule.doa_norm`` and ``decision_rule.onoff``) to every window it is
    given.
    """

    image: np.ndarray
    direct: np.ndarray | None
    reverb: np.ndarray | None
    noise: np.ndarray
    cls_prob: np.ndarray
    onoff_prob: np.ndarray
    doa: np.ndarray

    def activity(self, doa_threshold: float = 0.5, onoff_threshold: float = 0.5) -> np.ndarray:
        """(J, T') bool: :func:`slot_activity` of the window's outputs under the ‖doa‖ threshold ``doa_threshold``
        (a model's ``decision_rule.doa_norm``; 0 = on/off alone) and the on/off threshold ``onoff_threshold``
        (``decision_rule.onoff``)."""
        return slot_activity(self.onoff_prob, self.doa, onoff_threshold=onoff_threshold, doa_threshold=doa_threshold)

    @property
    def n_slots(self) -> int:
        """J."""
        return self.image.shape[0]

    def audio(self, kind: str) -> np.ndarray | None:
        """(J, M, L) of ``kind`` in :data:`KINDS`, or None."""
        return getattr(self, kind)


def slot_activity(onoff_prob: np.ndarray, doa: np.ndarray, onoff_threshold: float = 0.5,
                  doa_threshold: float = 0.5) -> np.ndarray:
    """docs/spec.md §1 decision: sigmoid(onoff) > 0.5 AND ‖doa‖ > 0.5 (the two thresholds; ``doa_threshold = 0``:
    on/off alone).

    (..., T'), (..., T', 3) -> (..., T') bool.
    """
    return frame_activity(onoff_prob, doa, onoff_threshold, doa_threshold, probabilities=True)


@dataclass(frozen=True)
class StitchWeights:
    """Weights of the three cues of the combined assignment cost and the new-object threshold."""

    signal: float = 1.0
    cls: float = 1.0
    direction: float = 1.0
    threshold: float = 0.4           # combined cost above which an active slot starts a new object
    quiet_db: float = -30.0          # slot energy on the overlap re the mixture below which signal is neutral
    n_dir_frames: int = 5            # frames averaged for an object's last / a slot's first direction


def _unit_mean(vectors: np.ndarray) -> np.ndarray | None:
    """Mean direction of (K, 3) vectors (normalised), or None if K = 0 or the mean is zero."""
    if not len(vectors):
        return None
    u = vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)  # (K, 3)
    m = u.sum(axis=0)
    n = np.linalg.norm(m)
    return m / n if n > 1e-9 else None


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between (..., 3) vectors in degrees."""
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0)))


# ---------------------------------------------------------------------------------------------- objects
class _FrameAcc:
    """Weighted sums of per-frame values of one object over global label frames (growable)."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.w = np.zeros(64)           # (T,) summed weights
        self.p = np.zeros(64)           # (T,) weighted onoff probability
        self.doa = np.zeros((64, 3))    # (T, 3) weighted DoA

    def add(self, g0: int, w: np.ndarray, p: np.ndarray, doa: np.ndarray) -> None:
        """Add frames g0 .. g0+len(w)-1 (g0 >= first): w (T,), p (T,), doa (T, 3)."""
        i0, i1 = g0 - self.first, g0 - self.first + len(w)
        if i1 > len(self.w):
            cap = max(i1, 2 * len(self.w))
            self.w = np.pad(self.w, (0, cap - len(self.w)))
            self.p = np.pad(self.p, (0, cap - len(self.p)))
            self.doa = np.pad(self.doa, ((0, cap - len(self.doa)), (0, 0)))
        self.w[i0:i1] += w
        self.p[i0:i1] += w * p
        self.doa[i0:i1] += w[:, None] * doa

    def averaged(self, n_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Over the whole recording: (prob (n_frames,), doa (n_frames, 3), covered (n_frames,) bool)."""
        prob, doa, cov = np.zeros(n_frames), np.zeros((n_frames, 3)), np.zeros(n_frames, bool)
        stop = min(n_frames, self.first + len(self.w))
        if stop > self.first:
            w = self.w[: stop - self.first]
            ok = w > 0
            prob[self.first:stop][ok] = self.p[: stop - self.first][ok] / w[ok]
            doa[self.first:stop][ok] = self.doa[: stop - self.first][ok] / w[ok, None]
            cov[self.first:stop] = ok
        return prob, doa, cov


@dataclass
class ObjectTrack:
    """One object followed across windows (internal id ``track_id``; public ids are given at the end).

    Attributes:
        track_id: internal id, in creation order.
        start: first sample (model rate) of its audio streams: the start of the window that created it.
        n_windows: windows it took part in; slots: the slot index it had in each window (for tests).
        cls_active: (C,) class posteriors summed with the number of active frames as weight.
        active_frames: active frames seen (sum over windows, overlaps counted twice).
        cls_all: (C,) class posteriors summed over windows (used when it is never active).
        last_dir: (3,) unit vector of its most recent active frames, or None.
    """

    track_id: int
    start: int
    first_frame: int
    n_classes: int
    n_windows: int = 0
    slots: list = field(default_factory=list)
    cls_active: np.ndarray = None
    active_frames: int = 0
    cls_all: np.ndarray = None
    last_dir: np.ndarray | None = None
    ended: bool = False
    end_sample: int = 0
    buf: dict = field(default_factory=dict)
    frames: _FrameAcc = None

    def __post_init__(self) -> None:
        self.cls_active = np.zeros(self.n_classes)
        self.cls_all = np.zeros(self.n_classes)
        self.frames = _FrameAcc(self.first_frame)

    @property
    def ever_active(self) -> bool:
        """Whether any window found it active."""
        return self.active_frames > 0

    def class_prob(self) -> np.ndarray:
        """(C,) class distribution: mean over its active frames, else over its windows."""
        if self.active_frames:
            return self.cls_active / self.active_frames
        return self.cls_all / max(self.n_windows, 1)


def pair_costs(prev: WindowOutput, prev_tracks: list[ObjectTrack], cur: WindowOutput, overlap: int,
               label_samples: int, mixture_overlap_energy: float, valid_frames: int,
               weights: StitchWeights = StitchWeights(), doa_threshold: float = 0.5,
               onoff_threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Costs of giving slot j of the current window the object of slot i of the previous one.

    Args:
        prev: previous window's outputs; prev_tracks: the object of each of its J slots.
        cur: current window's outputs.
        overlap: O = L − H samples shared by the two windows (the end of prev, the start of cur).
        label_samples: samples per label frame (H and O are multiples of it).
        mixture_overlap_energy: energy of the input mixture on the overlap (reference for "quiet").
        valid_frames: frames of ``cur`` inside the recording (the rest is padding).
        weights: cue weights.
        doa_threshold, onoff_threshold: the activity rule's thresholds (:meth:`WindowOutput.activity`), the model's.
    Returns:
        dict of (J, J) arrays indexed [i (previous slot), j (current slot)]: ``signal``, ``class``,
        ``direction`` (each in [0, 1], 0.5 = no evidence) and ``total`` (their weighted mean).
    """
    J = cur.n_slots
    length = cur.image.shape[-1]
    of = overlap // label_samples  # overlap frames
    # -- signal agreement on the overlap samples
    a = prev.image[:, :, length - overlap:].reshape(J, -1).astype(np.float64)  # (J, M*O)
    b = cur.image[:, :, :overlap].reshape(J, -1).astype(np.float64)  # (J, M*O)
    ea, eb = (a * a).sum(1), (b * b).sum(1)  # (J,), (J,)
    quiet = max(mixture_overlap_energy, 1e-20) * 10 ** (weights.quiet_db / 10)
    corr = (a @ b.T) / np.sqrt(np.outer(ea, eb) + 1e-30)  # (J, J)
    signal = 1.0 - np.clip(corr, 0.0, 1.0)
    loud = (ea > quiet)[:, None] & (eb > quiet)[None, :]  # (J, J)
    signal = np.where(loud, signal, 0.5) if overlap > 0 else np.full((J, J), 0.5)
    # -- class agreement: the object's class so far vs the slot's posterior
    cur_act = cur.activity(doa_threshold, onoff_threshold)  # (J, T')
    cur_act[:, valid_frames:] = False
    cur_present = cur_act.any(axis=1)  # (J,)
    cls = np.full((J, J), 0.5)
    for i, trk in enumerate(prev_tracks):
        if trk.ever_active:
            tv = 0.5 * np.abs(trk.class_prob()[None, :] - cur.cls_prob).sum(-1)  # (J,)
            cls[i] = np.where(cur_present, tv, 0.5)
    # -- direction agreement: common active overlap frames, else last vs first direction
    prev_act = prev.activity(doa_threshold, onoff_threshold)  # (J, T')
    pa, ca = prev_act[:, prev_act.shape[1] - of:], cur_act[:, :of]  # (J, of) each
    pd, cd = prev.doa[:, prev.doa.shape[1] - of:], cur.doa[:, :of]  # (J, of, 3) each
    first_dir = [_unit_mean(cur.doa[j][cur_act[j]][: weights.n_dir_frames]) for j in range(J)]
    direction = np.full((J, J), 0.5)
    for i in range(J):
        for j in range(J):
            both = pa[i] & ca[j]  # (of,)
            if both.any():
                direction[i, j] = _angle_deg(pd[i][both], cd[j][both]).mean() / 180.0
            elif prev_tracks[i].last_dir is not None and first_dir[j] is not None:
                direction[i, j] = float(_angle_deg(prev_tracks[i].last_dir, first_dir[j])) / 180.0
    wsum = weights.signal + weights.cls + weights.direction
    total = (weights.signal * signal + weights.cls * cls + weights.direction * direction) / wsum
    return {"signal": signal, "class": cls, "direction": direction, "total": total, "present": cur_present}


# ---------------------------------------------------------------------------------------------- stitcher
def _shift(buf: np.ndarray, d: int) -> None:
    """Shift ``buf`` (..., L) left by ``d`` samples in place, zero-filling the end (no new allocation)."""
    if d >= buf.shape[-1]:
        buf[...] = 0.0
        return
    buf[..., :-d] = buf[..., d:]
    buf[..., -d:] = 0.0


class Stitcher:
    """Streaming stitcher: push the windows in order, then :meth:`finish`.

    Args:
        window: L samples; hop: H samples (both multiples of ``label_samples``).
        n_samples: length of the recording (model rate); windows are those of :func:`window_starts`.
        label_samples: samples per label frame.
        sink: where final audio goes.
        weights: assignment cost weights and threshold.
        doa_threshold: the activity rule's ‖doa‖ threshold applied to every window (the model's
            ``decision_rule.doa_norm``; docs/spec.md §1: 0.5; 0 = on/off alone).
        onoff_threshold: the rule's on/off probability threshold (``decision_rule.onoff``; docs/spec.md §1: 0.5).

    >>> st = Stitcher(window=8, hop=4, n_samples=12, label_samples=4, sink=MemorySink())
    >>> st.n_windows
    2
    """

    def __init__(self, window: int, hop: int, n_samples: int, label_samples: int, sink: Sink,
                 weights: StitchWeights = StitchWeights(), doa_threshold: float = 0.5,
                 onoff_threshold: float = 0.5) -> None:
        if window % label_samples or hop % label_samples:
            raise DeepASAError(f"window ({window}) and hop ({hop}) must be multiples of the label frame "
                               f"({label_samples} samples)")
        self.L, self.H, self.n = window, hop, n_samples
        self.O = window - hop
        self.doa_threshold, self.onoff_threshold = doa_threshold, onoff_threshold
        self.ls = label_samples
        self.starts = window_starts(n_samples, window, hop)
        self.sink = sink
        self.weights = weights
        self.tracks: dict[int, ObjectTrack] = {}
        self.chains: list[int] = []           # object id of each slot of the previous window
        self.prev: WindowOutput | None = None
        self.k = 0                            # windows pushed
        self.origin = 0                       # sample of buffer index 0
        self.wsum = np.zeros(window)          # (L,) summed audio weights
        self.noise: np.ndarray | None = None  # (M, L) weighted noise
        self.assignments: list[np.ndarray] = []   # per window: (J,) object id of each slot
        self.costs: list[dict] = []               # per window (from the 2nd): pair_costs output

    @property
    def n_windows(self) -> int:
        """Number of windows the recording needs."""
        return len(self.starts)

    def _new_track(self, start: int, n_classes: int, n_mics: int, kinds: list[str]) -> ObjectTrack:
        tid = len(self.tracks)
        trk = ObjectTrack(track_id=tid, start=start, first_frame=start // self.ls, n_classes=n_classes)
        trk.buf = {kind: np.zeros((n_mics, self.L)) for kind in kinds}  # (M, L) each
        self.tracks[tid] = trk
        return trk

    def _flush(self, upto: int) -> None:
        """Hand samples [origin, upto) to the sink and shift the buffers."""
        d = upto - self.origin
        if d <= 0:
            return
        w = self.wsum[:d]  # (d,)
        if self.noise is not None:
            self.sink.write(("noise",), self.origin, self.noise[:, :d] / w)
            _shift(self.noise, d)
        for trk in list(self.tracks.values()):
            if not trk.buf:
                continue
            lo = max(0, trk.start - self.origin)
            if lo < d:
                for kind, buf in trk.buf.items():
                    self.sink.write((trk.track_id, kind), self.origin + lo, buf[:, lo:d] / w[lo:])
            for buf in trk.buf.values():
                _shift(buf, d)
            if trk.ended and self.origin + d >= trk.end_sample:
                trk.buf = {}  # fully written: free its buffers
        _shift(self.wsum, d)
        self.origin = upto

    def push(self, out: WindowOutput, mixture_overlap_energy: float | None = None) -> np.ndarray:
        """Add the next window's outputs.

        Args:
            out: the window's :class:`WindowOutput` (length L; padded past the end of the recording).
            mixture_overlap_energy: energy of the input on the overlap with the previous window (default:
                energy of the sum of the slots' images and the noise there).
        Returns:
            (J,) the object id given to each slot.
        """
        if self.k >= len(self.starts):
            raise RuntimeError("more windows pushed than the recording has")
        start = self.starts[self.k]
        first, last = self.k == 0, self.k == len(self.starts) - 1
        J, M, L = out.image.shape
        kinds = [k for k in KINDS if out.audio(k) is not None]
        valid_frames = min(L, self.n - start) // self.ls + int(min(L, self.n - start) % self.ls > 0)
        act = out.activity(self.doa_threshold, self.onoff_threshold)  # (J, T')
        act[:, valid_frames:] = False
        # 1. who is who: assign the new slots to the previous slots' objects
        if first:
            self._flush(start)
            ids = np.array([self._new_track(start, out.cls_prob.shape[1], M, kinds).track_id for _ in range(J)])
        else:
            if mixture_overlap_energy is None:
                mix = out.image[:, :, : self.O].sum(0) + out.noise[:, : self.O]  # (M, O)
                mixture_overlap_energy = float((mix.astype(np.float64) ** 2).sum())
            prev_tracks = [self.tracks[t] for t in self.chains]
            costs = pair_costs(self.prev, prev_tracks, out, self.O, self.ls, mixture_overlap_energy,
                               valid_frames, self.weights, self.doa_threshold, self.onoff_threshold)
            rows, cols = linear_sum_assignment(costs["total"])  # rows: previous slots, cols: current slots
            ids = np.empty(J, dtype=int)
            self._flush(start)  # before new objects are created at ``start``
            for i, j in zip(rows, cols):
                trk = prev_tracks[i]
                keep = (not costs["present"][j]) or (not trk.ever_active) or costs["total"][i, j] <= self.weights.threshold
                if keep:
                    ids[j] = trk.track_id
                else:
                    trk.ended, trk.end_sample = True, self.starts[self.k - 1] + L
                    ids[j] = self._new_track(start, out.cls_prob.shape[1], M, kinds).track_id
            self.costs.append(costs)
        # 2. overlap-add the audio with cross-fade weights
        w = crossfade_weights(L, self.H, first, last)  # (L,)
        self.wsum += w
        self.noise = (np.zeros((M, L)) if self.noise is None else self.noise) + w * out.noise
        for j, tid in enumerate(ids):
            trk = self.tracks[tid]
            for kind in kinds:
                trk.buf[kind] += w * out.audio(kind)[j]  # (M, L)
        # 3. frame-level summaries, weighted by the window at the frame centres
        centres = (np.arange(valid_frames) + 0.5) * self.ls  # (T_valid,)
        wf = np.interp(centres, np.arange(L), w)  # (T_valid,)
        g0 = start // self.ls
        for j, tid in enumerate(ids):
            trk = self.tracks[tid]
            trk.n_windows += 1
            trk.slots.append(j)
            trk.frames.add(g0, wf, out.onoff_prob[j, :valid_frames], out.doa[j, :valid_frames])
            n_act = int(act[j].sum())
            trk.cls_all += out.cls_prob[j]
            if n_act:
                trk.cls_active += n_act * out.cls_prob[j]
                trk.active_frames += n_act
                trk.last_dir = _unit_mean(out.doa[j][act[j]][-self.weights.n_dir_frames:])
        self.chains = [int(t) for t in ids]
        self.assignments.append(ids)
        self.prev = out
        self.k += 1
        return ids

    def finish(self) -> list[ObjectTrack]:
        """Flush everything to the sink; returns every track (present or not), in creation order."""
        if self.k != len(self.starts):
            raise RuntimeError(f"{self.k} of {len(self.starts)} windows pushed")
        self._flush(self.n)
        for trk in self.tracks.values():
            trk.buf = {}
        self.sink.close()
        return list(self.tracks.values())

