"""A small resume state from a ``deepasa train`` checkpoint: what Lightning needs to continue the run elsewhere.

``python -m recipes.resume_state runs/shipped/checkpoints/last.ckpt checkpoints/shipped_resume.ckpt``
keeps the network weights (``state_dict``), the optimizer and scheduler states, the loop state (global step,
epoch, batch progress), the precision-plugin state and the model/data hyper-parameters, and drops what a run
on another machine does not need: the callbacks' state (the best-checkpoint bookkeeping of
:class:`~lightning.pytorch.callbacks.ModelCheckpoint` names files of the old machine; it restarts with the
first validation after the resume). The file is refused when it would exceed ``max_mb``.

Copy it to ``<root>/checkpoints/last.ckpt`` and ``deepasa train ... --resume`` continues at its global step
and epoch (``scripts/train_shipped.sh start`` does this for the shipped run).

A resumed run takes its plateau schedule from the checkpoint, not from its config
(``ReduceLROnPlateau.load_state_dict`` restores patience and the best score too). ``--lr-patience N`` and
``--reset-best`` edit that state on the way, and ``--lr`` sets the learning rate the run goes on with (it is
the optimizer's state, which a resume restores too, not the config's ``lr``) (:func:`edit_plateau`): an A/B of
the schedule starts from there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from deepasa.errors import DeepASAError
from deepasa.staging import atomic_path

#: Top-level checkpoint keys left out: state tied to the old machine's files, not needed to continue the fit.
DROP = ("callbacks",)

DEFAULT_MAX_MB = 10.0


def edit_plateau(ckpt: dict, patience: int | None = None, reset_best: bool = False, lr: float | None = None) -> dict:
    """Edit the ``ReduceLROnPlateau`` state of a Lightning checkpoint, and its learning rate, in place.

    Args:
        ckpt: the checkpoint dict (its ``lr_schedulers[0]`` a plateau scheduler's ``state_dict``).
        patience: the new patience in validations (``None``: unchanged).
        reset_best: forget the best score and the count of bad validations, as a fresh scheduler would.
        lr: the learning rate of every parameter group of every optimizer, and the scheduler's last rate
            (``None``: unchanged).

    Returns:
        ``{"patience": (old, new), "best": (old, new), "num_bad_epochs": (old, new), "lr": (old, new)}``
        (``lr``: the first parameter group's).

    Raises:
        DeepASAError: no plateau scheduler state in ``ckpt``, a patience below 0, or a rate not above 0 or
            below the scheduler's floor (``min_lrs``).
    """
    states = ckpt.get("lr_schedulers") or [{}]
    state = states[0]
    if not {"patience", "best", "num_bad_epochs", "mode_worse"} <= set(state):
        raise DeepASAError("the checkpoint holds no ReduceLROnPlateau state to edit")
    if patience is not None and patience < 0:
        raise DeepASAError(f"--lr-patience must be 0 or more, got {patience}")
    groups = [g for opt in ckpt.get("optimizer_states") or [] for g in opt.get("param_groups", [])]
    if lr is not None and not groups:
        raise DeepASAError("the checkpoint holds no optimizer state whose learning rate could be set")
    if lr is not None and not (lr > 0 and lr >= max(state.get("min_lrs") or [0.0])):
        raise DeepASAError(f"--lr must be above 0 and at least the schedule's floor "
                           f"{max(state.get('min_lrs') or [0.0]):g}, got {lr:g}")
    before = {k: state[k] for k in ("patience", "best", "num_bad_epochs")} | {"lr": groups[0]["lr"] if groups else None}
    if lr is not None:
        for g in groups:
            g["lr"] = float(lr)
        state["_last_lr"] = [float(lr)] * len(state.get("_last_lr") or groups)
    if patience is not None:
        state["patience"] = int(patience)
    if reset_best:
        state["best"], state["num_bad_epochs"] = state["mode_worse"], 0
    after = {k: state[k] for k in ("patience", "best", "num_bad_epochs")} | {"lr": groups[0]["lr"] if groups else None}
    return {k: (before[k], after[k]) for k in before}


def slim_checkpoint(src: str | Path, dst: str | Path, max_mb: float = DEFAULT_MAX_MB, *,
                    lr_patience: int | None = None, reset_best: bool = False, lr: float | None = None) -> dict:
    """Write the resume state of checkpoint ``src`` to ``dst`` (atomically).

    Args:
        src: a Lightning checkpoint of :class:`~deepasa.train.module.DeepASAModule` (e.g. ``last.ckpt``).
        dst: the file to write.
        max_mb: the largest file allowed, in MB (10⁶ bytes).
        lr_patience, reset_best, lr: edit the plateau schedule and the learning rate on the way
            (:func:`edit_plateau`; default: as they are).

    Returns:
        ``{"global_step", "epoch", "bytes", "dropped": [keys]}``, with ``"schedule"`` (:func:`edit_plateau`'s
        result) when the schedule was edited.

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
    edit = lr_patience is not None or reset_best or lr is not None
    schedule = edit_plateau(slim, lr_patience, reset_best, lr) if edit else None
    dst = Path(dst)
    with atomic_path(dst, "tmp") as tmp:   # the temporary is removed when over the bound
        torch.save(slim, tmp)
        size = tmp.stat().st_size
        if size > max_mb * 1e6:
            raise DeepASAError(f"the resume state of {src} would be {size / 1e6:.1f} MB, over the {max_mb:g} MB bound")
    info = {"global_step": int(ckpt.get("global_step", 0)), "epoch": int(ckpt.get("epoch", 0)), "bytes": size,
            "dropped": sorted(set(ckpt) - set(slim))}
    return info | ({"schedule": schedule} if schedule else {})


def main(argv: list[str] | None = None) -> int:
    """``python -m recipes.resume_state SRC DST [--max-mb MB] [--lr-patience N] [--reset-best] [--lr LR]``."""
    p = argparse.ArgumentParser(prog="python -m recipes.resume_state", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, help="Lightning checkpoint (last.ckpt)")
    p.add_argument("dst", type=Path, help="resume state to write")
    p.add_argument("--max-mb", type=float, default=DEFAULT_MAX_MB, help="size bound in MB (default 10)")
    p.add_argument("--lr-patience", type=int, help="set the plateau schedule's patience (validations)")
    p.add_argument("--reset-best", action="store_true", help="forget the plateau schedule's best score")
    p.add_argument("--lr", type=float, help="the learning rate to go on with (every parameter group)")
    args = p.parse_args(argv)
    info = slim_checkpoint(args.src, args.dst, args.max_mb, lr_patience=args.lr_patience, reset_best=args.reset_best,
                           lr=args.lr)
    print(f"{args.dst}: step {info['global_step']}, epoch {info['epoch']}, {info['bytes'] / 1e6:.1f} MB "
          f"(dropped: {', '.join(info['dropped']) or 'nothing'})")
    for k, (old, new) in info.get("schedule", {}).items():
        if old is not None:
            print(f"  {'learning rate' if k == 'lr' else 'plateau ' + k}: {old:g} -> {new:g}")
    return 0


if __name__ == "__main__":
    from deepasa.errors import run_script

    run_script(main)
