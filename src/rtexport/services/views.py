"""What the page and the report show of a plan: the course's CT and structures as a volume, the plan's bolus as
outlines, the slices to start from, the DVH with its statistics."""

from __future__ import annotations

from collections.abc import Sequence

from rtexport.dicom.rtstruct import BOLUS_PREFIX
from rtexport.geometry.setup import aim_plan
from rtexport.model.course import Contour, Course, CTGeometry
from rtexport.model.dose import DoseGrid
from rtexport.model.plan import Plan
from rtexport.model.site import Site
from rtexport.pictures.render import CourseVolume, DVHCurve, Outlines, View, dvh, rasterize, structure_colors
from rtexport.services.planview import first_slices
from rtexport.workspace import Workspace
from rtexport.workspace.dicomio import course_contours, load_hu

BOLUS_COLOR = "#7fffd4"  # aquamarine: no structure, isodose or CT grey has it
TARGET_TYPES = frozenset({"PTV", "CTV", "GTV"})


def course_volume(ws: Workspace, course: Course) -> CourseVolume:
    """The course's CT (HU) and its structures as contours and masks on the CT grid."""
    contours = course_contours(ws, course)
    return CourseVolume(course.ct, load_hu(ws.blobs, course), rasterize(course.ct, contours), contours)


def bolus_name(beam: str) -> str:
    """The name of a beam's bolus, as the exported structure set names its BOLUS ROI."""
    return BOLUS_PREFIX + beam


def bolus_outlines(site: Site, course: Course, plan: Plan, contours: dict[str, list[Contour]]) -> Outlines | None:
    """Each beam's bolus on the CT slices, named as its BOLUS ROI; None when no beam has one."""
    if not any(b.bolus for b in plan.beams):
        return None
    found = aim_plan(plan, site, course.ct, contours).bolus
    return Outlines.of(course.ct, {bolus_name(beam): list(c) for beam, c in found.items()})


def colors(course: Course, plan: Plan) -> dict[str, str]:
    """Each structure's colour (the External grey), and the bolus colour for each beam's bolus."""
    out = structure_colors([s.name for s in course.structures], plan.external)
    out.update({bolus_name(b.name): BOLUS_COLOR for b in plan.beams if b.bolus})
    return out


def targets(course: Course, plan: Plan) -> list[str]:
    """The structures a plan treats: those its beams aim at and every PTV, CTV or GTV of the course."""
    named = [b.target for b in plan.beams if b.target]
    typed = [s.name for s in course.structures if s.interpreted_type in TARGET_TYPES]
    return list(dict.fromkeys([*named, *typed]))


def slices_through(ct: CTGeometry, point: Sequence[float] | None) -> dict[View, int]:
    """The axial, sagittal and coronal slices through ``point`` (mm), or the middle of the CT."""
    return {View(name): index for name, index in first_slices(ct, point).items()}


def plan_dvh(vol: CourseVolume, dose: DoseGrid, course: Course, plan: Plan) -> list[DVHCurve]:
    """The DVH of every structure, with the % of volume at 90 and 95 % of the prescription."""
    levels = (0.9 * plan.prescription_gy, 0.95 * plan.prescription_gy)
    return dvh(vol, dose, colors(course, plan), levels_gy=levels)
