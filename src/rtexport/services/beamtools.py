"""Help with one beam while it is edited (nothing is stored): its setup on the course, the target as the beam sees
it, a cutout from that projection plus a margin, and the energy to use — the lowest commissioned energy whose R90
reaches the target's distal surface along the central axis, as the original application suggests it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from rtexport.errors import PlanError
from rtexport.geometry.iec import BeamFrame, Point
from rtexport.model.course import Contour, CTGeometry
from rtexport.model.plan import Plan, default_cutout, parse_plan
from rtexport.model.site import Site
from rtexport.services.editing import plan_text
from rtexport.services.site import load_site
from rtexport.workspace import Workspace

FloatArray = npt.NDArray[np.float64]
_STEP_MM = 0.5  # along the central axis, when looking for the target's distal surface
_ROUND_MM = 0.1


@dataclass(frozen=True)
class BeamPreview:
    """One beam as set up on the course: the central axis' surface entry and SSD, the isocenter, the aperture
    (cutout or open applicator), the applicator's opening, and the target's outline in the beam's-eye view
    (isocenter plane), with the target's proximal and distal depths along the central axis (None: the axis misses
    it)."""

    beam: str
    ssd_mm: float
    entry_mm: tuple[float, float, float]
    isocenter_mm: tuple[float, float, float]
    aperture_mm: list[tuple[float, float]]
    applicator_mm: list[tuple[float, float]]
    target: str | None
    target_bev_mm: list[tuple[float, float]]
    proximal_mm: float | None
    distal_mm: float | None
    axial: dict[str, Any] = field(default_factory=dict)  # the beam on the CT slice of its entry: see _axial


@dataclass(frozen=True)
class EnergySuggestion:
    """The lowest energy whose R90 reaches ``depth_mm`` (None: none does), and every energy's R90."""

    energy_mev: float | None
    depth_mm: float
    r90_mm: dict[float, float]
    message: str


def _one_beam(ws: Workspace, data: Mapping[str, Any], index: int) -> tuple[Plan, Site]:
    """The plan sent by the page with only its beam ``index`` (so an unfinished other beam does not matter)."""
    beams = data.get("beam")
    if not isinstance(beams, list) or not 0 <= index < len(beams):
        raise PlanError(f"the plan has no beam {index + 1}", [f"beam[{index}]: no such beam"])
    # A new plan's id and label may not be typed yet: they do not change a beam's setup.
    named = {"id": data.get("id") or "preview", "label": data.get("label") or "preview"}
    plan = parse_plan(plan_text({**data, **named, "beam": [beams[index]]}), "the page")
    return plan, load_site(ws)


def _hull(points: FloatArray) -> FloatArray:
    """Convex hull (counter-clockwise) of 2-D points, monotone chain."""
    pts = sorted({(float(x), float(y)) for x, y in points})
    if len(pts) < 3:
        return np.asarray(pts, dtype=np.float64)

    def cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[float, float]] = []
    upper: list[tuple[float, float]] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.asarray(lower[:-1] + upper[:-1], dtype=np.float64)


def _grow(hull: FloatArray, margin_mm: float) -> FloatArray:
    """The convex outline ``margin_mm`` outside a convex hull (corners rounded by 16 points a turn)."""
    if margin_mm <= 0:
        return hull
    angles = np.linspace(0.0, 2 * np.pi, 16, endpoint=False)
    ring = margin_mm * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return _hull((hull[:, None, :] + ring[None, :, :]).reshape(-1, 2))


def _rounded(points: FloatArray) -> list[tuple[float, float]]:
    return [(round(float(x), 1), round(float(y), 1)) for x, y in points]


def _axial(
    frame: BeamFrame,
    ssd: float,
    entry: Point,
    aperture: FloatArray,
    contours: Mapping[str, Sequence[Contour]],
    ct: CTGeometry,
) -> dict[str, Any]:
    """The beam drawn on the axial CT slice nearest its surface entry point: the outlines of the structures on that
    slice, the source, and the central axis and the field's edges (the aperture's extremes along X_b) from the source
    to 50 mm past the entry — in the slice's plane for couch 0 (else their projection onto it)."""
    z = ct.slice_z_mm[int(np.argmin(np.abs(np.asarray(ct.slice_z_mm) - entry[2])))]
    half = ct.slice_spacing_mm / 2 + 1e-6
    outlines = {
        name: [[(round(float(x), 1), round(float(y), 1)) for x, y, _ in c.points_mm] for c in found
               if len(c.points_mm) >= 3 and abs(float(np.mean(c.points_mm[:, 2])) - z) <= half]
        for name, found in contours.items()
    }  # fmt: skip
    far = ssd + 50.0
    lines = [[frame.source_mm, frame.point_at(far)]]
    if len(aperture):
        for u in (float(aperture[:, 0].min()), float(aperture[:, 0].max())):
            end = frame.from_fan(u, 0.0, far)
            lines.append([frame.source_mm, (float(end[0]), float(end[1]), float(end[2]))])
    flat = [[(round(p[0], 1), round(p[1], 1)) for p in line] for line in lines]
    return {"z_mm": round(float(z), 1), "outlines": outlines, "axis": flat[0], "edges": flat[1:]}


def _point(p: tuple[float, float, float]) -> tuple[float, float, float]:
    return round(p[0], 1), round(p[1], 1), round(p[2], 1)


def preview(ws: Workspace, data: Mapping[str, Any], index: int, target: str | None = None) -> BeamPreview:
    """Set up beam ``index`` of the plan the page sent on its course, with ``target`` (default: the beam's own)
    projected into its beam's-eye view. Raises :class:`PlanError` with the problems of that beam."""
    from rtexport.geometry.contours import PlanarStructure
    from rtexport.geometry.setup import beam_cutout, nominal_setup
    from rtexport.model.plan import plan_problems
    from rtexport.workspace.dicomio import course_contours

    plan, site = _one_beam(ws, data, index)
    beam = plan.beams[0]
    course = ws.course(plan.course)
    problems = [p.replace("beam[0]", f"beam[{index}]", 1) for p in plan_problems(plan, site, course)]
    if problems:
        raise PlanError(f"beam {beam.name} cannot be set up yet", problems)
    target = target or beam.target
    names = {plan.external, *(o.structure for o in plan.overrides), *([target] if target else [])}
    contours = course_contours(ws, course, names)
    try:
        frame, ssd, entry = nominal_setup(plan, site, course.ct, contours)
    except PlanError as e:
        raise PlanError(e.args[0].split("\n")[0], [p.replace("beam[0]", f"beam[{index}]") for p in e.problems]) from e
    machine = site.machine(plan.machine)
    app = machine.applicator(beam.applicator) if machine else None
    opening = default_cutout(app.shape, app.opening_mm) if app else []
    aperture = beam_cutout(beam, app) if app else np.empty((0, 2))
    bev: list[tuple[float, float]] = []
    proximal = distal = None
    if target:
        if target not in contours:
            raise PlanError(f"no structure {target!r}", [f"beam[{index}].target: no structure {target!r} in course"])
        structure = PlanarStructure(contours[target], course.ct.slice_spacing_mm)
        points = np.concatenate([c.points_mm for c in contours[target]]) if contours[target] else np.empty((0, 3))
        if len(points):
            u, v, _ = frame.to_fan(points)
            bev = _rounded(_hull(np.stack([u, v], axis=1)))
        s = np.arange(0.0, 400.0, _STEP_MM)
        inside = structure.contains(np.asarray(entry) + s[:, None] * frame.direction)
        hits = np.nonzero(inside)[0]
        if hits.size:
            proximal, distal = float(s[hits[0]]), float(s[hits[-1]])
    return BeamPreview(
        beam=beam.name,
        ssd_mm=round(ssd, 1),
        entry_mm=_point(entry),
        isocenter_mm=_point(frame.isocenter_mm),
        aperture_mm=_rounded(aperture),
        applicator_mm=[(float(x), float(y)) for x, y in opening],
        target=target,
        target_bev_mm=bev,
        proximal_mm=proximal,
        distal_mm=distal,
        axial=_axial(frame, ssd, entry, aperture, contours, course.ct),
    )


def cutout_from_target(
    ws: Workspace, data: Mapping[str, Any], index: int, target: str, margin_mm: float
) -> list[tuple[float, float]]:
    """A cutout for beam ``index``: the convex outline of ``target`` in its beam's-eye view (isocenter plane),
    grown by ``margin_mm``."""
    if not 0 <= margin_mm <= 100:
        raise PlanError("margin out of range", [f"beam[{index}].margin_mm: give 0-100 mm (got {margin_mm:g})"])
    seen = preview(ws, data, index, target)
    if len(seen.target_bev_mm) < 3:
        raise PlanError(f"{target} has no outline", [f"beam[{index}].target: {target!r} has no closed contour"])
    return _rounded(_grow(np.asarray(seen.target_bev_mm, dtype=np.float64), margin_mm))


def suggest_energy(ws: Workspace, data: Mapping[str, Any], index: int, target: str | None = None) -> EnergySuggestion:
    """The lowest energy of the beam's machine whose R90 (from its commissioned depth dose) reaches the target's
    distal surface along the central axis, measured from where the axis enters (bolus included)."""
    from rtexport.dose.commissioning import pdd_metrics

    seen = preview(ws, data, index, target)
    name = seen.target or "the target"
    if seen.distal_mm is None:
        raise PlanError(
            f"the central axis of beam {seen.beam} misses {name}",
            [f"beam[{index}].target: the central axis of beam {seen.beam} does not cross {name}; aim it at it"],
        )
    plan, site = _one_beam(ws, data, index)
    machine = site.machine(plan.machine)
    energies = sorted(machine.energies, key=lambda e: e.energy_mev) if machine else []
    r90 = {e.energy_mev: round(pdd_metrics(e.pdd.depth_mm, e.pdd.dose_pct).r90_mm, 1) for e in energies}
    depth = round(seen.distal_mm, 1)
    chosen = next((e for e, r in r90.items() if r >= depth), None)
    if chosen is None:
        deepest = max(r90.items(), key=lambda kv: kv[1], default=(0.0, 0.0))
        message = (
            f"no energy reaches {name}'s distal surface at {depth:g} mm on the central axis "
            f"(deepest R90: {deepest[1]:g} mm at {deepest[0]:g} MeV)"
        )
    else:
        message = (
            f"{chosen:g} MeV: R90 {r90[chosen]:g} mm reaches {name}'s distal surface at {depth:g} mm "
            "on the central axis (from the surface, bolus included)"
        )
    return EnergySuggestion(chosen, depth, r90, message)
