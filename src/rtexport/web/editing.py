"""The Course, Plan, Beams and Dose blocks: a plan made and changed on the page, through the door of ``plan load``
(:mod:`rtexport.services.editing`), beam help (:mod:`rtexport.services.beamtools`), and dose as a background job
the page polls. Answers are JSON; a refused plan answers 422 with each problem keyed by its field."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Body, File, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from rtexport.errors import ConfigError, PlanError
from rtexport.model.course import Course
from rtexport.model.people import User
from rtexport.services import beamtools, editing
from rtexport.services.courses import courses as all_courses
from rtexport.services.dose import compute_dose
from rtexport.services.workspaces import Workspace, open_workspace
from rtexport.web.common import WS, Csrf, UserDep, actor_of, error, known_plan, page, take_form_message
from rtexport.web.jobs import Job, Jobs

router = APIRouter()
MAX_PLAN_FILE = 1_000_000  # bytes: a plan file is a few kB


def refused(e: PlanError | ConfigError, status: int = 422) -> JSONResponse:
    """A refused plan: the message, and each problem with the field it concerns."""
    if isinstance(e, ConfigError):
        return JSONResponse({"error": str(e).split("\n")[0], "problems": [{"field": "", "message": p}
                             for p in e.problems]}, status_code=409)  # fmt: skip
    problems = [asdict(p) for p in editing.problems_of(e)]
    approved = "approved and read-only" in str(e)
    head = str(e).split("\n", 1)[0]
    return JSONResponse(
        {"error": head, "problems": problems, "approved": approved}, status_code=409 if approved else status
    )


# The JSON body as an object (FastAPI parses it; the handlers stay plain functions, run on the thread pool, so a
# slow setup never holds up the other requests).
JsonBody = Annotated[dict[str, Any], Body()]


def _plan_of(body: dict[str, Any]) -> dict[str, Any]:
    plan = body.get("plan")
    if not isinstance(plan, dict):
        raise HTTPException(400, "the request must carry the plan as an object under 'plan'")
    return plan


def _course(ws: Workspace, course_id: str) -> Course:
    found = next((c for c in all_courses(ws) if c.id == course_id), None)
    if found is None:
        raise HTTPException(404, f"no course {course_id!r} in this workspace")
    return found


@router.get("/plans/{plan_id}/edit.json")
def plan_for_editing(ws: WS, user: UserDep, plan_id: str) -> JSONResponse:
    state = known_plan(ws, plan_id)
    course = ws.course(state.plan.course)
    return JSONResponse(
        {
            "plan": editing.plan_data(state.plan),
            "revision": state.revision.number,
            "approved": state.approved,
            "dose": state.dose is not None,
            "choices": editing.choices(ws, course),
            "history": editing.history(ws, plan_id),
        }
    )


@router.get("/courses/{course_id}/new.json")
def new_plan_form(ws: WS, user: UserDep, course_id: str) -> JSONResponse:
    """A new plan's starting values: the course's External, the site's first machine and CT curve, no beam."""
    course = _course(ws, course_id)
    choices = editing.choices(ws, course)
    first = choices["machines"][0]["name"] if choices["machines"] else ""
    plan = {
        "id": "", "label": "", "course": course.id, "machine": first,
        "ct_curve": choices["ct_curves"][0] if choices["ct_curves"] else "", "external": choices["external"],
        "fractions": 1, "prescription_gy": 2.0, "dose_grid_mm": 2.5, "override": [], "beam": [],
    }  # fmt: skip
    return JSONResponse({"plan": plan, "revision": 0, "approved": False, "dose": False, "choices": choices})


@router.get("/courses/{course_id}/plans/new", response_class=HTMLResponse)
def new_plan_page(request: Request, ws: WS, user: UserDep, course_id: str) -> HTMLResponse:
    course = _course(ws, course_id)
    return page(request, "plan_new.html", course=course, message=take_form_message(request))


@router.post("/plans", dependencies=[Csrf])
def create(ws: WS, user: UserDep, body: JsonBody) -> JSONResponse:
    plan = _plan_of(body)
    try:
        editing.require_planning(ws)
        saved = editing.save_plan(ws, plan, actor_of(user))
    except (PlanError, ConfigError) as e:
        return refused(e)
    pid = saved.state.plan.id
    return JSONResponse({"id": pid, "revision": saved.state.revision.number, "url": f"/plans/{pid}"}, status_code=201)


@router.post("/plans/{plan_id}/save", dependencies=[Csrf])
def save(ws: WS, user: UserDep, plan_id: str, body: JsonBody) -> JSONResponse:
    known_plan(ws, plan_id)
    plan = _plan_of(body)
    try:
        editing.require_planning(ws)
        saved = editing.save_plan(ws, plan, actor_of(user), plan_id=plan_id)
    except (PlanError, ConfigError) as e:
        return refused(e)
    number = saved.state.revision.number
    message = f"Saved as revision {number}." if saved.changed else f"Nothing changed: still revision {number}."
    return JSONResponse({"id": plan_id, "revision": number, "changed": saved.changed, "message": message})


@router.post("/plans/{plan_id}/clone", dependencies=[Csrf])
def clone(ws: WS, user: UserDep, plan_id: str, body: JsonBody) -> JSONResponse:
    known_plan(ws, plan_id)
    new_id, label = str(body.get("new_id", "")), str(body.get("label", ""))
    try:
        state = editing.clone(ws, plan_id, new_id, label, actor_of(user))
    except PlanError as e:
        return refused(e)
    return JSONResponse({"id": state.plan.id, "url": f"/plans/{state.plan.id}"}, status_code=201)


@router.get("/plans/{plan_id}/plan.toml")
def download(ws: WS, user: UserDep, plan_id: str) -> Response:
    state = known_plan(ws, plan_id)
    name = f"plan-{plan_id}-r{state.revision.number}.toml"
    return PlainTextResponse(
        editing.plan_file(state),
        media_type="application/toml",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post("/plans/upload", dependencies=[Csrf])
def upload(ws: WS, user: UserDep, file: Annotated[UploadFile, File()]) -> JSONResponse:
    data = file.file.read(MAX_PLAN_FILE + 1)
    if len(data) > MAX_PLAN_FILE:
        return error(413, f"{file.filename}: larger than {MAX_PLAN_FILE // 1000} kB; a plan file is a few kB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return error(422, f"{file.filename}: not UTF-8 text; a plan file is TOML")
    try:
        saved = editing.upload_plan(ws, text, file.filename or "", actor_of(user))
    except PlanError as e:
        return refused(e)
    number, pid = saved.state.revision.number, saved.state.plan.id
    message = f"Loaded as revision {number} of {pid}." if saved.changed else f"{pid} unchanged: revision {number}."
    return JSONResponse({"id": pid, "revision": number, "changed": saved.changed, "message": message,
                         "url": f"/plans/{pid}"})  # fmt: skip


@router.get("/plans/{plan_id}/history")
def history(ws: WS, user: UserDep, plan_id: str) -> JSONResponse:
    known_plan(ws, plan_id)
    return JSONResponse({"revisions": editing.history(ws, plan_id)})


def _beam_request(body: dict[str, Any]) -> tuple[dict[str, Any], int, str | None]:
    index = body.get("index")
    if not isinstance(index, int):
        raise HTTPException(400, "give the beam's index (0 for the first beam)")
    target = body.get("target")
    return _plan_of(body), index, str(target) if target else None


@router.post("/beams/preview", dependencies=[Csrf])
def beam_preview(ws: WS, user: UserDep, body: JsonBody) -> JSONResponse:
    plan, index, target = _beam_request(body)
    try:
        return JSONResponse(asdict(beamtools.preview(ws, plan, index, target)))
    except PlanError as e:
        return refused(e)


@router.post("/beams/cutout", dependencies=[Csrf])
def beam_cutout(ws: WS, user: UserDep, body: JsonBody) -> JSONResponse:
    plan, index, target = _beam_request(body)
    margin = body.get("margin_mm", 0)
    if not target or not isinstance(margin, int | float):
        raise HTTPException(400, "give the target structure and the margin in mm")
    try:
        return JSONResponse({"cutout_mm": beamtools.cutout_from_target(ws, plan, index, target, float(margin))})
    except PlanError as e:
        return refused(e)


@router.post("/beams/energy", dependencies=[Csrf])
def beam_energy(ws: WS, user: UserDep, body: JsonBody) -> JSONResponse:
    plan, index, target = _beam_request(body)
    try:
        found = beamtools.suggest_energy(ws, plan, index, target)
    except PlanError as e:
        return refused(e)
    r90 = [{"energy_mev": e, "r90_mm": r} for e, r in found.r90_mm.items()]
    return JSONResponse({"energy_mev": found.energy_mev, "depth_mm": found.depth_mm, "r90": r90,
                         "message": found.message})  # fmt: skip


def _dose_work(request: Request, plan_id: str, user: User) -> Callable[[Job], None]:
    home, actor = request.app.state.home, actor_of(user)

    def work(job: Job) -> None:
        job.begin("computing", 1)
        with open_workspace(home) as ws:
            result = compute_dose(ws, plan_id, actor)
        beams = [{"beam": b.beam_name, "mu": round(b.mu_per_fraction, 1)} for b in result.dose.beams]
        check = result.mu_check.as_dict() if result.mu_check is not None else None
        message = f"Dose computed for revision {result.state.revision.number}: maximum {result.max_gy:.2f} Gy."
        job.finish(True, message, [*beams, *([{"mu_check": check}] if check else [])], result.warnings)

    return work


@router.post("/plans/{plan_id}/dose", dependencies=[Csrf])
def dose(request: Request, ws: WS, user: UserDep, plan_id: str) -> JSONResponse:
    state = known_plan(ws, plan_id)
    if state.approved:
        return error(409, f"plan {plan_id} is approved: its dose is fixed; clone it to change anything")
    jobs: Jobs = request.app.state.jobs
    job = jobs.start(user.name, plan_id, "dose", "", _dose_work(request, plan_id, user))
    return JSONResponse({"job": job.id}, status_code=202)
