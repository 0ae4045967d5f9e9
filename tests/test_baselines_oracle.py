"""The oracle system and the shared scoring path (score_system) that every row of benchmarks/quality.py uses.

Independent truth: the oracle reads the simulator's labels, so every SELD metric must be perfect; the
mixture returned as every estimate has an SI-SDR improvement of exactly 0 dB by definition; a slot
permutation of the outputs must not change any score (the scoring aligns slots itself).
"""

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

SCENES = {"duration": 2.0, "sample_rate": 16000, "num_sources": [2, 3], "num_sources_weights": [1, 1]}
QUALITY = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"


class _SimulatedOnce(torch.utils.data.Dataset):
    """A map-style dataset's items, computed once; every access returns a fresh copy (tensors cloned), as the
    on-the-fly dataset, which simulates the scene again on each access, does. The tests below read the scenes
    about a dozen times; simulating them once instead of each time saves ~1.7 s a reading."""

    def __init__(self, dataset):
        self.items = [dataset[i] for i in range(len(dataset))]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return {k: v.clone() if torch.is_tensor(v) else copy.deepcopy(v) for k, v in self.items[i].items()}


@pytest.fixture(scope="module")
def scenes(tiny_bank_home):
    from deepasa.data.onthefly import SimulatedScenes

    sim = SimulatedScenes(tiny_bank_home, split="test", scene_config=SCENES, seed=5, num_scenes=3, n_slots=4)
    once = _SimulatedOnce(sim)
    for i in range(len(sim)):  # the simulation is deterministic: a second access gives the same item
        again, cached = sim[i], once[i]
        assert again.keys() == cached.keys()
        assert all(torch.equal(v, cached[k]) if torch.is_tensor(v) else v == cached[k] for k, v in again.items())
    return once


def _score(system, scenes, **kw):
    from deepasa.evaluation.scoring import score_system

    return score_system(system, scenes, n_classes=3, class_names=["a", "b", "c"], with_sdr=False,
                        progress=False, **kw)


def test_oracle_is_perfect_on_seld_and_separates(scenes):
    from deepasa.baselines.oracle import OracleBaseline

    rep = _score(OracleBaseline(n_classes=3), scenes, detail=True)
    assert rep["seld"]["ER"] == pytest.approx(0.0, abs=1e-9)
    assert rep["seld"]["F"] == pytest.approx(1.0, abs=1e-6)
    assert rep["seld"]["LE"] == pytest.approx(0.0, abs=1e-3)
    assert rep["localization"]["F"] == pytest.approx(1.0, abs=1e-6)
    assert rep["separation"]["si_sdri_db"] > 5.0
    assert rep["ca_sdri"]["ca_sdri_db"] > 5.0
    assert len(rep["details"]["clips"]) == 3
    # one record per active source, each with its separation and localization scores
    n_src = sum(int((s["cls"] >= 0).sum()) for s in scenes)
    assert len(rep["details"]["sources"]) == n_src
    assert all(r["doa_error_deg"] < 1e-3 and r["frame_recall"] == 1.0 for r in rep["details"]["sources"])
    assert rep["objects"] == {"n_sources": n_src, "n_detected": n_src, "detection_rate": 1.0, "class_accuracy": 1.0,
                              "class_accuracy_all": 1.0, "doa_error_median_deg": pytest.approx(0.0, abs=1e-3)}


def test_object_recovery_counts_misses_wrong_classes_and_doa_errors(scenes):
    """The oracle with its first slot silenced, its second slot's class shifted and every DoA turned by 90°
    about z, against counts and angles computed by hand from the labels (the arc a 90° turn about z makes
    depends on each frame's elevation, so it is recomputed from the label vectors)."""
    from deepasa.baselines.oracle import OracleBaseline
    from deepasa.model.deepasa import DeepASAOutput

    oracle = OracleBaseline(n_classes=3)
    turn = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])      # 90° about z

    def corrupted(batch):
        t = oracle(batch).tensors()
        t["onoff"][:, 0] = -10.0                                                   # slot 0: never active
        t["cls_logits"][:, 1] = t["cls_logits"][:, 1].roll(1, dims=-1)             # slot 1: wrong class
        t["doa"] = t["doa"] @ turn.T                                               # (B, J, T', 3)
        return DeepASAOutput(**t)

    rep = _score(corrupted, scenes)["objects"]
    n_src = sum(int((s["cls"] >= 0).sum()) for s in scenes)
    assert rep["n_sources"] == n_src and rep["n_detected"] == n_src - 3       # slot 0 of each of the 3 scenes
    assert rep["detection_rate"] == pytest.approx((n_src - 3) / n_src)
    assert rep["class_accuracy"] == pytest.approx((n_src - 6) / (n_src - 3))  # slot 1 detected, wrong class
    assert rep["class_accuracy_all"] == pytest.approx((n_src - 3) / n_src)    # slot 0 keeps its right class
    per_source = []
    for s in scenes:                                                          # the angle the turn makes, by hand
        for j in range(1, int((s["cls"] >= 0).sum())):
            u = s["doa"][j][s["activity"][j] > 0.5].double().numpy()              # (T_on, 3) unit vectors
            v = u @ turn.double().numpy().T
            per_source.append(np.degrees(np.arccos(np.clip((u * v).sum(-1), -1, 1))).mean())
    assert rep["doa_error_median_deg"] == pytest.approx(float(np.median(per_source)), abs=1e-3)
    assert 0.0 < rep["doa_error_median_deg"] <= 90.0


def test_mixture_as_estimate_improves_nothing(scenes):
    from deepasa.model.deepasa import DeepASAOutput

    def mixture_system(batch):
        mix = batch["mixture"]                                            # (B, M, N)
        return DeepASAOutput(image=mix[:, None].expand(-1, 4, -1, -1).clone())   # (B, J, M, N)

    rep = _score(mixture_system, scenes)
    assert rep["separation"]["si_sdri_db"] == pytest.approx(0.0, abs=1e-6)
    assert "seld" not in rep and "localization" not in rep             # a system without SELD outputs


def test_slot_order_of_the_outputs_does_not_matter(scenes):
    from deepasa.baselines.oracle import OracleBaseline
    from deepasa.model.deepasa import DeepASAOutput

    oracle = OracleBaseline(n_classes=3)
    order = torch.tensor([2, 0, 3, 1])

    def shuffled(batch):
        out = oracle(batch)
        return DeepASAOutput(**{k: v[:, order] for k, v in out.tensors().items() if k != "noise"}, noise=out.noise)

    a, b = _score(oracle, scenes), _score(shuffled, scenes)
    for block in ("separation", "seld", "localization", "ca_sdri"):
        for key, value in a[block].items():
            assert b[block][key] == pytest.approx(value, abs=1e-6), (block, key)


def test_quality_breakdown_and_readme_table(scenes, tmp_path, monkeypatch):
    from deepasa.baselines.oracle import OracleBaseline

    spec = importlib.util.spec_from_file_location("quality", QUALITY)
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    rep = _score(OracleBaseline(n_classes=3), scenes, detail=True)
    meta = {}
    for item in scenes:
        k = int((item["cls"] >= 0).sum())
        meta[str(item["scene_id"])] = {"n_sources": k, "rt60": 0.35, "moving": [i == 0 for i in range(k)]}
    b = quality.breakdown(rep["details"], meta)
    assert sum(g["n_clips"] for g in b["n_sources"].values()) == 3
    assert list(b["rt60"]) == ["0.30-0.45"] and b["rt60"]["0.30-0.45"]["seld"] == pytest.approx(0.0, abs=1e-6)
    assert b["motion"]["moving"]["n_sources"] == 3                       # the first source of each scene
    assert b["motion"]["moving"]["n_sources"] + b["motion"]["static"]["n_sources"] == len(rep["details"]["sources"])
    entry = {k: v for k, v in rep.items() if k != "details"}
    result = {"test_set": {"data": "d", "split": "test", "n_items": 3, "available": 3, "seed": 1},
              "command": "python benchmarks/quality.py", "machine": {"threads": 1},
              "systems": {"oracle": {**entry, "params": 0, "gmacs_per_second": None, "rtf": 0.1, "breakdown": b}}}
    table = quality.markdown(result)
    row = next(line for line in table.splitlines() if line.startswith("| `oracle`"))
    assert row.count("|") == 10
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{quality.MARK_START}\nold\n{quality.MARK_END}\nrest\n")
    monkeypatch.setattr(quality, "README", readme)
    assert quality.update_readme(table)
    text = readme.read_text()
    assert "old" not in text and row in text and text.startswith("intro\n") and text.endswith("rest\n")
    assert np.isfinite(b["motion"]["moving"]["si_sdri_db"])


def test_returning_nothing_gains_nothing(scenes):
    """An all-zero estimate would score 0 dB SI-SDR by the eps guards, i.e. a gain over weak sources; it is
    scored as the unprocessed mixture instead (improvement exactly 0 dB)."""
    from deepasa.metrics.separation import evaluate_separation, si_sdr
    from deepasa.model.deepasa import DeepASAOutput

    rep = _score(lambda batch: DeepASAOutput(image=torch.zeros(*batch["direct"].shape)), scenes, detail=True)
    assert rep["separation"]["si_sdri_db"] == pytest.approx(0.0, abs=1e-9)
    assert all(r["si_sdri_db"] == 0.0 for r in rep["details"]["sources"])
    # the raw metric shows why: 0 dB for silence, below 0 dB for the mixture of a weak source
    item = scenes[0]
    tgt = (item["direct"] + item["reverb"])[0].double().numpy()         # (M, N) loudest-first source 0
    assert si_sdr(np.zeros_like(tgt[0]), tgt[0]) == pytest.approx(0.0, abs=1e-9)
    one = evaluate_separation(np.zeros_like(tgt)[None], tgt[None], item["mixture"].double().numpy(), with_sdr=True)
    assert one["si_sdri_db"] == 0.0 and one["sdri_db"] == 0.0 and one["si_sdri_m2m_db"] == 0.0


def test_quality_update_keeps_the_rows_it_does_not_rescore(tmp_path):
    """`quality.py --update`: rows of systems not scored again are copied with the command that scored them;
    an earlier result on another test set is refused (exit 2), and the table names each row's command."""
    from types import SimpleNamespace

    from deepasa.errors import DeepASAError

    spec = importlib.util.spec_from_file_location("quality", QUALITY)
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    old = {"command": "python benchmarks/quality.py --data d", "test_set": {"split": "test", "n_items": 3},
           "systems": {"deepasa": {"rtf": 0.2}, "classical": {"rtf": 0.3}, "oracle": {"rtf": 0.1, "command": "c0"}}}
    path = tmp_path / "quality.json"
    path.write_text(json.dumps(old))
    kept = quality.kept_rows(path, SimpleNamespace(split="test", systems=["deepasa"]), 3)
    assert kept == {"classical": {"command": "python benchmarks/quality.py --data d", "rtf": 0.3},
                    "oracle": {"rtf": 0.1, "command": "c0"}}
    with pytest.raises(DeepASAError, match="scored 3 scenes of split 'test', this run 200"):
        quality.kept_rows(path, SimpleNamespace(split="test", systems=["deepasa"]), 200)
    bad = subprocess.run([sys.executable, str(QUALITY), "--update", "--systems", "oracle", "--limit", "1",
                          "--data", str(tmp_path / "data"), "--split", "val"], capture_output=True, text=True)
    val = tmp_path / "data" / "val"
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [               # the script: one line, exit 2
        f"quality.py: error: no scenes at {val} (expected {val}/mixed/*.wav)"]
    result = {"test_set": {"data": "d", "split": "test", "n_items": 3, "available": 3, "seed": 1},
              "command": "several", "machine": {"threads": 2},
              "systems": {"deepasa": {"rtf": 0.2, "command": "new"}, **kept}}
    text = quality.markdown(result)
    assert "Row `deepasa`: `new`." in text and "Row `oracle`: `c0`." in text


@pytest.mark.parametrize("onoff_bias", [-8.0, 8.0])
def test_quality_scores_network_slots_as_analyze_outputs_them(scenes, onoff_bias):
    """A slot its rule never marks active is no object: silence; a slot always active keeps its audio."""
    from torch.utils.data import default_collate

    from conftest import tiny_model_with_fixed_heads

    spec = importlib.util.spec_from_file_location("quality", QUALITY)
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    model = tiny_model_with_fixed_heads(onoff_bias, doa=[3.0, 0.0, 0.0]).eval()   # ‖tanh(doa)‖ ≈ 1 > 0.5
    batch = default_collate([scenes[0]])
    x = batch["mixture"][..., : model.config.clip_samples]
    batch = {**batch, "mixture": x}
    with torch.no_grad():
        raw = model(x)
        out = quality.as_analyzed(lambda b: model(b["mixture"]), model.decision_rule)(batch)
    if onoff_bias < 0:
        assert torch.all(out.image == 0) and torch.all(out.direct == 0)
    else:
        torch.testing.assert_close(out.image, raw.image)


def test_quality_builds_the_trajectory_first_rows():
    """Each trajectory-first row of quality.py is the pipeline with the trajectories it names."""
    import argparse

    from deepasa.evaluation.trajectory_system import TrajectoryFirstSystem

    spec = importlib.util.spec_from_file_location("quality", QUALITY)
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    names = ["speech", "machine", "alarm"]
    systems = quality.build_systems(list(quality.TRAJECTORIES), argparse.Namespace(), names)
    assert set(systems) == set(quality.TRAJECTORIES)
    for name, source in quality.TRAJECTORIES.items():
        system = systems[name]["system"]
        assert isinstance(system, TrajectoryFirstSystem) and system.class_names == names
        assert (system.oracle == source) if source not in ("finder", "srp") else (system.finder.spec.endswith(
            "finder.pt") if source == "finder" else system.finder.spec == "srp")
