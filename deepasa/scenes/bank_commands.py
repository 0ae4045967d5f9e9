"""``deepasa sounds fetch|list``: the sound-bank sub-commands (registered by :func:`register`)."""

from __future__ import annotations

import argparse
import csv
import os
import time
from collections import Counter, defaultdict
from pathlib import Path

from deepasa.errors import DeepASAError
from deepasa.scenes.soundbank import SPLITS, check_splits, class_names, default_home, load_manifest

FETCH_EXAMPLE = """examples:
  deepasa sounds fetch                          # everything into $DEEPASA_HOME (default ~/.cache/deepasa)
  deepasa sounds fetch --split test --workers 2 # only the test split (what the demo needs)
  deepasa sounds fetch --home /data/bank --packages sound-theme-freedesktop --no-synth
"""
LIST_EXAMPLE = """examples:
  deepasa sounds list                 # classes x splits of the fetched bank, sources and licences
  deepasa sounds list --split test
  deepasa sounds list --manifest      # what a full fetch gives (from the committed manifest)
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sounds`` command with its ``fetch`` and ``list`` sub-commands."""
    sounds = subparsers.add_parser(
        "sounds", help="fetch or list the sound bank (real recordings + synthetic clips)",
        description="The sound bank the scene simulator draws sources from: real recordings from Debian "
        "data packages plus synthetic speech and instrument phrases, 16 kHz mono, split by a committed manifest.",
        epilog=FETCH_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    sounds.set_defaults(func=lambda args: (sounds.print_help(), 2)[1])
    sub = sounds.add_subparsers(dest="sounds_command", metavar="{fetch,list}")

    fetch = sub.add_parser(
        "fetch", help="download, render and condition the clips of the manifest",
        description="Download the Debian packages of the manifest (apt-get download + dpkg -x; no root, nothing "
        "installed), render the synthetic clips (espeak-ng, flite, fluidsynth; skipped with a message when "
        "missing), convert everything to 16 kHz mono, trim silence, and write the bank and its index. "
        "Re-running skips finished clips.",
        epilog=FETCH_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    fetch.add_argument("--home", type=Path, default=None, help="cache folder (default: $DEEPASA_HOME or ~/.cache/deepasa)")
    fetch.add_argument("--split", nargs="+", default=list(SPLITS), metavar="SPLIT",
                       help="splits to fetch: any of train val test (default: all)")
    fetch.add_argument("--packages", nargs="+", default=None, metavar="PKG",
                       help="only these Debian packages / synthesis programs (default: all in the manifest)")
    fetch.add_argument("--no-synth", action="store_true", help="skip the synthetic clips")
    fetch.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                       help="parallel conditioning processes (default: 2)")
    fetch.add_argument("--keep-downloads", action="store_true",
                       help="keep the .deb files and unpacked packages under HOME/debs (default: delete after use)")
    fetch.set_defaults(func=run_fetch)

    lister = sub.add_parser(
        "list", help="print classes x split counts, sources and licences",
        description="Print a table of clip counts per class and split, the source packages of each class, "
        "and the licences.", epilog=LIST_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    lister.add_argument("--home", type=Path, default=None, help="cache folder (default: $DEEPASA_HOME or ~/.cache/deepasa)")
    lister.add_argument("--split", default=None, metavar="SPLIT", help="only this split (train, val or test)")
    lister.add_argument("--manifest", action="store_true",
                        help="count the committed manifest instead of the fetched bank")
    lister.set_defaults(func=run_list)


def run_fetch(args: argparse.Namespace) -> int:
    """``deepasa sounds fetch``: fill the bank; prints a one-line summary."""
    from deepasa.scenes.bank_fetch import fetch   # tqdm/subprocess only when fetching

    home = args.home or default_home()
    splits = check_splits(args.split)
    start = time.perf_counter()
    summary = fetch(home, splits, packages=args.packages, synth=not args.no_synth, workers=args.workers,
                    keep_downloads=args.keep_downloads)
    took = time.perf_counter() - start
    print(f"sound bank in {home}: {summary['done']} clips written, {summary['skipped']} already there, "
          f"{summary['index_rows']} in the index, {summary['stale_removed']} stale removed ({took:.0f} s)")
    if summary["failed"]:
        raise DeepASAError(f"{len(summary['failed'])} clips failed, first: {summary['failed'][0]}")
    return 0


def _read_index(home: Path) -> list[dict]:
    index = home / "bank" / "index.csv"
    if not index.is_file():
        raise DeepASAError(f"sound bank not fetched in {home}: run `deepasa sounds fetch` "
                           "(or `deepasa sounds list --manifest`)")
    with open(index, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def format_table(rows: list[dict], splits: list[str]) -> str:
    """The class x split count table, source packages per class, and clips per licence, as text."""
    counts = Counter((r["label"], r["split"]) for r in rows)
    sources: dict[str, set] = defaultdict(set)
    for r in rows:
        sources[r["label"]].add(r["package"])
    lines = [f"{'class':20s} " + " ".join(f"{s:>6s}" for s in splits) + f" {'total':>6s}  sources"]
    for label in class_names():
        per = [counts[(label, s)] for s in splits]
        lines.append(f"{label:20s} " + " ".join(f"{n:6d}" for n in per) + f" {sum(per):6d}  "
                     + ", ".join(sorted(sources[label])))
    per = [sum(counts[(c, s)] for c in class_names()) for s in splits]
    lines.append(f"{'total':20s} " + " ".join(f"{n:6d}" for n in per) + f" {sum(per):6d}")
    licences: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        licences[r["licence"]][r["package"]] += 1
    lines.append("")
    lines.append(f"{'licence':34s} {'clips':>6s}  packages")
    for licence, by_pkg in sorted(licences.items(), key=lambda kv: -sum(kv[1].values())):
        lines.append(f"{licence:34s} {sum(by_pkg.values()):6d}  " + ", ".join(sorted(by_pkg)))
    return "\n".join(lines)


def run_list(args: argparse.Namespace) -> int:
    """``deepasa sounds list``: print the table for the fetched bank (or the manifest with ``--manifest``)."""
    splits = check_splits([args.split]) if args.split else list(SPLITS)
    if args.manifest:
        rows = load_manifest()
        print("committed manifest (what a full fetch gives):")
    else:
        home = args.home or default_home()
        rows = _read_index(home)
        print(f"fetched sound bank in {home}:")
    print(format_table([r for r in rows if r["split"] in splits], splits))
    return 0
