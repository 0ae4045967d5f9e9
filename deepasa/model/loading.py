"""The one model loader: rebuild a :class:`~deepasa.model.DeepASA` from either file a user has, a ``DeepASA.save``
model file or a ``deepasa train`` Lightning checkpoint (read as plain tensors, without Lightning).
Pre-issue-16 parameter names are renamed on the way (:func:`~deepasa.model.heads.upgrade_state_dict`), and
configs stored before issue 38 drop its removed fields (:meth:`DeepASAConfig.from_dict`). The decision rule comes back
too: from the file's ``meta["decision_rule"]`` (a Lightning checkpoint's ``deepasa_decision``), or from the
``detect_*`` keys of a config stored before the rule left it (:func:`~deepasa.model.decision.split_decision`).
:meth:`DeepASA.from_pretrained` calls :func:`load_model`. Both live in :mod:`deepasa.model.deepasa`
(the module of the class they build); this module names them.
"""

from __future__ import annotations

from deepasa.model.deepasa import load_model, load_model_weights

__all__ = ["load_model", "load_model_weights"]

