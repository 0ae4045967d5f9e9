"""Feature aggregator: the DeFT-Mamba block and its layers (docs/spec.md §3.1–§3.2).

Trunk tensors are (B, D, T, F). A block runs a frequency sub-block (sequence axis F: gated conv, MHSA, FFN)
and then a time sub-block (sequence axis T: gated conv, MHSA, bidirectional Mamba-2 FFN); ``time_ffn="ffn"``
replaces the Mamba-FFN by a plain FFN (the "transformer aggregator").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepasa.model.mamba2 import Mamba2


class LN4D(nn.Module):
    """LayerNorm over the channel axis of a (B, D, T, F) map, per-channel affine (docs/spec.md §3.2). Shape kept."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, dim, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, D, T, F) -> (B, D, T, F)."""
        mu = x.mean(dim=1, keepdim=True)  # (B, 1, T, F)
        var = x.var(dim=1, keepdim=True, unbiased=False)  # (B, 1, T, F)
        return (x - mu) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class GCB(nn.Module):
    """Gated convolution block: Conv1d_a(u) ⊙ Mish(Conv1d_b(u)), kernel 3. (N, D, L) -> (N, D, L).

    The two D→D convs are stored as one D→2D conv (same parameters, same function, one kernel call).
    """

    def __init__(self, dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, 2 * dim, kernel_size, padding=kernel_size // 2)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (N, D, L) -> (N, D, L)."""
        a, g = self.conv(u).chunk(2, dim=1)  # (N, D, L) each
        return a * F.mish(g)


class MHSA(nn.Module):
    """Multi-head self-attention without positional encoding (docs/spec.md §3.2). (N, L, D) -> (N, L, D).

    q, k, v: Linear(D → H·d_h, no bias) (stored fused); scale 1/√d_h; attention dropout only in training
    (the released FlashAttention call applied it at eval time too); output Linear(H·d_h → D) + Dropout.
    """

    def __init__(self, dim: int, n_heads: int = 4, head_dim: int = 64, attn_dropout: float = 0.1,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.n_heads, self.head_dim, self.attn_dropout = n_heads, head_dim, attn_dropout
        self.qkv = nn.Linear(dim, 3 * n_heads * head_dim, bias=False)
        self.out = nn.Linear(n_heads * head_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (N, L, D) -> (N, L, D)."""
        n, L, _ = u.shape
        qkv = self.qkv(u).reshape(n, L, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (3, N, H, L, d_h)
        y = F.scaled_dot_product_attention(
            qkv[0], qkv[1], qkv[2], dropout_p=self.attn_dropout if self.training else 0.0
        )  # (N, H, L, d_h)
        y = y.transpose(1, 2).reshape(n, L, self.n_heads * self.head_dim)  # (N, L, H*d_h)
        return self.drop(self.out(y))


class FFN(nn.Module):
    """Linear(D→hidden) → Mish → Dropout → Linear(hidden→D) → Dropout. (N, L, D) -> (N, L, D)."""

    def __init__(self, dim: int, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.Mish(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (N, L, D) -> (N, L, D)."""
        return self.net(u)


class BiMamba(nn.Module):
    """Bidirectional Mamba-2 (docs/spec.md §3.2). (N, L, D) -> (N, L, 2D).

    forward  f = Mamba2(RMSNorm(u)) + u;  backward b = the same with its own weights on the time-reversed u,
    reversed back; output Linear(2D → 2D)(concat[f, b]). Each branch is mamba_ssm's ``Block`` with an RMSNorm
    pre-norm, no MLP and ``fused_add_norm=False``.
    """

    def __init__(self, dim: int, **mamba_kw) -> None:
        super().__init__()
        self.norm_f, self.norm_b = nn.RMSNorm(dim, eps=1e-5), nn.RMSNorm(dim, eps=1e-5)
        self.mamba_f, self.mamba_b = Mamba2(dim, **mamba_kw), Mamba2(dim, **mamba_kw)
        self.proj = nn.Linear(2 * dim, 2 * dim)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (N, L, D) -> (N, L, 2D)."""
        f = self.mamba_f(self.norm_f(u)) + u  # (N, L, D)
        ur = u.flip(1)  # (N, L, D), time-reversed
        b = (self.mamba_b(self.norm_b(ur)) + ur).flip(1)  # (N, L, D)
        return self.proj(torch.cat([f, b], dim=-1))  # (N, L, 2D)


class MambaFFN(nn.Module):
    """BiMamba → Mish → Dropout → Linear(2D → D) → Dropout (docs/spec.md §3.2). (N, L, D) -> (N, L, D)."""

    def __init__(self, dim: int, dropout: float = 0.1, **mamba_kw) -> None:
        super().__init__()
        self.bimamba = BiMamba(dim, **mamba_kw)
        self.out = nn.Sequential(nn.Mish(), nn.Dropout(dropout), nn.Linear(2 * dim, dim), nn.Dropout(dropout))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (N, L, D) -> (N, L, D)."""
        return self.out(self.bimamba(u))


class PreLN(nn.Module):
    """g(LayerNorm_D(u)): pre-norm wrapper. (N, L, D) -> whatever g returns."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm, self.fn = nn.LayerNorm(dim, eps=1e-5), fn

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (N, L, D) -> g(LN(u))."""
        return self.fn(self.norm(u))


class HybridSubBlock(nn.Module):
    """One axis of a DeFT block: LN4D → GCB (+res) → PreLN MHSA (+res) → PreLN FFN/MambaFFN (+res), + outer res.

    Args:
        axis: "freq" (sequence over F) or "time" (sequence over T).
        ffn: the feed-forward module (FFN or MambaFFN), applied with a pre-LayerNorm.

    (B, D, T, F) -> (B, D, T, F).
    """

    def __init__(self, dim: int, axis: str, ffn: nn.Module, *, n_heads: int, head_dim: int, attn_dropout: float,
                 dropout: float) -> None:
        super().__init__()
        if axis not in ("freq", "time"):
            raise ValueError(f"axis must be 'freq' or 'time', got {axis!r}")
        self.axis = axis
        self.ln = LN4D(dim)
        self.gcb = GCB(dim)
        self.attn = PreLN(dim, MHSA(dim, n_heads, head_dim, attn_dropout, dropout))
        self.ffn = PreLN(dim, ffn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, D, T, F) -> (B, D, T, F)."""
        b, d, t, f = x.shape
        u = self.ln(x)
        if self.axis == "freq":
            u = u.permute(0, 2, 1, 3).reshape(b * t, d, f)  # (B*T, D, F)
        else:
            u = u.permute(0, 3, 1, 2).reshape(b * f, d, t)  # (B*F, D, T)
        u = (self.gcb(u) + u).transpose(1, 2)  # (B*T, F, D) or (B*F, T, D)
        u = self.attn(u) + u
        u = self.ffn(u) + u
        if self.axis == "freq":
            u = u.reshape(b, t, f, d).permute(0, 3, 1, 2)  # (B, D, T, F)
        else:
            u = u.reshape(b, f, t, d).permute(0, 3, 2, 1)  # (B, D, T, F)
        return u + x


class DeFTBlock(nn.Module):
    """DeFT-Mamba block: F-hybrid sub-block (FFN) then T-hybrid sub-block (Mamba-FFN or FFN). (B, D, T, F) kept.

    Args:
        dim: D. n_heads, head_dim: aggregator attention. ffn_hidden: width of the frequency-path FFN.
        time_ffn: "mamba" (paper) or "ffn" (transformer aggregator; the FFN has hidden width ffn_hidden).
        mamba_kw: Mamba-2 settings (d_state, d_conv, expand, headdim, chunk_size).
    """

    def __init__(self, dim: int = 64, *, n_heads: int = 4, head_dim: int = 64, ffn_hidden: int = 256,
                 dropout: float = 0.1, attn_dropout: float = 0.1, time_ffn: str = "mamba", **mamba_kw) -> None:
        super().__init__()
        attn_kw = dict(n_heads=n_heads, head_dim=head_dim, attn_dropout=attn_dropout, dropout=dropout)
        self.freq = HybridSubBlock(dim, "freq", FFN(dim, ffn_hidden, dropout), **attn_kw)
        if time_ffn == "mamba":
            t_ffn: nn.Module = MambaFFN(dim, dropout, **mamba_kw)
        elif time_ffn == "ffn":
            t_ffn = FFN(dim, ffn_hidden, dropout)
        else:
            raise ValueError(f"time_ffn must be 'mamba' or 'ffn', got {time_ffn!r}")
        self.time = HybridSubBlock(dim, "time", t_ffn, **attn_kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, D, T, F) -> (B, D, T, F)."""
        return self.time(self.freq(x))


class AudioEncoder(nn.Module):
    """"Up-Conv": Conv2d(2M → D, 3×3) → GroupNorm(1, D) (docs/spec.md §3.1). (B, 2M, T, F) -> (B, D, T, F)."""

    def __init__(self, in_ch: int, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, dim, 3, padding=1)
        self.norm = nn.GroupNorm(1, dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 2M, T, F) -> (B, D, T, F)."""
        return self.norm(self.conv(x))
