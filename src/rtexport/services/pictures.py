"""The page's pictures of a plan: CT slices with structures, bolus and dose (PNG), the DVH (SVG), the legends;
kept in small per-process caches (a CT volume is tens of MB) so scrolling through slices stays quick."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rtexport.errors import InputError, PlanError, RTExportError
from rtexport.geometry.setup import aim_plan
from rtexport.model.course import Course
from rtexport.model.dose import DoseGrid
from rtexport.model.plan import Plan
from rtexport.model.site import Site
from rtexport.model.state import PlanState
from rtexport.pictures import overlay, render
from rtexport.pictures.overlay import BeamLines
from rtexport.pictures.render import LRU, CourseVolume, Outlines, View, plane
from rtexport.services.planview import PlanView
from rtexport.services.site import site_status
from rtexport.services.views import bolus_name, colors, course_volume, plan_dvh, targets
from rtexport.workspace import Workspace

VIEWS = tuple(v.value for v in View)


@dataclass(frozen=True)
class PlanPictures:
    """What the plan page shows besides the plan view: each slice view (name, slice count, first slice), the
    colours of structures and bolus, the DVH (curves and SVG; none without dose), the targets, the isodoses."""

    views: list[dict[str, Any]]
    colors: dict[str, str]
    curves: list[Any]
    dvh_svg: str | None
    targets: list[str]
    isodose: tuple[tuple[int, str], ...]
    note: str = ""  # what the pictures cannot show now, and why


class Pictures:
    """The pictures of the plans of one workspace, with caches shared by the requests of a process."""

    def __init__(self) -> None:
        self.volumes: LRU[tuple[str, str, str], CourseVolume] = LRU(2)
        self.doses: LRU[tuple[str, int, str], DoseGrid] = LRU(4)
        self.aims: LRU[tuple[str, int, str, str], Aimed] = LRU(8)

    def volume(self, ws: Workspace, course: Course) -> CourseVolume:
        return self.volumes.get(render.course_key(course), lambda: course_volume(ws, course))

    def dose(self, state: PlanState) -> DoseGrid | None:
        if state.dose is None:
            return None
        d = state.dose
        return self.doses.get((state.plan.id, d.revision, d.computed_at.isoformat()), d.plan.load)

    def aimed(self, ws: Workspace, state: PlanState, site: Site | None, vol: CourseVolume) -> Aimed:
        """The plan's beams as set up (their lines on the CT) and bolus, or why they cannot be drawn now."""
        if site is None:
            return Aimed((), None, "the site configuration cannot be used")
        key = (state.plan.id, state.revision.number, state.revision.digest, site_key(site))
        course = ws.course(state.plan.course)
        return self.aims.get(key, lambda: _aim(site, course, state.plan, vol))

    def of(self, ws: Workspace, view: PlanView) -> PlanPictures:
        plan, course = view.state.plan, view.course
        try:
            vol = self.volume(ws, course)
        except RTExportError as e:  # the plan can still be read, exported or refused: only the pictures go
            blank = PlanPictures([], colors(course, plan), [], None, targets(course, plan), render.ISODOSE)
            return replace(blank, note=f"No CT pictures and no DVH: the course's CT cannot be read: {e}")
        dose = self.dose(view.state)
        curves = plan_dvh(vol, dose, course, plan) if dose is not None else []
        aimed = self.aimed(ws, view.state, view.site, vol)
        return PlanPictures(
            views=[{"name": v.value, "count": vol.count(v), "start": view.first_slices[v.value]} for v in View],
            colors=colors(course, plan),
            curves=curves,
            dvh_svg=render.dvh_svg(curves, plan.prescription_gy) if curves else None,
            targets=targets(course, plan),
            isodose=render.ISODOSE,
            note=f"Beam lines and bolus are not drawn: {aimed.problem}" if aimed.problem else "",
        )

    def slice_png(self, ws: Workspace, plan_id: str, view: str, index: int) -> bytes:
        """One slice of the plan's CT with structures, bolus, beams and dose; :class:`InputError` outside the CT;
        a picture saying why when the slice cannot be drawn."""
        state = ws.plan_state(plan_id)
        course = ws.course(state.plan.course)
        try:
            vol = self.volume(ws, course)
        except RTExportError as e:
            return overlay.message_png(f"No picture: {e}")
        v = View(view)
        if not 0 <= index < vol.count(v):
            raise InputError(f"{v.value} slice {index} is outside 0–{vol.count(v) - 1}")
        aimed = self.aimed(ws, state, site_status(ws).site, vol)
        palette = colors(course, state.plan)
        rx = state.plan.prescription_gy
        return render.render_slice(
            vol, v, index, self.dose(state), rx, palette, render.IMAGE_PX, aimed.bolus, aimed.beams
        )

    def slice_info(self, ws: Workspace, plan_id: str, view: str, index: int, step_px: int = 4) -> dict[str, Any]:
        """What the page needs beside a slice picture: the orientation letters, the pixel grid in mm, and the dose
        (cGy) every ``step_px`` pixels for the readout under the pointer (empty without dose)."""
        state = ws.plan_state(plan_id)
        vol = self.volume(ws, ws.course(state.plan.course))
        v = View(view)
        if not 0 <= index < vol.count(v):
            raise InputError(f"{v.value} slice {index} is outside 0–{vol.count(v) - 1}")
        p = plane(vol.ct, v, index)
        rows, cols = p.x.shape
        h_axis, v_axis = overlay.AXES[v]
        info: dict[str, Any] = {
            "view": v.value,
            "index": index,
            "plane": p.label,
            "size": [cols, rows],
            "origin": list(p.origin),
            "step_mm": list(p.step),
            "axes": ["xyz"[h_axis], "xyz"[v_axis]],
            "edges": overlay.orientation(v),
            "scale_mm": overlay.scale_length_mm(abs(p.step[0]), cols),
            "prescription_gy": state.plan.prescription_gy,
            "dose_step_px": step_px,
            "dose_cgy": [],
        }
        dose = self.dose(state)
        if dose is not None:
            sub = (slice(step_px // 2, None, step_px), slice(step_px // 2, None, step_px))
            gy = render.sample_dose(dose, p.x[sub], p.y[sub], p.z[sub])
            info["dose_cgy"] = np.round(gy * 100).astype(int).tolist()
        return info


@dataclass(frozen=True)
class Aimed:
    """The beams' lines and the bolus outlines of a plan, or (``problem``) why they cannot be drawn."""

    beams: tuple[BeamLines, ...]
    bolus: Outlines | None
    problem: str = ""


def site_key(site: Site) -> str:
    return repr((site.machines, site.ct_curves))


def _aim(site: Site, course: Course, plan: Plan, vol: CourseVolume) -> Aimed:
    try:
        found = aim_plan(plan, site, course.ct, vol.contours)
    except PlanError as e:
        return Aimed((), None, str(e).removeprefix(f"plan {plan.id}: "))
    beams = tuple(BeamLines(b.name, b.frame, b.cutout_mm) for b in found.beams)
    bolus = Outlines.of(course.ct, {bolus_name(n): list(c) for n, c in found.bolus.items()}) if found.bolus else None
    return Aimed(beams, bolus)
