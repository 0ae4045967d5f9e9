"""The shipped model (checkpoints/default.pt) on simulated held-out scenes.

Skipped while the checkpoint is absent or the fetched sound bank's test split is missing; ``make test`` fetches
that split first, and under ``CI=true`` (``.ci/run``) such a skip fails (tests/conftest.py).

* What the model card claims and the model does: separation within 2 dB of the card's image SI-SDRi over 200
  test scenes (``checkpoints/eval/default.json``; −2.33 dB for the model shipped on 2026-12-02, which detects
  but does not separate yet; the untrained network scores about −7 dB).
* What issue 6 asks: analysed end to end, held-out scenes give back their sources' classes and directions
  within the model card's typical error, i.e. the ``objects`` block of ``checkpoints/eval/default.json``
  (``deepasa evaluate`` over the 200 test scenes; the card's table shows it): share of true sources detected,
  class accuracy and median DoA error of the detected ones, with a margin for the few scenes scored here.
  While the card reports no detected object, this test is a *strict* expected failure; a card with
  detections turns it into a plain test.
Independent truth: the simulator's labels (classes, per-frame directions, source images).
"""

import json

import numpy as np
import pytest

from deepasa.inference.analyze import DEFAULT_CHECKPOINT

pytestmark = pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(), reason="checkpoints/default.pt not shipped yet")

CARD_REPORT = DEFAULT_CHECKPOINT.parent / "eval" / "default.json"
CARD = json.loads(CARD_REPORT.read_text()).get("objects", {}) if CARD_REPORT.is_file() else {}
CARD_DETECTS = CARD.get("n_detected", 0) > 0
CARD_SEPARATION = json.loads(CARD_REPORT.read_text()).get("separation", {}) if CARD_REPORT.is_file() else {}
SDR_MARGIN_DB = 2.0                       # below the card's image SI-SDRi, for the 3 scenes scored here
SEEDS = (11, 12, 13, 14, 15, 16)         # ~20 sources: a rate's standard error is about 0.11
RATE_MARGIN = 0.3                         # below the card's detection rate / class accuracy
DOA_MARGIN_DEG = 20.0                     # above the card's median DoA error


@pytest.fixture(scope="module")
def shipped_model():
    """The shipped model, loaded once for both tests (neither changes it)."""
    from deepasa.inference import load_model

    return load_model()


@pytest.fixture(scope="module")
def held_out_scene(held_out_bank):
    """simulate_scene(seed, index 0, the test split, MIC) by seed, each simulated once for both tests."""
    from deepasa.scenes.simulator import simulate_scene

    scenes = {}

    def get(seed: int):
        if seed not in scenes:
            scenes[seed] = simulate_scene(seed=seed, index=0, split="test", bank=held_out_bank, fmt="mic")
        return scenes[seed]

    return get


def test_shipped_model_separates_as_its_card_says(shipped_model, held_out_scene):
    import torch

    from deepasa.losses import apply_permutation, pit_sa_sdr
    from deepasa.metrics.separation import improvement, si_sdr

    model = shipped_model
    gains = []
    for seed in (11, 12, 13):
        scene = held_out_scene(seed)
        with torch.inference_mode():
            out = model(torch.as_tensor(scene.mixture, dtype=torch.float32)[None])
        truth = torch.as_tensor(scene.direct + scene.reverb, dtype=torch.float32)[:, 0]       # (K, N)
        k = truth.shape[0]
        target = torch.zeros(1, model.config.n_slots, truth.shape[-1])                    # (1, J, N)
        target[0, :k] = truth
        _, perm = pit_sa_sdr(out.image[:, :, 0], target)                                  # (1, J)
        est = apply_permutation(out.image[:, :, 0], perm)[0, :k].double().numpy()        # (K, N)
        gains += list(improvement(si_sdr, est, truth.double().numpy(), scene.mixture[0]))
    # the card's mean over 200 scenes, less a margin for 3 scenes (~10 sources, per-source spread ~3 dB); an
    # untrained network scores about -7 dB, so this still fails for a model that does not match its card
    card_gain = CARD_SEPARATION.get("si_sdri_db", 0.0)
    assert float(np.mean(gains)) > card_gain - SDR_MARGIN_DB, (gains, card_gain)


@pytest.mark.xfail(not CARD_DETECTS, strict=True,
                   reason="the model card reports no detected object (checkpoints/eval/default.json; issue 6)")
def test_shipped_model_recovers_classes_and_directions_as_its_card_says(shipped_model, held_out_scene):
    from deepasa.inference import analyze
    from deepasa.inference.commands import match_estimates

    model = shipped_model
    rows = []
    for seed in SEEDS:
        scene = held_out_scene(seed)
        result = analyze(model, scene.mixture, sample_rate=scene.meta["sample_rate"], log=lambda m: None)
        rows += match_estimates(scene, result)
    found = [r for r in rows if r["estimate"] is not None]
    assert found, f"no object detected in {len(SEEDS)} scenes: {rows}"
    detection = len(found) / len(rows)
    accuracy = float(np.mean([r["true_class"] == r["est_class"] for r in found]))
    errors = [r["doa_error_deg"] for r in found if r["doa_error_deg"] is not None]
    assert detection >= CARD["detection_rate"] - RATE_MARGIN, (detection, CARD, rows)
    assert accuracy >= CARD["class_accuracy"] - RATE_MARGIN, (accuracy, CARD, rows)
    assert errors and float(np.median(errors)) <= CARD["doa_error_median_deg"] + DOA_MARGIN_DEG, (errors, CARD)
