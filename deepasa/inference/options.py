"""Choices of the analysis pipeline shared by the Python API and the command line (no heavy imports)."""

#: Where an object's audio comes from: the zero-training spatial stage driven by its activity and direction
#: (:mod:`deepasa.separation`), or the network's own audio heads.
SEPARATIONS = ("network", "spatial")
DEFAULT_SEPARATION = "network"
