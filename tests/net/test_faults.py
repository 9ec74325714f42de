"""Faults at the receiver: each is reported exactly, nothing is lost, and sending again completes the rest."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pydicom.uid import ImplicitVRLittleEndian

from rtexport.errors import SendError
from rtexport.export.objects import ExportObject
from rtexport.export.send import Destination, InstanceOutcome, send_objects
from tests.support.orthanc import free_port

from .conftest import CALLING_AE
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
    with pytest.raises(SendError, match=rf"X@127\.0\.0\.1:{port}: connection refused; check that the server"):
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
        lost = objects[3].sop_instance_uid

        assert not report.ok
        assert [r.obj.sop_instance_uid for r in report.unstored] == [lost]
        (result,) = report.unstored
        assert result.outcome == InstanceOutcome.NOT_SENT
        assert "aborted" in result.meaning
        # Everything after the abort went on a new association.
        assert {r.obj.sop_instance_uid for r in report.stored} == set(scp.stored)

        again = send_objects(objects, _dest(scp), CALLING_AE, associations=1, retries=0)
        assert again.ok
        assert set(scp.stored) == {o.sop_instance_uid for o in objects}


def test_no_answer_times_out_and_is_resent(objects: list[ExportObject]) -> None:
    with FakeSCP(hang_at=2, hang_seconds=2.0) as scp:
        report = send_objects(objects[:4], _dest(scp), CALLING_AE, associations=1, timeout=0.5, retries=0)

        assert [r.outcome for r in report.results] == [
            InstanceOutcome.STORED, InstanceOutcome.NOT_SENT, InstanceOutcome.STORED, InstanceOutcome.STORED,
        ]  # fmt: skip
        assert "no answer from the server in time" in report.results[1].meaning

        again = send_objects(objects[:4], _dest(scp), CALLING_AE, associations=1, timeout=0.5, retries=0)
        assert again.ok
        assert set(scp.stored) == {o.sop_instance_uid for o in objects[:4]}


def test_out_of_resources_twice_then_success(objects: list[ExportObject]) -> None:
    busy = objects[2].sop_instance_uid
    with FakeSCP(statuses={busy: [0xA700, 0xA700]}) as scp:
        report = send_objects(objects, _dest(scp), CALLING_AE, retries=3, backoff=0.01)

        assert report.ok, report.summary()
        assert scp.received[busy] == 3


def test_out_of_resources_beyond_retries_is_reported(objects: list[ExportObject]) -> None:
    busy = objects[2].sop_instance_uid
    with FakeSCP(statuses={busy: [0xA700, 0xA700]}) as scp:
        report = send_objects(objects, _dest(scp), CALLING_AE, retries=1, backoff=0.01)

        (failed,) = report.unstored
        assert (failed.obj.sop_instance_uid, failed.outcome, failed.status) == (busy, InstanceOutcome.FAILED, 0xA700)
        assert failed.meaning == "out of resources"

        again = send_objects(objects, _dest(scp), CALLING_AE, retries=1, backoff=0.01)
        assert again.ok


@pytest.mark.parametrize(
    ("status", "meaning"),
    [(0xA900, "data set does not match SOP class"), (0xC000, "cannot understand"), (0x0122, "SOP class not supported")],
)
def test_permanent_failure_is_not_retried(objects: list[ExportObject], status: int, meaning: str) -> None:
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
    assert report.results[0].meaning == "warning: coercion of data elements"


def test_only_needed_contexts_are_proposed(objects: list[ExportObject]) -> None:
    with FakeSCP() as scp:
        send_objects(objects, _dest(scp), CALLING_AE, associations=1)

    assert {ab for ab, _ in scp.requested} == {objects[0].sop_class_uid, objects[-1].sop_class_uid}
    assert {ts for _, syntaxes in scp.requested for ts in syntaxes} == {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2"}


def test_receiver_that_only_takes_implicit_vr_gets_the_same_data(objects: list[ExportObject]) -> None:
    from pydicom import dcmread

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
