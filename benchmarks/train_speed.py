"""Training speed: today's path (float32, eager) against the fast path, interleaved in one run.

For each case (config, CoI or not, batch) two copies of the same model train side by side on the same batch:
the baseline (float32, eager) and the fast path of this machine (:mod:`deepasa.train.fastpath`: bf16
autocast where the hardware has bf16 matrix units, else float32; the decoders' object features in
channels-last memory (``SELDHeads.channels_last``); ``torch.compile`` of the trunk blocks, splitter and heads). Their steps alternate (baseline, fast, baseline, fast, ...), so the ratio of their
medians holds on a shared, noisy machine even when the absolute times do not. A step is what
``deepasa train`` does: forward, the ASA multi-task loss (float32), backward, gradient clipping, Adam.

It also reports:
* ``data_wait_fraction``: the share of a training loop's time spent waiting for the next batch, for the
  shipped recipe's on-the-fly simulation and for on-disk scenes (a DataLoader with one worker, as the
  recipes, feeding fast-path steps of the same model);
* the forward real-time factor of ``small`` and ``paper`` on the inference path (eval, no grad) for the
  baseline and the fast path.

    python benchmarks/train_speed.py                 # the issue's cases (takes ~1 h on 2 busy cores)
    python benchmarks/train_speed.py --quick         # `tiny`, batch 1, no compilation: checks the harness
                                                     # (the fast path is then bf16 only where it pays)
    python benchmarks/train_speed.py --shipped       # only the shipped run's step (2-s clips, batch 4)
    python benchmarks/train_speed.py --shipped --bf16-only   # both paths compiled: what bf16 alone buys

Writes ``benchmarks/results/train_speed.json`` (``--shipped``: ``train_speed_shipped.json``; ``--out`` elsewhere)
with a list ``cases``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from deepasa.staging import write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "train_speed.json"
SHIPPED = {"n_classes": 10, "doa_spatial": "gcc_mixture", "doa_spatial_norm": True}
#: ``--shipped``: what configs/train/sim_small_shipped.yaml adds (run 3): 2-s clips, the aisfx class embedding
SHIPPED_RUN = {"clip_seconds": 2.0, "cls_embedding": "aisfx"}
SHIPPED_RESULTS = ROOT / "benchmarks" / "results" / "train_speed_shipped.json"


def synthetic_batch(cfg, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A training batch of the config's clip length: 2 active sources of the J slots, the rest empty.

    Returns the targets of :func:`deepasa.losses.multitask_loss` plus ``mixture`` (B, M, N).
    """
    g = torch.Generator().manual_seed(seed)
    B, J, M, N, T = batch, cfg.n_slots, cfg.n_mics, cfg.clip_samples, cfg.n_label_frames
    direct = torch.zeros(B, J, M, N)
    direct[:, :2] = 0.05 * torch.randn(B, 2, M, N, generator=g)
    activity = torch.zeros(B, J, T)
    activity[:, :2] = 1.0
    cls = torch.full((B, J), -1, dtype=torch.long)
    cls[:, :2] = torch.tensor([0, 1])
    doa = F.normalize(torch.randn(B, J, T, 3, generator=g), dim=-1) * activity[..., None]
    tgt = {"direct": direct, "reverb": 0.3 * direct, "noise": 0.01 * torch.randn(B, M, N, generator=g),
           "cls": cls, "activity": activity, "doa": doa}
    tgt["mixture"] = (1.3 * direct).sum(1) + tgt["noise"]           # (B, M, N)
    return tgt


class Runner:
    """One model + Adam on one path; ``step(batch)`` runs a full training step and returns its seconds."""

    def __init__(self, config: str, overrides: dict, fast: bool, seed: int = 0, compile: bool = True,
                 bf16: bool | None = None):
        """``fast``: channels-last decoders, compilation (``compile``) and bf16 where it runs in hardware;
        ``bf16`` (default: ``fast``) switches the bf16 autocast alone."""
        from deepasa.model import DeepASA, get_config
        from deepasa.model.heads import SELDHeads
        from deepasa.train.fastpath import bf16_is_fast, compile_model

        torch.manual_seed(seed)
        self.cfg = get_config(config, **overrides)
        self.model = DeepASA(self.cfg).train()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=4e-4)
        self.bf16 = (fast if bf16 is None else bf16) and bf16_is_fast("cpu")
        # the decoders' channels-last input (SELDHeads.channels_last, on by default) is part of the fast path;
        # the baseline is the contiguous layout it replaced
        for mod in self.model.modules():
            if isinstance(mod, SELDHeads):
                mod.channels_last = fast
        self.compiled = compile_model(self.model, log=lambda m: None) if fast and compile else []

    def step(self, tgt: dict[str, torch.Tensor]) -> float:
        """Forward (bf16 autocast on the fast path where it pays), float32 loss, backward, clip, Adam."""
        from deepasa.losses import multitask_loss

        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model(tgt["mixture"])
        loss = multitask_loss(out, tgt)
        self.opt.zero_grad(set_to_none=True)
        loss.total.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.opt.step()
        return time.perf_counter() - t0


def train_case(config: str, coi: bool, batch: int, threads: int, repeats: int, compile: bool = True,
               extra: dict | None = None, bf16_only: bool = False) -> dict:
    """Interleaved baseline/fast training steps of one case; scene passes per second of each and the ratio.

    ``extra``: more model-config overrides (``--shipped``: the shipped run's 2-s clips and class embedding).
    ``bf16_only``: the baseline is the fast path without bf16 autocast (channels-last, compiled if
    ``compile``), so the ratio is what bf16 alone buys.
    """
    torch.set_num_threads(threads)
    overrides = {**SHIPPED, "coi_steps": 1 if coi else 0} if config == "small" else {"coi_steps": 1 if coi else 0}
    overrides.update(extra or {})
    base = Runner(config, overrides, fast=bf16_only, compile=compile, bf16=False)
    fast = Runner(config, overrides, fast=True, compile=compile)
    tgt = synthetic_batch(base.cfg, batch)
    warm = {"baseline_first_step_s": round(base.step(tgt), 2), "fast_first_step_s": round(fast.step(tgt), 2)}
    tb, tf = [], []
    for _ in range(repeats):                                         # interleaved: b, f, b, f, ...
        tb.append(base.step(tgt))
        tf.append(fast.step(tgt))
    mb, mf = statistics.median(tb), statistics.median(tf)
    return {"config": config, "coi": coi, "batch": batch, "threads": threads, "repeats": repeats,
            "baseline_step_s": round(mb, 4), "fast_step_s": round(mf, 4),
            "baseline_scene_passes_per_s": round(batch / mb, 4), "fast_scene_passes_per_s": round(batch / mf, 4),
            "speedup": round(mb / mf, 3), "fast_bf16": fast.bf16, "fast_compiled": fast.compiled,
            "baseline": "fast path in float32" if bf16_only else "float32, eager", "overrides": overrides, **warm}


def data_wait(source: str, threads: int, steps: int, home: str | None = None) -> dict:
    """Fraction of a loop's time spent waiting for batches: ``source`` = ``onthefly`` or ``disk``.

    The loader is that of ``deepasa train`` (DeepASADataModule, batch 2, one worker, the shipped recipe's
    on-the-fly scenes, or scenes simulated to a temporary folder for ``disk``); each batch feeds an eager
    float32 step of ``small`` + CoI (the slowest path, so the fraction is an upper bound).
    """
    from deepasa.train.data import DeepASADataModule

    torch.set_num_threads(threads)
    common = {"n_slots": 5, "sample_rate": 16000, "clip_seconds": 4.0, "batch_size": 2, "val_batch_size": 2,
              "num_workers": 1, "epoch_size": 2 * (steps + 1), "val_scenes": 2}
    with tempfile.TemporaryDirectory() as tmp:
        if source == "onthefly":
            dm = DeepASADataModule(simulate=True, root=None, seed=0, augment="swap", **common)
        else:
            import subprocess

            scenes = Path(tmp) / "scenes"
            for split, n in (("train", 2 * (steps + 1)), ("val", 2)):
                subprocess.run([sys.executable, "-m", "deepasa.cli", "simulate", "--out", str(scenes), "--split",
                                split, "--num-scenes", str(n), "--seed", "0", "--quiet"], check=True)
            dm = DeepASADataModule(root=str(scenes), **common)
        dm.setup("fit")
        runner = Runner("small", {**SHIPPED, "coi_steps": 1}, fast=False)
        it = iter(dm.train_dataloader())
        waits, computes = [], []
        for i in range(steps + 1):
            t0 = time.perf_counter()
            batch = next(it)
            t1 = time.perf_counter()
            tgt = {k: batch[k] for k in ("direct", "reverb", "noise", "cls", "activity", "doa", "mixture")}
            dt = runner.step(tgt)
            if i:                                                    # the first batch includes worker start-up
                waits.append(t1 - t0)
                computes.append(dt)
    total = sum(waits) + sum(computes)
    return {"source": source, "steps": steps, "wait_s_mean": round(statistics.mean(waits), 3),
            "step_s_mean": round(statistics.mean(computes), 3), "data_wait_fraction": round(sum(waits) / total, 4)}


def forward_rtf(config: str, threads: int, repeats: int, seconds: float = 4.0) -> dict:
    """Inference-path forward time / audio duration of ``config`` (eval, no grad): baseline and fast path."""
    from deepasa.model import DeepASA, get_config
    from deepasa.train.fastpath import bf16_is_fast, compile_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    res = {"config": config, "threads": threads, "seconds": seconds}
    x = 0.05 * torch.randn(1, get_config(config).n_mics, int(seconds * get_config(config).sample_rate))
    for path in ("baseline", "fast"):
        model = DeepASA(get_config(config)).eval()
        bf16 = path == "fast" and bf16_is_fast("cpu")
        if path == "fast":
            compile_model(model, log=lambda m: None)
        times = []
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(x)                                                 # warm-up (and compilation)
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t0)
        res[f"{path}_rtf"] = round(statistics.median(times) / seconds, 4)
    res["speedup"] = round(res["baseline_rtf"] / res["fast_rtf"], 3)
    return res


def main(argv: list[str] | None = None) -> int:
    """Command line; writes the JSON and prints one line per case."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny config, batch 1, eager only (about a minute)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="timed steps per path and case")
    p.add_argument("--skip-data", action="store_true", help="no data-wait measurement")
    p.add_argument("--skip-rtf", action="store_true", help="no forward real-time factor")
    p.add_argument("--shipped", action="store_true",
                   help="only the shipped run's step (small Net 1, 2-s clips, class embedding, batch 4); "
                        "implies --skip-data --skip-rtf")
    p.add_argument("--no-compile", action="store_true", help="the fast path without torch.compile")
    p.add_argument("--bf16-only", action="store_true",
                   help="baseline = the fast path in float32: the ratio is what bf16 autocast alone buys")
    p.add_argument("--out", type=Path, default=None,
                   help=f"results JSON (default {RESULTS.relative_to(ROOT)}; with --shipped "
                        f"{SHIPPED_RESULTS.relative_to(ROOT)})")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = SHIPPED_RESULTS if args.shipped else RESULTS
    if args.shipped:
        args.skip_data = args.skip_rtf = True
    if args.threads < 1 or args.repeats < 1:
        print("train_speed: --threads and --repeats must be at least 1", file=sys.stderr)
        return 2
    from deepasa.train.fastpath import bf16_is_fast, compile_available

    extra = SHIPPED_RUN if args.shipped else {}
    if args.quick:
        specs = [("tiny", False, 1)]
    elif args.shipped:
        specs = [("small", False, 4)]
    else:                                        # batch 2 first: the cases the targets are set on
        specs = [("small", coi, b) for b in (2, 4) for coi in (False, True)]
    ok, why = compile_available()
    result = {
        "benchmark": "train_speed",
        "command": " ".join(["python benchmarks/train_speed.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "bf16_matrix_units": bf16_is_fast("cpu"), "compile_available": ok, "compile_note": why,
                    "load_average_1min": round(os.getloadavg()[0], 2)},
        "complete": False, "cases": [], "data_wait": [], "forward_rtf": [],
    }
    cases, data, rtf = result["cases"], result["data_wait"], result["forward_rtf"]

    def wait_of(case: dict) -> float | None:
        """The recipes' on-the-fly loader wait against this case's fast step (None before it is measured)."""
        w = next((d["wait_s_mean"] for d in data if d["source"] == "onthefly"), None)
        return None if w is None else round(w / (w + case["fast_step_s"]), 4)

    def write() -> None:                         # after every measurement: a cut-short run keeps what it did
        for case in cases:
            case["data_wait_fraction"] = wait_of(case)
        write_json(args.out, result)

    for i, (config, coi, batch) in enumerate(specs):
        case = train_case(config, coi, batch, args.threads, 1 if args.quick else args.repeats,
                          compile=not (args.quick or args.no_compile), extra=extra, bf16_only=args.bf16_only)
        cases.append(case)
        print(json.dumps(case), flush=True)
        write()
        if i == 1 and not (args.quick or args.skip_data):     # after the batch-2 cases
            for source in ("onthefly", "disk"):
                data.append(data_wait(source, args.threads, steps=args.repeats))
                print(json.dumps(data[-1]), flush=True)
                write()
    if not (args.quick or args.skip_rtf):
        for config in ("small", "paper"):
            rtf.append(forward_rtf(config, args.threads, args.repeats))
            print(json.dumps(rtf[-1]), flush=True)
            write()
    result["complete"] = True
    write()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
