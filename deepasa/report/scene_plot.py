"""Figures of a scene's ground truth (matplotlib, no torch): spectrogram, activity, DoA trajectories."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_scene(scene, path: Path, title: str | None = None) -> Path:
    """Plot a simulated scene's ground truth to a PNG.

    Args:
        scene: a :class:`deepasa.scenes.simulator.SceneAudio` (mixture (C, N), activity/azimuth/elevation (K, T')).
        path: output PNG path.
    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = scene.meta
    fs, hop = meta["sample_rate"], meta["label_hop"]
    k_src, n_frames = scene.activity.shape
    t = (np.arange(n_frames) + 0.5) * hop
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(4, 1, figsize=(10, 10), sharex=True,
                             gridspec_kw={"height_ratios": [2.2, 1.2, 1.5, 1.5]})
    axes[0].specgram(scene.mixture[0], NFFT=512, Fs=fs, noverlap=384, cmap="magma", scale="dB", vmin=-120)
    axes[0].set_ylabel("frequency (Hz)")
    axes[0].set_title(title or f"scene {meta['scene_id']} ({meta['format']}): mixture, reference channel")
    for k, src in enumerate(meta["sources"]):
        c = colours(k % 10)
        on = scene.activity[k].astype(bool)
        axes[1].fill_between(t, k - 0.4, k + 0.4, where=on, step="mid", color=c, alpha=0.8)
        motion = "moving" if src["moving"] else "static"
        axes[1].text(-0.05, k, f"{k}: {src['label']} ({motion})", ha="right", va="center", fontsize=8,
                     transform=axes[1].get_yaxis_transform())
        az = np.where(on, scene.azimuth[k], np.nan)
        el = np.where(on, scene.elevation[k], np.nan)
        axes[2].plot(t, az, ".-", color=c, label=src["label"])
        axes[3].plot(t, el, ".-", color=c)
    axes[1].set_yticks([])
    axes[1].set_ylim(-0.6, k_src - 0.4)
    axes[1].set_title("activity (100-ms frames)")
    axes[2].set_ylabel("azimuth (°)")
    axes[2].set_ylim(-180, 180)
    axes[3].set_ylabel("elevation (°)")
    axes[3].set_ylim(-90, 90)
    axes[3].set_xlabel("time (s)")
    axes[2].legend(loc="upper right", fontsize=7, ncol=min(k_src, 5))
    for ax in axes[1:]:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
