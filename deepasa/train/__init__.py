"""deepasa.train: Lightning training (module, data, recipes in configs/train) and ``deepasa evaluate``.

Public API (imported lazily, so ``deepasa`` commands that do not train never import Lightning):
:class:`~deepasa.train.module.DeepASAModule`, :class:`~deepasa.train.data.DeepASADataModule`,
:func:`~deepasa.train.module.load_model`; the evaluation is :func:`deepasa.evaluation.evaluate`.
"""

from importlib import import_module

_EXPORTS = {
    "DeepASAModule": "deepasa.train.module",
    "load_model": "deepasa.train.module",
    "DeepASADataModule": "deepasa.train.data",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'deepasa.train' has no attribute {name!r}")
