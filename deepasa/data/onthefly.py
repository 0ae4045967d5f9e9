"""Scenes simulated while training: unlimited training data with no dataset on disk.

Two datasets draw scenes with the project's simulator (:mod:`deepasa.scenes.simulator`) from a sound bank
and return exactly the item dict of :class:`~deepasa.data.scenes.SceneDataset`:

* :class:`OnTheFlyScenes` — an ``IterableDataset`` for training. Each pass over it ("epoch") yields
  ``epoch_size`` new scenes; pass ``p`` holds the scene indices ``p·epoch_size … (p+1)·epoch_size − 1``, and
  scene ``i`` is drawn from ``scene_rng(seed, split, i)``, so the stream is a pure function of the seed:
  the same scenes whatever the number of DataLoader workers or DDP ranks. Workers and ranks take
  interleaved indices (stream ``s`` of ``S = world_size · num_workers`` streams takes ``i ≡ s (mod S)``).
* :class:`SimulatedScenes` — a map-style dataset of ``num_scenes`` fixed scenes (validation without disk).

The pass counter lives in the dataset object: it advances when the same object is iterated again (no
workers, or ``persistent_workers=True``, which :class:`~deepasa.train.data.DeepASADataModule` sets), and
``first_pass`` places a resumed run where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from deepasa.errors import DeepASAError

__all__ = ["OnTheFlyScenes", "SimulatedScenes", "scene_item"]


def scene_item(scene, n_slots: int, scene_id: str) -> dict:
    """Turn a rendered :class:`~deepasa.scenes.simulator.SceneAudio` into a training item.

    Args:
        scene: mixture (M, N), direct/reverb (K, M, N), noise (M, N), activity (K, T'), doa (K, T', 3), meta.
        n_slots: J; sources beyond J are dropped (the first J kept, as the ASA loader), empty slots are zero.
        scene_id: the item's id.

    Returns:
        dict: mixture (M, N) float32; direct, reverb (J, M, N); noise (M, N); cls (J,) int64, −1 empty;
        activity (J, T') float32; doa (J, T', 3) float32; num_sources () int64; scene_id str.
    """
    k_src, m, n = scene.direct.shape
    n_frames = scene.activity.shape[1]
    k = min(k_src, n_slots)
    direct = np.zeros((n_slots, m, n), dtype=np.float32)
    reverb = np.zeros((n_slots, m, n), dtype=np.float32)
    direct[:k], reverb[:k] = scene.direct[:k], scene.reverb[:k]
    cls = np.full(n_slots, -1, dtype=np.int64)
    cls[:k] = [int(src["class_index"]) for src in scene.meta["sources"][:k]]
    activity = np.zeros((n_slots, n_frames), dtype=np.float32)
    activity[:k] = scene.activity[:k]
    doa = np.zeros((n_slots, n_frames, 3), dtype=np.float32)
    doa[:k] = scene.doa[:k]                                         # (k, T', 3), zero when inactive
    return {
        "mixture": torch.from_numpy(np.ascontiguousarray(scene.mixture, dtype=np.float32)),
        "direct": torch.from_numpy(direct),
        "reverb": torch.from_numpy(reverb),
        "noise": torch.from_numpy(np.ascontiguousarray(scene.noise, dtype=np.float32)),
        "cls": torch.from_numpy(cls),
        "activity": torch.from_numpy(activity),
        "doa": torch.from_numpy(doa),
        "num_sources": torch.tensor(k, dtype=torch.int64),
        "scene_id": scene_id,
    }


class _SceneSource:
    """What both datasets share: the bank (opened lazily, once per process), the config, rendering."""

    def __init__(self, home: str | Path | None, split: str, scene_config: dict | None, fmt: str, n_slots: int,
                 seed: int, classes: list[str] | None):
        from deepasa.scenes.config import SceneConfig
        from deepasa.scenes.simulator import FORMATS
        from deepasa.scenes.soundbank import class_names

        if fmt not in FORMATS:
            raise DeepASAError(f"unknown scene format {fmt!r} (choose from {', '.join(FORMATS)})")
        values = dict(scene_config or {})
        if classes:
            values["classes"] = list(classes)
        self.config = SceneConfig.from_dict(values)
        self.home = None if home is None else str(home)
        self.split, self.fmt, self.n_slots, self.seed = split, fmt, int(n_slots), int(seed)
        self.class_names = class_names()
        self._bank = None
        self._pool = None
        self._check_bank()

    def _check_bank(self) -> None:
        """Fail early (in the main process) when the bank has no clip for this split."""
        pool = self._clips()
        if not any(pool.values()):
            raise DeepASAError(f"the sound bank has no {self.split} clips: run `deepasa sounds fetch --split {self.split}`")

    def _clips(self) -> dict:
        from deepasa.scenes.simulator import clips_for_split
        from deepasa.scenes.soundbank import SoundBank

        if self._bank is None:
            self._bank = SoundBank.open(None if self.home is None else Path(self.home))
            self._pool = clips_for_split(self._bank, self.split, self.config)
        return self._pool

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_bank"] = state["_pool"] = None                      # re-opened in each worker
        return state

    def render(self, index: int) -> dict:
        """Scene ``index`` of the split as a training item (deterministic in seed, split, index)."""
        from deepasa.scenes.simulator import load_dry, render_scene, sample_scene_spec, scene_rng

        pool = self._clips()
        sid = f"{self.split}-{self.seed}-{index:08d}"
        spec = sample_scene_spec(scene_rng(self.seed, self.split, index), self.config, pool, self.class_names,
                                 sid, self.split)
        scene = render_scene(spec, load_dry(self._bank, spec), self.fmt)
        return scene_item(scene, self.n_slots, sid)


class _SourceBacked:
    """What both simulated datasets expose about their scene source (``self.source``)."""

    @property
    def class_names(self) -> list[str]:
        """The class list (class index = position)."""
        return self.source.class_names

    @property
    def sample_rate(self) -> int:
        """Sample rate of the scenes."""
        return self.source.config.sample_rate


class OnTheFlyScenes(_SourceBacked, IterableDataset):
    """Endless simulated training scenes, ``epoch_size`` per pass (see the module docstring).

    Args:
        home: sound-bank folder (default ``$DEEPASA_HOME`` or ``~/.cache/deepasa``).
        split: sound-bank split to draw clips from ("train").
        scene_config: :class:`~deepasa.scenes.config.SceneConfig` fields (e.g. ``{"duration": 4.0}``).
        fmt: "mic" or "foa".
        n_slots: J.
        seed: base seed of the scene stream.
        epoch_size: scenes per pass, all ranks together.
        classes: only these sound-bank classes (class indices stay those of the full taxonomy).

    Yields:
        the item dict of :func:`scene_item` (mixture (M, N), direct/reverb (J, M, N), …).

    >>> ds = OnTheFlyScenes(epoch_size=8, scene_config={"duration": 1.0})     # doctest: +SKIP
    >>> next(iter(ds))["mixture"].shape                                        # doctest: +SKIP
    torch.Size([4, 16000])
    """

    def __init__(self, home: str | Path | None = None, split: str = "train", scene_config: dict | None = None,
                 fmt: str = "mic", n_slots: int = 5, seed: int = 0, epoch_size: int = 1000,
                 classes: list[str] | None = None):
        super().__init__()
        if epoch_size < 1:
            raise DeepASAError(f"epoch_size must be at least 1, got {epoch_size}")
        self.source = _SceneSource(home, split, scene_config, fmt, n_slots, seed, classes)
        self.epoch_size = int(epoch_size)
        self.rank, self.world_size = 0, 1
        self.first_pass = 0
        self._passes = 0

    def set_distributed(self, rank: int, world_size: int) -> None:
        """Take this rank's share of every pass (called by the DataModule in each DDP process)."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        self.rank, self.world_size = int(rank), int(world_size)

    def __len__(self) -> int:
        """Scenes this rank yields per pass."""
        return len(range(self.rank, self.epoch_size, self.world_size))

    def indices(self, pass_index: int, worker: int = 0, num_workers: int = 1) -> range:
        """Scene indices of one (rank, worker) stream in pass ``pass_index``."""
        streams = self.world_size * num_workers
        stream = self.rank + self.world_size * worker               # rank-major: per-rank share = __len__
        start = pass_index * self.epoch_size
        return range(start + stream, start + self.epoch_size, streams)

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        pass_index = self.first_pass + self._passes
        self._passes += 1
        for index in self.indices(pass_index, worker, num_workers):
            yield self.source.render(index)


class SimulatedScenes(_SourceBacked, Dataset):
    """``num_scenes`` fixed simulated scenes (a validation or test set without disk).

    Args: as :class:`OnTheFlyScenes` (``split`` defaults to "val"), plus ``num_scenes``.

    Item ``i`` is scene ``i`` of ``(seed, split)``: the same as ``deepasa simulate --seed S --split SPLIT``
    would draw for index ``i`` (written there under id ``{i:06d}``).
    """

    def __init__(self, home: str | Path | None = None, split: str = "val", scene_config: dict | None = None,
                 fmt: str = "mic", n_slots: int = 5, seed: int = 0, num_scenes: int = 50,
                 classes: list[str] | None = None):
        if num_scenes < 1:
            raise DeepASAError(f"num_scenes must be at least 1, got {num_scenes}")
        self.source = _SceneSource(home, split, scene_config, fmt, n_slots, seed, classes)
        self.num_scenes = int(num_scenes)

    def __len__(self) -> int:
        return self.num_scenes

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.num_scenes:
            raise IndexError(i)
        return self.source.render(i)


def describe(dataset: Any) -> str:
    """One line naming an on-the-fly dataset (for logs)."""
    src = dataset.source
    return (f"simulated {src.split} scenes (seed {src.seed}, {src.config.duration:g} s at {src.config.sample_rate} Hz, "
            f"{src.fmt}, J={src.n_slots})")
