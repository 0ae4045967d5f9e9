"""`deepasa simulate` end to end on a tiny bank: layout, determinism, shards, bad input, the loader."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepasa.cli import main
from deepasa.scenes.simulator import render_scene

FAST = ["--set", "duration=1.0", "--set", "num_sources=[1,2]", "--set", "num_sources_weights=[1,1]",
        "--quiet"]


def simulate(home, out, *extra):
    return main(["simulate", "--home", str(home), "--out", str(out), *FAST, *extra])


def files_of(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_invariants_on_disk(tiny_bank_home, tmp_path):
    out = tmp_path / "ds"
    assert simulate(tiny_bank_home, out, "--num-scenes", "3", "--split", "train", "--seed", "1") == 0
    split = out / "train"
    names = json.loads((out / "classes.json").read_text())
    assert names[:3] == sorted(set(names[:3]), key=names.index)
    for sid in ("000000", "000001", "000002"):
        mix, fs = sf.read(split / "mixed" / f"{sid}.wav", dtype="float32", always_2d=True)
        assert fs == 16000 and mix.shape == (16000, 4) and sf.info(split / "mixed" / f"{sid}.wav").subtype == "FLOAT"
        meta = json.loads((split / "meta" / f"{sid}.json").read_text())
        parts = sf.read(split / "noise" / f"{sid}.wav", dtype="float64")[0]
        for k in range(len(meta["sources"])):
            parts = parts + sf.read(split / "anechoic" / sid / f"{k}.wav", dtype="float64")[0]
            parts = parts + sf.read(split / "reverb" / sid / f"{k}.wav", dtype="float64")[0]
        assert np.abs(parts - mix).max() < 1e-6
        dcase = [line.split(",") for line in (split / "dcase" / f"{sid}.csv").read_text().split()]
        assert dcase and all(len(r) == 5 and 0 <= int(r[0]) < 10 for r in dcase)
        assert {int(r[1]) for r in dcase} <= {s["class_index"] for s in meta["sources"]}
        assert all(-180 <= int(r[3]) <= 180 and -90 <= int(r[4]) <= 90 for r in dcase)
        info = (split / "info" / f"{sid}.csv").read_text().splitlines()
        assert info[0] == "frame,src_idx,class,azimuth_deg,elevation_deg" and len(info) - 1 == len(dcase)
        assert all(s["clip_id"].startswith("fake-") and "-train-" in s["clip_id"] for s in meta["sources"])


def test_meta_is_enough_to_rerender(tiny_bank_home, tmp_path):
    from deepasa.scenes.simulator import load_dry
    from deepasa.scenes.soundbank import SoundBank

    out = tmp_path / "ds"
    assert simulate(tiny_bank_home, out, "--num-scenes", "1", "--split", "val", "--seed", "4") == 0
    meta = json.loads((out / "val" / "meta" / "000000.json").read_text())
    again = render_scene(meta, load_dry(SoundBank.open(tiny_bank_home), meta), meta["format"])
    mix = sf.read(out / "val" / "mixed" / "000000.wav", dtype="float32", always_2d=True)[0].T
    assert np.array_equal(again.mixture, mix)


def test_same_seed_same_bytes_whatever_the_workers_and_shards(tiny_bank_home, tmp_path):
    a, b, c, d = (tmp_path / x for x in "abcd")
    assert simulate(tiny_bank_home, a, "--num-scenes", "4", "--seed", "3") == 0
    assert simulate(tiny_bank_home, b, "--num-scenes", "4", "--seed", "3", "--workers", "2") == 0
    for k in range(2):
        assert simulate(tiny_bank_home, c, "--num-scenes", "4", "--seed", "3", "--shard", f"{k}/2") == 0
    assert simulate(tiny_bank_home, d, "--num-scenes", "4", "--seed", "4") == 0
    fa, fb, fc = files_of(a), files_of(b), files_of(c)
    assert sorted(fa) == sorted(fb) == sorted(fc)
    assert [k for k in fa if fa[k] != fb[k]] == [] and [k for k in fa if fa[k] != fc[k]] == []
    assert fa["train/mixed/000000.wav"] != files_of(d)["train/mixed/000000.wav"]


def test_splits_never_share_a_clip(tiny_bank_home, tmp_path):
    out = tmp_path / "ds"
    used = {}
    for split in ("train", "test"):
        assert simulate(tiny_bank_home, out, "--num-scenes", "6", "--split", split, "--seed", "0") == 0
        used[split] = {s["clip_id"] for p in (out / split / "meta").glob("*.json")
                       for s in json.loads(p.read_text())["sources"]}
        assert all(f"-{split}-" in c for c in used[split])
    assert not used["train"] & used["test"]


def test_foa_and_both_formats(tiny_bank_home, tmp_path):
    out = tmp_path / "ds"
    assert simulate(tiny_bank_home, out, "--num-scenes", "2", "--format", "both", "--seed", "2") == 0
    for fmt in ("mic", "foa"):
        assert (out / fmt / "classes.json").is_file()
        assert json.loads((out / fmt / "train" / "meta" / "000001.json").read_text())["format"] == fmt
    # the same scenes: identical geometry and labels in both formats
    ma, mb = (json.loads((out / f / "train" / "meta" / "000000.json").read_text()) for f in ("mic", "foa"))
    assert ma["sources"] == mb["sources"] and ma["room_dim"] == mb["room_dim"]


@pytest.mark.parametrize("args,needle", [
    (["--num-scenes", "0"], "--num-scenes"),
    (["--num-scenes", "-3"], "--num-scenes"),
    (["--num-scenes", "2", "--classes", "no_such_class"], "unknown class"),
    (["--num-scenes", "2", "--set", "rt60=0.9,0.3"], "rt60"),
    (["--num-scenes", "2", "--set", "no_such_key=1"], "unknown scene parameter"),
    (["--num-scenes", "2", "--shard", "3/2"], "--shard"),
])
def test_bad_input_exit_2_nothing_written(tiny_bank_home, tmp_path, capsys, args, needle):
    out = tmp_path / "ds"
    assert simulate(tiny_bank_home, out, *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err
    assert not out.exists()


def test_existing_output_and_missing_bank(tiny_bank_home, tmp_path, capsys):
    out = tmp_path / "ds"
    assert simulate(tiny_bank_home, out, "--num-scenes", "1") == 0
    before = files_of(out)
    assert simulate(tiny_bank_home, out, "--num-scenes", "1", "--seed", "9") == 2
    assert "exists" in capsys.readouterr().err and files_of(out) == before
    assert simulate(tiny_bank_home, out, "--num-scenes", "1", "--seed", "9", "--overwrite") == 0
    assert files_of(out) != before
    empty = tmp_path / "nohome"
    empty.mkdir()
    assert simulate(empty, tmp_path / "x", "--num-scenes", "1") == 2
    assert "sounds fetch" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_crash_leaves_no_complete_looking_scene(tiny_bank_home, tmp_path, monkeypatch, capsys):
    import deepasa.scenes.commands as commands

    real = commands.write_scene

    def flaky(split_dir, scene, subtype="FLOAT"):
        if scene.meta["scene_id"] == "000002":
            (Path(split_dir) / "anechoic" / "000002").mkdir(parents=True, exist_ok=True)
            raise OSError("disk full")  # dies half-way through the scene
        real(split_dir, scene, subtype)

    monkeypatch.setattr(commands, "write_scene", flaky)
    out = tmp_path / "ds"
    assert simulate(tiny_bank_home, out, "--num-scenes", "4") == 2
    assert "disk full" in capsys.readouterr().err
    assert not (out / "train").exists() and not list(out.glob(".train.partial-*"))
    # shard mode writes in place: finished scenes stay, the broken one has no mixture
    assert simulate(tiny_bank_home, out, "--num-scenes", "4", "--shard", "0/1") == 2
    assert sorted(p.stem for p in (out / "train" / "mixed").glob("*.wav")) == ["000000", "000001"]
    monkeypatch.setattr(commands, "write_scene", real)
    assert simulate(tiny_bank_home, out, "--num-scenes", "4", "--shard", "0/1") == 0  # resumes
    assert len(list((out / "train" / "mixed").glob("*.wav"))) == 4


def test_scene_dataset_reads_our_layout(tiny_bank_home, tmp_path):
    from deepasa.data import SceneDataset

    out = tmp_path / "ds"
    assert simulate(tiny_bank_home, out, "--num-scenes", "2", "--seed", "5") == 0
    ds = SceneDataset(out, "train", n_slots=3)
    item = ds[1]
    meta = json.loads((out / "train" / "meta" / "000001.json").read_text())
    k = len(meta["sources"])
    assert item["mixture"].shape == (4, 16000) and item["direct"].shape == (3, 4, 16000)
    assert item["activity"].shape == (3, 10) and item["doa"].shape == (3, 10, 3)
    assert int(item["num_sources"]) == k
    assert item["cls"][:k].tolist() == [s["class_index"] for s in meta["sources"]]
    assert (item["cls"][k:] == -1).all() and not item["direct"][k:].any() and not item["activity"][k:].any()
    norms = item["doa"].norm(dim=-1)
    assert np.allclose(norms[item["activity"] > 0], 1.0, atol=1e-5) and not norms[item["activity"] == 0].any()
    total = item["direct"].sum(0) + item["reverb"].sum(0) + item["noise"]
    assert (total - item["mixture"]).abs().max() < 1e-6


def test_scene_dataset_reads_asa_layout(tmp_path):
    """The authors' ASA layout: polar angle in info, no noise folder, header line, int16 wav."""
    from deepasa.data import SceneDataset

    root = tmp_path / "asa" / "test"
    rng = np.random.default_rng(0)
    imgs = [rng.standard_normal((16000, 4)) * 0.05 for _ in range(4)]
    noise = rng.standard_normal((16000, 4)) * 0.01
    for k in range(2):
        (root / "anechoic" / "7").mkdir(parents=True, exist_ok=True)
        (root / "reverb" / "7").mkdir(parents=True, exist_ok=True)
        sf.write(root / "anechoic" / "7" / f"{k}.wav", imgs[2 * k], 16000, subtype="FLOAT")
        sf.write(root / "reverb" / "7" / f"{k}.wav", imgs[2 * k + 1], 16000, subtype="FLOAT")
    (root / "mixed").mkdir()
    sf.write(root / "mixed" / "7.wav", sum(imgs) + noise, 16000, subtype="FLOAT")
    (root / "info").mkdir()
    (root / "info" / "7.csv").write_text("frame,src,cls,azi,polar\n0,0,4,90,90\n1,0,4,90,90\n3,1,2,0,0\n")
    item = SceneDataset(tmp_path / "asa", "test", n_slots=5)[0]
    assert item["cls"].tolist() == [4, 2, -1, -1, -1]
    assert np.allclose(item["doa"][0, 0].numpy(), [0, 1, 0], atol=1e-6)   # azimuth 90°, on the horizon
    assert np.allclose(item["doa"][1, 3].numpy(), [0, 0, 1], atol=1e-6)   # polar 0° = straight up
    assert item["activity"][0].tolist()[:4] == [1, 1, 0, 0]
    assert np.allclose(item["noise"].numpy(), noise.T, atol=1e-6)
