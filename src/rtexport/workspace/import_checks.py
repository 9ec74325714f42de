"""The checks of one imported file, before anything is stored: readable DICOM whose declared lengths match its
bytes, UIDs by the UID grammar, and the attributes the course needs present and sane. Each check returns the
values the course is built from (:class:`CTFacts`, :class:`StructureSetFacts`), so nothing later reads an
unchecked attribute; whatever is wrong raises :class:`CourseImportError` naming the file."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from rtexport.dicom.uids import uid_problem
from rtexport.errors import CourseImportError
from rtexport.geometry.axial import AxialOrientation, OrientationError
from rtexport.model.course import PatientPosition, Structure

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_UNDEFINED = 0xFFFFFFFF
# pydicom reports a damaged stream as a warning and carries on; these mean bytes are missing or garbled.
_DAMAGE = re.compile(r"end of file|delimiter|truncat|expected length|bytes? (remain|missing)", re.I)
# What pydicom or a conversion raises on values no check above foresaw: turned into a refusal naming the file.
_MALFORMED = (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError, EOFError, NotImplementedError)
T = TypeVar("T")


def text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value)


def raw_text(ds: Dataset, keyword: str) -> str:
    """The value as the file holds it (pydicom's own value check, which only warns, is not involved)."""
    elem = ds.get_item(keyword)
    value = None if elem is None else elem.value
    if value is None:
        return ""
    found = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    return found.rstrip("\0 ")


def guarded(path: Path, what: str, check: Callable[[], T]) -> T:
    """``check()``, with any malformed value it meets refused as :class:`CourseImportError` naming the file."""
    try:
        return check()
    except CourseImportError:
        raise
    except _MALFORMED as e:
        raise CourseImportError(f"{path}: {what}: malformed or missing value ({type(e).__name__}: {e})") from e


def _lying_lengths(path: Path, ds: Dataset) -> None:
    """A top-level element whose declared length is more than the file holds (a lying length, e.g. a 2 GB
    Pixel Data in a 2 kB file): pydicom reads what is there and says nothing."""
    for tag in list(ds.keys()):
        elem = ds.get_item(tag)
        if not isinstance(elem, RawDataElement) or elem.length == _UNDEFINED or elem.value is None:
            continue
        if len(elem.value) != elem.length:
            raise CourseImportError(
                f"{path}: element {tag} declares {elem.length} bytes but the file holds {len(elem.value)}: "
                "truncated or corrupt DICOM file"
            )


def read_file(path: Path) -> tuple[bytes, Dataset | None, str]:
    """(bytes, dataset or None when not DICOM, reason when skipped)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CourseImportError(f"{path}: cannot read: {e.strerror}") from e
    if not (len(data) >= 132 and data[128:132] == b"DICM"):
        return data, None, "not a DICOM Part 10 file"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path, force=False)
            _lying_lengths(path, ds)
            # A damaged file can parse "successfully" up to where it ends; touching every element surfaces it.
            for _ in ds.iterall():
                pass
    except (InvalidDicomError, OSError, *_MALFORMED) as e:
        raise CourseImportError(f"{path}: corrupt or truncated DICOM file ({e})") from e
    damage = [str(w.message) for w in caught if _DAMAGE.search(str(w.message))]
    if damage:
        raise CourseImportError(f"{path}: corrupt or truncated DICOM file ({damage[0]})")
    sop_class = raw_text(ds, "SOPClassUID") or raw_text(ds.file_meta, "MediaStorageSOPClassUID")
    if sop_class == MEDIA_STORAGE_DIRECTORY:
        return data, None, "DICOMDIR (media directory), not an image or structure set"
    return data, ds, ""


_UID_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def check_uids(path: Path, ds: Dataset) -> None:
    """Every UID the course keeps, and the file meta's, by the PS3.5 UID grammar: exported file names are built
    from them, so a UID such as ``1.2/../../x`` is refused here, naming the file."""
    found = [(k, raw_text(ds, k)) for k in _UID_KEYWORDS]
    if "FrameOfReferenceUID" in ds:
        found.append(("FrameOfReferenceUID", raw_text(ds, "FrameOfReferenceUID")))
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        found += [(k, raw_text(meta, k)) for k in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID")]
    for keyword, value in found:
        problem = uid_problem(value)
        if problem is not None:
            raise CourseImportError(f"{path}: {keyword} {value!r} is not a valid DICOM UID: {problem}")


def _numbers(ds: Dataset, keyword: str, n: int, path: Path) -> list[float]:
    value = ds.get(keyword)
    if value is None or not isinstance(value, Sequence) or len(value) != n:
        raise CourseImportError(f"{path}: {keyword} missing or not {n} values")
    numbers = [float(v) for v in value]
    if not all(math.isfinite(v) for v in numbers):
        raise CourseImportError(f"{path}: {keyword} {numbers} is not finite")
    return numbers


def _count(ds: Dataset, keyword: str, path: Path, allowed: Sequence[int] | None = None) -> int:
    value = ds.get(keyword)
    if value is None or value == "":
        raise CourseImportError(f"{path}: CT image has no {keyword}")
    number = int(value)
    if (allowed is not None and number not in allowed) or (allowed is None and number < 1):
        want = " or ".join(str(a) for a in allowed) if allowed is not None else "at least 1"
        raise CourseImportError(f"{path}: {keyword} {number}: must be {want}")
    return number


@dataclass(frozen=True)
class CTFacts:
    """What the course takes from one CT image, checked."""

    rows: int
    columns: int
    spacing: tuple[float, float]
    position: tuple[float, float, float]
    orientation: AxialOrientation
    patient_position: PatientPosition


def _orientation(path: Path, ds: Dataset) -> AxialOrientation:
    """The slice's axial orientation; tilted, oblique and non-axial slices are refused with the reason."""
    tilt = ds.get("GantryDetectorTilt")
    if tilt not in (None, "") and abs(float(tilt)) > 1e-3:
        raise CourseImportError(
            f"{path}: GantryDetectorTilt {float(tilt):g}°: a tilted-gantry CT cannot be handled; "
            "reconstruct the series as axial slices"
        )
    try:
        return AxialOrientation.parse(_numbers(ds, "ImageOrientationPatient", 6, path))
    except OrientationError as e:
        raise CourseImportError(f"{path}: {e}") from e


def _patient_position(path: Path, ds: Dataset) -> PatientPosition:
    """The slice's PatientPosition: the beam geometry depends on it, so it must be one of the eight."""
    value = text(ds, "PatientPosition").strip()
    try:
        return PatientPosition(value)
    except ValueError:
        known = ", ".join(p.value for p in PatientPosition)
        what = f"PatientPosition {value!r}" if value else "no PatientPosition"
        raise CourseImportError(
            f"{path}: {what}: beams can be set up only for {known}; fix the series' PatientPosition"
        ) from None


def _check_pixels(path: Path, ds: Dataset, rows: int, columns: int) -> None:
    if "PixelData" not in ds:
        raise CourseImportError(f"{path}: CT image has no Pixel Data")
    _count(ds, "SamplesPerPixel", path, (1,))
    bits = _count(ds, "BitsAllocated", path, (8, 16, 32))
    if "PixelRepresentation" in ds:
        _count(ds, "PixelRepresentation", path, (0, 1))
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        if ds.get(keyword) not in (None, "") and not math.isfinite(float(ds.get(keyword))):
            raise CourseImportError(f"{path}: {keyword} is not a finite number")
    ts = ds.file_meta.get("TransferSyntaxUID")
    if ts is not None and ts.is_compressed:
        return  # encapsulated: length is not rows × columns; decoding validates it later
    expected = rows * columns * bits // 8
    got = len(ds.PixelData)
    if got < expected:
        raise CourseImportError(f"{path}: truncated Pixel Data ({got} bytes, expected {expected})")


def check_ct(path: Path, ds: Dataset) -> CTFacts:
    """The values the course takes from a CT image, each present and sane."""

    def facts() -> CTFacts:
        if not raw_text(ds, "FrameOfReferenceUID"):
            raise CourseImportError(f"{path}: CT has no FrameOfReferenceUID")
        rows, columns = _count(ds, "Rows", path), _count(ds, "Columns", path)
        _check_pixels(path, ds, rows, columns)
        spacing = _numbers(ds, "PixelSpacing", 2, path)
        if min(spacing) <= 0:
            raise CourseImportError(f"{path}: PixelSpacing {spacing}: must be positive")
        x, y, z = _numbers(ds, "ImagePositionPatient", 3, path)
        where = _orientation(path, ds), _patient_position(path, ds)
        return CTFacts(rows, columns, (spacing[0], spacing[1]), (x, y, z), *where)

    return guarded(path, "CT image", facts)


@dataclass(frozen=True)
class StructureSetFacts:
    """What the course takes from the RT Structure Set, checked."""

    frames: frozenset[str]
    referenced_series: frozenset[str]
    referenced_images: frozenset[str]
    structures: tuple[Structure, ...]


def _sequence(ds: Dataset, keyword: str, path: Path) -> Sequence[Dataset]:
    value = ds.get(keyword)
    if value is None or len(value) == 0:
        raise CourseImportError(
            f"{path}: structure set has no {keyword} (a required sequence): truncated or incomplete structure set"
        )
    return list(value)


def _contours(path: Path, rs: Dataset, numbers: set[int]) -> set[str]:
    """Every contour well formed (3 × its number of points, finite, on a known ROI); the images they name."""
    images: set[str] = set()
    for rc in _sequence(rs, "ROIContourSequence", path):
        if int(rc.ReferencedROINumber) not in numbers:
            raise CourseImportError(f"{path}: contours of ROI number {rc.ReferencedROINumber}, which is not defined")
        for c in rc.get("ContourSequence", []):
            points = c.get("ContourData")
            n = int(c.NumberOfContourPoints)
            if points is None or len(points) != 3 * n or n < 1:
                raise CourseImportError(
                    f"{path}: a contour of ROI number {rc.ReferencedROINumber} has {n} points but "
                    f"{0 if points is None else len(points)} coordinates: truncated or corrupt structure set"
                )
            if not all(math.isfinite(float(v)) for v in points):
                raise CourseImportError(f"{path}: a contour of ROI number {rc.ReferencedROINumber} is not finite")
            images |= {text(i, "ReferencedSOPInstanceUID") for i in c.get("ContourImageSequence", [])}
    return images


def check_structure_set(path: Path, rs: Dataset) -> StructureSetFacts:
    """The values the course takes from the RT Structure Set: ROIs, their contours and observations, the frames
    and images they refer to — every required sequence present, every contour whole."""

    def facts() -> StructureSetFacts:
        rois = _sequence(rs, "StructureSetROISequence", path)
        frames = {text(i, "FrameOfReferenceUID") for i in rs.get("ReferencedFrameOfReferenceSequence", [])}
        frames |= {text(r, "ReferencedFrameOfReferenceUID") for r in rois}
        if text(rs, "FrameOfReferenceUID"):
            frames.add(text(rs, "FrameOfReferenceUID"))
        series: set[str] = set()
        images: set[str] = set()
        for fr in rs.get("ReferencedFrameOfReferenceSequence", []):
            for st in fr.get("RTReferencedStudySequence", []):
                for se in st.get("RTReferencedSeriesSequence", []):
                    series.add(text(se, "SeriesInstanceUID"))
                    images |= {text(i, "ReferencedSOPInstanceUID") for i in se.get("ContourImageSequence", [])}
        types = {
            int(o.ReferencedROINumber): text(o, "RTROIInterpretedType")
            for o in _sequence(rs, "RTROIObservationsSequence", path)
        }
        structures = tuple(
            Structure(int(r.ROINumber), text(r, "ROIName"), types.get(int(r.ROINumber), "")) for r in rois
        )
        images |= _contours(path, rs, {s.roi_number for s in structures})
        return StructureSetFacts(
            frozenset(frames - {""}), frozenset(series - {""}), frozenset(images - {""}), structures
        )

    return guarded(path, "RT Structure Set", facts)
