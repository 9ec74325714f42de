"""Plans: load a plan file (a new plan, a new revision, or nothing when unchanged), clone, list."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import threading
from typing import TYPE_CHECKING, TypeVar

from rtexport import __version__
from rtexport.errors import PlanError
from rtexport.model.course import Course
from rtexport.model.people import Actor
from rtexport.model.plan import Plan, dumps_plan, parse_plan, plan_digest, plan_problems, unusual_values
from rtexport.model.site import Site
from rtexport.model.state import PlanState
from rtexport.model.stored import parse_stored_plan
from rtexport.services.revisions import plan_changes

if TYPE_CHECKING:
    from rtexport.geometry.setup import AimedPlan
from rtexport.services.integrity import with_staleness
from rtexport.services.site import load_site, site_status
from rtexport.workspace import Workspace

# The cutout checks of the last plans seen in this process, by all they read (the machine; each beam's name, energy,
# applicator, cutout and measured factor, in order): a saved weight or MU changes none of it, and the check takes
# a solve per beam. In memory only, so a new version of rtexport never reads an old answer.
_T = TypeVar("_T")
_MEMORY_LOCK = threading.Lock()
_CUTOUT_CHECKS: dict[str, list[str]] = {}
_CUTOUT_CHECKS_KEPT = 32


def _remember(memory: dict[str, _T], key: str, value: _T, kept: int) -> None:
    """Keep ``value`` under ``key``, forgetting the oldest beyond ``kept`` (the page's requests run in threads)."""
    with _MEMORY_LOCK:
        memory[key] = value
        while len(memory) > kept:
            memory.pop(next(iter(memory)))


def _cutout_problems(plan: Plan, site: Site) -> list[str]:
    """:func:`rtexport.dose.output.cutout_problems`, answered from memory when the same cutouts on the same
    machine were checked already."""
    from rtexport.dose.output import cutout_problems

    machine = site.machine(plan.machine)
    read = {"name", "energy_mev", "applicator", "cutout_mm", "cutout_factor"}
    parts = [
        machine.model_dump(mode="json") if machine is not None else None,
        [b.model_dump(mode="json", include=read) for b in plan.beams],
    ]
    key = json.dumps(parts, sort_keys=True)
    found = _CUTOUT_CHECKS.get(key)
    if found is None:
        found = cutout_problems(plan, site)
        _remember(_CUTOUT_CHECKS, key, found, _CUTOUT_CHECKS_KEPT)
    return list(found)


# The beam setups of the last plans set up in this process, by all they are set up from (the plan but its beams'
# MU and weights, the site, the course): saving a new weight needs no new setup. In memory only, like the above.
_AIMED: dict[str, AimedPlan] = {}
_AIMED_KEPT = 8


def _aim_key(site: Site, plan: Plan, course: Course) -> str:
    geometry = plan.model_dump(mode="json", exclude={"beams": {"__all__": {"mu", "weight"}}})
    parts = [__version__, geometry, site.model_dump(mode="json"), dataclasses.asdict(course)]
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()


def _check_fits(ws: Workspace, site: Site, plan: Plan, source: str) -> AimedPlan:
    """Refuse a plan that does not fit the site and course, whose beams cannot be set up on the course (an aim
    point in air, an SSD the geometry cannot have, an applicator in the patient), or whose cutout the site's
    cutout factors do not cover: all knowable without dose."""
    # Imported here, not at the top: listing plans needs neither scipy nor pydicom ('plan list' answers at once).
    from rtexport.geometry.setup import aim_plan, plan_structures
    from rtexport.workspace.dicomio import course_contours

    course = ws.course(plan.course)
    problems = plan_problems(plan, site, course)
    problems += _cutout_problems(plan, site) if not problems else []
    if problems:
        raise PlanError(f"{source}: plan does not fit the site or course", problems)
    key = _aim_key(site, plan, course)
    aimed = _AIMED.get(key)
    if aimed is not None:
        return aimed
    try:
        aimed = aim_plan(plan, site, course.ct, course_contours(ws, course, plan_structures(plan)))
    except PlanError as e:
        raise PlanError(f"{source}: the beam setup does not fit course {course.id}", e.problems) from e
    _remember(_AIMED, key, aimed, _AIMED_KEPT)
    return aimed


def _fits_key(site: Site, plan: Plan, course: Course) -> str:
    """A digest of everything the checks of :func:`_check_fits` read: the plan (as its digest), the whole site and
    the whole course (its CT slices by their hashes, its structure set by its hash)."""
    parts = ["fits", 1, __version__, plan_digest(plan), site.model_dump_json(), dataclasses.asdict(course)]
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()


def _unchanged_and_fits(ws: Workspace, site: Site, plan: Plan) -> bool:
    """Whether ``plan`` is its plan's last revision, already checked against this very site and course: then
    loading it again changes nothing and finds nothing new, and the setup (seconds) can be skipped."""
    if ws.plans.course_of(plan.id) != plan.course:
        return False
    if ws.plans.last_revision(plan.id).digest != plan_digest(plan):
        return False
    return ws.setups.get(_fits_key(site, plan, ws.course(plan.course))) is not None


def _keep_setups(ws: Workspace, site: Site, plan: Plan, aimed: AimedPlan) -> PlanState:
    """The plan's state, with the setups of its beams kept for its views (computed already by the checks), and a
    note that ``plan`` fits the site and course as they are (so loading it unchanged again needs no setup)."""
    from rtexport.services.planview import keep_setups

    state = ws.plan_state(plan.id)
    course = ws.course(state.plan.course)
    keep_setups(ws, site, state, course, aimed)
    if plan_digest(plan) == state.revision.digest:
        with ws.transaction():
            ws.setups.put(_fits_key(site, plan, course), {"fits": True})
    return state


def _store(
    ws: Workspace, site: Site, plan: Plan, text: str, source: str, actor: Actor, *, new_only: bool
) -> tuple[int, str]:
    """Store ``plan`` as a new plan or revision in one transaction: (revision number or 0 when unchanged, refusal)."""
    digest = plan_digest(plan)
    changes: list[str] = []  # from the previous revision (none for a new plan)
    with ws.transaction():
        course_id = ws.plans.course_of(plan.id)
        if course_id is None:
            ws.plans.add(plan.id, plan.course, ws.now())
            number = 1
        elif new_only:
            raise PlanError(f"plan {plan.id!r} exists already")
        elif course_id != plan.course:
            raise PlanError(f"{source}: plan {plan.id} belongs to course {course_id}, not {plan.course}")
        else:
            last = ws.plans.last_revision(plan.id)
            if last.digest == digest:
                return 0, ""
            if ws.plans.approval(plan.id, last.number) is not None:
                return 0, (
                    f"{source}: plan {plan.id} is approved and read-only; "
                    f"make an unapproved copy with 'rtexport plan clone {plan.id} NEW_ID'"
                )
            number = last.number + 1
            changes = plan_changes(parse_stored_plan(last.toml, f"revision {last.number}")[0], plan)
        ws.plans.add_revision(plan.id, number, digest, text, secrets.token_hex(16), ws.now(), actor.name)
        acknowledged = {u.key: u.why for u in unusual_values(plan, site) if u.acknowledged}
        ws.audit(actor, "plan-load", "ok", plan.id, number, source=source, acknowledged=acknowledged, changes=changes)
    return number, ""


def load_plan(ws: Workspace, text: str, source: str, actor: Actor) -> tuple[PlanState, bool]:
    """Load plan text: a new plan, a new revision of a changed one, or nothing for an unchanged one (formatting and
    comments do not count). Returns the plan's state and whether anything changed."""
    plan = parse_plan(text, source)
    site = load_site(ws)
    if _unchanged_and_fits(ws, site, plan):
        return ws.plan_state(plan.id), False
    aimed = _check_fits(ws, site, plan, source)
    number, refusal = _store(ws, site, plan, text, source, actor, new_only=False)
    if refusal:
        last = ws.plans.last_revision(plan.id).number
        ws.audit(actor, "plan-load", "refused", plan.id, last, reason="plan is approved", source=source)
        raise PlanError(refusal)
    return _keep_setups(ws, site, plan, aimed), number != 0


def clone_plan(ws: Workspace, plan_id: str, new_id: str, actor: Actor, label: str | None = None) -> PlanState:
    """An unapproved copy of the plan's current revision under ``new_id`` (and ``label`` if given)."""
    state = ws.plan_state(plan_id)
    update: dict[str, object] = {"id": new_id}
    if label is not None:
        update["label"] = label
    source = f"clone of {plan_id}"
    # The clone is written as a plan file and read back like any loaded file: every key checked, every problem
    # named, and what is stored is exactly the file that parses to the clone.
    text = dumps_plan(state.plan.model_copy(update=update))
    clone = parse_plan(text, source)
    site = load_site(ws)
    aimed = _check_fits(ws, site, clone, source)
    with ws.transaction():
        _store(ws, site, clone, text, source, actor, new_only=True)
        ws.audit(actor, "plan-clone", "ok", new_id, 1, source_plan=plan_id, source_revision=state.revision.number)
    return _keep_setups(ws, site, clone, aimed)


def plan_states(ws: Workspace) -> list[PlanState]:
    site = site_status(ws).site
    return [with_staleness(ws.plan_state(p), site) for p in ws.plans.ids()]


def plan_state(ws: Workspace, plan_id: str) -> PlanState:
    """The plan's current revision, approval, authorization and dose (and whether it is stale)."""
    return with_staleness(ws.plan_state(plan_id), site_status(ws).site)
