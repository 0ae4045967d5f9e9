"""``deepasa simulate``: generate a dataset of spatial scenes with full ground truth (no torch).

Scenes are independent (scene ``i`` of a split depends only on ``--seed``, the split and ``i``), so the
work is split over ``--workers`` processes and over cluster jobs with ``--shard k/n`` (job k of n renders
the indices ``i ≡ k (mod n)``); the same seed gives the same bytes whatever the split of work.

Without ``--shard`` the split is built in a hidden temporary folder beside it and renamed into place at the
end, so an interrupted run leaves nothing that looks complete. With ``--shard`` jobs write into the shared
folder; every scene's mixture is written last, so a scene is complete exactly when its mixture exists, and a
re-run skips complete scenes (resume).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from multiprocessing import get_context
from pathlib import Path

from deepasa.errors import DeepASAError
from deepasa.scenes.config import SceneConfig
from deepasa.scenes.simulator import FORMATS, clips_for_split, load_dry, render_scene, sample_scene_spec, scene_rng
from deepasa.scenes.writer import write_classes, write_scene

SPLITS = ("train", "val", "test")

EXAMPLE = """example:
  deepasa sounds fetch
  deepasa simulate --out data/scenes --split train --num-scenes 2000 --seed 1 --workers 2
  deepasa simulate --out data/scenes --split test --num-scenes 200 --seed 7 --format both \\
      --set rt60=0.3,0.9 --set num_sources=[1,2,3] --set num_sources_weights=[1,1,1]
  # a cluster array job, 100 jobs, this one is job $SLURM_ARRAY_TASK_ID:
  deepasa simulate --out /scratch/asa --split train --num-scenes 100000 --shard $SLURM_ARRAY_TASK_ID/100
"""


def register(sub) -> None:
    """Add the ``simulate`` sub-command to the CLI's sub-parsers."""
    p = sub.add_parser("simulate", help="simulate spatial scenes with full ground truth",
                       description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="dataset root (the split goes to OUT/<split>)")
    p.add_argument("--num-scenes", required=True, type=int, help="scenes in this split (all shards together)")
    p.add_argument("--split", default="train", choices=SPLITS, help="sound-bank split to draw clips from")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument("--format", default="mic", choices=(*FORMATS, "both"),
                   help="mic: tetrahedral array; foa: ACN/SN3D; both: OUT/mic and OUT/foa from the same scenes")
    p.add_argument("--config", type=Path, help="YAML file of scene parameters (see configs/data/scenes.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one scene parameter, e.g. --set rt60=0.3,0.9 (repeatable)")
    p.add_argument("--classes", nargs="+", help="only these sound-bank classes")
    p.add_argument("--shard", help="k/n: render scenes i with i %% n == k into a shared OUT (cluster arrays)")
    p.add_argument("--subtype", default="FLOAT", choices=("FLOAT", "PCM_16", "PCM_24"),
                   help="wav sample format (FLOAT keeps mixture == sum of parts exactly)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing split folder")
    p.add_argument("--home", type=Path, help="sound-bank folder (default $DEEPASA_HOME or ~/.cache/deepasa)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--oracle-analysis", action="store_true",
                   help="also write each scene's own source images as an analysis folder, OUT/<split>/oracle/<id>/ "
                   "(the layout of deepasa analyze; ground truth for deepasa remix)")
    p.set_defaults(func=run)


def _parse_shard(text: str | None) -> tuple[int, int]:
    if text is None:
        return 0, 1
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise DeepASAError(f"--shard must look like k/n, got {text!r}") from None
    if n < 1 or not 0 <= k < n:
        raise DeepASAError(f"--shard {text}: need 0 <= k < n")
    return k, n


# --------------------------------------------------------------------------------------- worker side
_STATE: dict = {}


def _init_worker(home, split, cfg_dict, class_names, fmts, targets, subtype, oracle=False):
    from deepasa.scenes.soundbank import SoundBank

    bank = SoundBank.open(home)
    cfg = SceneConfig.from_dict(cfg_dict)
    _STATE.update(bank=bank, cfg=cfg, split=split, names=class_names, fmts=fmts, targets=targets,
                  subtype=subtype, oracle=oracle, pool=clips_for_split(bank, split, cfg))


def _render_one(args) -> dict:
    """Render and write scene ``index`` in every requested format; returns the time split (s)."""
    seed, index = args
    st = _STATE
    timings = {"rir": 0.0, "convolution": 0.0, "noise_labels": 0.0, "io": 0.0}
    spec = sample_scene_spec(scene_rng(seed, st["split"], index), st["cfg"], st["pool"], st["names"],
                             f"{index:06d}", st["split"])
    t0 = time.perf_counter()
    dry = load_dry(st["bank"], spec)
    timings["io"] += time.perf_counter() - t0
    for fmt, target in zip(st["fmts"], st["targets"]):
        scene = render_scene(spec, dry, fmt, timings)
        t0 = time.perf_counter()
        if st.get("oracle"):  # before the scene, whose mixture (written last) marks it complete
            from deepasa.scenes.oracle_analysis import write_oracle_analysis

            write_oracle_analysis(Path(target) / "oracle" / spec["scene_id"], scene,
                                  f"../../mixed/{spec['scene_id']}.wav")
        write_scene(Path(target), scene, st["subtype"])
        timings["io"] += time.perf_counter() - t0
    return timings


# --------------------------------------------------------------------------------------- main side
def run(args) -> int:
    """Entry point of ``deepasa simulate``."""
    from deepasa.scenes.soundbank import SoundBank

    if args.num_scenes < 1:
        raise DeepASAError(f"--num-scenes must be at least 1, got {args.num_scenes}")
    if args.workers < 1:
        raise DeepASAError(f"--workers must be at least 1, got {args.workers}")
    shard_k, shard_n = _parse_shard(args.shard)
    sharded = args.shard is not None
    overrides = list(args.set)
    cfg = SceneConfig.from_sources(args.config, overrides)
    if args.classes:
        cfg = SceneConfig.from_dict({**cfg.to_dict(), "classes": list(args.classes)})
    bank = SoundBank.open(args.home)
    pool = clips_for_split(bank, args.split, cfg)  # raises on unknown class names
    class_names = list(bank.classes)
    wanted = list(cfg.classes or class_names)
    missing = [c for c in wanted if not pool.get(c)]
    if len(missing) == len(wanted):
        raise DeepASAError(f"the sound bank has no {args.split} clips for {', '.join(missing)}: "
                           f"run `deepasa sounds fetch --split {args.split}`")

    fmts = list(FORMATS) if args.format == "both" else [args.format]
    roots = [args.out / f for f in fmts] if args.format == "both" else [args.out]
    finals = [r / args.split for r in roots]
    if not sharded:
        existing = [str(f) for f in finals if f.exists()]
        if existing and not args.overwrite:
            raise DeepASAError(f"output folder exists: {existing[0]} (use --overwrite to replace it)")
        for r in roots:
            _check_classes(r, class_names, args.overwrite)
        builds = [r / f".{args.split}.partial-{os.getpid()}" for r in roots]
        indices = list(range(args.num_scenes))
    else:
        for r in roots:
            _check_classes(r, class_names, False)
        builds = finals
        indices = [i for i in range(shard_k, args.num_scenes, shard_n)
                   if not all((b / "mixed" / f"{i:06d}.wav").exists() for b in builds)]
    _remove_stale_builds(roots, finals, args.split, sharded)
    for b in builds:
        b.mkdir(parents=True, exist_ok=True)

    init = (args.home, args.split, cfg.to_dict(), class_names, fmts, [str(b) for b in builds], args.subtype,
            args.oracle_analysis)
    totals: dict = {}
    t_start = time.perf_counter()
    try:
        for timings in _run_pool(init, [(args.seed, i) for i in indices], args.workers, args.quiet):
            for key, val in timings.items():
                totals[key] = totals.get(key, 0.0) + val
    except BaseException as exc:
        if not sharded:
            for b in builds:
                shutil.rmtree(b, ignore_errors=True)
        if isinstance(exc, (DeepASAError, KeyboardInterrupt)):
            raise
        kept = "complete scenes were kept; re-run to resume" if sharded else "nothing was kept"
        raise DeepASAError(f"simulation failed ({type(exc).__name__}: {exc}); {kept}") from exc
    if not sharded:   # folder swap (old output moved aside, then dropped): not deepasa.staging.atomic_path
        for build, final in zip(builds, finals):
            if final.exists():  # --overwrite: move the old one aside, then drop it
                old = final.with_name(f".{final.name}.old-{os.getpid()}")
                os.replace(final, old)
                shutil.rmtree(old)
            os.replace(build, final)
    for r in roots:
        write_classes(r, class_names)
    wall = time.perf_counter() - t_start
    summary = {"scenes": len(indices), "wall_s": round(wall, 3),
               "scenes_per_hour": round(3600 * len(indices) / wall, 1) if wall > 0 else None,
               "cpu_s": {k: round(v, 3) for k, v in totals.items()}, "out": [str(f) for f in finals]}
    print(json.dumps(summary))
    return 0


def _remove_stale_builds(roots: list[Path], finals: list[Path], split: str, sharded: bool) -> None:
    """Remove what killed runs left: ``.<split>.partial-<pid>`` / ``.old-<pid>`` folders beside the split and,
    as a sharded run writes in place, half-written ``.<file>.tmp<pid>`` files inside it; one line says so."""
    from deepasa.staging import remove_temporaries, stale_temporaries

    found = [hit for r in roots for hit in stale_temporaries(r, split, ("partial", "old"))]
    if sharded:
        found += [hit for f in finals if f.is_dir() for d, _, _ in os.walk(f)
                  for hit in stale_temporaries(d, None, ("tmp",))]
    remove_temporaries(found, log=lambda msg: print(f"deepasa simulate: {msg}", file=sys.stderr))


def _check_classes(root: Path, class_names: list[str], overwrite: bool) -> None:
    """An existing classes.json of the dataset must list the same classes (unless overwriting)."""
    path = root / "classes.json"
    if path.exists() and not overwrite and json.loads(path.read_text()) != class_names:
        raise DeepASAError(f"{path} lists other classes than the sound bank; use another --out")


def _run_pool(init, tasks, workers: int, quiet: bool):
    """Yield the timings of every task, rendering in ``workers`` processes with a progress bar."""
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), unit="scene", disable=quiet, desc="simulate")
    try:
        if workers == 1:
            _init_worker(*init)
            for task in tasks:
                yield _render_one(task)
                bar.update()
            return
        with get_context("fork").Pool(workers, initializer=_init_worker, initargs=init) as pool:
            for timings in pool.imap_unordered(_render_one, tasks, chunksize=1):
                yield timings
                bar.update()
    finally:
        bar.close()
