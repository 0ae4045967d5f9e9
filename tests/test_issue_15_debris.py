"""Issue 15: no debris after a crash, and one writer per analysis output.

* ``deepasa analyze`` killed with SIGKILL mid-run leaves its ``.OUT.partial-PID`` folder; the next run removes it
  (one line says so) and leaves only the finished output.
* Every other command that builds output in a temporary place (``simulate``, ``sounds fetch``, ``export``,
  ``evaluate --out``, training checkpoints) removes the temporaries of processes that no longer run, never those
  of a live process.
* Two ``deepasa analyze`` runs writing the same ``--out``: one wins, the other exits 2 with one line, nothing mixed.

Independent truth: the kernel's view of which processes run (a real process killed or ended, a real one alive).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import tiny_model_with_fixed_heads

from deepasa.cli import main
from deepasa.staging import OutputLock, pid_alive, remove_stale, stale_temporaries, temp_sibling

DOA_BIAS = (3.0, 1.0, 0.5)
CLI = [sys.executable, "-m", "deepasa.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _dead_pid() -> int:
    """The PID of a process that has run and been reaped (so it no longer runs)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    pid = int(proc.stdout)
    assert not pid_alive(pid)
    return pid


@pytest.fixture()
def live_pid():
    """The PID of a process that runs for the duration of the test."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """A saved tiny model (8 kHz, 1-s windows) whose slots are all active: every window writes signal files."""
    return tiny_model_with_fixed_heads(8.0, DOA_BIAS).save(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def _noise_wav(path: Path, seconds: float, seed: int) -> Path:
    x = np.random.default_rng(seed).standard_normal((int(8000 * seconds), 4)).astype(np.float32) * 0.1  # (N, 4)
    sf.write(path, x, 8000, subtype="FLOAT")
    return path


def _wait_for(cond, proc, timeout=240.0, what=""):
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before {what}: {proc.stderr.read()}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _mid_run(partial: Path):
    """True once the run has written signal files of its first windows into its partial folder."""
    raw = partial / "_raw"
    return lambda: raw.is_dir() and any(raw.iterdir())


# ---------------------------------------------------------------------------------------------- staging
def test_only_dead_processes_temporaries_are_stale(tmp_path, live_pid):
    dead = _dead_pid()
    (tmp_path / f".out.partial-{dead}").mkdir()
    (tmp_path / f".out.partial-{dead}" / "x.wav").write_bytes(b"x" * 1000)
    (tmp_path / f".out.partial-{live_pid}").mkdir()
    (tmp_path / f".out.old-{os.getpid()}").mkdir()            # this process is alive too
    (tmp_path / f".other.partial-{dead}").mkdir()             # another output's
    (tmp_path / f".out.wav.tmp{dead}").write_text("x")        # the older .tmp<pid> spelling
    (tmp_path / ".out.partial").mkdir()                       # no PID: whose it is cannot be known
    (tmp_path / "out.partial-1").mkdir()                      # not hidden: not a temporary of ours
    lines = []
    removed = remove_stale(tmp_path, "out", log=lines.append)
    assert sorted(p.name for p in removed) == [f".out.partial-{dead}"]
    assert len(lines) == 1 and f"PID {dead}" in lines[0] and "1.0 kB" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f".out.partial-{live_pid}", f".out.old-{os.getpid()}", f".other.partial-{dead}", f".out.wav.tmp{dead}",
         ".out.partial", "out.partial-1"])
    assert [p.name for p, _ in stale_temporaries(tmp_path, None)] == [f".other.partial-{dead}", f".out.wav.tmp{dead}"]
    assert remove_stale(tmp_path, "out") == [] and remove_stale(tmp_path / "absent") == []
    assert temp_sibling(tmp_path / "out", "old") == tmp_path / f".out.old-{os.getpid()}"


def test_a_zombie_does_not_count_as_running():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 60
    while True:  # exited but not reaped by us: a zombie
        with open(f"/proc/{proc.pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[-1].split()[0] == "Z":
                break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert not pid_alive(proc.pid)
    proc.wait()


def test_output_lock_refuses_a_second_holder(tmp_path):
    out = tmp_path / "res"
    with OutputLock(out, "deepasa analyze"):
        assert (tmp_path / ".res.lock").read_text().strip() == str(os.getpid())
        probe = subprocess.run([sys.executable, "-c", "import sys; from deepasa.staging import OutputLock; "
                                f"OutputLock({str(out)!r}, 'deepasa analyze').acquire()"],
                               capture_output=True, text=True, env=ENV)
        assert probe.returncode != 0 and f"another deepasa analyze (PID {os.getpid()}) is writing" in probe.stderr
    assert not (tmp_path / ".res.lock").exists()       # released and removed
    with OutputLock(out):                               # free again
        pass


# ---------------------------------------------------------------------------------------------- analyze
def test_analyze_killed_with_sigkill_leaves_nothing_after_the_next_run(tiny_ckpt, tmp_path, capsys):
    wav = _noise_wav(tmp_path / "in.wav", 12.0, seed=0)
    res = tmp_path / "res"
    res.mkdir()
    out = res / "analysis"
    proc = subprocess.Popen([*CLI, "analyze", str(wav), "--out", str(out), "--checkpoint", str(tiny_ckpt),
                             "--no-report"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    partial = res / f".analysis.partial-{proc.pid}"
    _wait_for(_mid_run(partial), proc, what="the first windows' signal files")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert partial.is_dir() and not out.exists()                 # the debris the issue describes
    debris = sum(f.stat().st_size for f in partial.rglob("*") if f.is_file())
    assert debris > 0
    # the next run: removes the dead run's folder, says so in one line, and leaves only its finished output
    assert main(["analyze", str(wav), "--out", str(out), "--checkpoint", str(tiny_ckpt), "--no-report"]) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if "stale" in ln]
    assert len(err) == 1 and f"PID {proc.pid}" in err[0] and partial.name in err[0]
    assert [p.name for p in res.iterdir()] == ["analysis"]
    doc = json.loads((out / "objects.json").read_text())
    assert doc["duration_s"] == 12.0 and len(doc["objects"]) == 5
    assert sf.info(str(out / "noise.wav")).frames == 12 * 8000


def test_analyze_keeps_a_live_runs_temporary(tiny_ckpt, tmp_path, live_pid, capsys):
    wav = _noise_wav(tmp_path / "in.wav", 2.0, seed=1)
    other = tmp_path / f".analysis.partial-{live_pid}"
    other.mkdir()
    (other / "part.wav").write_bytes(b"x")
    assert main(["analyze", str(wav), "--out", str(tmp_path / "analysis"), "--checkpoint", str(tiny_ckpt),
                 "--no-report"]) == 0
    assert "stale" not in capsys.readouterr().err
    assert (other / "part.wav").is_file() and (tmp_path / "analysis" / "objects.json").is_file()


def test_two_analyses_writing_the_same_output_one_wins_the_other_exits_2(tiny_ckpt, tmp_path):
    # The first run is held mid-write (SIGSTOP once its first windows are on disk, SIGCONT after the second run
    # has ended), so the two overlap whatever the machine's speed: a stopped process is alive and keeps its lock,
    # as a descheduled one does. (Without the hold the input had to be long enough, 120 s, that the first run was
    # still writing when the second had started Python and imported torch; 20 s was not, on a fast Xeon.)
    # 12 s, as in the SIGKILL test above: still under way when its first windows' signal files appear.
    long_s = 12.0
    long_wav, short_wav = _noise_wav(tmp_path / "long.wav", long_s, seed=2), _noise_wav(tmp_path / "short.wav", 3.0, seed=3)
    res = tmp_path / "res"
    out = res / "analysis"
    args = ["--out", str(out), "--checkpoint", str(tiny_ckpt), "--no-report"]
    first = subprocess.Popen([*CLI, "analyze", str(long_wav), *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        _wait_for(_mid_run(res / f".analysis.partial-{first.pid}"), first, what="the first run to be under way")
        first.send_signal(signal.SIGSTOP)
        # the second run, with --overwrite too, while the first is writing
        second = subprocess.run([*CLI, "analyze", str(short_wav), *args, "--overwrite"], capture_output=True,
                                text=True, env=ENV, timeout=600)
        still_running = first.poll() is None
    finally:
        first.send_signal(signal.SIGCONT)
    _, first_err = first.communicate(timeout=600)
    assert still_running, "the first run ended before the second tried: the test did not overlap them"
    assert first.returncode == 0, first_err
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in second.stderr
    assert f"another deepasa analyze (PID {first.pid}) is writing {out}" in lines[0]
    # nothing mixed: the output is the first run's, every file of its length; no temporaries, no lock left
    assert [p.name for p in res.iterdir()] == ["analysis"]
    doc = json.loads((out / "objects.json").read_text())
    assert doc["input"] == str(long_wav) and doc["duration_s"] == long_s
    wavs = sorted(out.rglob("*.wav"))
    assert len(wavs) == 1 + 5 * 3 and all(sf.info(str(w)).frames == int(long_s) * 8000 for w in wavs)


# ---------------------------------------------------------------------------------------------- the others
SIM = ["--set", "duration=1.0", "--set", "sample_rate=8000", "--set", "num_sources=[1,2]",
       "--set", "num_sources_weights=[1,1]", "--quiet"]


def test_simulate_removes_dead_builds_and_keeps_live_ones(tiny_bank_home, tmp_path, live_pid, capsys):
    out = tmp_path / "ds"
    dead = _dead_pid()
    for name in (f".test.partial-{dead}", f".test.old-{dead}", f".test.partial-{live_pid}"):
        (out / name / "mixed").mkdir(parents=True)
        (out / name / "mixed" / "000000.wav").write_bytes(b"x" * 10)
    base = ["simulate", "--home", str(tiny_bank_home), "--out", str(out), "--split", "test", *SIM]
    assert main([*base, "--num-scenes", "1"]) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if "stale" in ln]
    assert len(err) == 1 and "removed 2 stale temporaries" in err[0] and f"PID {dead}" in err[0]
    assert sorted(p.name for p in out.iterdir()) == sorted(["test", f".test.partial-{live_pid}", "classes.json"])
    # a sharded run writes in place: a killed one leaves half-written files inside the split
    half = out / "test" / "mixed" / f".000001.wav.tmp{dead}"
    half.write_bytes(b"x")
    assert main([*base, "--num-scenes", "2", "--shard", "0/1"]) == 0
    assert "removed 1 stale temporary" in capsys.readouterr().err and not half.exists()
    assert sorted(p.name for p in (out / "test" / "mixed").iterdir()) == ["000000.wav", "000001.wav"]


def test_sounds_fetch_removes_dead_downloads_and_temp_files(tmp_path, live_pid, capsys):
    home = tmp_path / "home"
    dead = _dead_pid()
    planted = [home / "debs" / f".download.partial-{dead}" / "pkg_1.0_all.deb",
               home / "debs" / "ex" / f".sound-pkg.partial-{dead}" / "usr" / "a.wav",
               home / "bank" / f".index.csv.tmp-{dead}",
               home / "bank" / "test" / "speech" / f".clip.flac.tmp-{dead}.flac"]
    live = home / "bank" / "test" / "speech" / f".other.flac.tmp-{live_pid}.flac"
    for path in [*planted, live]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 100)
    # nothing to download: the synthetic clips of one program, with --no-synth
    assert main(["sounds", "fetch", "--home", str(home), "--split", "test", "--packages", "espeak-ng",
                 "--no-synth", "--workers", "1"]) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if "stale" in ln]
    assert len(err) == 1 and "removed 4 stale temporaries" in err[0] and f"PID {dead}" in err[0]
    assert not any(p.exists() for p in planted) and live.is_file()   # not even the bank's own clean-up takes it
    assert not (home / "debs").exists()   # emptied, so the fetch's own tidy-up removed the folders


def test_export_and_evaluate_out_remove_dead_temp_files(tiny_bank_home, tmp_path, live_pid, capsys):
    import dataclasses

    from deepasa.model import DeepASA, get_config

    data = tmp_path / "ds"
    assert main(["simulate", "--home", str(tiny_bank_home), "--out", str(data), "--split", "test",
                 "--num-scenes", "1", *SIM]) == 0
    n_classes = len(json.loads((data / "classes.json").read_text()))
    source = DeepASA(dataclasses.replace(get_config("tiny"), n_classes=n_classes)).save(tmp_path / "source.pt")
    dead = _dead_pid()
    models = tmp_path / "models"
    models.mkdir()
    stale_model, live_model = models / f".m.pt.part-{dead}", models / f".m.pt.part-{live_pid}"
    for p in (stale_model, live_model):
        p.write_bytes(b"x" * 10)
    assert main(["export", str(source), str(models / "m.pt")]) == 0
    err = capsys.readouterr().err
    assert "deepasa export: removed 1 stale temporary" in err and f"PID {dead}" in err
    assert sorted(p.name for p in models.iterdir()) == sorted(["m.pt", live_model.name])

    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / f".r.json.tmp{dead}").write_text("{")
    assert main(["evaluate", "--checkpoint", str(models / "m.pt"), "--data", str(data), "--split", "test",
                 "--out", str(reports / "r.json"), "--no-sdr", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "deepasa evaluate: removed 1 stale temporary" in err
    assert [p.name for p in reports.iterdir()] == ["r.json"] and json.loads((reports / "r.json").read_text())


def test_training_checkpoint_folder_is_cleared_of_dead_runs_parts_only(tmp_path, live_pid, capsys):
    import lightning as L

    from deepasa.train.callbacks import LastCheckpoint

    dead = _dead_pid()
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    names = [f".last.ckpt.part-{dead}", f".last.ckpt.part-{live_pid}", ".last.ckpt.part", "last.ckpt", "best.ckpt"]
    for name in names:
        (ckpts / name).write_bytes(b"x")
    trainer = L.Trainer(default_root_dir=tmp_path, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, max_steps=1)
    cb = LastCheckpoint(ckpts)
    cb.setup(trainer, None, "fit")
    assert "deepasa train: removed 1 stale temporary" in capsys.readouterr().err
    assert sorted(p.name for p in ckpts.iterdir()) == sorted(names[1:])
    assert temp_sibling(cb.path, "part").name == f".last.ckpt.part-{os.getpid()}"


def test_staging_docstring_examples():
    import doctest

    import deepasa.staging

    result = doctest.testmod(deepasa.staging)
    assert result.attempted > 0 and result.failed == 0


def test_analyze_into_a_path_under_a_file_is_one_line_and_exit_2(tiny_ckpt, tmp_path, capsys):
    wav = _noise_wav(tmp_path / "in.wav", 1.0, seed=4)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["analyze", str(wav), "--out", str(blocker / "out"), "--checkpoint", str(tiny_ckpt)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"deepasa analyze: error: cannot write to {blocker}: {blocker} is not a folder"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "in.wav"]


def test_write_json_goes_through_a_recognisable_temporary(tmp_path, monkeypatch):
    import json

    from deepasa.staging import stale_temporaries, write_json

    path = write_json(tmp_path / "sub" / "r.json", {"a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2]} and [p.name for p in path.parent.iterdir()] == ["r.json"]
    # a writer stopped between write and rename leaves its own per-PID temporary, not the target
    monkeypatch.setattr("deepasa.staging.os.replace", lambda src, dst: None)
    write_json(tmp_path / "sub" / "s.json", {"b": 1})
    left = [p.name for p in path.parent.iterdir() if p.name != "r.json"]
    assert len(left) == 1 and left[0].startswith(".s.json.part-")
    assert not (path.parent / "s.json").exists()
    assert stale_temporaries(path.parent) == []                   # this live process's temporary is not stale


# ---------------------------------------------------------------------------------------------- atomic_path (issue 38)
def test_atomic_path_puts_the_file_in_place_only_when_the_block_ends(tmp_path, monkeypatch):
    import deepasa.staging
    from deepasa.staging import atomic_path

    path = tmp_path / "sub" / "r.txt"
    with atomic_path(path, "tmp") as tmp:
        assert tmp == temp_sibling(path, "tmp") and tmp.parent == path.parent and tmp.parent.is_dir()
        tmp.write_text("new")
        assert not path.exists()
        assert stale_temporaries(tmp_path / "sub", "r.txt") == []           # a live process's: never stale
        monkeypatch.setattr(deepasa.staging, "pid_alive", lambda pid: False)
        assert stale_temporaries(tmp_path / "sub", "r.txt") == [(tmp, os.getpid())]   # recognised as ours
        monkeypatch.undo()
    assert path.read_text() == "new" and [p.name for p in path.parent.iterdir()] == ["r.txt"]
    with atomic_path(path, "part") as tmp:                                  # an existing file is replaced
        tmp.write_text("newer")
        assert path.read_text() == "new"
    assert path.read_text() == "newer" and [p.name for p in path.parent.iterdir()] == ["r.txt"]


def test_atomic_path_on_error_leaves_the_target_and_no_temporary(tmp_path):
    from deepasa.staging import atomic_path

    path = tmp_path / "r.txt"
    with pytest.raises(RuntimeError, match="half way"):
        with atomic_path(path, "tmp") as tmp:
            tmp.write_text("half")
            raise RuntimeError("half way")
    assert list(tmp_path.iterdir()) == []                                   # nothing at path, no temporary
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(path, "tmp") as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.txt"]
    with pytest.raises(ValueError):                                         # raised before the temporary exists
        with atomic_path(path, "tmp"):
            raise ValueError
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.txt"]
    with pytest.raises(OSError):                                            # a folder temporary is removed too
        with atomic_path(tmp_path / "pack", "tmp") as tmp:
            (tmp / "clips").mkdir(parents=True)
            (tmp / "clips" / "a.flac").write_bytes(b"x")
            raise OSError("disk full")
    assert [p.name for p in tmp_path.iterdir()] == ["r.txt"]


def test_atomic_path_extension_for_writers_that_need_one(tmp_path):
    from deepasa.staging import atomic_path

    path = tmp_path / "cache.npz"
    with atomic_path(path, "tmp", ".npz") as tmp:
        assert tmp.name == f".cache.npz.tmp-{os.getpid()}.npz"
        np.savez(tmp, a=np.arange(3))                                        # writes tmp itself, adds nothing
    assert [p.name for p in tmp_path.iterdir()] == ["cache.npz"]
    assert np.load(path)["a"].tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        with atomic_path(path, "nope"):
            pass
