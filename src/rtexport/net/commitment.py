"""Storage Commitment Push Model, SCU side (PS3.4 J): the N-ACTION request and a listener for the report.

The request goes as N-ACTION-RQ on an association we open (:func:`request`); the server answers at once and
sends its N-EVENT-REPORT later, usually on a new association to us (PS3.4 J.3.3), so :class:`ReportListener`
is a small acceptor on the same stack as the sender: :class:`Association.accept` runs the acceptor half of the
PS3.8 state machine (ARTIM in Sta2 and Sta13), :class:`Dimse` reads the request and writes the response. It
accepts the Storage Commitment Push Model SOP class (with the SCP/SCU role selection the server proposes, PS3.7
D.3.3.4) and Verification, for one called AE title, and keeps the reports until :meth:`ReportListener.wait`
takes them.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.status import STORAGE_COMMITMENT_SERVICE_CLASS_STATUS

from rtexport.dicom.common import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from rtexport.errors import SendError
from rtexport.net.acceptor import Acceptor
from rtexport.net.association import MAX_PDU_LENGTH, Association, AssociationLost, AssociationRejected
from rtexport.net.dimse import (
    Command,
    CommandField,
    Dimse,
    Message,
    decode_data_set,
    encode_data_set,
    status_meaning,
)
from rtexport.net.link import ConnectFailed, Link
from rtexport.net.outcome import Destination, Instance, server_context
from rtexport.net.pdu import (
    APPLICATION_CONTEXT,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    ProposedContext,
    RoleSelection,
    UserInformation,
    answer_contexts,
)
from rtexport.net.transport import Clock, Timeouts

STORAGE_COMMITMENT_PUSH = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"  # the well-known SOP instance (PS3.4 J.3.5)
VERIFICATION = "1.2.840.10008.1.1"
LOGGER = logging.getLogger(__name__)
SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
_LISTENER_CONNECTIONS = 8


@dataclass(frozen=True)
class CommitmentReport:
    """What the server committed (PS3.4 J.3.3): SOP Instance UIDs, and the failed ones with their reason."""

    transaction_uid: str
    committed: tuple[str, ...]
    failed: tuple[tuple[str, int | None], ...]

    @classmethod
    def from_data_set(cls, ds: Dataset) -> CommitmentReport:
        committed = tuple(str(r.ReferencedSOPInstanceUID) for r in ds.get("ReferencedSOPSequence", []))
        failed = tuple(
            (str(r.ReferencedSOPInstanceUID), r.get("FailureReason")) for r in ds.get("FailedSOPSequence", [])
        )
        return cls(str(ds.get("TransactionUID", "")), committed, failed)


def action_data_set(transaction_uid: str, refs: Sequence[tuple[str, str]]) -> Dataset:
    """The N-ACTION-RQ data set: Transaction UID and one Referenced SOP item per (class, instance) (PS3.4 J.3.2)."""
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    items = []
    for sop_class, sop_instance in refs:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        items.append(item)
    ds.ReferencedSOPSequence = DicomSequence(items)
    return ds


def request(dimse: Dimse, transaction_uid: str, refs: Sequence[tuple[str, str]]) -> str | None:
    """Send N-ACTION-RQ (Request Storage Commitment, action type 1) and await its response.

    Returns None when the server took the request, else why not. Raises AssociationLost."""
    ctx = next((c for c, (a, _) in sorted(dimse.assoc.accepted.items()) if a == STORAGE_COMMITMENT_PUSH), None)
    if ctx is None:
        return "the server did not accept the Storage Commitment Push Model SOP class"
    command = Command(
        CommandField.N_ACTION_RQ,
        message_id=dimse.next_message_id(),
        requested_sop_class=STORAGE_COMMITMENT_PUSH,
        requested_sop_instance=STORAGE_COMMITMENT_INSTANCE,
        action_type_id=1,
        data_set_type=0x0000,
    )
    dimse.send(ctx, command, encode_data_set(action_data_set(transaction_uid, refs), dimse.assoc.accepted[ctx][1]))
    status = dimse.await_response(command).command.status
    if status != 0x0000:
        assert status is not None
        meaning = status_meaning(status, STORAGE_COMMITMENT_SERVICE_CLASS_STATUS)
        return f"the server answered the request (N-ACTION) with status 0x{status:04X} ({meaning})"
    return None


class ReportListener(Acceptor):
    """Listens on ``(host, port)`` as ``ae_title`` for Storage Commitment reports, on a background thread; with
    ``ssl_context`` (a server context), every connection is TLS.

    ::

        with ReportListener("RTEXPORT", "127.0.0.1", 11113) as listener:
            ...  # send the N-ACTION
            report = listener.wait(transaction_uid, timeout=60)
    """

    def __init__(
        self,
        ae_title: str,
        host: str,
        port: int,
        *,
        timeouts: Timeouts | None = None,
        clock: Clock = time.monotonic,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.timeouts = timeouts or Timeouts()
        super().__init__(host, port, ssl_context=ssl_context, max_connections=_LISTENER_CONNECTIONS,
                         handshake_s=self.timeouts.artim, name="storage commitment listener")  # fmt: skip
        self.ae_title = ae_title
        self.clock = clock
        self.problems: list[str] = []  # associations refused or broken, in the words of their cause
        self._reports: dict[str, CommitmentReport] = {}
        self._cond = threading.Condition()

    def __enter__(self) -> ReportListener:
        """Bind and listen (raises OSError when the port cannot be had), then serve in the background."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self, transaction_uid: str, timeout: float) -> CommitmentReport | None:
        """The report of ``transaction_uid``, or None if none arrived within ``timeout`` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: transaction_uid in self._reports, timeout)
            return self._reports.get(transaction_uid)

    def tls_failed(self, peer: tuple[str, int], e: OSError) -> None:
        self._note(f"storage commitment listener: TLS handshake failed: {e}")

    def decide(self, rq: AssociateRQ) -> AssociateAC | AssociateRJ:
        """Accept the association if it calls us with the DICOM application context (PS3.8 9.3.4 reasons)."""
        if rq.called_ae != self.ae_title:
            return AssociateRJ(1, 1, 7)
        if rq.application_context != APPLICATION_CONTEXT:
            return AssociateRJ(1, 1, 2)
        answers = answer_contexts(rq.contexts, (STORAGE_COMMITMENT_PUSH, VERIFICATION), SYNTAXES)
        # The server takes the SCP role to send N-EVENT-REPORT to us: accept the roles it proposes.
        roles = tuple(RoleSelection(r.sop_class_uid, r.scu, r.scp) for r in rq.user.roles
                      if r.sop_class_uid == STORAGE_COMMITMENT_PUSH)  # fmt: skip
        user = UserInformation(MAX_PDU_LENGTH, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, roles)
        return AssociateAC(rq.called_ae, rq.calling_ae, answers, user)

    def handle(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        try:
            assoc = Association.accept(
                sock, self.decide, max_pdu_length=MAX_PDU_LENGTH, timeouts=self.timeouts, clock=self.clock,
                label=f"commitment listener <- {peer[0]}",
            )  # fmt: skip
        except (AssociationLost, AssociationRejected) as e:
            self._note(f"storage commitment listener: {e}")
            return
        dimse = Dimse(assoc)
        try:
            while True:
                message = dimse.receive("a request")
                if message is None:
                    return
                self._answer(dimse, message)
        except AssociationLost as e:
            self._note(f"storage commitment listener: {e}")
        finally:
            assoc.abort()

    def _answer(self, dimse: Dimse, message: Message) -> None:
        command = message.command
        status = 0x0000
        if command.command_field == CommandField.N_EVENT_REPORT_RQ and message.data_set is not None:
            try:
                report = CommitmentReport.from_data_set(
                    decode_data_set(message.data_set, dimse.assoc.accepted[message.context_id][1])
                )
            except Exception as e:  # pydicom raises many kinds on a malformed data set; the server hears 0x0110
                self._note(f"storage commitment listener: unreadable N-EVENT-REPORT data set ({e})")
                status = 0x0110
            else:
                with self._cond:
                    self._reports[report.transaction_uid] = report
                    self._cond.notify_all()
            answer: int = CommandField.N_EVENT_REPORT_RSP
        elif command.command_field == CommandField.C_ECHO_RQ:
            answer = CommandField.C_ECHO_RSP
        else:
            self._note(f"storage commitment listener: {command.name} refused (unrecognised operation)")
            answer, status = command.command_field | 0x8000, 0x0211
        dimse.send(
            message.context_id,
            Command(
                answer,
                responded_to=command.message_id,
                affected_sop_class=command.affected_sop_class,
                affected_sop_instance=command.affected_sop_instance,
                event_type_id=command.event_type_id,
                status=status,
            ),
        )

    def _note(self, problem: str) -> None:
        LOGGER.info("%s", problem)
        with self._cond:
            self.problems.append(problem)


def _listen_host(configured: str, link: Link) -> str:
    """The configured address, else the local address of our association to the server: the interface the
    server reaches us on, never every interface."""
    if configured:
        return configured
    if link.dimse is not None:
        return str(link.dimse.assoc.transport.sock.getsockname()[0])
    return "127.0.0.1"


def request_commitment(
    objects: Sequence[Instance],
    dest: Destination,
    calling_ae: str,
    listen_port: int,
    *,
    listen_host: str = "",
    timeout: float = 60,
    network_timeout: float = 30,
) -> tuple[tuple[str, ...], tuple[str, ...], str | None]:
    """Storage Commitment push model (PS3.4 J): N-ACTION, then the server's N-EVENT-REPORT on a new association
    to our listener, awaited ``timeout`` seconds (``network_timeout`` bounds each network wait). The listener
    binds ``listen_host`` (default: our address on the association to the server) and speaks TLS when ``dest``
    does, with the same certificate. Returns (committed UIDs, failed UIDs, problem or None)."""
    if not objects:
        return (), (), None
    transaction = f"2.25.{uuid.uuid4().int}"
    contexts = (ProposedContext(1, STORAGE_COMMITMENT_PUSH, tuple(SYNTAXES)),)
    timeouts = Timeouts.uniform(network_timeout)
    link = Link(dest, calling_ae, contexts, timeouts, dest.ssl_context())
    try:
        listener_tls = server_context(dest.tls, f"storage commitment listener for {dest}") if dest.tls else None
        dimse = link.open()
    except (ConnectFailed, SendError) as e:
        return (), (), f"storage commitment not requested: {e}"
    host = _listen_host(listen_host, link)
    with contextlib.ExitStack() as stack:
        stack.callback(link.close)
        try:
            listener = stack.enter_context(
                ReportListener(calling_ae, host, listen_port, timeouts=timeouts, ssl_context=listener_tls)
            )
        except OSError as e:
            return (), (), f"storage commitment not requested: cannot listen on {host} port {listen_port}: {e}"
        LOGGER.info("storage commitment: listening on %s port %d for %s's report", host, listen_port, dest)
        try:
            refused = request(dimse, transaction, [(o.sop_class_uid, o.sop_instance_uid) for o in objects])
        except AssociationLost as e:
            return (), (), f"storage commitment request (N-ACTION) not answered: {e}"
        link.close()
        if refused is not None:
            return (), (), f"storage commitment request (N-ACTION) refused: {refused}"
        report = listener.wait(transaction, timeout)
    if report is None:
        heard = "; ".join(listener.problems)
        return (), (), (
            f"storage commitment: no N-EVENT-REPORT from {dest} within {timeout:g} s; "
            f"check that the server knows AE title '{calling_ae}' with this host and port {listen_port}"
            + (f" ({heard})" if heard else "")
        )  # fmt: skip
    LOGGER.info("storage commitment: %d committed, %d failed", len(report.committed), len(report.failed))
    return report.committed, tuple(uid for uid, _ in report.failed), None
