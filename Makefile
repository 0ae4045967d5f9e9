# Two commands from a fresh machine: `make demo` and `make test`.
# Both create .venv, install the pinned dependencies and fetch what they need.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: demo test lint venv tools bank-test clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt requirements-nodeps.txt pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q -r requirements-dev.txt
	$(PIP) install -q --no-deps -r requirements-nodeps.txt
	$(PIP) install -q --no-deps -e .
	touch $(STAMP)

# espeak-ng, flite and fluidsynth render synthetic speech and instrument phrases for the sound bank.
# Installed only where we are root; elsewhere `deepasa sounds fetch` says clearly what is missing.
tools:
	@bash scripts/install_tools.sh

# The held-out (test) split of the sound bank into $$DEEPASA_HOME (default ~/.cache/deepasa): 345 clips, ~12 MB,
# from Debian sound packages (apt-get download, no root needed) and the synthesis programs; ~2.5 min the first
# time, a few seconds when it is there. The shipped-model tests and `make demo` simulate held-out scenes from it.
bank-test: venv tools
	$(VENV)/bin/deepasa sounds fetch --split test

# The import rules and the lint rules first (seconds), then the tests.
lint: venv
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check

test: venv tools bank-test lint
	$(PY) -m pytest -q -x tests

demo: venv tools
	$(VENV)/bin/deepasa demo --overwrite

clean:
	rm -rf $(VENV) .pytest_cache
