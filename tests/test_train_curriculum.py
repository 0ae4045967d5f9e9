"""The shipped run's training data: curriculum over scene difficulty, channel-swap augmentation, resume state."""

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from deepasa.errors import DeepASAError

REPO = Path(__file__).resolve().parents[1]

# tiny scenes (8 kHz, 1 s); the plain config: 2–3 sources, always moving
BASE = {"duration": 1.0, "sample_rate": 8000, "num_sources": [2, 3], "num_sources_weights": [1, 1],
        "moving_prob": 1.0}
CURRICULUM = [
    {"until": 2, "scene_config": {"num_sources": [1], "num_sources_weights": [1.0], "moving_prob": 0.0}},
    {"until": 4, "scene_config": {"num_sources": [1, 2], "num_sources_weights": [0.5, 0.5], "moving_prob": 0.5}},
]


def _static(item, k):
    """Source k's DoA (T', 3) is the same in every active frame."""
    doa = item["doa"][k][item["activity"][k] > 0]
    return bool(torch.allclose(doa, doa[:1].expand_as(doa), atol=1e-6))


def _equal(a, b):
    return all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)


# ------------------------------------------------------------------------------------------------ curriculum
def test_curriculum_picks_the_stage_of_each_scene_index(tiny_bank_home, capsys):
    from deepasa.data.onthefly import OnTheFlyScenes

    ds = OnTheFlyScenes(tiny_bank_home, scene_config=BASE, seed=4, epoch_size=6, curriculum=CURRICULUM)
    assert [ds.stage(i) for i in (0, 1, 2, 3, 4, 5, 10**6)] == [0, 0, 1, 1, 2, 2, 2]
    cfg = ds.source.config_for
    assert cfg(1).num_sources == (1,) and cfg(1).moving_prob == 0.0
    assert cfg(3).num_sources == (1, 2) and cfg(3).moving_prob == 0.5
    assert cfg(4).num_sources == (2, 3) and cfg(4).moving_prob == 1.0 and cfg(4).duration == 1.0
    items = list(ds)
    for it in items[:2]:                                   # stage 1: exactly one source, static
        assert int(it["num_sources"]) == 1 and _static(it, 0)
    for it in items[4:]:                                   # past the curriculum: the plain config
        k = int(it["num_sources"])
        assert k in (2, 3) and not all(_static(it, j) for j in range(k))
    log = [line for line in capsys.readouterr().err.splitlines() if "curriculum stage" in line]
    assert [line.split("curriculum stage ")[1][:3] for line in log] == ["1/3", "2/3", "3/3"]   # once per change

    # a resumed run (first_pass = 1) continues with the stage of its indices: the same scenes as pass 1
    resumed = OnTheFlyScenes(tiny_bank_home, scene_config=BASE, seed=4, epoch_size=2, curriculum=CURRICULUM)
    resumed.first_pass = 1
    again = list(resumed)
    assert [it["scene_id"] for it in again] == [it["scene_id"] for it in items[2:4]]
    assert all(torch.equal(a["mixture"], b["mixture"]) for a, b in zip(again, items[2:4]))


def test_a_run_resumed_mid_pass_continues_with_the_scenes_it_has_not_seen():
    from deepasa.data.onthefly import OnTheFlyScenes
    from deepasa.train.data import resumed_position

    # batch 2 on 1 rank, passes of 10 scenes: after step 3 scenes 0-5 are seen; pass 1 starts at step 5
    assert resumed_position(3, 2, 1, 10) == (0, 6)
    assert resumed_position(5, 2, 1, 10) == (1, 0)                  # a checkpoint written at a pass's end
    assert resumed_position(7, 2, 1, 10) == (1, 4)
    assert resumed_position(2, 2, 2, 10) == (0, 8)                  # 2 ranks: 4 scenes a step
    assert resumed_position(0, 2, 1, 10) == (0, 0)
    ds = OnTheFlyScenes.__new__(OnTheFlyScenes)                     # indices() needs no sound bank
    ds.epoch_size, ds.rank, ds.world_size, ds.first_scene = 10, 0, 1, 0
    full = [list(ds.indices(1, w, 2)) for w in range(2)]
    assert full == [[10, 12, 14, 16, 18], [11, 13, 15, 17, 19]]
    rest = [list(ds.indices(1, w, 2, offset=6)) for w in range(2)]
    assert rest == [[16, 18], [17, 19]]                             # the remaining scenes, each once
    assert sorted(sum(rest, [])) == list(range(16, 20))
    ds.first_scene = 1000                                           # a run that continues after 1000 scenes
    assert [list(ds.indices(1, w, 2, offset=6)) for w in range(2)] == [[1016, 1018], [1017, 1019]]


def test_first_scene_continues_the_stream_and_the_curriculum_of_another_run(tiny_bank_home):
    from deepasa.data.onthefly import OnTheFlyScenes

    from deepasa.train.data import DeepASADataModule

    first = list(OnTheFlyScenes(tiny_bank_home, scene_config=BASE, seed=4, epoch_size=6, curriculum=CURRICULUM))
    # a second run (e.g. the CoI stage initialised from the first) that starts after the first run's 3 scenes
    later = OnTheFlyScenes(tiny_bank_home, scene_config=BASE, seed=4, epoch_size=3, curriculum=CURRICULUM,
                           first_scene=3)
    items = list(later)
    assert [it["scene_id"] for it in items] == [it["scene_id"] for it in first[3:6]]     # scenes 3, 4, 5
    assert all(torch.equal(a["mixture"], b["mixture"]) for a, b in zip(items, first[3:6]))
    assert [later.stage(i) for i in (3, 4)] == [1, 2]                # the curriculum goes on from stage 2
    dm = DeepASADataModule(simulate=True, bank_home=str(tiny_bank_home), sample_rate=8000, clip_seconds=1.0,
                           scene_config=BASE, epoch_size=3, seed=4, curriculum=CURRICULUM, first_scene=3)
    dm.setup("fit")
    assert [it["scene_id"] for it in dm.train_set] == [it["scene_id"] for it in first[3:6]]  # the recipe option
    with pytest.raises(DeepASAError, match="first_scene must be a scene index >= 0"):
        OnTheFlyScenes(tiny_bank_home, scene_config=BASE, first_scene=-1)


@pytest.mark.parametrize("curriculum, message", [
    ({"until": 3}, "must be a list"),
    ([{"until": 4}, {"until": 2}], "stage 2: until must be an integer scene index above the previous stage's 4"),
    ([{"until": 0}], "stage 1: until"),
    ([{"until": "100"}], "stage 1: until"),
    ([{"until": 5, "scene_config": {}, "steps": 3}], "stage 1 must be a mapping"),
    ([{"scene_config": {"moving_prob": 0.0}}], "stage 1 must be a mapping"),
    ([{"until": 5, "scene_config": {"num_source": [1]}}], "stage 1: unknown scene parameter(s): num_source"),
    ([{"until": 5}, {"until": 9, "scene_config": {"num_sources": [1], "num_sources_weights": [1, 1]}}],
     "stage 2: num_sources and num_sources_weights"),
    ([{"until": 5, "scene_config": {"sample_rate": 16000}}], "stage 1: sample_rate cannot change"),
])
def test_invalid_curricula_are_one_line_errors(curriculum, message):
    from deepasa.train.data import DeepASADataModule

    with pytest.raises(DeepASAError) as err:             # checked at construction: no bank needed
        DeepASADataModule(simulate=True, sample_rate=8000, clip_seconds=1.0, curriculum=curriculum)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_curriculum_needs_simulated_training_data():
    from deepasa.train.data import DeepASADataModule

    with pytest.raises(DeepASAError, match="data.simulate"):
        DeepASADataModule(root="data", curriculum=CURRICULUM)
    with pytest.raises(DeepASAError, match="data.simulate"):
        DeepASADataModule(root="data", first_scene=4000)


# ------------------------------------------------------------------------------------------------ swap
def _datamodule(home, **kw):
    from deepasa.train.data import DeepASADataModule

    dm = DeepASADataModule(simulate=True, bank_home=str(home), sample_rate=8000, clip_seconds=1.0,
                           scene_config=BASE, epoch_size=4, val_scenes=2, seed=7, **kw)
    dm.setup("fit")
    dm.setup("test")
    return dm


def test_swap_augments_training_items_only_and_keeps_them_consistent(tiny_bank_home):
    from deepasa.data.augment import RandomSwap, apply_swap

    plain, aug = _datamodule(tiny_bank_home), _datamodule(tiny_bank_home, augment="swap")
    # validation and test scenes are never augmented
    for a, b in ((plain.val_set[1], aug.val_set[1]), (plain.test_set[0], aug.test_set[0])):
        assert _equal(a, b)
    # training items: exactly apply_swap of the plain item with the swaps drawn by worker 0's generator
    draws = RandomSwap(seed=aug._swap.seed_of(0))
    identity = 0
    for p, a in zip(plain.train_set, aug.train_set):
        sigma, rot = draws.swaps[int(draws.rng.integers(len(draws.swaps)))]
        identity += list(sigma) == [0, 1, 2, 3]
        assert _equal(apply_swap(p, sigma, rot), a) and a["scene_id"] == p["scene_id"]
        parts = a["direct"].sum(0) + a["reverb"].sum(0) + a["noise"]       # (4, N): mixture = Σ images + noise
        assert torch.allclose(parts, a["mixture"], atol=1e-5)
        assert torch.allclose(a["doa"].norm(dim=-1), a["activity"], atol=1e-5)   # unit DoA where active
        assert torch.equal(a["cls"], p["cls"]) and torch.equal(a["activity"], p["activity"])
    assert identity < 4                                     # the stream did swap something


def test_swap_is_seeded_per_worker(tiny_bank_home):
    from deepasa.data.augment import RandomSwap, apply_swap

    plain, aug = _datamodule(tiny_bank_home), _datamodule(tiny_bank_home, augment="swap")
    assert aug._swap.seed_of(0) != aug._swap.seed_of(1)
    by_id = {it["scene_id"]: it for it in plain.train_set}
    got = {it["scene_id"]: it for it in DataLoader(aug.train_set, batch_size=None, num_workers=2)}
    assert set(got) == set(by_id)
    for worker in (0, 1):                                   # worker w renders scenes w, w + 2 (module docstring)
        draws = RandomSwap(seed=aug._swap.seed_of(worker))
        for index in aug.train_set.indices(0, worker, 2):
            sid = f"train-7-{index:08d}"
            sigma, rot = draws.swaps[int(draws.rng.integers(len(draws.swaps)))]
            assert _equal(apply_swap(by_id[sid], sigma, rot), got[sid]), (worker, index)


def test_swap_on_disk_scenes_and_its_format_checks(tiny_bank_home, tmp_path):
    from deepasa.cli import main
    from deepasa.data.augment import RandomSwap, apply_swap
    from deepasa.data.scenes import SceneDataset
    from deepasa.train.data import DeepASADataModule

    sim = ["--home", str(tiny_bank_home), "--split", "train", "--num-scenes", "1", "--seed", "2", "--quiet",
           "--set", "duration=1.0", "--set", "sample_rate=8000"]
    assert main(["simulate", "--out", str(tmp_path / "mic"), *sim]) == 0
    assert main(["simulate", "--out", str(tmp_path / "foa"), "--format", "foa", *sim]) == 0
    disk = {"sample_rate": 8000, "clip_seconds": 1.0, "val_split": "train", "augment": "swap"}
    dm = DeepASADataModule(root=str(tmp_path / "mic"), seed=1, **disk)
    dm.setup("fit")
    assert _equal(dm.val_set[0], SceneDataset(tmp_path / "mic", "train")[0])          # validation: not swapped
    plain = SceneDataset(tmp_path / "mic", "train")[0]
    draws = RandomSwap(seed=dm._swap.seed_of(0))
    sigma, rot = draws.swaps[int(draws.rng.integers(len(draws.swaps)))]
    assert _equal(apply_swap(plain, sigma, rot), dm.train_set[0]) and len(dm.class_names) == 10

    with pytest.raises(DeepASAError, match="needs MIC scenes"):
        DeepASADataModule(root=str(tmp_path / "foa"), **disk).setup("fit")
    for kw in ({"simulate": True, "scene_format": "foa"}, {"dataset": "starss23", "root": "x"}):
        with pytest.raises(DeepASAError, match="MIC"):
            DeepASADataModule(augment="swap", **kw)
    with pytest.raises(DeepASAError, match="unknown augment"):
        DeepASADataModule(simulate=True, augment="flip")


# ------------------------------------------------------------------------------------------------ resume state
def test_resume_state_of_the_shipped_model_fits_10_mb(tmp_path):
    """A last.ckpt-like checkpoint of the shipped config (weights + Adam state + loops + callbacks)."""
    import yaml

    from deepasa.train.module import DeepASAModule, load_model
    from recipes.resume_state import slim_checkpoint

    recipe = yaml.safe_load((REPO / "configs" / "train" / "sim_small_shipped.yaml").read_text())["model"]
    module = DeepASAModule(model=recipe["model"], model_overrides=recipe["model_overrides"],
                           decision_rule=recipe["decision_rule"])
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=4e-4)
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()                                              # Adam's two moments per parameter exist now
    ckpt = {"epoch": 7, "global_step": 3500, "pytorch-lightning_version": "2.6.0",
            "state_dict": module.state_dict(), "optimizer_states": [opt.state_dict()], "lr_schedulers": [{}],
            "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": 7}}}},
            "callbacks": {"ModelCheckpoint": {"best_model_path": "/old/machine/best.ckpt",
                                              "heavy": torch.zeros(3_000_000)}},
            "deepasa_model": module.model.config.to_dict()}
    torch.save(ckpt, tmp_path / "last.ckpt")
    info = slim_checkpoint(tmp_path / "last.ckpt", tmp_path / "resume.ckpt")
    assert info["bytes"] <= 10e6 and info["global_step"] == 3500 and info["dropped"] == ["callbacks"]
    slim = torch.load(tmp_path / "resume.ckpt", weights_only=True)
    assert set(slim) == set(ckpt) - {"callbacks"} and slim["loops"] == ckpt["loops"]
    assert load_model(tmp_path / "resume.ckpt").config.doa_spatial == "gcc_mixture"   # export reads it
    with pytest.raises(DeepASAError, match="over the 1 MB bound"):
        slim_checkpoint(tmp_path / "last.ckpt", tmp_path / "too_big.ckpt", max_mb=1)
    assert not (tmp_path / "too_big.ckpt").exists()
    del slim["optimizer_states"]
    torch.save(slim, tmp_path / "weights_only.ckpt")
    with pytest.raises(DeepASAError, match="not a resumable"):
        slim_checkpoint(tmp_path / "weights_only.ckpt", tmp_path / "x.ckpt")


def test_resume_state_edits_the_plateau_schedule_a_resumed_scheduler_then_follows(tmp_path):
    """A scheduler that remembers a best it no longer reaches halves the rate; the edited state does not."""
    from recipes.resume_state import slim_checkpoint

    def scheduler(state=None):
        opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=3)
        if state is not None:
            sched.load_state_dict(state)
        return opt, sched

    opt, sched = scheduler()
    for score in (0.82, 0.95, 0.93):                        # a best of 0.82, then two bad validations
        sched.step(score)
    ckpt = {"epoch": 3, "global_step": 750, "state_dict": {}, "optimizer_states": [opt.state_dict()],
            "lr_schedulers": [sched.state_dict()], "loops": {}, "deepasa_model": {}}
    torch.save(ckpt, tmp_path / "last.ckpt")

    def lr_after(path, scores):
        state = torch.load(path, weights_only=True)["lr_schedulers"][0]
        opt, sched = scheduler(state)                       # what a resumed run does: the config's patience is lost
        for score in scores:
            sched.step(score)
        return opt.param_groups[0]["lr"]

    slim_checkpoint(tmp_path / "last.ckpt", tmp_path / "as_is.ckpt")
    assert lr_after(tmp_path / "as_is.ckpt", [0.9, 0.9]) == pytest.approx(5e-4)   # 4th bad validation: halved
    info = slim_checkpoint(tmp_path / "last.ckpt", tmp_path / "patient.ckpt", lr_patience=40)
    assert info["schedule"]["patience"] == (3, 40)
    assert lr_after(tmp_path / "patient.ckpt", [0.9] * 30) == pytest.approx(1e-3)
    info = slim_checkpoint(tmp_path / "last.ckpt", tmp_path / "fresh.ckpt", reset_best=True)
    assert info["schedule"]["best"] == (pytest.approx(0.82), float("inf")) and info["schedule"]["num_bad_epochs"] == (2, 0)
    assert lr_after(tmp_path / "fresh.ckpt", [0.9, 0.91, 0.92, 0.93]) == pytest.approx(1e-3)  # 0.9 is the new best
    assert lr_after(tmp_path / "fresh.ckpt", [0.9, 0.91, 0.92, 0.93, 0.94]) == pytest.approx(5e-4)
    # --lr: the optimizer state a resumed run loads says which rate it goes on with (the config's lr is lost too)
    info = slim_checkpoint(tmp_path / "last.ckpt", tmp_path / "faster.ckpt", lr=4e-3, reset_best=True)
    assert info["schedule"]["lr"] == (pytest.approx(1e-3), pytest.approx(4e-3))
    state = torch.load(tmp_path / "faster.ckpt", weights_only=True)
    opt, sched = scheduler(state["lr_schedulers"][0])
    opt.load_state_dict(state["optimizer_states"][0])
    assert opt.param_groups[0]["lr"] == pytest.approx(4e-3) and sched.get_last_lr() == [pytest.approx(4e-3)]
    for score in (0.9, 0.91, 0.92, 0.93, 0.94):
        sched.step(score)
    assert opt.param_groups[0]["lr"] == pytest.approx(2e-3)    # the schedule halves from the new rate
    for bad in (0.0, -1e-3):
        with pytest.raises(DeepASAError, match="--lr must be above 0"):
            slim_checkpoint(tmp_path / "last.ckpt", tmp_path / "y.ckpt", lr=bad)
    assert not (tmp_path / "y.ckpt").exists()
    del ckpt["lr_schedulers"]
    torch.save(ckpt, tmp_path / "no_sched.ckpt")
    with pytest.raises(DeepASAError, match="no ReduceLROnPlateau state"):
        slim_checkpoint(tmp_path / "no_sched.ckpt", tmp_path / "x.ckpt", reset_best=True)
    assert not (tmp_path / "x.ckpt").exists()
