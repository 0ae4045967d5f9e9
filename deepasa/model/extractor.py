"""A learned trajectory-conditioned extractor on top of the zero-training spatial stage (issue 36, build 4).

Chain-of-inference in the paper's sense — a second inference that reads the first one's estimated parameters —
with an explicit spatial prior: the first inference is an object's *trajectory* (activity and direction per
100-ms frame, from any finder), the spatial stage (:mod:`deepasa.separation`) turns it into a first image and
direct path, and this network corrects them. It is a named deviation from the paper (docs/model.md,
"Trajectory-conditioned extractor"); the ``paper`` / ``paper-coi`` configurations do not use it.

Per object k and STFT bin (f, t) the network reads (:func:`extractor_features`): the mixture, the stage's
image and direct path of k (all 4 channels, real and imaginary, divided by the clip's reference-channel RMS),
the stage's mask of k and of the remainder, k's direction score and the largest score of the *other* active
objects, k's activity and the number of other active objects, and the mixture's log power.

Narrow-band and cross-band blocks as in NBSS/SpatialNet (weights shared over frequency): a bidirectional GRU
along time in every frequency, then a convolution along frequency in every frame, each residual. The head
outputs two complex masks per channel, and the outputs are **the stage's estimate plus a masked mixture**:
``image_k = Y_k + A_k ⊙ X``, ``direct_k = D_k + B_k ⊙ X``. The head starts at zero, so the untrained extractor
*is* the zero-training stage and training can only start from there.
"""

from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deepasa.errors import DeepASAError
from deepasa.separation.spatial import (SpatialConfig, SpatialSeparation, StageSTFT, check_trajectories, istft,
                                        spatial_stft)

N_FEATURES = 31


@dataclass
class ExtractorConfig:
    """Hyper-parameters of :class:`TrajectoryExtractor`.

    Attributes:
        hidden: H, channels of the narrow-band GRU and the cross-band convolution.
        n_blocks: narrow-band + cross-band block pairs.
        kernel: the cross-band convolution's width in frequency bins.
        n_mics: M.
        sample_rate: Hz; label_hop: seconds per label frame.
        spatial: :class:`~deepasa.separation.SpatialConfig` fields of the stage underneath (default: its defaults,
            resolved when the config is made and stored with the weights).
    """

    hidden: int = 32
    n_blocks: int = 2
    kernel: int = 5
    n_mics: int = 4
    sample_rate: int = 16000
    label_hop: float = 0.1
    spatial: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # resolved now, so a later change of the stage's defaults cannot silently change a trained extractor's input
        self.spatial = asdict(SpatialConfig(**self.spatial))

    def spatial_config(self) -> SpatialConfig:
        """The stage's :class:`SpatialConfig`."""
        return SpatialConfig(**self.spatial)


def extractor_features(st: StageSTFT) -> torch.Tensor:
    """The network's input for every object of a clip.

    Args:
        st: the spatial stage's STFT-domain output for K objects.
    Returns:
        (K, F, T, N_FEATURES) float32.
    """
    k = st.image.shape[0]
    spec = st.spec.to(torch.complex64)  # (M, F, T)
    scale = spec[0].abs().square().mean().sqrt().clamp_min(1e-8)  # reference-channel RMS of the clip
    ri = lambda z: torch.cat([z.real, z.imag], dim=-1)  # noqa: E731  (..., M) complex -> (..., 2M)
    x = ri((spec / scale).permute(1, 2, 0)).expand(k, -1, -1, -1)  # (K, F, T, 2M)
    y = ri((st.image / scale).permute(0, 2, 3, 1))  # (K, F, T, 2M)
    d = ri((st.direct / scale).permute(0, 2, 3, 1))  # (K, F, T, 2M)
    f, t = spec.shape[1:]
    active = st.active.float()  # (K, T)
    own = st.score  # (K, F, T)
    others_score = torch.where(st.active[:, None, :], st.score, torch.full_like(st.score, -1.0))  # (K, F, T)
    if k > 1:
        eye = torch.eye(k, dtype=torch.bool)[:, :, None, None]  # (K, K, 1, 1)
        other_max = others_score[None].expand(k, -1, -1, -1).masked_fill(eye, -1.0).amax(dim=1)  # (K, F, T)
    else:
        other_max = torch.full_like(own, -1.0)  # (K, F, T)
    n_others = (active.sum(dim=0, keepdim=True) - active) / 4.0  # (K, T)
    logp = torch.log(spec[0].abs().square() / scale ** 2 + 1e-6) / 10.0  # (F, T)
    scalars = torch.stack([st.mask[:k], st.mask[-1:].expand(k, -1, -1), own, other_max,
                           active[:, None, :].expand(-1, f, -1), n_others[:, None, :].expand(-1, f, -1),
                           logp.expand(k, -1, -1)], dim=-1)  # (K, F, T, 7)
    return torch.cat([x, y, d, scalars.float()], dim=-1)  # (K, F, T, 6M + 7)


class NarrowBand(nn.Module):
    """A bidirectional GRU along time, shared by every frequency, residual: (B, F, T, H) → same."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * hidden, hidden)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h (B, F, T, H) → (B, F, T, H)."""
        b, f, t, c = h.shape
        z, _ = self.gru(self.norm(h).reshape(b * f, t, c))  # (B·F, T, 2H)
        return h + self.proj(z).reshape(b, f, t, c)  # (B, F, T, H)


class CrossBand(nn.Module):
    """A convolution along frequency, shared by every frame, residual: (B, F, T, H) → same."""

    def __init__(self, hidden: int, kernel: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.conv = nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2)
        self.act = nn.PReLU(hidden)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h (B, F, T, H) → (B, F, T, H)."""
        b, f, t, c = h.shape
        z = self.norm(h).permute(0, 2, 3, 1).reshape(b * t, c, f)  # (B·T, H, F)
        z = self.act(self.conv(z)).reshape(b, t, c, f).permute(0, 3, 1, 2)  # (B, F, T, H)
        return h + z


class TrajectoryExtractor(nn.Module):
    """Features of K objects → corrections of their images and direct paths (see the module docstring)."""

    def __init__(self, config: ExtractorConfig | None = None) -> None:
        super().__init__()
        self.config = config or ExtractorConfig()
        c, m = self.config, self.config.n_mics
        self.encode = nn.Linear(6 * m + 7, c.hidden)
        self.blocks = nn.ModuleList()
        for _ in range(c.n_blocks):
            self.blocks.append(NarrowBand(c.hidden))
            self.blocks.append(CrossBand(c.hidden, c.kernel))
        self.head = nn.Linear(c.hidden, 4 * m)
        nn.init.zeros_(self.head.weight)  # the untrained extractor is the spatial stage
        nn.init.zeros_(self.head.bias)

    def forward(self, feats: torch.Tensor, st: StageSTFT) -> tuple[torch.Tensor, torch.Tensor]:
        """Corrected STFT-domain images and direct paths.

        Args:
            feats: (K, F, T, 6M + 7) from :func:`extractor_features`.
            st: the stage's output the features came from.
        Returns:
            (image (K, M, F, T), direct (K, M, F, T)) complex64.
        """
        m = self.config.n_mics
        h = self.encode(feats)  # (K, F, T, H)
        for block in self.blocks:
            h = block(h)  # (K, F, T, H)
        out = self.head(h)  # (K, F, T, 4M)
        a = torch.complex(out[..., :m], out[..., m:2 * m]).permute(0, 3, 1, 2)  # (K, M, F, T)
        b = torch.complex(out[..., 2 * m:3 * m], out[..., 3 * m:]).permute(0, 3, 1, 2)  # (K, M, F, T)
        spec = st.spec.to(torch.complex64)[None]  # (1, M, F, T)
        gate = st.active[:, None, None, :]  # (K, 1, 1, T): an inactive object stays silent
        return (st.image + a * spec) * gate, (st.direct + b * spec) * gate

    # ------------------------------------------------------------------ files
    def serialize(self) -> dict:
        """Weights and the arguments that rebuild the network."""
        return {"kind": "trajectory-extractor", "config": asdict(self.config), "state_dict": self.state_dict()}

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "TrajectoryExtractor":
        """Load weights written by :meth:`serialize` (``torch.save``)."""
        try:
            blob = torch.load(str(path), map_location="cpu", weights_only=False)
            model = cls(ExtractorConfig(**blob["config"]))
            model.load_state_dict(blob["state_dict"])
        except (OSError, KeyError, TypeError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
            raise DeepASAError(f"{path} is not a trajectory-extractor checkpoint ({exc})") from exc
        return model.eval()


def extract(mixture, activity, doa, extractor: TrajectoryExtractor) -> SpatialSeparation:
    """Each object's image, direct path and reverb: the spatial stage corrected by the learned extractor.

    Args:
        mixture: (M, N) at ``extractor.config.sample_rate``; activity: (K, T') bool; doa: (K, T', 3).
        extractor: a :class:`TrajectoryExtractor`.
    Returns:
        :class:`~deepasa.separation.SpatialSeparation` (the remainder is the complement, so the parts add
        up to the mixture).
    """
    cfg = extractor.config
    scfg = cfg.spatial_config()
    x, act, unit, offsets = check_trajectories(mixture, activity, doa)
    m, n = x.shape
    st = spatial_stft(x, act, unit, cfg.sample_rate, cfg.label_hop, offsets, scfg)
    if not len(act):
        zero = np.zeros((0, m, n), np.float32)
        return SpatialSeparation(zero, zero, zero, x.numpy(), st.mask.numpy())
    with torch.no_grad():
        img, dire = extractor(extractor_features(st), st)  # (K, M, F, T) each
    image, direct = istft(img, n, scfg), istft(dire, n, scfg)  # (K, M, N) each
    return SpatialSeparation(image=image.numpy(), direct=direct.numpy(), reverb=(image - direct).numpy(),
                             remainder=(x - image.sum(dim=0)).numpy(), mask=st.mask.numpy())


def load_extractor(path: str | Path | None):
    """The trajectory-conditioned extractor at ``path``, or None (the zero-training stage then)."""
    if path is None:
        return None
    if not Path(path).is_file():
        raise DeepASAError(f"no extractor checkpoint at {path}")
    return TrajectoryExtractor.from_pretrained(path)
