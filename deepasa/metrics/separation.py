"""Separation metrics: SI-SDR(i), SDR(i) (BSS-eval with a distortion filter) and plain SNR, in float64 numpy.

Definitions (``s`` target, ``ŝ`` estimate, both ``(N,)``):

* **SI-SDR** ``= 10·log10(‖αs‖² / ‖αs − ŝ‖²)``, ``α = <ŝ, s>/‖s‖²``; with ``zero_mean=True`` both signals are
  made zero-mean first. This is torchmetrics' ``scale_invariant_signal_distortion_ratio`` (docs/spec.md §8 uses its
  zero-mean form), including its ``eps = finfo(float64).eps`` guards.
* **SDR** (BSS-eval v4 style, single reference): the part of ``ŝ`` explained by ``s`` filtered with an
  optimal FIR filter of ``filter_length`` taps (512, as BSS-eval, torchmetrics ``signal_distortion_ratio`` and
  fast-bss-eval) is the target; everything else is distortion. With ``R`` the Toeplitz autocorrelation of
  ``s`` and ``b`` the cross-correlation of ``s`` with ``ŝ`` (both over lags ``0..L−1``, after scaling both
  signals to unit norm), the explained fraction of the energy is ``c = bᵀR⁻¹b`` and
  ``SDR = 10·log10(c / (1 − c))``.
* **SNR** ``= 10·log10(‖s‖² / ‖s − ŝ‖²)`` (no scaling, no filter).
* An improvement (``…i``) is ``metric(ŝ, s) − metric(x, s)`` where ``x`` is the mixture channel the target
  lives on.

:func:`evaluate_separation` scores one clip: on the reference channel and averaged over all channels (M2M),
for the full image and for the direct path (dereverberation), over the **active** sources only.

**Silent estimates.** SI-SDR and SDR of an all-zero estimate are 0/0; the eps guards (as torchmetrics) turn
that into 0 dB, so an improvement over a mixture whose SI-SDR is negative would *reward* returning nothing
(a system that drops every object would score +7 dB SI-SDRi on our test scenes). :func:`evaluate_separation`
therefore scores a silent estimate (all samples zero on that channel) as the mixture itself: returning nothing
is neither better nor worse than not processing, so its improvement is exactly 0 dB.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_toeplitz

__all__ = ["si_sdr", "snr", "sdr", "silent", "improvement", "evaluate_separation", "SEPARATION_KEYS"]

_EPS = float(np.finfo(np.float64).eps)


def _as64(x) -> np.ndarray:
    """Any array-like (numpy, torch CPU tensor, list) as float64 numpy."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _prepare(estimate, target, zero_mean: bool) -> tuple[np.ndarray, np.ndarray]:
    """Both signals as float64 of one shape ``(..., N)``, mean-removed when ``zero_mean``."""
    est, tgt = _as64(estimate), _as64(target)
    if est.shape != tgt.shape:
        raise ValueError(f"estimate {est.shape} and target {tgt.shape} differ")
    if zero_mean:
        est = est - est.mean(-1, keepdims=True)
        tgt = tgt - tgt.mean(-1, keepdims=True)
    return est, tgt

def si_sdr(estimate, target, *, zero_mean: bool = True) -> np.ndarray:
    """Scale-invariant SDR in dB over the last axis.

    Args:
        estimate: ``(..., N)``.
        target: ``(..., N)``.
        zero_mean: remove the means first (docs/spec.md §8 / NBSS use the zero-mean form).

    Returns:
        ``(...)`` float64.
    """
    est, tgt = _prepare(estimate, target, zero_mean)
    alpha = ((est * tgt).sum(-1, keepdims=True) + _EPS) / ((tgt ** 2).sum(-1, keepdims=True) + _EPS)
    proj = alpha * tgt                                              # (..., N)
    return 10.0 * np.log10(((proj ** 2).sum(-1) + _EPS) / (((proj - est) ** 2).sum(-1) + _EPS))


def snr(estimate, target) -> np.ndarray:
    """Plain SNR in dB over the last axis, as torchmetrics ``signal_noise_ratio`` (zero_mean=False).

    Args:
        estimate: ``(..., N)``.
        target: ``(..., N)``.

    Returns:
        ``(...)`` float64, ``10·log10((‖s‖² + eps) / (‖s − ŝ‖² + eps))``.
    """
    est, tgt = _as64(estimate), _as64(target)
    if est.shape != tgt.shape:
        raise ValueError(f"estimate {est.shape} and target {tgt.shape} differ")
    return 10.0 * np.log10(((tgt ** 2).sum(-1) + _EPS) / (((tgt - est) ** 2).sum(-1) + _EPS))


def _correlations(target: np.ndarray, estimate: np.ndarray, n_lags: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear (not circular) auto-correlation of ``target`` and its cross-correlation with ``estimate``.

    Args:
        target, estimate: ``(N,)``.

    Returns:
        ``(r, b)``, each ``(n_lags,)``: ``r[k] = Σ_n s[n]s[n+k]``, ``b[k] = Σ_n s[n]ŝ[n+k]``.
    """
    n = target.shape[-1]
    n_fft = 1 << int(np.ceil(np.log2(2 * n - 1)))                   # long enough: no circular wrap
    spec_t = np.fft.rfft(target, n_fft)
    spec_e = np.fft.rfft(estimate, n_fft)
    r = np.fft.irfft(np.abs(spec_t) ** 2, n_fft)[:n_lags]
    b = np.fft.irfft(np.conj(spec_t) * spec_e, n_fft)[:n_lags]
    return r, b


def sdr(estimate, target, *, filter_length: int = 512, zero_mean: bool = False) -> np.ndarray:
    """BSS-eval SDR with an FIR distortion filter of ``filter_length`` taps, over the last axis.

    Args:
        estimate: ``(..., N)``.
        target: ``(..., N)``; must not be all zeros (score active sources only).
        filter_length: taps of the allowed distortion filter (512 as BSS-eval).
        zero_mean: remove the means first.

    Returns:
        ``(...)`` float64 SDR in dB.
    """
    est, tgt = _prepare(estimate, target, zero_mean)
    lead = est.shape[:-1]
    est2 = est.reshape(-1, est.shape[-1])                           # (K, N)
    tgt2 = tgt.reshape(-1, tgt.shape[-1])                           # (K, N)
    out = np.empty(est2.shape[0])
    n_lags = min(filter_length, est.shape[-1])
    for k in range(est2.shape[0]):
        s = tgt2[k] / max(np.linalg.norm(tgt2[k]), _EPS)            # unit-norm target
        e = est2[k] / max(np.linalg.norm(est2[k]), _EPS)            # unit-norm estimate
        r, b = _correlations(s, e, n_lags)
        h = solve_toeplitz(r, b)                                    # optimal filter: R h = b
        coh = float(b @ h)                                          # explained energy fraction of ŝ
        out[k] = 10.0 * np.log10(coh / (1.0 - coh))
    return out.reshape(lead)


def silent(estimate) -> np.ndarray:
    """True where an estimate is all zeros. ``(..., N) → (...)`` bool."""
    return ~np.any(_as64(estimate) != 0.0, axis=-1)


def improvement(metric, estimate, target, mixture, **kw) -> np.ndarray:
    """``metric(ŝ, s) − metric(x, s)`` with the mixture broadcast to the target's shape.

    Args:
        metric: one of :func:`si_sdr`, :func:`sdr`, :func:`snr`.
        estimate: ``(..., N)``.
        target: ``(..., N)``.
        mixture: broadcastable to ``target`` (e.g. ``(N,)`` or ``(M, N)`` for ``(J, M, N)`` targets).

    Returns:
        ``(...)`` improvement in dB; 0 where the estimate is silent (module docstring).
    """
    tgt = _as64(target)
    mix = np.broadcast_to(_as64(mixture), tgt.shape)
    gain = metric(estimate, tgt, **kw) - metric(mix, tgt, **kw)
    return np.where(silent(estimate), 0.0, gain)


#: The keys :func:`evaluate_separation` returns (all in dB).
SEPARATION_KEYS = tuple(
    f"{prefix}{name}{suffix}_db"
    for prefix in ("", "direct_")
    for name in ("si_sdr", "si_sdri", "sdr", "sdri")
    for suffix in ("", "_m2m")
)


def evaluate_separation(est_image, tgt_image, mixture, *, est_direct=None, tgt_direct=None, active=None,
                        ref_channel: int = 0, with_sdr: bool = True, filter_length: int = 512,
                        zero_mean_si_sdr: bool = True) -> dict[str, float]:
    """Separation scores of one clip, averaged over its active sources.

    Args:
        est_image: ``(J, M, N)`` estimated full images (after PIT reordering) or ``(J, N)`` single channel.
        tgt_image: ``(J, M, N)`` / ``(J, N)`` target full images (direct + reverb).
        mixture: ``(M, N)`` / ``(N,)``.
        est_direct, tgt_direct: optional direct-path estimates/targets, same layout (dereverberation scores).
        active: ``(J,)`` bool; default: target image not all zero.
        ref_channel: the reference mic.
        with_sdr: also compute the (slower) filtered SDR.
        filter_length: SDR distortion-filter taps.
        zero_mean_si_sdr: zero-mean SI-SDR (docs/spec.md §8).

    Returns:
        dict with keys from :data:`SEPARATION_KEYS` that apply: ``si_sdr_db``, ``si_sdri_db``, ``sdr_db``,
        ``sdri_db`` on the reference channel, the same with ``_m2m`` averaged over all channels (per source:
        mean over channels; then mean over sources), and ``direct_…`` for the direct path. Values are NaN
        when no source is active.
    """
    est, tgt, mix = _as64(est_image), _as64(tgt_image), _as64(mixture)
    if est.ndim == 2:                                               # single channel → (J, 1, N)
        est, tgt, mix = est[:, None], tgt[:, None], mix[None]
        ref_channel = 0
    if est.shape != tgt.shape or mix.shape != tgt.shape[1:]:
        raise ValueError(f"shapes do not match: est {est.shape}, tgt {tgt.shape}, mixture {mix.shape}")
    if active is None:
        active = (np.abs(tgt).reshape(tgt.shape[0], -1).max(-1) > 0)
    active = np.asarray(active, dtype=bool)

    pairs = {"": (est, tgt)}
    if est_direct is not None and tgt_direct is not None:
        e_d, t_d = _as64(est_direct), _as64(tgt_direct)
        if e_d.ndim == 2:
            e_d, t_d = e_d[:, None], t_d[:, None]
        pairs["direct_"] = (e_d, t_d)

    out: dict[str, float] = {}
    metrics = {"si_sdr": (si_sdr, {"zero_mean": zero_mean_si_sdr})}
    if with_sdr:
        metrics["sdr"] = (sdr, {"filter_length": filter_length})
    for prefix, (e, t) in pairs.items():
        e, t = e[active], t[active]                                 # (J_active, M, N)
        for name, (fn, kw) in metrics.items():
            if e.shape[0] == 0:
                for key in (name, name + "i"):
                    out[f"{prefix}{key}_db"] = out[f"{prefix}{key}_m2m_db"] = float("nan")
                continue
            base = fn(np.broadcast_to(mix, t.shape), t, **kw)       # (J_active, M)
            score = np.where(silent(e), base, fn(e, t, **kw))       # (J_active, M); silent → the mixture
            out[f"{prefix}{name}_db"] = float(score[:, ref_channel].mean())
            out[f"{prefix}{name}i_db"] = float((score - base)[:, ref_channel].mean())
            out[f"{prefix}{name}_m2m_db"] = float(score.mean(-1).mean())
            out[f"{prefix}{name}i_m2m_db"] = float((score - base).mean(-1).mean())
    return out
