"""PIT with one shared permutation: checked against brute force over all permutations and torchmetrics."""

import itertools

import numpy as np
import pytest
import torch
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio as tm_si_sdr
from torchmetrics.functional.audio import signal_noise_ratio as tm_snr

from deepasa.losses import (
    apply_permutation,
    find_best_permutation,
    pairwise_neg_si_sdr,
    pairwise_neg_snr,
    pairwise_squared_error,
    pit_loss,
    pit_sa_sdr,
    sa_sdr,
    si_sdr,
    snr,
)


def _signals(B=3, J=4, N=400, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    tgt = torch.randn(B, J, N, generator=g, dtype=dtype)
    est = tgt[:, torch.randperm(J, generator=g)] + 0.7 * torch.randn(B, J, N, generator=g, dtype=dtype)
    return est, tgt


@pytest.mark.parametrize("zero_mean", [True, False])
def test_si_sdr_matches_torchmetrics(zero_mean):
    est, tgt = _signals()
    ours = si_sdr(est, tgt, zero_mean=zero_mean)
    ref = tm_si_sdr(est, tgt, zero_mean=zero_mean)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_snr_matches_torchmetrics():
    est, tgt = _signals()
    torch.testing.assert_close(snr(est, tgt), tm_snr(est, tgt), atol=1e-6, rtol=0)


def test_sa_sdr_definition_by_hand():
    # s = [(1,0), (0,2)], ŝ = [(1,1), (0,0)]: Σ‖s‖² = 5, Σ‖s−ŝ‖² = 1 + 4 = 5 → 0 dB.
    s = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    e = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    assert abs(float(sa_sdr(e, s))) < 1e-6
    # ŝ = s/2: error energy 5/4 → 10·log10(4) dB.
    assert abs(float(sa_sdr(s / 2, s)) - 10 * np.log10(4.0)) < 1e-5


def test_pairwise_squared_error_matches_direct():
    est, tgt = _signals(B=2, J=3, N=50)
    direct = ((tgt[:, :, None] - est[:, None, :]) ** 2).sum(-1)          # (B, J_t, J_e)
    torch.testing.assert_close(pairwise_squared_error(est, tgt), direct)


def test_pit_sa_sdr_equals_brute_force():
    est, tgt = _signals(B=4, J=5, N=300, seed=1)
    est[:, -1] *= 0.01
    tgt[:, -1] = 0.0                                                    # one zero-padded target slot
    loss, perm = pit_sa_sdr(est, tgt)
    for b in range(est.shape[0]):
        best = max(float(sa_sdr(est[b:b + 1, list(p)], tgt[b:b + 1])) for p in itertools.permutations(range(5)))
        assert abs(-float(loss[b]) - best) < 1e-8
        assert abs(float(sa_sdr(est[b:b + 1, perm[b]], tgt[b:b + 1])) - best) < 1e-8


@pytest.mark.parametrize("pairwise,single", [(pairwise_neg_si_sdr, si_sdr), (pairwise_neg_snr, snr)])
def test_pit_pairwise_equals_brute_force(pairwise, single):
    est, tgt = _signals(B=3, J=4, N=200, seed=2)
    loss, perm = pit_loss(est, tgt, pairwise)
    for b in range(3):
        best = min(float(-single(est[b, list(p)], tgt[b]).mean()) for p in itertools.permutations(range(4)))
        assert abs(float(loss[b]) - best) < 1e-8


def test_apply_permutation_aligns_every_output():
    g = torch.Generator().manual_seed(3)
    tgt = torch.randn(2, 4, 64, generator=g)
    # Estimate slot e holds target slot shuffles[b, e].
    shuffles = torch.stack([torch.randperm(4, generator=g) for _ in range(2)])
    est = torch.stack([tgt[b, shuffles[b]] for b in range(2)])
    _, perm = pit_sa_sdr(est, tgt)
    torch.testing.assert_close(apply_permutation(est, perm), tgt)
    # The same permutation reorders another head (e.g. class logits that were shuffled identically).
    logits = torch.arange(4.0).expand(2, 4)                                     # slot t "is" class t
    logits_est = torch.stack([logits[b, shuffles[b]] for b in range(2)])
    torch.testing.assert_close(apply_permutation(logits_est, perm), logits)


@pytest.mark.parametrize("J", [7, 8])
def test_hungarian_matches_exhaustive(J):
    g = torch.Generator().manual_seed(J)
    matrix = torch.rand(3, J, J, generator=g, dtype=torch.float64)
    cost_h, perm_h = find_best_permutation(matrix, method="hungarian")
    cost_e, _ = find_best_permutation(matrix, method="exhaustive")
    torch.testing.assert_close(cost_h, cost_e)
    assert sorted(perm_h[0].tolist()) == list(range(J))
    # "auto" takes the Hungarian path beyond 6 slots and finds the same optimum.
    torch.testing.assert_close(find_best_permutation(matrix)[0], cost_e)


def test_gradients_are_finite_with_silent_targets():
    est, tgt = _signals(B=2, J=3, N=100, dtype=torch.float32)
    tgt[:, 2] = 0.0
    est = est.clone().requires_grad_(True)
    losses = (lambda: pit_sa_sdr(est, tgt)[0], lambda: pit_loss(est, tgt)[0],
              lambda: pit_loss(est, tgt, pairwise_neg_snr)[0])
    for fn in losses:
        est.grad = None
        fn().sum().backward()
        assert torch.isfinite(est.grad).all()
