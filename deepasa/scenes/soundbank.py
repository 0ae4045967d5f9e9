"""The sound bank: class taxonomy, the committed split manifest, and the fetched clips on disk.

Layout under ``$DEEPASA_HOME`` (default ``~/.cache/deepasa``)::

    bank/<split>/<class>/<clip_id>.flac   16 kHz mono 16-bit FLAC, silence-trimmed, at most 10 s
    bank/index.csv                        one row per fetched clip (written last, atomically)
    debs/                                 downloads in progress (.deb files are deleted once processed)
    apt/                                  private apt lists, only where the system's could not be used

Which clip belongs to which class and split is fixed by ``deepasa/scenes/manifest.csv`` (built by
``scripts/build_manifest.py``), never decided at load time. ``deepasa sounds fetch`` fills the bank.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from deepasa.errors import DeepASAError

SAMPLE_RATE = 16000
SPLITS = ("train", "val", "test")
MANIFEST_PATH = Path(__file__).with_name("manifest.csv")
TAXONOMY_PATH = Path(__file__).with_name("taxonomy.json")
MANIFEST_FIELDS = ("clip_id", "label", "split", "source", "package", "member", "group", "licence",
                   "offset_s", "spec")
INDEX_FIELDS = ("clip_id", "label", "split", "path", "duration", "package", "licence", "source", "member",
                "group")


def default_home() -> Path:
    """The cache folder: ``$DEEPASA_HOME`` if set, else ``~/.cache/deepasa``."""
    env = os.environ.get("DEEPASA_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "deepasa"


def load_taxonomy() -> list[dict]:
    """The class taxonomy in order: dicts with name, description, starss23 (or None), dcase2025_t4 (or None)."""
    with open(TAXONOMY_PATH, encoding="utf-8") as f:
        return json.load(f)


def class_names() -> list[str]:
    """Class names in taxonomy order (the label order every dataset and model uses)."""
    return [c["name"] for c in load_taxonomy()]


def load_manifest(path: Path | None = None) -> list[dict]:
    """The committed manifest rows (dicts with :data:`MANIFEST_FIELDS`; ``offset_s`` as float, ``spec`` parsed)."""
    with open(path or MANIFEST_PATH, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["offset_s"] = float(row["offset_s"] or 0.0)
        row["spec"] = json.loads(row["spec"]) if row["spec"] else {}
    return rows


def check_splits(splits: list[str] | tuple[str, ...]) -> list[str]:
    """Validate split names; raises :class:`DeepASAError` naming the valid ones."""
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise DeepASAError(f"unknown split {', '.join(map(repr, bad))}; valid splits: {', '.join(SPLITS)}")
    return list(splits)


def check_classes(classes: list[str] | None) -> list[str]:
    """Validate class names against the taxonomy (None means all); raises :class:`DeepASAError` on unknown ones."""
    names = class_names()
    if classes is None:
        return names
    bad = [c for c in classes if c not in names]
    if bad:
        raise DeepASAError(f"unknown class {', '.join(map(repr, bad))}; valid classes: {', '.join(names)}")
    return list(classes)


def clip_relpath(row: dict) -> Path:
    """Where a manifest row's clip lives, relative to the home folder."""
    return Path("bank") / row["split"] / row["label"] / f"{row['clip_id']}.flac"


@dataclass(frozen=True)
class Clip:
    """One fetched sound-bank clip (16 kHz mono); ``path`` is absolute."""

    clip_id: str
    label: str
    split: str
    path: Path
    duration: float
    package: str
    licence: str


class SoundBank:
    """Read access to a fetched sound bank.

    >>> bank = SoundBank.open()                                       # doctest: +SKIP
    >>> clip = bank.clips("test", ["speech"])[0]; x = bank.load(clip)  # doctest: +SKIP
    """

    sample_rate: int = SAMPLE_RATE

    def __init__(self, home: Path, clips: list[Clip]):
        """Use :meth:`open`; this takes the home folder and the parsed index."""
        self.home = Path(home)
        self.classes: list[str] = class_names()
        self._clips = clips

    @classmethod
    def open(cls, home: Path | None = None) -> "SoundBank":
        """Open the bank in ``home`` (default :func:`default_home`); raises DeepASAError when not fetched."""
        home = Path(home) if home is not None else default_home()
        index = home / "bank" / "index.csv"
        if not index.is_file():
            raise DeepASAError(f"sound bank not fetched in {home}: run `deepasa sounds fetch`")
        clips = []
        with open(index, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                clips.append(Clip(clip_id=row["clip_id"], label=row["label"], split=row["split"],
                                  path=home / row["path"], duration=float(row["duration"]),
                                  package=row["package"], licence=row["licence"]))
        return cls(home, clips)

    def clips(self, split: str, classes: list[str] | None = None) -> list[Clip]:
        """Fetched clips of ``split`` (optionally only ``classes``), in index order (sorted by class, clip id)."""
        check_splits([split])
        wanted = set(check_classes(classes))
        return [c for c in self._clips if c.split == split and c.label in wanted]

    def load(self, clip: Clip) -> np.ndarray:
        """The clip's samples as float32 mono at :attr:`sample_rate`."""
        try:
            x, sr = sf.read(str(clip.path), dtype="float32", always_2d=False)
        except (OSError, RuntimeError, sf.LibsndfileError) as exc:
            raise DeepASAError(f"cannot read sound-bank clip {clip.path}: {exc}; re-run `deepasa sounds fetch`") from exc
        if sr != self.sample_rate or x.ndim != 1:
            raise DeepASAError(f"sound-bank clip {clip.path} is not {self.sample_rate} Hz mono; "
                               "re-run `deepasa sounds fetch`")
        return x
