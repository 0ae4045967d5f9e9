"""Audio I/O: float WAV round trip through libsndfile, reproducible bytes, and refusal of bad files."""

import numpy as np
import pytest
import soundfile as sf

from deepasa.audio.io import load_audio, resample, write_audio
from deepasa.errors import DeepASAError


def test_float_wav_round_trip_and_reproducible_bytes(tmp_path):
    x = np.random.default_rng(0).standard_normal((4, 1234)).astype(np.float32)
    write_audio(tmp_path / "a.wav", x, 16000)
    write_audio(tmp_path / "b.wav", x, 16000)
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    info = sf.info(str(tmp_path / "a.wav"))
    assert (info.channels, info.frames, info.samplerate, info.subtype) == (4, 1234, 16000, "FLOAT")
    y, sr = load_audio(tmp_path / "a.wav")
    assert sr == 16000 and np.array_equal(y, x)
    assert not list(tmp_path.glob(".*tmp*"))


def test_resample_keeps_a_tone(tmp_path):
    t = np.arange(24000) / 24000
    x = np.sin(2 * np.pi * 440 * t)[None].astype(np.float32)
    write_audio(tmp_path / "t.flac", x, 24000, subtype="PCM_24")
    y, sr = load_audio(tmp_path / "t.flac", sample_rate=16000)
    ref = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert sr == 16000 and y.shape == (1, 16000)
    assert np.abs(y[0, 200:-200] - ref[200:-200]).max() < 1e-3
    assert resample(x, 16000, 16000).shape == x.shape


@pytest.mark.parametrize("content,needle", [
    (b"", "cannot read"), (b"RIFF....WAVEjunkjunk", "cannot read"), (None, "no such audio file")])
def test_load_audio_refuses_bad_files(tmp_path, content, needle):
    p = tmp_path / "bad.wav"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(DeepASAError, match=needle):
        load_audio(p)


def test_load_audio_refuses_nan_and_empty(tmp_path):
    x = np.zeros((2, 100), dtype=np.float32)
    x[1, 5] = np.nan
    write_audio(tmp_path / "nan.wav", x, 16000)
    with pytest.raises(DeepASAError, match="NaN"):
        load_audio(tmp_path / "nan.wav")
    write_audio(tmp_path / "empty.wav", np.zeros((2, 0), dtype=np.float32), 16000)
    with pytest.raises(DeepASAError, match="no samples"):
        load_audio(tmp_path / "empty.wav")
