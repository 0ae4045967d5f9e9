"""Training throughput in the log: steps/s, scenes/s and where the time goes (the GPU run, ``gpu_run``).

:class:`Throughput` is a Lightning callback. Every ``every_s`` seconds it prints one line: the step, steps/s and
scenes/s since the last line, the share of the time spent inside the training step (forward, loss, backward,
optimiser; on CUDA the step is synchronised at its end, so the share is exact), the share spent outside it
(waiting for the DataLoader, checkpoints, logging), the time in validation, and the peak GPU memory. At the end
of training it writes the totals as JSON (``path``). A high "outside" share means the simulator does not keep
up: more workers, or a cheaper scene stage, not a larger batch, would help.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import torch

from deepasa.staging import atomic_path


class Throughput(L.Callback):
    """Log and sum training throughput (see the module docstring).

    Args:
        every_s: seconds between log lines.
        path: JSON file for the totals at the end of training (``None``: none).
    """

    def __init__(self, every_s: float = 30.0, path: str | None = None):
        self.every_s = float(every_s)
        self.path = path
        self._cuda = False
        self._t0 = self._last_end = self._batch_start = self._val_start = None
        self._report_t = 0.0
        self._totals = {"steps": 0, "scenes": 0, "in_step_s": 0.0, "outside_s": 0.0, "val_s": 0.0}
        self._window = dict(self._totals)
        self._first_step = None

    def _now(self) -> float:
        if self._cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_start(self, trainer, pl_module) -> None:
        """Start the clocks."""
        self._cuda = pl_module.device.type == "cuda"
        self._t0 = self._last_end = self._report_t = self._now()
        self._first_step = int(trainer.global_step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        """The time since the previous step ended was spent outside the step."""
        now = time.perf_counter()
        if self._last_end is not None:
            for acc in (self._totals, self._window):
                acc["outside_s"] += now - self._last_end
        self._batch_start = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Add the step; print a line every ``every_s`` seconds."""
        now = self._now()
        n = int(batch["mixture"].shape[0]) if isinstance(batch, dict) and "mixture" in batch else 0
        for acc in (self._totals, self._window):
            acc["in_step_s"] += now - (self._batch_start or now)
            acc["steps"] += 1
            acc["scenes"] += n
        self._last_end = now
        if now - self._report_t >= self.every_s:
            self._print(trainer, now)

    def on_validation_start(self, trainer, pl_module) -> None:
        """Validation time is counted apart (not as waiting for data)."""
        if not trainer.sanity_checking:
            self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        """Close the validation interval."""
        if self._val_start is not None:
            now = time.perf_counter()
            for acc in (self._totals, self._window):
                acc["val_s"] += now - self._val_start
            self._val_start = None
            self._last_end = now if self._last_end is not None else None

    def _print(self, trainer, now: float) -> None:
        w = self._window
        wall = max(now - self._report_t, 1e-9)
        busy = max(w["in_step_s"] + w["outside_s"], 1e-9)
        mem = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if self._cuda else ""
        print(f"throughput: step {trainer.global_step} (+{w['steps']} in {wall:.0f} s): {w['steps'] / wall:.2f} steps/s, "
              f"{w['scenes'] / wall:.1f} scenes/s; in the step {100 * w['in_step_s'] / busy:.0f} %, outside it "
              f"(data, checkpoints, logs) {100 * w['outside_s'] / busy:.0f} %; validation {w['val_s']:.0f} s{mem}",
              flush=True)
        self._window = {k: 0 if isinstance(v, int) else 0.0 for k, v in w.items()}
        self._report_t = now

    def summary(self) -> dict:
        """The totals so far: steps, scenes, seconds (in the step, outside it, validation), rates, peak memory."""
        t = dict(self._totals)
        wall = (time.perf_counter() - self._t0) if self._t0 is not None else 0.0
        busy = t["in_step_s"] + t["outside_s"]
        t.update({
            "first_step": self._first_step, "wall_s": wall,
            "steps_per_s": t["steps"] / wall if wall else None, "scenes_per_s": t["scenes"] / wall if wall else None,
            "in_step_share": t["in_step_s"] / busy if busy else None,
            "outside_share": t["outside_s"] / busy if busy else None,
            "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if self._cuda else None,
        })
        return t

    def on_train_end(self, trainer, pl_module) -> None:
        """Print the last line and write the totals."""
        self._finish(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """Training stopped on an error or a signal: the totals up to there."""
        self._finish(trainer)

    def _finish(self, trainer) -> None:
        now = time.perf_counter()
        if self._window["steps"]:
            self._print(trainer, now)
        if self.path and trainer.is_global_zero:
            path = Path(self.path)
            with atomic_path(path, "tmp") as tmp:
                tmp.write_text(json.dumps(self.summary(), indent=1) + "\n")
