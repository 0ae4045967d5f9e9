"""Mamba-2 (``Mamba2Simple`` of mamba_ssm 2.2.2) in pure PyTorch, with a chunked SSD scan.

docs/spec.md §3.2: d_model 64, d_state 16, d_conv 4, expand 4 (d_inner 256), headdim 16 (16 heads), ngroups 1,
no in/out-projection biases, conv bias, SiLU, gated RMSNorm before ``out_proj``.

The selective state-space recurrence per head h (state S ∈ R^{P×N}, P = headdim, N = d_state):

    S_t = exp(Δ_t A_h) S_{t-1} + Δ_t x_t B_tᵀ,        y_t = S_t C_t + D_h x_t.

:func:`ssd_chunked` evaluates it with the state-space-duality algorithm of Mamba-2 (Dao & Gu 2024): within
a chunk of Q steps the output is a masked (Q×Q) attention-like product, across chunks the states are passed
on with their decays. Its cost per token and head is ≈ Q·P (+ Q·N once per group) + 2·N·P MACs, so the chunk
size trades the quadratic intra-chunk term against the state terms; it does not change the result
(:func:`ssd_naive`, a step-by-step loop, is the reference the tests compare against). The config default is
Q = 32 (Mamba2Simple uses 256): on CPU it runs several times faster at T = 201 and does ~4x fewer scan MACs
(paper config, `deepasa complexity`: 3.9 GMAC/s counted for the scan at Q = 32, 19.2 at Q = 256).

A CUDA fast path (``mamba_ssm.ops.triton.ssd_combined.mamba_chunk_scan_combined``) is used only when that
package imports and the input is on a CUDA device; it computes the same function.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

try:  # optional kernel package; never required
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined as _cuda_scan
except Exception:  # noqa: BLE001 - any import failure (missing package, no CUDA toolchain) disables it
    _cuda_scan = None


def segsum(a: torch.Tensor) -> torch.Tensor:
    """Segment sums of log-decays. a (..., Q) -> (..., Q, Q) with out[i, j] = Σ_{k=j+1..i} a_k (i ≥ j), -inf above.

    Computed by a masked cumulative sum (not a difference of cumsums) for numerical stability.
    """
    q = a.shape[-1]
    x = a.unsqueeze(-1).expand(*a.shape, q)  # (..., Q, Q), x[i, j] = a_i
    strict = torch.tril(torch.ones(q, q, dtype=torch.bool, device=a.device), diagonal=-1)
    x = x.masked_fill(~strict, 0.0).cumsum(dim=-2)  # (..., Q, Q)
    lower = torch.tril(torch.ones(q, q, dtype=torch.bool, device=a.device), diagonal=0)
    return x.masked_fill(~lower, float("-inf"))


def decay_matrix(a_cum: torch.Tensor) -> torch.Tensor:
    """Intra-chunk decays from cumulative log-decays. a_cum (..., Q) -> (..., Q, Q).

    out[i, j] = exp(a_cum[i] − a_cum[j]) = exp(Σ_{k=j+1..i} a_k) for i ≥ j, 0 above the diagonal. This is the
    difference form the mamba_ssm kernels use inside a chunk (the chunk bounds the magnitudes); it equals
    ``exp(segsum(a))`` and needs one pass instead of a masked cumulative sum over a Q×Q tensor.
    """
    q = a_cum.shape[-1]
    upper = torch.ones(q, q, dtype=torch.bool, device=a_cum.device).triu_(1)
    out = a_cum.unsqueeze(-1) - a_cum.unsqueeze(-2)  # (..., Q, Q)
    return out.masked_fill_(upper, float("-inf")).exp_()


def ssd_chunked(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, chunk_size: int = 64
) -> torch.Tensor:
    """Chunked SSD scan (zero initial state), without the D skip term.

    Args:
        x: (b, L, H, P) inputs.
        dt: (b, L, H) positive step sizes Δ (after softplus).
        A: (H,) negative decay rates.
        B, C: (b, L, G, N) input / output projections, G groups shared by H/G heads each.
        chunk_size: Q.

    Returns:
        y: (b, L, H, P).
    """
    b, L, H, P = x.shape
    G, N = B.shape[-2:]
    q = chunk_size
    pad = (-L) % q
    if pad:  # trailing zeros: the scan is causal, so real positions are unaffected
        x, dt = F.pad(x, (0, 0, 0, 0, 0, pad)), F.pad(dt, (0, 0, 0, pad))
        B, C = F.pad(B, (0, 0, 0, 0, 0, pad)), F.pad(C, (0, 0, 0, 0, 0, pad))
    c, hg = (L + pad) // q, H // G
    xdt = (x * dt.unsqueeze(-1)).reshape(b, c, q, G, hg, P).permute(0, 3, 4, 1, 2, 5)  # (b, G, hg, c, Q, P)
    a = (dt * A).reshape(b, c, q, G, hg).permute(0, 3, 4, 1, 2)  # (b, G, hg, c, Q)
    Bc = B.reshape(b, c, q, G, N).permute(0, 3, 1, 2, 4).unsqueeze(2)  # (b, G, 1, c, Q, N)
    Cc = C.reshape(b, c, q, G, N).permute(0, 3, 1, 2, 4).unsqueeze(2)  # (b, G, 1, c, Q, N)
    a_cum = a.cumsum(dim=-1)  # (b, G, hg, c, Q)

    # 1. intra-chunk outputs: y_l = Σ_{s≤l} (C_l·B_s) exp(Σ_{s<k≤l} a_k) Δ_s x_s
    cb = Cc @ Bc.transpose(-1, -2)  # (b, G, 1, c, Q, Q), once per group
    y_diag = (decay_matrix(a_cum) * cb) @ xdt  # (b, G, hg, c, Q, P)
    # 2. state at the end of each chunk from that chunk's inputs
    decay_to_end = torch.exp(a_cum[..., -1:] - a_cum)  # (b, G, hg, c, Q)
    states = (Bc * decay_to_end.unsqueeze(-1)).transpose(-1, -2) @ xdt  # (b, G, hg, c, N, P)
    # 3. pass states across chunks: entering state of chunk k = Σ_{j<k} exp(decay j+1..k-1 ends) states_j
    chunk_decay = F.pad(a_cum[..., -1], (1, 0))  # (b, G, hg, c+1)
    decay_mat = torch.exp(segsum(chunk_decay))  # (b, G, hg, c+1, c+1)
    states = torch.cat([torch.zeros_like(states[..., :1, :, :]), states], dim=-3)  # (b, G, hg, c+1, N, P)
    entering = (decay_mat @ states.flatten(-2)).reshape(states.shape)[..., :-1, :, :]  # (b, G, hg, c, N, P)
    # 4. contribution of the entering state to every position of the chunk
    y_off = (Cc * torch.exp(a_cum).unsqueeze(-1)) @ entering  # (b, G, hg, c, Q, P)
    y = (y_diag + y_off).permute(0, 3, 4, 1, 2, 5).reshape(b, c * q, H, P)  # (b, L+pad, H, P)
    return y[:, :L]


def ssd_naive(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """Reference step-by-step recurrence; same arguments and output as :func:`ssd_chunked` (slow, for tests)."""
    b, L, H, P = x.shape
    G, N = B.shape[-2:]
    head_group = torch.arange(H, device=x.device) // (H // G)  # group of each head
    Bh, Ch = B[:, :, head_group], C[:, :, head_group]  # (b, L, H, N)
    state = x.new_zeros(b, H, P, N)
    ys = []
    for t in range(L):
        decay = torch.exp(dt[:, t] * A)  # (b, H)
        inp = (dt[:, t, :, None] * x[:, t]).unsqueeze(-1) * Bh[:, t].unsqueeze(-2)  # (b, H, P, N)
        state = state * decay[..., None, None] + inp
        ys.append((state * Ch[:, t].unsqueeze(-2)).sum(-1))  # (b, H, P)
    return torch.stack(ys, dim=1)  # (b, L, H, P)


class RMSNormGated(nn.Module):
    """Gated RMSNorm of Mamba-2 with ``norm_before_gate=False``: RMSNorm(y ⊙ SiLU(z)) · w. (…, d) -> (…, d)."""

    def __init__(self, d: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """y, z (…, d) -> (…, d)."""
        y = y * F.silu(z)
        return y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Mamba2(nn.Module):
    """``Mamba2Simple`` equivalent: in_proj → causal depthwise conv + SiLU → SSD scan → gated RMSNorm → out_proj.

    Args:
        d_model: model width (64). d_state: N (16). d_conv: conv width (4). expand: d_inner = expand·d_model.
        headdim: P (16). ngroups: G (1). chunk_size: SSD chunk Q (see module docstring).
        dt_min, dt_max, dt_init_floor, A_init_range: Mamba2Simple's initialisation ranges.

    Input (B, L, d_model) -> output (B, L, d_model).
    """

    def __init__(
        self,
        d_model: int = 64,
        *,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 4,
        headdim: int = 16,
        ngroups: int = 1,
        chunk_size: int = 64,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        A_init_range: tuple[float, float] = (1.0, 16.0),
        use_kernel: bool = True,
    ) -> None:
        super().__init__()
        self.d_inner = expand * d_model
        self.d_state, self.headdim, self.ngroups, self.chunk_size = d_state, headdim, ngroups, chunk_size
        self.nheads = self.d_inner // headdim
        self.use_kernel = use_kernel
        conv_dim = self.d_inner + 2 * ngroups * d_state
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner + 2 * ngroups * d_state + self.nheads, bias=False)
        self.conv1d = nn.Conv1d(conv_dim, conv_dim, d_conv, groups=conv_dim, padding=d_conv - 1, bias=True)
        # Δ bias = softplus⁻¹(Δ0), Δ0 log-uniform in [dt_min, dt_max] (as Mamba2Simple)
        dt = torch.exp(torch.rand(self.nheads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.empty(self.nheads).uniform_(*A_init_range)))
        self.D = nn.Parameter(torch.ones(self.nheads))
        self.norm = RMSNormGated(self.d_inner, eps=1e-5)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, L, d_model) -> (B, L, d_model)."""
        b, L, _ = u.shape
        gn = self.ngroups * self.d_state
        zxbcdt = self.in_proj(u)  # (B, L, 2*d_inner + 2GN + H)
        # z (B, L, d_inner), xBC (B, L, d_inner + 2GN), dt (B, L, H)
        z, xBC, dt = zxbcdt.split([self.d_inner, self.d_inner + 2 * gn, self.nheads], dim=-1)
        xBC = F.silu(self.conv1d(xBC.transpose(1, 2))[..., :L]).transpose(1, 2)  # (B, L, d_inner + 2GN), causal
        x, Bm, Cm = xBC.split([self.d_inner, gn, gn], dim=-1)  # (B, L, d_inner), (B, L, GN), (B, L, GN)
        x = x.reshape(b, L, self.nheads, self.headdim)  # (B, L, H, P)
        Bm = Bm.reshape(b, L, self.ngroups, self.d_state)  # (B, L, G, N)
        Cm = Cm.reshape(b, L, self.ngroups, self.d_state)  # (B, L, G, N)
        dt = F.softplus(dt + self.dt_bias)  # (B, L, H)
        A = -torch.exp(self.A_log.float())  # (H,)
        if self.use_kernel and _cuda_scan is not None and u.is_cuda:
            y = _cuda_scan(x, dt, A, Bm, Cm, chunk_size=self.chunk_size)  # (B, L, H, P)
        else:
            y = ssd_chunked(x, dt, A, Bm, Cm, self.chunk_size)  # (B, L, H, P)
        y = y + x * self.D[:, None]  # D skip
        y = y.reshape(b, L, self.d_inner)  # (B, L, d_inner)
        return self.out_proj(self.norm(y, z))
