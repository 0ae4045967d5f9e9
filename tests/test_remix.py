"""``deepasa remix`` against ground truth from the simulator (issue 17).

The analysis is the *oracle analysis* of a simulated scene (its own source images, written by
``deepasa.scenes.oracle_analysis``); an edit is compared with the simulator re-rendering the same scene with
that edit (same room and seed, the source moved at the same distance). Directions are measured by methods
independent of the renderer: SRP-PHAT over a direction grid (MIC, frequency domain) and the active intensity
vector (FOA). The scenes are short (2 s, 16 kHz) static scenes of band-limited noise.
"""

import copy
import json
import math

import numpy as np
import pytest
import soundfile as sf
import yaml

from deepasa.audio.geometry import SPEED_OF_SOUND, azimuth_elevation, tetra_mic_offsets, unit_vector
from deepasa.cli import main
from deepasa.inference.remix import RemixEdits, remix, transcode_diffuse
from deepasa.inference.result import SceneAnalysis
from deepasa.metrics.separation import si_sdr
from deepasa.scenes.config import SceneConfig
from deepasa.scenes.oracle_analysis import write_oracle_analysis
from deepasa.scenes.simulator import render_scene, simulate_scene

FS = 16000
SECONDS = 2.0
NEW_DIR = {"mic": (-100.0, 25.0), "foa": (130.0, -20.0)}
SILENT_REST = dict(mute=[1, 2], dry=[0], noise_gain=-math.inf)  # keep only object 0's direct path


def lowpass_noise(rng, n):
    from scipy.signal import butter, sosfilt

    return sosfilt(butter(8, 6000, fs=FS, output="sos"), rng.standard_normal(n))


def make_scene(fmt, seed=4, moving=False):
    rng = np.random.default_rng(seed)
    cfg = SceneConfig(sample_rate=FS, duration=SECONDS, moving_prob=1.0 if moving else 0.0,
                      event_duration=(SECONDS, SECONDS), rt60=(0.3, 0.3), snr_db=(20.0, 20.0))
    dry = [lowpass_noise(rng, int(FS * SECONDS)) for _ in range(3)]
    return simulate_scene(seed=seed, config=cfg, fmt=fmt, sources=list(zip(["speech", "machine", "music"], dry))), dry


@pytest.fixture(scope="module", params=["mic", "foa"])
def oracle(request, tmp_path_factory):
    """(format, scene, dry signals, loaded oracle analysis)."""
    sc, dry = make_scene(request.param)
    root = write_oracle_analysis(tmp_path_factory.mktemp(f"oracle_{request.param}") / "analysis", sc)
    return request.param, sc, dry, SceneAnalysis.load(root)


def resimulate_moved(sc, dry, k, az, el):
    """The simulator's direct image of source k at (az, el), same distance, same room and seed."""
    spec = copy.deepcopy(sc.meta)
    centre = np.asarray(spec["array_centre"])
    pos = np.asarray(spec["sources"][k]["trajectory"][0])
    dist = np.linalg.norm(pos - centre)
    spec["sources"][k]["trajectory"] = [(centre + dist * unit_vector(az, el)).tolist()]
    out = render_scene(spec, [np.asarray(d, float) for d in dry], sc.meta["format"])
    return out.direct[k] * (sc.meta["output_gain"] / out.meta["output_gain"])


# ------------------------------------------------------------------ independent direction estimators
def srp_phat(x, fs=FS, n_fft=256, fmax=None):
    """(4, N) MIC signal -> (azimuth, elevation) of the SRP-PHAT maximum (4° grid, refined to 0.05°)."""
    win = np.hanning(n_fft)
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft, axis=1)[:, ::n_fft // 2] * win  # (4, L, n_fft)
    spec = np.fft.rfft(frames, axis=-1)  # (4, L, K)
    freqs = np.fft.rfftfreq(n_fft, 1 / fs)
    pos = tetra_mic_offsets()
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    cross = np.stack([(spec[i] * spec[j].conj()).sum(0) for i, j in pairs])  # (P, K)
    cross /= np.maximum(np.abs(cross), 1e-20)  # PHAT
    if fmax is not None:
        cross[:, freqs > fmax] = 0.0  # bins above the content carry only rounding noise
    baselines = np.stack([pos[i] - pos[j] for i, j in pairs])  # (P, 3)

    def power(az, el):
        u = unit_vector(az, el).reshape(-1, 3)  # (G, 3)
        tdoa = u @ baselines.T / SPEED_OF_SOUND  # (G, P)
        return np.real(np.einsum("pk,gpk->g", cross, np.exp(-2j * np.pi * freqs[None, None] * tdoa[..., None])))

    az, el = np.meshgrid(np.arange(-180, 180, 4.0), np.arange(-88, 89, 4.0))
    best = np.argmax(power(az, el))
    for span, step in ((4.0, 0.5), (0.6, 0.05)):  # refine around the maximum
        a0, e0 = az.ravel()[best], el.ravel()[best]
        grid = np.arange(-span, span + step / 2, step)
        az, el = np.meshgrid(a0 + grid, np.clip(e0 + grid, -90, 90))
        best = np.argmax(power(az, el))
    return float(az.ravel()[best]), float(el.ravel()[best])


def intensity_direction(x):
    """(4, N) FOA (ACN W, Y, Z, X) -> (azimuth, elevation) of the mean active intensity W·(X, Y, Z)."""
    w, y, z, xx = x.astype(np.float64)
    az, el = azimuth_elevation(np.array([(w * xx).sum(), (w * y).sum(), (w * z).sum()]))
    return float(az), float(el)


def locate(fmt, x):
    return srp_phat(x) if fmt == "mic" else intensity_direction(x)


def angle_between(a, b):
    return float(np.degrees(np.arccos(np.clip(unit_vector(*a) @ unit_vector(*b), -1, 1))))


def energy_left(y, others, image):
    """dB of what remains of object ``image`` in ``y`` once the other (true) parts are taken away."""
    return 10 * math.log10(np.sum((y - others) ** 2.0) / np.sum(image.astype(np.float64) ** 2))


# ------------------------------------------------------------------ tests
def test_oracle_analysis_reads_back_and_no_edit_is_the_mixture(oracle):
    fmt, sc, _, an = oracle
    assert an.fmt == fmt and an.sample_rate == FS and an.n_samples == sc.mixture.shape[1]
    assert [o.class_name for o in an.objects] == ["speech", "machine", "music"]
    for k, obj in enumerate(an.objects):
        np.testing.assert_array_equal(obj.activity, sc.activity[k])
        on = sc.activity[k]
        np.testing.assert_allclose(obj.doa[on], sc.doa[k][on], atol=1e-4)
    y = remix(an)
    assert y.shape == sc.mixture.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, sc.mixture, atol=1e-6)  # Σ image + noise = mixture to float precision


def test_move_static_source_lands_at_the_new_direction(oracle):
    fmt, sc, dry, an = oracle
    new = NEW_DIR[fmt]
    y = remix(an, RemixEdits(move={0: new}, **SILENT_REST))  # object 0's new direct path alone
    truth = resimulate_moved(sc, dry, 0, *new)
    err = angle_between(locate(fmt, y), new)
    assert angle_between(locate(fmt, truth), new) < 2.0  # the estimator itself is right on the truth
    assert err < 2.0, f"{fmt}: moved direct path localised {err:.2f}° from the target"
    sdr = float(np.mean([si_sdr(y[c], truth[c]) for c in range(4)]))
    # FOA: plane-wave gains are the simulator's own encoding; MIC: plane-wave steering vs the simulator's
    # spherical wave at 1-4 m (a few % amplitude, < 0.05 sample of delay curvature across the capsules)
    assert sdr >= (20.0 if fmt == "foa" else 25.0), f"{fmt}: SI-SDR {sdr:.1f} dB vs the re-simulated direct image"
    print(f"{fmt}: move error {err:.2f} deg, SI-SDR {sdr:.2f} dB")
    # the whole remix: every other part passes through unchanged
    full = remix(an, RemixEdits(move={0: new}))
    rest = sc.mixture.astype(np.float64) - sc.direct[0]
    np.testing.assert_allclose(full - rest, y.astype(np.float64), atol=2e-6)


def test_mute_and_gain(oracle):
    fmt, sc, _, an = oracle
    image1 = sc.direct[1].astype(np.float64) + sc.reverb[1]
    others = sc.mixture.astype(np.float64) - image1
    y = remix(an, RemixEdits(mute=["machine"]))  # by class name
    assert energy_left(y, others, image1) <= -40.0
    for db in (-12.5, 6.0):
        y = remix(an, RemixEdits(gain={1: db})).astype(np.float64)
        g = np.sum((y - others) * image1) / np.sum(image1 ** 2)  # least-squares gain of object 1 in the output
        assert abs(20 * math.log10(g) - db) <= 0.01
        assert energy_left(y, others + g * image1, image1) < -60.0  # and nothing else changed


def test_dry_keeps_only_the_direct_path(oracle):
    fmt, sc, _, an = oracle
    y = remix(an, RemixEdits(dry=[2]))
    np.testing.assert_allclose(y, sc.mixture.astype(np.float64) - sc.reverb[2], atol=2e-6)


def test_rotate_scene(oracle):
    fmt, sc, _, an = oracle
    daz = 70.0
    y = remix(an, RemixEdits(rotate_scene=daz))
    if fmt == "foa":
        c, s = math.cos(math.radians(daz)), math.sin(math.radians(daz))
        w, yy, z, x = sc.mixture.astype(np.float64)
        expected = np.stack([w, s * x + c * yy, z, c * x - s * yy])  # standard first-order rotation about z
        np.testing.assert_allclose(y, expected, atol=1e-6)
    # physics: object 0's direct path now comes from its azimuth + daz
    az0, el0 = azimuth_elevation(sc.doa[0][sc.activity[0]].mean(0))
    target = (float((az0 + daz + 180) % 360 - 180), float(el0))
    solo = remix(an, RemixEdits(rotate_scene=daz, **SILENT_REST))
    assert angle_between(locate(fmt, solo), target) < 2.0


def test_rotate_object_trajectory(oracle):
    fmt, sc, _, an = oracle
    az0, el0 = azimuth_elevation(sc.doa[0][sc.activity[0]].mean(0))
    y = remix(an, RemixEdits(rotate={"speech": (-45.0, 15.0)}, **SILENT_REST))
    target = (float(az0 - 45.0), float(el0 + 15.0))
    assert angle_between(locate(fmt, y), target) < 2.0


def test_other_output_format_localises(oracle):
    fmt, sc, _, an = oracle
    other = "foa" if fmt == "mic" else "mic"
    y = remix(an, RemixEdits(fmt=other, **SILENT_REST))
    truth = tuple(float(v) for v in azimuth_elevation(sc.doa[0][sc.activity[0]].mean(0)))
    assert angle_between(locate(other, y), truth) < 2.0
    y_all = remix(an, RemixEdits(fmt=other))
    assert y_all.shape == (4, sc.mixture.shape[1]) and np.isfinite(y_all).all()


def test_moving_source_rotated_follows_its_trajectory(tmp_path):
    sc, _ = make_scene("foa", seed=5, moving=True)
    an = SceneAnalysis.load(write_oracle_analysis(tmp_path / "a", sc))
    y = remix(an, RemixEdits(rotate={0: (30.0, 0.0)}, **SILENT_REST))
    hop = int(0.1 * FS)
    errs = []
    for t in np.flatnonzero(sc.activity[0])[1:-1]:
        seg = y[:, t * hop:(t + 1) * hop]
        target = (float(sc.azimuth[0, t] + 30.0), float(sc.elevation[0, t]))
        errs.append(angle_between(intensity_direction(seg), target))
    assert np.median(errs) < 2.0 and np.max(errs) < 5.0


def test_diffuse_transcoding_has_the_target_coherence():
    from deepasa.scenes.acoustics import Receiver, diffuse_field

    rng = np.random.default_rng(0)
    n = 4 * FS
    mic = diffuse_field(n, Receiver("mic", np.zeros(3)), FS, rng)  # (4, n), spherically isotropic
    foa = transcode_diffuse(mic, "mic", "foa", FS)
    cov = foa @ foa.T / n
    # SN3D diffuse field: W unit power, Y, Z, X a third of it and uncorrelated (the gradient floor below
    # ~335 Hz takes a few % off Y, Z, X)
    np.testing.assert_allclose(np.diag(cov) / cov[0, 0], [1, 1 / 3, 1 / 3, 1 / 3], rtol=0.1)
    assert np.abs(cov - np.diag(np.diag(cov))).max() < 0.03 * cov[0, 0]
    foa_in = diffuse_field(n, Receiver("foa", np.zeros(3)), FS, rng)
    back = transcode_diffuse(foa_in, "foa", "mic", FS)
    c = back @ back.T / n
    freqs = np.fft.rfftfreq(n, 1 / FS)
    d = np.linalg.norm(tetra_mic_offsets()[0] - tetra_mic_offsets()[1])
    expected = np.mean(np.sinc(2 * freqs * d / SPEED_OF_SOUND))  # white-noise average of sin(kd)/(kd)
    off = c[~np.eye(4, dtype=bool)] / np.mean(np.diag(c))
    np.testing.assert_allclose(off, expected, atol=0.03)
    np.testing.assert_allclose(np.diag(c) / np.mean(np.diag(c)), 1.0, rtol=0.05)


# ------------------------------------------------------------------ command line
@pytest.fixture(scope="module")
def oracle_dir(tmp_path_factory):
    sc, _ = make_scene("mic", seed=6)
    return write_oracle_analysis(tmp_path_factory.mktemp("cli") / "analysis", sc), sc


def test_cli_edits_file_equals_options(oracle_dir, tmp_path, capsys):
    root, sc = oracle_dir
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    assert main(["remix", str(root), "--out", str(a), "--mute", "speech", "--gain", "1=-6", "--move", "2=45,10",
                 "--noise-gain=-inf"]) == 0
    (tmp_path / "e.yaml").write_text(yaml.safe_dump({"mute": ["speech"], "gain": {1: -6}, "move": {2: [45, 10]},
                                                     "noise_gain": "-inf"}))
    assert main(["remix", str(root), "--out", str(b), "--edits", str(tmp_path / "e.yaml")]) == 0
    ya, fs = sf.read(a, always_2d=True)
    yb, _ = sf.read(b, always_2d=True)
    assert fs == FS and ya.shape == (sc.mixture.shape[1], 4)
    np.testing.assert_array_equal(ya, yb)
    image1 = sc.direct[1].astype(np.float64) + sc.reverb[1]
    g = np.sum(ya.T * image1) / np.sum(image1 ** 2)  # object 1 is uncorrelated with object 2
    assert abs(20 * math.log10(g) + 6) < 0.05


def test_cli_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["remix", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "deepasa remix rec_analysis --out" in out


def test_simulate_writes_an_oracle_analysis(tiny_bank_home, tmp_path, capsys):
    out = tmp_path / "scenes"
    assert main(["simulate", "--home", str(tiny_bank_home), "--out", str(out), "--num-scenes", "1", "--split",
                 "test", "--set", "duration=1.0", "--set", "sample_rate=8000", "--oracle-analysis", "--quiet"]) == 0
    root = out / "test" / "oracle" / "000000"
    an = SceneAnalysis.load(root)
    mix, fs = sf.read(out / "test" / "mixed" / "000000.wav", always_2d=True)
    assert fs == 8000 and len(an.objects) >= 1
    assert main(["remix", str(root), "--out", str(tmp_path / "r.wav")]) == 0
    y, _ = sf.read(tmp_path / "r.wav", always_2d=True)
    np.testing.assert_allclose(y, mix, atol=1e-6)


def _damage(root, how):
    doc = json.loads((root / "objects.json").read_text())
    if how == "other_schema":
        doc["format"] = "something-else/3"
    elif how == "format_flipped":
        doc["audio_format"] = "foa"  # MIC signals declared FOA
    elif how == "missing_wav":
        (root / doc["objects"][1]["files"]["reverb"]).unlink()
    elif how == "short_wav":
        path = root / doc["objects"][0]["files"]["image"]
        x, fs = sf.read(path, always_2d=True)
        sf.write(path, x[:1000], fs, subtype="FLOAT")
    elif how == "bad_json":
        (root / "objects.json").write_text('{"format": "deepasa-objects/1", "objects": [')
        return
    elif how == "no_json":
        (root / "objects.json").unlink()
        return
    (root / "objects.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("args, needle", [
    (["--mute", "7"], "no object '7'"),
    (["--gain", "dog=3"], "no object 'dog'"),
    (["--move", "0=200,0"], "out of range"),
    (["--move", "0=10,95"], "out of range"),
    (["--move", "0=10"], "two angles"),
    (["--rotate-scene", "400"], "out of range"),
    (["--gain", "0=abc"], "not a number"),
    (["--move", "0=10,0", "--rotate", "0=5,0"], "two direction edits"),
    (["--format", "foa", "--out", "x.flac"], ".wav"),
])
def test_cli_bad_edits_exit_2_nothing_written(oracle_dir, tmp_path, capsys, args, needle):
    root, _ = oracle_dir
    out = tmp_path / "out.wav"
    argv = ["remix", str(root), "--out", str(out), *args]
    if "--out" in args[2:]:
        argv = ["remix", str(root), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("how, needle", [
    ("other_schema", "is not a deepasa-objects/1 analysis"), ("format_flipped", "another format"),
    ("missing_wav", "is damaged"), ("short_wav", "is damaged"), ("bad_json", "is damaged"),
    ("no_json", "not an analysis folder"),
])
def test_cli_bad_analysis_exit_2_nothing_written(tmp_path, capsys, how, needle):
    sc, _ = make_scene("mic", seed=6)
    root = write_oracle_analysis(tmp_path / "analysis", sc)
    _damage(root, how)
    out = tmp_path / "out" / "remix.wav"
    assert main(["remix", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err
    assert not out.parent.exists()


def test_cli_existing_output_needs_overwrite(oracle_dir, tmp_path, capsys):
    root, sc = oracle_dir
    out = tmp_path / "r.wav"
    out.write_bytes(b"keep me")
    assert main(["remix", str(root), "--out", str(out), "--mute", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "exists" in err and len(err.splitlines()) == 1 and out.read_bytes() == b"keep me"
    assert main(["remix", str(root), "--out", str(out), "--mute", "0", "--overwrite"]) == 0
    assert sf.info(str(out)).channels == 4
    assert [p.name for p in tmp_path.iterdir()] == ["r.wav"]  # no temporary file left


def test_remix_of_a_model_analysis(tmp_path):
    """A real ``analyze`` folder (untrained tiny model, every slot active): no edit = Σ image + noise; a move
    renders a plane wave from the new direction."""
    from conftest import tiny_model_with_fixed_heads
    from deepasa.inference.analyze import analyze

    sc, _ = make_scene("mic", seed=7)
    model = tiny_model_with_fixed_heads(8.0, (3.0, 1.0, 0.5))
    result = analyze(model, sc.mixture, sample_rate=FS, log=lambda m: None)
    result.save(tmp_path / "analysis", report=False)
    an = SceneAnalysis.load(tmp_path / "analysis")
    parts = sum(sf.read(tmp_path / "analysis" / o["files"]["image"], always_2d=True)[0]
                for o in json.loads((tmp_path / "analysis" / "objects.json").read_text())["objects"])
    parts = parts + sf.read(tmp_path / "analysis" / "noise.wav", always_2d=True)[0]
    np.testing.assert_allclose(remix(an), parts.T, atol=1e-5)
    others = [o.id for o in an.objects if o.id != 0]
    y = remix(an, RemixEdits(move={0: (60.0, -10.0)}, mute=others, dry=[0], noise_gain=-math.inf))
    # the tiny model runs at 8 kHz: its outputs hold nothing above 4 kHz
    assert angle_between(srp_phat(y, fmax=3800.0), (60.0, -10.0)) < 2.0


def test_framewise_delay_is_the_crossfade_of_per_frame_convolutions():
    """Per-frame delays = Σ_f w_f(t) · (x ∗ h_f)(t), computed here with np.convolve and the simulator's filter."""
    from deepasa.inference.remix import frame_weights, framewise_delay
    from deepasa.scenes.acoustics import _fractional_delay_taps

    rng = np.random.default_rng(1)
    hop, n_frames = 50, 6
    x = rng.standard_normal((1, hop * n_frames))
    delays = rng.uniform(-4, 4, (n_frames, 2))
    y = framewise_delay(x, delays, hop)
    f0, f1, w1 = frame_weights(x.shape[1], hop, n_frames)
    for c in range(2):
        per_frame = []
        for f in range(n_frames):
            start, taps = _fractional_delay_taps(delays[f:f + 1, c])
            full = np.convolve(x[0], taps[0])  # full[m] = Σ_k taps_k x[m − k]
            t = np.arange(x.shape[1]) - start[0]
            per_frame.append(np.where((t >= 0) & (t < len(full)), full[np.clip(t, 0, len(full) - 1)], 0.0))
        per_frame = np.array(per_frame)  # (T, N)
        t = np.arange(x.shape[1])
        expected = (1 - w1) * per_frame[f0, t] + w1 * per_frame[f1, t]
        np.testing.assert_allclose(y[c], expected, atol=1e-5)
    # one delay for every frame: the fast path is the plain convolution
    same = framewise_delay(x, np.repeat(delays[:1], n_frames, axis=0), hop)
    np.testing.assert_allclose(same[1], per_frame[0], atol=1e-5)  # float32 FFTs


def test_report_hint_runs_as_written(oracle_dir, tmp_path, monkeypatch):
    """The report's "Remix" line names this analysis's objects; its command runs as written."""
    import shlex

    from deepasa.report.analysis_report import remix_hint

    root, _ = oracle_dir
    hint = remix_hint(SceneAnalysis.load(root), str(root))
    command = hint.split("deepasa remix ", 1)[1].split(" (", 1)[0]
    assert "--mute 0" in command and "--move 1=90,0" in command
    monkeypatch.chdir(tmp_path)
    assert main(["remix", *shlex.split(command)]) == 0 and (tmp_path / "edit.wav").is_file()
