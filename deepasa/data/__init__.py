"""Torch datasets for on-disk scene formats (ours = the ASA layout)."""

from deepasa.data.scenes import SceneDataset

__all__ = ["SceneDataset"]
