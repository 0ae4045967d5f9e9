"""Choices of the analysis pipeline shared by the Python API and the command line (no heavy imports)."""

#: Where an object's audio comes from: the zero-training spatial stage driven by its activity and direction
#: (:mod:`deepasa.separation`), or the network's own audio heads.
SEPARATIONS = ("network", "spatial", "extractor")
DEFAULT_SEPARATION = "network"

#: Who finds the objects: "finder" (the shipped learned localisation-map finder, checkpoints/finder.pt), "srp"
#: (SRP-PHAT map + tracker, no training), "network" (the DeepASA model's slots and audio) or the path of a
#: finder checkpoint. The default was measured best: benchmarks/pipeline.py (docs/analyze.md).
DEFAULT_FINDER = "finder"

#: The trajectory-conditioned extractor used by ``separation="extractor"`` when no path is given.
DEFAULT_EXTRACTOR = "checkpoints/extractor.pt"
