"""STOW-RS to Orthanc's DICOMweb plugin: every instance stored byte for byte, a result for each, and the
service's refusals named."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rtexport.errors import InputError, SendError
from rtexport.export.gate import Item
from rtexport.export.objects import ExportObject
from rtexport.model.people import Actor
from rtexport.net.dicomweb import stow
from rtexport.net.outcome import InstanceOutcome, InstanceResult, WebDestination
from rtexport.services.export import check_server, export_plan, resolve_destination
from rtexport.workspace import Workspace
from tests.conftest import edit_site_toml
from tests.support.orthanc import MissingProgram, Orthanc
from tests.support.storescp import dataset_part

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    try:
        server = Orthanc(tmp_path_factory.mktemp("orthanc-web"), dicomweb=True)
    except MissingProgram as e:
        pytest.fail(str(e))
    with server:
        yield server


def _dest(web: Orthanc, password: str = Orthanc.password) -> WebDestination:
    return WebDestination(web.dicomweb_url, web.user, password)


def test_stow_rs_stores_every_instance_with_identical_bytes(web: Orthanc, objects: list[ExportObject]) -> None:
    web.clear()
    seen: list[InstanceResult[ExportObject]] = []
    verified = [dataclasses.replace(o, sha256=hashlib.sha256(o.read_bytes()).hexdigest()) for o in objects]
    report = stow(verified, _dest(web), progress=seen.append)

    assert report.ok, report.summary()
    assert [r.outcome for r in report.results] == [InstanceOutcome.STORED] * len(objects)
    assert len(seen) == len(objects)
    stored = web.instances()
    for obj in objects:
        assert dataset_part(web.file(stored[obj.sop_instance_uid])) == dataset_part(obj.read_bytes())


def test_wrong_credentials_and_wrong_url_are_named(web: Orthanc, objects: list[ExportObject]) -> None:
    with pytest.raises(SendError, match=r"refused our credentials \(HTTP 401\); check user and password_env"):
        stow(objects[:1], _dest(web, "wrong"))
    with pytest.raises(SendError, match=r"answered HTTP 404 to STOW-RS: check the base URL"):
        stow(objects[:1], WebDestination(web.dicomweb_url + "-not", web.user, web.password))


def test_a_damaged_stored_copy_never_leaves(web: Orthanc, objects: list[ExportObject], tmp_path: Path) -> None:
    web.clear()
    damaged = dataclasses.replace(objects[0], sha256="0" * 64)
    report = stow([damaged, *objects[1:3]], _dest(web))

    assert {r.outcome for r in report.results} == {InstanceOutcome.NOT_SENT}
    assert report.results[0].meaning.startswith("not sent: stored copy is damaged: sha256 ")
    assert web.count_instances() == 0


def test_a_plan_exports_to_a_dicomweb_server_of_the_site(
    planned: Workspace, web: Orthanc, monkeypatch: pytest.MonkeyPatch
) -> None:
    web.clear()

    def server(site: dict[str, Any]) -> None:
        site["dicom"]["servers"] = [
            {"name": "web", "kind": "dicomweb", "url": web.dicomweb_url, "user": web.user, "password_env": "RTX_WEB"}
        ]

    edit_site_toml(planned.home, server)
    with pytest.raises(InputError, match=r"the environment variable RTX_WEB \(its password\) is not set"):
        resolve_destination(planned, planned.site(), server="web")
    monkeypatch.setenv("RTX_WEB", web.password)
    dest = resolve_destination(planned, planned.site(), server="web")
    assert isinstance(dest, WebDestination)
    assert check_server(planned, dest, Actor("pat", "pat-os", "test")) == f"DICOMweb {web.dicomweb_url}: success"
    export = export_plan(planned, "CW-E1", tuple(Item), dest, Actor("pat", "pat-os", "test"))

    assert export.ok, export.message()
    assert web.sop_instance_uids() == {o.sop_instance_uid for o in export.prepared.objects}
    entry = [e for e in planned.audit_log.entries("CW-E1") if e["action"] == "export-server"][-1]
    assert entry["outcome"] == "ok" and entry["detail"]["destination"] == web.dicomweb_url
