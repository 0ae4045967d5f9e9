"""Direction maps, peak picking and multi-target tracking of sound objects (no training, no deepasa.model).

* :mod:`deepasa.tracking.grid`: near-uniform direction grids and their neighbour lists.
* :mod:`deepasa.tracking.peaks`: multi-peak picking on (T', G) direction maps.
* :mod:`deepasa.tracking.tracker`: :class:`Tracks` and :func:`track`, detections → objects with identities.
* :mod:`deepasa.tracking.srp`: SRP-PHAT maps and :func:`srp_find_objects`, a classical object finder.
* :mod:`deepasa.tracking.foa`: its first-order Ambisonics counterpart, the active-intensity map
  (:class:`~deepasa.tracking.foa.IntensityTracker`).
"""

from deepasa.tracking.grid import direction_grid, grid_neighbours
from deepasa.tracking.foa import IntensityTracker, intensity_map
from deepasa.tracking.peaks import pick_peaks
from deepasa.tracking.srp import SRPTracker, srp_find_objects, srp_phat_map
from deepasa.tracking.tracker import Tracks, track

__all__ = ["direction_grid", "grid_neighbours", "pick_peaks", "Tracks", "track", "srp_phat_map", "SRPTracker",
           "srp_find_objects", "intensity_map", "IntensityTracker"]
