"""``deepasa evaluate``: every metric of a model on a dataset, as a JSON report and a table.

Per clip, the model's slots are aligned with the reference slots by one permutation — PIT with −SA-SDR on
the reference-channel image when the data have isolated sources (SPEC §8), otherwise the SELD-loss
permutation (SPEC §5.2) — and then scored:

* ``separation``: SI-SDRi, SDRi (BSS-eval, 512 taps), SI-SDR, SDR of the image and of the direct path
  (``direct_…``), on the reference channel and averaged over channels (``…_m2m``), over the active sources
  (:func:`deepasa.metrics.evaluate_separation`); mean over clips, 95 % Student-t interval;
* ``seld``: DeepASA frame-level object metrics (ER, F, LE, LR, SELD; micro or class-macro) pooled over all
  clips, 95 % jackknife interval (leave one clip out);
* ``dcase``: the official DCASE 2023 segment metrics from DCASE CSVs written per clip into a temporary
  folder (slots as tracks), jackknife interval;
* ``net1``: the same three blocks for the Net-1 outputs of a CoI model (its own permutation).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from deepasa.errors import DeepASAError
from deepasa.losses import LossWeights, apply_permutation, pit_sa_sdr, sed_targets, seld_loss
from deepasa.metrics import evaluate_folders, evaluate_separation, frames_from_slots, write_dcase_csv
from deepasa.metrics.seld_dcase import jackknife_estimation
from deepasa.metrics.seld_frame import FrameSELDStats, seld_decisions

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

    def __init__(self, n_classes: int):
        self.n_classes = n_classes
        self.sep: list[dict[str, float]] = []
        self.seld: list[FrameSELDStats] = []
        self.pred_frames: dict[str, dict] = {}
        self.ref_frames: dict[str, dict] = {}

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


def _score_batch(scores: _Scores, out, batch: dict, ids: list[str], cfg, with_sdr: bool, seld_average: str) -> None:
    """Align one output set with the references and add its clips to ``scores``."""
    has_sources = "image" in batch or "direct" in batch
    has_seld = "activity" in batch and out.cls_logits is not None
    if has_sources:
        tgt_img = batch["image"] if "image" in batch else batch["direct"] + batch["reverb"]   # (B, J, M|1, N)
    if has_sources and out.image is not None:
        _, perm = pit_sa_sdr(_ref(out.image, cfg.ref_mic).float(), _ref(tgt_img, cfg.ref_mic).float())  # (B, J)
    elif has_seld:
        perm = seld_loss(out, batch, LossWeights.seld()).perm
    else:
        raise DeepASAError("the data have neither isolated sources nor SELD labels: nothing to score")
    if has_sources and out.image is not None:
        est_img = apply_permutation(out.image.float(), perm)                     # (B, J, K, N)
        est_dir = apply_permutation(out.direct.float(), perm) if out.direct is not None else None
        single = est_img.shape[2] == 1
        for b in range(est_img.shape[0]):
            mix = batch["mixture"][b].float()                                    # (M, N)
            tgt_b = tgt_img[b].float()                                           # (J, M|1, N)
            active = (tgt_b.flatten(1).abs().amax(-1) > 0).numpy()              # (J,)
            if single:                                                           # reference-channel output
                kw = dict(est_image=est_img[b, :, 0], tgt_image=_ref(tgt_b, cfg.ref_mic), mixture=mix[cfg.ref_mic])
            else:
                kw = dict(est_image=est_img[b], tgt_image=tgt_b, mixture=mix, ref_channel=cfg.ref_mic)
                if est_dir is not None and "direct" in batch:
                    kw.update(est_direct=est_dir[b], tgt_direct=batch["direct"][b].float())
            scores.sep.append(evaluate_separation(**kw, active=active, with_sdr=with_sdr))
    if has_seld:
        cls_logits, onoff, doa = (apply_permutation(getattr(out, k).float(), perm) for k in ("cls_logits", "onoff", "doa"))
        sed_out = seld_decisions(cls_logits, onoff, doa, use_doa_norm=seld_average == "micro")  # (B, J, T', C)
        sed_label = sed_targets(batch["cls"], batch["activity"], cls_logits.shape[-1]).numpy()  # (B, J, T', C)
        for b, name in enumerate(ids):
            stats = FrameSELDStats(cls_logits.shape[-1])
            stats.update(sed_out[b:b + 1], sed_label[b:b + 1], doa[b:b + 1], batch["doa"][b:b + 1])
            scores.seld.append(stats)
            scores.pred_frames[name] = frames_from_slots(sed_out[b], doa[b])
            scores.ref_frames[name] = frames_from_slots(sed_label[b], batch["doa"][b])


def evaluate(checkpoint: str | Path, data: str | Path, *, split: str = "test", dataset: str = "scenes",
             batch_size: int = 1, limit: int | None = None, seld_average: str = "micro", with_sdr: bool = True,
             progress: bool = True, dataset_options: dict | None = None) -> dict:
    """Score a model on one split of a dataset.

    Args:
        checkpoint: a ``DeepASA.save`` file or a ``deepasa train`` Lightning checkpoint.
        data: dataset root; ``split`` the split folder; ``dataset`` its format (``scenes``, ``starss23``,
            ``mcfuss``, ``dcase25t4``).
        batch_size: clips per forward pass.
        limit: score only the first ``limit`` clips.
        seld_average: ``micro`` (ASA2) or ``macro`` (STARSS23; decisions from on/off alone, as that protocol).
        with_sdr: include the BSS-eval SDR (slow).
        progress: show a progress bar.
        dataset_options: extra loader arguments.

    Returns:
        ``{"checkpoint", "data", "split", "n_items", "model", "separation": {...}, "seld": {...},
        "dcase": {...}, "ci95": {"block.key": [low, high]}, "net1": {same blocks + ci95}}`` (blocks the data
        cannot support are left out).

    Raises:
        DeepASAError: missing checkpoint or data, a model/data mismatch (rate, channels, slots, classes).
    """
    from tqdm import tqdm

    from deepasa.train.data import open_dataset
    from deepasa.train.module import load_model

    model = load_model(checkpoint).eval()
    cfg = model.config
    data = Path(data)
    if not data.is_dir():
        raise DeepASAError(f"dataset folder not found: {data}")
    ds = open_dataset(dataset, data, split, n_slots=cfg.n_slots, sample_rate=cfg.sample_rate,
                      clip_seconds=cfg.clip_seconds, options=dataset_options)
    names = getattr(ds, "class_names", None)
    if cfg.seld_heads and names and len(names) != cfg.n_classes:
        raise DeepASAError(f"model/data mismatch: the model has {cfg.n_classes} classes, {data} has {len(names)}")
    if limit is not None:
        ds = Subset(ds, range(min(limit, len(ds))))
    first = ds[0]["mixture"]
    if first.shape[0] != cfg.n_mics:
        raise DeepASAError(f"model/data mismatch: the model expects {cfg.n_mics} channels, the data have {first.shape[0]}")
    coi = cfg.coi_steps > 0
    final, net1 = _Scores(cfg.n_classes), _Scores(cfg.n_classes)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False)
    with torch.inference_mode():
        for batch in tqdm(loader, desc="evaluate", unit="batch", disable=not progress):
            out = model(batch["mixture"], net1_audio=coi)
            ids = [str(s) for s in batch["scene_id"]]
            _score_batch(final, out, batch, ids, cfg, with_sdr, seld_average)
            if coi and out.net1 is not None:
                _score_batch(net1, out.net1, batch, ids, cfg, with_sdr, seld_average)
    report: dict = {"checkpoint": str(checkpoint), "data": str(data), "split": split, "dataset": dataset,
                    "n_items": len(ds), "seld_average": seld_average,
                    "model": {"n_classes": cfg.n_classes, "n_slots": cfg.n_slots, "sample_rate": cfg.sample_rate,
                              "coi_steps": cfg.coi_steps}}
    with tempfile.TemporaryDirectory(prefix="deepasa-eval-") as tmp:
        blocks, ci = final.report(seld_average, Path(tmp) / "final")
        report.update(blocks)
        report["ci95"] = ci
        if coi:
            blocks1, ci1 = net1.report(seld_average, Path(tmp) / "net1")
            report["net1"] = {**blocks1, "ci95": ci1}
    return report


def format_table(report: dict) -> str:
    """The report as an aligned text table: metric, mean, 95 % interval (and Net 1 next to it for CoI)."""
    rows = [("metric", "mean", "95% interval")]

    def add(prefix: str, rep: dict) -> None:
        for block in ("separation", "seld", "dcase"):
            for key, value in rep.get(block, {}).items():
                if key == "n_files" or not isinstance(value, (int, float)):
                    continue
                lo, hi = rep.get("ci95", {}).get(f"{block}.{key}", [float("nan")] * 2)
                rows.append((f"{prefix}{block}.{key}", f"{value:.4f}", f"[{lo:.4f}, {hi:.4f}]"))

    add("", report)
    if "net1" in report:
        add("net1.", report["net1"])
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{report['n_items']} clips of {report['data']} ({report['split']})"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)
