"""The fast training path: bf16 autocast where the hardware has bf16 matrix units, compiled sub-networks.

What is fast depends on the machine, so the choice is made where the run starts and printed once:

* **bf16 autocast** (Lightning ``precision: bf16-mixed``; losses and metrics stay in float32, docs/spec.md §5.1) pays
  only where bf16 matrix products run in hardware: CUDA devices with bf16 support, and x86 CPUs with
  AMX-BF16 or AVX-512-BF16. Elsewhere PyTorch emulates bf16 and it is *slower*: on this project's 2-core
  AMD EPYC (AVX2 only) a 2048² bf16 matmul takes 53 s against 0.39 s in float32, and a `small` forward 28 s
  against 6.7 s. :func:`resolve_precision` turns the recipes' ``precision: fast`` into ``bf16-mixed`` or
  ``32-true`` accordingly. Hardware units are necessary, not sufficient: on an AMX-BF16 Xeon the shipped
  ``small`` training step ran 0.75x as fast under bf16 autocast as in float32 (both compiled; its matmuls
  and convolutions are a third of the step and autocast casts around each), so that recipe names
  ``32-true`` (docs/training.md, "The fast path").
* **torch.compile** (inductor) of the trunk blocks, the splitter and the SELD heads fuses their element-wise
  chains (GroupNorm → Mish → max-pool, the Mamba gates), which dominate a CPU step. The STFT front end and the
  permutation search stay eager (complex tensors; data-dependent control flow). Compilation needs a C
  compiler on CPU (gcc here) and takes minutes once per process; where it is unavailable or fails, the
  run says so and continues eagerly (:func:`compile_model`).
"""

from __future__ import annotations

import functools
import shutil
import sys
from pathlib import Path

import torch
from torch import nn

#: the recipe value that asks for the fastest precision this machine supports
FAST = "fast"


@functools.lru_cache(maxsize=1)
def cpu_bf16_matrix_units() -> bool:
    """True when this x86 CPU multiplies bf16 matrices in hardware (``amx_bf16`` or ``avx512_bf16`` flags).

    Reads ``/proc/cpuinfo`` (Linux); elsewhere asks oneDNN (``torch.ops.mkldnn._is_mkldnn_bf16_supported``).
    """
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        return cpuinfo_has_bf16(cpuinfo.read_text(errors="replace"))
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - platform without the op
        return False


def cpuinfo_has_bf16(text: str) -> bool:
    """Whether the first ``flags`` line of a ``/proc/cpuinfo`` text names ``amx_bf16`` or ``avx512_bf16``."""
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(set(line.split(":", 1)[1].split()) & {"amx_bf16", "avx512_bf16"})
    return False


def bf16_is_fast(device_type: str) -> bool:
    """Whether bf16 autocast speeds up training on ``device_type`` ("cpu" or "cuda") of this machine."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        return cpu_bf16_matrix_units()
    return False


def resolve_precision(precision: str | int | None, accelerator: str = "auto") -> tuple[str | int | None, str]:
    """Lightning precision for a recipe value; ``"fast"`` becomes ``"bf16-mixed"`` or ``"32-true"``.

    Args:
        precision: the recipe's ``trainer.precision``; any value other than ``"fast"`` is returned as is.
        accelerator: the recipe's ``trainer.accelerator`` ("auto" = CUDA when available, else CPU).

    Returns:
        (precision, reason): the reason is a short sentence for the log ("" when nothing was resolved).
    """
    if precision != FAST:
        return precision, ""
    device = "cuda" if accelerator in ("cuda", "gpu") or (accelerator == "auto" and torch.cuda.is_available()) \
        else "cpu"
    if bf16_is_fast(device):
        return "bf16-mixed", f"fast path: bf16-mixed on {device} (hardware bf16 matrix units)"
    why = "no AMX-BF16/AVX-512-BF16 on this CPU" if device == "cpu" else "this GPU has no bf16"
    return "32-true", f"fast path: float32 on {device} ({why}: bf16 would be emulated and slower)"


def compile_available() -> tuple[bool, str]:
    """Whether torch.compile (inductor) can run here; (ok, reason when not)."""
    if not hasattr(torch, "compile"):
        return False, "this torch has no torch.compile"
    if sys.platform == "win32":
        return False, "inductor does not run on Windows"
    if not torch.cuda.is_available() and shutil.which("gcc") is None and shutil.which("cc") is None:
        return False, "no C compiler (gcc) for inductor's CPU kernels"
    return True, ""


#: sub-modules of DeepASA that are compiled (each a graph of its own; the front end stays eager)
COMPILED_PARTS = ("blocks", "splitter", "seld", "coi")


def compile_model(model: nn.Module, parts: tuple[str, ...] = COMPILED_PARTS, log=print) -> list[str]:
    """Compile the listed sub-modules of a :class:`~deepasa.model.DeepASA` in place (``nn.Module.compile``).

    ``nn.ModuleList`` parts are compiled element by element. Compilation is lazy (the first forward pays it);
    a graph that inductor cannot compile runs eagerly instead of failing the run
    (``torch._dynamo.config.suppress_errors``). Parameters and the state-dict keys are unchanged.

    Returns:
        the names of the compiled modules (empty when compilation is unavailable; the reason is logged).
    """
    ok, why = compile_available()
    if not ok:
        log(f"fast path: torch.compile unavailable ({why}); running eagerly")
        return []
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True
    done = []
    for name in parts:
        sub = getattr(model, name, None)
        if sub is None:
            continue
        items = list(sub.named_children()) if isinstance(sub, nn.ModuleList) else [("", sub)]
        for child_name, child in items:
            child.compile(dynamic=False)
            done.append(f"{name}.{child_name}" if child_name else name)
    log(f"fast path: torch.compile of {', '.join(done)} (compiled at the first step)")
    return done
