"""The spatial scene simulator: full ground truth for separation, dereverberation, SED and DoA (no torch).

A scene is made in two steps, so that ``meta/<id>.json`` is enough to re-render it:

1. :func:`sample_scene_spec` draws every random choice (room, RT60, array position, sources, clips,
   crops, onsets, gains, trajectories, SNR, peak level, and one integer seed for the noise-like parts)
   into a JSON-able dict; with ``fill`` "chain" or "loop" (dense scenes, :func:`sample_event`) an event
   that its clip cannot fill is a list of crossfaded ``segments`` of its class, rebuilt by :func:`load_dry`;
2. :func:`render_scene` turns a spec into signals and labels, deterministically.

:func:`simulate_scene` does both. Per source ``k`` it returns the direct-path image (order-0 image),
the reverberant part (image − direct), and the background noise, with
``mixture == Σ_k (direct_k + reverb_k) + noise`` exactly (up to float32 rounding on disk).

Moving sources are rendered by crossfaded convolution (docs/sound-bank.md, "How it is rendered"): Hann² windows
centred on the trajectory points (``trajectory_rate`` per second, 50 % overlap, summing to one) cut the dry signal into
segments; each is convolved with the early response of its point; the diffuse late tail, drawn once per
source, is convolved with the whole signal. Labels: DoA per 100 ms frame is the direction, *seen from the
array centre*, of the trajectory position at the frame centre (interpolated with the same windows), as
azimuth/elevation in the array frame (x front, y left, z up; elevation +90° = up). A frame is active when
the source's direct-path image on the reference channel reaches, within that frame, a 20-ms power within
``activity_threshold_db`` of its loudest 20-ms power in the scene.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from deepasa.audio.geometry import SPEED_OF_SOUND, azimuth_elevation, unit_vector
from deepasa.errors import DeepASAError
from deepasa.scenes import acoustics as ac
from deepasa.scenes.config import SceneConfig

FORMATS = ("mic", "foa")


@dataclass
class SceneAudio:
    """One rendered scene in one format.

    Attributes:
        mixture: (C, N) float32.
        direct: (K, C, N) float32, direct-path image of each source.
        reverb: (K, C, N) float32, reverberant image minus direct path.
        noise: (C, N) float32.
        activity: (K, T') bool, per 100-ms frame.
        azimuth: (K, T') float64 degrees; elevation: (K, T') float64 degrees (usual elevation).
        meta: the spec (JSON-able) plus the gains applied while rendering.
    """

    mixture: np.ndarray
    direct: np.ndarray
    reverb: np.ndarray
    noise: np.ndarray
    activity: np.ndarray
    azimuth: np.ndarray
    elevation: np.ndarray
    meta: dict

    @property
    def doa(self) -> np.ndarray:
        """(K, T', 3) unit DoA vectors, zero where the source is inactive."""
        return unit_vector(self.azimuth, self.elevation) * self.activity[..., None]


# ---------------------------------------------------------------------------------------------- sampling
def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator of scene ``index`` of ``split``: independent of workers and shards."""
    split_code = int.from_bytes(split.encode(), "little") % (2**31)
    return np.random.default_rng([int(seed), split_code, int(index)])


def _uniform(rng, pair) -> float:
    return float(rng.uniform(pair[0], pair[1]))


def _trajectory(rng, cfg: SceneConfig, room, centre, moving: bool):
    """Sample a start point (and a smooth oscillation when moving) that stays valid over the clip.

    Returns:
        (times (P,), points (P, 3)) with P = 1 for a static source.
    """
    margin = cfg.source_wall_margin
    lo, hi = np.full(3, margin), np.asarray(room) - margin
    n_pts = int(np.ceil(cfg.duration * cfg.trajectory_rate)) + 1 if moving else 1
    times = np.arange(n_pts) / cfg.trajectory_rate if moving else np.array([cfg.duration / 2])
    for attempt in range(200):
        u = unit_vector(rng.uniform(-180, 180), np.degrees(np.arcsin(rng.uniform(-1, 1))))
        dist = _uniform(rng, cfg.source_distance) * (0.97 ** (attempt // 20))
        start = centre + dist * u
        if moving:
            amp = np.array([_uniform(rng, cfg.trajectory_amplitude), _uniform(rng, cfg.trajectory_amplitude),
                            0.25 * _uniform(rng, cfg.trajectory_amplitude)])
            freq = np.array([_uniform(rng, cfg.trajectory_cycles) for _ in range(3)]) / cfg.duration
            phase = rng.uniform(0, 2 * np.pi, 3)
            pts = start[None, :] + amp * (np.sin(2 * np.pi * freq * times[:, None] + phase) - np.sin(phase))  # (P, 3)
        else:
            pts = start[None, :]  # (1, 3)
        d = np.linalg.norm(pts - centre, axis=1)
        if np.all(pts >= lo) and np.all(pts <= hi) and d.min() >= 0.5 * cfg.source_distance[0] and \
                d.max() < SPEED_OF_SOUND * cfg.t_mix - 0.5:
            return times, pts
    raise DeepASAError("could not place a source in the room: check room size, margins and source_distance")


def equal_power_fades(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Fade-in and fade-out gains of an n-sample crossfade, with ``fade_in² + fade_out² = 1`` at every sample.

    Equal power (not equal gain) because the joined clips are unrelated: their powers add, so the chain keeps
    its level through the joint instead of dipping 3 dB. Sampled at sample centres, so neither gain is
    exactly 0 or 1 inside the overlap and the curve is symmetric.

    Returns:
        (fade_in (n,), fade_out (n,)) float64.
    """
    t = (np.arange(n) + 0.5) / max(n, 1)  # (n,)
    return np.sin(0.5 * np.pi * t), np.cos(0.5 * np.pi * t)


def sample_event(rng: np.random.Generator, pool: list, length: int, fill: str, crossfade: int) -> dict:
    """Choose the material of one dense event (``fill`` "chain" or "loop") of ``length`` samples.

    With the ASA recipe (``fill: clip``) an event is one crop of one clip, so it never outlasts its clip, and
    the bank's clips are short (test split: median 0.92 s). Here a clip of the class is drawn with probability
    proportional to its length (a random instant of the class's audio): long clips are preferred (a 10-s
    clip 20 times as often as a 0.5-s one) without a class that has one or two long clips repeating them in
    every event (the test split has one vocalization clip ≥ 3.5 s). If the clip is at least ``length`` long
    it is cropped at random and the entry looks exactly like a default one. Otherwise "chain" appends
    further clips of the *same class*, drawn the same way but never the one just used, and "loop" repeats
    the clip; the pieces are whole clips joined by equal-power crossfades, the last one cut so that the
    event is exactly ``length`` long. The entry then keeps ``clip_id`` (the first clip), ``crop_start = 0``
    and adds ``segments``: ``[{"clip_id", "crop_start", "length", "crossfade"}, ...]``, where
    ``crossfade`` is the overlap in samples with the previous piece (0 for the first), so
    ``length = Σ segment length − Σ crossfade``; :func:`build_chain` rebuilds the signal from that alone.

    Args:
        rng: the scene's generator (consumed in a fixed order, so the scene stays a function of its seed).
        pool: ``[(clip_id, n_samples), ...]`` of the source's class, at the scene rate.
        length: event length in samples (≥ 1).
        fill: "chain" or "loop".
        crossfade: nominal crossfade in samples; a joint uses at most half of either clip.
    Returns:
        ``{"clip_id", "crop_start", "length"}``, plus ``"segments"`` when the event is chained or looped.
    """
    sizes = np.array([max(int(c[1]), 1) for c in pool], dtype=np.float64)  # (P,)

    def draw(exclude: int | None = None) -> int:
        w = sizes.copy()
        if exclude is not None and len(w) > 1:  # never the clip just used: a chain of one clip is a loop
            w[exclude] = 0.0
        return int(min(np.searchsorted(np.cumsum(w), rng.random() * w.sum(), side="right"), len(w) - 1))

    idx = draw()
    clip_id, clip_len = pool[idx]
    if clip_len >= length:  # real continuous material beats any joint
        return {"clip_id": clip_id, "crop_start": int(rng.integers(0, clip_len - length + 1)), "length": length}
    segments: list[dict] = []
    filled = 0  # samples of the event covered so far
    while filled < length:
        clip_id, clip_len = pool[idx]
        clip_len = max(int(clip_len), 1)
        # a joint may use at most half of each clip, so a segment's fade-in and fade-out never overlap
        xf = min(crossfade, segments[-1]["length"] // 2, clip_len // 2) if segments else 0
        seg_len = min(clip_len, length - filled + xf)  # the last segment is cut to land exactly on ``length``
        segments.append({"clip_id": clip_id, "crop_start": 0, "length": int(seg_len), "crossfade": int(xf)})
        filled += seg_len - xf
        if fill == "chain" and filled < length:
            idx = draw(exclude=idx)
    # the first clip is shorter than the event here, so there are always at least two segments
    return {"clip_id": segments[0]["clip_id"], "crop_start": 0, "length": length, "segments": segments}


def sample_scene_spec(rng: np.random.Generator, cfg: SceneConfig, clips_by_class: dict[str, list],
                      class_names: list[str], scene_id: str, split: str) -> dict:
    """Draw every random choice of one scene.

    Args:
        rng: the scene's generator (see :func:`scene_rng`).
        clips_by_class: label → list of ``(clip_id, n_samples_at_cfg_rate)`` to draw from.
        class_names: the dataset's class list (class index = position).
    Returns:
        A JSON-able spec dict (the future ``meta/<id>.json``).
    """
    labels = [c for c in (cfg.classes or class_names) if clips_by_class.get(c)]
    if not labels:
        raise DeepASAError(f"no clips available for split {split!r} and classes {list(cfg.classes or class_names)}")
    weights = np.asarray(cfg.num_sources_weights, dtype=np.float64)
    n_src = int(rng.choice(cfg.num_sources, p=weights / weights.sum()))
    room = [_uniform(rng, cfg.room_xy), _uniform(rng, cfg.room_xy), _uniform(rng, cfg.room_z)]
    m = cfg.array_wall_margin
    centre = np.array([rng.uniform(m, room[0] - m), rng.uniform(m, room[1] - m),
                       rng.uniform(cfg.array_height[0], min(cfg.array_height[1], room[2] - 0.5))])
    rt60 = _uniform(rng, cfg.rt60)
    n = cfg.n_samples
    sources = []
    for _ in range(n_src):
        label = labels[int(rng.integers(len(labels)))]
        pool = clips_by_class[label]
        if cfg.fill == "clip":  # the ASA recipe; this order of draws defines every existing scene: keep it
            clip_id, clip_len = pool[int(rng.integers(len(pool)))]
            length = int(min(clip_len, n, round(_uniform(rng, cfg.event_duration) * cfg.sample_rate)))
            length = max(length, 1)
            event = {"clip_id": clip_id, "crop_start": int(rng.integers(0, clip_len - length + 1)), "length": length}
        else:  # dense: the event length comes first, then material of that length
            length = max(int(min(n, round(_uniform(rng, cfg.event_duration) * cfg.sample_rate))), 1)
            event = sample_event(rng, pool, length, cfg.fill, int(round(cfg.crossfade_s * cfg.sample_rate)))
        onset = int(rng.integers(0, n - length + 1))
        moving = bool(rng.random() < cfg.moving_prob)
        times, pts = _trajectory(rng, cfg, room, centre, moving)
        segments = {"segments": event.pop("segments")} if "segments" in event else {}
        sources.append({
            "label": label, "class_index": class_names.index(label), **event, "onset": onset,
            "gain_db": _uniform(rng, cfg.source_gain_db), "moving": moving,
            "trajectory_times": times.round(6).tolist(), "trajectory": pts.round(6).tolist(), **segments,
        })
    return {
        "scene_id": scene_id, "split": split, "sample_rate": cfg.sample_rate, "duration": cfg.duration,
        "label_hop": cfg.label_hop, "classes": list(class_names),
        "room_dim": [round(x, 6) for x in room], "rt60": round(rt60, 6),
        "absorption": ac.eyring_absorption(room, rt60),
        "array_centre": centre.round(6).tolist(),
        "snr_db": _uniform(rng, cfg.snr_db), "noise_slope": _uniform(rng, cfg.noise_slope),
        "peak": _uniform(rng, cfg.peak), "render_seed": int(rng.integers(2**31)),
        "sources": sources, "config": cfg.to_dict(),
    }


# ---------------------------------------------------------------------------------------------- rendering
def _hann2_windows(n: int, n_pts: int, hop: int):
    """Crossfade windows centred at 0, hop, 2·hop, …: list of (start, weights (2·hop,)) summing to one."""
    x = np.arange(-hop, hop)
    w = np.cos(0.5 * np.pi * x / hop) ** 2  # (2·hop,)
    return [(k * hop - hop, w) for k in range(n_pts)]


def crossfade_convolve(signal: np.ndarray, rirs: np.ndarray, hop: int, n_out: int) -> np.ndarray:
    """Time-varying convolution: segment k of ``signal`` (Hann² window at k·hop) with response k.

    Args:
        signal: (N,) dry signal.
        rirs: (P, C, L) responses with the acoustics pre-roll; P = 1 means static.
        hop: samples between trajectory points.
    Returns:
        (C, n_out).
    """
    n_pts, n_ch, n_rir = rirs.shape
    if n_pts == 1:
        return ac.convolve_aligned(signal, rirs[0], n_out)
    seg_len = 2 * hop
    n_fft = 1 << int(np.ceil(np.log2(seg_len + n_rir - 1)))
    padded = np.zeros(len(signal) + 2 * hop + seg_len)
    padded[hop:hop + len(signal)] = signal  # index i ↔ sample i − hop
    segs = np.stack([padded[s + hop:s + hop + seg_len] * w for s, w in _hann2_windows(len(signal), n_pts, hop)])  # (P, 2·hop)
    spec = np.fft.rfft(segs, n_fft)[:, None, :] * np.fft.rfft(rirs, n_fft)  # (P, C, K)
    parts = np.fft.irfft(spec, n_fft)  # (P, C, n_fft)
    out = np.zeros((n_ch, n_pts * hop + n_fft + hop))  # index i ↔ sample i − hop
    for k in range(n_pts):
        out[:, k * hop:k * hop + n_fft] += parts[k]  # segment k starts at sample k·hop − hop
    res = out[:, hop + ac.PRE:hop + ac.PRE + n_out]
    return np.pad(res, ((0, 0), (0, n_out - res.shape[1]))) if res.shape[1] < n_out else res


def place_source(dry: np.ndarray, src: dict, n: int, fs: int) -> np.ndarray:
    """Crop, fade (10 ms), RMS-normalise, apply gain and place a dry clip in an n-sample timeline.

    Args:
        dry: (L,) the whole clip at the scene rate.
    Returns:
        (n,) float64.
    """
    seg = np.array(dry[src["crop_start"]:src["crop_start"] + src["length"]], dtype=np.float64)  # a copy: faded below
    fade = min(int(0.01 * fs), len(seg) // 2)
    if fade > 0:
        ramp = np.sin(0.5 * np.pi * np.arange(fade) / fade) ** 2
        seg[:fade] *= ramp
        seg[len(seg) - fade:] *= ramp[::-1]
    rms = np.sqrt(np.mean(seg**2))
    seg = seg / rms * 10 ** (src["gain_db"] / 20) if rms > 0 else seg
    out = np.zeros(n)
    out[src["onset"]:src["onset"] + len(seg)] = seg
    return out


def frame_activity(ref: np.ndarray, fs: int, hop_s: float, n_frames: int, threshold_db: float) -> np.ndarray:
    """Activity per label frame from a reference-channel signal.

    Frame t is active when the largest 20-ms power (10-ms hop) starting inside it is within
    ``threshold_db`` of the largest 20-ms power of the whole signal (and the signal is not all zeros).

    Args:
        ref: (N,) signal.
    Returns:
        (n_frames,) bool.
    """
    win, step = int(0.02 * fs), int(0.01 * fs)
    padded = np.pad(ref.astype(np.float64) ** 2, (0, win))
    csum = np.concatenate([[0.0], np.cumsum(padded)])
    starts = np.arange(0, n_frames * int(round(hop_s * fs)), step)
    power = (csum[starts + win] - csum[starts]) / win  # (W,)
    if power.max() <= 0:
        return np.zeros(n_frames, dtype=bool)
    frame_of = starts // int(round(hop_s * fs))
    frame_power = np.zeros(n_frames)
    np.maximum.at(frame_power, frame_of, power)
    return frame_power >= power.max() * 10 ** (-threshold_db / 10)


def label_directions(src: dict, centre: np.ndarray, cfg_hop: float, n_frames: int, rate: float):
    """DoA of a source at each label-frame centre, seen from the array centre.

    Returns:
        (azimuth (T',), elevation (T',)) degrees.
    """
    pts = np.asarray(src["trajectory"])  # (P, 3)
    t = (np.arange(n_frames) + 0.5) * cfg_hop  # (T',)
    if len(pts) == 1:
        pos = np.repeat(pts, n_frames, axis=0)  # (T', 3)
    else:
        # the same Hann² crossfade weights that render the audio
        x = t[:, None] * rate - np.arange(len(pts))[None, :]  # (T', P) in units of the point spacing
        w = np.where(np.abs(x) < 1, np.cos(0.5 * np.pi * x) ** 2, 0.0)
        pos = (w @ pts) / w.sum(axis=1, keepdims=True)  # (T', 3)
    return azimuth_elevation(pos - centre[None, :])


def render_scene(spec: dict, dry_signals: list[np.ndarray], fmt: str = "mic",
                 timings: dict | None = None) -> SceneAudio:
    """Render a spec to signals and labels, deterministically.

    Args:
        spec: from :func:`sample_scene_spec` (or a ``meta/<id>.json``).
        dry_signals: one (L_k,) clip per source, at ``spec['sample_rate']`` (whole clip; cropped here).
        fmt: "mic" or "foa".
        timings: when given, seconds spent are added under "rir", "convolution" and "noise_labels".
    Returns:
        A :class:`SceneAudio` (float32 signals).
    """
    if fmt not in FORMATS:
        raise DeepASAError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    cfg = SceneConfig.from_dict(spec["config"])
    fs, n, n_frames = spec["sample_rate"], cfg.n_samples, cfg.n_frames
    room, alpha, centre = spec["room_dim"], spec["absorption"], np.asarray(spec["array_centre"])
    rx = ac.Receiver(fmt, centre)
    hop = int(round(fs / cfg.trajectory_rate))
    n_early = ac.PRE + int(np.ceil((cfg.t_mix + cfg.t_fade) * fs)) + ac.FD_HALF + 1
    fade_out = ac.early_fade_out(n_early, fs, cfg.t_mix, cfg.t_fade)  # (L,)
    k_src = len(spec["sources"])
    direct = np.zeros((k_src, 4, n))
    reverb = np.zeros((k_src, 4, n))
    for k, (src, dry) in enumerate(zip(spec["sources"], dry_signals)):
        t0 = time.perf_counter()
        sig = place_source(dry, src, n, fs)  # (N,)
        pts = np.asarray(src["trajectory"])  # (P, 3)
        images = ac.image_sources(room, alpha, pts, cfg.ism_order, fs)
        early = ac.image_rirs(images, rx, fs, n_early) * fade_out  # (P, C, L)
        d_rir = ac.image_rirs(images, rx, fs, n_early, max_order=0)  # (P, C, L)
        rng = np.random.default_rng([spec["render_seed"], k])
        tail = ac.late_tail(room, alpha, spec["rt60"], rx, fs, cfg.t_mix, cfg.t_fade, rng,
                            images[len(images) // 2])  # (C, L_tail)
        t1 = time.perf_counter()
        direct[k] = crossfade_convolve(sig, d_rir, hop, n)
        reverb[k] = crossfade_convolve(sig, early - d_rir, hop, n) + ac.convolve_aligned(sig, tail, n)
        t2 = time.perf_counter()
        if timings is not None:
            timings["rir"] = timings.get("rir", 0.0) + t1 - t0
            timings["convolution"] = timings.get("convolution", 0.0) + t2 - t1
    t3 = time.perf_counter()
    # diffuse background noise at the drawn SNR w.r.t. the direct-path sum (active 100-ms frames)
    rng = np.random.default_rng([spec["render_seed"], 1_000_003])
    noise = ac.diffuse_field(n, rx, fs, rng, spec["noise_slope"])  # (C, N)
    dsum = direct.sum(axis=0)  # (C, N)
    frames = dsum[:, : n_frames * (n // n_frames)].reshape(4, n_frames, -1)  # (C, T', n/T')
    fpow = (frames**2).mean(axis=(0, 2))  # (T',)
    p_sig = fpow[fpow >= 0.01 * fpow.max()].mean() if fpow.max() > 0 else 0.0
    p_noise = (noise**2).mean()
    noise *= np.sqrt(p_sig / (p_noise * 10 ** (spec["snr_db"] / 10))) if p_sig > 0 else 0.0
    mixture = dsum + reverb.sum(axis=0) + noise  # (C, N)
    gain = spec["peak"] / max(np.abs(mixture).max(), 1e-12)
    activity = np.stack([frame_activity(direct[k, 0], fs, cfg.label_hop, n_frames, cfg.activity_threshold_db)
                         for k in range(k_src)]) if k_src else np.zeros((0, n_frames), dtype=bool)
    az, el = (np.stack(a) if k_src else np.zeros((0, n_frames)) for a in zip(*[
        label_directions(src, centre, cfg.label_hop, n_frames, cfg.trajectory_rate) for src in spec["sources"]
    ] or [((), ())]))
    meta = dict(spec, format=fmt, output_gain=float(gain))
    f32 = lambda a: (a * gain).astype(np.float32)  # noqa: E731
    direct32, reverb32, noise32 = f32(direct), f32(reverb), f32(noise)
    # the mixture is the float32 sum of what is written, so the invariant holds on disk exactly
    mixture32 = (direct32.astype(np.float64).sum(0) + reverb32.astype(np.float64).sum(0) + noise32).astype(np.float32)
    if timings is not None:
        timings["noise_labels"] = timings.get("noise_labels", 0.0) + time.perf_counter() - t3
    return SceneAudio(mixture32, direct32, reverb32, noise32, activity, az, el, meta)


def simulate_scene(seed: int = 0, index: int = 0, split: str = "train", config: SceneConfig | None = None,
                   bank=None, fmt: str = "mic", sources: list[tuple[str, np.ndarray]] | None = None,
                   class_names: list[str] | None = None) -> SceneAudio:
    """Simulate one scene (Python API of ``deepasa simulate``).

    Args:
        seed, index, split: identify the scene; the same triple gives the same scene.
        config: scene parameters (defaults: the ASA recipe).
        bank: a :class:`~deepasa.scenes.soundbank.SoundBank`; opened from ``$DEEPASA_HOME`` when None and
            ``sources`` is None.
        fmt: "mic" (tetrahedral array) or "foa" (ACN/SN3D).
        sources: instead of the bank, explicit ``(label, dry signal (L,))`` pairs at the config rate; every
            one of them is used, in order (the number of sources then is ``len(sources)``).
        class_names: the class list (default: the bank's classes, or the labels of ``sources``).
    Returns:
        :class:`SceneAudio`: mixture (4, N), direct/reverb (K, 4, N), noise (4, N), labels, meta.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> s = simulate_scene(seed=1, sources=[("noise", rng.standard_normal(16000))])
        >>> s.mixture.shape, s.direct.shape, s.activity.shape
        ((4, 64000), (1, 4, 64000), (1, 40))
    """
    cfg = config or SceneConfig()
    rng = scene_rng(seed, split, index)
    scene_id = f"{index:06d}"
    if sources is not None:
        names = class_names or sorted({lab for lab, _ in sources})
        # given signals are used as they are: ``fill`` applies to bank clips only
        one = SceneConfig.from_dict({**cfg.to_dict(), "num_sources": [len(sources)], "num_sources_weights": [1.0],
                                     "fill": "clip"})
        longest = max(len(sig) for _, sig in sources)
        spec = sample_scene_spec(rng, one, {lab: [("given", longest)] for lab in names}, names, scene_id, split)
        for k, (src, (lab, sig)) in enumerate(zip(spec["sources"], sources)):
            length = min(src["length"], len(sig))  # source k gets signal k, whatever label was drawn
            src.update(label=lab, class_index=names.index(lab), clip_id=f"given-{k}", length=length,
                       crop_start=min(src["crop_start"], len(sig) - length),
                       onset=min(src["onset"], one.n_samples - length))
        return render_scene(spec, [np.asarray(sig, dtype=np.float64) for _, sig in sources], fmt)
    if bank is None:
        from deepasa.scenes.soundbank import SoundBank
        bank = SoundBank.open()
    names = class_names or list(bank.classes)
    spec = sample_scene_spec(rng, cfg, clips_for_split(bank, split, cfg), names, scene_id, split)
    return render_scene(spec, load_dry(bank, spec), fmt)


def clips_for_split(bank, split: str, cfg: SceneConfig) -> dict[str, list]:
    """label → [(clip_id, n_samples at the scene rate)] of the bank's ``split``."""
    out: dict[str, list] = {}
    for clip in bank.clips(split, list(cfg.classes) if cfg.classes else None):
        out.setdefault(clip.label, []).append((clip.clip_id, int(clip.duration * cfg.sample_rate)))
    return out


def build_chain(pieces: list[np.ndarray], segments: list[dict]) -> np.ndarray:
    """Join segment signals with equal-power crossfades, as described by a spec's ``segments``.

    Args:
        pieces: one (length_i,) signal per segment (already cropped to ``segments[i]["length"]``).
        segments: the spec's list; ``segments[i]["crossfade"]`` samples of piece i overlap the end of piece i−1.
    Returns:
        (Σ length_i − Σ crossfade_i,) float64.
    """
    total = sum(s["length"] for s in segments) - sum(s["crossfade"] for s in segments)
    out = np.zeros(total)
    pos = 0  # end of what has been written
    for piece, seg in zip(pieces, segments):
        piece = np.asarray(piece, dtype=np.float64)
        if len(piece) != seg["length"]:
            raise ValueError(f"segment {seg['clip_id']}: {len(piece)} samples, the spec says {seg['length']}")
        xf = seg["crossfade"]
        start = pos - xf
        if xf:
            fade_in, fade_out = equal_power_fades(xf)
            out[start:pos] *= fade_out  # only the previous piece is there: its own fade-in ended earlier
            piece = piece.copy()
            piece[:xf] *= fade_in
        out[start:start + len(piece)] += piece
        pos = start + len(piece)
    return out


def load_dry(bank, spec: dict) -> list[np.ndarray]:
    """The dry signal of every source of ``spec``, at the scene rate: list of (L_k,).

    For a one-clip source the whole clip (``render_scene`` crops it); for a chained source (``segments``,
    :func:`sample_event`) the chain itself, rebuilt from the spec alone: (length,), cropped at 0.
    """
    from deepasa.audio.io import resample

    by_id = {c.clip_id: c for c in bank.clips(spec["split"])}
    loaded: dict[str, np.ndarray] = {}  # a looped or re-drawn clip is decoded once per scene

    def whole(clip_id: str, need: int) -> np.ndarray:
        if clip_id not in loaded:
            clip = by_id.get(clip_id)
            if clip is None:
                raise DeepASAError(f"clip {clip_id} of scene {spec['scene_id']} is not in the sound bank")
            x = bank.load(clip)
            loaded[clip_id] = resample(x, bank.sample_rate, spec["sample_rate"]) \
                if bank.sample_rate != spec["sample_rate"] else x
        x = loaded[clip_id]
        # the index's duration may round a sample above the decoded length: pad, as the spec's crop assumes it
        return np.pad(x, (0, max(0, need - len(x)))).astype(np.float64)

    out = []
    for src in spec["sources"]:
        if "segments" in src:
            segs = src["segments"]
            pieces = [whole(g["clip_id"], g["crop_start"] + g["length"])[g["crop_start"]:g["crop_start"] + g["length"]]
                      for g in segs]
            out.append(build_chain(pieces, segs))
        else:
            out.append(whole(src["clip_id"], src["crop_start"] + src["length"]))
    return out
