"""The localisation-map finder: a permutation-free network that maps a 4-channel mixture to, per 100-ms label
frame, a score over a fixed grid of directions; peak picking and a tracker turn the maps into object trajectories.

Why (docs/finder.md): the slot-based network has to decide which slot holds which source, and on our CPU budget it
never learned that assignment. A map over directions has no slots: its target is a sum of smooth bumps at the
active sources' directions, whatever their number and order, so plain BCE trains it.

Pipeline, shapes for a batch of B clips of N samples, M = 4 capsules, label frames T' = N / (label_hop · fs),
STFT frames T = S · T' (S = label_hop · fs / hop = 10):

1. Front end (:class:`FinderFeatures`, no parameters): STFT (n_fft 512, hop 10 ms); per STFT frame the PHAT
   GCC of each of the P = 6 capsule pairs at L lags over ±0.3 ms (the tetrahedron's largest delay is 245 µs),
   and the log band energies of the channel mean (``n_bands`` triangular mel bands, the clip's mean removed so
   the level does not matter) -> (B, P·L + n_bands, T).
2. :class:`Finder`: two 1-d convolutions over STFT frames, mean+max pooling of each label frame's S frames, a
   bidirectional GRU over label frames, and a linear layer to G map logits -> (B, T', G).
3. :func:`find_objects`: sigmoid -> :func:`deepasa.tracking.peaks.pick_peaks` -> :func:`deepasa.tracking.tracker.track`.

Training targets (:func:`target_map`): map(t, g) = max over sources k active at t of exp((cos∠(g, u_k(t)) − 1) / σ²).

The array is a regular tetrahedron, so its 12 rotational symmetries (:func:`tetra_symmetries`) map the capsule
set onto itself: a scene rotated by R is recorded as the same channels, permuted. Training uses them to reuse
every simulated scene 12 ways.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepasa.audio.geometry import tetra_mic_offsets
from deepasa.errors import DeepASAError
from deepasa.model.spatial import GCCPhatFeatures
from deepasa.tracking.grid import direction_grid
from deepasa.tracking.peaks import PeakPicker

FORMAT = "deepasa-finder-1"


@dataclass
class FinderConfig:
    """Everything needed to rebuild a :class:`Finder` (saved with its weights)."""

    sample_rate: int = 16000
    label_hop: float = 0.1          # seconds per label frame (SceneConfig.label_hop)
    n_fft: int = 512
    hop: int = 160                  # STFT hop in samples (10 ms at 16 kHz)
    n_lags: int = 33                # GCC lags over ±max_lag_s
    # band edges (Hz) of band-wise GCC: one GCC per band [e_i, e_i+1) (bins f ≥ 1); empty = one band, all bins
    gcc_band_edges_hz: tuple = ()
    max_lag_s: float = 3.0e-4
    n_bands: int = 64               # log-mel bands of the channel mean
    n_mics: int = 4
    conv_channels: int = 128
    gru_hidden: int = 128
    n_directions: int = 600         # G, deepasa.tracking.grid.direction_grid(G)
    sigma: float = 0.15             # target bump width (rad)

    @property
    def frames_per_label(self) -> int:
        """S: STFT frames per label frame (label_hop · fs / hop, must be an integer)."""
        s = self.label_hop * self.sample_rate / self.hop
        if abs(s - round(s)) > 1e-9:
            raise DeepASAError(f"label_hop · sample_rate / hop = {s} is not an integer")
        return int(round(s))

    @property
    def label_samples(self) -> int:
        """Samples per label frame."""
        return self.frames_per_label * self.hop

    @classmethod
    def from_dict(cls, values: dict) -> "FinderConfig":
        """Build from a mapping; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise DeepASAError(f"unknown finder config key(s): {', '.join(unknown)}")
        values = dict(values)
        if "gcc_band_edges_hz" in values:
            values["gcc_band_edges_hz"] = tuple(float(e) for e in values["gcc_band_edges_hz"])
        return cls(**values)

    def to_dict(self) -> dict:
        """Plain dict (saved in checkpoints)."""
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------- symmetries
def tetra_symmetries(mic_offsets: np.ndarray | None = None, *, reflections: bool = False,
                     tol: float = 0.02) -> list[tuple[np.ndarray, np.ndarray]]:
    """The rotations R that map the capsule set onto itself, with the channel permutation each implies.

    For a plane wave from u, capsule a receives s(t + p_a·u / c). The scene rotated by R (sources at R·u) gives
    capsule a the signal s(t + p_a·R u / c) = s(t + (Rᵀ p_a)·u / c); when Rᵀ p_a = p_σ(a), that is what capsule
    σ(a) received in the original scene: rotated mixture = mixture[σ]. This holds for reverberation and
    diffuse noise too (the whole room rotates with the sources).

    Each candidate σ is fitted by orthogonal Procrustes (R = argmin Σ ||Rᵀ p_a − p_σ(a)||) and kept when the
    residual is below ``tol`` · radius (the capsule elevation 35° is 0.26° off the exact tetrahedron's
    35.26°, so the fit is exact only to ~0.5 % of the radius, ~0.6 µs of delay).

    Args:
        mic_offsets: (M, 3) capsule positions (default: the tetrahedral MIC array).
        reflections: also return the 12 improper symmetries (det R = −1; mirror-image scenes).
        tol: residual tolerance relative to the array radius.
    Returns:
        list of (R (3, 3) float64, σ (M,) int64), identity first; 12 for the tetrahedron (24 with reflections).
    """
    p = np.asarray(tetra_mic_offsets() if mic_offsets is None else mic_offsets, dtype=np.float64)  # (M, 3)
    radius = float(np.linalg.norm(p, axis=1).mean())
    out = []
    for perm in itertools.permutations(range(len(p))):
        sigma = np.array(perm)
        # want Rᵀ p_a ≈ p_σ(a)  <=>  p_a ≈ R p_σ(a): Procrustes of p[σ] onto p
        u, _, vt = np.linalg.svd(p.T @ p[sigma])  # (3, 3) each
        det = np.sign(np.linalg.det(u @ vt))
        for d in ((1.0,) if not reflections else (1.0, -1.0)):
            if det != d:
                continue
            r = u @ vt  # (3, 3): R = U Vᵀ maximises tr(Rᵀ pᵀ p[σ])
            if np.abs(p[sigma] @ r.T - p).max() < tol * radius:
                out.append((r, sigma.astype(np.int64)))
    out.sort(key=lambda rs: (not np.allclose(rs[0], np.eye(3), atol=1e-3), tuple(rs[1])))
    return out


def apply_symmetry(mixture: torch.Tensor, doa: torch.Tensor, rotation: torch.Tensor, perm: torch.Tensor):
    """Rotate a scene by one array symmetry: mixture (..., M, N) -> mixture[..., σ, :], doa (..., 3) -> R·doa.

    Returns:
        (mixture (..., M, N), doa (..., 3)); zero (inactive) directions stay zero.
    """
    return mixture[..., perm, :], doa @ rotation.T.to(doa.dtype)


# ---------------------------------------------------------------------------------------------- targets
def target_map(doa: torch.Tensor, activity: torch.Tensor, grid: torch.Tensor, sigma: float) -> torch.Tensor:
    """The training target: per label frame, the max over active sources of a bump at the source direction.

    map(t, g) = max_k∈active(t) exp((cos∠(g, u_k(t)) − 1) / σ²), 0 where no source is active; a bump is 1 at its
    source's direction and ≈ exp(−θ² / 2σ²) at angle θ from it.

    Args:
        doa: (B, K, T', 3) unit directions (any value where inactive).
        activity: (B, K, T') bool.
        grid: (G, 3) unit vectors.
        sigma: bump width in radians.
    Returns:
        (B, T', G) float32 in [0, 1].
    """
    cos = torch.einsum("bktc,gc->bktg", doa.float(), grid.float())  # (B, K, T', G)
    bump = torch.exp((cos - 1.0) / sigma ** 2) * activity.unsqueeze(-1).float()  # (B, K, T', G)
    if bump.shape[1] == 0:
        return bump.new_zeros(bump.shape[0], bump.shape[2], bump.shape[3])  # (B, T', G)
    return bump.amax(dim=1)  # (B, T', G)


# ---------------------------------------------------------------------------------------------- network
def mel_filterbank(n_fft: int, sample_rate: int, n_bands: int) -> torch.Tensor:
    """Triangular mel filters (HTK mel scale), DC excluded: (n_bands, n_fft/2 + 1) float32."""
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft  # (F,)
    edges = hz(np.linspace(mel(50.0), mel(sample_rate / 2), n_bands + 2))  # (n_bands + 2,)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (n_bands, 1) each
    up = (freqs[None] - lo) / (mid - lo)  # (n_bands, F)
    down = (hi - freqs[None]) / (hi - mid)  # (n_bands, F)
    fb = np.clip(np.minimum(up, down), 0.0, None)  # (n_bands, F)
    # the lowest bands are narrower than a bin: give each at least its nearest bin so none is empty
    for b in range(n_bands):
        if fb[b].sum() == 0:
            fb[b, int(np.argmin(np.abs(freqs - mid[b, 0])))] = 1.0
    fb[:, 0] = 0.0
    return torch.from_numpy(fb / fb.sum(axis=1, keepdims=True)).float()


class FinderFeatures(nn.Module):
    """Parameter-free front end: mixture (B, M, N) -> features (B, Q·P·L + n_bands, T), T = S · T'.

    Q is the number of GCC bands (1 unless ``cfg.gcc_band_edges_hz`` sets band edges): each band's GCC is the
    mean over its bins of Re[PHAT · e^{iωτ}], rows ordered (band, pair, lag). The clip is zero-padded to a whole
    number of label frames; STFT frame t is centred at sample t · hop.
    """

    def __init__(self, cfg: FinderConfig):
        super().__init__()
        self.cfg = cfg
        self.gcc = GCCPhatFeatures(cfg.n_fft, cfg.sample_rate, cfg.n_mics, max_lag_s=cfg.max_lag_s,
                                   n_lags=cfg.n_lags)
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        self.register_buffer("mel", mel_filterbank(cfg.n_fft, cfg.sample_rate, cfg.n_bands), persistent=False)
        self.register_buffer("band_weight", gcc_band_weights(cfg), persistent=False)  # (Q, F)

    @property
    def n_gcc_bands(self) -> int:
        """Q: GCC bands."""
        return self.band_weight.shape[0]

    @property
    def n_features(self) -> int:
        """Q·P·L + n_bands."""
        return self.n_gcc_bands * len(self.gcc.pairs) * self.cfg.n_lags + self.cfg.n_bands

    def n_label_frames(self, n_samples: int) -> int:
        """T' for an N-sample clip: ceil(N / label samples)."""
        return max(1, math.ceil(n_samples / self.cfg.label_samples))

    def permutation_index(self, perm) -> torch.Tensor:
        """Feature rows of a channel-permuted mixture: features(mixture[σ]) == features(mixture)[:, index].

        The new pair (a, b) is the old pair (σ(a), σ(b)); when σ(a) > σ(b) it is stored as (σ(b), σ(a)), whose
        GCC is the same function of the negated lag (GCC_ba(τ) = GCC_ab(−τ)), and the lag grid is symmetric, so
        its lags are read in reverse order. The band energies of the channel mean do not change.

        Args:
            perm: σ, (M,) ints (from :func:`tetra_symmetries`).
        Returns:
            (Q·P·L + n_bands,) int64 row index (each GCC band permuted alike).
        """
        perm = [int(i) for i in perm]
        pairs, n_lags = self.gcc.pairs, self.cfg.n_lags
        lag = torch.arange(n_lags)
        band_rows = len(pairs) * n_lags
        rows = []
        for q in range(self.n_gcc_bands):
            for a, b in pairs:
                sa, sb = perm[a], perm[b]
                if sa < sb:
                    rows.append(q * band_rows + pairs.index((sa, sb)) * n_lags + lag)
                else:
                    rows.append(q * band_rows + pairs.index((sb, sa)) * n_lags + lag.flip(0))
        rows.append(self.n_gcc_bands * band_rows + torch.arange(self.cfg.n_bands))
        return torch.cat(rows)  # (Q·P·L + n_bands,)

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """mixture (B, M, N) float -> (B, Q·P·L + n_bands, S·T') float32."""
        cfg = self.cfg
        b, m, n = mixture.shape
        n_label = self.n_label_frames(n)
        x = F.pad(mixture.float(), (0, n_label * cfg.label_samples - n))  # (B, M, T'·S·hop)
        spec = torch.stft(x.reshape(b * m, -1), cfg.n_fft, cfg.hop, window=self.window, center=True,
                          return_complex=True)  # (B·M, F, T + 1)
        spec = spec[..., :n_label * cfg.frames_per_label].reshape(b, m, spec.shape[1], -1)  # (B, M, F, T)
        c, s = self.gcc.phase_transform(spec)  # (B, P, F, T) each
        # per-frame GCC of each band: mean over its bins of Re[PHAT · e^{iωτ}] (band_weight rows are 1/|band|)
        q, n_freq, n_lags, t = self.n_gcc_bands, spec.shape[2], self.cfg.n_lags, spec.shape[-1]
        cos_q = (self.band_weight[:, :, None] * self.gcc.cos_basis).permute(1, 0, 2).reshape(n_freq, q * n_lags)
        sin_q = (self.band_weight[:, :, None] * self.gcc.sin_basis).permute(1, 0, 2).reshape(n_freq, q * n_lags)
        gcc = c.transpose(-1, -2) @ cos_q - s.transpose(-1, -2) @ sin_q  # (B, P, T, Q·L)
        gcc = gcc.reshape(b, -1, t, q, n_lags).permute(0, 3, 1, 4, 2)  # (B, Q, P, L, T)
        gcc = gcc.reshape(b, -1, t)  # (B, Q·P·L, T), rows (band, pair, lag)
        power = spec.abs().pow(2).mean(dim=1)  # (B, F, T): mean power over channels
        logmel = torch.log(torch.einsum("kf,bft->bkt", self.mel, power) + 1e-10)  # (B, n_bands, T)
        logmel = (logmel - logmel.mean(dim=(1, 2), keepdim=True)) / 5.0  # (B, n_bands, T), level removed
        return torch.cat([gcc, logmel], dim=1)  # (B, Q·P·L + n_bands, T)


def gcc_band_weights(cfg: FinderConfig) -> torch.Tensor:
    """Averaging weights of the GCC bands: (Q, F) float32, row q = 1/|band q| on its bins, 0 elsewhere.

    Bins f ≥ 1 only (the DC bin carries no phase). Without ``cfg.gcc_band_edges_hz`` there is one band of all
    bins f ≥ 1, i.e. the plain per-frame GCC. A band with no bin is an error.
    """
    n_freq = cfg.n_fft // 2 + 1
    freqs = torch.arange(n_freq, dtype=torch.float64) * cfg.sample_rate / cfg.n_fft  # (F,) Hz
    edges = list(cfg.gcc_band_edges_hz) or [0.0, cfg.sample_rate / 2]
    if any(b <= a for a, b in zip(edges[:-1], edges[1:])) or len(edges) < 2:
        raise DeepASAError(f"gcc_band_edges_hz must rise and have at least two edges, got {edges}")
    rows = []
    for q, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        last = q == len(edges) - 2
        inside = (freqs >= lo) & ((freqs <= hi) if last else (freqs < hi)) & (freqs > 0)  # (F,)
        if not inside.any():
            raise DeepASAError(f"GCC band {lo:g}–{hi:g} Hz holds no frequency bin")
        rows.append(inside.double() / inside.sum())
    return torch.stack(rows).float()  # (Q, F)


class Finder(nn.Module):
    """Localisation-map network: mixture (B, M, N) -> map logits (B, T', G). See the module docstring.

    Attributes:
        grid: (G, 3) float32 buffer, the map's directions (``direction_grid(cfg.n_directions)``).
    """

    def __init__(self, cfg: FinderConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or FinderConfig()
        self.features = FinderFeatures(cfg)
        c = cfg.conv_channels
        self.conv = nn.Sequential(
            nn.Conv1d(self.features.n_features, c, 3, padding=1), nn.BatchNorm1d(c), nn.GELU(),
            nn.Conv1d(c, c, 3, padding=1), nn.BatchNorm1d(c), nn.GELU(),
        )
        self.gru = nn.GRU(2 * c, cfg.gru_hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * cfg.gru_hidden, cfg.n_directions)
        self.register_buffer("grid", torch.from_numpy(direction_grid(cfg.n_directions)).float(), persistent=False)

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """mixture (B, M, N) -> logits (B, T', G), T' = ceil(N / label samples)."""
        return self.forward_features(self.features(mixture))

    def forward_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Front-end features (B, C_in, S·T') -> logits (B, T', G) (training caches the features per scene)."""
        h = self.conv(feats)  # (B, C, T)
        b, c, t = h.shape
        h = h.reshape(b, c, t // self.cfg.frames_per_label, self.cfg.frames_per_label)  # (B, C, T', S)
        # mean and max over the label frame: the max keeps short events a mean would dilute
        h = torch.cat([h.mean(-1), h.amax(-1)], dim=1).transpose(1, 2)  # (B, T', 2C)
        h, _ = self.gru(h)  # (B, T', 2H)
        return self.out(h)  # (B, T', G)

    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters())

    def save(self, path: str | Path, *, half: bool = False, **meta) -> None:
        """Export the weights and config (``meta`` is stored alongside: step, threshold, …); ``half`` stores
        floating-point tensors as float16 (half the file; :meth:`from_pretrained` casts them back)."""
        state = {k: (v.half() if half and v.is_floating_point() else v).detach().clone()
                 for k, v in self.state_dict().items()}
        torch.save({"format": FORMAT, "config": self.cfg.to_dict(), "state_dict": state, "meta": meta}, path)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "Finder":
        """Rebuild an exported finder (``Finder.save`` / ``checkpoints/finder.pt``) in eval mode.

        A resume state of ``deepasa.train.finder`` (``runs/finder/last.pt``) is accepted too. The file's
        ``meta`` (e.g. the tuned ``threshold``) is available as ``finder.meta``.
        """
        path = Path(path)
        if not path.is_file():
            raise DeepASAError(f"no such finder file: {path}")
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        if isinstance(ckpt, dict) and "train_config" in ckpt and "model" in ckpt:  # a training resume state
            ckpt = {"config": ckpt["train_config"]["finder"], "state_dict": ckpt["model"],
                    "meta": {"step": ckpt.get("step")}}
        if not isinstance(ckpt, dict) or "config" not in ckpt or "state_dict" not in ckpt:
            raise DeepASAError(f"{path} is not a finder file")
        model = cls(FinderConfig.from_dict(ckpt["config"]))
        ref = model.state_dict()
        model.load_state_dict({k: v.to(ref[k].dtype) if k in ref else v for k, v in ckpt["state_dict"].items()})
        model.meta = dict(ckpt.get("meta") or {})
        return model.eval()


# ---------------------------------------------------------------------------------------------- inference
DEFAULT_THRESHOLD = 0.5


@torch.no_grad()
def symmetry_subset(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first ``n`` array symmetries for map averaging: 1 = the identity; 4 = the identity and the three half
    turns (the Klein group, the exact ones: they swap capsules pairwise); 12 = every rotation of the tetrahedron.

    Returns:
        list of (R (3, 3), σ (M,)) as :func:`tetra_symmetries`.
    """
    syms = tetra_symmetries()
    if n == 1:
        return syms[:1]
    if n == 4:
        return [rs for rs in syms if np.trace(rs[0]) < -0.9 or np.allclose(rs[0], np.eye(3), atol=1e-3)]
    if n == 12:
        return syms
    raise DeepASAError(f"symmetry averaging over {n} rotations: use 1, 4 or 12")


def _symmetry_tables(finder: Finder, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per symmetry (R, σ) of :func:`symmetry_subset`: the feature rows of the permuted mixture, and the grid
    index ``idx[g]`` = the grid point nearest R·g (kept on the finder: computed once per n)."""
    cache = finder.__dict__.setdefault("_symmetry_tables", {})
    if n not in cache:
        grid = finder.grid.double()  # (G, 3)
        tables = []
        for r, sigma in symmetry_subset(n):
            rows = finder.features.permutation_index(sigma)  # (C_in,)
            turned = grid @ torch.from_numpy(r).T  # (G, 3): R·g for every grid point
            tables.append((rows, (turned @ grid.T).argmax(dim=1)))  # (C_in,), (G,)
        cache[n] = tables
    return cache[n]


def finder_scores(mixture, finder: Finder, symmetries: int | None = None) -> np.ndarray:
    """Map scores of one clip: mixture (M, N) (numpy or torch) -> sigmoid map (T', G) float32 numpy.

    Args:
        symmetries: average the maps of the mixture turned by this many array rotations (1, 4 or 12;
            :func:`symmetry_subset`): the recording of the scene turned by R is the mixture's channels permuted
            by σ (exact), so its map, read at R·g, is another estimate of the map at g. Each turned map costs one
            pass of the network (the front-end features are computed once and permuted); the grid lookup is the
            nearest grid point (~4° on the 600-point grid). Default: ``finder.meta["symmetries"]``, else 1.
    """
    x = torch.as_tensor(np.asarray(mixture, dtype=np.float32) if not torch.is_tensor(mixture) else mixture)
    n_sym = int(getattr(finder, "meta", {}).get("symmetries", 1) if symmetries is None else symmetries)
    was_training = finder.training
    finder.eval()
    try:
        with torch.no_grad():
            feats = finder.features(x.float().unsqueeze(0))  # (1, C_in, T)
            if n_sym == 1:
                return torch.sigmoid(finder.forward_features(feats)[0]).numpy()  # (T', G)
            tables = _symmetry_tables(finder, n_sym)
            turned = torch.cat([feats[:, rows] for rows, _ in tables])  # (S, C_in, T): the turned mixtures' features
            maps = torch.sigmoid(finder.forward_features(turned))  # (S, T', G)
            back = torch.stack([maps[k][:, idx] for k, (_, idx) in enumerate(tables)])  # (S, T', G): read at R·g
            return back.mean(dim=0).numpy()  # (T', G)
    finally:
        finder.train(was_training)


def find_objects(mixture, finder: Finder, *, threshold: float | None = None, min_separation_deg: float = 25.0,
                 max_peaks: int = 5, picker: PeakPicker | None = None, scores: np.ndarray | None = None,
                 **track_kwargs):
    """Sound objects of a clip of any length: map -> sigmoid -> peaks per frame -> tracks.

    Args:
        mixture: (M, N) numpy or torch, the array recording at ``finder.cfg.sample_rate``.
        finder: a :class:`Finder` (eval mode is used; the GRU takes any length).
        threshold: peak threshold on the sigmoid map (default: the exported ``meta["threshold"]``, else 0.5).
        min_separation_deg, max_peaks: see :func:`deepasa.tracking.peaks.pick_peaks`.
        picker: a :class:`PeakPicker` on ``finder.grid`` to reuse over clips (built when None).
        scores: precomputed :func:`finder_scores` (T', G) (then ``mixture`` is not run through the network).
        track_kwargs: passed to :func:`deepasa.tracking.tracker.track` (gate_deg, birth_frames, …), over the
            tracker options stored in the export (``finder.meta["track"]``, none unless set).
    Returns:
        :class:`deepasa.tracking.tracker.Tracks` (activity (J, T') bool, doa (J, T', 3), score (J, T')).
    """
    from deepasa.tracking.tracker import track  # written alongside; imported when used

    if threshold is None:
        threshold = float(getattr(finder, "meta", {}).get("threshold", DEFAULT_THRESHOLD))
    if scores is None:
        scores = finder_scores(mixture, finder)  # (T', G)
    picker = picker or PeakPicker(finder.grid.double().numpy())
    detections = picker(scores, threshold=threshold, min_separation_deg=min_separation_deg, max_peaks=max_peaks)
    return track(detections, **{**dict(getattr(finder, "meta", {}).get("track") or {}), **track_kwargs})


# ---------------------------------------------------------------------------------------------- pipeline parts
class MapFinder:
    """A direction-map finder: ``scores`` per chunk, then ``detections`` and ``track`` over the recording.

    Args:
        spec: ``"srp"``, ``"finder"`` (the shipped ``checkpoints/finder.pt``) or the path of a finder checkpoint.
        sample_rate: the pipeline's rate (a finder checkpoint must match it).
        label_hop: the pipeline's label frame in seconds (a finder checkpoint must match it).
        fmt: ``"mic"`` or ``"foa"``. For FOA (ACN/SN3D) ``"srp"`` is the active-intensity map
            (:class:`~deepasa.tracking.foa.IntensityTracker`), the classical finder of that format; a learned
            finder reads FOA through a virtual recording of the tetrahedral array
            (:func:`~deepasa.tracking.foa.virtual_mic`, no training; experiments/2026-12-07-foa-virtual-mic).
    """

    def __init__(self, spec: str | Path, sample_rate: int = 16000, label_hop: float = 0.1, fmt: str = "mic") -> None:
        self.fmt = fmt
        if fmt not in ("mic", "foa"):
            raise DeepASAError(f"unknown format {fmt!r} (mic or foa)")
        if fmt == "foa" and str(spec) == "srp":
            from deepasa.tracking.foa import IntensityTracker

            self.spec, self._net = "srp", None
            self._srp = IntensityTracker(sample_rate=sample_rate, label_hop=label_hop)
            return
        if str(spec) == "finder":
            from deepasa.model.paths import DEFAULT_FINDER_CHECKPOINT

            spec = DEFAULT_FINDER_CHECKPOINT
        self.spec = str(spec)
        if self.spec == "srp":
            from deepasa.tracking.srp import SRPTracker

            self._srp = SRPTracker(sample_rate=sample_rate, label_hop=label_hop)
            self._net = None
        else:
            self.check_spec(self.spec)
            self._net = Finder.from_pretrained(self.spec)
            self._srp = None
            cfg = self._net.cfg
            if cfg.sample_rate != sample_rate or abs(cfg.label_hop - label_hop) > 1e-9:
                raise DeepASAError(f"{self.spec}: a finder at {cfg.sample_rate} Hz / {cfg.label_hop} s label frames; "
                                   f"the pipeline runs at {sample_rate} Hz / {label_hop} s")

    @staticmethod
    def check_spec(spec, hint: str = "use --finder srp or --finder network") -> None:
        """Refuse, before any audio is read, a spec that names no finder: not ``"finder"``, ``"srp"``, a
        :class:`MapFinder` or an existing file. ``hint`` ends the one-line error."""
        if not isinstance(spec, MapFinder) and str(spec) not in ("finder", "srp") and not Path(spec).is_file():
            raise DeepASAError(f"no finder checkpoint at {spec} ({hint})")

    @property
    def n_parameters(self) -> int:
        """Trainable parameters of the learned finder (0 for the classical maps)."""
        return self._net.n_parameters() if self._net is not None else 0

    @property
    def name(self) -> str:
        """How reports name it: the checkpoint's file name (FOA: ``… on a virtual MIC rendering``), ``SRP-PHAT``
        or (FOA) ``the active-intensity map``."""
        if self.spec == "srp":
            return "the active-intensity map" if self.fmt == "foa" else "SRP-PHAT"
        return Path(self.spec).name + (" on a virtual MIC rendering" if self.fmt == "foa" else "")

    def scores(self, x: np.ndarray) -> np.ndarray:
        """x (M, n) at 16 kHz, n a whole number of label frames → map (n / 1600, G).

        A learned finder on FOA reads ``virtual_mic(x)``, the (4, n) virtual tetrahedral recording.
        """
        if self._srp is not None:
            return self._srp.score_map(x)
        if self.fmt == "foa":
            from deepasa.tracking.foa import virtual_mic

            x = virtual_mic(x, self._net.cfg.sample_rate)  # (4, n) virtual MIC capsules
        return finder_scores(x, self._net)

    def track(self, scores: np.ndarray):
        """Map (T', G) of the whole recording → :class:`~deepasa.tracking.tracker.Tracks`."""
        if self._srp is not None:
            from deepasa.tracking.tracker import track

            return track(self._srp.detections(scores), max_objects=None, **self._srp.track_kwargs)
        return find_objects(None, self._net, scores=scores)
