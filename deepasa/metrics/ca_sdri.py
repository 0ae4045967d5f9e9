"""CA-SDRi, the class-aware SDR improvement of DCASE 2025 Task 4 (S5), and its label accuracy.

**The "SDR" here is plain SNR**, exactly as the challenge's reference implementation
(``nttcslab/dcase2025_task4_baseline``, ``src/utils.py::ca_metric`` with
``torchmetrics.functional.signal_noise_ratio``): ``10·log10((‖s‖² + ε) / (‖s − ŝ‖² + ε))`` on reference channel
0, with ``ε = finfo(float64).eps`` here; not BSS-eval SDR and not SI-SDR.

Per mixture, with estimated labels ``E`` and reference labels ``R`` (``"silence"`` ignored):

* ``TP = (E ∩ R) − {silence}``, ``FP = E − TP − {silence}``, ``FN = R − TP − {silence}``;
* every TP label contributes ``SNR(ŝ_label, s_label) − SNR(x_ref, s_label)``;
* every FP and FN label contributes **0**;
* the mixture's score is the mean of these ``|TP| + |FP| + |FN|`` numbers (NaN when all three are empty, as
  the reference code's mean of an empty tensor), and CA-SDRi is the mean over mixtures.

Label accuracy is the fraction of mixtures whose estimated label *set* equals the reference set (silence
excluded). Labels are matched as sets, so when one label occurs twice the last waveform with that label is
used (dictionary semantics, as the reference code).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from deepasa.metrics.separation import snr

__all__ = ["SILENCE", "ca_sdri_mixture", "ca_sdri", "label_accuracy"]

SILENCE = "silence"


def ca_sdri_mixture(est_labels: Sequence[str], est_waveforms, ref_labels: Sequence[str], ref_waveforms,
                    mixture) -> float:
    """CA-SDRi of one mixture (dB).

    Args:
        est_labels: ``K_e`` labels of the estimates (``"silence"`` allowed).
        est_waveforms: ``(K_e, N)`` reference-channel estimates, same order.
        ref_labels: ``K_r`` reference labels.
        ref_waveforms: ``(K_r, N)`` reference-channel targets.
        mixture: ``(N,)`` mixture at reference channel 0.

    Returns:
        the mean of the TP improvements and the zeros for FP and FN labels; NaN if there is none.
    """
    est_wf, ref_wf, mix = (np.asarray(a, dtype=np.float64) for a in (est_waveforms, ref_waveforms, mixture))
    if len(est_labels) != len(est_wf) or len(ref_labels) != len(ref_wf):
        raise ValueError("each waveform needs exactly one label")
    est = dict(zip(est_labels, est_wf))
    ref = dict(zip(ref_labels, ref_wf))
    tp = (set(est) & set(ref)) - {SILENCE}
    fp = set(est) - tp - {SILENCE}
    fn = set(ref) - tp - {SILENCE}
    scores = [float(snr(est[lb], ref[lb]) - snr(mix, ref[lb])) for lb in sorted(tp)]
    scores += [0.0] * (len(fp) + len(fn))
    return float(np.mean(scores)) if scores else float("nan")


def ca_sdri(mixtures: Sequence[tuple]) -> float:
    """CA-SDRi over a set of mixtures: the mean of :func:`ca_sdri_mixture`.

    Args:
        mixtures: tuples ``(est_labels, est_waveforms, ref_labels, ref_waveforms, mixture)``.

    Returns:
        dB (NaN propagates, as ``np.mean`` in the challenge's evaluator).
    """
    return float(np.mean([ca_sdri_mixture(*m) for m in mixtures]))


def label_accuracy(est_label_sets: Sequence[Sequence[str]], ref_label_sets: Sequence[Sequence[str]]) -> float:
    """Fraction of mixtures whose estimated label set equals the reference set, silence excluded.

    Args:
        est_label_sets: per mixture, the estimated labels.
        ref_label_sets: per mixture, the reference labels.

    Returns:
        accuracy in ``[0, 1]``.
    """
    if len(est_label_sets) != len(ref_label_sets) or not est_label_sets:
        raise ValueError("need the same, non-zero number of estimated and reference label sets")
    hits = [(set(e) - {SILENCE}) == (set(r) - {SILENCE}) for e, r in zip(est_label_sets, ref_label_sets)]
    return float(np.mean(hits))
