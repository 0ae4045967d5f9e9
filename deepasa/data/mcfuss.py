"""MC-FUSS (spatialised multichannel FUSS-plus) for the separation-only DeepASA variant (docs/spec.md §7.3, §5.3).

Layout::

    <root>/<split>/mixed/filenum_<id>_mixed.wav     4-ch mixture, 16 kHz, 10 s
    <root>/<split>/clean/filenum_<id>/*.wav          4-ch image of each source (2–4 per mixture)

with splits ``train``, ``dev``, ``test``. Source files are taken in natural order. A clean file whose name
contains ``background`` (FUSS names its background ``background0_sound.wav``) is the noise target, not a
source [I: the authors' loader is not public in source form]; without one, the noise target is
``mixture − Σ sources``. Sources beyond ``n_slots`` are an error (the paper's J is at most 4).

Crops (docs/spec.md §7.3): training items are random ``clip_seconds`` crops (a new position at every access, from
torch's generator, which Lightning seeds per worker); validation items are crops at a position seeded by
``(seed, index)``; the ``test`` split is returned at full length (score it with batch 1).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from deepasa.audio.io import resample
from deepasa.errors import DeepASAError

_MIX = re.compile(r"^filenum_(?P<id>.+)_mixed$")


def _natural(text: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _read(path: Path, sample_rate: int) -> np.ndarray:
    """(M, N) float32 at ``sample_rate``."""
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)     # (N, M)
    return resample(x.T, sr, sample_rate)                            # (M, N')


class MCFussDataset(Dataset):
    """MC-FUSS mixtures with zero-padded source images.

    Args:
        root: dataset root; ``split`` one of its split folders.
        n_slots: J (4 in the paper).
        sample_rate: output rate (files at another rate are resampled).
        clip_seconds: crop length.
        train: random crops (training split).
        crop: crop at all; default: every split but ``test``.
        seed: seed of the validation crop positions.

    Items:
        mixture (M, N) float32; image (J, M, N) source images, zeros for absent sources; noise (M, N);
        num_sources () int64; scene_id ``filenum_<id>``.
    """

    class_names = None

    def __init__(self, root, split: str = "train", *, n_slots: int = 4, sample_rate: int = 16000,
                 clip_seconds: float = 4.0, train: bool = False, crop: bool | None = None, seed: int = 0):
        self.dir = Path(root) / split
        if not (self.dir / "mixed").is_dir():
            raise DeepASAError(f"no MC-FUSS split at {self.dir} (expected {self.dir}/mixed/filenum_<id>_mixed.wav)")
        self.ids = sorted((m.group("id") for p in (self.dir / "mixed").glob("*.wav") if (m := _MIX.match(p.stem))),
                          key=_natural)
        if not self.ids:
            raise DeepASAError(f"no filenum_<id>_mixed.wav files in {self.dir}/mixed")
        self.n_slots, self.sample_rate, self.train, self.seed = int(n_slots), int(sample_rate), train, seed
        self.crop = (split != "test") if crop is None else crop
        self.clip_samples = int(round(clip_seconds * sample_rate))

    def __len__(self) -> int:
        return len(self.ids)

    def _crop_start(self, i: int, n: int) -> int:
        room = n - self.clip_samples
        if not self.crop or room <= 0:
            return 0
        if self.train:
            return int(torch.randint(0, room + 1, ()).item())
        return int(np.random.default_rng([self.seed, i]).integers(0, room + 1))

    def __getitem__(self, i: int) -> dict:
        sid = f"filenum_{self.ids[i]}"
        mixture = _read(self.dir / "mixed" / f"{sid}_mixed.wav", self.sample_rate)   # (M, N)
        m, n = mixture.shape
        files = sorted((self.dir / "clean" / sid).glob("*.wav"), key=lambda p: _natural(p.stem))
        if not files:
            raise DeepASAError(f"no clean sources for {sid} in {self.dir / 'clean' / sid}")
        noise_files = [f for f in files if "background" in f.stem.lower()]
        source_files = [f for f in files if f not in noise_files]
        if len(source_files) > self.n_slots:
            raise DeepASAError(f"{sid} has {len(source_files)} sources, more than the {self.n_slots} slots")
        image = np.zeros((self.n_slots, m, n), dtype=np.float32)
        for k, f in enumerate(source_files):
            src = _read(f, self.sample_rate)
            if src.shape[0] != m:
                raise DeepASAError(f"{f} has {src.shape[0]} channels, the mixture {m}")
            image[k, :, : min(n, src.shape[1])] = src[:, :n]
        if noise_files:
            noise = np.zeros((m, n), dtype=np.float32)
            for f in noise_files:
                nz = _read(f, self.sample_rate)
                noise[:, : min(n, nz.shape[1])] += nz[:, :n]
        else:
            noise = mixture - image.sum(0)                           # (M, N)
        s = self._crop_start(i, n)
        e = s + (self.clip_samples if self.crop else n)
        pad = max(0, e - n)

        def cut(a: np.ndarray) -> torch.Tensor:
            out = a[..., s:e]
            if pad:
                out = np.pad(out, [(0, 0)] * (a.ndim - 1) + [(0, pad)])
            return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))

        return {"mixture": cut(mixture), "image": cut(image), "noise": cut(noise),
                "num_sources": torch.tensor(len(source_files), dtype=torch.int64), "scene_id": sid}
