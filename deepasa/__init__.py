"""deepasa: object-oriented auditory scene analysis (DeepASA, NeurIPS 2025) in PyTorch.

Public API (imported lazily so that ``import deepasa`` stays cheap and the simulator never needs torch):

* :func:`simulate_scene` — render one spatial scene with full ground truth (``deepasa.scenes``).
* :func:`load_audio` — read a multichannel file as float32 ``(M, N)`` (``deepasa.audio``).
* ``DeepASA`` — the network (``deepasa.model``).
* ``SceneAnalysis`` — the result of ``DeepASA.analyze`` (``deepasa.inference``).
"""

from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "simulate_scene": "deepasa.scenes.simulator",
    "load_audio": "deepasa.audio.io",
    "DeepASA": "deepasa.model",
    "SceneAnalysis": "deepasa.inference",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deepasa' has no attribute {name!r}")
