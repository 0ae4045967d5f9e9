"""``deepasa remix``: edit an analysed scene object by object and re-render it (see :mod:`deepasa.inference.remix`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepasa.errors import DeepASAError

EXAMPLE = """examples:
  deepasa remix rec_analysis --out muted.wav --mute 2                 # drop object 2
  deepasa remix rec_analysis --out edit.wav --gain speech=-6 --move 0=90,0 --dry 0
  deepasa remix rec_analysis --out turned.wav --rotate-scene 90 --noise-gain -10
  deepasa remix rec_analysis --out as_foa.wav --format foa             # MIC analysis rendered as FOA
  deepasa remix rec_analysis --out many.wav --edits edits.yaml

OBJ is an object id or a class name from ANALYSIS_DIR/objects.json (a class name edits every object of
that class). Directions are degrees: azimuth counter-clockwise from the front (+90 = left), elevation
+90 = up. --edits FILE.yaml holds the same edits, e.g.
  mute: [dog_bark]
  gain: {0: -6}
  move: {1: [90, 0]}
  rotate_scene: 45
Unedited objects pass through exactly; with no edit the output is the sum of the objects and the noise.
"""


def _pair(text: str, option: str):
    """``OBJ=A,B`` -> (OBJ, (A, B)) floats."""
    if "=" not in text:
        raise DeepASAError(f"{option} {text!r}: expected OBJ=AZ,EL")
    key, value = text.rsplit("=", 1)
    parts = value.split(",")
    if len(parts) != 2:
        raise DeepASAError(f"{option} {text!r}: expected two angles, OBJ=AZ,EL")
    from deepasa.inference.remix import _number

    return key.strip(), (_number(parts[0], f"{option} {text}"), _number(parts[1], f"{option} {text}"))


def _gain(text: str):
    if "=" not in text:
        raise DeepASAError(f"--gain {text!r}: expected OBJ=DB")
    key, value = text.rsplit("=", 1)
    from deepasa.inference.remix import _number

    return key.strip(), _number(value, f"--gain {text}")


def register(sub) -> None:
    """Add the ``remix`` sub-command."""
    p = sub.add_parser("remix", help="edit an analysed scene object by object (mute, gain, move) and re-render it",
                       description="Re-render the analysis of a recording (what deepasa analyze or deepasa "
                       "simulate --oracle-analysis writes) with object-wise edits, as a 4-channel MIC or FOA WAV at "
                       "the analysed sample rate.",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("analysis", type=Path, metavar="ANALYSIS_DIR", help="an analysis folder (with objects.json)")
    p.add_argument("--out", type=Path, required=True, help="output .wav (must not exist unless --overwrite)")
    p.add_argument("--mute", action="append", default=[], metavar="OBJ", help="drop an object (repeatable)")
    p.add_argument("--gain", action="append", default=[], metavar="OBJ=DB", help="scale an object by DB dB")
    p.add_argument("--move", action="append", default=[], metavar="OBJ=AZ,EL",
                   help="render an object's direct path from a fixed direction (degrees)")
    p.add_argument("--rotate", action="append", default=[], metavar="OBJ=DAZ,DEL",
                   help="shift an object's whole DoA trajectory by DAZ, DEL degrees")
    p.add_argument("--rotate-scene", type=str, metavar="DAZ", help="turn the whole scene by DAZ degrees (about up)")
    p.add_argument("--dry", action="append", default=[], metavar="OBJ", help="drop an object's reverberant part")
    p.add_argument("--noise-gain", type=str, metavar="DB", help="scale the noise estimate by DB dB (--noise-gain=-inf drops it)")
    p.add_argument("--format", choices=("mic", "foa"), help="output format (default: the analysis's)")
    p.add_argument("--edits", type=Path, metavar="FILE.yaml", help="many edits at once (keys as the options)")
    p.add_argument("--extract", choices=("beamformer", "reference"), default="beamformer",
                   help="mono direct signal of a re-rendered object: beamformer towards its DoA (default) or the "
                   "reference channel")
    p.add_argument("--threads", type=int, default=1, help="FFT threads (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run)


def edits_from_args(args):
    """The :class:`~deepasa.inference.remix.RemixEdits` of the command line (file edits merged in)."""
    import yaml

    from deepasa.inference.remix import RemixEdits, _number

    base = RemixEdits()
    if args.edits is not None:
        if not args.edits.is_file():
            raise DeepASAError(f"no such edits file: {args.edits}")
        try:
            doc = yaml.safe_load(args.edits.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise DeepASAError(f"{args.edits} is not valid YAML: {str(exc).splitlines()[0]}") from None
        base = RemixEdits.from_mapping(doc, str(args.edits))
    cli = RemixEdits(
        mute=list(args.mute), dry=list(args.dry),
        gain=_unique(map(_gain, args.gain), "--gain"),
        move=_unique((_pair(t, "--move") for t in args.move), "--move"),
        rotate=_unique((_pair(t, "--rotate") for t in args.rotate), "--rotate"),
        rotate_scene=_number(args.rotate_scene, "--rotate-scene") if args.rotate_scene is not None else 0.0,
        noise_gain=_number(args.noise_gain, "--noise-gain", allow_minus_inf=True) if args.noise_gain is not None
        else 0.0,
        fmt=args.format)
    return base.merged(cli)


def _unique(pairs, option: str) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise DeepASAError(f"{option} given twice for {key}")
        out[key] = value
    return out


def run(args) -> int:
    """Entry point of ``deepasa remix``: every check before anything is written, then one atomic write."""
    import time

    from deepasa.inference.remix import remix, write_remix
    from deepasa.inference.result import SceneAnalysis

    out = args.out
    if out.suffix.lower() != ".wav":
        raise DeepASAError(f"--out must be a .wav file (32-bit float), got {out}")
    if out.exists() and not args.overwrite:
        raise DeepASAError(f"output file exists: {out} (use --overwrite to replace it)")
    if args.threads < 1:
        raise DeepASAError(f"--threads must be at least 1, got {args.threads}")
    edits = edits_from_args(args)
    analysis = SceneAnalysis.load(args.analysis)
    t0 = time.perf_counter()
    y = remix(analysis, edits, extract=args.extract, workers=args.threads,
              log=lambda msg: print(f"deepasa remix: {msg}", file=sys.stderr))
    write_remix(out, y, analysis.sample_rate, overwrite=args.overwrite)
    fmt = edits.fmt or analysis.fmt
    print(f"wrote {out}: {y.shape[0]} ch {fmt}, {analysis.sample_rate} Hz, {y.shape[1] / analysis.sample_rate:.2f} s, "
          f"{len(analysis.objects)} object(s) in the analysis ({time.perf_counter() - t0:.2f} s)")
    return 0
