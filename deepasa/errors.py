"""One exception type for every user-facing failure.

The command line turns a :class:`DeepASAError` into one line on stderr and exit code 2 (README.md,
"Analysing your own recording"; docs/analyze.md, "Input handling"). Library code raises it for anything the
*user* got wrong (bad input file, bad option, missing data); programming errors stay ordinary exceptions with tracebacks.
:func:`run_script` does the same for the stand-alone scripts (``scripts/``, ``benchmarks/``, ``experiments/``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, NoReturn


class DeepASAError(Exception):
    """A user-facing error: printed as one line by the CLI, which then exits with code 2."""


def run_script(main: Callable[[], int | None]) -> NoReturn:
    """Exit with ``main()``'s code; a :class:`DeepASAError` becomes ``<script>: error: <message>`` and exit code 2.

    The stand-alone scripts' counterpart of the command line's handling (``deepasa.cli.main``).
    """
    try:
        code = main()
    except DeepASAError as exc:
        print(f"{Path(sys.argv[0]).name}: error: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code or 0)
