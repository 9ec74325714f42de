"""Logging in and out, and the signatures a physicist gives on the page (authorize export, approve): the
services check the password (throttled, shared with the command line) and audit every refusal."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from rtexport.errors import AuthError, PasswordError, PlanError, ThrottledError
from rtexport.model.people import Actor, User
from rtexport.services import approval
from rtexport.services.users import log_in as check_login
from rtexport.web.auth import client_of, log_in, log_out
from rtexport.web.common import WS, Csrf, UserDep, actor_of, form_message, known_plan, page

router = APIRouter()


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return page(request, "login.html", next=next)


@router.post("/login", dependencies=[Csrf])
def login(
    request: Request,
    ws: WS,
    name: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
) -> Response:
    try:
        user = check_login(ws, name, password, Actor.here("web"), client_of(request), request.app.state.clock)
    except ThrottledError as e:
        refusal = str(e).removeprefix("login: ")
        return page(request, "login.html", 429, next=next, error=f"Refused: {refusal}.", name=name)
    except PasswordError:
        return page(request, "login.html", 401, next=next, error="Unknown user or wrong password.", name=name)
    log_in(request, user)
    safe = next if next.startswith("/") and not next.startswith("//") else "/"
    return RedirectResponse(safe, status_code=303)


@router.post("/logout", dependencies=[Csrf])
def logout(request: Request) -> Response:
    log_out(request)
    return RedirectResponse("/login", status_code=303)


def _sign(
    request: Request,
    ws: WS,
    user: User,
    plan_id: str,
    action: str,
    credentials: tuple[str, str],
    ack: tuple[bool, bool] = (False, False),  # the MU check, the plan's warnings
) -> Response:
    known_plan(ws, plan_id)
    place = "authorization" if action == "authorize" else "approval"
    where = approval.Where(client_of(request), request.app.state.clock)
    name = credentials[0]
    try:
        if action == "authorize":
            approval.authorize(ws, plan_id, credentials, actor_of(user), where)
            form_message(request, action, "ok", f"Export of plan {plan_id} authorized by {name}.")
        else:
            signed = approval.approve(
                ws,
                plan_id,
                credentials,
                actor_of(user),
                acknowledge_mu_check=ack[0],
                acknowledge_warnings=ack[1],
                where=where,
            )
            text = f"Plan {plan_id} approved by {name}."
            form_message(request, action, "ok", f"{text} {signed.warning}" if signed.warning else text)
    except (AuthError, PlanError) as e:
        form_message(request, action, "error", str(e))
    return RedirectResponse(f"/plans/{plan_id}#{place}", status_code=303)


@router.post("/plans/{plan_id}/authorize", dependencies=[Csrf])
def authorize(
    request: Request,
    ws: WS,
    user: UserDep,
    plan_id: str,
    name: Annotated[str, Form()],
    password: Annotated[str, Form()],
) -> Response:
    return _sign(request, ws, user, plan_id, "authorize", (name.strip(), password))


@router.post("/plans/{plan_id}/approve", dependencies=[Csrf])
def approve(
    request: Request,
    ws: WS,
    user: UserDep,
    plan_id: str,
    name: Annotated[str, Form()],
    password: Annotated[str, Form()],
    acknowledge_mu_check: Annotated[bool, Form()] = False,
    acknowledge_warnings: Annotated[bool, Form()] = False,
) -> Response:
    ack = (acknowledge_mu_check, acknowledge_warnings)
    return _sign(request, ws, user, plan_id, "approve", (name.strip(), password), ack)
