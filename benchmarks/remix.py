"""``deepasa remix``: speed on a 60-s analysis, and the two design choices measured against the simulator.

1. **Speed** — an oracle analysis (``deepasa.scenes.oracle_analysis``) of a simulated 60-s, 16-kHz scene with
   five moving sources (band-limited noise, no sound bank needed), MIC and FOA; every object moved
   (``--move j=…``); time of load + remix + write (median of ``--repeats``) on ``--threads`` FFT threads
   (numpy's BLAS pinned to the same number); real-time factor = that time / 60 s. Target ≤ 0.05.
2. **Mono extraction** (reference channel vs beamformer towards the DoA) — 4-s scenes with three static
   sources; source 0 moved to a new direction; SI-SDR (mean over the 4 channels) of the remixed direct path
   against the simulator's direct image of the same scene re-rendered with source 0 at the new direction
   (same distance, same room seed). Three analyses: the oracle; the oracle with −20 dB leakage of the other
   sources' direct paths in source 0's direct (what a separation model leaves); the oracle with a 10° DoA
   error.
3. **Reverberant part of a moved object** — kept as it is vs made direction-independent (FOA: the part of
   Y, Z, X coherent with W removed per frequency, so its mean intensity vector is zero): SI-SDR (mean over
   channels) of each against the simulator's reverberant image at the new direction, and of the whole
   image (direct + reverb), and the mean per-channel level error of the reverberant part (dB).

    python benchmarks/remix.py [--threads 2] [--repeats 3]

Writes ``benchmarks/results/remix.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "remix.json"


def _lowpass_noise(rng, n: int, fs: int, cutoff: float = 6000.0):
    """(n,) white noise low-passed at ``cutoff`` (speech-like band; the full band up to Nyquist is where a
    fractional-delay filter is least exact)."""
    import numpy as np
    from scipy.signal import butter, sosfilt

    return sosfilt(butter(8, cutoff, fs=fs, output="sos"), rng.standard_normal(n)).astype(np.float64)


def scene(fmt: str, seconds: float, n_src: int, seed: int, moving: bool = False):
    """A simulated scene (static or moving sources) and its dry signals."""
    import numpy as np

    from deepasa.scenes.config import SceneConfig
    from deepasa.scenes.simulator import simulate_scene

    rng = np.random.default_rng(seed)
    fs = 16000
    cfg = SceneConfig(sample_rate=fs, duration=seconds, moving_prob=float(moving), event_duration=(seconds, seconds),
                      snr_db=(20.0, 20.0))
    dry = [_lowpass_noise(rng, int(seconds * fs), fs) for _ in range(n_src)]
    names = ["speech", "machine", "music", "dog", "bell"][:n_src]
    return simulate_scene(seed=seed, config=cfg, fmt=fmt, sources=list(zip(names, dry))), dry


def moved_truth(sc, dry, k: int, az: float, el: float):
    """The simulator's rendering of ``sc`` with source k at (az, el), same distance and room seed."""
    import numpy as np

    from deepasa.audio.geometry import unit_vector
    from deepasa.scenes.simulator import render_scene

    spec = copy.deepcopy(sc.meta)
    centre = np.asarray(spec["array_centre"])
    pos = np.asarray(spec["sources"][k]["trajectory"][0])
    dist = np.linalg.norm(pos - centre)
    spec["sources"][k]["trajectory"] = [(centre + dist * unit_vector(az, el)).tolist()]
    out = render_scene(spec, dry, sc.meta["format"])
    scale = sc.meta["output_gain"] / out.meta["output_gain"]  # same level as the original scene
    return out.direct[k] * scale, out.reverb[k] * scale


def speed(fmt: str, threads: int, repeats: int, tmp: Path) -> dict:
    import numpy as np

    from deepasa.audio.geometry import azimuth_elevation
    from deepasa.inference.remix import RemixEdits, remix, write_remix
    from deepasa.inference.result import SceneAnalysis
    from deepasa.scenes.oracle_analysis import write_oracle_analysis

    seconds = 60.0
    sc, _ = scene(fmt, seconds, 5, seed=11, moving=True)  # DoA changes every frame, as a model's does
    root = write_oracle_analysis(tmp / f"oracle_{fmt}", sc)
    az, el = azimuth_elevation(sc.doa.sum(axis=1))
    edits = RemixEdits(move={k: (float((az[k] + 90 + 180) % 360 - 180), float(el[k] / 2)) for k in range(5)})
    times = []
    for r in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        analysis = SceneAnalysis.load(root)
        t1 = time.perf_counter()
        y = remix(analysis, edits, workers=threads)
        t2 = time.perf_counter()
        write_remix(tmp / f"remix_{fmt}.wav", y, analysis.sample_rate, overwrite=True)
        t3 = time.perf_counter()
        times.append((t3 - t0, t1 - t0, t2 - t1, t3 - t2, time.process_time() - c0))
    tot, load, work, write, cpu = (float(np.median([t[i] for t in times])) for i in range(5))
    return {"format": fmt, "seconds": seconds, "sample_rate": 16000, "objects": 5, "moved": 5,
            "sources": "moving (the extraction follows a DoA that changes every 100-ms frame)", "threads": threads,
            "repeats": repeats, "load_s": round(load, 3), "remix_s": round(work, 3), "write_s": round(write, 3),
            "total_s": round(tot, 3), "real_time_factor": round(tot / seconds, 4),
            "cpu_s": round(cpu, 3), "load_average_1min": round(os.getloadavg()[0], 2)}


def _sisdr_mean(est, ref) -> float:
    import numpy as np

    from deepasa.metrics.separation import si_sdr

    return float(np.mean([si_sdr(est[c], ref[c]) for c in range(ref.shape[0])]))


def _level_error(est, ref) -> float:
    """Mean over channels of |level difference| in dB (how far each channel's energy is from the truth's)."""
    import numpy as np

    e = (np.asarray(est, np.float64) ** 2).sum(axis=1)
    r = (np.asarray(ref, np.float64) ** 2).sum(axis=1)
    return float(np.mean(np.abs(10 * np.log10(e / r))))


def _direction_independent(reverb):
    """FOA reverb with the part of Y, Z, X coherent with W removed per frequency (zero mean intensity)."""
    import numpy as np

    spec = np.fft.rfft(reverb, axis=-1)  # (4, K)
    k = spec.shape[1]
    bands = np.array_split(np.arange(k), 64)  # coherence estimated in 64 bands
    out = spec.copy()
    for b in bands:
        w = spec[0, b]
        for c in (1, 2, 3):
            coef = np.vdot(w, spec[c, b]) / max(np.vdot(w, w).real, 1e-30)
            out[c, b] = spec[c, b] - coef * w
    return np.fft.irfft(out, reverb.shape[1], axis=-1)


def choices(fmt: str, tmp: Path) -> dict:
    """Extraction methods and reverb handling, measured against the re-rendered scene."""
    import numpy as np

    from deepasa.audio.geometry import azimuth_elevation
    from deepasa.inference.remix import RemixEdits, remix
    from deepasa.inference.result import SceneAnalysis
    from deepasa.scenes.oracle_analysis import write_oracle_analysis

    rows, reverb_rows = [], []
    for seed in (1, 2, 3):
        sc, dry = scene(fmt, 4.0, 3, seed)
        az0, el0 = (float(v) for v in azimuth_elevation(sc.doa[0].sum(axis=0)))
        new = (float((az0 + 120 + 180) % 360 - 180), float(np.clip(-el0 / 2 + 10, -60, 60)))
        t_direct, t_reverb = moved_truth(sc, dry, 0, *new)
        variants = {"oracle": sc}
        leak = copy.copy(sc)
        leak.direct = sc.direct.copy()
        leak.direct[0] = sc.direct[0] + 0.1 * sc.direct[1:].sum(axis=0)  # -20 dB leakage
        leak.reverb = sc.reverb.copy()
        leak.reverb[0] = sc.reverb[0]
        variants["leakage_-20dB"] = leak
        err = copy.copy(sc)
        a, e = azimuth_elevation(sc.doa[0])
        err_az = np.where(sc.activity[0], a + 10.0, a)  # 10° azimuth error on every frame
        err.azimuth = sc.azimuth.copy()
        err.azimuth[0] = err_az
        variants["doa_error_10deg"] = err
        edits = RemixEdits(move={0: new}, mute=[1, 2], dry=[0], noise_gain=float("-inf"))
        for name, v in variants.items():
            root = write_oracle_analysis(tmp / f"ch_{fmt}_{seed}_{name}", v)
            an = SceneAnalysis.load(root)
            row = {"seed": seed, "analysis": name}
            for method in ("reference", "beamformer"):
                row[f"si_sdr_{method}_db"] = round(_sisdr_mean(remix(an, edits, extract=method), t_direct), 2)
            rows.append(row)
        an = SceneAnalysis.load(tmp / f"ch_{fmt}_{seed}_oracle")
        direct_new = remix(an, edits).astype(np.float64)
        kept = sc.reverb[0].astype(np.float64)
        r = {"seed": seed, "kept_reverb_si_sdr_db": round(_sisdr_mean(kept, t_reverb), 2),
             "kept_reverb_level_error_db": round(_level_error(kept, t_reverb), 2),
             "kept_image_si_sdr_db": round(_sisdr_mean(direct_new + kept, t_direct + t_reverb), 2)}
        if fmt == "foa":
            indep = _direction_independent(kept)
            r["direction_independent_reverb_si_sdr_db"] = round(_sisdr_mean(indep, t_reverb), 2)
            r["direction_independent_reverb_level_error_db"] = round(_level_error(indep, t_reverb), 2)
            r["direction_independent_image_si_sdr_db"] = round(_sisdr_mean(direct_new + indep, t_direct + t_reverb), 2)
        reverb_rows.append(r)
    summary = {}
    for name in ("oracle", "leakage_-20dB", "doa_error_10deg"):
        for method in ("reference", "beamformer"):
            summary[f"{name}_{method}_mean_db"] = round(float(np.mean(
                [r[f"si_sdr_{method}_db"] for r in rows if r["analysis"] == name])), 2)
    rev = {k: round(float(np.mean([r[k] for r in reverb_rows])), 2) for k in reverb_rows[0] if k != "seed"}
    return {"format": fmt, "extraction_rows": rows, "extraction_mean": summary, "reverb_rows": reverb_rows,
            "reverb_mean": rev}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy's BLAS starts (numpy is imported lazily below)
    with tempfile.TemporaryDirectory(prefix="deepasa-remix-bench-") as tmp:
        runs = [speed(fmt, args.threads, args.repeats, Path(tmp)) for fmt in ("mic", "foa")]
        for r in runs:
            print(json.dumps(r), flush=True)
        measured = [choices(fmt, Path(tmp)) for fmt in ("mic", "foa")]
        for m in measured:
            print(json.dumps({"format": m["format"], **m["extraction_mean"], **m["reverb_mean"]}), flush=True)
    worst = max(r["real_time_factor"] for r in runs)
    result = {
        "benchmark": "deepasa remix: 60-s oracle analysis, 5 moving objects, every object moved; load + remix + write",
        "command": f"python benchmarks/remix.py --threads {args.threads} --repeats {args.repeats}",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "note": "shared, noisy CPU (other jobs running)"},
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": runs,
        "target_real_time_factor": 0.05, "meets_target": worst <= 0.05,
        "choices": measured,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    rtfs = ", ".join(f"{r['format']} {r['real_time_factor']}" for r in runs)
    print(f"wrote {args.results}: real-time factor {rtfs}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
