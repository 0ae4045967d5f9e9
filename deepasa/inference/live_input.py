"""Live inputs of ``deepasa listen``: raw PCM from a pipe or file descriptor, a WAV file that may still be growing,
a sound device (the optional ``sounddevice`` package), and the bounded queue a reader thread fills.

Every input yields float32 blocks (M, n) at its own rate as the data arrives (:meth:`LiveInput.blocks`) and, once
it has ended, says whether it ended cleanly (``end_note`` is None) or not (a partial sample frame at the end, a WAV
shorter than its header announces, a read error): the monitor reports that and exits with code 3.
"""

from __future__ import annotations

import os
import stat
import struct
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from deepasa.errors import DeepASAError

#: raw sample types: numpy dtype (little-endian) and full scale
RAW_DTYPES = {"int16": ("<i2", 32768.0), "int32": ("<i4", 2147483648.0), "float32": ("<f4", 1.0)}
READ_BYTES = 1 << 16


def pcm_to_float(data: bytes, dtype: str, channels: int) -> np.ndarray:
    """Interleaved little-endian PCM bytes (whole frames) -> (channels, n) float32 in [-1, 1).

    ``dtype``: ``int16``, ``int24`` (3 bytes), ``int32`` or ``float32``.
    """
    if dtype == "int24":
        b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)  # (n·M, 3) bytes of each sample
        v = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16))  # (n·M,) unsigned 24-bit
        v = np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float32) / float(1 << 23)  # (n·M,)
    else:
        code, scale = RAW_DTYPES[dtype]
        v = np.frombuffer(data, code).astype(np.float32)  # (n·M,)
        if scale != 1.0:
            v /= scale
    return np.ascontiguousarray(v.reshape(-1, channels).T)  # (M, n)


def sample_bytes(dtype: str) -> int:
    """Bytes per sample of a PCM type."""
    return 3 if dtype == "int24" else np.dtype(RAW_DTYPES[dtype][0]).itemsize


class LiveInput:
    """A live source: ``name``, ``rate`` (Hz), ``channels``; :meth:`blocks` yields (channels, n) float32 blocks.

    After :meth:`blocks` is exhausted, ``end_note`` is None for a clean end, else one line saying what was wrong.
    ``stop`` (a :class:`threading.Event`) ends a waiting input early (``--follow``, a device).
    """

    name = "input"
    rate = 0
    channels = 0
    #: whether the data arrives in real time (a pipe, a device, a followed file): when the monitor falls behind
    #: it skips windows; a plain file (or standard input redirected from one) is read at the monitor's pace
    live = True

    def __init__(self) -> None:
        self.end_note: str | None = None
        self.stop = threading.Event()

    def blocks(self):  # pragma: no cover - abstract
        raise NotImplementedError


class RawInput(LiveInput):
    """Raw interleaved PCM from a file descriptor (standard input, ``fd:N``) or a file (``--follow``: keep reading
    as it grows). A partial sample frame at the end is dropped and reported."""

    def __init__(self, fd: int, rate: int, channels: int, dtype: str, name: str, *, follow: bool = False,
                 poll_s: float = 0.1, offset: int = 0, limit: int | None = None):
        super().__init__()
        if dtype not in RAW_DTYPES and dtype != "int24":
            raise DeepASAError(f"unknown --dtype {dtype!r} ({', '.join(RAW_DTYPES)})")
        self.fd, self.rate, self.channels, self.dtype, self.name = fd, int(rate), int(channels), dtype, name
        self.follow, self.poll_s, self.offset, self.limit = follow, poll_s, offset, limit
        self.frame_bytes = self.channels * sample_bytes(dtype)
        self.read_bytes = 0
        self.live = follow or not stat.S_ISREG(os.fstat(fd).st_mode)

    def _at_end(self) -> bool:
        """Whether a followed input has ended (a growing WAV overrides this: its header says when)."""
        return False

    def blocks(self):
        """Yield (channels, n) float32 blocks of whole frames as the bytes arrive."""
        rest = b""
        if self.offset:
            os.lseek(self.fd, self.offset, os.SEEK_SET)
        while not self.stop.is_set():
            want = READ_BYTES if self.limit is None else min(READ_BYTES, self.limit - self.read_bytes)
            if want <= 0:
                break
            try:
                data = os.read(self.fd, want)
            except OSError as exc:
                self.end_note = f"reading {self.name} failed: {exc.strerror or exc}"
                return
            if not data:
                if self.follow and not self._at_end():
                    time.sleep(self.poll_s)
                    continue
                break
            self.read_bytes += len(data)
            rest += data
            n = len(rest) // self.frame_bytes * self.frame_bytes
            if n:
                yield pcm_to_float(rest[:n], self.dtype, self.channels)  # (M, n)
                rest = rest[n:]
        if rest and not self.stop.is_set():
            self.end_note = (f"{self.name} ended in the middle of a sample frame: the last {len(rest)} byte(s) "
                             f"(less than one {self.frame_bytes}-byte frame) were dropped")
        self._check_end()

    def _check_end(self) -> None:
        """Set ``end_note`` when the input ended short of what it announced (WAV)."""


class WavInput(RawInput):
    """A WAV file (PCM 16/24/32-bit or 32-bit float, or WAVE_FORMAT_EXTENSIBLE of those), read as it grows.

    Without ``follow`` the file is read to its end; a file shorter than its header announces is reported. With
    ``follow`` the reader waits for more data; it ends when the header announces a data size that has been read
    (a recorder that finished rewrites its header) or when stopped.
    """

    def __init__(self, path: str | Path, *, follow: bool = False, poll_s: float = 0.1, wait_s: float = 10.0):
        path = Path(path)
        header = _wait_header(path, follow, poll_s, wait_s)
        fmt_tag, channels, rate, bits, data_offset, data_size = header
        dtype = {(1, 16): "int16", (1, 24): "int24", (1, 32): "int32", (3, 32): "float32"}.get((fmt_tag, bits))
        if dtype is None:
            raise DeepASAError(f"{path}: WAV with {'float' if fmt_tag == 3 else 'PCM'} {bits}-bit samples is not "
                               "supported live (16/24/32-bit PCM or 32-bit float)")
        fd = os.open(path, os.O_RDONLY)
        super().__init__(fd, rate, channels, dtype, str(path), follow=follow, poll_s=poll_s, offset=data_offset)
        self.path, self.data_offset, self.data_size = path, data_offset, data_size
        if not follow and _definite(data_size):
            self.limit = data_size

    def _declared(self) -> int | None:
        """The data size the header announces now (None: a placeholder or unreadable)."""
        try:
            size = _parse_header(_head(self.path, self.data_offset))[5]
        except (OSError, DeepASAError):
            return None
        return size if _definite(size) else None

    def _at_end(self) -> bool:
        declared = self._declared()
        if declared is not None and self.read_bytes >= declared:
            self.limit = declared
            return True
        return False

    def _check_end(self) -> None:
        if self.end_note is None and not self.follow and _definite(self.data_size) and self.read_bytes < self.data_size:
            have = self.read_bytes // self.frame_bytes / self.rate
            want = self.data_size // self.frame_bytes / self.rate
            self.end_note = (f"{self.name} is truncated: its header announces {want:.1f} s, the file holds "
                             f"{have:.1f} s (still being written? use --follow)")


def _definite(size: int | None) -> bool:
    """A data size a recorder wrote for real, not a placeholder (0, 0xFFFFFFFF, 0x7FFFFFFF and the like)."""
    return size is not None and 0 < size < 0x7FFF0000


def _wait_header(path: Path, follow: bool, poll_s: float, wait_s: float) -> tuple:
    """The parsed header of a WAV file; with ``follow``, waits up to ``wait_s`` for a recorder to write it."""
    deadline = time.monotonic() + wait_s
    while True:
        if not path.is_file():
            raise DeepASAError(f"no such file: {path}")
        head = _head(path, 65536)
        try:
            return _parse_header(head)
        except _Incomplete:
            if not follow or time.monotonic() > deadline:
                raise DeepASAError(f"{path}: the WAV header is incomplete"
                                   + (f" after {wait_s:g} s" if follow else " (use --follow for a file being written)"))
            time.sleep(poll_s)


def _head(path: Path, n: int) -> bytes:
    """The first ``n`` bytes of a file (fewer if it is shorter)."""
    with open(path, "rb") as fh:
        return fh.read(n)


class _Incomplete(Exception):
    """The header is not all there yet."""


def _parse_header(head: bytes) -> tuple:
    """RIFF/WAVE header bytes -> (format tag, channels, rate, bits, data offset, data size)."""
    if len(head) < 12:
        raise _Incomplete()
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise DeepASAError("not a RIFF/WAVE file (for raw PCM give --rate, --channels and --dtype)")
    pos, fmt = 12, None
    while True:
        if len(head) < pos + 8:
            raise _Incomplete()
        cid, size = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        if cid == b"fmt ":
            if len(head) < pos + 8 + 16:
                raise _Incomplete()
            tag, ch, rate, _, _, bits = struct.unpack("<HHIIHH", head[pos + 8:pos + 24])
            if tag == 0xFFFE and size >= 40 and len(head) >= pos + 8 + 26:
                tag = struct.unpack("<H", head[pos + 32:pos + 34])[0]  # the sub-format GUID's first two bytes
            fmt = (tag, ch, rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise DeepASAError("WAV data before its fmt chunk")
            return (*fmt, pos + 8, size)
        pos += 8 + size + (size & 1)


class DeviceInput(LiveInput):
    """A sound device through the optional ``sounddevice`` package (``device`` or ``device:NAME_OR_INDEX``)."""

    def __init__(self, spec: str, rate: int | None, channels: int):
        super().__init__()
        try:
            import sounddevice as sd
        except (ImportError, OSError) as exc:
            raise DeepASAError(f"reading a sound device needs the optional sounddevice package and PortAudio "
                               f"(pip install sounddevice): {str(exc).splitlines()[0]}") from None
        self._sd = sd
        dev = spec.partition(":")[2] or None
        self.device = int(dev) if dev is not None and dev.isdigit() else dev
        try:
            info = sd.query_devices(self.device, "input")
        except Exception as exc:  # PortAudio says why in one line
            raise DeepASAError(f"no input device {dev or '(default)'}: {str(exc).splitlines()[0]}") from None
        self.rate = int(rate or info["default_samplerate"])
        self.channels = int(channels)
        self.name = f"device {info['name']}"
        self._q: deque = deque()
        self._ready = threading.Event()

    def blocks(self):
        """Yield (channels, n) float32 blocks from the device until stopped."""
        def callback(indata, frames, _time, status):
            if status.input_overflow:
                self.overflows = getattr(self, "overflows", 0) + 1
            self._q.append(np.ascontiguousarray(indata.T.copy()))  # (M, n)
            self._ready.set()

        try:
            with self._sd.InputStream(samplerate=self.rate, channels=self.channels, dtype="float32",
                                      device=self.device, callback=callback, blocksize=self.rate // 10):
                while not self.stop.is_set():
                    self._ready.wait(0.2)
                    self._ready.clear()
                    while self._q:
                        yield self._q.popleft()
        except Exception as exc:
            self.end_note = f"{self.name} failed: {str(exc).splitlines()[0]}"
        if getattr(self, "overflows", 0):
            self.end_note = self.end_note or f"{self.name} reported {self.overflows} input overflow(s): audio was lost"


def open_input(source: str, *, rate: int | None, channels: int, dtype: str, follow: bool,
               poll_s: float = 0.1) -> LiveInput:
    """The input named by ``SOURCE``: ``-`` (standard input), ``fd:N``, ``device[:NAME]``, a WAV or raw PCM file.

    Raises:
        DeepASAError: a missing file, a raw input without ``--rate``, a bad header, no sounddevice (one line).
    """
    if source.startswith("device") and (source == "device" or source.startswith("device:")):
        return DeviceInput(source, rate, channels)
    if source == "-" or source.startswith("fd:"):
        fd = 0 if source == "-" else _fd(source)
        if rate is None:
            raise DeepASAError(f"raw PCM on {'standard input' if source == '-' else source} needs --rate "
                               "(and --dtype, --channels if not int16 / 4)")
        return RawInput(fd, rate, channels, dtype, "standard input" if source == "-" else source)
    path = Path(source)
    if not path.exists():
        raise DeepASAError(f"no such file: {path} (SOURCE is a file, -, fd:N or device[:NAME])")
    if not path.is_file():
        raise DeepASAError(f"{path} is not a file")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == b"RIFF" or (not magic and path.suffix.lower() == ".wav" and follow):
        if rate is not None:
            raise DeepASAError(f"{path} is a WAV file: its header gives the rate (drop --rate)")
        return WavInput(path, follow=follow, poll_s=poll_s)
    if rate is None:
        raise DeepASAError(f"{path} is not a WAV file; for raw PCM give --rate (and --dtype, --channels)")
    return RawInput(os.open(path, os.O_RDONLY), rate, channels, dtype, str(path), follow=follow, poll_s=poll_s)


def _fd(source: str) -> int:
    try:
        fd = int(source[3:])
        os.fstat(fd)
    except (ValueError, OSError):
        raise DeepASAError(f"{source}: not an open file descriptor") from None
    return fd


# ---------------------------------------------------------------------------------------------- queue
class BlockQueue:
    """Blocks between the reader thread and the monitor, bounded in seconds of audio.

    With ``backpressure`` a full queue makes the reader wait (nothing is lost; the input must be able to wait:
    a file, or a writer that may block). Without, a block that does not fit is dropped and the queue remembers
    the gap (``("gap", n_samples)`` items), so the monitor's clock stays true and the gap is reported.

    Items: (M, n) float32 arrays, ``("gap", n)`` tuples; :meth:`get` returns None on timeout.
    """

    def __init__(self, rate: int, max_seconds: float, backpressure: bool = False):
        self.rate, self.max_samples, self.backpressure = rate, int(max_seconds * rate), backpressure
        self.items: deque = deque()
        self.samples = 0
        self.dropped = 0
        self.ended = False
        self.cond = threading.Condition()

    @property
    def seconds(self) -> float:
        """Audio queued, in seconds."""
        return self.samples / self.rate

    def put(self, block: np.ndarray) -> bool:
        """Queue a block; False when it was dropped (queue full, no backpressure)."""
        n = block.shape[1]
        with self.cond:
            while self.backpressure and self.samples + n > self.max_samples and self.samples and not self.ended:
                self.cond.wait(0.1)
            if self.samples + n > self.max_samples and self.samples and not self.backpressure:
                self.dropped += n
                if self.items and isinstance(self.items[-1], tuple):
                    self.items[-1] = ("gap", self.items[-1][1] + n)
                else:
                    self.items.append(("gap", n))
                self.cond.notify_all()
                return False
            self.items.append(block)
            self.samples += n
            self.cond.notify_all()
            return True

    def get(self, timeout: float):
        """The oldest item, or None when none came within ``timeout`` seconds (or the input ended and all is read)."""
        with self.cond:
            if not self.items and not self.ended:
                self.cond.wait(timeout)
            if not self.items:
                return None
            item = self.items.popleft()
            if not isinstance(item, tuple):
                self.samples -= item.shape[1]
            self.cond.notify_all()
            return item

    def take(self, n: int) -> int:
        """Discard up to ``n`` queued samples from the oldest (a block is split); returns how many (gaps count)."""
        done = 0
        with self.cond:
            while self.items and done < n:
                item = self.items[0]
                size = item[1] if isinstance(item, tuple) else item.shape[1]
                cut = min(size, n - done)
                if cut == size:
                    self.items.popleft()
                elif isinstance(item, tuple):
                    self.items[0] = ("gap", size - cut)
                else:
                    self.items[0] = item[:, cut:]
                if not isinstance(item, tuple):
                    self.samples -= cut
                done += cut
            self.cond.notify_all()
        return done

    def finish(self) -> None:
        """The input has ended: ``get`` returns None at once when empty."""
        with self.cond:
            self.ended = True
            self.cond.notify_all()


def start_reader(inp: LiveInput, queue: BlockQueue) -> threading.Thread:
    """Run ``inp.blocks()`` into ``queue`` on a daemon thread; ``queue.finish()`` when it ends (or fails)."""
    def run() -> None:
        try:
            for block in inp.blocks():
                queue.put(block)
        except Exception as exc:  # a reader must never die silently
            inp.end_note = inp.end_note or f"reading {inp.name} failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        finally:
            queue.finish()

    th = threading.Thread(target=run, name="deepasa-listen-reader", daemon=True)
    th.start()
    return th
