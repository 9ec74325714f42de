"""RT Plan (PS3.3 A.20) for an electron plan: applicator, cutout, bolus, two control points."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from pydicom.dataset import Dataset
from pydicom.uid import RTPlanStorage

from rtexport.dicom.charset import apply_character_set
from rtexport.dicom.common import (
    BuildContext,
    add_frame_of_reference_module,
    add_general_equipment_module,
    add_general_study_module,
    add_patient_module,
    add_rt_series_module,
    add_sop_common_module,
    ds_value,
    ds_values,
    seq,
    sop_reference,
)
from rtexport.dicom.enums import (
    ApplicatorApertureShape,
    ApplicatorType,
    ApprovalStatus,
    BeamLimitingDeviceType,
    BeamType,
    BlockDivergence,
    BlockMountingPosition,
    BlockType,
    DoseReferenceStructureType,
    DoseReferenceType,
    Modality,
    PlanGeometry,
    PrimaryDosimeterUnit,
    RadiationType,
    RotationDirection,
    RTPlanRelationship,
    SetupTechnique,
    TreatmentDeliveryType,
)
from rtexport.dicom.rtstruct import bolus_roi_numbers
from rtexport.dicom.uids import is_valid_uid
from rtexport.errors import BuildError
from rtexport.geometry.setup import AimedBeam, AimedPlan
from rtexport.model.course import Course
from rtexport.model.plan import Beam, Plan
from rtexport.model.site import Applicator, ApplicatorShape, JawPositions, Machine, Site
from rtexport.model.text import fit

_APPLICATOR_TYPE = {
    ApplicatorShape.SQUARE: ApplicatorType.ELECTRON_SQUARE,
    ApplicatorShape.RECTANGLE: ApplicatorType.ELECTRON_RECT,
    ApplicatorShape.CIRCLE: ApplicatorType.ELECTRON_CIRC,
}
_APERTURE_SHAPE = {
    ApplicatorShape.SQUARE: ApplicatorApertureShape.SYM_SQUARE,
    ApplicatorShape.RECTANGLE: ApplicatorApertureShape.SYM_RECTANGLE,
    ApplicatorShape.CIRCLE: ApplicatorApertureShape.SYM_CIRCULAR,
}
# One patient setup per technique the plan uses (the same patient position in both).
PATIENT_SETUP_NUMBERS = {SetupTechnique.FIXED_SSD: 1, SetupTechnique.ISOCENTRIC: 2}
FRACTION_GROUP_NUMBER = 1
DOSE_REFERENCE_NUMBER = 1


@dataclass(frozen=True)
class Approval:
    """Approval state written to the Approval Module; APPROVED needs a reviewer and a time."""

    status: str  # "APPROVED" | "UNAPPROVED" | "REJECTED"
    reviewer: str | None = None
    when: datetime | None = None


def beam_numbers(plan: Plan) -> dict[str, int]:
    """Beam name → BeamNumber: 1..n in plan order."""
    return {beam.name: i for i, beam in enumerate(plan.beams, start=1)}


def _machine(site: Site, plan: Plan) -> Machine:
    machine = site.machine(plan.machine)
    if machine is None:
        raise BuildError(f"machine: the site has no machine {plan.machine!r}")
    return machine


def _applicator(machine: Machine, beam: Beam, where: str) -> Applicator:
    app = machine.applicator(beam.applicator)
    if app is None:
        raise BuildError(f"{where}.applicator: {machine.name} has no applicator {beam.applicator!r}")
    return app


def _per_beam(values: Mapping[str, float], beam: Beam, what: str, where: str) -> float:
    value = values.get(beam.name)
    if value is None or not math.isfinite(value) or value < 0:
        raise BuildError(f"{where}: no valid {what} for beam {beam.name!r} (got {value!r}); compute the dose first")
    return float(value)


def add_rt_general_plan_module(
    ds: Dataset, ctx: BuildContext, plan: Plan, structure_set: Dataset, predecessor: str | None = None
) -> None:
    """RT General Plan Module (PS3.3 C.8.8.9): PATIENT geometry referencing the exported structure set, and the
    RT Plan this one replaces (``predecessor``, an RT Plan rtexport built) as its PREDECESSOR."""
    ds.RTPlanLabel = plan.label
    ds.RTPlanName = plan.id
    ds.RTPlanDate = ctx.date
    ds.RTPlanTime = ctx.time
    ds.RTPlanGeometry = PlanGeometry.PATIENT.value
    ds.ReferencedStructureSetSequence = seq(
        [sop_reference(str(structure_set.SOPClassUID), str(structure_set.SOPInstanceUID))]
    )
    if predecessor is not None:
        if not is_valid_uid(predecessor) or predecessor == ds.get("SOPInstanceUID"):
            raise BuildError(f"{predecessor!r} cannot be the SOP Instance UID of the RT Plan this one replaces")
        ref = sop_reference(RTPlanStorage, predecessor)
        ref.RTPlanRelationship = RTPlanRelationship.PREDECESSOR.value
        ds.ReferencedRTPlanSequence = seq([ref])


def add_rt_prescription_module(ds: Dataset, ctx: BuildContext, plan: Plan) -> None:
    """RT Prescription Module (PS3.3 C.8.8.10): one target dose reference with the prescribed dose."""
    item = Dataset()
    item.DoseReferenceNumber = DOSE_REFERENCE_NUMBER
    item.DoseReferenceUID = ctx.uids.uid("dose-reference", DOSE_REFERENCE_NUMBER)
    item.DoseReferenceStructureType = DoseReferenceStructureType.SITE.value
    item.DoseReferenceDescription = plan.label
    item.DoseReferenceType = DoseReferenceType.TARGET.value
    item.TargetPrescriptionDose = ds_value(plan.prescription_gy)
    ds.DoseReferenceSequence = seq([item])


def _technique(beam: AimedBeam) -> SetupTechnique:
    return SetupTechnique.FIXED_SSD if beam.fixed_ssd else SetupTechnique.ISOCENTRIC


def add_rt_patient_setup_module(ds: Dataset, course: Course, aimed: AimedPlan) -> None:
    """RT Patient Setup Module (PS3.3 C.8.8.12): the CT's patient position; FIXED_SSD for the beams set up by
    SSD, ISOCENTRIC for those given an isocenter."""
    items = []
    for technique, number in PATIENT_SETUP_NUMBERS.items():
        if any(_technique(b) is technique for b in aimed.beams):
            item = Dataset()
            item.PatientSetupNumber = number
            item.PatientPosition = course.ct.patient_position.value
            item.SetupTechnique = technique.value
            items.append(item)
    ds.PatientSetupSequence = seq(items)


def add_rt_fraction_scheme_module(
    ds: Dataset, plan: Plan, mu_per_fraction: Mapping[str, float], dose_per_fraction_gy: Mapping[str, float]
) -> None:
    """RT Fraction Scheme Module (PS3.3 C.8.8.13): MU and Gy per fraction of every beam."""
    numbers = beam_numbers(plan)
    refs = []
    for i, beam in enumerate(plan.beams):
        where = f"beam[{i}]"
        ref = Dataset()
        ref.ReferencedBeamNumber = numbers[beam.name]
        ref.BeamDose = ds_value(_per_beam(dose_per_fraction_gy, beam, "dose per fraction", where))
        ref.BeamMeterset = ds_value(_per_beam(mu_per_fraction, beam, "MU per fraction", where))
        refs.append(ref)
    dose_ref = Dataset()
    dose_ref.ReferencedDoseReferenceNumber = DOSE_REFERENCE_NUMBER
    group = Dataset()
    group.FractionGroupNumber = FRACTION_GROUP_NUMBER
    group.ReferencedDoseReferenceSequence = seq([dose_ref])
    group.NumberOfFractionsPlanned = plan.fractions
    group.NumberOfBeams = len(plan.beams)
    group.NumberOfBrachyApplicationSetups = 0
    group.ReferencedBeamSequence = seq(refs)
    ds.FractionGroupSequence = seq([group])


_JAWS = (BeamLimitingDeviceType.ASYMX, BeamLimitingDeviceType.ASYMY)


def _jaw_positions(machine: Machine, beam: Beam, where: str) -> JawPositions:
    jaws = machine.jaws(beam.applicator, beam.energy_mev)
    if jaws is None:
        raise BuildError(
            f"{where}: the site gives no jaw setting for applicator {beam.applicator} at {beam.energy_mev:g} MeV "
            f"on {machine.name}; add jaws_mm to the applicator (see 'rtexport site check')"
        )
    return jaws


def add_beam_limiting_devices(beam_ds: Dataset, machine: Machine, where: str) -> None:
    """Beam Limiting Device Sequence (PS3.3 C.8.8.14): ASYMX / ASYMY jaws at the machine's distances."""
    distances = machine.source_to_jaws_mm
    if distances is None:
        raise BuildError(f"{where}: machine {machine.name} has no source_to_jaws_mm in the site configuration")
    items = []
    for kind, distance in zip(_JAWS, (distances.x, distances.y), strict=True):
        item = Dataset()
        item.RTBeamLimitingDeviceType = kind.value
        item.SourceToBeamLimitingDeviceDistance = ds_value(distance)
        item.NumberOfLeafJawPairs = 1
        items.append(item)
    beam_ds.BeamLimitingDeviceSequence = seq(items)


def add_cutout_block(beam_ds: Dataset, beam_setup: AimedBeam, app: Applicator) -> None:
    """Block Sequence (PS3.3 C.8.8.14.1): the cutout as an APERTURE, polygon in the isocenter plane (closed
    implicitly: the last point joins the first)."""
    points = [(float(x), float(y)) for x, y in beam_setup.cutout_mm]
    block = Dataset()
    block.BlockTrayID = app.id
    block.SourceToBlockTrayDistance = ds_value(app.source_to_cutout_tray_mm)
    block.BlockType = BlockType.APERTURE.value
    block.BlockDivergence = BlockDivergence.PRESENT.value
    block.BlockMountingPosition = BlockMountingPosition.SOURCE_SIDE.value
    block.BlockNumber = 1
    block.BlockName = "Cutout"
    block.MaterialID = app.default_cutout_material
    block.BlockThickness = ds_value(app.cutout_thickness_mm)
    block.BlockNumberOfPoints = len(points)
    block.BlockData = ds_values(v for point in points for v in point)
    beam_ds.NumberOfBlocks = 1
    beam_ds.BlockSequence = seq([block])


def add_applicator(beam_ds: Dataset, app: Applicator) -> None:
    """Applicator Sequence (PS3.3 C.8.8.14.1) with the opening in the Applicator Geometry Sequence."""
    geometry = Dataset()
    geometry.ApplicatorApertureShape = _APERTURE_SHAPE[app.shape].value
    if app.shape is ApplicatorShape.RECTANGLE:
        geometry.ApplicatorOpeningX = ds_value(app.opening_mm[0])
        geometry.ApplicatorOpeningY = ds_value(app.opening_mm[1])
    else:
        geometry.ApplicatorOpening = ds_value(app.opening_mm[0])
    item = Dataset()
    item.ApplicatorID = app.id
    item.ApplicatorType = _APPLICATOR_TYPE[app.shape].value
    item.ApplicatorGeometrySequence = seq([geometry])
    item.ApplicatorDescription = f"{app.shape.value} {app.opening_mm[0]:g} x {app.opening_mm[1]:g} mm"
    beam_ds.ApplicatorSequence = seq([item])


def add_bolus_references(beam_ds: Dataset, beam_setup: AimedBeam, boli: Mapping[str, int], where: str) -> None:
    """Referenced Bolus Sequence (PS3.3 C.8.8.14): every BOLUS ROI of the exported structure set that the beam's
    field crosses (the dose assumed it there), not only the beam's own."""
    refs = []
    for owner in beam_setup.boli:
        number = boli.get(owner)
        if number is None:
            raise BuildError(
                f"{where}.bolus: the exported structure set has no bolus ROI for beam {owner!r}, which the field of "
                f"beam {beam_setup.name!r} crosses; export the derived structure set built with the plan's boli"
            )
        ref = Dataset()
        ref.ReferencedROINumber = number
        refs.append(ref)
    beam_ds.NumberOfBoli = len(refs)
    if refs:
        beam_ds.ReferencedBolusSequence = seq(refs)


def _rotation(cp: Dataset, angle_keyword: str, direction_keyword: str, angle: float) -> None:
    setattr(cp, angle_keyword, ds_value(angle))
    setattr(cp, direction_keyword, RotationDirection.NONE.value)


def add_control_points(
    beam_ds: Dataset,
    beam: Beam,
    beam_setup: AimedBeam,
    jaws: JawPositions,
    dose_rate_mu_per_min: float | None = None,
) -> None:
    """Control Point Sequence (PS3.3 C.8.8.14.5): CP0 carries every setting, CP1 ends at weight 1. The isocenter,
    SSD and surface entry point are those the dose was computed with."""
    cp0 = Dataset()
    cp0.ControlPointIndex = 0
    cp0.NominalBeamEnergy = ds_value(beam.energy_mev)
    if dose_rate_mu_per_min is not None:
        cp0.DoseRateSet = ds_value(dose_rate_mu_per_min)
    positions = []
    for kind, (lo, hi) in zip(_JAWS, (jaws.x, jaws.y), strict=True):
        pos = Dataset()
        pos.RTBeamLimitingDeviceType = kind.value
        pos.LeafJawPositions = ds_values([lo, hi])
        positions.append(pos)
    cp0.BeamLimitingDevicePositionSequence = seq(positions)
    _rotation(cp0, "GantryAngle", "GantryRotationDirection", beam.gantry_deg)
    _rotation(cp0, "BeamLimitingDeviceAngle", "BeamLimitingDeviceRotationDirection", beam.collimator_deg)
    _rotation(cp0, "PatientSupportAngle", "PatientSupportRotationDirection", beam.couch_deg)
    _rotation(cp0, "TableTopEccentricAngle", "TableTopEccentricRotationDirection", 0.0)
    _rotation(cp0, "TableTopPitchAngle", "TableTopPitchRotationDirection", 0.0)
    _rotation(cp0, "TableTopRollAngle", "TableTopRollRotationDirection", 0.0)
    cp0.TableTopVerticalPosition = None  # Type 2: set up at the machine
    cp0.TableTopLongitudinalPosition = None
    cp0.TableTopLateralPosition = None
    # to the micrometre: more digits say nothing, and the values stay readable
    cp0.IsocenterPosition = ds_values(round(v, 3) for v in beam_setup.isocenter_mm)
    cp0.SourceToSurfaceDistance = ds_value(round(beam_setup.ssd_mm, 3))
    cp0.SurfaceEntryPoint = ds_values(round(v, 3) for v in beam_setup.entry_mm)
    cp0.CumulativeMetersetWeight = ds_value(0.0)
    cp1 = Dataset()
    cp1.ControlPointIndex = 1
    cp1.CumulativeMetersetWeight = ds_value(1.0)
    beam_ds.NumberOfControlPoints = 2
    beam_ds.ControlPointSequence = seq([cp0, cp1])


def add_rt_beams_module(ds: Dataset, plan: Plan, site: Site, structure_set: Dataset, aimed: AimedPlan) -> None:
    """RT Beams Module (PS3.3 C.8.8.14): one STATIC ELECTRON beam per plan beam, numbered 1..n."""
    machine = _machine(site, plan)
    sad = machine.source_axis_distance_mm
    boli = bolus_roi_numbers(structure_set)
    numbers = beam_numbers(plan)
    items = []
    for i, beam in enumerate(plan.beams):
        where = f"beam[{i}]"
        app = _applicator(machine, beam, where)
        energy = machine.energy(beam.energy_mev)
        if energy is None:
            raise BuildError(f"{where}.energy_mev: {machine.name} has no {beam.energy_mev:g} MeV")
        try:
            g = aimed.beam(beam.name)
        except KeyError as e:
            raise BuildError(f"{where}: beam {beam.name!r} has no setup; set the plan's beams up first") from e
        if abs(g.frame.sad_mm - sad) > 1e-6:
            raise BuildError(f"{where}: set up with SAD {g.frame.sad_mm:g}, machine {machine.name} has {sad:g}")
        b = Dataset()
        b.BeamNumber = numbers[beam.name]
        b.BeamName = beam.name
        b.BeamType = BeamType.STATIC.value
        b.RadiationType = RadiationType.ELECTRON.value
        b.TreatmentMachineName = machine.name
        b.PrimaryDosimeterUnit = PrimaryDosimeterUnit.MU.value
        b.SourceAxisDistance = ds_value(sad)
        add_beam_limiting_devices(b, machine, where)
        b.ReferencedPatientSetupNumber = PATIENT_SETUP_NUMBERS[_technique(g)]
        b.TreatmentDeliveryType = TreatmentDeliveryType.TREATMENT.value
        b.NumberOfWedges = 0
        b.NumberOfCompensators = 0
        add_bolus_references(b, g, boli, where)
        add_cutout_block(b, g, app)
        add_applicator(b, app)
        b.FinalCumulativeMetersetWeight = ds_value(1.0)
        jaws = _jaw_positions(machine, beam, where)
        add_control_points(b, beam, g, jaws, energy.dose_rate_mu_per_min)
        items.append(b)
    ds.BeamSequence = seq(items)


def add_approval_module(ds: Dataset, ctx: BuildContext, approval: Approval) -> None:
    """Approval Module (PS3.3 C.8.8.16): review date, time and name are required unless UNAPPROVED."""
    try:
        status = ApprovalStatus(approval.status)
    except ValueError as e:
        raise BuildError(f"approval status {approval.status!r}: use APPROVED, UNAPPROVED or REJECTED") from e
    ds.ApprovalStatus = status.value
    if status is ApprovalStatus.UNAPPROVED:
        return
    if not approval.reviewer or approval.when is None:
        raise BuildError(f"a plan {status.value} needs the reviewer's name and the review time")
    ds.ReviewDate = ctx.date_of(approval.when)
    ds.ReviewTime = ctx.time_of(approval.when)
    ds.ReviewerName = approval.reviewer


def build_rtplan(
    ctx: BuildContext,
    course: Course,
    plan: Plan,
    site: Site,
    structure_set: Dataset,
    aimed: AimedPlan,
    mu_per_fraction: Mapping[str, float],
    dose_per_fraction_gy: Mapping[str, float],
    approval: Approval,
    *,
    series_number: int,
    predecessor: str | None = None,
) -> Dataset:
    """The RT Plan (PS3.3 A.20) of an electron plan. ``structure_set`` is the exported RT Structure Set;
    ``aimed`` the beams' setup (:func:`rtexport.geometry.setup.aim_plan`) the dose was computed with;
    ``series_number`` this plan's, distinct within the study; ``predecessor`` the SOP Instance UID of the RT Plan
    it replaces, when one was built (never invented)."""
    frame = course.ct.frame_of_reference_uid
    ss_frame = structure_set.get("FrameOfReferenceUID")
    if ss_frame is not None and ss_frame != frame:
        raise BuildError(
            f"the structure set's Frame of Reference {ss_frame} is not the CT's {frame}; "
            "export the structure set of this course"
        )
    if "SOPInstanceUID" not in structure_set or "SOPClassUID" not in structure_set:
        raise BuildError("the exported structure set has no SOP Instance UID to reference")
    ds = Dataset()
    add_sop_common_module(ds, ctx, RTPlanStorage, ctx.uids.uid("RTPLAN"))
    add_patient_module(ds, course.patient)
    add_general_study_module(ds, course.patient)
    add_rt_series_module(ds, ctx, Modality.RTPLAN, series_number, fit("LO", f"Plan {plan.label}"))
    add_frame_of_reference_module(ds, frame)
    add_general_equipment_module(ds, ctx)
    add_rt_general_plan_module(ds, ctx, plan, structure_set, predecessor)
    add_rt_prescription_module(ds, ctx, plan)
    add_rt_patient_setup_module(ds, course, aimed)
    add_rt_fraction_scheme_module(ds, plan, mu_per_fraction, dose_per_fraction_gy)
    add_rt_beams_module(ds, plan, site, structure_set, aimed)
    add_approval_module(ds, ctx, approval)
    ds.InstanceNumber = 1
    apply_character_set(ds)
    return ds
