#!/usr/bin/env bash
# The localisation-map finder's training run (docs/finder.md), resumable, in the background, at low priority.
#   scripts/train_finder.sh start [deepasa.train.finder train options]
#                                   resume runs/finder/last.pt (or checkpoints/finder_state.pt, or start fresh);
#                                   the run's autogroup gets nice NICE (default 15) so foreground work keeps moving
#   scripts/train_finder.sh status  last logged step, last curve point, whether the process runs
#   scripts/train_finder.sh save [--threshold T] [--symmetries N]
#                                   checkpoints/finder.pt (export, fp16, < 2 MB) + checkpoints/finder_state.pt
#                                   (the resume state, < 10 MB) from runs/finder/last.pt
#   scripts/train_finder.sh curve   a validation row for runs/finder/last.pt in runs/finder/curve.csv
#                                   (the run also adds one every 20 training minutes by itself)
#   scripts/train_finder.sh stop    SIGTERM (last.pt is written at the current step), wait for the exit
#   scripts/train_finder.sh priority N   as train_shipped.sh: autogroup and nice of the run
# PYTHON (default .venv/bin/python) and NICE (default 15) can be set in the environment. The trainer uses one
# torch thread and one simulation worker process (two cores in all).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
RUN=runs/finder
LAST=$RUN/last.pt
RESUME=checkpoints/finder_state.pt
PIDFILE=$RUN/train.pid

running() { [[ -f $PIDFILE ]] && ps -o args= -p "$(cat "$PIDFILE")" 2>/dev/null | grep -q "deepasa.train.finder train"; }
usage() { echo "usage: $0 start [options] | status | save [--threshold T] [--symmetries N] | curve | stop | priority N" >&2; exit 2; }
set_priority() {  # $1 pid, $2 nice: setsid gave the run its own autogroup, which a plain renice does not reach
    if [[ -w /proc/$1/autogroup ]]; then echo "$2" >"/proc/$1/autogroup" 2>/dev/null || true; fi
    renice -n "$2" -g "$1" >/dev/null 2>&1 || true   # the process group: trainer and simulation worker
}

cmd=${1:-}; shift || true
[[ $cmd == start || $cmd == save || $cmd == priority || $# -eq 0 ]] || usage
case "$cmd" in
start)
    if running; then echo "already running (pid $(cat "$PIDFILE"))"; exit 1; fi
    mkdir -p "$RUN"
    if [[ ! -f $LAST && -f $RESUME ]]; then cp "$RESUME" "$LAST"; echo "resuming from $RESUME"; fi
    OMP_NUM_THREADS=1 setsid nohup "$PY" -m deepasa.train.finder train --run "$RUN" "$@" \
        >>"$RUN/train.log" 2>&1 </dev/null &
    pid=$!
    echo $pid >"$PIDFILE"
    sleep 1
    set_priority "$pid" "${NICE:-15}"
    echo "started (pid $pid$([[ -f $LAST ]] && echo ", resuming $LAST")), log: $RUN/train.log"
    ;;
status)
    if [[ -f $RUN/loss.csv ]]; then
        tail -n 1 "$RUN/loss.csv" | awk -F, '{print "last logged step: " $1 " (loss " $2 ", scene passes " $3 ", scenes simulated " $4 ")"}'
    else
        echo "last logged step: none yet"
    fi
    if [[ -f $RUN/curve.csv ]]; then
        echo "last curve point (tuned threshold):"
        awk -F, 'NR == 1 {for (i = 1; i <= NF; i++) col[$i] = i; next} $col["tuned"] == 1 {l[$col["set"]] = $0} END {for (s in l) print "  " l[s]}' "$RUN/curve.csv"
    fi
    if running; then echo "process: running (pid $(cat "$PIDFILE"))"
    else echo "process: not running; last log line: $(tail -n 1 "$RUN/train.log" 2>/dev/null)"; fi
    ;;
save)
    [[ -f $LAST ]] || { echo "no $LAST to save" >&2; exit 2; }
    OMP_NUM_THREADS=1 "$PY" -m deepasa.train.finder export --run "$RUN" --out checkpoints/finder.pt --state-out "$RESUME" "$@"
    ;;
curve)
    [[ -f $LAST ]] || { echo "no $LAST to evaluate" >&2; exit 2; }
    OMP_NUM_THREADS=1 nice -n "${NICE:-15}" "$PY" -m deepasa.train.finder curve --run "$RUN"
    ;;
stop)
    if ! running; then echo "not running"; exit 0; fi
    pid=$(cat "$PIDFILE")
    kill -TERM "$pid"                       # the loop finishes its step, writes last.pt and stops the worker
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 2; done
    if kill -0 "$pid" 2>/dev/null; then echo "pid $pid still running after 5 min"; exit 1; fi
    rm -f "$PIDFILE"
    echo "stopped (pid $pid)"
    ;;
priority)
    [[ $# -eq 1 && $1 =~ ^[0-9]+$ && $1 -le 19 ]] || usage
    running || { echo "not running"; exit 1; }
    pid=$(cat "$PIDFILE")
    set_priority "$pid" "$1"
    echo "priority $1 (pid $pid$( [[ -r /proc/$pid/autogroup ]] && echo ", $(cat /proc/$pid/autogroup)"))"
    ;;
*)
    usage
    ;;
esac
