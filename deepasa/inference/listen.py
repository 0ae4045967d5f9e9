"""Live monitoring: the trajectory-first pipeline of ``deepasa analyze`` on a stream, one window at a time.

    mon = Monitor(sample_rate=48000)                 # the shipped finder, spatial stage and class read-out
    for block in blocks:                              # (4, n) float32 at 48 kHz, any n
        for event in mon.feed(block):
            print(event)                              # {"type": "onset", "id": 0, "class": "speech", ...}
    final = mon.close()                               # the last events: every object still alive ends
    deepasa listen - --rate 16000 --dtype float32    # the same from the command line (docs/listen.md)

The pipeline is the one :func:`~deepasa.inference.trajectory_first.analyze_trajectories` runs, cut into windows
of ``window_s`` seconds (default 4 s, the finder's training length; docs/listen.md):

1. **Find.** The finder's direction map of the window, computed with ``context_s`` of audio before it and
   ``lookahead_s`` after it (the learned finder's GRU reads both ways; the context rows are dropped), then the
   peaks of each 100-ms frame.
2. **Track.** :class:`StreamTracker`: the tracker of :func:`deepasa.tracking.tracker.track` (the same prediction,
   Hungarian assignment, birth and death), fed frame by frame with its state carried across windows, so an
   object keeps one identity however many windows it spans. A track that is confirmed becomes an object (an
   ``onset`` event); when it dies (``max_gap_frames`` without a detection) it is smoothed forwards and backwards
   over its whole life exactly as ``track`` smooths it (an ``end`` event).
3. **Separate** the window (with ``SEPARATION_CONTEXT_S`` of audio before it) by every object's activity and
   direction (the spatial stage, images only: :func:`separate_images`), and collect each object's
   reference-channel frames that the class read-out reads (:func:`~deepasa.model.object_classes.object_signal`:
   the active frames widened by one, at most the loudest 8 s; kept in bounded memory by :class:`ClassSignal`).
4. **Classify** from those frames: at the onset from what was heard so far (a provisional class, ``"final":
   false``), at the end from the whole object (the read-out ``analyze`` applies: ``"final": true``).

With ``window_s`` at least the stream's length the monitor runs the whole stream as one window at
:meth:`Monitor.close`: the same map, tracks, separation and read-out as ``analyze`` (tests/test_listen.py checks
that the objects, classes and onsets are equal).
"""

from __future__ import annotations

import inspect
import math
import os
import re
import time
from collections import deque
from pathlib import Path

import numpy as np

from deepasa.errors import DeepASAError
from deepasa.staging import atomic_path, remove_stale, temp_sibling, write_json
from deepasa.tracking.tracker import OnlineTracker, _finish, _Track

SAMPLE_RATE = 16000
LABEL_HOP = 0.1
N_MICS = 4
LABEL_SAMPLES = 1600                # samples per 100-ms frame at 16 kHz
DEFAULT_WINDOW_S = 4.0              # the finder's training clip length
DEFAULT_CONTEXT_S = 2.0             # audio before a window that its map is computed with
DEFAULT_LOOKAHEAD_S = 0.5           # audio after a window that its map is computed with (adds to the latency)
SEPARATION_CONTEXT_S = 0.5          # audio before a window that the spatial stage reads (its covariance window)
SNAPSHOT_HISTORY_FRAMES = 20        # a live track's provisional smoothing reads its last hits only (bounded cost)
SILENCE_PEAK = 1e-5                 # a window whose peak is below this (-100 dBFS) has no detection
UNKNOWN = "object"
EVENT_TYPES = ("start", "onset", "end", "alert", "skip", "stall", "summary")


# ---------------------------------------------------------------------------------------------- tracking
class StreamTracker(OnlineTracker):
    """:func:`deepasa.tracking.tracker.track`, fed one label frame at a time (same options, same results).

    ``track`` runs :class:`~deepasa.tracking.tracker.OnlineTracker`'s forward pass over the frames and then
    smooths each finished track forwards and backwards (``_finish``); this class runs the same forward pass as
    frames arrive (:meth:`step`, :meth:`close`: confirmed tracks when they die) and :meth:`smoothed` gives a
    track's activity and direction as ``track`` would return them (exactly, once it has died). Re-joining
    (``merge_gap_frames`` > 0) and ``max_objects`` are offline choices over the whole recording and are refused.

    Attributes:
        t: the next frame index; live: the live tracks (tentative and confirmed).
    """

    def __init__(self, *, gate_deg: float = 30.0, birth_frames: int = 2, max_gap_frames: int = 5,
                 min_length_frames: int = 2, smoothing: float = 0.5, max_objects: int | None = None,
                 fill_gap_frames: int = 1, merge_gap_frames: int = 0, merge_deg: float = 20.0):
        if merge_gap_frames > 0:
            raise DeepASAError("the live tracker cannot re-join tracks (merge_gap_frames > 0 in the finder's tracker "
                               "options): that pass needs the whole recording")
        if max_objects is not None:
            raise DeepASAError("the live tracker cannot keep only the strongest objects (max_objects): that choice "
                               "needs the whole recording")
        del merge_deg  # only used with merge_gap_frames
        super().__init__(gate_deg=gate_deg, birth_frames=birth_frames, max_gap_frames=max_gap_frames,
                         smoothing=smoothing)
        self.min_length_frames, self.fill_gap_frames = min_length_frames, fill_gap_frames

    def smoothed(self, tr: _Track, t0: int, t1: int, *, final: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """A track's activity (t1 - t0,) bool and unit direction (t1 - t0, 3) over frames [t0, t1).

        ``final``: the whole track is smoothed (``track``'s ``_finish``, exact for a dead track); otherwise only
        its last :data:`SNAPSHOT_HISTORY_FRAMES` hits before ``t0`` and those after (a live track's provisional
        estimate, bounded cost). Frames before the track hold its first direction, frames after its last.
        """
        base = tr.first if final else min(max(tr.first, t0 - SNAPSHOT_HISTORY_FRAMES), tr.last_hit)
        view = _HitView({t - base: v for t, v in tr.hits.items() if t >= base})
        n = max(t1, tr.last_hit + 1) - base
        act, doa, _ = _finish(view, n, self.alpha, self.beta, self.fill_gap_frames)  # (n,), (n, 3), (n,)
        out_act = np.zeros(t1 - t0, bool)
        out_doa = np.repeat(doa[:1], t1 - t0, axis=0)  # (t1 - t0, 3) the first known direction before the track
        lo, hi = max(t0, base), t1
        if hi > lo:
            out_act[lo - t0:hi - t0] = act[lo - base:hi - base]
            out_doa[lo - t0:hi - t0] = doa[lo - base:hi - base]
        return out_act, out_doa

    def length(self, tr: _Track) -> int:
        """Active frames of a track as ``track`` counts them (hits and filled gaps)."""
        frames = sorted(tr.hits)
        filled = sum(b - a - 1 for a, b in zip(frames[:-1], frames[1:]) if 2 <= b - a <= self.fill_gap_frames + 1)
        return len(frames) + filled


class _HitView:
    """A stand-in for a ``_Track`` holding only ``hits`` (frame -> (direction (3,), score)), for ``_finish``."""

    def __init__(self, hits: dict):
        self.hits = hits


def finder_parts(finder) -> tuple:
    """The two halves of ``MapFinder.track``: (detect: map (T', G) -> per frame [(unit (3,), score)], tracker options).

    The learned finder: its exported peak threshold (``meta["threshold"]``) and ``find_objects``' peak defaults,
    its exported tracker options (``meta["track"]``); the classical maps: their own ``detections`` and options.
    """
    from deepasa.model.finder import DEFAULT_THRESHOLD, find_objects
    from deepasa.tracking.peaks import PeakPicker

    if finder._srp is not None:
        return finder._srp.detections, dict(finder._srp.track_kwargs)
    net = finder._net
    meta = getattr(net, "meta", {}) or {}
    threshold = float(meta.get("threshold", DEFAULT_THRESHOLD))
    defaults = inspect.signature(find_objects).parameters
    min_sep, max_peaks = defaults["min_separation_deg"].default, defaults["max_peaks"].default
    picker = PeakPicker(net.grid.double().numpy())

    def detect(scores: np.ndarray) -> list:
        return picker(scores, threshold=threshold, min_separation_deg=min_sep, max_peaks=max_peaks)

    return detect, dict(meta.get("track") or {})


# ---------------------------------------------------------------------------------------------- separation
def separate_images(mixture, activity, doa, *, fmt: str = "mic", channels=None, sample_rate: int = SAMPLE_RATE,
                    label_hop: float = LABEL_HOP, config=None) -> np.ndarray:
    """The spatial stage's object images only: ``separate(...).image[:, channels]`` without the direct path.

    :func:`deepasa.separation.separate` also estimates each object's direct path (an MVDR beamformer), about
    40 % of its cost, which the monitor does not use; this runs the stage without it
    (``spatial_stft(..., with_direct=False)``) and inverts only the asked channels.

    Args:
        mixture: (M, N) float; activity: (K, T') bool; doa: (K, T', 3) as for ``separate``.
        fmt: "mic" or "foa"; channels: the channels to return (default all).
    Returns:
        (K, C, N) float32 images.
    """
    from deepasa.separation.spatial import FOA, SpatialConfig, check_trajectories, istft, spatial_stft

    cfg = config or SpatialConfig()
    x, act, unit, offs = check_trajectories(mixture, activity, doa, FOA if fmt == "foa" else None)
    m, n = x.shape
    chans = list(range(m)) if channels is None else list(channels)
    if not act.shape[0]:
        return np.zeros((0, len(chans), n), np.float32)
    st = spatial_stft(x, act, unit, sample_rate, label_hop, offs, cfg, with_direct=False)
    return istft(st.image[:, chans], n, cfg).numpy()  # (K, C, N)


# ---------------------------------------------------------------------------------------------- class signal
class ClassSignal:
    """:func:`~deepasa.model.object_classes.object_signal` in bounded memory, fed frame by frame.

    ``object_signal`` keeps an object's selected frames (active, widened by one frame) and, when more than
    ``max_seconds`` of them, the loudest run of that many consecutive selected frames (the first on ties).
    Fed the selected frames in time order, this keeps the last ``cap`` of them and the loudest full run seen so
    far: the same result with at most 2 · ``max_seconds`` of audio held, whatever the object's length.
    """

    def __init__(self, max_seconds: float = 8.0, min_seconds: float = 0.5, label_hop: float = LABEL_HOP,
                 sample_rate: int = SAMPLE_RATE):
        self.cap = max(1, int(math.floor(max_seconds / label_hop + 1e-9)))
        self.min_samples = int(round(min_seconds * sample_rate))
        self.hop = int(round(label_hop * sample_rate))
        self.recent: deque = deque()  # (samples (n,), energy) of the last `cap` selected frames
        self.best: list | None = None
        self.best_energy = -1.0
        self.count = 0

    def add(self, samples: np.ndarray) -> None:
        """One selected frame's reference-channel samples (n,) (n = one label frame, shorter at the stream end)."""
        samples = np.asarray(samples, np.float32)
        self.recent.append((samples, float(np.square(samples, dtype=np.float64).sum())))
        self.count += 1
        if len(self.recent) > self.cap:
            self.recent.popleft()
        if len(self.recent) == self.cap and self.count > self.cap - 1:
            energy = float(np.sum([e for _, e in self.recent]))
            if energy > self.best_energy:
                self.best, self.best_energy = [s for s, _ in self.recent], energy

    def signal(self) -> np.ndarray:
        """The classifier's input (L,) float32, as ``object_signal`` cuts it (tiled up to ``min_seconds``)."""
        if self.count > self.cap:
            y = np.concatenate(self.best)
        elif self.count:
            y = np.concatenate([s for s, _ in self.recent])
        else:
            y = np.zeros(0, np.float32)
        if 0 < len(y) < self.min_samples:
            y = np.tile(y, math.ceil(self.min_samples / len(y)))[:self.min_samples]
        elif len(y) == 0:
            y = np.zeros(max(self.min_samples, self.hop), np.float32)
        return y.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------- alerts
class AlertRule:
    """Which objects raise an ``alert`` line: a class among ``classes`` (None: any) with a direction in one of
    the azimuth ``zones`` (None: anywhere).

    A zone ``(a1, a2)`` is the sector from azimuth a1 counter-clockwise to a2 in degrees (azimuth as in
    ``objects.json``: 0 = the array's x axis, 90 = its y axis); ``(330, 30)`` wraps through 0.
    """

    def __init__(self, classes=None, zones=None):
        self.classes = None if classes is None else {str(c) for c in classes}
        self.zones = None if zones is None else [(float(a) % 360.0, float(b) % 360.0) for a, b in zones]

    @staticmethod
    def parse_zone(text: str) -> tuple[float, float]:
        """``"AZ1:AZ2"`` degrees -> (a1, a2); a one-line :class:`DeepASAError` otherwise."""
        m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*:\s*(-?\d+(?:\.\d+)?)\s*", text)
        if not m:
            raise DeepASAError(f"--zone wants AZ1:AZ2 in degrees (e.g. 330:30), got {text!r}")
        a, b = float(m[1]), float(m[2])
        if not (-360 <= a <= 360 and -360 <= b <= 360) or a % 360 == b % 360:
            raise DeepASAError(f"--zone {text}: the azimuths must lie in [-360, 360] and differ")
        return a, b

    def in_zone(self, azimuth_deg: float) -> bool:
        """Whether an azimuth (degrees) lies in one of the zones (True without zones)."""
        if self.zones is None:
            return True
        az = float(azimuth_deg) % 360.0
        return any((az - a) % 360.0 <= (b - a) % 360.0 for a, b in self.zones)

    def match(self, class_name: str, azimuths) -> int | None:
        """The index into ``azimuths`` (degrees, per active frame) of the first frame that raises an alert for an
        object of ``class_name``, or None."""
        if self.classes is not None and class_name not in self.classes:
            return None
        for i, az in enumerate(azimuths):
            if self.in_zone(az):
                return i
        return None

    def describe(self) -> str:
        """How the alert lines name the rule, e.g. ``class speech|dog in 330:30``."""
        parts = []
        if self.classes is not None:
            parts.append("class " + "|".join(sorted(self.classes)))
        if self.zones is not None:
            parts.append("in " + ",".join(f"{a:g}:{b:g}" for a, b in self.zones))
        return " ".join(parts) or "any object"


# ---------------------------------------------------------------------------------------------- rolling folder
class RollingFolder:
    """The last ``minutes`` of objects on disk: ``ROOT/<id>_<class>/{image.wav, object.json}``.

    While an object lives its image (4 channels, 16 kHz, float) is written to a temporary WAV beside the
    folders (``.<id>.part-<pid>.wav``: :func:`deepasa.staging.temp_sibling`), from the frame before its onset to
    the frame after its last active one; when it ends the folder is built at a temporary name and renamed into
    place (:func:`deepasa.staging.atomic_path`), holding the WAV and the object's ``end`` event. Folders whose
    object ended more than ``minutes`` before the stream's present are removed; at start, those of an earlier
    run that ended (wall clock) more than ``minutes`` ago, and temporaries of dead processes.
    """

    def __init__(self, root: str | Path, minutes: float, log=None):
        import soundfile  # noqa: F401  (fail early if missing)

        if not minutes > 0:
            raise DeepASAError(f"--keep-minutes must be > 0, got {minutes}")
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise DeepASAError(f"--keep-dir {self.root} is not a folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeepASAError(f"cannot write to --keep-dir {self.root}: {exc.strerror or exc}") from None
        self.log = log or (lambda _msg: None)
        self.failed = False
        self.seconds = float(minutes) * 60.0
        remove_stale(self.root, None, tags=("part", "partial"), log=log)
        self.open: dict = {}      # id -> {"fh", "tmp", "start", "next", "pending": [(frame, (M, n))]}
        self.done: deque = deque()  # (end stream seconds, path) in order of ending
        now = time.time()
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                import json

                ended = float(json.loads((folder / "object.json").read_text())["ended_unix"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            self.done.append((-(now - ended), folder))  # an earlier run's: seconds before this stream began
        self.expire(0.0)

    def add(self, oid: int, first_frame: int, image: np.ndarray, active: np.ndarray, start_frame: int) -> None:
        """Frames ``first_frame ...`` of object ``oid``: image (M, n) (whole frames but perhaps the last), active
        (frames,) bool. Frames before ``start_frame`` (the frame before its onset) or already written are skipped."""
        import soundfile as sf

        st = self.open.get(oid)
        if st is None:
            tmp = temp_sibling(self.root / f"{oid}", "part", ".wav")
            try:
                fh = sf.SoundFile(str(tmp), "w", samplerate=SAMPLE_RATE, channels=image.shape[0], subtype="FLOAT",
                                  format="WAV")
            except (OSError, RuntimeError) as exc:
                if not self.failed:
                    self.log(f"cannot write to --keep-dir {self.root}: {str(exc).splitlines()[0]} (objects are not "
                             "kept)")
                    self.failed = True
                return
            st = self.open[oid] = {"fh": fh, "tmp": tmp, "start": start_frame, "next": start_frame, "pending": []}
        for i in range(len(active)):
            f = first_frame + i
            if f < st["next"]:
                continue
            st["pending"].append(image[:, i * LABEL_SAMPLES:(i + 1) * LABEL_SAMPLES])  # (M, n) one frame
            st["next"] = f + 1
            if active[i]:  # everything held since the last active frame is part of the object
                for blk in st["pending"]:
                    st["fh"].write(np.ascontiguousarray(blk.T))  # (n, M)
                st["pending"] = []
                st["widen"] = True
            elif st.get("widen"):  # the frame after an active one (the read-out's widening) is kept too
                st["fh"].write(np.ascontiguousarray(st["pending"].pop(0).T))  # (n, M)
                st["widen"] = False

    def finish(self, event: dict, now_s: float) -> Path | None:
        """Object ``event["id"]`` ended: its folder ``<id>_<class>/`` with ``image.wav`` and ``object.json``."""
        from deepasa.inference.analyze import _safe_name

        st = self.open.pop(event["id"], None)
        if st is None:
            return None
        st["fh"].close()
        import shutil

        folder = self.root / f"{event['id']}_{_safe_name(event['class'])}"
        doc = {**event, "image": "image.wav", "image_start_s": round(st["start"] * LABEL_HOP, 3),
               "sample_rate": SAMPLE_RATE, "ended_unix": time.time()}
        try:
            if folder.exists():  # an earlier run's object of the same id (ids restarted without --state)
                shutil.rmtree(folder)
            with atomic_path(folder, "partial") as tmp:
                tmp.mkdir()
                os.replace(st["tmp"], tmp / "image.wav")
                write_json(tmp / "object.json", doc, indent=1)
        except OSError as exc:  # a full or read-only disk does not stop the monitor: said once
            if not self.failed:
                self.log(f"cannot write to --keep-dir {self.root}: {exc.strerror or exc} (objects are not kept)")
                self.failed = True
            return None
        finally:
            Path(st["tmp"]).unlink(missing_ok=True)
        self.done.append((float(event["offset_s"]), folder))
        self.expire(now_s)
        return folder

    def expire(self, now_s: float) -> None:
        """Remove the folders of objects that ended more than ``minutes`` before stream time ``now_s``."""
        import shutil

        keep = deque()
        for end, path in sorted(self.done, key=lambda e: e[0]):
            if end < now_s - self.seconds:
                shutil.rmtree(path, ignore_errors=True)
            else:
                keep.append((end, path))
        self.done = keep

    def close(self) -> None:
        """Drop the temporaries of objects that never ended (the monitor ends every object before this)."""
        for st in self.open.values():
            st["fh"].close()
            Path(st["tmp"]).unlink(missing_ok=True)
        self.open = {}


# ---------------------------------------------------------------------------------------------- monitor
class _Object:
    """One object of the stream: its track, public id, class signal and what was emitted for it."""

    def __init__(self, oid: int, tr: _Track):
        self.id, self.track = oid, tr
        self.signal = ClassSignal()
        self.decided = tr.first - 1          # frames before this have been given to `signal`
        self.class_name, self.confidence = UNKNOWN, 1.0
        self.onset_sent = self.ended = self.alerted = False
        self.final: tuple | None = None      # (activity (n,), doa (n, 3)) from the first hit, once dead
        self.classified = -1                 # the class signal's frame count at the last read-out


class Monitor:
    """The trajectory-first pipeline on a stream (module docstring): :meth:`feed` blocks, get events.

    Args:
        finder: ``"finder"`` (the shipped learned finder), ``"srp"``, a checkpoint path or a
            :class:`~deepasa.model.finder.MapFinder` (FOA: the active-intensity map, ``"srp"``).
        sample_rate: the input's rate (resampled to 16 kHz, streaming soxr as ``analyze``).
        fmt: ``"mic"`` or ``"foa"`` (AmbiX; ``foa_convention="fuma"`` converts FuMa on input).
        classifier: a class read-out, None = ``checkpoints/object_classes.pt`` when present, False = none
            (every object is ``"object"``).
        window_s, context_s, lookahead_s: the window and the audio around it that its map reads (seconds,
            rounded to 100-ms frames).
        first_id: the first object id (continue the ids of an earlier run).
        alerts: an :class:`AlertRule` (None: no alert lines).
        keep: a :class:`RollingFolder` (None: nothing written).
        log: receives one-line notes (a format that does not look like ``fmt``; default: none).
    """

    def __init__(self, finder="finder", sample_rate: int = SAMPLE_RATE, *, fmt: str = "mic",
                 foa_convention: str = "ambix", classifier=None, window_s: float = DEFAULT_WINDOW_S,
                 context_s: float = DEFAULT_CONTEXT_S, lookahead_s: float = DEFAULT_LOOKAHEAD_S,
                 first_id: int = 0, alerts: AlertRule | None = None, keep: RollingFolder | None = None,
                 log=None):
        from deepasa.model.finder import MapFinder
        from deepasa.model.object_classes import load_classifier

        if fmt not in ("mic", "foa"):
            raise DeepASAError(f"unknown format {fmt!r} (mic or foa)")
        if foa_convention not in ("ambix", "fuma") or (foa_convention == "fuma" and fmt != "foa"):
            raise DeepASAError("--foa-convention fuma is for --format foa")
        if not (isinstance(sample_rate, (int, np.integer)) and 1000 <= sample_rate <= 768000):
            raise DeepASAError(f"sample rate must be an integer in 1000..768000 Hz, got {sample_rate}")
        frames = lambda s: int(round(float(s) / LABEL_HOP))  # noqa: E731
        if not (math.isfinite(window_s) and frames(window_s) >= 1):
            raise DeepASAError(f"--window must be at least {LABEL_HOP} s, got {window_s}")
        if not (math.isfinite(context_s) and math.isfinite(lookahead_s) and context_s >= 0 and lookahead_s >= 0):
            raise DeepASAError("--context and --lookahead must be >= 0 seconds")
        if fmt == "foa" and not isinstance(finder, MapFinder) and str(finder) == "finder":
            finder = "srp"  # FOA's default: the active-intensity map (a checkpoint path: the virtual-MIC bridge)
        MapFinder.check_spec(finder, hint="use --finder finder or --finder srp")
        self.finder = finder if isinstance(finder, MapFinder) else MapFinder(finder, fmt=fmt)
        if self.finder.fmt != fmt:
            raise DeepASAError(f"a {self.finder.fmt.upper()} finder cannot read {fmt.upper()} input")
        self.detect, track_kwargs = finder_parts(self.finder)
        self.tracker = StreamTracker(**track_kwargs)
        if classifier is None:
            classifier = load_classifier(None)
        self.classifier = classifier or None
        self.class_names = list(self.classifier.class_names) if self.classifier is not None else [UNKNOWN]
        self.fmt, self.rate = fmt, int(sample_rate)
        self.matrix = None
        if foa_convention == "fuma":
            from deepasa.audio.geometry import FUMA_TO_AMBIX

            self.matrix = FUMA_TO_AMBIX.astype(np.float32)
        self.W, self.Lc, self.Rc = frames(window_s), frames(context_s), frames(lookahead_s)
        self.Sc = frames(SEPARATION_CONTEXT_S)
        self.next_id = int(first_id)
        self.alerts, self.keep = alerts, keep
        self.objects: dict[int, _Object] = {}   # track uid -> object
        self._resampler = None
        self._chunks: list[np.ndarray] = []     # model-rate (M, n) blocks not yet joined into _buf
        self._buf = np.zeros((N_MICS, 0), np.float32)
        self._buf_start = 0                     # model-rate sample index of _buf[:, 0]
        self._pos = 0                           # model-rate samples received (the stream's present)
        self._seg_start = 0                     # first sample of the current unbroken stretch (after a skip)
        self._drop_head = 0                     # samples still to drop after a skip (to a frame boundary)
        self._f0 = 0                            # the next frame to analyse
        self._in_total = 0                      # input-rate samples received (skipped ones included)
        self.closed = False
        self.log = log or (lambda _msg: None)
        self._energy, self._heard = np.zeros(N_MICS), 0  # channel energies of the first audible audio
        self.stats = {"windows": 0, "processed_s": 0.0, "skipped_s": 0.0, "busy_s": 0.0, "objects": 0,
                      "max_window_s": 0.0, "nonfinite_samples": 0}

    # ------------------------------------------------------------------ input
    @property
    def now_s(self) -> float:
        """Stream time (seconds since the start, skipped input included) of the audio received so far."""
        return self._pos / SAMPLE_RATE

    @property
    def pending_s(self) -> float:
        """Seconds of audio received but not analysed yet."""
        return max(0, self._pos - self._f0 * LABEL_SAMPLES) / SAMPLE_RATE

    def feed(self, block: np.ndarray) -> list[dict]:
        """Add a block (M, n) float32 at the input rate; returns the events of every window it completes."""
        if self.closed:
            raise DeepASAError("the monitor is closed")
        x = np.asarray(block, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] != N_MICS:
            raise DeepASAError(f"blocks must be ({N_MICS}, n), got {x.shape}")
        if not np.isfinite(x).all():  # a live stream is not refused for a bad sample: zeroed and counted
            self.stats["nonfinite_samples"] += int((~np.isfinite(x)).sum())
            x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        self._in_total += x.shape[1]
        if self.matrix is not None:
            x = self.matrix @ x  # (M, n) FuMa -> AmbiX
        self._append(self._resample(x, last=False))
        events = []
        while self._pos >= (self._f0 + self.W + self.Rc) * LABEL_SAMPLES:
            events += self._window(self._f0, self._f0 + self.W, closing=False)
        return events

    def _resample(self, x: np.ndarray, last: bool) -> np.ndarray:
        """(M, n) at the input rate -> (M, n') at 16 kHz (streaming soxr, HQ, as ``analyze``)."""
        if self.rate == SAMPLE_RATE:
            return x
        import soxr

        if self._resampler is None:
            self._resampler = soxr.ResampleStream(self.rate, SAMPLE_RATE, N_MICS, dtype="float32", quality="HQ")
        return self._resampler.resample_chunk(np.ascontiguousarray(x.T), last=last).T  # (M, n')

    def _append(self, y: np.ndarray) -> None:
        if self._drop_head:
            cut = min(self._drop_head, y.shape[1])
            y, self._drop_head = y[:, cut:], self._drop_head - cut
            self._buf_start += cut
            self._pos += cut
        if y.shape[1]:
            self._chunks.append(y)
            self._pos += y.shape[1]

    def _samples(self, s0: int, s1: int) -> np.ndarray:
        """Model-rate samples [s0, s1) of the buffer: (M, s1 - s0)."""
        if self._chunks:
            self._buf = np.concatenate([self._buf, *self._chunks], axis=1)  # (M, n)
            self._chunks = []
        return self._buf[:, s0 - self._buf_start:s1 - self._buf_start]

    def skip(self, n_input: int, note: str = "") -> list[dict]:
        """Skip ``n_input`` input samples not read into the monitor (it fell behind), and the audio it holds but
        has not analysed: one ``skip`` event naming the stretch. Objects alive then end in the gap."""
        start_f = self._f0
        self._in_total += int(n_input)
        new_pos = int(round(self._in_total * SAMPLE_RATE / self.rate))
        g1 = -(-new_pos // LABEL_SAMPLES)
        self._resampler = None  # nothing of the audio before the gap leaks into the audio after it
        self._chunks, self._buf = [], np.zeros((N_MICS, 0), np.float32)
        self._buf_start = self._pos = new_pos
        self._drop_head = g1 * LABEL_SAMPLES - new_pos
        self._seg_start = g1 * LABEL_SAMPLES
        events, died = [], []
        for _ in range(start_f, g1):  # the tracker sees nothing in the gap: its objects end there
            died += self.tracker.step([])
        self._f0 = g1
        events += self._end_objects(died, g1)
        seconds = (g1 - start_f) * LABEL_HOP
        self.stats["skipped_s"] += seconds
        events.append({"type": "skip", "start_s": round(start_f * LABEL_HOP, 3), "end_s": round(g1 * LABEL_HOP, 3),
                       "seconds": round(seconds, 3), **({"why": note} if note else {})})
        return events

    def close(self) -> list[dict]:
        """End of the stream: analyse what is left and end every live object; returns the last events."""
        if self.closed:
            return []
        self._append(self._resample(np.zeros((N_MICS, 0), np.float32), last=True))
        end_f = -(-self._pos // LABEL_SAMPLES)
        events = []
        while self._f0 < end_f:
            f1 = min(self._f0 + self.W, end_f)
            events += self._window(self._f0, f1, closing=f1 == end_f)
        if self._f0 >= end_f:  # nothing left to analyse (or a skip at the very end): end the live objects
            events += self._end_objects(self.tracker.close(), self._f0)
        if self.keep is not None:
            self.keep.close()
        self.closed = True
        return events

    # ------------------------------------------------------------------ one window
    def _window(self, f0: int, f1: int, closing: bool) -> list[dict]:
        """Analyse frames [f0, f1): map, tracks, separation, classes; returns the window's events."""
        t_start = time.perf_counter()
        ls = LABEL_SAMPLES
        seg_f = self._seg_start // ls
        m0 = max(seg_f, f0 - self.Lc)
        s1 = min(self._pos, (f1 + self.Rc) * ls)
        x = self._samples(m0 * ls, s1)  # (M, n) the map's input, context included
        died = []
        if x.size and float(np.abs(x).max()) >= SILENCE_PEAK:
            self._check_format(x[:, (f0 - m0) * ls:(f1 - m0) * ls])
            pad = (-x.shape[1]) % ls
            scores = self.finder.scores(np.pad(x, ((0, 0), (0, pad))) if pad else x)  # (T'', G)
            dets = self.detect(scores[f0 - m0:f1 - m0])  # (f1 - f0) lists
            dets += [[]] * (f1 - f0 - len(dets))
        else:
            dets = [[] for _ in range(f1 - f0)]
        for frame in dets:
            died += self.tracker.step(frame)
        if closing:
            died += self.tracker.close()
        # tracks that became objects: confirmed with enough active frames (then never dropped by `track`); a track
        # that died in this window counts its filled gaps too, as `track` does; ids in order of onset
        min_len = self.tracker.min_length_frames
        fresh = [tr for tr in self.tracker.live if tr.confirmed and len(tr.hits) >= min_len]
        fresh += [tr for tr in died if self.tracker.length(tr) >= min_len]
        for tr in sorted(fresh, key=lambda tr: (tr.first, tr.uid)):
            if tr.uid not in self.objects:
                self._register(tr)
        for tr in died:
            if tr.uid in self.objects:
                self.objects[tr.uid].final = self.tracker.smoothed(tr, tr.first, tr.last_hit + 1, final=True)
                self.objects[tr.uid].ended = True
        self._separate(f0, f1, closing)
        events = []
        new = sorted((o for o in self.objects.values() if not o.onset_sent), key=lambda o: o.id)
        self._classify(new)
        for o in new:
            events.append(self._onset_event(o, f1))
            events += self._alert(o, events[-1])
        events += self._end_objects([o.track for o in self.objects.values() if o.ended], f1)
        events += self._zone_alerts(f0, f1)
        keep_from = max(self._seg_start, (f1 - max(self.Lc, self.Sc + 1)) * ls)
        if keep_from > self._buf_start:
            self._samples(self._buf_start, self._buf_start)  # join pending chunks first
            self._buf = self._buf[:, keep_from - self._buf_start:].copy()  # (M, n) from keep_from
            self._buf_start = keep_from
        self._f0 = f1
        if self.keep is not None:
            self.keep.expire(self.now_s)
        busy = time.perf_counter() - t_start
        self.stats["windows"] += 1
        self.stats["processed_s"] += (f1 - f0) * LABEL_HOP
        self.stats["busy_s"] += busy
        self.stats["max_window_s"] = max(self.stats["max_window_s"], busy)
        from deepasa.inference.analyze import _trim_heap

        _trim_heap()
        return events

    def _check_format(self, x: np.ndarray) -> None:
        """Once 2 s of audible audio (M, n) were heard: a note when the channel energies do not fit ``fmt``
        (the check ``analyze`` refuses a file by; a live stream is analysed anyway)."""
        if self._heard < 0:
            return
        self._energy += (x.astype(np.float64) ** 2).sum(axis=1)  # (M,)
        self._heard += x.shape[1]
        if self._heard >= 2 * SAMPLE_RATE:
            from deepasa.audio.io import check_format

            self._heard = -1
            try:
                check_format(self._energy, self.fmt, "the stream")
            except DeepASAError as exc:
                self.log(f"warning: {exc}")

    def _register(self, tr: _Track) -> _Object:
        """Make a track an object with the next id."""
        obj = self.objects[tr.uid] = _Object(self.next_id, tr)
        self.next_id += 1
        self.stats["objects"] += 1
        return obj

    def _trajectory(self, o: _Object, t0: int, t1: int) -> tuple[np.ndarray, np.ndarray]:
        """Activity (t1 - t0,) and direction (t1 - t0, 3) of an object: final once dead, else provisional."""
        if o.final is not None:
            act, doa = o.final
            first = o.track.first
            out_act = np.zeros(t1 - t0, bool)
            idx = np.clip(np.arange(t0, t1) - first, 0, len(act) - 1)  # (t1 - t0,) hold the ends
            inside = (np.arange(t0, t1) >= first) & (np.arange(t0, t1) < first + len(act))
            out_act[inside] = act[idx[inside]]
            return out_act, doa[idx]
        return self.tracker.smoothed(o.track, t0, t1)

    def _separate(self, f0: int, f1: int, closing: bool) -> None:
        """The spatial stage on frames [f0 - Sc, f1); each object's selected frames go to its class signal."""
        ls = LABEL_SAMPLES
        a0 = max(self._seg_start // ls, f0 - self.Sc)
        end = min(self._pos, f1 * ls)
        objs = [o for o in self.objects.values() if o.track.first < f1 and not (o.ended and o.decided >= f1)]
        trajs = [self._trajectory(o, a0 - 1, f1 + 1) for o in objs]  # one frame either side for the widening
        objs_in = [(o, a, d) for o, (a, d) in zip(objs, trajs) if a.any()]
        if not objs_in:
            return
        objs_in.sort(key=lambda e: (e[0].track.first, e[0].track.uid))  # analyze's order: by first active frame
        x = self._samples(a0 * ls, end)  # (M, n)
        act = np.stack([a[1:-1] for _, a, _ in objs_in])  # (K, f1 - a0)
        doa = np.stack([d[1:-1] for _, _, d in objs_in])  # (K, f1 - a0, 3)
        n_frames = -(-x.shape[1] // ls)
        chans = None if self.keep is not None else [0]
        img = separate_images(x, act[:, :n_frames], doa[:, :n_frames], fmt=self.fmt, channels=chans)  # (K, C, n)
        last = f1 if closing else f1 - 1  # the frame at the window's end waits for the next frame's activity
        for i, (o, a, _) in enumerate(objs_in):
            ref = img[i, 0]  # (n,) reference channel
            for t in range(max(o.decided, a0), min(last, a0 + n_frames)):
                k = t - a0 + 1  # index into a (one frame of margin before a0)
                if a[k - 1] or a[k] or a[k + 1]:
                    o.signal.add(ref[(t - a0) * ls:(t - a0 + 1) * ls])
            o.decided = max(o.decided, min(last, a0 + n_frames))
            if self.keep is not None:
                self.keep.add(o.id, a0, img[i], a[1:-1][:n_frames], start_frame=max(o.track.first - 1, a0))

    def _classify(self, objs: list) -> None:
        """Class and confidence of each object from its class signal (the read-out ``analyze`` applies)."""
        objs = [o for o in objs if o.classified != o.signal.count]  # what was heard since the last read-out
        if self.classifier is None or not objs:
            return
        prob = self.classifier.predict_proba([o.signal.signal() for o in objs])  # (K, C)
        for o, p in zip(objs, prob):
            ci = int(np.argmax(p))
            o.class_name, o.confidence, o.classified = self.class_names[ci], float(p[ci]), o.signal.count

    def _doa_list(self, act: np.ndarray, doa: np.ndarray, first: int) -> list[dict]:
        from deepasa.audio.geometry import azimuth_elevation

        frames = np.flatnonzero(act)  # (F,)
        if not len(frames):
            return []
        az, el = azimuth_elevation(doa[frames])  # (F,) each
        return [{"time_s": round((first + int(f)) * LABEL_HOP, 3), "azimuth_deg": round(float(a), 1),
                 "elevation_deg": round(float(e), 1)} for f, a, e in zip(frames, az, el)]

    def _onset_event(self, o: _Object, f1: int) -> dict:
        o.onset_sent = True
        act, doa = self._trajectory(o, o.track.first, f1)
        ev = {"type": "onset", "id": o.id, "class": o.class_name, "confidence": round(o.confidence, 3),
              "final": False, "onset_s": round(o.track.first * LABEL_HOP, 3), "offset_s": None,
              "at_s": round(self.now_s, 3), "doa": self._doa_list(act, doa, o.track.first)}
        return ev

    def _end_objects(self, tracks: list, f_now: int) -> list[dict]:
        """End events of the objects of these (dead) tracks, classified from their whole class signal."""
        objs = []
        for tr in tracks:
            o = self.objects.get(tr.uid)
            if o is None and self.tracker.length(tr) >= self.tracker.min_length_frames:
                o = self._register(tr)
            if o is None:
                continue
            if o.final is None:
                o.final = self.tracker.smoothed(tr, tr.first, tr.last_hit + 1, final=True)
            objs.append(o)
        self._classify(objs)
        events = []
        duration = self._pos / SAMPLE_RATE
        for o in sorted(objs, key=lambda o: o.id):
            from deepasa.inference.result import activity_segments

            act, doa = o.final
            first = o.track.first
            segs = [(round(on + first * LABEL_HOP, 3), round(min(off + first * LABEL_HOP, duration), 3))
                    for on, off in activity_segments(act, LABEL_HOP, float("inf"))]
            ev = {"type": "end", "id": o.id, "class": o.class_name, "confidence": round(o.confidence, 3),
                  "final": True, "onset_s": segs[0][0], "offset_s": segs[-1][1], "at_s": round(self.now_s, 3),
                  "segments": [{"onset_s": a, "offset_s": b} for a, b in segs],
                  "doa": self._doa_list(act, doa, first)}
            if not o.onset_sent:  # confirmed and dead within one window: its onset line first
                o.onset_sent = True
                events.append({**ev, "type": "onset", "final": False, "offset_s": None})
                events[-1].pop("segments")
            events.append(ev)
            events += self._alert(o, ev)
            if self.keep is not None:
                self.keep.finish(ev, self.now_s)
            del self.objects[o.track.uid]
        return events

    def _alert(self, o: _Object, ev: dict) -> list[dict]:
        if self.alerts is None or o.alerted or not ev["doa"]:
            return []
        i = self.alerts.match(o.class_name, [d["azimuth_deg"] for d in ev["doa"]])
        if i is None:
            return []
        o.alerted = True
        d = ev["doa"][i]
        return [{"type": "alert", "id": o.id, "class": o.class_name, "confidence": round(o.confidence, 3),
                 "onset_s": round(o.track.first * LABEL_HOP, 3), "at_s": round(self.now_s, 3),
                 "time_s": d["time_s"], "azimuth_deg": d["azimuth_deg"], "elevation_deg": d["elevation_deg"],
                 "rule": self.alerts.describe()}]

    def _zone_alerts(self, f0: int, f1: int) -> list[dict]:
        """Alerts of live objects (onset sent) that match the rule in this window's frames."""
        if self.alerts is None:
            return []
        events = []
        for o in self.objects.values():
            if o.onset_sent and not o.alerted and not o.ended:
                t0 = max(f0, o.track.first)
                act, doa = self.tracker.smoothed(o.track, t0, f1)
                events += self._alert(o, {"doa": self._doa_list(act, doa, t0)})
        return events

    def summary(self) -> dict:
        """The counters of the run: analysed and skipped seconds, real-time factor (busy / analysed), objects."""
        st = self.stats
        return {"type": "summary", "stream_s": round(self.now_s, 3), "processed_s": round(st["processed_s"], 3),
                "skipped_s": round(st["skipped_s"], 3), "windows": st["windows"], "objects": st["objects"],
                "next_id": self.next_id, "nonfinite_samples": st["nonfinite_samples"],
                "real_time_factor": round(st["busy_s"] / st["processed_s"], 4) if st["processed_s"] else None,
                "slowest_window_s": round(st["max_window_s"], 3)}
