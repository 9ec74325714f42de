"""Course import: one CT series and one RT Structure Set from a folder tree, checked, all or nothing."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from rtexport.dicom.uids import uid_problem
from rtexport.errors import CourseImportError
from rtexport.geometry.axial import AxialOrientation, OrientationError
from rtexport.model.course import (
    Course,
    CTGeometry,
    CTSlice,
    PatientPosition,
    PatientStudy,
    Structure,
    StructureSetRef,
)
from rtexport.workspace.store import sha256_bytes

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"

_POSITION_TOL_MM = 0.01
# pydicom reports a damaged stream as a warning and carries on; these mean bytes are missing or garbled.
_DAMAGE = re.compile(r"end of file|delimiter|truncat|expected length|bytes? (remain|missing)", re.I)


@dataclass
class ImportedFile:
    path: Path
    data: bytes
    digest: str
    ds: Dataset  # read without pixel data


@dataclass
class ImportResult:
    course: Course
    files: list[ImportedFile]
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def _is_part10(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def _str(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value)


def _read(path: Path) -> tuple[bytes, Dataset | None, str]:
    """(bytes, dataset or None when not DICOM, reason when skipped)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CourseImportError(f"{path}: cannot read: {e.strerror}") from e
    if not _is_part10(data):
        return data, None, "not a DICOM Part 10 file"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path, force=False)
            # A damaged file can parse "successfully" up to where it ends; touching every element surfaces it.
            for _ in ds.iterall():
                pass
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError, NotImplementedError) as e:
        raise CourseImportError(f"{path}: corrupt or truncated DICOM file ({e})") from e
    damage = [str(w.message) for w in caught if _DAMAGE.search(str(w.message))]
    if damage:
        raise CourseImportError(f"{path}: corrupt or truncated DICOM file ({damage[0]})")
    sop_class = _str(ds, "SOPClassUID") or _str(ds.file_meta, "MediaStorageSOPClassUID")
    if sop_class == MEDIA_STORAGE_DIRECTORY:
        return data, None, "DICOMDIR (media directory), not an image or structure set"
    return data, ds, ""


_UID_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def _raw(ds: Dataset, keyword: str) -> str:
    """The value as the file holds it (pydicom's own value check, which only warns, is not involved)."""
    elem = ds.get_item(keyword)
    value = None if elem is None else elem.value
    if value is None:
        return ""
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    return text.rstrip("\0 ")


def _check_uids(path: Path, ds: Dataset) -> None:
    """Every UID the course keeps, and the file meta's, by the PS3.5 UID grammar: exported file names are built
    from them, so a UID such as ``1.2/../../x`` is refused here, naming the file."""
    found = [(k, _raw(ds, k)) for k in _UID_KEYWORDS]
    if "FrameOfReferenceUID" in ds:
        found.append(("FrameOfReferenceUID", _raw(ds, "FrameOfReferenceUID")))
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        found += [(k, _raw(meta, k)) for k in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID")]
    for keyword, value in found:
        problem = uid_problem(value)
        if problem is not None:
            raise CourseImportError(f"{path}: {keyword} {value!r} is not a valid DICOM UID: {problem}")


def _check_pixels(path: Path, ds: Dataset) -> None:
    if "PixelData" not in ds:
        raise CourseImportError(f"{path}: CT image has no Pixel Data")
    ts = ds.file_meta.get("TransferSyntaxUID")
    if ts is not None and ts.is_compressed:
        return  # encapsulated: length is not rows × columns; decoding validates it later
    expected = int(ds.Rows) * int(ds.Columns) * int(ds.BitsAllocated) // 8 * int(ds.get("SamplesPerPixel", 1))
    got = len(ds.PixelData)
    if got < expected:
        raise CourseImportError(f"{path}: truncated Pixel Data ({got} bytes, expected {expected})")


def _floats(ds: Dataset, keyword: str, n: int, path: Path) -> list[float]:
    value = ds.get(keyword)
    if value is None or len(value) != n:
        raise CourseImportError(f"{path}: {keyword} missing or not {n} values")
    return [float(v) for v in value]


def _orientation(f: ImportedFile) -> AxialOrientation:
    """The slice's axial orientation; tilted, oblique and non-axial slices are refused with the reason."""
    tilt = f.ds.get("GantryDetectorTilt")
    if tilt not in (None, "") and abs(float(tilt)) > 1e-3:
        raise CourseImportError(
            f"{f.path}: GantryDetectorTilt {float(tilt):g}°: a tilted-gantry CT cannot be handled; "
            "reconstruct the series as axial slices"
        )
    try:
        return AxialOrientation.parse(_floats(f.ds, "ImageOrientationPatient", 6, f.path))
    except OrientationError as e:
        raise CourseImportError(f"{f.path}: {e}") from e


def _patient_position(f: ImportedFile) -> PatientPosition:
    """The slice's PatientPosition: the beam geometry depends on it, so it must be one of the eight."""
    value = _str(f.ds, "PatientPosition").strip()
    try:
        return PatientPosition(value)
    except ValueError:
        known = ", ".join(p.value for p in PatientPosition)
        what = f"PatientPosition {value!r}" if value else "no PatientPosition"
        raise CourseImportError(
            f"{f.path}: {what}: beams can be set up only for {known}; fix the series' PatientPosition"
        ) from None


def read_course(folder: Path, course_id: str) -> ImportResult:
    """Read and check everything under ``folder``; raise :class:`CourseImportError` naming the file and problem."""
    if not folder.is_dir():
        raise CourseImportError(f"{folder}: not a folder")
    cts: list[ImportedFile] = []
    structs: list[ImportedFile] = []
    skipped: list[tuple[Path, str]] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data, ds, reason = _read(path)
        if ds is None:
            skipped.append((path, reason))
            continue
        sop_class = _str(ds, "SOPClassUID")
        item = ImportedFile(path, data, sha256_bytes(data), ds)
        if sop_class in (CT_IMAGE_STORAGE, RT_STRUCTURE_SET_STORAGE):
            _check_uids(path, ds)
        if sop_class in (CT_IMAGE_STORAGE,):
            _check_pixels(path, ds)
            cts.append(item)
        elif sop_class == RT_STRUCTURE_SET_STORAGE:
            structs.append(item)
        elif sop_class == ENHANCED_CT_STORAGE:
            raise CourseImportError(f"{path}: Enhanced CT is not supported; export the series as CT Image Storage")
        else:
            skipped.append((path, f"DICOM object of another kind (Modality {_str(ds, 'Modality') or '?'})"))
    if not cts:
        raise CourseImportError(f"{folder}: no CT images found")
    if not structs:
        raise CourseImportError(f"{folder}: no RT Structure Set found")
    if len(structs) > 1:
        names = ", ".join(str(s.path) for s in structs)
        raise CourseImportError(f"{folder}: more than one RT Structure Set ({names}); import one per course")
    course = _check(course_id, cts, structs[0])
    return ImportResult(course, [*sorted(cts, key=lambda f: float(f.ds.ImagePositionPatient[2])), structs[0]], skipped)


def _one(values: Iterable[tuple[str, Path]], what: str) -> str:
    seen: dict[str, Path] = {}
    for value, path in values:
        seen.setdefault(value, path)
    if len(seen) > 1:
        (a, pa), (b, pb) = list(seen.items())[:2]
        raise CourseImportError(f"more than one {what}: {a!r} in {pa} and {b!r} in {pb}")
    return next(iter(seen))


def _check(course_id: str, cts: list[ImportedFile], rs: ImportedFile) -> Course:
    everything = [*cts, rs]
    _one(((_str(f.ds, "PatientID"), f.path) for f in everything), "patient (PatientID)")
    study = _one(((_str(f.ds, "StudyInstanceUID"), f.path) for f in everything), "study (StudyInstanceUID)")
    series = _one(((_str(f.ds, "SeriesInstanceUID"), f.path) for f in cts), "CT series (SeriesInstanceUID)")
    frame = _one(((_str(f.ds, "FrameOfReferenceUID"), f.path) for f in cts), "CT Frame of Reference")
    if not frame:
        raise CourseImportError(f"{cts[0].path}: CT has no FrameOfReferenceUID")

    seen_uids: dict[str, Path] = {}
    for f in everything:
        uid = _str(f.ds, "SOPInstanceUID")
        if uid in seen_uids:
            raise CourseImportError(f"{f.path}: SOP Instance UID {uid} also in {seen_uids[uid]}")
        seen_uids[uid] = f.path

    first = cts[0]
    rows, cols = int(first.ds.Rows), int(first.ds.Columns)
    spacing = _floats(first.ds, "PixelSpacing", 2, first.path)
    orientation = _orientation(first)
    position = _patient_position(first)
    positions: list[tuple[float, ImportedFile]] = []
    for f in cts:
        if _orientation(f) != orientation:
            raise CourseImportError(
                f"{f.path}: ImageOrientationPatient {list(_orientation(f).as_tuple())}, other slices "
                f"{list(orientation.as_tuple())}; one series has one orientation"
            )
        if _patient_position(f) is not position:
            raise CourseImportError(
                f"{f.path}: PatientPosition {_patient_position(f).value}, other slices {position.value}; "
                "one series has one patient position"
            )
        if (int(f.ds.Rows), int(f.ds.Columns)) != (rows, cols):
            raise CourseImportError(f"{f.path}: {f.ds.Rows}x{f.ds.Columns} pixels, other slices {rows}x{cols}")
        ps = _floats(f.ds, "PixelSpacing", 2, f.path)
        if any(abs(a - b) > 1e-4 for a, b in zip(ps, spacing, strict=True)):
            raise CourseImportError(f"{f.path}: pixel spacing {ps}, other slices {spacing}")
        ipp = _floats(f.ds, "ImagePositionPatient", 3, f.path)
        x0, y0 = _floats(first.ds, "ImagePositionPatient", 3, first.path)[:2]
        if abs(ipp[0] - x0) > _POSITION_TOL_MM or abs(ipp[1] - y0) > _POSITION_TOL_MM:
            raise CourseImportError(f"{f.path}: slice is shifted in-plane ({ipp[0]}, {ipp[1]}) vs ({x0}, {y0})")
        positions.append((ipp[2], f))
    positions.sort(key=lambda t: t[0])
    zs = [z for z, _ in positions]
    for (za, fa), (zb, fb) in pairwise(positions):
        if abs(zb - za) < _POSITION_TOL_MM:
            raise CourseImportError(f"{fb.path}: same slice position z={zb:g} as {fa.path}")
    if len(zs) > 1:
        steps = [b - a for a, b in pairwise(zs)]
        step = min(steps)
        for (za, fa), (zb, _fb), s in zip(positions, positions[1:], steps, strict=False):
            if abs(s - step) > max(_POSITION_TOL_MM, 0.01 * step):
                missing = round(s / step) - 1
                what = f"{missing} missing slice(s)" if missing >= 1 else "inconsistent slice spacing"
                raise CourseImportError(
                    f"{fa.path}: {what} between z={za:g} and z={zb:g} mm (spacing {step:g} mm elsewhere)"
                )

    rs_ds = rs.ds
    rs_frames = {_str(item, "FrameOfReferenceUID") for item in rs_ds.get("ReferencedFrameOfReferenceSequence", [])}
    if _str(rs_ds, "FrameOfReferenceUID"):
        rs_frames.add(_str(rs_ds, "FrameOfReferenceUID"))
    for roi in rs_ds.get("StructureSetROISequence", []):
        rs_frames.add(_str(roi, "ReferencedFrameOfReferenceUID"))
    rs_frames.discard("")
    if rs_frames != {frame}:
        other = ", ".join(sorted(rs_frames - {frame})) or "none"
        raise CourseImportError(f"{rs.path}: structure set is on Frame of Reference {other}, not the CT's {frame}")
    ct_uids = {_str(f.ds, "SOPInstanceUID") for f in cts}
    referenced: set[str] = set()
    for fr in rs_ds.get("ReferencedFrameOfReferenceSequence", []):
        for st in fr.get("RTReferencedStudySequence", []):
            for se in st.get("RTReferencedSeriesSequence", []):
                if _str(se, "SeriesInstanceUID") not in ("", series):
                    raise CourseImportError(
                        f"{rs.path}: structure set references series {se.SeriesInstanceUID}, not the CT's {series}"
                    )
                referenced |= {_str(i, "ReferencedSOPInstanceUID") for i in se.get("ContourImageSequence", [])}
    for rc in rs_ds.get("ROIContourSequence", []):
        for c in rc.get("ContourSequence", []):
            referenced |= {_str(i, "ReferencedSOPInstanceUID") for i in c.get("ContourImageSequence", [])}
    referenced.discard("")
    unknown = referenced - ct_uids
    if unknown:
        raise CourseImportError(
            f"{rs.path}: structure set references {len(unknown)} CT image(s) not in this series, "
            f"e.g. {sorted(unknown)[0]}"
        )
    if not referenced:
        raise CourseImportError(f"{rs.path}: structure set references no CT images of the series")

    types = {
        int(o.ReferencedROINumber): _str(o, "RTROIInterpretedType") for o in rs_ds.get("RTROIObservationsSequence", [])
    }
    structures = tuple(
        Structure(int(r.ROINumber), _str(r, "ROIName"), types.get(int(r.ROINumber), ""))
        for r in rs_ds.get("StructureSetROISequence", [])
    )
    if not structures:
        raise CourseImportError(f"{rs.path}: structure set has no ROIs")
    names = [s.name for s in structures]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CourseImportError(f"{rs.path}: ROI names not unique: {', '.join(dup)}")

    d = first.ds
    patient = PatientStudy(
        patient_name=_str(d, "PatientName"),
        patient_id=_str(d, "PatientID"),
        patient_birth_date=_str(d, "PatientBirthDate"),
        patient_sex=_str(d, "PatientSex"),
        study_instance_uid=study,
        study_date=_str(d, "StudyDate"),
        study_time=_str(d, "StudyTime"),
        referring_physician_name=_str(d, "ReferringPhysicianName"),
        study_id=_str(d, "StudyID"),
        accession_number=_str(d, "AccessionNumber"),
        study_description=_str(d, "StudyDescription"),
    )
    x0, y0, _ = _floats(positions[0][1].ds, "ImagePositionPatient", 3, positions[0][1].path)
    grid = orientation.canonical_grid((x0, y0), (spacing[0], spacing[1]), rows, cols)
    geometry = CTGeometry(
        frame_of_reference_uid=frame,
        series_instance_uid=series,
        origin_mm=(*grid.origin_xy_mm, zs[0]),
        pixel_spacing_mm=grid.spacing_yx_mm,
        rows=grid.rows,
        columns=grid.columns,
        slice_z_mm=tuple(zs),
        patient_position=position,
        image_orientation=orientation.as_tuple(),
    )
    slices = tuple(
        CTSlice(_str(f.ds, "SOPInstanceUID"), _str(f.ds, "SOPClassUID"), z, f.digest, len(f.data)) for z, f in positions
    )
    ref = StructureSetRef(
        sop_instance_uid=_str(rs_ds, "SOPInstanceUID"),
        series_instance_uid=_str(rs_ds, "SeriesInstanceUID"),
        sha256=rs.digest,
        label=_str(rs_ds, "StructureSetLabel"),
        structures=structures,
    )
    if not math.isfinite(sum(zs)):
        raise CourseImportError(f"{folder_of(cts)}: invalid slice positions")
    return Course(course_id, patient, geometry, slices, ref)


def folder_of(files: list[ImportedFile]) -> Path:
    return files[0].path.parent
