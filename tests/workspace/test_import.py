"""Course import: checks, byte-for-byte storage, and all-or-nothing on bad input."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from rtexport.demo.phantom import PhantomSpec, hu_slice, write_phantom
from rtexport.errors import CourseImportError
from rtexport.geometry.iec import scanner_orientation
from rtexport.model.course import PatientPosition
from rtexport.services.courses import import_course
from rtexport.workspace import Workspace
from rtexport.workspace.dicomio import load_hu
from tests.conftest import ACTOR


def stored_files(ws: Workspace) -> list[Path]:
    return [p for p in (ws.home / "store").rglob("*") if p.is_file()]


def assert_nothing_stored(ws: Workspace) -> None:
    assert ws.courses.all() == []
    assert stored_files(ws) == []


def test_import_keeps_every_file_byte_for_byte(workspace: Workspace, phantom_dir: Path) -> None:
    result = import_course(workspace, phantom_dir, "C1", ACTOR)
    course = workspace.course("C1")
    assert len(course.slices) == 16
    assert [s.z_mm for s in course.slices] == sorted(s.z_mm for s in course.slices)
    assert course.external is not None and course.external.name == "BODY"
    originals = {pydicom.dcmread(p).SOPInstanceUID: p.read_bytes() for p in phantom_dir.glob("CT*.dcm")}
    for s in course.slices:
        assert workspace.blobs.verified(s.sha256) == originals[s.sop_instance_uid]
    rs = next(phantom_dir.glob("RS*.dcm"))
    assert workspace.blobs.verified(course.structure_set.sha256) == rs.read_bytes()
    assert result.skipped == []


def test_files_that_are_not_dicom_are_listed_as_skipped(workspace: Workspace, phantom_dir: Path) -> None:
    (phantom_dir / "notes.txt").write_text("patient positioned with vac-lok")
    sub = phantom_dir / "sub"
    sub.mkdir()
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.UID("1.2.840.10008.1.3.10")
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.UID("2.25.1")
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.1.3.10"
    ds.SOPInstanceUID = "2.25.1"
    ds.save_as(sub / "DICOMDIR", enforce_file_format=True)
    result = import_course(workspace, phantom_dir, "C1", ACTOR)
    skipped = {p.name: why for p, why in result.skipped}
    assert set(skipped) == {"notes.txt", "DICOMDIR"}
    assert "not a DICOM" in skipped["notes.txt"]
    assert "DICOMDIR" in skipped["DICOMDIR"]


def test_truncated_file_names_the_file(workspace: Workspace, phantom_dir: Path) -> None:
    victim = phantom_dir / "CT0005.dcm"
    victim.write_bytes(victim.read_bytes()[:3000])
    with pytest.raises(CourseImportError, match=r"CT0005\.dcm: .*truncated"):
        import_course(workspace, phantom_dir, "C1", ACTOR)
    assert_nothing_stored(workspace)


def test_corrupt_file_names_the_file(workspace: Workspace, phantom_dir: Path) -> None:
    victim = phantom_dir / "CT0003.dcm"
    data = bytearray(victim.read_bytes())
    data[140:400] = b"\xff" * 260
    victim.write_bytes(bytes(data))
    with pytest.raises(CourseImportError, match=r"CT0003\.dcm: corrupt or truncated"):
        import_course(workspace, phantom_dir, "C1", ACTOR)
    assert_nothing_stored(workspace)


def test_second_ct_series_is_refused(workspace: Workspace, phantom_dir: Path) -> None:
    extra = phantom_dir / "CT0002.dcm"
    ds = pydicom.dcmread(extra)
    ds.SeriesInstanceUID = "2.25.42"
    ds.SOPInstanceUID = "2.25.43"
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.UID("2.25.43")
    ds.save_as(phantom_dir / "other-series.dcm", enforce_file_format=True)
    with pytest.raises(CourseImportError, match=r"more than one CT series"):
        import_course(workspace, phantom_dir, "C1", ACTOR)
    assert_nothing_stored(workspace)


def test_structure_set_on_another_frame_is_refused(workspace: Workspace, phantom_dir: Path) -> None:
    rs_path = next(phantom_dir.glob("RS*.dcm"))
    ds = pydicom.dcmread(rs_path)
    ds.FrameOfReferenceUID = "2.25.77"
    ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = "2.25.77"
    for roi in ds.StructureSetROISequence:
        roi.ReferencedFrameOfReferenceUID = "2.25.77"
    ds.save_as(rs_path, enforce_file_format=True)
    with pytest.raises(CourseImportError, match=r"RS\.phantom\.dcm: structure set is on Frame of Reference 2\.25\.77"):
        import_course(workspace, phantom_dir, "C1", ACTOR)
    assert_nothing_stored(workspace)


def test_missing_slice_is_refused(workspace: Workspace, phantom_dir: Path) -> None:
    (phantom_dir / "CT0008.dcm").unlink()
    with pytest.raises(CourseImportError, match=r"1 missing slice\(s\) between z=-7\.5 and z=2\.5"):
        import_course(workspace, phantom_dir, "C1", ACTOR)
    assert_nothing_stored(workspace)


def test_no_ct_is_refused(workspace: Workspace, phantom_dir: Path) -> None:
    for p in phantom_dir.glob("CT*.dcm"):
        p.unlink()
    with pytest.raises(CourseImportError, match=r"no CT images found"):
        import_course(workspace, phantom_dir, "C1", ACTOR)
    assert_nothing_stored(workspace)


def test_no_structure_set_is_refused(workspace: Workspace, phantom_dir: Path) -> None:
    next(phantom_dir.glob("RS*.dcm")).unlink()
    with pytest.raises(CourseImportError, match=r"no RT Structure Set found"):
        import_course(workspace, phantom_dir, "C1", ACTOR)
    assert_nothing_stored(workspace)


def test_second_patient_is_refused(workspace: Workspace, phantom_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    write_phantom(
        other,
        PhantomSpec(rows=80, columns=80, pixel_mm=4.0, slices=16, slice_mm=5.0, seed="test", patient_id="SOMEONE-ELSE"),
    )
    shutil.copy(other / "CT0001.dcm", phantom_dir / "stray.dcm")
    with pytest.raises(CourseImportError, match=r"more than one patient"):
        import_course(workspace, phantom_dir, "C1", ACTOR)
    assert_nothing_stored(workspace)


def test_structure_set_referencing_other_images_is_refused(workspace: Workspace, phantom_dir: Path) -> None:
    rs_path = next(phantom_dir.glob("RS*.dcm"))
    ds = pydicom.dcmread(rs_path)
    ds.ROIContourSequence[0].ContourSequence[0].ContourImageSequence[0].ReferencedSOPInstanceUID = "2.25.99"
    ds.save_as(rs_path, enforce_file_format=True)
    with pytest.raises(CourseImportError, match=r"references 1 CT image\(s\) not in this series"):
        import_course(workspace, phantom_dir, "C1", ACTOR)
    assert_nothing_stored(workspace)


def test_same_course_id_twice_is_refused_and_first_kept(course_ws: Workspace, phantom_dir: Path) -> None:
    with pytest.raises(CourseImportError, match=r"course 'C1' exists already"):
        import_course(course_ws, phantom_dir, "C1", ACTOR)
    assert [c.id for c in course_ws.courses.all()] == ["C1"]


Orientation = tuple[int, int, int, int, int, int]
ODD_ORIENTATIONS: list[Orientation] = [(0, 1, 0, 1, 0, 0), (1, 0, 0, 0, -1, 0), (0, -1, 0, -1, 0, 0)]
SPEC = PhantomSpec(rows=40, columns=48, pixel_mm=7.0, slices=6, slice_mm=5.0, seed="orient")


@pytest.mark.parametrize(
    ("position", "orientation"),
    [(p, None) for p in PatientPosition] + [(PatientPosition.HFP, o) for o in ODD_ORIENTATIONS],
)
def test_any_axial_orientation_and_position_imports_onto_the_canonical_grid(
    workspace: Workspace, tmp_path: Path, position: PatientPosition, orientation: Orientation | None
) -> None:
    """However the scanner stored the pixels, the course sees x along columns and y along rows, the anatomy where
    the patient coordinates say; the stored files stay as they were."""
    spec = dataclasses.replace(SPEC, position=position, orientation=orientation)
    folder = tmp_path / "ct"
    write_phantom(folder, spec)
    import_course(workspace, folder, "C1", ACTOR)
    course = workspace.course("C1")
    ct = course.ct
    assert ct.patient_position is position
    assert ct.image_orientation == (orientation or scanner_orientation(position))
    assert (ct.rows, ct.columns, ct.pixel_spacing_mm) == (40, 48, (7.0, 7.0))
    assert ct.origin_mm == pytest.approx(spec.origin_mm)
    hu = load_hu(workspace.blobs, course)
    expected = np.stack([hu_slice(spec, z) for z in ct.slice_z_mm])
    assert np.array_equal(hu, expected)  # e.g. the bone insert at x = -60, y = -40 is at the patient's right, anterior
    originals = {pydicom.dcmread(p).SOPInstanceUID: p.read_bytes() for p in folder.glob("CT*.dcm")}
    assert all(workspace.blobs.verified(s.sha256) == originals[s.sop_instance_uid] for s in course.slices)


def edit_slice(folder: Path, name: str, **changes: object) -> None:
    path = folder / name
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"GantryDetectorTilt": 12.0}, r"CT0003\.dcm: GantryDetectorTilt 12°: a tilted-gantry CT cannot be handled"),
        (
            {"ImageOrientationPatient": [1, 0, 0, 0, 0.9781476, -0.2079117]},
            r"CT0003\.dcm: ImageOrientationPatient .* is tilted \(gantry tilt or oblique reconstruction\)",
        ),
        (
            {"ImageOrientationPatient": [-1, 0, 0, 0, -1, 0]},
            r"CT0003\.dcm: ImageOrientationPatient \[-1, 0, 0, 0, -1, 0\], other slices \[1, 0, 0, 0, 1, 0\]",
        ),
        ({"PatientPosition": "HFP"}, r"CT0003\.dcm: PatientPosition HFP, other slices HFS"),
        ({"PatientPosition": "LFP"}, r"PatientPosition 'LFP': beams can be set up only for HFS, HFP"),
        ({"PatientPosition": ""}, r"CT0001\.dcm: no PatientPosition: beams can be set up only for"),
    ],
)
def test_what_cannot_be_handled_is_refused_naming_the_file_and_the_reason(
    workspace: Workspace, phantom_dir: Path, changes: dict[str, object], message: str
) -> None:
    if changes.get("PatientPosition") in ("LFP", ""):
        for path in phantom_dir.glob("CT*.dcm"):  # the same on every slice: only the value itself is wrong
            edit_slice(phantom_dir, path.name, **changes)
    else:
        edit_slice(phantom_dir, "CT0003.dcm", **changes)
    with pytest.raises(CourseImportError, match=message):
        import_course(workspace, phantom_dir, "C1", ACTOR)
    assert_nothing_stored(workspace)


def hostile(ds: pydicom.Dataset, uid: str) -> None:
    """Give ``ds`` the SOP Instance UID ``uid`` as a hostile sender would (pydicom's own check silenced)."""
    with pydicom.config.disable_value_validation():
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.UID(uid)


@pytest.mark.parametrize(
    ("uid", "reason"),
    [
        ("1.2.3/../../../../../../tmp/pwned", r"holds '/'.*only digits and dots"),
        ("1.2.3..4", r"empty component"),
        ("1.2.03", r"component '03' has a leading zero"),
        ("1." + "2" * 70, r"72 characters \(at most 64\)"),
    ],
)
def test_a_uid_outside_the_uid_grammar_is_refused_naming_the_file(
    workspace: Workspace, phantom_dir: Path, uid: str, reason: str
) -> None:
    path = phantom_dir / "CT0003.dcm"
    ds = pydicom.dcmread(path)
    hostile(ds, uid)
    with pydicom.config.disable_value_validation():
        ds.save_as(path, enforce_file_format=True)
    with pytest.raises(
        CourseImportError, match=rf"CT0003\.dcm: SOPInstanceUID '.*' is not a valid DICOM UID: .*{reason}"
    ):
        import_course(workspace, phantom_dir, "C1", ACTOR)
    assert_nothing_stored(workspace)
