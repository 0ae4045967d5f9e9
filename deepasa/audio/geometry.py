"""Array geometries and direction conventions (no torch).

Conventions, used everywhere in deepasa:

* Cartesian axes of the array: x = front, y = left, z = up (right-handed).
* Azimuth is counter-clockwise from +x in the horizontal plane, in (-180°, 180°]; **elevation is the usual
  elevation**, +90° = up (the ASA dataset files store a *polar* angle instead; the loader converts).
* The STARSS23/DCASE "MIC" format: four omni capsules on a sphere of radius 4.2 cm at
  (az, el) = (45°, 35°), (−45°, −35°), (135°, −35°), (−135°, 35°).
* The "FOA" format: first-order Ambisonics, ACN channel order (W, Y, Z, X) with SN3D normalisation
  (AmbiX), as STARSS23 FOA. A plane wave from unit direction u = (x, y, z) gives gains (1, y, z, x).
"""

from __future__ import annotations

import math

import numpy as np

SPEED_OF_SOUND = 343.0  # m/s, the value pyroomacoustics uses

TETRA_RADIUS = 0.042
TETRA_AZ_EL_DEG = ((45.0, 35.0), (-45.0, -35.0), (135.0, -35.0), (-135.0, 35.0))
FOA_CHANNELS = ("W", "Y", "Z", "X")  # ACN order


def unit_vector(azimuth_deg, elevation_deg) -> np.ndarray:
    """Directions (degrees) to unit vectors.

    Args:
        azimuth_deg: array-like of shape (...).
        elevation_deg: array-like of shape (...), usual elevation (+90 = up).
    Returns:
        (..., 3) float64 unit vectors (x front, y left, z up).
    """
    az = np.deg2rad(np.asarray(azimuth_deg, dtype=np.float64))
    el = np.deg2rad(np.asarray(elevation_deg, dtype=np.float64))
    return np.stack([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)], axis=-1)


def azimuth_elevation(vectors) -> tuple[np.ndarray, np.ndarray]:
    """Cartesian vectors (any norm > 0) to (azimuth, elevation) in degrees.

    Args:
        vectors: (..., 3).
    Returns:
        azimuth (...), elevation (...) in degrees; azimuth in (-180, 180], elevation in [-90, 90].
    """
    v = np.asarray(vectors, dtype=np.float64)
    az = np.degrees(np.arctan2(v[..., 1], v[..., 0]))
    el = np.degrees(np.arctan2(v[..., 2], np.hypot(v[..., 0], v[..., 1])))
    return az, el


def tetra_mic_offsets(radius: float = TETRA_RADIUS) -> np.ndarray:
    """Capsule positions of the tetrahedral MIC array relative to its centre.

    Returns:
        (4, 3) positions in metres, in channel order.
    """
    az, el = np.array(TETRA_AZ_EL_DEG).T
    return radius * unit_vector(az, el)


def foa_gains(directions) -> np.ndarray:
    """ACN/SN3D first-order gains of plane waves arriving from ``directions``.

    Args:
        directions: (..., 3) unit vectors pointing from the array towards the source.
    Returns:
        (..., 4) gains in ACN order (W, Y, Z, X): (1, y, z, x).
    """
    d = np.asarray(directions, dtype=np.float64)
    return np.stack([np.ones(d.shape[:-1]), d[..., 1], d[..., 2], d[..., 0]], axis=-1)


#: FuMa first-order B-format (W, X, Y, Z; W at −3 dB) → AmbiX (ACN/SN3D: W, Y, Z, X): ``ambix = FUMA_TO_AMBIX @ fuma``.
#: At first order FuMa's X, Y, Z equal SN3D's; only W's gain (1/√2) and the channel order differ.
FUMA_TO_AMBIX = np.array([[math.sqrt(2.0), 0.0, 0.0, 0.0],
                          [0.0, 0.0, 1.0, 0.0],
                          [0.0, 0.0, 0.0, 1.0],
                          [0.0, 1.0, 0.0, 0.0]])
