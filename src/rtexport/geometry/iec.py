"""The IEC 61217 chain from the machine to the patient, and the beam's fan frame.

IEC 61217 fixed system f: origin at the isocenter, X_f to the right of someone at the foot of the couch facing the
gantry, Y_f toward the gantry, Z_f up. Every rotation is right-handed about its axis (clockwise seen from the
origin looking along the axis): the gantry by θ about Y_f (gantry 90 puts the source at +X_f), the beam-limiting
device by c about the beam axis Z_g (counter-clockwise in the beam's-eye view), the patient support by φ about Z_f
(counter-clockwise seen from above; the patient turns with it). Table top eccentric, pitch and roll are 0. So

    v_patient = P · Rz(−φ) · Ry(θ) · Rz(c) · v_beam-limiting-device

where P maps the table-top system to DICOM patient coordinates (x to the patient's left, y posterior, z superior;
PS3.3 C.7.6.2.1.1) for the Patient Position (PS3.3 C.7.3.1.1.2): head first = head toward the gantry (+Y_t),
supine = face up (+Z_t anterior), prone = face down, decubitus left/right = that side down (−Z_t). The source
sits on +Z_b; beam's-eye-view (x, y) are (X_b, Y_b): at all angles 0 on a head-first-supine patient, the patient's
left and superior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rtexport.model.course import PatientPosition

FloatArray = npt.NDArray[np.float64]
Point = tuple[float, float, float]

# Rows: patient x (left), y (posterior), z (superior) as combinations of the table-top axes X_t, Y_t, Z_t.
_PATIENT_FROM_TABLE: dict[PatientPosition, tuple[tuple[int, int, int], ...]] = {
    PatientPosition.HFS: ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
    PatientPosition.HFP: ((-1, 0, 0), (0, 0, 1), (0, 1, 0)),
    PatientPosition.FFS: ((-1, 0, 0), (0, 0, -1), (0, -1, 0)),
    PatientPosition.FFP: ((1, 0, 0), (0, 0, 1), (0, -1, 0)),
    PatientPosition.HFDL: ((0, 0, -1), (-1, 0, 0), (0, 1, 0)),
    PatientPosition.HFDR: ((0, 0, 1), (1, 0, 0), (0, 1, 0)),
    PatientPosition.FFDL: ((0, 0, -1), (1, 0, 0), (0, -1, 0)),
    PatientPosition.FFDR: ((0, 0, 1), (-1, 0, 0), (0, -1, 0)),
}


def _rz(deg: float) -> FloatArray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _ry(deg: float) -> FloatArray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def patient_from_table(position: PatientPosition) -> FloatArray:
    """3×3 matrix taking table-top (IEC) vectors to DICOM patient vectors for ``position``."""
    return np.array(_PATIENT_FROM_TABLE[PatientPosition(position)], dtype=np.float64)


def beam_axes(gantry_deg: float, collimator_deg: float, couch_deg: float, position: PatientPosition) -> FloatArray:
    """3×3 matrix whose columns are the beam-limiting-device axes X_b, Y_b, Z_b in patient coordinates.
    Z_b points from the isocenter toward the source."""
    chain = patient_from_table(position) @ _rz(-couch_deg) @ _ry(gantry_deg) @ _rz(collimator_deg)
    # the angles are exact multiples of 90° often enough that rounding noise would show in exported numbers
    return np.asarray(np.where(np.abs(chain) < 1e-15, 0.0, chain), dtype=np.float64)


def source_direction(gantry_deg: float, couch_deg: float, position: PatientPosition) -> FloatArray:
    """Unit vector from the isocenter toward the source (the collimator does not move it)."""
    return np.asarray(beam_axes(gantry_deg, 0.0, couch_deg, position)[:, 2], dtype=np.float64)


def scanner_orientation(position: PatientPosition) -> tuple[int, int, int, int, int, int]:
    """The ImageOrientationPatient a CT scanner writes for ``position``: rows along the table's X, columns
    downward (−Z), in patient coordinates (HFS [1,0,0,0,1,0], HFP [-1,0,0,0,-1,0], ...)."""
    rows = _PATIENT_FROM_TABLE[PatientPosition(position)]
    # the image row runs along +X_t, the column along -Z_t: the first and (negated) last table-axis columns
    (rx, _, rz0), (ry, _, rz1), (rz, _, rz2) = rows
    return rx, ry, rz, -rz0, -rz1, -rz2


@dataclass(frozen=True)
class BeamFrame:
    """A divergent beam: source position, unit axes (columns X_b, Y_b, toward-source Z_b, patient coordinates)
    and the source-axis distance, where beam's-eye-view coordinates are measured. Fan coordinates (u, v, d): the
    beam's-eye-view position projected to that plane, and the distance from the source along the central axis."""

    source_mm: Point
    axes: FloatArray
    sad_mm: float

    @property
    def direction(self) -> FloatArray:
        """Unit vector of travel (source → isocenter)."""
        return np.asarray(-self.axes[:, 2], dtype=np.float64)

    @property
    def isocenter_mm(self) -> Point:
        iso = np.asarray(self.source_mm) + self.sad_mm * self.direction
        return float(iso[0]), float(iso[1]), float(iso[2])

    def point_at(self, distance_mm: float) -> Point:
        """The point of the central axis ``distance_mm`` from the source."""
        p = np.asarray(self.source_mm) + distance_mm * self.direction
        return float(p[0]), float(p[1]), float(p[2])

    def to_fan(self, points: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Fan coordinates of points (..., 3)."""
        rel = np.asarray(points, dtype=np.float64) - np.asarray(self.source_mm)
        d = rel @ self.direction
        scale = self.sad_mm / d
        return (rel @ self.axes[:, 0]) * scale, (rel @ self.axes[:, 1]) * scale, d

    def from_fan(self, u: npt.ArrayLike, v: npt.ArrayLike, d: npt.ArrayLike) -> FloatArray:
        """Patient points (..., 3) of fan coordinates (broadcast)."""
        ua, va, da = np.broadcast_arrays(np.asarray(u, float), np.asarray(v, float), np.asarray(d, float))
        s = da / self.sad_mm
        us, vs = ua * s, va * s
        direction, x_b, y_b = self.direction, self.axes[:, 0], self.axes[:, 1]
        out = np.empty((*da.shape, 3), dtype=np.float64)
        for c in range(3):  # one coordinate at a time: the same sums, without (..., 3) temporaries
            out[..., c] = self.source_mm[c] + da * direction[c] + us * x_b[c] + vs * y_b[c]
        return out

    def depth_range(self, lo: npt.ArrayLike, hi: npt.ArrayLike) -> tuple[float, float]:
        """The central-axis distances from the source that the box [lo, hi] (patient corners) spans."""
        d = (box_corners(lo, hi) - np.asarray(self.source_mm)) @ self.direction
        return float(d.min()), float(d.max())

    def field_box(
        self, uv_lo: npt.ArrayLike, uv_hi: npt.ArrayLike, depths: tuple[float, float]
    ) -> tuple[FloatArray, FloatArray]:
        """Lowest and highest patient corner of the pyramid through the beam's-eye-view rectangle [uv_lo, uv_hi]
        between two central-axis distances from the source."""
        (u0, v0), (u1, v1) = np.asarray(uv_lo, dtype=np.float64), np.asarray(uv_hi, dtype=np.float64)
        corners = self.from_fan(*np.meshgrid([u0, u1], [v0, v1], list(depths), indexing="ij")).reshape(-1, 3)
        return corners.min(axis=0), corners.max(axis=0)

    def ray_length(self, u: npt.ArrayLike, v: npt.ArrayLike, d: npt.ArrayLike) -> FloatArray:
        """Distance from the source to the point at fan coordinates (u, v, d)."""
        ua, va, da = (np.asarray(x, dtype=np.float64) for x in (u, v, d))
        return np.asarray(da * np.sqrt(1.0 + (ua**2 + va**2) / self.sad_mm**2), dtype=np.float64)


def box_corners(lo: npt.ArrayLike, hi: npt.ArrayLike) -> FloatArray:
    """The 8 corners (8, 3) of the axis-aligned box [lo, hi]."""
    (x0, y0, z0), (x1, y1, z1) = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    return np.array([[x, y, z] for x in (x0, x1) for y in (y0, y1) for z in (z0, z1)], dtype=np.float64)


def frame_toward(
    point_mm: Point,
    gantry_deg: float,
    collimator_deg: float,
    couch_deg: float,
    position: PatientPosition,
    source_to_point_mm: float,
    sad_mm: float,
) -> BeamFrame:
    """The frame of a beam whose central axis passes through ``point_mm`` with the source
    ``source_to_point_mm`` before it."""
    axes = beam_axes(gantry_deg, collimator_deg, couch_deg, position)
    source = np.asarray(point_mm, dtype=np.float64) + source_to_point_mm * axes[:, 2]
    return BeamFrame(source_mm=(float(source[0]), float(source[1]), float(source[2])), axes=axes, sad_mm=sad_mm)
