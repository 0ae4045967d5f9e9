"""``analyze(..., separation="spatial")``: the parts add up to the recording, chunking is seamless, nothing is louder
(and with the network's own audio, ``noise.wav`` is the remainder too, so the parts add up there as well).

Independent truth: the input recording itself (the objects and the remainder must add up to it) and the
one-shot spatial stage on the whole clip (the chunked pass must agree with it away from nothing but edges).
"""

import numpy as np
import pytest
import torch

from deepasa.audio.geometry import SPEED_OF_SOUND, tetra_mic_offsets, unit_vector
from deepasa.errors import DeepASAError
from deepasa.inference.analyze import DEFAULT_CHECKPOINT, analyze, load_model, spatial_pass
from deepasa.inference.overlap_add import MemorySink
from deepasa.metrics.separation import si_sdr
from deepasa.separation import separate

torch.set_num_threads(1)
FS = 16000


def _plane(sig: np.ndarray, az: float) -> np.ndarray:
    """(N,) → (4, N): a plane wave from azimuth ``az`` (exact circular fractional advances)."""
    lead = tetra_mic_offsets() @ unit_vector(az, 0) / SPEED_OF_SOUND  # (4,)
    f = np.fft.rfftfreq(len(sig), 1 / FS)
    return np.fft.irfft(np.fft.rfft(sig)[None] * np.exp(2j * np.pi * f[None] * lead[:, None]), len(sig))


def _two_objects(n_s: float = 3.0):
    rng = np.random.default_rng(0)
    n = int(n_s * FS)
    mix = _plane(rng.standard_normal(n), 40) + _plane(rng.standard_normal(n), -110)  # (4, N)
    t = int(n_s * 10)
    act = np.ones((2, t), bool)
    act[1, : t // 3] = False
    doa = np.stack([np.tile(unit_vector(40, 0), (t, 1)), np.tile(unit_vector(-110, 0), (t, 1))])  # (2, T', 3)
    return mix.astype(np.float32), act, doa


def _blocks(x: np.ndarray, size: int = 5000):
    for i in range(0, x.shape[1], size):
        yield x[:, i:i + size]


def test_chunked_pass_adds_up_and_agrees_with_one_shot():
    mix, act, doa = _two_objects()
    sink = MemorySink()
    spatial_pass(_blocks(mix), mix.shape[1], FS, 0.1, [(7, act[0], doa[0]), (9, act[1], doa[1])], sink,
                 chunk_s=1.0, overlap_s=0.3)
    n = mix.shape[1]
    parts = sink.stream((7, "image"), n) + sink.stream((9, "image"), n) + sink.stream(("noise",), n)
    assert 10 * np.log10(((parts - mix) ** 2).sum() / (mix ** 2).sum()) < -100
    np.testing.assert_allclose(sink.stream((7, "direct"), n) + sink.stream((7, "reverb"), n),
                               sink.stream((7, "image"), n), atol=1e-5)
    whole = separate(mix, act, doa)
    for i, key in enumerate((7, 9)):
        assert si_sdr(sink.stream((key, "image"), n)[0], whole.image[i, 0]) > 15.0


needs_model = pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(), reason="checkpoints/default.pt not shipped")


@pytest.fixture(scope="module")
def noise_and_tone():
    """A simulated 4-s scene of a noise burst and a tone (simulated once for both separations)."""
    from deepasa.scenes.simulator import simulate_scene

    rng = np.random.default_rng(5)
    tone = np.sin(2 * np.pi * 440 * np.arange(3 * FS) / FS) * np.hanning(3 * FS)
    return simulate_scene(seed=21, sources=[("noise", rng.standard_normal(2 * FS)), ("tone", tone)])


@needs_model
@pytest.mark.parametrize("separation", ["spatial", "network"])
def test_analysis_reproduces_the_recording_and_nothing_is_louder(tmp_path, separation, noise_and_tone):
    from deepasa.inference.result import SceneAnalysis

    scene = noise_and_tone
    result = analyze(load_model(), scene.mixture, log=lambda _m: None, separation=separation)
    result.save(tmp_path / "a", report=False)
    loaded = SceneAnalysis.load(tmp_path / "a")
    x = scene.mixture.astype(np.float64)
    parts = sum(o.signal("image") for o in loaded.objects) + loaded.noise  # (4, N)
    rel = lambda y: 10 * np.log10(((y - x) ** 2).sum() / (x ** 2).sum())  # noqa: E731
    assert rel(parts) < -40
    assert rel(loaded.remix()) < -40  # an unedited remix gives back the recording
    rms = np.sqrt((x ** 2).mean())
    for o in loaded.objects:
        for kind in ("image", "direct", "reverb"):
            assert np.sqrt((o.signal(kind) ** 2).mean()) <= rms * 1.001, (o.id, kind)
    assert np.sqrt((loaded.noise ** 2).mean()) <= rms * 1.001


def test_unknown_separation_is_a_one_line_error():
    with pytest.raises(DeepASAError, match="unknown separation"):
        analyze(object(), np.zeros((4, 1600)), separation="magic")
