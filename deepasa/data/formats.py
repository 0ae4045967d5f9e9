"""On-disk dataset formats by name (``scenes``, ``starss23``, ``mcfuss``, ``dcase25t4``) and :func:`open_dataset`.

Used by training (:mod:`deepasa.train.data`) and by evaluation (:mod:`deepasa.evaluation`); a new on-disk
format is one entry of :data:`DATASETS` (docs/architecture.md).
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from deepasa.errors import DeepASAError

#: On-disk dataset formats: name → "module:class".
DATASETS = {
    "scenes": "deepasa.data.scenes:SceneDataset",
    "starss23": "deepasa.data.starss23:Starss23Dataset",
    "mcfuss": "deepasa.data.mcfuss:MCFussDataset",
    "dcase25t4": "deepasa.data.dcase25t4:DCASE25T4Dataset",
}

def _dataset_class(name: str):
    from importlib import import_module

    if name not in DATASETS:
        raise DeepASAError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}")
    module, cls = DATASETS[name].split(":")
    return getattr(import_module(module), cls)


def open_dataset(name: str, root: str | Path, split: str, *, n_slots: int, sample_rate: int,
                 clip_seconds: float, train: bool = False, options: dict | None = None) -> Dataset:
    """Open split ``split`` of an on-disk dataset in format ``name``.

    Args:
        name: a key of :data:`DATASETS`.
        root: dataset root.
        split: the split (folder) name.
        n_slots: J.
        sample_rate: the model's rate; loaders of external formats resample to it, ours must match.
        clip_seconds: the model's clip length (chunk/crop length of the external formats).
        train: training split (random crops where the format crops).
        options: extra keyword arguments of the loader.

    Returns:
        a map-style dataset with ``class_names`` and ``sample_rate`` attributes.
    """
    root = Path(root)
    if not root.is_dir():
        raise DeepASAError(f"dataset folder not found: {root}")
    cls = _dataset_class(name)
    kw = dict(options or {})
    if name == "scenes":
        ds = cls(root, split, n_slots=n_slots, **kw)
        if ds.sample_rate != sample_rate:
            raise DeepASAError(f"{root}/{split} is at {ds.sample_rate} Hz but the model expects {sample_rate} Hz: "
                               f"simulate with --set sample_rate={sample_rate} or pick a model of that rate")
        return ds                      # the authors' ASA data have integer classes and no classes.json
    return cls(root, split, n_slots=n_slots, sample_rate=sample_rate, clip_seconds=clip_seconds, train=train, **kw)
