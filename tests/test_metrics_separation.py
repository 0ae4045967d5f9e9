"""Separation metrics against independent implementations: torchmetrics, fast-bss-eval, mir_eval."""

import fast_bss_eval
import mir_eval
import numpy as np
import pytest
import torch
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio as tm_si_sdr
from torchmetrics.functional.audio import signal_distortion_ratio as tm_sdr
from torchmetrics.functional.audio import signal_noise_ratio as tm_snr

from deepasa.metrics import evaluate_separation, improvement, sdr, si_sdr, snr


def _case(J=3, M=2, N=4000, seed=0):
    rng = np.random.default_rng(seed)
    tgt = rng.standard_normal((J, M, N))
    # Estimates: filtered target (allowed distortion) + interference + noise, different per source.
    est = np.empty_like(tgt)
    for j in range(J):
        for m in range(M):
            est[j, m] = (np.convolve(tgt[j, m], rng.standard_normal(8) * 0.3 + np.eye(8)[0])[:N]
                         + 0.3 * tgt[(j + 1) % J, m] + 0.2 * rng.standard_normal(N))
    mix = tgt.sum(0) + 0.1 * rng.standard_normal((M, N))
    return est, tgt, mix


def _t(x):
    return torch.from_numpy(np.ascontiguousarray(x))


@pytest.mark.parametrize("zero_mean", [True, False])
def test_si_sdr_and_snr_match_torchmetrics(zero_mean):
    est, tgt, _ = _case()
    np.testing.assert_allclose(si_sdr(est, tgt, zero_mean=zero_mean),
                               tm_si_sdr(_t(est), _t(tgt), zero_mean=zero_mean).numpy(), atol=1e-9)
    np.testing.assert_allclose(snr(est, tgt), tm_snr(_t(est), _t(tgt)).numpy(), atol=1e-9)


def test_si_sdr_matches_fast_bss_eval():
    est, tgt, _ = _case()
    ref = fast_bss_eval.si_sdr(tgt.reshape(-1, 1, tgt.shape[-1]), est.reshape(-1, 1, est.shape[-1]))[:, 0]
    np.testing.assert_allclose(si_sdr(est, tgt, zero_mean=False).reshape(-1), ref, atol=1e-6)


def test_sdr_matches_torchmetrics_and_fast_bss_eval():
    est, tgt, _ = _case()
    ours = sdr(est, tgt)                                                  # (J, M)
    np.testing.assert_allclose(ours, tm_sdr(_t(est), _t(tgt)).numpy(), atol=1e-6)
    fbe = fast_bss_eval.sdr(tgt.reshape(-1, 1, tgt.shape[-1]), est.reshape(-1, 1, est.shape[-1]))[:, 0]
    np.testing.assert_allclose(ours.reshape(-1), fbe, atol=1e-6)
    # The distortion filter forgives a short filter: SDR well above the unfiltered SNR.
    assert np.all(ours > snr(est, tgt))


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_sdr_matches_mir_eval_on_a_small_case():
    est, tgt, _ = _case(J=2, M=1, N=3000, seed=1)
    ref_sdr, _sir, _sar, _perm = mir_eval.separation.bss_eval_sources(tgt[:, 0], est[:, 0], compute_permutation=False)
    np.testing.assert_allclose(sdr(est[:, 0], tgt[:, 0]), ref_sdr, atol=1e-3)


def test_improvement_and_clip_report_ref_channel_and_m2m():
    est, tgt, mix = _case(J=3, M=2)
    direct_t, direct_e = 0.8 * tgt, 0.8 * est + 0.05
    # Source 2 is inactive: zero target, garbage estimate; it must not count.
    tgt[2], direct_t[2] = 0.0, 0.0
    rep = evaluate_separation(est, tgt, mix, est_direct=direct_e, tgt_direct=direct_t)
    a = slice(0, 2)
    si_est = tm_si_sdr(_t(est[a]), _t(tgt[a]), zero_mean=True).numpy()                      # (2, M)
    si_mix = tm_si_sdr(_t(np.broadcast_to(mix, tgt[a].shape)), _t(tgt[a]), zero_mean=True).numpy()
    sdr_est = tm_sdr(_t(est[a]), _t(tgt[a])).numpy()
    sdr_mix = tm_sdr(_t(np.broadcast_to(mix, tgt[a].shape).copy()), _t(tgt[a])).numpy()
    assert rep["si_sdr_db"] == pytest.approx(si_est[:, 0].mean(), abs=1e-6)
    assert rep["si_sdri_db"] == pytest.approx((si_est - si_mix)[:, 0].mean(), abs=1e-6)
    assert rep["si_sdri_m2m_db"] == pytest.approx((si_est - si_mix).mean(), abs=1e-6)
    assert rep["sdri_db"] == pytest.approx((sdr_est - sdr_mix)[:, 0].mean(), abs=1e-5)
    assert rep["sdr_m2m_db"] == pytest.approx(sdr_est.mean(), abs=1e-5)
    d_est = tm_si_sdr(_t(direct_e[a]), _t(direct_t[a]), zero_mean=True).numpy()
    d_mix = tm_si_sdr(_t(np.broadcast_to(mix, tgt[a].shape)), _t(direct_t[a]), zero_mean=True).numpy()
    assert rep["direct_si_sdri_db"] == pytest.approx((d_est - d_mix)[:, 0].mean(), abs=1e-6)
    np.testing.assert_allclose(improvement(si_sdr, est[a], tgt[a], mix), si_est - si_mix, atol=1e-9)


def test_no_active_source_gives_nan():
    rep = evaluate_separation(np.ones((2, 100)), np.zeros((2, 100)), np.ones(100), with_sdr=False)
    assert np.isnan(rep["si_sdri_db"])
