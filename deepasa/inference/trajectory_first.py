"""Trajectory-first analysis: find every object's trajectory, separate by when and where, then classify it.

    result = analyze_trajectories("rec.wav")                  # a SceneAnalysis, as ``analyze`` returns
    deepasa analyze rec.wav --out rec_analysis                 # the same from the command line (the default)

The pipeline (docs/separation.md, docs/finder.md):

1. **Find** (a map finder): per 100-ms label frame, a score over a grid of directions — the learned
   localisation-map finder (``"finder"``: the shipped ``checkpoints/finder.pt``, or another checkpoint;
   :mod:`deepasa.model.finder`) or the classical SRP-PHAT map (``"srp"``, no training,
   :mod:`deepasa.tracking.srp`); peaks per frame; a multi-target
   tracker joins them into objects, each with one identity over the whole recording. The maps are computed
   in 30-s chunks, the tracker runs over the whole recording (its state is a few numbers per frame).
2. **Separate** each object by its activity and direction: the zero-training spatial stage
   (:mod:`deepasa.separation`) or, given one, the learned trajectory-conditioned extractor on top of it
   (:mod:`deepasa.model.extractor`), in 10-s chunks cross-faded over 1 s. The objects and ``noise.wav`` (the
   remainder) add up to the recording.
3. **Classify** each separated object from its own signal (:mod:`deepasa.model.object_classes`, a read-out on
   a frozen pretrained sound-effect embedding), when a read-out is available; otherwise every object is
   ``"object"``.

MIC (tetrahedral) and FOA (first-order Ambisonics, ACN/SN3D) recordings at any sample rate (resampled to 16 kHz
and back). FOA has its own classical finder (the active-intensity map, :mod:`deepasa.tracking.foa`) and the
same spatial stage with the FOA steering (:mod:`deepasa.separation`); a learned finder named by its checkpoint
reads FOA through a virtual MIC rendering (:func:`deepasa.tracking.foa.virtual_mic`); the extractor reads MIC
recordings only.
"""

from __future__ import annotations

import functools
import math
import shutil
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from deepasa.audio.geometry import FUMA_TO_AMBIX
from deepasa.audio.io import MIC_MIN_RATIO, energy_ratio
from deepasa.errors import DeepASAError
from deepasa.inference.analyze import (PREVIEW_SECONDS, AudioSource, _model_rate_blocks, _safe_name,
                                       _write_wav_stream, check_format, extractor_separate,
                                       in_workdir, resampling_note, spatial_pass, write_complement)
from deepasa.inference.overlap_add import RawFileSink
from deepasa.inference.result import SceneAnalysis, SceneObject, activity_segments
from deepasa.model.extractor import load_extractor
from deepasa.model.finder import MapFinder
from deepasa.model.object_classes import load_classifier
from deepasa.separation import separate

SAMPLE_RATE = 16000
LABEL_HOP = 0.1
N_MICS = 4
AMBIX_MAX_RATIO = 1.2  # AmbiX gives at most 1 (plane waves and diffuse noise); above this, say FuMa may be meant
FUMA_RATIO = 2.1  # FuMa read as AmbiX gives about 2 (W at -3 dB); MIC arrays about 3
CHUNK_S = 30.0
# the spatial stage's chunk: its memory grows with chunk length × objects active in the chunk (~9 MB per object
# and second of chunk: a busy 30-s chunk with 15 objects peaks at 4.2 GB, 10 s keeps that near 1.5 GB); its MWF
# covariances are 0.5 s long, so chunk edges (cross-faded over 1 s) cost nothing measurable
SEPARATION_CHUNK_S = 10.0
UNKNOWN = "object"


def format_from_energies(energy: np.ndarray, name: str = "input") -> str:
    """``"foa"`` or ``"mic"`` from a 4-channel recording's channel energies (Y + Z + X carry at most W's energy in
    FOA, about 3x in MIC).

    Args:
        energy: (4,) the channels' energies; name: the recording's name for the message.
    Raises:
        DeepASAError: channels 2-4 carry between MIC_MIN_RATIO and FUMA_RATIO times channel 1's energy, as FuMa
            B-format read as AmbiX does or an unbalanced microphone array: the caller must say which.
    """
    ratio = energy_ratio(energy)
    if MIC_MIN_RATIO <= ratio <= FUMA_RATIO:
        raise DeepASAError(f"{name}: channels 2-4 carry {ratio:.2f}x the energy of channel 1, as FuMa "
                           "B-format (W at -3 dB) does, or an unbalanced microphone array: say which with "
                           "--format foa --foa-convention fuma or --format mic")
    return "foa" if ratio < MIC_MIN_RATIO else "mic"


def analyze_trajectories(path_or_array, finder: str | Path | MapFinder = "finder", sample_rate: int | None = None, *,
                         classifier=None, extractor=None, workdir: str | Path | None = None, progress: bool = False,
                         log: Callable[[str], None] | None = None, fmt: str | None = None,
                         foa_convention: str = "ambix") -> SceneAnalysis:
    """Every sound object of a MIC or FOA recording, trajectory first (module docstring).

    Args:
        path_or_array: an audio file or a (4, N) array.
        finder: ``"finder"`` (the shipped learned finder), ``"srp"``, a finder checkpoint path, or a
            :class:`MapFinder`. FOA recordings are found by the active-intensity map by default (``"srp"`` for
            FOA; ``"finder"`` falls back to it, with a note); a finder checkpoint path reads FOA through a virtual
            MIC rendering (:func:`deepasa.tracking.foa.virtual_mic`).
        sample_rate: the array's rate (default 16 kHz); for a file, optional and must match it.
        classifier: an object class read-out (default: ``checkpoints/object_classes.pt`` when present; pass
            ``False`` for none).
        extractor: a trajectory-conditioned extractor (or a path); None = the zero-training stage.
        workdir: folder for the signal files (default: a temporary folder deleted unless the result is saved).
        progress: print one line per chunk.
        log: receives one-line notes (default: stderr).
        fmt: ``"mic"`` (tetrahedral array), ``"foa"`` (first-order Ambisonics, ACN/SN3D: W, Y, Z, X) or None:
            told from the channel energies (Y + Z + X carry at most W's energy in FOA, about 3× in MIC), with
            a note saying which.
        foa_convention: ``"ambix"`` (ACN/SN3D) or ``"fuma"`` (W, X, Y, Z with W at −3 dB), converted to AmbiX
            on input; every output (objects, ``noise.wav``) is then AmbiX.
    Returns:
        :class:`~deepasa.inference.result.SceneAnalysis` (objects numbered by first activity).
    Raises:
        DeepASAError: bad input (as :func:`~deepasa.inference.analyze.analyze`) or a missing checkpoint.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if fmt not in (None, "mic", "foa"):
        raise DeepASAError(f"unknown format {fmt!r} (mic or foa)")
    if foa_convention not in ("ambix", "fuma"):
        raise DeepASAError(f"unknown FOA convention {foa_convention!r} (ambix or fuma)")
    if foa_convention == "fuma":
        if fmt == "mic":
            raise DeepASAError("--foa-convention fuma is for FOA recordings, not --format mic")
        fmt = "foa"
    MapFinder.check_spec(finder)
    if classifier is None:
        classifier = load_classifier(None)
    elif classifier is False:
        classifier = None
    if isinstance(extractor, (str, Path)):
        extractor = load_extractor(extractor)
    src = AudioSource(path_or_array, sample_rate, default_rate=SAMPLE_RATE)
    if src.n_channels != N_MICS:
        raise DeepASAError(f"{src.name} has {src.n_channels} channel(s); the trajectory-first pipeline expects "
                           f"{N_MICS} (tetrahedral microphone array or first-order Ambisonics)")
    energy = src.scan()
    messages = []
    ratio = energy_ratio(energy)
    if fmt is None:
        fmt = format_from_energies(energy, src.name)
        if fmt == "foa":
            messages.append(f"read as first-order Ambisonics (ACN/SN3D: W, Y, Z, X): channels 2-4 carry {ratio:.2f}x "
                            "the energy of channel 1 (pass --format mic to override)")
            log(messages[-1])
    if foa_convention == "fuma":
        src.matrix = FUMA_TO_AMBIX
        # the converted channels' energies without a second read: the conversion scales and reorders channels
        energy = FUMA_TO_AMBIX ** 2 @ energy
        messages.append("FuMa B-format (W, X, Y, Z; W at -3 dB) converted to AmbiX (ACN/SN3D) on input: every "
                        "output is AmbiX")
        log(messages[-1])
    elif fmt == "foa" and ratio > AMBIX_MAX_RATIO:
        messages.append(f"channels 2-4 carry {ratio:.2f}x the energy of W, more than AmbiX (ACN/SN3D) gives; if this "
                        "is FuMa (W, X, Y, Z), pass --foa-convention fuma")
        log(messages[-1])
    check_format(energy, fmt, src.name)
    if fmt == "foa":
        if extractor is not None:
            raise DeepASAError("the trajectory-conditioned extractor reads MIC recordings; FOA is separated by the "
                               "spatial stage (--separation spatial)")
        if not isinstance(finder, MapFinder) and str(finder) == "finder":
            messages.append("objects of an FOA recording are found by the active-intensity map (a finder "
                            "checkpoint path reads FOA through a virtual MIC rendering)")
            finder = "srp"
    finder = finder if isinstance(finder, MapFinder) else MapFinder(finder, fmt=fmt)
    if finder.fmt != fmt:
        raise DeepASAError(f"a {finder.fmt.upper()} finder cannot read this {fmt.upper()} recording")
    messages += resampling_note(src, SAMPLE_RATE, log, "the pipeline's rate")
    n_model = int(round(src.n_samples * SAMPLE_RATE / src.sample_rate))
    return in_workdir(workdir, lambda root: _run(src, n_model, root, finder, classifier, extractor, messages,
                                                  progress, log, fmt))


def _run(src: AudioSource, n_model: int, root: Path, finder: MapFinder, classifier, extractor, messages: list,
         progress: bool, log, fmt: str = "mic") -> SceneAnalysis:
    from deepasa.audio.spectrogram import StreamingSpectrogram

    ls = int(round(LABEL_HOP * SAMPLE_RATE))
    n_frames = math.ceil(n_model / ls)
    chunk = int(round(CHUNK_S / LABEL_HOP)) * ls
    # 1. maps, chunk by chunk (and the report's spectrogram and preview on the way)
    spec = StreamingSpectrogram(n_model, SAMPLE_RATE)
    n_preview, preview, fed = int(PREVIEW_SECONDS * SAMPLE_RATE), [], 0
    maps, buf = [], np.zeros((N_MICS, 0), np.float32)
    for blk in _model_rate_blocks(src, SAMPLE_RATE, n_model):
        spec.feed(blk[0])
        if fed < n_preview:
            preview.append(blk[0, : n_preview - fed].copy())
        fed += blk.shape[1]
        buf = np.concatenate([buf, blk], axis=1)  # (M, n)
        while buf.shape[1] >= chunk:
            maps.append(finder.scores(buf[:, :chunk]))  # (chunk / ls, G)
            buf = buf[:, chunk:]
            if progress:
                log(f"found directions in {len(maps) * CHUNK_S:.0f} s")
    if buf.shape[1]:
        pad = (-buf.shape[1]) % ls
        maps.append(finder.scores(np.pad(buf, ((0, 0), (0, pad)))))  # (T'_last, G)
    scores = np.concatenate(maps, axis=0)[:n_frames]  # (T', G)
    tracks = finder.track(scores)
    # 2. separate every object by when and where
    raw = RawFileSink(root / "_raw", N_MICS)
    objects_in = [(j, tracks.activity[j, :n_frames], tracks.doa[j, :n_frames]) for j in range(tracks.n_objects)
                  if tracks.activity[j].any()]
    separate_fn = extractor_separate(extractor) if extractor is not None else functools.partial(separate, fmt=fmt)
    spatial_pass(_model_rate_blocks(src, SAMPLE_RATE, n_model), n_model, SAMPLE_RATE, LABEL_HOP, objects_in, raw,
                 chunk_s=SEPARATION_CHUNK_S, separate_fn=separate_fn)
    messages.append(f"{fmt.upper()} recording: objects found by {finder.name} and separated by "
                    f"{'the trajectory-conditioned extractor' if extractor is not None else 'the spatial stage'}")
    # 3. classify each object from its own separated signal
    names = list(classifier.class_names) if classifier is not None else [UNKNOWN]
    found = []
    for key, active, doa in objects_in:
        ci, conf = 0, 1.0
        if classifier is not None:
            from deepasa.model.object_classes import object_signal

            ref = np.concatenate([b[0] for b in raw.read_blocks((key, "image"), 1 << 16)])  # (n,) reference channel
            ref = np.pad(ref, (raw.starts[(key, "image")], 0))[:n_model]
            prob = classifier.predict_proba([object_signal(ref, active, sample_rate=SAMPLE_RATE,
                                                           label_hop=LABEL_HOP)])[0]  # (C,)
            ci, conf = int(np.argmax(prob)), float(prob.max())
        found.append((int(np.argmax(active)), key, active, doa, ci, conf))
    found.sort(key=lambda f: (f[0], f[1]))
    objects = []
    duration = src.n_samples / src.sample_rate
    for oid, (_, key, active, doa, ci, conf) in enumerate(found):
        folder = f"objects/{oid}_{_safe_name(names[ci])}"
        files = {}
        for kind in ("image", "direct", "reverb"):
            files[kind] = f"{folder}/{kind}.wav"
            _write_wav_stream(raw, (key, kind), root / files[kind], n_model, SAMPLE_RATE, src.sample_rate,
                              src.n_samples, N_MICS)
        objects.append(SceneObject(id=oid, class_index=ci, class_name=names[ci], confidence=conf, activity=active,
                                   doa=np.where(active[:, None], doa, 0.0),
                                   segments=activity_segments(active, LABEL_HOP, duration), files=files,
                                   folder=folder))
    raw.discard("noise")  # the remainder at the recording's own rate: objects + noise = the recording
    write_complement(src, [root / o.files["image"] for o in objects], root / "noise.wav")
    shutil.rmtree(root / "_raw", ignore_errors=True)
    mag, times, freqs = spec.result()
    prev = np.concatenate(preview) if preview else np.zeros(1, np.float32)
    return SceneAnalysis(
        objects=objects, root=root, sample_rate=src.sample_rate, model_sample_rate=SAMPLE_RATE,
        n_samples=src.n_samples, n_channels=N_MICS, n_frames=n_frames, label_hop_s=LABEL_HOP, fmt=fmt,
        class_names=names, window_s=CHUNK_S, hop_s=CHUNK_S, n_windows=len(maps), source=src.name,
        mixture_spectrogram=mag, spectrogram_times=times, spectrogram_freqs=freqs, mixture_preview=prev,
        preview_rate=SAMPLE_RATE, messages=messages,
        model_info={"finder": finder.spec, "format": fmt,
                    "separation": "extractor" if extractor is not None else "spatial",
                    "classifier": getattr(classifier, "source", None), "sample_rate": SAMPLE_RATE})
