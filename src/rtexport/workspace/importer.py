"""Course import: one CT series and one RT Structure Set from a folder tree, checked, all or nothing."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from pydicom.dataset import Dataset

from rtexport.errors import CourseImportError
from rtexport.model.course import Course, CTGeometry, CTSlice, PatientStudy, StructureSetRef
from rtexport.workspace.import_checks import (
    CTFacts,
    StructureSetFacts,
    check_ct,
    check_structure_set,
    check_uids,
    raw_text,
    read_file,
    text,
)
from rtexport.workspace.store import sha256_bytes

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"

_POSITION_TOL_MM = 0.01


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


@dataclass
class _CT:
    file: ImportedFile
    facts: CTFacts

    @property
    def path(self) -> Path:
        return self.file.path

    @property
    def z(self) -> float:
        return self.facts.position[2]


def read_course(folder: Path, course_id: str) -> ImportResult:
    """Read and check everything under ``folder``; raise :class:`CourseImportError` naming the file and problem."""
    if not folder.is_dir():
        raise CourseImportError(f"{folder}: not a folder")
    cts: list[_CT] = []
    structs: list[tuple[ImportedFile, StructureSetFacts]] = []
    skipped: list[tuple[Path, str]] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data, ds, reason = read_file(path)
        if ds is None:
            skipped.append((path, reason))
            continue
        sop_class = raw_text(ds, "SOPClassUID")
        item = ImportedFile(path, data, sha256_bytes(data), ds)
        if sop_class == CT_IMAGE_STORAGE:
            check_uids(path, ds)
            cts.append(_CT(item, check_ct(path, ds)))
        elif sop_class == RT_STRUCTURE_SET_STORAGE:
            check_uids(path, ds)
            structs.append((item, check_structure_set(path, ds)))
        elif sop_class == ENHANCED_CT_STORAGE:
            raise CourseImportError(f"{path}: Enhanced CT is not supported; export the series as CT Image Storage")
        else:
            skipped.append((path, f"DICOM object of another kind (Modality {text(ds, 'Modality') or '?'})"))
    if not cts:
        raise CourseImportError(f"{folder}: no CT images found")
    if not structs:
        raise CourseImportError(f"{folder}: no RT Structure Set found")
    if len(structs) > 1:
        names = ", ".join(str(s.path) for s, _ in structs)
        raise CourseImportError(f"{folder}: more than one RT Structure Set ({names}); import one per course")
    cts.sort(key=lambda c: c.z)
    course = _check(course_id, cts, *structs[0])
    return ImportResult(course, [*(c.file for c in cts), structs[0][0]], skipped)


def _one(values: Iterable[tuple[str, Path]], what: str) -> str:
    seen: dict[str, Path] = {}
    for value, path in values:
        seen.setdefault(value, path)
    if len(seen) > 1:
        (a, pa), (b, pb) = list(seen.items())[:2]
        raise CourseImportError(f"more than one {what}: {a!r} in {pa} and {b!r} in {pb}")
    return next(iter(seen))


def _same_geometry(cts: list[_CT]) -> None:
    """One orientation, patient position, matrix, pixel spacing and in-plane position for every slice."""
    first = cts[0].facts
    for c in cts:
        f = c.facts
        if f.orientation != first.orientation:
            raise CourseImportError(
                f"{c.path}: ImageOrientationPatient {list(f.orientation.as_tuple())}, other slices "
                f"{list(first.orientation.as_tuple())}; one series has one orientation"
            )
        if f.patient_position is not first.patient_position:
            raise CourseImportError(
                f"{c.path}: PatientPosition {f.patient_position.value}, other slices {first.patient_position.value}; "
                "one series has one patient position"
            )
        if (f.rows, f.columns) != (first.rows, first.columns):
            raise CourseImportError(f"{c.path}: {f.rows}x{f.columns} pixels, other slices {first.rows}x{first.columns}")
        if any(abs(a - b) > 1e-4 for a, b in zip(f.spacing, first.spacing, strict=True)):
            raise CourseImportError(f"{c.path}: pixel spacing {list(f.spacing)}, other slices {list(first.spacing)}")
        (x, y, _), (x0, y0, _) = f.position, first.position
        if abs(x - x0) > _POSITION_TOL_MM or abs(y - y0) > _POSITION_TOL_MM:
            raise CourseImportError(f"{c.path}: slice is shifted in-plane ({x}, {y}) vs ({x0}, {y0})")


def _regular_slices(cts: list[_CT]) -> None:
    """Slices sorted by z: none twice, none missing, one spacing."""
    for a, b in pairwise(cts):
        if abs(b.z - a.z) < _POSITION_TOL_MM:
            raise CourseImportError(f"{b.path}: same slice position z={b.z:g} as {a.path}")
    if len(cts) > 1:
        steps = [b.z - a.z for a, b in pairwise(cts)]
        step = min(steps)
        for (a, b), s in zip(pairwise(cts), steps, strict=True):
            if abs(s - step) > max(_POSITION_TOL_MM, 0.01 * step):
                missing = round(s / step) - 1
                what = f"{missing} missing slice(s)" if missing >= 1 else "inconsistent slice spacing"
                raise CourseImportError(
                    f"{a.path}: {what} between z={a.z:g} and z={b.z:g} mm (spacing {step:g} mm elsewhere)"
                )


def _structure_set_fits(rs: ImportedFile, facts: StructureSetFacts, frame: str, series: str, cts: list[_CT]) -> None:
    if facts.frames != {frame}:
        other = ", ".join(sorted(facts.frames - {frame})) or "none"
        raise CourseImportError(f"{rs.path}: structure set is on Frame of Reference {other}, not the CT's {frame}")
    for other in sorted(facts.referenced_series - {series}):
        raise CourseImportError(f"{rs.path}: structure set references series {other}, not the CT's {series}")
    unknown = facts.referenced_images - {text(c.file.ds, "SOPInstanceUID") for c in cts}
    if unknown:
        raise CourseImportError(
            f"{rs.path}: structure set references {len(unknown)} CT image(s) not in this series, "
            f"e.g. {sorted(unknown)[0]}"
        )
    if not facts.referenced_images:
        raise CourseImportError(f"{rs.path}: structure set references no CT images of the series")
    if not facts.structures:
        raise CourseImportError(f"{rs.path}: structure set has no ROIs")
    names = [s.name for s in facts.structures]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CourseImportError(f"{rs.path}: ROI names not unique: {', '.join(dup)}")


def _check(course_id: str, cts: list[_CT], rs: ImportedFile, rs_facts: StructureSetFacts) -> Course:
    everything = [*(c.file for c in cts), rs]
    _one(((text(f.ds, "PatientID"), f.path) for f in everything), "patient (PatientID)")
    study = _one(((text(f.ds, "StudyInstanceUID"), f.path) for f in everything), "study (StudyInstanceUID)")
    series = _one(((text(c.file.ds, "SeriesInstanceUID"), c.path) for c in cts), "CT series (SeriesInstanceUID)")
    frame = _one(((text(c.file.ds, "FrameOfReferenceUID"), c.path) for c in cts), "CT Frame of Reference")
    seen_uids: dict[str, Path] = {}
    for f in everything:
        uid = text(f.ds, "SOPInstanceUID")
        if uid in seen_uids:
            raise CourseImportError(f"{f.path}: SOP Instance UID {uid} also in {seen_uids[uid]}")
        seen_uids[uid] = f.path
    _same_geometry(cts)
    _regular_slices(cts)
    _structure_set_fits(rs, rs_facts, frame, series, cts)
    zs = [c.z for c in cts]
    if not math.isfinite(sum(zs)):
        raise CourseImportError(f"{cts[0].path.parent}: invalid slice positions")
    return _course(course_id, cts, rs, rs_facts, frame, series, study)


def _course(
    course_id: str, cts: list[_CT], rs: ImportedFile, facts: StructureSetFacts, frame: str, series: str, study: str
) -> Course:
    d = cts[0].file.ds
    patient = PatientStudy(
        patient_name=text(d, "PatientName"),
        patient_id=text(d, "PatientID"),
        patient_birth_date=text(d, "PatientBirthDate"),
        patient_sex=text(d, "PatientSex"),
        study_instance_uid=study,
        study_date=text(d, "StudyDate"),
        study_time=text(d, "StudyTime"),
        referring_physician_name=text(d, "ReferringPhysicianName"),
        study_id=text(d, "StudyID"),
        accession_number=text(d, "AccessionNumber"),
        study_description=text(d, "StudyDescription"),
    )
    first = cts[0].facts
    grid = first.orientation.canonical_grid(first.position[:2], first.spacing, first.rows, first.columns)
    geometry = CTGeometry(
        frame_of_reference_uid=frame,
        series_instance_uid=series,
        origin_mm=(*grid.origin_xy_mm, cts[0].z),
        pixel_spacing_mm=grid.spacing_yx_mm,
        rows=grid.rows,
        columns=grid.columns,
        slice_z_mm=tuple(c.z for c in cts),
        patient_position=first.patient_position,
        image_orientation=first.orientation.as_tuple(),
    )
    slices = tuple(
        CTSlice(text(c.file.ds, "SOPInstanceUID"), text(c.file.ds, "SOPClassUID"), c.z, c.file.digest, len(c.file.data))
        for c in cts
    )
    ref = StructureSetRef(
        sop_instance_uid=text(rs.ds, "SOPInstanceUID"),
        series_instance_uid=text(rs.ds, "SeriesInstanceUID"),
        sha256=rs.digest,
        label=text(rs.ds, "StructureSetLabel"),
        structures=facts.structures,
    )
    return Course(course_id, patient, geometry, slices, ref)
