"""The ``report.html`` of ``deepasa analyze``: one self-contained page (figures and audio embedded as base64).

Contents: the mixture spectrogram and an audio player (first 30 s); a top view of every object's direction
over time (azimuth as angle, time as radius); per object a figure with its spectrogram, activity timeline
labelled with its class and its DoA trajectory (azimuth and elevation over time), and an audio player (an
excerpt of its reference channel starting at its first onset). The PNGs are also written to ``figures/``.

Signals are read from the analysis' WAV files in blocks (spectrograms are streamed), so the report of a long
recording costs bounded memory too.
"""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import numpy as np
import soundfile as sf

from deepasa.audio.spectrogram import StreamingSpectrogram

__all__ = ["write_report", "file_spectrogram", "wav_base64", "PLAYER_SECONDS"]

#: Length of each object's audio excerpt embedded in the page.
PLAYER_SECONDS = 15.0
PLAYER_RATE = 16000


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def file_spectrogram(path: Path, channel: int = 0, max_cols: int = 1500):
    """Streamed dB spectrogram of one channel of a WAV file.

    Returns:
        (F, K) dB, times (K,) s, freqs (F,) Hz.
    """
    info = sf.info(str(path))
    spec = StreamingSpectrogram(info.frames, info.samplerate, max_cols=max_cols)
    with sf.SoundFile(str(path)) as fh:
        for blk in fh.blocks(65536, dtype="float32", always_2d=True):  # (n, M)
            spec.feed(blk[:, channel])
    return spec.result()


def wav_base64(x: np.ndarray, sample_rate: int) -> str:
    """(n,) float signal -> base64 of a 16-bit PCM mono WAV, peak-normalised to −1 dBFS (for <audio>)."""
    x = np.asarray(x, dtype=np.float64)
    peak = float(np.abs(x).max()) if len(x) else 0.0
    if peak > 0:
        x = x * (10 ** (-1 / 20) / peak)
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), sample_rate, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _excerpt(path: Path, start_s: float, seconds: float, channel: int = 0) -> tuple[np.ndarray, int]:
    """(n,) reference channel of ``path`` from ``start_s`` for ``seconds``, at ≤ 16 kHz."""
    info = sf.info(str(path))
    start = max(0, int(start_s * info.samplerate))
    data, sr = sf.read(str(path), start=start, frames=int(seconds * info.samplerate), dtype="float32",
                       always_2d=True)  # (n, M)
    x = data[:, channel]
    if sr > PLAYER_RATE:
        from deepasa.audio.io import resample

        x, sr = resample(x, sr, PLAYER_RATE), PLAYER_RATE
    return x, sr


def _png_base64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _colour(k: int):
    return _plt().get_cmap("tab10")(k % 10)


def _spec_axes(ax, mag, times, freqs, title: str) -> None:
    top = float(np.max(mag)) if mag.size else 0.0
    ax.imshow(mag, origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
              extent=[times[0] if len(times) else 0, times[-1] if len(times) else 1, freqs[0], freqs[-1]])
    ax.set_ylabel("frequency (Hz)")
    ax.set_title(title, fontsize=10)


def plot_mixture(analysis, path: Path) -> Path:
    """Mixture spectrogram (reference channel) with every object's activity below it."""
    plt = _plt()
    n_obj = len(analysis.objects)
    fig, axes = plt.subplots(2, 1, figsize=(11, 4.6 + 0.25 * n_obj), sharex=True,
                             gridspec_kw={"height_ratios": [2.4, 0.6 + 0.25 * max(n_obj, 1)]})
    _spec_axes(axes[0], analysis.mixture_spectrogram, analysis.spectrogram_times, analysis.spectrogram_freqs,
               f"mixture ({analysis.fmt}, reference channel, model rate {analysis.model_sample_rate} Hz)")
    t = (np.arange(analysis.n_frames) + 0.5) * analysis.label_hop_s
    for obj in analysis.objects:
        axes[1].fill_between(t, obj.id - 0.4, obj.id + 0.4, where=obj.activity, step="mid",
                             color=_colour(obj.id), alpha=0.85, linewidth=0)
        axes[1].text(-0.005, obj.id, f"{obj.id}: {obj.class_name}", ha="right", va="center", fontsize=8,
                     transform=axes[1].get_yaxis_transform())
    axes[1].set_ylim(-0.6, max(n_obj, 1) - 0.4)
    axes[1].set_yticks([])
    axes[1].invert_yaxis()
    axes[1].set_xlabel("time (s)")
    axes[1].set_title("object activity (100-ms frames)", fontsize=10)
    axes[1].set_xlim(0, analysis.duration)
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_top_view(analysis, path: Path) -> Path:
    """Top view: each object's azimuth (angle, 0° = front = up, counter-clockwise = left) vs time (radius)."""
    plt = _plt()
    fig = plt.figure(figsize=(6.4, 6.4))
    ax = fig.add_subplot(projection="polar")
    ax.set_theta_zero_location("N")
    ax.set_theta_direction(1)  # counter-clockwise: +90° (left) on the left
    t = (np.arange(analysis.n_frames) + 0.5) * analysis.label_hop_s
    for obj in analysis.objects:
        on = obj.activity
        if not on.any():
            continue
        ax.scatter(np.radians(obj.azimuth[on]), t[on], s=6 + 0.15 * (obj.elevation[on] + 90), color=_colour(obj.id),
                   alpha=0.7, label=f"{obj.id}: {obj.class_name}")
    ax.set_rmax(max(analysis.duration, 1e-3))
    ax.set_rlabel_position(135)
    ax.set_title("directions over time (top view; radius = time in s,\nangle = azimuth, 0° = front, "
                 "marker size = elevation)", fontsize=9)
    if analysis.objects:
        ax.legend(loc="upper right", bbox_to_anchor=(1.32, 1.08), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_object(analysis, obj, path: Path) -> Path:
    """One object: spectrogram of its image (reference channel), activity with its class, azimuth, elevation."""
    plt = _plt()
    fig, axes = plt.subplots(4, 1, figsize=(11, 6.6), sharex=True,
                             gridspec_kw={"height_ratios": [2.0, 0.45, 1.1, 1.1]})
    mag, times, freqs = file_spectrogram(obj.path("image"))
    c = _colour(obj.id)
    _spec_axes(axes[0], mag, times, freqs, f"object {obj.id}: {obj.class_name} (confidence {obj.confidence:.2f}) "
               "— separated image, reference channel")
    t = (np.arange(analysis.n_frames) + 0.5) * analysis.label_hop_s
    axes[1].fill_between(t, 0, 1, where=obj.activity, step="mid", color=c, alpha=0.85, linewidth=0)
    axes[1].set_yticks([0.5])
    axes[1].set_yticklabels([obj.class_name], fontsize=8)
    axes[1].set_ylim(0, 1)
    axes[2].plot(t, obj.azimuth, ".", ms=3, color=c)
    axes[2].set_ylim(-180, 180)
    axes[2].set_yticks([-180, -90, 0, 90, 180])
    axes[2].set_ylabel("azimuth (°)")
    axes[3].plot(t, obj.elevation, ".", ms=3, color=c)
    axes[3].set_ylim(-90, 90)
    axes[3].set_yticks([-90, -45, 0, 45, 90])
    axes[3].set_ylabel("elevation (°)")
    axes[3].set_xlabel("time (s)")
    axes[3].set_xlim(0, analysis.duration)
    for ax in axes[1:]:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1140px;color:#222}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3} img{max-width:100%;display:block;margin:8px 0} .meta{color:#555;font-size:13px}
.obj{border:1px solid #e3e3e3;border-radius:6px;padding:8px 14px;margin:18px 0} audio{width:100%}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;vertical-align:middle}
"""


def _hex(rgba) -> str:
    return "#" + "".join(f"{int(round(255 * v)):02x}" for v in rgba[:3])


def remix_hint(analysis, folder: str = "THIS_FOLDER") -> str:
    """One sentence on how to edit this scene object by object with ``deepasa remix`` (names its own objects)."""
    ids = [obj.id for obj in analysis.objects]
    edits = (f"--mute {ids[0]}" + (f" --move {ids[1]}=90,0" if len(ids) > 1 else f" --gain {ids[0]}=-6")) if ids \
        else "--noise-gain -10 --format foa"
    return (f"Edit and re-render this scene object by object: deepasa remix {folder} --out edit.wav {edits} "
            "(mute, gain, move or rotate an object, drop its reverberation, turn the scene, MIC or FOA output; "
            "OBJ is an object id or class name; see deepasa remix --help).")


def write_report(analysis, folder: Path) -> Path:
    """Write ``folder/report.html`` (self-contained) and ``folder/figures/*.png``; returns the HTML path.

    Args:
        analysis: a :class:`deepasa.inference.result.SceneAnalysis` whose files are under ``analysis.root``.
        folder: output folder (usually ``analysis.root``).
    """
    folder = Path(folder)
    figs = folder / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    mix_png = plot_mixture(analysis, figs / "mixture.png")
    top_png = plot_top_view(analysis, figs / "directions_top_view.png")
    e = html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>deepasa analyze: {e(Path(analysis.source).name)}"
             f"</title><style>{_CSS}</style></head><body>",
             f"<h1>Auditory scene analysis of {e(analysis.source)}</h1>",
             f"<p class='meta'>{analysis.duration:.2f} s, {analysis.n_channels} channels ({e(analysis.fmt)}), "
             f"{analysis.sample_rate} Hz; model at {analysis.model_sample_rate} Hz; {analysis.n_windows} window(s) of "
             f"{analysis.window_s:g} s every {analysis.hop_s:g} s; {len(analysis.objects)} object(s) found.</p>"]
    for msg in analysis.messages:
        parts.append(f"<p class='meta'>Note: {e(msg)}</p>")
    parts.append("<table><tr><th>object</th><th>class</th><th>confidence</th><th>active (s)</th>"
                 "<th>segments</th><th>median azimuth / elevation</th></tr>")
    for obj in analysis.objects:
        act = obj.activity
        az = f"{np.nanmedian(obj.azimuth):.0f}° / {np.nanmedian(obj.elevation):.0f}°" if act.any() else "-"
        segs = ", ".join(f"{a:.1f}–{b:.1f}" for a, b in obj.segments[:6]) + (" …" if len(obj.segments) > 6 else "")
        parts.append(f"<tr><td><span class='swatch' style='background:{_hex(_colour(obj.id))}'></span>{obj.id}</td>"
                     f"<td>{e(obj.class_name)}</td><td>{obj.confidence:.2f}</td><td>{act.sum() * analysis.label_hop_s:.1f}"
                     f"</td><td>{e(segs)}</td><td>{az}</td></tr>")
    parts.append("</table>")
    parts.append("<h2>Mixture</h2>")
    parts.append(f"<img alt='mixture spectrogram and object activity' src='data:image/png;base64,{_png_base64(mix_png)}'>")
    if analysis.mixture_preview is not None and len(analysis.mixture_preview) > 1:
        n_s = len(analysis.mixture_preview) / analysis.preview_rate
        parts.append(f"<p class='meta'>Mixture, reference channel, first {n_s:.1f} s:</p><audio controls "
                     f"src='data:audio/wav;base64,{wav_base64(analysis.mixture_preview, analysis.preview_rate)}'></audio>")
    parts.append("<h2>Directions over time</h2>")
    parts.append(f"<img style='max-width:640px' alt='top view of directions' "
                 f"src='data:image/png;base64,{_png_base64(top_png)}'>")
    parts.append("<h2>Objects</h2>")
    if not analysis.objects:
        message = analysis.no_object_message
        parts.append(f"<p>{html.escape(message[0].upper() + message[1:])}.</p>")
    for obj in analysis.objects:
        png = plot_object(analysis, obj, figs / f"object_{obj.id}.png")
        onset = obj.segments[0][0] if obj.segments else 0.0
        start = max(0.0, onset - 0.5)
        x, sr = _excerpt(obj.path("image"), start, PLAYER_SECONDS)
        files = ", ".join(f"<code>{e(rel)}</code>" for rel in obj.files.values())
        parts.append(f"<div class='obj'><h3><span class='swatch' style='background:{_hex(_colour(obj.id))}'></span>"
                     f"Object {obj.id}: {e(obj.class_name)}</h3>"
                     f"<img alt='object {obj.id}' src='data:image/png;base64,{_png_base64(png)}'>"
                     f"<p class='meta'>Separated image, reference channel, {start:.1f}–"
                     f"{start + len(x) / sr:.1f} s:</p>"
                     f"<audio controls src='data:audio/wav;base64,{wav_base64(x, sr)}'></audio>"
                     f"<p class='meta'>Files: {files}</p></div>")
    parts.append("<p class='meta'>Outputs: <code>objects/&lt;id&gt;_&lt;class&gt;/{image,direct,reverb}.wav</code>, "
                 "<code>noise.wav</code>, <code>events.csv</code> (DCASE 2023: frame, class, track, azimuth, "
                 "elevation; 100-ms frames), <code>objects.json</code>, <code>figures/</code>.</p>")
    final = re.fullmatch(r"\.(.+)\.partial-\d+", folder.name)  # written beside its final name, then renamed
    parts.append(f"<h2>Remix</h2><p>{e(remix_hint(analysis, str(folder.with_name(final[1]) if final else folder)))}"
                 "</p></body></html>")
    out = folder / "report.html"
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
