"""A generated CT phantom and its RT Structure Set, as real DICOM files.

The body is a water-equivalent elliptic cylinder with a bone insert, a lung insert and a small high-density
"prosthesis"; the structure set has BODY (EXTERNAL), a second outline (OUTLINE2) that a plan may choose as
External, PTV (anterior), Bone, Lung and Prosthesis. Coordinates are DICOM patient coordinates (+x the patient's
left, +y posterior, +z superior), so the anatomy is the same in every patient position; the images are stored as
a scanner would store them for that position (or in any given axial orientation).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, RTStructureSetStorage
from pydicom.valuerep import DSfloat

from rtexport.geometry.axial import AxialOrientation, CanonicalGrid
from rtexport.geometry.iec import scanner_orientation
from rtexport.model.course import PatientPosition

_NS = uuid.UUID("5d0b8f6e-2f3c-4a59-9d7e-8a1f1c0f6b21")
_IMPL_UID = "2.25.102387491651178362305574622313404934419"


def _uid(*parts: object) -> str:
    return f"2.25.{uuid.uuid5(_NS, chr(31).join(str(p) for p in parts)).int}"


@dataclass(frozen=True)
class PhantomSpec:
    """Size of the generated phantom. Body semi-axes are (a, b) in mm."""

    rows: int = 256
    columns: int = 256
    pixel_mm: float = 1.5
    slices: int = 60
    slice_mm: float = 3.0
    body_a_mm: float = 150.0
    body_b_mm: float = 100.0
    seed: str = "demo"
    patient_name: str = "Phantom^Electron"
    patient_id: str = "RTX-DEMO-001"
    position: PatientPosition = PatientPosition.HFS
    orientation: tuple[int, int, int, int, int, int] | None = None  # None: what a scanner writes for the position

    @property
    def image_orientation(self) -> AxialOrientation:
        return AxialOrientation.parse(self.orientation or scanner_orientation(self.position))

    @property
    def origin_mm(self) -> tuple[float, float, float]:
        x0 = -(self.columns - 1) * self.pixel_mm / 2
        y0 = -(self.rows - 1) * self.pixel_mm / 2
        z0 = -(self.slices - 1) * self.slice_mm / 2
        return (x0, y0, z0)

    def z(self, k: int) -> float:
        return round(self.origin_mm[2] + k * self.slice_mm, 4)


# Inserts: (name, HU, centre x, centre y, semi-axis x, semi-axis y, z half-length or None for full length)
_INSERTS = [
    ("Bone", 1000.0, -60.0, -40.0, 15.0, 15.0, None),
    ("Lung", -750.0, 50.0, 10.0, 40.0, 30.0, None),
    ("Prosthesis", 2500.0, 70.0, -60.0, 6.0, 6.0, 30.0),
]


def _ellipse(cx: float, cy: float, a: float, b: float, n: int = 96) -> npt.NDArray[np.float64]:
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    return np.column_stack([cx + a * np.cos(t), cy + b * np.sin(t)])


def hu_slice(spec: PhantomSpec, z: float) -> npt.NDArray[np.float64]:
    """HU of one axial slice at z."""
    x = spec.origin_mm[0] + spec.pixel_mm * np.arange(spec.columns)
    y = spec.origin_mm[1] + spec.pixel_mm * np.arange(spec.rows)
    xx, yy = np.meshgrid(x, y)
    hu = np.full(xx.shape, -1000.0)
    hu[(xx / spec.body_a_mm) ** 2 + (yy / spec.body_b_mm) ** 2 <= 1.0] = 0.0
    for _, value, cx, cy, a, b, half in _INSERTS:
        if half is not None and abs(z) > half:
            continue
        hu[((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1.0] = value
    return hu


def _patient_study(ds: Dataset, spec: PhantomSpec) -> None:
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = _uid(spec.seed, "study")
    ds.StudyDate = "20260101"
    ds.StudyTime = "090000"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.StudyDescription = "Electron phantom"


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(_IMPL_UID)
    meta.ImplementationVersionName = "RTEXPORT_DEMO"
    return meta


def ct_uids(spec: PhantomSpec) -> tuple[str, str, list[str]]:
    """(series UID, frame of reference UID, SOP instance UIDs in slice order)."""
    return (
        _uid(spec.seed, "ct-series"),
        _uid(spec.seed, "frame"),
        [_uid(spec.seed, "ct", k) for k in range(spec.slices)],
    )


def ct_datasets(spec: PhantomSpec) -> Iterator[Dataset]:
    """The CT slices, one Dataset at a time (bounded memory for large phantoms)."""
    series, frame, sops = ct_uids(spec)
    base = hu_slice(spec, spec.z(spec.slices // 2))
    orientation = spec.image_orientation
    x0, y0, _ = spec.origin_mm
    grid = CanonicalGrid((x0, y0), (spec.pixel_mm, spec.pixel_mm), spec.rows, spec.columns)
    first, pixel_spacing, rows, columns = orientation.stored_layout(grid)
    for k in range(spec.slices):
        z = spec.z(k)
        hu = base if all(h is None or abs(z) <= h for *_, h in _INSERTS) else hu_slice(spec, z)
        ds = Dataset()
        ds.file_meta = _file_meta(CTImageStorage, sops[k])
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sops[k]
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        _patient_study(ds, spec)
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series
        ds.SeriesNumber = 1
        ds.SeriesDate = "20260101"
        ds.SeriesTime = "090000"
        ds.PatientPosition = PatientPosition(spec.position).value
        ds.Laterality = ""
        ds.FrameOfReferenceUID = frame
        ds.PositionReferenceIndicator = ""
        ds.Manufacturer = "rtexport phantom"
        ds.InstanceNumber = k + 1
        ds.ContentDate = "20260101"
        ds.ContentTime = "090000"
        ds.AcquisitionNumber = 1
        ds.PixelSpacing = [DSfloat(v, auto_format=True) for v in pixel_spacing]
        ds.ImageOrientationPatient = list(orientation.as_tuple())
        ds.ImagePositionPatient = [DSfloat(v, auto_format=True) for v in (*first, z)]
        ds.SliceThickness = DSfloat(spec.slice_mm, auto_format=True)
        ds.SliceLocation = DSfloat(z, auto_format=True)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = columns
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.KVP = 120
        ds.WindowCenter = 40
        ds.WindowWidth = 400
        stored = orientation.stored_pixels(np.clip(hu + 1024.0, 0, 65535).astype("<u2"))
        ds.PixelData = np.ascontiguousarray(stored).tobytes()
        yield ds


def _roi_contours(spec: PhantomSpec) -> list[tuple[str, str, list[tuple[int, npt.NDArray[np.float64]]]]]:
    """(name, type, [(slice index, polygon (N,2))]) for each ROI."""
    a, b = spec.body_a_mm, spec.body_b_mm
    body = _ellipse(0.0, 0.0, a, b, 128)
    outline2 = _ellipse(0.0, 0.0, a + 5.0, b + 5.0, 128)
    ptv = np.array([[-45.0, -b + 4.0], [45.0, -b + 4.0], [45.0, -b + 32.0], [-45.0, -b + 32.0]])
    everywhere = range(spec.slices)
    middle = [k for k in everywhere if abs(spec.z(k)) <= 30.0]
    rois: list[tuple[str, str, list[tuple[int, npt.NDArray[np.float64]]]]] = [
        ("BODY", "EXTERNAL", [(k, body) for k in everywhere]),
        ("OUTLINE2", "", [(k, outline2) for k in everywhere]),
        ("PTV", "PTV", [(k, ptv) for k in middle]),
    ]
    for name, _, cx, cy, ea, eb, half in _INSERTS:
        ks = [k for k in everywhere if half is None or abs(spec.z(k)) <= half]
        rois.append((name, "ORGAN" if name != "Prosthesis" else "", [(k, _ellipse(cx, cy, ea, eb, 48)) for k in ks]))
    return rois


def rtstruct_dataset(spec: PhantomSpec) -> Dataset:
    """The phantom's RT Structure Set (PS3.3 A.19), referencing every CT slice."""
    series, frame, sops = ct_uids(spec)
    sop = _uid(spec.seed, "rtstruct")
    ds = Dataset()
    ds.file_meta = _file_meta(RTStructureSetStorage, sop)
    ds.SOPClassUID = RTStructureSetStorage
    ds.SOPInstanceUID = sop
    ds.SpecificCharacterSet = "ISO_IR 100"
    _patient_study(ds, spec)
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = _uid(spec.seed, "rtstruct-series")
    ds.SeriesNumber = 2
    ds.Manufacturer = "rtexport phantom"
    ds.FrameOfReferenceUID = frame
    ds.PositionReferenceIndicator = ""
    ds.OperatorsName = ""
    ds.StructureSetLabel = "Phantom"
    ds.StructureSetDate = "20260101"
    ds.StructureSetTime = "090000"
    ds.InstanceNumber = 1

    def image_ref(k: int) -> Dataset:
        item = Dataset()
        item.ReferencedSOPClassUID = CTImageStorage
        item.ReferencedSOPInstanceUID = sops[k]
        return item

    rt_series = Dataset()
    rt_series.SeriesInstanceUID = series
    rt_series.ContourImageSequence = Sequence([image_ref(k) for k in range(spec.slices)])
    rt_study = Dataset()
    rt_study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (retired; customary)
    rt_study.ReferencedSOPInstanceUID = ds.StudyInstanceUID
    rt_study.RTReferencedSeriesSequence = Sequence([rt_series])
    ref_frame = Dataset()
    ref_frame.FrameOfReferenceUID = frame
    ref_frame.RTReferencedStudySequence = Sequence([rt_study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([ref_frame])

    rois, contours, observations = [], [], []
    for number, (name, kind, polys) in enumerate(_roi_contours(spec), start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = frame
        roi.ROIName = name
        roi.ROIGenerationAlgorithm = "MANUAL"
        rois.append(roi)
        items = []
        for k, poly in polys:
            c = Dataset()
            c.ContourImageSequence = Sequence([image_ref(k)])
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(poly)
            z = spec.z(k)
            c.ContourData = [DSfloat(round(float(v), 2), auto_format=True) for x, y in poly for v in (x, y, z)]
            items.append(c)
        rc = Dataset()
        rc.ROIDisplayColor = [(number * 67) % 256, (number * 131) % 256, (number * 197) % 256]
        rc.ContourSequence = Sequence(items)
        rc.ReferencedROINumber = number
        contours.append(rc)
        obs = Dataset()
        obs.ObservationNumber = number
        obs.ReferencedROINumber = number
        obs.RTROIInterpretedType = kind
        obs.ROIInterpreter = ""
        observations.append(obs)
    ds.StructureSetROISequence = Sequence(rois)
    ds.ROIContourSequence = Sequence(contours)
    ds.RTROIObservationsSequence = Sequence(observations)
    return ds


def write_phantom(folder: Path, spec: PhantomSpec | None = None) -> list[Path]:
    """Write the phantom CT series and structure set as DICOM files under ``folder``."""
    spec = spec or PhantomSpec()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for ds in ct_datasets(spec):
        path = folder / f"CT{int(ds.InstanceNumber):04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    rs = rtstruct_dataset(spec)
    path = folder / "RS.phantom.dcm"
    rs.save_as(path, enforce_file_format=True)
    written.append(path)
    return written
