"""The receiver: real senders (DCMTK storescu, Orthanc, our own sender) push to it; what arrives is kept whole,
grouped into sets, imported through the import service, and hostile peers do not hurt it."""

from __future__ import annotations

import errno
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w

from rtexport.errors import CourseImportError, SendError
from rtexport.export.objects import ExportObject, ObjectKind, read_objects
from rtexport.model.people import Actor
from rtexport.net import pdu
from rtexport.net.dimse import Command, CommandField
from rtexport.net.receiver import Received, StorageSCP
from rtexport.net.send import Destination, InstanceOutcome, send_objects
from rtexport.net.trace import trace_to
from rtexport.services.incoming import (
    WorkspaceSink,
    discard_incoming,
    import_incoming,
    incoming_sets,
    receiver,
)
from rtexport.workspace import Workspace
from rtexport.workspace.incoming import IncomingInstance, IncomingRepository
from rtexport.workspace.journal import Journal
from tests.support.orthanc import Orthanc, free_port
from tests.support.storescp import dataset_part, storescu

from . import peer
from .conftest import CALLING_AE

ACTOR = Actor("tester", "tester-os", "test")
AET = "RTXRECV"


@pytest.fixture
def ws(workspace: Workspace) -> Workspace:
    """The test workspace with a receiver in its site configuration."""
    _configure(workspace, {"ae_title": AET, "port": 11112})
    return workspace


def _configure(ws: Workspace, receiver_settings: dict[str, object]) -> None:
    site = ws.site().model_dump(mode="json", exclude_none=True)
    site["dicom"]["receiver"] = receiver_settings
    ws.site_path.write_text(tomli_w.dumps(site), encoding="utf-8")


@pytest.fixture
def scp(ws: Workspace) -> Iterator[StorageSCP]:
    with receiver(ws, port=free_port()) as running:
        yield running


def _dest(scp: StorageSCP) -> Destination:
    return Destination(AET, "127.0.0.1", scp.port)


def test_storescu_pushes_a_course_that_is_imported_through_the_import_service(
    ws: Workspace, scp: StorageSCP, phantom_dir: Path
) -> None:
    done = storescu([phantom_dir], scp.port, AET)
    assert done.returncode == 0, done.stderr
    assert scp.settle()

    (found,) = incoming_sets(ws)
    assert found.complete, found.state
    assert found.patient_id and len(found.images) == 16 and found.structure_set is not None
    result = import_incoming(ws, found.id, ACTOR, course_id="C-NET")

    assert result.course.id == "C-NET"
    assert len(ws.course("C-NET").slices) == 16
    assert incoming_sets(ws) == []
    # The stored files carry the data sets byte for byte as they were sent.
    kept = {dataset_part(ws.blobs.verified(f.sha256)) for f in [*found.images, found.structure_set]}
    assert {dataset_part(p.read_bytes()) for p in phantom_dir.glob("*.dcm")} == kept


def test_sending_again_is_idempotent_and_other_bytes_under_the_same_uid_are_kept_apart(
    ws: Workspace, scp: StorageSCP, objects: list[ExportObject]
) -> None:
    assert send_objects(objects, _dest(scp), CALLING_AE).ok
    assert send_objects(objects, _dest(scp), CALLING_AE).ok
    assert scp.settle()
    (once,) = incoming_sets(ws)
    assert once.complete and len(once.images) == 16

    ct = objects[0]
    data = bytearray(ct.read_bytes())
    data[-1] ^= 0xFF  # one pixel differs
    changed = ExportObject.from_bytes(ObjectKind.CT, bytes(data), ct.sop_class_uid, ct.sop_instance_uid)
    assert send_objects([changed], _dest(scp), CALLING_AE).ok  # received, and kept apart
    assert scp.settle()

    (after,) = incoming_sets(ws)
    assert after.conflicts == (ct.sop_instance_uid,)
    assert after.state == "conflict: 1 instance(s) arrived again with other bytes"
    with pytest.raises(CourseImportError, match=r"cannot be imported yet: conflict"):
        import_incoming(ws, after.id, ACTOR)
    assert discard_incoming(ws, after.id, ACTOR) == 18
    assert incoming_sets(ws) == []


def test_other_sop_classes_are_refused_at_association_and_by_status(
    scp: StorageSCP, objects: list[ExportObject], tmp_path: Path
) -> None:
    from pydicom.data import get_testdata_file

    plan = read_objects([Path(str(get_testdata_file("rtplan.dcm")))], ObjectKind.RTPLAN)
    with pytest.raises(SendError, match=r"accepted none of the 2 presentation contexts proposed"):
        send_objects(plan, _dest(scp), CALLING_AE)

    report = send_objects([*objects[:2], *plan], _dest(scp), CALLING_AE, send_dependents=True)
    assert [r.outcome for r in report.results] == [InstanceOutcome.STORED] * 2 + [InstanceOutcome.FAILED]
    assert "accepted no transfer syntax for SOP class 1.2.840.10008.5.1.4.1.1.481.5" in report.results[2].meaning


def test_a_truncated_instance_is_refused_and_nothing_of_it_is_kept(
    ws: Workspace, scp: StorageSCP, objects: list[ExportObject]
) -> None:
    ct = objects[0]
    cut = ct.read_bytes()[:-1000]
    truncated = ExportObject.from_bytes(ObjectKind.CT, cut, ct.sop_class_uid, ct.sop_instance_uid)
    report = send_objects([truncated, objects[1]], _dest(scp), CALLING_AE)

    assert report.results[0].outcome == InstanceOutcome.FAILED and report.results[0].status == 0xC000
    assert report.results[1].outcome == InstanceOutcome.STORED
    assert scp.settle()
    (found,) = incoming_sets(ws)
    assert [i.sop_instance_uid for i in found.images] == [objects[1].sop_instance_uid]


def test_an_abort_mid_transfer_keeps_nothing_of_that_instance_and_the_receiver_goes_on(
    ws: Workspace, scp: StorageSCP, objects: list[ExportObject]
) -> None:
    import socket

    ct = objects[0]
    data = ct.read_bytes()
    with socket.create_connection(("127.0.0.1", scp.port), timeout=10) as sock:
        p = peer.Peer(sock)
        rq = pdu.AssociateRQ(AET, "ABORTER", (pdu.ProposedContext(1, ct.sop_class_uid, ("1.2.840.10008.1.2.1",)),),
                             pdu.UserInformation(16384))  # fmt: skip
        p.send(pdu.encode(rq))
        assert p.read_raw()[0] == 0x02  # A-ASSOCIATE-AC
        command = Command(CommandField.C_STORE_RQ, message_id=1, affected_sop_class=ct.sop_class_uid,
                          affected_sop_instance=ct.sop_instance_uid, priority=0, data_set_type=0)  # fmt: skip
        p.send(pdu.encode(pdu.PDataTF((pdu.PDV(1, True, True, command.encode()),))))
        p.send(pdu.encode(pdu.PDataTF((pdu.PDV(1, False, False, data[300:8000]),))))
        p.send(pdu.encode(pdu.Abort()))
    assert scp.settle(10)
    assert incoming_sets(ws) == []
    assert send_objects(objects[:1], _dest(scp), CALLING_AE).ok


class _FullDisk(WorkspaceSink):
    """A sink whose disk fills up after ``room`` instances."""

    def __init__(self, ws: Workspace, room: int) -> None:
        super().__init__(ws)
        self.room = room

    def keep(self, received: Received) -> None:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= 1
        super().keep(received)


def test_a_full_disk_refuses_with_out_of_resources_and_keeps_what_it_confirmed(
    ws: Workspace, objects: list[ExportObject]
) -> None:
    scp = receiver(ws, port=free_port())
    scp.sink = _FullDisk(ws, room=3)
    with scp:
        report = send_objects(objects, _dest(scp), CALLING_AE, associations=1, retries=0)

    assert [r.outcome for r in report.results[:3]] == [InstanceOutcome.STORED] * 3
    assert {r.status for r in report.results[3:16]} == {0xA700}
    (found,) = incoming_sets(ws)
    assert sorted(i.sop_instance_uid for i in found.images) == sorted(o.sop_instance_uid for o in objects[:3])
    for inst in found.images:
        ws.blobs.verified(inst.sha256)


def test_eight_parallel_associations(ws: Workspace, scp: StorageSCP, objects: list[ExportObject]) -> None:
    shares = [objects[i::8] for i in range(8)]
    reports: list[object] = []
    threads = [threading.Thread(target=lambda s=s: reports.append(
        send_objects(s, _dest(scp), CALLING_AE, associations=1, send_dependents=True))) for s in shares]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert all(r.ok for r in reports)  # type: ignore[attr-defined]
    assert scp.settle()
    (found,) = incoming_sets(ws)
    assert found.complete and len(found.images) == 16


def test_calling_ae_titles_and_hosts_outside_the_allowed_are_rejected(
    ws: Workspace, objects: list[ExportObject]
) -> None:
    _configure(ws, {"ae_title": AET, "port": 11112, "allowed_ae_titles": ["SCANNER"]})
    with receiver(ws, port=free_port()) as scp:
        with pytest.raises(SendError, match=r"calling AE title not recognised.*does not know our AE title 'RTEXPORT'"):
            send_objects(objects, _dest(scp), CALLING_AE)
        assert send_objects(objects[:1], _dest(scp), "SCANNER").ok
        with pytest.raises(SendError, match=r"called AE title not recognised.*the server is not 'OTHER'"):
            send_objects(objects, Destination("OTHER", "127.0.0.1", scp.port), "SCANNER")


def test_the_trace_redacts_patient_data_unless_asked(ws: Workspace, scp: StorageSCP, objects: list[ExportObject],
                                                     tmp_path: Path) -> None:  # fmt: skip
    redacted, full = tmp_path / "trace.txt", tmp_path / "trace-full.txt"
    with trace_to(redacted):
        assert send_objects(objects[-1:], _dest(scp), CALLING_AE, send_dependents=True).ok
    with trace_to(full, patient_data=True):
        assert send_objects(objects[-1:], _dest(scp), CALLING_AE, send_dependents=True).ok
    name = "Phantom^Electron"  # the phantom's PatientName

    text = redacted.read_text()
    assert "A-ASSOCIATE-RQ called RTXRECV calling RTEXPORT" in text
    assert "C-STORE-RQ id 1 RT Structure Set Storage" in text and "status 0x0000" in text
    assert "(content redacted)" in text and name not in text
    assert name in full.read_text()


def test_orthanc_pushes_a_study_to_the_receiver(ws: Workspace, scp: StorageSCP, phantom_dir: Path,
                                                tmp_path: Path) -> None:  # fmt: skip
    with Orthanc(tmp_path / "orthanc", modalities={"rtx": (AET, "127.0.0.1", scp.port)}) as orthanc:
        for path in sorted(phantom_dir.glob("*.dcm")):
            orthanc.request("POST", "/instances", None, raw=path.read_bytes())
        (study,) = orthanc.get("/studies")
        orthanc.request("POST", "/modalities/rtx/store", {"Resources": [study], "Synchronous": True})
    assert scp.settle()

    (found,) = incoming_sets(ws)
    assert found.complete and len(found.images) == 16
    assert import_incoming(ws, found.id, ACTOR).course.id == found.id


def test_what_a_crashed_receiver_confirmed_is_filed_when_the_journal_is_opened_again(
    ws: Workspace, objects: list[ExportObject]
) -> None:
    """Entries made durable but never filed (the process died): the next receiver files them; a torn last entry,
    never confirmed, is left out."""
    folder = ws.home / "incoming-test"
    first = Journal(folder, IncomingRepository(ws.db, ws.blobs), segment_bytes=8 << 20)
    for obj in objects[:3]:
        data = obj.read_bytes()
        inst = IncomingInstance(0, obj.sop_instance_uid, obj.sop_class_uid, hashlib.sha256(data).hexdigest(),
                                len(data), "P", "N", "S", "SE", "F", "CT", (), "AE", "h", "now", "", None)  # fmt: skip
        first.append(inst, data)  # durable; the filer never started: a crash right after the answers
    (segment,) = folder.glob("seg-*")
    with segment.open("r+b") as f:  # a fourth entry torn mid-write
        f.seek(first.position)
        f.write(b"RTXJ" + b"\x00" * 20)

    again = Journal(folder, IncomingRepository(ws.db, ws.blobs))
    assert again.recover() == 3
    assert sorted(i.sop_instance_uid for i in IncomingRepository(ws.db, ws.blobs).pending()) == sorted(
        o.sop_instance_uid for o in objects[:3]
    )
    assert list(folder.glob("seg-*")) == []
