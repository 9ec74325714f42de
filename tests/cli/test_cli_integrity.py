"""The command line on rows changed behind rtexport's back and on stale dose: `plan list` says it, `verify` names
the row, `dose-accept` takes a physicist's password."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

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
    assert "2 of 5 sealed record(s) were changed outside rtexport" in r.stderr
    listing = run_rtexport(home, "plan", "list")
    assert "plan CW-E1: record changed outside rtexport" in listing.stderr
