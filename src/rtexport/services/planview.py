"""One view of a plan, built once per plan state and shown by the command line (text and JSON), the web page and
the report alike: the plan's facts; per beam its aperture, equivalent square, setup (isocenter, SSD, surface entry
point, setup technique) as the RT Plan writes it, MU and dose per fraction, every bolus it references (by the name
of the exported BOLUS ROI), the MU check; the warnings and the slices to show first.

Every number comes from the functions the export uses: the beams are set up by
:func:`~rtexport.geometry.setup.aim_plan`, the bolus ROI names read from the RT Structure Set the build stage
makes, MU and dose from the stored dose record. Setting the beams up takes seconds, so what it gives is kept in the
workspace (:mod:`rtexport.workspace.setups`) under a digest of everything it depends on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rtexport.errors import PlanError, RTExportError
from rtexport.model.course import Course, CTGeometry
from rtexport.model.plan import Beam
from rtexport.model.site import Machine, Site
from rtexport.model.state import PlanState, StoredBeamDose
from rtexport.mucheck import BeamCheck, MUCheck, equivalent_square_mm
from rtexport.services.checks import dose_warnings, mu_check
from rtexport.services.coverage import target_warnings
from rtexport.services.integrity import with_staleness
from rtexport.services.site import SiteStatus, site_status
from rtexport.workspace import Workspace

if TYPE_CHECKING:
    from rtexport.geometry.setup import AimedPlan

# Setting beams up, building a structure set and drawing need scipy, pydicom and PIL: imported when used, so a
# view whose setups are kept answers without them.

SETUP_VERSION = 1  # of the kept setups' layout: a new layout never reads an old one

Point = tuple[float, float, float]


@dataclass(frozen=True)
class BeamSetup:
    """A beam as the export sets it up: ``technique`` is the RT Plan's SetupTechnique (FIXED_SSD or ISOCENTRIC);
    ``aperture_mm`` the cutout (or the open applicator) at the isocenter plane; ``boli`` the names of the BOLUS
    ROIs of the exported structure set that the beam's field crosses (its own bolus and any other beam's)."""

    technique: str
    isocenter_mm: Point
    ssd_mm: float
    entry_mm: Point
    aperture_mm: tuple[tuple[float, float], ...]
    boli: tuple[str, ...]


@dataclass(frozen=True)
class BeamView:
    beam: Beam
    aim: str  # how the plan file aims the beam, in words
    setup: BeamSetup | None  # None while the beams cannot be set up (see PlanView.setup_problem)
    equivalent_square_mm: float | None
    own_bolus: str | None  # the ROI name of the beam's own bolus
    mu_per_fraction: float | None
    mu_from_dose: bool  # False: the plan file's MU (no dose yet)
    dose: StoredBeamDose | None
    check: BeamCheck | None
    bev_svg: str

    @property
    def boli(self) -> tuple[str, ...]:
        return self.setup.boli if self.setup is not None else ((self.own_bolus,) if self.own_bolus else ())


@dataclass(frozen=True)
class PlanView:
    state: PlanState
    course: Course
    site: Site | None  # None: the site configuration cannot be used (site_problems says why)
    site_problems: tuple[str, ...]
    machine: Machine | None
    setup_problem: str  # why the beams cannot be set up now ('' when they can)
    beams: tuple[BeamView, ...]
    mu_check: MUCheck | None
    warnings: tuple[str, ...]
    max_dose_gy: float | None
    first_slices: dict[str, int]  # axial, sagittal, coronal → the slice to show first

    @property
    def plan(self) -> Any:
        return self.state.plan


def first_slices(ct: CTGeometry, point: Sequence[float] | None) -> dict[str, int]:
    """The axial, sagittal and coronal slices through ``point`` (mm), or the middle of the CT."""
    if point is None:
        return {"axial": len(ct.slice_z_mm) // 2, "sagittal": ct.columns // 2, "coronal": ct.rows // 2}
    return {
        "axial": int(np.argmin(np.abs(np.asarray(ct.slice_z_mm) - point[2]))),
        "sagittal": int(np.argmin(np.abs(ct.x_mm() - point[0]))),
        "coronal": int(np.argmin(np.abs(ct.y_mm() - point[1]))),
    }


def _aim(beam: Beam) -> str:
    if beam.target:
        return f"aimed at the centroid of {beam.target}"
    if beam.aim_mm is not None:
        return "aimed at (" + ", ".join(f"{v:.1f}" for v in beam.aim_mm) + ") mm"
    return "isocenter as given"


def _setup_key(site: Site, state: PlanState, course: Course) -> str:
    """A digest of all a setup depends on: the plan, the course's structures and CT, the plan's machine."""
    machine = site.machine(state.plan.machine)
    parts = [
        SETUP_VERSION,
        state.revision.digest,
        course.id,
        course.structure_set.sha256,
        course.ct.series_instance_uid,
        machine.model_dump_json() if machine is not None else None,
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _compute_setups(
    ws: Workspace, site: Site, state: PlanState, course: Course, aimed: AimedPlan | None = None
) -> dict[str, Any]:
    from rtexport.dicom.enums import SetupTechnique
    from rtexport.export.build import bolus_roi_names, structure_set
    from rtexport.geometry.setup import aim_plan, plan_structures
    from rtexport.services.building import WorkspaceStore, operator_name
    from rtexport.workspace.dicomio import course_contours

    plan = state.plan
    if aimed is None:
        aimed = aim_plan(plan, site, course.ct, course_contours(ws, course, plan_structures(plan)))
    names: dict[str, str] = {}
    if aimed.bolus:
        rs = structure_set(WorkspaceStore(ws), site, state, course, operator_name(ws, state), aimed=aimed)
        names = bolus_roi_names(rs)
    beams = {
        b.name: {
            "technique": (SetupTechnique.FIXED_SSD if b.fixed_ssd else SetupTechnique.ISOCENTRIC).value,
            "isocenter_mm": list(b.isocenter_mm),
            "ssd_mm": b.ssd_mm,
            "entry_mm": list(b.entry_mm),
            "aperture_mm": [[float(u), float(v)] for u, v in b.cutout_mm],
            "boli": [names.get(owner, owner) for owner in b.boli],
        }
        for b in aimed.beams
    }
    return {"beams": beams, "own": names}


def keep_setups(ws: Workspace, site: Site, state: PlanState, course: Course, aimed: AimedPlan) -> None:
    """Keep the setups of beams just set up (when a plan is loaded), so its first view is quick."""
    found = _compute_setups(ws, site, state, course, aimed)
    with ws.transaction():
        ws.setups.put(_setup_key(site, state, course), found)


def beam_setups(
    ws: Workspace, site: Site, state: PlanState, course: Course
) -> tuple[dict[str, BeamSetup], dict[str, str]]:
    """Every beam's setup, and beam → the ROI name of its own bolus; raises :class:`PlanError` when the beams
    cannot be set up on the course with this site."""
    key = _setup_key(site, state, course)
    found = ws.setups.get(key)
    if found is None:
        found = _compute_setups(ws, site, state, course)
        with ws.transaction():
            ws.setups.put(key, found)
    setups = {
        name: BeamSetup(
            technique=b["technique"],
            isocenter_mm=(b["isocenter_mm"][0], b["isocenter_mm"][1], b["isocenter_mm"][2]),
            ssd_mm=b["ssd_mm"],
            entry_mm=(b["entry_mm"][0], b["entry_mm"][1], b["entry_mm"][2]),
            aperture_mm=tuple((u, v) for u, v in b["aperture_mm"]),
            boli=tuple(b["boli"]),
        )
        for name, b in found["beams"].items()
    }
    return setups, dict(found["own"])


def _beam_view(
    beam: Beam,
    machine: Machine | None,
    setup: BeamSetup | None,
    own: str | None,
    state: PlanState,
    check: MUCheck | None,
) -> BeamView:
    from rtexport.pictures.svg import bev_svg

    app = machine.applicator(beam.applicator) if machine else None
    if setup is not None:
        outline: list[tuple[float, float]] | None = list(setup.aperture_mm)
    elif app is not None:
        from rtexport.geometry.setup import beam_cutout

        outline = [(float(u), float(v)) for u, v in beam_cutout(beam, app)]
    else:
        outline = beam.cutout_mm or None
    stored = state.dose.beam(beam.name) if state.dose else None
    return BeamView(
        beam=beam,
        aim=_aim(beam),
        setup=setup,
        equivalent_square_mm=None if not outline else equivalent_square_mm(outline),
        own_bolus=own,
        mu_per_fraction=stored.mu_per_fraction if stored else beam.mu,
        mu_from_dose=stored is not None,
        dose=stored,
        check=next((c for c in check.beams if c.beam == beam.name), None) if check else None,
        bev_svg=bev_svg(beam, app),
    )


def plan_view(ws: Workspace, plan_id: str, status: SiteStatus | None = None) -> PlanView:
    """The view of the plan's current state (``status``: the site as the use case read it)."""
    state = ws.plan_state(plan_id)
    return view_of(ws, state, status or site_status(ws))


def view_of(ws: Workspace, state: PlanState, status: SiteStatus) -> PlanView:
    plan, site = state.plan, status.site
    state = with_staleness(state, site)
    course = ws.course(plan.course)
    machine = site.machine(plan.machine) if site else None
    setups: dict[str, BeamSetup] = {}
    own: dict[str, str] = {}
    problem = "" if site is not None else "the site configuration cannot be read"
    if site is not None:
        try:
            setups, own = beam_setups(ws, site, state, course)
        except (PlanError, RTExportError) as e:
            problem = str(e)
    for b in plan.beams:  # a beam's own bolus is named as the export names it, or as it would be
        if b.bolus is not None and b.name not in own:
            from rtexport.dicom.rtstruct import BOLUS_PREFIX

            own[b.name] = BOLUS_PREFIX + b.name
    check = mu_check(site, state) if site is not None else None
    beams = tuple(_beam_view(b, machine, setups.get(b.name), own.get(b.name), state, check) for b in plan.beams)
    warnings: tuple[str, ...] = ()
    top: float | None = None
    if state.dose is not None:
        grid = state.dose.plan.load()
        top = float(grid.gy.max())
        if site is not None:
            warnings = tuple(dose_warnings(site, plan, grid, state.dose.beams))
    if site is not None and setups:
        entries = {name: s.entry_mm for name, s in setups.items()}
        warnings += tuple(target_warnings(ws, site, state, course, entries))
    warnings = (
        *(f"record changed outside rtexport: {f}" for f in state.integrity),
        *(f"stored before a stricter rule: {p}" for p in state.stored_problems),
        *(f"dose stale: {r}" for r in state.dose_stale),
        *warnings,
    )
    first: Point | None = state.dose.beams[0].normalization_point_mm if state.dose and state.dose.beams else None
    if first is None and beams and beams[0].setup is not None:
        first = beams[0].setup.isocenter_mm
    start = first_slices(course.ct, first)
    return PlanView(
        state=state,
        course=course,
        site=site,
        site_problems=status.problems,
        machine=machine,
        setup_problem=problem,
        beams=beams,
        mu_check=check,
        warnings=warnings,
        max_dose_gy=top,
        first_slices=start,
    )
