"""Learning-speed benchmark for direction: train from scratch, score unseen scenes at fixed scene-pass budgets.

    python experiments/2026-12-01-doa-learning/doa_learning.py --data /work/data/doa --scenes 1-static \
        --variants baseline gcc_mixture --budgets 500 1000 2000 4000 --threads 2

``--data`` holds one folder per scene set (``1-static``, ``2-moving``, ``default``), each the output of
``deepasa simulate`` with ``train`` and ``val`` splits; the commands that build them are in docs/notebook/direction-learning.md
("Direction learning speed"): 16 kHz, the default rooms and noise (RT60 0.2–0.6 s, SNR 6–30 dB), 2-s clips,
800 training and 100 unseen scenes per set.

Model: ``--model`` names a config and ``--set`` overrides fields; the default ``bench`` is the ``tiny`` trunk
at 16 kHz with the paper's STFT (n_fft 640, hop 320) on 2-s clips and the heads of ``small``; ``tiny16`` keeps
the tiny heads (see MODELS). Training: Adam, batch 4, the
ASA2 multi-task loss (image-PIT master permutation), gradient clipping at 5; a plain loop (no Lightning), one
process. At each budget the model scores the first ``--val-n`` unseen scenes:

* ``doa_error_median_deg``: per true source, the mean angle between its aligned slot's DoA and the label over
  the source's active frames (whether the slot is detected or not); the median over sources;
* ``doa_error_detected_deg``: the same over frames where slot and source are both active, detected sources;
* ``detection_rate``: share of true sources whose aligned slot has an active frame anywhere in the clip
  under the model's rule (sigmoid(onoff) > ``config.detect_onoff`` and ‖doa‖ > ``config.detect_doa_norm``; 0.5 and
  0.5 = docs/spec.md §1);
* ``false_alarm_rate``: share of the slots *without* a source (of J per scene) that have an active frame, the
  other side of the detection rate (rows from 2026-12-02 on); ``detection_rate_onoff`` and
  ``false_alarm_rate_onoff``: both under the on/off condition alone (the STARSS23 evaluation's rule);
* ``class_accuracy`` (of the detected) and ``class_accuracy_all`` (every source's slot);
* ``si_sdri_db``: reference-channel image SI-SDR improvement, mean over true sources;
* ``onoff_recall`` and ``doa_norm_active``: the two halves of the decision rule on the sources' active
  frames (share with sigmoid(onoff) > 0.5; mean ‖doa‖), to see which one keeps a source undetected;
* ``scene_passes_per_s``: training throughput of that variant in this run (machine shared: compare ratios).

Rows go to ``experiments/2026-12-01-doa-learning/results/doa_learning.json`` (``rows``, one per variant × scene
set × budget; a rerun replaces the rows of the same variant and scene set and keeps the others). The file is rewritten after every
budget, so a run stopped between budgets keeps the rows it has measured.

Long runs (4,000 passes take hours on this CPU) can span sessions: ``--state DIR`` writes
``DIR/<variant>__<scenes>.pt`` (weights, optimizer, the random generators, the scene order, the rows so far)
every ``--state-every`` seconds and at every budget, atomically; a rerun with the same arguments continues
from it, as if it had not stopped (the same scenes in the same order). The rerun may add budgets beyond the
saved run's last one (``--budgets 500 1000 2000 4000`` continues a finished ``500 1000 2000`` run).
``--compile`` compiles the model's blocks, splitter and heads (``deepasa.train.fastpath.compile_model``; a few minutes at the start).

``--score-model MODEL.pt`` trains nothing: it scores a saved model (``deepasa export`` output, e.g. a checkpoint
of the shipped run; ``--set`` overrides fields of its config, e.g. ``doa_refine=srp``) on the first ``--val-n``
unseen scenes of each ``--scenes`` set with the same :func:`score`,
so a model trained elsewhere compares with the rows here; one JSON line per set (``--score-label`` names it),
and with ``--score-csv F`` a row appended to F.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from deepasa.data.augment import RandomSwap
from deepasa.data.scenes import SceneDataset
from deepasa.errors import DeepASAError, run_script
from deepasa.losses import LossWeights, apply_permutation, multitask_loss
from deepasa.metrics.seld_frame import activity_decisions
from deepasa.metrics.separation import improvement, si_sdr
from deepasa.model import DeepASA, get_config
from deepasa.evaluation.scoring import strict_json
from deepasa.staging import write_json
from deepasa.train.fastpath import compile_model

HERE = Path(__file__).resolve().parent                    # experiments/2026-12-01-doa-learning
RESULTS = HERE / "results" / "doa_learning.json"
SCRIPT = (HERE / "doa_learning.py").relative_to(HERE.parents[1]).as_posix()  # as the rows' ``command`` names it

#: Benchmark model sizes (overrides of a named config).
MODELS = {
    # the tiny trunk at 16 kHz with the paper's STFT on 2-s clips, tiny heads (GRU hidden 8, fuse 16)
    "tiny16": ("tiny", {"sample_rate": 16000, "n_fft": 640, "hop": 320, "clip_seconds": 2.0, "gabor_width": 16,
                        "attn_dropout": 0.0, "n_classes": 10}),
    # the same trunk with the heads of `small` (channels 16, fuse 64, 2-layer GRU of 32, fc 32)
    "bench": ("tiny", {"sample_rate": 16000, "n_fft": 640, "hop": 320, "clip_seconds": 2.0, "gabor_width": 16,
                       "attn_dropout": 0.0, "n_classes": 10, "head_channels": 16, "head_fuse_dim": 64,
                       "head_gru_hidden": 32, "head_gru_layers": 2, "head_fc_dim": 32, "asp_hidden": 16}),
    "small2s": ("small", {"clip_seconds": 2.0}),
}

#: Variants: model-config overrides, loss-weight overrides, training options. One change at a time.
VARIANTS = {
    "baseline": {},
    "gcc_mixture": {"model": {"doa_spatial": "gcc_mixture"}},
    "gcc_image": {"model": {"doa_spatial": "gcc_image"}},
    "gcc_mixture+ln": {"model": {"doa_spatial": "gcc_mixture", "doa_spatial_norm": True}},
    "gcc_mixture+swap": {"model": {"doa_spatial": "gcc_mixture"}, "swap": True},
    "baseline+swap": {"swap": True},
    "gcc_mixture+doa5": {"model": {"doa_spatial": "gcc_mixture"}, "loss": {"doa": 5.0}},
    # the chosen recipe with complex ratio masks instead of spectral mapping (docs/model.md, deviation 15)
    "gcc_mixture+ln+mask": {"model": {"doa_spatial": "gcc_mixture", "doa_spatial_norm": True,
                                      "audio_output": "mask"}},
    # the same + SRP-PHAT refinement of the DoA at scoring time (docs/model.md, deviation 16): trains exactly as
    # gcc_mixture+ln+mask (the refinement is inference-only); its rows also hold the network's own DoA errors
    "gcc_mixture+ln+mask+srp": {"model": {"doa_spatial": "gcc_mixture", "doa_spatial_norm": True,
                                          "audio_output": "mask", "doa_refine": "srp"}},
    # the same + a positive-class weight of 4 in the on/off BCE (LossWeights.onoff_pos_weight): the active slot's
    # on/off posterior sat at 0.30-0.45 under the 0.5 threshold while the DoA norm separated the slots
    "gcc_mixture+ln+mask+srp+onoffpos4": {"model": {"doa_spatial": "gcc_mixture", "doa_spatial_norm": True,
                                                    "audio_output": "mask", "doa_refine": "srp"},
                                          "loss": {"onoff_pos_weight": 4.0}},
    # the same with the activity decision's DoA-norm threshold at 0.15 instead of 0.5 (docs/model.md, deviation
    # 17; the shipped run's choice): trains exactly as onoffpos4, whose states it continues (from 1,456 / 1,452 /
    # 948 passes on 1-static / 2-moving / default), so its earlier rows are onoffpos4's
    "gcc_mixture+ln+mask+srp+onoffpos4+norm015": {"model": {"doa_spatial": "gcc_mixture", "doa_spatial_norm": True,
                                                            "audio_output": "mask", "doa_refine": "srp",
                                                            "detect_doa_norm": 0.15},
                                                  "loss": {"onoff_pos_weight": 4.0}},
}


def collate(items: list[dict]) -> dict:
    """List of SceneDataset items -> batch dict of stacked tensors (scene ids dropped)."""
    return {k: torch.stack([it[k] for it in items]) for k in items[0] if k != "scene_id"}


def angles_deg(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Angle between DoA vectors. est, ref (..., 3) -> (...) degrees (est normalised; ref unit)."""
    cos = (est * ref).sum(-1) / est.norm(dim=-1).clamp_min(1e-8)  # (...)
    return torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))


@torch.no_grad()
def score(model: DeepASA, items: list[dict], batch: int = 10) -> dict:
    """Score unseen scenes. items: SceneDataset items -> metric dict (module docstring).

    With ``config.doa_refine`` set the DoA is the refined one, and ``network_doa_error_median_deg`` /
    ``network_doa_error_detected_deg`` hold the errors of the network's own DoA on the same slots."""
    model.eval()
    per_src = {"err_all": [], "err_det": [], "det": [], "cls_ok": [], "sdri": [], "on": [], "norm": [],
               "net_all": [], "net_det": [], "false_alarm": [], "det_on": [], "false_alarm_on": []}
    ref = model.config.ref_mic
    for s in range(0, len(items), batch):
        b = collate(items[s:s + batch])
        out = model(b["mixture"])
        perm = multitask_loss(out, b).perm  # (B, J): π*, the image-PIT assignment every head shares
        doa = apply_permutation(out.doa, perm)  # (B, J, T', 3)
        net_ang = None
        if model.config.doa_refine:  # the network's own DoA: the same pass without the refinement
            net_doa = apply_permutation(model(b["mixture"], refine_doa=False).doa, perm)  # (B, J, T', 3)
            net_ang = angles_deg(net_doa, b["doa"])  # (B, J, T')
        onoff = apply_permutation(out.onoff, perm)  # (B, J, T') logits
        on = onoff > 0.0  # (B, J, T'): sigmoid > 0.5
        cfg = model.config  # the model's own decision rule (on/off and ‖doa‖ thresholds; ‖doa‖ 0 = on/off alone)
        act_hat = torch.from_numpy(activity_decisions(onoff, doa, cfg.detect_doa_norm, cfg.detect_onoff))  # (B, J, T')
        cls_hat = apply_permutation(out.cls_logits, perm).argmax(-1)  # (B, J)
        image = apply_permutation(out.image, perm)[:, :, ref].numpy()  # (B, J, N)
        t_image = (b["direct"] + b["reverb"])[:, :, ref].numpy()  # (B, J, N)
        mix = b["mixture"][:, ref].numpy()  # (B, N)
        ang = angles_deg(doa, b["doa"])  # (B, J, T')
        act = b["activity"] > 0.5  # (B, J, T')
        hit, hit_on = act_hat.any(-1), on.any(-1)  # (B, J): slot active somewhere (model's rule, on/off alone)
        for i in range(b["cls"].shape[0]):
            for j in range(b["cls"].shape[1]):
                if b["cls"][i, j] < 0 or not act[i, j].any():
                    per_src["false_alarm"].append(bool(hit[i, j]))  # an empty slot detected
                    per_src["false_alarm_on"].append(bool(hit_on[i, j]))
                    continue
                det = bool(hit[i, j])
                per_src["det"].append(det)
                per_src["det_on"].append(bool(hit_on[i, j]))
                per_src["err_all"].append(float(ang[i, j][act[i, j]].mean()))
                if net_ang is not None:
                    per_src["net_all"].append(float(net_ang[i, j][act[i, j]].mean()))
                per_src["on"].append(float(on[i, j][act[i, j]].float().mean()))  # on/off recall, active frames
                per_src["norm"].append(float(doa[i, j][act[i, j]].norm(dim=-1).mean()))  # ‖doa‖, active frames
                both = act[i, j] & act_hat[i, j]
                if det and both.any():
                    per_src["err_det"].append(float(ang[i, j][both].mean()))
                    if net_ang is not None:
                        per_src["net_det"].append(float(net_ang[i, j][both].mean()))
                ok = bool(cls_hat[i, j] == b["cls"][i, j])
                per_src["cls_ok"].append((det, ok))
                per_src["sdri"].append(float(improvement(si_sdr, image[i, j], t_image[i, j], mix[i])))
    model.train()
    det_ok = [ok for d, ok in per_src["cls_ok"] if d]
    nan = float("nan")
    return {
        "n_sources": len(per_src["det"]),
        "doa_error_median_deg": float(np.median(per_src["err_all"])) if per_src["err_all"] else nan,
        "doa_error_detected_deg": float(np.median(per_src["err_det"])) if per_src["err_det"] else nan,
        "detection_rate": float(np.mean(per_src["det"])) if per_src["det"] else nan,
        "false_alarm_rate": float(np.mean(per_src["false_alarm"])) if per_src["false_alarm"] else nan,
        # the same two rates under the on/off condition alone (the STARSS23 evaluation's rule, docs/spec.md §1)
        "detection_rate_onoff": float(np.mean(per_src["det_on"])) if per_src["det_on"] else nan,
        "false_alarm_rate_onoff": float(np.mean(per_src["false_alarm_on"])) if per_src["false_alarm_on"] else nan,
        "class_accuracy": float(np.mean(det_ok)) if det_ok else nan,
        "class_accuracy_all": float(np.mean([ok for _, ok in per_src["cls_ok"]])) if per_src["cls_ok"] else nan,
        "si_sdri_db": float(np.mean(per_src["sdri"])) if per_src["sdri"] else nan,
        # the two halves of the decision rule on the sources' active frames (which one fails)
        "onoff_recall": float(np.mean(per_src["on"])) if per_src["on"] else nan,
        "doa_norm_active": float(np.mean(per_src["norm"])) if per_src["norm"] else nan,
        **({"network_doa_error_median_deg": float(np.median(per_src["net_all"])) if per_src["net_all"] else nan,
            "network_doa_error_detected_deg": float(np.median(per_src["net_det"])) if per_src["net_det"] else nan}
           if model.config.doa_refine else {}),
    }


def set_overrides(sets: list[str]) -> dict:
    """``--set KEY=VALUE`` strings -> config overrides (values parsed as YAML, as recipes.step_time)."""
    return {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in sets)}


def build_model(name: str, variant: dict, sets: list[str]) -> DeepASA:
    """Benchmark model: MODELS[name] + the variant's model overrides + ``--set`` overrides."""
    base, over = MODELS.get(name, (name, {}))
    return DeepASA(get_config(base, **{**over, **variant.get("model", {}), **set_overrides(sets)}))


def state_path(args, name: str, scenes: str) -> Path | None:
    """Where the resumable state of one (variant, scene set, ``--set`` overrides) run lives, or None without
    ``--state``. Runs that differ only in their overrides (a model-size sweep) keep states of their own."""
    if not args.state:
        return None
    sets = "".join(f"__{s}" for s in args.set)
    return Path(args.state) / f"{name}__{scenes}{sets}.pt"


def save_state(path: Path, payload: dict) -> None:
    """Atomic torch.save (a kill mid-write leaves the previous state)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    torch.save(payload, tmp)
    tmp.replace(path)


def score_state(args, name: str, scenes: str) -> dict:
    """``--score-state``: the metrics of a saved run state (``--state``) on the first ``--val-n`` unseen scenes,
    with the current :func:`score` (so a metric added after the run started is measured on its weights)."""
    spath = state_path(args, name, scenes)
    if spath is None or not spath.is_file():
        raise DeepASAError(f"no saved state for {name} on {scenes} (--state {args.state})")
    st = torch.load(spath, weights_only=False)
    model = build_model(st["key"]["model"], VARIANTS[name], st["key"]["set"])
    model.load_state_dict(st["model"])
    val = SceneDataset(Path(args.data) / scenes, "val")
    m = score(model, [val[i] for i in range(min(args.val_n, len(val)))])
    return {"variant": name, "scenes": scenes, "scene_passes": st["passes"], **m, "state": str(spath)}


def run_variant(args, name: str, scenes: str, log, on_row=None) -> list[dict]:
    """Train one variant on one scene set; one row per budget (``on_row(rows)`` after each)."""
    variant = VARIANTS[name]
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    root = Path(args.data) / scenes
    train = SceneDataset(root, "train")
    val = SceneDataset(root, "val")
    val_items = [val[i] for i in range(min(args.val_n, len(val)))]
    model = build_model(args.model, variant, args.set)
    if train.sample_rate != model.sample_rate:
        raise DeepASAError(f"{root} is at {train.sample_rate} Hz, the model at {model.sample_rate} Hz")
    weights = LossWeights(**variant.get("loss", {}))
    swap = RandomSwap(args.seed) if variant.get("swap") else None
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-5)
    budgets = sorted(args.budgets)
    last = budgets[-1]
    rows, passes, t_train, t_data, order = [], 0, 0.0, 0.0, []
    spath = state_path(args, name, scenes)
    # the arguments that must match for a saved state to be continued; the budgets may be extended beyond the
    # saved run's last one (the scene order does not depend on them, and scoring draws no random numbers)
    key = {"model": args.model, "set": args.set, "batch": args.batch, "lr": args.lr, "seed": args.seed,
           "val_n": args.val_n, "budgets": list(budgets)}
    if spath is not None and spath.is_file():
        st = torch.load(spath, weights_only=False)
        saved = st["key"].get("budgets", [])
        same = {**st["key"], "budgets": None} == {**key, "budgets": None}
        if not same or not saved or [b for b in budgets if b <= saved[-1]] != saved:
            raise DeepASAError(f"{spath} was written with other arguments ({st['key']}); remove it or match them")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        if swap is not None:
            swap.rng.bit_generator.state = st["swap_rng"]
        rows, passes, t_train, t_data, order = st["rows"], st["passes"], st["t_train"], st["t_data"], st["order"]
        budgets = [x for x in budgets if x > passes]
        log(f"continuing {name} on {scenes} from {spath} at {passes} scene passes")

    def checkpoint() -> None:
        if spath is not None:
            save_state(spath, {"key": key, "model": model.state_dict(), "opt": opt.state_dict(),
                               "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                               "swap_rng": swap.rng.bit_generator.state if swap is not None else None,
                               "rows": rows, "passes": passes, "t_train": t_train, "t_data": t_data,
                               "order": order})

    if args.compile:
        compile_model(model, log=log)
    model.train()
    t_saved = time.monotonic()
    while passes < last:
        t0 = time.perf_counter()
        if len(order) < args.batch:
            order.extend(rng.permutation(len(train)).tolist())
        idx, order = order[: args.batch], order[args.batch:]
        items = [train[i] for i in idx]
        if swap is not None:
            items = [swap(it) for it in items]
        b = collate(items)
        t1 = time.perf_counter()
        out = model(b["mixture"])
        loss = multitask_loss(out, b, weights)
        opt.zero_grad(set_to_none=True)
        loss.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        t2 = time.perf_counter()
        t_data += t1 - t0
        t_train += t2 - t1
        passes += args.batch
        if budgets and passes >= budgets[0]:
            budgets.pop(0)
            m = score(model, val_items)
            row = {"variant": name, "scenes": scenes, "scene_passes": passes, **m,
                   "scene_passes_per_s": round(passes / (t_train + t_data), 3),
                   "data_wait_fraction": round(t_data / (t_train + t_data), 3),
                   "loss": round(float(loss.total.detach()), 3), "model": args.model, "set": list(args.set),
                   "model_overrides": {**variant.get("model", {})}, "loss_weights": variant.get("loss", {}),
                   "swap": bool(variant.get("swap")), "lr": args.lr, "batch": args.batch, "seed": args.seed,
                   "val_scenes": len(val_items), "compiled": bool(args.compile), "command": args.command,
                   "chosen": False}
            rows.append(row)
            log(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()
                            if k not in ("command", "model_overrides", "loss_weights")}))
            checkpoint()
            t_saved = time.monotonic()
            if on_row is not None:
                on_row(rows)
        elif spath is not None and time.monotonic() - t_saved > args.state_every:
            checkpoint()
            t_saved = time.monotonic()
    return rows


def row_key(r: dict) -> tuple:
    """What makes two results rows the same run: variant, scene set, model and its ``--set`` overrides."""
    return r["variant"], r["scenes"], r.get("model"), tuple(r.get("set", []))


def read_results(path: Path, key: str = "rows") -> dict:
    """A results JSON file whose ``key`` holds a list (read once: the dict, ``key`` as a list); a file that is not
    one is a one-line error."""
    try:
        data = json.loads(path.read_text())
        data[key] = list(data[key])
        return data
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DeepASAError(f"{path} is not a results file with {key!r} ({type(exc).__name__})") from None


def merge(path: Path, new_rows: list[dict]) -> None:
    """Replace the rows of the same run (:func:`row_key`) in the results file, keep the others."""
    old = read_results(path)["rows"] if path.is_file() else []
    keys = {row_key(r) for r in new_rows}
    data = {"rows": [r for r in old if row_key(r) not in keys] + new_rows}
    data["about"] = ("Direction learning speed: trained from scratch, scored on unseen scenes at fixed scene-pass "
                     f"budgets ({SCRIPT} docstring).")
    write_json(path, strict_json(data), indent=1)


def markdown_table(rows: list[dict]) -> str:
    """The results rows as a markdown table (docs/notebook/direction-learning.md), in file order."""
    def f(v, fmt):
        return "–" if v is None or (isinstance(v, float) and v != v) else format(v, fmt)
    lines = ["| variant | scenes | model | scene passes | DoA err. every slot (°) | DoA err. detected (°) | "
             "detection | false alarms | class acc. (detected) | class acc. (all) | SI-SDRi (dB) | passes/s | chosen | "
             "network's own DoA, every slot / detected (°) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        model = " ".join([r.get("model", "")] + r.get("set", []))  # e.g. "small2s emb_dim=32"
        lines.append(f"| {r['variant']} | {r['scenes']} | {model} | {r['scene_passes']} | "
                     f"{f(r['doa_error_median_deg'], '.1f')} | {f(r['doa_error_detected_deg'], '.1f')} | "
                     f"{f(r['detection_rate'], '.2f')} | {f(r.get('false_alarm_rate'), '.2f')} | "
                     f"{f(r['class_accuracy'], '.2f')} | "
                     f"{f(r.get('class_accuracy_all'), '.2f')} | {f(r['si_sdri_db'], '.1f')} | "
                     f"{f(r['scene_passes_per_s'], '.2f')} | {'yes' if r.get('chosen') else ''} | "
                     + (f"{f(r['network_doa_error_median_deg'], '.1f')} / "
                        f"{f(r.get('network_doa_error_detected_deg'), '.1f')} |"
                        if "network_doa_error_median_deg" in r else "– |"))
    return "\n".join(lines)


SCORE_FIELDS = ["label", "scenes", "val_scenes", "doa_error_median_deg", "doa_error_detected_deg",
                "detection_rate", "false_alarm_rate", "detection_rate_onoff", "false_alarm_rate_onoff",
                "class_accuracy", "class_accuracy_all", "si_sdri_db", "onoff_recall", "doa_norm_active",
                "network_doa_error_median_deg", "network_doa_error_detected_deg", "model"]


def score_saved(args) -> list[dict]:
    """``--score-model``: score a saved model on each ``--scenes`` set's unseen scenes; the rows (also printed,
    and appended to ``--score-csv``)."""
    import csv

    from deepasa.model.loading import load_model

    model = load_model(args.score_model, **set_overrides(args.set))  # e.g. --set doa_refine=srp
    rows = []
    for scenes in args.scenes:
        val = SceneDataset(Path(args.data) / scenes, "val")
        if val.sample_rate != model.sample_rate:
            raise DeepASAError(f"{args.data}/{scenes} is at {val.sample_rate} Hz, the model at {model.sample_rate} Hz")
        m = score(model, [val[i] for i in range(min(args.val_n, len(val)))])
        row = {"label": args.score_label, "scenes": scenes, "val_scenes": min(args.val_n, len(val)),
               **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items() if k != "n_sources"},
               "model": args.score_model}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.score_csv:
            path = Path(args.score_csv)
            old = []
            if path.is_file():  # rewritten whole: a file written before a column was added gains it (empty)
                with open(path, newline="") as fh:
                    old = list(csv.DictReader(fh))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".part")
            with open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=SCORE_FIELDS, extrasaction="ignore")
                w.writeheader()
                w.writerows(old + [row])
            tmp.replace(path)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="folder with one subfolder per scene set")
    ap.add_argument("--table", action="store_true", help="print the results file as a markdown table and exit")
    ap.add_argument("--scenes", nargs="+", default=["1-static"], choices=["1-static", "2-moving", "default"])
    ap.add_argument("--variants", nargs="+", default=["baseline"], choices=sorted(VARIANTS))
    ap.add_argument("--budgets", nargs="+", type=int, default=[500, 1000, 2000, 4000])
    ap.add_argument("--model", default="bench")
    ap.add_argument("--set", action="append", default=[], help="model config override KEY=VALUE")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-n", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--state", help="folder for resumable run states (module docstring)")
    ap.add_argument("--state-every", type=float, default=600.0, help="seconds between state saves")
    ap.add_argument("--compile", action="store_true", help="torch.compile the blocks, splitter and heads")
    ap.add_argument("--quick", action="store_true", help="a one-minute check: budgets 8 16, 4 unseen scenes")
    ap.add_argument("--score-model", help="score this saved model instead of training (module docstring)")
    ap.add_argument("--score-label", default="", help="label of the --score-model row (e.g. run and step)")
    ap.add_argument("--score-csv", help="append the --score-model rows to this CSV")
    ap.add_argument("--score-state", action="store_true",
                    help="score the --state of each variant x scene set at its saved pass count; trains nothing")
    args = ap.parse_args(argv)
    if args.table:
        if not Path(args.out).is_file():
            raise DeepASAError(f"no results at {args.out}")
        print(markdown_table(read_results(Path(args.out))["rows"]))
        return 0
    if not args.data:
        raise DeepASAError("--data is required (the folder of scene sets)")
    args.command = f"python {SCRIPT} " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if args.quick:
        args.budgets, args.val_n = [8, 16], 4
    bad = [s for s in args.set if "=" not in s]
    if bad:
        raise DeepASAError(f"--set needs KEY=VALUE, got {bad[0]!r}")
    if min(args.budgets) < args.batch:
        raise DeepASAError("every budget must be at least one batch")
    for s in args.scenes:
        scoring = args.score_model or args.score_state                 # scoring reads the unseen scenes only
        for split in ("val",) if scoring else ("train", "val"):
            if not (Path(args.data) / s / split / "mixed").is_dir():
                raise DeepASAError(f"no scenes at {Path(args.data) / s / split} (see docs/notebook/direction-learning.md)")
    torch.set_num_threads(args.threads)
    if args.score_model:
        score_saved(args)
        return 0
    if args.score_state:
        for scenes in args.scenes:
            for name in args.variants:
                print(json.dumps(score_state(args, name, scenes)), flush=True)
        return 0
    for scenes in args.scenes:
        for name in args.variants:
            keep = not args.quick or args.out != str(RESULTS)
            run_variant(args, name, scenes, lambda line: print(line, flush=True),
                        on_row=(lambda rows: merge(Path(args.out), rows)) if keep else None)
    return 0


if __name__ == "__main__":
    run_script(main)
