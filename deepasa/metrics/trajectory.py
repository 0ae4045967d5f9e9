"""How well a set of object trajectories (activity + direction per label frame) matches the true sources.

Used by ``benchmarks/trajectories.py`` to judge object finders (docs/metrics.md, "Trajectories"). The unit is
the 100-ms label frame. A true source's frame is **found** when some estimated object is active in it with a
direction within ``max_deg`` (20°) of the source's; an estimated object's frame is **right** when some true
source is active in it within ``max_deg``. Counts are pooled over the frames of all sources of a set (so a
long source weighs more than a short one), as frame-wise recall and precision in sound event detection.

* ``recall`` = found source frames / active source frames; ``precision`` = right object frames / active
  object frames;
* ``doa_error_deg``: angle from each found source frame to its nearest matching object (the list, so sets
  pool them before the median);
* ``identity_switches``: per source, how often the nearest matching object changes between consecutive found
  frames; ``fragments``: per source, the number of distinct objects that cover it (1 = one track);
* ``false_alarms``: estimated objects fewer than half of whose active frames are right;
* ``detected``: sources with at least half their active frames found.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TrajectoryScore:
    """Counts of one clip (pool them over a set with :func:`pool`)."""

    source_frames: int = 0
    found_frames: int = 0
    object_frames: int = 0
    right_frames: int = 0
    doa_errors: list = field(default_factory=list)
    identity_switches: int = 0
    fragments: list = field(default_factory=list)
    false_alarms: int = 0
    n_sources: int = 0
    n_objects: int = 0
    detected: int = 0


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def score_trajectories(true_activity, true_doa, est_activity, est_doa, *, max_deg: float = 20.0) -> TrajectoryScore:
    """Frame-wise matching of estimated objects to true sources in one clip.

    Args:
        true_activity: (K, T') bool; true_doa: (K, T', 3) direction vectors (used where active).
        est_activity: (J, T'') bool; est_doa: (J, T'', 3). T'' may differ from T' by a frame or two (clip
            length rounding): both are cut to the shorter.
        max_deg: the angle within which an object's frame matches a source's.
    Returns:
        :class:`TrajectoryScore` of the clip.

    Example:
        >>> act = np.ones((1, 4), bool)
        >>> s = score_trajectories(act, np.tile([1.0, 0, 0], (1, 4, 1)), act, np.tile([0.0, 1, 0], (1, 4, 1)))
        >>> s.found_frames, s.false_alarms
        (0, 1)
    """
    ta, ea = np.asarray(true_activity, bool), np.asarray(est_activity, bool)
    t = min(ta.shape[1], ea.shape[1]) if ea.size else ta.shape[1]
    ta, td = ta[:, :t], _unit(np.asarray(true_doa, float)[:, :t])  # (K, T), (K, T, 3)
    k, j = ta.shape[0], ea.shape[0]
    out = TrajectoryScore(source_frames=int(ta.sum()), n_sources=k, n_objects=j)
    if j == 0:
        out.fragments = [0] * k
        return out
    ea, ed = ea[:, :t], _unit(np.asarray(est_doa, float)[:, :t])  # (J, T), (J, T, 3)
    cos = np.einsum("ktc,jtc->kjt", td, ed).clip(-1, 1)  # (K, J, T)
    angle = np.degrees(np.arccos(cos))  # (K, J, T)
    both = ta[:, None] & ea[None]  # (K, J, T) both active
    match = both & (angle <= max_deg)  # (K, J, T)
    found = match.any(axis=1)  # (K, T)
    right = match.any(axis=0)  # (J, T)
    out.found_frames, out.object_frames, out.right_frames = int(found.sum()), int(ea.sum()), int(right.sum())
    nearest = np.where(match, angle, np.inf).argmin(axis=1)  # (K, T) the closest matching object
    for s in range(k):
        frames = np.flatnonzero(found[s])
        ids = nearest[s, frames]  # (n,)
        out.doa_errors += list(angle[s, ids, frames])
        out.identity_switches += int((ids[1:] != ids[:-1]).sum())
        out.fragments.append(len(set(ids.tolist())))
        out.detected += int(ta[s].sum() > 0 and found[s].sum() >= 0.5 * ta[s].sum())
    active_objects = ea.sum(axis=1)  # (J,)
    out.false_alarms = int(((right.sum(axis=1) < 0.5 * active_objects) & (active_objects > 0)).sum())
    return out


def pool(scores: list[TrajectoryScore]) -> dict:
    """Set-level numbers from per-clip scores.

    Returns:
        dict with recall, precision, doa_error_median_deg, identity_switches_per_source, fragments_per_source
        (mean over found sources), false_alarms_per_clip, detection (share of sources detected),
        objects_per_clip and sources_per_clip.
    """
    tot = lambda name: sum(getattr(s, name) for s in scores)  # noqa: E731
    errors = [e for s in scores for e in s.doa_errors]
    frags = [f for s in scores for f in s.fragments if f > 0]
    n_src, n_clip = max(tot("n_sources"), 1), max(len(scores), 1)
    return {
        "recall": tot("found_frames") / max(tot("source_frames"), 1),
        "precision": tot("right_frames") / max(tot("object_frames"), 1),
        "doa_error_median_deg": float(np.median(errors)) if errors else float("nan"),
        "identity_switches_per_source": tot("identity_switches") / n_src,
        "fragments_per_source": float(np.mean(frags)) if frags else float("nan"),
        "false_alarms_per_clip": tot("false_alarms") / n_clip,
        "detection": tot("detected") / n_src,
        "objects_per_clip": tot("n_objects") / n_clip,
        "sources_per_clip": tot("n_sources") / n_clip,
    }
