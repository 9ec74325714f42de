"""One password throttle for the command line and the page, kept in the workspace: it outlives the process, a
lockout earned on one front end holds on the other, refused attempts are audited with the acting account (the
claimed user in the detail), and a role change is a command that takes a physicist's password."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rtexport.errors import PasswordError, ThrottledError
from rtexport.model.people import Actor, Role
from rtexport.services import access
from rtexport.services.users import authenticate, users
from rtexport.web.app import create_app
from rtexport.workspace import Workspace
from tests.cli.shell import run_rtexport
from tests.conftest import PHYS, PLANNER, add_demo_users

SHELL = Actor(None, "alice-os", "cli")  # an OS account at a terminal, claiming to be a physicist


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def guess(ws: Workspace, clock: Clock, password: str = "wrong-guess") -> type[Exception] | None:
    try:
        authenticate(ws, PHYS[0], password, "approve", SHELL, clock=clock)
    except (ThrottledError, PasswordError) as e:
        return type(e)
    return None


def test_five_wrong_passwords_lock_the_user_for_a_while_even_after_a_restart(workspace: Workspace) -> None:
    add_demo_users(workspace)
    clock = Clock()
    assert [guess(workspace, clock) for _ in range(access.PER_USER)] == [PasswordError] * access.PER_USER
    assert guess(workspace, clock, PHYS[1]) is ThrottledError  # the right password, not even checked
    again = Workspace.open(workspace.home)  # another process, later
    try:
        assert guess(again, clock, PHYS[1]) is ThrottledError
        clock.t += access.LOCKOUT_S + 1
        assert guess(again, clock, PHYS[1]) is None
    finally:
        again.close()
    records = workspace.audit_log.entries()
    refused = [e for e in records if e["action"] == "approve" and e["outcome"] == "refused"]
    assert refused and all(e["actor"] == "(alice-os)" and e["detail"]["user"] == "phil" for e in refused)
    assert all(e["detail"]["client"] == "account alice-os" for e in refused)
    (lockout,) = [e for e in records if e["action"] == "lockout"]
    assert lockout["detail"]["locked"] == "user phil" and lockout["actor"] == "(alice-os)"
    assert "too many failed passwords for user 'phil'" in refused[-2]["detail"]["reason"]


def test_a_lockout_earned_at_the_terminal_holds_on_the_page(workspace: Workspace) -> None:
    add_demo_users(workspace)
    for _ in range(access.PER_USER):
        with pytest.raises(PasswordError):
            authenticate(workspace, PLANNER[0], "wrong-guess", "export", SHELL)
    with TestClient(create_app(workspace.home, secret="s"), follow_redirects=False) as web:
        form = web.get("/login").text
        token = form.split('name="csrf" value="')[1].split('"')[0]
        rsp = web.post("/login", data={"csrf": token, "name": PLANNER[0], "password": PLANNER[1]})
    assert rsp.status_code == 429 and "too many failed passwords" in rsp.text


def test_a_role_is_changed_by_a_command_with_a_physicists_password(workspace: Workspace, tmp_path: Path) -> None:
    add_demo_users(workspace)
    home = workspace.home
    args = ("user", "role", PLANNER[0], "--role", "physicist", "--by", PHYS[0], "--password-stdin")
    wrong = run_rtexport(home, *args, stdin="not-phils-password\n")
    assert wrong.returncode == 1 and "wrong password" in wrong.stderr
    r = run_rtexport(home, *args, stdin=PHYS[1] + "\n")
    assert r.returncode == 0, r.stderr
    assert "user pat is now a physicist (changed by phil)" in r.stdout
    assert {u.name: u.role for u in users(workspace)}["pat"] is Role.PHYSICIST
    changed = [e for e in workspace.audit_log.entries() if e["action"] == "user-role"]
    assert [(e["outcome"], e["actor"]) for e in changed][-1] == ("ok", "phil")
    detail = changed[-1]["detail"]
    assert {k: v for k, v in detail.items() if k != "sealed_rows"} == {
        "user": "pat",
        "role": "physicist",
        "was": "planner",
    }
    assert detail["sealed_rows"]["users:pat"]["=role"] == "physicist"  # the row as written, sealed in the audit
