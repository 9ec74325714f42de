"""Every object we build is valid (dciodvfy, pydicom strict writing), consistent and reproducible."""

from __future__ import annotations

import io
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset

from rtexport.demo.beamdata import demo_site
from rtexport.demo.phantom import rtstruct_dataset
from rtexport.dicom.common import BuildContext, encode
from rtexport.dicom.contours import contours_by_name
from rtexport.dicom.rtplan import Approval, build_rtplan
from rtexport.dicom.rtstruct import needs_derived_structure_set
from rtexport.dicom.uids import is_valid_uid
from rtexport.geometry.setup import AimedPlan, aim_plan
from rtexport.model.course import Course
from rtexport.model.plan import Plan, parse_plan
from rtexport.model.site import Site
from tests.support.dciodvfy import assert_valid

from .conftest import (
    APPROVED,
    BEAM_DOSE_GY,
    MU,
    PLAN_TOML,
    SERIES,
    SPEC,
    WHEN,
    Exported,
    ds_strings,
    export_all,
    make_context,
)

CONTOURS = contours_by_name(rtstruct_dataset(SPEC))


def uids(ds: Dataset) -> set[str]:
    out: set[str] = set()

    def visit(d: Dataset) -> None:
        for elem in d:
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item)
            elif elem.VR == "UI" and elem.value:
                out.add(str(elem.value))

    visit(ds)
    return out


@pytest.mark.integration
def test_every_object_passes_dciodvfy(exported: Exported, tmp_path: Any) -> None:
    for ds in exported.all():
        path = tmp_path / f"{ds.Modality}.{ds.SOPInstanceUID}.dcm"
        path.write_bytes(encode(ds))
        assert_valid(path)


@pytest.mark.integration
@pytest.mark.parametrize(("shape", "opening"), [("circle", [80.0, 80.0]), ("rectangle", [60.0, 100.0])])
def test_round_and_rectangular_applicators_pass_dciodvfy(
    ctx: BuildContext, course: Course, exported: Exported, shape: str, opening: list[float]
) -> None:
    data = demo_site()
    data["machines"][0]["applicators"].append(
        {
            "id": "X1",
            "shape": shape,
            "opening_mm": opening,
            "default_cutout_material": "Cerrobend",
            "jaws_mm": {"x": [-100.0, 100.0], "y": [-100.0, 100.0]},
        }
    )
    site = Site.model_validate(data)
    plan = parse_plan(PLAN_TOML.replace('applicator = "15x15"', 'applicator = "X1"'))
    rp = build_rtplan(
        ctx,
        course,
        plan,
        site,
        exported.rs,
        aim_plan(plan, site, course.ct, CONTOURS),
        MU,
        BEAM_DOSE_GY,
        APPROVED,
        series_number=SERIES["RP"],
    )
    assert_valid(encode(rp))


@pytest.mark.integration
@pytest.mark.parametrize("approval", [Approval("UNAPPROVED"), Approval("REJECTED", "Bohr^Niels", WHEN)])
def test_plan_on_the_imported_structure_set_passes_dciodvfy(
    ctx: BuildContext, course: Course, site: Site, original: Dataset, approval: Approval
) -> None:
    """No override, no bolus, same External: the plan references the imported structure set itself."""
    text = PLAN_TOML[: PLAN_TOML.index("[[override]]")] + PLAN_TOML[PLAN_TOML.index("[[beam]]") :]
    text = text.replace('external = "OUTLINE2"', 'external = "BODY"').replace("bolus = {", "# bolus = {")
    plan = parse_plan(text)
    assert not needs_derived_structure_set(original, plan, {})
    rp = build_rtplan(
        ctx,
        course,
        plan,
        site,
        original,
        aim_plan(plan, site, course.ct, CONTOURS),
        MU,
        BEAM_DOSE_GY,
        approval,
        series_number=SERIES["RP"],
    )
    assert rp.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID
    assert_valid(encode(rp))


@pytest.mark.integration
def test_dciodvfy_reports_errors(exported: Exported) -> None:
    """The validator run is real: a known-bad plan fails."""
    rp = exported.rp
    rp.BeamSequence[0].BlockSequence[0].BlockType = "CUTOUT"
    with pytest.raises(pytest.fail.Exception, match="Block Type"):
        assert_valid(encode(rp))


def test_every_reference_resolves(exported: Exported, course: Course) -> None:
    ct = {s.sop_instance_uid for s in course.slices}
    frame = course.ct.frame_of_reference_uid
    rs, rp = exported.rs, exported.rp
    # RS → CT slices, in the frame list and in every contour
    frames = rs.ReferencedFrameOfReferenceSequence
    assert [f.FrameOfReferenceUID for f in frames] == [frame]
    listed = {
        i.ReferencedSOPInstanceUID
        for study in frames[0].RTReferencedStudySequence
        for series in study.RTReferencedSeriesSequence
        for i in series.ContourImageSequence
    }
    assert listed == ct
    for roi in rs.ROIContourSequence:
        for contour in roi.ContourSequence:
            assert {i.ReferencedSOPInstanceUID for i in contour.ContourImageSequence} <= ct
    rois = {r.ROINumber for r in rs.StructureSetROISequence}
    assert {c.ReferencedROINumber for c in rs.ROIContourSequence} == rois
    assert {o.ReferencedROINumber for o in rs.RTROIObservationsSequence} == rois
    # RP → RS, RP bolus → a BOLUS ROI
    assert rp.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == rs.SOPInstanceUID
    types = {o.ReferencedROINumber: o.RTROIInterpretedType for o in rs.RTROIObservationsSequence}
    for beam in rp.BeamSequence:
        for ref in beam.get("ReferencedBolusSequence", []):
            assert types[ref.ReferencedROINumber] == "BOLUS"
    # RD → RP and its beams
    beams = {b.BeamNumber for b in rp.BeamSequence}
    for rd in [exported.rd_plan, *exported.rd_beams.values()]:
        ref = rd.ReferencedRTPlanSequence[0]
        assert ref.ReferencedSOPInstanceUID == rp.SOPInstanceUID
        for group in ref.get("ReferencedFractionGroupSequence", []):
            assert {b.ReferencedBeamNumber for b in group.ReferencedBeamSequence} <= beams
    # one Frame of Reference, one study, one patient
    for ds in exported.all():
        assert ds.FrameOfReferenceUID == frame
        assert (ds.StudyInstanceUID, ds.PatientID) == (course.patient.study_instance_uid, course.patient.patient_id)


def test_file_meta_equals_the_dataset(exported: Exported) -> None:
    for ds in exported.all():
        read = pydicom.dcmread(io.BytesIO(encode(ds)))
        assert read.file_meta.MediaStorageSOPClassUID == read.SOPClassUID == ds.SOPClassUID
        assert read.file_meta.MediaStorageSOPInstanceUID == read.SOPInstanceUID == ds.SOPInstanceUID
        assert read.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert read.file_meta.ImplementationClassUID.startswith("2.25.")


def test_each_object_has_its_own_series_and_says_what_it_is(exported: Exported) -> None:
    """A reader picking "the dose" from a folder by series must find the plan dose, not a beam dose."""
    objects = exported.all()
    assert len({ds.SeriesInstanceUID for ds in objects}) == len(objects) == 5
    assert len({int(ds.SeriesNumber) for ds in objects}) == 5
    assert exported.rd_plan.SeriesDescription == "Chestwall plan dose"
    assert {name: rd.SeriesDescription for name, rd in exported.rd_beams.items()} == {
        "AP": "Chestwall beam AP",
        "LAO": "Chestwall beam LAO",
    }
    assert len({int(rd.InstanceNumber) for rd in [exported.rd_plan, *exported.rd_beams.values()]}) == 3
    # the derived structure set says so, in a series of its own
    assert exported.rs.StructureSetLabel == "Phantom derived"
    assert exported.rs.SeriesNumber != rtstruct_dataset(SPEC).SeriesNumber
    assert "derived" in exported.rs.StructureSetName


def test_same_context_gives_byte_identical_files(course: Course, plan: Plan, site: Site, aimed: AimedPlan) -> None:
    first = export_all(make_context(["P1", "rev-1", "APPROVED"]), course, plan, site, aimed)
    again = export_all(make_context(["P1", "rev-1", "APPROVED"]), course, plan, site, aimed)
    assert [encode(ds) for ds in first.all()] == [encode(ds) for ds in again.all()]


def test_a_different_key_gives_different_uids(course: Course, plan: Plan, site: Site, aimed: AimedPlan) -> None:
    a = export_all(make_context(["P1", "rev-1", "UNAPPROVED"]), course, plan, site, aimed)
    b = export_all(make_context(["P1", "rev-2", "UNAPPROVED"]), course, plan, site, aimed)
    keys = ("SOPInstanceUID", "SeriesInstanceUID")
    new_a = {ds.get(k) for ds in a.all() for k in keys}
    new_b = {ds.get(k) for ds in b.all() for k in keys}
    assert new_a.isdisjoint(new_b)
    assert a.rp.DoseReferenceSequence[0].DoseReferenceUID != b.rp.DoseReferenceSequence[0].DoseReferenceUID


def test_all_uids_are_valid(exported: Exported) -> None:
    for ds in exported.all():
        assert all(is_valid_uid(u) for u in uids(ds) | uids(ds.file_meta))


def test_decimal_strings_fit_16_characters(exported: Exported) -> None:
    values = [v for ds in exported.all() for v in ds_strings(ds)]
    assert values  # the walk found them
    assert [v for v in values if len(v[1]) > 16] == []


def test_dates_and_times_come_from_the_context_only(exported: Exported) -> None:
    keywords = ("InstanceCreationDate", "SeriesDate", "StructureSetDate", "RTPlanDate", "ContentDate")
    written = [(ds.Modality, k, ds[k].value) for ds in exported.all() for k in keywords if k in ds]
    assert {m for m, _, _ in written} == {"RTSTRUCT", "RTPLAN", "RTDOSE"}
    assert [w for w in written if w[2] != "20260304"] == []
