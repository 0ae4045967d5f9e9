"""The one ``deepasa`` entry point: parses the sub-command and dispatches to the packages.

Each package that owns sub-commands has a ``commands`` module with ``register(subparsers)``; every
registered parser sets ``func`` (called with the parsed namespace). A :class:`~deepasa.errors.DeepASAError`
becomes one line on stderr and exit code 2, with no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module

from deepasa import __version__
from deepasa.errors import DeepASAError

# Packages that contribute sub-commands, in the order they appear in --help.
COMMAND_MODULES = (
    "deepasa.scenes.bank_commands",  # sounds fetch|list
    "deepasa.scenes.commands",   # simulate
    "deepasa.model.commands",    # complexity
    "deepasa.metrics.commands",  # evaluate-seld
    "deepasa.train.commands",    # train, evaluate
    "deepasa.inference.commands",  # demo
    "deepasa.inference.remix_commands",  # remix
    "deepasa.inference.rotation_commands",  # rotation-check
    "deepasa.inference.listen_commands",  # listen
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="deepasa",
        description="Object-oriented auditory scene analysis: separation, dereverberation, "
        "sound event detection and DoA from one multichannel recording.",
    )
    parser.add_argument("--version", action="version", version=f"deepasa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = import_module(name)
        except ModuleNotFoundError as exc:  # a package whose commands are not written yet
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except DeepASAError as exc:
        print(f"deepasa {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deepasa {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `deepasa complexity --json | head`: the reader left, nothing to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
