"""One point of a training run's learning curve: export a checkpoint, evaluate it on fixed scenes, append a row.

    python -m recipes.curve runs/shipped/checkpoints/last.ckpt --model checkpoints/shipped_latest.pt \
        --scenes default --csv checkpoints/eval/shipped_curve.csv --json checkpoints/eval/shipped_latest_val20.json

``--scenes`` names a fixed validation set (:data:`SCENE_SETS`): the first ``n`` scenes of ``deepasa simulate
--split val --seed 1`` with the set's scene parameters, simulated into ``--cache`` on first use (the sound bank
must be fetched). Each set is a pure function of its parameters, so the rows of a curve compare the same scenes
across machines and sessions. The model is written with ``deepasa export --bank-classes`` and scored with
``deepasa evaluate --no-sdr`` (the objects block: detection, class accuracy of the detected, median DoA error;
frame SELD; image SI-SDRi). The row appended to ``--csv``:

    global_step, scene_passes, detection_rate, class_accuracy_detected, doa_error_median_deg, frame_seld,
    LE_deg, si_sdri_db, eval

``scene_passes`` (:func:`scene_passes`) = the scenes of the runs before this one (``data.first_scene``, for a
run initialised from another) + global step × the checkpoint's training batch size × its world size (one
process here).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from deepasa.errors import DeepASAError, run_script
from deepasa.model.deepasa import read_checkpoint

#: Fixed validation sets: (number of scenes, `deepasa simulate --set` overrides, description).
SCENE_SETS: dict[str, tuple[int, list[str], str]] = {
    "default": (20, [], "20 simulated default val scenes (seed 1)"),
    "1-static": (20, ["num_sources=[1]", "num_sources_weights=[1.0]", "moving_prob=0.0"],
                 "20 simulated 1-static-source val scenes (seed 1)"),
    "1-2": (30, ["num_sources=[1,2]", "num_sources_weights=[0.5,0.5]", "moving_prob=0.5"],
            "30 simulated 1-2-source val scenes (seed 1, half moving)"),
}

FIELDS = ["global_step", "scene_passes", "detection_rate", "class_accuracy_detected", "doa_error_median_deg",
          "frame_seld", "LE_deg", "si_sdri_db", "eval"]


class _Failed(Exception):
    """A ``deepasa`` command failed; it has printed its one-line error already."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _deepasa(*args: str) -> None:
    """Run one ``deepasa`` command in this process (its error line is printed by the command line)."""
    from deepasa.cli import main as cli_main

    code = cli_main(list(args))
    if code:
        raise _Failed(code)


def scene_set(name: str, cache: Path, home: str | None = None) -> Path:
    """The folder of fixed validation set ``name`` (simulated into ``cache/name`` when absent; ``home``: the
    sound-bank folder, default the fetched one)."""
    n, sets, _ = SCENE_SETS[name]
    root = cache / name
    if not (root / "val" / "mixed").is_dir() or len(list((root / "val" / "mixed").iterdir())) < n:
        extra = [a for s in sets for a in ("--set", s)]
        _deepasa("simulate", "--out", str(root), "--split", "val", "--num-scenes", str(n), "--seed", "1",
                 "--quiet", "--overwrite", *extra, *(["--home", home] if home else []))
    return root


def scene_passes(ckpt: dict) -> int:
    """Scenes seen by a training checkpoint's model: ``first_scene`` (the earlier runs it was initialised from)
    + global step × batch size (``datamodule_hyper_parameters``; batch 1 when absent).

    >>> scene_passes({"global_step": 250, "datamodule_hyper_parameters": {"batch_size": 4, "first_scene": 2568}})
    3568
    """
    data = ckpt.get("datamodule_hyper_parameters") or {}
    return int(data.get("first_scene") or 0) + int(ckpt["global_step"]) * int(data.get("batch_size") or 1)


def curve_row(report: dict, global_step: int, scene_passes: int, description: str) -> dict:
    """The CSV row of one evaluation report (``deepasa evaluate --out`` JSON)."""
    obj, seld, sep = report["objects"], report["seld"], report["separation"]

    def r(v, nd=4):
        return "" if v is None or v != v else round(float(v), nd)

    return {"global_step": global_step, "scene_passes": scene_passes, "detection_rate": r(obj["detection_rate"]),
            "class_accuracy_detected": r(obj.get("class_accuracy")),
            "doa_error_median_deg": r(obj.get("doa_error_median_deg"), 2), "frame_seld": r(seld["SELD"]),
            "LE_deg": r(seld["LE"], 2), "si_sdri_db": r(sep["si_sdri_db"], 2),
            "eval": f"deepasa evaluate --no-sdr, {description}"}


def append_row(path: Path, row: dict) -> None:
    """Append ``row`` to the curve CSV (header written when the file is new)."""
    new = not path.is_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)


def main(argv: list[str] | None = None) -> int:
    """Command line (module docstring); the exit code of the first ``deepasa`` command that fails, else 0."""
    try:
        return _main(argv)
    except _Failed as exc:
        return exc.code


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="a `deepasa train` checkpoint (.ckpt)")
    ap.add_argument("--model", required=True, help="write the exported model here")
    ap.add_argument("--scenes", nargs="+", default=["default"], choices=sorted(SCENE_SETS))
    ap.add_argument("--cache", default="runs/curve_scenes", help="where the fixed validation sets are simulated")
    ap.add_argument("--csv", required=True, help="the learning-curve CSV to append to")
    ap.add_argument("--json", help="also keep the evaluation report of the first set here")
    ap.add_argument("--home", help="sound-bank folder (default: the fetched bank)")
    args = ap.parse_args(argv)
    ckpt_path = Path(args.checkpoint)
    if not ckpt_path.is_file():
        raise DeepASAError(f"no checkpoint at {ckpt_path}")
    try:
        ckpt = read_checkpoint(ckpt_path)  # tensors and plain data only (no pickled code)
        step, passes = int(ckpt["global_step"]), scene_passes(ckpt)
    except (DeepASAError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DeepASAError(f"{ckpt_path} is not a readable training checkpoint ({type(exc).__name__})") from None
    _deepasa("export", str(ckpt_path), args.model, "--bank-classes")
    for i, name in enumerate(args.scenes):
        root = scene_set(name, Path(args.cache), args.home)
        out = Path(args.cache) / f"report_{name}.json"
        _deepasa("evaluate", "--checkpoint", args.model, "--data", str(root), "--split", "val", "--no-sdr",
                 "--quiet", "--out", str(out))
        report = json.loads(out.read_text())
        if i == 0 and args.json:
            Path(args.json).write_text(out.read_text())
        row = curve_row(report, step, passes, SCENE_SETS[name][2])
        append_row(Path(args.csv), row)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    run_script(main)
