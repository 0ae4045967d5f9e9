"""``deepasa demo``: what ``make demo`` runs.

Until the shipped model exists (issue 6), the demo simulates one scene from *held-out* (test-split)
sound-bank clips, prints its ground truth per object (class, motion, distance, direction, activity) and
writes the scene (ASA layout) and a figure of its ground truth. It fetches the test split of the sound
bank first when it is missing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from deepasa.errors import DeepASAError

EXAMPLE = """example:
  deepasa demo                       # writes demo_out/ in the current folder
  deepasa demo --out /tmp/demo --seed 3 --format foa --overwrite
"""


def register(sub) -> None:
    """Add the ``demo`` sub-command."""
    p = sub.add_parser("demo", help="simulate a held-out scene and show its ground truth",
                       description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    p.add_argument("--seed", type=int, default=2025)
    p.add_argument("--format", default="mic", choices=("mic", "foa"))
    p.add_argument("--home", type=Path, help="sound-bank folder (default $DEEPASA_HOME or ~/.cache/deepasa)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)


def _ensure_test_bank(home):
    from deepasa.scenes.soundbank import SoundBank

    try:
        bank = SoundBank.open(home)
        if bank.clips("test"):
            return bank
    except DeepASAError:
        pass
    from deepasa.cli import main as cli_main

    print("fetching the held-out (test) part of the sound bank ...")
    args = ["sounds", "fetch", "--split", "test"] + (["--home", str(home)] if home else [])
    if cli_main(args) != 0:
        raise DeepASAError("could not fetch the sound bank (see the message above)")
    return SoundBank.open(home)


def run(args) -> int:
    """Entry point of ``deepasa demo``."""
    import shutil

    from deepasa.report.scene_plot import plot_scene
    from deepasa.scenes.simulator import simulate_scene
    from deepasa.scenes.writer import write_classes, write_scene

    out = args.out
    if out.exists() and not args.overwrite:
        raise DeepASAError(f"output folder exists: {out} (use --overwrite to replace it)")
    bank = _ensure_test_bank(args.home)
    scene = simulate_scene(seed=args.seed, index=0, split="test", bank=bank, fmt=args.format)
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    write_scene(tmp / "scene" / "test", scene)
    write_classes(tmp / "scene", list(bank.classes))
    png = plot_scene(scene, tmp / "ground_truth.png")
    meta = scene.meta
    centre = np.asarray(meta["array_centre"])
    rows = []
    for k, src in enumerate(meta["sources"]):
        act = np.flatnonzero(scene.activity[k])
        dist = np.linalg.norm(np.asarray(src["trajectory"]) - centre, axis=1)
        rows.append({
            "object": k, "class": src["label"], "motion": "moving" if src["moving"] else "static",
            "distance_m": f"{dist.min():.1f}-{dist.max():.1f}" if src["moving"] else f"{dist[0]:.1f}",
            "active_s": f"{act[0] * 0.1:.1f}-{(act[-1] + 1) * 0.1:.1f}" if len(act) else "-",
            "azimuth_deg": _span(scene.azimuth[k][act]), "elevation_deg": _span(scene.elevation[k][act]),
        })
    room = " x ".join(f"{x:.1f}" for x in meta["room_dim"])
    print(f"scene: room {room} m, RT60 {meta['rt60']:.2f} s, SNR {meta['snr_db']:.1f} dB, "
          f"{len(rows)} sources, format {args.format}, clips from the held-out test split")
    _print_table(rows)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    print(f"ground truth figure: {out / png.name}\nscene files (ASA layout): {out / 'scene'}")
    (out / "ground_truth.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


def _span(values: np.ndarray) -> str:
    if not len(values):
        return "-"
    lo, hi = float(np.min(values)), float(np.max(values))
    return f"{lo:.0f}" if abs(hi - lo) < 1 else f"{lo:.0f}..{hi:.0f}"


def _print_table(rows: list[dict]) -> None:
    cols = list(rows[0]) if rows else []
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))
