"""Regenerate the metrics table of the model card (checkpoints/README.md) from its `deepasa evaluate` reports.

    python scripts/model_card.py            # rewrites the table between the metrics markers
    python scripts/model_card.py --check    # exit 1 if the card's table differs from the reports

The reports are ``checkpoints/eval/default.json`` (the shipped CoI model; its ``net1`` block is the Net-1 pass
of the same weights) and ``checkpoints/eval/net1.json`` (the Net-1 stage model ``checkpoints/net1.pt``), both
written by ``deepasa evaluate --checkpoint checkpoints/<model>.pt --data data/scenes --split test --out …``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from deepasa.errors import DeepASAError, run_script

REPO = Path(__file__).resolve().parents[1]
CARD = REPO / "checkpoints" / "README.md"
REPORTS = {"default.pt (Net 1 + CoI)": "default.json", "net1.pt (Net-1 stage)": "net1.json"}
START, END = "<!-- metrics:start -->", "<!-- metrics:end -->"
ROWS = [
    ("separation", "si_sdri_db", "image SI-SDRi, reference channel (dB) ↑"),
    ("separation", "sdri_db", "image SDRi, reference channel (dB) ↑"),
    ("separation", "si_sdri_m2m_db", "image SI-SDRi, all channels (dB) ↑"),
    ("separation", "direct_si_sdri_db", "direct-path SI-SDRi, reference channel (dB) ↑"),
    ("separation", "direct_sdri_db", "direct-path SDRi, reference channel (dB) ↑"),
    ("ca_sdri", "ca_sdri_db", "CA-SDRi (dB) ↑"),
    ("seld", "ER", "frame ER ↓"),
    ("seld", "F", "frame F ↑"),
    ("seld", "LE", "frame LE (°) ↓"),
    ("seld", "LR", "frame LR ↑"),
    ("seld", "SELD", "frame SELD score ↓"),
    ("localization", "F", "class-agnostic frame F ↑"),
    ("localization", "LE", "class-agnostic frame LE (°) ↓"),
    ("objects", "detection_rate", "analysed objects: true sources detected ↑"),
    ("objects", "class_accuracy", "analysed objects: class accuracy of the detected ↑"),
    ("objects", "doa_error_median_deg", "analysed objects: median DoA error of the detected (°) ↓"),
    ("objects", "class_accuracy_all", "class accuracy of every source's slot, detected or not ↑"),
    ("dcase", "ER", "DCASE 2023 segment ER ↓"),
    ("dcase", "F", "DCASE 2023 segment F ↑"),
    ("dcase", "LE", "DCASE 2023 segment LE (°) ↓"),
    ("dcase", "LR", "DCASE 2023 segment LR ↑"),
    ("dcase", "SELD", "DCASE 2023 segment SELD score ↓"),
]


def _cell(report: dict, block: str, key: str) -> str:
    value = report.get(block, {}).get(key)
    if value is None or value != value:        # absent, or NaN (e.g. the DoA error when nothing is detected)
        return "—"
    lo, hi = report.get("ci95", {}).get(f"{block}.{key}", [None, None])
    digits = 1 if key in ("LE", "doa_error_median_deg") else 2 if key.endswith("_db") else 3
    ci = f" [{lo:.{digits}f}, {hi:.{digits}f}]" if lo is not None and hi is not None else ""
    return f"{value:.{digits}f}{ci}"


def table(reports_dir: Path) -> str:
    """The Markdown table: one row per metric, one column per model (mean [95 % interval])."""
    reports = {}
    for title, name in REPORTS.items():
        path = reports_dir / name
        if path.is_file():
            reports[title] = json.loads(path.read_text())
    if not reports:
        raise DeepASAError(f"no report in {reports_dir}")
    cols = list(reports.items())
    if "net1" in cols[0][1]:
        cols.insert(1, ("default.pt, its Net-1 pass", {**cols[0][1]["net1"]}))
    n = {r.get("n_items") for _, r in cols if "n_items" in r}
    lines = [f"{n.pop() if len(n) == 1 else '?'} test scenes; mean [95 % interval: Student t for separation, "
             "jackknife for SELD].", "",
             "| metric | " + " | ".join(t for t, _ in cols) + " |", "|---|" + "---|" * len(cols)]
    for block, key, label in ROWS:
        if any(block in r for _, r in cols):
            lines.append(f"| {label} | " + " | ".join(_cell(r, block, key) for _, r in cols) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only compare; exit 1 when the card is out of date")
    p.add_argument("--card", type=Path, default=CARD)
    p.add_argument("--reports", type=Path, default=CARD.parent / "eval")
    args = p.parse_args()
    text = args.card.read_text()
    pattern = re.compile(re.escape(START) + r"\n(.*?)" + re.escape(END), re.S)
    found = pattern.search(text)
    if not found:
        raise DeepASAError(f"{args.card} has no {START} … {END} block")
    new = table(args.reports)
    if args.check:
        if found.group(1) != new:
            print(f"{args.card}: the metrics table differs from {args.reports}/*.json", file=sys.stderr)
            return 1
        return 0
    args.card.write_text(pattern.sub(lambda _: f"{START}\n{new}{END}", text))
    print(new)
    return 0


if __name__ == "__main__":
    run_script(main)
