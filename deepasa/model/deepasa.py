"""The DeepASA network (Lee, Kwon & Choi, NeurIPS 2025), docs/spec.md §1–§4.

x (B, M, N) → Gabor STFT → frequency norm → Up-Conv → N_b DeFT-Mamba blocks → Z (B, D, T, F)
→ object splitter → per object: audio decoder (direct, reverb), ClassNet (class, SED, on/off), DoANet (DoA);
noise head on Z; optional chain-of-inference steps refine the SELD outputs and re-split Z (coi.py).

Deviations from the authors' released code (donghoney0416/DeepASA), each deliberate:

1. **Object j → audio slot j.** The released output reshape scrambles slots (source s at mic m comes from
   object ⌊(10m + 2s + r)/8⌋, docs/spec.md §3.4 [BUG]); here object j's 2M head channels are (mic, re/im) of
   slot j, so all task heads of slot j read the same object (the paper's object-oriented premise,
   docs/spec.md §4).
2. **Attention dropout only in training.** FlashAttention received ``dropout_p=0.1`` unconditionally, so the
   released model is stochastic at eval; we pass 0 when ``not self.training`` (aggregator and TCM).
3. **Direct and reverb heads are returned separately** (``direct``, ``reverb`` and ``image = direct + reverb``).
   The released architecture returns only the sum, so its trainer never supervises dereverberation
   (docs/spec.md §5.1 [BUG]); supervising them separately is done by ``deepasa.losses``, the heads make it possible.
4. **No hard-coded sizes.** The decoders of the release assume T = 201, F = 321, T' = 40; here all sizes come
   from :class:`DeepASAConfig`, the heads' time pools fall back to adaptive max pooling when a fixed factor
   does not give T' label frames (heads.py), and the CoI upsampling geometry is derived from T and T'.
5. **Pure-PyTorch Mamba-2 and attention.** ``mamba_ssm``'s Triton kernels and FlashAttention-2 are replaced by
   a chunked SSD scan (tested against the step-by-step recurrence) and ``scaled_dot_product_attention`` in
   float32, so the model runs on CPU. The SSD chunk is 32 instead of 256 (same function, fewer MACs).
6. **Chain-of-inference is optional and can iterate.** The released class always builds one CoI step; here
   ``coi_steps`` = 0 gives the no-CoI model of ``logs/version_ASA`` (audio heads on splitter-1 objects) and
   k > 1 chains k steps, each with its own weights.
7. **TCM combination selectable** (``tcm_combine``): "product" as in the code (default, it produced the
   published numbers) or "residual_sum" as in the paper's figure.
8. **The pretrained ATST branch is an optional plug-in, off by default.** No ATST weights can be fetched and
   the released 16384 → 768 patch embedding cannot load public ATST-Frame weights anyway (docs/spec.md §3.5).
   Without it ClassNet's fusion layer is Linear(F_a·D → 320) instead of Linear(640 → 320) and there is no
   Linear(768 → 320); see :class:`~deepasa.model.heads.PretrainedEncoder` for plugging an encoder in.
9. **Gabor window init and freezing as the released config** (μ ≈ 0, σ ≈ n_fft/6, frozen), with a
   ``trainable_window`` flag for the paper's learnable window.
10. **Fused parameter storage**: the two GCB convs are one D → 2D conv and q/k/v one Linear; parameter counts
    and the function are unchanged.
11. **Optional spatial input of the DoA decoders** (``doa_spatial``, off in ``paper``/``paper-coi``): per-object
    GCC-PHAT over inter-capsule lags, weighted by the object's estimated direct-path mask
    (:mod:`deepasa.model.spatial`), joined at DoANet's GRU input. The trunk is frequency-shift equivariant, so
    the paper's DoANet must learn τ = Δφ / 2πf from F_d coarse bands; on CPU budgets it never did (the
    direction issue; numbers in docs/notebook/direction-learning.md).
12. (Removed in issue 38: an optional frequency-position embedding that no recipe or model used.)
13. **Chain-of-inference fixes as options** (off in ``paper-coi``): ``coi_sed_sum: logits`` sums the stages'
    SED frame logits instead of their posteriors (the released sum of two softmaxes, range 0..2, is trained
    against a one-hot target, which pushes Net 2's true-class posterior towards 0), and ``coi_init: identity``
    starts each CoI step as the identity on Net 1's outputs (FiLM β = 1, γ = 0, splitter 2 = splitter 1, the last
    layer of Net 2's SELD outputs at zero), the start the CoI stage of docs/spec.md §6 needs.
    See :mod:`deepasa.model.coi`.
14. **Optional pretrained clip embedding for the class output** (``cls_embedding: aisfx``, off in
    ``paper``/``paper-coi``): the paper's pretrained ClassNet branch (ATST-Frame) has no usable weights here
    (deviation 8); instead the frozen aisfx sound-effect CNN embeds each object's *estimated* reference-channel
    image, and LayerNorm + Linear(512 → C), zero at initialisation, adds to that object's clip logits
    (:mod:`deepasa.model.sfx_embedding`). No gradient flows through it. Measured motivation: on clean
    sound-bank crops the embedding gives 0.64 balanced accuracy with one linear layer against 0.31 for the
    network from scratch (experiments/2026-12-01-class-probe/class_probe.py).
15. **Optional complex ratio masks instead of spectral mapping** (``audio_output: mask``, off in
    ``paper``/``paper-coi``): each audio head's channels (mic k, re/im) are a complex mask that multiplies the
    mixture of the same mic (the reference mic for reference-channel output) in the Hann STFT that the output
    iSTFT inverts, so a unit mask returns the mixture exactly; the paper maps to the spectra directly
    (docs/spec.md §3.4). Motivation: after 2,568 scene passes the shipped mapping model's image was still below
    the mixture (SI-SDRi −3.9 dB on 1-static scenes); a mask starts from the mixture's own phase and detail.
    Measured in docs/notebook/direction-learning.md ("Direction learning speed", variant ``gcc_mixture+ln+mask``).
16. **Optional SRP-PHAT refinement of the DoA at inference** (``doa_refine: srp``, off in ``paper``/``paper-coi``):
    each object's DoA is replaced, frame by frame, by the direction of largest steered response power of the
    mixture's phase transform weighted by that object's direct-path ratio mask, searched within
    ``doa_refine_cone_deg`` of the network's own DoA (:class:`~deepasa.model.spatial.SRPRefine`). The norm stays
    the network's, so detection does not change; in training the losses read the network's DoA. The paper has
    no such step. Motivation: after thousands of scene passes the learned DoA still erred by more than 10° on one
    static source, while the object-weighted mixture already holds the delays; the measured gain is in
    docs/notebook/direction-learning.md ("Direction learning speed", the ``network's own DoA`` column).
17. **The activity decision rule travels with the model** (``decision_rule``, a
    :class:`~deepasa.model.decision.DecisionRule` apart from the config: it changes no weight; its defaults are
    docs/spec.md §1; stored in a model file's ``meta["decision_rule"]``). Its ‖doa‖ threshold ``doa_norm``: a slot
    is active in a frame where sigmoid(onoff) > 0.5 and ‖doa‖ > ``doa_norm``; 0 keeps
    the on/off condition alone, the rule of the STARSS23 evaluation code. The model carries it, so ``analyze``,
    ``evaluate``, validation and the benchmarks decide with the model's own rule. Motivation: the shipped
    run's on/off output finds the sources long before its DoA norm reaches 0.5 (on 100 unseen 1-static scenes:
    detection 1.00 on/off alone, 0.47 with the norm, no false alarm either way; docs/notebook/direction-learning.md).
18. **The on/off half of the rule has its threshold too** (``decision_rule.onoff``, 0.5 = docs/spec.md §1 by
    default): active where sigmoid(onoff) > ``onoff``. A model trained with a positive-class weight
    w in the on/off BCE (``loss_weights.onoff_pos_weight``) outputs p = w q / (w q + 1 − q) for a frame whose
    activity posterior is q, so q = 0.5 is p = w / (1 + w): 0.8 for the shipped run's w = 4. Measured on a
    selection set in docs/notebook/shipped-run.md ("The on/off threshold").
19. **An optional duplicate merge closes the rule** (``decision_rule.merge_deg``, 0 = off = docs/spec.md §1 by
    default): in each frame, of two active slots with the same clip class and DoAs within
    ``merge_deg`` degrees, only the one with the higher on/off output stays active
    (:func:`~deepasa.model.decision.merge_duplicates`), as multi-ACCDOA decoders unify same-class tracks
    closer than a threshold. Motivation: in curriculum stage 4 the shipped run put one source into two slots in
    most frames with more active slots than sources (``experiments/2026-12-03-dup-slots/dup_slots.py``); measured in
    docs/notebook/shipped-run-stage4.md ("The duplicate merge").
"""

from __future__ import annotations

import dataclasses
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepasa import __version__
from deepasa.audio.geometry import tetra_mic_offsets
from deepasa.errors import DeepASAError
from deepasa.model.blocks import AudioEncoder, DeFTBlock
from deepasa.model.coi import ChainOfInference
from deepasa.model.configs import DeepASAConfig, get_config
from deepasa.model.decision import LEGACY_KEYS, DecisionRule, frame_activity, merge_duplicates, split_decision
from deepasa.model.paths import DEFAULT_CHECKPOINT
from deepasa.model.frontend import (FrequencyNorm, GaborSTFT, HannISTFT, channels_to_spec, complex_mask,
                                    spec_to_channels)
from deepasa.model.heads import AudioDecoder, ObjectSplitter, SELDHeads, build_pretrained_encoder, upgrade_state_dict
from deepasa.model.spatial import GCCPhatFeatures, SRPRefine, object_weight

CHECKPOINT_FORMAT = "deepasa-model/1"


def versions() -> dict[str, str]:
    """The versions a checkpoint records: deepasa, torch, python."""
    return {"deepasa": str(__version__), "torch": str(torch.__version__), "python": platform.python_version()}


def write_checkpoint(obj: dict, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then moved into place (no half-written file).

    The temporary is ``.<name>.part-<pid>`` (:func:`deepasa.staging.temp_sibling`): one that a killed process
    left is removed by the next ``deepasa export`` / ``deepasa train --export`` to the same file.
    """
    from deepasa.staging import atomic_path

    path = Path(path)
    with atomic_path(path, "part") as tmp:
        torch.save(obj, tmp)
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True`` (tensors and plain data; no pickled code).

    Raises:
        DeepASAError: the file is missing, or unreadable (the loader's first line is the reason).
    """
    path = Path(path)
    if not path.is_file():
        raise DeepASAError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        # the unpickler's message alone can be a bare key ("105" for a text file): name the failure too
        reason = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        raise DeepASAError(f"cannot read checkpoint {path} (not a PyTorch checkpoint? {reason})") from None


def load_model_weights(path: str | Path) -> tuple[DeepASAConfig, dict[str, torch.Tensor]]:
    """Config and state dict of a model file: a ``DeepASA.save`` file or a Lightning checkpoint of this module.

    Args:
        path: the file.

    Returns:
        (config, state dict with the network's own parameter names).

    Raises:
        DeepASAError: missing or unreadable file, or a file that holds no DeepASA model.
    """
    cfg, state, _ = _read(Path(path))
    return cfg, state


def _config_and_rule(stored_config: Any, stored_rule: Any) -> tuple[DeepASAConfig, DecisionRule]:
    """The config and decision rule of a file: the rule stored apart (``stored_rule``, written since the rule
    left the config) or else the ``detect_*`` keys of the stored config (files written before; the paper's rule
    where it has neither)."""
    cfg_dict, legacy = split_decision(stored_config)
    cfg = DeepASAConfig.from_dict(cfg_dict)
    if stored_rule is not None:
        return cfg, DecisionRule.from_dict(stored_rule)
    return cfg, legacy or DecisionRule()


def _read(path: Path, map_location: str | torch.device = "cpu") -> tuple[DeepASAConfig, dict[str, torch.Tensor], dict]:
    """(config, state dict, meta) of a model file or Lightning checkpoint; meta is the model file's class
    names and array format (a Lightning checkpoint has neither) and, in both, ``"decision_rule"``: the
    :class:`DecisionRule` the file holds (:func:`_config_and_rule`)."""
    ckpt = read_checkpoint(path, map_location)                       # tensors and plain data only
    if not isinstance(ckpt, dict):
        raise DeepASAError(f"{path} is not a DeepASA checkpoint")
    if "deepasa_model" in ckpt and "state_dict" in ckpt:           # Lightning checkpoint of DeepASAModule
        cfg, rule = _config_and_rule(ckpt["deepasa_model"], ckpt.get("deepasa_decision"))
        state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        return cfg, upgrade_state_dict(state), {"decision_rule": rule}
    if "config" in ckpt and "state_dict" in ckpt and str(ckpt.get("format", "")).startswith("deepasa-model"):
        meta = dict(ckpt.get("meta") or {})
        cfg, meta["decision_rule"] = _config_and_rule(ckpt["config"], meta.get("decision_rule"))
        return cfg, upgrade_state_dict(ckpt["state_dict"]), meta
    raise DeepASAError(f"{path} is neither a DeepASA model file nor a `deepasa train` checkpoint")


def load_model(path: str | Path, *, config: DeepASAConfig | str | None = None,
               map_location: str | torch.device = "cpu", decision_rule: DecisionRule | dict | None = None,
               **overrides) -> "DeepASA":
    """Rebuild a :class:`DeepASA` from a model file or a Lightning checkpoint (see :func:`load_model_weights`),
    with the decision rule the file holds (``meta["decision_rule"]``, a Lightning checkpoint's
    ``deepasa_decision``, or the ``detect_*`` keys of a config stored before the rule left it).

    Args:
        path: the file.
        config: if given, the stored config must equal it (a name such as ``"shipped"`` or a
            :class:`DeepASAConfig`); the differing fields are listed otherwise.
        map_location: device for the weights.
        decision_rule: replaces the stored rule: a :class:`DecisionRule`, or a mapping of some of its fields
            (``{"doa_norm": 0.0}``) that replace those of the stored rule.
        **overrides: config fields that leave the weights' shapes alone, e.g. ``doa_refine="srp"`` to score a
            model with the SRP-PHAT refinement it was not exported with (a field that changes a shape fails the
            strict load below). The rule's old config names (``detect_onoff``, ``detect_doa_norm``,
            ``detect_merge_deg``) set its fields (``deepasa export --set detect_onoff=0.8``).

    Raises:
        DeepASAError: missing/unreadable file, not a DeepASA model, a config mismatch, weights that do not fit,
            or an invalid rule value.
    """
    cfg, state, meta = _read(Path(path), map_location)
    rule = meta["decision_rule"]
    if config is not None:
        diff = cfg.diff(get_config(config))
        if diff:
            details = "; ".join(f"{k}: checkpoint {a!r} vs requested {b!r}" for k, (a, b) in sorted(diff.items()))
            raise DeepASAError(f"checkpoint {path} was saved with a different model config ({details})")
    given = {k: overrides.pop(k) for k in list(overrides) if k in LEGACY_KEYS}   # the rule's old names
    if given:
        split_decision(given)                                  # an invalid value is named as it was given
        rule = rule.replace(**{LEGACY_KEYS[k]: v for k, v in given.items()})
    if isinstance(decision_rule, dict):
        rule = rule.replace(**decision_rule)
    elif decision_rule is not None:
        rule = DecisionRule.from_dict(decision_rule)
    if overrides:
        cfg = cfg.replace(**overrides)
    model = DeepASA(cfg, decision_rule=rule)  # defined below; called at run time
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DeepASAError(f"checkpoint {path} does not fit its own config: {str(exc).splitlines()[0]}") from None
    if meta.get("class_names"):  # a model file names its classes: kept (deepasa export of a model file)
        model.class_names = list(meta["class_names"])
    model.audio_format = meta.get("audio_format") or model.audio_format
    return model


@dataclass
class DeepASAOutput:
    """Everything the network returns for a batch (K = M output mics, or 1 for reference-channel output).

    Attributes:
        direct: (B, J, K, N) direct-path (dereverberated) image per slot; None for the USS variant.
        reverb: (B, J, K, N) reverberant part (image minus direct path); None for the USS variant.
        image: (B, J, K, N) full image = direct + reverb (USS: the single image head).
        noise: (B, K, N) background-noise estimate.
        cls_logits: (B, J, C) clip-level class logits.
        sed: (B, J, T', C) frame class posteriors (softmax over classes; after CoI a sum of stage softmaxes).
        onoff: (B, J, T') activity logits.
        doa: (B, J, T', 3) Cartesian DoA, norm ≈ activity (after CoI a sum of stage tanh outputs).
        net1: the Net-1 outputs (SELD fields; audio only if requested) when at least one CoI step ran.
    """

    direct: torch.Tensor | None = None
    reverb: torch.Tensor | None = None
    image: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    cls_logits: torch.Tensor | None = None
    sed: torch.Tensor | None = None
    onoff: torch.Tensor | None = None
    doa: torch.Tensor | None = None
    net1: "DeepASAOutput | None" = None

    def tensors(self) -> dict[str, torch.Tensor]:
        """Flat dict of the non-None tensors, Net-1 ones prefixed ``net1.``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "net1"}
        out = {k: v for k, v in out.items() if v is not None}
        if self.net1 is not None:
            out.update({f"net1.{k}": v for k, v in self.net1.tensors().items()})
        return out


@dataclass
class SlotDecisions:
    """Per-object decisions (docs/spec.md §1 "Final SELD decision", §10).

    Attributes:
        active: (B, J, T') bool, sigmoid(onoff) > 0.5 AND ‖doa‖ > 0.5 (the paper's rule; a model's
            :class:`DecisionRule` in general).
        present: (B, J) bool, any active frame.
        class_index: (B, J) long, argmax of the clip logits.
        confidence: (B, J) float, max softmax of the clip logits.
        doa: (B, J, T', 3) unit DoA vectors (zero where the DoA vector is zero).
        sed: (B, J, T', C) bool, active · onehot(class): the SED decision used by the metrics.
    """

    active: torch.Tensor
    present: torch.Tensor
    class_index: torch.Tensor
    confidence: torch.Tensor
    doa: torch.Tensor
    sed: torch.Tensor


def decide(out: DeepASAOutput, onoff_threshold: float = 0.5, doa_threshold: float = 0.5,
           merge_deg: float = 0.0) -> SlotDecisions:
    """Turn network outputs into per-object decisions. out (B, J, ...) -> :class:`SlotDecisions`.

    The rule of :func:`~deepasa.metrics.seld_frame.activity_decisions`: on/off probability above
    ``onoff_threshold``, ‖doa‖ above ``doa_threshold`` and, with ``merge_deg > 0``, no same-class slot with a
    higher on/off output within ``merge_deg`` degrees in that frame."""
    if out.cls_logits is None or out.onoff is None or out.doa is None:
        raise DeepASAError("decide() needs SED/DoA outputs; this model has no SELD heads")
    active = frame_activity(out.onoff, out.doa, onoff_threshold, doa_threshold)  # (B, J, T')
    prob = torch.softmax(out.cls_logits.float(), dim=-1)  # (B, J, C)
    confidence, class_index = prob.max(dim=-1)  # (B, J) each
    if merge_deg > 0.0:
        merged = merge_duplicates(active.cpu().numpy(), class_index.cpu().numpy(), out.doa.float().cpu().numpy(),
                                  out.onoff.float().cpu().numpy(), merge_deg)  # (B, J, T')
        active = torch.from_numpy(merged).to(active.device)  # (B, J, T')
    onehot = torch.nn.functional.one_hot(class_index, prob.shape[-1]).bool()  # (B, J, C)
    return SlotDecisions(
        active=active,
        present=active.any(dim=-1),
        class_index=class_index,
        confidence=confidence,
        doa=out.doa / out.doa.norm(dim=-1, keepdim=True).clamp_min(1e-8),  # (B, J, T', 3)
        sed=active.unsqueeze(-1) & onehot.unsqueeze(2),  # (B, J, T', C)
    )


class DeepASA(nn.Module):
    """Object-oriented one-for-all network for auditory scene analysis.

    Args:
        config: a :class:`DeepASAConfig` or a config name (``paper``, ``paper-coi``, ``uss``, ``small``, ``tiny``).
        decision_rule: the activity decision rule of the outputs (:class:`DecisionRule` or a mapping of its
            fields); default the paper's (docs/spec.md §1). Not architecture: the attribute ``decision_rule`` can
            be set at any time; :meth:`save` stores it beside the config.

    ``forward(x (B, M, N))`` returns a :class:`DeepASAOutput`; T' = ceil(N / label_samples).

    >>> model = DeepASA("tiny").eval()
    >>> out = model(torch.zeros(1, 4, 8000))
    >>> tuple(out.image.shape), tuple(out.doa.shape)
    ((1, 5, 4, 8000), (1, 5, 10, 3))
    """

    def __init__(self, config: DeepASAConfig | str = "paper", decision_rule: DecisionRule | dict | None = None) -> None:
        super().__init__()
        cfg = get_config(config)
        self.config = cfg
        self.decision_rule = DecisionRule() if decision_rule is None else decision_rule
        self.class_names: list[str] | None = None  # class index -> name, stored in checkpoints
        self.audio_format = "mic"                   # array format of the training data ("mic" | "foa")
        d = cfg.emb_dim
        self.stft = GaborSTFT(cfg.n_fft, cfg.hop, cfg.gabor_width, cfg.trainable_window)
        self.norm = FrequencyNorm(cfg.ref_mic)
        self.istft = HannISTFT(cfg.n_fft, cfg.hop)
        self.encoder = AudioEncoder(2 * cfg.n_mics, d)
        mamba_kw = dict(d_state=cfg.mamba_d_state, d_conv=cfg.mamba_d_conv, expand=cfg.mamba_expand,
                        headdim=cfg.mamba_headdim, chunk_size=cfg.mamba_chunk_size)
        self.blocks = nn.ModuleList(
            DeFTBlock(d, n_heads=cfg.n_heads, head_dim=cfg.attn_head_dim, ffn_hidden=cfg.ffn_hidden,
                      dropout=cfg.dropout, attn_dropout=cfg.attn_dropout, time_ffn=cfg.time_ffn, **mamba_kw)
            for _ in range(cfg.n_blocks)
        )
        self.splitter = ObjectSplitter(d, cfg.n_objects)
        self.audio = AudioDecoder(d, cfg.out_mics, cfg.reverb_head)
        self.seld = SELDHeads.from_config(cfg, build_pretrained_encoder(cfg)) if cfg.seld_heads else None
        # per-object GCC-PHAT input of the DoA decoders (doa_spatial; deviation 11 of the module docstring)
        self.gcc = (GCCPhatFeatures(cfg.n_fft, cfg.sample_rate, cfg.n_mics, cfg.doa_gcc_max_lag_s, cfg.doa_gcc_lags)
                    if cfg.doa_spatial else None)
        # SRP-PHAT refinement of the DoA at inference (doa_refine; deviation 16): parameter-free, no state-dict
        # entries, built wherever it applies so that forward(refine_doa=True) can also score a model without it
        self.srp_refine = None
        if cfg.seld_heads and cfg.output_mode == "multichannel" and cfg.n_mics == 4:
            self.srp_refine = SRPRefine(cfg.n_fft, cfg.sample_rate, tetra_mic_offsets(),
                                        cone_deg=cfg.doa_refine_cone_deg, frames=1)
        # frozen clip embedding of each object's estimated image (cls_embedding; deviation 14), held outside the
        # module tree: its weights are the installed wheel's, never in a state dict, checkpoint or optimizer
        sfx = None
        if cfg.cls_embedding == "aisfx":
            from deepasa.model.sfx_embedding import SFXEmbedding

            sfx = SFXEmbedding(cfg.sample_rate)
        object.__setattr__(self, "sfx", sfx)
        self.coi = nn.ModuleList(self._coi_step(cfg) for _ in range(cfg.coi_steps))
        if cfg.coi_init == "identity":  # deviation 13: each CoI step starts as the identity on Net 1's outputs
            for step in self.coi:
                step.copy_splitter(self.splitter)

    @staticmethod
    def _coi_step(cfg: DeepASAConfig) -> ChainOfInference:
        """One CoI step with its own sub-decoders 2 (and its own copy of a pretrained branch, as released)."""
        pretrained = build_pretrained_encoder(cfg)
        return ChainOfInference(
            make_heads=lambda: SELDHeads.from_config(cfg, pretrained), dim=cfg.emb_dim, n_slots=cfg.n_slots,
            n_classes=cfg.n_classes, n_frames=cfg.n_frames, n_label_frames=cfg.n_label_frames,
            tcm_heads=cfg.tcm_heads, dropout=cfg.dropout, tcm_combine=cfg.tcm_combine, sed_sum=cfg.coi_sed_sum,
            identity_init=cfg.coi_init == "identity",
        )

    # ------------------------------------------------------------------ properties
    @property
    def decision_rule(self) -> DecisionRule:
        """The activity decision rule (:class:`DecisionRule`) that :meth:`decide`, ``analyze``, ``evaluate`` and
        validation apply to this model's outputs; a mapping of its fields may be assigned."""
        return self._decision_rule

    @decision_rule.setter
    def decision_rule(self, rule: DecisionRule | dict) -> None:
        object.__setattr__(self, "_decision_rule", DecisionRule.from_dict(rule))

    @property
    def sample_rate(self) -> int:
        """Sample rate the model expects (Hz)."""
        return self.config.sample_rate

    @property
    def in_channels(self) -> int:
        """Input channels M."""
        return self.config.n_mics

    # ------------------------------------------------------------------ forward
    def aggregate(self, x: torch.Tensor, return_spec: bool = False):
        """Front end + encoder + aggregator. x (B, M, N) -> Z (B, D, T, F), norm scale (B, 1, 1, T).

        With ``return_spec`` also the normalised input spectrum X (B, M, F, T) complex (a third element).
        """
        X, scale = self.norm(self.stft(x))  # (B, M, F, T) complex, (B, 1, 1, T)
        z = self.encoder(spec_to_channels(X))  # (B, D, T, F)
        for blk in self.blocks:
            z = blk(z)
        return (z, scale, X) if return_spec else (z, scale)

    def forward(self, x: torch.Tensor, coi_steps: int | None = None, net1_audio: bool = False,
                refine_doa: bool | None = None) -> DeepASAOutput:
        """Run the network, in the order of docs/spec.md §3.8.

        Args:
            x: (B, M, N) waveforms at ``sample_rate``.
            coi_steps: CoI steps to run (default ``config.coi_steps``); 0 gives Net 1 of the same weights.
            net1_audio: also decode audio from the Net-1 objects into ``out.net1`` (costs one audio decoder).
            refine_doa: SRP-PHAT refinement of the DoA outputs (deviation 16; Net 1's too); default: on in
                eval mode where ``config.doa_refine`` is "srp", never in training (the losses read the network's
                own DoA).

        Returns:
            :class:`DeepASAOutput` (shapes in its docstring).

        Each set of objects goes through the audio heads at most once (:meth:`_object_heads`), and only where
        something reads the result: the last stage's objects always (the output waveforms), every stage's where
        the SELD heads read them (``doa_spatial``, ``cls_embedding``), Net 1's where ``out.net1`` shows audio or
        a refined DoA. The extensions take those head outputs as arguments.
        """
        cfg = self.config
        steps = cfg.coi_steps if coi_steps is None else int(coi_steps)
        self._check_input(x, steps)
        refine = bool(cfg.doa_refine and not self.training) if refine_doa is None else bool(refine_doa)
        if refine and (self.srp_refine is None or self.seld is None):
            raise DeepASAError("doa_refine needs the SED/DoA heads, multichannel output and the 4-capsule array")
        n = x.shape[-1]
        n_label = cfg.label_frames(n)
        seld_reads_heads = self.gcc is not None or self.sfx is not None  # doa_spatial / cls_embedding

        # front end → Up-Conv → DeFT-Mamba blocks (§2, §3.1, §3.2)
        z, scale, X = self.aggregate(x, return_spec=True)  # (B, D, T, F), (B, 1, 1, T), (B, M, F, T) complex
        # the mixture in the audio heads' own spectrum (Hann STFT / the norm's scale), once for every stage:
        # what the masks of ``audio_output: mask`` multiply, and the reference mic's spectrum that the object
        # weights of ``doa_spatial`` and the SRP refinement divide by
        mix = self._mixture_channels(x, scale) if cfg.audio_output == "mask" else None  # (B, 2K, T, F) or None
        mix_ref = self._mixture_ref(x, scale, mix) if self.gcc is not None or refine else None  # (B, F, T) or None

        # object splitter 1 (§3.3); the noise head reads Z, or the USS variant's noise object (§3.4, §3.11)
        objects = self.splitter(z)  # (B, K_obj, D, T, F)
        obj = objects[:, : cfg.n_slots]  # (B, J, D, T, F): Net 1's objects O_j
        noise_src = objects[:, cfg.n_slots] if cfg.noise_object else z  # (B, D, T, F): noise object or Z
        noise = self._waveforms(self._noise_head(noise_src, mix), scale, n)  # (B, K, N)

        # Net 1: audio heads on O_j where read, then ClassNet and DoANet (§3.4–§3.6)
        heads = (self._object_heads(obj, mix)  # direct, reverb (B, J, 2K, T, F)
                 if steps == 0 or seld_reads_heads or net1_audio or refine else None)
        seld: dict[str, torch.Tensor] = {}  # SELD outputs (B, J, ...) each; none for the USS variant
        if self.seld is not None:
            seld = self.seld(obj, n_label, self._spatial_features(heads, X, mix_ref, n_label),
                             self._clip_embedding(heads, scale, n))
        net1 = None
        if steps:  # Net 1's outputs are returned beside the last stage's (its audio only when asked)
            net1 = self._output(noise, self._refined_doa(seld, heads, X, mix_ref) if refine else seld,
                                self._audio(heads, scale, n) if net1_audio else {})

        # chain of inference (§3.7): each step re-splits Z under the previous stage's SELD outputs, runs the
        # audio heads on its objects O'_j where read, and adds its sub-decoders' outputs to the previous ones
        for k, step in enumerate(self.coi[:steps], start=1):
            obj = step.objects(z, seld)  # (B, J, D, T, F): TCM → TrConv → FiLM(Z) → object splitter 2
            heads = self._object_heads(obj, mix) if k == steps or seld_reads_heads else None  # (B, J, 2K, T, F)
            seld = step.decode(obj, seld, self._spatial_features(heads, X, mix_ref, n_label),
                               self._clip_embedding(heads, scale, n))

        # §3.7 step 8: the waveforms are the last stage's objects' (O'_j after CoI, O_j without): `heads` holds
        # them; the noise head read Z above (or the USS noise object), never the FiLM-modulated Z'
        audio = self._audio(heads, scale, n)  # {direct, reverb, image} (B, J, K, N)
        if refine:
            seld = self._refined_doa(seld, heads, X, mix_ref)
        return self._output(noise, seld, audio, net1)

    def _check_input(self, x: torch.Tensor, coi_steps: int) -> None:
        cfg = self.config
        if x.dim() != 3 or x.shape[1] != cfg.n_mics:
            raise DeepASAError(f"expected input (batch, {cfg.n_mics} mics, samples), got {tuple(x.shape)}")
        if x.shape[-1] < cfg.hop:
            raise DeepASAError(f"input of {x.shape[-1]} samples is shorter than one hop ({cfg.hop})")
        if coi_steps and x.shape[-1] != cfg.clip_samples:
            raise DeepASAError(
                f"chain-of-inference needs clips of exactly {cfg.clip_samples} samples "
                f"({cfg.clip_seconds} s at {cfg.sample_rate} Hz), got {x.shape[-1]}; chunk longer inputs"
            )
        if coi_steps and not len(self.coi):
            raise DeepASAError("this model was built without chain-of-inference (coi_steps=0 in its config)")
        if coi_steps > cfg.coi_steps:
            raise DeepASAError(f"this model has {cfg.coi_steps} CoI step(s) with own weights; asked for {coi_steps}")

    def _mixture_channels(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """What ``audio_output: mask`` masks: the mixture x (B, M, N) in the STFT that the output iSTFT inverts
        exactly (Hann; the Gabor analysis window is not its pair: a unit mask on the Gabor spectrum returns
        the mixture at only ~17 dB SI-SDR), divided by the input norm's scale (B, 1, 1, T), in head-channel
        layout: (B, 2K, T, F) real (K = M, or the reference mic alone for reference-channel output). A unit
        mask then returns the mixture itself."""
        cfg = self.config
        if cfg.out_mics == 1:
            x = x[:, cfg.ref_mic: cfg.ref_mic + 1]  # (B, 1, N)
        return spec_to_channels(self.istft.analysis(x) / scale)  # (B, K, F, T) complex -> (B, 2K, T, F)

    def _mixture_ref(self, x: torch.Tensor, scale: torch.Tensor, mix: torch.Tensor | None) -> torch.Tensor:
        """The reference mic's mixture in the audio heads' own spectrum (Hann STFT / the norm's scale), the
        denominator of the object weight (:meth:`_direct_ratio`; multichannel output only).

        x (B, M, N), scale (B, 1, 1, T), mix (B, 2K, T, F) the mixture's head channels of ``audio_output: mask``
        (:meth:`_mixture_channels`; read instead of a second STFT) or None -> (B, F, T) complex.
        """
        ref = self.config.ref_mic
        if mix is not None:
            return channels_to_spec(mix[:, 2 * ref: 2 * ref + 2], 1)[:, 0]  # (B, 2, T, F) -> (B, F, T)
        return self.istft.analysis(x[:, ref: ref + 1])[:, 0] / scale[:, 0]  # (B, 1, F, T) -> (B, F, T)

    def _noise_head(self, src: torch.Tensor, mix: torch.Tensor | None) -> torch.Tensor:
        """The noise head on src (B, D, T, F) (Z, or the USS noise object) -> (B, 2K, T, F) head channels;
        with ``audio_output: mask`` (deviation 15) its channels are a complex mask applied to mix (B, 2K, T, F)."""
        noise = self.audio.noise_head(src)  # (B, 2K, T, F)
        return noise if mix is None else complex_mask(noise, mix)  # (B, 2K, T, F)

    def _object_heads(self, obj: torch.Tensor, mix: torch.Tensor | None
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The audio heads of one set of objects: obj (B, J, D, T, F) -> direct, reverb (B, J, 2K, T, F) head
        channels (reverb None without a reverb head).

        With ``audio_output: mask`` (deviation 15) the heads' channels are complex masks, applied here to the
        mixture's head channels mix (B, 2K, T, F) (:meth:`_mixture_channels`); mix is None otherwise.
        """
        direct, reverb = self.audio.objects(obj)  # (B, J, 2K, T, F) each (reverb may be None)
        if mix is not None:
            mix = mix.unsqueeze(1)  # (B, 1, 2K, T, F): the same mixture under every object's mask
            direct = complex_mask(direct, mix)  # (B, J, 2K, T, F)
            reverb = None if reverb is None else complex_mask(reverb, mix)  # (B, J, 2K, T, F)
        return direct, reverb

    def _direct_ratio(self, heads: tuple[torch.Tensor, torch.Tensor | None], mix_ref: torch.Tensor) -> torch.Tensor:
        """Each object's direct-path ratio mask at the reference mic (:func:`~deepasa.model.spatial.object_weight`):
        heads direct, reverb (B, J, 2K, T, F) (:meth:`_object_heads`), mix_ref (B, F, T) (:meth:`_mixture_ref`)
        -> (B, J, F, T) in [0, 1], detached.

        The ratio compares the head's direct path with the mixture in the head's own spectrum: the Hann STFT
        that the output iSTFT inverts, divided by the scale. Until 2026-12-02 it was compared with the Gabor
        spectrum X, whose unit-norm window gives magnitudes 1/15.4 of the Hann ones here, so the weight was
        min(15.4 · ratio, 1): 1 wherever the object held more than 6.5 % of a bin (docs/model.md, deviation 11).
        """
        direct = channels_to_spec(heads[0], self.config.out_mics)  # (B, J, 2K, T, F) -> (B, J, K, F, T) complex
        return object_weight(direct[:, :, self.config.ref_mic], mix_ref)  # (B, J, F, T)

    def _spatial_features(self, heads: tuple[torch.Tensor, torch.Tensor | None] | None, X: torch.Tensor,
                          mix_ref: torch.Tensor | None, n_label: int) -> torch.Tensor | None:
        """The DoA decoder's spatial input of a set of objects (``doa_spatial``, deviation 11), or None when off.

        heads: the objects' direct, reverb (B, J, 2K, T, F) (:meth:`_object_heads`); X (B, M, F, T) the
        normalised Gabor mixture spectrum (its phases feed the GCC); mix_ref (B, F, T) (:meth:`_mixture_ref`)
        -> (B, J, T', P·L + 1) (:mod:`deepasa.model.spatial`).
        """
        if self.gcc is None:
            return None
        weight = self._direct_ratio(heads, mix_ref)  # (B, J, F, T)
        return self.gcc(X.unsqueeze(1), weight, n_label)  # (B, 1, M, F, T) mixture phases -> (B, J, T', S)

    def _clip_embedding(self, heads: tuple[torch.Tensor, torch.Tensor | None] | None, scale: torch.Tensor,
                        n: int) -> torch.Tensor | None:
        """The class output's clip embedding of a set of objects (``cls_embedding``, deviation 14), or None when off.

        heads: the objects' direct, reverb (B, J, 2K, T, F) (:meth:`_object_heads`); scale (B, 1, 1, T) the
        input norm's scale; n samples -> (B, J, 512): the frozen aisfx embedding
        (:mod:`deepasa.model.sfx_embedding`) of each object's estimated reference-channel image, without gradient.
        """
        if self.sfx is None:
            return None
        cfg = self.config
        ref = cfg.ref_mic if cfg.out_mics > 1 else 0  # the reference mic's index among the K output channels
        direct, reverb = heads
        with torch.no_grad():
            img = direct[:, :, 2 * ref: 2 * ref + 2]  # (B, J, 2, T, F): (re, im) of the reference channel
            if reverb is not None:
                img = img + reverb[:, :, 2 * ref: 2 * ref + 2]
            Y = FrequencyNorm.inverse(channels_to_spec(img, 1), scale)  # (B, J, 2, T, F) -> (B, J, 1, F, T)
            wav = self.istft(Y, n)[:, :, 0]  # (B, J, 1, N) -> (B, J, N)
            b, j = wav.shape[:2]
            if self.sfx.window.device != wav.device:
                self.sfx.to(wav.device)
            emb = self.sfx(wav.reshape(b * j, n))  # (B*J, N) -> (B*J, 512)
        return emb.reshape(b, j, -1)  # (B, J, 512)

    def _refined_doa(self, seld: dict[str, torch.Tensor], heads: tuple[torch.Tensor, torch.Tensor | None],
                     X: torch.Tensor, mix_ref: torch.Tensor) -> dict[str, torch.Tensor]:
        """``seld`` with its DoA refined by SRP-PHAT (``doa_refine``, deviation 16) for a set of objects: the
        mixture's phase transform X (B, M, F, T), weighted by each object's direct-path ratio mask from its heads
        direct, reverb (B, J, 2K, T, F) (:meth:`_object_heads`) and mix_ref (B, F, T). Returns a new dict; the
        DoA stays (B, J, T', 3)."""
        if self.audio_format != "mic":
            raise DeepASAError(f"doa_refine: srp needs the tetrahedral MIC array; this model reads {self.audio_format}")
        weight = self._direct_ratio(heads, mix_ref)  # (B, J, F, T)
        return {**seld, "doa": self.srp_refine(X.unsqueeze(1), weight, seld["doa"])}  # doa (B, J, T', 3)

    def _audio(self, heads: tuple[torch.Tensor, torch.Tensor | None], scale: torch.Tensor, n: int
               ) -> dict[str, torch.Tensor]:
        """The waveforms of a set of objects from their heads direct, reverb (B, J, 2K, T, F)
        (:meth:`_object_heads`) -> {direct, reverb, image} (B, J, K, N) ({image} alone without a reverb head)."""
        direct, reverb = heads
        if reverb is None:
            return {"image": self._waveforms(direct, scale, n)}
        d_wav, r_wav = self._waveforms(direct, scale, n), self._waveforms(reverb, scale, n)  # (B, J, K, N) each
        return {"direct": d_wav, "reverb": r_wav, "image": d_wav + r_wav}

    def _waveforms(self, spec_ch: torch.Tensor, scale: torch.Tensor, n: int) -> torch.Tensor:
        """Head channels (B, ..., 2K, T, F) -> waveforms (B, ..., K, N) via inverse norm and Hann iSTFT."""
        Y = channels_to_spec(spec_ch, self.config.out_mics)  # (B, ..., 2K, T, F) -> (B, ..., K, F, T)
        return self.istft(FrequencyNorm.inverse(Y, scale), n)  # (B, ..., K, N)

    @staticmethod
    def _output(noise: torch.Tensor, seld: dict[str, torch.Tensor], audio: dict[str, torch.Tensor],
                net1: DeepASAOutput | None = None) -> DeepASAOutput:
        """The output of one stage: SELD dict (B, J, ...) (may be empty), audio dict {direct, reverb, image}
        (B, J, K, N) (may be empty or image-only), noise (B, K, N)."""
        return DeepASAOutput(
            direct=audio.get("direct"), reverb=audio.get("reverb"), image=audio.get("image"), noise=noise,
            cls_logits=seld.get("cls_logits"), sed=seld.get("sed"), onoff=seld.get("onoff"), doa=seld.get("doa"),
            net1=net1,
        )

    # ------------------------------------------------------------------ decisions
    @torch.no_grad()
    def decide(self, out: DeepASAOutput, onoff_threshold: float | None = None,
               doa_threshold: float | None = None, merge_deg: float | None = None) -> SlotDecisions:
        """Per-object decisions from ``out`` (see :func:`decide`) under this model's rule (``decision_rule``:
        ``onoff``, ``doa_norm``, ``merge_deg``) unless a value is given."""
        rule = self.decision_rule
        return decide(out, rule.onoff if onoff_threshold is None else onoff_threshold,
                      rule.doa_norm if doa_threshold is None else doa_threshold,
                      rule.merge_deg if merge_deg is None else merge_deg)

    # ------------------------------------------------------------------ serialisation
    def serialize(self) -> dict[str, Any]:
        """Weights + config + versions + meta (class names, array format, decision rule): everything
        :meth:`from_pretrained` needs to rebuild this model."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "versions": versions(),
            # what the weights mean: class index -> name, the array format of the training data, and the rule
            # that decides which slot is an object (not architecture: apart from the config)
            "meta": {"class_names": list(self.class_names) if self.class_names else None,
                     "audio_format": self.audio_format, "decision_rule": self.decision_rule.to_dict()},
        }

    def save(self, path: str | Path) -> Path:
        """Write :meth:`serialize` to ``path`` (written to a temporary file, then moved into place)."""
        return write_checkpoint(self.serialize(), path)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, config: DeepASAConfig | str | None = None,
                        map_location: str | torch.device = "cpu",
                        decision_rule: DecisionRule | dict | None = None) -> "DeepASA":
        """Rebuild a model saved by :meth:`save` (or a ``deepasa train`` Lightning checkpoint): see
        :func:`load_model`, the one loader.

        Args:
            path: checkpoint file; None = the shipped model, ``checkpoints/default.pt``.
            config: if given, the checkpoint's config must equal it (name or :class:`DeepASAConfig`).
            map_location: device for the weights.
            decision_rule: replaces the stored decision rule (see :func:`load_model`).

        Raises:
            DeepASAError: missing/unreadable file, not a DeepASA checkpoint, or a config mismatch (the
                differing fields are listed).
        """
        if path is None and not DEFAULT_CHECKPOINT.is_file():
            raise DeepASAError(f"checkpoint not found: {DEFAULT_CHECKPOINT} (the shipped model is not installed; "
                               "name a checkpoint)")
        return load_model(DEFAULT_CHECKPOINT if path is None else path, config=config, map_location=map_location,
                          decision_rule=decision_rule)

    def analyze(self, path_or_array, sample_rate: int | None = None, **kwargs):
        """Analyse a recording of any length: objects, events and directions.

        Args:
            path_or_array: an audio file, or an (M, N) array at ``sample_rate``.
        Returns:
            :class:`deepasa.inference.SceneAnalysis` (see :func:`deepasa.inference.analyze.analyze` for options).
        """
        from deepasa.inference.analyze import analyze

        return analyze(self, path_or_array, sample_rate=sample_rate, **kwargs)
