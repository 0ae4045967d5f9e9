"""Where the shipped models live (no torch import, so the CLI can name them without loading torch).

In a source checkout they are the repository's ``checkpoints/`` files; in an installed wheel (``pip install
deepasa-*.whl``, no source tree) the same files travel as package data under ``deepasa/_shipped/`` (``setup.py``
maps ``checkpoints/`` there) and are found with :mod:`importlib.resources`. The checkout wins where both exist,
so a developer's freshly exported model is the one that runs.
"""

from importlib.resources import files
from pathlib import Path

#: ``checkpoints/`` of a source checkout (absent in an installed wheel).
SOURCE_CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
#: The shipped models as package data of an installed wheel.
PACKAGE_CHECKPOINTS = Path(str(files("deepasa"))) / "_shipped"
#: The files that travel in the wheel (setup.py's package data): what ``analyze``/``demo`` load by default.
SHIPPED_FILES = ("default.pt", "finder.pt", "object_classes.pt")


def shipped_file(name: str) -> Path:
    """The path of a shipped model file: the source checkout's when it has it, else the installed package's."""
    source, package = SOURCE_CHECKPOINTS / name, PACKAGE_CHECKPOINTS / name
    return package if not source.is_file() and package.is_file() else source


# what DeepASA.from_pretrained() and every command load when no checkpoint is named
DEFAULT_CHECKPOINT = shipped_file("default.pt")

# the shipped localisation-map finder: what ``deepasa analyze`` / ``demo`` use by default (``--finder finder``)
DEFAULT_FINDER_CHECKPOINT = shipped_file("finder.pt")
# the object class read-out of the trajectory-first pipeline (deepasa.model.object_classes)
DEFAULT_CLASSES_CHECKPOINT = shipped_file("object_classes.pt")
