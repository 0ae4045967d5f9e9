"""``remix``: edit an analysed scene object by object and re-render it as MIC or FOA (no torch).

Input: an analysis folder as ``deepasa analyze`` writes it (or the *oracle analysis* of a simulated scene,
``deepasa simulate --oracle-analysis``), read with :meth:`SceneAnalysis.load`. Output: one (4, N) float32
signal at the analysed sample rate.

Rendering, object by object (docs/remix.md, issue 17):

* **Unedited** objects pass through exactly: their ``image.wav`` (and the noise its ``noise.wav``), so a
  remix without edits is ``Σ_j image_j + noise`` — the analysed mixture up to the model's residual
  (exactly the mixture for an oracle analysis).
* ``gain`` scales the whole object, ``mute`` drops it, ``dry`` keeps only its direct path.
* ``move`` (a fixed new direction) and ``rotate`` (the whole DoA trajectory shifted by Δaz, Δel) re-spatialise
  the **direct path**: its mono signal *at the array centre* is extracted (:func:`extract_mono`), then rendered
  at the new direction per 100-ms label frame, crossfaded with the Hann² windows the simulator uses for moving
  sources (they sum to one, so a fixed direction is an exact static rendering):
  FOA by the ACN/SN3D plane-wave gains of :func:`deepasa.audio.geometry.foa_gains`, MIC by the tetrahedron's
  free-field steering delays ``τ_i = −p_i·u / c`` applied with the simulator's fractional-delay filter
  (Hann-windowed sinc, 81 taps). The reverberant part is kept as it is (``benchmarks/remix.py`` measures it
  against the simulator's re-rendered reverberation at the new direction).
* ``rotate_scene`` (Δaz about the vertical axis) turns every object and the diffuse parts. For FOA output it
  is the first-order rotation matrix applied to the whole remix (exact, W and Z unchanged). For MIC output the
  direct paths are re-rendered at the rotated directions; reverberation and noise are kept (a diffuse field's
  inter-capsule coherence does not depend on the orientation; early reflections do not turn with it).
* ``fmt`` (output format) other than the analysis's: every direct path is re-rendered in the new format along
  its trajectory and every reverberant part and the noise are *transcoded as diffuse fields*
  (:func:`transcode_diffuse`): the tetrahedron's four capsules are split into the pressure (sum) and three
  gradient (difference) components, which are exactly uncorrelated in a diffuse field, and re-weighted per
  frequency so that the output has the diffuse-field coherence of the other format.

The edits are applied in this order: object edits (gain, mute, dry, move/rotate), then the noise gain,
then the scene rotation (so ``move`` directions are in the recording's frame before the scene turns).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepasa.audio.geometry import SPEED_OF_SOUND, TETRA_AZ_EL_DEG, azimuth_elevation, foa_gains, \
    tetra_mic_offsets, unit_vector
from deepasa.errors import DeepASAError

__all__ = ["RemixEdits", "remix", "extract_mono", "render_direct", "framewise_delay", "frame_weights",
           "foa_rotation", "transcode_diffuse", "fill_directions", "EXTRACTORS"]

#: Mono direct-signal extraction methods (:func:`extract_mono`); the first is the default, chosen by
#: measurement (``benchmarks/remix.py``, "extraction").
EXTRACTORS = ("beamformer", "reference")
FD_HALF = 40  # the simulator's fractional-delay filter: 2 * FD_HALF + 1 taps (deepasa.scenes.acoustics)
FRAMES_PER_CHUNK = 64  # label frames processed at once by framewise_delay (bounds its memory)
MAX_GAIN_DB = 60.0
DIFFUSE_FLOOR = 0.03  # lower bound of (1 - coherence) when a MIC diffuse gradient is equalised (<= 15 dB boost)


# ---------------------------------------------------------------------------------------------- edits
@dataclass
class RemixEdits:
    """What to change. Object keys are object ids (int) or class names (str, every object of that class).

    Attributes:
        mute: objects to drop.
        gain: object -> gain in dB (applied to the whole object).
        move: object -> (azimuth, elevation) degrees, a fixed new direction of its direct path.
        rotate: object -> (Δazimuth, Δelevation) degrees added to its whole DoA trajectory (elevation clipped
            to ±90°).
        dry: objects whose reverberant part is dropped.
        rotate_scene: Δazimuth (degrees, counter-clockwise seen from above) of the whole scene.
        noise_gain: dB applied to the noise estimate (``-inf`` drops it).
        fmt: output format, "mic" or "foa" (None: the analysis's).
    """

    mute: list = field(default_factory=list)
    gain: dict = field(default_factory=dict)
    move: dict = field(default_factory=dict)
    rotate: dict = field(default_factory=dict)
    dry: list = field(default_factory=list)
    rotate_scene: float = 0.0
    noise_gain: float = 0.0
    fmt: str | None = None

    KEYS = ("mute", "gain", "move", "rotate", "dry", "rotate_scene", "noise_gain", "format")

    @classmethod
    def from_mapping(cls, doc, source: str = "edits") -> "RemixEdits":
        """Build from a YAML/JSON mapping with the keys of :attr:`KEYS` (``format`` for ``fmt``).

        Example (``--edits FILE.yaml``)::

            mute: [dog_bark]
            gain: {0: -6, speech: 3}
            move: {1: [90, 0]}
            rotate: {2: [30, 0]}
            dry: [1]
            rotate_scene: 45
            noise_gain: -10
            format: foa
        """
        if doc is None:
            return cls()
        if not isinstance(doc, dict):
            raise DeepASAError(f"{source}: expected a mapping of edits ({', '.join(cls.KEYS)})")
        unknown = sorted(str(k) for k in doc if k not in cls.KEYS)
        if unknown:
            raise DeepASAError(f"{source}: unknown edit(s) {', '.join(unknown)} (valid: {', '.join(cls.KEYS)})")

        def as_list(key):
            v = doc.get(key) or []
            return list(v) if isinstance(v, (list, tuple)) else [v]

        def as_map(key):
            v = doc.get(key) or {}
            if not isinstance(v, dict):
                raise DeepASAError(f"{source}: {key} must be a mapping object -> value, got {v!r}")
            return dict(v)

        def pair(key, v):
            if not (isinstance(v, (list, tuple)) and len(v) == 2):
                raise DeepASAError(f"{source}: {key} values must be [azimuth, elevation] pairs, got {v!r}")
            return (_number(v[0], f"{source}: {key}"), _number(v[1], f"{source}: {key}"))

        return cls(mute=as_list("mute"), dry=as_list("dry"),
                   gain={k: _number(v, f"{source}: gain") for k, v in as_map("gain").items()},
                   move={k: pair("move", v) for k, v in as_map("move").items()},
                   rotate={k: pair("rotate", v) for k, v in as_map("rotate").items()},
                   rotate_scene=_number(doc.get("rotate_scene", 0.0), f"{source}: rotate_scene"),
                   noise_gain=_number(doc.get("noise_gain", 0.0), f"{source}: noise_gain", allow_minus_inf=True),
                   fmt=doc.get("format"))

    def merged(self, other: "RemixEdits") -> "RemixEdits":
        """Both sets of edits (e.g. a file and the command line); the same setting given twice is an error."""
        def join_map(a, b, name):
            both = set(map(str, a)) & set(map(str, b))
            if both:
                raise DeepASAError(f"--{name} given twice for {', '.join(sorted(both))}")
            return {**a, **b}

        def one(a, b, default, name):
            if a != default and b != default and a != b:
                raise DeepASAError(f"--{name} given twice ({a} and {b})")
            return b if b != default else a

        return RemixEdits(mute=[*self.mute, *other.mute], dry=[*self.dry, *other.dry],
                          gain=join_map(self.gain, other.gain, "gain"), move=join_map(self.move, other.move, "move"),
                          rotate=join_map(self.rotate, other.rotate, "rotate"),
                          rotate_scene=one(self.rotate_scene, other.rotate_scene, 0.0, "rotate-scene"),
                          noise_gain=one(self.noise_gain, other.noise_gain, 0.0, "noise-gain"),
                          fmt=one(self.fmt, other.fmt, None, "format"))

    def is_empty(self) -> bool:
        """True when nothing is edited (the remix is then the sum of the analysis's parts)."""
        return not (self.mute or self.gain or self.move or self.rotate or self.dry or self.rotate_scene
                    or self.noise_gain or self.fmt)


def _number(v, what: str, allow_minus_inf: bool = False) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise DeepASAError(f"{what}: {v!r} is not a number") from None
    if math.isnan(x) or (math.isinf(x) and not (allow_minus_inf and x < 0)):
        raise DeepASAError(f"{what}: {v!r} is not a finite number")
    return x


def _check_direction(az: float, el: float, what: str, relative: bool) -> None:
    """Ranges: a direction has az in [−180, 180], el in [−90, 90]; a rotation Δaz in [−360, 360], Δel in [−180, 180]."""
    az_max, el_max = (360.0, 180.0) if relative else (180.0, 90.0)
    for v, lim, name in ((az, az_max, "azimuth"), (el, el_max, "elevation")):
        if not (math.isfinite(v) and -lim <= v <= lim):
            raise DeepASAError(f"{what}: {'Δ' if relative else ''}{name} {v:g}° is out of range "
                               f"[{-lim:g}, {lim:g}]")


def _resolve(analysis, key, what: str) -> list[int]:
    """Object ids meant by ``key``: an id (int or digits) or a class name (every object of that class)."""
    ids = [o.id for o in analysis.objects]
    text = str(key).strip()
    if text.lstrip("-").isdigit():
        oid = int(text)
        if oid in ids:
            return [oid]
    else:
        hits = [o.id for o in analysis.objects if o.class_name == text]
        if hits:
            return hits
    listed = ", ".join(f"{o.id} ({o.class_name})" for o in analysis.objects) or "none"
    raise DeepASAError(f"{what}: no object {text!r} in this analysis (objects: {listed})")


@dataclass
class _ObjectPlan:
    gain: float = 1.0
    mute: bool = False
    dry: bool = False
    move: tuple | None = None
    rotate: tuple | None = None


def _plan(analysis, edits: RemixEdits) -> dict[int, _ObjectPlan]:
    """Per object id, the resolved edits; raises on unknown objects, bad ranges and conflicting edits."""
    plans = {o.id: _ObjectPlan() for o in analysis.objects}
    gains_seen, dirs_seen = {}, {}
    for key in edits.mute:
        for oid in _resolve(analysis, key, "--mute"):
            plans[oid].mute = True
    for key in edits.dry:
        for oid in _resolve(analysis, key, "--dry"):
            plans[oid].dry = True
    for key, db in edits.gain.items():
        db = _number(db, f"--gain {key}")
        if db > MAX_GAIN_DB:
            raise DeepASAError(f"--gain {key}={db:g}: more than +{MAX_GAIN_DB:g} dB")
        for oid in _resolve(analysis, key, "--gain"):
            if oid in gains_seen:
                raise DeepASAError(f"--gain given twice for object {oid} ({gains_seen[oid]} and {key})")
            gains_seen[oid] = key
            plans[oid].gain = 10.0 ** (db / 20.0)
    for kind, table in (("move", edits.move), ("rotate", edits.rotate)):
        for key, (a, e) in table.items():
            _check_direction(a, e, f"--{kind} {key}={a:g},{e:g}", relative=kind == "rotate")
            for oid in _resolve(analysis, key, f"--{kind}"):
                if oid in dirs_seen:
                    raise DeepASAError(f"object {oid} gets two direction edits (--{dirs_seen[oid]} and --{kind})")
                dirs_seen[oid] = kind
                setattr(plans[oid], kind, (float(a), float(e)))
    _check_direction(edits.rotate_scene, 0.0, f"--rotate-scene {edits.rotate_scene:g}", relative=True)
    if edits.noise_gain > MAX_GAIN_DB:
        raise DeepASAError(f"--noise-gain {edits.noise_gain:g}: more than +{MAX_GAIN_DB:g} dB")
    if edits.fmt not in (None, "mic", "foa"):
        raise DeepASAError(f"unknown output format {edits.fmt!r} (mic or foa)")
    return plans


# ---------------------------------------------------------------------------------------------- frames
def frame_weights(n: int, hop: float, n_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample crossfade between label frames (Hann², centred at frame centres, summing to one).

    Frame f is centred at ``(f + 0.5) · hop``; before the first centre and after the last one the edge frame
    holds.

    Args:
        n: samples; hop: samples per label frame (may be fractional); n_frames: T.
    Returns:
        (f0 (n,), f1 (n,), w1 (n,)): sample t is ``(1 − w1) · frame f0 + w1 · frame f1``.

    >>> f0, f1, w1 = frame_weights(8, 4, 2)
    >>> f0.tolist(), f1.tolist(), w1.round(3).tolist()
    ([0, 0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1], [0.0, 0.0, 0.0, 0.146, 0.5, 0.854, 1.0, 1.0])
    """
    x = np.arange(n) / hop - 0.5  # (n,) position in frame units from the first centre
    base = np.floor(x)
    w1 = np.sin(0.5 * np.pi * (x - base)) ** 2  # (n,) weight of the later frame
    f0 = np.clip(base, 0, n_frames - 1).astype(np.int64)
    f1 = np.clip(base + 1, 0, n_frames - 1).astype(np.int64)
    return f0, f1, np.where(f0 == f1, 0.0, w1)


def fill_directions(doa: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
    """Directions for every frame: where a frame has none (inactive, zero vector), the nearest frame's.

    Args:
        doa: (T, 3) unit vectors, zero where unknown; active: (T,) bool (default: non-zero rows).
    Returns:
        (T, 3) unit vectors.
    Raises:
        DeepASAError: no frame has a direction.
    """
    doa = np.asarray(doa, dtype=np.float64)
    known = np.linalg.norm(doa, axis=-1) > 1e-9 if active is None else (np.asarray(active, bool)
                                                                           & (np.linalg.norm(doa, axis=-1) > 1e-9))
    if not known.any():
        raise DeepASAError("the object has no direction in any frame, so it cannot be re-rendered")
    idx = np.flatnonzero(known)  # (K,)
    t = np.arange(len(doa))
    pos = np.searchsorted(idx, t).clip(1, len(idx) - 1) if len(idx) > 1 else np.zeros(len(doa), np.int64)
    left, right = idx[np.maximum(pos - 1, 0)], idx[pos]
    nearest = np.where(np.abs(t - left) <= np.abs(right - t), left, right)  # (T,)
    out = doa[nearest]  # (T, 3)
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def _rotate_z(vectors: np.ndarray, daz_deg: float) -> np.ndarray:
    """(…, 3) vectors turned counter-clockwise about z by ``daz_deg``."""
    c, s = math.cos(math.radians(daz_deg)), math.sin(math.radians(daz_deg))
    v = np.asarray(vectors, dtype=np.float64)
    return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1], v[..., 2]], axis=-1)


def foa_rotation(daz_deg: float) -> np.ndarray:
    """The first-order (ACN W, Y, Z, X) rotation matrix of a turn of ``daz_deg`` about the vertical axis.

    A plane wave from azimuth a (gains (1, sin a, 0, cos a) in the horizontal plane) becomes one from a + Δ.

    Returns:
        (4, 4) matrix R with ``y = R @ x`` for x of shape (4, N).
    """
    c, s = math.cos(math.radians(daz_deg)), math.sin(math.radians(daz_deg))
    return np.array([[1.0, 0.0, 0.0, 0.0],
                     [0.0, c, 0.0, s],    # Y' = sin·X + cos·Y
                     [0.0, 0.0, 1.0, 0.0],
                     [0.0, -s, 0.0, c]])  # X' = cos·X − sin·Y


# ---------------------------------------------------------------------------------------------- fractional delays
def _fd_taps(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The simulator's fractional-delay filter for delays ``t`` (K,) samples: (start (K,), taps (K, 81))."""
    from deepasa.scenes.acoustics import _fractional_delay_taps  # one filter for simulator and remix

    return _fractional_delay_taps(np.asarray(t, dtype=np.float64))


def framewise_delay(x: np.ndarray, delays: np.ndarray, hop: float, workers: int = 1,
                    sum_channels: bool = False) -> np.ndarray:
    """Delay each channel by a per-frame fractional delay, crossfading between label frames.

    Output channel c in frame f is ``x`` (channel c, or its only channel) delayed by ``delays[f, c]`` samples
    (any sign) with the simulator's 81-tap windowed-sinc filter; frames are crossfaded with Hann² windows of
    length 2·hop centred at ``(f + 0.5) · hop`` (the windows sum to one; edge frames hold), so constant delays
    are exactly a linear convolution with that filter (and are computed as one, the fast path).

    Args:
        x: (C_in, N) with C_in = 1 or C_out.
        delays: (T, C_out) samples.
        hop: samples per label frame.
        sum_channels: return the sum over the output channels (summed in the frequency domain: cheaper).
    Returns:
        (C_out, N), or (1, N) when ``sum_channels``; float64.
    """
    x = np.asarray(x, dtype=np.float64)
    delays = np.asarray(delays, dtype=np.float64)
    if np.all(delays == delays[:1]):
        return _static_delay(x, delays[0], sum_channels, workers)
    from scipy.fft import irfft, next_fast_len, rfft

    c_in, n = x.shape
    n_frames, c_out = delays.shape
    d = np.concatenate([delays[:1], delays, delays[-1:]])  # (T + 2, C_out): edge frames hold
    centres = (np.arange(-1, n_frames + 1) + 0.5) * hop  # (T + 2,) frame centres, samples
    half = int(math.ceil(hop))
    seg = 2 * half + 2  # samples written per frame (covers the window's support)
    pad = FD_HALF + int(math.ceil(np.abs(d).max())) + 2  # input margin on each side
    length = seg + 2 * pad
    nfft = next_fast_len(length, real=True)
    starts = np.floor(centres).astype(np.int64) - half  # (T + 2,) first written sample of each frame
    lead = pad - int(starts.min())  # zeros before sample 0 so that every slice starts at >= 0
    tail = int(starts.max()) + seg + pad - n + 1
    xp = np.pad(x.astype(np.float32), ((0, 0), (lead, max(tail, 0))))  # (C_in, lead + N + tail), float32 FFTs
    c_res = 1 if sum_channels else c_out
    out = np.zeros((c_res, xp.shape[1]))  # same offset as xp
    rows, inverse = np.unique(d, axis=0, return_inverse=True)  # (U, C_out), (T + 2,): one filter per distinct row
    start, taps = _fd_taps(rows.ravel())  # (U·C_out,), (U·C_out, 81)
    placed = np.zeros((len(start), nfft), np.float32)  # each filter at its (circular) start: delay included
    np.put_along_axis(placed, (start[:, None] + np.arange(taps.shape[1])[None, :]) % nfft, taps, axis=1)
    filt = rfft(placed, axis=-1, workers=workers).reshape(len(rows), c_out, -1)  # (U, C_out, K)
    pos = np.arange(seg)  # (seg,)
    frac = centres - np.floor(centres)
    same_window = np.allclose(frac, frac[0])
    u0 = (pos - half - frac[0]) / hop  # (seg,) frame units from the centre (frames sharing one fraction)
    window = np.where(np.abs(u0) < 1.0, np.cos(0.5 * np.pi * u0) ** 2, 0.0)  # (seg,)
    for a in range(0, len(centres), FRAMES_PER_CHUNK):
        fr = np.arange(a, min(a + FRAMES_PER_CHUNK, len(centres)))  # (F,)
        idx = (starts[fr] + lead - pad)[:, None] + np.arange(length)[None, :]  # (F, length) into xp
        segs = xp[:, idx].transpose(1, 0, 2)  # (F, C_in, length)
        spec = rfft(segs, nfft, axis=-1, workers=workers) * filt[inverse[fr]]  # (F, C_out, K)
        if sum_channels:
            spec = spec.sum(axis=1, keepdims=True)  # (F, 1, K)
        y = irfft(spec, nfft, axis=-1, workers=workers)[..., pad:pad + seg]  # (F, C_res, seg)
        if same_window:
            y *= window[None, None, :]
        else:
            u = (starts[fr][:, None] + pos[None, :] - centres[fr][:, None]) / hop  # (F, seg) frame units
            y *= np.where(np.abs(u) < 1.0, np.cos(0.5 * np.pi * u) ** 2, 0.0)[:, None, :]
        for k, f in enumerate(fr):
            o = starts[f] + lead
            out[:, o:o + seg] += y[k]
    return out[:, lead:lead + n]  # (C_res, N)


def _static_delay(x: np.ndarray, delays: np.ndarray, sum_channels: bool, workers: int = 1) -> np.ndarray:
    """:func:`framewise_delay` with one delay per channel for all frames: a plain linear convolution.

    One FFT over the whole signal (float32): each input channel is transformed once, whatever C_out.

    Args:
        x: (C_in, N); delays: (C_out,) samples.
    Returns:
        (C_out, N) or (1, N) float64.
    """
    from scipy.fft import irfft, next_fast_len, rfft

    n = x.shape[1]
    start, taps = _fd_taps(delays)  # (C_out,), (C_out, 81)
    margin = int(np.abs(start).max()) + taps.shape[1] + 1  # no circular wrap into the kept samples
    nfft = next_fast_len(n + margin, real=True)
    placed = np.zeros((len(delays), nfft), np.float32)  # each filter at its (circular) start: delay included
    np.put_along_axis(placed, (start[:, None] + np.arange(taps.shape[1])[None, :]) % nfft, taps, axis=1)
    spec = rfft(x.astype(np.float32), nfft, axis=-1, workers=workers) * rfft(placed, axis=-1, workers=workers)  # (C_out, K)
    if sum_channels:
        spec = spec.sum(axis=0, keepdims=True)  # (1, K)
    return irfft(spec, nfft, axis=-1, workers=workers)[:, :n].astype(np.float64)  # (C_out or 1, N)


def mic_steering_delays(directions: np.ndarray, sample_rate: int) -> np.ndarray:
    """Free-field plane-wave delays of the tetrahedral capsules relative to the array centre.

    A plane wave from unit direction u reaches capsule p_i ``p_i·u / c`` seconds before the centre.

    Args:
        directions: (T, 3) unit vectors (array → source).
    Returns:
        (T, 4) delays in samples (negative: earlier than the centre).
    """
    return -(np.asarray(directions, dtype=np.float64) @ tetra_mic_offsets().T) * sample_rate / SPEED_OF_SOUND


# ---------------------------------------------------------------------------------------------- extract / render
def extract_mono(direct: np.ndarray, fmt: str, directions: np.ndarray, sample_rate: int, hop: float,
                 method: str = EXTRACTORS[0], workers: int = 1) -> np.ndarray:
    """The mono direct signal of one object as heard at the array centre.

    ``reference``: FOA W (an omni at the centre); MIC capsule 1 advanced by its steering delay.
    ``beamformer``: towards the object's DoA per frame — FOA ``(W + u·(X, Y, Z)) / 2`` (a hypercardioid,
    unit gain towards u), MIC delay-and-sum of the four capsules. Both are exact for a plane wave from u;
    the beamformer attenuates what comes from elsewhere (leakage of other objects) and averages the capsules.

    Args:
        direct: (4, N) direct-path image; fmt: "mic" or "foa".
        directions: (T, 3) unit DoA per label frame (every frame filled, see :func:`fill_directions`).
        hop: samples per label frame.
    Returns:
        (N,) float64.
    """
    if method not in EXTRACTORS:
        raise DeepASAError(f"unknown extraction {method!r} (choose from {', '.join(EXTRACTORS)})")
    direct = np.asarray(direct, dtype=np.float64)
    if fmt == "foa":
        if method == "reference":
            return direct[0].copy()
        steer = _crossfaded_gains(directions, direct.shape[1], hop)  # (4, N) or (4, 1)
        return 0.5 * (direct[0] + steer[1] * direct[1] + steer[2] * direct[2] + steer[3] * direct[3])  # (N,)
    delays = -mic_steering_delays(directions, sample_rate)  # (T, 4): undo each capsule's advance
    if method == "reference":
        return framewise_delay(direct[:1], delays[:, :1], hop, workers)[0]  # (N,)
    return framewise_delay(direct, delays, hop, workers, sum_channels=True)[0] / 4.0  # (N,) delay-and-sum


def render_direct(mono: np.ndarray, fmt: str, directions: np.ndarray, sample_rate: int, hop: float,
                  workers: int = 1) -> np.ndarray:
    """Render a mono signal (at the array centre) as a plane wave from ``directions`` per label frame.

    FOA: ACN/SN3D gains (1, y, z, x) crossfaded per sample between frames; MIC: each capsule delayed by its
    free-field steering delay (:func:`mic_steering_delays`) with the simulator's fractional-delay filter.

    Args:
        mono: (N,); directions: (T, 3) unit vectors; hop: samples per label frame.
    Returns:
        (4, N) float64.
    """
    mono = np.asarray(mono, dtype=np.float64)
    if fmt == "foa":
        return _crossfaded_gains(directions, len(mono), hop) * mono[None, :]  # (4, N)
    return framewise_delay(mono[None, :], mic_steering_delays(directions, sample_rate), hop, workers)  # (4, N)


def _crossfaded_gains(directions: np.ndarray, n: int, hop: float) -> np.ndarray:
    """ACN/SN3D gains of per-frame directions, crossfaded per sample (:func:`frame_weights`).

    Args:
        directions: (T, 3) unit vectors.
    Returns:
        (4, n) gains, or (4, 1) when every frame has the same direction (broadcasts the same).
    """
    g = foa_gains(directions)  # (T, 4)
    if np.all(g == g[:1]):
        return g[0][:, None]  # (4, 1)
    f0, f1, w1 = frame_weights(n, hop, len(directions))
    return g[f0].T + w1[None, :] * (g[f1] - g[f0]).T  # (4, n)


def _tetra_signs() -> np.ndarray:
    """(4, 4) rows: pressure (1, 1, 1, 1) and the x, y, z gradient sign patterns of the tetrahedron's capsules."""
    u = unit_vector(*np.array(TETRA_AZ_EL_DEG).T)  # (4, 3) capsule directions
    return np.vstack([np.ones(4), np.sign(u.T)])  # (4, 4): rows 1, x, y, z


def transcode_diffuse(x: np.ndarray, fmt_in: str, fmt_out: str, sample_rate: int) -> np.ndarray:
    """Convert a diffuse part (reverberation, noise) between MIC and FOA.

    In a spherically isotropic field the four capsules of a regular tetrahedron (all six pairs ``d`` apart)
    have coherence ``Γ = (1 − g) I + g 11ᵀ`` with ``g = sin(kd) / (kd)``; the pressure component ``½ Σ m_i``
    (power ``1 + 3g``) and the three gradient components ``½ s·m`` (sign patterns s of the capsules' x, y, z;
    power ``1 − g``) are then exactly uncorrelated. FOA's diffuse field has W of unit power and uncorrelated
    Y, Z, X of a third of it. The conversion re-weights these components per frequency (zero-phase), so a
    diffuse input becomes a diffuse output of the same pressure power; the gradient equalisation is bounded
    (``1 − g >= 0.03``, at most +15 dB at low frequencies). It is meant for diffuse parts only: a plane wave's
    gradient components are a quarter-period out of phase with its pressure, so its direction is not carried
    (direct paths are re-rendered from their DoA instead).

    Args:
        x: (4, N); fmt_in, fmt_out: "mic" or "foa".
    Returns:
        (4, N) float64 (``x`` itself when the formats are equal).
    """
    x = np.asarray(x, dtype=np.float64)
    if fmt_in == fmt_out:
        return x
    from scipy.fft import irfft, next_fast_len, rfft

    n = x.shape[1]
    pad = int(0.05 * sample_rate)  # the equaliser's response is short: 50 ms against circular wrap
    nfft = next_fast_len(n + 2 * pad, real=True)
    spec = rfft(np.pad(x, ((0, 0), (0, nfft - n))), axis=-1)  # (4, K)
    f = np.arange(spec.shape[1]) * sample_rate / nfft  # (K,)
    edge = np.linalg.norm(tetra_mic_offsets()[0] - tetra_mic_offsets()[1])
    g = np.sinc(2.0 * f * edge / SPEED_OF_SOUND)  # (K,) coherence of two capsules; np.sinc(x) = sin(πx)/(πx)
    p_w = np.maximum(1.0 + 3.0 * g, 1e-6)  # (K,) power of the pressure component
    p_g = np.maximum(1.0 - g, DIFFUSE_FLOOR)  # (K,) power of a gradient component
    signs = _tetra_signs()  # (4, 4) rows 1, x, y, z
    if fmt_in == "mic":
        comp = 0.5 * np.einsum("rc,ck->rk", signs, spec)  # (4, K) pressure, x, y, z components
        w = comp[0] / np.sqrt(p_w)
        gx, gy, gz = (comp[i] / np.sqrt(3.0 * p_g) for i in (1, 2, 3))
        out = np.stack([w, gy, gz, gx])  # (4, K) ACN W, Y, Z, X
    else:
        w, y, z, xx = spec  # ACN order
        comp = np.stack([w * np.sqrt(p_w), xx * np.sqrt(3.0 * p_g), y * np.sqrt(3.0 * p_g), z * np.sqrt(3.0 * p_g)])
        out = 0.5 * np.einsum("rc,rk->ck", signs, comp)  # (4, K) capsules (signs are orthogonal: Sᵀ S = 4 I)
    return irfft(out, nfft, axis=-1)[:, :n]  # (4, N)


# ---------------------------------------------------------------------------------------------- remix
def remix(analysis, edits: RemixEdits | None = None, *, extract: str = EXTRACTORS[0], workers: int = 1,
          log=None) -> np.ndarray:
    """Re-render an analysed scene with object-wise edits.

    Args:
        analysis: a :class:`~deepasa.inference.result.SceneAnalysis` (e.g. ``SceneAnalysis.load(dir)``) of a
            4-channel MIC or FOA recording.
        edits: what to change (None or empty: the sum of the parts).
        extract: mono direct-signal extraction of re-rendered objects, "beamformer" or "reference".
        workers: FFT threads.
        log: receives one-line notes (e.g. a peak above full scale).
    Returns:
        (4, N) float32 at ``analysis.sample_rate`` (N = ``analysis.n_samples``), in ``edits.fmt`` or the
        analysis's format.
    Raises:
        DeepASAError: unknown object, direction out of range, conflicting edits, an object without the
            signals or direction an edit needs, an analysis that is not 4-channel MIC/FOA.
    """
    edits = edits or RemixEdits()
    fmt_in = analysis.fmt
    if fmt_in not in ("mic", "foa") or analysis.n_channels != 4:
        raise DeepASAError(f"remix needs a 4-channel MIC or FOA analysis; this one is {analysis.n_channels}-channel "
                           f"{fmt_in!r}")
    plans = _plan(analysis, edits)
    if extract not in EXTRACTORS:
        raise DeepASAError(f"unknown extraction {extract!r} (choose from {', '.join(EXTRACTORS)})")
    fmt_out = edits.fmt or fmt_in
    sr, n = analysis.sample_rate, analysis.n_samples
    hop = analysis.label_hop_s * sr  # samples per label frame at the analysed rate
    scene_turn = float(edits.rotate_scene) % 360.0
    # check every object first, so that a bad one fails before any work
    for obj in analysis.objects:
        plan = plans[obj.id]
        if plan.mute:
            continue
        if _needs_render(plan, fmt_in, fmt_out, scene_turn):
            for kind in ("direct", "reverb"):
                if kind not in obj.files:
                    raise DeepASAError(f"object {obj.id} has no {kind} signal, so it cannot be re-rendered "
                                       "(the model has no direct/reverb heads)")
            if plan.move is None:
                fill_directions(obj.doa, obj.activity)  # raises when it has no direction at all
        elif plan.dry and "direct" not in obj.files:
            raise DeepASAError(f"object {obj.id} has no direct signal, so --dry cannot drop its reverberation")
    _check_signals(analysis)
    acc = np.zeros((4, n))
    for obj in analysis.objects:
        plan = plans[obj.id]
        if plan.mute:
            continue
        if not _needs_render(plan, fmt_in, fmt_out, scene_turn):
            part = obj.direct if plan.dry else obj.image  # (4, N) passed through
        else:
            dirs_in = fill_directions(obj.doa, obj.activity)  # (T, 3)
            if plan.move is not None:
                dirs_out = np.repeat(unit_vector(*plan.move)[None, :], len(dirs_in), axis=0)  # (T, 3)
            elif plan.rotate is not None:
                az, el = azimuth_elevation(dirs_in)
                dirs_out = unit_vector(az + plan.rotate[0], np.clip(el + plan.rotate[1], -90.0, 90.0))  # (T, 3)
            else:
                dirs_out = dirs_in
            if fmt_out == "mic" and scene_turn:
                dirs_out = _rotate_z(dirs_out, scene_turn)  # FOA output turns as a whole below
            mono = extract_mono(obj.direct, fmt_in, dirs_in, sr, hop, extract, workers)  # (N,)
            part = render_direct(mono, fmt_out, dirs_out, sr, hop, workers)  # (4, N)
            if not plan.dry:
                part = part + transcode_diffuse(obj.reverb, fmt_in, fmt_out, sr)
        acc += plan.gain * _fit(part, n)
    if edits.noise_gain != -math.inf:
        acc += 10.0 ** (edits.noise_gain / 20.0) * _fit(transcode_diffuse(analysis.noise, fmt_in, fmt_out, sr), n)
    if fmt_out == "foa" and scene_turn:
        acc = foa_rotation(scene_turn) @ acc  # (4, N)
    peak = float(np.abs(acc).max()) if acc.size else 0.0
    if peak > 1.0 and log is not None:
        log(f"the remix peaks at {20 * math.log10(peak):+.1f} dBFS (kept in the float WAV; lower a gain to play it "
            "on a fixed-point device)")
    return acc.astype(np.float32)


def _check_signals(analysis) -> None:
    """The analysis's signals must look like its declared format (one streaming pass over images + noise).

    The same physical test as ``deepasa analyze`` applies to the reconstructed mixture: FOA has
    ``E_Y + E_Z + E_X <= E_W``, four omni capsules about equal energies.
    """
    import soundfile as sf

    from deepasa.audio.io import check_format

    energy = np.zeros(analysis.n_channels)
    paths = [obj.path("image") for obj in analysis.objects if "image" in obj.files] + [analysis.noise_path]
    files = [sf.SoundFile(str(p)) for p in paths]
    try:
        for blocks in zip(*(f.blocks(65536, dtype="float64", always_2d=True) for f in files)):
            mix = sum(blocks)  # (n, M) reconstructed mixture block
            if not np.isfinite(mix).all():
                raise DeepASAError(f"{analysis.root} is damaged: its signals contain NaN or Inf samples")
            energy += (mix ** 2).sum(axis=0)
    finally:
        for f in files:
            f.close()
    if energy.sum() <= 0:
        return
    try:
        check_format(energy, analysis.fmt, f"the analysis {analysis.root}")
    except DeepASAError as exc:
        raise DeepASAError(f"{exc} (objects.json says audio_format {analysis.fmt!r}; is it from another "
                           "format?)") from None


def _needs_render(plan: _ObjectPlan, fmt_in: str, fmt_out: str, scene_turn: float) -> bool:
    """Whether an object's direct path must be re-spatialised (else it passes through)."""
    return plan.move is not None or plan.rotate is not None or fmt_in != fmt_out or \
        (bool(scene_turn) and fmt_out == "mic")


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """(4, N') -> (4, n): cropped or zero-padded (a file shorter than its neighbours)."""
    return x[:, :n] if x.shape[1] >= n else np.pad(x, ((0, 0), (0, n - x.shape[1])))


def write_remix(path: str | Path, audio: np.ndarray, sample_rate: int, overwrite: bool = False) -> Path:
    """Write a remix (4, N) as a float WAV, atomically (temporary file, then rename).

    Raises:
        DeepASAError: the file exists and ``overwrite`` is False, or the name does not end in ``.wav``.
    """
    from deepasa.audio.io import write_audio

    path = Path(path)
    if path.suffix.lower() != ".wav":
        raise DeepASAError(f"--out must be a .wav file (32-bit float), got {path}")
    if path.exists() and not overwrite:
        raise DeepASAError(f"output file exists: {path} (use --overwrite to replace it)")
    if path.is_dir():
        raise DeepASAError(f"--out {path} is a folder")
    write_audio(path, audio, sample_rate)
    return path
