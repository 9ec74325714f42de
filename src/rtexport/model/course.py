"""An imported course: patient and study, the CT series geometry, the RT Structure Set's structures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class PatientStudy:
    """Patient and General Study attributes, copied from the imported CT into every new object."""

    patient_name: str
    patient_id: str
    patient_birth_date: str
    patient_sex: str
    study_instance_uid: str
    study_date: str
    study_time: str
    referring_physician_name: str
    study_id: str
    accession_number: str
    study_description: str = ""


@dataclass(frozen=True)
class CTSlice:
    """One imported CT image: its identity, its place, and the hash of its stored bytes."""

    sop_instance_uid: str
    sop_class_uid: str
    z_mm: float
    sha256: str
    size: int


@dataclass(frozen=True)
class CTGeometry:
    """The axial CT grid. ``origin_mm`` is the centre of the first pixel of the first (lowest z) slice;
    ``pixel_spacing_mm`` is (row spacing = dy, column spacing = dx)."""

    frame_of_reference_uid: str
    series_instance_uid: str
    origin_mm: tuple[float, float, float]
    pixel_spacing_mm: tuple[float, float]
    rows: int
    columns: int
    slice_z_mm: tuple[float, ...]
    patient_position: str = "HFS"

    @property
    def slice_spacing_mm(self) -> float:
        z = self.slice_z_mm
        return (z[-1] - z[0]) / (len(z) - 1) if len(z) > 1 else 1.0

    def x_mm(self) -> npt.NDArray[np.float64]:
        return self.origin_mm[0] + self.pixel_spacing_mm[1] * np.arange(self.columns, dtype=np.float64)

    def y_mm(self) -> npt.NDArray[np.float64]:
        return self.origin_mm[1] + self.pixel_spacing_mm[0] * np.arange(self.rows, dtype=np.float64)


@dataclass(frozen=True)
class Structure:
    """An ROI of the imported structure set."""

    roi_number: int
    name: str
    interpreted_type: str  # RTROIInterpretedType, '' when empty


@dataclass(frozen=True)
class Contour:
    """A planar contour: points (N, 3) in patient mm, and its ContourGeometricType."""

    points_mm: npt.NDArray[np.float64]
    geometric_type: str = "CLOSED_PLANAR"


@dataclass(frozen=True)
class StructureSetRef:
    """The imported RT Structure Set: identity, stored bytes and ROIs."""

    sop_instance_uid: str
    series_instance_uid: str
    sha256: str
    label: str
    structures: tuple[Structure, ...]


@dataclass(frozen=True)
class Course:
    """An imported course."""

    id: str
    patient: PatientStudy
    ct: CTGeometry
    slices: tuple[CTSlice, ...]  # sorted by z
    structure_set: StructureSetRef
    imported_at: str = ""
    extras: dict[str, str] = field(default_factory=dict)

    @property
    def structures(self) -> tuple[Structure, ...]:
        return self.structure_set.structures

    def structure(self, name: str) -> Structure | None:
        return next((s for s in self.structures if s.name == name), None)

    @property
    def external(self) -> Structure | None:
        """The imported External: the ROI whose RTROIInterpretedType is EXTERNAL."""
        return next((s for s in self.structures if s.interpreted_type == "EXTERNAL"), None)


def contours_centroid(contours: Sequence[Contour]) -> tuple[float, float, float] | None:
    """Centroid of a structure: area-weighted centroids of its closed contours (None if they enclose nothing)."""
    total, acc = 0.0, np.zeros(3)
    for c in contours:
        p = np.asarray(c.points_mm, dtype=np.float64)
        if c.geometric_type != "CLOSED_PLANAR" or len(p) < 3:
            continue
        x, y = p[:, 0], p[:, 1]
        xn, yn = np.roll(x, -1), np.roll(y, -1)
        cross = x * yn - xn * y
        area = 0.5 * float(cross.sum())
        if abs(area) < 1e-9:
            continue
        cx = float(((x + xn) * cross).sum()) / (6.0 * area)
        cy = float(((y + yn) * cross).sum()) / (6.0 * area)
        total += abs(area)
        acc += abs(area) * np.array([cx, cy, float(p[:, 2].mean())])
    if total <= 0:
        return None
    return (float(acc[0] / total), float(acc[1] / total), float(acc[2] / total))
