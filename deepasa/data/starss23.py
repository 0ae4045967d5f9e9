"""STARSS23 (DCASE 2023 Task 3) in the official development layout, chunked into model-length clips.

Layout (as distributed on Zenodo, docs/training.md "Datasets and their recipes"; not the authors' pre-chunked
layout of docs/spec.md §7.2)::

    <root>/foa_dev/<split-folder>/<name>.wav        4-ch FOA (ACN/SN3D), 24 kHz
    <root>/mic_dev/<split-folder>/<name>.wav        4-ch tetrahedral MIC, 24 kHz
    <root>/metadata_dev/<split-folder>/<name>.csv   no header; rows frame,class,source,azimuth,elevation[,distance]

``<split-folder>`` is e.g. ``dev-train-sony``, ``dev-train-tau``, ``dev-test-sony``, ``dev-test-tau``; split
``train`` takes every folder starting with ``dev-train``, ``test`` every ``dev-test`` folder, any other split
name the folders starting with it. Frames are 100 ms (0-based); azimuth/elevation in degrees with the usual
elevation (+90° up), so ``z = sin(elevation)`` (docs/spec.md §7.2).

Each recording is cut into consecutive clips of ``clip_seconds`` (the last one zero-padded), resampled to
``sample_rate``. In each clip every distinct (class, source index) pair is one object slot, in order of first
appearance (ties by class, then source), up to ``n_slots`` (later ones are dropped, as the authors' loader
drops slots ≥ 5). The class order is the DCASE 13-class list :data:`DCASE2023_CLASSES`. STARSS23 has no
isolated sources, so the items carry SELD targets only (train with ``objective: seld``).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from deepasa.audio.geometry import unit_vector
from deepasa.audio.io import resample
from deepasa.errors import DeepASAError

#: The DCASE 2023 Task 3 / STARSS23 classes, in index order.
DCASE2023_CLASSES = (
    "Female speech, woman speaking", "Male speech, man speaking", "Clapping", "Telephone", "Laughter",
    "Domestic sounds", "Walk, footsteps", "Door, open or close", "Music", "Musical instrument",
    "Water tap, faucet", "Bell", "Knock",
)
FORMAT_FOLDERS = {"mic": "mic_dev", "foa": "foa_dev"}


def read_metadata(path: str | Path) -> dict[int, list[tuple[int, int, float, float]]]:
    """Read one STARSS23 metadata CSV.

    Args:
        path: ``frame,class,source,azimuth,elevation[,distance]`` rows (no header; a header line is skipped).

    Returns:
        ``{frame: [(class, source, azimuth_deg, elevation_deg), ...]}``.

    Raises:
        DeepASAError: malformed rows.
    """
    frames: dict[int, list[tuple[int, int, float, float]]] = {}
    with open(path, newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row or (lineno == 1 and row[0].strip()[:1].isalpha()):
                continue
            if len(row) not in (5, 6):
                raise DeepASAError(f"{path}:{lineno}: expected 5 or 6 columns, found {len(row)}")
            try:
                frame, cls, src = (int(float(v)) for v in row[:3])
                az, el = float(row[3]), float(row[4])
            except ValueError:
                raise DeepASAError(f"{path}:{lineno}: malformed row {','.join(row)!r}") from None
            frames.setdefault(frame, []).append((cls, src, az, el))
    return frames


class Starss23Dataset(Dataset):
    """STARSS23 recordings as fixed-length clips with SELD targets.

    Args:
        root: the folder holding ``foa_dev``/``mic_dev`` and ``metadata_dev``.
        split: ``train``, ``test`` or a split-folder prefix (module docstring).
        n_slots: J.
        sample_rate: output rate (the recordings are 24 kHz).
        clip_seconds: clip length (a multiple of the 100-ms label hop).
        train: unused (clips are fixed); accepted for a uniform loader signature.
        fmt: ``mic`` or ``foa``.
        peak_normalize: divide each clip by its peak |x| (the STARSS23 fine-tuning recipe, docs/spec.md §6).
        label_hop: seconds per metadata frame (0.1).

    Items:
        mixture (M, N) float32; cls (J,) int64, −1 empty; activity (J, T') float32; doa (J, T', 3) unit
        vectors (zeros when inactive); num_sources () int64; scene_id ``<name>_<clip:03d>``; recording
        ``<name>`` and frame_offset () int64 (the clip's first label frame in it), so that ``deepasa evaluate``
        scores the DCASE metrics per recording, as the official definition does.
    """

    class_names = list(DCASE2023_CLASSES)

    def __init__(self, root, split: str = "train", *, n_slots: int = 5, sample_rate: int = 16000,
                 clip_seconds: float = 4.0, train: bool = False, fmt: str = "mic", peak_normalize: bool = True,
                 label_hop: float = 0.1):
        if fmt not in FORMAT_FOLDERS:
            raise DeepASAError(f"STARSS23 format must be mic or foa, not {fmt!r}")
        root = Path(root)
        audio_root, meta_root = root / FORMAT_FOLDERS[fmt], root / "metadata_dev"
        if not audio_root.is_dir() or not meta_root.is_dir():
            raise DeepASAError(f"no STARSS23 data at {root} (expected {audio_root.name}/ and metadata_dev/)")
        prefix = {"train": "dev-train", "test": "dev-test"}.get(split, split)
        folders = sorted(p for p in audio_root.iterdir() if p.is_dir() and p.name.startswith(prefix))
        if not folders:
            raise DeepASAError(f"no {audio_root.name}/{prefix}* folders in {root}")
        self.n_slots, self.sample_rate, self.peak_normalize = int(n_slots), int(sample_rate), peak_normalize
        self.label_hop = label_hop
        self.clip_frames = int(round(clip_seconds / label_hop))
        if not math.isclose(self.clip_frames * label_hop, clip_seconds, rel_tol=1e-9, abs_tol=1e-9):
            raise DeepASAError(f"clip_seconds {clip_seconds} is not a multiple of the {label_hop}-s label hop")
        self.clip_samples = int(round(clip_seconds * sample_rate))
        self.items: list[tuple[Path, int, int]] = []               # (wav, clip index, native rate)
        self.labels: dict[Path, dict] = {}
        for folder in folders:
            for wav in sorted(folder.glob("*.wav")):
                meta = meta_root / folder.name / f"{wav.stem}.csv"
                if not meta.is_file():
                    raise DeepASAError(f"no metadata for {wav}: expected {meta}")
                info = sf.info(str(wav))
                if info.channels != 4:
                    raise DeepASAError(f"{wav} has {info.channels} channels; STARSS23 {fmt} has 4")
                labels = read_metadata(meta)
                bad = sorted({c for rows in labels.values() for c, *_ in rows if not 0 <= c < len(DCASE2023_CLASSES)})
                if bad:
                    raise DeepASAError(f"{meta}: class index {bad[0]} outside 0..{len(DCASE2023_CLASSES) - 1}")
                self.labels[wav] = labels
                n_clips = max(1, math.ceil(info.frames / (info.samplerate * clip_seconds)))
                self.items += [(wav, k, info.samplerate) for k in range(n_clips)]
        if not self.items:
            raise DeepASAError(f"no recordings in {audio_root}/{prefix}*")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        wav, k, native = self.items[i]
        n_native = int(round(self.clip_frames * self.label_hop * native))
        x, _ = sf.read(str(wav), start=k * n_native, stop=(k + 1) * n_native, dtype="float32", always_2d=True)
        x = np.pad(x.T, ((0, 0), (0, n_native - x.shape[0])))       # (M, n_native)
        x = resample(x, native, self.sample_rate)                    # (M, ≈N)
        x = np.pad(x, ((0, 0), (0, max(0, self.clip_samples - x.shape[1]))))[:, : self.clip_samples]  # (M, N)
        if self.peak_normalize and np.abs(x).max() > 0:
            x = x / np.abs(x).max()
        T, J = self.clip_frames, self.n_slots
        cls = np.full(J, -1, dtype=np.int64)
        activity = np.zeros((J, T), dtype=np.float32)
        doa = np.zeros((J, T, 3), dtype=np.float32)
        labels = self.labels[wav]
        rows = [(t - k * T, c, s, az, el) for t in range(k * T, (k + 1) * T) for c, s, az, el in labels.get(t, [])]
        slots: dict[tuple[int, int], int] = {}
        for t, c, s, az, el in sorted(rows, key=lambda r: (r[0], r[1], r[2])):
            if (c, s) not in slots:
                if len(slots) == J:
                    continue                                        # more objects than slots: dropped
                slots[(c, s)] = len(slots)
            j = slots[(c, s)]
            cls[j] = c
            activity[j, t] = 1.0
            doa[j, t] = unit_vector(az, el)
        return {
            "mixture": torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
            "cls": torch.from_numpy(cls),
            "activity": torch.from_numpy(activity),
            "doa": torch.from_numpy(doa),
            "num_sources": torch.tensor(len(slots), dtype=torch.int64),
            "scene_id": f"{wav.stem}_{k:03d}",
            "recording": wav.stem,
            "frame_offset": torch.tensor(k * T, dtype=torch.int64),
        }
