"""Model size for the shipped run, by measured cost per scene pass and by learning speed.

Cost: for each size (overrides of the shipped recipe's Net-1 model), a full training step (forward, the ASA
multi-task loss, backward, clipping, Adam; the recipe's loss settings, clip and rate) on a random batch of the recipe's shape (2-s clips, batch 4, float32,
eager), the sizes' steps interleaved round-robin in one process, so that their ratios hold on a shared,
noisy machine even where the absolute seconds do not. The model is the shipped one: the recipe's
``model.model_overrides`` (GCC-PHAT DoA input, masks, the aisfx class embedding, ...) read from
``configs/train/sim_small_shipped.yaml``, plus each size's overrides.

Learning speed: the rows of ``experiments/2026-12-01-doa-learning/doa_learning.py`` runs of the same sizes
(``--model small2s --set emb_dim=32`` ...; their results file is ``--learning``), joined to the costs by their
``--set`` overrides (``E=experiments/2026-12-07-model-size``):

    python $E/model_size.py --threads 1 --repeats 3         # the costs -> $E/results/model_size.json
    python experiments/2026-12-01-doa-learning/doa_learning.py --data /work/data/doa --scenes 2-moving \\
        --variants gcc_mixture+ln+mask+srp+onoffpos4+norm015 --model small2s --set emb_dim=32 \\
        --budgets 500 1000 --threads 1 --state $E/state --out $E/results/model_size_learning.json
    python $E/model_size.py --join                           # the learning rows into the results file
    python $E/model_size.py --table                          # costs and learning rows, one table

Writes ``{"cases": [...], "learning": [...]}``: a case per size with ``size``, ``overrides``, ``params``,
``trunk_params`` (encoder, blocks, splitter, audio heads: the separation path), ``step_s`` (median),
``steps_s`` (every timed step), ``scene_passes_per_s`` and ``cost_ratio`` (its median step over the first
size's); ``learning`` holds the learning rows whose overrides name a size here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

from deepasa.errors import DeepASAError, run_script
from deepasa.evaluation.scoring import strict_json
from deepasa.losses import LossWeights, multitask_loss
from deepasa.model import DeepASA, get_config
from deepasa.staging import write_json
from recipes.step_time import synthetic_batch

HERE = Path(__file__).resolve().parent                    # experiments/2026-12-07-model-size
ROOT = HERE.parents[1]
# the direction experiment's --set parser and results reader (its script: experiments/2026-12-01-doa-learning)
sys.path.insert(0, str(ROOT / "experiments" / "2026-12-01-doa-learning"))
from doa_learning import read_results, set_overrides  # noqa: E402

SCRIPT = (HERE / "model_size.py").relative_to(ROOT).as_posix()   # as the results' ``command`` names it
RECIPE = ROOT / "configs" / "train" / "sim_small_shipped.yaml"
RESULTS = HERE / "results" / "model_size.json"
LEARNING = HERE / "results" / "model_size_learning.json"

#: Sizes compared: overrides of the shipped model, one change from it each. The first is the reference.
SIZES = {
    "D16 (shipped)": {},
    "D24": {"emb_dim": 24},
    "D32": {"emb_dim": 32},
    "D16, 4 blocks": {"n_blocks": 4},
}
#: The separation path: what turns the mixture into the objects' signals (the SELD heads are not in it).
TRUNK = ("encoder", "blocks", "splitter", "audio")


def shipped_recipe() -> dict:
    """The shipped recipe's ``model`` section (its ``model_overrides``, ``loss_weights``, ``aux_own_permutation``,
    ``lr``) and ``trainer.gradient_clip_val`` as ``clip``."""
    recipe = yaml.safe_load(RECIPE.read_text())
    return {**recipe["model"], "clip": recipe["trainer"]["gradient_clip_val"]}


def set_args(overrides: dict) -> list[str]:
    """Size overrides as the ``--set KEY=VALUE`` list a doa_learning.py run records (``{"emb_dim": 32}`` ->
    ``["emb_dim=32"]``)."""
    return [f"{k}={v}" for k, v in overrides.items()]


def measure(sizes: dict[str, dict], batch: int, repeats: int, config: str = "small", base: dict | None = None,
            seed: int = 0, log=print) -> list[dict]:
    """Interleaved step times of every size; one case dict per size (module docstring).

    Args:
        sizes: name -> overrides of ``config`` + ``base`` (default: the shipped recipe's overrides).
        batch: clips per step; repeats: timed steps per size (after one warm-up round).
    """
    recipe = shipped_recipe()
    base = dict(recipe["model_overrides"]) if base is None else base
    weights = LossWeights(**recipe.get("loss_weights", {}))
    aux_own = recipe.get("aux_own_permutation", True)
    models, opts, batches = {}, {}, {}
    for name, over in sizes.items():
        torch.manual_seed(seed)
        cfg = get_config(config, **{**base, **over})
        models[name] = DeepASA(cfg).train()
        opts[name] = torch.optim.Adam(models[name].parameters(), lr=recipe["lr"])
        batches[name] = synthetic_batch(cfg, batch)                  # the same shapes for every size
    times: dict[str, list[float]] = {name: [] for name in sizes}
    for r in range(repeats + 1):                                     # round 0 warms every model up
        for name in sizes:
            model, opt, tgt = models[name], opts[name], batches[name]
            t0 = time.perf_counter()
            loss = multitask_loss(model(tgt["mixture"]), tgt, weights, aux_own_permutation=aux_own)
            opt.zero_grad(set_to_none=True)
            loss.total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["clip"])
            opt.step()
            dt = time.perf_counter() - t0
            if r:
                times[name].append(dt)
            log(f"round {r} {name}: {dt:.2f} s")
    cases, ref = [], None
    for name, over in sizes.items():
        med = statistics.median(times[name])
        ref = ref or med
        params = {k: 0 for k in TRUNK}
        for n, p in models[name].named_parameters():
            if n.split(".")[0] in params:
                params[n.split(".")[0]] += p.numel()
        cases.append({"size": name, "overrides": over, "set": set_args(over),
                      "params": sum(p.numel() for p in models[name].parameters() if p.requires_grad),
                      "trunk_params": sum(params.values()), "batch": batch, "step_s": round(med, 3),
                      "steps_s": [round(t, 3) for t in times[name]],
                      "scene_passes_per_s": round(batch / med, 4), "cost_ratio": round(med / ref, 3)})
    return cases


def size_of(row: dict, cases: list[dict]) -> str | None:
    """The size in ``cases`` whose model a learning row trained: the one whose overrides give the same ``small``
    config as the row's ``--set`` overrides (so ``emb_dim=16``, the shipped value, is the shipped size)."""
    want = get_config("small", **set_overrides(row.get("set", [])))
    for c in cases:
        if get_config("small", **c["overrides"]) == want:
            return c["size"]
    return None


def learning_rows(path: Path, cases: list[dict]) -> list[dict]:
    """The doa_learning.py rows of ``path`` (``small2s`` runs) that trained a size in ``cases``, each with its
    ``size`` added."""
    if not path.is_file():
        return []
    rows = [r for r in read_results(path)["rows"] if r.get("model") == "small2s"]
    return [{**r, "size": size} for r in rows if (size := size_of(r, cases)) is not None]


def table(data: dict) -> str:
    """Costs and learning rows as two markdown tables (docs/notebook/model-size-and-fit16.md)."""
    lines = ["| size | trainable params | separation-path params | step, batch 4 (s) | scene passes/s | cost ratio |",
             "|---|---|---|---|---|---|"]
    for c in data["cases"]:
        lines.append(f"| {c['size']} | {c['params']:,} | {c['trunk_params']:,} | {c['step_s']:.2f} | "
                     f"{c['scene_passes_per_s']:.3f} | {c['cost_ratio']:.2f} |")
    lines += ["", "| size | scenes | scene passes | SI-SDRi (dB) | detection | DoA err. every slot (°) | "
                  "class acc. (all) | training loss | passes/s (its run) |", "|---|---|---|---|---|---|---|---|---|"]

    def f(v, fmt):
        return "–" if v is None or (isinstance(v, float) and v != v) else format(v, fmt)
    for r in sorted(data["learning"], key=lambda r: (r["scenes"], r["scene_passes"], r["size"])):
        lines.append(f"| {r['size']} | {r['scenes']} | {r['scene_passes']} | {f(r['si_sdri_db'], '.2f')} | "
                     f"{f(r['detection_rate'], '.2f')} | {f(r['doa_error_median_deg'], '.1f')} | "
                     f"{f(r.get('class_accuracy_all'), '.2f')} | {f(r.get('loss'), '.2f')} | "
                     f"{f(r.get('scene_passes_per_s'), '.3f')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES), help="sizes to time")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3, help="timed steps per size")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--learning", default=str(LEARNING), help="results file of the doa_learning.py size runs")
    ap.add_argument("--table", action="store_true", help="print --out (with the learning rows, re-read) and exit")
    ap.add_argument("--join", action="store_true",
                    help="re-read the learning rows into --out (the costs as they were measured) and exit")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.table or args.join:
        if not out.is_file():
            raise DeepASAError(f"no results at {out} (run without --table or --join first)")
        data = read_results(out, "cases")                           # a one-line error for a file that is not ours
        data["learning"] = learning_rows(Path(args.learning), data["cases"])
        if args.join:
            write_json(out, strict_json(data), indent=1)
        print(table(data))
        return 0
    if args.repeats < 1 or args.batch < 1 or args.threads < 1:
        raise DeepASAError("--repeats, --batch and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    cases = measure({k: SIZES[k] for k in args.sizes}, args.batch, args.repeats,
                    log=lambda m: print(m, file=sys.stderr, flush=True))
    data = {"about": __doc__.splitlines()[0], "command": f"python {SCRIPT} " + " ".join(argv or sys.argv[1:]),
            "threads": args.threads, "load_average_1min": round(os.getloadavg()[0], 2), "cases": cases,
            "learning": learning_rows(Path(args.learning), cases)}
    write_json(out, strict_json(data), indent=1)
    print(table(data))
    return 0


if __name__ == "__main__":
    run_script(main)
