"""Sub-commands of ``deepasa`` owned by the model package: ``complexity``."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``complexity`` sub-command to the top-level parser."""
    p = subparsers.add_parser(
        "complexity",
        help="parameters and MAC/s of a model config",
        description="Count trainable/frozen parameters per module and MACs per second of audio "
        "(torch.utils.flop_counter on the meta device; no memory, no weights needed).",
        epilog="example: deepasa complexity --config paper-coi --json",
    )
    p.add_argument("--config", default="paper",
                   help="model config: paper, paper-coi, uss, small, tiny, or a YAML file (default: paper)")
    p.add_argument("--seconds", type=float, default=None,
                   help="clip length to count on (default: the config's clip length)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run_complexity)


def run_complexity(args: argparse.Namespace) -> int:
    """Print the complexity of ``args.config`` as a table or JSON; returns 0."""
    from deepasa.model.complexity import format_table, measure

    result = measure(args.config, args.seconds)
    print(json.dumps(result.to_dict()) if args.json else format_table(result))
    return 0
