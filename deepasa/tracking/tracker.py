"""Multi-target tracking of per-frame direction detections into objects with an identity (numpy/scipy).

Each label frame brings a list of detections (unit vector, score), e.g. from :func:`deepasa.tracking.peaks.
pick_peaks`. :func:`track` links them over frames:

* **Prediction.** A track carries a direction x and an angular velocity ω (a rotation vector, rad/frame): the
  predicted direction rotates x by ω, and ω decays by ``VELOCITY_DAMPING`` per frame, so a source that stops
  or a noisy velocity estimate does not carry the prediction away.
* **Assignment.** Detections go to tracks by the Hungarian method (``scipy.optimize.linear_sum_assignment``)
  on the angle to each track's prediction, pairs beyond ``gate_deg`` forbidden; confirmed tracks are served
  first, then tentative ones (a cascade, so a fresh tentative track never steals an established object's
  detection).
* **Update.** An alpha-beta filter on the sphere: with r the rotation from the prediction to the detection,
  x ← rotate(prediction, α r), ω ← ω + β r, α = 1 − ``smoothing``, β = α² / (2 − α) (the critically damped
  pair). Offline, the same filter also runs backwards in time over each track's detections and the two
  estimates are averaged, which removes the forward filter's lag on moving sources.
* **Birth and death.** An unassigned detection starts a tentative track; it is confirmed after
  ``birth_frames`` hits within ``birth_frames + 1`` frames (one miss allowed) and its tentative frames then
  count. A confirmed track with no detection keeps its identity (inactive frames) for up to
  ``max_gap_frames`` frames, then dies; a later detection there starts a new object.

The activity of a track is the frames with a detection, gaps of up to ``fill_gap_frames`` (default 1) between
two hits filled.

* **Re-joining (optional, off by default).** With ``merge_gap_frames`` > 0, a track that starts after another
  ended, at most that many frames later and within ``merge_deg`` of where the other ended, continues the same
  object (the earlier one; the nearest direction wins): a source that pauses longer than ``max_gap_frames``
  and resumes at its place keeps one identity instead of splitting into fragments.
Everything is deterministic (no random draws; ties resolved by order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

VELOCITY_DAMPING = 0.8  # per frame: a velocity not confirmed by detections halves in ~3 frames
_FORBIDDEN = 1e6  # cost of a gated-out pair


@dataclass
class Tracks:
    """Objects found in a clip, on label frames.

    Attributes:
        activity: (J, T') bool, where object j is active.
        doa: (J, T', 3) float64 unit vectors: the smoothed direction where active; elsewhere the nearest
            earlier known direction (the first known one before the object's first active frame), never zero.
        score: (J, T') float, the detection score where active (0 elsewhere).
    """

    activity: np.ndarray
    doa: np.ndarray
    score: np.ndarray

    @property
    def n_objects(self) -> int:
        """J, the number of objects."""
        return int(self.activity.shape[0])

    @property
    def n_frames(self) -> int:
        """T', the number of label frames."""
        return int(self.activity.shape[1])

    @classmethod
    def empty(cls, n_frames: int) -> "Tracks":
        """No object over n_frames label frames: activity (0, T'), doa (0, T', 3), score (0, T')."""
        return cls(np.zeros((0, n_frames), dtype=bool), np.zeros((0, n_frames, 3)), np.zeros((0, n_frames)))


# ---------------------------------------------------------------------------------------------- rotations
def _rotvec_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The rotation vector (3,) (axis × angle in rad) turning unit vector a (3,) onto b (3,) along the great circle."""
    cross = np.cross(a, b)
    s = np.linalg.norm(cross)
    if s < 1e-12:  # parallel (or antiparallel: no unique great circle; take no rotation)
        return np.zeros(3)
    return cross / s * np.arctan2(s, float(a @ b))


def _rotate(v: np.ndarray, rotvec: np.ndarray) -> np.ndarray:
    """Rodrigues rotation of v (3,) by rotvec (3,); the result is renormalised against round-off drift."""
    angle = np.linalg.norm(rotvec)
    if angle < 1e-12:
        return v
    k = rotvec / angle
    out = v * np.cos(angle) + np.cross(k, v) * np.sin(angle) + k * (k @ v) * (1.0 - np.cos(angle))
    return out / np.linalg.norm(out)


def _alpha_beta(smoothing: float) -> tuple[float, float]:
    """α = 1 − smoothing (the share of the innovation taken), β = α² / (2 − α)."""
    alpha = float(np.clip(1.0 - smoothing, 1e-3, 1.0))
    return alpha, alpha * alpha / (2.0 - alpha)


def _filter(frames: list[int], dets: list[np.ndarray], alpha: float, beta: float) -> list[np.ndarray]:
    """Alpha-beta filter over one track's detections in the given frame order.

    frames: n frame indices (ascending or descending), dets: n unit vectors (3,) -> n filtered unit vectors (3,).
    """
    x, omega = dets[0], np.zeros(3)
    out = [x]
    for k in range(1, len(frames)):
        for _ in range(abs(frames[k] - frames[k - 1])):  # predict through missed frames, damping each step
            omega = omega * VELOCITY_DAMPING
            x = _rotate(x, omega)
        r = _rotvec_between(x, dets[k])
        x = _rotate(x, alpha * r)
        omega = omega + beta * r
        out.append(x)
    return out


# ---------------------------------------------------------------------------------------------- online state
class _Track:
    """One track's online state: direction x (3,), angular velocity omega (3,) rad/frame, hits, misses."""

    def __init__(self, uid: int, t: int, direction: np.ndarray, score: float):
        self.uid = uid
        self.x, self.omega = direction, np.zeros(3)
        self.hits: dict[int, tuple[np.ndarray, float]] = {t: (direction, score)}
        self.first, self.last_hit = t, t
        self.confirmed = False

    def predict(self) -> np.ndarray:
        """Advance one frame: damp omega, rotate x by it; returns the predicted direction (3,)."""
        self.omega = self.omega * VELOCITY_DAMPING
        self.x = _rotate(self.x, self.omega)
        return self.x

    def update(self, t: int, direction: np.ndarray, score: float, alpha: float, beta: float) -> None:
        """Alpha-beta update with detection ``direction`` (3,) at frame t."""
        r = _rotvec_between(self.x, direction)
        if len(self.hits) == 1:
            # the second hit: the step from the first one is the only velocity evidence; take it (damped by the
            # next prediction) rather than β of it, so a fast source is followed from the start
            self.x = _rotate(self.x, alpha * r)
            self.omega = r / max(t - self.last_hit, 1)
        else:
            self.x = _rotate(self.x, alpha * r)
            self.omega = self.omega + beta * r
        self.hits[t] = (direction, score)
        self.last_hit = t


def _assign(tracks: list[_Track], preds: list[np.ndarray], dets: list[int], directions: np.ndarray,
            cos_gate: float) -> list[tuple[int, int]]:
    """Hungarian assignment of detections (indices ``dets`` into directions (D, 3)) to tracks.

    Returns (track position, detection index) pairs within the gate.
    """
    if not tracks or not dets:
        return []
    p = np.stack(preds)  # (n_tracks, 3)
    cos = np.clip(p @ directions[dets].T, -1.0, 1.0)  # (n_tracks, n_dets)
    cost = np.where(cos >= cos_gate, np.degrees(np.arccos(cos)), _FORBIDDEN)  # (n_tracks, n_dets)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), dets[c]) for r, c in zip(rows, cols) if cost[r, c] < _FORBIDDEN]


class OnlineTracker:
    """The forward pass of :func:`track` (prediction, cascade assignment, births and deaths), one label frame at a
    time: :func:`track` runs it over a whole recording, the live monitor (:mod:`deepasa.inference.listen`) as the
    frames arrive. The finished tracks are smoothed by ``_finish`` (forwards and backwards) afterwards.

    Attributes:
        t: the next frame index; live: the live tracks (tentative and confirmed); alpha, beta: the filter's gains.
    """

    def __init__(self, *, gate_deg: float = 30.0, birth_frames: int = 2, max_gap_frames: int = 5,
                 smoothing: float = 0.5) -> None:
        self.alpha, self.beta = _alpha_beta(smoothing)
        self.cos_gate = float(np.cos(np.radians(gate_deg)))
        self.birth_frames, self.max_gap_frames = birth_frames, max_gap_frames
        self.t, self.next_uid = 0, 0
        self.live: list[_Track] = []

    def step(self, frame: list[tuple[np.ndarray, float]]) -> list[_Track]:
        """Advance one frame with its detections [(unit vector (3,), score)]; returns the confirmed tracks that
        died at this frame (their last hit more than ``max_gap_frames`` ago)."""
        t = self.t
        if frame:
            directions = np.stack([np.asarray(d, dtype=np.float64) / np.linalg.norm(d) for d, _ in frame])  # (D, 3)
        else:
            directions = np.zeros((0, 3))
        scores = [float(s) for _, s in frame]
        preds = [tr.predict() for tr in self.live]
        free = list(range(len(frame)))
        for want_confirmed in (True, False):  # the cascade: established objects first
            idx = [i for i, tr in enumerate(self.live) if tr.confirmed == want_confirmed]
            pairs = _assign([self.live[i] for i in idx], [preds[i] for i in idx], free, directions, self.cos_gate)
            for pos, d in pairs:
                self.live[idx[pos]].update(t, directions[d], scores[d], self.alpha, self.beta)
                free.remove(d)
        for tr in self.live:
            if not tr.confirmed and len(tr.hits) >= self.birth_frames:
                tr.confirmed = True
        survivors, died = [], []
        for tr in self.live:
            if tr.confirmed and t - tr.last_hit <= self.max_gap_frames:
                survivors.append(tr)
            elif not tr.confirmed and t - tr.first < self.birth_frames + 1 and t - tr.last_hit <= 1:
                survivors.append(tr)
            elif tr.confirmed:
                died.append(tr)
        for d in free:  # births, in detection order (strongest first from pick_peaks)
            tr = _Track(self.next_uid, t, directions[d], scores[d])
            self.next_uid += 1
            tr.confirmed = self.birth_frames <= 1
            survivors.append(tr)
        self.live = survivors
        self.t += 1
        return died

    def close(self) -> list[_Track]:
        """End of the frames: every confirmed live track is finished (tentative ones are dropped)."""
        done = [tr for tr in self.live if tr.confirmed]
        self.live = []
        return done


def track(detections: list[list[tuple[np.ndarray, float]]], *, gate_deg: float = 30.0, birth_frames: int = 2,
          max_gap_frames: int = 5, min_length_frames: int = 2, smoothing: float = 0.5,
          max_objects: int | None = None, fill_gap_frames: int = 1, merge_gap_frames: int = 0,
          merge_deg: float = 20.0) -> Tracks:
    """Link per-frame direction detections into objects (module docstring).

    Args:
        detections: T' lists of (unit vector (3,), score) tuples, one list per label frame.
        gate_deg: a detection farther than this from a track's predicted direction is not assigned to it.
        birth_frames: hits (within birth_frames + 1 frames) that confirm a new track.
        max_gap_frames: a confirmed track survives up to this many frames without a detection.
        min_length_frames: tracks with fewer active frames are dropped.
        smoothing: 0 = the raw detections, towards 1 = heavier smoothing (α = 1 − smoothing).
        max_objects: keep at most this many objects, those with the largest summed score.
        fill_gap_frames: gaps of up to this many frames between two hits of a track count as active (its
            direction interpolated): a source whose peak is masked for a frame or two by a louder one.
        merge_gap_frames: re-join a track to one that ended at most this many frames before it started, within
            ``merge_deg`` (0 = off; module docstring).
        merge_deg: the largest angle between the earlier track's last and the later track's first direction.
    Returns:
        :class:`Tracks` with activity (J, T'), doa (J, T', 3), score (J, T'), objects ordered by their first
        active frame.
    """
    n_frames = len(detections)
    online = OnlineTracker(gate_deg=gate_deg, birth_frames=birth_frames, max_gap_frames=max_gap_frames,
                           smoothing=smoothing)
    finished: list[_Track] = []
    for frame in detections:
        finished += online.step(frame)
    finished += online.close()
    alpha, beta = online.alpha, online.beta
    objects = [_finish(tr, n_frames, alpha, beta, fill_gap_frames) for tr in sorted(finished, key=lambda tr: tr.uid)]
    objects = [o for o in objects if o[0].sum() >= min_length_frames]
    if merge_gap_frames > 0:
        objects = _rejoin(objects, merge_gap_frames, merge_deg)
    if max_objects is not None and len(objects) > max_objects:
        keep = sorted(range(len(objects)), key=lambda j: (-objects[j][2].sum(), j))[:max_objects]
        objects = [objects[j] for j in sorted(keep)]
    if not objects:
        return Tracks.empty(n_frames)
    objects.sort(key=lambda o: int(np.argmax(o[0])))  # stable: ties keep creation order
    return Tracks(np.stack([o[0] for o in objects]), np.stack([o[1] for o in objects]),
                  np.stack([o[2] for o in objects]))


def _finish(tr: _Track, n_frames: int, alpha: float, beta: float,
            fill_gap_frames: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A finished track's activity (T',) bool, doa (T', 3) and score (T',), smoothed forwards and backwards."""
    frames = sorted(tr.hits)
    dets = [tr.hits[t][0] for t in frames]
    fwd = _filter(frames, dets, alpha, beta)
    bwd = _filter(frames[::-1], dets[::-1], alpha, beta)[::-1]
    activity = np.zeros(n_frames, dtype=bool)
    doa = np.zeros((n_frames, 3))
    score = np.zeros(n_frames)
    for k, t in enumerate(frames):
        m = fwd[k] + bwd[k]  # the mean direction of the two estimates (renormalised below)
        doa[t] = m / np.linalg.norm(m) if np.linalg.norm(m) > 1e-9 else dets[k]
        activity[t] = True
        score[t] = tr.hits[t][1]
    for a, b in zip(frames[:-1], frames[1:]):
        if 2 <= b - a <= fill_gap_frames + 1:  # short gaps between two hits: filled, interpolated between them
            for t in range(a + 1, b):
                w = (t - a) / (b - a)
                m = (1 - w) * doa[a] + w * doa[b]
                doa[t] = m / np.linalg.norm(m) if np.linalg.norm(m) > 1e-9 else doa[a]
                activity[t] = True
                score[t] = (1 - w) * score[a] + w * score[b]
    # inactive frames hold the last known direction (the first known one before the track starts)
    known = doa[frames[0]]
    for t in range(n_frames):
        if activity[t]:
            known = doa[t]
        else:
            doa[t] = known
    return activity, doa, score


def _rejoin(objects: list[tuple[np.ndarray, np.ndarray, np.ndarray]], max_gap: int,
            max_deg: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Re-join fragments: each object (activity (T',), doa (T', 3), score (T',)), in order of its first active
    frame, continues the earlier object that ended at most ``max_gap`` frames before it started (no frame in
    common) with the smallest angle ≤ ``max_deg`` between that object's last and its first direction. The joined
    object keeps both activities, directions and scores; the frames between stay inactive and hold the earlier
    part's last direction. Returns the objects, joined ones removed (the earlier object's place kept)."""
    order = sorted(range(len(objects)), key=lambda j: int(np.argmax(objects[j][0])))
    merged: list[list[np.ndarray] | None] = [[a.copy(), d.copy(), s.copy()] for a, d, s in objects]
    cos_max = float(np.cos(np.radians(max_deg)))
    for j in order:
        act_j, doa_j, _ = merged[j]
        first = int(np.argmax(act_j))
        best, best_cos = None, cos_max
        for i in order:
            if i == j or merged[i] is None:
                continue
            act_i, doa_i, _ = merged[i]
            frames_i = np.flatnonzero(act_i)  # (n_i,)
            last = int(frames_i[-1])
            if last >= first or first - last - 1 > max_gap:  # overlaps j, starts after it, or ended too long ago
                continue
            c = float(doa_i[last] @ doa_j[first])
            if c >= best_cos:
                best, best_cos = i, c
        if best is None:
            continue
        act_i, doa_i, score_i = merged[best]
        last = int(np.flatnonzero(act_i)[-1])
        act_i |= act_j
        doa_i[last + 1:first] = doa_i[last]  # the pause holds the earlier part's last direction
        doa_i[first:] = doa_j[first:]        # from j's start on: j's directions (its inactive tail holds its last)
        score_i += merged[j][2]
        merged[j] = None
    return [tuple(m) for m in merged if m is not None]
