"""Synthetic courses as geometry sees them: a CT grid and contours, no pixels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from rtexport.demo.beamdata import demo_site
from rtexport.model.course import Contour, CTGeometry, PatientPosition
from rtexport.model.plan import Plan
from rtexport.model.site import Site

SLICE_MM = 3.0


@pytest.fixture(scope="session")
def site() -> Site:
    return Site.model_validate(demo_site())


def box_ct(position: PatientPosition = PatientPosition.HFS) -> CTGeometry:
    zs = tuple(float(z) for z in -90.0 + SLICE_MM * np.arange(61))
    return CTGeometry("2.25.1", "2.25.2", (-150.0, -150.0, -90.0), (2.0, 2.0), 151, 151, zs, position)


def outline(points: list[tuple[float, float]], zs: tuple[float, ...], half_z: float = 80.0) -> list[Contour]:
    return [Contour(np.array([(x, y, z) for x, y in points])) for z in zs if abs(z) <= half_z]


def box(half: float, zs: tuple[float, ...]) -> list[Contour]:
    """A box |x|, |y|, |z| <= half (contours every slice)."""
    return outline([(-half, -half), (half, -half), (half, half), (-half, half)], zs, half)


def make_plan(beams: list[dict[str, Any]], external: str = "BODY") -> Plan:
    base = {"energy_mev": 12.0, "applicator": "10x10", "mu": 100.0}
    return Plan.model_validate(
        {
            "format": 1, "id": "G", "label": "G", "course": "C", "machine": "DemoLinac", "ct_curve": "Default",
            "external": external, "fractions": 1, "prescription_gy": 2.0,
            "beam": [{"name": f"B{i}", **base, **b} for i, b in enumerate(beams)],
        }
    )  # fmt: skip


PlanFactory = Callable[[list[dict[str, Any]]], Plan]
