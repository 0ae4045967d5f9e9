"""``deepasa sounds fetch``: download the manifest's Debian packages, render its synthetic clips, condition
everything to 16 kHz mono and write the bank plus its index.

Fetching bytes (``apt-get download`` + ``dpkg -x``, no root, nothing installed) and conditioning are
separate steps per package; each clip is written atomically, done clips are skipped on a re-run, and the
index is written last (temp file + rename), so an interrupted fetch never looks complete.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from deepasa.errors import DeepASAError
from deepasa.scenes import bank_audio, bank_synth
from deepasa.scenes.soundbank import INDEX_FIELDS, check_splits, clip_relpath, load_manifest
from deepasa.staging import atomic_path, remove_stale as remove_dead_temporaries, temp_sibling

SYNTH_SOURCES = ("espeak-ng", "flite", "fluidsynth")


class _InlineExecutor(Executor):
    """Runs jobs in this process (``--workers 1``): no pool start-up, plain tracebacks."""

    def map(self, fn, *iterables, timeout=None, chunksize=1):  # noqa: D102 - same contract as Executor.map
        return map(fn, *iterables)


def _note(message: str) -> None:
    print(f"deepasa sounds fetch: {message}", file=sys.stderr)


# ------------------------------------------------------------------------------------------ apt
def _apt_private_opts(home: Path) -> list[str]:
    """apt options that keep package lists and caches under ``home`` (usable without root)."""
    state, cache = home / "apt" / "state", home / "apt" / "cache"
    for d in (state / "lists" / "partial", cache / "archives" / "partial"):
        d.mkdir(parents=True, exist_ok=True)
    return ["-o", f"Dir::State={state}", "-o", f"Dir::Cache={cache}", "-o", "Dir::State::status=/var/lib/dpkg/status",
            "-o", "Debug::NoLocking=1"]


def _apt(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["apt-get", "-q", *args], cwd=cwd, capture_output=True, text=True)


def download_deb(home: Path, package: str, private: bool = False) -> Path:
    """The package's .deb under ``home/debs`` (downloaded with ``apt-get download`` unless already there).

    If the system package lists cannot resolve the package (typically: lists missing and not root), run
    ``apt-get update`` into private state/cache folders under ``home/apt`` and download with those.
    """
    debs = home / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    if shutil.which("apt-get") is None:
        raise DeepASAError("apt-get not found: the sound bank needs a Debian/Ubuntu system to download packages")
    tmp = temp_sibling(debs / "download", "partial")   # this process's download folder
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    result = None if private else _apt(["download", package], tmp)
    if result is None or result.returncode != 0:
        opts = _apt_private_opts(home)
        result = _apt([*opts, "download", package], tmp)
        if result.returncode != 0:
            _note(f"apt-get could not find {package}; updating private package lists in {home / 'apt'}")
            update = _apt([*opts, "update"], tmp)
            if update.returncode != 0:
                raise DeepASAError(f"apt-get update failed: {(update.stderr or update.stdout).strip().splitlines()[-1:]}")
            result = _apt([*opts, "download", package], tmp)
    got = sorted(tmp.glob(f"{package}_*.deb"))
    if result.returncode != 0 or not got:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise DeepASAError(f"apt-get download {package} failed: {lines[-1] if lines else 'no .deb produced'}")
    final = debs / got[0].name
    os.replace(got[0], final)   # not atomic_path: moves a finished download out of this process's folder
    shutil.rmtree(tmp, ignore_errors=True)
    return final


def extract_deb(deb: Path, dest: Path) -> Path:
    """``dpkg -x`` the .deb into ``dest`` (via a temp folder, so a half extraction is never reused)."""
    if dest.is_dir():
        return dest
    if shutil.which("dpkg") is None:
        raise DeepASAError("dpkg not found: the sound bank needs a Debian/Ubuntu system to unpack packages")
    with atomic_path(dest, "partial") as tmp:
        shutil.rmtree(tmp, ignore_errors=True)
        result = subprocess.run(["dpkg", "-x", str(deb), str(tmp)], capture_output=True, text=True)
        if result.returncode != 0:
            raise DeepASAError(f"dpkg -x {deb.name} failed: {' '.join(result.stderr.split())[:200]}")
    return dest


# ------------------------------------------------------------------------------------------ jobs
def _deb_job(job: tuple[str, float, str]) -> str | None:
    """Condition one package member into the bank; returns an error message or None."""
    src, offset, out = job
    try:
        x = bank_audio.condition_file(Path(src), offset)
    except Exception as exc:  # noqa: BLE001 - reported per clip, the fetch goes on
        return f"{src}: {exc}"
    if x is None:
        return f"{src}: silent or too short after trimming"
    bank_audio.write_clip(Path(out), x)
    return None


def _synth_job(job: tuple[str, dict, str]) -> str | None:
    """Render and condition one synthetic clip into the bank; returns an error message or None."""
    source, spec, out = job
    try:
        x, sr = bank_synth.render(source, spec)
        y = bank_audio.condition(x, sr)
    except Exception as exc:  # noqa: BLE001
        return f"{source} {spec}: {exc}"
    if y is None:
        return f"{source} {spec}: silent render"
    bank_audio.write_clip(Path(out), y)
    return None


# ------------------------------------------------------------------------------------------ index
def write_index(home: Path, manifest: list[dict]) -> int:
    """Write ``bank/index.csv`` for every manifest clip present on disk (temp file + rename); returns rows."""
    index = home / "bank" / "index.csv"
    n = 0
    with atomic_path(index, "tmp") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=INDEX_FIELDS, lineterminator="\n")
        w.writeheader()
        for row in manifest:
            rel = clip_relpath(row)
            path = home / rel
            if not path.is_file():
                continue
            info = sf.info(str(path))
            w.writerow(dict(clip_id=row["clip_id"], label=row["label"], split=row["split"], path=rel.as_posix(),
                            duration=f"{info.frames / info.samplerate:.3f}", package=row["package"],
                            licence=row["licence"], source=row["source"], member=row["member"], group=row["group"]))
            n += 1
    return n


def remove_stale(home: Path, manifest: list[dict]) -> int:
    """Delete bank clips that the current manifest no longer lists (left by an older manifest); returns count."""
    keep = {(home / clip_relpath(r)).resolve() for r in manifest}
    stale = [p for p in (home / "bank").glob("*/*/*.flac")   # not the temp files (.x.tmp-<pid>.flac) of live fetches
             if not p.name.startswith(".") and p.resolve() not in keep]
    for p in stale:
        p.unlink()
    return len(stale)


# ------------------------------------------------------------------------------------------ fetch
def remove_stale_fetch_temporaries(home: Path) -> list[Path]:
    """Remove what killed fetches left in ``home``: download and unpack folders, index and clip temp files of
    processes that no longer run (:mod:`deepasa.staging`); one line says so. Returns the removed paths."""
    folders = [home / "debs", home / "debs" / "ex", home / "bank"]
    folders += [d for d in (home / "bank").glob("*/*") if d.is_dir()]   # bank/<split>/<class>/
    return remove_dead_temporaries(folders, tags=("partial", "tmp"), log=_note)


def _tally(summary: dict, err: str | None) -> None:
    if err:
        summary["failed"].append(err)
    else:
        summary["done"] += 1


def known_packages(manifest: list[dict]) -> list[str]:
    """Every package (and synthesis program) named in the manifest, sorted."""
    return sorted({r["package"] for r in manifest})


def fetch(home: Path, splits: list[str], packages: list[str] | None = None, synth: bool = True,
          workers: int = 2, keep_downloads: bool = False, progress: bool = True) -> dict:
    """Fill the bank in ``home`` with the manifest clips of ``splits`` (optionally only ``packages``).

    A package's .deb and unpacked tree are deleted once all its requested clips are written (the bank is
    ~60 MB, the .deb files ~800 MB), unless ``keep_downloads``; fetching another split later downloads again.

    Returns a summary dict: clips done now, skipped (already there), missing tools, failures, index rows.
    """
    check_splits(splits)
    if workers < 1:
        raise DeepASAError(f"--workers must be at least 1, got {workers}")
    manifest = load_manifest()
    names = known_packages(manifest)
    if packages is not None:
        bad = [p for p in packages if p not in names]
        if bad:
            raise DeepASAError(f"unknown package {', '.join(map(repr, bad))}; known: {', '.join(names)}")
    wanted = [r for r in manifest if r["split"] in splits and (packages is None or r["package"] in packages)]
    todo = [r for r in wanted if not (home / clip_relpath(r)).is_file()]
    summary = {"done": 0, "skipped": len(wanted) - len(todo), "missing_tools": [], "failed": []}

    synth_rows = [r for r in todo if r["source"] in SYNTH_SOURCES]
    deb_rows = [r for r in todo if r["source"] == "deb"]
    if not synth and synth_rows:
        _note(f"--no-synth: skipping {len(synth_rows)} synthetic clips")
        synth_rows = []
    for source in SYNTH_SOURCES:
        n = sum(r["source"] == source for r in synth_rows)
        why = bank_synth.missing_tool(source) if n else None
        if why:
            _note(f"{why}: skipping {n} synthetic {source} clips (install with: {bank_synth.install_hint()})")
            summary["missing_tools"].append(source)
            synth_rows = [r for r in synth_rows if r["source"] != source]

    by_package: dict[str, list[dict]] = defaultdict(list)
    for r in deb_rows:
        by_package[r["package"]].append(r)
    total = len(deb_rows) + len(synth_rows)
    home.mkdir(parents=True, exist_ok=True)
    remove_stale_fetch_temporaries(home)
    pool: Executor = ProcessPoolExecutor(workers) if workers > 1 and total > 1 else _InlineExecutor()
    bar = tqdm(total=total, unit="clip", desc="sound bank", disable=not progress or total == 0)
    try:
        for package in sorted(by_package):
            rows = by_package[package]
            try:
                bar.set_postfix_str(f"{package}: download")
                deb = download_deb(home, package)
                bar.set_postfix_str(f"{package}: unpack")
                root = extract_deb(deb, home / "debs" / "ex" / package)
            except DeepASAError as exc:   # e.g. not in this distribution: go on with the other packages
                _note(f"skipping {len(rows)} clips of {package}: {exc}")
                summary["failed"].extend(f"{package}: {exc}" for _ in rows)
                bar.update(len(rows))
                continue
            bar.set_postfix_str(package)
            jobs = [(str(root / r["member"]), r["offset_s"], str(home / clip_relpath(r))) for r in rows]
            failed_before = len(summary["failed"])
            for err in pool.map(_deb_job, jobs, chunksize=8):
                _tally(summary, err)
                bar.update(1)
            if not keep_downloads:
                shutil.rmtree(root, ignore_errors=True)
                if len(summary["failed"]) == failed_before:   # keep the .deb for a retry of failed clips
                    deb.unlink(missing_ok=True)
        if synth_rows:
            bar.set_postfix_str("synthetic")
            jobs = [(r["source"], r["spec"], str(home / clip_relpath(r))) for r in synth_rows]
            for err in pool.map(_synth_job, jobs, chunksize=4):
                _tally(summary, err)
                bar.update(1)
    finally:
        bar.close()
        pool.shutdown(wait=True, cancel_futures=True)
    if not keep_downloads:
        for folder in (home / "debs" / "ex", home / "debs"):   # only if empty
            try:
                folder.rmdir()
            except OSError:
                pass
    summary["stale_removed"] = remove_stale(home, manifest)
    summary["index_rows"] = write_index(home, manifest)
    return summary
