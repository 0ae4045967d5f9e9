"""A wheel built from the repository, installed in a fresh environment outside the checkout, analyses a
recording with the shipped models (issue 38): the models travel as package data, nothing reads the source tree.

Independent truth: two white-noise plane waves from known azimuths (40° and −110°) with known activity; the
installed pipeline must find both, where they are, and must load its models from the installed package.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import soundfile as sf

from deepasa.audio.geometry import SPEED_OF_SOUND, tetra_mic_offsets, unit_vector

REPO = Path(__file__).resolve().parents[1]
FS = 16000


def _plane(sig: np.ndarray, az: float) -> np.ndarray:
    """(N,) → (4, N): a plane wave from azimuth ``az`` on the MIC array (exact circular fractional advances)."""
    lead = tetra_mic_offsets() @ unit_vector(az, 0) / SPEED_OF_SOUND  # (4,)
    f = np.fft.rfftfreq(len(sig), 1 / FS)
    return np.fft.irfft(np.fft.rfft(sig)[None] * np.exp(2j * np.pi * f[None] * lead[:, None]), len(sig))


def _run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert out.returncode == 0, f"{cmd[:3]}: {out.stderr[-2000:]}"
    return out


def _source_copy(dest: Path) -> Path:
    """The checkout's files (tracked and untracked-not-ignored) copied to ``dest``: the wheel is built from there,
    so no ``build/`` is left in the checkout and no stale file of an earlier build can slip into the wheel."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def test_installed_wheel_analyses_with_the_shipped_models(tmp_path):
    wheels = tmp_path / "wheels"
    source = _source_copy(tmp_path / "src")
    _run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w",
          str(wheels)], cwd=tmp_path)
    wheel = next(wheels.glob("deepasa-*.whl"))
    env_dir = tmp_path / "env"
    # a fresh environment without its own pip (ensurepip costs ~5 s); this environment's pip installs the wheel
    # into it (--python: the target interpreter's site-packages and bin/, as the env's own pip would)
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)])
    _run([sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install", "-q", "--no-deps",
          "--no-index", str(wheel)])
    assert (env_dir / "bin" / "deepasa").is_file()                      # the entry point, installed into the env
    # the dependencies (torch, numpy, aisfx, ...) from this environment, but not its editable deepasa: a
    # PYTHONPATH entry's .pth files (the editable install's hook) are not processed
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    work = tmp_path / "work"
    work.mkdir()
    rng = np.random.default_rng(0)
    n = 3 * FS
    a = rng.standard_normal(n) * (np.arange(n) < n // 2)                  # 0–1.5 s, from 40°
    b = rng.standard_normal(n) * (np.arange(n) >= n // 3)                 # 1–3 s, from −110°
    sf.write(work / "rec.wav", (0.05 * (_plane(a, 40) + _plane(b, -110))).T.astype(np.float32), FS)
    where = _run([str(env_dir / "bin" / "python"), "-c",
                  "import deepasa.model.paths as p; print(p.DEFAULT_FINDER_CHECKPOINT)"], cwd=work, env=env)
    assert Path(where.stdout.strip()).is_relative_to(env_dir)           # the installed package's own model
    _run([str(env_dir / "bin" / "deepasa"), "analyze", "rec.wav", "--out", "ana"], cwd=work, env=env)
    result = json.loads((work / "ana" / "objects.json").read_text())
    assert Path(result["model"]["finder"]).is_relative_to(env_dir)
    assert Path(result["model"]["classifier"]).is_relative_to(env_dir)
    az = sorted(float(np.median([d["azimuth_deg"] for d in o["doa"]])) for o in result["objects"])
    assert len(az) == 2 and abs(az[0] + 110) < 10 and abs(az[1] - 40) < 10, az
    assert (work / "ana" / "noise.wav").is_file() and (work / "ana" / "report.html").is_file()
