"""``last.ckpt`` written often and atomically, so a run killed at any moment resumes close to where it stopped.

Lightning's :class:`~lightning.pytorch.callbacks.ModelCheckpoint` (2.6) writes ``last.ckpt`` only when it
also writes a top-k checkpoint, i.e. only when the monitored metric improves: a run whose validation score
plateaus would resume from its last *improvement*, possibly hours back. :class:`LastCheckpoint` owns
``last.ckpt`` instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L


class LastCheckpoint(L.Callback):
    """Write ``<dirpath>/last.ckpt`` every ``every_n_steps`` optimiser steps, after every validation, at the end
    of training and when training stops on an exception (Ctrl-C included).

    The file is written beside the target and renamed into place, so a kill during the write leaves the previous
    ``last.ckpt`` intact. Every rank calls :meth:`~lightning.pytorch.Trainer.save_checkpoint` (a collective under
    DDP); rank 0 renames.

    Args:
        dirpath: the checkpoint folder.
        every_n_steps: optimiser steps between saves (0: only after validation, at the end and on exceptions).
    """

    FILENAME = "last.ckpt"

    def __init__(self, dirpath: str | Path, every_n_steps: int = 50):
        self.dirpath = Path(dirpath)
        self.every_n_steps = int(every_n_steps)
        self._saved_step = -1

    @property
    def path(self) -> Path:
        """The ``last.ckpt`` file."""
        return self.dirpath / self.FILENAME

    def save(self, trainer: "L.Trainer") -> None:
        """Write ``last.ckpt`` now (once per optimiser step)."""
        if trainer.global_step == self._saved_step or trainer.sanity_checking:
            return
        tmp = self.dirpath / f".{self.FILENAME}.part"
        trainer.save_checkpoint(tmp)
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        trainer.strategy.barrier("last_checkpoint")
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Every ``every_n_steps`` steps."""
        if self.every_n_steps > 0 and trainer.global_step > 0 and trainer.global_step % self.every_n_steps == 0:
            self.save(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        """After each validation (the monitored metrics and the best checkpoint are up to date)."""
        if trainer.state.fn == "fit":
            self.save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        """At the end of training."""
        self.save(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """When training stops on an error or an interrupt (single process: no collective to wait for)."""
        if trainer.world_size == 1 and trainer.global_step > 0:
            self.save(trainer)
