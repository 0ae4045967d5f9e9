"""``deepasa evaluate-seld``: official DCASE 2023 Task 3 segment-level metrics of CSV folders."""

from __future__ import annotations

import argparse
import json

from deepasa.errors import DeepASAError

EXAMPLE = """example:
  deepasa evaluate-seld --pred out/dcase --ref STARSS23/metadata_dev --classes 13 --jackknife
prints one JSON object with keys ER, F, LE, LR, SELD (ER, F, LR as fractions, LE in degrees; macro
averaging over all classes, as the challenge), n_files, average, n_classes and, with --jackknife,
"jackknife": {metric: {estimate, bias, std_err, ci}}."""


def register(subparsers) -> None:
    """Add the ``evaluate-seld`` sub-command to the top-level ``deepasa`` parser."""
    p = subparsers.add_parser(
        "evaluate-seld",
        help="official DCASE 2023 Task 3 SELD metrics (ER20, F20, LE_CD, LR_CD, SELD) of CSV folders",
        description="Score DCASE-format prediction CSVs against reference CSVs with the official DCASE 2023 "
        "Task 3 segment-level metric: 1-s segments, Hungarian association per class, 20° threshold. "
        "Files pair up by name; references may sit in sub-folders. Accepted rows: "
        "frame,class,track,azimuth,elevation[,distance] (degrees) or frame,class,track,x,y,z,distance.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--pred", required=True, metavar="DIR", help="folder of predicted CSV files")
    p.add_argument("--ref", required=True, metavar="DIR", help="folder of reference CSV files")
    p.add_argument("--classes", type=int, default=13, metavar="N", help="number of classes (default 13)")
    p.add_argument("--average", choices=("macro", "micro"), default="macro",
                   help="class averaging of F, LE, LR (default macro, as the challenge)")
    p.add_argument("--jackknife", action="store_true",
                   help="add leave-one-file-out jackknife estimates and 95%% intervals")
    p.add_argument("--doa-threshold", type=float, default=20.0, metavar="DEG",
                   help="DoA threshold of the location-aware detection (default 20)")
    p.set_defaults(func=run_evaluate_seld)


def run_evaluate_seld(args: argparse.Namespace) -> int:
    """Run the command: print one JSON object; returns the exit code."""
    from deepasa.metrics.seld_dcase import evaluate_folders

    if args.classes < 1:
        raise DeepASAError(f"--classes must be positive, got {args.classes}")
    result = evaluate_folders(args.pred, args.ref, args.classes, doa_threshold=args.doa_threshold,
                              average=args.average, jackknife=args.jackknife)
    result.pop("classwise", None)
    print(json.dumps(result))
    return 0
