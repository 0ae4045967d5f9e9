"""Data, fitting and evaluation of the object class read-out (:mod:`deepasa.model.object_classes`).

    python -m deepasa.train.object_classes collect  [--sets train val test]   # embeddings -> runs/object_classes/
    python -m deepasa.train.object_classes select                              # hyper-parameters on val
    python -m deepasa.train.object_classes fit      --out checkpoints/object_classes.pt
    python -m deepasa.train.object_classes evaluate --model checkpoints/object_classes.pt

Objects come from scenes simulated from the sound bank (``simulate_scene``): default 2–5-source scenes, 1–2-source
scenes and dense scenes (``configs/data/scenes_dense.yaml``). Every source of a scene is separated by the
zero-training spatial stage (:func:`deepasa.separation.separate`) given its trajectory — the true one perturbed
like a finder's (:func:`deepasa.train.extractor.perturb`) for the training split, the true one for val and test —
and its reference-channel image is cut by :func:`~deepasa.model.object_classes.object_signal` and embedded by
the frozen aisfx CNN. Beside it, with the same activity, the embeddings of the mixture's reference channel,
of the source's clean direct path and of its clean image (direct + reverb). All are cached per scene set
in ``runs/object_classes/<split>-<kind>-<seed>-<n>.npz`` so that fitting and scoring take seconds.

The read-out (standardisation + linear or one-hidden-layer MLP) is fitted with class-balanced cross-entropy
(scenes draw classes uniformly, the bank does not), Adam, full batch. ``select`` scores a grid on the val
split's scenes; ``fit`` writes the chosen read-out; ``evaluate`` scores it on the test split's scenes (seeds
7700 default, 7701 1–2 sources, 7702 dense): accuracy, balanced accuracy and the confusion matrix of the
separated objects, and the same read-out on the mixture's reference channel and on the clean direct path.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from deepasa.errors import DeepASAError
from deepasa.model.object_classes import ObjectClassifier, object_signal
from deepasa.staging import atomic_path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "runs" / "object_classes"
KINDS = ("default", "1-2", "dense")
# (split, kind, seed, scenes): the scene sets whose embeddings are cached
SETS = {
    "train": [("train", "default", 7310, 200), ("train", "1-2", 7311, 120), ("train", "dense", 7312, 80)],
    "val": [("val", "default", 7650, 30), ("val", "1-2", 7651, 30), ("val", "dense", 7652, 20)],
    "test": [("test", "default", 7700, 40), ("test", "1-2", 7701, 40), ("test", "dense", 7702, 30)],
}
FEATURES = ("sep", "mix", "direct", "image")
BANK_CROPS = 2  # dry crops per training clip of the bank (the "+bank" training examples)


def set_path(split: str, kind: str, seed: int, n: int) -> Path:
    """The cache file of one scene set."""
    return CACHE / f"{split}-{kind}-{seed}-{n}.npz"


def scene_objects(scene, rng: np.random.Generator | None, clf: ObjectClassifier) -> dict[str, np.ndarray]:
    """Embeddings of every active source of one scene.

    Args:
        scene: a :class:`~deepasa.scenes.simulator.SceneAudio`.
        rng: perturb the trajectories with it (None: true trajectories).
        clf: holds the embedding network and the :func:`object_signal` parameters.
    Returns:
        {"sep", "mix", "direct", "image": (K, 512), "label": (K,), "active_s": (K,)} for the K active sources.
    """
    from deepasa.separation import separate

    keep = scene.activity.any(axis=1)  # (K,)
    act = scene.activity[keep]  # (K, T')
    unit = np.where(act[..., None], scene.doa[keep], [1.0, 0.0, 0.0])  # (K, T', 3)
    if rng is not None:
        from deepasa.train.extractor import perturb

        act, unit = perturb(act, unit, rng)
    out = separate(scene.mixture, act, unit)
    cfg = clf.config

    def cut(x, a):
        return object_signal(x, a, sample_rate=cfg["sample_rate"], label_hop=cfg["label_hop"],
                             max_seconds=cfg["max_seconds"], min_seconds=cfg["min_seconds"])

    k = len(act)
    sources = {"sep": out.image[:, 0], "mix": np.repeat(scene.mixture[None, 0], k, 0),
               "direct": scene.direct[keep][:, 0], "image": (scene.direct + scene.reverb)[keep][:, 0]}
    res = {name: clf.embed([cut(x[i], act[i]) for i in range(k)]).numpy() for name, x in sources.items()}
    res["label"] = np.array([m["class_index"] for m, kp in zip(scene.meta["sources"], keep) if kp], np.int64)
    res["active_s"] = act.sum(1) * cfg["label_hop"]
    return res


def collect_set(split: str, kind: str, seed: int, n: int, bank, clf: ObjectClassifier) -> Path:
    """Simulate, separate and embed one scene set; write its cache file (skipped when it exists)."""
    from deepasa.scenes.simulator import simulate_scene
    from deepasa.train.extractor import scene_config

    path = set_path(split, kind, seed, n)
    if path.is_file():
        print(f"{path.name}: cached", file=sys.stderr, flush=True)
        return path
    cfg = scene_config(kind)
    parts: dict[str, list] = {}
    t0 = time.time()
    for i in range(n):
        scene = simulate_scene(seed=seed, index=i, split=split, config=cfg, bank=bank)
        rng = np.random.default_rng([seed, i]) if split == "train" else None
        res = scene_objects(scene, rng, clf)
        res["scene"] = np.full(len(res["label"]), i)
        res["n_sources"] = np.full(len(res["label"]), len(scene.meta["sources"]))
        for key, value in res.items():
            parts.setdefault(key, []).append(value)
        if (i + 1) % 20 == 0 or i + 1 == n:
            print(f"{path.name}: {i + 1}/{n} scenes, {sum(map(len, parts['label']))} objects, "
                  f"{time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    with atomic_path(path, "tmp", ".npz") as tmp:   # .npz: np.savez would append it to any other name
        np.savez_compressed(tmp, **{k: np.concatenate(v) for k, v in parts.items()},
                            seconds=time.time() - t0, classes=np.array(bank.classes))
    return path


def bank_path(split: str, per_clip: int) -> Path:
    """The cache file of clean sound-bank crops."""
    return CACHE / f"bank-{split}-{per_clip}.npz"


def collect_bank(split: str, per_clip: int, bank, clf: ObjectClassifier, seed: int = 0) -> Path:
    """Embed ``per_clip`` random dry crops (1–4 s, as long as scene objects) of every clip of ``split``."""
    path = bank_path(split, per_clip)
    if path.is_file():
        print(f"{path.name}: cached", file=sys.stderr, flush=True)
        return path
    rng = np.random.default_rng(seed)
    sr = bank.sample_rate
    signals, labels = [], []
    t0 = time.time()
    for clip in bank.clips(split):
        a = bank.load(clip)  # (L,)
        for _ in range(per_clip):
            n = int(rng.uniform(1.0, 4.0) * sr)
            start = int(rng.integers(0, max(1, len(a) - n + 1)))
            seg = a[start:start + n]  # (≤ n,)
            if len(seg) == 0 or np.abs(seg).max() < 1e-4:
                continue
            signals.append(object_signal(seg, np.ones(1, bool), sample_rate=sr, max_seconds=8.0))
            labels.append(bank.classes.index(clip.label))
    emb = np.concatenate([clf.embed(signals[i:i + 64]).numpy() for i in range(0, len(signals), 64)])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, emb=emb, label=np.array(labels, np.int64), seconds=time.time() - t0)
    print(f"{path.name}: {len(labels)} crops, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return path


def load_sets(names: list[tuple]) -> dict[str, np.ndarray]:
    """The concatenated cache of scene sets, with a "kind" column."""
    parts: dict[str, list] = {}
    for split, kind, seed, n in names:
        path = set_path(split, kind, seed, n)
        if not path.is_file():
            raise DeepASAError(f"{path} missing: run `python -m deepasa.train.object_classes collect`")
        z = np.load(path)
        for key in (*FEATURES, "label", "active_s", "scene", "n_sources"):
            parts.setdefault(key, []).append(z[key])
        parts.setdefault("kind", []).append(np.full(len(z["label"]), kind))
    return {k: np.concatenate(v) for k, v in parts.items()}


# ---------------------------------------------------------------------------------------------- fitting
def fit_readout(x: np.ndarray, y: np.ndarray, classes: list[str], hidden: int = 0, weight_decay: float = 1e-3,
                steps: int = 1500, lr: float = 1e-3, dropout: float = 0.3, seed: int = 0) -> ObjectClassifier:
    """Fit a read-out on embeddings x (n, 512) with labels y (n,): standardisation + class-balanced CE, Adam."""
    torch.manual_seed(seed)
    clf = ObjectClassifier(classes, hidden=hidden, dropout=dropout)
    clf.set_standardisation(x.mean(0), x.std(0) + 1e-6)
    a = torch.as_tensor(x, dtype=torch.float32)  # (n, 512)
    target = torch.as_tensor(y, dtype=torch.long)  # (n,)
    counts = np.bincount(y, minlength=len(classes)).clip(min=1)
    weight = torch.as_tensor(1.0 / counts, dtype=torch.float32)
    weight = weight / weight.mean()  # (C,)
    opt = torch.optim.Adam(clf.head.parameters(), lr, weight_decay=weight_decay)
    clf.train()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(clf(a), target, weight=weight).backward()
        opt.step()
    return clf.eval()


def scores(pred: np.ndarray, y: np.ndarray, n_classes: int) -> dict:
    """Accuracy, balanced accuracy (mean recall over the classes present) and the confusion matrix (true × pred)."""
    conf = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(conf, (y, pred), 1)
    present = conf.sum(1) > 0
    recall = np.diag(conf)[present] / conf.sum(1)[present]
    return {"n": int(len(y)), "accuracy": round(float((pred == y).mean()), 4) if len(y) else None,
            "balanced_accuracy": round(float(recall.mean()), 4) if len(y) else None, "confusion": conf.tolist()}


def training_data(train: dict, features: str, kinds: tuple[str, ...], max_sources: int = 99) -> tuple:
    """(x, y) for fitting: the rows of ``kinds`` (and at most ``max_sources`` sources), features "sep" or
    "sep+direct" (the clean direct-path embeddings added as extra examples)."""
    rows = np.isin(train["kind"], kinds) & (train["n_sources"] <= max_sources)
    xs, ys = [train["sep"][rows]], [train["label"][rows]]
    for extra in features.split("+")[1:]:
        if extra == "bank":  # clean dry crops of the bank's training clips
            z = np.load(bank_path("train", BANK_CROPS))
            xs.append(z["emb"])
            ys.append(z["label"])
            continue
        xs.append(train[extra][rows])
        ys.append(train["label"][rows])
    return np.concatenate(xs), np.concatenate(ys)


def evaluate_sets(clf: ObjectClassifier, data: dict, features=FEATURES) -> dict:
    """Scores of the read-out per scene kind and feature: {kind: {feature: scores}}."""
    out = {}
    c = len(clf.class_names)
    for kind in [k for k in KINDS if (data["kind"] == k).any()]:
        rows = data["kind"] == kind
        out[kind] = {f: scores(clf.proba_from_embeddings(data[f][rows]).argmax(1), data["label"][rows], c)
                     for f in features}
    return out


def _classes() -> list[str]:
    from deepasa.scenes.soundbank import class_names

    return class_names()


# ---------------------------------------------------------------------------------------------- commands
def cmd_collect(args) -> int:
    from deepasa.scenes.soundbank import SoundBank

    bank = SoundBank.open()
    clf = ObjectClassifier(bank.classes)
    for name in args.sets:
        if name == "bank":
            collect_bank("train", BANK_CROPS, bank, clf)
            continue
        for spec in SETS[name]:
            collect_set(*spec, bank, clf)
    return 0


def cmd_select(args) -> int:
    classes = _classes()
    train, val = load_sets(SETS["train"]), load_sets(SETS["val"])
    rows = []
    grid = [(h, wd, feats, tuple(kinds.split(",")))
            for kinds in args.kinds
            for feats in args.features
            for h in args.hidden
            for wd in args.weight_decay]
    for h, wd, feats, kinds in grid:
        x, y = training_data(train, feats, kinds)
        res = [evaluate_sets(fit_readout(x, y, classes, hidden=h, weight_decay=wd, seed=s), val, ("sep",))
               for s in range(args.seeds)]
        row = {"hidden": h, "weight_decay": wd, "train_features": feats, "train_kinds": "+".join(kinds),
               "n_train": int(len(y))}
        for kind in res[0]:
            row[f"val_{kind}_acc"] = round(float(np.mean([r[kind]["sep"]["accuracy"] for r in res])), 4)
            row[f"val_{kind}_bacc"] = round(float(np.mean([r[kind]["sep"]["balanced_accuracy"] for r in res])), 4)
        row["val_mean_bacc"] = round(float(np.mean([row[f"val_{k}_bacc"] for k in res[0]])), 4)
        print(json.dumps(row), flush=True)
        rows.append(row)
    CACHE.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    return 0


def cmd_fit(args) -> int:
    classes = _classes()
    train = load_sets(SETS["train"])
    kinds = tuple(args.kinds.split(","))
    x, y = training_data(train, args.features, kinds)
    clf = fit_readout(x, y, classes, hidden=args.hidden, weight_decay=args.weight_decay, steps=args.steps,
                      seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(clf.serialize(), args.out)
    print(f"fitted on {len(y)} objects ({args.features}, {args.kinds}); wrote {args.out}", file=sys.stderr)
    return 0


def _table(res: dict) -> str:
    lines = ["| scenes | objects | separated (true traj.) acc / bal. acc | mixture ref. channel | clean image | "
             "clean direct path |", "|---|---|---|---|---|---|"]
    for kind, r in res.items():
        cell = {f: f"{r[f]['accuracy']:.3f} / {r[f]['balanced_accuracy']:.3f}" for f in r}
        lines.append(f"| {kind} | {r['sep']['n']} | {cell['sep']} | {cell['mix']} | {cell['image']} | "
                     f"{cell['direct']} |")
    return "\n".join(lines)


def cmd_evaluate(args) -> int:
    clf = ObjectClassifier.from_pretrained(args.model)
    data = load_sets(SETS[args.split])
    res = evaluate_sets(clf, data)
    print(_table(res))
    allsep = scores(clf.proba_from_embeddings(data["sep"]).argmax(1), data["label"], len(clf.class_names))
    names = clf.class_names
    print("\nconfusion (separated objects, all test sets; rows true, columns predicted):")
    print("| true \\ pred | " + " | ".join(n[:8] for n in names) + " | recall |")
    print("|---" * (len(names) + 2) + "|")
    conf = np.array(allsep["confusion"])
    for i, n in enumerate(names):
        rec = conf[i, i] / max(conf[i].sum(), 1)
        print(f"| {n} | " + " | ".join(str(v) for v in conf[i]) + f" | {rec:.2f} |")
    pred = clf.proba_from_embeddings(data["sep"]).argmax(1)
    by_length = {}
    for lo, hi in ((0, 1), (1, 2), (2, 99)):
        rows = (data["active_s"] >= lo) & (data["active_s"] < hi)
        by_length[f"{lo}-{hi} s"] = {k: v for k, v in scores(pred[rows], data["label"][rows], len(names)).items()
                                      if k != "confusion"}
    print("\nseparated objects by active length:", json.dumps(by_length))
    out = {"model": str(args.model), "split": args.split, "sets": SETS[args.split], "classes": names,
           "results": res, "all_separated": allsep, "separated_by_active_length": by_length,
           "command": " ".join(["python -m deepasa.train.object_classes", *sys.argv[1:]]),
           "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path = args.results or CACHE / f"evaluate-{args.split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line (module docstring)."""
    p = argparse.ArgumentParser(prog="python -m deepasa.train.object_classes", description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect", help="simulate, separate and embed the scene sets (cached)")
    c.add_argument("--sets", nargs="+", choices=[*SETS, "bank"], default=["val", "test", "train", "bank"])
    s = sub.add_parser("select", help="score a grid of read-outs on the val scenes")
    s.add_argument("--seeds", type=int, default=1)
    s.add_argument("--kinds", nargs="+", default=[",".join(KINDS), "default,dense"])
    s.add_argument("--features", nargs="+", default=["sep", "sep+direct", "sep+image"])
    s.add_argument("--hidden", nargs="+", type=int, default=[0, 256])
    s.add_argument("--weight-decay", nargs="+", type=float, default=[1e-3, 1e-2])
    s.add_argument("--out", type=Path, default=CACHE / "select.json")
    f = sub.add_parser("fit", help="fit the read-out on the training scenes and write it")
    f.add_argument("--out", type=Path, default=REPO / "checkpoints" / "object_classes.pt")
    f.add_argument("--hidden", type=int, default=256)
    f.add_argument("--weight-decay", type=float, default=1e-2)
    f.add_argument("--features", default="sep+direct", choices=["sep", "sep+direct", "sep+image", "sep+bank", "sep+direct+bank"])
    f.add_argument("--kinds", default=",".join(KINDS))
    f.add_argument("--steps", type=int, default=1500)
    f.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("evaluate", help="score a read-out on the cached scene sets")
    e.add_argument("--model", type=Path, default=REPO / "checkpoints" / "object_classes.pt")
    e.add_argument("--split", choices=["val", "test"], default="test")
    e.add_argument("--results", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    return {"collect": cmd_collect, "select": cmd_select, "fit": cmd_fit, "evaluate": cmd_evaluate}[args.cmd](args)


if __name__ == "__main__":
    from deepasa.errors import run_script

    run_script(main)
