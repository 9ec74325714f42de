"""The association: the PS3.8 state machine (9.2), its timers, and the transport it drives.

Every change of state goes through :func:`rtexport.net.fsm.transition`, PS3.8 Table 9-10 (states Sta1–Sta13,
events Evt1–Evt19, actions AE-/DT-/AR-/AA-n). :class:`Association` runs that machine on the calling thread: local
primitives are its methods (``request``, ``accept``, ``send_pdata``, ``release``, ``abort``) and PDUs are read
when the caller waits for one (``receive``), so there is no reactor thread and no queue between the socket and
the sender. The cells a requestor meets are all there, release collisions included (Sta9/Sta11); the acceptor
cells cover the storage commitment listener (Sta2, Sta3, Sta8, Sta13).

Timers: the ARTIM timer (PS3.8 9.1.5) bounds Sta2 (awaiting A-ASSOCIATE-RQ) and Sta13 (awaiting the peer's
close after our A-ABORT, A-ASSOCIATE-RJ or A-RELEASE-RP); the ACSE timer bounds the wait for the answer to our
association and release requests (PS3.8 leaves Sta5 and Sta7 untimed; a requestor must not wait forever); the
DIMSE timer (used by :mod:`.dimse`) bounds the wait for a response. An expired ACSE or DIMSE timer aborts the
association. Every wait is a deadline on an injectable monotonic clock, so a peer that trickles bytes cannot
stretch it.

What we receive is bounded by what we announced: a P-DATA-TF PDU longer than our Maximum Length (PS3.8 D.1)
is a protocol error answered with A-ABORT, and is never read into memory.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable

from rtexport.net import pdu, trace
from rtexport.net.fsm import COLLISION_AWAITING_LOCAL, Action, Event, State, transition
from rtexport.net.pdu import (
    PDU,
    Abort,
    AbortReason,
    AbortSource,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    ContextResult,
    PDataTF,
    PDUError,
    PDUType,
    ReleaseRP,
    ReleaseRQ,
)
from rtexport.net.transport import (
    Clock,
    ConnectionClosed,
    Deadline,
    Timeouts,
    Timer,
    Transport,
)

LOGGER = logging.getLogger(__name__)
# Our Maximum Length (PS3.8 D.1): what we accept in one P-DATA-TF PDU, as requestor and as acceptor.
MAX_PDU_LENGTH = 65536


_REJECT_REASONS = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognised",
    (1, 7): "called AE title not recognised",
    (2, 1): "no reason given (ACSE)",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit of associations exceeded",
}


class AssociationRejected(Exception):
    """The peer answered A-ASSOCIATE-RJ (PS3.8 9.3.4)."""

    def __init__(self, rj: AssociateRJ, by: str = "the server") -> None:
        self.rj = rj
        self.permanent = rj.result == 1
        text = _REJECT_REASONS.get((rj.source, rj.reason), f"source {rj.source}, reason {rj.reason}")
        super().__init__(f"association {'permanently' if self.permanent else 'transiently'} rejected by {by}: {text}")


class AssociationLost(Exception):
    """The association is gone (aborted, closed, timed out, protocol error); nothing pending is confirmed.
    ``expired``: it ended because the operation's :class:`Deadline` passed (retrying would not help)."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


_EVENT_OF = {
    PDUType.ASSOCIATE_RQ: Event.ASSOCIATE_RQ,
    PDUType.ASSOCIATE_AC: Event.ASSOCIATE_AC,
    PDUType.ASSOCIATE_RJ: Event.ASSOCIATE_RJ,
    PDUType.P_DATA_TF: Event.PDATA_TF,
    PDUType.RELEASE_RQ: Event.RELEASE_RQ,
    PDUType.RELEASE_RP: Event.RELEASE_RP,
    PDUType.ABORT: Event.ABORT,
}
_PROVIDER_REASONS = {  # PS3.8 Table 9-26
    0: "reason not specified",
    1: "unrecognized PDU",
    2: "unexpected PDU",
    4: "unrecognized PDU parameter",
    5: "unexpected PDU parameter",
    6: "invalid PDU parameter value",
}


class Association:
    """One association, as requestor or acceptor; one thread at a time uses it.

    ``accepted`` maps each accepted presentation context ID to (abstract syntax, transfer syntax);
    ``peer_max_pdu`` is the peer's Maximum Length (0: no limit), which sizes what we send.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        requestor: bool,
        timeouts: Timeouts,
        clock: Clock = time.monotonic,
        deadline: Deadline | None = None,
        label: str = "",
    ) -> None:
        self.transport = transport
        self.requestor = requestor
        self.timeouts = timeouts
        self.clock = clock
        self.deadline = deadline
        self.state = State.IDLE
        self.peer = "the server" if requestor else "the calling AE"
        self.label = f"#{trace.association_number()} {label}".rstrip()
        self.peer_max_pdu = 0
        self.accepted: dict[int, tuple[str, str]] = {}
        self.request_pdu: AssociateRQ | None = None

    def timer(self, seconds: float) -> Timer:
        """A timer of ``seconds`` that ends no later than the operation's deadline."""
        return Timer(seconds, self.clock, self.deadline)

    def _trace(self, outgoing: bool, record: PDU) -> None:
        if trace.enabled():
            trace.line(self.label, outgoing, trace.describe(record))

    # -- the machine ---------------------------------------------------------------------------------------

    def _event(self, event: Event, reason: AbortReason = AbortReason.NOT_SPECIFIED) -> Action:
        """Move the machine and carry out the transport side of the action (sends of A-ABORT, closes)."""
        action, self.state = transition(self.state, event, requestor=self.requestor)
        if action in (Action.AA_1, Action.AA_7, Action.AA_8):
            source = AbortSource.SERVICE_USER if action is Action.AA_1 else AbortSource.SERVICE_PROVIDER
            abort = Abort(source, reason if action is not Action.AA_1 else 0)
            self._trace(True, abort)
            LOGGER.debug("association %s: A-ABORT sent (source %d, reason %d)", self.label, abort.source, abort.reason)
            with contextlib.suppress(OSError):
                self.transport.send(pdu.encode(abort))
        if self.state == State.AWAITING_CLOSE and action is not Action.AA_6 and action is not Action.AA_7:
            self._await_close()
        elif self.state == State.IDLE:
            self.transport.close()
        return action

    def _await_close(self) -> None:
        """Sta13: let the peer close first (so our last PDU is not lost to a reset), for at most ARTIM."""
        closed = self.transport.drain_until_closed(Timer(self.timeouts.artim, self.clock))  # ARTIM, even late
        self._event(Event.TRANSPORT_CLOSED if closed else Event.ARTIM_EXPIRED)

    @property
    def established(self) -> bool:
        return self.state == State.ESTABLISHED

    @property
    def closed(self) -> bool:
        return self.state == State.IDLE

    def _receive_pdu(self, timer: Timer, awaiting: str, on_timeout: Event) -> PDU:
        """The next PDU. Aborts, closes, timeouts and protocol errors end the association: AssociationLost
        naming the cause. PDUs the state does not allow are answered per the table (mostly A-ABORT)."""
        try:
            pdu_type, body = self.transport.read_pdu(timer)
            received = pdu.decode(pdu_type, body)
        except TimeoutError as e:
            self._event(on_timeout)
            if self.deadline is not None and self.deadline.expired():
                raise AssociationLost(
                    f"{self.deadline.why()} while awaiting {awaiting} from {self.peer}", expired=True
                ) from e
            raise AssociationLost(
                f"no answer from {self.peer} within {timer.seconds:g} s while awaiting {awaiting}"
            ) from e
        except PDUError as e:
            self._event(Event.INVALID_PDU, e.reason)
            raise AssociationLost(f"protocol error by {self.peer}: {e}; association aborted") from e
        except (ConnectionClosed, OSError) as e:
            if self.state != State.IDLE:
                self._event(Event.TRANSPORT_CLOSED)
            cause = "closed the connection" if isinstance(e, ConnectionClosed) else f"connection lost ({e})"
            raise AssociationLost(f"{self.peer} {cause} while we were awaiting {awaiting}") from e
        self._trace(False, received)
        kind = pdu.type_of(received)
        action = self._event(_EVENT_OF[kind], AbortReason.UNEXPECTED_PDU)
        if action is Action.AA_3 or (action is Action.AA_2 and isinstance(received, Abort)):
            assert isinstance(received, Abort)
            if received.source == AbortSource.SERVICE_PROVIDER:
                why = _PROVIDER_REASONS.get(received.reason, f"reason {received.reason}")
                raise AssociationLost(f"aborted by the DICOM layer of {self.peer}: {why}")
            raise AssociationLost(f"aborted by {self.peer}")
        if action in (Action.AA_1, Action.AA_8):
            raise AssociationLost(
                f"protocol error by {self.peer}: unexpected {kind.title} while awaiting {awaiting}; association aborted"
            )
        return received

    # -- requestor -----------------------------------------------------------------------------------------

    @classmethod
    def request(
        cls,
        rq: AssociateRQ,
        open_socket: Callable[[], socket.socket],
        *,
        timeouts: Timeouts,
        clock: Clock = time.monotonic,
        deadline: Deadline | None = None,
        label: str = "",
    ) -> Association:
        """Open the transport with ``open_socket`` and negotiate ``rq``; returns an established association.
        ``label`` names the peer in logs and the trace.

        Raises OSError (connect, TLS), AssociationRejected or AssociationLost."""
        transition(State.IDLE, Event.ASSOCIATE_REQUEST, requestor=True)  # AE-1: open the transport
        sock = open_socket()  # on OSError: AA-4, back to Sta1 with nothing to close
        assoc = cls(Transport(sock, rq.user.max_pdu_length, timeouts.send), requestor=True, timeouts=timeouts,
                    clock=clock, deadline=deadline, label=label)  # fmt: skip
        assoc.state = State.AWAITING_TRANSPORT_OPEN
        assoc.request_pdu = rq
        assoc._send_then(Event.TRANSPORT_CONFIRM, rq)  # AE-2
        answer = assoc._receive_pdu(
            assoc.timer(timeouts.acse), "the answer to the association request", Event.ABORT_REQUEST
        )
        if isinstance(answer, AssociateRJ):
            LOGGER.info("association %s rejected: %s", assoc.label, AssociationRejected(answer))
            raise AssociationRejected(answer)
        assert isinstance(answer, AssociateAC)
        proposed = {c.context_id: c for c in rq.contexts}
        for ctx in answer.contexts:
            if ctx.result == ContextResult.ACCEPTANCE and ctx.context_id in proposed:
                offered = proposed[ctx.context_id]
                if ctx.transfer_syntax not in offered.transfer_syntaxes:
                    assoc.abort()
                    raise AssociationLost(
                        f"protocol error by {assoc.peer}: it accepted context {ctx.context_id} with transfer "
                        f"syntax {ctx.transfer_syntax}, which was not proposed; association aborted"
                    )
                assoc.accepted[ctx.context_id] = (offered.abstract_syntax, ctx.transfer_syntax)
        assoc.peer_max_pdu = answer.user.max_pdu_length
        LOGGER.info(
            "association %s established: %d of %d presentation contexts accepted, peer max PDU %d",
            assoc.label, len(assoc.accepted), len(rq.contexts), assoc.peer_max_pdu,
        )  # fmt: skip
        for cid, (abstract, syntax) in sorted(assoc.accepted.items()):
            LOGGER.debug("association %s: context %d accepted: %s in %s", assoc.label, cid, abstract, syntax)
        return assoc

    # -- acceptor ------------------------------------------------------------------------------------------

    @classmethod
    def accept(
        cls,
        sock: socket.socket,
        decide: Callable[[AssociateRQ], AssociateAC | AssociateRJ],
        *,
        max_pdu_length: int,
        timeouts: Timeouts,
        clock: Clock = time.monotonic,
        label: str = "",
    ) -> Association:
        """Answer the association request arriving on ``sock`` with ``decide``'s answer.

        Raises AssociationLost when no request arrives within ARTIM, and AssociationRejected when ``decide``
        rejected it (after the A-ASSOCIATE-RJ is sent)."""
        transport = Transport(sock, max_pdu_length, timeouts.send)
        assoc = cls(transport, requestor=False, timeouts=timeouts, clock=clock, label=label)
        assoc._event(Event.TRANSPORT_INDICATION)  # AE-5: ARTIM starts
        rq = assoc._receive_pdu(Timer(timeouts.artim, clock), "an A-ASSOCIATE-RQ (ARTIM)", Event.ARTIM_EXPIRED)
        assert isinstance(rq, AssociateRQ)
        assoc.request_pdu = rq
        answer = decide(rq)
        if isinstance(answer, AssociateRJ):
            assoc._send_then(Event.ASSOCIATE_REJECT, answer)
            raise AssociationRejected(answer, by="us")
        assoc._send_then(Event.ASSOCIATE_ACCEPT, answer)
        offered = {c.context_id: c.abstract_syntax for c in rq.contexts}
        for ctx in answer.contexts:
            if ctx.result == ContextResult.ACCEPTANCE:
                assoc.accepted[ctx.context_id] = (offered[ctx.context_id], ctx.transfer_syntax)
        assoc.peer_max_pdu = rq.user.max_pdu_length
        return assoc

    def _send_then(self, event: Event, record: PDU) -> None:
        """Send the PDU of a local primitive, then let the machine move (so Sta13 waits after it is sent)."""
        transition(self.state, event, requestor=self.requestor)  # raises before anything is sent
        self._trace(True, record)
        try:
            self.transport.send(pdu.encode(record))
        except OSError as e:
            alert = self.transport.tls_alert()
            self._event(Event.TRANSPORT_CLOSED)
            if alert is not None:  # TLS 1.3: the server's refusal of our certificate came after the handshake
                raise AssociationLost(f"connection to {self.peer} lost while sending: {alert}") from alert
            raise AssociationLost(f"connection to {self.peer} lost while sending: {e}") from e
        self._event(event)

    # -- data transfer -------------------------------------------------------------------------------------

    def send_pdata(self, data: bytes | bytearray | memoryview | list[bytes | memoryview]) -> None:
        """Send encoded P-DATA-TF PDUs (DT-1, or AR-7 while the peer awaits our release answer): one buffer, or
        the parts of one (PDU headers and the data between them), sent by gathering writes."""
        if self.state not in (State.ESTABLISHED, State.AWAITING_LOCAL_RELEASE_RESPONSE):
            raise AssociationLost(f"the association with {self.peer} is no longer established")
        if trace.enabled():
            trace.line(self.label, True, trace.describe_raw(b"".join(data) if isinstance(data, list) else data))
        timeout = self.timeouts.send
        if self.deadline is not None:
            timeout = min(timeout, self.deadline.remaining())
        try:
            if isinstance(data, list):
                self.transport.send_parts(data, timeout)
            else:
                self.transport.send(data, timeout)
        except TimeoutError as e:
            self._event(Event.ABORT_REQUEST)
            if self.deadline is not None and self.deadline.expired():
                raise AssociationLost(f"{self.deadline.why()} while sending to {self.peer}", expired=True) from e
            raise AssociationLost(f"{self.peer} stopped reading (nothing taken for {self.timeouts.send:g} s)") from e
        except OSError as e:
            self._event(Event.TRANSPORT_CLOSED)
            raise AssociationLost(f"connection to {self.peer} lost while sending: {e}") from e

    def receive(self, timer: Timer, awaiting: str) -> PDataTF | None:
        """The next P-DATA-TF; None when the peer released the association (answered, then closed)."""
        if self.state != State.ESTABLISHED:
            raise AssociationLost(f"the association with {self.peer} is no longer established")
        received = self._receive_pdu(timer, awaiting, Event.ABORT_REQUEST)
        if isinstance(received, ReleaseRQ):
            self._send_then(Event.RELEASE_RESPONSE, ReleaseRP())  # AR-4, then Sta13
            return None
        assert isinstance(received, PDataTF)
        return received

    # -- the end -------------------------------------------------------------------------------------------

    def release(self) -> None:
        """A-RELEASE (AR-1); a release collision is answered (AR-8, AR-9). Never raises: whatever goes
        wrong, the association ends closed (a late failure here loses nothing already confirmed)."""
        if not self.established:
            self.abort()
            return
        try:
            self._send_then(Event.RELEASE_REQUEST, ReleaseRQ())
            timer = self.timer(self.timeouts.acse)
            while not self.closed:
                # AR-6: a P-DATA-TF arriving now answers nothing we still wait for; it is dropped.
                self._receive_pdu(timer, "the answer to the release request", Event.ABORT_REQUEST)
                if self.state in COLLISION_AWAITING_LOCAL:  # AR-8 or AR-10: we answer the peer's release too
                    self._send_then(Event.RELEASE_RESPONSE, ReleaseRP())
        except AssociationLost:
            pass
        self.abort()

    def abort(self) -> None:
        """A-ABORT (AA-1), then wait for the peer to close (Sta13, ARTIM). Nothing happens when closed."""
        if self.state in (State.IDLE, State.AWAITING_CLOSE):
            return
        self._event(Event.ABORT_REQUEST)
