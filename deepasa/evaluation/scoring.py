"""``deepasa evaluate``: every metric of a model on a dataset, as a JSON report and a table.

Per clip, the model's slots are aligned with the reference slots by one permutation — PIT with −SA-SDR on
the reference-channel image when the data have isolated sources (docs/spec.md §8), otherwise the SELD-loss
permutation of STARSS23 fine-tuning (docs/spec.md §5.2) — and then scored:

* ``separation``: SI-SDRi, SDRi (BSS-eval, 512 taps), SI-SDR, SDR of the image and of the direct path
  (``direct_…``), on the reference channel and averaged over channels (``…_m2m``), over the active sources
  (:func:`deepasa.metrics.evaluate_separation`); mean over clips, 95 % Student-t interval;
* ``seld``: DeepASA frame-level object metrics (ER, F, LE, LR, SELD; micro or class-macro) pooled over all
  clips, 95 % jackknife interval (leave one clip out);
* ``dcase``: the official DCASE 2023 segment metrics from DCASE CSVs written into a temporary folder (slots
  as tracks), one per *recording* as the official definition scores them: a dataset that cuts recordings into
  clips (STARSS23: items with ``recording`` and ``frame_offset``) has its clips put back in place, so a
  recording's length is its largest reference frame index and clips without reference events count too;
  other datasets one per clip; jackknife interval (leave one recording out);
* ``localization``: the same frame metrics with the classes ignored (an object is active or not), so
  systems without a classifier (the classical baseline) are scored on detection and DoA alone;
* ``ca_sdri``: the class-aware SDR improvement of DCASE 2025 Task 4 (:mod:`deepasa.metrics.ca_sdri`), when
  the system returns both classes and images;
* ``objects``: object-level recovery, what ``deepasa analyze`` delivers per object: over the true sources,
  the share whose aligned slot is detected (at least one active frame), the class accuracy of the detected
  ones, and the median over them of their mean DoA error on the frames where both are active
  (:func:`object_recovery`); the model card quotes it as the typical error of an analysed object;
* ``net1``: the same blocks for the Net-1 outputs of a CoI model (its own permutation);
* ``by_num_sources``: the same blocks again for the clips of each number N of true sources (the dataset's
  ``num_sources`` of each item, i.e. the reference, never the estimate): ``{"<N>": {"n_items", "n_sources",
  <blocks>, "ci95"}}``, each block computed from the clips with N sources alone, exactly what
  :func:`score_system` gives on that subset of the data (``net1`` has its own ``by_num_sources``).

Object-level intervals (``ci95["objects.detection_rate"]``, ``"objects.class_accuracy"``,
``"objects.doa_error_median_deg"``): 95 % percentile bootstrap over *clips* (:func:`object_intervals`; a clip's
sources are resampled together, since they share a room, a mixture and a permutation), 2,000 resamples from a
fixed seed, so a report is reproducible.

Any *system* — the network, a baseline of :mod:`deepasa.baselines`, the oracle — is scored the same way by
:func:`score_system`: it maps a batch to a :class:`~deepasa.model.deepasa.DeepASAOutput` and leaves the fields
it cannot estimate ``None``.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from deepasa.errors import DeepASAError
from deepasa.losses import LossWeights, apply_permutation, pit_sa_sdr, sed_targets, seld_loss
from deepasa.metrics import evaluate_folders, evaluate_separation, frames_from_slots, write_dcase_csv
from deepasa.metrics.ca_sdri import ca_sdri_mixture
from deepasa.metrics.separation import improvement
from deepasa.metrics.separation import si_sdr as si_sdr_np
from deepasa.metrics.seld_dcase import jackknife_estimation
from deepasa.metrics.seld_frame import FrameSELDStats, activity_decisions, angular_error_deg, seld_decisions

SELD_KEYS = ("ER", "F", "LE", "LR", "SELD")


def _t_interval(values: list[float]) -> tuple[float, list[float]]:
    """Mean and 95 % Student-t interval of finite values (NaN when there are none)."""
    from scipy import stats

    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return float("nan"), [float("nan"), float("nan")]
    mean = float(v.mean())
    if v.size < 2:
        return mean, [mean, mean]
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return mean, [mean - half, mean + half]


class _Scores:
    """Accumulates one output set (final or Net 1): per-clip separation, per-clip SELD sums, DCASE frames."""

    def __init__(self, n_classes: int, class_names: list[str] | None = None, detail: bool = False):
        self.n_classes = n_classes
        self.class_names = class_names or [str(c) for c in range(n_classes)]
        self.detail = detail
        self.sep: list[dict[str, float]] = []
        self.seld: list[FrameSELDStats] = []
        self.agnostic: list[FrameSELDStats] = []
        self.ca: list[float] = []
        self.pred_frames: dict[str, dict] = {}    # DCASE frame dicts per recording (or per clip)
        self.ref_frames: dict[str, dict] = {}
        self.clips: list[dict] = []       # detail: per clip {"id", "separation", "seld", "localization"}
        self.sources: list[dict] = []     # detail: per active source {"id", "slot", "si_sdri_db", ...}
        self.objects: list[dict] = []     # per true source {"detected", "class_ok", "doa_error_deg"}
        self.object_clip: list[int] = []  # per record of `objects`: the index of its clip (bootstrap unit)
        self.n_clips = 0                  # clips added with `absorb`

    def absorb(self, item: "_Scores") -> None:
        """Add the records of one clip, scored into its own accumulator ``item`` by :func:`_score_batch`.

        Lists are extended and DCASE frames merged per recording in the order they come, so an accumulator fed
        clip by clip holds exactly what one fed a whole batch at once would.
        """
        self.sep.extend(item.sep)
        self.seld.extend(item.seld)
        self.agnostic.extend(item.agnostic)
        self.ca.extend(item.ca)
        for mine, theirs in ((self.pred_frames, item.pred_frames), (self.ref_frames, item.ref_frames)):
            for rec, frames in theirs.items():
                mine.setdefault(rec, {}).update(frames)
        if self.detail:
            self.clips.extend(item.clips)
            self.sources.extend(item.sources)
        self.objects.extend(item.objects)
        self.object_clip.extend([self.n_clips] * len(item.objects))
        self.n_clips += 1

    def report(self, seld_average: str, workdir: Path) -> tuple[dict, dict]:
        """(blocks, intervals): ``{"separation", "seld", "dcase"}`` and ``{"block.key": [lo, hi]}``."""
        blocks: dict[str, dict] = {}
        ci: dict[str, list[float]] = {}
        if self.sep:
            blocks["separation"] = {}
            for key in self.sep[0]:
                mean, interval = _t_interval([s[key] for s in self.sep])
                blocks["separation"][key] = mean
                ci[f"separation.{key}"] = interval
        if self.seld:
            total = _sum_stats(self.seld, self.n_classes)
            blocks["seld"] = total.compute(seld_average)
            if len(self.seld) >= 2:
                partial = np.array([[_sum_stats(self.seld[:i] + self.seld[i + 1:], self.n_classes)
                                     .compute(seld_average)[k] for k in SELD_KEYS] for i in range(len(self.seld))])
                for j, k in enumerate(SELD_KEYS):
                    ci[f"seld.{k}"] = jackknife_estimation(blocks["seld"][k], partial[:, j])["ci"]
        if self.agnostic:
            total = _sum_stats(self.agnostic, 1)
            blocks["localization"] = total.compute("micro")
            if len(self.agnostic) >= 2:
                partial = np.array([[_sum_stats(self.agnostic[:i] + self.agnostic[i + 1:], 1).compute("micro")[k]
                                     for k in SELD_KEYS] for i in range(len(self.agnostic))])
                for j, k in enumerate(SELD_KEYS):
                    ci[f"localization.{k}"] = jackknife_estimation(blocks["localization"][k], partial[:, j])["ci"]
        if self.objects:
            blocks["objects"] = object_recovery(self.objects)
            for key, interval in object_intervals(self.objects, self.object_clip).items():
                ci[f"objects.{key}"] = interval
        if self.ca:
            mean, interval = _t_interval(self.ca)
            blocks["ca_sdri"] = {"ca_sdri_db": mean}
            ci["ca_sdri.ca_sdri_db"] = interval
        if self.seld:
            scored = {n for n, f in self.ref_frames.items() if f}   # the official code needs reference events
            if scored:
                pred_dir, ref_dir = workdir / "pred", workdir / "ref"
                pred_dir.mkdir(parents=True, exist_ok=True)
                ref_dir.mkdir(parents=True, exist_ok=True)
                for name in scored:
                    write_dcase_csv(pred_dir / f"{name}.csv", self.pred_frames[name])
                    write_dcase_csv(ref_dir / f"{name}.csv", self.ref_frames[name])
                res = evaluate_folders(pred_dir, ref_dir, self.n_classes, jackknife=len(scored) >= 2)
                blocks["dcase"] = {k: res[k] for k in SELD_KEYS}
                blocks["dcase"]["n_files"] = res["n_files"]
                for k, jk in res.get("jackknife", {}).items():
                    ci[f"dcase.{k}"] = jk["ci"]
        return blocks, ci


def object_recovery(objects: list[dict]) -> dict:
    """Object-level recovery from per-source records.

    Args:
        objects: one dict per true source: ``detected`` (bool: its aligned slot has an active frame),
            ``class_ok`` (bool: the slot's clip class is the source's), ``doa_error_deg`` (mean angular error
            over the frames where source and slot are both active; None when there are none).

    Returns:
        ``{"n_sources", "n_detected", "detection_rate", "class_accuracy", "class_accuracy_all",
        "doa_error_median_deg"}``: ``class_accuracy`` and ``doa_error_median_deg`` are over the detected
        sources (NaN when none is detected); ``class_accuracy_all`` counts every source, detected or not.

    >>> object_recovery([{"detected": True, "class_ok": True, "doa_error_deg": 10.0},
    ...                  {"detected": True, "class_ok": False, "doa_error_deg": 30.0},
    ...                  {"detected": False, "class_ok": True, "doa_error_deg": None}])["class_accuracy"]
    0.5
    """
    det = [o for o in objects if o["detected"]]
    errors = [o["doa_error_deg"] for o in det if o["doa_error_deg"] is not None]
    return {
        "n_sources": len(objects),
        "n_detected": len(det),
        "detection_rate": len(det) / len(objects) if objects else float("nan"),
        "class_accuracy": float(np.mean([o["class_ok"] for o in det])) if det else float("nan"),
        "class_accuracy_all": float(np.mean([o["class_ok"] for o in objects])) if objects else float("nan"),
        "doa_error_median_deg": float(np.median(errors)) if errors else float("nan"),
    }


BOOTSTRAP_RESAMPLES = 2000


def object_intervals(objects: list[dict], clips: list[int], *, resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = 0) -> dict[str, list[float]]:
    """95 % percentile-bootstrap intervals of the object-level rates of :func:`object_recovery`, over clips.

    Each resample draws as many clips as there are, with replacement, and takes every source of a drawn clip
    (a cluster bootstrap: the sources of one clip are not independent). ``detection_rate`` is detected/sources,
    ``class_accuracy`` right/detected and ``doa_error_median_deg`` the median over the detected sources with a
    DoA error, in each resample (resamples where a ratio or median is undefined are dropped).

    Args:
        objects: S records of :func:`object_recovery` (``detected``, ``class_ok``, ``doa_error_deg``).
        clips: (S,) the clip index of each record (any integer labels).
        resamples: bootstrap resamples.
        seed: of the resampling generator (fixed: the same data give the same intervals).

    Returns:
        ``{"detection_rate", "class_accuracy", "doa_error_median_deg"}`` → ``[low, high]``; ``[nan, nan]``
        where the point estimate itself is undefined (nothing detected, no source).

    >>> recs = [{"detected": d, "class_ok": True, "doa_error_deg": 10.0 if d else None} for d in (1, 1, 0, 1)]
    >>> object_intervals(recs, [0, 1, 2, 3])["class_accuracy"]
    [1.0, 1.0]
    """
    nan = [float("nan"), float("nan")]
    if not objects:
        return {"detection_rate": nan, "class_accuracy": nan, "doa_error_median_deg": nan}
    _, inv = np.unique(np.asarray(clips), return_inverse=True)                    # (S,) clip of each source
    n = int(inv.max()) + 1
    det = np.array([bool(o["detected"]) for o in objects])                            # (S,)
    ok = np.array([bool(o["class_ok"]) for o in objects]) & det                       # (S,)
    err = np.array([o["doa_error_deg"] if o["detected"] and o["doa_error_deg"] is not None else np.nan
                    for o in objects], dtype=np.float64)                              # (S,)
    per_clip = np.stack([np.bincount(inv, minlength=n), np.bincount(inv, det, minlength=n),
                         np.bincount(inv, ok, minlength=n)], axis=1).astype(np.float64)  # (n, 3)
    has = np.isfinite(err)
    order = np.argsort(err[has])
    e = err[has][order]                                                              # (E,) sorted errors
    e_clip = inv[has][order]                                                         # (E,) their clips
    rng = np.random.default_rng(seed)
    chunk = max(1, 2**22 // max(n, e.size))                  # resamples per pass: (R', n) and (R', E) stay small
    stats: dict[str, list[np.ndarray]] = {"detection_rate": [], "class_accuracy": [], "doa_error_median_deg": []}
    for start in range(0, resamples, chunk):
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, resamples - start))  # (R', n) draws
        src, n_det, n_ok = (weights @ per_clip).T                                        # (R',) each
        with np.errstate(invalid="ignore", divide="ignore"):
            stats["detection_rate"].append(n_det / src)
            stats["class_accuracy"].append(n_ok / n_det)
        if e.size:                                 # median of the drawn errors, each repeated as its clip is
            cum = np.cumsum(weights[:, e_clip], axis=1)                                  # (R', E)
            total = cum[:, -1]                                                           # (R',)
            lo_pos, hi_pos = (total - 1) // 2, total // 2               # 0-based middle positions (np.median)
            lo = e[np.minimum((cum <= lo_pos[:, None]).sum(1), e.size - 1)]
            hi = e[np.minimum((cum <= hi_pos[:, None]).sum(1), e.size - 1)]
            stats["doa_error_median_deg"].append(np.where(total > 0, (lo + hi) / 2, np.nan))
    point = object_recovery(objects)
    out = {}
    for key, parts in stats.items():
        values = np.concatenate(parts) if parts else np.empty(0)
        v = values[np.isfinite(values)]
        if not np.isfinite(point[key]) or v.size == 0:
            out[key] = list(nan)
        else:
            out[key] = [float(x) for x in np.percentile(v, [2.5, 97.5])]
    return out


def _sum_stats(items: list[FrameSELDStats], n_classes: int) -> FrameSELDStats:
    out = FrameSELDStats(n_classes)
    for s in items:
        for name in ("tp", "fp", "fn", "tp20", "fp20", "angle_sum_c", "active_c"):
            setattr(out, name, getattr(out, name) + getattr(s, name))
        out.angle_sum += s.angle_sum
        out.active += s.active
    return out


def _ref(x: torch.Tensor, ref_mic: int) -> torch.Tensor:
    """Reference channel of (..., K, N); K = 1 means the single output is the reference already."""
    return x[..., 0 if x.shape[-2] == 1 else ref_mic, :]


def _score_batch(sinks: list[_Scores], out, batch: dict, ids: list[str], ref_mic: int, with_sdr: bool,
                 seld_average: str, doa_threshold: float, onoff_threshold: float = 0.5,
                 merge_deg: float = 0.0) -> None:
    """Align one output set with the references and add each clip's records to its own accumulator.

    Args:
        sinks: B accumulators, one per clip of the batch (``sinks[b]`` receives the records of item ``b``;
            :meth:`_Scores.absorb` then adds them to the whole-set and the per-N accumulators).
        out: a :class:`~deepasa.model.deepasa.DeepASAOutput` for the batch (fields the system lacks are None).
        batch: the dataset batch (``mixture (B, M, N)``, targets).
        ids: the B clip names.
        ref_mic: reference channel.
        with_sdr: include BSS-eval SDR.
        seld_average: ``micro`` or ``macro``.
        doa_threshold: the ‖doa‖ threshold of the activity decision (:func:`activity_decisions`; 0 = on/off
            only, which the ``macro`` STARSS23 protocol always uses).
        onoff_threshold: the on/off probability threshold of the activity decision (the ``macro`` STARSS23
            protocol always uses 0.5).
        merge_deg: the duplicate-merge angle of the activity decision (:func:`~deepasa.model.decision.merge_duplicates`; 0 = none, what
            ``macro`` always uses).
    """
    if seld_average != "micro":
        doa_threshold, onoff_threshold, merge_deg = 0.0, 0.5, 0.0               # STARSS23: on/off > 0.5 alone
    has_sources = "image" in batch or "direct" in batch
    has_labels = "activity" in batch
    has_seld = has_labels and out.cls_logits is not None and out.onoff is not None
    if has_sources:
        tgt_img = batch["image"] if "image" in batch else batch["direct"] + batch["reverb"]   # (B, J, M|1, N)
    if has_sources and out.image is not None:
        _, perm = pit_sa_sdr(_ref(out.image, ref_mic).float(), _ref(tgt_img, ref_mic).float())  # (B, J)
    elif has_seld:
        perm = seld_loss(out, batch, LossWeights.seld()).perm
    else:
        raise DeepASAError("the data have neither isolated sources nor SELD labels the system can be scored on")
    n_batch = batch["mixture"].shape[0]
    clips = [{"id": name} for name in ids]
    src: dict[tuple[int, int], dict] = {}                                        # (b, slot) → per-source record
    if has_sources and out.image is not None:
        est_img = apply_permutation(out.image.float(), perm)                     # (B, J, K, N)
        est_dir = apply_permutation(out.direct.float(), perm) if out.direct is not None else None
        single = est_img.shape[2] == 1
        for b in range(n_batch):
            mix = batch["mixture"][b].float()                                    # (M, N)
            tgt_b = tgt_img[b].float()                                           # (J, M|1, N)
            active = (tgt_b.flatten(1).abs().amax(-1) > 0).numpy()              # (J,)
            if single:                                                           # reference-channel output
                kw = dict(est_image=est_img[b, :, 0], tgt_image=_ref(tgt_b, ref_mic), mixture=mix[ref_mic])
            else:
                kw = dict(est_image=est_img[b], tgt_image=tgt_b, mixture=mix, ref_channel=ref_mic)
                if est_dir is not None and "direct" in batch:
                    kw.update(est_direct=est_dir[b], tgt_direct=batch["direct"][b].float())
            sep = evaluate_separation(**kw, active=active, with_sdr=with_sdr)
            sinks[b].sep.append(sep)
            clips[b]["separation"] = sep
            if sinks[b].detail:                                                  # per-source SI-SDRi
                e_ref = _ref(est_img[b], ref_mic).numpy()                        # (J, N)
                t_ref = _ref(tgt_b, ref_mic).numpy()                             # (J, N)
                m_ref = mix[ref_mic].numpy()                                     # (N,)
                gain = improvement(si_sdr_np, e_ref, t_ref, m_ref)             # (J,); silent estimate → 0
                if est_dir is not None and "direct" in batch:
                    d_ref = _ref(est_dir[b], ref_mic).numpy()                    # (J, N)
                    td_ref = _ref(batch["direct"][b].float(), ref_mic).numpy()   # (J, N)
                    gain_d = improvement(si_sdr_np, d_ref, td_ref, m_ref)       # (J,)
                else:
                    gain_d = np.full(len(gain), np.nan)
                for j in np.flatnonzero(active):
                    src.setdefault((b, int(j)), {"id": ids[b], "slot": int(j)}).update(
                        si_sdri_db=float(gain[j]), direct_si_sdri_db=float(gain_d[j]))
    # the slot outputs in reference order, permuted once for the localisation and SELD blocks below
    cls_perm, onoff_perm, doa = (apply_permutation(getattr(out, k).float(), perm) if getattr(out, k) is not None
                                 else None for k in ("cls_logits", "onoff", "doa"))  # (B, J, C), (B, J, T'), (B, J, T', 3)
    if has_labels and onoff_perm is not None and doa is not None:
        act_out = activity_decisions(onoff_perm, doa, doa_threshold, onoff_threshold, cls_perm,
                                     merge_deg if cls_perm is not None else 0.0)  # (B, J, T')
        act_ref = batch["activity"].numpy() > 0.5                                # (B, J, T')
        for b, name in enumerate(ids):
            stats = FrameSELDStats(1)
            stats.update(act_out[b:b + 1, ..., None].astype(np.float64), act_ref[b:b + 1, ..., None].astype(np.float64),
                         doa[b:b + 1], batch["doa"][b:b + 1])
            sinks[b].agnostic.append(stats)
            clips[b]["localization"] = stats
            if sinks[b].detail:                                                  # per-source DoA error, recall
                theta = angular_error_deg(doa[b], batch["doa"][b])              # (J, T')
                for j in np.flatnonzero(act_ref[b].any(-1)):
                    on = act_ref[b, j]                                           # (T',) reference-active frames
                    src.setdefault((b, int(j)), {"id": name, "slot": int(j)}).update(
                        doa_error_deg=float(theta[j, on].mean()), frame_recall=float(act_out[b, j, on].mean()))
    if has_seld:
        cls_logits = cls_perm                                                    # (B, J, C)
        sed_out = seld_decisions(cls_logits, onoff_perm, doa, doa_threshold=doa_threshold,
                                 onoff_threshold=onoff_threshold, merge_deg=merge_deg)  # (B, J, T', C)
        sed_label = sed_targets(batch["cls"], batch["activity"], cls_logits.shape[-1]).numpy()  # (B, J, T', C)
        for b, name in enumerate(ids):
            stats = FrameSELDStats(cls_logits.shape[-1])
            stats.update(sed_out[b:b + 1], sed_label[b:b + 1], doa[b:b + 1], batch["doa"][b:b + 1])
            sinks[b].seld.append(stats)
            clips[b]["seld"] = stats
            rec, offset = _recording(batch, b, name)
            sinks[b].pred_frames.setdefault(rec, {}).update(frames_from_slots(sed_out[b], doa[b], frame_offset=offset))
            sinks[b].ref_frames.setdefault(rec, {}).update(
                frames_from_slots(sed_label[b], batch["doa"][b], frame_offset=offset))
        est_cls = cls_logits.argmax(-1).numpy()                                       # (B, J)
        _add_objects(sinks, sed_out, est_cls, doa, batch)
        if has_sources and out.image is not None:                               # CA-SDRi (DCASE 2025 Task 4)
            est_ref = _ref(est_img, ref_mic).numpy()                                      # (B, J, N)
            tgt_ref = _ref(tgt_img.float(), ref_mic).numpy()                              # (B, J, N)
            present = sed_out.max(axis=(2, 3)) > 0                                        # (B, J)
            for b in range(n_batch):
                ref_cls = batch["cls"][b].numpy()                                         # (J,)
                e = [j for j in range(est_ref.shape[1]) if present[b, j]]
                r = [j for j in range(tgt_ref.shape[1]) if ref_cls[j] >= 0 and np.abs(tgt_ref[b, j]).max() > 0]
                names = sinks[b].class_names
                sinks[b].ca.append(ca_sdri_mixture(
                    [names[est_cls[b, j]] for j in e], est_ref[b, e],
                    [names[ref_cls[j]] for j in r], tgt_ref[b, r],
                    batch["mixture"][b, ref_mic].float().numpy()))
    for b in range(n_batch):
        if sinks[b].detail:
            sinks[b].clips.append(clips[b])
    for b, j in sorted(src):
        if sinks[b].detail:
            sinks[b].sources.append(src[(b, j)])


def _recording(batch: dict, b: int, clip_id: str) -> tuple[str, int]:
    """(recording name, frame offset of the clip in it) of item ``b``: the dataset's ``recording`` and
    ``frame_offset`` when it cuts recordings into clips (STARSS23), else the clip itself at offset 0."""
    if "recording" in batch:
        return str(batch["recording"][b]), int(batch["frame_offset"][b])
    return clip_id, 0


def _add_objects(sinks: list[_Scores], sed_out: np.ndarray, est_cls: np.ndarray, doa: torch.Tensor,
                 batch: dict) -> None:
    """Per true source of the batch, the record of :func:`object_recovery`, added to ``sinks[b]`` of its clip.

    sed_out (B, J, T', C) decisions, est_cls (B, J) clip classes and doa (B, J, T', 3), all aligned with the
    reference slots; ``batch["cls"] (B, J)``, ``batch["activity"] (B, J, T')``, ``batch["doa"] (B, J, T', 3)``.
    """
    act_out = sed_out.max(-1) > 0                                                # (B, J, T')
    act_ref = batch["activity"].numpy() > 0.5                                    # (B, J, T')
    ref_cls = batch["cls"].numpy()                                               # (B, J)
    theta = angular_error_deg(doa, batch["doa"].float())                         # (B, J, T')
    for b, j in zip(*np.nonzero((ref_cls >= 0) & act_ref.any(-1))):
        both = act_ref[b, j] & act_out[b, j]                                     # (T',)
        sinks[b].objects.append({"detected": bool(act_out[b, j].any()),
                                 "class_ok": bool(est_cls[b, j] == ref_cls[b, j]),
                                 "doa_error_deg": float(theta[b, j, both].mean()) if both.any() else None})


System = Callable[[dict], object]


def _num_sources(batch: dict) -> list[int]:
    """The number of true sources of each clip of a batch, from the reference, never from an estimate.

    ``batch["num_sources"] (B,)`` where the dataset gives it (every loader of :mod:`deepasa.data`: the sources
    of the scene, capped at the J slots), else the slots with a class (``batch["cls"] (B, J)`` ≥ 0), else the
    slots whose reference image is not silent. Returns B ints.
    """
    if "num_sources" in batch:
        return [int(k) for k in torch.as_tensor(batch["num_sources"]).reshape(-1)]
    if "cls" in batch:
        return [int(k) for k in (batch["cls"] >= 0).sum(-1)]
    img = batch["image"] if "image" in batch else batch["direct"] + batch["reverb"]   # (B, J, M, N)
    return [int(k) for k in (img.flatten(2).abs().amax(-1) > 0).sum(-1)]


def _by_num_sources(groups: dict[int, _Scores], seld_average: str, workdir: Path) -> dict:
    """``{"<N>": {"n_items", "n_sources", <blocks of _Scores.report>, "ci95"}}``, N ascending."""
    out = {}
    for n in sorted(groups):
        blocks, ci = groups[n].report(seld_average, workdir / f"n{n}")
        out[str(n)] = {"n_items": groups[n].n_clips, "n_sources": n * groups[n].n_clips, **blocks, "ci95": ci}
    return out


def score_system(system: System, dataset, *, n_classes: int, ref_mic: int = 0, class_names: list[str] | None = None,
                 net1: bool = False, batch_size: int = 1, with_sdr: bool = True, seld_average: str = "micro",
                 progress: bool = True, detail: bool = False, desc: str = "evaluate",
                 by_num_sources: bool = True, doa_threshold: float = 0.5, onoff_threshold: float = 0.5,
                 merge_deg: float = 0.0) -> dict:
    """Score any system on a dataset with the metrics of this module.

    Args:
        system: ``system(batch) -> DeepASAOutput``; ``batch`` is a collated dataset batch (``mixture (B, M, N)``
            and the targets — only an oracle may read them). Fields the system cannot estimate stay ``None``.
        dataset: a map-style dataset of :class:`~deepasa.data.scenes.SceneDataset` items.
        n_classes: C of the SELD outputs.
        ref_mic: the reference channel.
        class_names: the C names (CA-SDRi matches labels by name).
        net1: also score ``out.net1`` (a CoI model's Net-1 outputs).
        batch_size: clips per call.
        with_sdr: include the BSS-eval SDR (slow).
        seld_average: ``micro`` or ``macro``.
        progress: progress bar.
        detail: keep per-clip and per-source records (``"details"``) for breakdowns.
        desc: progress-bar label.
        by_num_sources: also report every block per number of true sources (``"by_num_sources"``).
        doa_threshold: ‖doa‖ threshold of the activity decision with ``micro`` (0.5 = docs/spec.md §1; a model
            passes its ``decision_rule.doa_norm``; 0 = on/off only, what ``macro`` always uses).
        onoff_threshold: on/off probability threshold of the activity decision with ``micro`` (0.5 =
            docs/spec.md §1; a model passes its ``decision_rule.onoff``; ``macro`` always uses 0.5).
        merge_deg: duplicate-merge angle of the activity decision with ``micro`` (0 = none = docs/spec.md §1; a
            model passes its ``decision_rule.merge_deg``; ``macro`` always uses 0).

    Returns:
        ``{"separation", "seld", "dcase", "localization", "ca_sdri", "objects", "ci95", "seconds", "n_items"}``
        (blocks the system or the data cannot support are left out), ``"net1"`` with the same blocks when ``net1``, and
        ``"details": {"clips": [...], "sources": [...]}`` when ``detail`` (each clip: ``id``, ``separation``
        dict, ``seld``/``localization`` :class:`FrameSELDStats`). With ``by_num_sources`` (top level and in
        ``net1``): ``"by_num_sources": {"<N>": {"n_items": clips with N true sources, "n_sources": N × n_items,
        "separation", "seld", "dcase", "localization", "ca_sdri", "objects", "ci95"}}`` — string keys (JSON),
        one per N present in the data (:func:`_num_sources`: the dataset's ``num_sources``), each block what
        this function returns for those clips alone (``torch.utils.data.Subset``), with the same intervals:
        Student t (separation), jackknife over clips (frame SELD) or recordings (DCASE), bootstrap over clips
        (objects, :func:`object_intervals`).
    """
    from tqdm import tqdm

    final = _Scores(n_classes, class_names, detail)
    first = _Scores(n_classes, class_names, detail)
    final_n: dict[int, _Scores] = {}     # per number of true sources; records only, no details
    first_n: dict[int, _Scores] = {}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    seconds = 0.0
    with torch.inference_mode():
        for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress):
            t0 = time.perf_counter()
            out = system(batch)
            seconds += time.perf_counter() - t0
            ids = [str(s) for s in batch["scene_id"]]
            counts = _num_sources(batch)
            sets = [(final, final_n, out)]
            if net1 and getattr(out, "net1", None) is not None:
                sets.append((first, first_n, out.net1))
            for whole, per_n, output in sets:
                items = [_Scores(n_classes, class_names, detail) for _ in ids]
                _score_batch(items, output, batch, ids, ref_mic, with_sdr, seld_average, doa_threshold,
                             onoff_threshold, merge_deg)
                for item, count in zip(items, counts):
                    whole.absorb(item)
                    if by_num_sources:
                        per_n.setdefault(count, _Scores(n_classes, class_names)).absorb(item)
    report: dict = {"n_items": len(dataset), "seconds": seconds}
    with tempfile.TemporaryDirectory(prefix="deepasa-eval-") as tmp:
        blocks, ci = final.report(seld_average, Path(tmp) / "final")
        report.update(blocks)
        report["ci95"] = ci
        if by_num_sources:
            report["by_num_sources"] = _by_num_sources(final_n, seld_average, Path(tmp) / "final-n")
        if net1:
            blocks1, ci1 = first.report(seld_average, Path(tmp) / "net1")
            report["net1"] = {**blocks1, "ci95": ci1}
            if by_num_sources:
                report["net1"]["by_num_sources"] = _by_num_sources(first_n, seld_average, Path(tmp) / "net1-n")
            if detail:
                report["net1"]["details"] = {"clips": first.clips, "sources": first.sources}
    if detail:
        report["details"] = {"clips": final.clips, "sources": final.sources}
    return report


def open_scored_dataset(data: str | Path, split: str, dataset: str, *, n_slots: int, sample_rate: int,
                        clip_seconds: float, n_mics: int, limit: int | None = None, n_classes: int | None = None,
                        options: dict | None = None):
    """The dataset a system is scored on, checked against what the system expects.

    Args:
        data: dataset root; ``split`` its split folder; ``dataset`` its format (:mod:`deepasa.data.formats`).
        n_slots, sample_rate, clip_seconds: J, the rate and the clip length of the system.
        n_mics: the channels the system takes.
        limit: only the first ``limit`` items.
        n_classes: the system's C, checked against the data's class names (None: not checked).
        options: extra loader arguments.
    Returns:
        (dataset, its class names or None).
    Raises:
        DeepASAError: a missing folder, or data whose channels or classes do not fit the system.
    """
    from deepasa.data.formats import open_dataset

    data = Path(data)
    if not data.is_dir():
        raise DeepASAError(f"dataset folder not found: {data}")
    ds = open_dataset(dataset, data, split, n_slots=n_slots, sample_rate=sample_rate, clip_seconds=clip_seconds,
                      options=options)
    names = getattr(ds, "class_names", None)
    if n_classes is not None and names and len(names) != n_classes:
        raise DeepASAError(f"model/data mismatch: the model has {n_classes} classes, {data} has {len(names)}")
    if limit is not None:
        ds = Subset(ds, range(min(limit, len(ds))))
    if len(ds) == 0:
        raise DeepASAError(f"{data}/{split} has no items")
    first = ds[0]["mixture"]
    if first.shape[0] != n_mics:
        raise DeepASAError(f"model/data mismatch: the model expects {n_mics} channels, the data have {first.shape[0]}")
    return ds, names


def evaluate(checkpoint: str | Path, data: str | Path, *, split: str = "test", dataset: str = "scenes",
             batch_size: int = 1, limit: int | None = None, seld_average: str = "micro", with_sdr: bool = True,
             progress: bool = True, dataset_options: dict | None = None, by_num_sources: bool = True) -> dict:
    """Score a model on one split of a dataset.

    The model card (``checkpoints/README.md``, ``scripts/model_card.py``) quotes two held-out test sets, each
    with a seed of its own that no choice was ever made on, every metric also per number of sources
    (``by_num_sources``):

    (a) the default scenes (2–5 sources, probabilities 0.1/0.2/0.3/0.4)::

            deepasa simulate --out data/sim --split test --num-scenes 200 --seed 2025 --subtype FLOAT

    (b) 1–2-source scenes (half each, moving with the default probability)::

            deepasa simulate --out data/sim_1-2 --split test --num-scenes 200 --seed 2026 --subtype FLOAT \\
                --set 'num_sources=[1,2]' --set 'num_sources_weights=[0.5,0.5]'

    each scored with ``deepasa evaluate --checkpoint checkpoints/<model>.pt --data <root> --split test --out
    checkpoints/eval/<report>.json`` (the card names the reports).

    Args:
        checkpoint: a ``DeepASA.save`` file or a ``deepasa train`` Lightning checkpoint.
        data: dataset root; ``split`` the split folder; ``dataset`` its format (``scenes``, ``starss23``,
            ``mcfuss``, ``dcase25t4``).
        batch_size: clips per forward pass.
        limit: score only the first ``limit`` clips.
        seld_average: ``micro`` (ASA2; activity decided by the model's rule, its ``decision_rule``: ``onoff``,
            ``doa_norm`` and ``merge_deg``) or ``macro`` (STARSS23; decisions from on/off > 0.5 alone, as that
            protocol).
        with_sdr: include the BSS-eval SDR (slow).
        progress: show a progress bar.
        dataset_options: extra loader arguments.
        by_num_sources: also every block per number of true sources (see :func:`score_system`).

    Returns:
        ``{"checkpoint", "data", "split", "n_items", "model", "separation": {...}, "seld": {...},
        "dcase": {...}, "localization": {...}, "ca_sdri": {...}, "objects": {...}, "ci95": {"block.key": [low,
        high]}, "seconds": model time, "by_num_sources": {"<N>": {"n_items", "n_sources", blocks, "ci95"}},
        "net1": {same blocks + ci95 + by_num_sources}}`` (blocks the data cannot support are left out).

    Raises:
        DeepASAError: missing checkpoint or data, a model/data mismatch (rate, channels, slots, classes).
    """
    from deepasa.model.loading import load_model

    model = load_model(checkpoint).eval()
    cfg, rule = model.config, model.decision_rule
    ds, names = open_scored_dataset(data, split, dataset, n_slots=cfg.n_slots, sample_rate=cfg.sample_rate,
                                    clip_seconds=cfg.clip_seconds, n_mics=cfg.n_mics, limit=limit,
                                    n_classes=cfg.n_classes if cfg.seld_heads else None, options=dataset_options)
    coi = cfg.coi_steps > 0
    scored = score_system(lambda batch: model(batch["mixture"], net1_audio=coi), ds, n_classes=cfg.n_classes,
                          ref_mic=cfg.ref_mic, class_names=names, net1=coi, batch_size=batch_size,
                          with_sdr=with_sdr, seld_average=seld_average, progress=progress,
                          by_num_sources=by_num_sources, doa_threshold=rule.doa_norm,
                          onoff_threshold=rule.onoff, merge_deg=rule.merge_deg)
    report: dict = {"checkpoint": str(checkpoint), "data": str(data), "split": split, "dataset": dataset,
                    "n_items": len(ds), "seld_average": seld_average,
                    "model": {"n_classes": cfg.n_classes, "n_slots": cfg.n_slots, "sample_rate": cfg.sample_rate,
                              # the decision rule under the keys of the reports written when it was config
                              # fields, so old and new reports compare
                              "coi_steps": cfg.coi_steps, "detect_doa_norm": rule.doa_norm,
                              "detect_onoff": rule.onoff, "detect_merge_deg": rule.merge_deg}}
    report.update({k: v for k, v in scored.items() if k != "n_items"})
    return report


def strict_json(value):
    """``value`` with every non-finite float replaced by None, so the report is standard JSON (NaN is not).

    >>> strict_json({"a": [1.0, float("nan")], "b": {"c": float("inf")}})
    {'a': [1.0, None], 'b': {'c': None}}
    """
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


#: The columns of the per-N table of :func:`format_table`: (header, block, key).
BY_N_COLUMNS = (("detected", "objects", "detection_rate"), ("class acc.", "objects", "class_accuracy"),
                ("DoA med °", "objects", "doa_error_median_deg"), ("SI-SDRi", "separation", "si_sdri_db"),
                ("direct SI-SDRi", "separation", "direct_si_sdri_db"), ("frame SELD", "seld", "SELD"),
                ("ER", "seld", "ER"), ("F", "seld", "F"), ("LE", "seld", "LE"), ("LR", "seld", "LR"),
                ("DCASE SELD", "dcase", "SELD"))


def format_by_num_sources(by_n: dict, prefix: str = "") -> list[str]:
    """The ``by_num_sources`` block of a report as aligned text lines: one row per N, point estimates only.

    Args:
        by_n: ``report["by_num_sources"]`` (``{"<N>": {"n_items", "n_sources", blocks…}}``).
        prefix: put before the title (``"net1 "``).

    Returns:
        the lines (title, header, one per N); none for an empty block.
    """
    if not by_n:
        return []
    cols = [c for c in BY_N_COLUMNS if any(c[2] in rep.get(c[1], {}) for rep in by_n.values())]
    rows = [("N", "clips", "sources", *(c[0] for c in cols))]
    for n in sorted(by_n, key=int):
        rep = by_n[n]
        cells = []
        for _, block, key in cols:
            value = rep.get(block, {}).get(key)
            cells.append("—" if value is None or value != value else f"{value:.3f}")
        rows.append((str(n), str(rep.get("n_items", "")), str(rep.get("n_sources", "")), *cells))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [f"{prefix}by number of sources:"] + ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]


def format_table(report: dict) -> str:
    """The report as an aligned text table: metric, mean, 95 % interval (and Net 1 next to it for CoI), then,
    when the report has ``by_num_sources``, the compact per-N table of :func:`format_by_num_sources` (and Net 1's)."""
    rows = [("metric", "mean", "95% interval")]

    def add(prefix: str, rep: dict) -> None:
        for block in ("separation", "seld", "dcase", "localization", "ca_sdri", "objects"):
            for key, value in rep.get(block, {}).items():
                if key == "n_files" or not isinstance(value, (int, float)):
                    continue
                ci = rep.get("ci95", {}).get(f"{block}.{key}")
                interval = f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci and None not in ci else "—"
                shown = f"{value:d}" if isinstance(value, int) else f"{value:.4f}"
                rows.append((f"{prefix}{block}.{key}", shown, interval))

    add("", report)
    if "net1" in report:
        add("net1.", report["net1"])
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{report['n_items']} clips of {report['data']} ({report['split']})"
             + (f", trajectory-first pipeline: {report['pipeline']['name']}" if "pipeline" in report else "")]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines += format_by_num_sources(report.get("by_num_sources", {}))
    lines += format_by_num_sources(report.get("net1", {}).get("by_num_sources", {}), prefix="net1 ")
    return "\n".join(lines)
