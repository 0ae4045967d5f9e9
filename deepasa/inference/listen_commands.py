"""``deepasa listen``: the trajectory-first pipeline live, one JSON line per event (docs/listen.md).

A reader thread fills a bounded queue from the source; the main thread feeds the :class:`~deepasa.inference.
listen.Monitor` and prints its events. When the monitor falls behind by more than ``--max-delay`` it skips whole
windows (one note on stderr, a ``skip`` line each time, the total in the summary); ``--no-skip`` makes the reader
wait instead (files, replays). SIGINT and SIGTERM end the run cleanly: what was read is analysed, every live
object ends, the summary line is printed, exit code 0.

Exit codes: 0 the input ended (or a signal ended the run); 2 bad arguments or an unusable input (one line on
stderr, nothing analysed); 3 the input ended abnormally (cut in the middle of a sample frame, a WAV shorter than
its header says, a read error, or a stall with ``--exit-on-stall``): the events are all out, the summary says why.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from pathlib import Path

from deepasa.errors import DeepASAError

EXAMPLE = """examples:
  arecord -D hw:1 -c 4 -r 48000 -f S16_LE -t raw | deepasa listen - --rate 48000
  deepasa listen rec.wav --follow --keep-dir last10 --keep-minutes 10 --state listen.state
  deepasa listen - --rate 16000 --dtype float32 --alert speech,dog --zone 300:60 --alerts-only < stream.raw
  deepasa listen device:2 --rate 48000                           # needs the optional sounddevice package
  ... | deepasa listen - --rate 16000 | jq -c 'select(.type=="end") | {id, class, onset_s, offset_s}'

prints one JSON line per event (docs/listen.md):
  {"type":"start", ...}                          the run's settings
  {"type":"onset","id":7,"class":"speech","confidence":0.81,"final":false,"onset_s":12.3,"offset_s":null,...}
  {"type":"end","id":7,"class":"speech","final":true,"onset_s":12.3,"offset_s":15.1,"segments":[...],"doa":[...]}
  {"type":"alert", ...} {"type":"skip", ...} {"type":"stall", ...}
  {"type":"summary", ...}                        at the end: seconds analysed and skipped, real-time factor
"""

STATE_FORMAT = "deepasa-listen-state-1"


def register(sub) -> None:
    """Add the ``listen`` sub-command."""
    p = sub.add_parser("listen", help="analyse a live stream (pipe, growing file, sound device): JSON events",
                       description="Run the trajectory-first analysis of deepasa analyze on a live 4-channel "
                       "stream, window by window, printing one JSON line per event (onset, end, alert).",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="- (raw PCM on standard input), fd:N, a WAV or raw PCM file, or device[:NAME] "
                   "(the optional sounddevice package)")
    io = p.add_argument_group("input")
    io.add_argument("--rate", type=int, help="sample rate of raw PCM (required for -, fd:N and raw files; a device: "
                    "default its own)")
    io.add_argument("--channels", type=int, default=4, help="channels of raw PCM (the pipeline reads 4)")
    io.add_argument("--dtype", choices=("int16", "int32", "float32"), default="int16",
                    help="raw PCM sample type, little-endian (default int16, arecord's S16_LE)")
    io.add_argument("--follow", action="store_true", help="a file: keep reading as it grows (a recorder writing it)")
    io.add_argument("--format", choices=("mic", "foa"), default="mic",
                    help="mic (tetrahedral array, default) or foa (first-order Ambisonics, ACN/SN3D)")
    io.add_argument("--foa-convention", choices=("ambix", "fuma"), default="ambix",
                    help="FOA channels: ambix (W, Y, Z, X) or fuma (W, X, Y, Z; converted on input)")
    an = p.add_argument_group("analysis")
    an.add_argument("--finder", default="finder", help="finder (the shipped learned finder; FOA: the "
                    "active-intensity map), srp, or a finder checkpoint")
    an.add_argument("--classes", help="object class read-out (default checkpoints/object_classes.pt when present; "
                    "none: every object is 'object')")
    an.add_argument("--window", type=float, default=4.0, help="seconds analysed at a time (default 4; the latency "
                    "of an onset is up to window + lookahead + the time to analyse a window)")
    an.add_argument("--context", type=float, default=2.0, help="seconds before a window its map reads (default 2)")
    an.add_argument("--lookahead", type=float, default=0.5, help="seconds after a window its map reads (default 0.5)")
    an.add_argument("--threads", type=int, help="CPU threads for the networks (default: torch's)")
    out = p.add_argument_group("output")
    out.add_argument("--alert", metavar="CLASS[,CLASS]", help="alert lines for objects of these classes")
    out.add_argument("--zone", action="append", metavar="AZ1:AZ2", help="alert lines for objects with a direction "
                     "in this azimuth sector (degrees, counter-clockwise from AZ1 to AZ2; repeatable; with --alert: "
                     "both must hold)")
    out.add_argument("--alerts-only", action="store_true", help="print no onset/end lines, only alerts (and the "
                     "start, skip, stall and summary lines)")
    out.add_argument("--keep-dir", type=Path, help="rolling folder of the last --keep-minutes of objects: "
                     "<id>_<class>/image.wav (16 kHz) and object.json, written atomically")
    out.add_argument("--keep-minutes", type=float, help="how long objects stay in --keep-dir (minutes)")
    out.add_argument("--state", type=Path, help="state file: object ids continue from it across restarts "
                     "(written atomically after each new object and at exit)")
    rt = p.add_argument_group("real time")
    rt.add_argument("--max-delay", type=float, help="skip whole windows when more than this many seconds of "
                    "audio wait (default: 3 windows)")
    rt.add_argument("--no-skip", action="store_true", help="never skip: the reader waits for the monitor (files "
                    "and replays; a live recorder would overrun)")
    rt.add_argument("--stall-seconds", type=float, default=10.0, help="say so when no data came for this long "
                    "(default 10)")
    rt.add_argument("--exit-on-stall", action="store_true", help="end (exit code 3) on a stall instead of waiting")
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------------------------- state
def read_state(path: Path) -> dict:
    """The state file's content ({} when it does not exist yet); a one-line error when it is not one."""
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != STATE_FORMAT or not isinstance(doc.get("next_id"), int) or doc["next_id"] < 0:
            raise ValueError("not a deepasa listen state file")
    except (OSError, ValueError, AttributeError) as exc:
        raise DeepASAError(f"--state {path}: {str(exc).splitlines()[0]}") from None
    return doc


def write_state(path: Path, next_id: int, runs: int, source: str) -> None:
    """Write the state atomically (:func:`deepasa.staging.write_json`)."""
    from deepasa.staging import write_json

    try:
        write_json(path, {"format": STATE_FORMAT, "next_id": int(next_id), "runs": runs, "source": source,
                          "updated_unix": round(time.time(), 3)}, indent=1)
    except OSError as exc:
        raise DeepASAError(f"cannot write --state {path}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------------------------------- run
def _check_args(args) -> None:
    """Refuse bad options before anything is opened (one line each)."""
    finite = lambda v: v is None or math.isfinite(v)  # noqa: E731
    if not all(finite(v) for v in (args.window, args.context, args.lookahead, args.max_delay, args.keep_minutes,
                                   args.stall_seconds)):
        raise DeepASAError("times must be finite numbers")
    if args.window < 0.1:
        raise DeepASAError(f"--window must be at least 0.1 s, got {args.window}")
    if args.context < 0 or args.lookahead < 0:
        raise DeepASAError("--context and --lookahead must be >= 0")
    if args.channels != 4:
        raise DeepASAError(f"--channels {args.channels}: the pipeline reads 4 channels (tetrahedral MIC or FOA)")
    if args.rate is not None and not 1000 <= args.rate <= 768000:
        raise DeepASAError(f"--rate {args.rate}: give the sample rate in Hz (1000..768000)")
    if args.max_delay is not None and args.max_delay < args.window:
        raise DeepASAError(f"--max-delay {args.max_delay:g} must be at least the window ({args.window:g} s)")
    if args.stall_seconds <= 0:
        raise DeepASAError("--stall-seconds must be > 0")
    if (args.keep_dir is None) != (args.keep_minutes is None):
        raise DeepASAError("--keep-dir and --keep-minutes go together")
    if args.keep_minutes is not None and args.keep_minutes <= 0:
        raise DeepASAError(f"--keep-minutes must be > 0, got {args.keep_minutes}")
    if args.threads is not None and args.threads < 1:
        raise DeepASAError("--threads must be >= 1")
    if args.follow and (args.source == "-" or args.source.startswith(("fd:", "device"))):
        raise DeepASAError("--follow is for files")
    if args.state is not None and args.state.is_dir():
        raise DeepASAError(f"--state {args.state} is a folder; give a file name")


def run(args) -> int:
    """Entry point of ``deepasa listen`` (module docstring for the exit codes)."""
    from deepasa.inference.listen import AlertRule

    _check_args(args)
    alerts = None
    if args.alert is not None or args.zone:
        classes = [c.strip() for c in args.alert.split(",") if c.strip()] if args.alert is not None else None
        if classes is not None and not classes:
            raise DeepASAError("--alert wants one or more class names, e.g. --alert speech,dog")
        alerts = AlertRule(classes, [AlertRule.parse_zone(z) for z in args.zone] if args.zone else None)
    state = read_state(args.state) if args.state is not None else {}
    from deepasa.inference.live_input import BlockQueue, open_input, start_reader

    inp = open_input(args.source, rate=args.rate, channels=args.channels, dtype=args.dtype, follow=args.follow)
    if inp.channels != 4:
        raise DeepASAError(f"{inp.name} has {inp.channels} channel(s); the pipeline reads 4 (tetrahedral MIC or FOA)")
    return _listen(args, inp, alerts, state, BlockQueue, start_reader)


def _note(msg: str) -> None:
    print(f"deepasa listen: {msg}", file=sys.stderr, flush=True)


def _listen(args, inp, alerts, state: dict, BlockQueue, start_reader) -> int:
    import torch

    from deepasa.inference.analyze import bound_heap
    from deepasa.inference.listen import Monitor, RollingFolder
    from deepasa.model.object_classes import load_classifier

    if args.threads:
        torch.set_num_threads(args.threads)
    classifier = None
    if args.classes is not None:
        if args.classes == "none":
            classifier = False
        elif not Path(args.classes).is_file():
            raise DeepASAError(f"no class read-out at {args.classes}")
        else:
            classifier = load_classifier(args.classes)
    keep = RollingFolder(args.keep_dir, args.keep_minutes, log=_note) if args.keep_dir is not None else None
    first_id = int(state.get("next_id", 0))
    mon = Monitor(args.finder, inp.rate, fmt=args.format, foa_convention=args.foa_convention, classifier=classifier,
                  window_s=args.window, context_s=args.context, lookahead_s=args.lookahead, first_id=first_id,
                  alerts=alerts, keep=keep, log=_note)
    runs = int(state.get("runs", 0)) + 1
    if args.state is not None:
        if state:
            _note(f"continuing object ids from {first_id} ({args.state})")
        write_state(args.state, mon.next_id, runs, inp.name)
    bound_heap()
    max_delay = args.max_delay if args.max_delay is not None else 3 * args.window
    # the reader's own bound: past it a block is dropped (and reported as a gap) before the monitor could skip it
    no_skip = args.no_skip or not inp.live  # a plain file waits for the monitor: nothing is lost by reading slowly
    queue = BlockQueue(inp.rate, max_delay + 2 * args.window + 5.0, backpressure=no_skip)
    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signal.Signals(signum).name
        inp.stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    quiet = {"onset", "end"} if args.alerts_only else set()

    def emit(events: list) -> None:
        for ev in events:
            if ev["type"] not in quiet:
                sys.stdout.write(json.dumps(ev, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    emit([{"type": "start", "source": inp.name, "sample_rate": inp.rate, "format": args.format,
           "finder": mon.finder.name, "classes": getattr(mon.classifier, "source", None),
           "window_s": mon.W / 10, "context_s": mon.Lc / 10, "lookahead_s": mon.Rc / 10, "first_id": first_id,
           "max_delay_s": None if no_skip else max_delay, "time_unix": round(time.time(), 3)}])
    start_reader(inp, queue)
    status, end_why, said_behind, saved_id = 0, "end of input", False, mon.next_id
    last_data, stalled, said_state = time.monotonic(), False, False
    try:
        while True:
            if stop["signal"] is not None:
                end_why = f"stopped by {stop['signal']}"
                break
            item = queue.get(timeout=0.2)
            if item is None:
                if queue.ended and not queue.items:
                    break
                idle = time.monotonic() - last_data
                if idle >= args.stall_seconds and not stalled:
                    stalled = True
                    _note(f"no input for {idle:.0f} s from {inp.name}"
                          + ("; ending (--exit-on-stall)" if args.exit_on_stall else "; still waiting"))
                    emit([{"type": "stall", "at_s": round(mon.now_s, 3), "seconds": round(idle, 1)}])
                    if args.exit_on_stall:
                        status, end_why = 3, f"input stalled for {idle:.0f} s"
                        inp.stop.set()
                        break
                continue
            now = time.monotonic()
            if stalled:
                _note(f"input resumed after {now - last_data:.0f} s")
                stalled = False
            last_data = now
            if isinstance(item, tuple):  # the reader dropped blocks: the queue was full
                if not said_behind:
                    _note("the input queue overflowed: input was dropped (reported as skip lines)")
                    said_behind = True
                emit(mon.skip(item[1], "input queue full"))
                continue
            if not no_skip:
                backlog = queue.seconds + item.shape[1] / inp.rate + mon.pending_s
                if backlog > max_delay:
                    if not said_behind:
                        rtf = mon.summary()["real_time_factor"]
                        _note(f"cannot keep up (real-time factor {'-' if rtf is None else f'{rtf:.2f}'} so far; "
                              f"{backlog:.1f} s of audio waiting, "
                              f"more than --max-delay {max_delay:g} s): skipping whole windows, each one a skip "
                              "line; the total is in the summary")
                        said_behind = True
                    k = math.ceil((backlog - args.window) / args.window)
                    n_skip = max(0, int(round((k * args.window - mon.pending_s) * inp.rate)))
                    cut = min(n_skip, item.shape[1])
                    item = item[:, cut:]  # (M, n - cut)
                    skipped = cut + queue.take(n_skip - cut)
                    emit(mon.skip(skipped, "behind real time"))
            if item.shape[1]:
                emit(mon.feed(item))
            if args.state is not None and mon.next_id != saved_id:
                saved_id = mon.next_id
                try:
                    write_state(args.state, mon.next_id, runs, inp.name)
                except DeepASAError as exc:  # said once, and tried again with the next object
                    if not said_state:
                        _note(str(exc))
                        said_state = True
        if stop["signal"] is not None:  # what was read before the signal is analysed too
            while (item := queue.get(timeout=0)) is not None:
                emit(mon.skip(item[1], "input queue full") if isinstance(item, tuple) else mon.feed(item))
        emit(mon.close())
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        inp.stop.set()
    if inp.end_note is not None and stop["signal"] is None:
        status, end_why = 3, inp.end_note
    summary = {**mon.summary(), "end": end_why, "exit_code": status,
               "dropped_s": round(queue.dropped / inp.rate, 3)}
    emit([summary])
    if args.state is not None:
        try:
            write_state(args.state, mon.next_id, runs, inp.name)
        except DeepASAError as exc:
            _note(str(exc))
    rtf = summary["real_time_factor"]
    _note(f"{end_why}: {summary['objects']} object(s) in {summary['stream_s']:.1f} s, real-time factor "
          f"{'-' if rtf is None else f'{rtf:.2f}'}, skipped {summary['skipped_s']:.1f} s")
    return status
