"""split_objects.py (beside this file) on planted slot outputs: a source split over two slots, and a second source.

Run by hand (CI runs tests/ only): ``python -m pytest -q experiments/2026-12-06-split-objects``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import split_objects  # noqa: E402

from deepasa.metrics.separation import si_sdr  # noqa: E402

N, T, J = 1600, 10, 4


class PlantedModel:
    """Returns fixed outputs: slot 0 and slot 1 each hold half of source 0's image (same class, same DoA),
    slot 2 holds source 1 (same class, DoA 90° away), slot 3 is silent and off."""

    config = SimpleNamespace(ref_mic=0, detect_doa_norm=0.5, detect_onoff=0.5)

    def __init__(self, s0: torch.Tensor, s1: torch.Tensor) -> None:
        mask = (torch.arange(N) % 200 < 100).float()                         # (N,) alternate 100-sample runs
        image = torch.zeros(1, J, 1, N)                                       # (1, J, M=1, N)
        image[0, 0, 0], image[0, 1, 0], image[0, 2, 0] = s0 * mask, s0 * (1 - mask), s1
        x, y = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
        doa = torch.zeros(1, J, T, 3)                                         # (1, J, T, 3)
        doa[0, 0], doa[0, 1], doa[0, 2] = x, x, y
        onoff = torch.full((1, J, T), -9.0)                                   # (1, J, T) logits
        onoff[0, :3] = 9.0
        cls = torch.zeros(1, J, 3)                                            # (1, J, C): class 0 for all
        cls[..., 0] = 5.0
        self.out = SimpleNamespace(image=image, doa=doa, onoff=onoff, cls_logits=cls)

    def __call__(self, mixture: torch.Tensor) -> SimpleNamespace:
        return self.out


@pytest.fixture()
def planted():
    g = torch.Generator().manual_seed(0)
    s0, s1 = torch.randn(N, generator=g), torch.randn(N, generator=g)
    zero = torch.zeros(N)
    item = {"mixture": (s0 + s1)[None], "direct": torch.stack([s0, s1, zero, zero])[:, None],  # (J, 1, N), padded
            "reverb": torch.zeros(J, 1, N), "activity": torch.ones(J, T)}
    return PlantedModel(s0, s1), [item], s0, s1


def test_oracle_sum_rejoins_a_split_source(planted):
    model, _, s0, _ = planted
    img = model.out.image[0, :, 0].numpy()                                    # (J, N)
    assert split_objects._oracle_sum(img, 0, s0.numpy()) > 60                 # slot 0 + slot 1 = s0 exactly
    assert si_sdr(img[0], s0.numpy()) < 5                                     # half of it alone is poor


def test_rules_merge_same_class_same_direction_only(planted):
    model, ds, s0, s1 = planted
    rows = split_objects.split_rows(model, ds)
    assert [r["sources"] for r in rows] == [2, 2]
    first, second = rows
    # source 0: its two halves share class and DoA, source 1 is 90 deg away: every rule merges the halves only
    for rule in ("class_doa", "doa", "soft_doa"):
        assert first[f"{rule}_merged"] == 1
        assert first[rule] > first["own"] + 30
    # source 1 has no partner within 20 deg: nothing merged, the score stays its own
    for rule in ("class_doa", "doa", "soft_doa"):
        assert second[f"{rule}_merged"] == 0
        assert second[rule] == pytest.approx(second["own"])
    mix = (s0 + s1).numpy()
    assert second["own"] == pytest.approx(float(si_sdr(s1.numpy(), s1.numpy()) - si_sdr(mix, s1.numpy())))
    summary = split_objects.tally(model, ds)["by_sources"]["2"]
    assert summary["n"] == 2
    assert summary["own"] == pytest.approx(np.mean([first["own"], second["own"]]), abs=0.01)
