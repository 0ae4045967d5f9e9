"""Audio file I/O with the input checks of docs/analyze.md, "Input handling" (no torch).

``load_audio`` returns float32 ``(M, N)`` arrays and refuses unreadable, empty or non-finite input with a
:class:`~deepasa.errors.DeepASAError`; ``write_audio`` writes float32 WAV atomically (temp file + rename).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from deepasa.errors import DeepASAError
from deepasa.staging import atomic_path


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample along the last axis with soxr (high quality).

    Args:
        x: (..., N) float array.
    Returns:
        (..., N') float32 with N' ≈ N · sr_out / sr_in.
    """
    if sr_in == sr_out:
        return np.asarray(x, dtype=np.float32)
    import soxr

    x = np.asarray(x, dtype=np.float32)
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])  # (L, N)
    y = soxr.resample(flat.T, sr_in, sr_out, quality="HQ").T  # (L, N')
    return np.ascontiguousarray(y.reshape(*lead, y.shape[-1]), dtype=np.float32)  # (..., N')


def load_audio(path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file (wav/flac/ogg/...) as float32.

    Args:
        path: file path.
        sample_rate: resample to this rate when given.
    Returns:
        (audio (M, N) float32, sample rate).
    Raises:
        DeepASAError: missing, unreadable, empty, or containing NaN/Inf samples.
    """
    path = Path(path)
    if not path.is_file():
        raise DeepASAError(f"no such audio file: {path}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (N, M)
    except Exception as exc:  # libsndfile says why in one line
        raise DeepASAError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    if data.size == 0:
        raise DeepASAError(f"{path} contains no samples")
    if not np.isfinite(data).all():
        raise DeepASAError(f"{path} contains NaN or Inf samples")
    audio = np.ascontiguousarray(data.T)  # (M, N)
    if sample_rate is not None and sample_rate != sr:
        audio, sr = resample(audio, sr, sample_rate), sample_rate
    return audio, sr


def _float_wav_bytes(data: np.ndarray, sample_rate: int) -> bytes:
    """A 32-bit IEEE-float WAV file (fmt + fact + data chunks) for ``data`` (N, M).

    libsndfile adds a PEAK chunk with a time stamp to float WAVs, so the same samples written twice give
    different bytes; this writer is byte-reproducible and every reader (libsndfile included) accepts it.
    """
    n, m = data.shape
    payload = np.ascontiguousarray(data, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHHH", 3, m, sample_rate, sample_rate * 4 * m, 4 * m, 32, 0)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<II", 4, n)
    chunks += b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def write_audio(path, audio: np.ndarray, sample_rate: int, subtype: str = "FLOAT") -> None:
    """Write ``audio`` (M, N) or (N,) to ``path`` atomically (temp file, then rename).

    Float WAV is written by :func:`_float_wav_bytes` (reproducible bytes); other formats by soundfile.
    """
    path = Path(path)
    a = np.asarray(audio, dtype=np.float32)
    data = a.T if a.ndim == 2 else a[:, None]  # (N, M)
    fmt = path.suffix.lstrip(".").upper() or "WAV"
    with atomic_path(path, "tmp") as tmp:   # soundfile is told the format: the temporary needs no extension
        if fmt == "WAV" and subtype == "FLOAT":
            tmp.write_bytes(_float_wav_bytes(data, sample_rate))
        else:
            sf.write(str(tmp), data, sample_rate, subtype=subtype, format=fmt)


#: (E_1 + E_2 + E_3) / E_0 below this: not a microphone array (FOA gives at most 1; see :func:`check_format`).
MIC_MIN_RATIO = 1.4
#: (E_1 + E_2 + E_3) / E_0 above this: not AmbiX FOA (FuMa read as AmbiX gives about 2, a MIC array about 3).
FOA_MAX_RATIO = 2.0


def energy_ratio(energy: np.ndarray) -> float:
    """(E_1 + E_2 + E_3) / E_0 of 4 channel energies (M,): at most 1 for AmbiX FOA, about 3 for a MIC array."""
    return float(energy[1:].sum() / max(energy[0], 1e-30))


def check_format(energy: np.ndarray, fmt: str, name: str = "input") -> None:
    """Physical plausibility of the declared 4-channel format from the channel energies (M,).

    FOA (ACN/SN3D, W Y Z X): a plane wave from u gives gains (1, u_y, u_z, u_x), so E_Y + E_Z + E_X <= E_W
    for any mixture of plane waves and diffuse noise. Four omni capsules 8 cm apart see about the same
    energy each, so (E_1 + E_2 + E_3) / E_0 ≈ 3 (:func:`energy_ratio`). A ratio below :data:`MIC_MIN_RATIO`
    (1.4) is refused for ``mic``, above :data:`FOA_MAX_RATIO` (2) for ``foa``.
    """
    if len(energy) != 4:
        return
    ratio = energy_ratio(energy)
    if fmt == "mic" and ratio < MIC_MIN_RATIO:
        raise DeepASAError(f"{name} looks like first-order Ambisonics (channels 2-4 carry {ratio:.2f}x the energy "
                           "of channel 1), not a 4-microphone array recording; the model expects --format mic")
    if fmt == "foa" and ratio > FOA_MAX_RATIO:
        raise DeepASAError(f"{name} does not look like FOA ACN/SN3D (W, Y, Z, X): Y+Z+X carry {ratio:.2f}x the "
                           "energy of W (at most 1x for Ambisonics); for a microphone-array recording use --format mic")
