"""A compact copy of the sound bank that travels with the working tree (``scripts/gpu_train.sh prepare``).

The fetched bank (``$DEEPASA_HOME/bank``, 16-bit FLAC, 89 MB) is too big to carry to a lent GPU machine. A *pack*
keeps every clip of the splits a training run reads (``train`` and ``val``) with the bank's own ``index.csv``
rows, so the simulator draws exactly the same scenes from it (scene specs depend on the index alone: clip ids
and durations), and shrinks the audio:

* the ``lossless`` clips (those of the fixed validation scenes, so validation and the evaluation scenes are
  bit-identical to the ones rendered from the full bank) are copied as they are;
* every other clip is re-encoded as Ogg/Opus (16 kHz mono, ``compression_level`` of libsndfile, 0.9 ≈ 35 kbit/s
  against FLAC's ≈ 160).

Layout::

    <pack>/pack.json                  format, options, counts, the source index's SHA-256
    <pack>/index.csv                  the bank's index rows of the packed splits (paths name the .flac files)
    <pack>/frames.csv                 clip_id, frames: the exact length of every clip, restored on unpacking
    <pack>/clips/<split>/<class>/<clip_id>.flac | .opus

:func:`unpack_bank` turns a pack back into a bank home (``<home>/bank/<split>/<class>/<clip_id>.flac`` and
``index.csv``, written last), which :class:`~deepasa.scenes.soundbank.SoundBank` opens like a fetched one.
Only numpy and soundfile are needed (no torch).
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from deepasa.errors import DeepASAError
from deepasa.scenes.soundbank import INDEX_FIELDS, SAMPLE_RATE, SoundBank, check_splits
from deepasa.staging import atomic_path

PACK_FORMAT = "deepasa-bank-pack-1"
#: libsndfile's Opus compression level of the packed clips (0 = largest file, 1 = smallest).
DEFAULT_LEVEL = 0.9
MARKER = ".pack.json"          # written into <home>/bank/ by unpack_bank: which pack the home holds


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, hex (what ``pack.json`` records of the source bank's ``index.csv``)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _encode(task: tuple[str, str, bool, float]) -> int:
    """Write one packed clip (copy or Opus); returns its frame count."""
    src, dst, lossless, level = task
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    if lossless:
        shutil.copyfile(src, dst)
        return int(sf.info(src).frames)
    x, sr = sf.read(src, dtype="float32", always_2d=False)
    if sr != SAMPLE_RATE or x.ndim != 1:
        raise DeepASAError(f"{src} is not {SAMPLE_RATE} Hz mono; re-run `deepasa sounds fetch`")
    sf.write(dst, x, sr, format="OGG", subtype="OPUS", compression_level=level)
    return int(len(x))


def build_bank_pack(home: str | Path | None, out: str | Path, *, splits: tuple[str, ...] = ("train", "val"),
                    lossless: set[str] | frozenset[str] = frozenset(), level: float = DEFAULT_LEVEL,
                    workers: int = 1) -> dict:
    """Pack the clips of ``splits`` of the bank in ``home`` into the folder ``out`` (built beside it, renamed).

    Args:
        home: the bank home (``None``: :func:`~deepasa.scenes.soundbank.default_home`).
        out: the pack folder to write (replaced when it exists).
        splits: the bank splits to keep.
        lossless: clip ids copied as FLAC (the rest are Opus-coded).
        level: Opus compression level in [0, 1].
        workers: encoding processes.

    Returns:
        the pack's ``pack.json`` content (``clips``, ``lossless``, ``bytes``, ``source_bytes``, ...).

    Raises:
        DeepASAError: no fetched bank, a split without clips, or a level outside [0, 1].
    """
    if not 0.0 <= level <= 1.0:
        raise DeepASAError(f"the Opus compression level must lie in [0, 1], got {level}")
    bank = SoundBank.open(None if home is None else Path(home))
    check_splits(list(splits))
    with open(bank.home / "bank" / "index.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] in splits]
    for split in splits:
        if not any(r["split"] == split for r in rows):
            raise DeepASAError(f"the sound bank in {bank.home} has no {split} clips: run `deepasa sounds fetch`")
    out = Path(out)
    with atomic_path(out, "tmp") as tmp:   # a folder: built in .<out>.tmp-<pid>, removed on any error
        shutil.rmtree(tmp, ignore_errors=True)
        tasks = []
        for r in rows:
            keep = r["clip_id"] in lossless
            rel = Path(r["path"]).relative_to("bank").with_suffix(".flac" if keep else ".opus")
            tasks.append((str(bank.home / r["path"]), str(tmp / "clips" / rel), keep, float(level)))
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                frames = list(pool.map(_encode, tasks, chunksize=8))
        else:
            frames = [_encode(t) for t in tasks]
        with open(tmp / "index.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=INDEX_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        with open(tmp / "frames.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["clip_id", "frames"])
            w.writerows((r["clip_id"], n) for r, n in zip(rows, frames))
        info = {
            "format": PACK_FORMAT, "codec": "opus", "compression_level": float(level), "splits": list(splits),
            "clips": len(rows), "lossless": sorted(set(lossless) & {r["clip_id"] for r in rows}),
            "bytes": sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file()),
            "source_bytes": sum((bank.home / r["path"]).stat().st_size for r in rows),
            "source_index_sha256": file_sha256(bank.home / "bank" / "index.csv"),
        }
        (tmp / "pack.json").write_text(json.dumps(info, indent=1) + "\n")
        shutil.rmtree(out, ignore_errors=True)   # the previous pack, replaced by the new one as the block ends
    return info


def read_pack_info(pack: str | Path) -> dict:
    """The ``pack.json`` of a pack folder; raises :class:`DeepASAError` when ``pack`` is not one."""
    path = Path(pack) / "pack.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        raise DeepASAError(f"{pack} is not a sound-bank pack (no readable pack.json): run "
                           "`scripts/gpu_train.sh prepare`") from None
    if info.get("format") != PACK_FORMAT:
        raise DeepASAError(f"{path} is not a {PACK_FORMAT} pack")
    return info


def _decode(task: tuple[str, str, int]) -> None:
    """Restore one clip as 16-bit FLAC of exactly ``frames`` samples (temp file + rename)."""
    src, dst, frames = task
    dst_path = Path(dst)
    with atomic_path(dst_path, "part") as tmp:   # soundfile is told the format: no extension needed
        if src.endswith(".flac"):
            shutil.copyfile(src, tmp)
        else:
            x, sr = sf.read(src, dtype="float32", always_2d=False)
            x = np.clip(np.pad(x[:frames], (0, max(0, frames - len(x)))), -1.0, 1.0)
            sf.write(tmp, x, sr, format="FLAC", subtype="PCM_16")


def unpack_bank(pack: str | Path, home: str | Path, workers: int = 1) -> dict:
    """Turn the pack folder ``pack`` into a bank home ``home`` (skipped when ``home`` already holds it).

    Args:
        pack: a folder written by :func:`build_bank_pack`.
        home: the bank home to fill (``home/bank/...``; ``index.csv`` is written last, atomically).
        workers: decoding processes.

    Returns:
        the pack's ``pack.json`` content, plus ``"unpacked": False`` when ``home`` already held this pack.

    Raises:
        DeepASAError: not a pack, or a clip missing from it.
    """
    pack, home = Path(pack), Path(home)
    info = read_pack_info(pack)
    bank = home / "bank"
    marker = bank / MARKER
    if marker.is_file() and (bank / "index.csv").is_file():
        try:
            if json.loads(marker.read_text()) == info:
                return {**info, "unpacked": False}
        except ValueError:
            pass
    with open(pack / "index.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(pack / "frames.csv", newline="", encoding="utf-8") as f:
        frames = {r["clip_id"]: int(r["frames"]) for r in csv.DictReader(f)}
    (bank / "index.csv").unlink(missing_ok=True)                 # an interrupted unpack never looks complete
    tasks = []
    for r in rows:
        rel = Path(r["path"]).relative_to("bank")
        src = next((s for s in (pack / "clips" / rel, pack / "clips" / rel.with_suffix(".opus")) if s.is_file()), None)
        if src is None:
            raise DeepASAError(f"clip {r['clip_id']} is missing from the pack {pack}: re-run `scripts/gpu_train.sh prepare`")
        tasks.append((str(src), str(home / r["path"]), frames[r["clip_id"]]))
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_decode, tasks, chunksize=8))
    else:
        for t in tasks:
            _decode(t)
    with atomic_path(bank / "index.csv", "part") as tmp:
        shutil.copyfile(pack / "index.csv", tmp)
        marker.write_text(json.dumps(info))
    return {**info, "unpacked": True}
