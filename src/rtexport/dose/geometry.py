"""Beam geometry: IEC 61217 machine angles to DICOM patient coordinates (LPS), and the beam's fan frame.

IEC fixed system: X to the right of an observer at the foot of the couch facing the gantry, Y toward the
gantry, Z up. For a head-first-supine patient, patient LPS = M · IEC support with x_L = X, y_P = −Z, z_S = Y.
Rotations (all counter-clockwise seen from the positive end of their axis): gantry θ about Y_fixed, collimator
c about the beam axis Z_gantry, couch φ about Z_fixed (the patient turns with the couch, so the beam turns by −φ
relative to the patient):

    v_LPS = M · Rz(−φ) · Ry(θ) · Rz(c) · v_beam-limiting-device

The source sits at +Z of the beam-limiting-device system: gantry 0 comes from anterior (−y) and travels toward
+y, gantry 90 comes from the patient's left (+x) and travels toward −x. Beam's-eye-view (x, y) = (X_b, Y_b):
at gantry, collimator and couch 0 that is patient left (+x) and superior (+z).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_IEC_TO_LPS = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def _rz(deg: float) -> FloatArray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _ry(deg: float) -> FloatArray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def beam_axes(gantry_deg: float, collimator_deg: float, couch_deg: float) -> FloatArray:
    """3×3 matrix whose columns are the beam-limiting-device X_b, Y_b, Z_b axes in patient LPS (HFS).
    Z_b points from the isocenter toward the source."""
    return np.asarray(_IEC_TO_LPS @ _rz(-couch_deg) @ _ry(gantry_deg) @ _rz(collimator_deg), dtype=np.float64)


@dataclass(frozen=True)
class BeamFrame:
    """A divergent beam: source position, unit axes (LPS) and the plane (``sad_mm`` from the source) where
    beam's-eye-view coordinates are measured. Fan coordinates (u, v, d): BEV position projected to that plane,
    and distance from the source along the central axis."""

    source_mm: tuple[float, float, float]
    axes: FloatArray  # columns: e_u, e_v, toward-source
    sad_mm: float

    @property
    def direction(self) -> FloatArray:
        """Unit vector of travel (source → isocenter)."""
        return np.asarray(-self.axes[:, 2], dtype=np.float64)

    def to_fan(self, points: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Fan coordinates of points (..., 3)."""
        rel = np.asarray(points, dtype=np.float64) - np.asarray(self.source_mm)
        d = rel @ self.direction
        scale = self.sad_mm / d
        return (rel @ self.axes[:, 0]) * scale, (rel @ self.axes[:, 1]) * scale, d

    def from_fan(self, u: FloatArray, v: FloatArray, d: FloatArray) -> FloatArray:
        """Patient points (..., 3) of fan coordinates (broadcast)."""
        u, v, d = np.broadcast_arrays(np.asarray(u, float), np.asarray(v, float), np.asarray(d, float))
        s = d / self.sad_mm
        return np.asarray(
            np.asarray(self.source_mm)
            + d[..., None] * self.direction
            + (u * s)[..., None] * self.axes[:, 0]
            + (v * s)[..., None] * self.axes[:, 1],
            dtype=np.float64,
        )


def frame_from_angles(
    isocenter_mm: tuple[float, float, float],
    gantry_deg: float,
    collimator_deg: float,
    couch_deg: float,
    source_to_isocenter_mm: float,
    sad_mm: float,
) -> BeamFrame:
    """The frame of a beam whose central axis passes through ``isocenter_mm``, with the source
    ``source_to_isocenter_mm`` before it."""
    axes = beam_axes(gantry_deg, collimator_deg, couch_deg)
    source = np.asarray(isocenter_mm, dtype=np.float64) + source_to_isocenter_mm * axes[:, 2]
    return BeamFrame(source_mm=(float(source[0]), float(source[1]), float(source[2])), axes=axes, sad_mm=sad_mm)
