"""Import from the page out of the DICOM receiver's incoming area: DCMTK storescu pushes a course to the receiver,
the import page lists the set, and importing it goes through the service of ``rtexport incoming import``."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rtexport.demo.phantom import write_phantom
from rtexport.services.incoming import receiver
from rtexport.services.workspaces import open_workspace
from tests.support.orthanc import free_port
from tests.support.storescp import storescu
from tests.web.conftest import PLANNER, SMALL, edit_site, log_in

AET = "RTXRECV"


@pytest.mark.integration
def test_a_received_course_is_imported_from_the_page(client: TestClient, home: Path, tmp_path: Path) -> None:
    edit_site(home, lambda s: s["dicom"].update(receiver={"ae_title": AET, "port": 11112}))
    sent = tmp_path / "sent"
    write_phantom(sent, SMALL)
    with open_workspace(home) as ws, receiver(ws, port=free_port()) as scp:
        done = storescu([sent], scp.port, AET)
        assert done.returncode == 0, done.stderr
        assert scp.settle()
    token = log_in(client, PLANNER)
    page = client.get("/import").text
    listed = page[page.index('id="import-incoming"') :]
    assert "complete" in listed and 'name="set_id"' in listed
    set_id = listed.split('name="set_id" value="', 1)[1].split('"', 1)[0]
    rsp = client.post("/import/incoming", data={"csrf": token, "set_id": set_id, "course_id": "C-NET"})
    assert rsp.status_code == 303 and rsp.headers["location"] == "/courses/C-NET/plans/new"
    with open_workspace(home) as ws:
        assert len(ws.course("C-NET").slices) == 16
    assert "Nothing received waits for import." in client.get("/import").text
    # a set that is gone is refused with the service's message, beside the form
    client.post("/import/incoming", data={"csrf": token, "set_id": set_id, "course_id": "C-AGAIN"})
    assert f"no incoming set {set_id!r}".replace("'", "&#39;") in client.get("/import").text
