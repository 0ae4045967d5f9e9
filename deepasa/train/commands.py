"""``deepasa train`` (LightningCLI) and ``deepasa evaluate``.

``deepasa train --config configs/train/<recipe>.yaml [--section.key=value ...]`` is a
:class:`~lightning.pytorch.cli.LightningCLI`: every argument of :class:`~deepasa.train.module.DeepASAModule`
(``--model.*``), :class:`~deepasa.train.data.DeepASADataModule` (``--data.*``), the Lightning ``Trainer``
(``--trainer.*``, e.g. ``devices``, ``num_nodes``, ``strategy=ddp``, ``precision=bf16-mixed``) and the best/last
:class:`~lightning.pytorch.callbacks.ModelCheckpoint` (``--checkpoint.*``) can be set in the YAML or on the
command line. ``--print_config`` shows the resolved configuration. Extra options:

* ``--resume`` continues from ``<checkpoint.dirpath>/last.ckpt`` (default dirpath:
  ``<trainer.default_root_dir>/checkpoints``); ``--ckpt_path FILE`` resumes from a given checkpoint;
* ``--export FILE`` writes the best model (or the last one without validation) as a ``DeepASA.save`` file,
  what ``DeepASA.from_pretrained`` and ``deepasa evaluate`` load.

Logs: CSV (``<root>/logs/version_<n>/metrics.csv``) and TensorBoard (``<root>/tb/version_<n>/``), every loss
term and metric in both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from deepasa.errors import DeepASAError

TRAIN_EXAMPLE = """examples:
  deepasa train --config configs/train/sim_small_net1.yaml
  deepasa train --config configs/train/sim_small_net1.yaml --resume
  deepasa train --config configs/train/asa2_paper.yaml --trainer.devices=8 --trainer.num_nodes=2
  deepasa train --config configs/train/tiny_test.yaml --trainer.max_steps=5 --print_config
"""

EVAL_EXAMPLE = """examples:
  deepasa evaluate --checkpoint checkpoints/default.pt --data data/scenes --split test --out report.json
  deepasa evaluate --checkpoint runs/sim_small_coi/checkpoints/last.ckpt --data data/scenes --limit 20
  deepasa evaluate --finder finder --data data/scenes --out pipeline.json   # the shipped trajectory-first pipeline
  deepasa evaluate --finder true --data data/scenes --no-classes            # the spatial stage's ceiling
"""


EXPORT_EXAMPLE = """examples:
  deepasa export runs/sim_small_coi/checkpoints/last.ckpt checkpoints/default.pt --data data/scenes
  deepasa export runs/shipped/checkpoints/last.ckpt checkpoints/default.pt --bank-classes
  deepasa export checkpoints/default.pt /tmp/onoff_only.pt --set detect_doa_norm=0   # the decision rule
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``evaluate`` to the top-level parser."""
    # `train` hands every argument to LightningCLI (its own --help lists them all): '+' as the only prefix
    # keeps argparse from reading the options itself.
    p = subparsers.add_parser("train", help="train DeepASA (Lightning; YAML recipes in configs/train)",
                              add_help=False, prefix_chars="+",
                              description=__doc__, epilog=TRAIN_EXAMPLE,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cli_args", nargs=argparse.REMAINDER, help="LightningCLI arguments (see deepasa train --help)")
    p.set_defaults(func=run_train)

    e = subparsers.add_parser("evaluate", help="score a model on a dataset (separation, SELD, DCASE metrics)",
                              description="Run a model (a DeepASA.save file or a `deepasa train` checkpoint) "
                              "over a dataset and report separation (SI-SDRi, SDRi, direct-path SI-SDRi; "
                              "reference channel and M2M), DeepASA frame SELD metrics and the official DCASE "
                              "2023 segment metrics (and the same for Net 1 of a CoI model), as JSON + a table "
                              "with the mean and 95 % interval per metric; every metric also per number of "
                              "true sources (the report's by_num_sources block).",
                              epilog=EVAL_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = e.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", type=Path, help="model file (.pt) or Lightning checkpoint (.ckpt)")
    what.add_argument("--finder", metavar="FINDER",
                      help="score the trajectory-first pipeline instead of a network: its objects from FINDER "
                           "(finder = the shipped learned finder, srp, a finder checkpoint) or from an oracle "
                           "(true, true-activity, true-direction, gated), separated by the spatial stage")
    e.add_argument("--extractor", type=Path,
                   help="with --finder: separate with this trajectory-conditioned extractor, not the spatial stage")
    e.add_argument("--format", choices=("mic", "foa"), default="mic",
                   help="with --finder: the data's array format (foa: deepasa simulate --format foa; the "
                        "active-intensity finder and the FOA spatial stage)")
    classes = e.add_mutually_exclusive_group()
    classes.add_argument("--classes", type=Path,
                         help="with --finder: the object class read-out (default: checkpoints/object_classes.pt)")
    classes.add_argument("--no-classes", action="store_true",
                         help="with --finder: no class read-out (only the class-agnostic blocks are meaningful)")
    e.add_argument("--data", required=True, type=Path, help="dataset root")
    e.add_argument("--split", default="test", help="split folder (default: test)")
    e.add_argument("--dataset", default="scenes", help="dataset format: scenes, starss23, mcfuss, dcase25t4")
    e.add_argument("--out", type=Path, help="write the JSON report here")
    e.add_argument("--batch-size", type=int, default=1)
    e.add_argument("--limit", type=int, help="only the first N items")
    e.add_argument("--seld-average", choices=("micro", "macro"), default="micro",
                   help="frame SELD averaging: micro (ASA2 tables) or macro (STARSS23)")
    e.add_argument("--no-sdr", action="store_true", help="skip the (slow) BSS-eval SDR")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.add_argument("--no-by-num-sources", action="store_true",
                   help="skip the per-number-of-sources breakdown (by_num_sources; its DCASE scoring is the extra cost)")
    e.set_defaults(func=run_evaluate)

    x = subparsers.add_parser("export", help="write a training checkpoint as a model file (what analyze loads)",
                              description="Convert a `deepasa train` Lightning checkpoint (best, last, or one "
                              "of an interrupted run) into a DeepASA.save model file, with the class names "
                              "of its training data, so `deepasa analyze`, `DeepASA.from_pretrained` and "
                              "`deepasa evaluate` load it.", epilog=EXPORT_EXAMPLE,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    x.add_argument("checkpoint", type=Path, help="Lightning checkpoint (.ckpt) or model file")
    x.add_argument("out", type=Path, help="model file to write (.pt)")
    names = x.add_mutually_exclusive_group()
    names.add_argument("--data", type=Path, help="dataset root whose classes.json names the classes")
    names.add_argument("--bank-classes", action="store_true",
                       help="name the classes after the sound-bank taxonomy (training on simulated scenes, "
                       "data.simulate)")
    x.add_argument("--format", choices=("mic", "foa"), default="mic", help="array format of the training data")
    x.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config field of the written model that leaves the weights alone (repeatable), e.g. "
                   "doa_refine=srp (docs/model.md, deviation 16), or a field of its decision rule (stored beside "
                   "the config) under its old name: detect_onoff=0.8, detect_doa_norm=0.15, detect_merge_deg=20 "
                   "(deviations 17-19)")
    x.set_defaults(func=run_export)


# ---------------------------------------------------------------------------------------------- train
def _make_cli_class():
    """The LightningCLI subclass (built lazily: importing Lightning is slow)."""
    from jsonargparse import ActionYesNo
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from deepasa.train.callbacks import LastCheckpoint, PlateauAfterResume

    class DeepASACLI(LightningCLI):
        """LightningCLI with the best/last checkpoint, resume/export options and CSV (+TensorBoard) logs."""

        def add_arguments_to_parser(self, parser) -> None:
            parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
            parser.set_defaults({
                "checkpoint.monitor": "val/seld_score", "checkpoint.mode": "min", "checkpoint.save_last": False,
                "checkpoint.save_top_k": 1, "checkpoint.auto_insert_metric_name": False,
                "checkpoint.filename": "best-epoch{epoch:03d}-step{step:07d}",
            })
            parser.add_argument("--last_every_n_steps", type=int, default=50,
                                help="write <checkpoint.dirpath>/last.ckpt every N steps (and after each validation)")
            parser.add_argument("--last_every_minutes", type=float, default=5.0,
                                help="also write last.ckpt after M minutes without a save (single process; 0: off)")
            parser.add_argument("--resume", action=ActionYesNo, default=False,
                                help="continue from <checkpoint.dirpath>/last.ckpt")
            parser.add_argument("--ckpt_path", type=str | None, default=None, help="resume from this checkpoint")
            parser.add_argument("--export", type=str | None, default=None,
                                help="write the best model as a DeepASA.save file at the end")
            parser.add_argument("--fast_path", action=ActionYesNo, default=True,
                                help="where trainer.precision is not set: bf16-mixed if this machine has bf16 "
                                     "matrix units, else 32-true (deepasa.train.fastpath); torch.compile is "
                                     "the recipes' model.compile")

        def before_instantiate_classes(self) -> None:
            cfg = self.config
            root = Path(cfg.trainer.default_root_dir or ".")
            if cfg.checkpoint.dirpath is None:
                cfg.checkpoint.dirpath = str(root / "checkpoints")
            if cfg.fast_path:
                from deepasa.train.fastpath import FAST, resolve_precision

                if cfg.trainer.precision is None:      # a recipe that names a precision keeps it
                    cfg.trainer.precision, why = resolve_precision(FAST, str(cfg.trainer.accelerator))
                    print(f"deepasa train: {why}", file=sys.stderr, flush=True)

        def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> Any:
            if config.get("logger") in (True, None):
                root = config.get("default_root_dir") or "."
                config["logger"] = [CSVLogger(root, name="logs"), TensorBoardLogger(root, name="tb")]
            if config.get("logger") is not False:
                callbacks = [*callbacks, LearningRateMonitor(logging_interval="step")]
            cfg = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
            callbacks = [*callbacks, LastCheckpoint(cfg.checkpoint.dirpath, cfg.last_every_n_steps,
                                                      cfg.last_every_minutes), PlateauAfterResume()]
            return super()._instantiate_trainer(config, callbacks)

    return DeepASACLI


def build_cli(argv: list[str]):
    """Parse ``argv`` and instantiate model, data and trainer (``run=False``); returns the LightningCLI."""
    from deepasa.train.data import DeepASADataModule
    from deepasa.train.module import DeepASAModule

    import warnings

    cli_class = _make_cli_class()
    with warnings.catch_warnings():
        # `deepasa train ARGS` passes ARGS explicitly while sys.argv also holds them: intended here.
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        return cli_class(
            DeepASAModule, DeepASADataModule, args=argv, run=False,
            save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False,
            trainer_defaults={"gradient_clip_val": 5.0, "gradient_clip_algorithm": "norm"},
            seed_everything_default=0,
            parser_kwargs={"prog": "deepasa train", "description": __doc__, "epilog": TRAIN_EXAMPLE,
                           "formatter_class": argparse.RawDescriptionHelpFormatter},
        )


def run_train(args: argparse.Namespace) -> int:
    """Entry point of ``deepasa train``: fit, optionally resuming, then export the best model."""
    argv = list(args.cli_args)
    try:
        cli = build_cli(argv)
    except SystemExit as exc:            # --help / --print_config exit 0; parse errors exit 2 (message printed)
        return int(exc.code or 0)
    cfg = cli.config
    ckpt_path = cfg.ckpt_path
    if cfg.resume and ckpt_path is None:
        last = Path(cfg.checkpoint.dirpath) / "last.ckpt"
        if last.is_file():
            ckpt_path = str(last)
        else:
            print(f"deepasa train: no {last} yet, starting from scratch", file=sys.stderr)
    if ckpt_path is not None and not Path(ckpt_path).is_file():
        raise DeepASAError(f"checkpoint not found: {ckpt_path}")
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
    if cfg.export and cli.trainer.is_global_zero:
        export_best(cli.trainer, Path(cfg.export))
    return 0


def export_best(trainer, path: Path) -> Path:
    """Write the best checkpoint's network (else the last one) as a ``DeepASA.save`` file at ``path``."""
    from deepasa.staging import remove_stale
    from deepasa.train.module import load_model

    cb = trainer.checkpoint_callback
    source = (cb.best_model_path or cb.last_model_path) if cb is not None else ""
    if source and Path(source).is_file():
        model = load_model(source)
    else:
        model = trainer.lightning_module.model
    names = getattr(getattr(trainer, "datamodule", None), "class_names", None)
    if names and len(names) == model.config.n_classes:
        model.class_names = list(names)  # stored in the file: analyze names the objects by it
    remove_stale(path.parent, path.name, tags=("part",), log=lambda msg: print(f"deepasa train: {msg}", file=sys.stderr))
    model.save(path)
    print(f"deepasa train: exported {source or 'the current weights'} to {path}")
    return path


# ---------------------------------------------------------------------------------------------- export
def run_export(args: argparse.Namespace) -> int:
    """Entry point of ``deepasa export``."""
    import json

    from deepasa.staging import remove_stale
    from deepasa.train.module import load_model

    if args.out.exists() and args.out.is_dir():
        raise DeepASAError(f"{args.out} is a folder; name the model file to write")
    bad = [s for s in args.set if "=" not in s]
    if bad:
        raise DeepASAError(f"--set needs KEY=VALUE, got {bad[0]!r}")
    import yaml

    model = load_model(args.checkpoint, **{k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)})
    if args.data is not None:
        classes = args.data / "classes.json"
        if not classes.is_file():
            raise DeepASAError(f"{classes} not found (the dataset root names the classes)")
        names = json.loads(classes.read_text())
        names = names.get("classes", names) if isinstance(names, dict) else names
        if len(names) != model.config.n_classes:
            raise DeepASAError(f"{classes} has {len(names)} classes but the model has {model.config.n_classes}")
        model.class_names = [str(n) for n in names]
    elif args.bank_classes:
        from deepasa.scenes.soundbank import class_names

        names = class_names()
        if len(names) != model.config.n_classes:
            raise DeepASAError(f"the sound-bank taxonomy has {len(names)} classes but the model has "
                               f"{model.config.n_classes}")
        model.class_names = names
    model.audio_format = args.format
    remove_stale(args.out.parent, args.out.name, tags=("part",),
                 log=lambda msg: print(f"deepasa export: {msg}", file=sys.stderr))
    model.save(args.out)
    print(f"deepasa export: {args.checkpoint} -> {args.out} ({sum(p.numel() for p in model.parameters()):,} "
          f"parameters, classes: {', '.join(model.class_names) if model.class_names else 'unnamed'})")
    return 0


# ---------------------------------------------------------------------------------------------- evaluate
def run_evaluate(args: argparse.Namespace) -> int:
    """Entry point of ``deepasa evaluate``."""
    from deepasa.staging import atomic_path, remove_stale
    from deepasa.evaluation.scoring import evaluate, format_table, strict_json

    if args.out is not None:   # what a killed evaluation left beside the report
        remove_stale(args.out.parent, args.out.name, tags=("tmp",),
                     log=lambda msg: print(f"deepasa evaluate: {msg}", file=sys.stderr))
    common = dict(split=args.split, dataset=args.dataset, batch_size=args.batch_size, limit=args.limit,
                  seld_average=args.seld_average, with_sdr=not args.no_sdr, progress=not args.quiet,
                  by_num_sources=not args.no_by_num_sources)
    if args.finder is not None:
        from deepasa.evaluation.trajectory_system import evaluate_pipeline

        report = evaluate_pipeline(args.data, args.finder, classes=False if args.no_classes else args.classes,
                                   extractor=args.extractor, fmt=args.format, **common)
    else:
        if args.format != "mic":
            raise DeepASAError("--format goes with --finder; a network checkpoint carries its own format")
        if args.extractor is not None or args.classes is not None or args.no_classes:
            raise DeepASAError("--extractor, --classes and --no-classes go with --finder (the trajectory-first "
                               "pipeline), not with --checkpoint")
        report = evaluate(args.checkpoint, args.data, **common)
    if args.out is not None:
        import json

        with atomic_path(args.out, "tmp") as tmp:
            tmp.write_text(json.dumps(strict_json(report), indent=1, sort_keys=True, allow_nan=False) + "\n")
    print(format_table(report))
    return 0
