"""Shared by the bit-identity tests (issues 16 and 38): a tensor's fingerprint and its comparison.

A fingerprint is [sum, absolute sum, the element at a third of the flattened tensor], in float64. The tolerance
(1e-5 relative; for a signed sum 1e-5 of its absolute sum; 1e-6 absolute for the element) absorbs another CPU's
kernels and summation order: float32 through a deep network on an AVX-512 Xeon against the AVX2 EPYC that wrote
the references moves values by ~1e-6 relative, and a signed sum, which cancels, by ~1e-6 of the absolute sum
(paper 'direct': -4.4708355 against -4.4708262, absolute sum 2,351). A change in what is computed moves them by
orders of magnitude more.
"""

from __future__ import annotations

import pytest
import torch


def stats(t: torch.Tensor) -> list[float]:
    """Fingerprint of a tensor: [sum, absolute sum, element at numel // 3] in float64."""
    t = t.double()
    return [float(t.sum()), float(t.abs().sum()), float(t.flatten()[t.numel() // 3])]


def assert_outputs_match(outputs: dict[str, torch.Tensor], reference: dict[str, list[float]], label: str) -> None:
    """Every output's fingerprint equals the reference's within the tolerance above; the key sets are equal."""
    got = {k: stats(v) for k, v in outputs.items()}
    assert sorted(got) == sorted(reference), label
    for key, (want_sum, want_abs, want_elem) in reference.items():
        total, abs_total, elem = got[key]
        assert total == pytest.approx(want_sum, rel=1e-5, abs=1e-5 * want_abs), (label, key, "sum")
        assert abs_total == pytest.approx(want_abs, rel=1e-5), (label, key, "abs sum")
        assert elem == pytest.approx(want_elem, rel=1e-5, abs=1e-6), (label, key, "element")


def count_calls(model) -> dict[str, int]:
    """Forward-hook counters on the audio heads and on the extensions the model has (filled as it runs)."""
    modules = {"direct": model.audio.direct, "reverb": model.audio.reverb, "noise": model.audio.noise,
               "gcc": model.gcc, "srp": model.srp_refine, "sfx": model.sfx}
    counts = {name: 0 for name, m in modules.items() if m is not None}
    for name in counts:
        modules[name].register_forward_hook(lambda *_, name=name: counts.__setitem__(name, counts[name] + 1))
    return counts
