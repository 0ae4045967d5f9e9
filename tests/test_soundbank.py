"""Sound bank: manifest invariants, a real fetch of one tiny Debian package, the API and CLI errors."""

from __future__ import annotations

import csv
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepasa import cli
from deepasa.errors import DeepASAError
from deepasa.scenes import bank_audio, bank_fetch, bank_synth
from deepasa.scenes.soundbank import (SPLITS, SoundBank, class_names, clip_relpath, default_home, load_manifest,
                                      load_taxonomy)

TINY = "sound-theme-freedesktop"   # 0.4 MB .deb
STARSS23 = {"Female speech, woman speaking", "Male speech, man speaking", "Clapping", "Telephone", "Laughter",
            "Domestic sounds", "Walk, footsteps", "Door, open or close", "Music", "Musical instrument",
            "Water tap, faucet", "Bell", "Knock"}
DCASE2025_T4 = {"AlarmClock", "BicycleBell", "Blender", "Buzzer", "Clapping", "Cough", "CupboardOpenClose", "Dishes",
                "Doorbell", "FootSteps", "HairDryer", "MechanicalFans", "MusicalKeyboard", "Percussion", "Pour",
                "Speech", "Typing", "VacuumCleaner"}


@pytest.fixture(scope="module")
def manifest() -> list[dict]:
    return load_manifest()


def run_cli(argv: list[str]) -> int:
    """Call the real entry point."""
    return cli.main(argv)


# ------------------------------------------------------------------------------------- taxonomy/manifest
def test_taxonomy_fields_and_mappings():
    tax = load_taxonomy()
    assert len(tax) >= 10
    assert len({c["name"] for c in tax}) == len(tax)
    for c in tax:
        assert set(c) >= {"name", "description", "starss23", "dcase2025_t4"}
        if c["starss23"] is not None:
            assert set(c["starss23"].split(" | ")) <= STARSS23, c
        if c["dcase2025_t4"] is not None:
            assert c["dcase2025_t4"] in DCASE2025_T4, c


def test_manifest_counts_meet_thresholds(manifest):
    counts = Counter((r["label"], r["split"]) for r in manifest)
    assert set(r["label"] for r in manifest) == set(class_names())
    assert len(class_names()) >= 10
    for label in class_names():
        assert counts[(label, "train")] >= 40, label
        assert counts[(label, "val")] >= 5, label
        assert counts[(label, "test")] >= 10, label
    assert sum(r["label"] == "speech" for r in manifest) <= 600


def test_manifest_is_clip_and_group_disjoint(manifest):
    assert len({r["clip_id"] for r in manifest}) == len(manifest)
    sources = Counter((r["package"], r["member"]) for r in manifest if r["source"] == "deb")
    assert max(sources.values()) == 1                      # no source file listed twice (so not in two splits)
    specs = Counter((r["source"], str(sorted(r["spec"].items()))) for r in manifest if r["source"] != "deb")
    assert max(specs.values()) == 1                        # no synthetic render listed twice
    split_of_group = defaultdict(set)
    for r in manifest:
        split_of_group[r["group"]].add(r["split"])
    mixed = {g: s for g, s in split_of_group.items() if len(s) > 1}
    assert not mixed                                       # variants of one recording stay in one split


def test_speech_is_language_and_voice_disjoint(manifest):
    speech = [r for r in manifest if r["label"] == "speech"]
    langs = defaultdict(set)
    for r in speech:
        if r["source"] == "deb":
            assert r["group"].startswith("lang:"), r["clip_id"]
            langs[r["group"]].add(r["split"])
    assert all(len(s) == 1 for s in langs.values())
    assert {next(iter(s)) for s in langs.values()} == set(SPLITS)
    # synthetic voices: espeak language+variant and flite voice never shared between splits
    voices = defaultdict(set)
    variants = defaultdict(set)
    for r in speech:
        if r["source"] == "espeak-ng":
            voices["espeak:" + r["spec"]["voice"]].add(r["split"])
            variants[r["spec"]["voice"].split("+")[1]].add(r["split"])
        elif r["source"] == "flite":
            voices["flite:" + r["spec"]["voice"]].add(r["split"])
    assert voices and all(len(s) == 1 for s in voices.values())
    assert all(len(s) == 1 for s in variants.values())
    # the same voice actors' vocalisations follow their speech split
    for r in manifest:
        if r["label"] == "vocalization" and r["group"].startswith("lang:") and r["group"] in langs:
            assert {r["split"]} == langs[r["group"]]


def test_instrument_renders_are_program_disjoint(manifest):
    programs = defaultdict(set)
    for r in manifest:
        if r["source"] == "fluidsynth":
            programs[r["spec"]["program"]].add(r["split"])
    assert len(programs) > 50 and all(len(s) == 1 for s in programs.values())


# ------------------------------------------------------------------------------------- conditioning
def test_condition_resamples_trims_and_caps():
    sr = 44100
    t = np.arange(int(0.5 * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    x = np.concatenate([np.zeros(sr), tone, np.zeros(sr)]).astype(np.float32)
    y = bank_audio.condition(x, sr)
    assert y.dtype == np.float32 and abs(len(y) / 16000 - 0.54) < 0.03   # 0.5 s + 2 x 20 ms margins
    assert np.isclose(np.abs(y).max(), bank_audio.PEAK)
    long = np.tile(tone, 30)
    assert len(bank_audio.condition(long, sr)) == 10 * 16000
    assert bank_audio.condition(np.zeros(sr, np.float32), sr) is None


# ------------------------------------------------------------------------------------- real fetch
@pytest.fixture(scope="module")
def fetched_home(tmp_path_factory) -> Path:
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pytest.skip("apt-get/dpkg not available: cannot fetch Debian packages here")
    home = tmp_path_factory.mktemp("deepasa_home")
    try:
        rc = run_cli(["sounds", "fetch", "--home", str(home), "--packages", TINY, "--no-synth", "--workers", "1"])
    except DeepASAError as exc:   # pragma: no cover - only without network
        pytest.skip(f"could not fetch {TINY}: {exc}")
    if rc != 0:
        pytest.skip(f"could not fetch {TINY} (no Debian mirror reachable?)")
    return home


def test_fetch_writes_16k_mono_trimmed_clips_matching_manifest(fetched_home, manifest):
    with open(fetched_home / "bank" / "index.csv", newline="") as f:
        index = list(csv.DictReader(f))
    expected = {r["clip_id"]: r for r in manifest if r["package"] == TINY}
    assert {r["clip_id"] for r in index} == set(expected)
    for row in index:
        ref = expected[row["clip_id"]]
        assert (row["label"], row["split"], row["licence"]) == (ref["label"], ref["split"], ref["licence"])
        path = fetched_home / row["path"]
        assert Path(row["path"]) == clip_relpath(ref)
        info = sf.info(str(path))
        assert info.samplerate == 16000 and info.channels == 1
        assert abs(info.frames / 16000 - float(row["duration"])) < 1e-3
        x, _ = sf.read(str(path), dtype="float32")
        assert 0.15 <= len(x) / 16000 <= 10.0
        # already trimmed: trimming again removes at most the kept margins
        assert len(x) - len(bank_audio.trim_silence(x, 16000)) <= int(0.05 * 16000)
    assert not (fetched_home / "debs" / "ex" / TINY).exists()          # unpacked tree removed after use
    assert not list((fetched_home / "debs").glob("*.deb"))              # and the download too


def test_fetch_is_idempotent(fetched_home, capsys):
    before = {p: p.stat().st_mtime_ns for p in (fetched_home / "bank").rglob("*.flac")}
    assert run_cli(["sounds", "fetch", "--home", str(fetched_home), "--packages", TINY, "--no-synth"]) == 0
    assert "0 clips written" in capsys.readouterr().out
    assert before == {p: p.stat().st_mtime_ns for p in (fetched_home / "bank").rglob("*.flac")}


def test_soundbank_api_on_fetched_bank(fetched_home):
    bank = SoundBank.open(fetched_home)
    assert bank.sample_rate == 16000 and bank.classes == class_names()
    clips = bank.clips("train", ["speech"])
    assert clips and all(c.label == "speech" and c.split == "train" for c in clips)
    x = bank.load(clips[0])
    assert x.dtype == np.float32 and x.ndim == 1 and abs(len(x) / 16000 - clips[0].duration) < 1e-3
    with pytest.raises(DeepASAError, match="valid classes"):
        bank.clips("train", ["unicorn"])
    with pytest.raises(DeepASAError, match="valid splits"):
        bank.clips("dev")


def test_interrupted_fetch_does_not_look_complete(fetched_home, tmp_path, monkeypatch):
    home = tmp_path / "home"
    calls = {"n": 0}
    real = bank_audio.condition_file

    def flaky(path, offset=0.0):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(path, offset)

    monkeypatch.setattr(bank_audio, "condition_file", flaky)
    with pytest.raises(KeyboardInterrupt):
        bank_fetch.fetch(home, list(SPLITS), packages=[TINY], synth=False, workers=1, progress=False)
    assert not (home / "bank" / "index.csv").exists()
    assert not list(home.rglob("*.tmp*"))
    with pytest.raises(DeepASAError, match="not fetched"):
        SoundBank.open(home)
    monkeypatch.setattr(bank_audio, "condition_file", real)
    summary = bank_fetch.fetch(home, list(SPLITS), packages=[TINY], synth=False, workers=1, progress=False)
    assert summary["skipped"] == 4 and summary["index_rows"] == summary["done"] + 4


# ------------------------------------------------------------------------------------- errors
def test_open_empty_home_raises(tmp_path):
    with pytest.raises(DeepASAError, match="sounds fetch"):
        SoundBank.open(tmp_path)


def test_default_home_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPASA_HOME", str(tmp_path))
    assert default_home() == tmp_path
    monkeypatch.delenv("DEEPASA_HOME")
    assert default_home() == Path.home() / ".cache" / "deepasa"


def test_unknown_class_raises(tmp_path):
    row = next(r for r in load_manifest() if r["label"] == "music")
    path = tmp_path / clip_relpath(row)
    bank_audio.write_clip(path, np.full(8000, 0.1, np.float32))
    bank_fetch.write_index(tmp_path, [row])
    bank = SoundBank.open(tmp_path)
    assert [c.clip_id for c in bank.clips(row["split"], ["music"])] == [row["clip_id"]]
    with pytest.raises(DeepASAError, match="music"):
        bank.clips("train", ["Music"])


def test_clips_no_longer_in_the_manifest_are_removed(tmp_path):
    row = load_manifest()[0]
    listed = tmp_path / clip_relpath(row)
    stale = tmp_path / "bank" / row["split"] / row["label"] / "from-an-older-manifest.flac"
    for path in (listed, stale):
        bank_audio.write_clip(path, np.full(8000, 0.1, np.float32))
    assert bank_fetch.remove_stale(tmp_path, [row]) == 1
    assert listed.is_file() and not stale.exists()


@pytest.mark.parametrize("argv", [
    ["sounds", "fetch", "--split", "dev"],
    ["sounds", "fetch", "--workers", "0"],
    ["sounds", "fetch", "--packages", "no-such-package"],
    ["sounds", "list"],
    ["sounds", "list", "--split", "dev", "--manifest"],
])
def test_cli_bad_input_exits_2_and_writes_nothing(argv, tmp_path, capsys):
    home = tmp_path / "home"
    assert run_cli([*argv, "--home", str(home)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deepasa sounds: error:")
    assert not home.exists()


def test_cli_list_manifest(capsys):
    assert run_cli(["sounds", "list", "--manifest"]) == 0
    out = capsys.readouterr().out
    for name in class_names():
        assert name in out


# ------------------------------------------------------------------------------------- synthetic
@pytest.mark.parametrize("source", ["espeak-ng", "flite", "fluidsynth"])
def test_synthetic_render(source, tmp_path, manifest):
    why = bank_synth.missing_tool(source)
    if why:
        pytest.skip(f"{why}: synthetic {source} clips are skipped")
    row = next(r for r in manifest if r["source"] == source and r["split"] == "test")
    out = tmp_path / "x.flac"
    assert bank_fetch._synth_job((row["source"], row["spec"], str(out))) is None
    x, sr = sf.read(str(out), dtype="float32")
    assert sr == 16000 and x.ndim == 1 and len(x) > 0.3 * sr and np.abs(x).max() > 0.5


def test_missing_synthesis_programs_are_skipped_with_one_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bank_synth, "missing_tool", lambda source: f"{source} is not installed")
    summary = bank_fetch.fetch(tmp_path, ["test"], packages=["espeak-ng", "fluidsynth"], workers=1, progress=False)
    assert summary["missing_tools"] == ["espeak-ng", "fluidsynth"] and summary["done"] == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("is not installed: skipping" in line for line in err)
    with open(tmp_path / "bank" / "index.csv") as f:
        assert f.read().count("\n") == 1                                # header only


def test_midi_writer_structure():
    notes, bpm = bank_synth.phrase(24, 7)
    assert notes == bank_synth.phrase(24, 7)[0]                       # deterministic from the seed
    data = bank_synth.midi_bytes(notes, 24, bpm)
    assert data[:4] == b"MThd" and data[14:18] == b"MTrk"
    assert int.from_bytes(data[18:22], "big") == len(data) - 22
    assert data.endswith(b"\xff\x2f\x00")
