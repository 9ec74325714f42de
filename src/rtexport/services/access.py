"""Who may try a password, and logging in: one throttle for the command line and the web page, kept in the
workspace database (a lockout survives a restart), used by every password check (log-in, approve, authorize,
user add and role, export --user).

After :data:`PER_USER` failed passwords for one user name, or :data:`PER_CLIENT` from one client, within
:data:`WINDOW_S`, that user (from anywhere) or that client (for anyone) is locked out for :data:`LOCKOUT_S`:
attempts are refused without their password being checked (OWASP ASVS 2.2.1). A success clears the user's count,
not the client's. Refusals are audited with the acting account (the operating-system account on the command
line, the logged-in user on the page) as the actor and the claimed user name in the detail.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from rtexport.errors import ThrottledError
from rtexport.model.people import Actor
from rtexport.workspace import Workspace

PER_USER = 5
PER_CLIENT = 20
WINDOW_S = 900.0
LOCKOUT_S = 900.0

Clock = Callable[[], float]


def cli_client(actor: Actor) -> str:
    """The client a command-line password comes from: the operating-system account."""
    return f"account {actor.os_user}"


def _keys(user: str, client: str) -> tuple[tuple[str, str], tuple[str, str]]:
    return ("user", user), ("client", client)


def locked(ws: Workspace, user: str, client: str, clock: Clock = time.time) -> str | None:
    """Why an attempt for ``user`` from ``client`` is refused now, or None."""
    now = clock()
    for kind, value in _keys(user, client):
        _, until = ws.throttle.get(f"{kind} {value}")
        if until > now:
            minutes = math.ceil((until - now) / 60)
            who = f"for user {user!r}" if kind == "user" else "from this computer"
            return f"too many failed passwords {who}; try again in {minutes} minute(s)"
    return None


def failed(ws: Workspace, user: str, client: str, clock: Clock = time.time) -> list[str]:
    """Count a failed password (in one transaction); the lockouts it starts (``"user NAME"``, ``"client X"``)."""
    now = clock()
    started: list[str] = []
    limits = {"user": PER_USER, "client": PER_CLIENT}
    with ws.transaction():
        for kind, value in _keys(user, client):
            key = f"{kind} {value}"
            times, until = ws.throttle.get(key)
            times = [t for t in times if t > now - WINDOW_S] + [now]
            if len(times) >= limits[kind] and until <= now:
                until, times = now + LOCKOUT_S, []
                started.append(key)
            ws.throttle.put(key, times, until)
        ws.throttle.forget_before(now - WINDOW_S)
    return started


def succeeded(ws: Workspace, user: str) -> None:
    with ws.transaction():
        ws.throttle.clear(f"user {user}")


def guard(ws: Workspace, actor: Actor, action: str, user: str, client: str, clock: Clock = time.time) -> None:
    """Refuse (audited, :class:`~rtexport.errors.ThrottledError`) an attempt while ``user`` or ``client`` is locked."""
    refusal = locked(ws, user, client, clock)
    if refusal:
        ws.audit(actor, action, "refused", reason=refusal, user=user, client=client)
        raise ThrottledError(f"{action}: {refusal}")


def count_failure(ws: Workspace, actor: Actor, action: str, user: str, client: str, clock: Clock = time.time) -> None:
    """Count a wrong password, and audit each lockout it starts."""
    for lockout in failed(ws, user, client, clock):
        ws.audit(
            actor,
            "lockout",
            "locked",
            locked=lockout,
            after=action,
            user=user,
            client=client,
            minutes=round(LOCKOUT_S / 60),
        )
