"""Where the shipped model lives (no torch import, so the CLI can name it without loading torch)."""

from pathlib import Path

# what DeepASA.from_pretrained() and every command load when no checkpoint is named
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "default.pt"

# the shipped localisation-map finder: what ``deepasa analyze`` / ``demo`` use by default (``--finder finder``)
DEFAULT_FINDER_CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "finder.pt"
# the object class read-out of the trajectory-first pipeline (deepasa.model.object_classes)
DEFAULT_CLASSES_CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "object_classes.pt"
