"""`deepasa train` / `deepasa evaluate` end to end on tiny simulated scenes: train, resume, CoI stage, DDP."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deepasa.cli import main

REPO = Path(__file__).resolve().parents[1]
RECIPE = str(REPO / "configs" / "train" / "tiny_test.yaml")
SIM = ["--set", "duration=1.0", "--set", "sample_rate=8000", "--set", "num_sources=[1,2,3]",
       "--set", "num_sources_weights=[1,1,1]", "--quiet"]


@pytest.fixture(scope="module")
def scenes(tiny_bank_home, tmp_path_factory):
    """4 training, 2 validation and 2 test scenes at 8 kHz, 1 s (what the `tiny` model expects)."""
    out = tmp_path_factory.mktemp("train_scenes")
    for split, n, seed in (("train", 4, 1), ("val", 2, 2), ("test", 2, 3)):
        assert main(["simulate", "--home", str(tiny_bank_home), "--out", str(out), "--split", split,
                     "--num-scenes", str(n), "--seed", str(seed), *SIM]) == 0
    return out


def train(root, data, *extra):
    return main(["train", "--config", RECIPE, f"--data.root={data}", f"--trainer.default_root_dir={root}",
                 "--trainer.enable_progress_bar=false", *extra])


def metrics_rows(root):
    rows = []
    for path in sorted((Path(root) / "logs").glob("version_*/metrics.csv")):
        with open(path, newline="") as fh:
            rows += list(csv.DictReader(fh))
    return rows


def test_train_save_resume_and_evaluate(scenes, tmp_path):
    run = tmp_path / "run"
    rule = "--model.decision_rule={onoff: 0.7, doa_norm: 0.2}"     # the recipe's decision rule, apart from the model
    assert train(run, scenes, "--trainer.max_steps=2", rule, "--export", str(tmp_path / "model.pt")) == 0
    ckpts = run / "checkpoints"
    assert (ckpts / "last.ckpt").is_file() and list(ckpts.glob("best-*.ckpt"))
    first = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)
    assert first["global_step"] == 2 and first["deepasa_model"]["emb_dim"] == 8
    assert first["deepasa_decision"] == {"onoff": 0.7, "doa_norm": 0.2, "merge_deg": 0.0}
    assert not any(k.startswith("detect_") for k in first["deepasa_model"])
    # every loss term and the validation metrics are logged
    keys = set().union(*(r.keys() for r in metrics_rows(run)))
    for k in ("train/loss", "train/image_ref", "train/direct_ref", "train/reverb_ref", "train/nonref", "train/noise",
              "train/cls", "train/sed", "train/doa", "train/onoff", "val/loss", "val/seld_score", "val/ER", "val/F",
              "val/LE", "val/LR", "val/si_sdri_db", "val/direct_si_sdri_db"):
        assert k in keys, k
    assert all(float(r["train/loss"]) == float(r["train/loss"]) for r in metrics_rows(run) if r.get("train/loss"))
    # the epoch's mean of every term, one row at its end (4 scenes at batch 2: one epoch of 2 steps, each logged)
    step_losses = [float(r["train/loss"]) for r in metrics_rows(run) if r.get("train/loss")]
    epoch_rows = [r for r in metrics_rows(run) if r.get("train_epoch/loss")]
    assert len(step_losses) == 2 and len(epoch_rows) == 1
    assert float(epoch_rows[0]["train_epoch/loss"]) == pytest.approx(np.mean(step_losses), rel=1e-5)
    assert epoch_rows[0].get("train_epoch/doa") and epoch_rows[0].get("train_epoch/image_ref")
    # the same scalars in TensorBoard's event files
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((run / "tb").glob("version_*"))))
    events.Reload()
    assert {"train/loss", "train/doa", "val/seld_score", "val/si_sdri_db"} <= set(events.Tags()["scalars"])

    # the exported model loads with the public API and matches the checkpoint's weights
    from deepasa.model import DeepASA

    model = DeepASA.from_pretrained(tmp_path / "model.pt")
    assert model.config.n_classes == 10 and model.sample_rate == 8000
    assert model.decision_rule.to_dict() == first["deepasa_decision"]        # the export carries the rule

    # resume from last: the step counter continues
    assert train(run, scenes, "--trainer.max_steps=4", rule, "--resume") == 0
    resumed = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["global_step"] == 4
    changed = [k for k, v in resumed["state_dict"].items()
               if v.is_floating_point() and not torch.equal(v, first["state_dict"][k])]
    assert changed                                       # the resumed steps trained the weights further

    # evaluate the Lightning checkpoint: JSON report with every block
    report_path = tmp_path / "report.json"
    assert main(["evaluate", "--checkpoint", str(ckpts / "last.ckpt"), "--data", str(scenes), "--split", "test",
                 "--out", str(report_path), "--quiet"]) == 0
    report = json.loads(report_path.read_text())
    assert report["n_items"] == 2
    # the rule under the report keys of the time it was config fields, so old and new reports compare
    assert (report["model"]["detect_onoff"], report["model"]["detect_doa_norm"], report["model"]["detect_merge_deg"]) \
        == (0.7, 0.2, 0.0)
    for k in ("si_sdri_db", "sdri_db", "direct_si_sdri_db", "si_sdri_m2m_db", "sdri_m2m_db"):
        assert k in report["separation"]
    for block in ("seld", "dcase"):
        assert set(report[block]) >= {"ER", "F", "LE", "LR", "SELD"}
        assert 0.0 <= report[block]["SELD"] <= 1.5
    assert "seld.SELD" in report["ci95"] and "separation.si_sdri_db" in report["ci95"]
    assert "net1" not in report
    assert set(report["localization"]) >= {"ER", "F", "LE", "LR", "SELD"} and "ca_sdri" in report

    # `deepasa export` turns the (possibly interrupted) run's checkpoint into a model file with class names
    exported = tmp_path / "exported.pt"
    assert main(["export", str(ckpts / "last.ckpt"), str(exported), "--data", str(scenes)]) == 0
    model = DeepASA.from_pretrained(exported)
    assert model.class_names == json.loads((scenes / "classes.json").read_text())
    for k, v in model.state_dict().items():
        assert torch.equal(v, resumed["state_dict"][f"model.{k}"]), k
    # the exported file scores exactly as the checkpoint it came from
    assert main(["evaluate", "--checkpoint", str(exported), "--data", str(scenes), "--split", "test",
                 "--out", str(tmp_path / "report2.json"), "--quiet"]) == 0
    again = json.loads((tmp_path / "report2.json").read_text())
    assert again["separation"] == report["separation"] and again["seld"] == report["seld"]


def test_last_checkpoint_follows_training_even_when_validation_does_not_improve(scenes, tmp_path):
    """Lightning writes last.ckpt only with a new best; ours must follow every N steps and every validation."""
    from deepasa.train.callbacks import LastCheckpoint

    run = tmp_path / "run"
    # save_top_k=0: Lightning's own callback never writes a checkpoint (as when the score never improves)
    assert train(run, scenes, "--trainer.max_steps=5", "--last_every_n_steps=2", "--checkpoint.save_top_k=0") == 0
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 5                        # the end of training
    assert not list((run / "checkpoints").glob("best-*")) and not list((run / "checkpoints").glob("*.part"))
    assert train(run, scenes, "--trainer.max_steps=6", "--checkpoint.save_top_k=0", "--resume") == 0
    assert torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 6

    class Trainer:                                         # the callback's step schedule, without a Trainer
        global_step, sanity_checking, world_size = 4, False, 1

    cb = LastCheckpoint(tmp_path, every_n_steps=2)
    saved = []
    cb.save = lambda trainer: saved.append(trainer.global_step)
    for step in range(1, 7):
        Trainer.global_step = step
        cb.on_train_batch_end(Trainer, None, None, None, step)
    assert saved == [2, 4, 6]


def test_last_checkpoint_time_schedule():
    """every_n_minutes: due once that much time has passed since the last save; never under DDP (a collective)."""
    from deepasa.train.callbacks import LastCheckpoint

    cb = LastCheckpoint(".", every_n_steps=0, every_n_minutes=5)
    t0 = cb._saved_at
    assert not cb.due(7, now=t0 + 299.0) and cb.due(7, now=t0 + 300.0)
    assert not cb.due(7, single_process=False, now=t0 + 1e6)   # only the step schedule triggers under DDP
    assert not cb.due(0, now=t0 + 1e6)
    both = LastCheckpoint(".", every_n_steps=10, every_n_minutes=5)
    assert both.due(10, single_process=False, now=both._saved_at) and not both.due(11, now=both._saved_at + 1)


def test_kill_9_mid_run_resumes_from_a_recent_intact_last_checkpoint(scenes, tmp_path):
    """SIGKILL a real `deepasa train` while it saves by time (no step schedule, no validation): last.ckpt is
    intact, was rewritten while the run went on, and a --resume run continues from it and clears the debris."""
    import random
    import signal
    import time

    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    args = ["--config", RECIPE, f"--data.root={scenes}", f"--trainer.default_root_dir={run}",
            "--trainer.enable_progress_bar=false", "--checkpoint.save_top_k=0", "--last_every_n_steps=0",
            "--trainer.check_val_every_n_epoch=100000", "--trainer.logger=false"]
    proc = subprocess.Popen([sys.executable, "-m", "deepasa.cli", "train", *args, "--trainer.max_steps=100000",
                             "--last_every_minutes=0.005"],                       # a save every 0.3 s of training
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        stamps, deadline = set(), time.monotonic() + 240
        while len(stamps) < 3 and time.monotonic() < deadline and proc.poll() is None:
            if last.is_file():
                stamps.add(last.stat().st_mtime_ns)                            # distinct rewrites seen
            time.sleep(0.05)
        time.sleep(random.uniform(0.0, 0.4))                                    # any moment, a write included
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(stamps) >= 3, proc.stderr.read().decode()[-2000:]               # the time schedule rewrote it
    saved = torch.load(last, map_location="cpu", weights_only=True)            # intact (atomic rename)
    step = saved["global_step"]
    assert step >= 2
    assert main(["train", *args, f"--trainer.max_steps={step + 1}", "--resume"]) == 0
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == step + 1
    assert not [p.name for p in last.parent.iterdir() if p.name != "last.ckpt"]   # no temporary left


def test_export_bad_input_exits_2(scenes, tmp_path, capsys):
    from deepasa.model import DeepASA, get_config

    good = tmp_path / "m.pt"
    DeepASA(get_config("tiny", n_classes=13)).save(good)
    cases = [[str(tmp_path / "missing.ckpt"), str(tmp_path / "a.pt")],                   # missing checkpoint
             [str(good), str(tmp_path / "b.pt"), "--data", str(scenes)],                  # 13 classes vs 10
             [str(good), str(tmp_path / "c.pt"), "--data", str(tmp_path)],                # no classes.json
             [str(good), str(tmp_path / "d.pt"), "--set", "doa_refine"],                  # no value
             [str(good), str(tmp_path / "e.pt"), "--set", "emb_dim=12"]]                  # changes the weights
    for args in cases:
        assert main(["export", *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("deepasa export: error:"), err
        assert not Path(args[1]).exists()


def test_export_set_writes_an_inference_field_and_keeps_the_weights(tmp_path):
    from deepasa.model import DeepASA, get_config

    src, out = tmp_path / "m.pt", tmp_path / "srp.pt"
    named = DeepASA(get_config("tiny", doa_spatial="gcc_mixture", n_classes=2))
    named.class_names = ["dog", "bell"]
    named.save(src)
    assert main(["export", str(src), str(out), "--set", "doa_refine=srp", "--set", "doa_refine_cone_deg=30"]) == 0
    a, b = DeepASA.from_pretrained(src), DeepASA.from_pretrained(out)
    assert (b.config.doa_refine, b.config.doa_refine_cone_deg) == ("srp", 30.0) and a.config.doa_refine == ""
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert b.class_names == ["dog", "bell"]  # a model file's class names survive its re-export


def test_coi_stage_from_net1_weights_with_frozen_aggregator(scenes, tmp_path):
    from deepasa.errors import DeepASAError
    from deepasa.model import DeepASA, get_config
    from deepasa.train.module import DeepASAModule

    net1 = DeepASA(get_config("tiny", n_classes=10))
    net1.save(tmp_path / "net1.pt")
    module = DeepASAModule(model="tiny", model_overrides={"n_classes": 10, "coi_steps": 1},
                           init_from=str(tmp_path / "net1.pt"), freeze=["encoder", "blocks"])
    rep = module.init_report
    assert rep["copied"] == len(net1.state_dict()) and rep["skipped_shape"] == 0 and rep["missing"] > 0
    for k, v in net1.state_dict().items():
        assert torch.equal(module.model.state_dict()[k], v)
    assert not any(p.requires_grad for p in module.model.blocks.parameters())
    assert all(p.requires_grad for p in module.model.coi.parameters())

    # init_skip leaves the named weights at their fresh initialisation (a change of the audio heads' meaning)
    torch.manual_seed(5)
    fresh = DeepASA(get_config("tiny", n_classes=10, audio_output="mask")).state_dict()
    torch.manual_seed(5)
    masked = DeepASAModule(model="tiny", model_overrides={"n_classes": 10, "audio_output": "mask"},
                           init_from=str(tmp_path / "net1.pt"), init_skip=["audio."])
    n_audio = sum(k.startswith("audio.") for k in fresh)
    assert masked.init_report["skipped_prefix"] == n_audio > 0
    for k, v in masked.model.state_dict().items():
        assert torch.equal(v, fresh[k] if k.startswith("audio.") else net1.state_dict()[k]), k
    with pytest.raises(DeepASAError, match="names no weight"):
        DeepASAModule(model="tiny", model_overrides={"n_classes": 10}, init_from=str(tmp_path / "net1.pt"),
                      init_skip=["decoder."])

    run = tmp_path / "coi"
    blocks_before = {k: v.clone() for k, v in module.model.blocks.state_dict().items()}
    assert train(run, scenes, "--trainer.max_steps=2", "--model.model_overrides={n_classes: 10, coi_steps: 1}",
                 f"--model.init_from={tmp_path / 'net1.pt'}", "--model.freeze=[encoder, blocks]",
                 "--model.net1_loss_weight=0.5", "--export", str(tmp_path / "coi.pt")) == 0
    trained = DeepASA.from_pretrained(tmp_path / "coi.pt")
    for k, v in blocks_before.items():               # frozen: unchanged by training
        assert torch.equal(trained.blocks.state_dict()[k], v)
    assert "val/net1_seld_score" in set().union(*(r.keys() for r in metrics_rows(run)))
    report = tmp_path / "coi.json"
    assert main(["evaluate", "--checkpoint", str(tmp_path / "coi.pt"), "--data", str(scenes), "--split", "val",
                 "--out", str(report), "--quiet", "--no-sdr"]) == 0
    net1_block = json.loads(report.read_text())["net1"]
    assert set(net1_block["seld"]) >= {"ER", "F", "LE", "LR", "SELD"} and "si_sdri_db" in net1_block["separation"]
    assert "dcase" in net1_block


def test_evaluate_bad_input_exits_2(scenes, tmp_path, capsys):
    from deepasa.model import DeepASA, get_config

    good = tmp_path / "m.pt"
    DeepASA(get_config("tiny", n_classes=10)).save(good)
    cases = [
        ["--checkpoint", str(tmp_path / "missing.pt"), "--data", str(scenes)],            # missing checkpoint
        ["--checkpoint", str(good), "--data", str(tmp_path / "nowhere")],                  # missing data
        ["--checkpoint", str(good), "--data", str(scenes), "--split", "nosplit"],          # missing split
    ]
    wrong_classes = tmp_path / "c13.pt"
    DeepASA(get_config("tiny")).save(wrong_classes)                                       # 13 classes vs 10
    cases.append(["--checkpoint", str(wrong_classes), "--data", str(scenes), "--split", "val"])
    two_ch = tmp_path / "m2.pt"
    DeepASA(get_config("tiny", n_classes=10, n_mics=2)).save(two_ch)                      # 2 channels vs 4
    cases.append(["--checkpoint", str(two_ch), "--data", str(scenes), "--split", "val"])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    cases.append(["--checkpoint", str(garbage), "--data", str(scenes)])
    for args in cases:
        assert main(["evaluate", *args, "--quiet"]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("deepasa evaluate: error:"), err


def test_train_rejects_a_model_that_does_not_fit_the_data(scenes, tmp_path, capsys):
    assert train(tmp_path / "bad", scenes, "--trainer.max_steps=1", "--model.model_overrides={n_classes: 13}") == 2
    assert "13" in capsys.readouterr().err


def test_ddp_on_cpu_with_two_processes(scenes, tmp_path):
    """strategy=ddp, 2 CPU processes (gloo), launched the way a user launches it: the `deepasa` entry point."""
    run = tmp_path / "ddp"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "deepasa.cli", "train", "--config", RECIPE, f"--data.root={scenes}",
           f"--trainer.default_root_dir={run}", "--trainer.strategy=ddp", "--trainer.devices=2",
           "--trainer.accelerator=cpu", "--trainer.max_steps=2", "--trainer.enable_progress_bar=false",
           "--data.batch_size=1"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2
    # 4 training scenes, batch 1 per process, 2 processes: 2 optimizer steps per epoch
    rows = metrics_rows(run)
    assert any(r.get("val/seld_score") for r in rows)


@pytest.mark.parametrize("recipe", sorted(p.name for p in (REPO / "configs" / "train").glob("*.yaml")))
def test_every_recipe_parses(recipe, capsys):
    """Each recipe is a valid LightningCLI config (types and keys checked by jsonargparse)."""
    import yaml

    assert main(["train", "--config", str(REPO / "configs" / "train" / recipe), "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["checkpoint"]["save_last"] is False and printed["last_every_n_steps"] >= 1   # LastCheckpoint
    assert printed["trainer"]["gradient_clip_val"] == 5.0
    if recipe.startswith("asa2_paper"):               # docs/spec.md §6: 8 GPUs × 2, Adam 4e-4 / 1e-5, bf16-mixed
        assert printed["trainer"]["devices"] == 8 and printed["data"]["batch_size"] == 2
        assert printed["trainer"]["strategy"] == "ddp" and printed["trainer"]["precision"] == "bf16-mixed"
        assert printed["model"]["lr"] == 4e-4 and printed["model"]["weight_decay"] == 1e-5
        assert printed["checkpoint"]["monitor"] == "val/seld_score" and printed["checkpoint"]["mode"] == "min"
    if recipe == "starss23_seld.yaml":
        assert printed["model"]["lr"] == 5e-5 and printed["model"]["objective"] == "seld"
    assert not any(k.startswith("detect_") for k in printed["model"].get("model_overrides") or {})  # the rule apart
    if recipe == "sim_small_shipped.yaml":            # the shipped rule (docs/model.md deviations 17, 18)
        assert printed["model"]["decision_rule"] == {"doa_norm": 0.15, "onoff": 0.8}


def test_train_on_the_fly_without_data_on_disk(tiny_bank_home, tmp_path):
    """data.simulate: training scenes drawn while training, validation on fixed simulated scenes."""
    run = tmp_path / "otf"
    assert main(["train", "--config", RECIPE, "--data.root=null", "--data.simulate=true",
                 f"--data.bank_home={tiny_bank_home}", "--data.epoch_size=2", "--data.val_scenes=1",
                 f"--trainer.default_root_dir={run}", "--trainer.max_steps=1", "--trainer.enable_progress_bar=false",
                 "--data.scene_config={num_sources: [1, 2], num_sources_weights: [1, 1]}"]) == 0
    rows = metrics_rows(run)
    assert any(r.get("train/loss") for r in rows) and any(r.get("val/seld_score") for r in rows)


def test_head_diagnostics_reports_what_the_heads_output(scenes, tmp_path, monkeypatch, capsys):
    """scripts/head_diagnostics.py on a tiny model whose on/off head always fires and whose DoA head outputs a
    fixed vector: the printed norms equal ‖tanh(bias)‖ and the on/off shares are 100 %; bad input exits 2.

    The good run executes the script as ``__main__`` in this process (runpy: the same argv parsing, code and exit
    through run_script; one interpreter and torch start-up less); the bad input runs it as its own process, so the
    script's stand-alone start, exit code and one-line error are checked there."""
    import runpy

    import numpy as np

    from conftest import tiny_model_with_fixed_heads

    bias = [0.3, 0.2, 0.1]
    ckpt = tiny_model_with_fixed_heads(8.0, bias).save(tmp_path / "m.pt")
    script = Path(__file__).resolve().parents[1] / "scripts" / "head_diagnostics.py"
    threads = torch.get_num_threads()
    monkeypatch.setattr(sys, "argv", [str(script), str(ckpt), "--data", str(scenes), "--split", "test",
                                      "--threads", "1"])
    try:
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(script), run_name="__main__")
    finally:
        torch.set_num_threads(threads)                  # the script sets this process's thread count
    out, err = capsys.readouterr()
    assert done.value.code == 0, err
    norm = float(np.linalg.norm(np.tanh(bias)))
    assert f"DoA-vector norm: active frames {norm:.3f}, silent frames {norm:.3f}" in out
    assert "> 0.5 on 100.0%; silent frames mean 1.000, > 0.5 on 100.0%" in out
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "none.pt"), "--data", str(scenes)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_a_run_resumed_mid_epoch_keeps_the_plateau_schedule_of_a_run_that_never_stopped(scenes, tmp_path):
    """Lightning skips the plateau update of the epoch a resume enters mid-way; PlateauAfterResume makes it."""
    def scheduler(run):
        ckpt = torch.load(Path(run) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        return ckpt["lr_schedulers"][0]

    # 4 training scenes at batch 2: 2 steps an epoch, a validation at each epoch's end
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train(straight, scenes, "--trainer.max_steps=4", "--checkpoint.save_top_k=0") == 0
    assert train(resumed, scenes, "--trainer.max_steps=1", "--checkpoint.save_top_k=0") == 0     # mid-epoch 1
    assert scheduler(resumed)["last_epoch"] == 0
    assert train(resumed, scenes, "--trainer.max_steps=4", "--checkpoint.save_top_k=0", "--resume") == 0
    a, b = scheduler(straight), scheduler(resumed)
    # 2 validated epochs; the run's last epoch, ended by max_steps, is not counted in either (Lightning's loop)
    assert a["last_epoch"] == 1
    assert (b["last_epoch"], b["num_bad_epochs"]) == (a["last_epoch"], a["num_bad_epochs"])
