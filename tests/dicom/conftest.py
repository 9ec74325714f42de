"""Fixtures: a small phantom course, the demo site, a plan, a build context; strict pydicom writing."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

import numpy as np
import pytest
from pydicom.dataset import Dataset

from rtexport.demo.beamdata import demo_site
from rtexport.demo.phantom import PhantomSpec, ct_datasets, ct_uids, rtstruct_dataset
from rtexport.dicom.common import BuildContext
from rtexport.dicom.contours import contours_by_name
from rtexport.dicom.rtdose import build_rtdose
from rtexport.dicom.rtplan import Approval, build_rtplan
from rtexport.dicom.rtstruct import build_rtstruct
from rtexport.dicom.uids import UIDFactory
from rtexport.geometry.setup import AimedPlan, aim_plan
from rtexport.model.course import (
    Contour,
    Course,
    CTGeometry,
    CTSlice,
    PatientStudy,
    Structure,
    StructureSetRef,
)
from rtexport.model.dose import DoseGrid, GridGeometry
from rtexport.model.plan import Plan, parse_plan
from rtexport.model.site import Site

SPEC = PhantomSpec(rows=48, columns=64, pixel_mm=5.0, slices=16, slice_mm=5.0, seed="dicom-tests")
WHEN = datetime(2026, 3, 4, 10, 20, 30, tzinfo=UTC)

PLAN_TOML = """
format = 1
id = "P1"
label = "Chestwall"
course = "C1"
machine = "DemoLinac"
ct_curve = "Default"
external = "OUTLINE2"
fractions = 25
prescription_gy = 50.0

[[override]]
structure = "Prosthesis"
material = "CompactBone"

[[override]]
structure = "Lung"
material = "Lung"

[[beam]]
name = "AP"
energy_mev = 12.0
applicator = "10x10"
target = "PTV"
ssd_mm = 1000.0
cutout_mm = [[-40.0, -30.0], [40.0, -30.0], [40.0, 30.0], [-40.0, 30.0]]
bolus = { thickness_mm = 5.0, margin_mm = 10.0, material = "Superflab" }

[[beam]]
name = "LAO"
energy_mev = 9.0
applicator = "15x15"
gantry_deg = 30.0
collimator_deg = 10.0
aim_mm = [10.0, -60.0, 0.0]
ssd_mm = 1050.0
"""


def _encoded(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def make_course(spec: PhantomSpec, course_id: str = "C1") -> Course:
    """A Course as an importer would fill it from the phantom's CT and RT Structure Set datasets."""
    series, frame, _ = ct_uids(spec)
    slices = []
    first: Dataset | None = None
    for ds in ct_datasets(spec):
        data = _encoded(ds)
        first = first or ds
        z = float(ds.ImagePositionPatient[2])
        digest = hashlib.sha256(data).hexdigest()
        slices.append(CTSlice(ds.SOPInstanceUID, ds.SOPClassUID, z, digest, len(data)))
    assert first is not None
    rs = rtstruct_dataset(spec)
    rs_bytes = _encoded(rs)
    types = {int(o.ReferencedROINumber): str(o.RTROIInterpretedType) for o in rs.RTROIObservationsSequence}
    structures = tuple(
        Structure(int(r.ROINumber), str(r.ROIName), types[int(r.ROINumber)]) for r in rs.StructureSetROISequence
    )
    patient = PatientStudy(
        patient_name=str(first.PatientName),
        patient_id=first.PatientID,
        patient_birth_date=first.PatientBirthDate,
        patient_sex=first.PatientSex,
        study_instance_uid=first.StudyInstanceUID,
        study_date=first.StudyDate,
        study_time=first.StudyTime,
        referring_physician_name=str(first.ReferringPhysicianName),
        study_id=first.StudyID,
        accession_number=first.AccessionNumber,
        study_description=first.get("StudyDescription", ""),
    )
    slices.sort(key=lambda s: s.z_mm)
    x0, y0, _ = first.ImagePositionPatient
    geometry = CTGeometry(
        frame_of_reference_uid=frame,
        series_instance_uid=series,
        origin_mm=(float(x0), float(y0), slices[0].z_mm),
        pixel_spacing_mm=(float(first.PixelSpacing[0]), float(first.PixelSpacing[1])),
        rows=int(first.Rows),
        columns=int(first.Columns),
        slice_z_mm=tuple(s.z_mm for s in slices),
        patient_position=first.PatientPosition,
    )
    ref = StructureSetRef(
        sop_instance_uid=rs.SOPInstanceUID,
        series_instance_uid=rs.SeriesInstanceUID,
        sha256=hashlib.sha256(rs_bytes).hexdigest(),
        label=rs.StructureSetLabel,
        structures=structures,
    )
    return Course(id=course_id, patient=patient, ct=geometry, slices=tuple(slices), structure_set=ref)


def square_bolus(course: Course, cx: float, cy: float, half: float, z_range: tuple[float, float]) -> list[Contour]:
    """Closed square contours on the CT slices within ``z_range``."""
    out = []
    for z in course.ct.slice_z_mm:
        if z_range[0] <= z <= z_range[1]:
            corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
            pts = [(cx + sx * half, cy + sy * half) for sx, sy in corners]
            out.append(Contour(np.array([(x, y, z) for x, y in pts], dtype=np.float64)))
    return out


@pytest.fixture(scope="session")
def course() -> Course:
    return make_course(SPEC)


@pytest.fixture
def original() -> Dataset:
    return rtstruct_dataset(SPEC)


@pytest.fixture(scope="session")
def site() -> Site:
    return Site.model_validate(demo_site())


@pytest.fixture(scope="session")
def plan() -> Plan:
    return parse_plan(PLAN_TOML)


@pytest.fixture(scope="session")
def aimed(course: Course, plan: Plan, site: Site) -> AimedPlan:
    """The plan's beams set up on the phantom, with the bolus built on its skin."""
    return aim_plan(plan, site, course.ct, contours_by_name(rtstruct_dataset(SPEC)))


@pytest.fixture
def bolus(course: Course) -> dict[str, list[Contour]]:
    # On the anterior surface (y = -100 mm for the phantom's body), over the PTV's extent in z.
    return {"AP": square_bolus(course, 0.0, -105.0, 50.0, (-30.0, 30.0))}


def make_context(
    key: list[str], when: datetime = WHEN, root: str | None = None, zone: tzinfo | None = UTC
) -> BuildContext:
    return BuildContext(
        uids=UIDFactory(root, key),
        when=when,
        manufacturer="rtexport tests",
        software_version="0.1.0",
        station_name="TESTSTATION",
        zone=zone,
    )


@pytest.fixture
def ctx() -> BuildContext:
    return make_context(["P1", "rev-1", "UNAPPROVED"])


MU = {"AP": 212.5, "LAO": 98.25}
BEAM_DOSE_GY = {"AP": 1.25, "LAO": 0.75}
APPROVED = Approval("APPROVED", "Curie^Marie", datetime(2026, 3, 3, 17, 5, 0, tzinfo=UTC))
# Series numbers of the objects export_all builds (the export allocates them per study: rtexport.services.lineage)
SERIES = {"RS": 901, "RP": 902, "RD": 903, "AP": 904, "LAO": 905}


def beam_doses(course: Course, seed: int = 7, names: tuple[str, str] = ("AP", "LAO")) -> dict[str, DoseGrid]:
    """Seeded random per-beam dose grids (Gy, whole course) on the CT's frame."""
    geometry = GridGeometry(origin_mm=(-80.0, -110.0, -30.0), spacing_mm=(4.0, 4.0, 5.0), shape=(13, 20, 41))
    rng = np.random.default_rng(seed)
    out = {}
    for name, peak in zip(names, (38.0, 22.0), strict=True):
        gy = (rng.random(geometry.shape) * peak).astype(np.float32)
        out[name] = DoseGrid(geometry, gy, course.ct.frame_of_reference_uid)
    return out


def plan_dose(beams: dict[str, DoseGrid]) -> DoseGrid:
    grids = list(beams.values())
    total = np.asarray(np.sum([g.gy for g in grids], axis=0, dtype=np.float32), dtype=np.float32)
    return DoseGrid(grids[0].geometry, total, grids[0].frame_of_reference_uid)


@dataclass(frozen=True)
class Exported:
    rs: Dataset
    rp: Dataset
    rd_plan: Dataset
    rd_beams: dict[str, Dataset]
    doses: dict[str, DoseGrid]

    def all(self) -> list[Dataset]:
        return [self.rs, self.rp, self.rd_plan, *self.rd_beams.values()]


def export_all(
    ctx: BuildContext,
    course: Course,
    plan: Plan,
    site: Site,
    aimed: AimedPlan,
    approval: Approval = APPROVED,
    predecessor: str | None = None,
    original: Dataset | None = None,
) -> Exported:
    """What the pipeline exports: derived RS with the plan's boli, RP referencing it, plan dose and beam doses;
    ``original`` the imported structure set (default: the phantom's)."""
    imported = rtstruct_dataset(SPEC) if original is None else original
    rs = build_rtstruct(ctx, imported, plan, site, aimed.bolus, series_number=SERIES["RS"], slices=course.slices)
    names = (plan.beams[0].name, plan.beams[1].name)  # the plan's own: "AP" and "LAO" in PLAN_TOML
    mu = dict(zip(names, MU.values(), strict=True))
    gy = dict(zip(names, BEAM_DOSE_GY.values(), strict=True))
    rp = build_rtplan(
        ctx, course, plan, site, rs, aimed, mu, gy, approval, series_number=SERIES["RP"], predecessor=predecessor
    )
    doses = beam_doses(course, names=names)
    rd_plan = build_rtdose(ctx, course, plan_dose(doses), rp, None, series_number=SERIES["RD"])
    numbers = dict(zip(doses, (SERIES["AP"], SERIES["LAO"]), strict=True))
    rd_beams = {
        name: build_rtdose(ctx, course, grid, rp, name, series_number=numbers[name]) for name, grid in doses.items()
    }
    return Exported(rs, rp, rd_plan, rd_beams, doses)


@pytest.fixture
def exported(ctx: BuildContext, course: Course, plan: Plan, site: Site, aimed: AimedPlan) -> Exported:
    return export_all(ctx, course, plan, site, aimed)


def ds_strings(ds: Dataset) -> list[tuple[str, str]]:
    """(keyword, text) of every DS value in ``ds``, nested sequences included."""
    out: list[tuple[str, str]] = []

    def visit(d: Dataset) -> None:
        for elem in d:
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item)
            elif elem.VR == "DS" and elem.value is not None and elem.value != "":
                values = elem.value if elem.VM > 1 else [elem.value]
                out.extend((elem.keyword, str(v)) for v in values)

    visit(ds)
    return out
