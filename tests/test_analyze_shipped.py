"""The shipped model (checkpoints/default.pt) on simulated held-out scenes.

Skipped while the checkpoint is absent or the fetched sound bank's test split is missing.

* What the model card claims and the model does: separation better than the unprocessed mixture (card: image
  SI-SDRi +0.89 dB [0.57, 1.22] over 200 test scenes; the untrained network scores about −7 dB).
* What issue 6 asks and the model does not do yet: over three held-out scenes, among the true sources whose
  matched estimate is separated at SI-SDR >= 0 dB, the class is right for at least half, and the median DoA
  error (frames where both are active) is at most 30°. The card reports frame F = 0 (no object passes the
  decision rule yet), so this test is a *strict* expected failure: the day a better model passes it, the
  suite fails until the marker is removed and the tolerances are set from the new card.
Independent truth: the simulator's labels (classes, per-frame directions, source images).
"""

import numpy as np
import pytest

from deepasa.inference.analyze import DEFAULT_CHECKPOINT

pytestmark = pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(), reason="checkpoints/default.pt not shipped yet")

CLASS_ACCURACY_MIN = 0.5
DOA_MEDIAN_MAX_DEG = 30.0


def _bank():
    from deepasa.errors import DeepASAError
    from deepasa.scenes.soundbank import SoundBank

    try:
        bank = SoundBank.open()
    except DeepASAError:
        pytest.skip("sound bank not fetched (deepasa sounds fetch --split test)")
    if not bank.clips("test"):
        pytest.skip("the sound bank has no test split")
    return bank


def test_shipped_model_separates_as_its_card_says():
    import torch

    from deepasa.inference import load_model
    from deepasa.losses import apply_permutation, pit_sa_sdr
    from deepasa.metrics.separation import improvement, si_sdr
    from deepasa.scenes.simulator import simulate_scene

    bank = _bank()
    model = load_model()
    gains = []
    for seed in (11, 12, 13):
        scene = simulate_scene(seed=seed, index=0, split="test", bank=bank, fmt="mic")
        with torch.inference_mode():
            out = model(torch.as_tensor(scene.mixture, dtype=torch.float32)[None])
        truth = torch.as_tensor(scene.direct + scene.reverb, dtype=torch.float32)[:, 0]       # (K, N)
        k = truth.shape[0]
        target = torch.zeros(1, model.config.n_slots, truth.shape[-1])                    # (1, J, N)
        target[0, :k] = truth
        _, perm = pit_sa_sdr(out.image[:, :, 0], target)                                  # (1, J)
        est = apply_permutation(out.image[:, :, 0], perm)[0, :k].double().numpy()        # (K, N)
        gains += list(improvement(si_sdr, est, truth.double().numpy(), scene.mixture[0]))
    assert float(np.mean(gains)) > -2.0, gains


@pytest.mark.xfail(strict=True, reason="the shipped model detects no object yet (model card: frame F = 0.00; issue 6)")
def test_shipped_model_recovers_classes_and_directions():
    from deepasa.inference import analyze, load_model
    from deepasa.inference.commands import match_estimates
    from deepasa.scenes.simulator import simulate_scene

    bank = _bank()
    model = load_model()
    rows = []
    for seed in (11, 12, 13):
        scene = simulate_scene(seed=seed, index=0, split="test", bank=bank, fmt="mic")
        result = analyze(model, scene.mixture, sample_rate=scene.meta["sample_rate"], log=lambda m: None)
        rows += match_estimates(scene, result)
    good = [r for r in rows if r["estimate"] is not None and r["si_sdr_db"] >= 0.0]
    assert good, f"no source separated at SI-SDR >= 0 dB: {rows}"
    accuracy = np.mean([r["true_class"] == r["est_class"] for r in good])
    errors = [r["doa_error_deg"] for r in good if r["doa_error_deg"] is not None]
    assert accuracy >= CLASS_ACCURACY_MIN, rows
    assert errors and float(np.median(errors)) <= DOA_MEDIAN_MAX_DEG, rows
