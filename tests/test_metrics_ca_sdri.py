"""CA-SDRi (DCASE 2025 Task 4) on hand-made mixtures; its SNR against torchmetrics."""

import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.audio import signal_noise_ratio

from deepasa.metrics import ca_sdri, ca_sdri_mixture, label_accuracy
from deepasa.metrics.separation import snr

N = 4
S = np.ones(N)                      # target: energy 4
ERR20 = 0.1 * np.array([1, -1, 1, -1])      # error energy 0.04 → SNR 10·log10(4/0.04) = 20 dB


def test_snr_is_torchmetrics_signal_noise_ratio():
    rng = np.random.default_rng(0)
    t, e = rng.standard_normal((3, 1000)), rng.standard_normal((3, 1000))
    np.testing.assert_allclose(snr(e, t), signal_noise_ratio(torch.from_numpy(e), torch.from_numpy(t)).numpy(),
                               atol=1e-9)


def test_tp_fp_fn_and_silence_by_hand():
    # Mixture channel 0 = S + d with ‖d‖² = 4 → SNR(mixture) = 0 dB for the target S.
    d = np.array([1.0, -1.0, 1.0, -1.0])
    mixture = S + d
    # Estimated labels: Speech (TP, SNR 20 dB → improvement 20), Cat (FP → 0), silence (ignored).
    # Reference labels: Speech, Dog (FN → 0).  Score = (20 + 0 + 0)/3.
    got = ca_sdri_mixture(["Speech", "Cat", "silence"], [S + ERR20, S, np.zeros(N)],
                          ["Speech", "Dog"], [S, S], mixture)
    assert got == pytest.approx(20 / 3, abs=1e-9)


def test_mean_over_mixtures_and_label_accuracy():
    d = np.array([1.0, -1.0, 1.0, -1.0])
    # Mixture 2: both labels right. Speech estimate 20 dB; Dog estimate with error energy 0.4
    # → 10·log10(4/0.4) = 10 dB. Improvements 20 and 10 → 15.
    err10 = np.sqrt(0.1) * np.array([1.0, 1.0, -1.0, -1.0])        # energy 4·0.1 = 0.4
    m1 = (["Speech", "Cat"], [S + ERR20, S], ["Speech", "Dog"], [S, S], S + d)
    m2 = (["Dog", "Speech"], [S + err10, S + ERR20], ["Speech", "Dog"], [S, S], S + d)
    assert ca_sdri_mixture(*m2) == pytest.approx(15.0, abs=1e-9)
    assert ca_sdri([m1, m2]) == pytest.approx((20 / 3 + 15.0) / 2, abs=1e-9)   # m1 scores 20/3 (previous test)
    assert label_accuracy([m1[0], m2[0]], [m1[2], m2[2]]) == 0.5
    assert label_accuracy([["A", "silence"]], [["A"]]) == 1.0


def test_all_silence_is_nan_like_the_reference_code():
    assert math.isnan(ca_sdri_mixture(["silence"], [np.zeros(N)], ["silence"], [np.zeros(N)], S))
