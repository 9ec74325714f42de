"""Export of a plan to a DICOM server, end to end: gate, build, C-STORE to Orthanc, commitment, audit, CLI."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
import tomli_w

from rtexport.demo.beamdata import demo_site
from rtexport.errors import SendError
from rtexport.export.gate import Item
from rtexport.model.people import Actor
from rtexport.net.send import Destination
from rtexport.services.export import export_plan
from rtexport.services.incoming import receiver
from rtexport.workspace import Workspace
from tests.cli.shell import run_rtexport
from tests.support.orthanc import Orthanc, free_port
from tests.support.storescp import StoreSCP, dataset_part

pytestmark = pytest.mark.integration
PAT = Actor("pat", "pat-os", "test")


def configure(ws: Workspace, orthanc: Orthanc) -> None:
    """Point the site at this Orthanc, and listen for its commitment reports where it expects us."""
    site = demo_site()
    site.pop("uid_root")
    _, _, commit_port = orthanc.modalities["rtx"]
    site["dicom"]["servers"] = [
        {"name": "archive", "ae_title": orthanc.aet, "host": "127.0.0.1", "port": orthanc.dicom_port}
    ]
    site["dicom"]["commitment_port"] = commit_port
    ws.site_path.write_text(tomli_w.dumps(site))


def test_plan_export_arrives_whole_and_is_committed(planned: Workspace, orthanc: Orthanc, phantom_dir: Path) -> None:
    orthanc.clear()
    configure(planned, orthanc)
    server = planned.site().dicom.server("archive")
    assert server is not None
    export = export_plan(planned, "CW-E1", tuple(Item), Destination.from_server(server), PAT, commit=True)
    report = export.sent
    assert report is not None and report.ok, export.message()
    sent = {o.sop_instance_uid for o in export.prepared.objects}
    assert len(sent) == 16 + 1 + 1 + 3
    assert orthanc.sop_instance_uids() == sent
    assert set(report.committed or ()) == sent
    # CT: the archive keeps our dataset bytes exactly (it writes its own file meta header)
    imported = {pydicom.dcmread(p).SOPInstanceUID: p.read_bytes() for p in phantom_dir.glob("CT*.dcm")}
    for orthanc_id, uid in orthanc.instances().items():
        if uid in imported:
            assert dataset_part(orthanc.file(orthanc_id)) == dataset_part(imported[uid])
    entry = [e for e in planned.audit_log.entries("CW-E1") if e["action"] == "export-server"][-1]
    assert entry["outcome"] == "ok" and entry["actor"] == "pat"
    assert entry["detail"]["destination"] == f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"
    assert set(entry["detail"]["stored"]) == sent and entry["detail"]["not_stored"] == {}
    # the same export again is harmless: the archive still holds one copy of each
    again = export_plan(planned, "CW-E1", tuple(Item), Destination.from_server(server), PAT)
    assert again.ok and orthanc.count_instances() == len(sent)


def test_unreachable_server_is_reported_and_audited(planned: Workspace) -> None:
    dest = Destination("NOBODY", "127.0.0.1", free_port())
    with pytest.raises(SendError, match=r"NOBODY@127\.0\.0\.1"):
        export_plan(planned, "CW-E1", (Item.RTPLAN,), dest, PAT)
    started, entry = [e for e in planned.audit_log.entries("CW-E1") if e["action"] == "export-server"][-2:]
    assert started["outcome"] == "started" and entry["outcome"] == "failed"
    assert "NOBODY" in entry["detail"]["destination"] and "NOBODY" in entry["detail"]["error"]


def test_cli_exports_to_a_custom_server_and_echoes(planned: Workspace, tmp_path: Path) -> None:
    with StoreSCP(tmp_path / "received") as scp:
        peer = ("--aet", scp.aet, "--host", "127.0.0.1", "--port", str(scp.port))
        echo = run_rtexport(planned.home, "--home", str(planned.home), "echo", *peer)
        assert echo.returncode == 0, echo.stderr
        assert "success" in echo.stdout
        items = ("--items", "rtstruct,rtplan,dose-plan")
        r = run_rtexport(planned.home, "--home", str(planned.home), "export", "CW-E1", *items, *peer)
        assert r.returncode == 0, r.stderr
        stored_lines = [line for line in r.stdout.splitlines() if line.startswith("stored ")]
        assert len(stored_lines) == 3, r.stdout
        assert len(scp.received()) == 3
    unreachable = ("--aet", "X", "--host", "127.0.0.1", "--port", str(free_port()))
    wrong = run_rtexport(
        planned.home, "--home", str(planned.home), "export", "CW-E1", "--items", "rtplan", *unreachable
    )
    assert wrong.returncode != 0 and "X@127.0.0.1" in wrong.stderr


def test_a_damaged_stored_ct_is_never_stored_and_stops_the_export(planned: Workspace, orthanc: Orthanc) -> None:
    """8 changed bytes in one stored CT file: the archive never gets that image, nor the plan objects that
    reference the series; the report and the audit say which file is damaged."""
    orthanc.clear()
    course = planned.course("C1")
    victim = course.slices[5]
    path = planned.blobs.path(victim.sha256)
    data = bytearray(path.read_bytes())
    data[-100:-92] = b"\xff" * 8  # pixel data: still a readable DICOM file, only the values changed
    path.write_bytes(bytes(data))
    dest = Destination(orthanc.aet, "127.0.0.1", orthanc.dicom_port)
    export = export_plan(planned, "CW-E1", tuple(Item), dest, PAT)
    assert export.sent is not None and not export.ok
    results = {r.obj.sop_instance_uid: r for r in export.sent.results}
    assert results[victim.sop_instance_uid].outcome.value == "failed"
    assert (
        "damaged" in results[victim.sop_instance_uid].meaning
        and victim.sha256 in results[victim.sop_instance_uid].meaning
    )
    stored = orthanc.sop_instance_uids()
    assert victim.sop_instance_uid not in stored
    rt = {o.sop_instance_uid for o in export.prepared.objects if o.kind.value != "CT"}
    assert not rt & stored  # no plan, structure set or dose of a series the archive does not hold whole
    entry = [e for e in planned.audit_log.entries("CW-E1") if e["action"] == "export-server"][-1]
    assert entry["outcome"] == "incomplete" and victim.sop_instance_uid in entry["detail"]["not_stored"]


def test_the_site_sets_how_many_associations_a_send_opens(planned: Workspace) -> None:
    """An archive that serves one association per caller: with ``dicom.send_associations = 1`` it refuses none;
    with the default it closes the extra ones, and everything is stored on the association it kept."""
    site = demo_site()
    site.pop("uid_root")
    site["dicom"]["receiver"] = {"ae_title": "RTXRECV", "port": 11112, "max_associations": 1}
    for associations, refused in ((1, False), (None, True)):
        site["dicom"].pop("send_associations", None)
        if associations is not None:
            site["dicom"]["send_associations"] = associations
        planned.site_path.write_text(tomli_w.dumps(site))
        with receiver(planned, port=free_port()) as scp:
            export = export_plan(planned, "CW-E1", (Item.CT,), Destination("RTXRECV", "127.0.0.1", scp.port), PAT)
            assert export.sent is not None and export.sent.ok, export.message()
            assert len(export.sent.results) == 16
            assert (scp.refused_busy > 0) is refused, (associations, scp.refused_busy)
