"""Compute and store the dose of a plan's current revision.

The engine runs outside any transaction (seconds); the result is stored in one transaction that first checks that
the revision is still current and not approved meanwhile, so an approved plan's dose, and with it its fixed UIDs,
can never change afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from rtexport.errors import DoseError, PlanError
from rtexport.geometry.setup import plan_structures
from rtexport.model.people import Actor
from rtexport.model.plan import mu_problems, plan_problems
from rtexport.model.state import PlanState, StoredDose
from rtexport.mucheck import MUCheck
from rtexport.services.building import prepare_objects
from rtexport.services.checks import dose_warnings, mu_check
from rtexport.services.coverage import plan_target_warnings
from rtexport.services.integrity import dose_inputs, require_intact
from rtexport.services.site import site_status
from rtexport.workspace import Workspace
from rtexport.workspace.dicomio import course_contours, load_hu

if TYPE_CHECKING:  # the engine's stack (scipy) is imported when a dose is computed, not with this module
    import numpy as np
    import numpy.typing as npt

    from rtexport.dose import DoseEngine
    from rtexport.geometry.setup import AimedPlan
    from rtexport.model.course import Contour, CTGeometry
    from rtexport.model.dose import PlanDose
    from rtexport.model.plan import Plan
    from rtexport.model.site import Site

ENGINE_NAME = "rtexport pencil beam (Hogstrom)"


@dataclass(frozen=True)
class DoseResult:
    """The state of the revision the dose was computed for, with that dose (whatever was loaded meanwhile), and
    what a physicist should look at: the site's ``[checks]`` warnings, the independent MU check, the maximum."""

    state: PlanState
    dose: StoredDose
    warnings: tuple[str, ...] = ()
    mu_check: MUCheck | None = None
    max_gy: float = 0.0
    grid_shape: tuple[int, int, int] = (0, 0, 0)  # z, y, x
    grid_spacing_mm: float = 0.0


def compute_dose(
    ws: Workspace,
    plan_id: str,
    actor: Actor,
    grid_mm: float | None = None,
    engine: DoseEngine | None = None,
) -> DoseResult:
    """Compute and store dose for the plan's current revision; then build its export objects."""
    state = ws.plan_state(plan_id)
    rev = state.revision
    if state.approved:
        raise PlanError(f"plan {plan_id} is approved: its dose is fixed; clone it to change anything")
    require_intact(ws, state, "dose", actor)
    status = site_status(ws)
    site = status.require()
    course = ws.course(state.plan.course)
    problems = plan_problems(state.plan, site, course)
    if problems:
        raise PlanError(f"plan {plan_id} does not fit the site or course", problems)
    hu = load_hu(ws.blobs, course)
    # the structures the dose reads (External, targets, overrides): the others' contours are not parsed
    contours = course_contours(ws, course, plan_structures(state.plan) | {o.structure for o in state.plan.overrides})
    aimed, result = _setup_and_dose(state.plan, site, course.ct, hu, contours, grid_mm, engine)
    if not result.beams:
        raise DoseError(f"plan {plan_id}: no beam dose computed")
    warnings = dose_warnings(site, state.plan, result.plan, result.beams)
    record = ws.doses.store_arrays(result, ENGINE_NAME, dose_inputs(site, state.plan))
    with ws.transaction():
        last = ws.plans.last_revision(plan_id)
        if (last.number, last.token) != (rev.number, rev.token):
            raise PlanError(
                f"plan {plan_id} changed to revision {last.number} while its dose was computed; "
                "the dose was not stored: run 'rtexport dose' again"
            )
        if ws.plans.approval(plan_id, rev.number) is not None:
            raise PlanError(
                f"plan {plan_id} revision {rev.number} was approved while its dose was computed; the approved dose "
                "stands and this one was not stored"
            )
        ws.doses.save(plan_id, rev.number, record, ws.now())
        stored = ws.doses.get(plan_id, rev.number)
        mu = {b.beam_name: b.mu_per_fraction for b in result.beams}
        implausible = mu_problems(state.plan, site, mu)
        ws.audit(
            actor,
            "dose",
            "ok",
            plan_id,
            rev.number,
            engine=ENGINE_NAME,
            mu={name: round(value, 1) for name, value in mu.items()},
            implausible_mu=implausible,
            warnings=warnings,
        )
    if stored is None:  # the row written in this transaction
        raise DoseError(f"plan {plan_id}: the dose just stored cannot be read back; run 'rtexport verify'")
    warning = prepare_objects(ws, plan_id, actor, status, setup=(rev.token, aimed))
    done = replace(state, dose=stored)
    warnings = [*warnings, *plan_target_warnings(ws, site, done)]
    g = result.plan.geometry
    return DoseResult(
        done,
        stored,
        (*warnings, *(() if warning is None else (warning,))),
        mu_check(site, done),
        float(result.plan.gy.max()),
        (int(g.shape[0]), int(g.shape[1]), int(g.shape[2])),
        float(g.spacing_mm[0]),
    )


def import_engine() -> None:
    """Import the engine's stack (scipy, the beams' setup) now rather than when the first dose is computed (the
    command line does it with the garbage collector quiet)."""
    import rtexport.dose.plan
    import rtexport.geometry.bolus
    import rtexport.geometry.rays  # noqa: F401


def _setup_and_dose(
    plan: Plan,
    site: Site,
    ct: CTGeometry,
    hu: npt.NDArray[np.float32],
    contours: Mapping[str, Sequence[Contour]],
    grid_mm: float | None,
    engine: DoseEngine | None,
) -> tuple[AimedPlan, PlanDose]:
    """The beams set up once (for the dose and for the objects built after) and the plan's dose, here."""
    from rtexport.dose import plan as dose_plan
    from rtexport.dose.volume import CTVolume
    from rtexport.geometry.setup import aim_plan

    volume = CTVolume(ct, hu)
    aimed = aim_plan(plan, site, ct, contours)
    return aimed, dose_plan.compute_plan_dose(plan, site, volume, contours, grid_mm, engine, aimed)
