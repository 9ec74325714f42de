"""The storage commitment listener, with pynetdicom playing the archive that reports back (as Orthanc does:
a new association, SCP role by role selection, N-EVENT-REPORT)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pynetdicom import AE, build_role

from rtexport.net.commitment import STORAGE_COMMITMENT_INSTANCE, STORAGE_COMMITMENT_PUSH, ReportListener
from rtexport.net.transport import Timeouts
from tests.support.orthanc import free_port

CT = "1.2.840.10008.5.1.4.1.1.2"


def _listener() -> ReportListener:
    return ReportListener("RTEXPORT", "127.0.0.1", free_port(), timeouts=Timeouts.uniform(10, artim=0.2))


@pytest.fixture
def listener() -> Iterator[ReportListener]:
    with _listener() as lst:
        yield lst


def _report(transaction: str, committed: list[str], failed: list[str]) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = transaction
    ok, bad = [], []
    for uid in committed:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = CT, uid
        ok.append(item)
    for uid in failed:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID, item.FailureReason = CT, uid, 0x0110
        bad.append(item)
    ds.ReferencedSOPSequence = DicomSequence(ok)
    if bad:
        ds.FailedSOPSequence = DicomSequence(bad)
    return ds


def _archive_reports(port: int, called: str, report: Dataset, event_type: int) -> int | None:
    """Associate as the archive (SCP role for storage commitment) and send the N-EVENT-REPORT; its status."""
    ae = AE(ae_title="ARCHIVE")
    ae.add_requested_context(STORAGE_COMMITMENT_PUSH)
    role = build_role(STORAGE_COMMITMENT_PUSH, scp_role=True)
    assoc = ae.associate("127.0.0.1", port, ae_title=called, ext_neg=[role])
    if not assoc.is_established:
        return None
    try:
        status, _ = assoc.send_n_event_report(report, event_type, STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_INSTANCE)
    finally:
        assoc.release()
    return int(status.Status)


def test_the_report_is_answered_and_handed_over(listener: ReportListener) -> None:
    report = _report("2.25.77", ["2.25.1", "2.25.2"], ["2.25.3"])

    assert _archive_reports(listener.port, "RTEXPORT", report, event_type=2) == 0x0000
    got = listener.wait("2.25.77", timeout=10)

    assert got is not None
    assert (got.committed, got.failed) == (("2.25.1", "2.25.2"), (("2.25.3", 0x0110),))
    assert listener.problems == []


def test_another_transaction_is_not_taken_for_ours(listener: ReportListener) -> None:
    assert _archive_reports(listener.port, "RTEXPORT", _report("2.25.78", ["2.25.1"], []), event_type=1) == 0

    assert listener.wait("2.25.79", timeout=0) is None


def test_a_call_to_another_ae_title_is_rejected() -> None:
    with _listener() as listener:
        assert _archive_reports(listener.port, "SOMEONE", _report("2.25.80", ["2.25.1"], []), event_type=1) is None

    assert listener.problems == [
        "storage commitment listener: association permanently rejected by us: called AE title not recognised"
    ]


def test_a_connection_that_never_asks_is_closed_by_the_artim_timer() -> None:
    with _listener() as listener, socket.create_connection(("127.0.0.1", listener.port), timeout=10) as idle:
        assert idle.recv(1) == b""  # nothing is ever sent: only the listener's ARTIM can end this

    assert listener.problems == [
        "storage commitment listener: no answer from the calling AE within 0.2 s while awaiting an A-ASSOCIATE-RQ "
        "(ARTIM)"
    ]
