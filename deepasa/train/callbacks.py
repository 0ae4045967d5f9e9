"""``last.ckpt`` written often and atomically, so a run killed at any moment resumes close to where it stopped.

Lightning's :class:`~lightning.pytorch.callbacks.ModelCheckpoint` (2.6) writes ``last.ckpt`` only when it
also writes a top-k checkpoint, i.e. only when the monitored metric improves: a run whose validation score
plateaus would resume from its last *improvement*, possibly hours back. :class:`LastCheckpoint` owns
``last.ckpt`` instead.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import lightning as L

from deepasa.staging import atomic_path, remove_stale, temp_sibling


class LastCheckpoint(L.Callback):
    """Write ``<dirpath>/last.ckpt`` every ``every_n_steps`` optimiser steps or ``every_n_minutes`` of training,
    whichever comes first, after every validation, at the end of training and when training stops on an exception
    (Ctrl-C included). A ``kill -9`` at any moment therefore loses at most ``every_n_minutes`` plus one step.

    The file is written beside the target (``.last.ckpt.part-<pid>``) and renamed into place, so a kill during the
    write leaves the previous ``last.ckpt`` intact; such a temporary of a process that no longer runs is removed
    when the next training starts (:func:`deepasa.staging.remove_stale`, one line on stderr). Every rank calls :meth:`~lightning.pytorch.Trainer.save_checkpoint` (a collective under
    DDP); rank 0 renames.

    Args:
        dirpath: the checkpoint folder.
        every_n_steps: optimiser steps between saves (0: no step schedule).
        every_n_minutes: wall-clock minutes between saves, checked after every step (0 or None: no time schedule).
            With neither schedule, last.ckpt is written only after validation, at the end and on exceptions.
    """

    FILENAME = "last.ckpt"

    def __init__(self, dirpath: str | Path, every_n_steps: int = 50, every_n_minutes: float | None = None):
        self.dirpath = Path(dirpath)
        self.every_n_steps = int(every_n_steps)
        self.every_s = 60.0 * float(every_n_minutes) if every_n_minutes else 0.0
        self._saved_step = -1
        self._saved_at = time.monotonic()       # the time schedule counts from the start of training

    @property
    def path(self) -> Path:
        """The ``last.ckpt`` file."""
        return self.dirpath / self.FILENAME

    def save(self, trainer: "L.Trainer") -> None:
        """Write ``last.ckpt`` now (once per optimiser step)."""
        if trainer.global_step == self._saved_step or trainer.sanity_checking:
            return
        if trainer.is_global_zero:
            with atomic_path(self.path, "part") as tmp:
                trainer.save_checkpoint(tmp)
        else:   # a collective under DDP: the other ranks take part, only rank 0 writes the file
            trainer.save_checkpoint(temp_sibling(self.path, "part"))
        trainer.strategy.barrier("last_checkpoint")
        self._saved_step = trainer.global_step
        self._saved_at = time.monotonic()

    def remove_stale(self) -> list:
        """Remove the ``.last.ckpt.part-<pid>`` files of killed runs (never a live process's); returns them."""
        return remove_stale(self.dirpath, self.FILENAME, tags=("part",),
                            log=lambda msg: print(f"deepasa train: {msg}", file=sys.stderr, flush=True))

    def setup(self, trainer, pl_module, stage: str) -> None:
        """Before fitting (rank 0): clear what killed runs left in the checkpoint folder."""
        if stage == "fit" and trainer.is_global_zero:
            self.remove_stale()
        self._saved_at = time.monotonic()

    def due(self, global_step: int, single_process: bool = True, now: float | None = None) -> bool:
        """Whether the step or the time schedule asks for a save after optimiser step ``global_step``.

        The time schedule applies to single-process runs only: a save is a collective under DDP and the ranks'
        clocks differ, so there only the step schedule triggers."""
        if global_step <= 0:
            return False
        if self.every_n_steps > 0 and global_step % self.every_n_steps == 0:
            return True
        now = time.monotonic() if now is None else now
        return single_process and self.every_s > 0 and now - self._saved_at >= self.every_s

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """After every step: save when :meth:`due`."""
        if self.due(trainer.global_step, trainer.world_size == 1):
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


class PlateauAfterResume(L.Callback):
    """Update the ``ReduceLROnPlateau`` schedulers at the end of an epoch that a resume entered mid-way.

    Lightning (2.6) updates plateau schedulers at an epoch's end only when its fit loop is not restarting, and a
    run resumed mid-epoch is still restarting at the end of that epoch (``_FitLoop.on_advance_end``): its first
    validation after the resume never reaches the scheduler, so a run's effective patience grew with every
    interruption (docs/notebook/shipped-run-stage4.md, "The learning-rate schedule"). This callback makes that one update itself,
    with the same arguments as the fit loop's own; where the fit loop updates, it does nothing, so no epoch is
    counted twice and a resumed run's schedule is that of a run that never stopped.
    """

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """At an epoch's end, before the fit loop's own (skipped) plateau update."""
        loop = trainer.fit_loop
        if loop.restarting and loop.epoch_loop._num_ready_batches_reached():
            loop.epoch_loop.update_lr_schedulers("epoch", update_plateau_schedulers=True)
