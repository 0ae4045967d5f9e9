"""The trajectory-first pipeline as a system of :func:`~deepasa.evaluation.score_system` (``deepasa evaluate --finder``).

Per clip of a batch: find the objects' trajectories (a map finder, or the reference trajectories for the
oracle rows), separate every object by when and where (:func:`deepasa.separation.separate`, or the learned
extractor on top of it), read each object's class from its own separated reference channel, and return
everything as a :class:`~deepasa.model.DeepASAOutput` with J slots, so the same slot alignment and metrics
score it as the network:

* ``image``, ``direct``, ``reverb`` (B, J, M, N): the objects' signals, exactly what ``analyze`` writes
  (an empty slot is silence, so a missed source scores 0 dB, never another object's leftover);
* ``onoff`` (B, J, T'): ±``logit`` where the object is active or not (the decision *is* the trajectory);
* ``doa`` (B, J, T', 3): unit vectors (norm 1 > the 0.5 norm threshold of the activity decision);
* ``cls_logits`` (B, J, C) and ``sed`` (B, J, T', C): log-probabilities of the read-out, mapped by name onto
  the dataset's classes (a read-out class the data do not have gets no weight); without a read-out every
  object is class 0 and only the class-agnostic blocks mean anything.

Trajectory sources (``trajectories``):

* a :class:`~deepasa.model.finder.MapFinder` spec: ``"finder"`` (the shipped learned finder), ``"srp"`` or a
  finder checkpoint path — what the shipped pipeline does;
* ``"true"``: each reference source's own activity and direction (the ceiling of the spatial stage);
* ``"true-activity"``: the true activity alone, no direction (the stage shares each frame among the active
  objects);
* ``"true-direction"``: the true directions alone, every object on all the time;
* ``"gated"``: no stage at all — each object is the mixture gated by its true activity (the trivial oracle
  that says what *when* alone is worth).

A clip has at most J slots: when the finder returns more objects, the J with the largest summed detection
score are kept (the count of dropped objects is kept in :attr:`TrajectoryFirstSystem.dropped`); ``analyze``
itself keeps every object.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deepasa.errors import DeepASAError
from deepasa.model.deepasa import DeepASAOutput

ORACLES = ("true", "true-activity", "true-direction", "gated")
REPO = Path(__file__).resolve().parents[2]

__all__ = ["TrajectoryFirstSystem", "ORACLES"]


class TrajectoryFirstSystem:
    """Finder → spatial stage (or extractor) → class read-out, batch in, :class:`DeepASAOutput` out.

    Args:
        trajectories: ``"finder"``, ``"srp"``, a finder checkpoint path, a
            :class:`~deepasa.model.finder.MapFinder`, or one of :data:`ORACLES` (module docstring).
        class_names: the dataset's C class names (the outputs' class axis); None = the read-out's own.
        classifier: an :class:`~deepasa.model.object_classes.ObjectClassifier`, or None (every object class 0).
        extractor: a :class:`~deepasa.model.extractor.TrajectoryExtractor`, or None (the zero-training stage).
        sample_rate: the pipeline's rate (the data must be at it).
        label_hop: seconds per label frame (the data's T' frames).
        logit: magnitude of the ±logits that encode the on/off decisions.
        fmt: ``"mic"`` or ``"foa"`` (ACN/SN3D): the data's format (FOA: the intensity finder for ``"srp"``, a
            learned finder on a virtual MIC rendering, the FOA spatial stage; the extractor is MIC-only).
    """

    def __init__(self, trajectories, class_names: list[str] | None = None, *, classifier=None, extractor=None,
                 sample_rate: int = 16000, label_hop: float = 0.1, logit: float = 20.0, fmt: str = "mic") -> None:
        from deepasa.model.finder import MapFinder

        self.fmt = fmt
        self.oracle = trajectories if isinstance(trajectories, str) and trajectories in ORACLES else None
        if self.oracle is None and not isinstance(trajectories, MapFinder):
            trajectories = MapFinder(trajectories, sample_rate=sample_rate, label_hop=label_hop, fmt=fmt)
        self.finder = None if self.oracle else trajectories
        self.classifier, self.extractor = classifier, extractor
        own = list(classifier.class_names) if classifier is not None else ["object"]
        self.class_names = list(class_names) if class_names is not None else own
        index = {name: i for i, name in enumerate(self.class_names)}
        self._to_data = np.array([index.get(name, -1) for name in own])  # (C_own,) read-out class → data class
        if classifier is not None and (self._to_data < 0).all():
            raise DeepASAError(f"the class read-out's classes ({', '.join(own)}) are none of the data's "
                               f"({', '.join(self.class_names)})")
        self.sample_rate, self.label_hop, self.logit = sample_rate, label_hop, logit
        self.dropped = 0  # objects found beyond the J slots, summed over the clips seen

    @property
    def name(self) -> str:
        """A short description for reports: trajectories + separation."""
        traj = self.oracle or ("srp" if self.finder.spec == "srp" else Path(self.finder.spec).name)
        sep = "mixture gate" if self.oracle == "gated" else ("extractor" if self.extractor is not None else "spatial stage")
        return f"{traj} + {sep}"

    def trajectories(self, mixture: np.ndarray, item: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Objects of one clip: activity (K, T') bool, doa (K, T', 3) unit, strength (K,) (for the J cut).

        Args:
            mixture: (M, N) float32 at ``sample_rate``.
            item: this clip's reference (``activity (J, T')``, ``doa (J, T', 3)``), read by the oracles only.
        """
        n_frames = int(round(mixture.shape[-1] / (self.label_hop * self.sample_rate)))
        if self.oracle is None:
            tracks = self.finder.track(self.finder.scores(mixture))
            act = tracks.activity[:, :n_frames]  # (K, T')
            keep = act.any(axis=1)
            strength = (tracks.score[:, :n_frames] * act).sum(axis=1)  # (K,)
            return act[keep], tracks.doa[keep, :n_frames], strength[keep]
        act = item["activity"].numpy() > 0.5  # (J, T')
        doa = item["doa"].numpy().astype(np.float64)  # (J, T', 3)
        keep = act.any(axis=1)
        act, doa = act[keep], doa[keep]
        mean = np.stack([doa[k][act[k]].mean(axis=0) for k in range(len(act))]) if len(act) else np.zeros((0, 3))
        mean /= np.maximum(np.linalg.norm(mean, axis=-1, keepdims=True), 1e-9)  # (K, 3)
        doa = np.where(act[..., None], doa, mean[:, None, :])  # (K, T', 3): mean direction where silent
        doa /= np.maximum(np.linalg.norm(doa, axis=-1, keepdims=True), 1e-9)
        if self.oracle == "true-activity":
            doa = np.tile([1.0, 0.0, 0.0], (*act.shape, 1))  # (K, T', 3): unused by the stage
        elif self.oracle == "true-direction":
            act = np.ones_like(act)
        return act, doa, act.sum(axis=1).astype(float)

    def separate(self, mixture: np.ndarray, act: np.ndarray, doa: np.ndarray):
        """(image, direct) (K, M, N) of the objects of one clip."""
        if self.oracle == "gated":
            hop = int(round(self.label_hop * self.sample_rate))
            gate = np.repeat(act.astype(np.float32), hop, axis=1)[:, : mixture.shape[-1]]  # (K, N)
            gate = np.pad(gate, ((0, 0), (0, mixture.shape[-1] - gate.shape[1])), mode="edge")  # (K, N)
            image = gate[:, None, :] * mixture[None]  # (K, M, N)
            return image, image
        if self.extractor is not None:
            from deepasa.model.extractor import extract

            out = extract(mixture, act, doa, self.extractor)
        else:
            from deepasa.separation import SpatialConfig, separate

            options = {"use_direction": False} if self.oracle == "true-activity" else {}
            out = separate(mixture, act, doa, sample_rate=self.sample_rate, label_hop=self.label_hop,
                           config=SpatialConfig(**options), fmt=self.fmt)
        return out.image, out.direct

    def classify(self, image: np.ndarray, act: np.ndarray) -> np.ndarray:
        """(K, C) log-probabilities over the data's classes of K objects: image (K, M, N), act (K, T')."""
        c = len(self.class_names)
        logp = np.full((len(image), c), np.log(1e-6), np.float32)  # (K, C)
        if self.classifier is None:
            logp[:, 0] = 0.0
            return logp
        from deepasa.model.object_classes import object_signal

        signals = [object_signal(image[k, 0], act[k], sample_rate=self.sample_rate, label_hop=self.label_hop)
                   for k in range(len(image))]
        prob = self.classifier.predict_proba(signals) if signals else np.zeros((0, len(self._to_data)))  # (K, C_own)
        for i, j in enumerate(self._to_data):
            if j >= 0:
                logp[:, j] = np.log(np.maximum(prob[:, i], 1e-6))
        return logp

    def __call__(self, batch: dict) -> DeepASAOutput:
        """The pipeline's outputs for a batch.

        Args:
            batch: ``mixture (B, M, N)``; the oracles also read ``activity (B, J, T')`` and ``doa (B, J, T', 3)``
                (the data's J slots and T' frames; the finders read them for the shapes only).
        Returns:
            :class:`DeepASAOutput` with ``image``, ``direct``, ``reverb`` (B, J, M, N), ``onoff`` (B, J, T'),
            ``doa`` (B, J, T', 3), ``cls_logits`` (B, J, C), ``sed`` (B, J, T', C).
        """
        mix = batch["mixture"].float()  # (B, M, N)
        b_n, m, n = mix.shape
        j_n, t_n = batch["activity"].shape[1:3]
        c = len(self.class_names)
        image = torch.zeros(b_n, j_n, m, n)  # (B, J, M, N)
        direct = torch.zeros(b_n, j_n, m, n)  # (B, J, M, N)
        onoff = torch.full((b_n, j_n, t_n), -self.logit)  # (B, J, T')
        doa = torch.zeros(b_n, j_n, t_n, 3)  # (B, J, T', 3)
        cls = torch.zeros(b_n, j_n, c)  # (B, J, C)
        for b in range(b_n):
            x = mix[b].numpy()  # (M, N)
            item = {"activity": batch["activity"][b], "doa": batch["doa"][b]}
            act, unit, strength = self.trajectories(x, item)
            if len(act) > j_n:
                keep = np.sort(np.argsort(-strength, kind="stable")[:j_n])
                self.dropped += len(act) - j_n
                act, unit = act[keep], unit[keep]
            k = len(act)
            if k == 0:
                continue
            img, dp = self.separate(x, act, unit)
            t_k = min(t_n, act.shape[1])
            image[b, :k] = torch.from_numpy(np.asarray(img, np.float32))
            direct[b, :k] = torch.from_numpy(np.asarray(dp, np.float32))
            onoff[b, :k, :t_k] = torch.from_numpy(np.where(act[:, :t_k], self.logit, -self.logit).astype(np.float32))
            doa[b, :k, :t_k] = torch.from_numpy(unit[:, :t_k].astype(np.float32))
            cls[b, :k] = torch.from_numpy(self.classify(np.asarray(img), act))
        sed = torch.softmax(cls, dim=-1)[:, :, None, :].expand(-1, -1, t_n, -1)  # (B, J, T', C)
        return DeepASAOutput(image=image, direct=direct, reverb=image - direct, cls_logits=cls, sed=sed,
                             onoff=onoff, doa=doa)


def evaluate_pipeline(data: str | Path, trajectories="finder", *, split: str = "test", dataset: str = "scenes",
                      classes: str | Path | None | bool = None, extractor: str | Path | None = None,
                      n_slots: int = 5, batch_size: int = 1, limit: int | None = None, seld_average: str = "micro",
                      with_sdr: bool = True, progress: bool = True, dataset_options: dict | None = None,
                      by_num_sources: bool = True, fmt: str = "mic") -> dict:
    """Score the trajectory-first pipeline on one split of a dataset (``deepasa evaluate --finder``).

    The same report as :func:`~deepasa.evaluation.evaluate` (every block, intervals, ``by_num_sources``), with
    ``"pipeline": {"trajectories", "separation", "classes", "n_slots", "dropped_objects"}`` in place of
    ``"checkpoint"``/``"model"``. 16-kHz MIC data with 100-ms label frames (the pipeline's own format).

    Args:
        data: dataset root; ``split``/``dataset`` as :func:`~deepasa.evaluation.evaluate`.
        trajectories: ``"finder"``, ``"srp"``, a finder checkpoint, or one of :data:`ORACLES`.
        classes: the object class read-out's checkpoint (None: the shipped one when present; False: none).
        extractor: a trajectory-conditioned extractor checkpoint (None: the zero-training spatial stage).
        n_slots: J, the most objects scored per clip (the model card's sets have at most 5 sources).
        batch_size, limit, seld_average, with_sdr, progress, dataset_options, by_num_sources: as
            :func:`~deepasa.evaluation.evaluate`.
        fmt: the data's format, ``"mic"`` or ``"foa"`` (``deepasa simulate --format foa``): checked against the
            channel energies of the first clip.
    Returns:
        the report dict.
    Raises:
        DeepASAError: missing data or checkpoints, data the pipeline cannot take (rate, channels).
    """
    from deepasa.evaluation.scoring import open_scored_dataset, score_system
    from deepasa.model.extractor import load_extractor
    from deepasa.model.object_classes import load_classifier

    from deepasa.model.finder import MapFinder
    from deepasa.model.paths import DEFAULT_CLASSES_CHECKPOINT

    if not (isinstance(trajectories, str) and trajectories in ORACLES) and not isinstance(trajectories, MapFinder):
        MapFinder.check_spec(trajectories, f"--finder takes finder, srp, a finder checkpoint, or an oracle: "
                                           f"{', '.join(ORACLES)}")
        trajectories = MapFinder(str(trajectories), fmt=fmt)
    if classes is False:
        classifier, classes_path = None, None
    else:
        if classes is not None and not Path(classes).is_file():
            raise DeepASAError(f"no class read-out checkpoint at {classes}")
        classifier = load_classifier(classes)
        classes_path = _shown(classes if classes is not None else DEFAULT_CLASSES_CHECKPOINT) if classifier else None
    extractor_model = load_extractor(extractor)
    if extractor_model is not None and trajectories == "gated":
        raise DeepASAError("the gated oracle separates nothing: it takes no extractor")
    if fmt == "foa" and extractor_model is not None:
        raise DeepASAError("the trajectory-conditioned extractor reads MIC recordings, not FOA")
    ds, names = open_scored_dataset(data, split, dataset, n_slots=n_slots, sample_rate=16000, clip_seconds=4.0,
                                    n_mics=4, limit=limit, options=dataset_options)
    from deepasa.audio.io import check_format

    first = ds[0]["mixture"].double().numpy()  # (4, N)
    check_format((first ** 2).sum(axis=1), fmt, f"{data}/{split}")
    system = TrajectoryFirstSystem(trajectories, names, classifier=classifier, extractor=extractor_model, fmt=fmt)
    scored = score_system(system, ds, n_classes=len(system.class_names), ref_mic=0, class_names=system.class_names,
                          batch_size=batch_size, with_sdr=with_sdr, seld_average=seld_average, progress=progress,
                          by_num_sources=by_num_sources, doa_threshold=0.5, onoff_threshold=0.5, merge_deg=0.0)
    report: dict = {"data": str(data), "split": split, "dataset": dataset, "n_items": len(ds),
                    "seld_average": seld_average, "format": fmt,
                    "pipeline": {"trajectories": _shown(getattr(trajectories, "spec", trajectories)), "name": system.name,
                                 "separation": "extractor" if extractor_model is not None else
                                 ("mixture gate" if trajectories == "gated" else "spatial"),
                                 "extractor": None if extractor is None else _shown(extractor),
                                 "classes": classes_path,
                                 "n_slots": n_slots, "dropped_objects": system.dropped}}
    report.update({k: v for k, v in scored.items() if k != "n_items"})
    return report


def _shown(path) -> str:
    """A path as a report shows it: relative to the repository when inside it (``srp``, oracles unchanged)."""
    p = Path(str(path))
    return p.resolve().relative_to(REPO).as_posix() if p.is_absolute() and p.resolve().is_relative_to(REPO) else str(path)
