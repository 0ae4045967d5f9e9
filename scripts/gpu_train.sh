#!/usr/bin/env bash
# One-command GPU run of the shipped recipe (docs/training.md, "One-command GPU run").
#   scripts/gpu_train.sh prepare [--opus-level L] [--workers N]
#        on this machine: wheels into .whl/, the sound-bank pack into .gpubank/ (both ignored by git);
#        prints the size that would travel and the `carry` list
#   scripts/gpu_train.sh MINUTES OUT [--device cuda|cpu] [--steps N] [--batch B] [--workers W]
#                                    [--eval-scenes N] [--set SECTION.KEY=VALUE ...]
#        resume checkpoints/shipped_resume.ckpt (a copy), train MINUTES minutes, leave the resume state, the
#        exported model, its evaluation and the log in OUT. --device cpu --steps N: a dry run of the same path.
# Python: $GPU_TRAIN_PYTHON, else .venv/bin/python where there is a .venv, else (the GPU machine) python3 with
# the carried wheels of .whl/ installed once into $GPU_TRAIN_SITE (default /tmp/site) and put on PYTHONPATH.
# deepasa itself is used from this checkout. The logic is in recipes/gpu_run.py.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

if [[ -n ${GPU_TRAIN_PYTHON:-} ]]; then
    PY=$GPU_TRAIN_PYTHON
elif [[ -x $ROOT/.venv/bin/python ]]; then
    PY=$ROOT/.venv/bin/python
else
    PY=python3
    if [[ ${1:-} != prepare ]] && compgen -G "$ROOT/.whl/*.whl" >/dev/null; then
        SITE=${GPU_TRAIN_SITE:-/tmp/site}
        stamp=$SITE/.gpu_train_wheels
        want=$(cd "$ROOT/.whl" && ls -1 -- *.whl | sort | md5sum | cut -c1-32)
        if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
            t0=$SECONDS
            "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
                "$ROOT"/.whl/*.whl
            echo "$want" >"$stamp"
            echo "[gpu_train] installed $(ls -1 "$ROOT"/.whl/*.whl | wc -l) wheels from .whl/ into $SITE in $((SECONDS - t0)) s"
        fi
        export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
    fi
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$ROOT       # deepasa from this checkout, not installed
exec "$PY" -m recipes.gpu_run "$@"
