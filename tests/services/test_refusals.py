"""Every refusal is the service's and audited by it, whichever front end asked: a site.toml that cannot be read
refuses an export and a C-ECHO (the command line and the page alike), a destination refused, an unknown server;
and the site is read once per use case."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import rtexport.model.site as site_model
from rtexport.errors import GateError, InputError
from rtexport.export.gate import ALL_ITEMS
from rtexport.services.targets import Target, echo_to, export_to
from rtexport.web.app import create_app
from rtexport.workspace import Workspace
from tests.cli.shell import run_rtexport
from tests.conftest import ACTOR

PLAN = "CW-E1"


def refusals(ws: Workspace, action: str) -> list[dict[str, Any]]:
    return [e for e in ws.audit_log.entries() if e["action"] == action and e["outcome"] == "refused"]


def break_site(home: Path) -> None:
    (home / "site.toml").write_text("machines = [ this is not TOML\n", encoding="utf-8")


def test_a_broken_site_refuses_the_export_and_the_echo_audited(planned: Workspace, tmp_path: Path) -> None:
    break_site(planned.home)
    with pytest.raises(GateError, match=r"not valid TOML"):
        export_to(planned, PLAN, ALL_ITEMS, Target(folder=tmp_path / "out"), ACTOR)
    with pytest.raises(GateError, match=r"not valid TOML"):
        echo_to(planned, Target(server="PACS"), ACTOR)
    (export,) = refusals(planned, "export")
    assert export["plan_id"] == PLAN and "not valid TOML" in export["detail"]["findings"][0]
    assert len(refusals(planned, "echo")) == 1 and not (tmp_path / "out").exists()


def test_the_command_line_and_the_page_get_the_same_audited_refusal(planned: Workspace, tmp_path: Path) -> None:
    home = planned.home
    break_site(home)
    r = run_rtexport(home, "export", PLAN, "--to", str(tmp_path / "out"))
    assert r.returncode == 2 and "not valid TOML" in r.stderr
    web = create_app(home, secret="s")
    with TestClient(web, follow_redirects=False) as client:
        form = client.get("/login").text
        token = form.split('name="csrf" value="')[1].split('"')[0]
        client.post("/login", data={"csrf": token, "name": "pat", "password": "planner-pass-1"})
        page = client.get(f"/plans/{PLAN}").text
        token = page.split('name="csrf" value="')[1].split('"')[0]
        rsp = client.post(f"/plans/{PLAN}/export/folder", data={"csrf": token, "folder": "dicom-export"})
    assert rsp.status_code == 409 and any("not valid TOML" in f for f in rsp.json()["findings"])
    vias = [e["via"] for e in refusals(planned, "export")]
    assert vias == ["cli", "web"]


def test_an_unknown_server_is_refused_and_audited(planned: Workspace) -> None:
    with pytest.raises(InputError, match=r"no DICOM server 'NOWHERE'"):
        export_to(planned, PLAN, ALL_ITEMS, Target(server="NOWHERE"), ACTOR)
    (refused,) = refusals(planned, "export-server")
    assert "no DICOM server 'NOWHERE'" in refused["detail"]["reason"]


def test_the_site_is_read_once_per_export(planned: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[Path] = []
    read = site_model.read_site_toml

    def counted(path: Path) -> dict[str, Any]:
        reads.append(path)
        return read(path)

    monkeypatch.setattr("rtexport.services.site.read_site_toml", counted)
    export_to(planned, PLAN, ALL_ITEMS, Target(folder=tmp_path / "out"), ACTOR)
    assert len(reads) == 1
