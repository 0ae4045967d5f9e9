"""The shipped runs' operations: the one-command GPU run, resume-state and weight surgery, the validation curve,
the loss history, step-time profiling.

They drive the recipes of ``configs/train/`` through the library and need this source tree (the checkpoints, the
configs, ``runs/``); they are not part of the installed package, and nothing in ``deepasa/`` imports them (an
import-linter contract). Run them from the repository root: ``python -m recipes.<name>`` (``scripts/*.sh`` do).
"""
