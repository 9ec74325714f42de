"""Users and who may do what.

The first user of a workspace is a physicist and needs no one's consent (there is no one yet); after that, adding a
user or changing a role needs a physicist's name and password, and the audit records that physicist as the actor
(with the operating-system account that ran the command). A refusal is audited too; a password never is.
"""

from __future__ import annotations

import re
import time

from rtexport.errors import AuthError, InputError, IntegrityError, PasswordError
from rtexport.model.people import Actor, Role, User
from rtexport.model.text import check_person_name
from rtexport.services import access
from rtexport.workspace import Workspace
from rtexport.workspace.passwords import hash_password, verify_password

MIN_PASSWORD_LENGTH = 8
_LOGIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")

Credentials = tuple[str, str]  # (user name, password)


def authenticate(
    ws: Workspace,
    name: str,
    password: str,
    action: str,
    actor: Actor,
    plan_id: str | None = None,
    revision: int | None = None,
    *,
    client: str | None = None,
    clock: access.Clock = time.time,
) -> User:
    """The user, if the password is theirs. Throttled (:mod:`rtexport.services.access`): while the user or the
    client (default: the operating-system account) is locked out, :class:`ThrottledError` without checking; a
    wrong password is counted, audited (``actor`` as the actor, ``name`` in the detail) and raised as
    :class:`PasswordError`."""
    client = client or access.cli_client(actor)
    access.guard(ws, actor, action, name, client, clock)
    found = ws.users.get(name)
    if found is None or not verify_password(password, found[1]):
        reason = "unknown user or wrong password"
        ws.audit(actor, action, "refused", plan_id, revision, reason=reason, user=name, client=client)
        access.count_failure(ws, actor, action, name, client, clock)
        raise PasswordError(f"{action}: unknown user or wrong password for {name!r}")
    access.succeeded(ws, name)
    changed = ws.user_integrity(name)
    if changed:
        ws.audit(actor, action, "refused", plan_id, revision, reason="user row changed", user=name, findings=changed)
        raise IntegrityError(
            f"{action}: refused, the record of user {name} was changed outside rtexport; a physicist restores it "
            "from a backup, or sets it again with 'rtexport user role'",
            changed,
        )
    return found[0]


def qualified(
    ws: Workspace,
    credentials: Credentials,
    action: str,
    actor: Actor,
    plan_id: str | None = None,
    revision: int | None = None,
    *,
    client: str | None = None,
    clock: access.Clock = time.time,
) -> User:
    """A physicist proven by name and password (throttled; refusals audited)."""
    name, password = credentials
    who = authenticate(ws, name, password, action, actor, plan_id, revision, client=client, clock=clock)
    if not who.qualified:
        reason = f"role {who.role.value} is not qualified"
        ws.audit(actor.as_user(name), action, "refused", plan_id, revision, reason=reason)
        raise AuthError(f"{action}: {name} is a {who.role.value}; only a physicist may {action}")
    return who


def _check_new_user(name: str, password: str, full_name: str) -> None:
    if not _LOGIN.match(name):
        raise InputError(
            f"user name {name!r}: use 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if full_name:
        problem = check_person_name(full_name)
        if problem:
            raise InputError(f"full name {full_name!r}: {problem}")


def add_user(
    ws: Workspace,
    name: str,
    role: Role,
    password: str,
    actor: Actor,
    *,
    full_name: str = "",
    consent: Credentials | None = None,
) -> User:
    """Add a user. The workspace's first user must be a physicist; every later one needs ``consent``: the name and
    password of a physicist, who is recorded as the one who added the user."""
    _check_new_user(name, password, full_name)
    user = User(name, role, full_name)
    first = ws.users.count(Role.PHYSICIST) == 0
    if first and role is not Role.PHYSICIST:
        raise AuthError(
            "the first user of a workspace must be a physicist (who then consents to every other user): "
            "add one with 'rtexport user add NAME --role physicist --name \"Family^Given\"'"
        )
    by = actor
    if not first:
        if consent is None:
            raise AuthError(
                f"adding user {name!r} needs a physicist's consent: give --by NAME (a physicist) and their password"
            )
        by = actor.as_user(qualified(ws, consent, "user-add", actor).name)
    with ws.transaction():
        if ws.users.exists(name):
            raise AuthError(f"user {name!r} exists already")
        if first and ws.users.count(Role.PHYSICIST) > 0:  # another process added the first physicist meanwhile
            raise AuthError("a physicist was added meanwhile by another command: add this user with their consent")
        ws.users.add(user, hash_password(password), ws.now())
        ws.audit(by, "user-add", "ok", user=name, role=role.value, full_name=full_name, first=first)
    return user


def set_role(ws: Workspace, name: str, role: Role, actor: Actor, consent: Credentials) -> User:
    """Change a user's role, with a physicist's consent; the last physicist cannot lose the role."""
    physicist = qualified(ws, consent, "user-role", actor)
    with ws.transaction():
        found = ws.users.get(name)
        if found is None:
            raise AuthError(f"no user {name!r}")
        user = found[0]
        if user.role is Role.PHYSICIST and role is not Role.PHYSICIST and ws.users.count(Role.PHYSICIST) == 1:
            raise AuthError(f"{name} is the only physicist; add another physicist first")
        ws.users.set_role(name, role)
        ws.audit(actor.as_user(physicist.name), "user-role", "ok", user=name, role=role.value, was=user.role.value)
    return User(user.name, role, user.full_name)


def users(ws: Workspace) -> list[User]:
    return ws.users.all()


def log_in(ws: Workspace, name: str, password: str, actor: Actor, client: str, clock: access.Clock = time.time) -> User:
    """Log ``name`` in from ``client`` (throttled, refusals audited); the login is audited as the user."""
    user = authenticate(ws, name, password, "login", actor, client=client, clock=clock)
    ws.audit(actor.as_user(user.name), "login", "ok", client=client)
    return user
