"""deepasa.model: the DeepASA network (SPEC-deepasa.md §1–§4), its configs and complexity counting.

Public API: :class:`DeepASA`, :class:`DeepASAConfig`, :class:`DeepASAOutput`, :func:`get_config`,
:func:`decide` and :class:`SlotDecisions`.
"""

from deepasa.model.configs import NAMED_CONFIGS, DeepASAConfig, get_config
from deepasa.model.deepasa import DeepASA, DeepASAOutput, SlotDecisions, decide

__all__ = ["DeepASA", "DeepASAConfig", "DeepASAOutput", "SlotDecisions", "decide", "get_config", "NAMED_CONFIGS"]
