"""Plot and tabulate the validation curve of one or more ``deepasa train`` runs (their CSV logs).

    python scripts/training_curve.py RUN_DIR [RUN_DIR ...] --png checkpoints/training_curve.png \
        --csv checkpoints/training_curve.csv

Each run directory is a ``trainer.default_root_dir``; every ``logs/version_*/metrics.csv`` in it is read (a
resumed run writes a new version) and the validation rows are joined in step order. Runs given later continue
the step axis of the earlier ones (a CoI stage after its Net-1 stage).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from deepasa.errors import DeepASAError, run_script

KEYS = ("val/si_sdri_db", "val/direct_si_sdri_db", "val/seld_score", "val/ER", "val/F", "val/LE", "val/LR",
        "val/net1_seld_score", "val/loss")


def read_run(run: Path) -> list[dict]:
    """Validation rows ``{"step", key: value}`` of one run, sorted by step (later versions win on ties)."""
    rows: dict[int, dict] = {}
    for path in sorted(run.glob("logs/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1])):
        with open(path, newline="") as fh:
            for r in csv.DictReader(fh):
                if r.get("val/loss"):
                    rows[int(r["step"])] = {"step": int(r["step"]),
                                            **{k: float(r[k]) for k in KEYS if r.get(k) not in (None, "")}}
    return [rows[s] for s in sorted(rows)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--max-step", type=int, nargs="+", help="per run, the last step to keep (the step a later "
                   "stage branched from; -1 = all)")
    p.add_argument("--png", type=Path)
    p.add_argument("--csv", type=Path)
    args = p.parse_args()
    table: list[dict] = []
    offset = 0
    limits = args.max_step or [-1] * len(args.runs)
    if len(limits) != len(args.runs):
        raise DeepASAError("give one --max-step per run")
    for run, limit in zip(args.runs, limits):
        rows = [r for r in read_run(run) if limit < 0 or r["step"] <= limit]
        if not rows:
            raise DeepASAError(f"no validation rows in {run}/logs")
        for r in rows:
            table.append({"run": run.name, "global_step": r["step"] + offset, **r})
        offset += rows[-1]["step"] + 1 if limit < 0 else limit + 1
    if args.csv:
        fields = ["run", "global_step", "step", *KEYS]
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            for r in table:
                w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        for run in dict.fromkeys(r["run"] for r in table):
            rs = [r for r in table if r["run"] == run]
            x = [r["global_step"] for r in rs]
            axes[0].plot(x, [r.get("val/si_sdri_db") for r in rs], marker=".", label=f"{run} image")
            axes[0].plot(x, [r.get("val/direct_si_sdri_db") for r in rs], ls="--", label=f"{run} direct")
            axes[1].plot(x, [r.get("val/seld_score") for r in rs], marker=".", label=run)
        axes[0].set(xlabel="optimiser step (batch 2)", ylabel="val SI-SDRi (dB)", title="separation")
        axes[1].set(xlabel="optimiser step (batch 2)", ylabel="val SELD score (lower is better)", title="SELD")
        for ax in axes:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
    for r in table[-3:]:
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()})


if __name__ == "__main__":
    run_script(main)
