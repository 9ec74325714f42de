"""Operations shared by the CLI and the web page: dose computation and the data they need from a course."""

from __future__ import annotations

from collections.abc import Collection

from rtexport.dose import CTVolume, compute_plan_dose
from rtexport.errors import DoseError, PlanError
from rtexport.model.course import Contour, Course
from rtexport.model.plan import plan_problems
from rtexport.workspace import PlanState, Workspace
from rtexport.workspace.dicomio import contours_by_name, load_hu, read_dataset

ENGINE_NAME = "rtexport pencil beam (Hogstrom)"


def course_contours(ws: Workspace, course: Course, names: Collection[str] | None = None) -> dict[str, list[Contour]]:
    """Contours of the course's structures (all, or those named), by name."""
    return contours_by_name(read_dataset(ws.store.get(course.structure_set.sha256)), names)


def compute_dose(ws: Workspace, plan_id: str, actor: str = "system", grid_mm: float | None = None) -> PlanState:
    """Compute and store dose for the plan's current revision."""
    state = ws.plan_state(plan_id)
    if state.approved:
        raise PlanError(f"plan {plan_id} is approved: its dose is fixed; clone it to change anything")
    site = ws.site()
    course = ws.course(state.plan.course)
    problems = plan_problems(state.plan, site, course)
    if problems:
        raise PlanError(f"plan {plan_id} does not fit the site or course", problems)
    volume = CTVolume(course.ct, load_hu(ws.store, course))
    result = compute_plan_dose(state.plan, site, volume, course_contours(ws, course), grid_mm)
    if not result.beams:
        raise DoseError(f"plan {plan_id}: no beam dose computed")
    ws.save_dose(plan_id, state.revision.number, result.beams, result.plan, ENGINE_NAME, actor)
    return ws.plan_state(plan_id)
