"""A small resume state from a ``deepasa train`` checkpoint: what Lightning needs to continue the run elsewhere.

``python -m deepasa.train.resume_state runs/shipped/checkpoints/last.ckpt checkpoints/shipped_resume.ckpt``
keeps the network weights (``state_dict``), the optimizer and scheduler states, the loop state (global step,
epoch, batch progress), the precision-plugin state and the model/data hyper-parameters, and drops what a run
on another machine does not need: the callbacks' state (the best-checkpoint bookkeeping of
:class:`~lightning.pytorch.callbacks.ModelCheckpoint` names files of the old machine; it restarts with the
first validation after the resume). The file is refused when it would exceed ``max_mb``.

Copy it to ``<root>/checkpoints/last.ckpt`` and ``deepasa train ... --resume`` continues at its global step
and epoch (``scripts/train_shipped.sh start`` does this for the shipped run).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from deepasa.errors import DeepASAError

#: Top-level checkpoint keys left out: state tied to the old machine's files, not needed to continue the fit.
DROP = ("callbacks",)

DEFAULT_MAX_MB = 10.0


def slim_checkpoint(src: str | Path, dst: str | Path, max_mb: float = DEFAULT_MAX_MB) -> dict:
    """Write the resume state of checkpoint ``src`` to ``dst`` (atomically).

    Args:
        src: a Lightning checkpoint of :class:`~deepasa.train.module.DeepASAModule` (e.g. ``last.ckpt``).
        dst: the file to write.
        max_mb: the largest file allowed, in MB (10⁶ bytes).

    Returns:
        ``{"global_step", "epoch", "bytes", "dropped": [keys]}``.

    Raises:
        DeepASAError: ``src`` unreadable or not a training checkpoint (no optimizer/loop state), or the result
            larger than ``max_mb`` (nothing is written then).
    """
    from deepasa.model.deepasa import read_checkpoint

    ckpt = read_checkpoint(src)
    missing = [k for k in ("state_dict", "optimizer_states", "loops", "deepasa_model") if k not in (ckpt or {})]
    if missing:
        raise DeepASAError(f"{src} is not a resumable `deepasa train` checkpoint (no {', '.join(missing)})")
    slim = {k: v for k, v in ckpt.items() if k not in DROP}
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    torch.save(slim, tmp)
    size = tmp.stat().st_size
    if size > max_mb * 1e6:
        tmp.unlink()
        raise DeepASAError(f"the resume state of {src} would be {size / 1e6:.1f} MB, over the {max_mb:g} MB bound")
    os.replace(tmp, dst)
    return {"global_step": int(ckpt.get("global_step", 0)), "epoch": int(ckpt.get("epoch", 0)), "bytes": size,
            "dropped": sorted(set(ckpt) - set(slim))}


def main(argv: list[str] | None = None) -> int:
    """``python -m deepasa.train.resume_state SRC DST [--max-mb MB]``."""
    p = argparse.ArgumentParser(prog="python -m deepasa.train.resume_state", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, help="Lightning checkpoint (last.ckpt)")
    p.add_argument("dst", type=Path, help="resume state to write")
    p.add_argument("--max-mb", type=float, default=DEFAULT_MAX_MB, help="size bound in MB (default 10)")
    args = p.parse_args(argv)
    info = slim_checkpoint(args.src, args.dst, args.max_mb)
    print(f"{args.dst}: step {info['global_step']}, epoch {info['epoch']}, {info['bytes'] / 1e6:.1f} MB "
          f"(dropped: {', '.join(info['dropped']) or 'nothing'})")
    return 0


if __name__ == "__main__":
    from deepasa.errors import run_script

    run_script(main)
