"""For every patient position, a gantry-0 and a gantry-90 beam deposit their dose where IEC 61217 says they
enter: the same plan on the same anatomy, imported from CT stored as a scanner stores it for that position."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from rtexport.demo.phantom import PhantomSpec, write_phantom
from rtexport.dose import CTVolume, compute_plan_dose
from rtexport.model.course import PatientPosition
from rtexport.model.dose import BeamDose
from rtexport.model.plan import Plan
from rtexport.services.courses import import_course
from rtexport.workspace import Workspace
from rtexport.workspace.dicomio import course_contours, load_hu
from tests.conftest import ACTOR, COARSE

# Longer than the 10 cm field in z, so no beam enters through the phantom's cut ends.
SPEC = PhantomSpec(rows=48, columns=68, pixel_mm=5.0, slices=27, slice_mm=5.0, seed="positions")
# The side of the patient facing the source at gantry 0 and at gantry 90 (couch 0).
ENTERS = {
    "HFS": ("anterior", "left"),
    "HFP": ("posterior", "right"),
    "FFS": ("anterior", "right"),
    "FFP": ("posterior", "left"),
    "HFDL": ("right", "anterior"),
    "HFDR": ("left", "posterior"),
    "FFDL": ("right", "posterior"),
    "FFDR": ("left", "anterior"),
}
# The body is an ellipse with semi-axes 150 mm (left-right) and 100 mm (anterior-posterior).
SURFACE = {
    "anterior": np.array([0.0, -100.0, 0.0]),
    "posterior": np.array([0.0, 100.0, 0.0]),
    "left": np.array([150.0, 0.0, 0.0]),
    "right": np.array([-150.0, 0.0, 0.0]),
}


def plan() -> Plan:
    beam = {"energy_mev": 12.0, "applicator": "10x10", "aim_mm": [0.0, 0.0, 0.0], "ssd_mm": 1000.0, "mu": 100.0}
    return Plan.model_validate(
        {
            "format": 1, "id": "P", "label": "P", "course": "C1", "machine": "DemoLinac", "ct_curve": "Default",
            "external": "BODY", "fractions": 1, "prescription_gy": 2.0, "dose_grid_mm": 4.0,
            "beam": [{"name": "G0", "gantry_deg": 0.0, **beam}, {"name": "G90", "gantry_deg": 90.0, **beam}],
        }
    )  # fmt: skip


def high_dose_centre(beam: BeamDose) -> np.ndarray:
    """Centre of the region receiving at least 80 % of the beam's maximum."""
    xs, ys, zs = beam.dose.geometry.axes()
    k, j, i = np.nonzero(beam.dose.gy >= 0.8 * beam.dose.gy.max())
    return np.array([xs[i].mean(), ys[j].mean(), zs[k].mean()])


@pytest.mark.parametrize("position", list(PatientPosition))
def test_dose_maximum_lies_under_the_skin_the_beam_enters(
    workspace: Workspace, tmp_path: Path, position: PatientPosition
) -> None:
    write_phantom(tmp_path / "ct", dataclasses.replace(SPEC, position=position))
    import_course(workspace, tmp_path / "ct", "C1", ACTOR)
    course = workspace.course("C1")
    volume = CTVolume(course.ct, load_hu(workspace.blobs, course))
    # the coarse engine: what is held is which side the dose lies on, to 15 mm, not its shape
    dose = compute_plan_dose(plan(), workspace.site(), volume, course_contours(workspace, course), engine=COARSE)
    for beam, side in zip(dose.beams, ENTERS[position.value], strict=True):
        skin = SURFACE[side]
        inward = -skin / np.linalg.norm(skin)
        centre = high_dose_centre(beam)
        depth = float((centre - skin) @ inward)
        # 12 MeV: the high dose lies under the skin where the beam enters (dmax 28 mm, R80 43 mm in water)...
        assert 5.0 <= depth <= 40.0, (beam.beam_name, side, centre)
        # ...around the central axis through the body's centre
        assert np.linalg.norm(centre - skin - depth * inward) <= 15.0, (beam.beam_name, side, centre)
        # and nothing but bremsstrahlung reaches the far half of the patient (R50 is 50 mm; the body 200-300 mm)
        xs, ys, _ = beam.dose.geometry.axes()
        far = (xs[None, :] * skin[0] + ys[:, None] * skin[1]) < 0.0
        assert beam.dose.gy[:, far].max() < 0.05 * beam.dose.gy.max(), (beam.beam_name, side)
