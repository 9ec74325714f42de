"""An imported course: patient and study, the CT series geometry, the RT Structure Set's structures."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt


class PatientPosition(StrEnum):
    """Patient Position (0018,5100), PS3.3 C.7.3.1.1.2: which end enters the machine first (toward the gantry)
    and which side is down. Supine: face up; prone: face down; decubitus left/right: that side down."""

    HFS = "HFS"  # head first, supine
    HFP = "HFP"  # head first, prone
    FFS = "FFS"  # feet first, supine
    FFP = "FFP"  # feet first, prone
    HFDL = "HFDL"  # head first, decubitus left
    HFDR = "HFDR"  # head first, decubitus right
    FFDL = "FFDL"  # feet first, decubitus left
    FFDR = "FFDR"  # feet first, decubitus right


AXIAL_HFS = (1, 0, 0, 0, 1, 0)


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
    """The CT as the rest of the system sees it: a canonical axial grid in patient coordinates, x increasing along
    columns and y along rows, whatever the stored images' orientation. ``origin_mm`` is the centre of the first
    pixel of the first (lowest z) slice; ``pixel_spacing_mm`` is (row spacing = dy, column spacing = dx).
    ``image_orientation`` is the stored images' ImageOrientationPatient (each cosine ±1 along x or y), which
    reading the pixels undoes."""

    frame_of_reference_uid: str
    series_instance_uid: str
    origin_mm: tuple[float, float, float]
    pixel_spacing_mm: tuple[float, float]
    rows: int
    columns: int
    slice_z_mm: tuple[float, ...]
    patient_position: PatientPosition = PatientPosition.HFS
    image_orientation: tuple[int, ...] = AXIAL_HFS

    def __post_init__(self) -> None:
        # Stored as JSON text: values come back as plain strings and lists.
        object.__setattr__(self, "patient_position", PatientPosition(self.patient_position))
        object.__setattr__(self, "image_orientation", tuple(int(v) for v in self.image_orientation))

    @property
    def slice_spacing_mm(self) -> float:
        z = self.slice_z_mm
        return (z[-1] - z[0]) / (len(z) - 1) if len(z) > 1 else 1.0

    def x_mm(self) -> npt.NDArray[np.float64]:
        return self.origin_mm[0] + self.pixel_spacing_mm[1] * np.arange(self.columns, dtype=np.float64)

    def y_mm(self) -> npt.NDArray[np.float64]:
        return self.origin_mm[1] + self.pixel_spacing_mm[0] * np.arange(self.rows, dtype=np.float64)

    def axes(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Coordinates (x, y, z) of the pixel centres along each axis; z as the slices lie."""
        return self.x_mm(), self.y_mm(), np.asarray(self.slice_z_mm, dtype=np.float64)


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
