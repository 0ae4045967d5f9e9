#!/usr/bin/env bash
# The shipped run (configs/train/sim_small_shipped.yaml), resumable, in the background.
#   scripts/train_shipped.sh start [deepasa train options]
#                                     resume runs/shipped (or checkpoints/shipped_resume.ckpt, or start fresh)
#   scripts/train_shipped.sh status   last logged step and whether the process runs
#   scripts/train_shipped.sh save     checkpoints/shipped_resume.ckpt (≤ 10 MB) + checkpoints/shipped_latest.pt (the
#                                     export; default.pt is replaced only by hand, after the card comparison)
#   scripts/train_shipped.sh curve    export last.ckpt as checkpoints/shipped_latest.pt, evaluate it on the fixed
#                                     validation sets, append rows to checkpoints/eval/shipped_curve.csv
#   scripts/train_shipped.sh losses   merge this machine's logged training losses into
#                                     checkpoints/eval/shipped_train_loss.csv (save and curve do it too)
#   scripts/train_shipped.sh stop     SIGTERM (last.ckpt is written at the current step), wait for the exit
#   scripts/train_shipped.sh priority N
#                                     run at nice N (0 normal .. 19 lowest) to lend the cores to a benchmark:
#                                     sets the run's scheduler autogroup (setsid gives it its own, and a plain
#                                     renice does not reach across autogroups) and its processes' nice value
# PYTHON (default .venv/bin/python) and THREADS (default 2) can be set in the environment.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
RUN=runs/shipped
LAST=$RUN/checkpoints/last.ckpt
RESUME=checkpoints/shipped_resume.ckpt
PIDFILE=$RUN/train.pid

# the PID file names a live `deepasa.cli train` process (not a reused PID)
running() { [[ -f $PIDFILE ]] && ps -o args= -p "$(cat "$PIDFILE")" 2>/dev/null | grep -q "deepasa.cli train"; }
usage() { echo "usage: $0 start [deepasa train options] | status | save | curve | losses | stop | priority N" >&2; exit 2; }
# the logged training losses of this machine's sessions of the run, merged by step into the committed history
losses() {
    local logs
    mapfile -t logs < <(ls -v "$RUN"/logs/version_*/metrics.csv 2>/dev/null)   # version order: later ones win
    [[ ${#logs[@]} -gt 0 ]] || { echo "no training logs in $RUN/logs"; return 0; }
    "$PY" -m recipes.loss_history "${logs[@]}" --out checkpoints/eval/shipped_train_loss.csv
}

cmd=${1:-}; shift || true
[[ $cmd == start || $cmd == priority || $# -eq 0 ]] || usage
case "$cmd" in
start)
    if running; then echo "already running (pid $(cat "$PIDFILE"))"; exit 1; fi
    mkdir -p "$RUN/checkpoints"
    if [[ ! -f $LAST && -f $RESUME ]]; then cp "$RESUME" "$LAST"; echo "resuming from $RESUME"; fi
    resume=(); [[ -f $LAST ]] && resume=(--resume)
    OMP_NUM_THREADS=${THREADS:-2} setsid nohup "$PY" -m deepasa.cli train --config configs/train/sim_small_shipped.yaml \
        "${resume[@]}" "$@" >>"$RUN/train.log" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    echo "started (pid $!${resume:+, resuming $LAST}), log: $RUN/train.log"
    ;;
status)
    csv=$(ls -t "$RUN"/logs/version_*/metrics.csv 2>/dev/null | head -n 1 || true)
    if [[ -n $csv ]]; then
        awk -F, 'NR == 1 {for (i = 1; i <= NF; i++) col[$i] = i; next}
                 $col["step"] != "" {step = $col["step"]; epoch = $col["epoch"]}
                 END {print "last logged step: " step " (epoch " epoch ")"}' "$csv"
    else
        echo "last logged step: none yet"
    fi
    if running; then echo "process: running (pid $(cat "$PIDFILE"))"
    else echo "process: not running; last log line: $(tail -n 1 "$RUN/train.log" 2>/dev/null)"; fi
    ;;
save)
    [[ -f $LAST ]] || { echo "no $LAST to save" >&2; exit 2; }
    "$PY" -m recipes.resume_state "$LAST" "$RESUME"
    "$PY" -m deepasa.cli export "$LAST" checkpoints/shipped_latest.pt --bank-classes
    losses
    ;;
curve)
    [[ -f $LAST ]] || { echo "no $LAST to evaluate" >&2; exit 2; }
    snap=$RUN/curve_snapshot.ckpt                  # a copy: the run may rewrite last.ckpt meanwhile
    cp "$LAST" "$snap"
    OMP_NUM_THREADS=${THREADS:-2} "$PY" -m recipes.curve "$snap" --model checkpoints/shipped_latest.pt \
        --scenes default 1-static --cache "$RUN/curve_scenes" --csv checkpoints/eval/shipped_curve.csv \
        --json checkpoints/eval/shipped_latest_val20.json
    rm -f "$snap"
    losses
    ;;
losses)
    losses
    ;;
stop)
    if ! running; then echo "not running"; exit 0; fi
    pid=$(cat "$PIDFILE")
    kill -TERM "$pid"                       # Lightning stops after the current batch and writes last.ckpt
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 2; done
    if kill -0 "$pid" 2>/dev/null; then echo "pid $pid still running after 10 min"; exit 1; fi
    rm -f "$PIDFILE"
    echo "stopped (pid $pid)"
    ;;
priority)
    [[ $# -eq 1 && $1 =~ ^[0-9]+$ && $1 -le 19 ]] || usage
    running || { echo "not running"; exit 1; }
    pid=$(cat "$PIDFILE")
    if [[ -w /proc/$pid/autogroup ]]; then echo "$1" >"/proc/$pid/autogroup"; fi
    renice -n "$1" -g "$pid" >/dev/null          # the process group: the trainer and its data workers
    echo "priority $1 (pid $pid$( [[ -r /proc/$pid/autogroup ]] && echo ", $(cat /proc/$pid/autogroup)"))"
    ;;
*)
    usage
    ;;
esac
