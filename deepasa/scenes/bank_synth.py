"""Synthetic sound-bank clips: speech from espeak-ng / flite, instrument phrases from fluidsynth.

Every render is fully described by the ``spec`` JSON of its manifest row (voice, text, rate, pitch; or GM
program, phrase seed, tempo), so the same manifest always asks for the same audio. The phrase generator
uses ``numpy.random.default_rng(seed)`` (PCG64, stable across numpy versions) and a minimal standard-MIDI
writer, so no MIDI library is needed.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from deepasa.errors import DeepASAError
from deepasa.scenes.bank_audio import read_mono

SOUNDFONTS = (
    Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf2/default-GM.sf2"),
)
PROGRAMS = {"espeak-ng": "espeak-ng", "flite": "flite", "fluidsynth": "fluidsynth"}
_INSTALL_HINT = "apt-get install --no-install-recommends espeak-ng flite fluidsynth (or scripts/install_tools.sh)"


def find_soundfont() -> Path | None:
    """The first General-MIDI soundfont found on this machine (TimGM6mb preferred), or None."""
    return next((p for p in SOUNDFONTS if p.is_file()), None)


def missing_tool(source: str) -> str | None:
    """Why clips of ``source`` ('espeak-ng', 'flite', 'fluidsynth') cannot be rendered here, or None if they can."""
    if shutil.which(PROGRAMS[source]) is None:
        return f"{PROGRAMS[source]} is not installed"
    if source == "fluidsynth" and find_soundfont() is None:
        return "no General-MIDI soundfont in /usr/share/sounds/sf2"
    return None


def install_hint() -> str:
    """The command that installs the synthesis programs."""
    return _INSTALL_HINT


# --------------------------------------------------------------------------------------------- MIDI
def _varlen(n: int) -> bytes:
    """Standard-MIDI variable-length quantity."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def midi_bytes(notes: list[tuple[float, float, int, int]], program: int, bpm: float,
               channel: int = 0, ticks_per_beat: int = 480) -> bytes:
    """A format-0 standard MIDI file playing ``notes`` = [(start_beat, length_beats, pitch, velocity)].

    >>> midi_bytes([(0.0, 1.0, 60, 100)], program=0, bpm=120)[:4]
    b'MThd'
    """
    events: list[tuple[int, int, bytes]] = []   # (tick, order, message); note-offs sort before note-ons
    for start, length, pitch, velocity in notes:
        on = int(round(start * ticks_per_beat))
        off = int(round((start + length) * ticks_per_beat))
        events.append((on, 1, bytes([0x90 | channel, pitch, velocity])))
        events.append((off, 0, bytes([0x80 | channel, pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    tempo = int(round(60_000_000 / bpm))
    track = b"\x00\xff\x51\x03" + tempo.to_bytes(3, "big")
    track += b"\x00" + bytes([0xC0 | channel, program])
    now = 0
    for tick, _, message in events:
        track += _varlen(tick - now) + message
        now = tick
    track += _varlen(ticks_per_beat) + b"\xff\x2f\x00"  # one beat of release before end-of-track
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, ticks_per_beat)
    return header + b"MTrk" + struct.pack(">I", len(track)) + track


def phrase(program: int, seed: int) -> tuple[list[tuple[float, float, int, int]], float]:
    """A short melodic phrase (notes, bpm) for GM ``program``, fully determined by ``seed``.

    Register follows the GM family (basses low, flutes/piccolo high); rhythm and scale vary with the seed.
    """
    rng = np.random.default_rng(seed)
    family = program // 8
    base = {4: 40, 5: 48, 9: 72, 2: 55, 3: 60}.get(family, 60)   # 4 = bass, 9 = pipe, 5 = strings
    scale = [0, 2, 4, 7, 9] if rng.random() < 0.5 else [0, 3, 5, 7, 10]
    bpm = float(rng.integers(80, 150))
    notes = []
    beat = 0.0
    degree = int(rng.integers(0, len(scale)))
    for _ in range(int(rng.integers(6, 13))):
        degree = int(np.clip(degree + rng.integers(-2, 3), 0, 2 * len(scale) - 1))
        pitch = base + 12 * (degree // len(scale)) + scale[degree % len(scale)]
        length = float(rng.choice([0.5, 0.5, 1.0, 1.0, 1.5, 2.0]))
        notes.append((beat, length * 0.95, int(pitch), int(rng.integers(70, 115))))
        beat += length
        if beat * 60.0 / bpm > 6.0:
            break
    return notes, bpm


# --------------------------------------------------------------------------------------------- render
def _run(cmd: list[str]) -> None:
    """Run a synthesis program; a failure is a user-facing error naming the command."""
    try:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        raise DeepASAError(f"{cmd[0]} failed: {detail.decode(errors='replace').strip()[:200] or exc}") from exc


def render(source: str, spec: dict) -> tuple[np.ndarray, int]:
    """Render one synthetic clip described by its manifest ``spec``; returns (mono float32, sample rate).

    * espeak-ng: ``{"voice": "de+m3", "speed": 160, "pitch": 45, "text": "..."}``
    * flite: ``{"voice": "slt", "text": "..."}``
    * fluidsynth: ``{"program": 24, "seed": 7}`` (GM program 0-127; the phrase comes from :func:`phrase`)
    """
    why = missing_tool(source)
    if why:
        raise DeepASAError(f"cannot render {source} clips: {why} ({_INSTALL_HINT})")
    with tempfile.TemporaryDirectory(prefix="deepasa-synth-") as tmp:
        wav = Path(tmp) / "out.wav"
        if source == "espeak-ng":
            _run(["espeak-ng", "-v", spec["voice"], "-s", str(spec["speed"]), "-p", str(spec["pitch"]),
                  "-w", str(wav), spec["text"]])
        elif source == "flite":
            _run(["flite", "-voice", spec["voice"], "-t", spec["text"], "-o", str(wav)])
        elif source == "fluidsynth":
            notes, bpm = phrase(int(spec["program"]), int(spec["seed"]))
            mid = Path(tmp) / "phrase.mid"
            mid.write_bytes(midi_bytes(notes, int(spec["program"]), bpm))
            _run(["fluidsynth", "-ni", "-q", "-g", "0.8", "-r", "16000", "-F", str(wav),
                  str(find_soundfont()), str(mid)])
        else:
            raise ValueError(f"unknown synthetic source {source!r}")
        return read_mono(wav)
