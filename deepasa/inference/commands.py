"""``deepasa analyze`` and ``deepasa demo`` (what ``make demo`` runs).

``analyze`` runs the model on a recording of any length and writes the output layout of docs/analyze.md
(see :mod:`deepasa.inference.analyze`).

``demo`` simulates one scene from *held-out* (test-split) sound-bank clips (fetching the test split of the
bank first when it is missing), prints its ground truth per object (class, motion, distance, direction,
activity) and writes the scene (ASA layout) and a figure of its ground truth. When the shipped model
(``checkpoints/default.pt``, or ``--checkpoint``) exists it also analyses the scene, prints per true source
the matched estimate (true vs estimated class, DoA error, SI-SDR) and writes the analysis with its report.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from deepasa.errors import DeepASAError
from deepasa.inference.options import DEFAULT_EXTRACTOR, DEFAULT_FINDER, DEFAULT_SEPARATION, SEPARATIONS

EXAMPLE = """example:
  deepasa demo                       # writes demo_out/ in the current folder
  deepasa demo --out /tmp/demo --seed 3 --overwrite
"""

ANALYZE_EXAMPLE = """examples:
  deepasa analyze rec.wav --out rec_analysis
  deepasa analyze long.flac --out long_analysis --window 4 --hop 2 --overwrite
  deepasa analyze rec.wav --out out --checkpoint runs/my_model.pt

writes:
  DIR/objects/<j>_<class>/{image,direct,reverb}.wav   M-ch, input sample rate
  DIR/noise.wav
  DIR/events.csv      DCASE 2023 format (frame, class, track, azimuth, elevation), 100-ms frames
  DIR/objects.json    per object: class, confidence, active segments, DoA per frame
  DIR/report.html     self-contained report (PNG figures also in DIR/figures/)
"""


def register(sub) -> None:
    """Add the ``analyze`` and ``demo`` sub-commands."""
    a = sub.add_parser("analyze", help="find, separate, classify and localise every sound object of a recording",
                       description="Analyse a multichannel recording (wav/flac/ogg, any length) with a DeepASA "
                       "model: separated object images, events and directions, and an HTML report.",
                       epilog=ANALYZE_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("input", type=Path, help="audio file (M channels as the model expects; any sample rate)")
    a.add_argument("--out", type=Path, required=True, help="output folder (must not exist unless --overwrite)")
    a.add_argument("--checkpoint", type=Path, help="model checkpoint (default: the shipped checkpoints/default.pt)")
    a.add_argument("--format", choices=("mic", "foa"), help="array format of the input: mic (tetrahedral array) or foa (first-order Ambisonics, ACN/SN3D); default: told from the channel energies (with --finder network: the model's)")
    a.add_argument("--foa-convention", choices=("ambix", "fuma"), default="ambix",
                   help="FOA channel convention: ambix (ACN/SN3D: W, Y, Z, X) or fuma (W, X, Y, Z, W at -3 dB), "
                        "converted to AmbiX on input (trajectory-first pipeline; outputs are AmbiX)")
    a.add_argument("--window", type=float, help="window length in s (default: the model's clip length)")
    a.add_argument("--hop", type=float, help="window step in s (default: half the window)")
    a.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    a.add_argument("--no-report", action="store_true", help="skip report.html and the figures")
    a.add_argument("--separation", choices=SEPARATIONS,
                   help="where each object's audio comes from: the spatial stage driven by its activity and "
                   "direction (objects and noise add up to the recording), the trajectory-conditioned extractor on "
                   "top of it, or the network's own audio heads (default: spatial; network with --finder network)")
    _pipeline_options(a)
    a.set_defaults(func=run_analyze)
    p = sub.add_parser("demo", help="simulate a held-out scene, analyse it with the shipped model, score it",
                       description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    p.add_argument("--seed", type=int, default=2025)
    p.add_argument("--format", default="mic", choices=("mic", "foa"))
    p.add_argument("--home", type=Path, help="sound-bank folder (default $DEEPASA_HOME or ~/.cache/deepasa)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--checkpoint", type=Path, help="model to analyse the scene with (default: checkpoints/default.pt)")
    p.add_argument("--separation", choices=SEPARATIONS, help="as for analyze")
    _pipeline_options(p)
    p.set_defaults(func=run)


def resolve_pipeline(args) -> None:
    """Fill ``args.finder`` and ``args.separation`` left unset: the trajectory-first pipeline with the shipped
    finder (an FOA recording: the active-intensity map), unless a DeepASA ``--checkpoint`` or ``--separation
    network`` asks for the network."""
    if args.finder is None:
        wants_network = args.checkpoint is not None or args.separation == "network"
        args.finder = "network" if wants_network else DEFAULT_FINDER
    if args.separation is None:
        args.separation = DEFAULT_SEPARATION if args.finder == "network" else "spatial"
    if args.finder != "network" and args.separation == "network":
        raise DeepASAError("--separation network needs --finder network (the network's audio comes with its objects)")


def _pipeline_options(parser) -> None:
    parser.add_argument("--finder",
                        help="who finds the objects: finder (the shipped learned localisation-map finder, "
                        "checkpoints/finder.pt), srp (SRP-PHAT map + tracker, no training), network (the DeepASA "
                        "model's slots, classes and audio) or a finder checkpoint; with anything but network the "
                        "objects are separated by when and where and classified from their own signal "
                        f"(default: {DEFAULT_FINDER}; network when --checkpoint names a DeepASA model)")
    parser.add_argument("--extractor", type=Path,
                        help=f"trajectory-conditioned extractor for --separation extractor (default: {DEFAULT_EXTRACTOR})")
    parser.add_argument("--classes", type=Path,
                        help="object class read-out for a finder other than network (default: "
                        "checkpoints/object_classes.pt when present)")


def _run_pipeline(args, source, *, sample_rate=None, workdir=None, log=None, progress=False):
    """analyze or analyze_trajectories, as the pipeline options say; returns the SceneAnalysis."""
    from deepasa.inference.analyze import analyze, load_model
    from deepasa.inference.trajectory_first import analyze_trajectories, load_classifier, load_extractor

    extractor = None
    if args.separation == "extractor":
        extractor = load_extractor(args.extractor or DEFAULT_EXTRACTOR)
    if args.finder != "network":
        if args.classes is not None and not Path(args.classes).is_file():
            raise DeepASAError(f"no class read-out at {args.classes}")
        return analyze_trajectories(source, args.finder, sample_rate=sample_rate, extractor=extractor,
                                    classifier=load_classifier(args.classes), workdir=workdir,
                                    progress=progress, log=log, fmt=getattr(args, "format", None),
                                    foa_convention=getattr(args, "foa_convention", "ambix"))
    model = load_model(args.checkpoint)
    return analyze(model, source, sample_rate=sample_rate, window=getattr(args, "window", None),
                   hop=getattr(args, "hop", None), fmt=getattr(args, "format", None), workdir=workdir,
                   progress=progress, log=log, separation=args.separation, extractor=extractor)


def run_analyze(args) -> int:
    """Entry point of ``deepasa analyze``: checks, analysis into a temporary folder, then rename.

    One process at a time writes a given ``--out`` (:class:`deepasa.staging.OutputLock`; a second one exits
    with code 2), and temporaries that killed runs left beside it are removed first (one line says so).
    """
    import shutil

    from deepasa.staging import OutputLock, remove_stale, temp_sibling

    def note(msg: str) -> None:
        print(f"deepasa analyze: {msg}", file=sys.stderr)

    out = args.out
    resolve_pipeline(args)
    if out.exists() and not args.overwrite:
        raise DeepASAError(f"output folder exists: {out} (use --overwrite to replace it)")
    if not args.input.is_file():
        raise DeepASAError(f"no such audio file: {args.input}")
    new_parent = not out.parent.exists()
    try:
        with OutputLock(out, "deepasa analyze"):
            remove_stale(out.parent, out.name, tags=("partial", "old"), log=note)
            if out.exists() and not args.overwrite:   # written by a run that finished while this one started
                raise DeepASAError(f"output folder exists: {out} (use --overwrite to replace it)")
            work = temp_sibling(out, "partial")
            try:
                result = _run_pipeline(args, args.input, workdir=work, log=note, progress=True)
                result.own_temporary_root()  # the partial folder goes away if anything below fails
                result.save(out, overwrite=args.overwrite, report=not args.no_report)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        if new_parent:   # a refused or failed run leaves no empty folder behind
            try:
                out.parent.rmdir()
            except OSError:
                pass
        raise
    print(result.summary())
    print(f"wrote {out}/ (objects/, noise.wav, events.csv, objects.json"
          + ("" if args.no_report else f"); report: {out / 'report.html'}"))
    return 0


def _ensure_test_bank(home):
    from deepasa.scenes.soundbank import SoundBank

    try:
        bank = SoundBank.open(home)
        if bank.clips("test"):
            return bank
    except DeepASAError:
        pass
    from deepasa.cli import main as cli_main

    print("fetching the held-out (test) part of the sound bank ...")
    args = ["sounds", "fetch", "--split", "test"] + (["--home", str(home)] if home else [])
    if cli_main(args) != 0:
        raise DeepASAError("could not fetch the sound bank (see the message above)")
    return SoundBank.open(home)


def run(args) -> int:
    """Entry point of ``deepasa demo``."""
    import shutil

    from deepasa.report.scene_plot import plot_scene
    from deepasa.scenes.simulator import simulate_scene
    from deepasa.scenes.writer import write_classes, write_scene

    out = args.out
    resolve_pipeline(args)
    if out.exists() and not args.overwrite:
        raise DeepASAError(f"output folder exists: {out} (use --overwrite to replace it)")
    bank = _ensure_test_bank(args.home)
    scene = simulate_scene(seed=args.seed, index=0, split="test", bank=bank, fmt=args.format)
    from deepasa.staging import remove_stale, temp_sibling

    remove_stale(out.parent, out.name, tags=("partial",), log=lambda msg: print(f"deepasa demo: {msg}", file=sys.stderr))
    tmp = temp_sibling(out, "partial")
    shutil.rmtree(tmp, ignore_errors=True)
    write_scene(tmp / "scene" / "test", scene)
    write_classes(tmp / "scene", list(bank.classes))
    png = plot_scene(scene, tmp / "ground_truth.png")
    meta = scene.meta
    centre = np.asarray(meta["array_centre"])
    rows = []
    for k, src in enumerate(meta["sources"]):
        act = np.flatnonzero(scene.activity[k])
        dist = np.linalg.norm(np.asarray(src["trajectory"]) - centre, axis=1)
        rows.append({
            "object": k, "class": src["label"], "motion": "moving" if src["moving"] else "static",
            "distance_m": f"{dist.min():.1f}-{dist.max():.1f}" if src["moving"] else f"{dist[0]:.1f}",
            "active_s": f"{act[0] * 0.1:.1f}-{(act[-1] + 1) * 0.1:.1f}" if len(act) else "-",
            "azimuth_deg": _span(scene.azimuth[k][act]), "elevation_deg": _span(scene.elevation[k][act]),
        })
    room = " x ".join(f"{x:.1f}" for x in meta["room_dim"])
    print(f"scene: room {room} m, RT60 {meta['rt60']:.2f} s, SNR {meta['snr_db']:.1f} dB, "
          f"{len(rows)} sources, format {args.format}, clips from the held-out test split")
    _print_table(rows)
    scores = _demo_analysis(args, scene, tmp)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    print(f"ground truth figure: {out / png.name}\nscene files (ASA layout): {out / 'scene'}")
    (out / "ground_truth.json").write_text(json.dumps(rows, indent=1) + "\n")
    if scores is not None:
        (out / "scores.json").write_text(json.dumps(scores, indent=1) + "\n")
        print(f"analysis: {out / 'analysis'}/ (objects/, events.csv, objects.json)\n"
              f"report: {out / 'analysis' / 'report.html'}")
    return 0


def _demo_analysis(args, scene, tmp: Path) -> list[dict] | None:
    """Analyse the demo scene with the shipped model into ``tmp/analysis`` and print the per-source table.

    Returns the table rows, or None (after one line saying why) when there is no model to run.
    """
    from deepasa.inference.analyze import DEFAULT_CHECKPOINT, analyze, load_model, model_format

    if args.finder != "network":
        print(f"analysing the scene trajectory first (finder: {args.finder}, separation: {args.separation}, "
              "classes from each separated object) ...")
        result = _run_pipeline(args, scene.mixture, sample_rate=scene.meta["sample_rate"])
        return _demo_report(scene, result, tmp)
    ckpt = args.checkpoint or DEFAULT_CHECKPOINT
    if not Path(ckpt).is_file():
        print(f"model missing: {ckpt} does not exist, so only the ground truth is shown "
              "(train one, or pass --checkpoint)")
        return None
    model = load_model(ckpt)
    if model_format(model) != args.format:
        print(f"model skipped: it expects {model_format(model)} recordings, the scene is {args.format}")
        return None
    print(f"analysing the scene with {ckpt} ...")
    separation = args.separation
    if separation != "network" and args.format != "mic":
        separation = "network"  # the spatial stage needs the MIC geometry (FOA: a later issue)
    print(f"objects separated by: {separation}")
    if separation == "network":
        result = analyze(model, scene.mixture, sample_rate=scene.meta["sample_rate"], progress=True)
    else:
        args.separation = separation
        result = _run_pipeline(args, scene.mixture, sample_rate=scene.meta["sample_rate"], progress=True)
    return _demo_report(scene, result, tmp)


def _demo_report(scene, result, tmp: Path) -> list[dict]:
    """Save the demo's analysis into ``tmp/analysis`` and print the per-source table."""
    result.save(tmp / "analysis")
    rows = match_estimates(scene, result)
    print("per true source, the estimate matched by SI-SDR (Hungarian):")
    fmt = {"confidence": "{:.2f}", "doa_error_deg": "{:.1f}", "si_sdr_db": "{:.1f}"}
    _print_table([{k: "-" if v is None else (fmt[k].format(v) if k in fmt else v) for k, v in r.items()}
                  for r in rows])
    extra = len(result.objects) - sum(r["estimate"] is not None for r in rows)
    print(f"{len(result.objects)} object(s) estimated, {extra} not matched to a true source")
    if not result.objects:
        from deepasa.inference.result import NO_OBJECT

        print(NO_OBJECT)
    return rows


def match_estimates(scene, result) -> list[dict]:
    """Match estimated objects to true sources and score them.

    Args:
        scene: a :class:`~deepasa.scenes.simulator.SceneAudio` (direct/reverb (K, M, N), activity/doa (K, T')).
        result: the :class:`~deepasa.inference.result.SceneAnalysis` of ``scene.mixture`` (same rate and length).
    Returns:
        one row per true source: true/estimated class, matched object id (or None), DoA error (mean angle in
        degrees over frames where both are active, or None), SI-SDR (dB, reference channel of the image).
    """
    from scipy.optimize import linear_sum_assignment

    from deepasa.metrics.separation import si_sdr

    ref = 0
    truth = (scene.direct + scene.reverb)[:, ref]  # (K, N)
    k_true = truth.shape[0]
    est = np.stack([obj.image[ref] for obj in result.objects]) if result.objects else np.zeros((0, truth.shape[1]))
    n = min(truth.shape[1], est.shape[1])
    shape = (k_true, len(est), n)
    sdr = si_sdr(np.broadcast_to(est[None, :, :n], shape), np.broadcast_to(truth[:, None, :n], shape))  # (K, O)
    pairs = dict(zip(*linear_sum_assignment(-sdr))) if len(est) else {}
    rows = []
    for k, src in enumerate(scene.meta["sources"]):
        o = pairs.get(k)
        row = {"source": k, "true_class": src["label"], "estimate": None, "est_class": None,
               "confidence": None, "doa_error_deg": None, "si_sdr_db": None}
        if o is not None:
            obj = result.objects[o]
            t = min(len(obj.activity), scene.activity.shape[1])
            both = obj.activity[:t] & scene.activity[k, :t].astype(bool)  # (t,)
            if both.any():
                cos = (obj.doa[:t][both] * scene.doa[k, :t][both]).sum(-1)
                row["doa_error_deg"] = float(np.degrees(np.arccos(np.clip(cos, -1, 1))).mean())
            row.update(estimate=obj.id, est_class=obj.class_name, confidence=float(obj.confidence),
                       si_sdr_db=float(sdr[k, o]))
        rows.append(row)
    return rows


def _span(values: np.ndarray) -> str:
    if not len(values):
        return "-"
    lo, hi = float(np.min(values)), float(np.max(values))
    return f"{lo:.0f}" if abs(hi - lo) < 1 else f"{lo:.0f}..{hi:.0f}"


def _print_table(rows: list[dict]) -> None:
    cols = list(rows[0]) if rows else []
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))
