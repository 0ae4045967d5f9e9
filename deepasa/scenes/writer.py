"""Write simulated scenes in the ASA-compatible on-disk layout of docs/sound-bank.md, "On disk" (no torch).

```
<root>/<split>/mixed/<id>.wav            M-ch mixture (float32 wav)
<root>/<split>/anechoic/<id>/<k>.wav     M-ch direct-path image of source k
<root>/<split>/reverb/<id>/<k>.wav       M-ch reverberant image minus direct path of source k
<root>/<split>/noise/<id>.wav            M-ch background noise
<root>/<split>/info/<id>.csv             frame, src_idx, class, azimuth_deg, elevation_deg (active frames)
<root>/<split>/meta/<id>.json            everything needed to re-render (the scene spec + format + gain)
<root>/<split>/dcase/<id>.csv            the same labels in DCASE 2023 format (frame, class, track, azi, ele)
<root>/classes.json                      the class list
```

Every file is written to a temporary name and renamed; the mixture is renamed **last**, so a scene is
complete exactly when ``mixed/<id>.wav`` exists (loaders list scenes by their mixture). Elevation is the
usual elevation (+90° = up); ASA's own files store a polar angle instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from deepasa.audio.io import write_audio
from deepasa.scenes.simulator import SceneAudio
from deepasa.staging import atomic_path

INFO_HEADER = "frame,src_idx,class,azimuth_deg,elevation_deg"


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path, "tmp") as tmp:
        tmp.write_text(text)


def label_rows(scene: SceneAudio) -> list[tuple[int, int, int, int, int]]:
    """(frame, source, class index, azimuth, elevation) for every active (source, frame), degrees rounded."""
    rows = []
    for k, src in enumerate(scene.meta["sources"]):
        for t in np.flatnonzero(scene.activity[k]):
            rows.append((int(t), k, int(src["class_index"]), int(round(scene.azimuth[k, t])),
                         int(round(scene.elevation[k, t]))))
    return sorted(rows)


def write_scene(split_dir: Path, scene: SceneAudio, subtype: str = "FLOAT") -> None:
    """Write one scene under ``split_dir`` (``<root>/<split>``); the mixture goes last."""
    split_dir = Path(split_dir)
    sid = scene.meta["scene_id"]
    fs = scene.meta["sample_rate"]
    for k in range(scene.direct.shape[0]):
        write_audio(split_dir / "anechoic" / sid / f"{k}.wav", scene.direct[k], fs, subtype)
        write_audio(split_dir / "reverb" / sid / f"{k}.wav", scene.reverb[k], fs, subtype)
    write_audio(split_dir / "noise" / f"{sid}.wav", scene.noise, fs, subtype)
    rows = label_rows(scene)
    _write_text(split_dir / "info" / f"{sid}.csv",
                "\n".join([INFO_HEADER] + [",".join(map(str, r)) for r in rows]) + "\n")
    # DCASE 2023 metadata order: frame, class, source/track, azimuth, elevation
    _write_text(split_dir / "dcase" / f"{sid}.csv",
                "".join(f"{f},{c},{k},{a},{e}\n" for f, k, c, a, e in rows))
    _write_text(split_dir / "meta" / f"{sid}.json", json.dumps(scene.meta, indent=1, sort_keys=True))
    write_audio(split_dir / "mixed" / f"{sid}.wav", scene.mixture, fs, subtype)


def write_classes(root: Path, class_names: list[str]) -> None:
    """Write ``<root>/classes.json``."""
    _write_text(Path(root) / "classes.json", json.dumps(list(class_names), indent=1) + "\n")
