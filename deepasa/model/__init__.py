"""deepasa.model: the DeepASA network (docs/spec.md §1–§4), its configs and complexity counting.

Public API: :class:`DeepASA`, :class:`DeepASAConfig`, :class:`DeepASAOutput`, :func:`get_config`,
:class:`DecisionRule` (the activity rule a model carries apart from its config), :func:`decide` and
:class:`SlotDecisions`. The network classes are imported lazily, so that naming a
config or the shipped checkpoint (``deepasa.model.paths``) does not import torch.
"""

from importlib import import_module

from deepasa.model.configs import NAMED_CONFIGS, DeepASAConfig, get_config
from deepasa.model.decision import DecisionRule

_LAZY = {name: "deepasa.model.deepasa" for name in ("DeepASA", "DeepASAOutput", "SlotDecisions", "decide")}

__all__ = ["DeepASA", "DeepASAConfig", "DeepASAOutput", "DecisionRule", "SlotDecisions", "decide", "get_config",
           "NAMED_CONFIGS"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deepasa.model' has no attribute {name!r}")
