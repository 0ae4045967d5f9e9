"""Per-object spatial features for the DoA decoder: GCC-PHAT over inter-capsule lags, weighted by each object.

Why (docs/model.md, "Direction features"; the direction issue's measurements): the trunk of DeepASA is
frequency-shift equivariant (attention over frequency has no position, every convolution is shared along F),
while turning an inter-channel phase difference Δφ into a delay needs the absolute frequency (τ = Δφ / 2πf).
In the paper's DoANet the frequency position enters only at the GRU input over F_d coarse bands, and on our
CPU budgets the direction never generalised (median error ~80° after 6,000 scene passes). A two-layer MLP on
GCC-PHAT of the mixture localises one source to ~10° after 30 s of training. GCC-PHAT is the phase transform
summed over frequency with the frequency known: a fixed, parameter-free map from phase differences to delays.

This module computes, for every object slot j, pair (a, b) of the M capsules and lag τ:

    G_j,ab(t', τ) = Σ_{t ∈ t'} Σ_{f ≥ 1} w_j(t, f) · Re[ P_ab(t, f) · e^{i 2π f_Hz τ} ] / (Σ_{t ∈ t'} Σ_f w_j(t, f) + ε)

with P_ab = X_a X_b* / |X_a X_b*| (phase transform) and w_j ≥ 0 an object weight, so slot j reads the
delays of the time-frequency points that belong to it (``DeepASAConfig.doa_spatial = "gcc_mixture"``): P from the
input mixture (physically consistent from the first training step), w_j = min(|D̂_j,ref| / |X_ref|, 1), the ratio
mask of the object's estimated direct path at the reference mic (detached: the DoA loss does not train the
separation through the mask). (A "gcc_image" variant, P from the object's own estimated image, was removed in
issue 38: no recipe or model used it.)

A plane wave that reaches capsule a at d_a has P_ab = e^{-iω(d_a − d_b)}, so G peaks at τ = d_a − d_b
(tests/test_spatial.py checks this against the array geometry). The last feature per frame is
log(mean w_j + 1e-4), the object's weight mass (how much of the frame it claims).
"""

from __future__ import annotations

import contextlib
import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn


def capsule_pairs(n_mics: int) -> list[tuple[int, int]]:
    """All pairs (a, b), a < b, of n_mics capsules (6 for 4 mics), in lexicographic order."""
    return list(itertools.combinations(range(n_mics), 2))


def _float32(device_type: str):
    """A context that turns autocast off on ``device_type``; a no-op on devices autocast does not know (``meta``,
    used by :func:`deepasa.model.complexity.measure`)."""
    if device_type in ("cpu", "cuda"):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def gcc_feature_width(n_mics: int, n_lags: int) -> int:
    """Features per object and label frame: P·L GCC values (P = M(M−1)/2 pairs) + 1 weight mass."""
    return len(capsule_pairs(n_mics)) * n_lags + 1


class GCCPhatFeatures(nn.Module):
    """Object-weighted GCC-PHAT at label rate (module docstring).

    Args:
        n_fft: FFT size of the spectra (F = n_fft/2 + 1 bins).
        sample_rate: Hz.
        n_mics: M capsules (pairs = M(M−1)/2).
        max_lag_s: lags span [−max_lag_s, +max_lag_s] (the array's largest TDOA is 2r/c = 245 µs for the
            4.2-cm tetrahedron; the default 300 µs leaves a margin).
        n_lags: L lag points over that span.

    ``forward(spec (B, J or 1, M, F, T) complex, weight (B, J, F, T) ≥ 0, n_label)`` → (B, J, T', P·L + 1).
    """

    def __init__(self, n_fft: int, sample_rate: int, n_mics: int, max_lag_s: float = 3.0e-4, n_lags: int = 25):
        super().__init__()
        self.n_mics, self.pairs = n_mics, capsule_pairs(n_mics)
        self.n_lags = n_lags
        freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft  # (F,) Hz
        lags = torch.linspace(-max_lag_s, max_lag_s, n_lags, dtype=torch.float64)  # (L,) s
        arg = 2 * math.pi * freqs[:, None] * lags[None, :]  # (F, L)
        arg[0] = 0.0
        keep = (freqs > 0).to(torch.float64)[:, None]  # the DC bin carries no phase: left out
        self.register_buffer("cos_basis", (torch.cos(arg) * keep).float(), persistent=False)  # (F, L)
        self.register_buffer("sin_basis", (torch.sin(arg) * keep).float(), persistent=False)  # (F, L)
        self.register_buffer("lags_s", lags.float(), persistent=False)  # (L,)
        idx_a = torch.tensor([a for a, _ in self.pairs])
        idx_b = torch.tensor([b for _, b in self.pairs])
        self.register_buffer("idx_a", idx_a, persistent=False)
        self.register_buffer("idx_b", idx_b, persistent=False)

    @property
    def n_features(self) -> int:
        """P·L + 1 features per object and label frame."""
        return gcc_feature_width(self.n_mics, self.n_lags)

    def phase_transform(self, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """spec (..., M, F, T) complex -> cos, sin of the pair phase differences, each (..., P, F, T)."""
        cross = spec[..., self.idx_a, :, :] * spec[..., self.idx_b, :, :].conj()  # (..., P, F, T)
        unit = cross / cross.abs().clamp_min(1e-12)  # (..., P, F, T), |unit| = 1 (0 where silent)
        return unit.real, unit.imag

    def forward(self, spec: torch.Tensor, weight: torch.Tensor, n_label: int) -> torch.Tensor:
        """spec (B, J|1, M, F, T) complex, weight (B, J, F, T), n_label T' -> (B, J, T', P·L + 1) float32."""
        with _float32(spec.device.type):
            b, j, f, t = weight.shape
            c, s = self.phase_transform(spec.to(torch.complex64))  # (B, J|1, P, F, T) each
            w = weight.float().unsqueeze(2)  # (B, J, 1, F, T)
            p = c.shape[2]
            # time pooling to label frames before the lag transform (linear, so it commutes): sums over t ∈ t'
            wc = F.adaptive_avg_pool1d((w * c).reshape(-1, t), n_label).reshape(b, j, p, f, n_label)  # (B,J,P,F,T')
            ws = F.adaptive_avg_pool1d((w * s).reshape(-1, t), n_label).reshape(b, j, p, f, n_label)  # (B,J,P,F,T')
            mass = F.adaptive_avg_pool1d(weight.float().reshape(-1, t), n_label).reshape(b, j, f, n_label)
            den = mass[:, :, 1:].sum(dim=2).clamp_min(1e-6)  # (B, J, T'), DC excluded as in the basis
            wc, ws = wc.transpose(-1, -2), ws.transpose(-1, -2)  # (B, J, P, T', F) each
            # Re[(cos + i sin) e^{iωτ}] = cos·cos(ωτ) − sin·sin(ωτ)
            gcc = wc @ self.cos_basis - ws @ self.sin_basis  # (B, J, P, T', L)
            gcc = gcc / den[:, :, None, :, None]  # (B, J, P, T', L), weighted mean over (t, f)
            gcc = gcc.permute(0, 1, 3, 2, 4).reshape(b, j, n_label, p * self.n_lags)  # (B, J, T', P*L)
            level = torch.log(mass.mean(dim=2) + 1e-4).unsqueeze(-1)  # (B, J, T', 1)
            return torch.cat([gcc, level], dim=-1)  # (B, J, T', P*L + 1)


def object_weight(direct_ref: torch.Tensor, mix_ref: torch.Tensor) -> torch.Tensor:
    """Ratio mask of each object's estimated direct path at the reference mic, in [0, 1], detached.

    direct_ref (B, J, F, T) complex, mix_ref (B, F, T) complex -> (B, J, F, T) float32.
    """
    ratio = direct_ref.detach().abs() / mix_ref.detach().abs().unsqueeze(1).clamp_min(1e-8)  # (B, J, F, T)
    return ratio.clamp(max=1.0).float()


def fibonacci_directions(n: int) -> torch.Tensor:
    """n near-uniform unit vectors on the sphere (golden-angle spiral): (n, 3) float64, x/y/z.

    Neighbours are ~ sqrt(4π / n) rad apart (3.2° for n = 4000), so the nearest grid point of any direction is
    within ~1.8° of it.
    """
    i = torch.arange(n, dtype=torch.float64) + 0.5
    polar = torch.acos(1.0 - 2.0 * i / n)  # (n,) from +z
    azim = math.pi * (1.0 + 5.0 ** 0.5) * i  # (n,) golden angle steps
    return torch.stack([torch.cos(azim) * torch.sin(polar), torch.sin(azim) * torch.sin(polar),
                        torch.cos(polar)], dim=-1)  # (n, 3)


class SRPRefine(nn.Module):
    """SRP-PHAT refinement of each object's DoA near the network's estimate (``doa_refine: srp``).

    For object j and label frame t', with the object-weighted phase transform of the mixture (module docstring,
    P_ab and w_j), pooled over the label frames t' − k … t' + k (k = ``frames``):

        SRP_j(t', u) = Σ_ab Σ_t Σ_{f ≥ 1} w_j(t, f) · Re[ P_ab(t, f) · e^{i 2π f_Hz (d_a(u) − d_b(u))} ],

    where d_a(u) = −(p_a · u) / c is the arrival delay at capsule a of a plane wave from u (capsule positions p_a).
    The refined direction is the grid direction u (``n_directions``, near-uniform) of the largest SRP within
    ``cone_deg`` of the network's direction; the vector keeps the network's norm (the activity half of the
    decision rule, docs/spec.md §1). Where the network's vector is zero, or the object claims no bin in the
    window, the network's vector is returned unchanged.

    The sum over frequency is computed in the lag domain, as GCC-PHAT on a lag grid 8× finer than a sample
    spanning the array's largest delay, and read at each direction's delay pair by linear interpolation.
    Parameter-free; nothing is learned and no gradient flows (argmax).

    ``forward(spec (B, 1|J, M, F, T) complex, weight (B, J, F, T), doa (B, J, T', 3))`` → (B, J, T', 3).
    """

    def __init__(self, n_fft: int, sample_rate: int, mic_offsets, n_directions: int = 4000,
                 cone_deg: float = 25.0, frames: int = 1, speed_of_sound: float = 343.0, upsample: int = 8):
        super().__init__()
        self.cone_cos = math.cos(math.radians(cone_deg))
        self.frames = int(frames)
        # the geometry on the CPU even inside a torch.device("meta") context (deepasa.model.complexity builds the
        # model there), where the lag range's .max() could not be read
        with torch.device("cpu"):
            mics = torch.as_tensor(mic_offsets, dtype=torch.float64)  # (M, 3) metres
            self.pairs = capsule_pairs(mics.shape[0])
            grid = fibonacci_directions(n_directions)  # (G, 3)
            # delay difference d_a − d_b of every pair at every grid direction
            delay = -(grid @ mics.T) / speed_of_sound  # (G, M) s
            tdoa = torch.stack([delay[:, a] - delay[:, b] for a, b in self.pairs])  # (P, G) s
            step = 1.0 / (upsample * sample_rate)  # lag spacing (s)
            half = math.ceil(float(tdoa.abs().max()) / step) + 1
            lags = torch.arange(-half, half + 1, dtype=torch.float64) * step  # (L,) s
            pos = (tdoa - lags[0]) / step  # (P, G) fractional lag index
            lo = pos.floor().clamp(0, len(lags) - 2)  # (P, G)
        self.gcc = GCCPhatFeatures(n_fft, sample_rate, mics.shape[0], max_lag_s=float(lags[-1]), n_lags=len(lags))
        self.register_buffer("grid", grid.float(), persistent=False)  # (G, 3)
        self.register_buffer("lag_lo", lo.long(), persistent=False)  # (P, G)
        self.register_buffer("lag_frac", (pos - lo).float(), persistent=False)  # (P, G) in [0, 1]

    def srp(self, spec: torch.Tensor, weight: torch.Tensor, n_label: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled SRP map and the weight mass: spec (B, 1|J, M, F, T), weight (B, J, F, T) ->
        SRP (B, J, T', G), mass (B, J, T') (Σ w over the window's bins; 0 = the object claims nothing)."""
        g = self.gcc
        b, j, f, t = weight.shape
        c, s = g.phase_transform(spec.to(torch.complex64))  # (B, 1|J, P, F, T) each
        w = weight.float().unsqueeze(2)  # (B, J, 1, F, T)
        p = c.shape[2]
        wc = F.adaptive_avg_pool1d((w * c).reshape(-1, t), n_label).reshape(b, j, p, f, n_label)  # (B,J,P,F,T')
        ws = F.adaptive_avg_pool1d((w * s).reshape(-1, t), n_label).reshape(b, j, p, f, n_label)  # (B,J,P,F,T')
        mass = F.adaptive_avg_pool1d(weight.float()[:, :, 1:].sum(2).reshape(-1, 1, t), n_label)  # (B*J, 1, T')
        if self.frames:  # box sum over t' − k … t' + k (linear, so it may precede the lag transform)
            k = 2 * self.frames + 1
            box = lambda v: F.avg_pool1d(v.reshape(-1, 1, n_label), k, 1, self.frames, count_include_pad=False)
            wc = box(wc).reshape(b, j, p, f, n_label)  # (B, J, P, F, T')
            ws = box(ws).reshape(b, j, p, f, n_label)  # (B, J, P, F, T')
            mass = box(mass)  # (B*J, 1, T')
        wc, ws = wc.transpose(-1, -2), ws.transpose(-1, -2)  # (B, J, P, T', F) each
        gcc = wc @ g.cos_basis - ws @ g.sin_basis  # (B, J, P, T', L), unnormalised
        out = gcc.new_zeros(b, j, n_label, self.grid.shape[0])  # (B, J, T', G)
        for q in range(p):  # per pair: linear interpolation at the grid's delays, summed over pairs
            lo, fr = self.lag_lo[q], self.lag_frac[q]  # (G,) each
            out += gcc[:, :, q, :, lo] * (1 - fr) + gcc[:, :, q, :, lo + 1] * fr  # (B, J, T', G)
        return out, mass.reshape(b, j, n_label)

    @torch.no_grad()
    def forward(self, spec: torch.Tensor, weight: torch.Tensor, doa: torch.Tensor) -> torch.Tensor:
        """spec (B, 1|J, M, F, T) complex, weight (B, J, F, T) ≥ 0, doa (B, J, T', 3) -> refined (B, J, T', 3)."""
        with _float32(spec.device.type):
            doa = doa.float()
            srp, mass = self.srp(spec, weight, doa.shape[2])  # (B, J, T', G), (B, J, T')
            norm = doa.norm(dim=-1, keepdim=True)  # (B, J, T', 1)
            unit = doa / norm.clamp_min(1e-8)  # (B, J, T', 3)
            inside = (unit @ self.grid.T) >= self.cone_cos  # (B, J, T', G): the cone around the network's DoA
            best = srp.masked_fill(~inside, float("-inf")).argmax(dim=-1)  # (B, J, T')
            refined = self.grid[best] * norm  # (B, J, T', 3)
            keep = (norm[..., 0] > 1e-6) & (mass > 1e-6) & inside.any(dim=-1)  # (B, J, T')
            return torch.where(keep.unsqueeze(-1), refined, doa)  # (B, J, T', 3)
