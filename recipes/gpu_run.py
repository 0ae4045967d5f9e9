"""One-command GPU run of the shipped recipe: ``scripts/gpu_train.sh`` (docs/training.md, "One-command GPU run").

Two commands, both from the repository root:

``scripts/gpu_train.sh prepare`` — on *this* machine, before a session is lent a GPU machine:

* downloads, into ``.whl/``, the CPython 3.12 manylinux x86-64 wheels of the packages the run needs that the GPU
  machine lacks (:data:`WHEELS`, at the versions of this virtual environment; the GPU machine has torch,
  numpy, scipy, PyYAML, matplotlib and no network);
* packs the sound bank's ``train`` and ``val`` splits into ``.gpubank/`` (:mod:`deepasa.scenes.bank_pack`:
  Opus-coded clips, the clips of the fixed validation scenes kept lossless, the bank's own index, so the same
  scenes are drawn);
* adds both folders to ``.git/info/exclude`` and prints what would travel (working tree + both folders,
  against the 45 MiB budget) and the ``carry`` list.

``scripts/gpu_train.sh MINUTES OUT [--device cuda|cpu] [--steps N] [options]`` — on the GPU machine (the
shell wrapper first installs ``.whl/*.whl`` into ``/tmp/site`` when there is no ``.venv``):

1. opens the sound bank: ``--bank-home``, else unpacks ``.gpubank/`` (into ``--unpack-to``), else
   ``$DEEPASA_HOME``;
2. copies ``checkpoints/shipped_resume.ckpt`` into a work folder as ``checkpoints/last.ckpt`` (the repository's
   file is never written) and resumes the shipped recipe from it with ``deepasa train --resume``, for MINUTES
   minutes (``trainer.max_time``; ``--steps N``: at most N more steps), on CUDA with ``bf16-mixed``, the
   recipe's batch and one DataLoader worker per spare core (the scenes are simulated while it trains);
   training stops cleanly (Lightning validates once more) and writes ``last.ckpt``;
3. leaves in OUT (each file written atomically, the most valuable first, so a run cut short still returns
   what it finished): ``shipped_resume.ckpt`` (the slim resume state), ``default.pt`` (the exported model, bank
   class names), ``val<N>.json`` (``deepasa evaluate --no-sdr`` on the first N of the run's validation scenes,
   seed ``data.seed + 1``, simulated there: what ``checkpoints/eval/shipped_latest_val20.json`` holds for the
   previous model), ``train.log``, ``metrics.csv``, ``config.yaml`` (the resolved training config) and
   ``run.json`` (steps, timings, throughput, versions).

``--device cpu --steps N`` runs the same code path on the CPU (the recipe's precision and batch): a dry run.
Bad input (a MINUTES that is not a positive number, a non-empty OUT, no CUDA device for ``--device cuda``, no
sound bank, ...) gives one line on stderr and exit code 2; a training that fails after it started gives exit
code 1, with what it finished in OUT.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from deepasa.errors import DeepASAError
from deepasa.staging import atomic_path

PROG = "gpu_train.sh"
REPO = Path(__file__).resolve().parents[1]
RECIPE = "configs/train/sim_small_shipped.yaml"
CHECKPOINT = "checkpoints/shipped_resume.ckpt"
WHEEL_DIR = ".whl"
PACK_DIR = ".gpubank"
CARRY = [WHEEL_DIR, PACK_DIR]
DEFAULT_UNPACK = "/tmp/deepasa-gpubank"
#: What the GPU machine lacks (or must have at this project's versions): pure-Python or cp312 wheels, no deps.
WHEELS = ("pyroomacoustics", "soundfile", "cffi", "pycparser", "soxr", "lightning", "lightning-utilities",
          "torchmetrics", "jsonargparse", "docstring-parser", "typeshed-client", "tqdm", "typing-extensions",
          "packaging", "aisfx")       # aisfx: the weights of the shipped recipe's cls_embedding (23 MB)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
PYTHON_VERSION = "3.12"
BUDGET_MIB = 45.0          # what should travel at most (working tree + carried folders)
LIMIT_MIB = 64.0           # what can travel at all
EVAL_SCENES = 20
SUGGESTED_MINUTES = 6      # what fits one 10-minute device call with setup and evaluation
OUT_FILES = ("shipped_resume.ckpt", "default.pt", "val*.json", "train.log", "metrics.csv", "config.yaml", "run.json")


class RunFailed(Exception):
    """A failure after training started (not bad input): one line, exit code 1, what was finished stays in OUT."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``gpu_train.sh: error: ...``) and exit code 2."""

    def error(self, message: str):
        """Raise the message as a :class:`DeepASAError` (printed as one line by :func:`main`)."""
        raise DeepASAError(message)


# ============================================================================================ prepare
def pinned_versions(names: tuple[str, ...] = WHEELS) -> dict[str, str]:
    """The installed version of every package in ``names`` (what ``pip freeze`` of this environment says).

    Raises:
        DeepASAError: a package that is not installed here.
    """
    from importlib import metadata

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise DeepASAError(f"{name} is not installed in {sys.prefix}: run `make venv` first") from None
    return out


def _norm(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def _wheel_key(filename: str) -> tuple[str, str]:
    """(normalised project name, version) of a wheel file name."""
    parts = filename.split("-")
    return _norm(parts[0]), parts[1]


def download_wheels(dest: Path, versions: dict[str, str]) -> list[Path]:
    """Download the CPython 3.12 manylinux x86-64 wheels of ``versions`` into ``dest`` (no dependencies), and
    delete every other wheel there, so ``dest`` holds one version of each package.

    Returns:
        the wheel files.

    Raises:
        DeepASAError: pip failed (no network, no such wheel), or a package has no wheel afterwards.
    """
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
           "--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp",
           *(x for p in PLATFORMS for x in ("--platform", p)), "-d", str(dest),
           *(f"{n}=={v}" for n, v in versions.items())]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise DeepASAError(f"pip download failed: {last}")
    wanted = {(_norm(n), v) for n, v in versions.items()}
    files = []
    for path in sorted(dest.glob("*.whl")):
        if _wheel_key(path.name) in wanted:
            files.append(path)
        else:
            path.unlink()                                           # another version: one of each only
    missing = sorted(n for n, v in versions.items() if (_norm(n), v) not in {_wheel_key(p.name) for p in files})
    if missing:
        raise DeepASAError(f"no wheel in {dest} for {', '.join(missing)}")
    return files


def _recipe_data(recipe: Path) -> dict:
    import yaml

    try:
        return dict(yaml.safe_load(recipe.read_text()).get("data") or {})
    except (OSError, AttributeError, yaml.YAMLError) as exc:
        raise DeepASAError(f"cannot read the recipe {recipe}: {exc}") from None


def validation_clip_ids(home: Path | None, data: dict, num_scenes: int) -> set[str]:
    """Clip ids of the first ``num_scenes`` validation scenes of a recipe's ``data`` section.

    The scenes are those of :class:`~deepasa.data.onthefly.SimulatedScenes` (split ``val``, seed
    ``data.seed + 1``) and of ``deepasa simulate --split val --seed data.seed+1``; only the bank's index is read.
    """
    from deepasa.scenes.config import SceneConfig
    from deepasa.scenes.simulator import clips_for_split, sample_scene_spec, scene_rng
    from deepasa.scenes.soundbank import SoundBank, class_names

    bank = SoundBank.open(home)
    cfg = SceneConfig.from_dict({"sample_rate": data.get("sample_rate", 16000),
                                 "duration": data.get("clip_seconds", 4.0), **(data.get("scene_config") or {})})
    pool = clips_for_split(bank, "val", cfg)
    seed, names, used = int(data.get("seed", 0)) + 1, class_names(), set()
    for i in range(num_scenes):
        spec = sample_scene_spec(scene_rng(seed, "val", i), cfg, pool, names, f"val-{seed}-{i:08d}", "val")
        used |= {s["clip_id"] for s in spec["sources"]}
    return used


def add_git_excludes(entries: list[str], repo: Path = REPO) -> Path | None:
    """Add ``/<entry>/`` lines to the checkout's ``info/exclude`` (git's own ignore file) where missing."""
    done = subprocess.run(["git", "rev-parse", "--git-path", "info/exclude"], cwd=repo, capture_output=True, text=True)
    if done.returncode != 0:
        return None
    path = Path(done.stdout.strip())
    path = path if path.is_absolute() else repo / path
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text().splitlines() if path.is_file() else []
    new = [f"/{e}/" for e in entries if f"/{e}/" not in lines]
    if new:
        with open(path, "a") as f:
            f.write(("\n" if lines and lines[-1] else "") + "\n".join(new) + "\n")
    return path


def _tree_bytes(repo: Path = REPO) -> tuple[int, int]:
    """(bytes, files) of what travels as the working tree: tracked files plus untracked, not ignored ones."""
    done = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                          capture_output=True)
    if done.returncode != 0:
        raise DeepASAError(f"{repo} is not a git checkout (git ls-files failed)")
    total = files = 0
    for name in set(done.stdout.decode().split("\0")) - {""}:
        p = repo / name
        if p.is_file() and not p.is_symlink():
            total, files = total + p.stat().st_size, files + 1
    return total, files


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def prepare(args: argparse.Namespace) -> int:
    """``gpu_train.sh prepare``: wheels into ``.whl/``, the bank pack into ``.gpubank/``, excludes, sizes."""
    from deepasa.scenes.bank_pack import build_bank_pack, file_sha256, read_pack_info
    from deepasa.scenes.soundbank import SoundBank, default_home

    if not args.no_wheels:
        versions = pinned_versions()
        wheels = download_wheels(REPO / WHEEL_DIR, versions)
        print(f"{WHEEL_DIR}/: {len(wheels)} wheels for CPython {PYTHON_VERSION} manylinux x86-64: "
              + ", ".join(f"{n}=={v}" for n, v in versions.items()))
    if not args.no_bank:
        home = Path(args.bank_home) if args.bank_home else default_home()
        SoundBank.open(home)                                          # one line when the bank is not fetched
        data = _recipe_data(REPO / RECIPE)
        n_val = max(int(data.get("val_scenes", 40)), EVAL_SCENES)
        lossless = validation_clip_ids(home, data, n_val)
        pack = REPO / PACK_DIR
        try:
            old = read_pack_info(pack)
        except DeepASAError:
            old = None
        same = old is not None and old.get("compression_level") == args.opus_level and \
            set(old.get("lossless", [])) == lossless and \
            old.get("source_index_sha256") == file_sha256(home / "bank" / "index.csv")
        if same:
            info = old
            print(f"{PACK_DIR}/: up to date")
        else:
            t0 = time.perf_counter()
            info = build_bank_pack(home, pack, lossless=lossless, level=args.opus_level, workers=args.workers)
            print(f"{PACK_DIR}/: packed in {time.perf_counter() - t0:.0f} s")
        print(f"{PACK_DIR}/: {info['clips']} clips of {', '.join(info['splits'])} from {home}, "
              f"{len(info['lossless'])} lossless (the clips of the first {n_val} validation scenes), the rest "
              f"Opus at compression level {info['compression_level']:g}: {info['bytes'] / 2**20:.1f} MiB "
              f"(the same clips as FLAC: {info['source_bytes'] / 2**20:.1f} MiB)")
    exclude = add_git_excludes(CARRY)
    if exclude is not None:
        print(f"ignored by git through {exclude.relative_to(REPO) if exclude.is_relative_to(REPO) else exclude}: "
              + ", ".join(f"/{c}/" for c in CARRY))
    tree, files = _tree_bytes()
    sizes = {c: _dir_bytes(REPO / c) for c in CARRY}
    total = tree + sum(sizes.values())
    print(f"travels: working tree {tree / 2**20:.1f} MiB ({files} files) + "
          + " + ".join(f"{c} {b / 2**20:.1f} MiB" for c, b in sizes.items())
          + f" = {total / 2**20:.1f} MiB (budget {BUDGET_MIB:g} MiB, limit {LIMIT_MIB:g} MiB)")
    print(f"carry: {json.dumps(CARRY)}")
    print(f'run:   command "bash scripts/gpu_train.sh {SUGGESTED_MINUTES} \\"$OUT\\"", carry {json.dumps(CARRY)}, '
          "timeout_s 600")
    if total > LIMIT_MIB * 2**20:
        raise DeepASAError(f"{total / 2**20:.1f} MiB would travel, over the {LIMIT_MIB:g} MiB limit: raise "
                           "--opus-level or commit less")
    if total > BUDGET_MIB * 2**20:
        print(f"warning: {total / 2**20:.1f} MiB is over the {BUDGET_MIB:g} MiB budget", file=sys.stderr)
    return 0


# ================================================================================================ run
class _Tee:
    """A text stream that writes to a terminal stream and a log file (the run's ``train.log``)."""

    def __init__(self, stream, log):
        self.stream, self.log = stream, log
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        """Write to both."""
        with self.lock:
            self.stream.write(text)
            self.log.write(text)
        return len(text)

    def flush(self) -> None:
        """Flush both."""
        self.stream.flush()
        self.log.flush()

    def isatty(self) -> bool:
        """Never a terminal (no progress bars in the log)."""
        return False

    def fileno(self) -> int:
        """The terminal stream's descriptor (subprocesses started with ``stdout=None`` write there)."""
        return self.stream.fileno()


def _say(text: str) -> None:
    print(f"[gpu_train {time.strftime('%H:%M:%S')}] {text}", flush=True)


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DeepASAError(f"MINUTES must be a number of minutes (e.g. {SUGGESTED_MINUTES}), got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise DeepASAError(f"MINUTES must be a positive number of minutes, got {text!r}")
    return value


def _check_run_args(args: argparse.Namespace) -> None:
    """Every check that needs no import of torch (bad input → DeepASAError)."""
    args.minutes = _minutes(args.minutes)
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DeepASAError(f"OUT {out} exists and is not an empty folder: name a new or empty one")
    for name in ("steps", "batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise DeepASAError(f"--{name} must be at least 1, got {value}")
    if args.workers is not None and args.workers < 0:
        raise DeepASAError(f"--workers must be 0 or more, got {args.workers}")
    if args.eval_scenes < 0:
        raise DeepASAError(f"--eval-scenes must be 0 or more, got {args.eval_scenes}")
    for item in args.set:
        key = item.split("=", 1)[0]
        if "=" not in item or not key or key.startswith("-") or "." not in key:
            raise DeepASAError(f"--set takes SECTION.KEY=VALUE (a `deepasa train` option), got {item!r}")
    for name in ("checkpoint", "recipe"):
        path = Path(getattr(args, name))
        if not path.is_file():
            raise DeepASAError(f"{name} not found: {path}")
    if args.bank_home and not (Path(args.bank_home) / "bank" / "index.csv").is_file():
        raise DeepASAError(f"no sound bank in --bank-home {args.bank_home} (no bank/index.csv)")


def bank_source(args: argparse.Namespace) -> tuple[str, Path]:
    """Where the run's sound bank comes from: ``("home", DIR)`` (``--bank-home``, else ``$DEEPASA_HOME`` when
    there is no pack) or ``("pack", DIR)`` (``--bank-pack``, default ``.gpubank/``), checked before anything is
    written; raises :class:`DeepASAError` when there is neither."""
    from deepasa.scenes.bank_pack import read_pack_info
    from deepasa.scenes.soundbank import default_home

    if args.bank_home:
        return "home", Path(args.bank_home)
    pack = Path(args.bank_pack)
    if pack.exists():
        read_pack_info(pack)                                          # one line when it is not a pack
        return "pack", pack
    home = default_home()
    if (home / "bank" / "index.csv").is_file():
        return "home", home
    raise DeepASAError(f"no sound bank: no pack in {pack} (run `scripts/gpu_train.sh prepare` and carry "
                       f"{PACK_DIR}) and none fetched in {home}")


def resolve_bank(source: tuple[str, Path], unpack_to: str | Path, workers: int) -> Path:
    """The bank home of :func:`bank_source`'s answer, unpacking a pack into ``unpack_to`` (skipped when done)."""
    from deepasa.scenes.bank_pack import unpack_bank

    kind, path = source
    if kind == "home":
        return path
    t0 = time.perf_counter()
    info = unpack_bank(path, unpack_to, workers=workers)
    what = "unpacked" if info["unpacked"] else "already unpacked"
    _say(f"sound bank: {path} {what} into {unpack_to} ({info['clips']} clips, {time.perf_counter() - t0:.1f} s)")
    return Path(unpack_to)


def _max_time(minutes: float) -> str:
    s = max(1, round(minutes * 60))
    return f"{s // 86400:02d}:{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def training_overrides(args: argparse.Namespace, root: Path, home: Path, start_step: int, cuda: bool,
                       workers: int) -> dict:
    """The ``deepasa train`` config layered over the recipe for this run (written as a second ``--config``)."""
    trainer: dict = {
        "default_root_dir": str(root), "accelerator": "gpu" if cuda else "cpu", "devices": 1,
        "max_time": _max_time(args.minutes),
        # CSV only: TensorBoard is not installed on the GPU machine, and the CSV is what comes back
        "logger": [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                    "init_args": {"save_dir": str(root), "name": "logs"}}],
        "callbacks": [{"class_path": "deepasa.train.throughput.Throughput",
                       "init_args": {"every_s": 30.0, "path": str(root / "throughput.json")}}],
    }
    if cuda:
        trainer["precision"] = "bf16-mixed"
    if args.steps is not None:
        trainer["max_steps"] = start_step + args.steps
    data: dict = {"bank_home": str(home), "num_workers": workers}
    if args.batch is not None:                # default: the recipe's (docs/training.md: why not larger)
        data["batch_size"] = data["val_batch_size"] = args.batch
    if cuda:
        data["pin_memory"] = True
    layer = {"trainer": trainer, "data": data, "checkpoint": {"dirpath": str(root / "checkpoints")}}
    if _module_accepts("compile"):
        # torch.compile takes minutes per process: more than it saves in a run of a few minutes
        layer["model"] = {"compile": bool(args.compile)}
    elif args.compile:
        raise DeepASAError("--compile: this checkout's DeepASAModule has no `compile` option")
    return layer


def _module_accepts(name: str) -> bool:
    """Whether :class:`~deepasa.train.module.DeepASAModule` takes the argument ``name`` (``model.<name>``)."""
    import inspect

    from deepasa.train.module import DeepASAModule

    return name in inspect.signature(DeepASAModule.__init__).parameters


class _Child:
    """The training subprocess: its output into the log, a hard deadline, signals passed on to it."""

    def __init__(self, cmd: list[str], env: dict, deadline_s: float):
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        self.deadline = time.monotonic() + deadline_s
        self.stopped_by = None
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            sys.stdout.write(line)
        sys.stdout.flush()

    def stop(self, why: str) -> None:
        """SIGTERM to the training process: Lightning ends the step and writes ``last.ckpt``."""
        if self.proc.poll() is None and self.stopped_by is None:
            self.stopped_by = why
            _say(f"stopping training ({why}): SIGTERM")
            try:
                self.proc.send_signal(signal.SIGTERM)      # the main process only: it stops its own workers
            except ProcessLookupError:
                pass

    def wait(self) -> int:
        """Wait for the exit; past the deadline SIGTERM, 60 s later SIGKILL. Returns the exit code."""
        killed_at = None
        while self.proc.poll() is None:
            time.sleep(0.5)
            now = time.monotonic()
            if now > self.deadline and self.stopped_by is None:
                self.stop("past the time budget")
            if self.stopped_by is not None:
                killed_at = killed_at or now
                if now - killed_at > 60:
                    _say("training did not stop within 60 s of SIGTERM: SIGKILL")
                    self.proc.kill()
                    self.proc.wait()
        self._reader.join(timeout=10)
        return self.proc.returncode


def _atomic_copy(src: Path, dst: Path) -> None:
    with atomic_path(dst, "part") as tmp:
        shutil.copyfile(src, tmp)


def _atomic_json(value, dst: Path) -> None:
    with atomic_path(dst, "part") as tmp:
        tmp.write_text(json.dumps(value, indent=1, sort_keys=True, default=str) + "\n")


def _latest_log_dir(root: Path) -> Path | None:
    dirs = sorted((root / "logs").glob("version_*"), key=lambda p: p.stat().st_mtime)
    return dirs[-1] if dirs else None


def _eval_headline(report: dict) -> dict:
    pick = {"separation": ("si_sdri_db", "direct_si_sdri_db"), "seld": ("ER", "F", "LE", "LR", "SELD"),
            "objects": ("detection_rate", "class_accuracy", "doa_error_median_deg")}
    return {f"{b}.{k}": report.get(b, {}).get(k) for b, keys in pick.items() for k in keys}


def _cli(argv: list[str]) -> None:
    """Run one ``deepasa`` sub-command in this process; a non-zero exit is an error."""
    from deepasa.cli import main as deepasa_main

    rc = deepasa_main(argv)
    if rc != 0:
        raise RunFailed(f"`deepasa {' '.join(argv[:1])}` exited with code {rc} (see the log)")


def run(args: argparse.Namespace) -> int:
    """``gpu_train.sh MINUTES OUT``: train, then leave the resume state, model, evaluation and log in OUT."""
    _check_run_args(args)
    source = bank_source(args)
    cuda = args.device == "cuda"
    import torch                                                        # after the cheap checks

    if cuda and not torch.cuda.is_available():
        raise DeepASAError("--device cuda, but torch sees no CUDA device here (use --device cpu for a dry run)")
    from deepasa.model.deepasa import read_checkpoint

    start = read_checkpoint(args.checkpoint)
    if not isinstance(start, dict) or "loops" not in start or "optimizer_states" not in start:
        raise DeepASAError(f"{args.checkpoint} is not a resumable `deepasa train` checkpoint")
    start_step, start_epoch = int(start.get("global_step", 0)), int(start.get("epoch", 0))
    batch_before = (start.get("datamodule_hyper_parameters") or {}).get("batch_size")
    del start
    cores = os.cpu_count() or 1
    workers = args.workers if args.workers is not None else (max(1, cores - 1) if cuda else 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "train.log", "a", buffering=1)
    old_streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(sys.stdout, log), _Tee(sys.stderr, log)
    own_work = args.work is None
    work = Path(tempfile.mkdtemp(prefix="deepasa-gpu-train-")) if own_work else Path(args.work)
    child: _Child | None = None
    signalled: list[int] = []
    me = os.getpid()

    def on_signal(signum, frame):
        if os.getpid() != me:                # a forked helper (a pool worker) that inherited the handler
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        signalled.append(signum)
        if child is not None and child.proc.poll() is None:
            child.stop(f"signal {signum}")   # it writes last.ckpt; the results are still written
        else:
            raise KeyboardInterrupt

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    t_start = time.perf_counter()
    phases: dict[str, float] = {}
    summary: dict = {"minutes": args.minutes, "device": args.device, "out_files": []}
    try:
        import lightning

        summary["versions"] = {"python": sys.version.split()[0], "torch": torch.__version__,
                               "lightning": lightning.__version__}
        if cuda:
            summary["gpu"] = torch.cuda.get_device_name(0)
        _say(f"device {args.device}{' (' + summary['gpu'] + ')' if cuda else ''}, {cores} CPU cores, "
             f"{workers} DataLoader workers, torch {torch.__version__}, lightning {lightning.__version__}")
        t = time.perf_counter()
        home = resolve_bank(source, args.unpack_to, max(1, cores))
        phases["bank_s"] = time.perf_counter() - t
        summary["bank_home"] = str(home)

        root = work / "run"
        last = root / "checkpoints" / "last.ckpt"
        last.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.checkpoint, last)                        # a copy: the repository's file stays as it is
        summary.update({"checkpoint": str(args.checkpoint), "start_step": start_step, "start_epoch": start_epoch})
        overrides = training_overrides(args, root, home, start_step, cuda, workers)
        batch = overrides["data"].get("batch_size", batch_before)
        summary.update({"batch_size": batch, "num_workers": workers})
        if batch_before is not None and batch != batch_before:
            # the DataModule places a resumed run at scene global_step × batch of its pass (resumed_offset)
            seen, resume_at = start_step * batch_before, start_step * batch
            effect = (f"skips scenes {seen}-{resume_at - 1} (none is seen twice)" if batch > batch_before
                      else f"sees scenes {resume_at}-{seen - 1} again")
            _say(f"batch {batch}, the checkpoint trained at {batch_before}: the scene stream continues at "
                 f"global step × batch (scene {resume_at} if the pass goes on), so it {effect}")
        import yaml

        layer = work / "gpu_overrides.yaml"
        layer.write_text(yaml.safe_dump(overrides, sort_keys=False))
        cmd = [sys.executable, "-m", "deepasa.cli", "train", "--config", str(args.recipe), "--config", str(layer),
               "--resume", *(f"--{item}" for item in args.set)]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if cuda:                      # one thread per process: the DataLoader workers use every core
            env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        _say(f"training from step {start_step} (epoch {start_epoch}) for {args.minutes:g} min"
             f"{f' or {args.steps} steps' if args.steps else ''}: {' '.join(cmd[1:])}")
        t = time.perf_counter()
        child = _Child(cmd, env, deadline_s=args.minutes * 60 + 120)
        rc_train = child.wait()
        phases["train_s"] = time.perf_counter() - t
        _say(f"training exited with code {rc_train} after {phases['train_s']:.0f} s"
             + (f" (stopped: {child.stopped_by})" if child.stopped_by else ""))
        summary["train_exit_code"] = rc_train

        if not last.is_file():
            raise RunFailed(f"no {last} after training (see {out / 'train.log'})")
        end = read_checkpoint(last)
        end_step, end_epoch = int(end.get("global_step", 0)), int(end.get("epoch", 0))
        del end
        summary.update({"end_step": end_step, "end_epoch": end_epoch, "steps": end_step - start_step})
        if end_step <= start_step:
            raise RunFailed(f"training made no step (last.ckpt still at step {start_step}; exit code {rc_train}): "
                            f"see {out / 'train.log'}")
        t = time.perf_counter()
        from recipes.resume_state import slim_checkpoint

        info = slim_checkpoint(last, out / "shipped_resume.ckpt")
        _say(f"resume state: {out / 'shipped_resume.ckpt'} at step {info['global_step']} (epoch {info['epoch']}), "
             f"{info['bytes'] / 1e6:.1f} MB")
        _cli(["export", str(last), str(out / "default.pt"), "--bank-classes"])
        logdir = _latest_log_dir(root)
        for name in ("metrics.csv", "config.yaml"):
            if logdir is not None and (logdir / name).is_file():
                _atomic_copy(logdir / name, out / name)
        throughput = root / "throughput.json"
        if throughput.is_file():
            summary["throughput"] = json.loads(throughput.read_text())
        phases["save_s"] = time.perf_counter() - t

        if args.eval_scenes and not signalled:
            t = time.perf_counter()
            cfg = yaml.safe_load((out / "config.yaml").read_text()) if (out / "config.yaml").is_file() else {}
            data = (cfg or {}).get("data") or _recipe_data(Path(args.recipe))
            scene = {"sample_rate": data.get("sample_rate", 16000), "duration": data.get("clip_seconds", 4.0),
                     **(data.get("scene_config") or {})}
            seed = int(data.get("seed", 0)) + 1
            (work / "val_scene.yaml").write_text(yaml.safe_dump(scene))
            n = args.eval_scenes
            _say(f"evaluation: the first {n} validation scenes (bank split val, seed {seed}), simulated with "
                 f"{min(n, max(1, cores))} workers")
            _cli(["simulate", "--out", str(work / "val"), "--split", "val", "--num-scenes", str(n), "--seed",
                  str(seed), "--workers", str(min(n, max(1, cores))), "--config", str(work / "val_scene.yaml"),
                  "--home", str(home), "--quiet"])
            if cuda:
                torch.set_num_threads(cores)                          # `deepasa evaluate` runs on the CPU
            _cli(["evaluate", "--checkpoint", str(out / "default.pt"), "--data", str(work / "val"), "--split", "val",
                  "--no-sdr", "--quiet", "--out", str(out / f"val{n}.json")])
            summary["evaluation"] = {"file": f"val{n}.json", "scenes": n, "seed": seed,
                                     **_eval_headline(json.loads((out / f"val{n}.json").read_text()))}
            phases["eval_s"] = time.perf_counter() - t
        elif signalled:
            raise RunFailed("interrupted: the resume state and the model are in OUT, the evaluation was skipped")
        return 0 if rc_train == 0 else 1
    except (RunFailed, DeepASAError) as exc:
        _say(f"error: {exc}")                                          # in the log too
        raise
    finally:
        if child is not None and child.proc.poll() is None:
            child.stop("the wrapper is exiting")
            child.wait()
        phases["total_s"] = time.perf_counter() - t_start
        summary["phases"] = phases
        summary["out_files"] = sorted(p.name for p in out.iterdir() if p.is_file() and not p.name.startswith("."))
        if "run.json" not in summary["out_files"]:
            summary["out_files"].append("run.json")
        _atomic_json(summary, out / "run.json")
        _say("OUT: " + ", ".join(f"{p.name} ({p.stat().st_size / 1e6:.2f} MB)" for p in sorted(out.iterdir())
                                   if p.is_file() and not p.name.startswith(".")))
        for s, h in old_handlers.items():
            signal.signal(s, h)
        sys.stdout.flush()
        sys.stdout, sys.stderr = old_streams
        log.close()
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


# =============================================================================================== main
def build_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The parsers of ``gpu_train.sh MINUTES OUT ...`` and ``gpu_train.sh prepare ...``."""
    r = _Parser(prog=f"{PROG}", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog=f"example: scripts/{PROG} {SUGGESTED_MINUTES} \"$OUT\"   |   scripts/{PROG} 1 /tmp/out "
                "--device cpu --steps 2")
    r.add_argument("minutes", metavar="MINUTES", help="training time in minutes (trainer.max_time)")
    r.add_argument("out", metavar="OUT", help="new or empty folder for the results")
    r.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cuda (default) or cpu (a dry run)")
    r.add_argument("--steps", type=int, help="at most this many more optimiser steps")
    r.add_argument("--batch", type=int, help="training (and validation) batch (default: the recipe's, 2; see "
                   "docs/training.md before raising it)")
    r.add_argument("--workers", type=int, help="DataLoader workers (default: cores - 1 on cuda, 1 on cpu)")
    r.add_argument("--compile", action="store_true", help="torch.compile the network (model.compile; off by "
                   "default: compiling takes minutes, more than a short run gains)")
    r.add_argument("--eval-scenes", type=int, default=EVAL_SCENES,
                   help=f"validation scenes to evaluate the exported model on (default {EVAL_SCENES}; 0: none)")
    r.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="one more `deepasa train` option, e.g. --set data.val_scenes=8 (repeatable)")
    r.add_argument("--checkpoint", default=str(REPO / CHECKPOINT), help=f"resume state to start from (default "
                   f"{CHECKPOINT}; copied, never written)")
    r.add_argument("--recipe", default=str(REPO / RECIPE), help=f"training recipe (default {RECIPE})")
    r.add_argument("--bank-home", help="a fetched sound-bank home to use as it is")
    r.add_argument("--bank-pack", default=str(REPO / PACK_DIR), help=f"sound-bank pack (default {PACK_DIR}/)")
    r.add_argument("--unpack-to", default=DEFAULT_UNPACK, help=f"where the pack is unpacked (default {DEFAULT_UNPACK})")
    r.add_argument("--work", help="work folder (kept; default: a temporary one, removed at the end)")

    p = _Parser(prog=f"{PROG} prepare", description="On this machine: wheels into .whl/, the sound-bank pack into "
                ".gpubank/, both ignored by git; prints the size that would travel and the carry list.")
    p.add_argument("--bank-home", help="the fetched sound bank to pack (default $DEEPASA_HOME or ~/.cache/deepasa)")
    p.add_argument("--opus-level", type=float, default=None, help="Opus compression level, 0 (largest) to 1 "
                   "(smallest); default 0.9 (~35 kbit/s)")
    p.add_argument("--workers", type=int, default=1, help="encoding processes (default 1)")
    p.add_argument("--no-wheels", action="store_true", help="skip the wheel download")
    p.add_argument("--no-bank", action="store_true", help="skip the bank pack")
    return r, p


def main(argv: list[str] | None = None) -> int:
    """``gpu_train.sh prepare [...]`` or ``gpu_train.sh MINUTES OUT [...]``; errors → one line, exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    run_parser, prepare_parser = build_parsers()
    try:
        if argv and argv[0] == "prepare":
            args = prepare_parser.parse_args(argv[1:])
            if args.opus_level is None:
                from deepasa.scenes.bank_pack import DEFAULT_LEVEL

                args.opus_level = DEFAULT_LEVEL
            return prepare(args)
        return run(run_parser.parse_args(argv))
    except DeepASAError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except RunFailed as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
