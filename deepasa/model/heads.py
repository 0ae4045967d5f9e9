"""Object splitter and sub-decoders (docs/spec.md §3.3–§3.6).

Every head of slot j reads object feature map j (object-oriented processing, docs/spec.md §4). Object features
are (B·J, D, T, F); the SED/class and DoA decoders work on the transposed (B·J, D, F, T) map, frequency on the
H axis and time on the W axis, as in the released code.

Pooling is given as (F, T) pairs per CNN block, as docs/spec.md §3.5/§3.6 write them; for the paper config
(F = 321 bins, T = 201 frames, T' = 40 label frames) the maps after each stage are

* ClassNet branch A, ``(2,5) (2,1) (2,1) (2,1) (2,1) (2,1) (1,1)``: F 321→160→80→40→20→10→5→5, T 201→40;
* ClassNet branch C, ``(4,5) (4,4)``: F 321→80→20, T 201→40→10;
* DoANet, ``(8,5) (8,1)``: F 321→40→5, T 201→40.

The frequency factors come from the config; the first time factor is ``label_samples // hop`` (5 for the paper,
:func:`head_pools`). **The rule for other clip lengths**, in one place (:func:`pool_time`): a block's time pool
is a plain max pool by its factor when that gives the block's target frame count, and an adaptive max pool to
that count otherwise. The first block's target is T' = ceil(N / label_samples) of the input, so any length
gives one output per label frame; the last block of branch C targets the width its Linear was built for
(T' of a training clip divided by the later factors: 10 for the paper), whatever the input length. A frequency
factor is reduced to 1 where F would drop below 1 (:func:`effective_pools`).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from deepasa.errors import DeepASAError
from deepasa.model.configs import DeepASAConfig
from deepasa.model.spatial import gcc_feature_width


class ObjectSplitter(nn.Module):
    """Conv2d(D → K·D, 3×3) → Mish → GroupNorm(1, K·D); channel group k is object k (docs/spec.md §3.3).

    (B, D, T, F) -> (B, K, D, T, F). K = J, or J + 1 with a trailing noise object (USS variant).
    """

    def __init__(self, dim: int, n_objects: int) -> None:
        super().__init__()
        self.dim, self.n_objects = dim, n_objects
        self.conv = nn.Conv2d(dim, dim * n_objects, 3, padding=1)
        self.norm = nn.GroupNorm(1, dim * n_objects, eps=1e-5)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, D, T, F) -> (B, K, D, T, F)."""
        b, _, t, f = z.shape
        y = self.norm(F.mish(self.conv(z)))  # (B, K*D, T, F)
        return y.reshape(b, self.n_objects, self.dim, t, f)  # (B, K, D, T, F)


class AudioDecoder(nn.Module):
    """Complex spectral mapping heads (docs/spec.md §3.4): Conv2d(D → 2K, 3×3) each, K output mics.

    ``direct`` and ``reverb`` (or a single ``image`` head when ``reverb_head=False``) act on each object;
    ``noise`` acts on the aggregator output Z (or on the noise object of the USS variant). Object j's output
    channels (mic k, re/im) belong to slot j (the released code's index scrambling is not reproduced).
    """

    def __init__(self, dim: int, out_mics: int, reverb_head: bool = True) -> None:
        super().__init__()
        self.out_mics, self.reverb_head = out_mics, reverb_head
        self.direct = nn.Conv2d(dim, 2 * out_mics, 3, padding=1)
        self.reverb = nn.Conv2d(dim, 2 * out_mics, 3, padding=1) if reverb_head else None
        self.noise = nn.Conv2d(dim, 2 * out_mics, 3, padding=1)

    def objects(self, obj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """obj (B, J, D, T, F) -> direct (B, J, 2K, T, F), reverb (B, J, 2K, T, F) or None (real channels)."""
        b, j, d, t, f = obj.shape
        flat = obj.reshape(b * j, d, t, f)  # (B*J, D, T, F)
        direct = self.direct(flat).reshape(b, j, 2 * self.out_mics, t, f)  # (B, J, 2K, T, F)
        reverb = None
        if self.reverb is not None:
            reverb = self.reverb(flat).reshape(b, j, 2 * self.out_mics, t, f)  # (B, J, 2K, T, F)
        return direct, reverb

    def noise_head(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, D, T, F) -> (B, 2K, T, F)."""
        return self.noise(z)


def pool_time(x: torch.Tensor, factor: int, t_out: int) -> torch.Tensor:
    """Max-pool the last axis by ``factor`` if that gives ``t_out`` frames, else adaptive max pool to t_out.

    x (N, C, H, T) -> (N, C, H, t_out). See the module docstring.
    """
    t = x.shape[-1]
    if factor > 1 and t // factor == t_out:
        return F.max_pool2d(x, (1, factor))
    if factor == 1 and t == t_out:
        return x
    return F.adaptive_max_pool2d(x, (x.shape[-2], t_out))


def effective_pools(size: int, pools: Sequence[tuple[int, int]]) -> tuple[tuple[tuple[int, int], ...], int]:
    """(F, T) pools with any frequency factor that would empty the axis reduced to 1; returns (pools, final F).

    >>> effective_pools(321, ((4, 5), (4, 4)))
    (((4, 5), (4, 4)), 20)
    """
    out = []
    for pf, pt in pools:
        pf = pf if size // pf >= 1 else 1
        out.append((pf, pt))
        size //= pf
    return tuple(out), size


def head_pools(freq_pools: Sequence[int], label_time_pool: int, later_time_pool: int = 1) -> tuple[tuple[int, int], ...]:
    """(F, T) pairs of a head from its frequency factors: the first block pools time to label frames.

    >>> head_pools((8, 8), 5)
    ((8, 5), (8, 1))
    >>> head_pools((4, 4), 5, later_time_pool=4)
    ((4, 5), (4, 4))
    """
    return tuple((pf, label_time_pool if i == 0 else later_time_pool) for i, pf in enumerate(freq_pools))


#: docs/spec.md §3.5 branch A, §3.5 branch C and §3.6 pools, (F, T) per block (the defaults of the heads).
PAPER_TIME_CNN_POOLS = ((2, 5), (2, 1), (2, 1), (2, 1), (2, 1), (2, 1), (1, 1))
PAPER_FREQ_CNN_POOLS = ((4, 5), (4, 4))
PAPER_DOA_POOLS = ((8, 5), (8, 1))


class ConvBlock(nn.Module):
    """CB(p): Conv2d(3×3) → GroupNorm(1) → Mish → MaxPool over (F, T) → Dropout (docs/spec.md §3.5).

    The frequency pool is a fixed factor; the time pool is :func:`pool_time` (factor, target frames) or none.
    (N, C_in, F, T) -> (N, C_out, F // pool_f, T_out).
    """

    def __init__(self, c_in: int, c_out: int, pool_f: int, pool_t: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm = nn.GroupNorm(1, c_out, eps=1e-5)
        self.pool_f, self.pool_t = pool_f, pool_t
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, t_out: int | None = None) -> torch.Tensor:
        """x (N, C_in, F, T) -> (N, C_out, F // pool_f, t_out or T)."""
        x = F.mish(self.norm(self.conv(x)))
        if self.pool_f > 1:  # max pooling is separable: pooling F then T equals the 2-D pool of the paper
            x = F.max_pool2d(x, (self.pool_f, 1))
        if t_out is not None:
            x = pool_time(x, self.pool_t, t_out)
        return self.drop(x)


def conv_stack(c_in: int, channels: int, pools: Sequence[tuple[int, int]], dropout: float) -> nn.ModuleList:
    """One :class:`ConvBlock` per (F, T) pool; the first maps c_in to ``channels``."""
    return nn.ModuleList(
        ConvBlock(c_in if i == 0 else channels, channels, pf, pt, dropout) for i, (pf, pt) in enumerate(pools)
    )


def _check_time_pools(name: str, pools: Sequence[tuple[int, int]]) -> None:
    """Branch A and DoANet pool time only in their first block (to label frames): their outputs are per frame."""
    if any(pt != 1 for _, pt in pools[1:]):
        raise ValueError(f"{name}: only the first block may pool time (to label frames), got pools {tuple(pools)}")


class AttentiveStatsPool(nn.Module):
    """Attentive statistics pooling of frame logits (docs/spec.md §3.5). (N, T', C) -> clip logits (N, C).

    α = softmax_t(w·tanh(W s_t)); μ = Σ α s; σ = sqrt(max(Σ α s² − μ², 1e-5)); out = Linear(2C → C)([μ, σ]).
    """

    def __init__(self, n_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.att = nn.Sequential(nn.Linear(n_classes, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.out = nn.Linear(2 * n_classes, n_classes)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """s (N, T', C) -> (N, C)."""
        alpha = torch.softmax(self.att(s), dim=1)  # (N, T', 1)
        mu = (alpha * s).sum(1)  # (N, C)
        sigma = torch.sqrt(((alpha * s * s).sum(1) - mu * mu).clamp_min(1e-5))  # (N, C)
        return self.out(torch.cat([mu, sigma], dim=-1))


@runtime_checkable
class PretrainedEncoder(Protocol):
    """Interface of the optional frozen encoder branch of :class:`ClassNet` (the paper's ATST-Frame branch).

    An implementation is an ``nn.Module`` with an ``out_dim`` attribute whose ``forward(obj, n_frames)`` maps
    object features ``obj`` (N, D, F, T) to frame embeddings (N, n_frames, out_dim). The paper's branch
    (docs/spec.md §3.5, "Branch B") cuts (D, 64-bin, 4-frame) patches, embeds them with Linear(64·4·D → 768),
    runs 12 ViT blocks of ATST-Frame and adaptive-average-pools the 250 tokens to T' frames. It is built by a factory
    named in the config as ``pretrained_encoder = "package.module:factory"`` and called as
    ``factory(cfg, **cfg.pretrained_encoder_kwargs)``; the factory loads its own weights from a local file
    (nothing is downloaded). :class:`ClassNet` freezes it (``requires_grad=False``, kept in eval mode) and
    learns only the Linear(out_dim → fuse) projection after it.
    """

    out_dim: int

    def forward(self, obj: torch.Tensor, n_frames: int) -> torch.Tensor:  # pragma: no cover - protocol
        """obj (N, D, F, T) -> (N, n_frames, out_dim)."""
        ...


def build_pretrained_encoder(cfg: DeepASAConfig) -> nn.Module | None:
    """Import and call the factory named by ``cfg.pretrained_encoder`` ("module:attr"); None when off."""
    spec = cfg.pretrained_encoder
    if not spec:
        return None
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise DeepASAError(f"cannot import pretrained encoder factory {spec!r}: {exc}") from None
    enc = factory(cfg, **cfg.pretrained_encoder_kwargs)
    if not isinstance(enc, nn.Module) or not isinstance(getattr(enc, "out_dim", None), int):
        raise DeepASAError(f"pretrained encoder {spec!r} must be an nn.Module with an int out_dim")
    return enc


class _FrozenBranch(nn.Module):
    """Holds a frozen encoder; ``train()`` never switches it out of eval mode."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "_FrozenBranch":
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, obj: torch.Tensor, n_frames: int) -> torch.Tensor:
        """obj (N, D, F, T) -> (N, n_frames, out_dim)."""
        return self.encoder(obj, n_frames)


#: State-dict names of ClassNet's pretrained branch before issue 16 (``encoder`` clashed with the Up-Conv
#: ``DeepASA.encoder``): old name -> new name, relative to a ClassNet.
LEGACY_CLASSNET_KEYS = (("encoder.", "pretrained."), ("enc_proj.", "pretrained_proj."))


def upgrade_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of a DeepASA state dict with pre-issue-16 ClassNet names renamed (``classnet.encoder.`` →
    ``classnet.pretrained.``, ``classnet.enc_proj.`` → ``classnet.pretrained_proj.``); other keys unchanged.

    >>> sorted(upgrade_state_dict({"seld.classnet.enc_proj.bias": 0, "encoder.conv.bias": 1}))
    ['encoder.conv.bias', 'seld.classnet.pretrained_proj.bias']
    """
    out = {}
    for key, value in state.items():
        for old, new in LEGACY_CLASSNET_KEYS:
            if f"classnet.{old}" in key:
                key = key.replace(f"classnet.{old}", f"classnet.{new}", 1)
                break
        out[key] = value
    return out


class ClassNet(nn.Module):
    """SED / class decoder (docs/spec.md §3.5): time CNN (+ optional frozen encoder) → BiGRU → frame and clip outputs.

    Keyword arguments (defaults: the paper's Net 1 without the ATST branch):
        in_channels: D of the object features; channels: of the CNN blocks; n_classes: C;
        n_freqs: F of the object features; n_label_frames: T' of a training clip (fixes branch C's Linear);
        time_cnn_pools, freq_cnn_pools: (F, T) pools of branches A and C (module docstring);
        fuse_dim, gru_hidden, gru_layers, fc_dim, asp_hidden, dropout: widths of the layers after the CNNs;
        pretrained: an optional frozen encoder branch (:class:`PretrainedEncoder`; the ATST of docs/spec.md §3.5,
            "branch B").
        embed_dim: width of an optional clip embedding of each object's own signal (``cls_embedding``,
            :mod:`deepasa.model.sfx_embedding`); 0 = none. It adds LayerNorm + Linear(embed_dim → C) to the clip
            logits, the Linear at zero at initialisation (the head starts as without it).

    Input object features (N, D, T, F), N = B·J, and with ``embed_dim`` the objects' embeddings (N, embed_dim).
    Returns
        cls (N, C) clip logits = attentive-statistics-pooled frame logits + frequency-branch logits;
        sed (N, T', C) frame class posteriors (softmax over classes; used only by the loss);
        onoff (N, T') activity logits;
        strong (N, T', C) the frame logits the posteriors come from (summed across CoI stages with
        ``coi_sed_sum: logits``).
    """

    def __init__(self, *, in_channels: int = 64, channels: int = 64, n_classes: int = 13, n_freqs: int = 321,
                 n_label_frames: int = 40,
                 time_cnn_pools: Sequence[tuple[int, int]] = PAPER_TIME_CNN_POOLS,
                 freq_cnn_pools: Sequence[tuple[int, int]] = PAPER_FREQ_CNN_POOLS,
                 fuse_dim: int = 320, gru_hidden: int = 128, gru_layers: int = 2, fc_dim: int = 128,
                 asp_hidden: int = 64, dropout: float = 0.0, pretrained: nn.Module | None = None,
                 embed_dim: int = 0) -> None:
        super().__init__()
        _check_time_pools("ClassNet branch A", time_cnn_pools)
        hc, h = channels, gru_hidden
        # Branch A, time CNN: (N, D, 321, 201) -> (N, hc, 5, 40) for the paper
        pools_a, f_a = effective_pools(n_freqs, time_cnn_pools)
        self.time_cnn = conv_stack(in_channels, hc, pools_a, dropout)
        # Branch B: optional frozen encoder; the paper fuses Linear(2·fuse → fuse)(concat[x1, x2])
        self.pretrained = _FrozenBranch(pretrained) if pretrained is not None else None
        self.pretrained_proj = nn.Linear(pretrained.out_dim, fuse_dim) if pretrained is not None else None
        self.fuse = nn.Linear(hc * f_a + (fuse_dim if pretrained is not None else 0), fuse_dim)
        self.gru = nn.GRU(fuse_dim, h, gru_layers, batch_first=True, bidirectional=True)
        self.strong = nn.Sequential(nn.Linear(2 * h, fc_dim), nn.Dropout(dropout), nn.Linear(fc_dim, n_classes))
        self.onoff = nn.Sequential(nn.Linear(2 * h, fc_dim), nn.Linear(fc_dim, 1))
        self.asp = AttentiveStatsPool(n_classes, asp_hidden)
        # Branch C, frequency CNN: (N, D, 321, 201) -> (N, hc, 20, 10) for the paper, then a GRU over frequency
        pools_c, self.freq_bins = effective_pools(n_freqs, freq_cnn_pools)
        self.freq_cnn = conv_stack(in_channels, hc, pools_c, dropout)
        # T of branch C's output for a training clip (40 // 4 = 10): the Linear below is built for it, so the
        # last block pools every input length to it (module docstring)
        self.freq_frames = n_label_frames
        for _, pt in pools_c[1:]:
            self.freq_frames //= pt
        self.freq_proj = nn.Linear(hc * self.freq_frames, fuse_dim)
        self.freq_gru = nn.GRU(fuse_dim, h, gru_layers, batch_first=True, bidirectional=True)
        self.freq_out = nn.Sequential(nn.Linear(2 * h, fc_dim), nn.Linear(fc_dim, n_classes))
        # optional clip embedding of the object's own signal (cls_embedding): a zero Linear at the start
        self.embed_out = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, n_classes)) if embed_dim else None
        if self.embed_out is not None:
            nn.init.zeros_(self.embed_out[1].weight)
            nn.init.zeros_(self.embed_out[1].bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before issue 16 name the pretrained branch ``encoder`` / ``enc_proj``
        for old, new in LEGACY_CLASSNET_KEYS:
            for key in [k for k in state_dict if k.startswith(prefix + old)]:
                state_dict[prefix + new + key[len(prefix + old):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, obj: torch.Tensor, n_label: int, embedding: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """obj (N, D, T, F), n_label = T', embedding (N, E) or None -> cls (N, C), sed (N, T', C), onoff (N, T'),
        frame logits (N, T', C)."""
        if (embedding is None) != (self.embed_out is None):
            raise DeepASAError("ClassNet was built " + ("with" if self.embed_out is not None else "without")
                               + " a clip embedding input (cls_embedding) and called "
                               + ("without" if embedding is None else "with") + " one")
        x = obj.transpose(2, 3)  # (N, D, F, T)
        n = x.shape[0]
        # Branch A: the first block pools time to the T' label frames, the others frequency only
        a = x
        for i, blk in enumerate(self.time_cnn):
            a = blk(a, n_label if i == 0 else None)  # (N, hc, F_i, T')
        a = a.permute(0, 3, 1, 2).reshape(n, n_label, -1)  # (N, T', hc*F_a)
        if self.pretrained is not None:
            e = self.pretrained_proj(self.pretrained(x, n_label))  # (N, T', fuse)
            a = torch.cat([a, e], dim=-1)  # (N, T', hc*F_a + fuse)
        g, _ = self.gru(self.fuse(a))  # (N, T', 2h)
        strong = self.strong(g)  # (N, T', C)
        sed = torch.softmax(strong, dim=-1)  # (N, T', C)
        onoff = self.onoff(g).squeeze(-1)  # (N, T')
        weak = self.asp(strong)  # (N, C)
        # Branch C: block targets T', then T' // p_t, ..., the last one the Linear's width
        c, frames = x, n_label
        for i, blk in enumerate(self.freq_cnn):
            frames = frames if i == 0 else frames // blk.pool_t
            c = blk(c, self.freq_frames if i == len(self.freq_cnn) - 1 else frames)  # (N, hc, F_i, T_i)
        c = c.permute(0, 2, 1, 3).reshape(n, self.freq_bins, -1)  # (N, F_c, hc*T_c)
        c, _ = self.freq_gru(self.freq_proj(c))  # (N, F_c, 2h)
        x3 = self.freq_out(c.mean(dim=1))  # (N, C)
        cls = weak + x3  # (N, C)
        if self.embed_out is not None:
            cls = cls + self.embed_out(embedding.to(cls.dtype))  # (N, C)
        return cls, sed, onoff, strong


class DoANet(nn.Module):
    """DoA decoder (docs/spec.md §3.6): CB(8, 5) → CB(8, 1) → BiGRU → Linear → Linear(→3) → tanh.

    Keyword arguments (defaults: the paper): in_channels (D), channels, n_freqs (F), pools ((F, T) per block),
    gru_hidden, gru_layers, fc_dim, dropout; spatial_features S > 0 joins per-object spatial features
    (deepasa.model.spatial), projected by Linear(S → spatial_dim) → Mish (after a LayerNorm with
    ``spatial_norm``), at the GRU input.

    obj (N, D, T, F), n_label = T' -> doa (N, T', 3), Cartesian, ACCDOA-like (norm ≈ activity).
    """

    def __init__(self, *, in_channels: int = 64, channels: int = 64, n_freqs: int = 321,
                 pools: Sequence[tuple[int, int]] = PAPER_DOA_POOLS, gru_hidden: int = 128, gru_layers: int = 2,
                 fc_dim: int = 128, dropout: float = 0.0, spatial_features: int = 0, spatial_dim: int = 320,
                 spatial_norm: bool = False) -> None:
        super().__init__()
        _check_time_pools("DoANet", pools)
        h = gru_hidden
        pools, f_d = effective_pools(n_freqs, pools)  # (N, D, 321, 201) -> (N, hc, 5, 40) for the paper
        self.cnn = conv_stack(in_channels, channels, pools, dropout)
        self.n_spatial = spatial_features
        self.spatial = None
        if spatial_features:  # GCC values are weighted means of cosines (std ~0.08): optionally normalised first
            norm = [nn.LayerNorm(spatial_features)] if spatial_norm else []
            self.spatial = nn.Sequential(*norm, nn.Linear(spatial_features, spatial_dim), nn.Mish())
        g_in = channels * f_d + (spatial_dim if spatial_features else 0)
        self.gru = nn.GRU(g_in, h, gru_layers, batch_first=True, bidirectional=True)
        self.out = nn.Sequential(nn.Linear(2 * h, fc_dim), nn.Linear(fc_dim, 3), nn.Tanh())

    def forward(self, obj: torch.Tensor, n_label: int, spatial: torch.Tensor | None = None) -> torch.Tensor:
        """obj (N, D, T, F), spatial (N, T', S) or None -> (N, T', 3)."""
        x = obj.transpose(2, 3)  # (N, D, F, T)
        n = x.shape[0]
        for i, blk in enumerate(self.cnn):
            x = blk(x, n_label if i == 0 else None)  # (N, hc, F_i, T')
        x = x.permute(0, 3, 1, 2).reshape(n, n_label, -1)  # (N, T', hc*F_d)
        if self.spatial is not None:
            if spatial is None:
                raise ValueError("this DoANet reads spatial features (doa_spatial is set); none were given")
            x = torch.cat([x, self.spatial(spatial.to(x.dtype))], dim=-1)  # (N, T', hc*F_d + fuse)
        g, _ = self.gru(x)  # (N, T', 2h)
        return self.out(g)


def spatial_features(cfg: DeepASAConfig) -> int:
    """Width S of the per-object spatial features DoANet reads: P·L + 1 for GCC-PHAT, 0 when off."""
    return gcc_feature_width(cfg.n_mics, cfg.doa_gcc_lags) if cfg.doa_spatial else 0


class SELDHeads(nn.Module):
    """ClassNet + DoANet applied to every object slot. obj (B, J, D, T, F) -> dict of per-slot outputs.

    Returns ``{"cls_logits": (B, J, C), "sed": (B, J, T', C), "onoff": (B, J, T'), "doa": (B, J, T', 3),
    "sed_logits": (B, J, T', C)}``; ``sed_logits`` are the frame logits before the softmax (a CoI step with
    ``coi_sed_sum: logits`` sums them; :class:`~deepasa.model.DeepASAOutput` does not carry them).
    """

    #: feed the decoders a channels-last copy of the object features (speed only; the values are the same)
    channels_last: bool = True

    def __init__(self, *, classnet: ClassNet, doanet: DoANet) -> None:
        super().__init__()
        self.classnet = classnet
        self.doanet = doanet

    @classmethod
    def from_config(cls, cfg: DeepASAConfig, pretrained: nn.Module | None = None) -> "SELDHeads":
        """The decoders of a model config: the one place where config fields become head hyper-parameters."""
        width = dict(in_channels=cfg.emb_dim, channels=cfg.head_channels, n_freqs=cfg.n_freqs,
                     gru_hidden=cfg.head_gru_hidden, gru_layers=cfg.head_gru_layers, fc_dim=cfg.head_fc_dim,
                     dropout=cfg.head_dropout)
        classnet = ClassNet(
            **width, n_classes=cfg.n_classes, n_label_frames=cfg.n_label_frames,
            time_cnn_pools=head_pools(cfg.sed_freq_pools, cfg.label_time_pool),
            freq_cnn_pools=head_pools(cfg.clsf_freq_pools, cfg.label_time_pool, cfg.clsf_time_pool),
            fuse_dim=cfg.head_fuse_dim, asp_hidden=cfg.asp_hidden, pretrained=pretrained,
            embed_dim=512 if cfg.cls_embedding == "aisfx" else 0,
        )
        doanet = DoANet(
            **width, pools=head_pools(cfg.doa_freq_pools, cfg.label_time_pool),
            spatial_features=spatial_features(cfg), spatial_dim=cfg.head_fuse_dim, spatial_norm=cfg.doa_spatial_norm,
        )
        return cls(classnet=classnet, doanet=doanet)

    def forward(self, obj: torch.Tensor, n_label: int, spatial: torch.Tensor | None = None,
                embedding: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """obj (B, J, D, T, F), spatial (B, J, T', S) or None, embedding (B, J, E) or None -> dict (class docstring)."""
        b, j, d, t, f = obj.shape
        flat = obj.reshape(b * j, d, t, f)  # (B*J, D, T, F)
        if self.channels_last:
            # the decoders convolve flat.transpose(2, 3) (N, D, F, T): stored channels-last (memory N, F, T, D),
            # their convolutions run ~1.4x faster on CPU (eager; ~1.2x compiled), same values
            flat = flat.transpose(2, 3).contiguous(memory_format=torch.channels_last).transpose(2, 3)  # (B*J, D, T, F)
        flat_emb = embedding.reshape(b * j, -1) if embedding is not None else None  # (B*J, E)
        cls, sed, onoff, strong = self.classnet(flat, n_label, flat_emb)
        flat_sp = spatial.reshape(b * j, n_label, -1) if spatial is not None else None  # (B*J, T', S)
        doa = self.doanet(flat, n_label, flat_sp)
        return {
            "cls_logits": cls.reshape(b, j, -1),  # (B, J, C)
            "sed": sed.reshape(b, j, n_label, -1),  # (B, J, T', C)
            "onoff": onoff.reshape(b, j, n_label),  # (B, J, T')
            "doa": doa.reshape(b, j, n_label, 3),  # (B, J, T', 3)
            "sed_logits": strong.reshape(b, j, n_label, -1),  # (B, J, T', C)
        }
