"""The shared test fixtures of ``tests/conftest.py`` for the experiments' own tests.

CI runs ``tests/`` only (``testpaths``); an experiment's test is run by hand, e.g.
``python -m pytest -q experiments/2026-12-01-class-probe -p no:cacheprovider``, and gets ``tiny_bank_home`` and
``held_out_bank`` from here.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # the repository root: ``tests.conftest``

from tests.conftest import held_out_bank, tiny_bank_home  # noqa: E402, F401
