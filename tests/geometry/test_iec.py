"""IEC 61217 beam geometry, stated as a therapist would: where each beam enters the patient."""

from __future__ import annotations

import numpy as np
import pytest

from rtexport.geometry.iec import BeamFrame, beam_axes, frame_toward, scanner_orientation, source_direction
from rtexport.model.course import PatientPosition

# Directions in DICOM patient coordinates (LPS).
SIDE = {
    "anterior": (0, -1, 0),
    "posterior": (0, 1, 0),
    "left": (1, 0, 0),
    "right": (-1, 0, 0),
    "superior": (0, 0, 1),
    "inferior": (0, 0, -1),
}
# The side of the patient facing the source at gantry 0 (source above the couch) and gantry 90 (source to the
# right of someone at the foot of the couch looking at the gantry), couch 0.
ENTERS = {
    "HFS": ("anterior", "left"),
    "HFP": ("posterior", "right"),
    "FFS": ("anterior", "right"),
    "FFP": ("posterior", "left"),
    "HFDL": ("right", "anterior"),  # lying on the left side, head to the gantry: faces the gantry's right
    "HFDR": ("left", "posterior"),
    "FFDL": ("right", "posterior"),
    "FFDR": ("left", "anterior"),
}


@pytest.mark.parametrize("position", list(PatientPosition))
def test_gantry_0_and_90_enter_where_iec_61217_says(position: PatientPosition) -> None:
    at_0, at_90 = ENTERS[position.value]
    assert source_direction(0.0, 0.0, position) == pytest.approx(SIDE[at_0], abs=1e-12)
    assert source_direction(90.0, 0.0, position) == pytest.approx(SIDE[at_90], abs=1e-12)
    assert source_direction(180.0, 0.0, position) == pytest.approx(-np.array(SIDE[at_0]), abs=1e-12)
    assert source_direction(270.0, 0.0, position) == pytest.approx(-np.array(SIDE[at_90]), abs=1e-12)


@pytest.mark.parametrize(
    ("position", "toward"), [("HFS", "inferior"), ("HFP", "inferior"), ("FFS", "superior"), ("FFDR", "superior")]
)
def test_couch_90_turns_the_feet_to_the_gantrys_right(position: str, toward: str) -> None:
    """Couch 90 (counter-clockwise seen from above): the foot end of the couch swings to where gantry 90 is."""
    assert source_direction(90.0, 90.0, PatientPosition(position)) == pytest.approx(SIDE[toward], abs=1e-12)


def test_beams_eye_view_axes_and_collimator_rotation() -> None:
    hfs = PatientPosition.HFS
    axes = beam_axes(0.0, 0.0, 0.0, hfs)
    assert axes[:, 0] == pytest.approx(SIDE["left"], abs=1e-12)  # BEV x: the patient's left
    assert axes[:, 1] == pytest.approx(SIDE["superior"], abs=1e-12)  # BEV y: toward the gantry
    turned = beam_axes(0.0, 90.0, 0.0, hfs)  # counter-clockwise seen from the source
    assert turned[:, 0] == pytest.approx(SIDE["superior"], abs=1e-12)
    assert turned[:, 1] == pytest.approx(SIDE["right"], abs=1e-12)
    assert beam_axes(0.0, 0.0, 0.0, PatientPosition.HFP)[:, 0] == pytest.approx(SIDE["right"], abs=1e-12)


def test_every_beam_frame_is_right_handed_and_orthonormal() -> None:
    rng = np.random.default_rng(11)
    for position in PatientPosition:
        for g, c, t in rng.uniform(0, 360, (20, 3)):
            axes = beam_axes(float(g), float(c), float(t), position)
            assert axes.T @ axes == pytest.approx(np.eye(3), abs=1e-12)
            assert np.linalg.det(axes) == pytest.approx(1.0)


def test_frame_fan_coordinates_round_trip_and_diverge_from_the_source() -> None:
    frame = frame_toward((10.0, -60.0, 5.0), 30.0, 10.0, 0.0, PatientPosition.HFS, 1050.0, 1000.0)
    assert isinstance(frame, BeamFrame)
    iso = np.asarray(frame.isocenter_mm)
    assert np.linalg.norm(iso - frame.source_mm) == pytest.approx(1000.0)
    assert np.linalg.norm(np.asarray((10.0, -60.0, 5.0)) - frame.source_mm) == pytest.approx(1050.0)
    pts = np.random.default_rng(5).normal(iso, 80.0, (50, 3))
    u, v, d = frame.to_fan(pts)
    assert frame.from_fan(u, v, d) == pytest.approx(pts)
    # a point 10 mm off axis at 1100 mm from the source projects to 10 · 1000/1100 in the isocenter plane
    p = frame.from_fan(np.array(0.0), np.array(0.0), np.array(1100.0)) + 10.0 * frame.axes[:, 0]
    assert frame.to_fan(p)[0] == pytest.approx(10.0 * 1000.0 / 1100.0)


def test_scanner_orientations_of_the_usual_positions() -> None:
    assert scanner_orientation(PatientPosition.HFS) == (1, 0, 0, 0, 1, 0)
    assert scanner_orientation(PatientPosition.HFP) == (-1, 0, 0, 0, -1, 0)
    assert scanner_orientation(PatientPosition.FFS) == (-1, 0, 0, 0, 1, 0)
    assert scanner_orientation(PatientPosition.FFP) == (1, 0, 0, 0, -1, 0)
    # decubitus: the image rows run along the patient's y axis
    assert scanner_orientation(PatientPosition.HFDL) == (0, -1, 0, 1, 0, 0)
