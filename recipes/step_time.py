"""Time one training step (forward + multi-task loss + backward + Adam) of a model config on this machine.

    python -m recipes.step_time --config small --batch 1 4 --threads 1
    python -m recipes.step_time --config small --batch 1 --set attn_dropout=0.0

Random 4-channel clips of the config's length with 2 active of J slots; one warm-up step, then the median
of ``--repeats`` timed steps. Prints one JSON line per batch size. ``--profile N`` also profiles the last
step (``torch.profiler``, CPU) and adds its ``N`` most expensive operators by self CPU time (``top_ops``:
name, calls, self seconds, share of the step's self time), so it shows where a step's time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

from deepasa.losses import multitask_loss
from deepasa.model import DeepASA, get_config


def synthetic_batch(cfg, batch: int) -> dict[str, torch.Tensor]:
    """A random training batch of a config's clip length with 2 active of J slots (the rest empty).

    Returns target fields of :func:`deepasa.losses.multitask_loss`: ``direct``/``reverb`` (B, J, M, N),
    ``noise``/``mixture`` (B, M, N), ``cls`` (B, J), ``activity`` (B, J, T'), ``doa`` (B, J, T', 3).
    """
    B, J, M, N, T = batch, cfg.n_slots, cfg.n_mics, cfg.clip_samples, cfg.n_label_frames
    direct = torch.zeros(B, J, M, N)
    direct[:, :2] = 0.05 * torch.randn(B, 2, M, N)                 # (B, J, M, N): 2 active sources
    activity = torch.zeros(B, J, T)
    activity[:, :2] = 1.0
    cls = torch.full((B, J), -1, dtype=torch.long)
    cls[:, :2] = torch.tensor([0, 1])
    tgt = {"direct": direct, "reverb": 0.3 * direct, "noise": 0.01 * torch.randn(B, M, N), "cls": cls,
           "activity": activity, "doa": F.normalize(torch.randn(B, J, T, 3), dim=-1) * activity[..., None]}
    tgt["mixture"] = (1.3 * direct).sum(1) + tgt["noise"]           # (B, M, N)
    return tgt


def step_seconds(config: str = "small", batch: int = 1, repeats: int = 2, overrides: dict | None = None,
                 seed: int = 0, profile: int = 0) -> dict:
    """Median seconds of the forward pass and of loss + backward + optimiser step, over ``repeats`` warm steps.

    Args:
        profile: when > 0, profile the last step and return its ``profile`` most expensive operators.

    Returns:
        ``{"forward_s", "backward_s", "step_s"}`` (+ ``"top_ops"``: list of ``{"op", "calls", "self_s",
        "share"}`` when profiling).
    """
    torch.manual_seed(seed)
    cfg = get_config(config, **(overrides or {}))
    model = DeepASA(cfg).train()
    opt = torch.optim.Adam(model.parameters(), lr=4e-4)
    tgt = synthetic_batch(cfg, batch)
    fwd, bwd = [], []
    prof = None
    for i in range(repeats + 1):
        if profile and i == repeats:
            prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            prof.__enter__()
        t0 = time.perf_counter()
        out = model(tgt["mixture"])
        t1 = time.perf_counter()
        loss = multitask_loss(out, tgt)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
        t2 = time.perf_counter()
        if prof is not None:
            prof.__exit__(None, None, None)
        if i and prof is None:                                      # the first step warms up; no profiled one
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
    f, b = statistics.median(fwd or [t1 - t0]), statistics.median(bwd or [t2 - t1])
    res: dict = {"forward_s": round(f, 3), "backward_s": round(b, 3), "step_s": round(f + b, 3)}
    if prof is not None:
        events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
        total = sum(e.self_cpu_time_total for e in events)
        events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
        res["top_ops"] = [{"op": e.key, "calls": e.count, "self_s": round(e.self_cpu_time_total / 1e6, 4),
                           "share": round(e.self_cpu_time_total / total, 4)} for e in events[:profile]]
    return res


def main(argv: list[str] | None = None) -> int:
    """Command line of this module; prints one JSON object per batch size."""
    import yaml

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="small")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model config override")
    p.add_argument("--profile", type=int, default=0, metavar="N", help="also list the N most expensive operators")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    for b in args.batch:
        res = step_seconds(args.config, b, args.repeats, overrides, profile=args.profile)
        print(json.dumps({"config": args.config, "overrides": overrides, "batch": b, "threads": torch.get_num_threads(),
                          **res, "load_average_1min": round(os.getloadavg()[0], 2)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
