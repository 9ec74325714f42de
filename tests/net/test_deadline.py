"""Every wait is bounded: a silent archive (it accepts the association and never answers) ends the send at the
deadline, with one problem naming the server and what was and was not confirmed."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from rtexport.export.objects import ExportObject
from rtexport.net.association import Association, AssociationLost
from rtexport.net.outcome import InstanceOutcome
from rtexport.net.pdu import AssociateRQ, ProposedContext, UserInformation
from rtexport.net.send import DEFAULT_ASSOCIATIONS, Destination, send_objects
from rtexport.net.transport import Deadline, Timeouts, connect

from .conftest import CALLING_AE
from .peer import SilentArchive


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_deadline_limits_without_progress_and_in_all() -> None:
    clock = FakeClock()
    deadline = Deadline(total=600, idle=300, clock=clock)
    clock.now += 299
    assert not deadline.expired()
    deadline.progress()  # something confirmed: 300 s more without progress, but never past the total
    clock.now += 250
    assert deadline.remaining() == pytest.approx(50)
    deadline.progress()
    assert deadline.remaining() == pytest.approx(51)  # the total limit comes first now
    clock.now += 51
    assert deadline.expired()
    assert deadline.why() == "the deadline of 600 s for the whole operation passed"
    assert Deadline(idle=5, clock=clock).why() == "nothing was confirmed for 5 s"


def test_a_silent_archive_ends_the_send_at_the_deadline_not_after_every_retry(objects: list[ExportObject]) -> None:
    """Without the deadline: 17 objects x 4 attempts x 30 s. With 1.5 s without progress: about 1.5 s."""
    with SilentArchive() as archive:
        dest = Destination("SILENT", "127.0.0.1", archive.port)
        report = send_objects(objects, dest, CALLING_AE, timeout=30, retries=3, idle_s=1.5, artim=0.5)

    assert not report.ok
    assert report.problems[0] == (
        f"gave up on {dest}: nothing was confirmed for 1.5 s; 0 of {len(objects)} objects confirmed stored, "
        f"{len(objects)} not confirmed (sending again sends those)"
    )
    assert {r.outcome for r in report.results} == {InstanceOutcome.NOT_SENT}
    assert report.seconds < 10  # far below the 30 s of a single DIMSE timeout
    # Not resent after the deadline: one association per slot, no retries.
    assert archive.associations <= DEFAULT_ASSOCIATIONS


def test_progress_moves_the_limit_and_the_report_counts_what_was_confirmed(objects: list[ExportObject]) -> None:
    with SilentArchive(answer=5) as archive:
        dest = Destination("SILENT", "127.0.0.1", archive.port)
        report = send_objects(objects, dest, CALLING_AE, associations=1, idle_s=1.0, artim=0.5)

    assert [r.outcome for r in report.results[:5]] == [InstanceOutcome.STORED] * 5
    assert all(r.outcome == InstanceOutcome.NOT_SENT for r in report.results[5:])
    assert report.problems[0].startswith(f"gave up on {dest}: nothing was confirmed for 1 s; 5 of {len(objects)} ")


def test_a_total_deadline_bounds_an_association_request_that_is_never_answered() -> None:
    """A server that accepts the connection and never answers the A-ASSOCIATE-RQ: the ACSE timer is 30 s, the
    operation's deadline 0.5 s."""
    with socket.create_server(("127.0.0.1", 0)) as server, ThreadPoolExecutor(1) as pool:
        port = server.getsockname()[1]
        rq = AssociateRQ("X", CALLING_AE, (ProposedContext(1, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",)),),
                         UserInformation(16384))  # fmt: skip
        future = pool.submit(
            Association.request, rq, lambda: connect("127.0.0.1", port, 5), timeouts=Timeouts.uniform(30, 0.2),
            deadline=Deadline(total=0.5),
        )  # fmt: skip
        with pytest.raises(AssociationLost, match=r"the deadline of 0\.5 s for the whole operation passed") as e:
            future.result(timeout=10)
        assert e.value.expired
