"""Regenerate the metrics tables of the model card (checkpoints/README.md) from its `deepasa evaluate` reports.

    python scripts/model_card.py            # rewrites the tables between the metrics and by-num-sources markers
    python scripts/model_card.py --check    # exit 1 if the card's tables differ from the reports

Two blocks of the card are generated:

* ``<!-- metrics:start -->`` … ``<!-- metrics:end -->``: every metric on the default test set (a), one column per
  report of :data:`REPORTS` that exists: ``checkpoints/eval/default.json`` (the shipped model), and for
  comparison ``previous_default.json`` (the Net 1 + CoI model shipped until 2026-12-02; its file is in the git
  history) and ``net1.json`` (that model's Net-1 stage, ``checkpoints/net1.pt``). A CoI model's report has a
  ``net1`` block, the Net-1 pass of the same weights, shown as a column of its own beside it. The reports are
  written by ``deepasa evaluate --checkpoint checkpoints/<model>.pt --data <root> --split test --out …``;
* ``<!-- by-num-sources:start -->`` … ``<!-- by-num-sources:end -->`` (:func:`by_num_sources_section`): the
  training cost of each model and, for each of the two held-out test sets of :data:`TEST_SETS` — (a) the
  default 2–5-source scenes (seed 2025; the reports above) and (b) 1–2-source scenes (seed 2026;
  ``checkpoints/eval/default_1-2.json``, ``net1_1-2.json``) — one table per number of sources with the object,
  separation, frame-SELD and DCASE rows, mean [95 % interval], one column per report (and per CoI model's
  Net-1 pass). A report without the ``by_num_sources`` block (written before ``deepasa evaluate`` had it) or a
  test set without reports is rendered as a sentence saying the breakdown is not available.

The training cost is read from ``--training`` (default ``checkpoints/eval/training.json``), one object per model
file::

    {"default.pt": {"scene_passes": 6230, "wall_hours": 3.88, "threads": 2, "hardware": "2-core x86-64 CPU",
                    "note": "Net 1 1,200 x 2 + CoI 1,915 x 2"}, "net1.pt": {...}}

``scene_passes`` (scenes seen in training, all stages that led to the file), ``wall_hours``, ``threads`` and
optionally ``cpu_hours`` (default ``wall_hours × threads``), ``hardware``, ``note``; without the file the card
says the cost is not given.
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
#: Column titles: the shipped model, the model it replaced on 2026-12-02 (its report kept as
#: ``previous_default.json``) and that model's Net-1 stage (``checkpoints/net1.pt``).
SHIPPED, PREVIOUS = "default.pt", "previous default.pt (Net 1 + CoI, 2026-11-21)"
NET1 = "net1.pt (Net-1 stage of the previous model)"
REPORTS = {SHIPPED: "default.json", PREVIOUS: "previous_default.json", NET1: "net1.json"}
START, END = "<!-- metrics:start -->", "<!-- metrics:end -->"
BY_N_START, BY_N_END = "<!-- by-num-sources:start -->", "<!-- by-num-sources:end -->"
TRAINING = "training.json"
#: The two held-out test sets of the card: (key, title, data root, simulate command, {column: report file}).
TEST_SETS = [
    ("a", "default scenes, 2–5 sources (probabilities 0.1/0.2/0.3/0.4)", "/work/data/sim",
     "deepasa simulate --out /work/data/sim --split test --num-scenes 200 --seed 2025 --workers 2 --subtype FLOAT",
     {SHIPPED: "default.json", PREVIOUS: "previous_default.json", NET1: "net1.json"}),
    ("b", "1–2 sources (half each)", "/work/data/sim_1-2",
     "deepasa simulate --out /work/data/sim_1-2 --split test --num-scenes 200 --seed 2026 --workers 2 "
     "--subtype FLOAT --set 'num_sources=[1,2]' --set 'num_sources_weights=[0.5,0.5]'",
     {SHIPPED: "default_1-2.json", NET1: "net1_1-2.json"}),
]
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
#: The rows of each per-N table: (block, key, label), the labels those of ROWS.
BY_N_KEYS = [("objects", "detection_rate"), ("objects", "class_accuracy"), ("objects", "doa_error_median_deg"),
             ("separation", "si_sdri_db"), ("separation", "direct_si_sdri_db"),
             *[("seld", k) for k in ("SELD", "ER", "F", "LE", "LR")],
             *[("dcase", k) for k in ("SELD", "ER", "F", "LE", "LR")]]
_LABELS = {(block, key): label for block, key, label in ROWS}
BY_N_ROWS = [(block, key, _LABELS[block, key]) for block, key in BY_N_KEYS]


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
    cols = []
    for title, rep in reports.items():
        cols.append((title, rep))
        if "net1" in rep:                              # a CoI model: its own Net-1 pass beside it
            cols.append((net1_pass_title(title), {**rep["net1"]}))
    n = {r.get("n_items") for _, r in cols if "n_items" in r}
    boot = ", bootstrap over clips for the object rows" if any("objects.detection_rate" in r.get("ci95", {})
                                                                  for _, r in cols) else ""
    lines = [f"{n.pop() if len(n) == 1 else '?'} test scenes; mean [95 % interval: Student t for separation, "
             f"jackknife for SELD{boot}].", "",
             "| metric | " + " | ".join(t for t, _ in cols) + " |", "|---|" + "---|" * len(cols)]
    for block, key, label in ROWS:
        if any(block in r for _, r in cols):
            lines.append(f"| {label} | " + " | ".join(_cell(r, block, key) for _, r in cols) + " |")
    return "\n".join(lines) + "\n"


def net1_pass_title(title: str) -> str:
    """The column title of a CoI model's own Net-1 pass: ``"default.pt (…)"`` -> ``"default.pt, its Net-1 pass"``."""
    return f"{title.split(' (')[0]}, its Net-1 pass"


def _load(reports_dir: Path, files: dict[str, str]) -> list[tuple[str, dict]]:
    """The (column title, report) pairs of the files that exist, a CoI model's own Net-1 pass inserted after it."""
    cols = []
    for title, name in files.items():
        path = reports_dir / name
        if path.is_file():
            rep = json.loads(path.read_text())
            cols.append((title, rep))
            if "net1" in rep:
                cols.append((net1_pass_title(title), rep["net1"]))
    return cols


def _training_table(path: Path) -> list[str]:
    """Markdown lines: the scene passes and CPU hours of each model file, from ``path`` (see the module docstring)."""
    if not path.is_file():
        return [f"Training cost: not given (no `{path.name}` beside the reports).", ""]
    info = json.loads(path.read_text())
    lines = [f"Training cost (`{path.name}`; CPU hours = wall hours × threads unless stated):", "",
             "| model | scene passes | wall hours | threads | CPU hours | hardware | note |", "|---|---|---|---|---|---|---|"]
    for model, d in info.items():
        wall, threads = d.get("wall_hours"), d.get("threads")
        cpu = d.get("cpu_hours", wall * threads if wall is not None and threads is not None else None)
        cells = [f"{d['scene_passes']:,}" if "scene_passes" in d else "—",
                 f"{wall:.1f}" if wall is not None else "—", str(threads) if threads is not None else "—",
                 f"{cpu:.1f}" if cpu is not None else "—", str(d.get("hardware", "—")), str(d.get("note", ""))]
        lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
    return lines + [""]


def by_num_sources_section(reports_dir: Path, training: Path | None = None) -> str:
    """The Markdown of the card's per-number-of-sources block, for both test sets of :data:`TEST_SETS`.

    Args:
        reports_dir: the folder of the ``deepasa evaluate`` reports (``checkpoints/eval``).
        training: the training-cost file (default ``reports_dir/training.json``).

    Returns:
        the text between the by-num-sources markers: the training-cost table, then per test set its simulate
        command and, per number of sources N, a table (one row per metric of :data:`BY_N_ROWS`, one column per
        model: CoI, its own Net-1 pass, the Net-1 stage; mean [95 % interval]); or a sentence where the reports
        are missing or lack the ``by_num_sources`` block.
    """
    training = training if training is not None else reports_dir / TRAINING
    lines = ["Two held-out test sets, each simulated with a seed of its own and never used for a choice; every "
             "metric per number of true sources (`by_num_sources` of the `deepasa evaluate` report). Mean [95 % "
             "interval: Student t over clips for separation, jackknife over clips for frame SELD and over "
             "recordings for DCASE, bootstrap over clips for the object rows].", ""]
    lines += _training_table(training)
    for key, title, root, simulate, files in TEST_SETS:
        lines += [f"### Test set ({key}): {title}", "", "```bash", simulate]
        lines += [f"deepasa evaluate --checkpoint checkpoints/{t.split(' ')[0]} --data {root} --split test "
                  f"--out checkpoints/eval/{name}" for t, name in files.items() if t != PREVIOUS]
        lines += ["```", ""]
        cols = _load(reports_dir, files)
        if not cols:
            lines += [f"No reports yet ({', '.join(f'`{n}`' for n in files.values())}): the breakdown is not "
                      "available.", ""]
            continue
        missing = [f"`{files[t]}`" for t, r in cols if t in files and "by_num_sources" not in r]
        counts = sorted({int(n) for _, r in cols for n in r.get("by_num_sources", {})})
        if not counts:
            lines += [f"The breakdown is not available for these reports ({', '.join(missing)}: written before "
                      "`deepasa evaluate` reported `by_num_sources`; the commands above rewrite them).", ""]
            continue
        if missing:
            lines += [f"The breakdown is not available for {', '.join(missing)} (written before `deepasa evaluate` "
                      "reported `by_num_sources`): its column shows —.", ""]
        for n in counts:
            per = [(t, r.get("by_num_sources", {}).get(str(n), {})) for t, r in cols]
            sizes = {(b.get("n_items"), b.get("n_sources")) for _, b in per if b}
            clips, sources = sizes.pop() if len(sizes) == 1 else ("?", "?")
            lines += [f"**{n} source{'s' if n != 1 else ''}** ({clips} clips, {sources} sources)", "",
                      "| metric | " + " | ".join(t for t, _ in per) + " |", "|---|" + "---|" * len(per)]
            for block, metric, label in BY_N_ROWS:
                if any(block in b for _, b in per):
                    lines.append(f"| {label} | " + " | ".join(_cell(b, block, metric) for _, b in per) + " |")
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _block(text: str, start: str, end: str):
    """The match of the generated block between the markers ``start`` and ``end`` in ``text`` (None if absent)."""
    return re.compile(re.escape(start) + r"\n(.*?)" + re.escape(end), re.S).search(text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only compare; exit 1 when the card is out of date")
    p.add_argument("--card", type=Path, default=CARD)
    p.add_argument("--reports", type=Path, default=CARD.parent / "eval")
    p.add_argument("--training", type=Path, help=f"training-cost JSON (default: REPORTS/{TRAINING})")
    args = p.parse_args()
    text = args.card.read_text()
    found = _block(text, START, END)
    if not found:
        raise DeepASAError(f"{args.card} has no {START} … {END} block")
    new = table(args.reports)
    by_n = by_num_sources_section(args.reports, args.training)
    found_n = _block(text, BY_N_START, BY_N_END)
    if args.check:
        if found.group(1) != new:
            print(f"{args.card}: the metrics table differs from {args.reports}/*.json", file=sys.stderr)
            return 1
        if found_n is None or found_n.group(1) != by_n:
            print(f"{args.card}: the per-number-of-sources block differs from {args.reports}/*.json "
                  "(or is missing)", file=sys.stderr)
            return 1
        return 0
    text = text[:found.start()] + f"{START}\n{new}{END}" + text[found.end():]
    found_n = _block(text, BY_N_START, BY_N_END)
    if found_n is None:                     # first run: the block goes right after the metrics table
        at = text.index(END) + len(END)
        text = text[:at] + f"\n\n{BY_N_START}\n{by_n}{BY_N_END}" + text[at:]
    else:
        text = text[:found_n.start()] + f"{BY_N_START}\n{by_n}{BY_N_END}" + text[found_n.end():]
    args.card.write_text(text)
    print(new)
    print(by_n)
    return 0


if __name__ == "__main__":
    run_script(main)
