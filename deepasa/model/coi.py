"""Chain-of-inference (CoI) with temporal coherence matching (TCM), docs/spec.md §3.7.

One CoI step takes the aggregator output Z and the previous stage's SELD outputs, and returns new object
features and refined SELD outputs:

1. hard SED map E_sed (B, T', C·J) from the previous stage (active = sigmoid(onoff) > 0.5 AND ‖doa‖ > 0.5,
   times the one-hot argmax class), index c·J + j; DoA map E_doa (B, T', 3·J), index xyz·J + j;
2. TCM: two cross-attentions whose tokens are the *rows* of those maps, each token being its T'-frame time
   course (SED rows query DoA rows, and DoA rows query SED rows), gated by the maps and projected to D;
3. ConvTranspose1d upsampling from T' label frames to T STFT frames (kernel and stride derived from the
   config: stride = T // T', kernel = T − (T' − 1)·stride; 6 / 5 for the paper);
4. FiLM on Z: [β, γ] = Linear(D → 2D)(clue), Z' = β ⊙ Z + γ (broadcast over frequency);
5. object splitter 2 on Z', sub-decoders 2, outputs added residually to the previous stage's.

Two options fix what the released step does to a model trained from it (both off in ``paper-coi``):

* ``coi_sed_sum: logits``: the released step adds the stages' SED *posteriors* (softmax₁ + softmax₂, range
  0..2) and the loss compares the sum with a one-hot target. Once Net 1 is right, that target pushes Net 2's
  true-class frame posterior towards 0 (the sum must not exceed 1), and Net 2's frame logits also feed its
  clip logits (attentive pooling), which are summed with Net 1's. With ``logits`` the stages' frame *logits*
  are summed and the softmax taken once, like the clip logits: the output is a posterior again.
* ``coi_init: identity`` (needs ``logits``): the step starts as the identity on its input: FiLM at β = 1,
  γ = 0; splitter 2 a copy of splitter 1 (:meth:`ChainOfInference.copy_splitter`); the last layer of each of
  Net 2's SELD outputs at zero (frame and on/off logits, both clip-logit branches, DoA), so Net 2's outputs
  equal Net 1's and its audio equals Net 1's at the first step (tests/test_coi.py checks both).

TCM combination (``tcm_combine``):

* ``"product"`` (default): attention output ⊙ query map inside each branch, branch ⊙ branch across — what the
  released code computes and therefore what produced every reported CoI number (``logs/version_ASA_CoI``).
* ``"residual_sum"``: attention output + query map inside each branch and a sum across branches — what the
  paper's CoI figure draws.

We default to ``"product"`` because it is the only rule with published results behind it; the figure's rule
is one switch away for ablations. Note that with "product" the SED attention output is multiplied by the
hard map, so on frames where the previous stage detected nothing the SED branch reduces to the bias of its
Linear (the clue there is bias ⊙ DoA branch) and the SED attention receives no gradient from those frames.

The TCM attention width is T' of a *training clip* (40 for the paper), so a CoI model runs on clips of the
configured length only (:class:`~deepasa.model.DeepASA` raises a clear error otherwise). The TCM's
Linear(C·J → D) mixes slots, so a CoI step is not equivariant to permutations of the previous stage's slots;
each slot's heads still read only their own object (tests check both facts).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from deepasa.model.decision import frame_activity
from deepasa.model.heads import ObjectSplitter, SELDHeads


class CrossAttention(nn.Module):
    """Multi-head cross-attention over time-course tokens (docs/spec.md §3.7, ``CrossAttn_40``).

    q/k/v: Linear(T' → H·T', no bias); head dim T', scale 1/√T'; attention dropout in training only;
    output Linear(H·T' → T') + Dropout. query (B, Lq, T'), context (B, Lk, T') -> (B, Lq, T').
    """

    def __init__(self, dim: int, n_heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.n_heads, self.dim, self.p = n_heads, dim, dropout
        self.q = nn.Linear(dim, n_heads * dim, bias=False)
        self.k = nn.Linear(dim, n_heads * dim, bias=False)
        self.v = nn.Linear(dim, n_heads * dim, bias=False)
        self.out = nn.Linear(n_heads * dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """query (B, Lq, T'), context (B, Lk, T') -> (B, Lq, T')."""
        b, lq, _ = query.shape
        lk = context.shape[1]
        q = self.q(query).reshape(b, lq, self.n_heads, self.dim).transpose(1, 2)  # (B, H, Lq, T')
        k = self.k(context).reshape(b, lk, self.n_heads, self.dim).transpose(1, 2)  # (B, H, Lk, T')
        v = self.v(context).reshape(b, lk, self.n_heads, self.dim).transpose(1, 2)  # (B, H, Lk, T')
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.p if self.training else 0.0)  # (B, H, Lq, T')
        y = y.transpose(1, 2).reshape(b, lq, self.n_heads * self.dim)  # (B, Lq, H*T')
        return self.drop(self.out(y))


def hard_sed_map(cls_logits: torch.Tensor, onoff: torch.Tensor, doa: torch.Tensor) -> torch.Tensor:
    """Hard SED estimate (non-differentiable). cls (B, J, C), onoff (B, J, T'), doa (B, J, T', 3) -> (B, T', C·J).

    E[b, t, c·J + j] = [sigmoid(onoff) > 0.5 and ‖doa‖ > 0.5][b, j, t] · onehot(argmax_c cls[b, j])[c].
    """
    b, j, c = cls_logits.shape
    act = frame_activity(onoff, doa).to(doa.dtype)  # (B, J, T'): the rule at docs/spec.md §1's 0.5 / 0.5
    onehot = F.one_hot(cls_logits.argmax(-1), c).to(doa.dtype)  # (B, J, C)
    e = act.unsqueeze(-1) * onehot.unsqueeze(2)  # (B, J, T', C)
    return e.permute(0, 2, 3, 1).reshape(b, act.shape[-1], c * j)  # (B, T', C*J), index c*J + j


def doa_map(doa: torch.Tensor) -> torch.Tensor:
    """DoA map (differentiable). doa (B, J, T', 3) -> (B, T', 3·J), index xyz·J + j."""
    b, j, t, _ = doa.shape
    return doa.permute(0, 2, 3, 1).reshape(b, t, 3 * j)  # (B, T', 3*J)


class TCM(nn.Module):
    """Temporal coherence matching ("Triple_Attention"). E_sed (B, T', C·J), E_doa (B, T', 3·J) -> clue (B, D, T').

    combine "product": clue = Lin_sed(A_sedᵀ ⊙ E_sed) ⊙ Lin_doa(A_doaᵀ ⊙ E_doa);
    combine "residual_sum": clue = Lin_sed(A_sedᵀ + E_sed) + Lin_doa(A_doaᵀ + E_doa).
    """

    def __init__(self, n_label: int, n_sed: int, n_doa: int, dim: int, n_heads: int = 4, dropout: float = 0.1,
                 combine: str = "product") -> None:
        super().__init__()
        if combine not in ("product", "residual_sum"):
            raise ValueError(f"combine must be 'product' or 'residual_sum', got {combine!r}")
        self.combine = combine
        self.attn_sed = CrossAttention(n_label, n_heads, dropout)
        self.attn_doa = CrossAttention(n_label, n_heads, dropout)
        self.proj_sed = nn.Linear(n_sed, dim)
        self.proj_doa = nn.Linear(n_doa, dim)

    def forward(self, e_sed: torch.Tensor, e_doa: torch.Tensor) -> torch.Tensor:
        """e_sed (B, T', C·J), e_doa (B, T', 3·J) -> (B, D, T')."""
        rows_sed, rows_doa = e_sed.transpose(1, 2), e_doa.transpose(1, 2)  # (B, C*J, T'), (B, 3*J, T')
        a_sed = self.attn_sed(rows_sed, rows_doa).transpose(1, 2)  # (B, T', C*J)
        a_doa = self.attn_doa(rows_doa, rows_sed).transpose(1, 2)  # (B, T', 3*J)
        if self.combine == "product":
            clue = self.proj_sed(a_sed * e_sed) * self.proj_doa(a_doa * e_doa)  # (B, T', D)
        else:
            clue = self.proj_sed(a_sed + e_sed) + self.proj_doa(a_doa + e_doa)  # (B, T', D)
        return clue.transpose(1, 2)  # (B, D, T')


def upsample_geometry(n_frames: int, n_label: int) -> tuple[int, int]:
    """(kernel, stride) of a ConvTranspose1d mapping n_label frames to exactly n_frames (6, 5 for 40 → 201)."""
    stride = max(1, n_frames // n_label)
    kernel = n_frames - (n_label - 1) * stride
    return kernel, stride


class ChainOfInference(nn.Module):
    """One CoI step (Net 2 of the paper): TCM → TrConv → FiLM(Z) → object splitter 2 → sub-decoders 2 (+ residual).

    Keyword arguments (defaults: ``paper-coi``): dim (D), n_slots (J), n_classes (C), n_frames (T) and
    n_label_frames (T') of a training clip, tcm_heads, dropout (TCM attention), tcm_combine (module docstring),
    sed_sum (``probs`` or ``logits``, module docstring), identity_init (``coi_init: identity``), and make_heads:
    a function building this step's sub-decoders 2, a :class:`~deepasa.model.heads.SELDHeads` (called here,
    after the TCM, upsampling, FiLM and splitter are built, so a seeded model has the same weights as before).

    forward(z (B, D, T, F), prev: dict of (B, J, ...) SELD outputs) -> (objects (B, J, D, T, F), outputs dict)
    where outputs = prev + this step's head outputs, slot-wise (docs/spec.md §3.7 step 7).
    """

    def __init__(self, *, make_heads: Callable[[], SELDHeads], dim: int = 64, n_slots: int = 5,
                 n_classes: int = 13, n_frames: int = 201, n_label_frames: int = 40, tcm_heads: int = 4,
                 dropout: float = 0.1, tcm_combine: str = "product", sed_sum: str = "probs",
                 identity_init: bool = False) -> None:
        super().__init__()
        self.n_label, self.n_frames = n_label_frames, n_frames
        self.tcm = TCM(n_label_frames, n_classes * n_slots, 3 * n_slots, dim, tcm_heads, dropout, tcm_combine)
        kernel, stride = upsample_geometry(n_frames, n_label_frames)
        self.upsample = nn.ConvTranspose1d(dim, dim, kernel, stride)
        self.film = nn.Linear(dim, 2 * dim)
        self.splitter = ObjectSplitter(dim, n_slots)
        self.heads = make_heads()
        self.sed_sum = sed_sum
        if identity_init:
            self.init_identity()

    @torch.no_grad()
    def init_identity(self) -> None:
        """FiLM at β = 1, γ = 0 and the last layer of every Net-2 SELD output at zero (module docstring)."""
        d = self.film.out_features // 2
        self.film.weight.zero_()
        self.film.bias.copy_(torch.cat([torch.ones(d), torch.zeros(d)]))  # [β, γ]: the scale comes first
        cn, dn = self.heads.classnet, self.heads.doanet
        lasts = [cn.strong[-1], cn.onoff[-1], cn.asp.out, cn.freq_out[-1], dn.out[-2]]
        if cn.embed_out is not None:
            lasts.append(cn.embed_out[-1])
        for last in lasts:
            last.weight.zero_()
            last.bias.zero_()

    @torch.no_grad()
    def copy_splitter(self, splitter: ObjectSplitter) -> None:
        """Start object splitter 2 as a copy of Net 1's (``coi_init: identity``); same shapes required."""
        self.splitter.load_state_dict(splitter.state_dict())

    # The step is two halves so that DeepASA.forward can put the audio heads between them: the extensions of the
    # sub-decoders (doa_spatial, cls_embedding) read the audio heads of this step's own objects, and the model
    # runs those heads once per set of objects in its own body and passes the outputs along (also to the final
    # audio decode). ``forward`` joins the halves for a step used on its own; its callables are then pure
    # functions of the objects.
    def objects(self, z: torch.Tensor, prev: dict[str, torch.Tensor]) -> torch.Tensor:
        """Steps 1–6 of docs/spec.md §3.7: TCM on the previous stage's SELD outputs → TrConv → FiLM(Z) → splitter 2.

        z (B, D, T, F), prev {cls_logits (B, J, C), onoff (B, J, T'), doa (B, J, T', 3), ...} -> O'_j (B, J, D, T, F).
        """
        e_sed = hard_sed_map(prev["cls_logits"], prev["onoff"], prev["doa"])  # (B, T', C*J)
        e_doa = doa_map(prev["doa"])  # (B, T', 3*J)
        clue = self.upsample(self.tcm(e_sed, e_doa))  # (B, D, T') -> (B, D, T)
        beta, gamma = self.film(clue.transpose(1, 2)).chunk(2, dim=-1)  # (B, T, 2D) -> (B, T, D) each
        z2 = beta.transpose(1, 2).unsqueeze(-1) * z + gamma.transpose(1, 2).unsqueeze(-1)  # (B, D, T, F)
        return self.splitter(z2)  # (B, J, D, T, F)

    def decode(self, obj: torch.Tensor, prev: dict[str, torch.Tensor], spatial: torch.Tensor | None = None,
               embedding: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Step 7 of docs/spec.md §3.7: sub-decoders 2 on this step's objects, added slot-wise to ``prev``.

        obj (B, J, D, T, F), prev {cls_logits, sed, onoff, doa, sed_logits} (B, J, ...), spatial (B, J, T', S) the
        DoA decoder's spatial features of these objects (models with ``doa_spatial``; None otherwise), embedding
        (B, J, E) the class output's embedding of their signals (models with ``cls_embedding``)
        -> {cls_logits, sed, onoff, doa, sed_logits} (B, J, ...).
        """
        new = self.heads(obj, prev["onoff"].shape[-1], spatial, embedding)
        out = {k: new[k] + prev[k] for k in new}  # slot-wise residual sums, (B, J, ...) each
        if self.sed_sum == "logits":
            out["sed"] = torch.softmax(out["sed_logits"], dim=-1)  # (B, J, T', C): softmax of the summed logits
        return out

    def forward(self, z: torch.Tensor, prev: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """z (B, D, T, F), prev {cls_logits, sed, onoff, doa} -> (objects (B, J, D, T, F), refined dict):
        :meth:`objects` then :meth:`decode`, for a step whose heads read no extension input. ``DeepASA.forward``
        calls the two halves itself, running the step's audio heads between them when the GCC-PHAT features or
        the class embedding need them."""
        obj = self.objects(z, prev)  # (B, J, D, T, F)
        return obj, self.decode(obj, prev)
