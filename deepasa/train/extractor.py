"""Training of the trajectory-conditioned extractor (:mod:`deepasa.model.extractor`): resumable, one process.

    python -m deepasa.train.extractor train --run runs/extractor [--hours 2] [--threads 1]
    python -m deepasa.train.extractor curve --run runs/extractor          # validation row now
    python -m deepasa.train.extractor export --run runs/extractor --out checkpoints/extractor.pt

Every source of every scene is one training example, with its *true* trajectory perturbed like a finder's
errors (direction noise of ~8°, onsets and offsets moved by a frame, a few frames flipped), so there is no
permutation problem. Scenes are simulated on the fly from the bank's train split by one worker process — 60 %
default 2–5-source scenes, 25 % dense (``configs/data/scenes_dense.yaml``), 15 % 1–2 sources (``--mix``) — and cropped to
2 s on label-frame boundaries; the worker also runs the spatial stage, the trainer only the network.

Loss per object: ``−SNR`` of its 4-channel image plus half the ``−SNR`` of its direct path, each capped at
30 dB (scale matters: the parts must add up to the mixture at the right level); ``--loss si-sdr`` uses the
scale-invariant form instead (one scale per object over the 4 channels), the validation's own measure. Adam, learning rate 1e-3,
gradient norm clipped at 5. The run's state (weights, optimizer, step, scene counter, random generators) is
written atomically to ``<run>/last.pt`` every ``--save-every`` seconds and at the end; ``train`` resumes from
it. ``<run>/train.csv`` logs every step, ``<run>/curve.csv`` every validation: image and direct-path SI-SDRi
of the extractor and of the zero-training stage on the same fixed scenes (bank's val split, seed 7600).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from deepasa.errors import DeepASAError
from deepasa.model.extractor import ExtractorConfig, TrajectoryExtractor, extractor_features
from deepasa.separation.spatial import check_trajectories, istft, spatial_stft
from deepasa.staging import atomic_path

REPO = Path(__file__).resolve().parents[2]
MIX = (("default", 0.60), ("dense", 0.25), ("1-2", 0.15))
VAL_SEED, VAL_PER_SET = 7600, 8
CROP_S = 2.0


def scene_config(kind: str):
    """The :class:`~deepasa.scenes.config.SceneConfig` of a scene kind of the training mix."""
    from deepasa.scenes.config import SceneConfig

    if kind == "dense":
        return SceneConfig.from_sources(REPO / "configs" / "data" / "scenes_dense.yaml")
    if kind == "1-2":
        return SceneConfig.from_dict({**SceneConfig().to_dict(), "num_sources": [1, 2],
                                      "num_sources_weights": [0.5, 0.5]})
    return SceneConfig()


def perturb(activity: np.ndarray, doa: np.ndarray, rng: np.random.Generator, deg: float = 8.0,
            edge_p: float = 0.3, flip_p: float = 0.03) -> tuple[np.ndarray, np.ndarray]:
    """A true trajectory made to look like a finder's.

    Args:
        activity: (K, T') bool; doa: (K, T', 3) unit vectors.
        rng: the generator; deg: std of the direction error per axis (slowly varying, per object);
        edge_p: chance that each onset/offset moves by one frame; flip_p: chance that a frame flips.
    Returns:
        (activity (K, T') bool, doa (K, T', 3) unit vectors).
    """
    act = activity.copy()
    k, t = act.shape
    for i in range(k):
        edges = np.flatnonzero(np.diff(act[i].astype(int)))  # frame before each change
        for e in edges:
            if rng.random() < edge_p:
                j = e + (1 if rng.random() < 0.5 else 0)  # the frame that flips: either side of the edge
                act[i, j] = not act[i, j]
    act ^= rng.random(act.shape) < flip_p
    drift = np.cumsum(rng.normal(0, 1, (k, t, 3)), axis=1)  # (K, T', 3) a random walk ...
    drift = drift - drift.mean(axis=1, keepdims=True)
    drift = drift / np.maximum(drift.std(axis=(1, 2), keepdims=True), 1e-9)  # ... of unit spread
    offset = rng.normal(0, 1, (k, 1, 3))  # (K, 1, 3) a fixed bias
    err = np.radians(deg) * (0.7 * offset + 0.7 * drift)  # (K, T', 3)
    out = doa + err
    return act, out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)


def make_example(kind: str, seed: int, index: int, split: str, rng: np.random.Generator, bank, ecfg: ExtractorConfig,
                 jitter: bool = True) -> dict | None:
    """One cropped scene with its stage output and targets (None when no source is active in the crop)."""
    from deepasa.scenes.simulator import simulate_scene

    s = simulate_scene(seed=seed, index=index, split=split, config=scene_config(kind), bank=bank)
    ls = int(round(ecfg.label_hop * ecfg.sample_rate))
    n_frames = int(round(CROP_S / ecfg.label_hop))
    f0 = int(rng.integers(0, s.activity.shape[1] - n_frames + 1))
    sl = slice(f0 * ls, (f0 + n_frames) * ls)
    act, doa = s.activity[:, f0:f0 + n_frames], s.doa[:, f0:f0 + n_frames]  # (K, T'), (K, T', 3)
    keep = act.any(axis=1)
    if not keep.any():
        return None
    act, doa = act[keep], doa[keep]
    unit = np.where(act[..., None], doa, [1.0, 0.0, 0.0])  # (K, T', 3)
    if jitter:
        act, unit = perturb(act, unit, rng)
    x, act, unit, offsets = check_trajectories(s.mixture[:, sl], act, unit)
    st = spatial_stft(x, act, unit, ecfg.sample_rate, ecfg.label_hop, offsets, ecfg.spatial_config())
    return {"st": st, "mixture": x, "direct": torch.as_tensor(s.direct[keep][:, :, sl]),
            "image": torch.as_tensor((s.direct + s.reverb)[keep][:, :, sl]), "kind": kind}


def parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    """'default=0.45,dense=0.25,1-2=0.3' → the scene-kind shares of the training mix (must sum to 1)."""
    try:
        mix = tuple((k, float(v)) for k, v in (item.split("=") for item in text.split(",")))
    except ValueError as exc:
        raise DeepASAError(f"--mix wants kind=share,... (e.g. default=0.45,dense=0.25,1-2=0.3): {text!r}") from exc
    kinds = {k for k, _ in MIX}
    if {k for k, _ in mix} - kinds or abs(sum(v for _, v in mix) - 1) > 1e-6 or min(v for _, v in mix) < 0:
        raise DeepASAError(f"--mix: kinds from {sorted(kinds)} with shares >= 0 that sum to 1; got {text!r}")
    return mix


class SceneStream(torch.utils.data.IterableDataset):
    """Training examples, simulated in a worker process; example i depends only on (seed, i) and the mix."""

    def __init__(self, ecfg: ExtractorConfig, start: int, seed: int = 1234, mix=MIX) -> None:
        self.ecfg, self.start, self.seed, self.mix = ecfg, start, seed, tuple(mix)

    def __iter__(self):
        from deepasa.scenes.soundbank import SoundBank

        torch.set_num_threads(1)
        bank = SoundBank.open()
        i = self.start
        while True:
            rng = np.random.default_rng([self.seed, i])
            kind = self.mix[int(rng.choice(len(self.mix), p=[p for _, p in self.mix]))][0]
            ex = make_example(kind, self.seed, i, "train", rng, bank, self.ecfg)
            i += 1
            if ex is not None:
                ex["index"] = i
                yield ex


def snr_loss(est: torch.Tensor, target: torch.Tensor, cap_db: float = 30.0) -> torch.Tensor:
    """−SNR per object over all channels, capped: est, target (K, M, N) → (K,)."""
    err = (est - target).square().sum(dim=(-1, -2))  # (K,)
    power = target.square().sum(dim=(-1, -2))  # (K,)
    return -10 * torch.log10(power / (err + power * 10 ** (-cap_db / 10)) + 1e-12)


def si_sdr_loss(est: torch.Tensor, target: torch.Tensor, cap_db: float = 30.0) -> torch.Tensor:
    """−SI-SDR per object over all channels (one scale per object), capped: est, target (K, M, N) → (K,).

    Scale-invariant like the validation's measure: the level is left to the stage (whose parts add up).
    """
    alpha = (est * target).sum(dim=(-1, -2)) / target.square().sum(dim=(-1, -2)).clamp_min(1e-12)  # (K,)
    ref = alpha[:, None, None] * target  # (K, M, N)
    err = (est - ref).square().sum(dim=(-1, -2))  # (K,)
    power = ref.square().sum(dim=(-1, -2))  # (K,)
    # the epsilons keep a silent target with a silent estimate (0 / 0) finite, as deepasa.metrics does
    return -10 * torch.log10((power + 1e-12) / (err + power * 10 ** (-cap_db / 10) + 1e-12))


LOSSES = {"snr": snr_loss, "si-sdr": si_sdr_loss}


def _si_sdr(est: np.ndarray, ref: np.ndarray) -> float:
    from deepasa.metrics.separation import si_sdr

    return float(si_sdr(est, ref))


def validate(model: TrajectoryExtractor, examples: list[dict]) -> dict:
    """Mean reference-channel SI-SDRi of image and direct path, extractor vs the zero-training stage."""
    cfg = model.config.spatial_config()
    rows = {}
    model.eval()
    with torch.no_grad():
        for ex in examples:
            n = ex["mixture"].shape[-1]
            img, dire = model(extractor_features(ex["st"]), ex["st"])
            est = {"extractor": (istft(img, n, cfg), istft(dire, n, cfg)),
                   "stage": (istft(ex["st"].image, n, cfg), istft(ex["st"].direct, n, cfg))}
            mix = ex["mixture"][0].numpy()
            for k in range(ex["image"].shape[0]):
                tgt_i, tgt_d = ex["image"][k, 0].numpy(), ex["direct"][k, 0].numpy()
                for name, (i_est, d_est) in est.items():
                    key = (ex["kind"], name)
                    r = rows.setdefault(key, {"image": [], "direct": []})
                    r["image"].append(_si_sdr(i_est[k, 0].numpy(), tgt_i) - _si_sdr(mix, tgt_i))
                    r["direct"].append(_si_sdr(d_est[k, 0].numpy(), tgt_d) - _si_sdr(mix, tgt_d))
    model.train()
    out = {}
    for (kind, name), r in rows.items():
        out[f"{kind}/{name}/image"] = float(np.mean(r["image"]))
        out[f"{kind}/{name}/direct"] = float(np.mean(r["direct"]))
    return out


def validation_set(ecfg: ExtractorConfig) -> list[dict]:
    """Fixed validation examples: VAL_PER_SET scenes of each kind from the bank's val split, true trajectories."""
    from deepasa.scenes.soundbank import SoundBank

    bank = SoundBank.open()
    out = []
    for j, (kind, _) in enumerate(MIX):
        for i in range(VAL_PER_SET):
            ex = make_example(kind, VAL_SEED + j, i, "val", np.random.default_rng([VAL_SEED, j, i]), bank, ecfg,
                              jitter=False)
            if ex is not None:
                out.append(ex)
    return out


def _save(path: Path, state: dict) -> None:
    with atomic_path(path, "tmp") as tmp:
        torch.save(state, tmp)


def _append(path: Path, row: dict) -> None:
    new = not path.is_file()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def train(run: Path, hours: float, threads: int, save_every: float, val_every: int, lr: float = 1e-3,
          max_steps: int | None = None, ecfg: ExtractorConfig | None = None, loss_name: str = "snr",
          mix=None) -> int:
    """Train (or resume) the run in ``run``; returns the step reached. ``loss_name`` (:data:`LOSSES`) is a fresh
    run's; a resumed run keeps its own. ``mix`` (:func:`parse_mix`) sets the scene-kind shares from here on (a
    resumed run otherwise keeps its own; default :data:`MIX`)."""
    torch.set_num_threads(threads)
    run.mkdir(parents=True, exist_ok=True)
    state_path = run / "last.pt"
    model = TrajectoryExtractor(ecfg or ExtractorConfig())
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    step, scenes = 0, 0
    if state_path.is_file():
        st = torch.load(state_path, map_location="cpu", weights_only=False)
        model = TrajectoryExtractor(ExtractorConfig(**st["config"]))
        model.load_state_dict(st["model"])
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        opt.load_state_dict(st["optimizer"])
        step, scenes = st["step"], st["scenes"]
        loss_name = st.get("loss", "snr")
        mix = mix or tuple(tuple(m) for m in st.get("mix", MIX))
        torch.set_rng_state(st["torch_rng"])
        print(f"resumed {run} at step {step} ({scenes} scenes)", file=sys.stderr)
    from dataclasses import asdict

    def state() -> dict:
        return {"config": asdict(model.config), "model": model.state_dict(), "optimizer": opt.state_dict(),
                "step": step, "scenes": scenes, "torch_rng": torch.get_rng_state(), "loss": loss_name,
                "mix": [list(m) for m in mix]}

    stop = {"now": False}
    import signal

    def on_term(_sig, _frame):  # finish the step, write the state, leave
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_term)
    mix = tuple(mix or MIX)
    stream = torch.utils.data.DataLoader(SceneStream(model.config, scenes, mix=mix), batch_size=None, num_workers=1,
                                         prefetch_factor=4, persistent_workers=False)
    val = None
    t_end, t_save = time.time() + hours * 3600, time.time() + save_every
    cfg = model.config.spatial_config()
    for ex in stream:
        if val is None and step % val_every == 0:
            val = validation_set(model.config)
        if step % val_every == 0:
            _append(run / "curve.csv", {"step": step, "scenes": scenes, "time": int(time.time()),
                                        **{k: round(v, 3) for k, v in validate(model, val).items()}})
        t0 = time.perf_counter()
        n = ex["mixture"].shape[-1]
        img, dire = model(extractor_features(ex["st"]), ex["st"])  # (K, M, F, T) each
        loss_fn = LOSSES[loss_name]
        loss = (loss_fn(istft(img, n, cfg), ex["image"]) + 0.5 * loss_fn(istft(dire, n, cfg), ex["direct"])).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step, scenes = step + 1, ex["index"]
        _append(run / "train.csv", {"step": step, "scenes": scenes, "kind": ex["kind"], "objects": ex["image"].shape[0],
                                    "loss": round(float(loss.detach()), 4), "seconds": round(time.perf_counter() - t0, 3)})
        if not math.isfinite(float(loss.detach())):
            raise RuntimeError(f"loss is {float(loss.detach())} at step {step}")
        if time.time() >= t_save:
            _save(state_path, state())
            t_save = time.time() + save_every
        if stop["now"] or time.time() >= t_end or (max_steps is not None and step >= max_steps):
            break
    _save(state_path, state())
    return step


def export(run: Path, out: Path) -> Path:
    """Write the run's weights as a :meth:`TrajectoryExtractor.from_pretrained` checkpoint."""
    path = run / "last.pt"
    if not path.is_file():
        raise DeepASAError(f"no run state at {path}")
    st = torch.load(path, map_location="cpu", weights_only=False)
    model = TrajectoryExtractor(ExtractorConfig(**st["config"]))
    model.load_state_dict(st["model"])
    blob = model.serialize()
    blob.update(step=st["step"], scenes=st["scenes"])
    out.parent.mkdir(parents=True, exist_ok=True)
    _save(out, blob)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m deepasa.train.extractor", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--run", type=Path, default=REPO / "runs" / "extractor")
    t.add_argument("--hours", type=float, default=1.0)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--save-every", type=float, default=300.0, help="seconds between state writes")
    t.add_argument("--val-every", type=int, default=500, help="steps between validations")
    t.add_argument("--max-steps", type=int)
    t.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of a fresh run (a resumed run keeps "
                   "its optimizer's)")
    t.add_argument("--mix", help="scene-kind shares, e.g. default=0.45,dense=0.25,1-2=0.3 (default "
                   + ",".join(f"{k}={v}" for k, v in MIX) + "; a resumed run keeps its own unless given)")
    t.add_argument("--loss", choices=tuple(LOSSES), default="snr",
                   help="a fresh run's loss per object: snr (-SNR, capped at 30 dB) or si-sdr (scale-invariant)")
    c = sub.add_parser("curve")
    c.add_argument("--run", type=Path, default=REPO / "runs" / "extractor")
    e = sub.add_parser("export")
    e.add_argument("--run", type=Path, default=REPO / "runs" / "extractor")
    e.add_argument("--out", type=Path, default=REPO / "checkpoints" / "extractor.pt")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "train":
            if args.hours <= 0 or args.threads < 1 or args.save_every <= 0 or args.val_every < 1 or args.lr <= 0:
                raise DeepASAError("--hours, --save-every, --lr must be > 0; --threads, --val-every at least 1")
            mix = parse_mix(args.mix) if args.mix else None
            print(f"step {train(args.run, args.hours, args.threads, args.save_every, args.val_every, lr=args.lr, max_steps=args.max_steps, loss_name=args.loss, mix=mix)}")
        elif args.cmd == "export":
            print(f"wrote {export(args.run, args.out)}")
        else:
            path = args.run / "last.pt"
            if not path.is_file():
                raise DeepASAError(f"no run state at {path}")
            st = torch.load(path, map_location="cpu", weights_only=False)
            model = TrajectoryExtractor(ExtractorConfig(**st["config"]))
            model.load_state_dict(st["model"])
            row = validate(model, validation_set(model.config))
            _append(args.run / "curve.csv", {"step": st["step"], "scenes": st["scenes"], "time": int(time.time()),
                                             **{k: round(v, 3) for k, v in row.items()}})
            print(row)
    except DeepASAError as exc:
        print(f"deepasa.train.extractor: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
