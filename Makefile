# Two commands from a fresh machine: `make demo` and `make test`.
# Both create .venv, install the pinned dependencies and fetch what they need.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: demo test venv tools clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e .
	touch $(STAMP)

# espeak-ng, flite and fluidsynth render synthetic speech and instrument phrases for the sound bank.
# Installed only where we are root; elsewhere `deepasa sounds fetch` says clearly what is missing.
tools:
	@bash scripts/install_tools.sh

test: venv tools
	$(PY) -m pytest -q -x tests

demo: venv tools
	$(VENV)/bin/deepasa demo --overwrite

clean:
	rm -rf $(VENV) .pytest_cache
