"""``analyze``: every sound object of a recording of any length, with bounded memory.

Pipeline (docs/analyze.md; docs/spec.md §10):

1. **Check the input** in one streaming pass: readable, not empty, finite, not silent, the model's channel
   count, and a physical format check (FOA ACN/SN3D has ``E_Y + E_Z + E_X <= E_W``; four omni capsules have
   about equal energies). Every failure is a one-line :class:`DeepASAError`.
2. **Stream** the file in soundfile blocks, resampled to the model's rate with a streaming soxr resampler
   when needed (one note says so), into overlapping windows of the model's clip length.
3. **Run the model** on each window and **stitch** its object slots across windows
   (:class:`deepasa.inference.stitching.Stitcher`: Hungarian assignment on signal, class and direction
   agreement; cross-faded overlap-add). Finished audio goes to raw files on disk as soon as it is final.
4. **Finish**: objects that were never active are dropped; the others are numbered by first activity and
   their signals are written as M-channel WAV at the *input* sample rate (streamed, resampled back).

Memory depends on the window length and the number of objects alive at once, not on the file length
(``benchmarks/analyze.py`` measures it).
"""

from __future__ import annotations

import math
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from deepasa.audio.io import check_format
from deepasa.audio.spectrogram import StreamingSpectrogram
from deepasa.errors import DeepASAError
from deepasa.model.decision import DecisionRule, merge_duplicates
from deepasa.model.paths import DEFAULT_CHECKPOINT
from deepasa.inference.options import DEFAULT_SEPARATION, SEPARATIONS
from deepasa.inference.result import SceneAnalysis, SceneObject, activity_segments
from deepasa.inference.stitching import KINDS, RawFileSink, Stitcher, StitchWeights, WindowOutput, slot_activity

__all__ = ["DEFAULT_CHECKPOINT", "load_model", "analyze", "model_class_names", "model_format", "check_format",
           "AudioSource", "SILENCE_PEAK"]

#: The shipped model (``deepasa analyze`` / ``deepasa demo`` without ``--checkpoint``).
#: An input whose absolute peak is below this (−100 dBFS) is refused as silent.
SILENCE_PEAK = 1e-5
BLOCK = 65536  # samples per streamed block
PREVIEW_SECONDS = 30.0


# ---------------------------------------------------------------------------------------------- model
def load_model(checkpoint: str | Path | None = None):
    """Load a DeepASA checkpoint for inference (``None``: the shipped ``checkpoints/default.pt``).

    The checkpoint's ``class_names`` and ``audio_format`` come back as ``model.class_names`` /
    ``model.audio_format`` (see :meth:`deepasa.model.DeepASA.from_pretrained`).

    Raises:
        DeepASAError: missing or unreadable checkpoint (one line).
    """
    from deepasa.model import DeepASA

    model = DeepASA.from_pretrained(checkpoint).eval()
    model.checkpoint_path = str(checkpoint if checkpoint is not None else DEFAULT_CHECKPOINT)
    return model


def model_class_names(model) -> list[str]:
    """Class names of ``model``: its own, else the sound-bank taxonomy when the count matches, else class_<i>."""
    n = model.config.n_classes
    names = getattr(model, "class_names", None)
    if names is not None and len(names) == n:
        return list(names)
    from deepasa.scenes.soundbank import class_names

    bank = class_names()
    return bank if len(bank) == n else [f"class_{i}" for i in range(n)]


def model_format(model) -> str:
    """The array format the model was trained on: ``model.audio_format`` if recorded, else "mic" (training default)."""
    return getattr(model, "audio_format", None) or "mic"


# ---------------------------------------------------------------------------------------------- input
class AudioSource:
    """A recording read in blocks: a file (wav/flac/ogg/...) or an in-memory (M, N) array.

    Attributes:
        name: path or "<array>"; sample_rate; n_channels (M); n_samples (N).
    """

    def __init__(self, path_or_array, sample_rate: int | None = None, default_rate: int | None = None) -> None:
        self.array = None
        self.matrix: np.ndarray | None = None  # (M, M) applied to every block when set
        if isinstance(path_or_array, (str, Path)):
            path = Path(path_or_array)
            self.name = str(path)
            if not path.is_file():
                raise DeepASAError(f"no such audio file: {path}")
            try:
                info = sf.info(str(path))
            except Exception as exc:  # libsndfile says why in one line
                raise DeepASAError(f"cannot read {path}: {str(exc).strip().splitlines()[0]}") from None
            if sample_rate is not None and sample_rate != info.samplerate:
                raise DeepASAError(f"{path} is at {info.samplerate} Hz, not {sample_rate} Hz as given")
            self.path, self.sample_rate, self.n_channels = path, int(info.samplerate), int(info.channels)
            self.n_samples = int(info.frames)
        else:
            x = path_or_array.detach().cpu().numpy() if hasattr(path_or_array, "detach") else path_or_array
            x = np.asarray(x, dtype=np.float32)
            if x.ndim == 1:
                x = x[None]  # (1, N)
            if x.ndim != 2:
                raise DeepASAError(f"expected an (channels, samples) array, got shape {x.shape}")
            self.name, self.path, self.array = "<array>", None, x
            self.sample_rate = int(sample_rate or default_rate)
            self.n_channels, self.n_samples = x.shape

    def blocks(self, block: int = BLOCK):
        """Yield (M, n) float32 blocks from the start (through ``matrix`` when one is set: a channel conversion
        every reader of the source then sees, e.g. FuMa → AmbiX)."""
        if self.matrix is not None:
            for blk in self._raw_blocks(block):
                yield (self.matrix @ blk).astype(np.float32)  # (M, n)
            return
        yield from self._raw_blocks(block)

    def _raw_blocks(self, block: int):
        """The file's or array's own (M, n) float32 blocks."""
        if self.array is not None:
            for i in range(0, self.n_samples, block):
                yield self.array[:, i:i + block]
            return
        try:
            with sf.SoundFile(str(self.path)) as fh:
                while True:
                    data = fh.read(block, dtype="float32", always_2d=True)  # (n, M)
                    if not len(data):
                        return
                    yield np.ascontiguousarray(data.T)  # (M, n)
        except DeepASAError:
            raise
        except Exception as exc:
            raise DeepASAError(f"cannot read {self.path}: {str(exc).strip().splitlines()[0]}") from None

    def scan(self) -> np.ndarray:
        """One pass of checks; returns the per-channel energies (M,).

        Raises:
            DeepASAError: empty, NaN/Inf samples, silent (peak below −100 dBFS), unreadable.
        """
        if self.n_samples == 0 or self.n_channels == 0:
            raise DeepASAError(f"{self.name} contains no samples")
        energy, peak, seen = np.zeros(self.n_channels), 0.0, 0
        for blk in self.blocks():
            if not np.isfinite(blk).all():
                raise DeepASAError(f"{self.name} contains NaN or Inf samples")
            energy += (blk.astype(np.float64) ** 2).sum(axis=1)
            peak = max(peak, float(np.abs(blk).max()))
            seen += blk.shape[1]
        if seen == 0:
            raise DeepASAError(f"{self.name} contains no samples")
        self.n_samples = seen  # trust what could be read (a truncated file reports more)
        if peak < SILENCE_PEAK:
            raise DeepASAError(f"{self.name} is silent (peak {20 * math.log10(max(peak, 1e-30)):.0f} dBFS)")
        return energy


def _model_rate_blocks(src: AudioSource, sr_model: int, n_model: int):
    """Yield (M, n) float32 blocks at the model rate, exactly ``n_model`` samples in total (streaming soxr)."""
    emitted = 0
    if src.sample_rate == sr_model:
        gen = src.blocks()
    else:
        import soxr

        rs = soxr.ResampleStream(src.sample_rate, sr_model, src.n_channels, dtype="float32", quality="HQ")

        def _gen():
            for blk in src.blocks():
                y = rs.resample_chunk(np.ascontiguousarray(blk.T), last=False)  # (n', M)
                if len(y):
                    yield y.T
            y = rs.resample_chunk(np.zeros((0, src.n_channels), np.float32), last=True)  # (n', M)
            if len(y):
                yield y.T

        gen = _gen()
    for blk in gen:
        take = min(blk.shape[1], n_model - emitted)
        if take > 0:
            yield blk[:, :take]
            emitted += take
    if emitted < n_model:
        yield np.zeros((src.n_channels, n_model - emitted), np.float32)


# ---------------------------------------------------------------------------------------------- model run
def _run_window(model, x: np.ndarray) -> WindowOutput:
    """x (M, L) float32 -> :class:`WindowOutput` of one window (batch of one)."""
    import torch

    with torch.inference_mode():
        out = model(torch.from_numpy(np.ascontiguousarray(x))[None])  # batch (1, M, L)
        as_np = lambda t: None if t is None else t[0].float().cpu().numpy()  # drop the batch axis
        return WindowOutput(
            image=as_np(out.image), direct=as_np(out.direct), reverb=as_np(out.reverb), noise=as_np(out.noise),
            cls_prob=as_np(torch.softmax(out.cls_logits.float(), dim=-1)),  # (J, C)
            onoff_prob=as_np(torch.sigmoid(out.onoff.float())),  # (J, T')
            doa=as_np(out.doa),  # (J, T', 3)
        )


def _libc():
    """glibc via ctypes, or None (another libc / platform)."""
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
            _LIBC.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        except (OSError, AttributeError):
            _LIBC = False
    return _LIBC or None


def bound_heap() -> None:
    """Keep the peak RSS of a long analysis flat (glibc only; a no-op elsewhere).

    glibc raises its mmap threshold each time a large block is freed, so after the first windows the model's
    large temporary tensors come from the heap, fragment it, and the peak RSS creeps up window after window
    (measured with ``small`` and ``malloc_trim`` after every window: +32 MB over 119 windows of a 240-s
    file). Fixing the threshold at 1 MiB (``mallopt``; the environment variable
    ``MALLOC_MMAP_THRESHOLD_=1048576`` does the same) returns such blocks to the OS when freed; measured:
    +5 MB from window 5 to window 29 of a 60-s file (benchmarks/results/analyze.json). The setting is
    process-wide and makes large allocations slower (page faults).
    """
    libc = _libc()
    if libc is not None:
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD = 1 MiB (also disables the dynamic threshold)


def _trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


_LIBC = None


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "object"


def _write_wav_stream(sink: RawFileSink, key: tuple, path: Path, n_model: int, sr_model: int, sr_out: int,
                      n_out: int, n_channels: int) -> None:
    """Raw model-rate stream ``key`` -> (M, n_out) float WAV at ``sr_out``: zeros before its start and after its end."""
    path.parent.mkdir(parents=True, exist_ok=True)
    start = sink.starts.get(key, n_model)
    offset = min(n_out, int(round(start * sr_out / sr_model)))
    written = 0
    with sf.SoundFile(str(path), "w", samplerate=sr_out, channels=n_channels, subtype="FLOAT", format="WAV") as fh:
        def put(block: np.ndarray) -> None:  # block (M, n)
            nonlocal written
            take = min(block.shape[1], n_out - written)
            if take > 0:
                fh.write(np.ascontiguousarray(block[:, :take].T))  # (n, M)
                written += take

        for i in range(0, offset, BLOCK):
            put(np.zeros((n_channels, min(BLOCK, offset - i)), np.float32))
        if key in sink.starts:
            if sr_model == sr_out:
                for blk in sink.read_blocks(key, BLOCK):
                    put(blk)
            else:
                import soxr

                rs = soxr.ResampleStream(sr_model, sr_out, n_channels, dtype="float32", quality="HQ")
                for blk in sink.read_blocks(key, BLOCK):
                    put(rs.resample_chunk(np.ascontiguousarray(blk.T), last=False).T)
                put(rs.resample_chunk(np.zeros((0, n_channels), np.float32), last=True).T)
        while written < n_out:
            put(np.zeros((n_channels, min(BLOCK, n_out - written)), np.float32))
    sink.path(key).unlink(missing_ok=True)


def spatial_pass(blocks, n_model: int, sr_model: int, label_hop_s: float, objects: list, sink,
                 chunk_s: float = 30.0, overlap_s: float = 1.0, separate_fn: Callable | None = None) -> None:
    """The spatial stage over a recording of any length, in chunks, into ``sink`` streams.

    Each chunk (``chunk_s`` plus ``overlap_s``, on label-frame boundaries) is separated with the objects
    active in it; consecutive chunks are cross-faded linearly over the overlap. In every chunk the objects and
    the remainder add up to the chunk, so the cross-faded streams add up to the recording too.

    Args:
        blocks: iterator of (M, n) float32 blocks at the model rate, ``n_model`` samples in all.
        n_model: samples at the model rate; sr_model: Hz; label_hop_s: seconds per label frame.
        objects: [(key, activity (T,) bool, doa (T, 3))] per object (T label frames of the whole recording).
        sink: writes ``(key, kind)`` streams for kind in image/direct/reverb and ``("noise",)`` (the remainder).
        separate_fn: ``(x (M, n), activity (K, T'), doa (K, T', 3), sample_rate=, label_hop=)`` →
            :class:`~deepasa.separation.SpatialSeparation` (default: the spatial stage).
    """
    from deepasa.separation import separate

    separate_fn = separate_fn or separate
    ls = int(round(label_hop_s * sr_model))
    chunk = max(1, int(round(chunk_s / label_hop_s))) * ls
    over = max(1, int(round(overlap_s / label_hop_s))) * ls
    act = np.stack([a for _, a, _ in objects]) if objects else np.zeros((0, 1), bool)  # (K, T)
    doa = np.stack([d for _, _, d in objects]) if objects else np.zeros((0, 1, 3))  # (K, T, 3)
    buf, buf_start = np.zeros((0, 0), np.float32), 0
    tail: dict = {}  # key -> (M, over) previous chunk's output over the overlap (fading out)
    for start in range(0, n_model, chunk):
        stop = min(n_model, start + chunk + over)
        while buf_start + buf.shape[-1] < stop:
            blk = next(blocks)  # (M, n)
            buf = blk if buf.size == 0 else np.concatenate([buf, blk], axis=1)  # (M, n + n_blk)
        x = buf[:, start - buf_start: stop - buf_start]  # (M, n_chunk)
        f0, f1 = start // ls, -(-stop // ls)
        keep = [k for k in range(len(objects)) if act[k, max(0, f0 - 1): f1 + 1].any()]
        out = separate_fn(x, act[keep, f0:f1], doa[keep, f0:f1], sample_rate=sr_model, label_hop=label_hop_s)
        parts = {("noise",): out.remainder}
        for i, k in enumerate(keep):
            for kind in ("image", "direct", "reverb"):
                parts[(objects[k][0], kind)] = getattr(out, kind)[i]
        for k in range(len(objects)):
            if k not in keep:
                for kind in ("image", "direct", "reverb"):
                    parts[(objects[k][0], kind)] = np.zeros_like(x)
        ramp = np.linspace(0.0, 1.0, over, endpoint=False, dtype=np.float32)[None]  # (1, O) fade-in
        n_own = min(chunk, stop - start)  # samples this chunk writes now; the rest waits for the next one
        for key, y in parts.items():
            y = y.astype(np.float32)  # (M, n_chunk)
            if start:  # cross-fade with the previous chunk's output over the overlap
                head = tail[key].shape[-1]
                y[:, :head] = ramp[:, :head] * y[:, :head] + (1 - ramp[:, :head]) * tail[key]
            sink.write(key, start, y[:, :n_own])
            tail[key] = y[:, n_own:]
        drop = min(chunk, buf.shape[-1])
        buf, buf_start = buf[:, drop:], buf_start + drop


def extractor_separate(extractor) -> Callable | None:
    """A :func:`spatial_pass` ``separate_fn`` running the trajectory-conditioned ``extractor`` (None: the stage)."""
    if extractor is None:
        return None
    from deepasa.model.extractor import extract

    return lambda x, act, doa, **_kw: extract(x, act, doa, extractor)


def write_complement(src: AudioSource, parts: list[Path], path: Path) -> None:
    """``path`` ← the recording minus the sum of the ``parts`` (WAVs at its rate and length), block by block.

    The remainder written this way makes the objects and the noise add up to the recording exactly at the
    recording's own rate, including what lies above the model's band after resampling.
    """
    handles = [sf.SoundFile(str(p)) for p in parts]
    try:
        with sf.SoundFile(str(path), "w", samplerate=src.sample_rate, channels=src.n_channels, subtype="FLOAT",
                          format="WAV") as out:
            for blk in src.blocks():  # (M, n)
                rest = blk.astype(np.float64)
                for fh in handles:
                    part = fh.read(blk.shape[1], dtype="float64", always_2d=True).T  # (M, n')
                    rest[:, : part.shape[1]] -= part
                out.write(np.ascontiguousarray(rest.T.astype(np.float32)))  # (n, M)
    finally:
        for fh in handles:
            fh.close()


# ---------------------------------------------------------------------------------------------- analyze
def analyze(model, path_or_array, sample_rate: int | None = None, window: float | None = None,
            hop: float | None = None, fmt: str | None = None, *, workdir: str | Path | None = None,
            progress: bool = False, log: Callable[[str], None] | None = None,
            weights: StitchWeights = StitchWeights(), run_window: Callable | None = None,
            bound_memory: bool = True, separation: str = DEFAULT_SEPARATION,
            extractor=None) -> SceneAnalysis:
    """Find, separate, classify, detect and localise every sound object of a recording.

    Args:
        model: a :class:`~deepasa.model.DeepASA` with SED/DoA heads (e.g. :func:`load_model`).
        path_or_array: an audio file (wav/flac/ogg) or an (M, N) array / tensor (M = ``model.in_channels``).
        sample_rate: the array's rate (default: the model's); for a file, optional and must match it.
        window: analysis window in seconds (default and, with chain-of-inference, required: the model's clip).
        hop: window step in seconds (default ``window / 2``); both are rounded to 100-ms label frames.
        fmt: "mic" or "foa" (default: the model's format); must be the model's format.
        workdir: folder for the signal files (default: a temporary folder deleted unless the result is saved).
        progress: show a progress bar over the windows.
        log: receives one-line notes (default: printed to stderr).
        weights: stitching cost weights and threshold.
        run_window: replaces the model call, ``x (M, L) -> WindowOutput`` (tests, fake models); its outputs are
            decided by the model's rule (``model.decision_rule``: ``onoff``, ``doa_norm``; the paper's where the
            model has none), which the stitcher applies; the rule's duplicate merge (``merge_deg``) then runs
            over the stitched objects.
        separation: where each object's audio comes from: "network" (the model's own audio heads) or
            "spatial" (the zero-training spatial stage, :mod:`deepasa.separation`, driven by the objects'
            activity and direction: the objects and the noise/remainder then add up to the recording) or
            "extractor" (the trajectory-conditioned extractor on top of that stage; ``extractor`` is required).
        extractor: a :class:`~deepasa.model.extractor.TrajectoryExtractor` for ``separation="extractor"``.
        bound_memory: fix glibc's mmap threshold at 1 MiB for this process (:func:`bound_heap`) so the peak
            memory stays flat over any length; costs CPU time (page faults; ~1.4x measured with ``small`` on
            the shared 2-core machine). False: faster, but the peak creeps up slowly (+32 MB over 240 s).

    Returns:
        :class:`SceneAnalysis`: objects with class, confidence, activity and DoA per 100-ms frame, and
        (M, N)-at-input-rate image/direct/reverb signals on disk; plus ``noise.wav``, the remainder (the
        recording minus every object's image, at its rate), so the objects and it add up to the recording.

    Raises:
        DeepASAError: bad input (unreadable, empty, NaN/Inf, silent, wrong channel count or format) or bad
            options (window/hop).
    """
    if separation not in SEPARATIONS:
        raise DeepASAError(f"unknown separation {separation!r} ({' or '.join(SEPARATIONS)})")
    cfg = model.config
    if separation == "extractor" and extractor is None:
        raise DeepASAError("separation 'extractor' needs a trajectory-conditioned extractor (--extractor)")
    if separation != "network" and (fmt or model_format(model)) != "mic":
        raise DeepASAError("the spatial separation needs the tetrahedral MIC format (FOA is not supported yet)")
    if not cfg.seld_heads:
        raise DeepASAError("analyze needs a model with SED/DoA heads (this config has seld_heads=False)")
    log = log or (lambda msg: print(msg, file=sys.stderr))
    fmt_model = model_format(model)
    fmt = fmt or fmt_model
    if fmt not in ("mic", "foa"):
        raise DeepASAError(f"unknown format {fmt!r} (mic or foa)")
    if fmt != fmt_model:
        raise DeepASAError(f"the model was trained on {fmt_model} recordings; --format {fmt} input cannot be analysed with it")
    sr_m, M, ls = cfg.sample_rate, cfg.n_mics, cfg.label_samples
    src = AudioSource(path_or_array, sample_rate, default_rate=sr_m)
    if src.n_channels != M:
        hint = " (pass an (channels, samples) array)" if src.array is not None and src.n_samples == M else ""
        raise DeepASAError(f"{src.name} has {src.n_channels} channel(s); the model expects {M} "
                           f"({'tetrahedral microphone array' if fmt == 'mic' else 'FOA W, Y, Z, X'}){hint}")
    energy = src.scan()
    check_format(energy, fmt, src.name)
    # windows, in label frames
    win_s = cfg.clip_seconds if window is None else float(window)
    L = int(round(win_s * sr_m / ls)) * ls
    H = int(round((win_s / 2 if hop is None else float(hop)) * sr_m / ls)) * ls
    if L < ls or not 0 < H <= L:
        raise DeepASAError(f"need 0 < hop <= window and window >= {cfg.label_hop_s} s; got window {win_s} s, "
                           f"hop {hop if hop is not None else win_s / 2} s")
    if cfg.coi_steps and L != cfg.clip_samples:
        raise DeepASAError(f"this model uses chain-of-inference and needs windows of exactly {cfg.clip_seconds} s")
    messages = resampling_note(src, sr_m, log, "the model's rate")
    n_model = int(round(src.n_samples * sr_m / src.sample_rate))

    def run(root: Path) -> SceneAnalysis:
        if bound_memory:
            bound_heap()
        return _analyze_stream(model, src, root, n_model, L, H, fmt, messages, progress, weights,
                               run_window or (lambda x: _run_window(model, x)), separation, extractor)

    return in_workdir(workdir, run)


def resampling_note(src: AudioSource, rate: int, log: Callable[[str], None], why: str) -> list[str]:
    """The analysis's messages: one line (also logged) when ``src`` is resampled to ``rate`` (``why``: whose rate)."""
    if src.sample_rate == rate:
        return []
    msg = (f"resampling {src.name} from {src.sample_rate} Hz to {rate} Hz ({why}); "
           f"outputs are written at {src.sample_rate} Hz")
    log(msg)
    return [msg]


def in_workdir(workdir: str | Path | None, run: Callable[[Path], SceneAnalysis]) -> SceneAnalysis:
    """``run(root)`` in ``workdir``, or in a temporary folder that the result owns (deleted if ``run`` fails,
    and with the result unless it is saved)."""
    owned = workdir is None
    root = Path(tempfile.mkdtemp(prefix="deepasa-analysis-")) if owned else Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    try:
        result = run(root)
    except BaseException:
        if owned:
            shutil.rmtree(root, ignore_errors=True)
        raise
    if owned:
        result.own_temporary_root()
    return result


def _analyze_stream(model, src: AudioSource, root: Path, n_model: int, L: int, H: int, fmt: str,
                    messages: list, progress: bool, weights: StitchWeights, run_window,
                    separation: str = "network", extractor=None) -> SceneAnalysis:
    cfg = model.config
    sr_m, M, ls = cfg.sample_rate, cfg.n_mics, cfg.label_samples
    raw = RawFileSink(root / "_raw", M)
    # the model's decision rule; a stand-in that has only a config (run_window tests) decides by the paper's
    rule = getattr(model, "decision_rule", None) or DecisionRule()
    st = Stitcher(L, H, n_model, ls, raw, weights, doa_threshold=rule.doa_norm, onoff_threshold=rule.onoff)
    spec = StreamingSpectrogram(n_model, sr_m)
    preview_rate = min(sr_m, 16000)
    n_preview = int(PREVIEW_SECONDS * sr_m)
    preview: list[np.ndarray] = []
    blocks = _model_rate_blocks(src, sr_m, n_model)
    buf, buf_start, fed = np.zeros((M, 0), np.float32), 0, 0  # buf (M, n) holds samples from buf_start
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=st.n_windows, unit="window", desc="analyze", file=sys.stderr)
    for start in st.starts:
        while buf_start + buf.shape[1] < min(start + L, n_model):
            blk = next(blocks)  # (M, n)
            spec.feed(blk[cfg.ref_mic])
            if fed < n_preview:
                preview.append(blk[cfg.ref_mic, : n_preview - fed].copy())
            fed += blk.shape[1]
            buf = np.concatenate([buf, blk], axis=1)  # (M, n + n_blk)
        x = buf[:, start - buf_start: start - buf_start + L]  # (M, <= L)
        x = np.pad(x, ((0, 0), (0, L - x.shape[1])))  # (M, L), zero-padded past the end
        o = run_window(x)
        ov = x[:, : L - H].astype(np.float64)  # (M, O) input on the overlap with the previous window
        st.push(o, mixture_overlap_energy=float((ov ** 2).sum()))
        drop = min(H, buf.shape[1])
        buf, buf_start = buf[:, drop:], buf_start + drop  # keep from the next window's start
        del o
        _trim_heap()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    tracks = st.finish()
    # objects: active tracks, numbered by first activity
    n_frames = math.ceil(n_model / ls)
    names = model_class_names(model)
    found = []
    per_track = [trk.frames.averaged(n_frames)[:2] for trk in tracks]  # [((T,) on/off prob, (T, 3) doa)] per track
    if per_track:
        prob_all = np.stack([p for p, _ in per_track])  # (K, T)
        doa_all = np.stack([d for _, d in per_track])  # (K, T, 3)
        act_all = slot_activity(prob_all, doa_all, onoff_threshold=rule.onoff,
                                doa_threshold=rule.doa_norm)  # (K, T)
        cls_all = np.array([int(np.argmax(trk.class_prob())) for trk in tracks])  # (K,)
        act_all = merge_duplicates(act_all, cls_all, doa_all, prob_all, rule.merge_deg)  # (K, T)
    for k, trk in enumerate(tracks):
        active, doa = act_all[k], doa_all[k]  # (T,), (T, 3)
        if not active.any():
            raw.discard(trk.track_id)
            continue
        found.append((int(np.argmax(active)), trk, active, doa))
    found.sort(key=lambda f: (f[0], f[1].track_id))
    if separation != "network":
        for _, trk, _, _ in found:
            raw.discard(trk.track_id)  # the network's audio is replaced
        raw.discard("noise")  # the stage writes its own remainder stream
        spatial_pass(_model_rate_blocks(src, sr_m, n_model), n_model, sr_m, cfg.label_hop_s,
                     [(trk.track_id, active, doa) for _, trk, active, doa in found], raw,
                     separate_fn=extractor_separate(extractor))
        messages.append(f"objects separated by the {'trajectory-conditioned extractor' if extractor else 'spatial stage'}"
                        " (activity and direction of each object)")
    objects = []
    duration = src.n_samples / src.sample_rate
    hop_s = cfg.label_hop_s
    for oid, (_, trk, active, doa) in enumerate(found):
        cp = trk.class_prob()
        ci = int(np.argmax(cp))
        folder = f"objects/{oid}_{_safe_name(names[ci])}"
        files = {}
        for kind in KINDS:
            if (trk.track_id, kind) in raw.starts:
                files[kind] = f"{folder}/{kind}.wav"
                _write_wav_stream(raw, (trk.track_id, kind), root / files[kind], n_model, sr_m, src.sample_rate,
                                  src.n_samples, M)
        unit = doa / np.maximum(np.linalg.norm(doa, axis=-1, keepdims=True), 1e-12)  # (T, 3)
        unit = np.where(np.linalg.norm(doa, axis=-1, keepdims=True) > 0, unit, 0.0)
        objects.append(SceneObject(
            id=oid, class_index=ci, class_name=names[ci], confidence=float(cp[ci]), activity=active,
            doa=unit, segments=activity_segments(active, hop_s, duration), files=files, folder=folder))
    # noise.wav is the remainder at the recording's own rate, whatever separated the objects: objects + noise = the
    # recording, so an unedited remix gives it back (the network's own noise head has no trained level)
    raw.discard("noise")
    write_complement(src, [root / o.files["image"] for o in objects if "image" in o.files], root / "noise.wav")
    shutil.rmtree(root / "_raw", ignore_errors=True)
    mag, times, freqs = spec.result()
    prev = np.concatenate(preview) if preview else np.zeros(1, np.float32)
    if preview_rate != sr_m:
        from deepasa.audio.io import resample

        prev = resample(prev, sr_m, preview_rate)
    return SceneAnalysis(
        objects=objects, root=root, sample_rate=src.sample_rate, model_sample_rate=sr_m, n_samples=src.n_samples,
        n_channels=M, n_frames=n_frames, label_hop_s=hop_s, fmt=fmt, class_names=names,
        window_s=L / sr_m, hop_s=H / sr_m, n_windows=st.n_windows, source=src.name,
        mixture_spectrogram=mag, spectrogram_times=times, spectrogram_freqs=freqs,
        mixture_preview=prev, preview_rate=preview_rate, messages=messages,
        model_info={"checkpoint": getattr(model, "checkpoint_path", None), "n_slots": cfg.n_slots,
                    "n_classes": cfg.n_classes, "sample_rate": sr_m, "clip_seconds": cfg.clip_seconds},
    )
