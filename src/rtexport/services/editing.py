"""Editing a plan on the page: the page sends the plan as the plan file's keys; every save is written as a plan file
and goes through :func:`~rtexport.services.plans.load_plan`, the door of ``rtexport plan load`` — the same
validation, the same revisions (an unchanged save makes none), the same refusal of an approved plan. Problems come
back keyed by the field they concern (``beam[0].ssd_mm``), so the page shows each beside its field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import tomli_w

from rtexport.errors import ConfigError, PlanError
from rtexport.model.course import Course
from rtexport.model.people import Actor
from rtexport.model.plan import Plan
from rtexport.model.state import PlanState
from rtexport.services.plans import clone_plan, load_plan
from rtexport.services.site import site_status
from rtexport.workspace import Workspace

PAGE_SOURCE = "the page"
_KEY = re.compile(r"^((?:[a-z_]+(?:\[\d+\])?)(?:\.[a-z_]+(?:\[\d+\])?)*(?:\[\d+\])*): (.+)$", re.DOTALL)


@dataclass(frozen=True)
class Problem:
    """One problem of a plan: the key of the field it concerns (``''``: the plan as a whole) and what is wrong."""

    field: str
    message: str


@dataclass(frozen=True)
class Saved:
    """The plan after a save, and whether the save made a new revision (False: unchanged)."""

    state: PlanState
    changed: bool


def problems_of(error: PlanError) -> list[Problem]:
    """The problems of a refused plan, each with its field; a refusal without problems is one plan-wide problem."""
    head = str(error).split("\n", 1)[0]
    if not error.problems:
        return [Problem("", head)]
    found: list[Problem] = []
    for text in error.problems:
        m = _KEY.match(text)
        found.append(Problem(m.group(1), m.group(2)) if m else Problem("", text))
    return found


def _without_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _without_none(v) for k, v in value.items() if v is not None and v != ""}
    if isinstance(value, list):
        return [_without_none(v) for v in value if v is not None]
    return value


def plan_text(data: Mapping[str, Any]) -> str:
    """The plan file of what the page sent (empty fields left out, so the file says only what was chosen)."""
    try:
        return tomli_w.dumps({"format": 1, **_without_none(data)})
    except (TypeError, ValueError) as e:
        raise PlanError("the plan sent by the page cannot be written as a plan file", [f"(plan): {e}"]) from e


def save_plan(ws: Workspace, data: Mapping[str, Any], actor: Actor, *, plan_id: str | None = None) -> Saved:
    """Save the plan the page sent: ``plan_id`` None makes a new plan (refused when the id exists), otherwise a
    revision of ``plan_id`` (the id sent must be that one). Raises :class:`PlanError` with its problems."""
    sent = str(data.get("id", ""))
    if plan_id is None and sent and ws.plans.course_of(sent) is not None:
        raise PlanError(f"plan {sent!r} exists already", [f"id: plan {sent!r} exists already; choose another id"])
    if plan_id is not None and sent != plan_id:
        raise PlanError(f"this page edits plan {plan_id}", [f"id: the plan id cannot change here ({plan_id}); clone"])
    state, changed = load_plan(ws, plan_text(data), PAGE_SOURCE, actor)
    return Saved(state, changed)


def upload_plan(ws: Workspace, text: str, filename: str, actor: Actor) -> Saved:
    """A plan file uploaded on the page: loaded exactly as ``rtexport plan load FILE`` loads it."""
    state, changed = load_plan(ws, text, filename or "uploaded plan file", actor)
    return Saved(state, changed)


def clone(ws: Workspace, plan_id: str, new_id: str, label: str, actor: Actor) -> PlanState:
    """An unapproved copy of the plan (``rtexport plan clone``), with a new label if one is given."""
    return clone_plan(ws, plan_id, new_id.strip(), actor, label.strip() or None)


def plan_file(state: PlanState) -> str:
    """The current revision's plan file as stored: ``plan load`` of it gives that revision again (no new UIDs)."""
    return state.revision.toml


def plan_data(plan: Plan) -> dict[str, Any]:
    """The plan as the page edits it: the plan file's keys."""
    data: dict[str, Any] = plan.model_dump(by_alias=True, exclude_none=True, mode="json")
    data.pop("format", None)
    return data


def choices(ws: Workspace, course: Course) -> dict[str, Any]:
    """What the plan form offers: the course's structures, and the site's machines (energies, applicators), CT
    curves and materials; ``unavailable`` says why beams cannot be planned (no machine or CT curve)."""
    status = site_status(ws)
    site = status.site
    structures = [{"name": s.name, "type": s.interpreted_type} for s in course.structures]
    external = course.external.name if course.external is not None else ""
    if site is None:
        return {"structures": structures, "external": external, "machines": [], "ct_curves": [], "materials": [],
                "unavailable": list(status.problems)}  # fmt: skip
    unavailable = []
    if not site.machines:
        unavailable.append("the site configuration has no machine: beams cannot be planned")
    if not site.ct_curves:
        unavailable.append("the site configuration has no CT curve: dose cannot be computed")
    machines = [
        {
            "name": m.name,
            "energies": [e.energy_mev for e in m.energies],
            "applicators": [a.id for a in m.applicators],
            "ssd_mm": m.source_axis_distance_mm,
        }
        for m in site.machines
    ]
    return {
        "structures": structures,
        "external": external,
        "machines": machines,
        "ct_curves": [c.name for c in site.ct_curves],
        "materials": [m.name for m in site.materials],
        "unavailable": unavailable,
    }


def require_planning(ws: Workspace) -> None:
    """Refuse to plan beams on a site without a machine or CT curve (the page disables the Beams block)."""
    status = site_status(ws)
    site = status.require()
    missing = [what for what, have in (("machine", site.machines), ("CT curve", site.ct_curves)) if not have]
    if missing:
        raise ConfigError(f"the site configuration has no {' and no '.join(missing)}: plans cannot be made")


def history(ws: Workspace, plan_id: str) -> list[dict[str, Any]]:
    """Who made each revision, when, from where, and what it changed (from the audit), newest first."""
    rows = []
    for entry in ws.audit_log.entries(plan_id):
        if entry.get("action") not in ("plan-load", "plan-clone") or entry.get("outcome") != "ok":
            continue
        detail = entry.get("detail") or {}
        rows.append(
            {
                "revision": entry.get("revision"),
                "by": entry.get("actor"),
                "via": entry.get("via"),
                "at": entry.get("at"),
                "action": entry.get("action"),
                "source": detail.get("source", ""),
                "changes": list(detail.get("changes", [])),
            }
        )
    return rows[::-1]
