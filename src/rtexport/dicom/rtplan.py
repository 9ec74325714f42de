"""RT Plan (PS3.3 A.20) for an electron plan: applicator, cutout, bolus, two control points."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.uid import RTPlanStorage

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
from rtexport.dicom.contours import contours_by_name
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
    SetupTechnique,
    TreatmentDeliveryType,
)
from rtexport.dicom.rtstruct import bolus_roi_numbers
from rtexport.errors import BuildError
from rtexport.model.course import Course, contours_centroid
from rtexport.model.plan import Beam, Plan, default_cutout
from rtexport.model.site import Applicator, ApplicatorShape, Machine, Site

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
# Rows: DICOM patient x, y, z as combinations of the IEC patient support axes (X_s, Y_s, Z_s).
_SUPPORT_TO_PATIENT = {
    "HFS": ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
    "HFP": ((-1, 0, 0), (0, 0, 1), (0, 1, 0)),
    "FFS": ((-1, 0, 0), (0, 0, -1), (0, -1, 0)),
    "FFP": ((1, 0, 0), (0, 0, 1), (0, -1, 0)),
}
PATIENT_SETUP_NUMBER = 1
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


def source_direction(gantry_deg: float, couch_deg: float, patient_position: str) -> npt.NDArray[np.float64]:
    """Unit vector from the isocenter towards the source, in patient coordinates (IEC 61217 → DICOM)."""
    axes = _SUPPORT_TO_PATIENT.get(patient_position)
    if axes is None:
        raise BuildError(
            f"patient position {patient_position!r} is not supported for beam geometry (HFS, HFP, FFS, FFP)"
        )
    g, c = math.radians(gantry_deg), math.radians(couch_deg)
    fixed = np.array([math.sin(g), 0.0, math.cos(g)])  # gantry rotates about the fixed Y axis
    # Couch rotation is counter-clockwise seen from above: fixed → support is the inverse rotation about Z.
    support = np.array(
        [
            math.cos(c) * fixed[0] + math.sin(c) * fixed[1],
            -math.sin(c) * fixed[0] + math.cos(c) * fixed[1],
            fixed[2],
        ]
    )
    direction: npt.NDArray[np.float64] = np.array(axes, dtype=np.float64) @ support
    return direction


def target_centroid(structure_set: Dataset, name: str) -> tuple[float, float, float]:
    """Area-weighted centroid of a structure's closed planar contours, as the dose engine aims the beam."""
    if not any(r.ROIName == name for r in structure_set.get("StructureSetROISequence", [])):
        raise BuildError(f"target: no structure {name!r} in the exported structure set")
    centroid = contours_centroid(contours_by_name(structure_set, [name])[name])
    if centroid is None:
        raise BuildError(f"target: structure {name!r} has no closed contour; give isocenter_mm instead")
    return centroid


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


def add_rt_general_plan_module(ds: Dataset, ctx: BuildContext, plan: Plan, structure_set: Dataset) -> None:
    """RT General Plan Module (PS3.3 C.8.8.9): PATIENT geometry referencing the exported structure set."""
    ds.RTPlanLabel = plan.label
    ds.RTPlanName = plan.id
    ds.RTPlanDate = ctx.date
    ds.RTPlanTime = ctx.time
    ds.RTPlanGeometry = PlanGeometry.PATIENT.value
    ds.ReferencedStructureSetSequence = seq(
        [sop_reference(str(structure_set.SOPClassUID), str(structure_set.SOPInstanceUID))]
    )


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


def add_rt_patient_setup_module(ds: Dataset, course: Course) -> None:
    """RT Patient Setup Module (PS3.3 C.8.8.12): the CT's patient position, fixed-SSD electron setup."""
    item = Dataset()
    item.PatientSetupNumber = PATIENT_SETUP_NUMBER
    item.PatientPosition = course.ct.patient_position
    item.SetupTechnique = SetupTechnique.FIXED_SSD.value
    ds.PatientSetupSequence = seq([item])


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


def _jaws(app: Applicator) -> list[tuple[BeamLimitingDeviceType, tuple[float, float]]]:
    w, h = app.opening_mm
    return [(BeamLimitingDeviceType.ASYMX, (-w / 2, w / 2)), (BeamLimitingDeviceType.ASYMY, (-h / 2, h / 2))]


def add_beam_limiting_devices(beam_ds: Dataset, app: Applicator, sad_mm: float) -> None:
    """Beam Limiting Device Sequence (PS3.3 C.8.8.14): ASYMX / ASYMY jaws."""
    items = []
    for kind, _ in _jaws(app):
        item = Dataset()
        item.RTBeamLimitingDeviceType = kind.value
        item.SourceToBeamLimitingDeviceDistance = ds_value(sad_mm / 2)  # nominal jaw plane; Type 3
        item.NumberOfLeafJawPairs = 1
        items.append(item)
    beam_ds.BeamLimitingDeviceSequence = seq(items)


def add_cutout_block(beam_ds: Dataset, beam: Beam, app: Applicator) -> None:
    """Block Sequence (PS3.3 C.8.8.14.1): the cutout as an APERTURE, polygon in the isocenter plane (closed
    implicitly: the last point joins the first)."""
    points = beam.cutout_mm if beam.cutout_mm is not None else default_cutout(app.shape, app.opening_mm)
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


def add_bolus_references(beam_ds: Dataset, beam: Beam, boli: Mapping[str, int], where: str) -> None:
    """Referenced Bolus Sequence (PS3.3 C.8.8.14): the beam's BOLUS ROI in the exported structure set."""
    if beam.bolus is None:
        beam_ds.NumberOfBoli = 0
        return
    number = boli.get(beam.name)
    if number is None:
        raise BuildError(
            f"{where}.bolus: the exported structure set has no bolus ROI for beam {beam.name!r}; "
            "export the derived structure set built with this beam's bolus"
        )
    ref = Dataset()
    ref.ReferencedROINumber = number
    beam_ds.NumberOfBoli = 1
    beam_ds.ReferencedBolusSequence = seq([ref])


def _rotation(cp: Dataset, angle_keyword: str, direction_keyword: str, angle: float) -> None:
    setattr(cp, angle_keyword, ds_value(angle))
    setattr(cp, direction_keyword, RotationDirection.NONE.value)


def add_control_points(
    beam_ds: Dataset,
    beam: Beam,
    app: Applicator,
    isocenter: tuple[float, float, float],
    sad_mm: float,
    patient_position: str,
    dose_rate_mu_per_min: float | None = None,
) -> None:
    """Control Point Sequence (PS3.3 C.8.8.14.5): CP0 carries every setting, CP1 ends at weight 1."""
    cp0 = Dataset()
    cp0.ControlPointIndex = 0
    cp0.NominalBeamEnergy = ds_value(beam.energy_mev)
    if dose_rate_mu_per_min is not None:
        cp0.DoseRateSet = ds_value(dose_rate_mu_per_min)
    positions = []
    for kind, (lo, hi) in _jaws(app):
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
    cp0.IsocenterPosition = ds_values(isocenter)
    cp0.SourceToSurfaceDistance = ds_value(beam.ssd_mm)
    toward_source = source_direction(beam.gantry_deg, beam.couch_deg, patient_position)
    entry = np.asarray(isocenter) + (sad_mm - beam.ssd_mm) * toward_source
    cp0.SurfaceEntryPoint = ds_values(np.round(entry, 3))
    cp0.CumulativeMetersetWeight = ds_value(0.0)
    cp1 = Dataset()
    cp1.ControlPointIndex = 1
    cp1.CumulativeMetersetWeight = ds_value(1.0)
    beam_ds.NumberOfControlPoints = 2
    beam_ds.ControlPointSequence = seq([cp0, cp1])


def add_rt_beams_module(ds: Dataset, course: Course, plan: Plan, site: Site, structure_set: Dataset) -> None:
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
        if beam.isocenter_mm is not None:
            isocenter = beam.isocenter_mm
        else:
            assert beam.target is not None  # the plan model allows exactly one of the two
            isocenter = target_centroid(structure_set, beam.target)
        b = Dataset()
        b.BeamNumber = numbers[beam.name]
        b.BeamName = beam.name
        b.BeamType = BeamType.STATIC.value
        b.RadiationType = RadiationType.ELECTRON.value
        b.TreatmentMachineName = machine.name
        b.PrimaryDosimeterUnit = PrimaryDosimeterUnit.MU.value
        b.SourceAxisDistance = ds_value(sad)
        add_beam_limiting_devices(b, app, sad)
        b.ReferencedPatientSetupNumber = PATIENT_SETUP_NUMBER
        b.TreatmentDeliveryType = TreatmentDeliveryType.TREATMENT.value
        b.NumberOfWedges = 0
        b.NumberOfCompensators = 0
        add_bolus_references(b, beam, boli, where)
        add_cutout_block(b, beam, app)
        add_applicator(b, app)
        b.FinalCumulativeMetersetWeight = ds_value(1.0)
        add_control_points(b, beam, app, isocenter, sad, course.ct.patient_position, energy.dose_rate_mu_per_min)
        items.append(b)
    ds.BeamSequence = seq(items)


def add_approval_module(ds: Dataset, approval: Approval) -> None:
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
    ds.ReviewDate = approval.when.strftime("%Y%m%d")
    ds.ReviewTime = approval.when.strftime("%H%M%S")
    ds.ReviewerName = approval.reviewer


def build_rtplan(
    ctx: BuildContext,
    course: Course,
    plan: Plan,
    site: Site,
    structure_set: Dataset,
    mu_per_fraction: Mapping[str, float],
    dose_per_fraction_gy: Mapping[str, float],
    approval: Approval,
) -> Dataset:
    """The RT Plan (PS3.3 A.20) of an electron plan. ``structure_set`` is the exported RT Structure Set."""
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
    add_rt_series_module(ds, ctx, Modality.RTPLAN, f"Plan {plan.label}")
    add_frame_of_reference_module(ds, frame)
    add_general_equipment_module(ds, ctx)
    add_rt_general_plan_module(ds, ctx, plan, structure_set)
    add_rt_prescription_module(ds, ctx, plan)
    add_rt_patient_setup_module(ds, course)
    add_rt_fraction_scheme_module(ds, plan, mu_per_fraction, dose_per_fraction_gy)
    add_rt_beams_module(ds, course, plan, site, structure_set)
    add_approval_module(ds, approval)
    ds.InstanceNumber = 1
    return ds
