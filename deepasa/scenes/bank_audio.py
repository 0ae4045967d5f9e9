"""Audio conditioning for the sound bank: mono, 16 kHz, silence-trimmed, length-capped, peak-normalised.

The same function turns every source file (a Debian package member or a synthetic render) into a bank
clip, and ``scripts/build_manifest.py`` runs it too, so a clip that the manifest lists is known to survive
conditioning (not silent, not too short) before it is ever fetched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from deepasa.staging import atomic_path

SAMPLE_RATE = 16000
MAX_SECONDS = 10.0          # longer sources are cropped (music tracks from the manifest's offset)
MIN_SECONDS = 0.15          # shorter clips (after trimming) are not worth a source slot in a scene
TRIM_DB = 45.0              # a 10 ms frame counts as silence when it is this far below the loudest frame
TRIM_FLOOR = 1e-4           # ... or below this absolute RMS (digital near-silence)
TRIM_MARGIN_S = 0.02        # keep this much context around the sounding part
PEAK = 0.9                  # peak level after normalisation (headroom for resampling overshoot)


def read_mono(path: Path, offset_s: float = 0.0, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Read ``path`` as float32 mono (mean of channels), optionally from ``offset_s`` for ``max_seconds``.

    >>> import tempfile, numpy as np, soundfile as sf
    >>> f = tempfile.NamedTemporaryFile(suffix=".wav"); sf.write(f.name, np.zeros((800, 2)), 8000)
    >>> x, sr = read_mono(Path(f.name)); x.shape, x.dtype, sr
    ((800,), dtype('float32'), 8000)
    """
    info = sf.info(str(path))
    start = int(round(offset_s * info.samplerate))
    frames = -1 if max_seconds is None else int(round(max_seconds * info.samplerate))
    x, sr = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    return x.mean(axis=1).astype(np.float32), int(sr)


def trim_silence(x: np.ndarray, sr: int) -> np.ndarray:
    """Drop leading and trailing silence (10 ms frames ``TRIM_DB`` below the loudest one), keeping a margin.

    Returns an empty array when nothing is above the threshold.
    """
    hop = max(1, sr // 100)
    n = len(x) // hop
    if n == 0:
        return x[:0]
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1))
    threshold = max(rms.max() * 10 ** (-TRIM_DB / 20), TRIM_FLOOR)
    loud = np.flatnonzero(rms > threshold)
    if loud.size == 0:
        return x[:0]
    margin = int(TRIM_MARGIN_S * sr)
    start = max(0, loud[0] * hop - margin)
    stop = min(len(x), (loud[-1] + 1) * hop + margin)
    return x[start:stop]


def condition(x: np.ndarray, sr: int) -> np.ndarray | None:
    """Resample mono ``x`` to 16 kHz, trim silence, cap at ``MAX_SECONDS`` and normalise the peak.

    Returns None when the result is silent or shorter than ``MIN_SECONDS``.
    """
    x = np.nan_to_num(np.asarray(x, dtype=np.float32))
    if sr != SAMPLE_RATE:
        x = soxr.resample(x, sr, SAMPLE_RATE, quality="HQ").astype(np.float32)
    x = trim_silence(x, SAMPLE_RATE)
    x = x[: int(MAX_SECONDS * SAMPLE_RATE)]
    if len(x) < MIN_SECONDS * SAMPLE_RATE:
        return None
    peak = float(np.max(np.abs(x)))
    if peak <= 0.0:
        return None
    return (x * (PEAK / peak)).astype(np.float32)


def condition_file(path: Path, offset_s: float = 0.0) -> np.ndarray | None:
    """Read and :func:`condition` one source file (reading at most ``MAX_SECONDS`` + 2 s from ``offset_s``)."""
    x, sr = read_mono(path, offset_s=offset_s, max_seconds=MAX_SECONDS + 2.0)
    return condition(x, sr)


def write_clip(path: Path, x: np.ndarray) -> None:
    """Write a conditioned clip as 16-bit FLAC atomically (temp file in the same folder, then rename)."""
    with atomic_path(path, "tmp", ".flac") as tmp:  # .<name>.tmp-<pid>.flac: a killed fetch's is removed by the next
        sf.write(str(tmp), x, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
