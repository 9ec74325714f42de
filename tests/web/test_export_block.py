"""The Export block as in the manual's figure: sections that fold, Browse inside the export roots, a custom server
left empty answered beside its fields, results with the RS/RP/RD first and the CT images in one line."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from tests.web.conftest import PHYSICIST, PLAN, PLANNER, edit_site, log_in, wait_job
from tests.web.test_app import ALL_ITEMS, authorize


def test_export_reports_and_dicom_fold_with_plan_reports_folded(client: TestClient) -> None:
    log_in(client, PLANNER)
    page = client.get(f"/plans/{PLAN}").text
    folds = dict(re.findall(r'<details class="fold[^"]*" id="[^"]+" data-fold="(\w+)"([^>]*)>', page))
    assert set(folds) == {"export", "reports", "dicom"}
    assert "open" in folds["export"] and "open" in folds["dicom"] and "open" not in folds["reports"]
    assert re.search(r'<summary><h3 class="tree sub">Plan Reports</h3></summary>', page)
    assert '<meta name="user" content="pat">' in page  # the folds are kept per user


def test_plan_reports_open_when_they_have_a_message(client: TestClient, home: Path) -> None:
    edit_site(home, lambda s: s.update(machines=[]))
    token = log_in(client, PLANNER)
    client.post(f"/plans/{PLAN}/reports", data={"csrf": token})  # a browser without script: redirected back
    page = client.get(f"/plans/{PLAN}").text
    assert re.search(r'data-fold="reports" open>', page) and "unknown machine" in page


def test_browse_lists_and_makes_folders_only_inside_the_export_roots(client: TestClient, home: Path) -> None:
    token = log_in(client, PLANNER)
    root = (home / "dicom-export").resolve()
    (root / "patient-a").mkdir(parents=True)
    (root / "outside-link").symlink_to(home)
    roots = client.get("/export-folders").json()
    assert roots == {"path": "", "parent": None, "folders": [str(root)]}
    inside = client.get("/export-folders", params={"path": str(root)}).json()
    assert inside["folders"] == ["patient-a"] and inside["parent"] == ""  # the link is not listed
    made = client.post("/export-folders", data={"csrf": token, "parent": str(root / "patient-a"), "name": "2026"})
    assert made.status_code == 201 and (root / "patient-a" / "2026").is_dir()
    below = client.get("/export-folders", params={"path": str(root / "patient-a")}).json()
    assert below["folders"] == ["2026"] and below["parent"] == str(root)

    outside = client.get("/export-folders", params={"path": str(home)})
    assert outside.status_code == 403 and "outside the folders the site allows" in outside.json()["error"]
    through_link = client.get("/export-folders", params={"path": str(root / "outside-link")})
    assert through_link.status_code == 403 and "symbolic link" in through_link.json()["error"]
    escape = client.post("/export-folders", data={"csrf": token, "parent": str(root), "name": "../escaped"})
    assert escape.status_code == 422 and not (home / "escaped").exists()
    assert client.post("/export-folders", data={"parent": str(root), "name": "x"}).status_code == 403  # no CSRF


def test_custom_server_with_empty_fields_is_answered_beside_the_fields(client: TestClient) -> None:
    token = log_in(client, PHYSICIST)
    empty = {"csrf": token, "server": "custom", "aet": "", "host": "", "port": ""}
    echo = client.post("/echo", data=empty)
    assert echo.status_code == 422
    assert echo.json()["error"] == "a custom server needs its AE title, host and port: fill in those fields"
    assert echo.json()["fields"] == ["aet", "host", "port"]
    sent = client.post(f"/plans/{PLAN}/export/server", data={**empty, "aet": "PACS", "items": ALL_ITEMS})
    assert sent.status_code == 422 and sent.json()["fields"] == ["host", "port"]
    assert "folder" not in sent.json()["error"]
    nothing = client.post(f"/plans/{PLAN}/export/server", data={"csrf": token, "items": ALL_ITEMS})
    assert nothing.status_code == 422 and "choose a server" in nothing.json()["error"]


def test_messages_carry_no_command_prefix(client: TestClient) -> None:
    token = log_in(client, PLANNER)
    client.post(f"/plans/{PLAN}/authorize", data={"csrf": token, "name": PHYSICIST[0], "password": "wrong"})
    page = client.get(f"/plans/{PLAN}").text
    message = re.search(r'id="authorize-message">([^<]*)<', page)
    assert message and message.group(1).startswith("unknown user or wrong password")


def test_results_list_rs_rp_rd_first_and_the_ct_in_one_line(client: TestClient, home: Path) -> None:
    token = log_in(client, PLANNER)
    authorize(client, token)
    rsp = client.post(
        f"/plans/{PLAN}/export/folder", data={"csrf": token, "folder": "dicom-export", "items": ALL_ITEMS}
    )
    job = wait_job(client, rsp.json()["job"])
    assert job["ok"] is True
    kinds = [r["kind"] for r in job["results"]]
    assert kinds == ["RS", "RP", "RD", "RD", "RD"] + ["CT"] * 16
    summary = job["summary"]
    assert [r["kind"] for r in summary] == ["RS", "RP", "RD", "RD", "RD", "CT"]
    assert summary[-1]["text"] == "16 CT images, all written" and all(r["ok"] for r in summary)
    assert summary[1]["label"].startswith("RT Plan") and summary[1]["file"].startswith("RP.")
    assert job["notice"].startswith("The RT Plan leaves UNAPPROVED")
    assert "authorized by phil" in job["notice"]


def test_an_approved_plan_leaves_without_the_notice(client: TestClient) -> None:
    token = log_in(client, PLANNER)
    signed = {"csrf": token, "name": PHYSICIST[0], "password": PHYSICIST[1], "acknowledge_mu_check": "true"}
    client.post(f"/plans/{PLAN}/approve", data=signed)
    rsp = client.post(
        f"/plans/{PLAN}/export/folder", data={"csrf": token, "folder": "dicom-export", "items": ["rtplan"]}
    )
    job = wait_job(client, rsp.json()["job"])
    assert job["ok"] is True and job["notice"] == ""


def test_the_two_export_buttons_have_distinct_names_and_progress_is_announced(client: TestClient) -> None:
    log_in(client, PLANNER)
    page = client.get(f"/plans/{PLAN}").text
    assert 'id="export-local" aria-label="Export to the folder"' in page
    assert 'id="export-server" aria-label="Export to the DICOM server"' in page
    assert re.search(r'class="progress-head" aria-live="polite"', page)
