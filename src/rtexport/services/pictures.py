"""The page's pictures of a plan: CT slices with structures, bolus and dose (PNG), the DVH (SVG), the legends;
kept in small per-process caches (a CT volume is tens of MB) so scrolling through slices stays quick."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rtexport.errors import InputError
from rtexport.model.course import Course
from rtexport.model.dose import DoseGrid
from rtexport.model.site import Site
from rtexport.model.state import PlanState
from rtexport.pictures import render
from rtexport.pictures.render import LRU, CourseVolume, Outlines, View
from rtexport.services.planview import PlanView
from rtexport.services.site import site_status
from rtexport.services.views import bolus_outlines, colors, course_volume, plan_dvh, targets
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


class Pictures:
    """The pictures of the plans of one workspace, with caches shared by the requests of a process."""

    def __init__(self) -> None:
        self.volumes: LRU[tuple[str, str, str], CourseVolume] = LRU(2)
        self.doses: LRU[tuple[str, int, str], DoseGrid] = LRU(4)
        self.boli: LRU[tuple[str, int, str], Outlines | None] = LRU(8)

    def volume(self, ws: Workspace, course: Course) -> CourseVolume:
        return self.volumes.get(render.course_key(course), lambda: course_volume(ws, course))

    def dose(self, state: PlanState) -> DoseGrid | None:
        if state.dose is None:
            return None
        d = state.dose
        return self.doses.get((state.plan.id, d.revision, d.computed_at.isoformat()), d.plan.load)

    def bolus(self, ws: Workspace, state: PlanState, site: Site | None, vol: CourseVolume) -> Outlines | None:
        """The plan's bolus outlines (none while the site cannot be read: they need its machine)."""
        if site is None or not any(b.bolus for b in state.plan.beams):
            return None
        key = (state.plan.id, state.revision.number, state.revision.digest)
        course = ws.course(state.plan.course)
        return self.boli.get(key, lambda: bolus_outlines(site, course, state.plan, vol.contours))

    def of(self, ws: Workspace, view: PlanView) -> PlanPictures:
        plan, course = view.state.plan, view.course
        vol = self.volume(ws, course)
        dose = self.dose(view.state)
        curves = plan_dvh(vol, dose, course, plan) if dose is not None else []
        return PlanPictures(
            views=[{"name": v.value, "count": vol.count(v), "start": view.first_slices[v.value]} for v in View],
            colors=colors(course, plan),
            curves=curves,
            dvh_svg=render.dvh_svg(curves, plan.prescription_gy) if curves else None,
            targets=targets(course, plan),
            isodose=render.ISODOSE,
        )

    def slice_png(self, ws: Workspace, plan_id: str, view: str, index: int) -> bytes:
        """One slice of the plan's CT with structures, bolus and dose; :class:`InputError` outside the CT."""
        state = ws.plan_state(plan_id)
        course = ws.course(state.plan.course)
        vol = self.volume(ws, course)
        v = View(view)
        if not 0 <= index < vol.count(v):
            raise InputError(f"{v.value} slice {index} is outside 0–{vol.count(v) - 1}")
        extra = self.bolus(ws, state, site_status(ws).site, vol)
        palette = colors(course, state.plan)
        rx = state.plan.prescription_gy
        return render.render_slice(vol, v, index, self.dose(state), rx, palette, render.IMAGE_PX, extra)
