"""Issue 15: ``deepasa evaluate`` on STARSS23 scores the DCASE metrics per recording (the official definition),
not per model-length clip.

A synthetic STARSS23 dev-test folder holds two recordings that the loader cuts into 1-s clips (the ``tiny``
model's length); one clip has no reference event, and events end inside clips, so scoring clip by clip would
drop false positives and frames that the official metric counts. The model is a ``tiny`` network whose heads
are fixed: every slot active in every frame, one class, one direction, so its predictions are known without
running it. Independent truth: the official segment metric (:func:`deepasa.metrics.seld_dcase.dcase_seld_metrics`,
checked against the challenge code elsewhere) applied to the whole recordings, the references read back from
the metadata CSV files with the official-format reader.
"""

import csv

import numpy as np
import pytest
import soundfile as sf
import torch

from deepasa.metrics.seld_dcase import dcase_seld_metrics, read_dcase_csv
from deepasa.evaluation.scoring import evaluate

CLASS = 4                         # the class every slot predicts ("Laughter")
DOA_BIAS = (3.0, 1.0, 0.5)        # the DoA head outputs tanh(DOA_BIAS) in every frame
FAR_CLASS = 8


def _predicted_direction():
    d = np.tanh(np.asarray(DOA_BIAS))
    d /= np.linalg.norm(d)
    return float(np.degrees(np.arctan2(d[1], d[0]))), float(np.degrees(np.arcsin(d[2]))), d


@pytest.fixture(scope="module")
def fixed_model(tmp_path_factory):
    """A saved ``tiny`` model (13 classes, 8 kHz, 1-s clips): all slots on, class CLASS, direction DOA_BIAS."""
    from conftest import tiny_model_with_fixed_heads

    model = tiny_model_with_fixed_heads(8.0, DOA_BIAS)
    sd = model.state_dict()
    for key in ("seld.classnet.asp.out", "seld.classnet.freq_out.1"):   # clip logits = the sum of both
        sd[f"{key}.weight"].zero_()
        sd[f"{key}.bias"].zero_()
    sd["seld.classnet.asp.out.bias"][CLASS] = 8.0
    model.load_state_dict(sd)
    return model, model.save(tmp_path_factory.mktemp("ckpt") / "fixed.pt")


def _write_recording(root, name: str, seconds: float, rows: list[tuple]) -> None:
    """A 4-ch 24-kHz MIC recording and its metadata (rows: frame, class, source, azimuth, elevation)."""
    audio, meta = root / "mic_dev" / "dev-test-sony", root / "metadata_dev" / "dev-test-sony"
    audio.mkdir(parents=True, exist_ok=True)
    meta.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(len(name)).standard_normal((int(24000 * seconds), 4)) * 0.1   # (N, 4)
    sf.write(audio / f"{name}.wav", x, 24000, subtype="FLOAT")
    with open(meta / f"{name}.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)


@pytest.fixture(scope="module")
def starss(tmp_path_factory):
    root = tmp_path_factory.mktemp("starss23")
    az, el, _ = _predicted_direction()
    # rec A, 3 s = clips 0-2: the predicted class at the predicted direction in frames 0-9, nothing in
    # clip 1 (frames 10-19), again in frames 20-25; so its official length is 25 frames
    rows_a = [(t, CLASS, 0, round(az, 2), round(el, 2)) for t in [*range(0, 10), *range(20, 26)]]
    # rec B, 2 s: the predicted class 90 degrees away across the clip boundary, another class in clip 0
    rows_b = sorted([(t, CLASS, 0, round(az + 90.0, 2), round(el, 2)) for t in range(3, 14)]
                    + [(t, FAR_CLASS, 1, -120.0, 10.0) for t in range(2, 6)])
    _write_recording(root, "fold4_roomA_mix001", 3.0, rows_a)
    _write_recording(root, "fold4_roomB_mix002", 2.0, rows_b)
    return root


def _prediction(n_frames: int, n_slots: int) -> dict:
    """What the fixed model predicts for a recording of ``n_frames`` label frames: every slot, every frame."""
    _, _, d = _predicted_direction()
    return {t: [(CLASS, j, d) for j in range(n_slots)] for t in range(n_frames)}


def _per_clip(frames: dict, clip_frames: int) -> dict[int, dict]:
    clips: dict[int, dict] = {}
    for t, rows in frames.items():
        clips.setdefault(t // clip_frames, {})[t % clip_frames] = rows
    return clips


def test_evaluate_scores_starss23_dcase_metrics_per_recording(fixed_model, starss):
    model, ckpt = fixed_model
    J = model.config.n_slots
    report = evaluate(ckpt, starss, split="test", dataset="starss23", seld_average="macro", with_sdr=False,
                      progress=False, batch_size=2)
    assert report["n_items"] == 5                                  # 3 + 2 one-second clips
    names = {"fold4_roomA_mix001": 30, "fold4_roomB_mix002": 20}
    meta = starss / "metadata_dev" / "dev-test-sony"
    refs = {n: read_dcase_csv(meta / f"{n}.csv") for n in names}
    preds = {n: _prediction(length, J) for n, length in names.items()}
    official = dcase_seld_metrics(preds, refs, 13, average="macro", jackknife=True)
    got = report["dcase"]
    assert got["n_files"] == 2
    # counts exactly; angles to the 0.01-degree rounding of the CSV files (evaluate writes its own, in float32)
    for key, tol in (("ER", 1e-9), ("F", 1e-9), ("LR", 1e-9), ("LE", 1e-3), ("SELD", 1e-5)):
        assert got[key] == pytest.approx(official[key], abs=tol), key
    assert report["ci95"]["dcase.SELD"] == pytest.approx(official["jackknife"]["SELD"]["ci"], abs=1e-4)
    # the same predictions scored clip by clip (what evaluate did before) give other numbers: the test can tell
    clip_pred, clip_ref = {}, {}
    for n in names:
        ref_clips, pred_clips = _per_clip(refs[n], 10), _per_clip(preds[n], 10)
        for k, ref in ref_clips.items():                           # a clip without events cannot be scored
            clip_pred[f"{n}_{k:03d}"], clip_ref[f"{n}_{k:03d}"] = pred_clips[k], ref
    per_clip = dcase_seld_metrics(clip_pred, clip_ref, 13, average="macro")
    assert abs(per_clip["ER"] - official["ER"]) > 0.5 and abs(per_clip["F"] - official["F"]) > 1e-3


def test_starss23_items_place_each_clip_in_its_recording(starss):
    from deepasa.data.starss23 import Starss23Dataset

    ds = Starss23Dataset(starss, "test", sample_rate=8000, clip_seconds=1.0)
    items = [ds[i] for i in range(len(ds))]
    assert [(it["recording"], int(it["frame_offset"])) for it in items] == [
        ("fold4_roomA_mix001", 0), ("fold4_roomA_mix001", 10), ("fold4_roomA_mix001", 20),
        ("fold4_roomB_mix002", 0), ("fold4_roomB_mix002", 10)]
    assert torch.equal(items[1]["activity"], torch.zeros_like(items[1]["activity"]))   # the empty clip
