"""Beam setups kept in the workspace: a plan's beams are set up (aimed, boli built, applicators checked) when the
plan is loaded, and the dose of that plan then reads the same setup back instead of computing it again.

A cache (:mod:`rtexport.workspace.setups`), keyed by a digest of everything :func:`~rtexport.geometry.setup.aim_plan`
reads: the plan's geometry (its MU and weights do not move a beam), the whole site, the whole course (its CT by
the slices' hashes, its structures by the structure set's hash), and the source of the code that computes a setup.
An entry that is missing, unreadable or not this plan's is computed again; floats are kept as JSON numbers, which
read back to the very same doubles, so a dose from a kept setup is the dose from a fresh one bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rtexport import __version__
from rtexport.geometry.iec import BeamFrame
from rtexport.geometry.setup import AimedBeam, AimedPlan, aim_plan
from rtexport.model.course import Contour, Course
from rtexport.model.plan import Plan
from rtexport.model.site import Site
from rtexport.workspace import Workspace

_FORMAT = 1
# the code a setup comes from: a change to any of these files computes every setup again
_CODE = ("geometry", "model")


@functools.cache
def _code_digest() -> str:
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for folder in _CODE:
        for path in sorted((root / folder).glob("*.py")):
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def aimed_key(site: Site, plan: Plan, course: Course) -> str:
    """The digest a plan's setup is kept under (see the module docstring)."""
    geometry = plan.model_dump(mode="json", exclude={"beams": {"__all__": {"mu", "weight"}}})
    parts = ["aimed", _FORMAT, __version__, _code_digest(), geometry, site.model_dump(mode="json")]
    parts.append(dataclasses.asdict(course))
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()


def _floats(a: Any) -> Any:
    return np.asarray(a, dtype=np.float64).tolist()


def _to_json(aimed: AimedPlan) -> dict[str, Any]:
    return {
        "beams": [
            {
                "name": b.name,
                "source_mm": list(b.frame.source_mm),
                "axes": _floats(b.frame.axes),
                "sad_mm": b.frame.sad_mm,
                "ssd_mm": b.ssd_mm,
                "entry_mm": list(b.entry_mm),
                "fixed_ssd": b.fixed_ssd,
                "cutout_mm": _floats(b.cutout_mm),
                "boli": list(b.boli),
            }
            for b in aimed.beams
        ],
        "bolus": {
            name: [{"points_mm": _floats(c.points_mm), "type": c.geometric_type} for c in contours]
            for name, contours in aimed.bolus.items()
        },
    }


def _point(values: Sequence[float]) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in values)
    return x, y, z


def _array(values: Any, columns: int) -> Any:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != columns:
        raise ValueError(f"expected rows of {columns} numbers")
    return a


def _from_json(data: Mapping[str, Any], plan: Plan) -> AimedPlan:
    beams = tuple(
        AimedBeam(
            name=str(b["name"]),
            frame=BeamFrame(_point(b["source_mm"]), _array(b["axes"], 3), float(b["sad_mm"])),
            ssd_mm=float(b["ssd_mm"]),
            entry_mm=_point(b["entry_mm"]),
            fixed_ssd=bool(b["fixed_ssd"]),
            cutout_mm=_array(b["cutout_mm"], 2),
            boli=tuple(str(n) for n in b["boli"]),
        )
        for b in data["beams"]
    )
    bolus = {
        str(name): [Contour(points_mm=_array(c["points_mm"], 3), geometric_type=str(c["type"])) for c in contours]
        for name, contours in data["bolus"].items()
    }
    if [b.name for b in beams] != [b.name for b in plan.beams]:
        raise ValueError("another plan's beams")
    if sorted(bolus) != sorted(b.name for b in plan.beams if b.bolus is not None):
        raise ValueError("another plan's boli")
    return AimedPlan(beams, bolus)


def kept_setup(ws: Workspace, site: Site, plan: Plan, course: Course) -> AimedPlan | None:
    """The plan's setup as kept for this very site and course, or None."""
    found = ws.setups.get(aimed_key(site, plan, course))
    if found is None:
        return None
    try:
        return _from_json(found, plan)
    except (KeyError, TypeError, ValueError):
        return None


def keep_setup(ws: Workspace, site: Site, plan: Plan, course: Course, aimed: AimedPlan) -> None:
    """Keep the plan's setup (in the caller's transaction)."""
    ws.setups.put(aimed_key(site, plan, course), _to_json(aimed))


def plan_setup(
    ws: Workspace, site: Site, plan: Plan, course: Course, contours: Mapping[str, Sequence[Contour]]
) -> AimedPlan:
    """The plan's setup: kept, or set up now on ``contours`` (the course's) and kept."""
    found = kept_setup(ws, site, plan, course)
    if found is None:
        found = aim_plan(plan, site, course.ct, contours)
        with ws.transaction():
            keep_setup(ws, site, plan, course, found)
    return found
