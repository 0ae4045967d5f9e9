"""Torch dataset for scenes in the ASA layout: ``deepasa simulate`` output and the authors' ASA/ASA2 data.

Layout (docs/sound-bank.md, "Scene simulator"; ``deepasa.scenes.writer``)::

    <root>/<split>/mixed/<id>.wav, anechoic/<id>/<k>.wav, reverb/<id>/<k>.wav, info/<id>.csv
    [noise/<id>.wav, meta/<id>.json, dcase/<id>.csv]     (ours only)
    <root>/classes.json                                   (ours; optional for ASA)

Elevation: our ``info`` files store the usual elevation (+90° = up); ASA's store the polar angle from the
zenith. With ``elevation="auto"`` a split that has ``meta/`` is read as ours, one without as ASA, and polar
angles are converted with ``el = 90° − polar`` (physically right; the authors' loader flips the sign of z,
docs/spec.md §7.1, which is harmless only if every dataset is read the same way).

Sources beyond ``n_slots`` are dropped (the first ``n_slots`` by file index are kept, as the ASA loader
does); empty slots have zero audio, class −1, zero activity and zero DoA. ASA has no ``noise/`` folder: the
noise target is then ``mixture − Σ_k (direct_k + reverb_k)``, the definition of docs/spec.md §5.1.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from deepasa.audio.geometry import unit_vector
from deepasa.errors import DeepASAError


def natural_key(text: str):
    """Sort key that orders "2" before "10"."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _read(path: Path) -> np.ndarray:
    data, _ = sf.read(str(path), dtype="float32", always_2d=True)  # (N, M)
    return data.T  # (M, N)


class SceneDataset(Dataset):
    """Scenes of one split as the tensors the network trains on.

    Args:
        root: dataset root (``<root>/<split>`` holds the layout).
        split: "train", "val", "test" (ours) or "dev"/"test" (ASA).
        n_slots: J, object slots.
        label_hop: seconds per label frame (100 ms).
        elevation: "auto", "elevation" (ours) or "polar" (ASA) — the convention of the info CSV.
        class_names: the class list; default ``<root>/classes.json`` (required when the CSV holds names).

    Each item is a dict:
        mixture (M, N) float32; direct, reverb (J, M, N); noise (M, N); cls (J,) int64 with −1 for empty
        slots; activity (J, T') float32 in {0, 1}; doa (J, T', 3) unit vectors (zeros when inactive);
        num_sources () int64; scene_id str.
    """

    def __init__(self, root, split: str, n_slots: int = 5, label_hop: float = 0.1, elevation: str = "auto",
                 class_names: list[str] | None = None):
        self.dir = Path(root) / split
        if not (self.dir / "mixed").is_dir():
            raise DeepASAError(f"no scenes at {self.dir} (expected {self.dir}/mixed/*.wav)")
        self.ids = sorted((p.stem for p in (self.dir / "mixed").glob("*.wav")), key=natural_key)
        if not self.ids:
            raise DeepASAError(f"no scenes at {self.dir}/mixed")
        if elevation == "auto":
            elevation = "elevation" if (self.dir / "meta").is_dir() else "polar"
        if elevation not in ("elevation", "polar"):
            raise DeepASAError(f"elevation must be auto, elevation or polar, got {elevation!r}")
        self.elevation = elevation
        classes_file = Path(root) / "classes.json"
        if class_names is None and classes_file.is_file():
            class_names = json.loads(classes_file.read_text())
        self.class_names = class_names
        self.n_slots = n_slots
        self.label_hop = label_hop
        self.sample_rate = sf.info(str(self.dir / "mixed" / f"{self.ids[0]}.wav")).samplerate

    def __len__(self) -> int:
        return len(self.ids)

    def _class_index(self, value: str) -> int:
        try:
            return int(value)
        except ValueError:
            if not self.class_names or value not in self.class_names:
                raise DeepASAError(f"class {value!r} in {self.dir}/info is not in classes.json") from None
            return self.class_names.index(value)

    def __getitem__(self, i: int) -> dict:
        sid = self.ids[i]
        mixture = _read(self.dir / "mixed" / f"{sid}.wav")  # (M, N)
        m, n = mixture.shape
        n_frames = int(round(n / self.sample_rate / self.label_hop))
        files = sorted((self.dir / "anechoic" / sid).glob("*.wav"), key=lambda p: natural_key(p.stem))
        k_src = min(len(files), self.n_slots)
        direct = np.zeros((self.n_slots, m, n), dtype=np.float32)
        reverb = np.zeros((self.n_slots, m, n), dtype=np.float32)
        for k, f in enumerate(files[:k_src]):
            direct[k] = _read(f)[:, :n]
            reverb[k] = _read(self.dir / "reverb" / sid / f.name)[:, :n]
        noise_file = self.dir / "noise" / f"{sid}.wav"
        if noise_file.is_file():
            noise = _read(noise_file)
        else:  # ASA: everything that is not a (loaded or dropped) source image
            all_src = sum(_read(f) + _read(self.dir / "reverb" / sid / f.name) for f in files) if files else 0.0
            noise = (mixture - all_src).astype(np.float32)
        cls = np.full(self.n_slots, -1, dtype=np.int64)
        meta_file = self.dir / "meta" / f"{sid}.json"
        if meta_file.is_file():  # ours: the class of a source is known even if it is never labelled active
            for k, src in enumerate(json.loads(meta_file.read_text())["sources"][:k_src]):
                cls[k] = int(src["class_index"])
        activity = np.zeros((self.n_slots, n_frames), dtype=np.float32)
        doa = np.zeros((self.n_slots, n_frames, 3), dtype=np.float32)
        with open(self.dir / "info" / f"{sid}.csv", newline="") as fh:
            rows = list(csv.reader(fh))
        for row in rows:
            if not row or not row[0].strip().lstrip("-").isdigit():
                continue  # header or blank line
            frame, k = int(row[0]), int(row[1])
            if k >= self.n_slots or not 0 <= frame < n_frames:
                continue
            az, el = float(row[3]), float(row[4])
            el = 90.0 - el if self.elevation == "polar" else el
            cls[k] = self._class_index(row[2].strip())
            activity[k, frame] = 1.0
            doa[k, frame] = unit_vector(az, el)
        return {
            "mixture": torch.from_numpy(mixture),
            "direct": torch.from_numpy(direct),
            "reverb": torch.from_numpy(reverb),
            "noise": torch.from_numpy(np.ascontiguousarray(noise)),
            "cls": torch.from_numpy(cls),
            "activity": torch.from_numpy(activity),
            "doa": torch.from_numpy(doa),
            "num_sources": torch.tensor(k_src, dtype=torch.int64),
            "scene_id": sid,
        }
