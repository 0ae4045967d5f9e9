"""Choices of the analysis pipeline shared by the Python API and the command line (no heavy imports)."""

#: Where an object's audio comes from: the zero-training spatial stage driven by its activity and direction
#: (:mod:`deepasa.separation`), or the network's own audio heads.
SEPARATIONS = ("network", "spatial", "extractor")
DEFAULT_SEPARATION = "network"

#: Who finds the objects: "network" (the DeepASA model's slots), "srp" (SRP-PHAT map + tracker, no training)
#: or the path of a learned localisation-map finder checkpoint (deepasa.model.finder).
DEFAULT_FINDER = "network"

#: The trajectory-conditioned extractor used by ``separation="extractor"`` when no path is given.
DEFAULT_EXTRACTOR = "checkpoints/extractor.pt"
