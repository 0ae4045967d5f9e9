"""Torch datasets for on-disk scene formats (ours = the ASA layout) and on-the-fly simulation."""

from deepasa.data.dcase25t4 import DCASE2025T4_CLASSES, DCASE25T4Dataset
from deepasa.data.mcfuss import MCFussDataset
from deepasa.data.onthefly import OnTheFlyScenes, SimulatedScenes, scene_item
from deepasa.data.scenes import SceneDataset
from deepasa.data.starss23 import DCASE2023_CLASSES, Starss23Dataset

__all__ = ["SceneDataset", "OnTheFlyScenes", "SimulatedScenes", "scene_item", "Starss23Dataset",
           "DCASE2023_CLASSES", "MCFussDataset", "DCASE25T4Dataset", "DCASE2025T4_CLASSES"]
