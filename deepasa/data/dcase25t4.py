"""DCASE 2025 Task 4 (S5, spatial semantic segmentation of sound scenes) in the baseline's waveform layout.

Layout (``nttcslab/dcase2025_task4_baseline``, ``DatasetS5Waveform``; docs/training.md, "Datasets and their recipes")::

    <root>/<split>/soundscape/<name>.wav                4-ch first-order Ambisonics mixture, 32 kHz, 10 s
    <root>/<split>/oracle_target/<name>_<Label>.wav     one "dry" target per event (reference channel 0)

e.g. ``<root> = data/dev_set`` and ``<split> = test``; generated training/validation soundscapes written in
the same layout load the same way. ``<Label>`` is one of the 18 classes :data:`DCASE2025T4_CLASSES`; there are
at most 3 targets per mixture (``n_slots``, padded with silence = class −1 and zero audio, as the baseline).
Targets are sorted by class index. Interference events and background noise are not targets: there is no
noise target.

Crops: training items are random ``clip_seconds`` crops (torch's generator); other splits are full length.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from deepasa.audio.io import resample
from deepasa.errors import DeepASAError

#: DCASE 2025 Task 4 classes (``src/utils.py::LABELS['dcase2025t4']`` of the baseline), in index order.
DCASE2025T4_CLASSES = (
    "AlarmClock", "BicycleBell", "Blender", "Buzzer", "Clapping", "Cough", "CupboardOpenClose", "Dishes",
    "Doorbell", "FootSteps", "HairDryer", "MechanicalFans", "MusicalKeyboard", "Percussion", "Pour", "Speech",
    "Typing", "VacuumCleaner",
)


def _read(path: Path, sample_rate: int) -> np.ndarray:
    """(M, N) float32 at ``sample_rate``."""
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)     # (N, M)
    return resample(x.T, sr, sample_rate)                            # (M, N')


class DCASE25T4Dataset(Dataset):
    """S5 soundscapes with their labelled reference-channel targets.

    Args:
        root: the folder holding ``<split>/soundscape`` and ``<split>/oracle_target``.
        split: split folder (``test``, or the folder of generated soundscapes).
        n_slots: J (3 target events at most).
        sample_rate: output rate (the data are 32 kHz).
        clip_seconds: crop length of training items.
        train: random crops.
        crop: crop at all (default: when ``train``).

    Items:
        mixture (4, N) float32; image (J, 1, N) reference-channel targets, zeros for silence slots;
        cls (J,) int64, −1 for silence; num_sources () int64; scene_id the soundscape name.
    """

    class_names = list(DCASE2025T4_CLASSES)

    def __init__(self, root, split: str = "test", *, n_slots: int = 3, sample_rate: int = 16000,
                 clip_seconds: float = 4.0, train: bool = False, crop: bool | None = None):
        base = Path(root) / split
        mix_dir, tgt_dir = base / "soundscape", base / "oracle_target"
        if not mix_dir.is_dir() or not tgt_dir.is_dir():
            raise DeepASAError(f"no DCASE 2025 T4 split at {base} (expected soundscape/ and oracle_target/)")
        names = sorted(p.stem for p in mix_dir.glob("*.wav"))
        if not names:
            raise DeepASAError(f"no soundscapes in {mix_dir}")
        targets = sorted(p.stem for p in tgt_dir.glob("*.wav"))
        self.items: list[tuple[str, list[tuple[int, Path]]]] = []
        for name in names:
            found = []
            for stem in targets:
                label = stem[len(name) + 1:] if stem.startswith(name + "_") else None
                if label in DCASE2025T4_CLASSES:
                    found.append((DCASE2025T4_CLASSES.index(label), tgt_dir / f"{stem}.wav"))
            if len(found) > n_slots:
                raise DeepASAError(f"{name} has {len(found)} targets, more than the {n_slots} slots")
            self.items.append((name, sorted(found)))
        self.mix_dir = mix_dir
        self.n_slots, self.sample_rate, self.train = int(n_slots), int(sample_rate), train
        self.crop = train if crop is None else crop
        self.clip_samples = int(round(clip_seconds * sample_rate))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        name, targets = self.items[i]
        mixture = _read(self.mix_dir / f"{name}.wav", self.sample_rate)   # (4, N)
        n = mixture.shape[1]
        image = np.zeros((self.n_slots, 1, n), dtype=np.float32)
        cls = np.full(self.n_slots, -1, dtype=np.int64)
        for k, (c, path) in enumerate(targets):
            tgt = _read(path, self.sample_rate)[:1]                  # (1, N') reference channel
            image[k, :, : min(n, tgt.shape[1])] = tgt[:, :n]
            cls[k] = c
        if self.crop and n > self.clip_samples:
            s = int(torch.randint(0, n - self.clip_samples + 1, ()).item())
            mixture, image = mixture[:, s:s + self.clip_samples], image[..., s:s + self.clip_samples]
        elif self.crop and n < self.clip_samples:
            pad = self.clip_samples - n
            mixture, image = np.pad(mixture, ((0, 0), (0, pad))), np.pad(image, ((0, 0), (0, 0), (0, pad)))
        return {"mixture": torch.from_numpy(np.ascontiguousarray(mixture, dtype=np.float32)),
                "image": torch.from_numpy(np.ascontiguousarray(image)),
                "cls": torch.from_numpy(cls),
                "num_sources": torch.tensor(len(targets), dtype=torch.int64),
                "scene_id": name}
