"""Long files end to end through ``analyze`` (streaming, disk sink, WAV writing, resampling) with a fake model
whose outputs are known: slot ``w mod J`` of window ``w`` carries the input window itself (an identity
"separator" with a permuted slot order), the other slots are silent.

Independent truth: the input file. The one object must keep one id across every window and its image must
be the input, sample for sample (no seams at the window joins); memory must not grow with the length.
"""

import functools
import json
import subprocess
import sys
import textwrap

import numpy as np
import soundfile as sf

from deepasa.inference.analyze import analyze
from deepasa.inference.stitching import WindowOutput
from deepasa.model import get_config


class _Cfg:
    """A stand-in model: the ``tiny`` config (8 kHz, 1-s clips, 5 slots, 13 classes), no network."""

    def __init__(self):
        self.config = get_config("tiny")


def identity_model(config, direction=(0.0, 0.9, 0.0), class_index=2):
    """run_window for analyze(): slot (window index mod J) = the input, active, fixed class and direction."""
    J, C, T = config.n_slots, config.n_classes, config.n_label_frames
    state = {"w": 0}

    def run_window(x):  # x (M, L)
        j = (3 * state["w"]) % J
        state["w"] += 1
        image = np.zeros((J,) + x.shape)
        image[j] = x
        onoff = np.full((J, T), 0.01)
        onoff[j] = 0.99
        doa = np.zeros((J, T, 3))
        doa[j] = direction
        cls = np.full((J, C), 1.0 / C)
        cls[j] = 0.01 / (C - 1)
        cls[j, class_index] = 0.99
        return WindowOutput(image=image, direct=0.5 * image, reverb=0.5 * image, noise=np.zeros_like(x),
                            cls_prob=cls, onoff_prob=onoff, doa=doa)

    return run_window


@functools.lru_cache(maxsize=1)
def _scenes():
    """Three simulated 4-s, 16-kHz scenes with two sources each: (4, 64000) mixtures."""
    from deepasa.scenes.simulator import simulate_scene

    rng = np.random.default_rng(0)
    return [simulate_scene(seed=s, sources=[("speech", rng.standard_normal(40000)),
                                           ("machine", rng.standard_normal(30000))]).mixture for s in range(3)]


def _scene_file(path, seconds, rate):
    """Several simulated 4-s scenes (two sources each) one after another, plus a hum that persists throughout."""
    scenes = _scenes()
    n = int(seconds * 16000)
    mix = np.concatenate([scenes[i % 3] for i in range(n // 64000 + 1)], axis=1)[:, :n]  # (4, n)
    t = np.arange(n) / 16000
    mix = mix + 0.05 * np.sin(2 * np.pi * 120 * t)[None] * np.array([[1.0], [0.9], [0.8], [0.95]])  # persistent
    if rate != 16000:
        from deepasa.audio.io import resample

        mix = resample(mix, 16000, rate)
    sf.write(path, mix.T.astype(np.float32), rate, subtype="FLOAT")
    return mix


def test_identity_model_reconstructs_the_input_without_seams(tmp_path):
    """At the model rate no resampling happens: the object's image is the input exactly, over 12 windows."""
    cfg = _Cfg()
    rate = cfg.config.sample_rate
    x = _scene_file(tmp_path / "in.wav", 6.3, rate)
    res = analyze(cfg, tmp_path / "in.wav", run_window=identity_model(cfg.config), log=lambda m: None)
    assert res.n_windows == 12 and len(res.objects) == 1
    obj = res.objects[0]
    assert obj.class_index == 2 and obj.activity.all() and len(obj.segments) == 1
    np.testing.assert_allclose(obj.image, x, atol=1e-6)
    np.testing.assert_allclose(obj.direct, 0.5 * x, atol=1e-6)
    np.testing.assert_allclose(res.noise, 0.0, atol=1e-7)
    np.testing.assert_allclose(obj.azimuth, 90.0, atol=1e-6)
    assert res.sample_rate == rate and obj.image.shape == x.shape


def test_resampled_input_comes_back_at_its_own_rate(tmp_path):
    """16-kHz input, 8-kHz model: outputs are at 16 kHz, as long as the input, and equal to its 0-4 kHz band."""
    from deepasa.audio.io import resample

    cfg = _Cfg()
    x = _scene_file(tmp_path / "in16.wav", 5.0, 16000)
    notes = []
    res = analyze(cfg, tmp_path / "in16.wav", run_window=identity_model(cfg.config), log=notes.append)
    assert len(notes) == 1 and "16000 Hz to 8000 Hz" in notes[0]
    img = res.objects[0].image
    assert img.shape == x.shape and res.sample_rate == 16000
    band = resample(resample(x, 16000, 8000), 8000, 16000)  # the same band limit, computed in one go
    err = img[:, 400:-400] - band[:, 400:-400]
    assert 10 * np.log10((band[:, 400:-400] ** 2).sum() / max((err ** 2).sum(), 1e-30)) > 40


_RSS_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {tests!r})
    from test_analyze_longfile import _Cfg, identity_model
    from deepasa.inference.analyze import analyze

    def hwm_kb():  # peak RSS of this process image (VmHWM; ru_maxrss would include the forked parent's)
        with open("/proc/self/status") as fh:
            return int(next(line for line in fh if line.startswith("VmHWM")).split()[1])

    cfg = _Cfg()
    base = hwm_kb()
    res = analyze(cfg, sys.argv[1], run_window=identity_model(cfg.config), log=lambda m: None)
    res.save(sys.argv[2])
    peak = hwm_kb()
    print(json.dumps({{"base_kb": base, "peak_kb": peak, "objects": len(res.objects), "windows": res.n_windows,
                      "ids": sorted(set(o.id for o in res.objects))}}))
""")


def test_three_minute_file_bounded_memory(tmp_path):
    """30 s vs 180 s (16 kHz, resampled to the model's 8 kHz and back), with the report: peak RSS ratio < 1.5 and
    growth far below the 46 MB that holding the 180-s input in memory would cost. The persistent object keeps
    one id over 359 windows."""
    import os

    script = _RSS_SCRIPT.format(tests=os.path.dirname(__file__))
    out = {}
    for seconds in (30, 180):
        wav = tmp_path / f"in{seconds}.wav"
        _scene_file(wav, seconds, 16000)
        proc = subprocess.run([sys.executable, "-c", script, str(wav), str(tmp_path / f"out{seconds}")],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out[seconds] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out[180]["objects"] == 1 and out[180]["windows"] == 359
    ratio = out[180]["peak_kb"] / out[30]["peak_kb"]
    growth_mb = (out[180]["peak_kb"] - out[30]["peak_kb"]) / 1024
    print(f"peak RSS 30 s: {out[30]['peak_kb'] / 1024:.0f} MB, 180 s: {out[180]['peak_kb'] / 1024:.0f} MB, "
          f"ratio {ratio:.3f}, growth {growth_mb:.1f} MB")
    assert ratio < 1.5 and growth_mb < 20
    info = sf.info(str(tmp_path / "out180" / "objects" / "0_class_2" / "image.wav"))
    assert info.frames == 180 * 16000 and info.channels == 4 and info.samplerate == 16000


def oracle_model(scene, config, rng):
    """run_window that returns the simulated scene's own sources (images, classes, per-frame directions) in a
    random slot order per window: the analysis must give back exactly the scene's ground truth."""
    J, C, ls = config.n_slots, config.n_classes, config.label_samples
    L = config.clip_samples
    images = scene.direct + scene.reverb  # (K, M, N)
    K, n = images.shape[0], images.shape[-1]
    state = {"start": 0}
    hop = L // 2

    def run_window(x):  # x (M, L)
        s = state["start"]
        state["start"] += hop
        perm = rng.permutation(J)
        image, direct = np.zeros((J,) + x.shape), np.zeros((J,) + x.shape)
        onoff, doa = np.full((J, L // ls), 0.02), np.zeros((J, L // ls, 3))
        cls = np.full((J, C), 1.0 / C)
        f0, nf = s // ls, min(L, n - s) // ls
        for k in range(K):
            j = perm[k]
            seg = images[k, :, s:s + L]
            image[j, :, : seg.shape[-1]] = seg
            direct[j, :, : seg.shape[-1]] = scene.direct[k, :, s:s + L]
            act = scene.activity[k, f0:f0 + nf]
            onoff[j, :nf] = np.where(act, 0.98, 0.02)
            doa[j, :nf] = scene.doa[k, f0:f0 + nf]
            if act.any():
                cls[j] = 0.01 / (C - 1)
                cls[j, scene.meta["sources"][k]["class_index"]] = 0.99
        return WindowOutput(image=image, direct=direct, reverb=image - direct, noise=x - image.sum(0),
                            cls_prob=cls, onoff_prob=onoff, doa=doa)

    return run_window


def test_oracle_model_gives_back_the_scene(tiny_bank_home, tmp_path):
    """A simulated held-out scene through analyze() with an oracle in place of the network: every true
    source comes back as one object with its class, activity, direction and image (independent truth: the
    simulator's labels and source images)."""
    from deepasa.scenes.simulator import simulate_scene
    from deepasa.scenes.soundbank import SoundBank

    bank = SoundBank.open(tiny_bank_home)
    scene = simulate_scene(seed=4, index=0, split="test", bank=bank)
    model = _Cfg()
    model.config = get_config("tiny", sample_rate=16000, n_fft=320, hop=160, n_classes=10)
    res = analyze(model, scene.mixture, sample_rate=16000,
                  run_window=oracle_model(scene, model.config, np.random.default_rng(0)), log=lambda m: None)
    present = [k for k in range(len(scene.activity)) if scene.activity[k].any()]
    assert len(res.objects) == len(present)
    images = scene.direct + scene.reverb
    for obj in res.objects:
        k = int(np.argmax([abs(np.sum(obj.image[0] * images[i, 0])) for i in range(len(images))]))
        src = scene.meta["sources"][k]
        assert obj.class_name == src["label"]
        np.testing.assert_array_equal(obj.activity, scene.activity[k].astype(bool))
        on = obj.activity
        np.testing.assert_allclose(obj.azimuth[on], scene.azimuth[k][on], atol=1e-3)
        np.testing.assert_allclose(obj.elevation[on], scene.elevation[k][on], atol=1e-3)
        np.testing.assert_allclose(obj.image, images[k], atol=1e-5)
        np.testing.assert_allclose(obj.direct, scene.direct[k], atol=1e-5)
    np.testing.assert_allclose(res.noise, scene.mixture - images.sum(0), atol=1e-5)
