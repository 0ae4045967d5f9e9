"""One exception type for every user-facing failure.

The command line turns a :class:`DeepASAError` into one line on stderr and exit code 2 (DESIGN.md,
"Bad input"). Library code raises it for anything the *user* got wrong (bad input file, bad option,
missing data); programming errors stay ordinary exceptions with tracebacks.
"""


class DeepASAError(Exception):
    """A user-facing error: printed as one line by the CLI, which then exits with code 2."""
