"""The *oracle analysis* of a simulated scene: its own source images written as an analysis folder (no torch).

``deepasa simulate --oracle-analysis`` writes, per scene, ``<root>/<split>/oracle/<id>/`` in the layout of
``deepasa analyze`` (docs/analyze.md, "Outputs"), so that everything that reads an analysis (``deepasa remix``,
``SceneAnalysis.load``) can be run on ground truth::

    oracle/<id>/objects/<k>_<class>/{image,direct,reverb}.wav   source k's images (image = direct + reverb)
    oracle/<id>/noise.wav                                        the scene's noise
    oracle/<id>/objects.json                                     class, activity, DoA per active frame
    oracle/<id>/events.csv                                       DCASE 2023 format, 100-ms frames

Object ``k`` is source ``k`` of the scene (its ``anechoic/<id>/<k>.wav``), not numbered by first activity as
``analyze`` numbers its objects. ``Σ_k image_k + noise`` is the mixture up to float32 rounding. The
``objects.json`` schema (``deepasa-objects/1``) is the one of :mod:`deepasa.inference.result`; this module
writes it itself because ``scenes/`` sits below ``inference/`` in the package's layers (a test reads the
result back with ``SceneAnalysis.load``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

from deepasa.audio.geometry import unit_vector
from deepasa.audio.io import write_audio
from deepasa.scenes.simulator import SceneAudio

SCHEMA = "deepasa-objects/1"  # deepasa.inference.result.OBJECTS_JSON_VERSION
NOTE = "oracle analysis: the simulator's own source images and labels (ground truth), not a model's estimate"


def _segments(active: np.ndarray, hop_s: float, duration_s: float) -> list[dict]:
    """Runs of active frames as onset/offset seconds (as ``deepasa.inference.result.activity_segments``)."""
    a = np.concatenate([[False], np.asarray(active, bool), [False]])
    edges = np.flatnonzero(np.diff(a.astype(np.int8))).reshape(-1, 2)  # (R, 2) onset / offset frames
    return [{"onset_s": round(float(on * hop_s), 6), "offset_s": round(float(min(off * hop_s, duration_s)), 6)}
            for on, off in edges]


def oracle_objects_json(scene: SceneAudio, input_name: str) -> dict:
    """The ``objects.json`` document of a scene's oracle analysis."""
    meta = scene.meta
    fs, hop = int(meta["sample_rate"]), float(meta["label_hop"])
    n = scene.mixture.shape[1]
    duration = n / fs
    names = list(meta["classes"])
    objects = []
    for k, src in enumerate(meta["sources"]):
        folder = f"objects/{k}_{_safe(src['label'])}"
        frames = np.flatnonzero(scene.activity[k])
        xyz = unit_vector(scene.azimuth[k], scene.elevation[k])  # (T, 3)
        objects.append({
            "id": k, "class": src["label"], "class_index": int(src["class_index"]), "confidence": 1.0,
            "folder": folder, "files": {kind: f"{folder}/{kind}.wav" for kind in ("image", "direct", "reverb")},
            "segments": _segments(scene.activity[k], hop, duration),
            "doa": [{"frame": int(f), "time_s": round(f * hop, 6), "azimuth_deg": round(float(scene.azimuth[k, f]), 2),
                     "elevation_deg": round(float(scene.elevation[k, f]), 2),
                     "xyz": [round(float(v), 5) for v in xyz[f]]} for f in frames],
        })
    return {
        "format": SCHEMA, "input": input_name, "sample_rate": fs, "model_sample_rate": fs,
        "n_channels": int(scene.mixture.shape[0]), "audio_format": meta["format"], "duration_s": round(duration, 6),
        "label_hop_s": hop, "n_frames": int(scene.activity.shape[1]), "window_s": duration, "hop_s": duration,
        "n_windows": 1, "class_names": names,
        "model": {"oracle": True, "scene_id": meta["scene_id"], "split": meta["split"], "format": meta["format"]},
        "noise": "noise.wav", "messages": [NOTE], "objects": objects,
    }


def write_oracle_analysis(folder: Path, scene: SceneAudio, input_name: str = "") -> Path:
    """Write the oracle analysis of ``scene`` to ``folder`` (built beside it, then renamed into place).

    Args:
        folder: the analysis folder to create (replaced if it exists).
        input_name: what ``objects.json`` names as the input (e.g. the mixture's path).
    Returns:
        ``folder``.
    """
    folder = Path(folder)
    fs = int(scene.meta["sample_rate"])
    tmp = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    doc = oracle_objects_json(scene, input_name)
    for k, obj in enumerate(doc["objects"]):
        image = (scene.direct[k] + scene.reverb[k]).astype(np.float32)  # (C, N)
        for kind, sig in (("image", image), ("direct", scene.direct[k]), ("reverb", scene.reverb[k])):
            write_audio(tmp / obj["files"][kind], sig, fs)
    write_audio(tmp / "noise.wav", scene.noise, fs)
    rows = []
    for obj in doc["objects"]:
        rows += [(d["frame"], obj["class_index"], obj["id"], d["azimuth_deg"], d["elevation_deg"]) for d in obj["doa"]]
    # DCASE 2023 output format, as deepasa.metrics.seld_dcase.write_dcase_csv writes it
    (tmp / "events.csv").write_text("".join(f"{f},{c},{k},{a:.2f},{e:.2f}\n" for f, c, k, a, e in sorted(rows)))
    (tmp / "objects.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    (tmp / "objects").mkdir(exist_ok=True)
    if folder.exists():   # folder swap (the old output dropped first): not deepasa.staging.atomic_path
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "object"
