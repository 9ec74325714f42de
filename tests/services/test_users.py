"""Who may add users, and who the audit says acted."""

from __future__ import annotations

import pytest

from rtexport.errors import AuthError, InputError
from rtexport.model.people import Actor, Role
from rtexport.services.users import add_user, set_role, users
from rtexport.workspace import Workspace
from tests.conftest import PHYS

SOMEONE = Actor(None, "mallory-os", "cli")  # an OS account that has not proven to be any rtexport user


def test_the_first_user_is_a_physicist_who_needs_no_consent(workspace: Workspace) -> None:
    with pytest.raises(AuthError, match=r"the first user of a workspace must be a physicist"):
        add_user(workspace, "pat", Role.PLANNER, "planner-pass-1", SOMEONE)
    phil = add_user(workspace, PHYS[0], Role.PHYSICIST, PHYS[1], SOMEONE, full_name="Physicist^Phil")
    assert phil.qualified and phil.person_name == "Physicist^Phil"
    (entry,) = workspace.audit_log.entries()
    assert entry["action"] == "user-add" and entry["detail"]["first"] is True
    assert entry["actor"] == "(mallory-os)" and entry["os_user"] == "mallory-os"  # no rtexport user acted


def test_later_users_need_a_physicists_password(workspace: Workspace) -> None:
    add_user(workspace, PHYS[0], Role.PHYSICIST, PHYS[1], SOMEONE)
    with pytest.raises(AuthError, match=r"needs a physicist's consent"):
        add_user(workspace, "mallory", Role.PHYSICIST, "mallory-pass-1", SOMEONE)
    with pytest.raises(AuthError, match=r"unknown user or wrong password"):
        add_user(workspace, "mallory", Role.PHYSICIST, "mallory-pass-1", SOMEONE, consent=(PHYS[0], "guess-guess"))
    add_user(workspace, "pat", Role.PLANNER, "planner-pass-1", SOMEONE, consent=PHYS)
    with pytest.raises(AuthError, match=r"pat is a planner; only a physicist may user-add"):
        add_user(workspace, "mallory", Role.PHYSICIST, "mallory-pass-1", SOMEONE, consent=("pat", "planner-pass-1"))
    assert [u.name for u in users(workspace)] == ["pat", "phil"]
    added = [e for e in workspace.audit_log.entries() if e["action"] == "user-add"]
    assert [(e["actor"], e["outcome"], e["os_user"]) for e in added] == [
        ("(mallory-os)", "ok", "mallory-os"),
        ("(mallory-os)", "refused", "mallory-os"),  # the wrong password, tried in phil's name: proves nobody
        ("phil", "ok", "mallory-os"),  # phil consented to pat
        ("pat", "refused", "mallory-os"),  # a planner cannot consent
    ]
    assert "guess-guess" not in str(workspace.audit_log.entries())


def test_the_last_physicist_keeps_the_role(workspace: Workspace) -> None:
    add_user(workspace, PHYS[0], Role.PHYSICIST, PHYS[1], SOMEONE)
    with pytest.raises(AuthError, match=r"phil is the only physicist"):
        set_role(workspace, "phil", Role.PLANNER, SOMEONE, PHYS)
    add_user(workspace, "pat", Role.PLANNER, "planner-pass-1", SOMEONE, consent=PHYS)
    assert set_role(workspace, "pat", Role.PHYSICIST, SOMEONE, PHYS).qualified
    assert [e["actor"] for e in workspace.audit_log.entries() if e["action"] == "user-role"] == ["phil"]


@pytest.mark.parametrize(
    ("name", "password", "full_name", "message"),
    [
        ("a b", "long-enough-1", "", r"user name 'a b'"),
        ("ok", "short", "", r"at least 8 characters"),
        ("ok", "long-enough-1", "Curie", r"write it as Family\^Given"),
        ("ok", "long-enough-1", "Curie\\Marie", r"backslash"),
        ("ok", "long-enough-1", "Cu\nrie^Marie", r"control"),
        ("ok", "long-enough-1", "😀" * 63 + "^X", r"is 65 characters; DICOM PN allows at most 64 per component group"),
    ],
)
def test_bad_user_records_are_refused(
    workspace: Workspace, name: str, password: str, full_name: str, message: str
) -> None:
    with pytest.raises((AuthError, InputError), match=message):
        add_user(workspace, name, Role.PHYSICIST, password, SOMEONE, full_name=full_name)
    assert users(workspace) == []
