"""Parameter and MAC counting (docs/spec.md §3.9, §3.10), on the meta device (no memory, a few seconds).

MACs are counted with ``torch.utils.flop_counter.FlopCounterMode``, which reports FLOPs = 2·MACs for
matmuls, convolutions and attention; we divide by 2. Everything that runs as a matmul is counted: linear
and conv layers, the attention score and value products (``scaled_dot_product_attention``), the Mamba-2 SSD
scan (its chunked matmuls, :mod:`deepasa.model.mamba2`) and the GRUs. Element-wise work, FFTs and the iSTFT
are not counted (neither does ptflops, which the authors used). MAC/s = MACs of one clip / its duration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from deepasa.errors import DeepASAError
from deepasa.model.configs import DeepASAConfig, get_config

#: Paper figures (docs/spec.md §9, Table 8 and Table 3) for the comparison columns.
PAPER_REFERENCE = {
    "paper": {"params_M": 8.2, "pretrained_params_M": 96.8, "gmacs_per_second": 99.1},
    "paper-coi": {"params_M": 12.1, "pretrained_params_M": 96.8, "gmacs_per_second": 104.0},
    "uss": {"params_M": 3.8, "gmacs_per_second": 84.0},
}
#: Analytic counts of the released code without its ATST branch (docs/spec.md §3.9 totals; §3.10: 104.8 − 30.5
#: − 1.4 = 72.9 GMAC/s without CoI, + 12.8 for the CoI step without its second ATST = 85.7).
SPEC_REFERENCE = {
    "paper": {"params_M": 5.41, "gmacs_per_second": 72.9},
    "paper-coi": {"params_M": 8.82, "gmacs_per_second": 85.7},
    "uss": {"params_M": 2.28},
}


@dataclass
class Complexity:
    """Result of :func:`measure`. Per-module dicts map a module group to trainable/frozen params and GMAC/s."""

    config: str
    seconds: float
    trainable_params: int
    frozen_params: int
    gmacs_per_second: float
    modules: dict[str, dict[str, float]] = field(default_factory=dict)
    categories: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready dict, with the paper and docs/spec.md reference numbers when known."""
        return {
            "config": self.config,
            "seconds": self.seconds,
            "trainable_params": self.trainable_params,
            "frozen_params": self.frozen_params,
            "gmacs_per_second": round(self.gmacs_per_second, 3),
            "modules": self.modules,
            "categories_gmacs_per_second": self.categories,
            "paper": PAPER_REFERENCE.get(self.config),
            "spec_code_estimate_without_atst": SPEC_REFERENCE.get(self.config),
        }


def module_groups(model: nn.Module) -> dict[str, nn.Module]:
    """Reporting groups: front end, aggregator, splitter, audio heads, Net-1 ClassNet/DoANet, each CoI step."""
    groups = {"frontend": None, "aggregator": model.blocks, "splitter": model.splitter, "audio": model.audio}
    if model.seld is not None:
        groups["classnet"] = model.seld.classnet
        groups["doanet"] = model.seld.doanet
    for k, step in enumerate(model.coi):
        groups[f"coi.{k}"] = step
    return groups


_GROUP_PREFIX = {
    "frontend": ("DeepASA.stft", "DeepASA.encoder"),
    "aggregator": ("DeepASA.blocks",),
    "splitter": ("DeepASA.splitter",),
    "audio": ("DeepASA.audio",),
    "classnet": ("DeepASA.seld.classnet",),
    "doanet": ("DeepASA.seld.doanet",),
}


def _params(mods: list[nn.Module]) -> tuple[int, int]:
    ps = {id(p): p for m in mods for p in m.parameters()}.values()
    return sum(p.numel() for p in ps if p.requires_grad), sum(p.numel() for p in ps if not p.requires_grad)


def measure(config: DeepASAConfig | str = "paper", seconds: float | None = None) -> Complexity:
    """Count parameters and MACs per second of audio for a config (model built on the meta device).

    Args:
        config: config name or object.
        seconds: clip length to count on (default: the config's clip; CoI models need exactly that).

    Returns:
        :class:`Complexity`.
    """
    from deepasa.model.deepasa import DeepASA

    name = config if isinstance(config, str) else "custom"
    cfg = get_config(config)
    seconds = cfg.clip_seconds if seconds is None else float(seconds)
    if seconds <= 0:
        raise DeepASAError("--seconds must be positive")
    n = int(round(seconds * cfg.sample_rate))
    if cfg.coi_steps and n != cfg.clip_samples:
        raise DeepASAError(f"config {name!r} uses chain-of-inference: count on its clip length ({cfg.clip_seconds} s)")
    with torch.device("meta"):
        model = DeepASA(cfg).eval().to("meta")   # buffers built on the CPU (SRPRefine's geometry) follow
        x = torch.zeros(1, cfg.n_mics, n)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(x)
    counts = counter.get_flop_counts()

    def flops_of(prefix: str) -> int:
        # the counter records only modules that were *called*; for containers never called themselves
        # (ModuleList, or a module used through its sub-modules) sum their called direct children
        if prefix in counts:
            return sum(counts[prefix].values())
        child = re.compile(re.escape(prefix) + r"\.[^.]+$")
        return sum(sum(c.values()) for mod, c in counts.items() if child.match(mod))

    def gmacs(prefixes: tuple[str, ...]) -> float:
        return round(sum(flops_of(p) for p in prefixes) / 2 / 1e9 / seconds, 3)

    modules: dict[str, dict[str, float]] = {}
    for gname, mod in module_groups(model).items():
        mods = [model.stft, model.encoder] if gname == "frontend" else [mod]
        prefixes = _GROUP_PREFIX[gname] if gname in _GROUP_PREFIX else (f"DeepASA.{gname}",)
        tr, fr = _params(mods)
        modules[gname] = {"trainable_params": tr, "frozen_params": fr, "gmacs_per_second": gmacs(prefixes)}

    def category(pattern: str, ops: tuple[str, ...] = ("aten.bmm",)) -> float:
        rx = re.compile(pattern)
        total = sum(v for mod, c in counts.items() if rx.search(mod) for op, v in c.items() if str(op) in ops)
        return round(total / 2 / 1e9 / seconds, 3)

    total = sum(counts.get("Global", {}).values()) / 2 / 1e9 / seconds
    categories = {
        "attention_matmuls": category(r"(\.attn\.fn|\.attn_(sed|doa))$"),
        "mamba_ssd_scan": category(r"\.mamba_[fb]$"),
        "total": round(total, 3),
    }
    tr, fr = _params([model])
    return Complexity(name, seconds, tr, fr, total, modules, categories)


def format_table(c: Complexity) -> str:
    """Human-readable table of a :class:`Complexity`."""
    lines = [f"DeepASA complexity: config {c.config}, counted on {c.seconds:g} s of audio",
             f"{'module':<12}{'trainable':>12}{'frozen':>10}{'GMAC/s':>10}"]
    for name, m in c.modules.items():
        lines.append(f"{name:<12}{m['trainable_params']:>12,}{m['frozen_params']:>10,}{m['gmacs_per_second']:>10.2f}")
    lines.append(f"{'total':<12}{c.trainable_params:>12,}{c.frozen_params:>10,}{c.gmacs_per_second:>10.2f}")
    lines.append(f"of which attention matmuls {c.categories['attention_matmuls']:.2f} GMAC/s, "
                 f"Mamba-2 SSD scan {c.categories['mamba_ssd_scan']:.2f} GMAC/s")
    if c.config in PAPER_REFERENCE:
        p = PAPER_REFERENCE[c.config]
        extra = f" (+{p['pretrained_params_M']} M pretrained)" if "pretrained_params_M" in p else ""
        lines.append(f"paper: {p['params_M']} M{extra}, {p['gmacs_per_second']} GMAC/s")
    if c.config in SPEC_REFERENCE:
        s = SPEC_REFERENCE[c.config]
        lines.append("released code without ATST (docs/spec.md §3.9/§3.10): "
                     + ", ".join(f"{v} {'M params' if k == 'params_M' else 'GMAC/s'}" for k, v in s.items()))
    return "\n".join(lines)
