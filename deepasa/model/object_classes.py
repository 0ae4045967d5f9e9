"""The class of each separated sound object, read from its own signal (docs/object-classes.md).

Each object's reference-channel image (from :func:`deepasa.separation.separate` or any other separator) is cut
to the label frames where the object is active (:func:`object_signal`), embedded by the frozen pretrained
``aisfx`` sound-effect CNN (:class:`~deepasa.model.sfx_embedding.SFXEmbedding`, 512-d), standardised and read
out by a small classifier (linear, or one hidden layer) fitted on separated objects of simulated training
scenes (``python -m deepasa.train.object_classes fit``).

    >>> clf = ObjectClassifier.from_pretrained("checkpoints/object_classes.pt")       # doctest: +SKIP
    >>> out = separate(mixture, activity, doa)                                          # doctest: +SKIP
    >>> cls, prob = clf.classify_objects(out.image[:, 0], activity)                     # doctest: +SKIP
    >>> [clf.class_names[c] for c in cls]                                               # doctest: +SKIP

The embedding network is held outside the module tree (as :class:`~deepasa.model.DeepASA` holds ``sfx``): its
weights are always those of the installed ``aisfx`` wheel, never in this read-out's state dict or checkpoint.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deepasa.errors import DeepASAError

KIND = "object-classes"
EMB_DIM = 512


def object_signal(image_ref: np.ndarray, activity: np.ndarray, *, sample_rate: int = 16000, label_hop: float = 0.1,
                  max_seconds: float = 8.0, min_seconds: float = 0.5) -> np.ndarray:
    """The part of an object's signal the classifier reads: its active label frames, concatenated.

    Each active label frame (``label_hop`` s) is widened by one frame on each side; the selected frames are
    concatenated in time order. A trajectory shorter than the signal holds its last frame (as
    :func:`deepasa.separation.separate` does); a longer one is cut. When the result is longer than
    ``max_seconds`` the *loudest* window of whole label frames of that length (most energy; the first
    such window on ties) is kept. When it is shorter than ``min_seconds`` it is repeated (tiled) up to that
    length. An object with no active frame gives the whole signal (also tiled up to ``min_seconds``).

    Args:
        image_ref: (N,) the object's (reference-channel) signal.
        activity: (T',) bool, per label frame.
        sample_rate: Hz; label_hop: seconds per label frame.
        max_seconds: cap on the length; min_seconds: floor on the length (0: none).
    Returns:
        (L,) float32.
    """
    x = np.asarray(image_ref, dtype=np.float32).reshape(-1)  # (N,)
    act = np.asarray(activity).astype(bool).reshape(-1)  # (T',)
    hop = int(round(label_hop * sample_rate))
    n_frames = max(1, math.ceil(len(x) / hop))
    if len(act) == 0:
        act = np.zeros(n_frames, bool)
    elif len(act) < n_frames:
        act = np.concatenate([act, np.full(n_frames - len(act), act[-1])])  # hold the last frame
    act = act[:n_frames]  # (F,)
    if act.any():
        wide = act.copy()
        wide[1:] |= act[:-1]
        wide[:-1] |= act[1:]  # (F,) widened by one frame each side
        frames = np.flatnonzero(wide)  # (F_sel,)
        cap = max(1, int(math.floor(max_seconds / label_hop + 1e-9)))
        if len(frames) > cap:  # the loudest run of `cap` consecutive selected frames
            energy = np.array([float(np.square(x[f * hop:(f + 1) * hop], dtype=np.float64).sum()) for f in frames])
            window = np.convolve(energy, np.ones(cap), mode="valid")  # (F_sel - cap + 1,)
            start = int(np.argmax(window))  # first maximum on ties
            frames = frames[start:start + cap]
        y = np.concatenate([x[f * hop:(f + 1) * hop] for f in frames])  # (L,)
    else:
        y = x
        cap_n = int(round(max_seconds * sample_rate))
        if len(y) > cap_n:  # no activity at all: the loudest max_seconds, in label-frame steps
            e = np.concatenate([[0.0], np.cumsum(np.square(y, dtype=np.float64))])
            starts = np.arange(0, len(y) - cap_n + 1, hop)
            s = int(starts[np.argmax(e[starts + cap_n] - e[starts])])
            y = y[s:s + cap_n]
    need = int(round(min_seconds * sample_rate))
    if 0 < len(y) < need:
        y = np.tile(y, math.ceil(need / len(y)))[:need]
    elif len(y) == 0:
        y = np.zeros(max(need, hop), np.float32)
    return y.astype(np.float32, copy=False)


class ObjectClassifier(nn.Module):
    """Frozen aisfx embedding + standardisation + a linear or one-hidden-layer read-out: signals -> classes.

    Args:
        class_names: the C class names, in the order of the outputs.
        hidden: width of the hidden layer (0: linear read-out).
        dropout: dropout after the hidden layer while fitting.
        sample_rate, label_hop: of the signals and of the activity given to :meth:`classify_objects`.
        max_seconds, min_seconds: passed to :func:`object_signal`.
        load_embedding: load the aisfx weights of the installed wheel (False: random weights, for shape tests).
    """

    def __init__(self, class_names: list[str], hidden: int = 0, dropout: float = 0.3, sample_rate: int = 16000,
                 label_hop: float = 0.1, max_seconds: float = 8.0, min_seconds: float = 0.5,
                 load_embedding: bool = True) -> None:
        super().__init__()
        from deepasa.model.sfx_embedding import SFXEmbedding

        self.class_names = list(class_names)
        self.source: str | None = None  # the file it was loaded from (from_pretrained), for reports
        self.config = {"hidden": int(hidden), "dropout": float(dropout), "sample_rate": int(sample_rate),
                       "label_hop": float(label_hop), "max_seconds": float(max_seconds),
                       "min_seconds": float(min_seconds)}
        c = len(self.class_names)
        if c < 2:
            raise DeepASAError("ObjectClassifier needs at least two classes")
        self.register_buffer("mean", torch.zeros(EMB_DIM))  # (512,) feature standardisation
        self.register_buffer("std", torch.ones(EMB_DIM))  # (512,)
        self.head = (nn.Linear(EMB_DIM, c) if not hidden else
                     nn.Sequential(nn.Linear(EMB_DIM, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, c)))
        # frozen, outside the module tree: never in the state dict, the checkpoint or an optimizer
        object.__setattr__(self, "sfx", SFXEmbedding(sample_rate, load_weights=load_embedding))

    # ------------------------------------------------------------------------------------------ read-out
    def set_standardisation(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Set the feature standardisation (the training features' mean and std, each (512,))."""
        self.mean.copy_(torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.std.copy_(torch.as_tensor(np.asarray(std), dtype=torch.float32).clamp_min(1e-6))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        """Embeddings (K, 512) -> class logits (K, C)."""
        return self.head((emb - self.mean) / self.std)

    @torch.no_grad()
    def embed(self, signals: list[np.ndarray], batch: int = 16) -> torch.Tensor:
        """The aisfx embeddings of mono signals (any lengths ≥ ~0.2 s): (K, 512).

        Signals of equal length are embedded in batches; the others one by one (no padding, which would
        change the peak-normalised, max-over-time embedding).
        """
        out: list[torch.Tensor | None] = [None] * len(signals)
        by_len: dict[int, list[int]] = {}
        for i, s in enumerate(signals):
            by_len.setdefault(int(np.asarray(s).shape[-1]), []).append(i)
        for _, idx in sorted(by_len.items()):
            for j in range(0, len(idx), batch):
                part = idx[j:j + batch]
                x = torch.as_tensor(np.stack([np.asarray(signals[i], np.float32).reshape(-1) for i in part]))
                e = self.sfx(x)  # (B, 512)
                for i, row in zip(part, e):
                    out[i] = row
        if not signals:
            return torch.zeros(0, EMB_DIM)
        return torch.stack(out)  # type: ignore[arg-type]

    @torch.no_grad()
    def proba_from_embeddings(self, emb: torch.Tensor | np.ndarray) -> np.ndarray:
        """Class probabilities (K, C) of embeddings (K, 512)."""
        was = self.training
        self.eval()
        p = torch.softmax(self(torch.as_tensor(np.asarray(emb), dtype=torch.float32)), dim=-1)
        self.train(was)
        return p.numpy().astype(np.float64)

    def predict_proba(self, signals: list[np.ndarray]) -> np.ndarray:
        """Class probabilities of each signal (already cut, e.g. by :func:`object_signal`): (K, C), rows sum to 1."""
        if not len(signals):
            return np.zeros((0, len(self.class_names)))
        return self.proba_from_embeddings(self.embed(list(signals)))

    def classify_objects(self, image_ref: np.ndarray, activity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The class of each object from its reference-channel image and activity.

        Args:
            image_ref: (K, N) each object's reference-channel image (e.g. ``separate(...).image[:, 0]``).
            activity: (K, T') bool per label frame (``label_hop`` s).
        Returns:
            (class_index (K,) int64, probability (K, C) float64, rows summing to 1).
        """
        image_ref = np.asarray(image_ref)
        activity = np.asarray(activity)
        if image_ref.ndim != 2 or activity.ndim != 2 or len(image_ref) != len(activity):
            raise DeepASAError(f"classify_objects needs image_ref (K, N) and activity (K, T'), got "
                               f"{image_ref.shape} and {activity.shape}")
        cfg = self.config
        signals = [object_signal(image_ref[k], activity[k], sample_rate=cfg["sample_rate"],
                                 label_hop=cfg["label_hop"], max_seconds=cfg["max_seconds"],
                                 min_seconds=cfg["min_seconds"]) for k in range(len(image_ref))]
        prob = self.predict_proba(signals)  # (K, C)
        return prob.argmax(axis=1).astype(np.int64), prob

    # ------------------------------------------------------------------------------------------ files
    def serialize(self) -> dict:
        """What rebuilds the read-out (the aisfx weights stay in the wheel): kind, class names, config, weights."""
        return {"kind": KIND, "class_names": list(self.class_names), "config": dict(self.config),
                "state_dict": {k: v.detach().clone() for k, v in self.state_dict().items()}}

    @classmethod
    def from_serialized(cls, blob: dict, load_embedding: bool = True) -> "ObjectClassifier":
        """Rebuild from :meth:`serialize`'s dict."""
        if not isinstance(blob, dict) or blob.get("kind") != KIND:
            raise DeepASAError("not an object-classes read-out")
        model = cls(blob["class_names"], **blob["config"], load_embedding=load_embedding)
        model.load_state_dict(blob["state_dict"])
        return model.eval()

    @classmethod
    def from_pretrained(cls, path: str | Path, load_embedding: bool = True) -> "ObjectClassifier":
        """Load a read-out written by ``torch.save(clf.serialize(), path)`` (``source`` = the path it came from).

        Raises:
            DeepASAError: missing, unreadable or foreign file (one line).
        """
        try:
            blob = torch.load(str(path), map_location="cpu", weights_only=True)
            model = cls.from_serialized(blob, load_embedding=load_embedding)
            model.source = str(path)
            return model
        except DeepASAError as exc:
            raise DeepASAError(f"{path} is not an object-classes checkpoint ({exc})") from None
        except (OSError, KeyError, TypeError, ValueError, RuntimeError, EOFError, AttributeError,
                pickle.UnpicklingError) as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise DeepASAError(f"{path} is not an object-classes checkpoint ({first})") from None


def load_classifier(path: str | Path | None):
    """The object class read-out at ``path`` (default: ``checkpoints/object_classes.pt`` when it exists), or None."""
    from deepasa.model.paths import DEFAULT_CLASSES_CHECKPOINT

    path = DEFAULT_CLASSES_CHECKPOINT if path is None else Path(path)
    if not path.is_file():
        return None
    return ObjectClassifier.from_pretrained(path)
