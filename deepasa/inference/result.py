"""The result of :func:`deepasa.inference.analyze.analyze`: :class:`SceneAnalysis` and its :class:`SceneObject` s.

Signals are not held in memory: every object's image/direct/reverb and the noise estimate live in WAV files
(M channels, at the input's sample rate) under ``SceneAnalysis.root`` and are read when asked for
(``obj.image``). ``SceneAnalysis.save(dir)`` writes the layout of docs/analyze.md ("Outputs")::

    DIR/objects/<j>_<class>/{image,direct,reverb}.wav   M-ch, input sample rate
    DIR/noise.wav
    DIR/events.csv        DCASE 2023 output format (frame, class, track, azimuth, elevation), 100-ms frames
    DIR/objects.json      per object: class, confidence, active segments (onset/offset s), DoA per frame
    DIR/report.html       self-contained report (figures and audio embedded), PNGs in DIR/figures/

into a temporary sibling folder that is renamed into place only when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from deepasa.audio.geometry import azimuth_elevation
from deepasa.errors import DeepASAError

__all__ = ["SceneObject", "SceneAnalysis", "OBJECTS_JSON_VERSION", "activity_segments"]

OBJECTS_JSON_VERSION = "deepasa-objects/1"
#: What the summary and the report say when no slot passed the decision rule (docs/spec.md §1) in any frame.
NO_OBJECT = ("no object found: no slot had a 100-ms frame that passed the model's decision rule (on/off probability "
             "above its onoff threshold, 0.5 unless set, and, unless its doa_norm threshold is 0, a DoA-vector "
             "norm above that); see the model card for how often this model detects")


def activity_segments(active: np.ndarray, hop_s: float, duration_s: float) -> list[tuple[float, float]]:
    """Runs of active frames as (onset, offset) seconds.

    Args:
        active: (T,) bool per frame of ``hop_s`` seconds.
        duration_s: the recording's length (the last offset is clipped to it).

    >>> activity_segments(np.array([0, 1, 1, 0, 1], bool), 0.1, 0.45)
    [(0.1, 0.3), (0.4, 0.45)]
    """
    a = np.concatenate([[False], np.asarray(active, bool), [False]])
    edges = np.flatnonzero(np.diff(a.astype(np.int8)))  # (2R,) alternating rise/fall indices
    pairs = edges.reshape(-1, 2)  # (R, 2) onset / offset frame of each run
    return [(round(float(on * hop_s), 6), round(float(min(off * hop_s, duration_s)), 6)) for on, off in pairs]


@dataclass
class SceneObject:
    """One sound object of a recording.

    Attributes:
        id: object number (0, 1, ... in order of first activity).
        class_index, class_name: its class (argmax of the activity-weighted clip posteriors of its windows).
        confidence: the posterior of that class (mean over its active frames).
        activity: (T,) bool per 100-ms frame of the whole recording.
        doa: (T, 3) unit direction per frame (zero where the model gave no direction).
        segments: active runs as (onset, offset) seconds.
        files: kind ("image", "direct", "reverb") -> path relative to the analysis root.
        folder: its folder relative to the root (``objects/<id>_<class>``).
    """

    id: int
    class_index: int
    class_name: str
    confidence: float
    activity: np.ndarray
    doa: np.ndarray
    segments: list
    files: dict
    folder: str
    _analysis: "SceneAnalysis | None" = field(default=None, repr=False)

    @property
    def azimuth(self) -> np.ndarray:
        """(T,) degrees, NaN where inactive."""
        az, _ = azimuth_elevation(np.where(self.activity[:, None], self.doa, [1.0, 0.0, 0.0]))
        return np.where(self.activity, az, np.nan)

    @property
    def elevation(self) -> np.ndarray:
        """(T,) degrees, NaN where inactive."""
        _, el = azimuth_elevation(np.where(self.activity[:, None], self.doa, [1.0, 0.0, 0.0]))
        return np.where(self.activity, el, np.nan)

    def path(self, kind: str = "image") -> Path:
        """Absolute path of its ``kind`` WAV file."""
        if kind not in self.files:
            raise DeepASAError(f"object {self.id} has no {kind} signal (this model has no such head)")
        return self._analysis.root / self.files[kind]

    def signal(self, kind: str = "image") -> np.ndarray:
        """Read its ``kind`` signal: (M, N) float32 at the input sample rate."""
        data, _ = sf.read(str(self.path(kind)), dtype="float32", always_2d=True)  # (N, M)
        return np.ascontiguousarray(data.T)  # (M, N)

    image = property(lambda self: self.signal("image"), doc="(M, N) reverberant image (read from disk).")
    direct = property(lambda self: self.signal("direct"), doc="(M, N) direct-path image (read from disk).")
    reverb = property(lambda self: self.signal("reverb"), doc="(M, N) reverberant part (read from disk).")

    def to_json(self, hop_s: float) -> dict:
        """The ``objects.json`` entry: class, confidence, segments, DoA per active frame, files."""
        frames = np.flatnonzero(self.activity)
        az, el = self.azimuth, self.elevation
        return {
            "id": self.id, "class": self.class_name, "class_index": self.class_index,
            "confidence": round(float(self.confidence), 4), "folder": self.folder,
            "files": dict(self.files),
            "segments": [{"onset_s": on, "offset_s": off} for on, off in self.segments],
            "doa": [{"frame": int(f), "time_s": round(f * hop_s, 6), "azimuth_deg": round(float(az[f]), 2),
                     "elevation_deg": round(float(el[f]), 2),
                     "xyz": [round(float(v), 5) for v in self.doa[f]]} for f in frames],
        }


@dataclass
class SceneAnalysis:
    """Everything ``analyze`` found in one recording.

    Attributes:
        objects: the :class:`SceneObject` s.
        root: folder holding the signal files (a temporary folder until :meth:`save`).
        sample_rate: input (and output) sample rate; model_sample_rate: the model's.
        n_samples: input length (samples at ``sample_rate``); n_channels: M.
        n_frames: 100-ms label frames; label_hop_s: their length (0.1).
        fmt: "mic" or "foa"; class_names: the model's classes.
        window_s, hop_s: the analysis windows; n_windows: how many.
        source: input path or "<array>".
        mixture_spectrogram: (F, K) dB spectrogram of the reference channel; spectrogram_times (K,) s,
            spectrogram_freqs (F,) Hz (computed while streaming, for the report).
        mixture_preview: (n,) reference channel, first seconds at ``preview_rate`` (the report's player).
        messages: notes given while analysing (resampling ...).
        no_object_message: what an analysis without objects says (the decision rule; summary and report).
    """

    no_object_message = NO_OBJECT

    objects: list
    root: Path
    sample_rate: int
    model_sample_rate: int
    n_samples: int
    n_channels: int
    n_frames: int
    label_hop_s: float
    fmt: str
    class_names: list
    window_s: float
    hop_s: float
    n_windows: int
    source: str
    mixture_spectrogram: np.ndarray | None = None
    spectrogram_times: np.ndarray | None = None
    spectrogram_freqs: np.ndarray | None = None
    mixture_preview: np.ndarray | None = None
    preview_rate: int = 16000
    messages: list = field(default_factory=list)
    model_info: dict = field(default_factory=dict)
    _cleanup: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for obj in self.objects:
            obj._analysis = self

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.n_samples / self.sample_rate

    @property
    def noise_path(self) -> Path:
        """Absolute path of ``noise.wav``."""
        return self.root / "noise.wav"

    @property
    def noise(self) -> np.ndarray:
        """(M, N) background estimate (read from disk)."""
        data, _ = sf.read(str(self.noise_path), dtype="float32", always_2d=True)  # (N, M)
        return np.ascontiguousarray(data.T)  # (M, N)

    def dcase_frames(self) -> dict:
        """DCASE frame dictionary ``{frame: [(class, track = object id, unit xyz), ...]}``."""
        frames: dict = {}
        for obj in self.objects:
            for f in np.flatnonzero(obj.activity):
                frames.setdefault(int(f), []).append((obj.class_index, obj.id, obj.doa[f]))
        return frames

    def to_json(self) -> dict:
        """The ``objects.json`` document."""
        return {
            "format": OBJECTS_JSON_VERSION,
            "input": self.source, "sample_rate": self.sample_rate, "model_sample_rate": self.model_sample_rate,
            "n_channels": self.n_channels, "audio_format": self.fmt,
            "duration_s": round(self.duration, 6), "label_hop_s": self.label_hop_s, "n_frames": self.n_frames,
            "window_s": self.window_s, "hop_s": self.hop_s, "n_windows": self.n_windows,
            "class_names": list(self.class_names), "model": self.model_info, "noise": "noise.wav",
            "messages": list(self.messages),
            "objects": [obj.to_json(self.label_hop_s) for obj in self.objects],
        }

    def _write_tables(self, folder: Path) -> None:
        from deepasa.metrics.seld_dcase import write_dcase_csv

        write_dcase_csv(folder / "events.csv", self.dcase_frames())
        (folder / "objects.json").write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")

    def save(self, directory: str | Path, overwrite: bool = False, report: bool = True) -> Path:
        """Write the docs/analyze.md layout to ``directory`` (atomically: temporary folder, then rename).

        Signal files of an unsaved analysis are moved (not copied) out of its temporary folder, and this
        object then points at ``directory``. Returns ``directory``.

        Raises:
            DeepASAError: ``directory`` exists and ``overwrite`` is False.
        """
        out = Path(directory)
        if out.exists() and not overwrite:
            raise DeepASAError(f"output folder exists: {out} (use --overwrite to replace it)")
        if out.resolve() == self.root.resolve():
            raise DeepASAError(f"{out} already holds this analysis")
        partial = out.parent / f".{out.name}.partial-{os.getpid()}"
        owned = self._cleanup is not None and self._cleanup.alive
        old_root, moved = self.root, False
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            if owned and self.root.resolve() != partial.resolve():
                shutil.rmtree(partial, ignore_errors=True)
                shutil.move(str(self.root), str(partial))  # a rename on the same file system
                moved = True
            elif not owned:
                shutil.rmtree(partial, ignore_errors=True)
                partial.mkdir(parents=True)
                for obj in self.objects:
                    for rel in obj.files.values():
                        (partial / rel).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(self.root / rel, partial / rel)
                shutil.copyfile(self.noise_path, partial / "noise.wav")
            self.root = partial
            (partial / "objects").mkdir(exist_ok=True)  # the layout is the same when nothing was found
            self._write_tables(partial)
            if report:
                from deepasa.report.analysis_report import write_report

                write_report(self, partial)
            trash = None   # folder swap with a trash step (undone on error below): not deepasa.staging.atomic_path
            if out.exists():
                trash = out.parent / f".{out.name}.old-{os.getpid()}"
                os.replace(out, trash)
            os.replace(partial, out)
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
        except BaseException:
            if moved:  # give the unsaved analysis its files back
                shutil.move(str(partial), str(old_root))
            elif not (owned and old_root.resolve() == partial.resolve()):
                shutil.rmtree(partial, ignore_errors=True)
            self.root = old_root
            raise
        self.root = out
        if owned:
            self._cleanup.detach()
            self._cleanup = None
        return out

    @classmethod
    def load(cls, directory: str | Path) -> "SceneAnalysis":
        """Open an analysis folder (what :meth:`save` or ``deepasa analyze`` wrote, or an oracle analysis).

        Signals stay on disk; ``objects.json`` gives the objects (activity = the frames it lists a DoA for).
        The files are checked: each WAV exists with ``n_channels`` channels, the analysed sample rate and length.

        Returns:
            :class:`SceneAnalysis` with ``root = directory`` (``mixture_spectrogram`` etc. are None).
        Raises:
            DeepASAError: not an analysis folder, another format, or damaged (one line saying what).
        """
        root = Path(directory)
        doc_path = root / "objects.json"
        if not root.is_dir():
            raise DeepASAError(f"no such analysis folder: {root}")
        if not doc_path.is_file():
            raise DeepASAError(f"{root} is not an analysis folder (no objects.json; make one with deepasa analyze)")
        try:
            doc = json.loads(doc_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise DeepASAError(f"{doc_path} is damaged (not valid JSON: {str(exc).splitlines()[0]})") from None
        if not isinstance(doc, dict) or doc.get("format") != OBJECTS_JSON_VERSION:
            got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise DeepASAError(f"{doc_path} is not a {OBJECTS_JSON_VERSION} analysis (format {got!r})")
        try:
            sr, m = int(doc["sample_rate"]), int(doc["n_channels"])
            n, hop, n_frames = int(round(float(doc["duration_s"]) * sr)), float(doc["label_hop_s"]), int(doc["n_frames"])
            objects = []
            for o in doc["objects"]:
                activity = np.zeros(n_frames, dtype=bool)
                doa = np.zeros((n_frames, 3))
                for d in o["doa"]:
                    activity[int(d["frame"])] = True
                    doa[int(d["frame"])] = d["xyz"]
                doa /= np.maximum(np.linalg.norm(doa, axis=-1, keepdims=True), 1e-12)  # (T, 3) unit, zero if unknown
                objects.append(SceneObject(
                    id=int(o["id"]), class_index=int(o["class_index"]), class_name=str(o["class"]),
                    confidence=float(o["confidence"]), activity=activity, doa=doa,
                    segments=[(float(s["onset_s"]), float(s["offset_s"])) for s in o["segments"]],
                    files={str(k): str(v) for k, v in o["files"].items()}, folder=str(o["folder"])))
            analysis = cls(objects=objects, root=root, sample_rate=sr, model_sample_rate=int(doc["model_sample_rate"]),
                           n_samples=n, n_channels=m, n_frames=n_frames, label_hop_s=hop, fmt=str(doc["audio_format"]),
                           class_names=list(doc["class_names"]), window_s=float(doc["window_s"]),
                           hop_s=float(doc["hop_s"]), n_windows=int(doc["n_windows"]), source=str(doc["input"]),
                           messages=list(doc.get("messages", [])), model_info=dict(doc.get("model") or {}))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise DeepASAError(f"{doc_path} is damaged (bad or missing entry: {exc})") from None
        if len({o.id for o in objects}) != len(objects):
            raise DeepASAError(f"{doc_path} is damaged (two objects with the same id)")
        wavs = [rel for o in objects for rel in o.files.values()] + [str(doc.get("noise", "noise.wav"))]
        for rel in wavs:
            path = root / rel
            try:
                info = sf.info(str(path))
            except Exception:
                raise DeepASAError(f"{root} is damaged: {rel} is missing or unreadable") from None
            if (info.channels, info.samplerate, info.frames) != (m, sr, n):
                raise DeepASAError(f"{root} is damaged: {rel} has {info.channels} channel(s), {info.samplerate} Hz, "
                                   f"{info.frames} samples; objects.json says {m}, {sr} Hz, {n}")
        return analysis

    def remix(self, edits=None, *, extract: str | None = None, workers: int = 1, **kw) -> np.ndarray:
        """Re-render the scene with object-wise edits (:func:`deepasa.inference.remix.remix`).

        Args:
            edits: a :class:`~deepasa.inference.remix.RemixEdits`, or the same as keywords: ``mute=[...]``,
                ``gain={obj: dB}``, ``move={obj: (az, el)}``, ``rotate={obj: (daz, del)}``, ``dry=[...]``,
                ``rotate_scene=daz``, ``noise_gain=dB``, ``fmt="mic"|"foa"``; obj is an id or a class name.
            extract: "beamformer" (default) or "reference" (mono direct signal of re-rendered objects).
        Returns:
            (4, N) float32 at ``sample_rate``.

        Example::

            analysis = SceneAnalysis.load("rec_analysis")
            y = analysis.remix(move={0: (90, 0)}, mute=["dog_bark"])   # (4, N)
        """
        from deepasa.inference.remix import EXTRACTORS, RemixEdits, remix

        if edits is None:
            if "fmt" in kw:
                kw["format"] = kw.pop("fmt")
            edits = RemixEdits.from_mapping(kw, "remix()")
        elif kw:
            raise TypeError("pass either a RemixEdits or keyword edits, not both")
        return remix(self, edits, extract=extract or EXTRACTORS[0], workers=workers)

    def own_temporary_root(self) -> None:
        """Delete ``root`` when this object is garbage-collected unless it was saved (temporary results)."""
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.root), True)

    def summary(self) -> str:
        """A few lines: one per object (class, confidence, active time, mean direction)."""
        lines = [f"{self.source}: {self.duration:.1f} s, {self.n_channels} ch, {self.sample_rate} Hz, "
                 f"{len(self.objects)} object(s), {self.n_windows} window(s)"]
        if not self.objects:
            lines.append(f"  {NO_OBJECT}")
        for obj in self.objects:
            act = obj.activity
            az = np.nanmedian(obj.azimuth) if act.any() else float("nan")
            el = np.nanmedian(obj.elevation) if act.any() else float("nan")
            lines.append(f"  {obj.id}: {obj.class_name:<20s} conf {obj.confidence:.2f}  "
                         f"active {act.sum() * self.label_hop_s:.1f} s in {len(obj.segments)} segment(s)  "
                         f"az {az:.0f}° el {el:.0f}° (median)")
        return "\n".join(lines)
