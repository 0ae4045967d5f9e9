"""Shared fixtures: a tiny sound bank in a temporary $DEEPASA_HOME (real taxonomy names, synthetic clips).

Under ``CI=true`` (what ``.ci/run`` sets) a skipped test is a failure: CI must run every test, so a test that
would skip for a missing data set, tool or browser fails there instead. Only tests marked
``@pytest.mark.hardware`` (they need a GPU or a machine capability that a CI machine may lack) may still skip.
"""

import csv
import os

# One OpenBLAS thread for numpy and scipy, in this process and in the command-line runs the tests start (they
# inherit the environment), as most test modules run torch on one thread. Read when OpenBLAS loads, so before
# numpy is imported (pytest itself does not import it). On a busy 2-core machine OpenBLAS's second thread
# spin-waits for a core the other processes hold: numpy-heavy tests ran 1.6-3.5x slower with it (the classical
# baseline's WPE, the spatial stage, the rotation checks). Nothing checked depends on it; set the variable to
# choose otherwise.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pytest
import soundfile as sf


@pytest.fixture(scope="session")
def tiny_bank_home(tmp_path_factory):
    """A fetched-looking bank: 3 classes × (train 3, val 1, test 2) clips of coloured noise bursts, 16 kHz."""
    from deepasa.scenes.soundbank import INDEX_FIELDS, class_names

    home = tmp_path_factory.mktemp("deepasa_home")
    rng = np.random.default_rng(0)
    rows = []
    for label in class_names()[:3]:
        for split, count in (("train", 3), ("val", 1), ("test", 2)):
            for i in range(count):
                clip_id = f"fake-{label}-{split}-{i}"
                rel = f"bank/{split}/{label}/{clip_id}.flac"
                x = rng.standard_normal(int(16000 * rng.uniform(1.0, 3.0))) * 0.1
                (home / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(home / rel, x, 16000, subtype="PCM_16")
                rows.append({"clip_id": clip_id, "label": label, "split": split, "path": rel,
                             "duration": f"{len(x) / 16000:.4f}", "package": "test", "licence": "CC0",
                             "source": "test", "member": "", "group": f"{label}-{split}-{i}"})
    with open(home / "bank" / "index.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=INDEX_FIELDS)
        w.writeheader()
        w.writerows(rows)
    return home


def simulated_noise_scenes(counts, classes, rng_seed: int, scene_seed: int, n_slots: int = 3) -> list:
    """Dataset items (``deepasa.data.onthefly.scene_item``) of 1-s, 8-kHz simulated scenes, scene ``i`` with
    ``counts[i]`` Hann-windowed white-noise sources of classes ``classes[(i + j) % len(classes)]``.

    The scenes are the simulator's own (image-source order 2, events 0.6–1 s, SNR 20–30 dB): ground truth of
    activity, class and direction that the scoring tests check systems against.
    """
    from deepasa.data.onthefly import scene_item
    from deepasa.scenes.config import SceneConfig
    from deepasa.scenes.simulator import simulate_scene

    cfg = SceneConfig.from_dict({"duration": 1.0, "sample_rate": 8000, "ism_order": 2, "event_duration": [0.6, 1.0],
                                 "snr_db": [20.0, 30.0]})
    rng = np.random.default_rng(rng_seed)
    items = []
    for i, k in enumerate(counts):
        dry = [(classes[(i + j) % len(classes)], rng.standard_normal(8000) * np.hanning(8000)) for j in range(k)]
        scene = simulate_scene(seed=scene_seed, index=i, config=cfg, sources=dry, class_names=list(classes))
        items.append(scene_item(scene, n_slots=n_slots, scene_id=f"{i:03d}"))
    return items


def tiny_model_with_fixed_heads(onoff_bias: float, doa=None):
    """An untrained ``tiny`` DeepASA whose on/off logits are ``onoff_bias`` everywhere (±8: always / never
    active) and, when ``doa`` (3 values) is given, whose DoA head outputs tanh(doa) for every slot and frame."""
    import torch

    from deepasa.model import DeepASA, get_config

    torch.manual_seed(0)
    model = DeepASA(get_config("tiny"))
    sd = model.state_dict()
    sd["seld.classnet.onoff.1.bias"].fill_(onoff_bias)
    if doa is not None:
        sd["seld.doanet.out.1.weight"].zero_()
        sd["seld.doanet.out.1.bias"].copy_(torch.as_tensor(doa, dtype=torch.float32))
    model.load_state_dict(sd)
    return model


def pytest_configure(config):
    """Register the ``hardware`` marker."""
    config.addinivalue_line("markers", "hardware: needs hardware (a GPU, a compiler tool chain) that a CI machine "
                            "may lack; the only tests that may skip under CI=true")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under ``CI=true``, turn the skip of a test not marked ``hardware`` into a failure that says why."""
    outcome = yield
    rep = outcome.get_result()
    if (os.environ.get("CI") == "true" and rep.skipped and not hasattr(rep, "wasxfail")
            and item.get_closest_marker("hardware") is None):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = (f"skipped under CI=true, which must run every test (only @pytest.mark.hardware tests may "
                        f"skip): {reason}")


@pytest.fixture(scope="session")
def held_out_bank():
    """The fetched sound bank (``make bank-test``), skipped when its test split is absent (a failure under CI=true)."""
    from deepasa.errors import DeepASAError
    from deepasa.scenes.soundbank import SoundBank

    try:
        bank = SoundBank.open()
    except DeepASAError:
        pytest.skip("sound bank not fetched (deepasa sounds fetch --split test)")
    if not bank.clips("test"):
        pytest.skip("the sound bank has no test split")
    return bank


@pytest.fixture(scope="session")
def shipped_default_forward():
    """The shipped model's default forward on the fixed input of the issue-38 tests, run once for the two tests
    that pin it (tests/test_issue_38_bit_identity.py, the ``shipped`` case of tests/test_issue_38_forward_paths.py):
    a namespace of ``model`` (``DeepASA.from_pretrained(DEFAULT_CHECKPOINT, config="shipped").eval()``), ``x``
    (``0.1 * randn(1, M, N)`` of seed 1), ``calls`` (forward-hook counts of the audio heads and extensions,
    tests/bit_identity.py) and ``out`` (``model(x).tensors()`` without gradients, one thread)."""
    from types import SimpleNamespace

    import torch

    from deepasa.model import DeepASA
    from deepasa.model.deepasa import DEFAULT_CHECKPOINT
    from tests.bit_identity import count_calls

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = DeepASA.from_pretrained(DEFAULT_CHECKPOINT, config="shipped").eval()
        cfg = model.config
        x = 0.1 * torch.randn(1, cfg.n_mics, cfg.clip_samples, generator=torch.Generator().manual_seed(1))  # (1, M, N)
        calls = count_calls(model)
        with torch.no_grad():
            out = model(x).tensors()
    finally:
        torch.set_num_threads(threads)
    return SimpleNamespace(model=model, x=x, calls=dict(calls), out=out)
