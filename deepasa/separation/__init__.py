"""Separation stages that take objects' trajectories (activity + direction over time) as input."""

from deepasa.separation.spatial import SpatialConfig, SpatialSeparation, separate

__all__ = ["SpatialConfig", "SpatialSeparation", "separate"]
