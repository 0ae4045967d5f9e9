"""Model configurations: one dataclass whose defaults are the paper's Net 1, named configs in YAML files.

Every size the network needs (STFT frames T, frequency bins F, label frames T', slot count J, class count C,
channel count M, pooled widths of the heads, the TCM attention width, the CoI upsampling kernel) is derived
here from a handful of primary fields, so no module hard-codes 201 frames, 321 bins or 40 label frames
(docs/spec.md §10 says the authors' decoders do).

Named configurations (``get_config(name)``) live in one place only: ``configs/model/<name>.yaml``, each a
mapping of the fields that differ from the paper defaults of :class:`DeepASAConfig` (``paper.yaml`` is empty):

* ``paper``      Net 1 of DeepASA as released (docs/spec.md §0 constants: M=4, J=5, C=13, D=64, 6 blocks, 16 kHz,
                 n_fft 640 / hop 320, 4-s clips), no chain-of-inference, no pretrained-encoder branch.
* ``paper-coi``  the same plus one chain-of-inference step (docs/spec.md §3.7).
* ``uss``        the MC-FUSS separation-only variant "DeepASA (SEP)" (docs/spec.md §3.11): J=4 source objects + one
                 noise object, reference-channel output, no SED/DoA heads.
* ``small``      the CPU-trainable size of this project (see docs/model.md for its cost).
* ``shipped``    the architecture of the shipped model ``checkpoints/default.pt``: ``small`` with the extensions
                 it was trained with (a test checks it equals the checkpoint's stored config).
* ``tiny``       a minimal size for fast tests.

Unknown keys raise :class:`DeepASAError`. Fields removed from the config (:data:`REMOVED_FIELDS`) are dropped
from stored configs that hold their old default, so every older checkpoint still loads.

The activity decision rule is not part of the config: it changes no weight. A model carries it apart, as a
:class:`~deepasa.model.decision.DecisionRule` (docs/model.md deviations 17–19). Configs stored before that split
hold it as ``detect_onoff``, ``detect_doa_norm``, ``detect_merge_deg``: the loaders take those keys off with
:func:`~deepasa.model.decision.split_decision` before :meth:`DeepASAConfig.from_dict`, which refuses them (one
line naming the new place), so no rule is ever dropped silently.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from deepasa.errors import DeepASAError
from deepasa.model.decision import LEGACY_KEYS

#: Values of ``DeepASAConfig.doa_spatial`` ("" = the paper's DoANet; see deepasa.model.spatial).
SPATIAL_MODES = ("", "gcc_mixture")
#: Values of ``cls_embedding``: off, or the frozen aisfx embedding of each object's estimated image.
CLS_EMBEDDINGS = ("", "aisfx")
#: Values of ``audio_output``: what the audio heads' channels are (docs/model.md, deviation 15).
AUDIO_OUTPUTS = ("mapping", "mask")
#: Values of ``DeepASAConfig.doa_refine`` ("" = the network's DoA; see deepasa.model.spatial.SRPRefine).
REFINE_MODES = ("", "srp")

#: Folder of the model YAML files: ``<repo>/configs/model`` in a source checkout, else the installed wheel's copy
#: (``deepasa/_configs/model``, package data mapped by setup.py).
CONFIG_DIR = next((d for d in (Path(__file__).resolve().parents[2] / "configs" / "model",
                               Path(__file__).resolve().parents[1] / "_configs" / "model") if d.is_dir()),
                  Path(__file__).resolve().parents[2] / "configs" / "model")


#: The config's sections, in the order of docs/spec.md (signal, objects and tasks, front end, trunk, heads, chain
#: of inference) and this project's extensions (each off in ``paper``): field names per section. Checkpoints store
#: the flat fields; YAML files and :meth:`DeepASAConfig.from_dict` also take them nested by section
#: (``{"trunk": {"emb_dim": 16}}``), and :meth:`DeepASAConfig.section` reads one section.
SECTIONS: dict[str, tuple[str, ...]] = {
    "signal": ("sample_rate", "n_fft", "hop", "clip_seconds", "label_hop_s", "n_mics", "ref_mic"),
    "objects": ("n_slots", "n_classes", "noise_object", "output_mode", "reverb_head", "audio_output", "seld_heads"),
    "frontend": ("gabor_width", "trainable_window"),
    "trunk": ("emb_dim", "n_blocks", "n_heads", "attn_head_dim", "ffn_hidden", "dropout", "attn_dropout", "time_ffn",
              "mamba_d_state", "mamba_d_conv", "mamba_expand", "mamba_headdim", "mamba_chunk_size"),
    "heads": ("head_channels", "head_fuse_dim", "head_gru_hidden", "head_gru_layers", "head_fc_dim", "head_dropout",
              "asp_hidden", "sed_freq_pools", "doa_freq_pools", "clsf_freq_pools", "clsf_time_pool",
              "pretrained_encoder", "pretrained_encoder_kwargs"),
    "coi": ("coi_steps", "tcm_heads", "tcm_combine", "coi_sed_sum", "coi_init"),
    "extensions": ("doa_spatial", "doa_gcc_lags", "doa_gcc_max_lag_s", "doa_spatial_norm", "doa_refine",
                   "doa_refine_cone_deg", "cls_embedding"),
}


def flatten_config(d: dict[str, Any]) -> dict[str, Any]:
    """A config mapping with sections nested (``{"trunk": {"emb_dim": 16}, "n_slots": 4}``) -> flat fields.

    A section's mapping may hold only that section's fields; a field given both nested and flat takes the flat
    value (so ``get_config(name, **overrides)`` overrides a nested YAML file).

    Raises:
        DeepASAError: a field under the wrong section, or a section that is not a mapping.
    """
    flat: dict[str, Any] = {}
    for key, value in d.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise DeepASAError(f"model config section {key!r} must be a mapping of its fields")
            wrong = sorted(set(value) - set(SECTIONS[key]))
            if wrong:
                raise DeepASAError(f"model config section {key!r} has no field(s) {', '.join(map(str, wrong))} "
                                   f"(its fields: {', '.join(SECTIONS[key])})")
            flat.update(value)
    flat.update({k: v for k, v in d.items() if k not in SECTIONS})
    return flat


#: Fields removed in issue 38 (no named config, recipe or shipped model set them) with the value they had when
#: off: a stored config holding that value loads (the key is dropped); any other value is an error.
REMOVED_FIELDS: dict[str, Any] = {"freq_embedding": False, "doa_refine_frames": 1, "coi_share_weights": False}



def _refuse_rule_keys(keys) -> None:
    """One-line :class:`DeepASAError` where ``keys`` hold a key of the decision rule's old config fields."""
    rule = [k for k in LEGACY_KEYS if k in keys]
    if rule:
        raise DeepASAError(f"{', '.join(rule)}: the activity decision rule is no longer a model config field "
                           "(issue 38): it is a DecisionRule apart from the config (deepasa.model.decision; "
                           "DeepASA.decision_rule, load_model(..., decision_rule=...), a recipe's "
                           "model.decision_rule: {onoff, doa_norm, merge_deg})")


#: Fields whose None means "emb_dim" (resolved in ``__post_init__``; a later ``replace(emb_dim=...)`` keeps the
#: resolved value, so give them explicitly when changing D).
_DEFAULTS_TO_EMB_DIM = ("attn_head_dim", "head_channels")


def _check_scalar_types(cfg: Any) -> None:
    """Raise :class:`DeepASAError` where a field with a bool, int, float or str default holds another type.

    An int passes for a float field; a bool passes only for a bool field; the widths of
    :data:`_DEFAULTS_TO_EMB_DIM` may also be None. So ``--set doa_refine_cone_deg=abc`` is a one-line error, not
    a comparison of a str with a float deep inside the checks.
    """
    for f in fields(cfg):
        default, value = f.default, getattr(cfg, f.name)
        if f.name in _DEFAULTS_TO_EMB_DIM:
            if value is None:
                continue
            default = 0                                             # an int width
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif isinstance(default, float):
            ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        elif isinstance(default, str):
            ok, kind = isinstance(value, str), "a string"
        else:
            continue                                                # tuples, dicts: checked where they are read
        if not ok:
            raise DeepASAError(f"invalid model config: {f.name} must be {kind}, got {value!r}")


@dataclass(frozen=True)
class DeepASAConfig:
    """All hyper-parameters of :class:`~deepasa.model.DeepASA`; the defaults are the paper's Net 1 (docs/spec.md §0).

    Primary fields are stored in checkpoints; derived sizes are read-only properties.
    """

    # --- signal ---------------------------------------------------------------------------------------
    sample_rate: int = 16000
    n_fft: int = 640                 # analysis window = FFT size (40 ms at 16 kHz)
    hop: int = 320                   # 20 ms
    clip_seconds: float = 4.0        # training clip; fixes T' of the CoI time-course attention
    label_hop_s: float = 0.1         # SED / DoA label frame (100 ms)
    n_mics: int = 4                  # M, input channels
    ref_mic: int = 0                 # reference channel of the normalisation (docs/spec.md §2.3)
    # --- objects and tasks ----------------------------------------------------------------------------
    n_slots: int = 5                 # J object slots
    n_classes: int = 13              # C
    noise_object: bool = False       # USS variant: splitter emits J+1 objects, the last is the noise
    output_mode: str = "multichannel"  # "multichannel" (M outputs) or "reference" (ref mic only, USS)
    reverb_head: bool = True         # separate direct and reverb heads (False: one image head, USS)
    audio_output: str = "mapping"    # "mapping" (paper: the heads' channels are the output spectra) | "mask":
                                     # a complex ratio mask on the normalised mixture of the same mic
    seld_heads: bool = True          # SED/class and DoA decoders (False for USS)
    # --- front end ------------------------------------------------------------------------------------
    gabor_width: int = 64            # D_w, conv features predicting the Gaussian window per frame
    trainable_window: bool = False   # the released config freezes the Gabor front end (docs/spec.md §2.2)
    # --- aggregator -----------------------------------------------------------------------------------
    emb_dim: int = 64                # D
    n_blocks: int = 6                # N_b
    n_heads: int = 4                 # H
    attn_head_dim: int | None = None  # None = emb_dim (the paper's head dim equals D, not D/H)
    ffn_hidden: int = 256
    dropout: float = 0.1
    attn_dropout: float = 0.1        # applied in training only (the released code also applies it at eval)
    time_ffn: str = "mamba"          # "mamba" (DeFT-Mamba) or "ffn" (transformer aggregator)
    mamba_d_state: int = 16
    mamba_d_conv: int = 4
    mamba_expand: int = 4
    mamba_headdim: int = 16
    mamba_chunk_size: int = 32       # SSD chunk; does not change the result, only cost (see mamba2.py)
    # --- heads ----------------------------------------------------------------------------------------
    head_channels: int | None = None  # None = emb_dim; channels of the CNN blocks of ClassNet / DoANet
    head_fuse_dim: int = 320
    head_gru_hidden: int = 128
    head_gru_layers: int = 2
    head_fc_dim: int = 128
    head_dropout: float = 0.0        # Dropout(0) in the released heads
    asp_hidden: int = 64
    sed_freq_pools: tuple[int, ...] = (2, 2, 2, 2, 2, 2, 1)
    doa_freq_pools: tuple[int, ...] = (8, 8)
    clsf_freq_pools: tuple[int, ...] = (4, 4)
    clsf_time_pool: int = 4          # second time pool of the clip-level frequency branch (T' -> T'/4)
    pretrained_encoder: str = ""     # "module:factory" of a frozen encoder branch; "" = off
    pretrained_encoder_kwargs: dict = field(default_factory=dict)
    # --- chain of inference ---------------------------------------------------------------------------
    coi_steps: int = 0               # 0 = Net 1 only; k >= 1 = k CoI steps, each with its own weights
    tcm_heads: int = 4
    tcm_combine: str = "product"     # "product" (released code) or "residual_sum" (paper figure)
    coi_sed_sum: str = "probs"       # stage SED sum: "probs" (released: softmax₁ + softmax₂, range 0..2) or
                                     # "logits" (softmax of the summed frame logits: a posterior again)
    coi_init: str = "default"        # "default" (PyTorch init) or "identity": a CoI step starts as its input

    # --- extensions of this project (each off in `paper`; docs/model.md, deviations) ------------------
    doa_spatial: str = ""            # "" (paper DoANet) | "gcc_mixture": per-object GCC-PHAT input
    doa_gcc_lags: int = 25           # lag points of the GCC-PHAT features over [-max, +max]
    doa_gcc_max_lag_s: float = 3.0e-4  # largest lag (s); the 4.2-cm tetrahedron's largest TDOA is 245 us
    doa_spatial_norm: bool = False   # LayerNorm over the spatial features before their projection
    doa_refine: str = ""             # "" (the network's DoA) | "srp": at inference, SRP-PHAT of the object-weighted
                                     # mixture within a cone around the network's DoA (deepasa.model.spatial)
    doa_refine_cone_deg: float = 25.0  # the cone's half-angle (degrees); SRP pooled over label frames t' ± 1
    cls_embedding: str = ""          # "" (paper ClassNet) | "aisfx": frozen pretrained embedding of each object's
                                     # estimated reference-channel image, read by the clip class output
    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        _check_scalar_types(self)
        # the widths that default to D are resolved here, once: every reader sees an int
        for name in _DEFAULTS_TO_EMB_DIM:
            if getattr(self, name) is None:
                object.__setattr__(self, name, self.emb_dim)
        checks = [
            (self.attn_head_dim >= 1 and self.head_channels >= 1, "attn_head_dim and head_channels must be >= 1"),
            (self.n_fft % 2 == 0, "n_fft must be even"),
            (0 < self.hop <= self.n_fft, "hop must be in 1..n_fft"),
            (self.n_mics >= 1 and 0 <= self.ref_mic < self.n_mics, "need n_mics >= 1 and 0 <= ref_mic < n_mics"),
            (self.n_slots >= 1, "n_slots must be >= 1"),
            (self.n_classes >= 1, "n_classes must be >= 1"),
            (self.output_mode in ("multichannel", "reference"), "output_mode is 'multichannel' or 'reference'"),
            (self.audio_output in AUDIO_OUTPUTS, f"audio_output is one of {', '.join(map(repr, AUDIO_OUTPUTS))}"),
            (self.time_ffn in ("mamba", "ffn"), "time_ffn is 'mamba' or 'ffn'"),
            (self.tcm_combine in ("product", "residual_sum"), "tcm_combine is 'product' or 'residual_sum'"),
            (self.coi_steps >= 0, "coi_steps must be >= 0"),
            (self.coi_sed_sum in ("probs", "logits"), "coi_sed_sum is 'probs' or 'logits'"),
            (self.coi_init in ("default", "identity"), "coi_init is 'default' or 'identity'"),
            (not (self.coi_init == "identity" and self.coi_sed_sum != "logits"),
             "coi_init 'identity' needs coi_sed_sum 'logits' (a zero stage adds softmax(0) = 1/C to a sum of probs)"),
            (self.doa_spatial in SPATIAL_MODES, f"doa_spatial is one of {', '.join(map(repr, SPATIAL_MODES))}"),
            (not (self.doa_spatial and not self.seld_heads), "doa_spatial needs the SED/DoA heads"),
            (self.cls_embedding in CLS_EMBEDDINGS,
             f"cls_embedding is one of {', '.join(map(repr, CLS_EMBEDDINGS))}"),
            (not (self.cls_embedding and not self.seld_heads), "cls_embedding needs the SED/DoA heads"),
            (not (self.doa_spatial and self.output_mode != "multichannel"), "doa_spatial needs multichannel output"),
            (self.doa_refine in REFINE_MODES, f"doa_refine is one of {', '.join(map(repr, REFINE_MODES))}"),
            (not (self.doa_refine and not (self.seld_heads and self.output_mode == "multichannel"
                                           and self.n_mics == 4)),
             "doa_refine needs the SED/DoA heads, multichannel output and the 4-capsule array"),
            (0.0 < self.doa_refine_cone_deg <= 180.0, "need 0 < doa_refine_cone_deg <= 180"),
            (self.doa_gcc_lags >= 1 and self.doa_gcc_max_lag_s > 0, "need doa_gcc_lags >= 1 and doa_gcc_max_lag_s > 0"),
            (not (self.coi_steps and not self.seld_heads), "chain-of-inference needs the SED/DoA heads"),
            (self.label_samples >= self.hop, "label_hop_s must be at least one STFT hop"),
            (self.n_label_frames >= self.clsf_time_pool, "clip too short for the frequency branch time pool"),
            ((self.mamba_expand * self.emb_dim) % self.mamba_headdim == 0, "expand*emb_dim % mamba_headdim != 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise DeepASAError(f"invalid model config: {msg}")

    # ------------------------------------------------------------------ derived sizes
    @property
    def n_freqs(self) -> int:
        """F = n_fft // 2 + 1 (321 for the paper)."""
        return self.n_fft // 2 + 1

    @property
    def clip_samples(self) -> int:
        """N of a training clip (64 000 for the paper)."""
        return int(round(self.clip_seconds * self.sample_rate))

    @property
    def label_samples(self) -> int:
        """Samples per label frame (1 600 for the paper)."""
        return int(round(self.label_hop_s * self.sample_rate))

    def frames(self, n_samples: int) -> int:
        """STFT frames T of an n-sample input (centred framing: N // hop + 1; 201 for the paper)."""
        return n_samples // self.hop + 1

    def label_frames(self, n_samples: int) -> int:
        """Label frames T' of an n-sample input, ceil(N / label_samples) (40 for the paper)."""
        return math.ceil(n_samples / self.label_samples)

    @property
    def n_frames(self) -> int:
        """T of a training clip."""
        return self.frames(self.clip_samples)

    @property
    def n_label_frames(self) -> int:
        """T' of a training clip; also the feature width of the CoI time-course attention."""
        return self.label_frames(self.clip_samples)

    @property
    def label_time_pool(self) -> int:
        """STFT frames per label frame, rounded down (5 for the paper): the first time pool of the heads."""
        return max(1, self.label_samples // self.hop)

    @property
    def n_objects(self) -> int:
        """Objects emitted by a splitter: J, or J + 1 with the noise object."""
        return self.n_slots + int(self.noise_object)

    @property
    def out_mics(self) -> int:
        """Output channels of each audio head: M, or 1 for reference-channel output."""
        return self.n_mics if self.output_mode == "multichannel" else 1

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the primary fields (tuples become lists), for YAML and checkpoints."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else (dict(v) if isinstance(v, dict) else v)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DeepASAConfig":
        """Build from a mapping; unknown keys raise :class:`DeepASAError`.

        Configs stored before issue 16 wrote ``0`` for "same as emb_dim" (``attn_head_dim``, ``head_channels``);
        that reads as None. Configs stored before issue 38 carry :data:`REMOVED_FIELDS`: dropped when they hold
        the old default (what every committed model holds), an error otherwise. The decision rule's old keys
        (``detect_*``) are an error here: a loader takes them off first with
        :func:`~deepasa.model.decision.split_decision`, so the rule they hold reaches the model.
        """
        if not isinstance(d, dict):
            raise DeepASAError(f"model config must be a mapping, got {type(d).__name__}")
        d = flatten_config(d)  # sections nested (YAML files) or flat (checkpoints)
        _refuse_rule_keys(d)
        for name, off in REMOVED_FIELDS.items():
            if name in d:
                if d[name] != off:
                    raise DeepASAError(f"model config sets {name}={d[name]!r}: that option was removed (issue 38); "
                                       f"only {name}={off!r} loads")
                del d[name]
        if d.get("doa_spatial") == "gcc_image":
            raise DeepASAError("model config sets doa_spatial='gcc_image': that option was removed (issue 38)")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise DeepASAError(f"unknown model config key(s): {', '.join(unknown)}")
        kw = {}
        for k, v in d.items():
            default = known[k].default
            if isinstance(default, tuple) and isinstance(v, list):
                v = tuple(v)
            if k in _DEFAULTS_TO_EMB_DIM and v == 0:
                v = None
            kw[k] = v
        return cls(**kw)

    def section(self, name: str) -> dict[str, Any]:
        """The fields of one section (:data:`SECTIONS`), e.g. ``cfg.section("trunk")["emb_dim"]``."""
        if name not in SECTIONS:
            raise DeepASAError(f"no config section {name!r}: {', '.join(SECTIONS)}")
        flat = self.to_dict()
        return {k: flat[k] for k in SECTIONS[name]}

    def to_nested_dict(self) -> dict[str, dict[str, Any]]:
        """The fields by section (:data:`SECTIONS`), as YAML files may write them."""
        return {name: self.section(name) for name in SECTIONS}

    def replace(self, **changes: Any) -> "DeepASAConfig":
        """A copy with some fields changed; unknown keys raise :class:`DeepASAError`."""
        _refuse_rule_keys(changes)
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise DeepASAError(f"unknown model config key(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def diff(self, other: "DeepASAConfig") -> dict[str, tuple[Any, Any]]:
        """Fields whose values differ: ``{name: (self_value, other_value)}``."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if a[k] != b[k]}


def _named_configs() -> tuple[str, ...]:
    """Names of the YAML files in :data:`CONFIG_DIR` (the named configs), ``paper`` first."""
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    return tuple(sorted(names, key=lambda n: (n != "paper", n)))


NAMED_CONFIGS = _named_configs()


def get_config(name: str | DeepASAConfig = "paper", **overrides: Any) -> DeepASAConfig:
    """Return a model config by name (``configs/model/<name>.yaml``) or YAML path.

    Args:
        name: ``paper``, ``paper-coi``, ``uss``, ``small``, ``shipped``, ``tiny`` (any ``configs/model/<name>.yaml``);
            a path to a YAML file of fields that differ from the paper defaults; or a :class:`DeepASAConfig`
            (returned with ``overrides`` applied).
        **overrides: field values replacing the named ones.

    Raises:
        DeepASAError: unknown name, unreadable YAML, unknown keys or invalid values.

    >>> get_config("paper").n_frames, get_config("paper").n_freqs, get_config("paper").n_label_frames
    (201, 321, 40)
    """
    if isinstance(name, DeepASAConfig):
        return name.replace(**overrides) if overrides else name
    path = Path(name)
    if not path.suffix and (CONFIG_DIR / f"{name}.yaml").exists():
        path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise DeepASAError(
            f"unknown model config {name!r}: use one of {', '.join(NAMED_CONFIGS)} or a YAML file path"
        )
    return DeepASAConfig.from_dict({**load_yaml(path), **overrides})


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of config fields (an empty file is an empty mapping)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DeepASAError(f"cannot read model config {path}: {exc}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise DeepASAError(f"model config {path} must be a mapping of field: value")
    return data
