"""`scripts/gpu_train.sh`: the one-command GPU run, as a CPU dry run (`--device cpu --steps 1`) on a tiny bank pack."""

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_train.sh"
CHECKPOINT = REPO / "checkpoints" / "shipped_resume.ckpt"


def _run(args, timeout=600):
    env = dict(os.environ, GPU_TRAIN_PYTHON=sys.executable, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    return subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def pack(tiny_bank_home, tmp_path_factory):
    """A pack of the tiny bank's train and val splits, one val clip kept lossless."""
    from deepasa.scenes.bank_pack import build_bank_pack

    out = tmp_path_factory.mktemp("pack") / "gpubank"
    info = build_bank_pack(tiny_bank_home, out, lossless={"fake-speech-val-0"})
    assert info["clips"] == 3 * (3 + 1) and info["lossless"] == ["fake-speech-val-0"]
    return out


def test_a_pack_unpacks_into_a_bank_with_the_same_index_and_clip_lengths(tiny_bank_home, pack, tmp_path):
    from deepasa.scenes.bank_pack import unpack_bank
    from deepasa.scenes.soundbank import SoundBank

    assert {p.suffix for p in (pack / "clips").rglob("*.*")} == {".opus", ".flac"}
    home = tmp_path / "home"
    assert unpack_bank(pack, home)["unpacked"] is True
    assert unpack_bank(pack, home)["unpacked"] is False                 # a second call finds it done
    source, unpacked = SoundBank.open(tiny_bank_home), SoundBank.open(home)
    for split in ("train", "val"):
        row = lambda c, root: (c.clip_id, c.label, c.duration, c.package, c.licence, c.path.relative_to(root))
        assert [row(c, home) for c in unpacked.clips(split)] == [row(c, tiny_bank_home) for c in source.clips(split)]
        for a, b in zip(source.clips(split), unpacked.clips(split)):
            x, y = source.load(a), unpacked.load(b)
            assert len(x) == len(y)                                      # the exact length is restored
            if a.clip_id == "fake-speech-val-0":
                assert np.array_equal(x, y)                              # lossless: bit-identical
    assert unpacked.clips("test") == []                                  # the test split is not carried


def test_dry_run_on_cpu_leaves_a_resume_state_a_model_and_its_evaluation(pack, tmp_path):
    from deepasa.model import DeepASA
    from deepasa.scenes.soundbank import class_names
    from deepasa.train.module import load_model

    before = _sha(CHECKPOINT)
    out = tmp_path / "out"
    # MINUTES 5, not 1: the run stops after its one step anyway, and the wrapper's hard deadline (MINUTES + 2 min)
    # must not cut a slow step on a loaded machine (it did at 1 min beside a 2-thread benchmark: exit code 1)
    done = _run([5, out, "--device", "cpu", "--steps", 1, "--batch", 1, "--bank-pack", pack,
                 "--unpack-to", tmp_path / "home", "--work", tmp_path / "work", "--eval-scenes", 1,
                 "--set", "data.val_scenes=1", "--set", "trainer.num_sanity_val_steps=0",
                 "--set", "trainer.log_every_n_steps=1"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert _sha(CHECKPOINT) == before                                    # the repository's file is only copied
    names = {p.name for p in out.iterdir()}
    assert names == {"shipped_resume.ckpt", "default.pt", "val1.json", "train.log", "metrics.csv", "config.yaml",
                     "run.json"}
    assert len(names) <= 8 and not any(p.is_dir() for p in out.iterdir())

    start = torch.load(CHECKPOINT, map_location="cpu", weights_only=False)["global_step"]
    state = torch.load(out / "shipped_resume.ckpt", map_location="cpu", weights_only=False)
    assert state["global_step"] == start + 1 and "callbacks" not in state
    assert {"state_dict", "optimizer_states", "loops", "deepasa_model"} <= set(state)
    assert (out / "shipped_resume.ckpt").stat().st_size <= 10e6
    coi_steps = load_model(CHECKPOINT).config.coi_steps                  # the shipped run's current stage
    assert load_model(out / "shipped_resume.ckpt").config.coi_steps == coi_steps

    model = DeepASA.from_pretrained(out / "default.pt").eval()
    assert model.class_names == class_names()
    with torch.inference_mode():
        y = model(torch.randn(1, model.config.n_mics, int(model.config.sample_rate * model.config.clip_seconds)))
    assert y.cls_logits.shape[:2] == (1, model.config.n_slots) and torch.isfinite(y.doa).all()

    report = json.loads((out / "val1.json").read_text())
    assert {"separation", "seld", "dcase", "localization", "objects", "ci95", "n_items"} <= set(report)
    assert ("net1" in report) == (coi_steps > 0)                         # a CoI model also scores its Net 1
    assert report["n_items"] == 1 and report["split"] == "val"
    assert {"si_sdri_db", "direct_si_sdri_db"} <= set(report["separation"])
    assert set(report["seld"]) == {"ER", "F", "LE", "LR", "SELD"}

    run = json.loads((out / "run.json").read_text())
    assert (run["start_step"], run["end_step"], run["steps"], run["train_exit_code"]) == (start, start + 1, 1, 0)
    assert run["batch_size"] == 1 and run["evaluation"]["scenes"] == 1 and run["throughput"]["steps"] == 1
    with open(out / "metrics.csv", newline="") as f:
        assert "train/loss" in next(csv.reader(f))
    log = (out / "train.log").read_text()
    assert "training exited with code 0" in log and "throughput: step" in log
    assert sf.info(next((tmp_path / "home" / "bank" / "train").rglob("*.flac"))).subtype == "PCM_16"


@pytest.mark.parametrize("args, message", [
    (["abc", "{out}"], "MINUTES must be a number of minutes"),
    (["-2", "{out}"], "MINUTES must be a positive number"),
    (["1", "{full}", "--device", "cpu"], "exists and is not an empty folder"),
    (["1", "{out}", "--device", "cpu", "--set", "trainer.max_steps"], "--set takes SECTION.KEY=VALUE"),
    (["1", "{out}", "--device", "cpu", "--steps", "0"], "--steps must be at least 1"),
    (["1", "{out}", "--device", "cpu", "--checkpoint", "{out}.ckpt"], "checkpoint not found"),
    (["1", "{out}", "--device", "cpu", "--bank-pack", "{full}"], "is not a sound-bank pack"),
    (["1"], "the following arguments are required: OUT"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, message, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    out = tmp_path / "out"
    done = _run([a.format(out=out, full=full) for a in args], timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("gpu_train.sh: error:"), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not out.exists()                                              # nothing written


@pytest.mark.hardware
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_device_is_one_line_and_exit_code_2(pack, tmp_path):
    done = _run([1, tmp_path / "out", "--bank-pack", pack], timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["gpu_train.sh: error: --device cuda, but torch sees no CUDA device "
                                                "here (use --device cpu for a dry run)"]
    assert not (tmp_path / "out").exists()
