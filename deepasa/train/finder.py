"""Training of the localisation-map finder (:mod:`deepasa.model.finder`): data stream, loop, state, validation.

    python -m deepasa.train.finder train [--run runs/finder] [--minutes M] [--steps N] ...
    python -m deepasa.train.finder curve [--run runs/finder]        # a validation row from runs/finder/last.pt
    python -m deepasa.train.finder export [--run runs/finder] [--threshold T] [--symmetries 12]
                                                                    # checkpoints/finder.pt + finder_state.pt

Data (docs/finder.md): scenes are simulated on the fly from the bank's train split by one worker process
(:class:`ProcessSource`); ``small_frac`` of them (chosen from the scene index, so a resumed run draws the same
ones) have 1–2 sources, the rest the default 2–5. The trainer keeps the last ``buffer`` scenes' front-end
features (:class:`ReplayBuffer`) and draws each batch item from it with one of the array's 12 rotational
symmetries (a channel permutation of the features and a rotation of the labels, exact: see
:func:`deepasa.model.finder.tetra_symmetries`). Simulation is the bottleneck (~0.65 s CPU per 4-s scene), so
``max_reuse`` caps the draws per simulated scene: past it the trainer waits for the worker instead of
over-fitting the buffer (and lends its core to the others meanwhile).

State (``runs/finder/last.pt``, atomic, every ``save_every_min`` and on SIGTERM): weights, optimizer, step, scene
counters, the random generators' states and the ids of the scenes in the buffer; a resumed run first re-makes
the buffer's newest ``rebuild`` scenes (all of them in the tests, which makes the next step identical), then
continues the scene stream where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import multiprocessing as mp
import queue
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deepasa.errors import DeepASAError, run_script
from deepasa.model.finder import (DEFAULT_THRESHOLD, Finder, FinderConfig, finder_scores, find_objects,
                                  target_map, tetra_symmetries)
from deepasa.scenes.config import SceneConfig
from deepasa.staging import atomic_path
from deepasa.tracking.grid import angle_deg
from deepasa.tracking.peaks import PeakPicker

RUN = Path("runs/finder")
EXPORT = Path("checkpoints/finder.pt")
STATE_EXPORT = Path("checkpoints/finder_state.pt")
K_MAX = 5  # the scene configs draw at most 5 sources
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
MATCH_DEG = 20.0


def small_config() -> SceneConfig:
    """The 1–2-source scene config (half each), otherwise the ASA defaults."""
    return SceneConfig.from_dict({**SceneConfig().to_dict(), "num_sources": [1, 2], "num_sources_weights": [0.5, 0.5]})


def is_small(seed: int, index: int, small_frac: float) -> bool:
    """Whether train scene ``index`` uses the 1–2-source config (a function of the index: reproducible)."""
    return bool(np.random.default_rng([int(seed), int(index), 991]).random() < small_frac)


@dataclass
class Scene:
    """Labels and audio of one scene: mixture (M, N) float32, activity (K, T') bool, doa (K, T', 3) float32."""

    index: int
    mixture: np.ndarray
    activity: np.ndarray
    doa: np.ndarray


def make_train_scene(index: int, seed: int = 0, split: str = "train", small_frac: float = 0.3) -> Scene:
    """Simulate scene ``index`` of the training stream (numpy only; runs in the worker process)."""
    from deepasa.scenes.simulator import simulate_scene

    cfg = small_config() if is_small(seed, index, small_frac) else None
    s = simulate_scene(seed=seed, index=index, split=split, config=cfg)
    return Scene(index, s.mixture.astype(np.float32), s.activity.astype(bool), s.doa.astype(np.float32))


# ---------------------------------------------------------------------------------------------- data sources
class SyncSource:
    """Scenes made in this process, in order: ``make(index) -> Scene`` for the given indices (tests, debugging)."""

    def __init__(self, make, indices):
        self.make, self.indices = make, iter(list(indices))  # a copy: the caller may consume the list

    def get(self, block: bool = True, timeout: float | None = None) -> Scene | None:
        """The next scene, or None when exhausted."""
        i = next(self.indices, None)
        return None if i is None else self.make(i)

    def close(self) -> None:
        """Nothing to stop."""


def _worker(out: mp.Queue, indices: list[int], start: int, seed: int, split: str, small_frac: float) -> None:
    """Worker process: re-make ``indices`` (the buffer of a resumed run), then scenes start, start+1, …."""
    for index in itertools.chain(indices, itertools.count(start)):
        try:
            out.put(make_train_scene(index, seed, split, small_frac))
        except Exception as exc:  # a failed scene (e.g. a bad bank file) is skipped, not fatal to the run
            print(f"scene {index} failed: {exc!r}", file=sys.stderr, flush=True)


class ProcessSource:
    """Scenes simulated by one background process (numpy only), delivered through a bounded queue."""

    def __init__(self, start: int, rebuild: list[int], seed: int, split: str, small_frac: float, depth: int = 8):
        ctx = mp.get_context("spawn")  # a fresh interpreter: no torch threads inherited by fork
        self.queue = ctx.Queue(maxsize=depth)
        self.proc = ctx.Process(target=_worker, args=(self.queue, list(rebuild), start, seed, split, small_frac),
                                daemon=True)
        self.proc.start()

    def get(self, block: bool = True, timeout: float | None = None) -> Scene | None:
        """The next scene; None when none arrived (non-blocking, or after ``timeout``)."""
        try:
            return self.queue.get(block=block, timeout=timeout)
        except queue.Empty:
            if not self.proc.is_alive():
                raise RuntimeError("the simulation worker died") from None
            return None

    def close(self) -> None:
        """Stop the worker."""
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


# ---------------------------------------------------------------------------------------------- buffer
class ReplayBuffer:
    """The last ``capacity`` scenes as front-end features (C_in, T) with padded labels (K_MAX, T')."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.items: list[dict] = []

    def __len__(self) -> int:
        return len(self.items)

    @property
    def ids(self) -> list[int]:
        """Scene indices in insertion order (oldest first)."""
        return [it["index"] for it in self.items]

    def add(self, finder: Finder, scene: Scene) -> None:
        """Compute the scene's features once (they do not depend on the weights) and keep them."""
        with torch.no_grad():
            feats = finder.features(torch.from_numpy(scene.mixture).unsqueeze(0))[0]  # (C_in, T)
        k, t = scene.activity.shape
        act = torch.zeros(K_MAX, t, dtype=torch.bool)  # (K_MAX, T')
        doa = torch.zeros(K_MAX, t, 3)  # (K_MAX, T', 3)
        act[:k], doa[:k] = torch.from_numpy(scene.activity[:K_MAX]), torch.from_numpy(scene.doa[:K_MAX])
        self.items.append({"index": scene.index, "feats": feats, "activity": act, "doa": doa})
        if len(self.items) > self.capacity:
            self.items.pop(0)

    def sample(self, batch: int, gen: torch.Generator, symmetries: list, perm_rows: list[torch.Tensor]):
        """A batch with a random symmetry per item: feats (B, C_in, T), activity (B, K, T'), doa (B, K, T', 3)."""
        pick = torch.randint(len(self.items), (batch,), generator=gen)  # (B,)
        sym = torch.randint(len(symmetries), (batch,), generator=gen)  # (B,)
        feats, act, doa = [], [], []
        for i, s in zip(pick.tolist(), sym.tolist()):
            it = self.items[i]
            rot = torch.as_tensor(symmetries[s][0], dtype=torch.float32)  # (3, 3)
            feats.append(it["feats"][perm_rows[s]])  # (C_in, T): features of mixture[σ]
            act.append(it["activity"])
            doa.append(it["doa"] @ rot.T)  # (K, T', 3): R·u, zeros stay zero
        return torch.stack(feats), torch.stack(act), torch.stack(doa)


# ---------------------------------------------------------------------------------------------- trainer
@dataclass
class TrainConfig:
    """Hyper-parameters of a run (saved in its state; a resumed run keeps them unless overridden)."""

    batch: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    pos_weight: float = 5.0         # BCE weight 1 + (w − 1)·target: at 1 the maps stayed below 0.2 (docs)
    focal_gamma: float = 0.0        # > 0: each map value's BCE times |target − p|^γ (soft-label focal loss)
    buffer: int = 256
    min_fill: int = 32              # scenes in the buffer before the first step
    max_reuse: float = 10.0         # at most this many draws per simulated scene (then wait for the worker)
    seed: int = 0                   # train scene seed
    split: str = "train"
    small_frac: float = 0.3
    reflections: bool = False       # also the 12 mirror symmetries (not used by default: one change at a time)
    finder: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build from a mapping (unknown keys ignored: older states)."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in names})


class FinderTrainer:
    """Model, optimizer, buffer and counters of one run; :meth:`step` is one optimisation step."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.model = Finder(FinderConfig.from_dict(cfg.finder))
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.gen = torch.Generator().manual_seed(cfg.seed + 12345)
        self.symmetries = tetra_symmetries(reflections=cfg.reflections)
        self.perm_rows = [self.model.features.permutation_index(s) for _, s in self.symmetries]
        self.buffer = ReplayBuffer(cfg.buffer)
        self.step_count = 0
        self.next_scene = 0          # the next new scene index of the stream
        self.scenes_added = 0        # new scenes inserted in this run (all sessions)
        self.scene_passes = 0        # batch items drawn (all sessions)
        self.train_seconds = 0.0     # time spent in steps and waits (all sessions)
        self.pending_rebuild: list[int] = []

    # -- data
    def add_scene(self, scene: Scene) -> None:
        """Insert a delivered scene; re-made buffer scenes of a resumed run do not count as new."""
        self.buffer.add(self.model, scene)
        if self.pending_rebuild and scene.index == self.pending_rebuild[0]:
            self.pending_rebuild.pop(0)
        else:
            self.scenes_added += 1
            self.next_scene = max(self.next_scene, scene.index + 1)

    def pull(self, source, *, block: bool) -> int:
        """Insert every scene the source has ready (waits for one when ``block``); returns how many."""
        n = 0
        while True:
            scene = source.get(block=block and n == 0, timeout=60.0 if block else None)
            if scene is None:
                return n
            self.add_scene(scene)
            n += 1

    # -- optimisation
    def loss(self, feats: torch.Tensor, activity: torch.Tensor, doa: torch.Tensor) -> torch.Tensor:
        """BCE-with-logits of the map against :func:`target_map`; feats (B, C_in, T) -> scalar.

        With ``focal_gamma`` γ > 0 each map value's term is scaled by ``|target − sigmoid(logit)|^γ`` (the
        focal loss for soft targets, as in quality focal loss): values the map already gets right weigh
        little, the bumps of sources it misses (weak, overlapped) weigh as before.
        """
        logits = self.model.forward_features(feats)  # (B, T', G)
        target = target_map(doa, activity, self.model.grid, self.model.cfg.sigma)  # (B, T', G)
        weight = 1.0 + (self.cfg.pos_weight - 1.0) * target if self.cfg.pos_weight != 1.0 else None
        if not self.cfg.focal_gamma:
            return F.binary_cross_entropy_with_logits(logits, target, weight=weight)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")  # (B, T', G)
        focal = (target - torch.sigmoid(logits)).abs() ** self.cfg.focal_gamma  # (B, T', G)
        return (bce * focal * (weight if weight is not None else 1.0)).mean()

    def step(self) -> float:
        """One step on a batch drawn from the buffer; returns the loss."""
        self.model.train()
        feats, act, doa = self.buffer.sample(self.cfg.batch, self.gen, self.symmetries, self.perm_rows)
        loss = self.loss(feats, act, doa)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.step_count += 1
        self.scene_passes += self.cfg.batch
        return float(loss.detach())

    # -- state
    def state_dict(self) -> dict:
        """Everything to resume (no audio: the buffer is saved as its scene ids)."""
        return {
            "format": "deepasa-finder-state-1", "train_config": self.cfg.__dict__ | {"finder": self.model.cfg.to_dict()},
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(), "step": self.step_count, "next_scene": self.next_scene,
            "scenes_added": self.scenes_added, "scene_passes": self.scene_passes,
            "train_seconds": self.train_seconds, "buffer_ids": self.buffer.ids,
        }

    @classmethod
    def from_state(cls, state: dict, **overrides) -> "FinderTrainer":
        """Rebuild a trainer from :meth:`state_dict` (``overrides``: TrainConfig fields, e.g. lr); the buffer is
        empty, and :attr:`pending_rebuild` lists the scene ids to re-make into it."""
        cfg = TrainConfig.from_dict({**state["train_config"], **overrides})
        tr = cls(cfg)
        tr.model.load_state_dict(state["model"])
        tr.opt.load_state_dict(state["optimizer"])
        for g in tr.opt.param_groups:  # an lr override applies to a resumed optimizer too
            g["lr"] = cfg.lr
        tr.gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        tr.step_count, tr.next_scene = int(state["step"]), int(state["next_scene"])
        tr.scenes_added, tr.scene_passes = int(state["scenes_added"]), int(state["scene_passes"])
        tr.train_seconds = float(state["train_seconds"])
        tr.pending_rebuild = list(state["buffer_ids"])
        return tr


def save_atomic(obj, path: Path) -> None:
    """torch.save through :func:`deepasa.staging.atomic_path`: a reader never sees half a file."""
    with atomic_path(path, "tmp") as tmp:
        torch.save(obj, tmp)


def load_state(path: Path) -> dict:
    """A resume state written by :func:`save_atomic`; a missing file is a :class:`DeepASAError`."""
    if not Path(path).is_file():
        raise DeepASAError(f"no finder run state at {path}")
    return torch.load(path, map_location="cpu", weights_only=False)


# ---------------------------------------------------------------------------------------------- validation
VAL_SETS = {"2-5": None, "1-2": "small"}


def val_split(run: Path | None = None) -> tuple[str, int]:
    """The validation split and seed: the bank's val split if fetched, else test with seed 7200 (never the
    test seeds 2025/2026 of the reported results). The first choice of a run is kept in ``run/val_split`` so
    that all its curve points use the same scenes."""
    from deepasa.scenes.soundbank import SoundBank

    keep = run / "val_split" if run is not None else None
    if keep is not None and keep.is_file():
        split, seed = keep.read_text().split()
        return split, int(seed)
    try:
        has_val = len(SoundBank.open().clips("val")) > 0
    except Exception:  # no bank index yet
        has_val = False
    split, seed = ("val", 7200) if has_val else ("test", 7200)
    if keep is not None:
        keep.parent.mkdir(parents=True, exist_ok=True)
        keep.write_text(f"{split} {seed}\n")
    return split, seed


def val_scenes(cache: Path, n: int = 20) -> dict[str, list[Scene]]:
    """The fixed validation sets ({"2-5": 2–5-source scenes, "1-2": 1–2-source scenes}, n each), simulated once
    and cached as ``cache/val_<split>_<set>.npz``."""
    from deepasa.scenes.simulator import simulate_scene

    split, seed = val_split(cache)
    out = {}
    for k, (name, kind) in enumerate(VAL_SETS.items()):
        path = cache / f"val_{split}_{name}_{n}.npz"
        if path.is_file():
            z = np.load(path, allow_pickle=True)
            out[name] = [Scene(int(i), m, a, d) for i, m, a, d in zip(z["index"], z["mixture"], z["activity"], z["doa"])]
            continue
        cfg = small_config() if kind == "small" else None
        scenes = []
        for i in range(n):
            s = simulate_scene(seed=seed + k, index=i, split=split, config=cfg)
            scenes.append(Scene(i, s.mixture.astype(np.float32), s.activity.astype(bool), s.doa.astype(np.float32)))
        obj = np.empty(n, dtype=object)
        with atomic_path(path, "tmp", ".npz") as tmp:   # .npz: np.savez would append it to any other name
            np.savez(tmp, index=np.array([s.index for s in scenes]), mixture=np.stack([s.mixture for s in scenes]),
                     activity=_ragged([s.activity for s in scenes], obj.copy()),
                     doa=_ragged([s.doa for s in scenes], obj.copy()))
        out[name] = scenes
    return out


def _ragged(arrays: list[np.ndarray], holder: np.ndarray) -> np.ndarray:
    """Arrays of different first dimension (K sources) as one object array."""
    for i, a in enumerate(arrays):
        holder[i] = a
    return holder


def score_clip(tracks, activity: np.ndarray, doa: np.ndarray, match_deg: float = MATCH_DEG) -> dict:
    """Counts for the curve metrics of one clip (pooled over clips by :func:`summarise`).

    Args:
        tracks: found objects (activity (J, T') bool, doa (J, T', 3)).
        activity: (K, T') true activity; doa: (K, T', 3) true directions.
    Returns:
        dict of counts: src_frames, src_hit (source frames with an active object within match_deg),
        obj_frames, obj_hit (object frames with an active true source within match_deg), errors (list, the
        nearest active object's angle on hit source frames), sources, detected (sources with a hit frame),
        objects, false_objects (objects without a hit frame).
    """
    t = activity.shape[1]
    oa = np.asarray(tracks.activity, dtype=bool).reshape(-1, t)  # (J, T')
    od = np.asarray(tracks.doa, dtype=np.float64).reshape(-1, t, 3)  # (J, T', 3)
    od = od / np.maximum(np.linalg.norm(od, axis=-1, keepdims=True), 1e-12)  # (J, T', 3)
    td = doa / np.maximum(np.linalg.norm(doa, axis=-1, keepdims=True), 1e-12)  # (K, T', 3)
    ang = angle_deg(td[:, None], od[None])  # (K, J, T')
    both = activity[:, None] & oa[None]  # (K, J, T')
    ang = np.where(both, ang, np.inf)  # (K, J, T')
    src_best = ang.min(axis=1) if oa.shape[0] else np.full(activity.shape, np.inf)  # (K, T')
    obj_best = ang.min(axis=0) if activity.shape[0] else np.full(oa.shape, np.inf)  # (J, T')
    src_hit = activity & (src_best <= match_deg)  # (K, T')
    obj_hit = oa & (obj_best <= match_deg)  # (J, T')
    return {"src_frames": int(activity.sum()), "src_hit": int(src_hit.sum()), "obj_frames": int(oa.sum()),
            "obj_hit": int(obj_hit.sum()), "errors": src_best[src_hit].tolist(),
            "sources": int(activity.any(axis=1).sum()), "detected": int(src_hit.any(axis=1).sum()),
            "objects": int(oa.any(axis=1).sum()), "false_objects": int((oa.any(axis=1) & ~obj_hit.any(axis=1)).sum())}


def summarise(counts: list[dict]) -> dict:
    """Pool :func:`score_clip` counts over clips: recall, precision, f1, doa_err_med, detection, fa_per_clip."""
    tot = {k: sum(c[k] for c in counts) for k in counts[0] if k != "errors"}
    errors = [e for c in counts for e in c["errors"]]
    recall = tot["src_hit"] / max(tot["src_frames"], 1)
    precision = tot["obj_hit"] / max(tot["obj_frames"], 1)
    return {"recall": recall, "precision": precision,
            "f1": 2 * recall * precision / max(recall + precision, 1e-12),
            "doa_err_med": float(np.median(errors)) if errors else float("nan"),
            "detection": tot["detected"] / max(tot["sources"], 1),
            "fa_per_clip": tot["false_objects"] / len(counts), "objects_per_clip": tot["objects"] / len(counts),
            "clips": len(counts)}


def evaluate(model: Finder, sets: dict[str, list[Scene]], thresholds=THRESHOLDS) -> dict:
    """Curve metrics per set and threshold: {(set, threshold): summary}. The network runs once per clip."""
    picker = PeakPicker(model.grid.double().numpy())
    out = {}
    for name, scenes in sets.items():
        maps = [finder_scores(s.mixture, model) for s in scenes]  # each (T', G)
        for th in thresholds:
            counts = [score_clip(find_objects(None, model, threshold=th, picker=picker, scores=m), s.activity, s.doa)
                      for s, m in zip(scenes, maps)]
            out[(name, th)] = summarise(counts)
    return out


def best_threshold(results: dict) -> float:
    """The threshold of the best mean F1 (frame recall and precision) over the validation sets."""
    ths = sorted({th for _, th in results})
    return max(ths, key=lambda th: np.mean([r["f1"] for (n, t), r in results.items() if t == th]))


CURVE_FIELDS = ["step", "scene_passes", "scenes_simulated", "train_hours", "split", "set", "threshold", "tuned",
                "recall", "precision", "f1", "doa_err_med", "detection", "fa_per_clip", "objects_per_clip", "clips"]


def curve_point(trainer_or_state, run: Path, n_val: int = 20) -> float:
    """Evaluate the current weights on the validation sets, append rows to ``run/curve.csv``; returns the tuned
    threshold (also printed as a one-line summary)."""
    if isinstance(trainer_or_state, FinderTrainer):
        tr = trainer_or_state
        model, step, passes, sims, secs = tr.model, tr.step_count, tr.scene_passes, tr.scenes_added, tr.train_seconds
    else:
        st = trainer_or_state
        model = Finder(FinderConfig.from_dict(st["train_config"]["finder"]))
        model.load_state_dict(st["model"])
        step, passes, sims, secs = st["step"], st["scene_passes"], st["scenes_added"], st["train_seconds"]
    was = model.training
    results = evaluate(model.eval(), val_scenes(run, n_val))
    model.train(was)
    tuned = best_threshold(results)
    split, _ = val_split(run)
    path = run / "curve.csv"
    new = not path.is_file()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, CURVE_FIELDS)
        if new:
            w.writeheader()
        for (name, th), r in results.items():
            w.writerow({"step": step, "scene_passes": passes, "scenes_simulated": sims,
                        "train_hours": round(secs / 3600, 4), "split": split, "set": name, "threshold": th,
                        "tuned": int(th == tuned), **{k: round(v, 4) if isinstance(v, float) else v
                                                       for k, v in r.items()}})
    line = " | ".join(f"{name}: R {r['recall']:.3f} P {r['precision']:.3f} err {r['doa_err_med']:.1f}° "
                      f"det {r['detection']:.2f} FA {r['fa_per_clip']:.2f}"
                      for (name, th), r in results.items() if th == tuned)
    print(f"curve step {step} passes {passes} threshold {tuned}: {line}", flush=True)
    return tuned


# ---------------------------------------------------------------------------------------------- loop
def train(args) -> int:
    """The background training loop (``train`` subcommand)."""
    torch.set_num_threads(1)
    run = Path(args.run)
    if args.focal_gamma is not None and args.focal_gamma < 0:
        print("error: --focal-gamma must be >= 0", file=sys.stderr)
        return 2
    run.mkdir(parents=True, exist_ok=True)
    last = run / "last.pt"
    overrides = {k: v for k, v in {"lr": args.lr, "pos_weight": args.pos_weight, "max_reuse": args.max_reuse,
                                   "split": args.split, "focal_gamma": args.focal_gamma}.items() if v is not None}
    if last.is_file():
        if args.gcc_band_edges:
            print("error: --gcc-band-edges sets a new run's front end; a resumed run keeps its own", file=sys.stderr)
            return 2
        tr = FinderTrainer.from_state(load_state(last), **overrides)
        print(f"resuming {last} at step {tr.step_count} (scene {tr.next_scene})", flush=True)
    else:
        finder_cfg = {}
        if args.gcc_band_edges:
            finder_cfg["gcc_band_edges_hz"] = tuple(float(e) for e in args.gcc_band_edges.split(","))
        tr = FinderTrainer(TrainConfig(**overrides, finder=finder_cfg))
        torch.manual_seed(0)
        print(f"new run: {tr.model.n_parameters()} parameters", flush=True)
    rebuild = tr.pending_rebuild[-args.rebuild:] if args.rebuild else []
    tr.pending_rebuild = list(rebuild)
    source = ProcessSource(tr.next_scene, rebuild, tr.cfg.seed, tr.cfg.split, tr.cfg.small_frac)
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(flag=True))
    loss_path = run / "loss.csv"
    new_log = not loss_path.is_file()
    log = open(loss_path, "a", newline="")
    writer = csv.writer(log)
    if new_log:
        writer.writerow(["step", "loss", "scene_passes", "scenes_simulated", "buffer", "wall"])
    t_start = time.time()
    last_save = last_curve = time.monotonic()
    inserted = passes = 0  # this session's scenes into the buffer and batch items drawn
    try:
        if args.curve_at_start:
            curve_point(tr, run)
        while not stop["flag"]:
            t0 = time.monotonic()
            inserted += tr.pull(source, block=len(tr.buffer) < tr.cfg.min_fill)
            # cap the reuse of simulated scenes: wait for the worker rather than over-fit the buffer
            while not stop["flag"] and passes + tr.cfg.batch > tr.cfg.max_reuse * inserted:
                inserted += tr.pull(source, block=True)
            if stop["flag"]:
                break
            if len(tr.buffer) < tr.cfg.min_fill:
                continue
            loss = tr.step()
            passes += tr.cfg.batch
            tr.train_seconds += time.monotonic() - t0
            writer.writerow([tr.step_count, f"{loss:.6f}", tr.scene_passes, tr.scenes_added, len(tr.buffer),
                             round(time.time() - t_start, 1)])
            if tr.step_count % 50 == 0:
                log.flush()
                print(f"step {tr.step_count} loss {loss:.5f} scenes {tr.scenes_added} passes {tr.scene_passes} "
                      f"{(time.time() - t_start) / 60:.1f} min", flush=True)
            now = time.monotonic()
            if now - last_save > 60 * args.save_every_min:
                save_atomic(tr.state_dict(), last)
                last_save = now
            if args.curve_every_min and now - last_curve > 60 * args.curve_every_min:
                save_atomic(tr.state_dict(), last)
                curve_point(tr, run)
                last_curve = last_save = time.monotonic()
            if (args.steps and tr.step_count >= args.steps) or \
                    (args.minutes and time.time() - t_start > 60 * args.minutes):
                break
    finally:
        save_atomic(tr.state_dict(), last)
        log.close()
        source.close()
        print(f"saved {last} at step {tr.step_count}", flush=True)
    return 0


def export(args) -> int:
    """``export``: checkpoints/finder.pt (fp16 weights + config + threshold + symmetries) and the resume state copy.

    The export reads its maps averaged over ``args.symmetries`` array rotations (``meta["symmetries"]``, 12 as
    shipped). Its peak threshold is ``args.threshold``; without one, the latest curve point's tuned threshold,
    which was tuned on single-pass maps (the curve's): the averaged maps' peaks are lower and smoother, so tune a
    shipped export's threshold on its own reading (docs/finder.md, "Threshold").
    """
    run = Path(args.run)
    st = load_state(run / "last.pt")
    model = Finder(FinderConfig.from_dict(st["train_config"]["finder"]))
    model.load_state_dict(st["model"])
    threshold = DEFAULT_THRESHOLD
    curve = run / "curve.csv"
    if args.threshold is not None:
        threshold = args.threshold
    elif curve.is_file():  # the tuned threshold of the latest curve point
        rows = list(csv.DictReader(open(curve)))
        tuned = [r for r in rows if r["tuned"] == "1"]
        if tuned:
            threshold = float(tuned[-1]["threshold"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out, step=int(st["step"]), scene_passes=int(st["scene_passes"]), threshold=threshold,
               symmetries=args.symmetries, half=True)
    shutil.copyfile(run / "last.pt", args.state_out)
    print(f"exported {out} ({out.stat().st_size / 1e6:.2f} MB, step {st['step']}, threshold {threshold}, "
          f"{args.symmetries} symmetries) and "
          f"{args.state_out} ({Path(args.state_out).stat().st_size / 1e6:.2f} MB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line (module docstring)."""
    p = argparse.ArgumentParser(prog="python -m deepasa.train.finder", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train (resumes RUN/last.pt)")
    t.add_argument("--run", default=str(RUN))
    t.add_argument("--minutes", type=float, default=0, help="stop after this many minutes (0: until SIGTERM)")
    t.add_argument("--steps", type=int, default=0, help="stop at this step (0: until SIGTERM)")
    t.add_argument("--lr", type=float)
    t.add_argument("--pos-weight", type=float)
    t.add_argument("--focal-gamma", type=float, help="focal loss exponent γ (default 0: plain weighted BCE)")
    t.add_argument("--max-reuse", type=float)
    t.add_argument("--gcc-band-edges", help="new runs: band edges in Hz of band-wise GCC features, e.g. "
                   "0,500,1000,2000,8000 (default: one GCC over all bins)")
    t.add_argument("--split", help="bank split of the training scenes (default train; others only for smoke tests)")
    t.add_argument("--save-every-min", type=float, default=5.0)
    t.add_argument("--curve-every-min", type=float, default=20.0, help="curve point every this many minutes (0: off)")
    t.add_argument("--curve-at-start", action="store_true")
    t.add_argument("--rebuild", type=int, default=64, help="re-make this many of the buffer's newest scenes on resume")
    c = sub.add_parser("curve", help="a validation row for RUN/last.pt")
    c.add_argument("--run", default=str(RUN))
    e = sub.add_parser("export", help="checkpoints/finder.pt and checkpoints/finder_state.pt")
    e.add_argument("--run", default=str(RUN))
    e.add_argument("--out", default=str(EXPORT))
    e.add_argument("--state-out", default=str(STATE_EXPORT))
    e.add_argument("--threshold", type=float, help="peak threshold (default: the latest curve point's)")
    e.add_argument("--symmetries", type=int, default=12, choices=(1, 4, 12),
                   help="rotations the export's maps are averaged over (default 12, as shipped)")
    args = p.parse_args(argv)
    if args.cmd == "train":
        return train(args)
    torch.set_num_threads(1)
    if args.cmd == "curve":
        curve_point(load_state(Path(args.run) / "last.pt"), Path(args.run))
        return 0
    return export(args)


if __name__ == "__main__":
    run_script(main)
