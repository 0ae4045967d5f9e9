"""Temporary outputs named by the PID of their writer; removal of those left by dead processes; output locks.

Every command that builds an output in a temporary place (``analyze``, ``simulate``, ``sounds fetch``,
``export``, ``evaluate --out``, training checkpoints) names the temporary ``.<name>.<tag>-<pid>[.<ext>]``
beside the final output, with ``<name>`` the output's name, ``<tag>`` one of :data:`TAGS` and ``<pid>`` the
writing process. A process killed with SIGKILL (or a power loss) cannot clean up, so the next run of a command
writing there calls :func:`remove_stale`: temporaries whose process no longer runs are removed and one line
says so; those of a live process are never touched.

The PID is the only owner check. A temporary whose PID has since been reused by an unrelated live process
stays until that process ends (never wrong, only late); on a file system shared by several machines a PID
names a process of *this* machine, so give each machine its own output folders.

:class:`OutputLock` lets one process at a time write a given output (``deepasa analyze --out``): a second
writer is refused with a one-line :class:`~deepasa.errors.DeepASAError`.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from deepasa.errors import DeepASAError

#: The tags of temporaries: ``partial`` (a folder or file being built), ``old`` (the previous output moved
#: aside by ``--overwrite``), ``tmp`` / ``part`` (a file being written).
TAGS = ("partial", "old", "tmp", "part")

# ``.<name>.<tag>-<pid>[.<ext>]``; the dash is optional for the older ``.<name>.tmp<pid>`` spelling.
_PATTERN = r"^\.(?P<name>{name})\.(?P<tag>{tags})-?(?P<pid>\d+)(?P<ext>\.[A-Za-z0-9]{{1,8}})?$"


def temp_sibling(path: str | Path, tag: str = "partial", ext: str = "") -> Path:
    """This process's temporary for ``path``: ``<dir>/.<name>.<tag>-<pid><ext>``.

    >>> import os
    >>> temp_sibling("/data/out", "partial").name == f".out.partial-{os.getpid()}"
    True
    >>> temp_sibling("bank/a/clip.flac", "tmp", ".flac").name == f".clip.flac.tmp-{os.getpid()}.flac"
    True
    """
    if tag not in TAGS:
        raise ValueError(f"tag must be one of {TAGS}, not {tag!r}")
    path = Path(path)
    return path.parent / f".{path.name}.{tag}-{os.getpid()}{ext}"


@contextmanager
def atomic_path(path: str | Path, tag: str = "partial", ext: str = "") -> Iterator[Path]:
    """Write ``path`` atomically: the with-block writes the temporary this yields, which then replaces ``path``.

    The temporary is this process's sibling :func:`temp_sibling` ``(path, tag, ext)`` (so one left by a killed
    writer is recognised by :func:`stale_temporaries` / :func:`remove_stale`); ``path``'s folder is created
    first. When the block ends normally the temporary is moved onto ``path`` with :func:`os.replace` (one
    rename in the same folder: a reader sees the old ``path`` or the new one, never half a file). The block
    may also build a folder at the temporary; ``path`` must then not exist (or be an empty folder).

    Args:
        path: the final file (or folder).
        tag: the temporary's tag, one of :data:`TAGS` (what the matching :func:`remove_stale` call looks for).
        ext: appended to the temporary's name, for writers that need a known extension (``np.savez`` adds
            ``.npz`` to a name without it; a soundfile write without ``format=`` guesses from the extension).

    Yields:
        the temporary path to write (not created; one of this process left from before is not removed).

    Raises:
        whatever the block raises (or the rename): the temporary, file or folder, is removed first when it
        exists, and ``path`` is left as it was.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "sub" / "a.txt"
    >>> with atomic_path(out, "tmp") as tmp:
    ...     _ = tmp.write_text("hello")
    ...     out.exists(), tmp.parent == out.parent
    (False, True)
    >>> out.read_text(), [f.name for f in out.parent.iterdir()]
    ('hello', ['a.txt'])
    """
    path = Path(path)
    tmp = temp_sibling(path, tag, ext)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise


def write_json(path: str | Path, obj, indent: int = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` through this process's temporary beside it (:func:`atomic_path`),
    renamed into place: never a half-written file, and a killed writer's temporary is recognisable as stale.

    >>> import json, tempfile
    >>> p = write_json(Path(tempfile.mkdtemp()) / "r.json", {"a": 1})
    >>> json.loads(p.read_text()), [f.name for f in p.parent.iterdir()]
    ({'a': 1}, ['r.json'])
    """
    import json

    path = Path(path)
    with atomic_path(path, "part") as tmp:
        tmp.write_text(json.dumps(obj, indent=indent) + "\n")
    return path


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID runs on this machine (a zombie, killed but not yet reaped, does not).

    >>> import os
    >>> pid_alive(os.getpid())
    True
    """
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # another user's live process
        return True
    except OverflowError:            # not a PID at all
        return False
    try:                             # Linux: state letter after the command name in /proc/<pid>/stat
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[-1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def stale_temporaries(folder: str | Path, name: str | None = None, tags: Iterable[str] = TAGS) -> list[tuple[Path, int]]:
    """Temporaries in ``folder`` (not recursive) whose writing process no longer runs.

    Args:
        folder: where to look (missing: nothing found).
        name: only temporaries of the output called ``name``; None: of any output (use only in folders that
            deepasa owns, e.g. the sound bank or a checkpoint folder).
        tags: which kinds (default: all of :data:`TAGS`).

    Returns:
        ``[(path, pid), ...]`` sorted by path.
    """
    folder = Path(folder)
    regex = re.compile(_PATTERN.format(name=".+" if name is None else re.escape(name),
                                       tags="|".join(map(re.escape, tags))))
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for entry in entries:
        m = regex.match(entry.name)
        if m and not pid_alive(int(m["pid"])):
            found.append((Path(entry.path), int(m["pid"])))
    return sorted(found)


def _size(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        try:
            return path.lstat().st_size
        except OSError:
            return 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def remove_stale(folders: str | Path | Iterable[str | Path], name: str | None = None, *,
                 tags: Iterable[str] = TAGS, log: Callable[[str], None] | None = None) -> list[Path]:
    """Remove the temporaries of dead processes (:func:`stale_temporaries`) in one or more folders.

    Args:
        folders: a folder or several.
        name: only those of the output called ``name`` (None: any output's).
        tags: which kinds.
        log: receives one line naming what was removed and its size, when anything was.

    Returns:
        the removed paths.
    """
    if isinstance(folders, (str, Path)):
        folders = [folders]
    tags = tuple(tags)
    return remove_temporaries([hit for folder in folders for hit in stale_temporaries(folder, name, tags)], log)


def remove_temporaries(found: Iterable[tuple[Path, int]], log: Callable[[str], None] | None = None) -> list[Path]:
    """Remove the ``(path, pid)`` temporaries of :func:`stale_temporaries`; ``log`` gets one line if any were.

    Returns:
        the removed paths (one already gone, removed by a concurrent run, is skipped).
    """
    removed, pids, size = [], set(), 0
    for path, pid in found:
        n = _size(path)
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
        pids.add(pid)
        size += n
    if removed and log is not None:
        shown = ", ".join(str(p) for p in removed[:3]) + (f" and {len(removed) - 3} more" if len(removed) > 3 else "")
        kind = "temporary" if len(removed) == 1 else "temporaries"
        who = "PID" if len(pids) == 1 else "PIDs"
        log(f"removed {len(removed)} stale {kind} ({_human(size)}) left by interrupted runs that no longer run "
            f"({who} {', '.join(map(str, sorted(pids)))}): {shown}")
    return removed


class OutputLock:
    """An exclusive lock on writing one output, held by this process (``flock`` on ``.<name>.lock`` beside it).

    The lock file holds the owner's PID (for the refusal message) and is deleted on release; one left by a
    killed process is taken over by the next run (the kernel releases a dead process's ``flock``) and deleted
    when that run releases it. Use as a context manager::

        with OutputLock(out, "deepasa analyze"):
            ...  # build the temporary, rename it to ``out``

    Raises:
        DeepASAError: another live process holds the lock (one line naming it).
    """

    def __init__(self, output: str | Path, command: str = "deepasa"):
        self.output = Path(output)
        self.command = command
        self.path = self.output.parent / f".{self.output.name}.lock"
        self._fd: int | None = None

    def acquire(self) -> "OutputLock":
        """Take the lock now (non-blocking); raises :class:`DeepASAError` when another process has it."""
        import fcntl

        for _ in range(100):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:   # read-only or not a folder: one line, as for any bad output path
                parent = next((p for p in (self.path.parent, *self.path.parent.parents) if p.exists()), None)
                why = f"{parent} is not a folder" if parent is not None and not parent.is_dir() else exc.strerror or exc
                raise DeepASAError(f"cannot write to {self.path.parent}: {why}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                owner = self._owner()
                raise DeepASAError(f"another {self.command}{f' (PID {owner})' if owner else ''} is writing "
                                   f"{self.output} right now; wait for it to finish or choose another output") from None
            try:   # the holder we waited for may have deleted the file: then lock the new one
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return self
            os.close(fd)
        raise DeepASAError(f"could not lock {self.path} (it keeps being replaced)")

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def release(self) -> None:
        """Delete the lock file and release the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
