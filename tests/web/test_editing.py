"""The planning blocks through the page's routes: every save through the door of ``plan load`` (problems beside
their fields, unchanged = no revision, approved = read-only), download and upload, beam help, dose as a job,
import from a folder under the import roots."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from rtexport.demo.phantom import write_phantom
from rtexport.model.people import Actor
from rtexport.services.approval import approve
from rtexport.services.plans import load_plan, plan_state
from rtexport.services.workspaces import open_workspace
from tests.web.conftest import PHYSICIST, PLAN, PLANNER, SMALL, edit_site, log_in, wait_job

JSON = {"Accept": "application/json"}


def _plan(client: TestClient) -> dict[str, Any]:
    rsp = client.get(f"/plans/{PLAN}/edit.json", headers=JSON)
    assert rsp.status_code == 200, rsp.text
    data: dict[str, Any] = rsp.json()
    return data


def _save(client: TestClient, token: str, plan: dict[str, Any], plan_id: str = PLAN) -> Any:
    return client.post(f"/plans/{plan_id}/save", json={"plan": plan}, headers={**JSON, "X-CSRF-Token": token})


def _revision(home: Path, plan_id: str = PLAN) -> int:
    with open_workspace(home) as ws:
        return plan_state(ws, plan_id).revision.number


def test_unchanged_save_makes_no_revision_and_a_change_is_audited(client: TestClient, home: Path) -> None:
    token = log_in(client, PLANNER)
    data = _plan(client)
    assert (
        data["revision"] == 1
        and data["choices"]["external"]
        and "PTV" in [s["name"] for s in data["choices"]["structures"]]
    )
    rsp = _save(client, token, data["plan"])
    assert rsp.status_code == 200, rsp.text
    assert rsp.json()["changed"] is False and _revision(home) == 1

    plan = copy.deepcopy(data["plan"])
    plan["beam"][1]["gantry_deg"] = 25
    plan["override"].append({"structure": "Lung", "material": "Water"})
    rsp = _save(client, token, plan)
    assert rsp.json() == {"id": PLAN, "revision": 2, "changed": True, "message": "Saved as revision 2."}
    history = client.get(f"/plans/{PLAN}/history", headers=JSON).json()["revisions"]
    assert history[0]["revision"] == 2 and history[0]["by"] == PLANNER[0] and history[0]["via"] == "web"
    assert history[0]["changes"] == [
        "override[1].structure: (none) → Lung",
        "override[1].material: (none) → Water",
        "beam[1].gantry_deg: 20 → 25",
    ]


def test_each_problem_comes_back_with_its_field(client: TestClient, home: Path) -> None:
    token = log_in(client, PLANNER)
    plan = _plan(client)["plan"]
    plan["fractions"] = 0
    rsp = _save(client, token, plan)
    assert rsp.status_code == 422
    assert {"field": "fractions", "message": "Input should be greater than or equal to 1"} in rsp.json()["problems"]

    plan = _plan(client)["plan"]
    plan["beam"][0]["energy_mev"] = 7
    plan["beam"][1]["applicator"] = "99x99"
    plan["override"][0]["material"] = "Unobtainium"
    body = _save(client, token, plan).json()
    fields = {p["field"]: p["message"] for p in body["problems"]}
    assert fields["beam[0].energy_mev"].startswith("DemoLinac has no 7 MeV")
    assert fields["beam[1].applicator"].startswith("DemoLinac has no applicator '99x99'")
    assert fields["override[0].material"] == "unknown material 'Unobtainium'"
    assert _revision(home) == 1  # nothing stored


def test_the_plan_id_of_a_page_cannot_change(client: TestClient) -> None:
    token = log_in(client, PLANNER)
    plan = _plan(client)["plan"]
    plan["id"] = "OTHER"
    body = _save(client, token, plan).json()
    assert body["problems"][0]["field"] == "id"


def test_approved_plan_is_read_only_and_offers_a_clone(client: TestClient, home: Path) -> None:
    with open_workspace(home) as ws:
        approve(ws, PLAN, PHYSICIST, Actor.here("test"), acknowledge_mu_check=True)
    token = log_in(client, PLANNER)
    data = _plan(client)
    assert data["approved"] is True
    unchanged = _save(client, token, data["plan"])
    assert unchanged.status_code == 200 and unchanged.json()["changed"] is False
    plan = copy.deepcopy(data["plan"])
    plan["label"] = "Changed"
    rsp = _save(client, token, plan)
    assert rsp.status_code == 409 and rsp.json()["approved"] is True
    assert "approved and read-only" in rsp.json()["error"]
    assert _revision(home) == 1
    headers = {**JSON, "X-CSRF-Token": token}
    assert client.post(f"/plans/{PLAN}/dose", headers=headers).status_code == 409
    rsp = client.post(f"/plans/{PLAN}/clone", json={"new_id": "CW-E2", "label": "Copy"}, headers=headers)
    assert rsp.status_code == 201 and rsp.json()["url"] == "/plans/CW-E2"
    with open_workspace(home) as ws:
        clone = plan_state(ws, "CW-E2")
    assert not clone.approved and clone.plan.label == "Copy" and clone.plan.beams == data_beams(home)


def data_beams(home: Path) -> Any:
    with open_workspace(home) as ws:
        return plan_state(ws, PLAN).plan.beams


def test_downloaded_plan_file_loads_as_the_same_revision(client: TestClient, home: Path) -> None:
    token = log_in(client, PLANNER)
    plan = _plan(client)["plan"]
    plan["beam"][0]["weight"] = 0.55
    assert _save(client, token, plan).json()["revision"] == 2
    rsp = client.get(f"/plans/{PLAN}/plan.toml")
    assert rsp.status_code == 200 and 'filename="plan-CW-E1-r2.toml"' in rsp.headers["content-disposition"]
    with open_workspace(home) as ws:
        before = plan_state(ws, PLAN).revision
        state, changed = load_plan(ws, rsp.text, "downloaded.toml", Actor.here("cli"))
    assert not changed and state.revision == before  # same revision, same token: the same UIDs


def test_upload_loads_a_plan_file_as_plan_load_does(client: TestClient, home: Path) -> None:
    token = log_in(client, PLANNER)
    text = client.get(f"/plans/{PLAN}/plan.toml").text.replace('label = "Chestwall e-"', 'label = "Uploaded"')
    files = {"file": ("mine.toml", text.encode(), "application/toml")}
    rsp = client.post("/plans/upload", files=files, headers={**JSON, "X-CSRF-Token": token})
    assert rsp.status_code == 200, rsp.text
    assert rsp.json()["revision"] == 2 and rsp.json()["changed"] is True
    bad = {"file": ("bad.toml", b"format = 1\nid = [", "application/toml")}
    rsp = client.post("/plans/upload", files=bad, headers={**JSON, "X-CSRF-Token": token})
    assert rsp.status_code == 422 and rsp.json()["error"].startswith("bad.toml: not valid TOML")


def test_a_new_plan_from_the_page(client: TestClient, home: Path) -> None:
    token = log_in(client, PLANNER)
    start = client.get("/courses/C1/new.json", headers=JSON).json()
    plan = start["plan"]
    assert plan["external"] and plan["machine"] == "DemoLinac" and plan["beam"] == []
    headers = {**JSON, "X-CSRF-Token": token}
    rsp = client.post("/plans", json={"plan": plan}, headers=headers)
    assert rsp.status_code == 422
    fields = {p["field"] for p in rsp.json()["problems"]}
    assert {"id", "label", "beam"} <= fields
    plan.update(id="NEW-1", label="New", fractions=5, prescription_gy=20)
    plan["beam"] = [{"name": "A", "energy_mev": 12, "applicator": "15x15", "target": "PTV"}]
    rsp = client.post("/plans", json={"plan": plan}, headers=headers)
    assert rsp.status_code == 201, rsp.text
    assert rsp.json() == {"id": "NEW-1", "revision": 1, "url": "/plans/NEW-1"}
    again = client.post("/plans", json={"plan": plan}, headers=headers).json()
    assert again["problems"] == [{"field": "id", "message": "plan 'NEW-1' exists already; choose another id"}]


def test_no_machine_no_plans(client: TestClient, home: Path) -> None:
    edit_site(home, lambda s: s.update(machines=[]))
    token = log_in(client, PLANNER)
    choices = _plan(client)["choices"]
    assert "the site configuration has no machine: beams cannot be planned" in choices["unavailable"]
    rsp = _save(client, token, _plan(client)["plan"])
    assert rsp.status_code == 409 and "has no machine" in rsp.json()["error"]


def test_beam_help_energy_cutout_and_setup(client: TestClient) -> None:
    token = log_in(client, PLANNER)
    plan = _plan(client)["plan"]
    headers = {**JSON, "X-CSRF-Token": token}
    seen = client.post("/beams/preview", json={"plan": plan, "index": 0}, headers=headers).json()
    assert seen["ssd_mm"] == 1000.0 and seen["target"] == "PTV"
    assert 0 < seen["proximal_mm"] < seen["distal_mm"]
    axial = seen["axial"]  # the beam on the CT slice of its entry: from the source through the entry point
    assert set(axial["outlines"]) >= {plan["external"], "PTV"} and len(axial["edges"]) == 2
    (sx, sy), (ex, ey) = axial["axis"]
    assert (sx, sy) == (seen["isocenter_mm"][0], seen["isocenter_mm"][1] - 1000)  # gantry 0: straight down, SAD
    assert ex == sx and ey == round(seen["entry_mm"][1] + 50, 1)
    energy = client.post("/beams/energy", json={"plan": plan, "index": 0}, headers=headers).json()
    shallower = [e for e in energy["r90"] if e["energy_mev"] < energy["energy_mev"]]
    chosen = next(e for e in energy["r90"] if e["energy_mev"] == energy["energy_mev"])
    assert energy["depth_mm"] == round(seen["distal_mm"], 1)
    assert chosen["r90_mm"] >= energy["depth_mm"] and all(e["r90_mm"] < energy["depth_mm"] for e in shallower)
    assert f"{energy['depth_mm']:g} mm" in energy["message"]
    body = {"plan": plan, "index": 1, "target": "PTV", "margin_mm": 10}
    cutout = client.post("/beams/cutout", json=body, headers=headers).json()["cutout_mm"]
    xs = [p[0] for p in cutout]
    target_xs = [p[0] for p in seen["target_bev_mm"]]
    assert min(xs) < min(target_xs) - 9 and max(xs) > max(target_xs) + 9  # the margin, around the projection
    plan["beam"][1]["cutout_mm"] = cutout
    assert _save(client, token, plan).json()["changed"] is True
    plan["beam"][0]["target"] = "NoSuch"
    rsp = client.post("/beams/preview", json={"plan": plan, "index": 0}, headers=headers)
    assert rsp.status_code == 422 and rsp.json()["problems"][0]["field"] == "beam[0].target"


def test_dose_runs_as_a_job_then_a_physicist_approves(client: TestClient, home: Path) -> None:
    token = log_in(client, PLANNER)
    plan = _plan(client)["plan"]
    plan["beam"][0]["weight"] = 0.5
    plan["beam"][1]["weight"] = 0.5
    assert _save(client, token, plan).json()["revision"] == 2
    rsp = client.post(f"/plans/{PLAN}/dose", headers={**JSON, "X-CSRF-Token": token})
    assert rsp.status_code == 202
    status = wait_job(client, rsp.json()["job"])
    assert status["ok"] is True and status["message"].startswith("Dose computed for revision 2")
    assert {r["beam"] for r in status["results"] if "beam" in r} == {"ANT", "ANT_OBL"}
    with open_workspace(home) as ws:
        assert plan_state(ws, PLAN).dose is not None
    # the planner cannot approve with their own name; the physicist can
    approve_form = {"csrf": token, "name": PLANNER[0], "password": PLANNER[1], "acknowledge_mu_check": "true"}
    approve_form["acknowledge_warnings"] = "true"  # the physicist has reviewed the plan's warnings
    client.post(f"/plans/{PLAN}/approve", data=approve_form)
    assert not _plan(client)["approved"]
    approve_form.update(name=PHYSICIST[0], password=PHYSICIST[1])
    client.post(f"/plans/{PLAN}/approve", data=approve_form)
    assert _plan(client)["approved"]


def test_routes_need_a_login_and_the_csrf_token(client: TestClient) -> None:
    assert client.get(f"/plans/{PLAN}/edit.json", headers=JSON).status_code == 401
    token = log_in(client, PLANNER)
    plan = _plan(client)["plan"]
    assert client.post(f"/plans/{PLAN}/save", json={"plan": plan}, headers=JSON).status_code == 403
    assert _save(client, token, plan).status_code == 200
    assert (
        client.post("/plans/NOPE/save", json={"plan": plan}, headers={**JSON, "X-CSRF-Token": token}).status_code == 404
    )


def test_import_from_a_folder_under_the_import_roots(client: TestClient, home: Path, tmp_path: Path) -> None:
    root = home / "incoming-folders"
    write_phantom(root / "patient-1", SMALL)
    outside = tmp_path / "elsewhere"
    shutil.copytree(root / "patient-1", outside)
    edit_site(home, lambda s: s["dicom"].update(import_roots=["incoming-folders"]))
    token = log_in(client, PLANNER)
    listing = client.get("/import").text
    assert "patient-1" in listing and "CT series: 16 slice(s)" in listing and "Structure set" in listing
    rsp = client.post("/import/folder", data={"csrf": token, "folder": str(outside), "course_id": "C9"})
    assert rsp.status_code == 303 and rsp.headers["location"].startswith("/import")
    assert "not below an import root" in client.get("/import").text
    rsp = client.post("/import/folder", data={"csrf": token, "folder": str(root / "patient-1"), "course_id": "C1"})
    assert "course &#39;C1&#39; exists already in this workspace" in client.get("/import").text
    rsp = client.post("/import/folder", data={"csrf": token, "folder": str(root / "patient-1"), "course_id": "C2"})
    assert rsp.status_code == 303 and rsp.headers["location"] == "/courses/C2/plans/new"
    page = client.get("/courses/C2/plans/new").text
    assert "Course C2 imported: 16 CT slice(s)" in page and 'data-source="/courses/C2/new.json"' in page


def test_an_unusual_value_is_saved_once_acknowledged(client: TestClient, home: Path) -> None:
    token = log_in(client, PLANNER)
    plan = _plan(client)["plan"]
    plan["beam"][1]["ssd_mm"] = 1200
    problems = _save(client, token, plan).json()["problems"]
    assert [p["field"] for p in problems] == ["beam[1].ssd_mm"]
    assert problems[0]["message"].endswith('acknowledge it on beam[1]: acknowledge = ["ssd_mm"]')
    plan["beam"][1]["acknowledge"] = ["ssd_mm"]
    assert _save(client, token, plan).json()["revision"] == 2
    assert _plan(client)["plan"]["beam"][1]["acknowledge"] == ["ssd_mm"]
