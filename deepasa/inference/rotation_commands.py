"""``deepasa rotation-check``: the rotation-consistency check of :mod:`deepasa.inference.rotation` on a file."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from deepasa.errors import DeepASAError
from deepasa.staging import write_json

EXAMPLE = """examples:
  deepasa rotation-check rec_foa.wav                       # FOA: turns of 30, 60, ..., 330 degrees about z
  deepasa rotation-check rec_foa.wav --foa-convention fuma --step 90 --json rotation.json
  deepasa rotation-check rec_mic.wav --format mic          # MIC: the 11 rotations of the tetrahedron

The recording and every rotated copy are analysed as `deepasa analyze` does (trajectory first); the
directions of each copy are turned back and its objects paired with the original's. Printed: per rotation
the objects found (original -> rotated), the share paired, the median direction error after undoing the
rotation, the activity IoU and the class agreement of the pairs; then the median over all of them. An analysis
that turns exactly with the scene scores 0 degrees and 1.00. No labels are needed.
"""


def register(sub) -> None:
    """Add the ``rotation-check`` sub-command."""
    p = sub.add_parser("rotation-check", help="check that the analysis turns with the scene (no labels needed)",
                       description="Analyse a 4-channel recording and copies of it with the scene rotated (FOA: "
                       "about the vertical axis; MIC: the tetrahedral array's symmetries, a channel permutation), "
                       "undo each rotation on the estimated directions and report how far the analyses differ.",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", type=Path, help="audio file: 4 channels (FOA or tetrahedral MIC), any sample rate")
    p.add_argument("--format", choices=("mic", "foa"),
                   help="mic (tetrahedral array) or foa (first-order Ambisonics); default: told from the channel "
                        "energies, as deepasa analyze does")
    p.add_argument("--foa-convention", choices=("ambix", "fuma"), default="ambix",
                   help="FOA channels: ambix (ACN/SN3D: W, Y, Z, X) or fuma (W, X, Y, Z, W at -3 dB)")
    p.add_argument("--step", type=float, default=30.0, metavar="DEG",
                   help="FOA: rotate by DEG, 2*DEG, ... below 360 degrees about the vertical axis (default 30); "
                        "not used for MIC")
    p.add_argument("--finder", default="finder",
                   help="who finds the objects, as for deepasa analyze: finder (default; FOA falls back to the "
                        "active-intensity map), srp, or a finder checkpoint")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the figures (per rotation and pooled) as JSON")
    p.set_defaults(func=run)


def _load(path: Path):
    """The file as (4, N) float32 and its rate, after the input checks of ``deepasa analyze``."""
    from deepasa.audio.io import load_audio
    from deepasa.inference.analyze import AudioSource

    src = AudioSource(path)  # missing or unreadable file: one-line DeepASAError
    if src.n_channels != 4:
        raise DeepASAError(f"{path} has {src.n_channels} channel(s); the rotation check reads 4 (tetrahedral "
                           "microphone array or first-order Ambisonics)")
    src.scan()  # empty, NaN/Inf or silent
    return load_audio(path)  # (4, N) float32, rate


def run(args) -> int:
    """Entry point of ``deepasa rotation-check``."""
    from deepasa.inference.rotation import rotation_consistency
    from deepasa.model.finder import MapFinder

    if args.json is not None and args.json.is_dir():
        raise DeepASAError(f"--json {args.json} is a folder; give a file name")
    if not math.isfinite(args.step):
        raise DeepASAError(f"--step must be a number of degrees, got {args.step}")
    MapFinder.check_spec(args.finder, hint="use --finder finder or --finder srp")
    x, sr = _load(args.input)
    report = rotation_consistency(x, sr, args.format, step_deg=args.step, foa_convention=args.foa_convention,
                                  finder=args.finder, name=str(args.input),
                                  log=lambda msg: print(f"deepasa rotation-check: {msg}", file=sys.stderr))
    print(f"{args.input}: {report.fmt.upper()}, {report.n_objects} object(s) in the original, "
          f"{len(report.outcomes)} rotation(s)")
    print(report.table())
    if math.isnan(report.median_error_deg):
        print("median direction error after undoing the rotation: - (no paired object shares an active frame)")
    else:
        print(f"median direction error after undoing the rotation: {report.median_error_deg:.1f}° "
              f"(90th percentile {report.p90_error_deg:.1f}°, {len(report.errors_deg)} frames)")
    if args.json is not None:
        doc = {"input": str(args.input), "sample_rate": sr, "finder": args.finder, **report.to_dict()}
        write_json(args.json, doc, indent=1)
        print(f"wrote {args.json}")
    return 0
