"""The command line on rows changed behind rtexport's back and on stale dose: `plan list` says it, `verify` names
the row, `dose-accept` takes a physicist's password; wrong passwords at the terminal count in the stored throttle
the page uses, audited with the operating-system account."""

from __future__ import annotations

import getpass
import sqlite3
from contextlib import closing
from typing import Any

from fastapi.testclient import TestClient

from rtexport.services import access
from rtexport.web.app import create_app
from rtexport.workspace import Workspace
from tests.cli.shell import run_rtexport
from tests.conftest import PHYS, PLANNER, edit_site_toml


def _calibrate_16_mev(site: dict[str, Any]) -> None:
    for energy in site["machines"][0]["energies"]:
        if energy["energy_mev"] == 16:
            energy["calibration_cgy_per_mu"] = 1.3


def test_stale_dose_is_listed_and_accepted_by_a_physicist(planned: Workspace) -> None:
    home = planned.home
    planned.close()
    edit_site_toml(home, _calibrate_16_mev)
    listing = run_rtexport(home, "plan", "list")
    assert listing.returncode == 0 and "STALE" in listing.stdout
    shown = run_rtexport(home, "plan", "show", "CW-E1", columns=400).stdout
    assert "dose: STALE, computed" in shown and "warning: dose stale: beam data of DemoLinac 16 MeV" in shown
    refused = run_rtexport(home, "approve", "CW-E1", "--user", PHYS[0], "--password-stdin", stdin=PHYS[1] + "\n")
    assert refused.returncode == 1 and "its dose is stale" in refused.stderr
    assert "beam data of DemoLinac 16 MeV changed in site.toml" in refused.stderr
    planner = run_rtexport(home, "dose-accept", "CW-E1", "--user", PLANNER[0], "--password-stdin", stdin=PLANNER[1])
    assert planner.returncode == 1 and "only a physicist" in planner.stderr
    ok = run_rtexport(home, "dose-accept", "CW-E1", "--user", PHYS[0], "--password-stdin", stdin=PHYS[1] + "\n")
    assert ok.returncode == 0, ok.stderr
    assert "accepted: beam data of DemoLinac 16 MeV changed" in ok.stdout and "is current" in ok.stdout
    assert "current" in run_rtexport(home, "plan", "list").stdout


def test_verify_and_plan_list_name_a_role_changed_with_sql(planned: Workspace) -> None:
    home = planned.home
    planned.close()
    with closing(sqlite3.connect(home / "rtexport.db")) as db, db:
        db.execute("UPDATE revisions SET toml = replace(toml, 'gantry_deg = 20', 'gantry_deg = 40')")
        db.execute("UPDATE users SET role = 'physicist' WHERE name = 'pat'")
    r = run_rtexport(home, "verify")
    assert r.returncode == 1
    assert "CHANGED: user pat (table users) was changed behind rtexport's back (role is 'physicist'" in r.stdout
    assert "CHANGED: the plan file of plan CW-E1 revision 1 (table revisions)" in r.stdout
    assert "2 of 12 sealed record(s) were changed outside rtexport" in r.stderr
    listing = run_rtexport(home, "plan", "list")
    assert "plan CW-E1: record changed outside rtexport" in listing.stderr


def test_wrong_passwords_at_the_terminal_lock_the_user_here_and_on_the_page(planned: Workspace) -> None:
    home = planned.home
    args = ("approve", "CW-E1", "--user", PHYS[0], "--acknowledge-mu-check", "--password-stdin")
    for _ in range(access.PER_USER):
        wrong = run_rtexport(home, *args, stdin="a-wrong-guess\n")
        assert wrong.returncode == 1 and "wrong password" in wrong.stderr
    right = run_rtexport(home, *args, stdin=PHYS[1] + "\n")
    assert right.returncode == 1 and "too many failed passwords for user 'phil'" in right.stderr
    refused = [e for e in planned.audit_log.entries() if e["action"] == "approve" and e["outcome"] == "refused"]
    os_user = getpass.getuser()
    assert len(refused) == access.PER_USER + 1
    assert all(e["actor"] == f"({os_user})" and e["os_user"] == os_user for e in refused)
    assert all(e["detail"]["user"] == "phil" for e in refused)
    with TestClient(create_app(home, secret="s"), follow_redirects=False) as web:
        token = web.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
        rsp = web.post("/login", data={"csrf": token, "name": PHYS[0], "password": PHYS[1]})
    assert rsp.status_code == 429 and "too many failed passwords" in rsp.text
