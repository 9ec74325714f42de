"""Query/retrieve against Orthanc: C-FIND at patient, study and series level; C-MOVE of a study into the
receiver, whose set is then imported."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w

from rtexport.errors import InputError, SendError
from rtexport.model.people import Actor
from rtexport.services.incoming import import_incoming, incoming_sets
from rtexport.services.query import query, retrieve
from rtexport.workspace import Workspace
from tests.support.orthanc import Orthanc, free_port

pytestmark = pytest.mark.integration
ACTOR = Actor("tester", "tester-os", "test")
AET = "RTEXPORT"  # the site's local AE title: the archive knows one AE title of ours


@pytest.fixture
def archive(workspace: Workspace, phantom_dir: Path, tmp_path: Path) -> Iterator[tuple[Workspace, Orthanc]]:
    """Orthanc holding the phantom, knowing our receiver; the workspace's site names Orthanc as "pacs"."""
    port = free_port()
    with Orthanc(tmp_path / "orthanc", modalities={"rtx": (AET, "127.0.0.1", port)}) as orthanc:
        for path in sorted(phantom_dir.glob("*.dcm")):
            orthanc.request("POST", "/instances", raw=path.read_bytes())
        site = workspace.site().model_dump(mode="json", exclude_none=True)
        site["dicom"]["receiver"] = {"ae_title": AET, "port": port}
        site["dicom"]["servers"] = [{"name": "pacs", "ae_title": orthanc.aet, "host": "127.0.0.1",
                                     "port": orthanc.dicom_port}]  # fmt: skip
        workspace.site_path.write_text(tomli_w.dumps(site), encoding="utf-8")
        yield workspace, orthanc


def test_find_at_patient_study_and_series_level(archive: tuple[Workspace, Orthanc]) -> None:
    ws, _ = archive
    (patient,) = query(ws, "pacs", "patient", ACTOR, {"PatientID": "RTX*"})
    (study,) = query(ws, "pacs", "study", ACTOR, {"PatientID": patient["PatientID"]})
    series = query(ws, "pacs", "series", ACTOR, {"StudyInstanceUID": study["StudyInstanceUID"]})

    assert patient["PatientName"] == "Phantom^Electron"
    assert study["PatientID"] == patient["PatientID"]
    assert sorted(s["Modality"] for s in series) == ["CT", "RTSTRUCT"]
    assert query(ws, "pacs", "study", ACTOR, {"PatientID": "NOBODY"}) == []
    # who looked for which patients on which archive, and what came back, is in the audit trail
    asked = [(e["actor"], e["outcome"], e["detail"]) for e in ws.audit_log.entries() if e["action"] == "query"]
    assert asked[0] == ("tester", "ok", {"server": "pacs", "level": "patient", "keys": {"PatientID": "RTX*"},
                                         "matches": 1})  # fmt: skip
    assert [d["matches"] for _, _, d in asked] == [1, 1, 2, 0]


def test_retrieve_moves_a_study_into_the_receiver_for_import(archive: tuple[Workspace, Orthanc]) -> None:
    ws, _ = archive
    (study,) = query(ws, "pacs", "study", ACTOR)
    got = retrieve(ws, "pacs", study["StudyInstanceUID"], ACTOR)

    assert got.move.ok and got.move.completed == 17
    (found,) = incoming_sets(ws)
    assert found.complete
    assert import_incoming(ws, found.id, ACTOR, "C-QR").course.id == "C-QR"


def test_unknown_server_and_level_are_refused(archive: tuple[Workspace, Orthanc]) -> None:
    ws, orthanc = archive
    with pytest.raises(InputError, match=r"no DICOM server 'nope' to query .*servers: pacs"):
        query(ws, "nope", "study", ACTOR)
    with pytest.raises(InputError, match=r"query level 'image': use patient, study or series"):
        query(ws, "pacs", "image", ACTOR)
    orthanc.stop()
    with pytest.raises(SendError, match=r"cannot query ORTHANC@127\.0\.0\.1:\d+: connection refused"):
        query(ws, "pacs", "study", ACTOR)
    refused = [e for e in ws.audit_log.entries() if e["action"] == "query"]
    assert [e["outcome"] for e in refused] == ["failed"] * 3  # each refusal is audited with its reason
    assert "query level 'image'" in refused[1]["detail"]["error"]
