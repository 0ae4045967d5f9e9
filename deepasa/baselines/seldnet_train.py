"""Train the DCASE 2023 SELDnet baseline (:mod:`deepasa.baselines.seldnet`) on scenes in the ASA layout.

    python -m deepasa.baselines.seldnet_train --data /work/data/sim --out runs/seldnet/seldnet.pt --minutes 20
    python -m deepasa.baselines.seldnet_train --data /work/data/sim --out runs/seldnet/seldnet.pt --minutes 20 --resume

Recipe (DCASE 2023 baseline): Adam, lr 1e-3, ADPIT loss on multi-ACCDOA; features standardised with statistics
of ``scaler_clips`` training clips. Data: ``SceneDataset(root, "train")`` for training and ``"val"`` for
validation. Features are computed once per clip (in DataLoader workers when ``workers > 0``) and kept in memory
as float16 (about 256 KB per 4-s MIC clip), so every epoch after the first costs network time only.

Validation every ``val_every`` steps and at the end: the ADPIT loss on the whole ``val`` split; the model with
the lowest validation loss is written to ``out_path`` (format ``deepasa-seldnet-1``, loaded by
:meth:`~deepasa.baselines.seldnet.SELDnetBaseline.load`). At the end the best model is scored on ``val`` with
the project's frame-level SELD metrics and the DCASE 2023 segment metrics
(:func:`deepasa.evaluation.score_system`), stored in ``train_info["val_metrics"]``.

Wall-time budget: training stops when the final validation and scoring would end after ``max_minutes`` of
this invocation (their cost is estimated from the last validation and 0.1 s per validation clip, so the run
ends close to the budget, typically within a few seconds of it). The full training state
(weights, optimiser, step, history, best) is written to ``<out>.resume.pt`` at every validation and at least
every ``save_every_s`` seconds; ``resume=True`` continues from it (a new epoch starts; ``max_minutes`` is the
budget of the new invocation, ``train_info["wall_seconds"]`` accumulates).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from deepasa.baselines.seldnet import SELDFeatures, SELDnet, SELDnetBaseline, SELDnetConfig, seldnet_loss
from deepasa.data.scenes import SceneDataset
from deepasa.errors import DeepASAError
from deepasa.staging import atomic_path

RESUME_FORMAT = "deepasa-seldnet-resume-1"
_LABEL_KEYS = ("cls", "activity", "doa")


def resume_path(out_path: str | Path) -> Path:
    """The training-state file beside a checkpoint: ``runs/x/seldnet.pt`` -> ``runs/x/seldnet.resume.pt``."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + ".resume.pt")


def _match_frames(x: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """Crop or zero-pad ``x`` to ``n`` frames along ``dim`` (the dataset rounds T', the network takes the ceil)."""
    if x.shape[dim] >= n:
        return x.narrow(dim, 0, n)
    pad_shape = list(x.shape)
    pad_shape[dim] = n - x.shape[dim]
    return torch.cat([x, x.new_zeros(pad_shape)], dim=dim)


class _FeatureItems(Dataset):
    """Scene items as cached SELD features: index -> {index, feat (C_in, T, K) float16, cls (J,), activity (J, T'),
    doa (J, T', 3)}; ``cache[i]`` is used when filled (filled by the training loop in the main process)."""

    def __init__(self, scenes: SceneDataset, features: SELDFeatures, n_label: int, cache: bool = True) -> None:
        self.scenes, self.features, self.n_label = scenes, features, n_label
        self.cache: list[dict | None] = [None] * len(scenes)
        self.use_cache = cache

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> dict:
        if self.cache[i] is not None:
            return self.cache[i]
        item = self.scenes[i]
        with torch.no_grad():
            feat = self.features(item["mixture"].unsqueeze(0))[0].half()            # (C_in, T, K)
        return {"index": i, "feat": feat,
                "cls": item["cls"],                                                  # (J,)
                "activity": _match_frames(item["activity"], self.n_label, 1),        # (J, T')
                "doa": _match_frames(item["doa"], self.n_label, 1)}                  # (J, T', 3)

    def store(self, batch: dict) -> None:
        """Keep the items of a collated batch (their feature tensors cloned out of the batch)."""
        if not self.use_cache:
            return
        for n, i in enumerate(batch["index"].tolist()):
            if self.cache[i] is None:
                self.cache[i] = {"index": i, **{k: batch[k][n].clone() for k in ("feat",) + _LABEL_KEYS}}

    def batches(self, batch_size: int, *, shuffle: bool, seed: int, workers: int):
        """Yield collated batches of one pass; from memory when every item is cached, else through a DataLoader."""
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self), generator=gen).tolist() if shuffle else list(range(len(self)))
        if all(c is not None for c in self.cache):
            for s in range(0, len(order), batch_size):
                items = [self.cache[i] for i in order[s: s + batch_size]]
                batch = {k: torch.stack([it[k] for it in items]) for k in ("feat",) + _LABEL_KEYS}  # (B, ...) each
                yield {"index": torch.tensor([it["index"] for it in items]), **batch}
            return
        loader = DataLoader(self, batch_size=batch_size, sampler=order, num_workers=workers,
                            persistent_workers=False)
        for batch in loader:
            self.store(batch)
            yield batch


def _loss(model: SELDnet, batch: dict) -> torch.Tensor:
    """ADPIT loss of one batch (:func:`~deepasa.baselines.seldnet.seldnet_loss`). batch feat (B, C_in, T, K) +
    labels -> scalar."""
    accdoa = model.forward_features(batch["feat"])                                   # (B, T', 3, 3, C_out)
    return seldnet_loss(accdoa, batch["cls"], batch["activity"], batch["doa"], model.config)


@torch.no_grad()
def _validate(model: SELDnet, items: _FeatureItems, batch_size: int, workers: int) -> float:
    """Mean ADPIT loss over the validation split (clip-weighted)."""
    model.eval()
    total, count = 0.0, 0
    for batch in items.batches(batch_size, shuffle=False, seed=0, workers=workers):
        n = batch["feat"].shape[0]
        total += float(_loss(model, batch)) * n
        count += n
    model.train()
    return total / max(count, 1)


def _dataset_format(root: Path) -> str:
    """Array format of a dataset from its first ``train/meta/*.json`` (``"mic"`` when there is none)."""
    meta = next(iter(sorted((root / "train" / "meta").glob("*.json"))), None)
    if meta is None:
        return "mic"
    return str(json.loads(meta.read_text()).get("format", "mic"))


def _save_resume(path: Path, state: dict) -> None:
    with atomic_path(path, "part") as tmp:
        torch.save(state, tmp)


def train_seldnet(data_root: str | Path, out_path: str | Path, *, max_minutes: float, batch_size: int = 16,
                  lr: float = 1e-3, threads: int = 1, seed: int = 0, val_every: int = 200, workers: int = 0,
                  resume: bool = False, max_steps: int | None = None, scaler_clips: int = 128,
                  cache: bool = True, audio_format: str | None = None, config: dict | None = None,
                  log_every: int = 20, save_every_s: float = 120.0, final_metrics: bool = True,
                  verbose: bool = True) -> dict:
    """Train SELDnet on ``<data_root>/train``, validate on ``<data_root>/val``, keep the best.

    Args:
        data_root: dataset root in the ASA layout (``classes.json`` gives C).
        out_path: the best model, ``deepasa-seldnet-1`` format; the training state goes to :func:`resume_path`.
        max_minutes: wall-time budget of this invocation.
        batch_size: clips per step (16).
        lr: Adam learning rate (1e-3, the baseline's).
        threads: torch intra-op threads.
        seed: initialisation and data order.
        val_every: steps between validations.
        workers: DataLoader workers for the first pass over the data (feature extraction); 0 = main process.
        resume: continue from :func:`resume_path` when it exists.
        max_steps: stop after this many steps in total (None = budget only).
        scaler_clips: training clips used to fit the feature standardisation.
        cache: keep features in memory after the first pass.
        audio_format: ``"mic"`` or ``"foa"``; default the dataset's (``meta/*.json``).
        config: :class:`SELDnetConfig` overrides (e.g. ``{"attn_layers": 0}``).
        log_every: steps between progress lines.
        save_every_s: longest time between two writes of the training state.
        final_metrics: score the best model on ``val`` with :func:`deepasa.evaluation.score_system`.
        verbose: print progress lines.

    Returns:
        ``train_info``: ``steps``, ``epochs``, ``wall_seconds`` (cumulative), ``threads``, ``batch_size``, ``lr``,
        ``seconds_per_step`` (median, this invocation), ``best_step``, ``best_val_loss``, ``history``
        (``[{"step", "train_loss"} | {"step", "val_loss"}]``) and ``val_metrics`` when computed.
    """
    t_start = time.monotonic()
    budget = float(max_minutes) * 60.0
    torch.set_num_threads(int(threads))
    root, out_path = Path(data_root), Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    state_path = resume_path(out_path)
    say = print if verbose else (lambda *a, **k: None)

    train_ds, val_ds = SceneDataset(root, "train"), SceneDataset(root, "val")
    if not train_ds.class_names:
        raise DeepASAError(f"{root}/classes.json is missing: SELDnet needs the class list")
    class_names = list(train_ds.class_names)
    probe = train_ds[0]
    cfg = SELDnetConfig(**{"n_classes": len(class_names), "audio_format": audio_format or _dataset_format(root),
                           "n_channels": int(probe["mixture"].shape[0]), "sample_rate": int(train_ds.sample_rate),
                           "label_hop_s": float(train_ds.label_hop), "n_slots": int(train_ds.n_slots),
                           **(config or {})})
    n_label = cfg.label_frames(probe["mixture"].shape[-1])

    torch.manual_seed(seed)
    model = SELDnet(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    train_items = _FeatureItems(train_ds, model.features, n_label, cache)
    val_items = _FeatureItems(val_ds, model.features, n_label, cache)
    info = {"steps": 0, "epochs": 0, "wall_seconds": 0.0, "threads": int(threads), "batch_size": batch_size,
            "lr": lr, "seed": seed, "best_step": None, "best_val_loss": math.inf, "history": []}

    if resume and state_path.is_file():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        if not isinstance(st, dict) or st.get("format") != RESUME_FORMAT:
            raise DeepASAError(f"{state_path} is not a SELDnet training state ({RESUME_FORMAT})")
        if SELDnetConfig.from_dict(st["config"]) != cfg:
            raise DeepASAError(f"{state_path} was written for another SELDnet config; remove it or drop --resume")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        info.update(st["train_info"])
        info["threads"], info["batch_size"] = int(threads), batch_size
        best_state = st["best_model"]
        say(f"resumed from {state_path} at step {info['steps']} (epoch {info['epochs']})")
    else:
        if resume:
            say(f"no training state at {state_path}: starting from scratch")
        gen = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(train_ds), generator=gen)[: min(scaler_clips, len(train_ds))].tolist()
        loader = DataLoader(train_items, batch_size=batch_size, sampler=pick, num_workers=workers)
        feats = []
        for batch in loader:
            train_items.store(batch)
            feats.append(batch["feat"])
        model.fit_scaler(torch.cat(feats))                                           # (n, C_in, T, K)
        del feats
        best_state = None

    def elapsed() -> float:
        return time.monotonic() - t_start

    wall_before = float(info["wall_seconds"])

    def write_state() -> None:
        info["wall_seconds"] = wall_before + elapsed()
        _save_resume(state_path, {"format": RESUME_FORMAT, "config": cfg.to_dict(), "model": model.state_dict(),
                                  "optimizer": opt.state_dict(), "train_info": info, "best_model": best_state,
                                  "class_names": class_names})

    def save_best() -> None:
        info["wall_seconds"] = wall_before + elapsed()
        best = SELDnet(cfg)
        best.load_state_dict(best_state)
        SELDnetBaseline(best.eval(), class_names, info).save(out_path)

    def validate() -> float:
        nonlocal best_state
        t0 = time.monotonic()
        v = _validate(model, val_items, batch_size, workers)
        info["history"].append({"step": info["steps"], "val_loss": v})
        if v < info["best_val_loss"]:
            info["best_val_loss"], info["best_step"] = v, info["steps"]
            best_state = copy.deepcopy({k: t.detach().clone() for k, t in model.state_dict().items()})
            save_best()
        write_state()
        say(f"step {info['steps']:6d}  val ADPIT {v:.5f}  (best {info['best_val_loss']:.5f} at step "
            f"{info['best_step']})  {time.monotonic() - t0:.1f} s")
        return time.monotonic() - t0

    model.train()
    step_times: list[float] = []
    running, n_running = 0.0, 0
    val_cost, last_save, last_val_step = 0.0, time.monotonic(), info["steps"]
    final_cost = 0.1 * len(val_ds) if final_metrics else 0.0                         # rough: scoring re-reads val
    stop = False
    while not stop:
        for batch in train_items.batches(batch_size, shuffle=True, seed=seed + 1000 * info["epochs"], workers=workers):
            t0 = time.perf_counter()
            loss = _loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step_times.append(time.perf_counter() - t0)
            info["steps"] += 1
            running, n_running = running + loss.item(), n_running + 1
            if info["steps"] % log_every == 0:
                info["history"].append({"step": info["steps"], "train_loss": running / n_running})
                say(f"step {info['steps']:6d}  train ADPIT {running / n_running:.5f}  "
                    f"{sorted(step_times)[len(step_times) // 2]:.3f} s/step  {elapsed() / 60:.1f} min")
                running, n_running = 0.0, 0
            if max_steps is not None and info["steps"] >= max_steps:
                stop = True
            elif elapsed() + val_cost + final_cost >= budget:
                stop = True
            if stop:
                break
            if info["steps"] % val_every == 0:
                val_cost = validate()
                last_val_step, last_save = info["steps"], time.monotonic()
            elif time.monotonic() - last_save >= save_every_s:
                write_state()
                last_save = time.monotonic()
        else:
            info["epochs"] += 1
    if n_running:
        info["history"].append({"step": info["steps"], "train_loss": running / n_running})
    if last_val_step != info["steps"] or best_state is None:
        validate()
    if step_times:
        info["seconds_per_step"] = sorted(step_times)[len(step_times) // 2]
    if final_metrics and best_state is not None:
        from deepasa.evaluation.scoring import score_system

        best = SELDnet(cfg)
        best.load_state_dict(best_state)
        rep = score_system(SELDnetBaseline(best.eval(), class_names), val_ds, n_classes=cfg.n_classes,
                           class_names=class_names, with_sdr=False, progress=False, batch_size=batch_size)
        blocks = {k: rep[k] for k in ("seld", "dcase", "localization") if k in rep}
        info["val_metrics"] = json.loads(json.dumps(blocks, default=float))         # plain floats (weights_only load)
        say(f"val metrics of the best model (step {info['best_step']}): {json.dumps(info['val_metrics'])}")
    save_best()
    write_state()
    say(f"done: {info['steps']} steps, {info['wall_seconds'] / 60:.1f} min in all; best model -> {out_path}")
    return info


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m deepasa.baselines.seldnet_train --help``)."""
    p = argparse.ArgumentParser(
        prog="python -m deepasa.baselines.seldnet_train",
        description="Train the DCASE 2023 SELDnet baseline (multi-ACCDOA, ADPIT) on scenes in the ASA layout.",
        epilog="example: python -m deepasa.baselines.seldnet_train --data /work/data/sim "
               "--out runs/seldnet/seldnet.pt --minutes 20")
    p.add_argument("--data", required=True, help="dataset root (train/, val/, classes.json)")
    p.add_argument("--out", required=True, help="best-model checkpoint to write (.pt)")
    p.add_argument("--minutes", type=float, required=True, help="wall-time budget of this run")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-every", type=int, default=200, help="steps between validations")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers for the first pass (features)")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--format", choices=("mic", "foa"), default=None, help="array format (default: the dataset's)")
    p.add_argument("--no-attention", action="store_true", help="the 2022 CRNN: no self-attention layers")
    p.add_argument("--doa-head", choices=("classwise", "agnostic"), default="classwise",
                   help="classwise: DCASE 2023 multi-ACCDOA only; agnostic: plus class-agnostic ACCDOA tracks "
                        "that detect and localise (docs/notebook/seldnet-one-source.md)")
    p.add_argument("--gcc-upsample", type=int, default=1,
                   help="GCC-PHAT lag steps per sample (1: DCASE 2023, +-32 samples; 4: +-8 samples)")
    p.add_argument("--no-final-metrics", action="store_true", help="skip scoring the best model on val")
    p.add_argument("--resume", action="store_true", help="continue from <out>.resume.pt")
    args = p.parse_args(argv)
    try:
        train_seldnet(args.data, args.out, max_minutes=args.minutes, batch_size=args.batch_size, lr=args.lr,
                      threads=args.threads, seed=args.seed, val_every=args.val_every, workers=args.workers,
                      resume=args.resume, max_steps=args.max_steps, audio_format=args.format,
                      config={**({"attn_layers": 0} if args.no_attention else {}), "doa_head": args.doa_head,
                              "gcc_upsample": args.gcc_upsample},
                      final_metrics=not args.no_final_metrics)
    except DeepASAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
