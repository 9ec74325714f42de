"""Faults at the receiver: each is reported exactly, nothing is lost, and sending again completes the rest."""

from __future__ import annotations

import dataclasses
import io
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from rtexport.dicom.common import IMPLEMENTATION_CLASS_UID
from rtexport.errors import SendError
from rtexport.export.objects import ExportObject, ObjectKind
from rtexport.net import pdu
from rtexport.net.dimse import Command, CommandField
from rtexport.net.send import Destination, InstanceOutcome, send_objects
from tests.support.orthanc import free_port

from . import peer
from .conftest import CALLING_AE
from .peer import Peer
from .scp import FakeSCP


def _dest(scp: FakeSCP) -> Destination:
    return Destination(scp.aet, "127.0.0.1", scp.port)


def _outcomes(report: object) -> dict[str, InstanceOutcome]:
    return {r.obj.sop_instance_uid: r.outcome for r in report.results}  # type: ignore[attr-defined]


def test_wrong_called_ae_title_is_refused_with_both_titles(objects: list[ExportObject]) -> None:
    with FakeSCP() as scp, pytest.raises(SendError, match=r"FAKESCP-NOT@127\.0\.0\.1.*called AE title not recognised"
    r".*'FAKESCP-NOT'.*'RTEXPORT'"):  # fmt: skip
        send_objects(objects, Destination("FAKESCP-NOT", "127.0.0.1", scp.port), CALLING_AE)


def test_unreachable_port(objects: list[ExportObject]) -> None:
    port = free_port()
    with pytest.raises(
        SendError, match=rf"X@127\.0\.0\.1:{port}: connection refused: nothing listens on 127\.0\.0\.1 port {port}"
    ):
        send_objects(objects, Destination("X", "127.0.0.1", port), CALLING_AE)


def test_abort_midway_is_resent_on_a_new_association(objects: list[ExportObject]) -> None:
    with FakeSCP(abort_at=4) as scp:
        report = send_objects(objects, _dest(scp), CALLING_AE, associations=1, retries=2)

        assert report.ok, report.summary()
        assert set(scp.stored) == {o.sop_instance_uid for o in objects}
        assert scp.received[objects[3].sop_instance_uid] == 2  # the unconfirmed one went again


def test_abort_without_retries_reports_the_unconfirmed_one_and_a_second_send_completes(
    objects: list[ExportObject],
) -> None:
    with FakeSCP(abort_at=4) as scp:
        report = send_objects(objects, _dest(scp), CALLING_AE, associations=1, retries=0)
        lost, rs = objects[3], objects[-1]

        assert not report.ok
        assert [(r.obj, r.outcome) for r in report.unstored] == [
            (lost, InstanceOutcome.NOT_SENT), (rs, InstanceOutcome.NOT_SENT),
        ]  # fmt: skip
        assert report.results[3].meaning == "not confirmed: aborted by the server (1 attempt)"
        assert report.results[-1].meaning == (
            "not sent: 1 of 16 CT images was not stored, and this RT Structure Set depends on them; "
            "send again once they are"
        )
        # Everything after the abort went on a new association.
        assert {r.obj.sop_instance_uid for r in report.stored} == set(scp.stored)

        again = send_objects(objects, _dest(scp), CALLING_AE, associations=1, retries=0)
        assert again.ok
        assert set(scp.stored) == {o.sop_instance_uid for o in objects}


def test_no_answer_times_out_and_is_resent(objects: list[ExportObject]) -> None:
    # The second store is never answered while the test runs: the timeout is certain to expire.
    with FakeSCP(hang_at=2) as scp:
        report = send_objects(objects[:4], _dest(scp), CALLING_AE, associations=1, timeout=2, retries=0)

        assert [r.outcome for r in report.results] == [
            InstanceOutcome.STORED, InstanceOutcome.NOT_SENT, InstanceOutcome.STORED, InstanceOutcome.STORED,
        ]  # fmt: skip
        assert report.results[1].meaning == (
            "not confirmed: no answer from the server within 2 s while awaiting the C-STORE-RSP to message ID 2 "
            "(1 attempt)"
        )

        again = send_objects(objects[:4], _dest(scp), CALLING_AE, associations=1, timeout=2, retries=0)
        assert again.ok
        assert set(scp.stored) == {o.sop_instance_uid for o in objects[:4]}


def test_out_of_resources_twice_then_success(objects: list[ExportObject]) -> None:
    busy = objects[2].sop_instance_uid
    with FakeSCP(statuses={busy: [0xA700, 0xA700]}) as scp:
        report = send_objects(objects, _dest(scp), CALLING_AE, retries=3, backoff=0.01)

        assert report.ok, report.summary()
        assert scp.received[busy] == 3


def test_out_of_resources_beyond_retries_is_reported(objects: list[ExportObject]) -> None:
    cts = objects[:-1]
    busy = cts[2].sop_instance_uid
    with FakeSCP(statuses={busy: [0xA700, 0xA700]}) as scp:
        report = send_objects(cts, _dest(scp), CALLING_AE, retries=1, backoff=0.01)

        (failed,) = report.unstored
        assert (failed.obj.sop_instance_uid, failed.outcome, failed.status) == (busy, InstanceOutcome.FAILED, 0xA700)
        assert failed.meaning == "failure: Refused: Out of Resources"

        again = send_objects(cts, _dest(scp), CALLING_AE, retries=1, backoff=0.01)
        assert again.ok


@pytest.mark.parametrize(
    ("status", "meaning"),
    [
        (0xA900, "failure: Data Set Does Not Match SOP Class"),
        (0xC000, "failure: Cannot Understand"),
        (0x0122, "failure: Refused: SOP Class Not Supported"),
    ],
)
def test_permanent_failure_is_not_retried(objects: list[ExportObject], status: int, meaning: str) -> None:
    objects = objects[:-1]  # CT only: the structure set would wait for every CT (tested below)
    bad = objects[5].sop_instance_uid
    with FakeSCP(statuses={bad: [status]}) as scp:
        report = send_objects(objects, _dest(scp), CALLING_AE, retries=3, backoff=0.01)

        assert _outcomes(report) == {
            o.sop_instance_uid: InstanceOutcome.FAILED if o.sop_instance_uid == bad else InstanceOutcome.STORED
            for o in objects
        }
        (failed,) = report.unstored
        assert (failed.status, failed.meaning) == (status, meaning)
        assert scp.received[bad] == 1
        assert f"[0x{status:04X}] {meaning}" in report.summary()

        # The receiver is fixed: the same export again stores the rest; what arrived is stored once more.
        again = send_objects(objects, _dest(scp), CALLING_AE)
        assert again.ok
        assert set(scp.stored) == {o.sop_instance_uid for o in objects}


def test_warning_counts_as_stored(objects: list[ExportObject]) -> None:
    coerced = objects[0].sop_instance_uid
    with FakeSCP(statuses={coerced: [0xB000]}) as scp:
        report = send_objects(objects, _dest(scp), CALLING_AE)

    assert report.ok
    assert report.results[0].outcome == InstanceOutcome.WARNING
    assert report.results[0].meaning == "warning: Coercion of Data Elements"


def test_only_needed_contexts_are_proposed(objects: list[ExportObject]) -> None:
    with FakeSCP() as scp:
        send_objects(objects, _dest(scp), CALLING_AE, associations=1)

    assert {ab for ab, _ in scp.requested} == {objects[0].sop_class_uid, objects[-1].sop_class_uid}
    assert {ts for _, syntaxes in scp.requested for ts in syntaxes} == {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2"}


def test_receiver_that_only_takes_implicit_vr_gets_the_same_data(objects: list[ExportObject]) -> None:
    with FakeSCP(transfer_syntaxes=(ImplicitVRLittleEndian,)) as scp:
        report = send_objects(objects, _dest(scp), CALLING_AE)

        assert report.ok, report.summary()
        for obj in objects:
            received = scp.stored[obj.sop_instance_uid]
            assert received.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
            assert obj.path is not None
            original = dcmread(obj.path)
            assert received.get("PixelData") == original.get("PixelData")
            assert received.PatientID == original.PatientID


def test_structure_set_goes_after_every_ct(objects: list[ExportObject]) -> None:
    order: list[str] = []
    with FakeSCP() as scp:
        # Given in the wrong order: the sender puts CT first.
        report = send_objects(
            objects[::-1], _dest(scp), CALLING_AE, associations=3, progress=lambda r: order.append(r.obj.kind)
        )

    assert report.ok

    assert order[-1] == "RS"
    assert report.results[0].obj.kind == "RS"  # the report keeps the caller's order
    assert order.count("CT") == len(objects) - 1


def test_missing_or_mismatched_file_fails_alone(objects: list[ExportObject], tmp_path: Path) -> None:
    objects = objects[:-1]
    gone = objects[1]
    moved = tmp_path / "moved.dcm"
    gone.path.rename(moved)  # type: ignore[union-attr]
    wrong = dataclasses.replace(objects[2], sop_instance_uid="2.25.1")
    with FakeSCP() as scp:
        report = send_objects([objects[0], gone, wrong, *objects[3:]], _dest(scp), CALLING_AE)

        assert [(r.outcome, r.status) for r in report.unstored] == [(InstanceOutcome.FAILED, None)] * 2
        assert report.results[1].meaning.startswith("cannot read the file")
        assert "differs from the export's 2.25.1" in report.results[2].meaning
        assert set(scp.stored) == {o.sop_instance_uid for o in [objects[0], *objects[3:]]}


# -- objects that depend on others ----------------------------------------------------------------------------


def _part10(kind: ObjectKind, sop_class: str, uid: str) -> ExportObject:
    """A minimal Part 10 object in memory (the receiver here checks neither modules nor references)."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, uid, {"RP": "RTPLAN", "RD": "RTDOSE"}[kind.value]
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return ExportObject.from_bytes(kind, out.getvalue(), sop_class, uid)


def _plan_and_dose() -> list[ExportObject]:
    return [
        _part10(ObjectKind.RTPLAN, "1.2.840.10008.5.1.4.1.1.481.5", "2.25.1001"),
        _part10(ObjectKind.RTDOSE, "1.2.840.10008.5.1.4.1.1.481.2", "2.25.1002"),
    ]


def test_nothing_that_depends_on_a_failed_ct_is_sent(objects: list[ExportObject]) -> None:
    everything = objects + _plan_and_dose()
    refused = objects[4].sop_instance_uid
    with FakeSCP(statuses={refused: [0xA900]}) as scp:
        report = send_objects(everything, _dest(scp), CALLING_AE)

        assert set(scp.stored) == {o.sop_instance_uid for o in objects[:-1]} - {refused}
    assert [(r.obj.kind.value, r.outcome) for r in report.unstored] == [
        ("CT", InstanceOutcome.FAILED), ("RS", InstanceOutcome.NOT_SENT),
        ("RP", InstanceOutcome.NOT_SENT), ("RD", InstanceOutcome.NOT_SENT),
    ]  # fmt: skip
    assert report.results[-1].meaning == (
        "not sent: 1 of 16 CT images was not stored, and this RT Dose depends on them; send again once they are"
    )


def test_dependents_go_anyway_when_asked(objects: list[ExportObject]) -> None:
    everything = objects + _plan_and_dose()
    refused = objects[4].sop_instance_uid
    with FakeSCP(statuses={refused: [0xA900]}) as scp:
        report = send_objects(everything, _dest(scp), CALLING_AE, send_dependents=True)

        assert set(scp.stored) == {o.sop_instance_uid for o in everything} - {refused}
    assert [r.obj.sop_instance_uid for r in report.unstored] == [refused]


def test_dose_is_not_sent_when_its_plan_failed(objects: list[ExportObject]) -> None:
    plan, dose = _plan_and_dose()
    with FakeSCP(statuses={plan.sop_instance_uid: [0xC000]}) as scp:
        report = send_objects([objects[-1], plan, dose], _dest(scp), CALLING_AE)

        assert set(scp.stored) == {objects[-1].sop_instance_uid}
    assert [r.outcome for r in report.results] == [
        InstanceOutcome.STORED, InstanceOutcome.FAILED, InstanceOutcome.NOT_SENT,
    ]  # fmt: skip
    assert report.results[2].meaning == (
        "not sent: the RT Plan was not stored, and this RT Dose depends on them; send again once they are"
    )


# -- commitment that cannot be asked for ----------------------------------------------------------------------


def test_commitment_without_a_port_says_it_was_not_requested_and_why(objects: list[ExportObject]) -> None:
    with FakeSCP() as scp:
        report = send_objects(objects, _dest(scp), CALLING_AE, commit=True, commit_listen_port=None)

    assert report.all_stored and not report.ok  # stored, but the commitment asked for did not happen
    assert report.committed is None
    summary = report.summary()
    assert summary.splitlines() == [
        f"17 of 17 objects stored on {_dest(scp)}",
        "  storage commitment not requested: no port to receive the server's report is configured "
        "(dicom.commitment_port)",
    ]


# -- a server that breaks the protocol ------------------------------------------------------------------------


def _store_and_answer_with(answer: Callable[[Peer, Command], None]) -> Callable[[Peer], Any]:
    def script(p: Peer) -> Any:
        p.accept_association()
        command, _ = p.read_message()
        answer(p, command)
        return p.read_abort()

    return script


def _stale(p: Peer, command: Command) -> None:
    p.respond(1, Command(CommandField.C_STORE_RSP, responded_to=(command.message_id or 0) + 7, status=0,
                         affected_sop_class=command.affected_sop_class))  # fmt: skip


def _oversize(p: Peer, command: Command) -> None:
    p.send(struct.pack(">BBI", 0x04, 0, 1 << 20))


@pytest.mark.parametrize(
    ("answer", "cause"),
    [
        (_stale, "a C-STORE-RSP to message ID 8 where we awaited the C-STORE-RSP to message ID 1"),
        (_oversize, "P-DATA-TF PDU of 1048576 bytes, longer than the maximum of 65536 we announced"),
    ],
)
def test_a_server_breaking_the_protocol_gets_an_abort_and_the_report_names_it(
    objects: list[ExportObject], answer: Callable[[Peer, Command], None], cause: str
) -> None:
    with peer.listening(_store_and_answer_with(answer)) as (port, done):
        report = send_objects(objects[:1], Destination("PEER", "127.0.0.1", port), CALLING_AE, retries=0)

        assert done.result().source in (0, 2)  # the peer got our A-ABORT
    (result,) = report.results
    assert result.outcome == InstanceOutcome.NOT_SENT
    assert result.meaning == f"not confirmed: protocol error by the server: {cause}; association aborted (1 attempt)"


def test_the_association_request_names_the_product_and_our_maximum_length(objects: list[ExportObject]) -> None:
    def script(p: Peer) -> Any:
        rq = p.read()
        p.send(pdu.encode(pdu.AssociateRJ(1, 1, 7)))
        return rq

    with peer.listening(script) as (port, done), pytest.raises(SendError, match="called AE title not recognised"):
        send_objects(objects[:1], Destination("PEER", "127.0.0.1", port), CALLING_AE)

    user = done.result().user_information
    assert (user.implementation_class_uid, user.maximum_length) == (IMPLEMENTATION_CLASS_UID, 65536)


def test_a_retried_instance_never_overwrites_the_next_one_read_ahead(objects: list[ExportObject]) -> None:
    """The first instance (read when its turn came, not ahead) is refused twice for lack of resources while the
    next one waits, read and checked, in the association's buffers: each goes out with its own bytes."""
    cts = objects[:-1]
    busy = cts[0].sop_instance_uid
    with FakeSCP(statuses={busy: [0xA700, 0xA700]}) as scp:
        report = send_objects(cts, _dest(scp), CALLING_AE, associations=1, retries=3, backoff=0.01)

        assert report.ok, report.summary()
        assert scp.received == {o.sop_instance_uid: 3 if o.sop_instance_uid == busy else 1 for o in cts}
        assert set(scp.stored) == {o.sop_instance_uid for o in cts}
