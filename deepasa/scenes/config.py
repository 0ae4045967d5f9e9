"""Scene simulator configuration: every range of the ASA recipe (docs/spec.md §7.1), configurable (no torch).

A :class:`SceneConfig` is built from defaults, then a YAML file, then ``key=value`` overrides; ranges are
``[min, max]`` pairs and are validated (min ≤ max) with a one-line :class:`~deepasa.errors.DeepASAError`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from deepasa.errors import DeepASAError

FILLS = ("clip", "chain", "loop")  # values of SceneConfig.fill; "clip" is the ASA recipe


@dataclass
class SceneConfig:
    """All parameters of a simulated scene. Defaults follow the ASA recipe (docs/spec.md §7.1).

    Ranges are ``(min, max)`` and drawn uniformly unless stated otherwise.
    """

    sample_rate: int = 16000
    duration: float = 4.0                       # seconds
    label_hop: float = 0.1                      # seconds per label frame (DCASE: 100 ms)
    num_sources: tuple = (2, 3, 4, 5)
    num_sources_weights: tuple = (0.1, 0.2, 0.3, 0.4)
    classes: tuple | None = None                # subset of the sound bank's classes (None = all)
    moving_prob: float = 0.75
    room_xy: tuple = (5.0, 8.0)                 # width and length, metres
    room_z: tuple = (3.0, 4.0)                  # height, metres
    rt60: tuple = (0.2, 0.6)                    # seconds (Eyring, see acoustics.eyring_absorption)
    snr_db: tuple = (6.0, 30.0)                 # direct-path sum vs diffuse noise
    noise_slope: tuple = (0.0, 2.0)             # noise spectrum 1/f^slope (0 white, 1 pink, 2 brown)
    array_wall_margin: float = 1.0              # array centre at least this far from every wall
    array_height: tuple = (1.0, 2.0)
    source_wall_margin: float = 0.5
    source_distance: tuple = (0.8, 4.0)         # source-to-array distance, metres
    trajectory_rate: float = 10.0               # trajectory points per second (moving sources)
    trajectory_amplitude: tuple = (0.3, 1.0)    # sinusoidal excursion per horizontal axis, metres
    trajectory_cycles: tuple = (0.25, 1.5)      # oscillation cycles per clip
    event_duration: tuple = (1.0, 4.0)          # seconds; with fill "clip" capped by the clip's own length
    fill: str = "clip"                          # what an event is made of (simulator.sample_event): "clip" = one
                                                # clip, cropped; "chain" = a clip drawn by length, cropped if it
                                                # is as long as the event, else followed by other clips of its
                                                # class; "loop" = the same, repeating that clip
    crossfade_s: float = 0.05                   # s: equal-power crossfade at each joint of a chained/looped event
    source_gain_db: tuple = (-10.0, 0.0)
    peak: tuple = (0.3, 0.9)                    # peak |mixture| after normalisation
    ism_order: int = 10                         # image-source order of the early part
    t_mix: float = 0.04                         # s: early (images) → late (diffuse tail) crossfade start
    t_fade: float = 0.02                        # s: crossfade length
    activity_threshold_db: float = 20.0         # frame active if within this of the source's loudest
    extra: dict = field(default_factory=dict)   # free-form notes carried into meta (not used)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_sources(cls, yaml_path: str | Path | None = None, overrides: list[str] | None = None) -> "SceneConfig":
        """Defaults ← YAML file ← ``key=value`` overrides (values parsed as YAML, ``a,b`` as a range)."""
        values: dict = {}
        if yaml_path is not None:
            path = Path(yaml_path)
            if not path.is_file():
                raise DeepASAError(f"no such config file: {path}")
            loaded = yaml.safe_load(path.read_text()) or {}
            if not isinstance(loaded, dict):
                raise DeepASAError(f"{path}: expected a mapping of scene parameters")
            values.update(loaded)
        for item in overrides or []:
            if "=" not in item:
                raise DeepASAError(f"override {item!r} is not key=value")
            key, raw = item.split("=", 1)
            raw = f"[{raw}]" if "," in raw and not raw.strip().startswith("[") else raw
            values[key.strip()] = yaml.safe_load(raw)
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict) -> "SceneConfig":
        """Build and validate from a mapping; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise DeepASAError(f"unknown scene parameter(s): {', '.join(unknown)} (valid: {', '.join(sorted(names))})")
        clean = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        cfg = cls(**clean)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        """JSON/YAML-friendly dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise DeepASAError on an impossible configuration."""
        ranges = ["room_xy", "room_z", "rt60", "snr_db", "noise_slope", "array_height", "source_distance",
                  "trajectory_amplitude", "trajectory_cycles", "event_duration", "source_gain_db", "peak"]
        for name in ranges:
            v = getattr(self, name)
            if not (isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v)):
                raise DeepASAError(f"{name} must be a [min, max] pair, got {v!r}")
            if v[0] > v[1]:
                raise DeepASAError(f"{name}: min {v[0]} > max {v[1]}")
        if len(self.num_sources) != len(self.num_sources_weights) or not self.num_sources:
            raise DeepASAError("num_sources and num_sources_weights must have the same, non-zero length")
        if min(self.num_sources) < 1:
            raise DeepASAError("num_sources must be ≥ 1")
        if any(w < 0 for w in self.num_sources_weights) or sum(self.num_sources_weights) <= 0:
            raise DeepASAError("num_sources_weights must be non-negative with a positive sum")
        if self.sample_rate <= 0 or self.duration <= 0 or self.label_hop <= 0:
            raise DeepASAError("sample_rate, duration and label_hop must be positive")
        if not 0.0 <= self.moving_prob <= 1.0:
            raise DeepASAError("moving_prob must be in [0, 1]")
        if self.rt60[0] <= 0 or self.peak[0] <= 0 or self.peak[1] > 1.0:
            raise DeepASAError("rt60 must be > 0 and peak within (0, 1]")
        if self.room_xy[0] <= 2 * self.array_wall_margin or self.room_z[0] <= self.array_height[1]:
            raise DeepASAError("the room is too small for the array margins (room_xy/room_z vs array_wall_margin/array_height)")
        if self.source_distance[0] <= 0.1:
            raise DeepASAError("source_distance min must exceed 0.1 m (the array itself)")
        if self.fill not in FILLS:
            raise DeepASAError(f"fill must be one of {', '.join(FILLS)}, got {self.fill!r}")
        if not isinstance(self.crossfade_s, (int, float)) or not 0.0 <= self.crossfade_s <= 1.0:
            raise DeepASAError(f"crossfade_s must be within [0, 1] s, got {self.crossfade_s!r}")

    @property
    def n_samples(self) -> int:
        """Samples per scene."""
        return int(round(self.duration * self.sample_rate))

    @property
    def n_frames(self) -> int:
        """Label frames per scene."""
        return int(round(self.duration / self.label_hop))
