"""``deepasa listen`` (issue 40): the live monitor against ``analyze`` on the same audio, and its command line.

Independent truth: ``analyze_trajectories`` on the whole recording (one window over the whole stream must give
its objects, classes, onsets and offsets exactly), the offline tracker ``track`` (the streaming tracker must give
its tracks exactly), ``separate`` and ``object_signal`` (the monitor's bounded-memory versions must give theirs),
and the stream's own layout (which object spans a window boundary, where the input was cut).
"""

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from deepasa.inference.listen import AlertRule, ClassSignal, Monitor, StreamTracker, separate_images

torch.set_num_threads(1)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
KINDS = ["hiss", "rumble", "buzz", "flutter"]


def _dry(kind: str, n: int, rng) -> np.ndarray:
    """A synthetic dry source signal (n,) of one of four kinds (no sound bank needed)."""
    t = np.arange(n) / 16000
    if kind == "hiss":
        return rng.standard_normal(n)
    if kind == "rumble":
        return np.convolve(rng.standard_normal(n), np.ones(8) / 8, "same") * 3
    if kind == "buzz":
        f = rng.uniform(150, 400)
        return sum(np.sin(2 * np.pi * f * h * t + rng.uniform(0, 6)) / h for h in range(1, 12)) \
            + 0.1 * rng.standard_normal(n)
    return rng.standard_normal(n) * (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(2, 6) * t))


@pytest.fixture(scope="module")
def stream():
    """12 s: three simulated 4-s scenes of 2-3 synthetic sources each, (4, 192000) float32 at 16 kHz."""
    from deepasa.scenes.config import SceneConfig
    from deepasa.scenes.simulator import simulate_scene

    cfg = SceneConfig.from_dict({**SceneConfig().to_dict(), "rt60": [0.2, 0.4], "snr_db": [20.0, 30.0],
                                 "event_duration": [1.0, 3.0]})
    parts = []
    for i in range(3):
        rng = np.random.default_rng(300 + i)
        src = [(KINDS[(i + j) % 4], _dry(KINDS[(i + j) % 4], 48000, rng)) for j in range(2 + i % 2)]
        parts.append(simulate_scene(seed=3, index=i, config=cfg, sources=src, class_names=KINDS).mixture)
    return np.concatenate(parts, axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def long_source():
    """8 s with one static source active for about 7 s: it spans the default windows' boundaries."""
    from deepasa.scenes.config import SceneConfig
    from deepasa.scenes.simulator import simulate_scene

    cfg = SceneConfig.from_dict({**SceneConfig().to_dict(), "duration": 8.0, "moving_prob": 0.0,
                                 "rt60": [0.2, 0.3], "snr_db": [25.0, 30.0], "event_duration": [7.0, 7.0]})
    rng = np.random.default_rng(5)
    scene = simulate_scene(seed=5, config=cfg, sources=[("hiss", rng.standard_normal(7 * 16000))])
    return scene.mixture.astype(np.float32), scene


def _run_monitor(x, block=1234, **kw):
    mon = Monitor(**kw)
    events = []
    for i in range(0, x.shape[1], block):
        events += mon.feed(x[:, i:i + block])
    return events + mon.close(), mon


@pytest.fixture(scope="module")
def default_run(stream):
    """The monitor with its default window over the 12-s stream: (events, monitor)."""
    return _run_monitor(stream)


def _match(a, b, tol=0.1):
    """One-to-one pairs (i, j) of onsets a[i][0], b[j][0] within tol seconds, nearest first."""
    cand = sorted((abs(x[0] - y[0]), i, j) for i, x in enumerate(a) for j, y in enumerate(b)
                  if abs(x[0] - y[0]) <= tol + 1e-9)
    ui, uj, out = set(), set(), []
    for _, i, j in cand:
        if i not in ui and j not in uj:
            ui.add(i)
            uj.add(j)
            out.append((i, j))
    return out


# ---------------------------------------------------------------------------------------------- the parts
def test_the_streaming_tracker_gives_the_offline_tracks():
    from deepasa.tracking.tracker import track

    rng = np.random.default_rng(0)
    frames = []
    for t in range(300):  # two moving sources with dropouts, and clutter
        frame = []
        for k, (on, off) in enumerate(((5, 120), (60, 260))):
            if on <= t < off and rng.random() > 0.15:
                az = np.radians(40 * k + 0.8 * t + rng.normal(0, 2))
                frame.append((np.array([np.cos(az), np.sin(az), 0.1]), 0.9 - 0.1 * k))
        if rng.random() < 0.1:
            frame.append((rng.standard_normal(3), 0.3))
        frames.append(frame)
    ref = track(frames)
    st = StreamTracker()
    done = []
    for f in frames:
        done += st.step(f)
    done += st.close()
    objs = [st.smoothed(tr, 0, len(frames), final=True) for tr in sorted(done, key=lambda tr: tr.uid)]
    objs = sorted([o for o in objs if o[0].sum() >= 2], key=lambda o: int(np.argmax(o[0])))
    assert len(objs) == ref.n_objects >= 2
    for (act, doa), ref_act, ref_doa in zip(objs, ref.activity, ref.doa):
        assert np.array_equal(act, ref_act)
        assert np.allclose(doa, ref_doa, atol=1e-12)


def test_the_bounded_class_signal_is_object_signal():
    from deepasa.model.object_classes import object_signal

    rng = np.random.default_rng(1)
    for n_frames, p in ((30, 0.5), (200, 0.9), (4, 0.3)):
        x = (rng.standard_normal(n_frames * 1600) * np.repeat(rng.uniform(0.1, 2, n_frames), 1600)).astype(np.float32)
        act = rng.random(n_frames) < p
        cs = ClassSignal()
        for t in range(n_frames):
            if act[max(t - 1, 0):t + 2].any():
                cs.add(x[t * 1600:(t + 1) * 1600])
        assert np.array_equal(cs.signal(), object_signal(x, act))


def test_images_only_equal_the_spatial_stage():
    from deepasa.separation import separate

    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 16000)).astype(np.float32)
    act = np.ones((2, 10), bool)
    act[1, :4] = False
    doa = np.tile([[[1.0, 0, 0]], [[0, 1.0, 0.2]]], (1, 10, 1))  # (2, 10, 3)
    assert np.array_equal(separate_images(x, act, doa), separate(x, act, doa).image)
    assert np.array_equal(separate_images(x, act, doa, channels=[0]), separate(x, act, doa).image[:, :1])


# ---------------------------------------------------------------------------------------------- against analyze
def test_one_window_over_the_whole_stream_is_analyze(stream, default_run):
    """With the window covering the stream the monitor runs analyze's pipeline on the same map: equal objects,
    classes, onsets and offsets, and confidences within 0.1 (analyze separates in 10-s chunks cross-faded over 1 s,
    trajectory_first.SEPARATION_CHUNK_S; one window separates the 12-s stream at once, so an object's signal, and
    the read-out's confidence, differ: since the stage's noise prior (measured in the frames far from every object
    of the chunk) and 1-s covariance window, 0.538 vs 0.605 on one object here, the other seven within 0.02). With the default 4-s windows the finder's map differs (its
    log-mel features are normalised per clip and its GRU reads the whole clip), so the objects differ a little.
    Measured with the finder export of 2026-12-07 (12-rotation average, threshold 0.1): here all 7 of analyze's
    objects found within 100 ms, none extra, all 7 with its class; on 6 streams of 12 s of default held-out scenes
    0.88 / 0.87 / 0.80 (recall / precision / class agreement), about what analyze cut into 4-s chunks gives
    against itself (0.84 / 0.83 / 0.81; docs/listen.md). The bounds below leave room for another finder."""
    from deepasa.inference.trajectory_first import analyze_trajectories

    res = analyze_trajectories(stream, log=lambda _m: None)
    want = sorted((o.segments[0][0], o.class_name, round(o.confidence, 3), o.segments[-1][1]) for o in res.objects)
    events, _ = _run_monitor(stream, window_s=60.0)
    got = sorted((e["onset_s"], e["class"], e["confidence"], e["offset_s"]) for e in events if e["type"] == "end")
    assert len(want) >= 5
    assert [(a, c, b) for a, c, _, b in got] == [(a, c, b) for a, c, _, b in want]
    assert all(abs(g[2] - w[2]) <= 0.1 for g, w in zip(got, want))
    ends = [(e["onset_s"], e["class"]) for e in default_run[0] if e["type"] == "end"]
    pairs = _match(want, ends)
    recall, precision = len(pairs) / len(want), len(pairs) / len(ends)
    agree = sum(want[i][1] == ends[j][1] for i, j in pairs) / len(pairs)
    assert recall >= 0.7 and precision >= 0.7 and agree >= 0.6, (recall, precision, agree)


# ---------------------------------------------------------------------------------------------- events
ONSET_KEYS = {"type", "id", "class", "confidence", "final", "onset_s", "offset_s", "at_s", "doa"}
DOA_KEYS = {"time_s", "azimuth_deg", "elevation_deg"}


def check_schema(events: list) -> None:
    """The documented event lines (docs/listen.md)."""
    for e in events:
        assert e["type"] in ("start", "onset", "end", "alert", "skip", "stall", "summary"), e
        if e["type"] in ("onset", "end"):
            assert set(e) == ONSET_KEYS | ({"segments"} if e["type"] == "end" else set()), e.keys()
            assert isinstance(e["id"], int) and isinstance(e["class"], str) and 0 < e["confidence"] <= 1
            assert e["final"] is (e["type"] == "end") and e["at_s"] >= e["onset_s"]
            assert e["doa"] and all(set(d) == DOA_KEYS for d in e["doa"]) and e["doa"][0]["time_s"] == e["onset_s"]
            assert all(-180 <= d["azimuth_deg"] <= 180 and -90 <= d["elevation_deg"] <= 90 for d in e["doa"])
        if e["type"] == "onset":
            assert e["offset_s"] is None
        if e["type"] == "end":
            segs = e["segments"]
            assert segs[0]["onset_s"] == e["onset_s"] and segs[-1]["offset_s"] == e["offset_s"] > e["onset_s"]
    ids = [e["id"] for e in events if e["type"] == "onset"]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # new ids, in order
    assert sorted(ids) == sorted(e["id"] for e in events if e["type"] == "end")  # every object ends
    for e in events:
        if e["type"] == "end":  # the end line comes after its onset line
            first = next(i for i, f in enumerate(events) if f.get("id") == e["id"])
            assert events[first]["type"] == "onset"


def test_events_follow_the_schema(default_run):
    events, mon = default_run
    check_schema(events)
    summary = mon.summary()
    assert summary["processed_s"] == pytest.approx(12.0) and summary["skipped_s"] == 0
    assert summary["objects"] == len([e for e in events if e["type"] == "end"])


def test_an_object_keeps_its_id_across_windows_at_any_rate(long_source):
    from deepasa.audio.io import resample

    x, scene = long_source
    x48 = resample(x, 16000, 48000)  # (4, 3N)
    events, _ = _run_monitor(x48, block=4801, sample_rate=48000, classifier=False)
    check_schema(events)
    ends = [e for e in events if e["type"] == "end"]
    truth = np.flatnonzero(scene.activity[0]) * 0.1
    spanning = [e for e in ends if e["onset_s"] < 3.5 and e["offset_s"] > 6.5]  # windows end at 4 and 8 s
    assert len(spanning) == 1, ends
    assert abs(spanning[0]["onset_s"] - truth[0]) <= 0.2
    frames = [d["time_s"] for d in spanning[0]["doa"]]
    assert min(frames) < 4.0 < max(frames)


def test_alert_rules():
    rule = AlertRule(["speech"], [AlertRule.parse_zone("330:30")])
    assert rule.match("speech", [100.0, 10.0]) == 1 and rule.match("speech", [-20.0]) == 0
    assert rule.match("speech", [40.0, -40.0]) is None and rule.match("dog", [0.0]) is None
    assert AlertRule(None, [(-90, 90)]).match("dog", [-100, 45]) == 1
    assert AlertRule(["dog"]).match("dog", [170.0]) == 0
    for bad in ("10", "a:b", "10:10", "400:20"):
        with pytest.raises(Exception, match="--zone"):
            AlertRule.parse_zone(bad)


def test_alerts_name_the_objects_of_the_chosen_class_and_zone(stream, default_run):
    ends = [e for e in default_run[0] if e["type"] == "end"]
    target = ends[0]
    az = target["doa"][0]["azimuth_deg"]
    rule = AlertRule([target["class"]], [(az - 5, az + 5)])
    events, _ = _run_monitor(stream, alerts=rule)
    alerts = [e for e in events if e["type"] == "alert"]
    assert target["id"] in {a["id"] for a in alerts}
    for a in alerts:
        assert a["class"] == target["class"] and rule.in_zone(a["azimuth_deg"])
        assert a["id"] in {e["id"] for e in events if e["type"] == "onset"}


# ---------------------------------------------------------------------------------------------- command line
def _cli(args, stdin=None, **kw):
    return subprocess.run([sys.executable, "-m", "deepasa.cli", "listen", *args, "--threads", "1"], input=stdin,
                          capture_output=True, env=ENV, **kw)


def _lines(out: bytes) -> list:
    return [json.loads(line) for line in out.decode().splitlines()]


def test_ids_continue_from_the_state_file_and_the_rolling_folder_keeps_the_last_minutes(stream, tmp_path):
    raw = np.ascontiguousarray(stream.T).astype("<f4").tobytes()  # (N, 4) interleaved float32
    state, keep = tmp_path / "listen.state", tmp_path / "keep"
    first = _cli(["-", "--rate", "16000", "--dtype", "float32", "--state", str(state)], stdin=raw)
    assert first.returncode == 0, first.stderr.decode()
    ev1 = _lines(first.stdout)
    check_schema(ev1[1:-1])
    n1 = ev1[-1]["next_id"]
    assert json.loads(state.read_text())["next_id"] == n1 == len([e for e in ev1 if e["type"] == "end"]) > 0
    # a restart continues the ids; with a rolling folder of the last 0.05 min (3 s) and alerts only
    second = _cli(["-", "--rate", "16000", "--dtype", "float32", "--state", str(state), "--keep-dir", str(keep),
                   "--keep-minutes", "0.05", "--alert", ",".join(KINDS + ["music", "speech"]), "--alerts-only"],
                  stdin=raw)
    assert second.returncode == 0, second.stderr.decode()
    assert b"continuing object ids from" in second.stderr
    ev2 = _lines(second.stdout)
    assert ev2[0]["type"] == "start" and ev2[0]["first_id"] == n1 and ev2[-1]["type"] == "summary"
    assert {e["type"] for e in ev2[1:-1]} <= {"alert"}  # --alerts-only
    assert json.loads(state.read_text())["next_id"] == ev2[-1]["next_id"] > n1
    folders = sorted(p for p in keep.iterdir())
    assert folders and all(not p.name.startswith(".") for p in folders)  # no temporaries left
    for folder in folders:
        doc = json.loads((folder / "object.json").read_text())
        assert doc["id"] >= n1 and doc["offset_s"] >= 12.0 - 3.0  # older objects were removed
        data, rate = sf.read(folder / "image.wav")
        assert rate == 16000 and data.shape[1] == 4
        assert doc["image_start_s"] <= doc["onset_s"] and len(data) / rate >= doc["offset_s"] - doc["onset_s"]
    assert len(folders) < ev2[-1]["objects"]


def test_sigterm_flushes_the_last_events_and_a_stall_is_reported(stream):
    p = subprocess.Popen([sys.executable, "-m", "deepasa.cli", "listen", "-", "--rate", "16000", "--dtype",
                          "float32", "--threads", "1", "--classes", "none", "--stall-seconds", "1"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    p.stdin.write(np.ascontiguousarray(stream[:, :6 * 16000].T).astype("<f4").tobytes())
    p.stdin.flush()
    lines = [json.loads(p.stdout.readline())]
    while lines[-1]["type"] != "stall":  # 6 s in, then nothing: the monitor says so
        lines.append(json.loads(p.stdout.readline()))
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout=60)
    lines += _lines(p.stdout.read())
    err = p.stderr.read().decode()
    p.stdin.close()
    assert rc == 0, err
    assert lines[-1]["type"] == "summary" and lines[-1]["end"] == "stopped by SIGTERM"
    assert lines[-1]["processed_s"] == pytest.approx(6.0)  # the 2 s after the last full window too
    events = [e for e in lines if e["type"] in ("onset", "end")]
    check_schema(events)
    assert events and "Traceback" not in err and "no input for" in err


def test_truncated_input_is_reported_not_a_traceback(stream, tmp_path):
    raw = np.ascontiguousarray(stream[:, :16000].T).astype("<f4").tobytes()[:-5]  # cut inside a sample frame
    out = _cli(["-", "--rate", "16000", "--dtype", "float32", "--classes", "none"], stdin=raw)
    err = out.stderr.decode()
    assert out.returncode == 3 and "Traceback" not in err and "middle of a sample frame" in err, err
    summary = _lines(out.stdout)[-1]
    assert summary["type"] == "summary" and summary["exit_code"] == 3
    # a WAV shorter than its header says
    sf.write(tmp_path / "rec.wav", stream[:, :32000].T, 16000, subtype="PCM_16")
    (tmp_path / "cut.wav").write_bytes((tmp_path / "rec.wav").read_bytes()[:40000])
    out = _cli([str(tmp_path / "cut.wav"), "--classes", "none"])
    assert out.returncode == 3 and b"truncated" in out.stderr and b"Traceback" not in out.stderr


def test_a_growing_wav_is_followed_until_the_recorder_finishes(stream, tmp_path):
    path = tmp_path / "growing.wav"
    x = (np.clip(stream[:, :3 * 16000], -1, 1) * 32767).astype("<i2")  # (4, N)
    data = np.ascontiguousarray(x.T).tobytes()

    def header(size: int) -> bytes:
        fmt = struct.pack("<HHIIHH", 1, 4, 16000, 16000 * 8, 8, 16)
        return (b"RIFF" + struct.pack("<I", (36 + size) & 0xFFFFFFFF) + b"WAVEfmt " + struct.pack("<I", 16) + fmt
                + b"data" + struct.pack("<I", size))

    path.write_bytes(header(0xFFFFFFFF))  # a recorder's placeholder sizes

    def record():
        with open(path, "r+b") as fh:
            fh.seek(0, 2)
            for i in range(0, len(data), 32000):
                fh.write(data[i:i + 32000])
                fh.flush()
                time.sleep(0.05)
            fh.seek(0)
            fh.write(header(len(data)))  # finished: the real sizes

    th = threading.Thread(target=record)
    th.start()
    out = _cli([str(path), "--follow", "--classes", "none"], timeout=120)
    th.join()
    assert out.returncode == 0, out.stderr.decode()
    summary = _lines(out.stdout)[-1]
    assert summary["stream_s"] == pytest.approx(3.0) and summary["end"] == "end of input"


def test_a_stall_ends_the_run_when_asked(stream):
    p = subprocess.Popen([sys.executable, "-m", "deepasa.cli", "listen", "-", "--rate", "16000", "--dtype", "int16",
                          "--threads", "1", "--classes", "none", "--stall-seconds", "0.5", "--exit-on-stall"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    p.stdin.write((np.clip(stream[:, :16000].T, -1, 1) * 32767).astype("<i2").tobytes())
    p.stdin.flush()
    rc = p.wait(timeout=60)
    out, err = p.stdout.read(), p.stderr.read().decode()
    p.stdin.close()
    assert rc == 3 and "Traceback" not in err, err
    lines = _lines(out)
    assert "stall" in [e["type"] for e in lines] and lines[-1]["exit_code"] == 3
    assert lines[-1]["end"].startswith("input stalled")


@pytest.mark.parametrize("args, message", [
    (["-"], "needs --rate"),
    (["-", "--rate", "16000", "--window", "0"], "--window"),
    (["-", "--rate", "16000", "--zone", "north"], "--zone"),
    (["-", "--rate", "16000", "--keep-minutes", "2"], "--keep-dir and --keep-minutes"),
    (["-", "--rate", "16000", "--channels", "2"], "4 channels"),
    (["-", "--rate", "16000", "--max-delay", "1"], "--max-delay"),
    (["missing.wav"], "no such file"),
    (["-", "--rate", "16000", "--follow"], "--follow is for files"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, message, capsys):
    from deepasa.cli import main

    assert main(["listen", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_corrupt_state_file_and_a_raw_file_without_rate_are_refused(tmp_path, capsys):
    from deepasa.cli import main

    (tmp_path / "s.json").write_text("{not json")
    assert main(["listen", "-", "--rate", "16000", "--state", str(tmp_path / "s.json")]) == 2
    (tmp_path / "x.raw").write_bytes(b"\0" * 64)
    assert main(["listen", str(tmp_path / "x.raw")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--state" in err[0] and "--rate" in err[1], err


def test_foa_streams_use_the_intensity_map():
    from deepasa.scenes.simulator import simulate_scene

    rng = np.random.default_rng(7)
    scene = simulate_scene(seed=7, fmt="foa", sources=[("hiss", rng.standard_normal(40000))])
    events, mon = _run_monitor(scene.mixture.astype(np.float32), fmt="foa", classifier=False)
    check_schema(events)
    assert mon.finder.fmt == "foa" and any(e["type"] == "end" for e in events)
    notes = []  # the same stream said to be MIC: analysed, with one note that it looks like FOA
    _run_monitor(scene.mixture.astype(np.float32), classifier=False, log=notes.append)
    assert len(notes) == 1 and "first-order Ambisonics" in notes[0]
