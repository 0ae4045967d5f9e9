"""The training losses of a run, kept across machines: Lightning's ``metrics.csv`` files merged by step.

    python -m recipes.loss_history runs/shipped/logs/version_*/metrics.csv \
        --out checkpoints/eval/shipped_train_loss.csv [--summary 500]

A run's ``logs/version_*/metrics.csv`` (one row every ``log_every_n_steps``) stays on the machine that trained;
the resume state in the repository keeps the weights, not the curve of the training losses. This command merges
the logged ``train/*`` terms (one step's values), their epoch means ``train_epoch/*`` (logged at each epoch's last
step) and the learning rate, one row per logged global step, into ``--out``: a step
present in the new logs replaces that step's row in the file, every other row is kept. So each session adds its
stretch of the run (running it twice adds nothing twice), and the file is the run's whole training-loss curve.
Columns: ``step, lr``, then the terms in first-seen order (empty where a step has no value).
``--summary N`` also prints the file's means over bins of N steps.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from deepasa.errors import DeepASAError, run_script
from deepasa.staging import atomic_path

#: The logged columns kept: each step's terms and their epoch means (``DeepASAModule.training_step``).
TERMS = ("train/", "train_epoch/")


def _float(text: str | None) -> float | None:
    """A CSV cell as a float (``None`` when empty, unreadable or not finite)."""
    try:
        v = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return v if v is not None and math.isfinite(v) else None


def read_metrics(paths: list[Path]) -> tuple[dict[int, dict[str, float]], list[str]]:
    """The logged training values of Lightning ``metrics.csv`` files, by global step.

    Returns ``(by_step, terms)``: ``{step: {"lr": ..., "train/loss": ..., ...}}`` for every step with a
    :data:`TERMS` or learning-rate value (Lightning writes them on separate rows; later files win), and those
    column names in first-seen order.
    """
    by_step: dict[int, dict[str, float]] = {}
    terms: list[str] = []
    for path in paths:
        if not path.is_file():
            raise DeepASAError(f"no metrics file at {path}")
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "step" not in reader.fieldnames:
                raise DeepASAError(f"{path} is not a Lightning metrics.csv (no step column)")
            lr_col = next((c for c in reader.fieldnames if c.startswith("lr-")), None)
            cols = [c for c in reader.fieldnames if c.startswith(TERMS)]
            terms += [c for c in cols if c not in terms]
            for rec in reader:
                step = _float(rec.get("step"))
                if step is None:
                    continue
                row = {k: v for k in cols if (v := _float(rec.get(k))) is not None}
                if lr_col and (lr := _float(rec.get(lr_col))) is not None:
                    row["lr"] = lr
                if row:
                    by_step.setdefault(int(step), {}).update(row)
    return by_step, terms


def merge_into(path: Path, by_step: dict[int, dict[str, float]], terms: list[str]) -> dict[int, dict]:
    """Merge ``by_step`` into the CSV at ``path`` (a new step's row replaces the file's); written atomically.

    Returns every row of the file afterwards, ``{step: {column: value}}``."""
    old: dict[int, dict] = {}
    columns = ["step", "lr", *terms]
    if path.is_file():
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or reader.fieldnames[:2] != ["step", "lr"]:
                raise DeepASAError(f"{path} is not a loss-history CSV (its first columns are not step, lr)")
            columns = [*reader.fieldnames, *(t for t in terms if t not in reader.fieldnames)]
            for rec in reader:
                step = _float(rec["step"])
                if step is None or step != int(step):
                    raise DeepASAError(f"{path} has a row whose step is not a whole number: {rec['step']!r}")
                old[int(step)] = {k: v for k in reader.fieldnames[1:] if (v := _float(rec[k])) is not None}
    merged = {**old, **by_step}
    with atomic_path(path, "tmp") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, restval="")
        w.writeheader()
        for step in sorted(merged):
            w.writerow({"step": step, **{k: f"{v:.6g}" for k, v in merged[step].items()}})
    return merged


def bin_means(rows: dict[int, dict[str, float]], width: int) -> list[dict]:
    """Means of ``rows`` (``{step: {column: value}}``) over bins of ``width`` steps, in step order:
    ``[{"step_start", "step_end", "rows", column: mean, ...}]``; ``rows`` counts the steps with a value."""
    acc: dict[int, dict[str, list[float]]] = {}
    for step, row in rows.items():
        bucket = acc.setdefault(step // width * width, {})
        for k, v in row.items():
            bucket.setdefault(k, []).append(v)
    return [{"step_start": start, "step_end": start + width,
             "rows": max((len(v) for k, v in bucket.items() if k != "lr"), default=0),
             **{k: sum(v) / len(v) for k, v in bucket.items()}} for start, bucket in sorted(acc.items())]


def main(argv: list[str] | None = None) -> int:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("metrics", nargs="+", type=Path, help="Lightning metrics.csv files of one run")
    ap.add_argument("--out", required=True, type=Path, help="the loss-history CSV to merge into")
    ap.add_argument("--summary", type=int, default=0, metavar="N", help="print means over bins of N steps")
    args = ap.parse_args(argv)
    if args.summary < 0:
        raise DeepASAError(f"--summary must be a number of steps, got {args.summary}")
    by_step, terms = read_metrics(args.metrics)
    rows = merge_into(args.out, by_step, terms)
    span = f"steps {min(by_step)}-{max(by_step)}" if by_step else "no training rows"
    print(f"{args.out}: {len(by_step)} logged step(s) from the logs ({span}), {len(rows)} in the file")
    if args.summary:
        show = ["lr", "train/loss", *(t for t in terms if t != "train/loss")][:8]
        print("steps".ljust(13) + "".join(k.removeprefix("train/").rjust(11) for k in show))
        for b in bin_means(rows, args.summary):
            cells = "".join((f"{b[k]:11.4g}" if k in b else " " * 11) for k in show)
            print(f"{b['step_start']}-{b['step_end']}".ljust(13) + cells)
    return 0


if __name__ == "__main__":
    run_script(main)
