"""Training data: the on-the-fly scene stream and the external-format loaders on fixtures written here."""

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from deepasa.errors import DeepASAError

SCENES = {"duration": 1.0, "sample_rate": 8000, "num_sources": [1, 2, 3], "num_sources_weights": [1, 1, 1]}


# ------------------------------------------------------------------------------------------------ on the fly
def _ids(loader):
    return [sid for batch in loader for sid in batch["scene_id"]]


def test_onthefly_items_have_the_scene_dataset_layout(tiny_bank_home):
    from deepasa.data.onthefly import OnTheFlyScenes

    ds = OnTheFlyScenes(tiny_bank_home, scene_config=SCENES, n_slots=4, seed=3, epoch_size=2)
    items = list(ds)
    assert len(items) == len(ds) == 2
    for it in items:
        k = int(it["num_sources"])
        assert it["mixture"].shape == (4, 8000) and it["mixture"].dtype == torch.float32
        assert it["direct"].shape == it["reverb"].shape == (4, 4, 8000)
        assert it["noise"].shape == (4, 8000)
        assert it["cls"].shape == (4,) and it["activity"].shape == (4, 10) and it["doa"].shape == (4, 10, 3)
        assert 1 <= k <= 3 and (it["cls"][:k] >= 0).all() and (it["cls"][k:] == -1).all()
        # the simulator's invariant survives the conversion: mixture = Σ images + noise
        parts = it["direct"].sum(0) + it["reverb"].sum(0) + it["noise"]
        assert torch.allclose(parts, it["mixture"], atol=1e-5)
        # DoA is a unit vector exactly where the source is active, zero elsewhere
        norms = it["doa"].norm(dim=-1)
        assert torch.allclose(norms, it["activity"], atol=1e-5)


def test_onthefly_is_deterministic_per_seed_and_independent_of_workers(tiny_bank_home):
    from deepasa.data.onthefly import OnTheFlyScenes

    def make(seed):
        return OnTheFlyScenes(tiny_bank_home, scene_config=SCENES, seed=seed, epoch_size=4)

    a, b = make(5), make(5)
    first_a = list(a)
    first_b = list(b)
    for x, y in zip(first_a, first_b):
        assert x["scene_id"] == y["scene_id"] and torch.equal(x["mixture"], y["mixture"])
    # a second pass draws new scenes (infinite data), still deterministic
    second = list(a)
    assert {x["scene_id"] for x in second}.isdisjoint({x["scene_id"] for x in first_a})
    # another seed gives other audio
    other = next(iter(make(6)))
    assert not torch.equal(other["mixture"], first_a[0]["mixture"])
    # two workers yield the same set of scenes as one process
    two = make(5)
    got = _ids(DataLoader(two, batch_size=1, num_workers=2))
    assert sorted(got) == sorted(x["scene_id"] for x in first_a)


def test_onthefly_ranks_split_each_pass(tiny_bank_home):
    from deepasa.data.onthefly import OnTheFlyScenes

    shards = []
    for rank in range(2):
        ds = OnTheFlyScenes(tiny_bank_home, scene_config=SCENES, seed=1, epoch_size=5)
        ds.set_distributed(rank, 2)
        shards.append(list(ds.indices(0)))
    assert sorted(shards[0] + shards[1]) == list(range(5)) and len(shards[0]) == 3 and len(shards[1]) == 2


def test_simulated_scenes_match_deepasa_simulate(tiny_bank_home, tmp_path):
    from deepasa.cli import main
    from deepasa.data.onthefly import SimulatedScenes
    from deepasa.data.scenes import SceneDataset

    out = tmp_path / "ds"
    assert main(["simulate", "--home", str(tiny_bank_home), "--out", str(out), "--split", "val", "--seed", "9",
                 "--num-scenes", "1", "--set", "duration=1.0", "--set", "sample_rate=8000", "--quiet"]) == 0
    disk = SceneDataset(out, "val")[0]
    sim = SimulatedScenes(tiny_bank_home, split="val", scene_config={"duration": 1.0, "sample_rate": 8000},
                          seed=9, num_scenes=1)[0]
    assert torch.allclose(disk["mixture"], sim["mixture"], atol=1e-6)
    assert torch.equal(disk["cls"], sim["cls"]) and torch.equal(disk["activity"], sim["activity"])


def test_onthefly_without_clips_is_a_user_error(tmp_path):
    from deepasa.data.onthefly import OnTheFlyScenes

    with pytest.raises(DeepASAError):
        OnTheFlyScenes(tmp_path / "no-bank", scene_config=SCENES)


# ------------------------------------------------------------------------------------------------ STARSS23
def _write_starss(root, fs=24000, seconds=5.0):
    """One recording in dev-train-sony, one in dev-test-tau, official layout and CSV rows."""
    rng = np.random.default_rng(0)
    rec = {"dev-train-sony": "fold3_room21_mix001", "dev-test-tau": "fold4_room2_mix002"}
    for folder, name in rec.items():
        for fmt in ("mic_dev", "foa_dev"):
            (root / fmt / folder).mkdir(parents=True)
            sf.write(root / fmt / folder / f"{name}.wav", 0.1 * rng.standard_normal((int(fs * seconds), 4)), fs,
                     subtype="PCM_16")
        (root / "metadata_dev" / folder).mkdir(parents=True)
    rows = []
    for f in range(0, 12):                                   # class 1 (male speech), source 0, frames 0..11
        rows.append(f"{f},1,0,{-30 + f},10")
    for f in range(5, 45):                                   # class 8 (music), source 2, frames 5..44 (crosses clips)
        rows.append(f"{f},8,2,90,-20,150")                   # 6-column row (with distance)
    rows.append("38,1,1,0,0")                                # a second male speaker in clip 0 (same class)
    (root / "metadata_dev" / "dev-train-sony" / "fold3_room21_mix001.csv").write_text("\n".join(rows) + "\n")
    (root / "metadata_dev" / "dev-test-tau" / "fold4_room2_mix002.csv").write_text("3,12,0,45,45\n")


def test_starss23_loader_chunks_resamples_and_assigns_slots(tmp_path):
    from deepasa.data.starss23 import DCASE2023_CLASSES, Starss23Dataset

    _write_starss(tmp_path)
    ds = Starss23Dataset(tmp_path, "train", n_slots=5, sample_rate=16000, clip_seconds=4.0)
    assert len(ds) == 2 and len(ds.class_names) == 13 and ds.class_names == list(DCASE2023_CLASSES)
    a, b = ds[0], ds[1]
    assert a["mixture"].shape == (4, 64000) and abs(a["mixture"].abs().max().item() - 1.0) < 1e-6  # peak-normalised
    assert a["scene_id"] == "fold3_room21_mix001_000" and b["scene_id"] == "fold3_room21_mix001_001"
    # clip 0: speech source 0 (first at frame 0), music (frame 5), speech source 1 (frame 38)
    assert a["cls"].tolist() == [1, 8, 1, -1, -1] and int(a["num_sources"]) == 3
    assert a["activity"][0].nonzero().flatten().tolist() == list(range(12))
    assert a["activity"][1].nonzero().flatten().tolist() == list(range(5, 40))
    assert a["activity"][2].nonzero().flatten().tolist() == [38]
    az, el = math.radians(-30 + 3), math.radians(10)
    assert torch.allclose(a["doa"][0, 3], torch.tensor([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az),
                                                         math.sin(el)]), atol=1e-6)
    assert torch.allclose(a["doa"][1, 10], torch.tensor([0.0, math.cos(math.radians(-20)), math.sin(math.radians(-20))]),
                          atol=1e-6)
    # clip 1 (frames 40..79, audio 4..5 s zero-padded): music continues in slot 0
    assert b["cls"].tolist() == [8, -1, -1, -1, -1] and b["activity"][0].nonzero().flatten().tolist() == list(range(5))
    assert b["mixture"][:, 16200:].abs().max() < 1e-3       # (resampling rings a few ms past the edge)
    test = Starss23Dataset(tmp_path, "test", fmt="foa", sample_rate=8000, clip_seconds=2.0, peak_normalize=False)
    assert len(test) == 3 and test[0]["mixture"].shape == (4, 16000) and test[0]["cls"][0] == 12


def test_starss23_loader_rejects_bad_layouts(tmp_path):
    from deepasa.data.starss23 import Starss23Dataset

    with pytest.raises(DeepASAError):
        Starss23Dataset(tmp_path, "train")
    _write_starss(tmp_path)
    (tmp_path / "metadata_dev" / "dev-train-sony" / "fold3_room21_mix001.csv").write_text("0,13,0,0,0\n")
    with pytest.raises(DeepASAError, match="class index 13"):
        Starss23Dataset(tmp_path, "train")


# ------------------------------------------------------------------------------------------------ MC-FUSS
def _write_mcfuss(root, split, sources=(2, 3), fs=16000, seconds=10.0, background=True):
    rng = np.random.default_rng(1)
    n = int(fs * seconds)
    for i, k in enumerate(sources):
        clean = root / split / "clean" / f"filenum_{i}"
        clean.mkdir(parents=True)
        imgs = [0.1 * rng.standard_normal((n, 4)).astype(np.float32) for _ in range(k)]
        for j, x in enumerate(imgs):
            sf.write(clean / f"foreground{j}_sound.wav", x, fs, subtype="FLOAT")
        mix = sum(imgs)
        if background:
            bg = 0.01 * rng.standard_normal((n, 4)).astype(np.float32)
            sf.write(clean / "background0_sound.wav", bg, fs, subtype="FLOAT")
            mix = mix + bg
        (root / split / "mixed").mkdir(parents=True, exist_ok=True)
        sf.write(root / split / "mixed" / f"filenum_{i}_mixed.wav", mix, fs, subtype="FLOAT")


def test_mcfuss_loader_crops_pads_and_keeps_the_mixture_consistent(tmp_path):
    from deepasa.data.mcfuss import MCFussDataset

    _write_mcfuss(tmp_path, "train")
    _write_mcfuss(tmp_path, "test", sources=(4,), background=False)
    train = MCFussDataset(tmp_path, "train", n_slots=4, train=True)
    item = train[1]
    assert item["mixture"].shape == (4, 64000) and item["image"].shape == (4, 4, 64000)
    assert int(item["num_sources"]) == 3 and item["image"][3].abs().max() == 0
    assert torch.allclose(item["image"].sum(0) + item["noise"], item["mixture"], atol=1e-5)
    torch.manual_seed(0)
    a = train[0]["mixture"]
    torch.manual_seed(1)
    assert not torch.equal(a, train[0]["mixture"])           # training crops move
    val = MCFussDataset(tmp_path, "train", n_slots=4, train=False, seed=3)
    assert torch.equal(val[0]["mixture"], val[0]["mixture"])  # validation crops are fixed per item
    test = MCFussDataset(tmp_path, "test", n_slots=4)
    full = test[0]
    assert full["mixture"].shape == (4, 160000) and int(full["num_sources"]) == 4
    assert torch.allclose(full["image"].sum(0) + full["noise"], full["mixture"], atol=1e-5)
    with pytest.raises(DeepASAError, match="more than"):
        MCFussDataset(tmp_path, "test", n_slots=3)[0]


# ------------------------------------------------------------------------------------------------ DCASE 2025 T4
def test_dcase25t4_loader_reads_soundscapes_and_labelled_targets(tmp_path):
    from deepasa.data.dcase25t4 import DCASE2025T4_CLASSES, DCASE25T4Dataset

    fs, n = 32000, 32000 * 10
    rng = np.random.default_rng(2)
    (tmp_path / "test" / "soundscape").mkdir(parents=True)
    (tmp_path / "test" / "oracle_target").mkdir(parents=True)
    for name, labels in (("soundscape_000", ["Speech", "Blender"]), ("soundscape_001", ["Cough"])):
        sf.write(tmp_path / "test" / "soundscape" / f"{name}.wav", 0.1 * rng.standard_normal((n, 4)), fs)
        for lab in labels:
            sf.write(tmp_path / "test" / "oracle_target" / f"{name}_{lab}.wav", 0.1 * rng.standard_normal(n), fs)
    ds = DCASE25T4Dataset(tmp_path, "test", n_slots=3, sample_rate=16000)
    assert len(ds) == 2 and len(ds.class_names) == 18
    a = ds[0]
    assert a["mixture"].shape == (4, 160000) and a["image"].shape == (3, 1, 160000)
    assert a["cls"].tolist() == [DCASE2025T4_CLASSES.index("Blender"), DCASE2025T4_CLASSES.index("Speech"), -1]
    assert a["image"][2].abs().max() == 0 and int(a["num_sources"]) == 2
    crop = DCASE25T4Dataset(tmp_path, "test", n_slots=3, sample_rate=16000, train=True)[1]
    assert crop["mixture"].shape == (4, 64000) and crop["cls"].tolist()[0] == DCASE2025T4_CLASSES.index("Cough")
    with pytest.raises(DeepASAError):
        DCASE25T4Dataset(tmp_path, "valid")


# ------------------------------------------------------------------------------------------------ DataModule
def test_datamodule_simulated_training_and_validation(tiny_bank_home):
    from deepasa.train.data import DeepASADataModule

    dm = DeepASADataModule(simulate=True, bank_home=str(tiny_bank_home), sample_rate=8000, clip_seconds=1.0,
                           scene_config={"num_sources": [1, 2], "num_sources_weights": [1, 1]}, epoch_size=2,
                           val_scenes=1, batch_size=2)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["mixture"].shape == (2, 4, 8000) and batch["doa"].shape == (2, 5, 10, 3)
    assert len(dm.val_set) == 1 and len(dm.class_names) == 10
    with pytest.raises(DeepASAError):
        DeepASADataModule(root=None, simulate=False)
    with pytest.raises(DeepASAError):
        DeepASADataModule(dataset="nope", root="x")
    json.dumps(dm.describe())
