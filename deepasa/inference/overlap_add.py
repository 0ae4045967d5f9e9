"""The overlap-add half of segment-wise inference: window positions, complementary cross-fades, and the sinks
that receive finished signal samples (in memory, or raw float32 files on disk for recordings of any length).

The matching half (which slot of a window continues which object) is :mod:`deepasa.inference.stitching`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from deepasa.errors import DeepASAError

__all__ = ["window_starts", "crossfade_weights", "Sink", "MemorySink", "RawFileSink"]


# ---------------------------------------------------------------------------------------------- windows
def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """Start samples of the windows covering ``n_samples`` (the last window may run past the end).

    >>> window_starts(10, 4, 2), window_starts(3, 4, 2), window_starts(8, 4, 4)
    ([0, 2, 4, 6], [0], [0, 4])
    """
    if window <= 0 or not 0 < hop <= window:
        raise DeepASAError(f"need 0 < hop <= window, got window {window}, hop {hop} samples")
    n_win = 1 if n_samples <= window else 1 + math.ceil((n_samples - window) / hop)
    return [k * hop for k in range(n_win)]


def crossfade_weights(window: int, hop: int, first: bool, last: bool) -> np.ndarray:
    """Overlap-add weights of one window: sin² ramp-in and cos² ramp-out over the overlap, flat between.

    With ``hop >= window / 2`` the weights of consecutive windows sum to exactly 1 (sin² + cos² = 1); with a
    shorter hop the caller divides by the summed weights. The first window has no ramp-in and the last no
    ramp-out, so every sample has a positive total weight.

    Args:
        window: L samples; hop: H samples.
        first, last: whether this is the first / last window of the recording.
    Returns:
        (L,) float64 weights in (0, 1].
    """
    w = np.ones(window)
    ramp_len = min(window - hop, window // 2)
    if ramp_len > 0:
        ramp = np.sin(0.5 * np.pi * (np.arange(ramp_len) + 0.5) / ramp_len) ** 2  # (R,) rising, > 0
        if not first:
            w[:ramp_len] = ramp
        if not last:
            w[window - ramp_len:] = ramp[::-1]  # cos² ramp-out, complementary to the next ramp-in
    return w


# ---------------------------------------------------------------------------------------------- sinks
class Sink:
    """Receives final audio blocks in time order: per object and kind, and the noise stream."""

    def write(self, key: tuple, start: int, block: np.ndarray) -> None:
        """Append ``block`` (M, n) for stream ``key`` (``(track_id, kind)`` or ``("noise",)``) at ``start``."""
        raise NotImplementedError

    def discard(self, track_id: int) -> None:
        """Forget every stream of a track that turned out never to be an object."""

    def close(self) -> None:
        """Release resources (files)."""


class MemorySink(Sink):
    """Keeps every stream in memory (tests, short inputs): ``streams[key] = (start, (M, n) array)``."""

    def __init__(self) -> None:
        self._blocks: dict[tuple, list] = {}
        self._start: dict[tuple, int] = {}

    def write(self, key, start, block):
        """See :meth:`Sink.write`; blocks of one stream must be contiguous."""
        if key not in self._start:
            self._start[key] = start
            self._blocks[key] = []
        self._blocks[key].append(np.array(block, dtype=np.float32))

    def discard(self, track_id):
        """See :meth:`Sink.discard`."""
        for key in [k for k in self._start if k[0] == track_id]:
            del self._start[key], self._blocks[key]

    def stream(self, key: tuple, n_total: int | None = None) -> np.ndarray:
        """The stream ``key`` as (M, n_total) with zeros outside what was written (n_total default: its end)."""
        start, blocks = self._start[key], np.concatenate(self._blocks[key], axis=-1)  # (M, n)
        n_total = start + blocks.shape[-1] if n_total is None else n_total
        out = np.zeros((blocks.shape[0], n_total), dtype=np.float32)  # (M, n_total)
        stop = min(n_total, start + blocks.shape[-1])
        out[:, start:stop] = blocks[:, : stop - start]
        return out

    def keys(self) -> list[tuple]:
        """Stream keys written so far."""
        return list(self._start)


class RawFileSink(Sink):
    """Appends each stream to ``folder/<name>.f32`` (interleaved float32, (n, M) order), opened on demand.

    ``starts[key]`` is the first sample of stream ``key``; ``lengths[key]`` the samples written. A file is
    opened for each write and closed again, so the number of open files does not grow with the objects.
    """

    def __init__(self, folder: Path, n_channels: int) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.n_channels = n_channels
        self.starts: dict[tuple, int] = {}
        self.lengths: dict[tuple, int] = {}

    def path(self, key: tuple) -> Path:
        """File of stream ``key``."""
        return self.folder / ("_".join(str(k) for k in key) + ".f32")

    def write(self, key, start, block):
        """See :meth:`Sink.write`."""
        if key not in self.starts:
            self.starts[key], self.lengths[key] = start, 0
        elif start != self.starts[key] + self.lengths[key]:
            raise RuntimeError(f"non-contiguous write to {key}: {start} != {self.starts[key] + self.lengths[key]}")
        with open(self.path(key), "ab") as fh:
            fh.write(np.ascontiguousarray(np.asarray(block, dtype="<f4").T).tobytes())  # (n, M) interleaved
        self.lengths[key] += block.shape[-1]

    def discard(self, track_id):
        """See :meth:`Sink.discard`."""
        for key in [k for k in self.starts if k[0] == track_id]:
            self.path(key).unlink(missing_ok=True)
            del self.starts[key], self.lengths[key]

    def read_blocks(self, key: tuple, block: int):
        """Yield (M, n) float32 blocks of stream ``key`` from its start."""
        m = self.n_channels
        with open(self.path(key), "rb") as fh:
            while True:
                buf = fh.read(block * m * 4)
                if not buf:
                    return
                yield np.frombuffer(buf, dtype="<f4").reshape(-1, m).T  # (n, M) -> (M, n)
