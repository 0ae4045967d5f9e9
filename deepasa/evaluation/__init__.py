"""deepasa.evaluation: how any system is scored (docs/spec.md §8), one stage of the data flow after the model.

A *system* maps a collated batch to a :class:`~deepasa.model.DeepASAOutput` (fields it cannot estimate stay
None): the network, a baseline of :mod:`deepasa.baselines`, the oracle. :func:`score_system` aligns its slots
with the references and computes every metric block; :func:`evaluate` scores a checkpoint on a dataset split
(``deepasa evaluate``). Training (:mod:`deepasa.train`), the baselines and ``benchmarks/`` use it; it imports
the model, the data formats, the losses (for the PIT alignment) and the metrics, never :mod:`deepasa.train`.
"""

from deepasa.evaluation.scoring import (
    SELD_KEYS,
    evaluate,
    format_by_num_sources,
    format_table,
    object_intervals,
    object_recovery,
    score_system,
    strict_json,
)

__all__ = ["score_system", "evaluate", "format_table", "format_by_num_sources", "object_recovery",
           "object_intervals", "strict_json", "SELD_KEYS"]
