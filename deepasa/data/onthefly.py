"""Scenes simulated while training: unlimited training data with no dataset on disk.

Two datasets draw scenes with the project's simulator (:mod:`deepasa.scenes.simulator`) from a sound bank
and return exactly the item dict of :class:`~deepasa.data.scenes.SceneDataset`:

* :class:`OnTheFlyScenes` — an ``IterableDataset`` for training. Each pass over it ("epoch") yields
  ``epoch_size`` new scenes; pass ``p`` holds the scene indices ``p·epoch_size … (p+1)·epoch_size − 1``, and
  scene ``i`` is drawn from ``scene_rng(seed, split, i)``, so the stream is a pure function of the seed:
  the same scenes whatever the number of DataLoader workers or DDP ranks. Workers and ranks take
  interleaved indices (stream ``s`` of ``S = world_size · num_workers`` streams takes ``i ≡ s (mod S)``).
* :class:`SimulatedScenes` — a map-style dataset of ``num_scenes`` fixed scenes (validation without disk).

A *curriculum* (:func:`curriculum_stages`) makes the training scenes' difficulty depend on the scene index:
stage ``s`` is ``{until: U_s, scene_config: {...}}`` and scene ``i`` is drawn with the overrides of the first
stage whose ``until`` exceeds ``i`` (plain ``scene_config`` after the last stage). The stage is a function of
``i`` alone, so the curriculum is as reproducible and resumable as the scenes themselves: a run resumed in
pass ``p`` continues with the stage of the indices of pass ``p``.

The pass counter lives in the dataset object: it advances when the same object is iterated again (no
workers, or ``persistent_workers=True``, which :class:`~deepasa.train.data.DeepASADataModule` sets), and
``first_pass`` places a resumed run where it stopped. ``first_scene`` shifts the whole stream: a run that
continues another one with a new model (the chain-of-inference stage initialised from a Net-1 run that saw
``S`` scenes) starts at scene ``S``, so it draws scenes the first run never saw and its curriculum continues
from the stage the first run had reached instead of starting again at stage 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from deepasa.errors import DeepASAError

__all__ = ["OnTheFlyScenes", "SimulatedScenes", "curriculum_stages", "scene_item"]

#: Scene parameters a curriculum stage may not change: every batch must keep the model's shapes.
FIXED_IN_CURRICULUM = ("sample_rate", "duration", "label_hop")


def curriculum_stages(curriculum: list[dict] | None, scene_config: dict | None = None) -> list[tuple[int, Any]]:
    """Validate a curriculum and build the scene config of every stage.

    Args:
        curriculum: ``[{until: U, scene_config: {...}}, ...]`` with strictly increasing ``until`` (a scene index,
            exclusive); each ``scene_config`` overrides fields of ``scene_config`` (not ``sample_rate``,
            ``duration`` or ``label_hop``). ``None`` or ``[]``: no curriculum.
        scene_config: the plain scene parameters (:class:`~deepasa.scenes.config.SceneConfig` fields), used
            after the last stage and as the base of every stage.

    Returns:
        ``[(until, SceneConfig), ...]``, one per stage, in order.

    Raises:
        DeepASAError: one line naming the bad stage (not a mapping, bad ``until``, unknown or fixed key,
            invalid values).
    """
    from deepasa.scenes.config import SceneConfig

    if not curriculum:
        return []
    if not isinstance(curriculum, (list, tuple)):
        raise DeepASAError(f"curriculum must be a list of {{until: N, scene_config: {{...}}}} stages, "
                           f"got {type(curriculum).__name__}")
    stages, previous = [], 0
    for number, stage in enumerate(curriculum, 1):
        where = f"curriculum stage {number}"
        if not isinstance(stage, dict) or "until" not in stage or set(stage) - {"until", "scene_config"}:
            raise DeepASAError(f"{where} must be a mapping {{until: N, scene_config: {{...}}}}, got {stage!r}")
        until = stage["until"]
        if isinstance(until, bool) or not isinstance(until, int) or until <= previous:
            bound = f"above the previous stage's {previous}" if number > 1 else "of at least 1"
            raise DeepASAError(f"{where}: until must be an integer scene index {bound}, got {until!r}")
        overrides = stage.get("scene_config") or {}
        if not isinstance(overrides, dict):
            raise DeepASAError(f"{where}: scene_config must be a mapping, got {overrides!r}")
        fixed = sorted(set(overrides) & set(FIXED_IN_CURRICULUM))
        if fixed:
            raise DeepASAError(f"{where}: {', '.join(fixed)} cannot change during training (set it in "
                               f"scene_config / the model instead)")
        try:
            config = SceneConfig.from_dict({**(scene_config or {}), **overrides})
        except DeepASAError as exc:
            raise DeepASAError(f"{where}: {exc}") from None
        stages.append((int(until), config))
        previous = int(until)
    return stages


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
                 seed: int, classes: list[str] | None, curriculum: list[dict] | None = None):
        from deepasa.scenes.config import SceneConfig
        from deepasa.scenes.simulator import FORMATS
        from deepasa.scenes.soundbank import class_names

        if fmt not in FORMATS:
            raise DeepASAError(f"unknown scene format {fmt!r} (choose from {', '.join(FORMATS)})")
        values = dict(scene_config or {})
        if classes:
            values["classes"] = list(classes)
        self.config = SceneConfig.from_dict(values)
        self.stages = curriculum_stages(curriculum, values)         # [(until, SceneConfig)]
        self.home = None if home is None else str(home)
        self.split, self.fmt, self.n_slots, self.seed = split, fmt, int(n_slots), int(seed)
        self.class_names = class_names()
        self._bank = None
        self._pools: dict = {}
        self._check_bank()

    def _check_bank(self) -> None:
        """Fail early (in the main process) when the bank has no clip for this split (and any stage's classes)."""
        for config in (self.config, *(cfg for _, cfg in self.stages)):
            if not any(self._clips(config).values()):
                raise DeepASAError(f"the sound bank has no {self.split} clips"
                                   f"{' of ' + ', '.join(config.classes) if config.classes else ''}: "
                                   f"run `deepasa sounds fetch --split {self.split}`")

    def _clips(self, config) -> dict:
        """label → clips of the split, for the class subset of ``config`` (cached per subset)."""
        from deepasa.scenes.simulator import clips_for_split
        from deepasa.scenes.soundbank import SoundBank

        if self._bank is None:
            self._bank = SoundBank.open(None if self.home is None else Path(self.home))
        key = tuple(config.classes) if config.classes else None
        if key not in self._pools:
            self._pools[key] = clips_for_split(self._bank, self.split, config)
        return self._pools[key]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_bank"], state["_pools"] = None, {}                  # re-opened in each worker
        return state

    def stage(self, index: int) -> int:
        """Curriculum stage of scene ``index``: 0-based position in the curriculum, ``len(stages)`` after it."""
        for number, (until, _) in enumerate(self.stages):
            if index < until:
                return number
        return len(self.stages)

    def config_for(self, index: int):
        """The :class:`~deepasa.scenes.config.SceneConfig` scene ``index`` is drawn with."""
        number = self.stage(index)
        return self.stages[number][1] if number < len(self.stages) else self.config

    def render(self, index: int) -> dict:
        """Scene ``index`` of the split as a training item (deterministic in seed, split, index)."""
        from deepasa.scenes.simulator import load_dry, render_scene, sample_scene_spec, scene_rng

        config = self.config_for(index)
        pool = self._clips(config)
        sid = f"{self.split}-{self.seed}-{index:08d}"
        spec = sample_scene_spec(scene_rng(self.seed, self.split, index), config, pool, self.class_names,
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
        curriculum: stages ``[{until: U, scene_config: {...}}, ...]`` (module docstring,
            :func:`curriculum_stages`); ``None``: every scene uses ``scene_config``.
        transform: applied to every item before it is yielded (e.g. a channel-swap augmentation), called in
            the process that renders the item (a DataLoader worker).
        first_scene: index of the stream's first scene (pass ``p`` holds ``first_scene + p·epoch_size …``).

    Yields:
        the item dict of :func:`scene_item` (mixture (M, N), direct/reverb (J, M, N), …), through ``transform``.

    >>> ds = OnTheFlyScenes(epoch_size=8, scene_config={"duration": 1.0})     # doctest: +SKIP
    >>> next(iter(ds))["mixture"].shape                                        # doctest: +SKIP
    torch.Size([4, 16000])
    """

    def __init__(self, home: str | Path | None = None, split: str = "train", scene_config: dict | None = None,
                 fmt: str = "mic", n_slots: int = 5, seed: int = 0, epoch_size: int = 1000,
                 classes: list[str] | None = None, curriculum: list[dict] | None = None,
                 transform: Callable[[dict], dict] | None = None, first_scene: int = 0):
        super().__init__()
        if epoch_size < 1:
            raise DeepASAError(f"epoch_size must be at least 1, got {epoch_size}")
        if isinstance(first_scene, bool) or not isinstance(first_scene, int) or first_scene < 0:
            raise DeepASAError(f"first_scene must be a scene index >= 0, got {first_scene!r}")
        self.source = _SceneSource(home, split, scene_config, fmt, n_slots, seed, classes, curriculum)
        self.curriculum = [dict(stage) for stage in curriculum or []]
        self.epoch_size = int(epoch_size)
        self.first_scene = first_scene
        self.transform = transform
        self.rank, self.world_size = 0, 1
        self.first_pass = 0
        self.first_offset = 0                                       # scenes of pass first_pass already seen
        self._passes = 0
        self._logged_stage: int | None = None

    def stage(self, index: int) -> int:
        """Curriculum stage of scene ``index`` (0-based; ``len(curriculum)`` = the plain ``scene_config``)."""
        return self.source.stage(index)

    def describe_stage(self, number: int) -> str:
        """One line naming curriculum stage ``number`` (its scene range and overrides)."""
        stages = self.curriculum
        start = stages[number - 1]["until"] if number > 0 else 0
        if number >= len(stages):
            return f"curriculum stage {number + 1}/{len(stages) + 1} (scenes {start}-: the plain scene_config)"
        return (f"curriculum stage {number + 1}/{len(stages) + 1} (scenes {start}-{stages[number]['until'] - 1}: "
                f"{stages[number].get('scene_config') or {}})")

    def _log_stage(self, index: int) -> None:
        """Print the stage when it changes, from the first stream only (rank 0, worker 0)."""
        number = self.stage(index)
        if self.curriculum and number != self._logged_stage:
            self._logged_stage = number
            print(f"on-the-fly scenes: {self.describe_stage(number)} from scene {index}", file=sys.stderr,
                  flush=True)

    def set_distributed(self, rank: int, world_size: int) -> None:
        """Take this rank's share of every pass (called by the DataModule in each DDP process)."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        self.rank, self.world_size = int(rank), int(world_size)

    def __len__(self) -> int:
        """Scenes this rank yields per pass."""
        return len(range(self.rank, self.epoch_size, self.world_size))

    def indices(self, pass_index: int, worker: int = 0, num_workers: int = 1, offset: int = 0) -> range:
        """Scene indices of one (rank, worker) stream in pass ``pass_index``, from scene ``offset`` of the pass."""
        streams = self.world_size * num_workers
        stream = self.rank + self.world_size * worker               # rank-major: per-rank share = __len__
        base = self.first_scene + pass_index * self.epoch_size   # the pass's first scene index
        return range(base + offset + stream, base + self.epoch_size, streams)

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        pass_index = self.first_pass + self._passes
        offset = self.first_offset if self._passes == 0 else 0     # a run resumed mid-pass skips what it saw
        self._passes += 1
        for index in self.indices(pass_index, worker, num_workers, offset):
            if self.rank == 0 and worker == 0:
                self._log_stage(index)
            item = self.source.render(index)
            yield item if self.transform is None else self.transform(item)


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
    stages = f", curriculum of {len(src.stages)} stages" if src.stages else ""
    return (f"simulated {src.split} scenes (seed {src.seed}, {src.config.duration:g} s at {src.config.sample_rate} Hz, "
            f"{src.fmt}, J={src.n_slots}{stages})")
