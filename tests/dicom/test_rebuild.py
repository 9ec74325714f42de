"""What a receiving system rebuilds from the exported files alone agrees with the dose's geometry.

The receiver below reads only the exported RT Structure Set and RT Plan with pydicom, and rebuilds each beam as
IEC 61217 and PS3.3 describe it — source at SourceAxisDistance from IsocenterPosition, toward the side of the
patient the gantry angle faces in that PatientPosition — then traces the central axis to the External or bolus
contours. None of rtexport's geometry is used for that; it is compared with the engine's own input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom.dataset import Dataset

from rtexport.demo.beamdata import demo_site
from rtexport.demo.phantom import PhantomSpec, write_phantom
from rtexport.dose import BeamSetup, Medium
from rtexport.export.gate import ALL_ITEMS
from rtexport.model.course import PatientPosition
from rtexport.model.people import Role
from rtexport.model.site import EnergyData
from rtexport.services.approval import authorize
from rtexport.services.courses import import_course
from rtexport.services.dose import compute_dose
from rtexport.services.export import FolderDestination, export_plan
from rtexport.services.plans import load_plan
from rtexport.services.users import add_user
from rtexport.workspace import Workspace
from tests.conftest import ACTOR, COARSE
from tests.support.dciodvfy import run as dciodvfy

F = npt.NDArray[np.float64]
TOLERANCE_MM = 0.5
# An odd number of slices: the phantom's PTV centroid (z = 0) lies on a slice, as a receiver picks planes.
SPEC = PhantomSpec(rows=52, columns=72, pixel_mm=4.5, slices=17, slice_mm=5.0, seed="rebuild")
PHYS = ("phil", "physicist-pass-1")

# ---- the receiver: IEC 61217 in anatomical terms, pydicom only ------------------------------------------------
# Source direction for gantry angle θ at couch 0, in DICOM patient coordinates (x left, y posterior, z head).
# Supine: gantry 0 above the patient (anterior), 90 at the gantry's right (the patient's left when head first).
SOURCE_DIRECTION = {
    "HFS": lambda s, c: (s, -c, 0.0),
    "HFP": lambda s, c: (-s, c, 0.0),
    "FFS": lambda s, c: (-s, -c, 0.0),
    "FFP": lambda s, c: (s, c, 0.0),
    "HFDL": lambda s, c: (-c, -s, 0.0),  # left side down: the right side faces up, the face the gantry's right
    "HFDR": lambda s, c: (c, s, 0.0),
    "FFDL": lambda s, c: (-c, s, 0.0),
    "FFDR": lambda s, c: (c, -s, 0.0),
}
FROM_ANTERIOR = {"HFS": 0, "HFP": 180, "FFS": 0, "FFP": 180, "HFDL": 90, "HFDR": 270, "FFDL": 270, "FFDR": 90}


def toward_source(position: str, gantry_deg: float) -> F:
    t = np.radians(gantry_deg)
    return np.array(SOURCE_DIRECTION[position](np.sin(t), np.cos(t)), dtype=np.float64)


def floats(values: object) -> F:
    return np.array([float(v) for v in values], dtype=np.float64)  # type: ignore[attr-defined]


def rois(rs: Dataset, kind: str) -> dict[int, list[F]]:
    """ROI number → its contours (N, 3) for every ROI of an RTROIInterpretedType."""
    numbers = {int(o.ReferencedROINumber) for o in rs.RTROIObservationsSequence if o.RTROIInterpretedType == kind}
    return {
        int(rc.ReferencedROINumber): [floats(c.ContourData).reshape(-1, 3) for c in rc.ContourSequence]
        for rc in rs.ROIContourSequence
        if int(rc.ReferencedROINumber) in numbers
    }


def nearest_plane(contours: list[F], z: float) -> list[F]:
    """The contours on the plane nearest z, if z lies within half the structure's slice spacing of it."""
    planes = sorted({round(float(c[0, 2]), 3) for c in contours})
    spacing = float(np.median(np.diff(planes))) if len(planes) > 1 else 5.0
    best = min(planes, key=lambda p: abs(p - z))
    return [c for c in contours if abs(c[0, 2] - best) < 1e-3] if abs(best - z) <= spacing / 2 else []


def first_crossing(start: F, direction: F, polygons: list[F]) -> float | None:
    """Distance along an in-plane ray to its first crossing of any polygon edge."""
    best: float | None = None
    for poly in polygons:
        a, b = poly[:, :2], np.roll(poly[:, :2], -1, axis=0)
        e = b - a
        denom = direction[0] * e[:, 1] - direction[1] * e[:, 0]
        ok = np.abs(denom) > 1e-12
        w = a - start[:2]
        s = (w[:, 0] * e[:, 1] - w[:, 1] * e[:, 0]) / np.where(ok, denom, 1.0)
        t = (w[:, 0] * direction[1] - w[:, 1] * direction[0]) / np.where(ok, denom, 1.0)
        hit = ok & (s >= 0) & (t >= 0) & (t <= 1)
        if hit.any():
            found = float(s[hit].min())
            best = found if best is None else min(best, found)
    return best


def inside(poly: F, u: F, v: F) -> npt.NDArray[np.bool_]:
    """Crossing-number point-in-polygon."""
    out = np.zeros(u.shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        crosses = (y0 > v) != (y1 > v)
        with np.errstate(divide="ignore", invalid="ignore"):
            out ^= crosses & (u < x0 + (v - y0) * (x1 - x0) / (y1 - y0))
    return out


@dataclasses.dataclass
class Rebuilt:
    source: F
    direction: F  # of travel
    iso: F
    entry: F
    ssd: float
    bev_x: F
    bev_y: F
    sad: float
    cutout: F
    boli: set[int]


def rebuild(rs: Dataset, rp: Dataset) -> dict[str, Rebuilt]:
    """Every beam as a receiving system rebuilds it from the RS and RP."""
    position = str(rp.PatientSetupSequence[0].PatientPosition)
    assert {str(s.PatientPosition) for s in rp.PatientSetupSequence} == {position}
    surfaces = [*rois(rs, "EXTERNAL").values(), *rois(rs, "BOLUS").values()]
    out = {}
    for b in rp.BeamSequence:
        cp0 = b.ControlPointSequence[0]
        assert float(cp0.PatientSupportAngle) == 0.0 and float(cp0.BeamLimitingDeviceAngle) == 0.0
        sad = float(b.SourceAxisDistance)
        up = toward_source(position, float(cp0.GantryAngle))
        iso = floats(cp0.IsocenterPosition)
        source = iso + sad * up
        direction = -up
        polygons = [c for contours in surfaces for c in nearest_plane(contours, float(iso[2]))]
        s = first_crossing(source, direction, polygons)
        assert s is not None, f"beam {b.BeamName}: the central axis meets no External or bolus contour"
        bev_y = np.array([0.0, 0.0, 1.0 if position.startswith("HF") else -1.0])  # toward the gantry
        bev_x = np.cross(bev_y, up)
        cutout = floats(b.BlockSequence[0].BlockData).reshape(-1, 2)
        boli = {int(r.ReferencedROINumber) for r in b.get("ReferencedBolusSequence", [])}
        assert int(b.NumberOfBoli) == len(boli)
        out[str(b.BeamName)] = Rebuilt(
            source, direction, iso, source + s * direction, s, bev_x, bev_y, sad, cutout, boli
        )
    return out


def field_crosses(beam: Rebuilt, contours: list[F]) -> bool:
    """Whether any point of a structure (its outlines, densified, through each contour's slab) is in the field."""
    points = []
    for c in contours:
        for a, b in zip(c, np.roll(c, -1, axis=0), strict=True):
            n = max(2, int(np.linalg.norm(b - a) / 0.5))
            points.append(a + np.linspace(0.0, 1.0, n)[:, None] * (b - a))
    p = np.concatenate(points)
    p = np.concatenate([p + np.array([0.0, 0.0, dz]) for dz in (-2.0, 0.0, 2.0)])
    rel = p - beam.source
    d = rel @ beam.direction
    u, v = (rel @ beam.bev_x) * beam.sad / d, (rel @ beam.bev_y) * beam.sad / d
    return bool(inside(beam.cutout, u[d > 0], v[d > 0]).any())


# ---- the courses: plans aimed the same way on the anatomy, in several positions and orientations -------------


def plan_text(position: PatientPosition) -> str:
    ant = FROM_ANTERIOR[position.value]
    side = toward_source(position.value, ant + 90)  # a lateral beam, isocentric, 40 mm inside the skin
    iso = [round(float(side[0]) * 110.0, 3), 0.0, 0.0]
    return f"""
format = 1
id = "RB"
label = "Rebuild"
course = "C1"
machine = "DemoLinac"
ct_curve = "Default"
external = "BODY"
fractions = 10
prescription_gy = 20.0
dose_grid_mm = 4.0

[[beam]]
name = "ANT"
energy_mev = 9
applicator = "10x10"
gantry_deg = {ant}
target = "PTV"
ssd_mm = 1000
cutout_mm = [[-45, -35], [45, -35], [45, 35], [-45, 35]]
bolus = {{ thickness_mm = 10, margin_mm = 10, material = "Superflab" }}

[[beam]]
name = "OBL"
energy_mev = 12
applicator = "15x15"
gantry_deg = {(ant + 20) % 360}
target = "PTV"
ssd_mm = 1050

[[beam]]
name = "LAT"
energy_mev = 12
applicator = "10x10"
gantry_deg = {(ant + 90) % 360}
isocenter_mm = {iso}
"""


class Recorder:
    """The pencil-beam engine, keeping the setup of every beam it was given (coarse: what is compared is where
    each beam is, not its dose)."""

    def __init__(self) -> None:
        self.engine = COARSE
        self.setups: dict[str, BeamSetup] = {}

    def beam_dose(self, medium: Medium, beam: BeamSetup, energy: EnergyData) -> npt.NDArray[np.float32]:
        self.setups[beam.name] = beam
        return self.engine.beam_dose(medium, beam, energy)


@dataclasses.dataclass
class Course:
    rs: Dataset
    rp: Dataset
    folder: Path
    engine: dict[str, BeamSetup]


COURSES = [
    (PatientPosition.HFS, None),
    (PatientPosition.HFP, None),  # the usual prone CT: [-1, 0, 0, 0, -1, 0]
    (PatientPosition.FFDL, None),  # rows along y
    (PatientPosition.FFS, (1, 0, 0, 0, 1, 0)),  # an unusual orientation for the position
]


@pytest.fixture(scope="module", params=COURSES, ids=lambda c: f"{c[0].value}-{c[1] or 'scanner'}")
def exported_course(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Course]:
    position, orientation = request.param
    root = tmp_path_factory.mktemp(f"rebuild-{position.value}")
    write_phantom(root / "ct", dataclasses.replace(SPEC, position=position, orientation=orientation))
    ws = Workspace.init(root / "home", demo_site())
    import_course(ws, root / "ct", "C1", ACTOR)
    add_user(ws, PHYS[0], Role.PHYSICIST, PHYS[1], ACTOR, full_name="Physicist^Phil")
    load_plan(ws, plan_text(position), "plan.toml", ACTOR)
    recorder = Recorder()
    compute_dose(ws, "RB", ACTOR, engine=recorder)  # the dose exported, and the setup the engine got for each beam
    authorize(ws, "RB", PHYS, ACTOR)
    export_plan(ws, "RB", ALL_ITEMS, FolderDestination(root / "out"), ACTOR)
    (rs,) = [pydicom.dcmread(p) for p in (root / "out").glob("RS.*.dcm")]
    (rp,) = [pydicom.dcmread(p) for p in (root / "out").glob("RP.*.dcm")]
    yield Course(rs, rp, root / "out", recorder.setups)
    ws.close()


def test_every_beam_rebuilt_from_the_rt_plan_is_the_engines(exported_course: Course) -> None:
    rebuilt = rebuild(exported_course.rs, exported_course.rp)
    assert set(rebuilt) == set(exported_course.engine) == {"ANT", "OBL", "LAT"}
    for name, beam in rebuilt.items():
        cp0 = next(b for b in exported_course.rp.BeamSequence if b.BeamName == name).ControlPointSequence[0]
        engine = exported_course.engine[name]
        # the surface the receiver finds is the one the plan states, SSD and entry point alike
        assert np.linalg.norm(beam.entry - floats(cp0.SurfaceEntryPoint)) <= TOLERANCE_MM, name
        assert abs(beam.ssd - float(cp0.SourceToSurfaceDistance)) <= TOLERANCE_MM, name
        # and the beam the dose was computed with
        assert np.linalg.norm(beam.source - np.asarray(engine.frame.source_mm)) <= TOLERANCE_MM, name
        assert float(beam.direction @ engine.frame.direction) > np.cos(np.radians(0.01)), name
        assert abs(beam.ssd - engine.ssd_mm) <= TOLERANCE_MM, name
        assert np.linalg.norm(beam.iso - np.asarray(engine.frame.isocenter_mm)) <= TOLERANCE_MM, name


def test_the_ssd_setups_are_what_the_plan_asked_for(exported_course: Course) -> None:
    rebuilt = rebuild(exported_course.rs, exported_course.rp)
    assert rebuilt["ANT"].ssd == pytest.approx(1000.0, abs=TOLERANCE_MM)  # to the bolus on the skin
    assert rebuilt["OBL"].ssd == pytest.approx(1050.0, abs=TOLERANCE_MM)
    assert rebuilt["LAT"].ssd == pytest.approx(960.0, abs=TOLERANCE_MM)  # isocenter 40 mm inside the skin
    # the aimed beams' central axes pass through the PTV's centroid, on the anterior side of the patient
    ptv = next(int(r.ROINumber) for r in exported_course.rs.StructureSetROISequence if r.ROIName == "PTV")
    (contours,) = [
        [floats(c.ContourData).reshape(-1, 3) for c in rc.ContourSequence]
        for rc in exported_course.rs.ROIContourSequence
        if int(rc.ReferencedROINumber) == ptv
    ]
    centroid = np.mean([c[:, :2].mean(axis=0) for c in contours], axis=0)  # a rectangle on every slice
    for name in ("ANT", "OBL"):
        beam = rebuilt[name]
        rel = np.array([*centroid, 0.0]) - beam.source
        assert np.linalg.norm(rel - (rel @ beam.direction) * beam.direction) <= TOLERANCE_MM + 0.5, name
    assert rebuilt["ANT"].direction @ np.array([0.0, 1.0, 0.0]) == pytest.approx(1.0)  # enters anteriorly


def test_every_beam_whose_field_crosses_a_bolus_references_it(exported_course: Course) -> None:
    rebuilt = rebuild(exported_course.rs, exported_course.rp)
    boli = rois(exported_course.rs, "BOLUS")
    assert len(boli) == 1
    crossing = {name for name, beam in rebuilt.items() for c in boli.values() if field_crosses(beam, c)}
    referencing = {name for name, beam in rebuilt.items() if beam.boli}
    assert crossing == referencing == {"ANT", "OBL"}  # the oblique beam crosses ANT's bolus; the lateral one misses
    assert all(beam.boli <= set(boli) for beam in rebuilt.values())


def test_dciodvfy_finds_no_error_and_no_warning(exported_course: Course) -> None:
    files = sorted(exported_course.folder.glob("R[SPD].*.dcm"))
    assert len(files) == 1 + 1 + 1 + 3
    for path in files:
        report = dciodvfy(path)
        assert (report.returncode, report.errors, report.warnings) == (0, [], []), path.name
