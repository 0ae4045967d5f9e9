"""The per-number-of-sources breakdown of score_system (``by_num_sources``) and its model-card table.

Independent truths: each per-N block must equal what score_system reports when run on the clips with that
number of sources alone (``torch.utils.data.Subset``), for the final outputs and for the Net-1 pass; the counts
of the per-N blocks add up to the whole; the object-level bootstrap intervals equal a naive bootstrap that
resamples clips explicitly and recomputes :func:`object_recovery` on each resample; every interval holds its
point estimate. The scenes are simulator scenes with explicit noise sources (no sound bank), the system an
oracle corrupted per clip in a way that depends on the clip alone, so a subset sees the same outputs.
"""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import simulated_noise_scenes
from torch.utils.data import Subset

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["a", "b", "c"]
COUNTS = [1, 2, 1, 2, 3, 1, 2]          # true sources of each clip: 3 clips with 1, 3 with 2, 1 with 3


@pytest.fixture(scope="module")
def scenes():
    return simulated_noise_scenes(COUNTS, CLASSES, rng_seed=0, scene_seed=3)


def _corrupt(out, batch, offset: int):
    """The oracle's outputs spoilt per clip, by rules of the clip's index alone: some slots silenced, some
    classes wrong, the DoA turned about z by a clip-dependent angle, some mixture leaked into the images."""
    from deepasa.model.deepasa import DeepASAOutput

    t = {k: v.clone() for k, v in out.tensors().items()}
    for b, sid in enumerate(batch["scene_id"]):
        i = int(sid) + offset
        for j in range(t["onoff"].shape[1]):
            if (i + j) % 3 == 0:
                t["onoff"][b, j] = -10.0                                           # slot never active
            if (i + j) % 4 == 1:
                t["cls_logits"][b, j] = t["cls_logits"][b, j].roll(1, dims=-1)     # wrong class
        a = math.radians(7.0 * (i % 5 + 1))
        turn = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
        t["doa"][b] = t["doa"][b] @ turn.T                                         # (J, T', 3)
        leak = 0.15 * (i % 4)
        mix = batch["mixture"][b].float()[None]                                    # (1, M, N)
        t["image"][b] = (1 - leak) * t["image"][b] + leak * mix
        t["direct"][b] = (1 - leak) * t["direct"][b] + leak * mix
    return DeepASAOutput(**t)


def _system(batch):
    """A CoI-like system: final outputs and a (differently spoilt) Net-1 pass."""
    from deepasa.baselines.oracle import OracleBaseline

    clean = OracleBaseline(n_classes=3)(batch)
    out = _corrupt(clean, batch, 0)
    out.net1 = _corrupt(clean, batch, 1)
    return out


def _score(dataset, **kw):
    from deepasa.evaluation.scoring import score_system

    return score_system(_system, dataset, n_classes=3, class_names=CLASSES, with_sdr=False, progress=False,
                        net1=True, **kw)


@pytest.fixture(scope="module")
def report(scenes):
    return _score(scenes)


def _assert_same(a, b, path=""):
    """Nested dicts/lists of numbers equal (NaN equals NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (path, sorted(a), sorted(b))
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{i}]")
    else:
        assert b == pytest.approx(a, rel=1e-9, abs=1e-9, nan_ok=True), path


BLOCKS = ("separation", "seld", "dcase", "localization", "ca_sdri", "objects")


@pytest.mark.parametrize("which", ["final", "net1"])
def test_each_block_is_score_system_on_that_subset(scenes, report, which):
    by_n = report["by_num_sources"] if which == "final" else report["net1"]["by_num_sources"]
    assert sorted(by_n, key=int) == ["1", "2", "3"]
    for n, block in by_n.items():
        idx = [i for i, k in enumerate(COUNTS) if k == int(n)]
        alone = _score(Subset(scenes, idx), by_num_sources=False)
        alone = alone if which == "final" else alone["net1"]
        assert "by_num_sources" not in alone
        assert block["n_items"] == len(idx) and block["n_sources"] == int(n) * len(idx)
        assert set(block) == {"n_items", "n_sources", "ci95", *(b for b in BLOCKS if b in alone)}
        for name in BLOCKS:
            assert name in block, name                                  # every block is supported by these data
            _assert_same(alone[name], block[name], f"{which}.{n}.{name}")
        _assert_same(alone["ci95"], block["ci95"], f"{which}.{n}.ci95")


def test_counts_add_up_and_the_whole_is_unchanged(scenes, report):
    by_n = report["by_num_sources"]
    assert sum(b["n_items"] for b in by_n.values()) == report["n_items"] == len(COUNTS)
    assert sum(b["n_sources"] for b in by_n.values()) == sum(COUNTS)
    for key in ("n_sources", "n_detected"):
        assert sum(b["objects"][key] for b in by_n.values()) == report["objects"][key]
    assert sum(b["dcase"]["n_files"] for b in by_n.values()) == report["dcase"]["n_files"]
    # the rest of the report is what it is without the breakdown, and batching does not change anything
    plain = _score(scenes, by_num_sources=False)
    for rep in (plain, plain["net1"]):
        assert "by_num_sources" not in rep
    _assert_same({k: v for k, v in plain.items() if k != "seconds"},
                 {k: v for k, v in report.items() if k not in ("seconds", "by_num_sources")} | {
                     "net1": {k: v for k, v in report["net1"].items() if k != "by_num_sources"}})
    batched = _score(scenes, batch_size=3)
    for rep, ref in ((batched, report), (batched["net1"], report["net1"])):
        for n in ref["by_num_sources"]:
            for name in BLOCKS:
                assert rep["by_num_sources"][n][name] == pytest.approx(ref["by_num_sources"][n][name], rel=1e-5,
                                                                       abs=1e-6, nan_ok=True), (n, name)


def test_intervals_hold_their_point_estimates(report):
    checked = 0
    for rep in (report, report["net1"]):
        for block in [rep, *rep["by_num_sources"].values()]:
            for key, (lo, hi) in block["ci95"].items():
                name, metric = key.split(".")
                value = block[name][metric]
                if value is None or not np.isfinite(value):
                    assert lo != lo and hi != hi, key                   # undefined estimate: NaN interval
                    continue
                assert lo - 1e-9 <= value <= hi + 1e-9, (key, lo, value, hi)
                checked += 1
            assert {"objects.detection_rate", "objects.class_accuracy", "objects.doa_error_median_deg"} <= set(
                block["ci95"])
    assert checked > 100
    one = report["by_num_sources"]["3"]                                 # a single clip: no spread to resample
    assert one["ci95"]["objects.detection_rate"] == [one["objects"]["detection_rate"]] * 2


def test_object_intervals_equal_a_naive_clip_bootstrap():
    """Against explicit resamples: the multinomial clip counts of the documented generator, each resample's
    records listed out and scored by object_recovery, then the 2.5 / 97.5 percentiles."""
    from deepasa.evaluation.scoring import object_intervals, object_recovery

    rng = np.random.default_rng(7)
    objects, clips = [], []
    for c in range(9):
        for _ in range(int(rng.integers(1, 5))):
            det = bool(rng.random() < 0.6)
            objects.append({"detected": det, "class_ok": bool(rng.random() < 0.5),
                            "doa_error_deg": float(rng.uniform(0, 90)) if det and rng.random() < 0.8 else None})
            clips.append(10 * c + 3)                                     # arbitrary labels
    got = object_intervals(objects, clips, resamples=300, seed=4)
    labels = sorted(set(clips))
    counts = np.random.default_rng(4).multinomial(len(labels), np.full(len(labels), 1 / len(labels)), size=300)
    stats = {k: [] for k in got}
    for row in counts:
        sample = [o for lab, w in zip(labels, row) for _ in range(w) for o, c in zip(objects, clips) if c == lab]
        rec = object_recovery(sample)
        for k in stats:
            stats[k].append(rec[k])
    for k, values in stats.items():
        v = np.asarray(values, dtype=float)
        assert got[k] == pytest.approx(list(np.percentile(v[np.isfinite(v)], [2.5, 97.5])), rel=1e-12), k
    none = object_intervals([{"detected": False, "class_ok": True, "doa_error_deg": None}] * 3, [0, 1, 2])
    assert none["detection_rate"] == [0.0, 0.0] and all(x != x for x in none["class_accuracy"])


def test_format_table_prints_the_per_n_rows(report):
    from deepasa.evaluation.scoring import format_table

    text = format_table({**report, "data": "scenes", "split": "test"})
    lines = text.splitlines()
    assert "by number of sources:" in lines and "net1 by number of sources:" in lines
    i = lines.index("by number of sources:")
    assert lines[i + 1].split()[:3] == ["N", "clips", "sources"]
    rows = [line.split() for line in lines[i + 2:i + 5]]
    assert [r[:3] for r in rows] == [["1", "3", "3"], ["2", "3", "6"], ["3", "1", "3"]]
    assert float(rows[0][3]) == pytest.approx(report["by_num_sources"]["1"]["objects"]["detection_rate"], abs=5e-4)


def _model_card():
    spec = importlib.util.spec_from_file_location("model_card", REPO / "scripts" / "model_card.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _synthetic(value: float, with_breakdown: bool = True) -> dict:
    """A small report of the evaluate layout: objects/separation/SELD/DCASE blocks, per N for N = 1, 2."""
    def blocks(v):
        b = {"objects": {"detection_rate": v, "class_accuracy": v / 2, "doa_error_median_deg": 10 * v,
                         "n_sources": 4, "n_detected": 2},
             "separation": {"si_sdri_db": 3 * v, "direct_si_sdri_db": 2 * v},
             "seld": {k: v for k in ("ER", "F", "LE", "LR", "SELD")},
             "dcase": {**{k: v / 4 for k in ("ER", "F", "LE", "LR", "SELD")}, "n_files": 2}}
        ci = {f"{blk}.{k}": [x - 0.1, x + 0.1] for blk, d in b.items() for k, x in d.items() if k[:2] != "n_"}
        return b, ci

    top, ci = blocks(value)
    rep = {"n_items": 6, "split": "test", **top, "ci95": ci}
    if with_breakdown:
        rep["by_num_sources"] = {}
        for n in (1, 2):
            b, c = blocks(value + n / 10)
            rep["by_num_sources"][str(n)] = {"n_items": 3, "n_sources": 3 * n, **b, "ci95": c}
    return rep


def test_model_card_renders_the_per_n_table(tmp_path):
    card = _model_card()
    coi = _synthetic(0.5)
    coi["net1"] = {k: v for k, v in _synthetic(0.3).items() if k not in ("n_items", "split")}
    (tmp_path / "default_1-2.json").write_text(json.dumps(coi))
    (tmp_path / "net1_1-2.json").write_text(json.dumps(_synthetic(0.2, with_breakdown=False)))
    (tmp_path / "training.json").write_text(json.dumps({
        "default.pt": {"scene_passes": 6230, "wall_hours": 3.9, "threads": 2, "hardware": "2-core CPU"}}))
    text = card.by_num_sources_section(tmp_path)
    set_a, set_b = text.split("### Test set (b)")
    assert "--seed 2025" in set_a and "--seed 2026" in set_b and "'num_sources=[1,2]'" in set_b
    assert "No reports yet" in set_a and "not available" in set_a           # set (a) has no reports here
    assert "The breakdown is not available for `net1_1-2.json`" in set_b     # a report without the block
    headers = [line for line in set_b.splitlines() if line.startswith("| metric")]
    assert len(headers) == 2                                                 # N = 1 and N = 2
    assert all(h == f"| metric | default.pt | default.pt, its Net-1 pass | {card.NET1} |" for h in headers)
    one, two = set_b.split("**1 source** (3 clips, 3 sources)")[1].split("**2 sources** (3 clips, 6 sources)")
    # CoI and its own Net-1 pass side by side with their intervals; net1.pt has no breakdown: —
    row = next(line for line in one.splitlines() if "true sources detected" in line)
    assert row.split(" | ")[1:] == ["0.600 [0.500, 0.700]", "0.400 [0.300, 0.500]", "— |"]
    row = next(line for line in two.splitlines() if "image SI-SDRi" in line)
    assert row.split(" | ")[1:3] == ["2.10 [2.00, 2.20]", "1.50 [1.40, 1.60]"]
    assert sum(line.startswith("| ") for line in one.splitlines()) == 1 + len(card.BY_N_ROWS)   # header + rows
    cost = next(line for line in text.splitlines() if line.startswith("| `default.pt`"))
    assert "| 6,230 | 3.9 | 2 | 7.8 |" in cost                                  # CPU hours = 3.9 h × 2 threads
    assert card.by_num_sources_section(tmp_path) == text                     # deterministic (what --check needs)
    (tmp_path / "training.json").unlink()
    assert "Training cost: not given" in card.by_num_sources_section(tmp_path)
    # the whole-set table names the object rows' bootstrap once a report has their intervals
    (tmp_path / "default.json").write_text(json.dumps(coi))
    main = card.table(tmp_path)
    assert "bootstrap over clips for the object rows" in main
    assert "| analysed objects: true sources detected ↑ | 0.500 [0.400, 0.600] | 0.300 [0.200, 0.400] |" in main


def test_model_card_is_up_to_date_for_the_shipped_reports():
    """The shipped model's reports carry the breakdown, the older models' predate it: the card says so for
    those alone, and its block is what the reports give (what --check compares)."""
    card = _model_card()
    text = card.by_num_sources_section(card.CARD.parent / "eval")
    assert "The breakdown is not available for `previous_default.json`, `net1.json`" in text
    assert "**1 source** (110 clips, 110 sources)" in text and "**5 sources** (79 clips, 395 sources)" in text
    assert text in card.CARD.read_text()
