"""The Lightning DataModule: on-disk datasets (ours/ASA, STARSS23, MC-FUSS, DCASE 2025 T4) and on-the-fly scenes.

Every dataset yields dict items with at least ``mixture (M, N)`` and ``scene_id``, plus the targets its
objective needs (:class:`~deepasa.data.scenes.SceneDataset` documents the full set: ``direct``, ``reverb``
``(J, M, N)``, ``noise (M, N)``, ``cls (J,)``, ``activity (J, T')``, ``doa (J, T', 3)``, ``num_sources``;
separation-only data add ``image (J, K, N)``). Batches are the default collation of those dicts
(tensors stacked on a new batch axis, ids as lists).

Training data come from disk (``dataset`` + ``root``) or from the simulator (``simulate: true``: an endless
stream of new scenes, see :mod:`deepasa.data.onthefly`); validation/test data come from disk when ``root``
is given, otherwise from ``val_scenes`` fixed simulated scenes. Simulated training scenes can follow a
``curriculum`` over scene difficulty (:func:`~deepasa.data.onthefly.curriculum_stages`), and ``augment: swap``
passes every training item (never a validation/test one) through the tetrahedral channel swap
(:class:`WorkerSwap`).
"""

from __future__ import annotations

import json
from typing import Any, Callable

import lightning as L
from torch.utils.data import DataLoader, Dataset, get_worker_info

from deepasa.data.formats import DATASETS, open_dataset
from deepasa.errors import DeepASAError

#: Values of ``DeepASADataModule(augment=...)``.
AUGMENTS = (None, "swap")


class WorkerSwap:
    """The tetrahedral channel-swap augmentation (:class:`~deepasa.data.augment.RandomSwap`), seeded per worker.

    The first call in a process (a DataLoader worker, or the main process without workers) seeds that
    process's generator with :meth:`seed_of` ``= [seed, rank, worker]``: workers and DDP ranks draw different
    swaps, and the same run (same seed, workers, ranks, starting point) draws the same ones.

    Args:
        seed: base seed (the DataModule's ``seed``).
        rank: DDP rank (set by :meth:`DeepASADataModule.train_dataloader`).
    """

    def __init__(self, seed: int = 0, rank: int = 0):
        self.seed, self.rank = int(seed), int(rank)
        self._swap = None

    def seed_of(self, worker: int) -> list[int]:
        """The seed of the generator of DataLoader worker ``worker`` (0 without workers) on this rank."""
        return [self.seed, self.rank, int(worker)]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_swap"] = None                                        # each worker seeds its own generator
        return state

    def __call__(self, item: dict) -> dict:
        """A MIC training item -> a copy with one uniformly drawn swap (:func:`~deepasa.data.augment.apply_swap`).

        Args:
            item: mixture (4, N), direct/reverb (J, 4, N), noise (4, N), doa (J, T', 3), other keys kept.

        Returns:
            the same keys and shapes: channels reordered, every DoA label turned with them.
        """
        if self._swap is None:
            from deepasa.data.augment import RandomSwap

            info = get_worker_info()
            self._swap = RandomSwap(seed=self.seed_of(0 if info is None else info.id))
        return self._swap(item)


class Augmented(Dataset):
    """A map-style dataset whose items go through ``transform`` (on-disk training data with ``augment``).

    Args:
        dataset: the dataset (its ``class_names`` and ``sample_rate`` are passed on).
        transform: item dict -> item dict.
    """

    def __init__(self, dataset: Dataset, transform: Callable[[dict], dict]):
        self.dataset, self.transform = dataset, transform

    @property
    def class_names(self) -> list[str] | None:
        """The wrapped dataset's class list."""
        return getattr(self.dataset, "class_names", None)

    @property
    def sample_rate(self) -> int:
        """The wrapped dataset's sample rate."""
        return self.dataset.sample_rate

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        """Item ``i`` of the dataset (mixture (M, N), …) through ``transform``."""
        return self.transform(self.dataset[i])


def _scenes_format(ds) -> str | None:
    """Array format ("mic"/"foa") of an on-disk :class:`~deepasa.data.scenes.SceneDataset` (from its meta files)."""
    meta = ds.dir / "meta" / f"{ds.ids[0]}.json"
    return json.loads(meta.read_text()).get("format") if meta.is_file() else None


def resumed_position(global_step: int, batch_size: int, world_size: int, epoch_size: int) -> tuple[int, int]:
    """(pass, offset): where in the simulated scene stream a run resumed at ``global_step`` continues.

    One optimiser step consumes ``batch_size`` scenes on each of ``world_size`` ranks, so the run has seen
    ``global_step · batch_size · world_size`` scenes: ``offset`` scenes into pass ``pass`` of ``epoch_size``.
    Counted from the step, not from Lightning's epoch counter, which still names the finished epoch when a
    run is resumed from a checkpoint written at its end (and a mid-epoch resume restarts the data loader).
    """
    return divmod(global_step * batch_size * world_size, epoch_size)


class DeepASADataModule(L.LightningDataModule):
    """Data for ``deepasa train``.

    Args:
        dataset: on-disk format: ``scenes`` (ours / the authors' ASA layout), ``starss23``, ``mcfuss``,
            ``dcase25t4``.
        root: dataset root (``None`` with ``simulate``: validation on simulated scenes too).
        train_split, val_split, test_split: split folder names (ASA: dev/test/test).
        batch_size: training batch per device (the paper: 2 per GPU × 8 GPUs).
        val_batch_size: validation/test batch per device.
        num_workers: DataLoader worker processes.
        n_slots: J object slots (must equal the model's).
        sample_rate: the model's sample rate.
        clip_seconds: the model's clip length (external formats are chunked/cropped to it).
        dataset_options: extra keyword arguments of the on-disk loader (e.g. STARSS23 ``fmt: foa``).
        simulate: draw training scenes with the simulator instead of reading ``train_split``.
        bank_home: sound-bank folder for ``simulate`` (default ``$DEEPASA_HOME`` / ``~/.cache/deepasa``).
        scene_config: simulator parameters (:class:`~deepasa.scenes.config.SceneConfig` fields).
        scene_format: ``mic`` or ``foa``.
        seed: seed of the simulated scene streams (validation scenes use ``seed + 1``).
        epoch_size: simulated training scenes per epoch (all devices together).
        val_scenes: simulated validation scenes when ``root`` is not given.
        pin_memory: DataLoader pin_memory.
        curriculum: with ``simulate``, stages ``[{until: U, scene_config: {...}}, ...]``: training scene ``i``
            uses the overrides of the first stage with ``until > i``, the plain ``scene_config`` after the last
            (:func:`~deepasa.data.onthefly.curriculum_stages`). Validation scenes never follow it.
        augment: ``None`` or ``"swap"``: every training item through the tetrahedral channel swap
            (:class:`WorkerSwap`; MIC scenes only, simulated or ``deepasa simulate`` output).
        first_scene: with ``simulate``, the index of the first training scene (default 0). A run initialised
            from another run (``init_from``) sets it to the scenes that run saw, so it trains on new scenes and
            its curriculum continues at that run's stage (:class:`~deepasa.data.onthefly.OnTheFlyScenes`).
    """

    def __init__(self, dataset: str = "scenes", root: str | None = None, train_split: str = "train",
                 val_split: str = "val", test_split: str = "test", batch_size: int = 2,
                 val_batch_size: int = 2, num_workers: int = 0, n_slots: int = 5, sample_rate: int = 16000,
                 clip_seconds: float = 4.0, dataset_options: dict | None = None, simulate: bool = False,
                 bank_home: str | None = None, scene_config: dict | None = None, scene_format: str = "mic",
                 seed: int = 0, epoch_size: int = 1000, val_scenes: int = 32, pin_memory: bool = False,
                 curriculum: list[dict] | None = None, augment: str | None = None, first_scene: int = 0):
        super().__init__()
        if dataset not in DATASETS:
            raise DeepASAError(f"unknown dataset {dataset!r}: use one of {', '.join(DATASETS)}")
        if root is None and not simulate:
            raise DeepASAError("data.root is required unless data.simulate is true")
        if batch_size < 1 or val_batch_size < 1:
            raise DeepASAError("batch sizes must be at least 1")
        if augment not in AUGMENTS:
            raise DeepASAError(f"unknown augment {augment!r}: use null or swap")
        if augment == "swap" and (scene_format != "mic" if simulate else dataset != "scenes"):
            raise DeepASAError("augment: swap permutes the 4 capsules of the tetrahedral MIC array: it needs MIC "
                               "scenes (data.simulate with scene_format mic, or `deepasa simulate` output), not "
                               f"{'simulated ' + scene_format if simulate else dataset} data")
        if first_scene and not simulate:
            raise DeepASAError("data.first_scene is the index of the first simulated training scene: it needs "
                               "data.simulate: true")
        if curriculum and not simulate:
            raise DeepASAError("data.curriculum sets the difficulty of simulated training scenes: it needs "
                               "data.simulate: true")
        self.save_hyperparameters()
        from deepasa.data.onthefly import curriculum_stages

        curriculum_stages(curriculum, self._scene_config())         # a bad curriculum fails before any data
        self._swap = WorkerSwap(seed) if augment == "swap" else None
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    # ------------------------------------------------------------------ datasets
    def _scene_config(self) -> dict:
        h = self.hparams
        cfg = {"sample_rate": h.sample_rate, "duration": h.clip_seconds}
        cfg.update(h.scene_config or {})
        return cfg

    def _disk(self, split: str, train: bool) -> Dataset:
        h = self.hparams
        return open_dataset(h.dataset, h.root, split, n_slots=h.n_slots, sample_rate=h.sample_rate,
                            clip_seconds=h.clip_seconds, train=train, options=h.dataset_options)

    def _simulated(self, split: str, train: bool) -> Dataset:
        from deepasa.data.onthefly import OnTheFlyScenes, SimulatedScenes

        h = self.hparams
        common = dict(home=h.bank_home, scene_config=self._scene_config(), fmt=h.scene_format, n_slots=h.n_slots)
        if train:
            return OnTheFlyScenes(split="train", seed=h.seed, epoch_size=h.epoch_size, curriculum=h.curriculum,
                                  transform=self._swap, first_scene=h.first_scene, **common)
        return SimulatedScenes(split="val" if split != "test" else "test", seed=h.seed + 1,
                               num_scenes=h.val_scenes, **common)

    def setup(self, stage: str | None = None) -> None:
        """Open the splits needed by ``stage`` (fit / validate / test)."""
        h = self.hparams
        if stage in ("fit", None) and self.train_set is None:
            self.train_set = (self._simulated("train", True) if h.simulate
                              else self._augmented(self._disk(h.train_split, True)))
        if stage in ("fit", "validate", None) and self.val_set is None:
            self.val_set = self._disk(h.val_split, False) if h.root is not None else self._simulated("val", False)
        if stage in ("test", None) and self.test_set is None:
            self.test_set = self._disk(h.test_split, False) if h.root is not None else self._simulated("test", False)

    def _augmented(self, ds: Dataset) -> Dataset:
        """On-disk training data through the swap (when ``augment`` is set); MIC scenes only."""
        if self._swap is None:
            return ds
        fmt = _scenes_format(ds)
        if fmt != "mic":
            raise DeepASAError(f"augment: swap needs MIC scenes, but {ds.dir} is "
                               f"{fmt or 'of unknown format (no meta/ files)'}")
        return Augmented(ds, self._swap)

    @property
    def class_names(self) -> list[str] | None:
        """Class list of the data (``None`` before :meth:`setup`)."""
        for ds in (self.train_set, self.val_set, self.test_set):
            if ds is not None:
                return list(getattr(ds, "class_names", None) or []) or None
        return None

    # ------------------------------------------------------------------ loaders
    def _loader(self, ds: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        h = self.hparams
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=h.num_workers,
                          pin_memory=h.pin_memory, persistent_workers=h.num_workers > 0,
                          drop_last=False)

    def train_dataloader(self) -> DataLoader:
        """Shuffled on-disk training data, or this rank's share of the simulated stream."""
        from deepasa.data.onthefly import OnTheFlyScenes

        ds = self.train_set
        trainer = self.trainer
        if self._swap is not None and trainer is not None:
            self._swap.rank = trainer.global_rank                    # each rank its own swaps
        if isinstance(ds, OnTheFlyScenes):
            if trainer is not None:
                ds.set_distributed(trainer.global_rank, trainer.world_size)
                # a resumed run continues with the scenes it has not seen
                ds.first_pass, ds.first_offset = resumed_position(trainer.global_step, self.hparams.batch_size,
                                                                  trainer.world_size, ds.epoch_size)
            return self._loader(ds, self.hparams.batch_size, shuffle=False)
        return self._loader(ds, self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation data, in order."""
        return self._loader(self.val_set, self.hparams.val_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Test data, in order."""
        return self._loader(self.test_set, self.hparams.val_batch_size, shuffle=False)

    def describe(self) -> dict[str, Any]:
        """Sizes of the opened splits (for the log)."""
        return {name: len(ds) for name, ds in (("train", self.train_set), ("val", self.val_set),
                                               ("test", self.test_set)) if ds is not None}
