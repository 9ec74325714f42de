"""What a physicist expects to be warned of about a beam's target: an energy that cannot reach it (the R90 of the
site's beam data short of the target's distal depth along the central axis) and a target the dose does not cover
(D95 below the site's ``checks.target_d95_min_pct`` of the prescription).

Computed once per plan state and kept (the same cache as the beam setups), so ``dose``, ``plan show``, the page
and the report show the same words; approval asks the physicist to acknowledge them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from rtexport.model.course import Course
from rtexport.model.site import Site
from rtexport.model.state import PlanState
from rtexport.workspace import Workspace

if TYPE_CHECKING:
    from rtexport.geometry.setup import AimedPlan

VERSION = 1  # of the kept warnings' wording and method
STEP_MM = 0.5  # along the central axis
REACH_MM = 300.0


def _key(site: Site, state: PlanState, course: Course) -> str:
    machine = site.machine(state.plan.machine)
    energies = [e.model_dump() for e in machine.energies] if machine is not None else None
    dose = state.dose.plan.sha256 if state.dose is not None else None
    parts = ["target-warnings", VERSION, state.revision.digest, course.structure_set.sha256, dose, energies]
    parts.append(site.checks.target_d95_min_pct)
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def target_warnings(
    ws: Workspace,
    site: Site,
    state: PlanState,
    course: Course,
    entries: Mapping[str, tuple[float, float, float]],
    *,
    cached: bool = True,
) -> list[str]:
    """The warnings about the plan's targets (the structures its beams are aimed at). ``entries``: each beam's
    surface entry point as set up (a beam without one is not checked for reach). ``cached=False``: computed now,
    whatever the cache holds (for a decision)."""
    targets = sorted({b.target for b in state.plan.beams if b.target})
    if not targets:
        return []
    key = _key(site, state, course)
    kept = ws.setups.get(key) if cached else None
    if kept is not None:
        return [str(w) for w in kept["warnings"]]
    from rtexport.geometry.contours import PlanarStructure
    from rtexport.workspace.dicomio import course_contours

    contours = course_contours(ws, course, targets)
    spacing = float(np.median(np.diff(course.ct.slice_z_mm))) if len(course.ct.slice_z_mm) > 1 else 2.0
    structures = {n: PlanarStructure(contours[n], spacing) for n in targets if contours.get(n)}
    warnings = _reach(site, state, course, structures, entries)
    if state.dose is not None:
        warnings += _coverage(site, state, course, structures)
    with ws.transaction():
        ws.setups.put(key, {"warnings": warnings})
    return warnings


def plan_target_warnings(ws: Workspace, site: Site, state: PlanState) -> list[str]:
    """:func:`target_warnings` of the plan's current state, its beams set up as the export sets them up (none
    for reach while they cannot be set up)."""
    from rtexport.errors import RTExportError
    from rtexport.services.planview import beam_setups

    course = ws.course(state.plan.course)
    try:
        setups, _ = beam_setups(ws, site, state, course)
    except RTExportError:
        setups = {}
    return target_warnings(ws, site, state, course, {name: s.entry_mm for name, s in setups.items()})


def fresh_target_warnings(ws: Workspace, site: Site, state: PlanState) -> tuple[list[str], AimedPlan | None]:
    """:func:`plan_target_warnings` for a decision (approval): nothing read from the cache, so a cache row
    changed behind rtexport's back cannot hide a warning the physicist has to acknowledge. Also returns the beams
    as set up now (None when they cannot be), for the objects built after the decision."""
    from rtexport.errors import RTExportError
    from rtexport.geometry.setup import aim_plan, plan_structures
    from rtexport.workspace.dicomio import course_contours

    course = ws.course(state.plan.course)
    aimed: AimedPlan | None
    try:
        aimed = aim_plan(state.plan, site, course.ct, course_contours(ws, course, plan_structures(state.plan)))
    except RTExportError:
        aimed = None
    entries = {b.name: b.entry_mm for b in aimed.beams} if aimed is not None else {}
    return target_warnings(ws, site, state, course, entries, cached=False), aimed


def _reach(
    site: Site,
    state: PlanState,
    course: Course,
    structures: Mapping[str, object],
    entries: Mapping[str, tuple[float, float, float]],
) -> list[str]:
    from rtexport.dose.commissioning import pdd_metrics
    from rtexport.geometry.contours import PlanarStructure
    from rtexport.geometry.iec import source_direction

    machine = site.machine(state.plan.machine)
    warnings: list[str] = []
    for beam in state.plan.beams:
        structure, entry = structures.get(beam.target or ""), entries.get(beam.name)
        energy = machine.energy(beam.energy_mev) if machine is not None else None
        if not isinstance(structure, PlanarStructure) or entry is None or energy is None:
            continue
        travel = -source_direction(beam.gantry_deg, beam.couch_deg, course.ct.patient_position)
        depths = np.arange(0.0, REACH_MM, STEP_MM)
        inside = structure.contains(np.asarray(entry)[None, :] + depths[:, None] * travel[None, :])
        if not inside.any():
            continue
        distal = float(depths[inside].max())
        r90 = pdd_metrics(energy.pdd.depth_mm, energy.pdd.dose_pct).r90_mm
        if r90 < distal:
            warnings.append(
                f"beam {beam.name}: {beam.energy_mev:g} MeV cannot reach its target {beam.target}: R90 is "
                f"{r90:.0f} mm in the site's beam data, the target's distal edge lies {distal:.0f} mm deep along the "
                "central axis (tissue as water); choose a higher energy or less bolus, or check the target"
            )
    return warnings


def _coverage(site: Site, state: PlanState, course: Course, structures: Mapping[str, object]) -> list[str]:
    from rtexport.geometry.contours import PlanarStructure
    from rtexport.geometry.sampling import sample

    if state.dose is None:
        return []
    grid = state.dose.plan.load()
    ct = course.ct
    xs, ys, zs = ct.x_mm(), ct.y_mm(), np.asarray(ct.slice_z_mm, dtype=np.float64)
    rx = state.plan.prescription_gy
    level = site.checks.target_d95_min_pct
    warnings: list[str] = []
    for name, structure in structures.items():
        if not isinstance(structure, PlanarStructure):
            continue
        k, j, i = np.nonzero(structure.fill(xs, ys, zs))
        if not len(k):
            continue
        points = np.stack([xs[i], ys[j], zs[k]], axis=-1)
        d = sample(np.asarray(grid.gy), grid.geometry.axes(), points)
        d95 = float(np.percentile(d, 5.0))
        if d95 < rx * level / 100.0:
            warnings.append(
                f"target {name}: D95 is {d95:.2f} Gy, {100.0 * d95 / rx:.0f} % of the prescription of {rx:g} Gy "
                f"(the site warns below {level:g} %): the target is not covered"
            )
    return warnings
