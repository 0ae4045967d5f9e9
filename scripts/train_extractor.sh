#!/usr/bin/env bash
# The trajectory-conditioned extractor's training run (docs/model.md, deepasa/train/extractor.py), resumable,
# in the background, at low priority (it takes the cycles the finder's run leaves).
#   scripts/train_extractor.sh start [deepasa.train.extractor train options]
#                                    resume runs/extractor/last.pt (or checkpoints/extractor_state.pt, or fresh)
#   scripts/train_extractor.sh status   last logged step and curve row, whether the process runs
#   scripts/train_extractor.sh save     checkpoints/extractor.pt (export) + checkpoints/extractor_state.pt
#   scripts/train_extractor.sh stop     SIGTERM (last.pt is written at the current step), wait for the exit
# PYTHON (default .venv/bin/python) and NICE (default 19) can be set in the environment.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
RUN=runs/extractor
LAST=$RUN/last.pt
RESUME=checkpoints/extractor_state.pt
PIDFILE=$RUN/train.pid

alive() { [[ -f $PIDFILE ]] && ps -o args= -p "$(cat "$PIDFILE")" 2>/dev/null | grep -q "deepasa.train.extractor train"; }
cmd=${1:-}; shift || true
case "$cmd" in
start)
    if alive; then echo "already running (pid $(cat "$PIDFILE"))"; exit 1; fi
    mkdir -p "$RUN"
    if [[ ! -f $LAST && -f $RESUME ]]; then cp "$RESUME" "$LAST"; echo "resuming from $RESUME"; fi
    OMP_NUM_THREADS=1 setsid nohup "$PY" -m deepasa.train.extractor train --run "$RUN" "$@" \
        >>"$RUN/log.txt" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    sleep 1
    # setsid gave the run its own scheduler autogroup: a plain renice does not reach it
    if [[ -w /proc/$(cat "$PIDFILE")/autogroup ]]; then echo "${NICE:-19}" >"/proc/$(cat "$PIDFILE")/autogroup" || true; fi
    echo "started (pid $(cat "$PIDFILE")), log: $RUN/log.txt"
    ;;
status)
    [[ -f $RUN/train.csv ]] && echo "last step: $(tail -n 1 "$RUN/train.csv")" || echo "last step: none yet"
    [[ -f $RUN/curve.csv ]] && echo "last curve row: $(tail -n 1 "$RUN/curve.csv")"
    alive && echo "process: running (pid $(cat "$PIDFILE"))" || echo "process: not running"
    ;;
save)
    [[ -f $LAST ]] || { echo "no $LAST to save" >&2; exit 2; }
    "$PY" -m deepasa.train.extractor export --run "$RUN" --out checkpoints/extractor.pt
    cp "$LAST" "$RESUME.tmp" && mv "$RESUME.tmp" "$RESUME"
    echo "wrote $RESUME"
    ;;
stop)
    alive || { echo "not running"; exit 0; }
    pid=$(cat "$PIDFILE")
    kill -TERM "$pid"
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 2; done
    rm -f "$PIDFILE"
    echo "stopped (pid $pid)"
    ;;
*)
    echo "usage: $0 start [options] | status | save | stop" >&2; exit 2
    ;;
esac
