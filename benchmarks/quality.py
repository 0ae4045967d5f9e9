"""Every system side by side on the fixed held-out simulated test set (issue 7).

Systems (``--systems``, default all):

* ``deepasa``       the shipped model (``checkpoints/default.pt``, Net 1 + chain-of-inference);
* ``deepasa-net1``  the Net-1 outputs of the shipped model, before its CoI step (cost measured on the Net-1
                    network alone); with ``--net1-checkpoint``, a separate Net-1 model instead;
* ``classical``     AuxIVA + WPE + SRP-PHAT, no training (:mod:`deepasa.baselines.classical`);
* ``seldnet``       the DCASE 2023 SELDnet, multi-ACCDOA, trained on the same data (``checkpoints/seldnet.pt``);
* ``oracle``        ideal ratio masks on the true images + the true labels (:mod:`deepasa.baselines.oracle`);
* ``pipeline``      the shipped trajectory-first pipeline: learned finder (``checkpoints/finder.pt``) → spatial
                    stage → class read-out on each separated object (``checkpoints/object_classes.pt``);
* ``pipeline-srp``  the same with the classical SRP-PHAT finder (no trained finder);
* ``spatial-true``  the spatial stage driven by the *true* trajectories (its ceiling), read-out as ``pipeline``;
* ``gated-true``    the mixture gated by each source's true activity (what *when* alone is worth, no stage);
* ``direction-true`` the spatial stage's direction mask with the true directions only (every object on all the
                    time: what *where* alone is worth).

Every system is scored as ``deepasa analyze`` outputs it: a network slot that its decision rule never marks active
is no object, so its audio is scored as silence (0 dB), not as its leftover audio (``deepasa evaluate`` scores the
raw slots; the model card quotes that).

Every system goes through :func:`deepasa.evaluation.score_system` — the same slot alignment and metrics as
``deepasa evaluate``: separation (SI-SDRi, SDRi, direct-path SI-SDRi, reference channel), DeepASA frame SELD
metrics, official DCASE 2023 segment metrics, CA-SDRi, and a class-agnostic localization block (detection and
DoA with classes ignored, so the classical system is comparable). Breakdowns by number of sources, by RT60 band
and moving vs static source. Cost: trainable parameters, GMAC/s, real-time factor (system seconds / audio
seconds, this machine, ``--threads`` threads).

    python benchmarks/quality.py [--data data/scenes] [--limit N] [--no-sdr] [--systems ...] [--threads 2]

The test set (``<data>/test``) is simulated first when absent: ``deepasa simulate --split test --num-scenes 200
--seed 2025 --subtype FLOAT`` (needs the test split of the sound bank). Writes ``benchmarks/results/quality.json``
and ``benchmarks/results/quality.md`` and replaces the table between the ``quality`` markers of docs/baselines.md.

Not split (about 450 lines): it is one program whose parts (building the systems, timing them, the breakdowns,
the tables) each have one caller, its ``main``; the scoring it shares with everything else already lives in
:mod:`deepasa.evaluation`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from deepasa.errors import DeepASAError, run_script

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
README = REPO / "docs" / "baselines.md"  # the side-by-side table (moved from README.md, issue 16)
SYSTEMS = ("deepasa", "deepasa-net1", "classical", "seldnet", "oracle", "pipeline", "pipeline-srp", "spatial-true",
           "gated-true", "direction-true")
TRAJECTORIES = {"pipeline": "finder", "pipeline-srp": "srp", "spatial-true": "true", "gated-true": "gated",
                "direction-true": "true-direction"}
TEST_SET = {"split": "test", "num_scenes": 200, "seed": 2025, "subtype": "FLOAT"}
RT60_BANDS = (("<0.30", 0.0, 0.3), ("0.30-0.45", 0.3, 0.45), (">=0.45", 0.45, float("inf")))
MARK_START, MARK_END = "<!-- quality:start -->", "<!-- quality:end -->"


# ---------------------------------------------------------------------------------------------- data

def ensure_test_set(root: Path) -> None:
    """Simulate the fixed test set into ``root/test`` unless it is there."""
    if (root / "test" / "mixed").is_dir() and any((root / "test" / "mixed").iterdir()):
        return
    cmd = [sys.executable, "-m", "deepasa.cli", "simulate", "--out", str(root), "--split", TEST_SET["split"],
           "--num-scenes", str(TEST_SET["num_scenes"]), "--seed", str(TEST_SET["seed"]),
           "--subtype", TEST_SET["subtype"], "--workers", "2"]
    print("simulating the test set:", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True)


def scene_meta(root: Path, split: str, ids: list[str]) -> dict[str, dict]:
    """``{scene id: {"n_sources", "rt60", "moving": [bool per source]}}`` from the simulator's meta files."""
    out = {}
    for sid in ids:
        meta = json.loads((root / split / "meta" / f"{sid}.json").read_text())
        out[sid] = {"n_sources": len(meta["sources"]), "rt60": float(meta["rt60"]),
                    "moving": [bool(s["moving"]) for s in meta["sources"]]}
    return out


# ---------------------------------------------------------------------------------------------- cost
def count_macs_per_second(module, x) -> float:
    """GMAC per second of audio of ``module(x)``, counted as :mod:`deepasa.model.complexity` (matmul-like ops).

    Args:
        module: a torch module.
        x: (1, M, N) input at ``sample_rate``; the caller divides by the clip duration.

    Returns:
        GMACs of one call (FLOPs / 2 / 1e9).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(x)
    return counter.get_total_flops() / 2 / 1e9


def deepasa_cost(cfg) -> dict:
    """Trainable parameters and GMAC/s of a DeepASA config (:func:`deepasa.model.complexity.measure`)."""
    from deepasa.model.complexity import measure

    c = measure(cfg)
    return {"params": c.trainable_params, "gmacs_per_second": round(c.gmacs_per_second, 3)}


# ---------------------------------------------------------------------------------------------- systems
def decision_rule(rule) -> dict:
    """A model's :class:`~deepasa.model.decision.DecisionRule` as :func:`score_system`'s keyword arguments
    (baselines use its defaults)."""
    return {"doa_threshold": rule.doa_norm, "onoff_threshold": rule.onoff, "merge_deg": rule.merge_deg}


def as_analyzed(system, rule):
    """``system`` with the audio of every slot its decision rule never marks active set to silence, as
    ``deepasa analyze`` outputs it (such a slot is no object). rule: the model's ``decision_rule``."""
    import torch

    from deepasa.metrics.seld_frame import activity_decisions

    def silence(out):
        if out is None or out.image is None:
            return
        active = activity_decisions(out.onoff.float(), out.doa.float(), rule.doa_norm, rule.onoff,
                                    out.cls_logits.float(), rule.merge_deg)  # (B, J, T')
        keep = torch.from_numpy(active.any(-1)).to(out.image.dtype)[:, :, None, None]  # (B, J, 1, 1)
        for name in ("image", "direct", "reverb"):
            if getattr(out, name) is not None:
                setattr(out, name, getattr(out, name) * keep)

    def run(batch):
        out = system(batch)
        silence(out)
        silence(out.net1)  # a CoI model's Net-1 outputs, scored in the same pass
        return out

    return run


def build_systems(names: list[str], args, class_names: list[str]) -> dict[str, dict]:
    """``{name: {"system": callable(batch) → DeepASAOutput, "cost": {...}, "net1": bool, "note": str}}``."""
    n_classes = len(class_names)
    import torch

    from deepasa.train.module import load_model

    systems: dict[str, dict] = {}
    model = None
    if "deepasa" in names or "deepasa-net1" in names:
        if not Path(args.checkpoint).is_file():
            raise DeepASAError(f"{args.checkpoint} not found (the shipped model; see checkpoints/README.md)")
        model = load_model(args.checkpoint).eval()
    if "deepasa" in names:
        coi = model.config.coi_steps > 0
        systems["deepasa"] = {"system": as_analyzed(lambda b, m=model, c=coi: m(b["mixture"], net1_audio=c),
                                                    model.decision_rule),
                              "cost": deepasa_cost(model.config), "net1": coi and "deepasa-net1" in names,
                              "rule": decision_rule(model.decision_rule), "note": f"{args.checkpoint}"}
    if "deepasa-net1" in names:
        if args.net1_checkpoint and Path(args.net1_checkpoint).is_file():
            net1 = load_model(args.net1_checkpoint).eval()
            systems["deepasa-net1"] = {"system": as_analyzed(lambda b, m=net1: m(b["mixture"]), net1.decision_rule),
                                       "cost": deepasa_cost(net1.config),
                                       "rule": decision_rule(net1.decision_rule),
                                       "note": f"{args.net1_checkpoint} (a separate Net-1 model)"}
            if "deepasa" in systems:
                systems["deepasa"]["net1"] = False
        elif model.config.coi_steps > 0:
            net1_cfg = model.config.replace(coi_steps=0)
            net1 = _net1_model(model, net1_cfg)
            systems["deepasa-net1"] = {"from": "deepasa", "system": lambda b, m=net1: m(b["mixture"]),
                                       "cost": deepasa_cost(net1_cfg),
                                       "note": "Net-1 outputs of the shipped model (before its CoI step)"}
        else:
            print("deepasa-net1: no --net1-checkpoint and the shipped model has no CoI step: skipped")
    if "classical" in names:
        from deepasa.baselines.classical import ClassicalBaseline

        cb = ClassicalBaseline(n_slots=5)
        systems["classical"] = {"system": lambda b, s=cb: s(b["mixture"]),
                                "cost": {"params": 0, "gmacs_per_second": None},
                                "note": "AuxIVA + projection back, WPE, SRP-PHAT; no classifier, no training"}
    if "seldnet" in names:
        from deepasa.baselines.seldnet import SELDnetBaseline

        if not Path(args.seldnet).is_file():
            print(f"seldnet: {args.seldnet} not found: skipped")
        else:
            sn = SELDnetBaseline.load(args.seldnet)
            x = torch.zeros(1, 4, int(16000 * 4.0))
            net = getattr(sn, "model", None)
            params = sum(p.numel() for p in net.parameters()) if net is not None else None
            gmacs = count_macs_per_second(lambda v: sn(v), x) / 4.0
            systems["seldnet"] = {"system": lambda b, s=sn: s(b["mixture"]),
                                  "cost": {"params": params, "gmacs_per_second": round(gmacs, 3)},
                                  "note": f"{args.seldnet}"}
    if "oracle" in names:
        from deepasa.baselines.oracle import OracleBaseline

        systems["oracle"] = {"system": OracleBaseline(n_classes), "cost": {"params": 0, "gmacs_per_second": None},
                             "note": "ideal ratio masks on the true images; true classes, activity and DoA"}
    if any(name in TRAJECTORIES for name in names):
        from deepasa.evaluation.trajectory_system import TrajectoryFirstSystem
        from deepasa.model.object_classes import load_classifier

        classifier = load_classifier(None)
        notes = {"pipeline": "the shipped trajectory-first pipeline (checkpoints/finder.pt, spatial stage, read-out)",
                 "pipeline-srp": "SRP-PHAT finder + spatial stage + read-out (no trained finder)",
                 "spatial-true": "the spatial stage on the true trajectories (its ceiling) + read-out",
                 "gated-true": "each source: the mixture gated by its true activity (no stage) + read-out",
                 "direction-true": "the spatial stage on the true directions only, every object always on + read-out"}
        for name, spec in TRAJECTORIES.items():
            if name in names:
                system = TrajectoryFirstSystem(spec, class_names, classifier=classifier)
                params = system.finder.n_parameters if system.finder is not None else 0
                systems[name] = {"system": system, "cost": {"params": params, "gmacs_per_second": None},
                                 "note": notes[name]}
    return systems


def _net1_model(model, net1_cfg):
    """A Net-1 network holding the Net-1 weights of a CoI model (to time Net 1 alone)."""
    from deepasa.model import DeepASA

    net1 = DeepASA(net1_cfg).eval()
    own = net1.state_dict()
    own.update({k: v for k, v in model.state_dict().items() if k in own and own[k].shape == v.shape})
    net1.load_state_dict(own)
    return net1


def time_system(system, dataset, n: int) -> float:
    """Seconds per clip of ``system`` over the first ``n`` items (batch 1)."""
    import torch
    from torch.utils.data import DataLoader, Subset

    loader = DataLoader(Subset(dataset, range(min(n, len(dataset)))), batch_size=1)
    total, count = 0.0, 0
    with torch.inference_mode():
        for batch in loader:
            t0 = time.perf_counter()
            system(batch)
            total += time.perf_counter() - t0
            count += 1
    return total / max(count, 1)


# ---------------------------------------------------------------------------------------------- breakdowns
def _mean(values) -> float | None:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def breakdown(details: dict, meta: dict[str, dict]) -> dict:
    """Metrics per number of sources, RT60 band (per clip) and moving vs static source (per source).

    Returns:
        ``{"n_sources": {"2": {...}, ...}, "rt60": {"<0.30": {...}, ...}, "motion": {"moving": {...},
        "static": {...}}}``; clip groups: ``si_sdri_db``, ``direct_si_sdri_db``, ``seld`` (frame SELD score),
        ``localization_le``, ``localization_f``, ``n_clips``; source groups: ``si_sdri_db``, ``direct_si_sdri_db``,
        ``doa_error_deg`` (mean over reference-active frames), ``frame_recall``, ``n_sources``.
    """
    from deepasa.evaluation.scoring import _sum_stats

    def clip_group(clips: list[dict]) -> dict:
        g: dict = {"n_clips": len(clips)}
        g["si_sdri_db"] = _mean(c.get("separation", {}).get("si_sdri_db") for c in clips)
        g["direct_si_sdri_db"] = _mean(c.get("separation", {}).get("direct_si_sdri_db") for c in clips)
        seld = [c["seld"] for c in clips if "seld" in c]
        g["seld"] = _sum_stats(seld, seld[0].n_classes).compute("micro")["SELD"] if seld else None
        loc = [c["localization"] for c in clips if "localization" in c]
        if loc:
            m = _sum_stats(loc, 1).compute("micro")
            g["localization_le"], g["localization_f"] = m["LE"], m["F"]
        return g

    def source_group(sources: list[dict]) -> dict:
        return {"n_sources": len(sources),
                **{k: _mean(s.get(k) for s in sources)
                   for k in ("si_sdri_db", "direct_si_sdri_db", "doa_error_deg", "frame_recall")}}

    clips = details["clips"]
    out: dict = {"n_sources": {}, "rt60": {}, "motion": {}}
    for n in sorted({meta[c["id"]]["n_sources"] for c in clips}):
        out["n_sources"][str(n)] = clip_group([c for c in clips if meta[c["id"]]["n_sources"] == n])
    for label, lo, hi in RT60_BANDS:
        group = [c for c in clips if lo <= meta[c["id"]]["rt60"] < hi]
        if group:
            out["rt60"][label] = clip_group(group)
    srcs = [s for s in details["sources"] if s["slot"] < len(meta[s["id"]]["moving"])]
    for label, flag in (("moving", True), ("static", False)):
        group = [s for s in srcs if meta[s["id"]]["moving"][s["slot"]] == flag]
        if group:
            out["motion"][label] = source_group(group)
    return out


# ---------------------------------------------------------------------------------------------- tables
def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def kept_rows(path: Path, args, n_items: int) -> dict[str, dict]:
    """Rows of an earlier result to keep under ``--update``: every system not scored now, from the same test set.

    Args:
        path: the earlier ``quality.json``.
        args: this run's arguments (``split``, ``systems``).
        n_items: scenes scored now.

    Returns:
        ``{system: entry}``; each entry carries the ``command`` of the run that scored it.
    """
    if not path.is_file():
        raise DeepASAError(f"--update needs an earlier result: {path} does not exist")
    old = json.loads(path.read_text())
    ts = old.get("test_set", {})
    if ts.get("split") != args.split or ts.get("n_items") != n_items:
        raise DeepASAError(f"--update: {path} scored {ts.get('n_items')} scenes of split {ts.get('split')!r}, "
             f"this run {n_items} of {args.split!r}")
    kept = {}
    for name, entry in old.get("systems", {}).items():
        if name not in args.systems:
            kept[name] = {"command": old.get("command"), **entry} if "command" not in entry else entry
    return kept


def markdown(result: dict) -> str:
    """The README table (main metrics) and the breakdown tables, from the JSON result."""
    ts = result["test_set"]
    systems = result["systems"]
    several = len({e.get("command", result["command"]) for e in systems.values()}) > 1
    source = "rows from the runs named below" if several else f"`{result['command']}`"
    lines = [f"Test set: {ts['n_items']} scenes of `{ts['data']}/{ts['split']}` (seed {ts['seed']}; MIC, 16 kHz, "
             f"4 s, 2–5 sources, moving, reverberant){'' if ts['n_items'] == ts['available'] else ' — a subset, --limit'}; "
             f"{source}, {result['machine']['threads']} threads.",
             *[f"Row `{name}`: `{e['command']}`." for name, e in systems.items()
               if e.get("command") not in (None, result["command"])],
             "",
             "Cost and separation (reference channel, dB; `direct` = the direct-path estimate against the "
             "direct-path target; CA-SDRi as DCASE 2025 Task 4):",
             "",
             "| system | params | GMAC/s | RTF | SI-SDRi | SDRi | direct SI-SDRi | direct SDRi | CA-SDRi |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, s in systems.items():
        sep, ca = s.get("separation", {}), s.get("ca_sdri", {})
        lines.append("| " + " | ".join([
            f"`{name}`", _fmt(s.get("params")), _fmt(s.get("gmacs_per_second")), _fmt(s.get("rtf"), 3),
            _fmt(sep.get("si_sdri_db")), _fmt(sep.get("sdri_db")), _fmt(sep.get("direct_si_sdri_db")),
            _fmt(sep.get("direct_sdri_db")), _fmt(ca.get("ca_sdri_db"))]) + " |")
    lines += ["", "DeepASA frame-level SELD metrics (object-wise, micro; comparable with the paper's tables), and "
              "the same with classes ignored (`agnostic`: detection and DoA only):", "",
              "| system | ER | F | LE° | LR | SELD ↓ | agnostic F | agnostic LE° | agnostic SELD ↓ |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, s in systems.items():
        seld, loc = s.get("seld", {}), s.get("localization", {})
        lines.append("| " + " | ".join([
            f"`{name}`", _fmt(seld.get("ER")), _fmt(seld.get("F")), _fmt(seld.get("LE"), 1), _fmt(seld.get("LR")),
            _fmt(seld.get("SELD"), 3), _fmt(loc.get("F")), _fmt(loc.get("LE"), 1), _fmt(loc.get("SELD"), 3)]) + " |")
    lines += ["", "Official DCASE 2023 Task 3 segment metrics (1-s segments, 20°, class-macro):", "",
              "| system | ER | F | LE° | LR | SELD ↓ |", "|---|---|---|---|---|---|"]
    for name, s in systems.items():
        dc = s.get("dcase", {})
        lines.append("| " + " | ".join([f"`{name}`", _fmt(dc.get("ER")), _fmt(dc.get("F")), _fmt(dc.get("LE"), 1),
                                        _fmt(dc.get("LR")), _fmt(dc.get("SELD"), 3)]) + " |")
    lines += ["", "By number of sources (SI-SDRi dB / frame SELD score / agnostic LE°):", "",
              "| system | " + " | ".join(f"{n} sources" for n in _keys(systems, "n_sources")) + " |",
              "|---|" + "---|" * len(_keys(systems, "n_sources"))]
    for name, s in systems.items():
        b = s.get("breakdown", {}).get("n_sources", {})
        lines.append(f"| `{name}` | " + " | ".join(
            f"{_fmt(b.get(k, {}).get('si_sdri_db'), 1)} / {_fmt(b.get(k, {}).get('seld'), 3)} / "
            f"{_fmt(b.get(k, {}).get('localization_le'), 1)}" for k in _keys(systems, "n_sources")) + " |")
    lines += ["", "By RT60 band in seconds (SI-SDRi dB / frame SELD score):", "",
              "| system | " + " | ".join(f"RT60 {k} s" for k in _keys(systems, "rt60")) + " |",
              "|---|" + "---|" * len(_keys(systems, "rt60"))]
    for name, s in systems.items():
        b = s.get("breakdown", {}).get("rt60", {})
        lines.append(f"| `{name}` | " + " | ".join(
            f"{_fmt(b.get(k, {}).get('si_sdri_db'), 1)} / {_fmt(b.get(k, {}).get('seld'), 3)}"
            for k in _keys(systems, "rt60")) + " |")
    lines += ["", "Moving vs static sources (per source: SI-SDRi dB / DoA error° / frame recall):", "",
              "| system | moving | static |", "|---|---|---|"]
    for name, s in systems.items():
        b = s.get("breakdown", {}).get("motion", {})
        lines.append(f"| `{name}` | " + " | ".join(
            f"{_fmt(b.get(k, {}).get('si_sdri_db'), 1)} / {_fmt(b.get(k, {}).get('doa_error_deg'), 1)} / "
            f"{_fmt(b.get(k, {}).get('frame_recall'))}" for k in ("moving", "static")) + " |")
    return "\n".join(lines) + "\n"


def _keys(systems: dict, group: str) -> list[str]:
    """The breakdown groups present in any system, in their natural order."""
    order = [b[0] for b in RT60_BANDS] if group == "rt60" else None
    keys: set[str] = set()
    for s in systems.values():
        keys |= set(s.get("breakdown", {}).get(group, {}))
    return [k for k in order if k in keys] if order else sorted(keys, key=lambda k: (len(k), k))


def update_readme(table: str) -> bool:
    """Replace the text between the quality markers of docs/baselines.md; False when the markers are absent."""
    text = README.read_text()
    pattern = re.compile(re.escape(MARK_START) + r".*?" + re.escape(MARK_END), re.S)
    if not pattern.search(text):
        return False
    README.write_text(pattern.sub(lambda _: f"{MARK_START}\n{table}{MARK_END}", text))
    return True


def _jsonable(obj):
    """Drop the per-clip statistics objects (not JSON) from a score_system report."""
    return {k: v for k, v in obj.items() if k not in ("details", "net1")}


# ---------------------------------------------------------------------------------------------- main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO / "data" / "scenes", help="dataset root (test set in <data>/test)")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, help="only the first N scenes")
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    p.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "default.pt"))
    p.add_argument("--net1-checkpoint",
                   help="a separate Net-1 model for the deepasa-net1 row (e.g. checkpoints/net1.pt, the Net-1 stage "
                        "of the previous model); default: the Net-1 outputs of the shipped CoI model")
    p.add_argument("--seldnet", default=str(REPO / "checkpoints" / "seldnet.pt"))
    p.add_argument("--no-sdr", action="store_true", help="skip the BSS-eval SDR (slow)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timing-clips", type=int, default=10, help="clips timed for the Net-1 real-time factor")
    p.add_argument("--no-readme", action="store_true", help="do not touch docs/baselines.md")
    p.add_argument("--update", action="store_true",
                   help="score only --systems and keep the other rows of the existing quality.json (same test set "
                        "required); each row records the command that scored it")
    args = p.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    from torch.utils.data import Subset

    from deepasa.data.scenes import SceneDataset
    from deepasa.evaluation.scoring import score_system

    torch.set_num_threads(args.threads)
    if args.split == "test":
        ensure_test_set(args.data)
    full = SceneDataset(args.data, args.split, n_slots=5)
    systems = build_systems(args.systems, args, full.class_names)
    ds = full if args.limit is None else Subset(full, range(min(args.limit, len(full))))
    ids = [full.ids[i] for i in range(len(ds))]
    kept = kept_rows(RESULTS / "quality.json", args, len(ds)) if args.update else {}   # refuse before scoring
    names = full.class_names
    t_start = time.perf_counter()
    results: dict[str, dict] = {}
    clip_s = 4.0
    for name, spec in systems.items():
        if "from" in spec:
            continue                                  # scored inside its parent's pass
        print(f"scoring {name} on {len(ds)} scenes ...", flush=True)
        rep = score_system(spec["system"], ds, n_classes=len(names), class_names=names, net1=bool(spec.get("net1")),
                           with_sdr=not args.no_sdr, detail=True, desc=name,
                           **spec.get("rule", {}))       # a model's own rule; baselines score_system's 0.5 / 0.5
        n_audio = len(ds) * clip_s
        entry = {**_jsonable(rep), **spec["cost"], "rtf": round(rep["seconds"] / n_audio, 4), "note": spec["note"]}
        results[name] = (entry, rep.get("details"))
        if "net1" in rep and "deepasa-net1" in systems:
            sub = systems["deepasa-net1"]
            per_clip = time_system(sub["system"], ds, args.timing_clips)
            entry1 = {**_jsonable(rep["net1"]), **sub["cost"], "rtf": round(per_clip / clip_s, 4),
                      "note": sub["note"]}
            results["deepasa-net1"] = (entry1, rep["net1"].get("details"))
    meta = scene_meta(args.data, args.split, ids)
    out_systems = {}
    for name in SYSTEMS:                              # fixed row order
        if name in results:
            entry, details = results[name]
            if details:
                entry["breakdown"] = breakdown(details, meta)
            out_systems[name] = entry
        elif name in kept:
            out_systems[name] = kept[name]
    cmd = " ".join(["python benchmarks/quality.py", *sys.argv[1:]]).replace(f"{REPO}/", "").strip()
    for entry, _ in results.values():
        entry["command"] = cmd
    result = {
        "benchmark": "side-by-side quality of every system on the held-out simulated test set (issue 7)",
        "command": cmd if not kept else "several runs (see each row's command)",
        "test_set": {"data": str(args.data.relative_to(REPO)) if args.data.is_relative_to(REPO) else str(args.data),
                     "split": args.split, "n_items": len(ds), "available": len(full), **{k: TEST_SET[k] for k in
                     ("seed", "subtype")}, "class_names": names},
        "machine": {"cpus": os.cpu_count(), "threads": args.threads, "platform": platform.platform(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "wall_s": round(time.perf_counter() - t_start, 1),
        "systems": out_systems,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quality.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    table = markdown(result)
    (RESULTS / "quality.md").write_text(table)
    print(table)
    if not args.no_readme and not update_readme(table):
        print("docs/baselines.md has no quality markers: table written to benchmarks/results/quality.md only")
    print(f"wrote {RESULTS / 'quality.json'} in {result['wall_s']} s")


if __name__ == "__main__":
    run_script(main)
