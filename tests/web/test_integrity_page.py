"""The page on stale dose and records changed outside rtexport: the plan list says it, the plan page warns, and
approval from the page asks for the plan's warnings to be acknowledged."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.web.conftest import PHYSICIST, PLAN, PLANNER, edit_site, log_in


def _calibrate_16_mev(site: dict[str, Any]) -> None:
    for energy in site["machines"][0]["energies"]:
        if energy["energy_mev"] == 16:
            energy["calibration_cgy_per_mu"] = 1.3


def test_stale_dose_is_shown_and_approval_from_the_page_is_refused(client: TestClient, home: Path) -> None:
    edit_site(home, _calibrate_16_mev)
    token = log_in(client, PHYSICIST)
    assert '<span class="badge warn">stale</span>' in client.get("/").text
    page = client.get(f"/plans/{PLAN}").text
    assert "dose stale: beam data of DemoLinac 16 MeV changed in site.toml" in page
    assert 'name="acknowledge_warnings"' in page
    form = {"csrf": token, "name": PHYSICIST[0], "password": PHYSICIST[1], "acknowledge_mu_check": "true"}
    rsp = client.post(f"/plans/{PLAN}/approve", data={**form, "acknowledge_warnings": "true"})
    assert rsp.status_code == 303
    assert "its dose is stale" in client.get(f"/plans/{PLAN}").text


def test_a_record_changed_outside_rtexport_is_shown(client: TestClient, home: Path) -> None:
    with closing(sqlite3.connect(home / "rtexport.db")) as db, db:
        db.execute("UPDATE revisions SET toml = replace(toml, 'gantry_deg = 20', 'gantry_deg = 40')")
    log_in(client, PLANNER)
    assert '<span class="badge warn">records changed</span>' in client.get("/").text
    page = client.get(f"/plans/{PLAN}").text
    assert "record changed outside rtexport: the plan file of plan CW-E1 revision 1 (table revisions)" in page
