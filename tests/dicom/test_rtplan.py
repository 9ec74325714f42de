"""RT Plan of an electron plan: beams, control points, references, approval."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pytest
from pydicom.dataset import Dataset

from rtexport.demo.phantom import rtstruct_dataset
from rtexport.dicom.common import BuildContext
from rtexport.dicom.contours import contours_by_name
from rtexport.dicom.rtplan import Approval, beam_numbers, build_rtplan
from rtexport.dicom.rtstruct import bolus_roi_numbers
from rtexport.errors import BuildError
from rtexport.geometry.iec import source_direction
from rtexport.geometry.setup import AimedPlan, aim_plan
from rtexport.model.course import Course, PatientPosition
from rtexport.model.plan import Plan, parse_plan
from rtexport.model.site import Site

from .conftest import APPROVED, BEAM_DOSE_GY, MU, PLAN_TOML, SERIES, SPEC, Exported

ROTATIONS = [
    ("GantryAngle", "GantryRotationDirection"),
    ("BeamLimitingDeviceAngle", "BeamLimitingDeviceRotationDirection"),
    ("PatientSupportAngle", "PatientSupportRotationDirection"),
    ("TableTopEccentricAngle", "TableTopEccentricRotationDirection"),
    ("TableTopPitchAngle", "TableTopPitchRotationDirection"),
    ("TableTopRollAngle", "TableTopRollRotationDirection"),
]


def aim(plan: Plan, site: Site, course: Course) -> AimedPlan:
    return aim_plan(plan, site, course.ct, contours_by_name(rtstruct_dataset(SPEC)))


def beam(rp: Dataset, name: str) -> Dataset:
    found: Dataset = next(b for b in rp.BeamSequence if b.BeamName == name)
    return found


def test_beams_are_numbered_in_plan_order(plan: Plan, exported: Exported) -> None:
    assert beam_numbers(plan) == {"AP": 1, "LAO": 2}
    assert [(b.BeamNumber, b.BeamName) for b in exported.rp.BeamSequence] == [(1, "AP"), (2, "LAO")]


def test_control_point_conditionals(exported: Exported) -> None:
    """What dciodvfy does not check: CP0 carries every setting, CP1 only ends the meterset."""
    for b in exported.rp.BeamSequence:
        cps = b.ControlPointSequence
        assert b.NumberOfControlPoints == len(cps) == 2
        assert [cp.ControlPointIndex for cp in cps] == [0, 1]
        assert [float(cp.CumulativeMetersetWeight) for cp in cps] == [0.0, 1.0]
        assert float(b.FinalCumulativeMetersetWeight) == float(cps[-1].CumulativeMetersetWeight)
        cp0 = cps[0]
        for angle, direction in ROTATIONS:
            assert angle in cp0, angle
            assert cp0[direction].value == "NONE", direction
        for keyword in (
            "NominalBeamEnergy",
            "BeamLimitingDevicePositionSequence",
            "IsocenterPosition",
            "SourceToSurfaceDistance",
            "SurfaceEntryPoint",
            "TableTopVerticalPosition",
            "TableTopLongitudinalPosition",
            "TableTopLateralPosition",
        ):
            assert keyword in cp0, keyword
        devices = [d.RTBeamLimitingDeviceType for d in b.BeamLimitingDeviceSequence]
        assert [p.RTBeamLimitingDeviceType for p in cp0.BeamLimitingDevicePositionSequence] == devices
        assert set(cps[1].keys()) == {cps[1]["ControlPointIndex"].tag, cps[1]["CumulativeMetersetWeight"].tag}


def test_dose_rate_is_the_site_energys_when_configured(
    ctx: BuildContext, course: Course, plan: Plan, site: Site, exported: Exported, aimed: AimedPlan
) -> None:
    assert [float(b.ControlPointSequence[0].DoseRateSet) for b in exported.rp.BeamSequence] == [600.0, 600.0]
    data = site.model_dump()
    for energy in data["machines"][0]["energies"]:
        energy["dose_rate_mu_per_min"] = 400.0 if energy["energy_mev"] == 12.0 else None
    rp = build_rtplan(
        ctx,
        course,
        plan,
        Site.model_validate(data),
        exported.rs,
        aimed,
        MU,
        BEAM_DOSE_GY,
        APPROVED,
        series_number=SERIES["RP"],
    )
    rates = {b.BeamName: b.ControlPointSequence[0].get("DoseRateSet") for b in rp.BeamSequence}
    energies = {b.BeamName: float(b.ControlPointSequence[0].NominalBeamEnergy) for b in rp.BeamSequence}
    assert {n: (None if r is None else float(r)) for n, r in rates.items()} == {
        n: (400.0 if e == 12.0 else None) for n, e in energies.items()
    }


def test_electron_beam_attributes(exported: Exported, site: Site) -> None:
    ap, lao = beam(exported.rp, "AP"), beam(exported.rp, "LAO")
    assert (ap.BeamType, ap.RadiationType, ap.TreatmentMachineName) == ("STATIC", "ELECTRON", "DemoLinac")
    assert (ap.PrimaryDosimeterUnit, ap.TreatmentDeliveryType, float(ap.SourceAxisDistance)) == (
        "MU",
        "TREATMENT",
        1000.0,
    )
    assert (ap.NumberOfWedges, ap.NumberOfCompensators) == (0, 0)
    assert float(ap.ControlPointSequence[0].NominalBeamEnergy) == 12.0
    assert float(lao.ControlPointSequence[0].GantryAngle) == 30.0
    assert float(lao.ControlPointSequence[0].BeamLimitingDeviceAngle) == 10.0
    app = ap.ApplicatorSequence[0]
    assert (app.ApplicatorID, app.ApplicatorType) == ("10x10", "ELECTRON_SQUARE")
    assert float(app.ApplicatorGeometrySequence[0].ApplicatorOpening) == 100.0


def test_jaws_and_their_distances_are_the_sites(exported: Exported, site: Site) -> None:
    machine = site.machines[0]
    assert machine.source_to_jaws_mm is not None
    for b in exported.rp.BeamSequence:
        cp0 = b.ControlPointSequence[0]
        expected = machine.jaws(b.ApplicatorSequence[0].ApplicatorID, float(cp0.NominalBeamEnergy))
        assert expected is not None
        positions = cp0.BeamLimitingDevicePositionSequence
        jaws = {p.RTBeamLimitingDeviceType: [float(v) for v in p.LeafJawPositions] for p in positions}
        assert jaws == {"ASYMX": list(expected.x), "ASYMY": list(expected.y)}
        devices = b.BeamLimitingDeviceSequence
        distances = {d.RTBeamLimitingDeviceType: float(d.SourceToBeamLimitingDeviceDistance) for d in devices}
        assert distances == {"ASYMX": machine.source_to_jaws_mm.x, "ASYMY": machine.source_to_jaws_mm.y}
    # the demo machine's 15x15 applicator at 9 MeV: 10 cm beyond the opening, not the opening itself
    lao = beam(exported.rp, "LAO").ControlPointSequence[0].BeamLimitingDevicePositionSequence[0]
    assert [float(v) for v in lao.LeafJawPositions] == [-125.0, 125.0]


def test_cutout_is_an_aperture_block(exported: Exported) -> None:
    ap, lao = beam(exported.rp, "AP"), beam(exported.rp, "LAO")
    assert ap.NumberOfBlocks == len(ap.BlockSequence) == 1
    block = ap.BlockSequence[0]
    assert (block.BlockType, block.BlockDivergence, block.BlockMountingPosition) == (
        "APERTURE",
        "PRESENT",
        "SOURCE_SIDE",
    )
    assert (block.MaterialID, float(block.BlockThickness), float(block.SourceToBlockTrayDistance)) == (
        "Cerrobend",
        12.0,
        947.9,
    )
    assert block.BlockNumberOfPoints * 2 == len(block.BlockData)
    assert [float(v) for v in block.BlockData] == [-40, -30, 40, -30, 40, 30, -40, 30]
    # no cutout given: the open applicator
    open_block = lao.BlockSequence[0]
    assert [float(v) for v in open_block.BlockData] == [-75, -75, 75, -75, 75, 75, -75, 75]


def test_every_beam_whose_field_crosses_the_bolus_references_it(exported: Exported) -> None:
    ap, lao = beam(exported.rp, "AP"), beam(exported.rp, "LAO")
    number = bolus_roi_numbers(exported.rs)["AP"]
    obs = next(o for o in exported.rs.RTROIObservationsSequence if o.ReferencedROINumber == number)
    assert obs.RTROIInterpretedType == "BOLUS"
    assert ap.NumberOfBoli == len(ap.ReferencedBolusSequence) == 1
    assert ap.ReferencedBolusSequence[0].ReferencedROINumber == number
    # LAO's open 15x15 field from 30° covers the anterior skin where AP's bolus lies: the dose assumed it
    assert lao.NumberOfBoli == 1 and lao.ReferencedBolusSequence[0].ReferencedROINumber == number


def test_central_axis_passes_through_the_aim_and_the_isocenter_is_sad_from_the_source(exported: Exported) -> None:
    # PTV of the phantom: x -45..45, y -96..-68, on slices with |z| <= 30 symmetric about 0 -> centroid (0, -82, 0)
    aims = {"AP": np.array([0.0, -82.0, 0.0]), "LAO": np.array([10.0, -60.0, 0.0])}
    for b in exported.rp.BeamSequence:
        cp0 = b.ControlPointSequence[0]
        iso = np.array([float(v) for v in cp0.IsocenterPosition])
        entry = np.array([float(v) for v in cp0.SurfaceEntryPoint])
        toward_source = source_direction(float(cp0.GantryAngle), float(cp0.PatientSupportAngle), PatientPosition.HFS)
        source = iso + float(b.SourceAxisDistance) * toward_source
        assert np.linalg.norm(np.cross(aims[b.BeamName] - source, toward_source)) < 1e-3
        assert math.isclose(np.linalg.norm(entry - source), float(cp0.SourceToSurfaceDistance), abs_tol=2e-3)
        assert np.linalg.norm(np.cross(entry - source, toward_source)) < 2e-3  # the entry point is on the axis too
    assert float(beam(exported.rp, "LAO").ControlPointSequence[0].SourceToSurfaceDistance) == 1050.0


def test_ssd_setups_and_isocentric_beams_get_their_own_patient_setup(
    ctx: BuildContext, course: Course, site: Site, exported: Exported
) -> None:
    setups = {s.PatientSetupNumber: s.SetupTechnique for s in exported.rp.PatientSetupSequence}
    assert list(setups.values()) == ["FIXED_SSD"]
    iso = [float(v) for v in beam(exported.rp, "LAO").ControlPointSequence[0].IsocenterPosition]
    mixed = parse_plan(PLAN_TOML.replace("aim_mm = [10.0, -60.0, 0.0]\nssd_mm = 1050.0", f"isocenter_mm = {iso}"))
    rp = build_rtplan(
        ctx,
        course,
        mixed,
        site,
        exported.rs,
        aim(mixed, site, course),
        MU,
        BEAM_DOSE_GY,
        APPROVED,
        series_number=SERIES["RP"],
    )
    setups = {s.PatientSetupNumber: s.SetupTechnique for s in rp.PatientSetupSequence}
    assert sorted(setups.values()) == ["FIXED_SSD", "ISOCENTRIC"]
    assert setups[beam(rp, "AP").ReferencedPatientSetupNumber] == "FIXED_SSD"
    assert setups[beam(rp, "LAO").ReferencedPatientSetupNumber] == "ISOCENTRIC"
    assert float(beam(rp, "LAO").ControlPointSequence[0].SourceToSurfaceDistance) == pytest.approx(1050.0, abs=0.01)


def test_fraction_group_and_prescription(exported: Exported, plan: Plan) -> None:
    group = exported.rp.FractionGroupSequence[0]
    assert (group.NumberOfFractionsPlanned, group.NumberOfBeams, group.NumberOfBrachyApplicationSetups) == (25, 2, 0)
    refs = {r.ReferencedBeamNumber: r for r in group.ReferencedBeamSequence}
    for name, number in beam_numbers(plan).items():
        assert float(refs[number].BeamMeterset) == MU[name]
        assert float(refs[number].BeamDose) == BEAM_DOSE_GY[name]
    dose_ref = exported.rp.DoseReferenceSequence[0]
    assert (dose_ref.DoseReferenceType, float(dose_ref.TargetPrescriptionDose)) == ("TARGET", 50.0)
    assert group.ReferencedDoseReferenceSequence[0].ReferencedDoseReferenceNumber == dose_ref.DoseReferenceNumber


def test_plan_references_structure_set_setup_and_frame(exported: Exported, course: Course) -> None:
    rp = exported.rp
    assert rp.RTPlanGeometry == "PATIENT"
    assert rp.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == exported.rs.SOPInstanceUID
    assert rp.PatientSetupSequence[0].PatientPosition == course.ct.patient_position
    setup = rp.PatientSetupSequence[0].PatientSetupNumber
    assert all(b.ReferencedPatientSetupNumber == setup for b in rp.BeamSequence)
    assert rp.FrameOfReferenceUID == course.ct.frame_of_reference_uid
    assert (rp.StudyInstanceUID, rp.PatientID) == (course.patient.study_instance_uid, course.patient.patient_id)


def test_approval(exported: Exported) -> None:
    rp = exported.rp
    assert (rp.ApprovalStatus, rp.ReviewerName, rp.ReviewDate, rp.ReviewTime) == (
        "APPROVED",
        "Curie^Marie",
        "20260303",
        "170500",
    )


def test_unapproved_plan_has_no_review(
    ctx: BuildContext, course: Course, plan: Plan, site: Site, exported: Exported, aimed: AimedPlan
) -> None:
    rp = build_rtplan(
        ctx,
        course,
        plan,
        site,
        exported.rs,
        aimed,
        MU,
        BEAM_DOSE_GY,
        Approval("UNAPPROVED"),
        series_number=SERIES["RP"],
    )
    assert rp.ApprovalStatus == "UNAPPROVED"
    assert "ReviewDate" not in rp
    assert "ReviewerName" not in rp


@pytest.mark.parametrize("approval", [Approval("APPROVED"), Approval("APPROVED", "Dr", None)])
def test_approved_without_reviewer_is_refused(
    ctx: BuildContext,
    course: Course,
    plan: Plan,
    site: Site,
    exported: Exported,
    aimed: AimedPlan,
    approval: Approval,
) -> None:
    with pytest.raises(BuildError, match="needs the reviewer's name and the review time"):
        build_rtplan(
            ctx, course, plan, site, exported.rs, aimed, MU, BEAM_DOSE_GY, approval, series_number=SERIES["RP"]
        )


def test_missing_mu_is_refused(
    ctx: BuildContext, course: Course, plan: Plan, site: Site, exported: Exported, aimed: AimedPlan
) -> None:
    with pytest.raises(BuildError, match="no valid MU per fraction for beam 'LAO'"):
        build_rtplan(
            ctx,
            course,
            plan,
            site,
            exported.rs,
            aimed,
            {"AP": 100.0},
            BEAM_DOSE_GY,
            APPROVED,
            series_number=SERIES["RP"],
        )


def test_bolus_without_a_bolus_roi_is_refused(
    ctx: BuildContext, course: Course, plan: Plan, site: Site, original: Dataset, aimed: AimedPlan
) -> None:
    with pytest.raises(BuildError, match="no bolus ROI for beam 'AP'"):
        build_rtplan(ctx, course, plan, site, original, aimed, MU, BEAM_DOSE_GY, APPROVED, series_number=SERIES["RP"])


def test_unknown_applicator_is_refused(
    ctx: BuildContext, course: Course, site: Site, exported: Exported, aimed: AimedPlan
) -> None:
    plan = parse_plan(PLAN_TOML.replace('applicator = "15x15"', 'applicator = "14x14"'))
    with pytest.raises(BuildError, match="DemoLinac has no applicator '14x14'"):
        build_rtplan(
            ctx, course, plan, site, exported.rs, aimed, MU, BEAM_DOSE_GY, APPROVED, series_number=SERIES["RP"]
        )


def test_structure_set_of_another_frame_is_refused(
    ctx: BuildContext, course: Course, plan: Plan, site: Site, exported: Exported, aimed: AimedPlan
) -> None:
    rs = exported.rs.copy()
    rs.FrameOfReferenceUID = "2.25.1"
    with pytest.raises(BuildError, match="is not the CT's"):
        build_rtplan(ctx, course, plan, site, rs, aimed, MU, BEAM_DOSE_GY, APPROVED, series_number=SERIES["RP"])


def test_a_beam_without_setup_is_refused(
    ctx: BuildContext, course: Course, plan: Plan, site: Site, exported: Exported, aimed: AimedPlan
) -> None:
    only_ap = AimedPlan(tuple(b for b in aimed.beams if b.name == "AP"), aimed.bolus)
    with pytest.raises(BuildError, match=r"beam\[1\]: beam 'LAO' has no setup"):
        build_rtplan(
            ctx, course, plan, site, exported.rs, only_ap, MU, BEAM_DOSE_GY, APPROVED, series_number=SERIES["RP"]
        )


def test_plan_date_comes_from_the_context(course: Course, plan: Plan, site: Site, exported: Exported) -> None:
    assert (exported.rp.RTPlanDate, exported.rp.RTPlanTime) == ("20260304", "102030")
    assert datetime(2026, 3, 4, 10, 20, 30).strftime("%Y%m%d") == exported.rp.InstanceCreationDate
