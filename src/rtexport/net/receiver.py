"""A Storage SCP (PS3.4 B): takes CT Image and RT Structure Set Storage from allowed peers and hands each
instance to a :class:`Sink`, answering success only once the sink has it safe.

Association policy: the called AE title must be ours (else rejected, reason 7), the calling AE title one of the
allowed ones (else reason 3) and the peer's address in the allowed networks (else reason 1); presentation
contexts of other SOP classes are rejected (abstract syntax not supported) and Verification is accepted. Only
uncompressed little endian transfer syntaxes are accepted: the importer reads the pixel data as it is stored.

Each instance is checked before it is handed over: its data set must be readable to its last byte (a
truncated data set is refused with 0xC000, cannot understand), and its SOP Class and Instance UIDs must be those
of the C-STORE (else 0xA900). A sink that runs out of room answers 0xA700 (out of resources) and keeps what it
confirmed before. A peer that aborts mid-transfer loses only the unconfirmed instance: nothing of it is kept.

Per association the data set is assembled in one reused buffer, its CRC-32 computed fragment by fragment as it
arrives and, when the sink offers a :class:`Stage`, written there as it arrives too: the sink's work after the
last fragment is then small (the journal's head and sync), which is what the peer waits for.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from isal.isal_zlib import crc32  # zlib's CRC-32, 15x faster (carry-less multiply)

from rtexport.dicom.common import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from rtexport.net import trace
from rtexport.net.acceptor import Acceptor
from rtexport.net.association import Association, AssociationLost, AssociationRejected
from rtexport.net.dataset import DataSetError, Header, read_header
from rtexport.net.dimse import NO_DATA_SET, Command, CommandField, Dimse, Message
from rtexport.net.pdu import (
    APPLICATION_CONTEXT,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    UserInformation,
    answer_contexts,
    pdata_header,
)
from rtexport.net.transport import Clock, Timeouts

LOGGER = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
VERIFICATION = "1.2.840.10008.1.1"
STORAGE_CLASSES = (CT_IMAGE_STORAGE, RT_STRUCTURE_SET_STORAGE)
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
ACCEPTED_SYNTAXES = (EXPLICIT_VR_LE, IMPLICIT_VR_LE)  # our preference, in this order
# Our Maximum Length as receiver: a CT slice in one or two PDUs (fewer reads), bounded memory per association.
RECEIVER_MAX_PDU = 1 << 20

# C-STORE statuses (PS3.4 B.2.3, PS3.7 C)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATA_SET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
SOP_CLASS_NOT_SUPPORTED = 0x0122
UNRECOGNIZED_OPERATION = 0x0211


@dataclass(frozen=True)
class Received:
    """One instance as it arrived: its data set's bytes (in ``transfer_syntax``; a view valid only until
    :meth:`Sink.keep` returns), their CRC-32 computed as they arrived, what it says of itself, and who sent it."""

    header: Header
    transfer_syntax: str
    data_set: bytes | memoryview
    calling_ae: str
    peer: str
    data_crc: int | None = None
    stage: Stage | None = None  # where the sink had the data set written as it arrived


class Stage(Protocol):
    """A sink's place for one association's data sets, written fragment by fragment as they arrive (before the
    data set is checked: nothing of it counts until :meth:`Sink.keep` made it an instance). Each fragment is a
    view that stays valid until the message is kept or :meth:`reset` (the stage may write it meanwhile)."""

    def write(self, fragment: memoryview) -> None: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


class _Arriving:
    """A data set's fragments as they arrive (while the peer sends the next ones): their CRC-32, and written
    to the sink's stage."""

    def __init__(self, stage: Stage | None) -> None:
        self.stage = stage
        self.crc = 0

    def fragment(self, data: memoryview) -> None:
        self.crc = crc32(data, self.crc)
        if self.stage is not None:
            self.stage.write(data)


@dataclass
class ReceiveStats:
    """Where the receiver's time went, summed over associations (the benchmark splits an instance's time with
    it): ``cpu_s`` the receiving threads' CPU time, ``keep_s`` the wall time the sink took to make instances
    durable (the head's write and the sync the peer waits for)."""

    instances: int = 0
    cpu_s: float = 0.0
    keep_s: float = 0.0


class Sink(Protocol):
    """Where received instances go. ``keep`` returns only once the instance is safe (durable on disk); it
    raises OSError when it cannot be kept (full disk: the peer hears out of resources). ``stage`` gives each
    association a place to write data sets as they arrive (None: the sink takes them whole). ``open`` runs before the
    receiver listens, ``close`` after it stopped; ``flush`` waits until what was kept is filed where readers see
    it (False when ``timeout`` passed first)."""

    def open(self) -> None: ...

    def stage(self) -> Stage | None: ...

    def keep(self, received: Received) -> None: ...

    def flush(self, timeout: float) -> bool: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ReceiverPolicy:
    """Who may send: ``allowed_ae_titles`` (empty: any), ``allowed_hosts`` (addresses or networks; empty:
    loopback only)."""

    ae_title: str
    allowed_ae_titles: Sequence[str] = ()
    allowed_hosts: Sequence[str] = ()

    def host_allowed(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if not self.allowed_hosts:
            return address.is_loopback
        return any(address in ipaddress.ip_network(h, strict=False) for h in self.allowed_hosts)


def negotiate(policy: ReceiverPolicy, rq: AssociateRQ, peer: str) -> AssociateAC | AssociateRJ:
    """The answer to an association request (PS3.8 9.3.4 reasons; PS3.8 Table 9-18 per context)."""
    if rq.called_ae != policy.ae_title:
        return AssociateRJ(1, 1, 7)
    if policy.allowed_ae_titles and rq.calling_ae not in policy.allowed_ae_titles:
        return AssociateRJ(1, 1, 3)
    if not policy.host_allowed(peer):
        return AssociateRJ(1, 1, 1)
    if rq.application_context != APPLICATION_CONTEXT:
        return AssociateRJ(1, 1, 2)
    answers = answer_contexts(rq.contexts, (*STORAGE_CLASSES, VERIFICATION), ACCEPTED_SYNTAXES)
    user = UserInformation(RECEIVER_MAX_PDU, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME)
    return AssociateAC(rq.called_ae, rq.calling_ae, answers, user)


_ELEMENT = struct.Struct("<HHI")  # a command element's tag and length (implicit VR little endian)
_US_ELEMENT = struct.Struct("<HHIH")


def _uid_element(elem: int, uid: str) -> bytes:
    raw = uid.encode("ascii")
    raw += b"\0" * (len(raw) % 2)
    return _ELEMENT.pack(0x0000, elem, len(raw)) + raw if raw else b""


def response_pdu(context_id: int, answer: Command, responded_to: int, status: int) -> bytes:
    """The P-DATA-TF PDU carrying a C-STORE or C-ECHO response (``answer`` without its message ID and status:
    ``responded_to`` and ``status``), the bytes :meth:`Command.encode` gives in one PDV, written straight: the
    peer waits for them after each instance."""
    body = b"".join((
        _uid_element(0x0002, answer.affected_sop_class),
        _US_ELEMENT.pack(0x0000, 0x0100, 2, answer.command_field),
        _US_ELEMENT.pack(0x0000, 0x0120, 2, responded_to),
        _US_ELEMENT.pack(0x0000, 0x0800, 2, NO_DATA_SET),
        _US_ELEMENT.pack(0x0000, 0x0900, 2, status),
        _uid_element(0x1000, answer.affected_sop_instance),
    ))  # fmt: skip
    command = _ELEMENT.pack(0x0000, 0x0000, 4) + struct.pack("<I", len(body)) + body
    return pdata_header(context_id, 3, len(command)) + command


def _rejection_text(rj: AssociateRJ) -> str:
    return {7: "called AE title is not ours", 3: "calling AE title not allowed", 1: "host not allowed",
            2: "application context not supported"}.get(rj.reason, f"reason {rj.reason}")  # fmt: skip


class StorageSCP(Acceptor):
    """The receiver: listens on ``(host, port)`` as ``policy.ae_title`` and keeps what arrives in ``sink``.

    ::

        with StorageSCP(policy, "127.0.0.1", 11112, sink) as scp:
            scp.wait_stopped()  # or serve until stop() from another thread
    """

    def __init__(
        self,
        policy: ReceiverPolicy,
        host: str,
        port: int,
        sink: Sink,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_associations: int = 8,
        timeouts: Timeouts | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.timeouts = timeouts or Timeouts(connect=30, acse=30, dimse=60, artim=10, send=30)
        super().__init__(host, port, ssl_context=ssl_context, max_connections=max_associations,
                         handshake_s=self.timeouts.artim, name=f"receiver {policy.ae_title}")  # fmt: skip
        self.policy = policy
        self.sink = sink
        self.clock = clock
        self.stats = ReceiveStats()
        self._stats_lock = threading.Lock()

    def __enter__(self) -> StorageSCP:
        self.sink.open()
        try:
            self.start()
        except BaseException:
            self.sink.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self.sink.close()

    def settle(self, timeout: float = 60) -> bool:
        """Wait until no association is open and everything received is filed (True), or ``timeout`` passes."""
        return self.wait_idle(timeout) and self.sink.flush(timeout)

    def handle(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        host = peer[0]
        try:
            assoc = Association.accept(
                sock, lambda rq: negotiate(self.policy, rq, host), max_pdu_length=RECEIVER_MAX_PDU,
                timeouts=self.timeouts, clock=self.clock, label=f"receiver <- {host}",
            )  # fmt: skip
        except AssociationRejected as e:
            LOGGER.info("receiver: association from %s rejected: %s", host, _rejection_text(e.rj))
            return
        except AssociationLost as e:
            LOGGER.info("receiver: association from %s not established: %s", host, e)
            return
        calling = assoc.request_pdu.calling_ae if assoc.request_pdu else ""
        LOGGER.info("receiver: association from %s (%s) accepted", calling, host)
        dimse = Dimse(assoc, reuse_buffer=True)
        stored = 0
        stage = self.sink.stage()
        tally, cpu_start = ReceiveStats(), time.thread_time()
        try:
            while True:
                arriving = _Arriving(stage)
                message = dimse.receive("a request", arriving.fragment)
                if message is None:
                    break
                stored += self._answer(dimse, message, calling, host, arriving, tally) == SUCCESS
                if stage is not None:
                    stage.reset()
        except AssociationLost as e:
            LOGGER.info("receiver: association from %s (%s) lost after %d instance(s): %s", calling, host, stored, e)
        finally:
            assoc.abort()
            if stage is not None:
                stage.close()
        tally.cpu_s, tally.instances = time.thread_time() - cpu_start, stored
        with self._stats_lock:
            self.stats.instances += tally.instances
            self.stats.cpu_s += tally.cpu_s
            self.stats.keep_s += tally.keep_s
        LOGGER.info("receiver: association from %s (%s) ended, %d instance(s) stored (CPU %.0f ms, making them "
                    "durable %.0f ms)", calling, host, stored, tally.cpu_s * 1e3, tally.keep_s * 1e3)  # fmt: skip

    def _answer(
        self, dimse: Dimse, message: Message, calling: str, host: str, arriving: _Arriving, tally: ReceiveStats
    ) -> int:
        command = message.command
        rsp_field: int
        if command.command_field == CommandField.C_ECHO_RQ:
            status, rsp_field = SUCCESS, CommandField.C_ECHO_RSP
        elif command.command_field == CommandField.C_STORE_RQ:
            status, rsp_field = self._store(dimse, message, calling, host, arriving, tally), CommandField.C_STORE_RSP
        else:
            status, rsp_field = UNRECOGNIZED_OPERATION, command.command_field | 0x8000
        answer = Command(
            rsp_field,
            affected_sop_class=command.affected_sop_class,
            affected_sop_instance=command.affected_sop_instance,
        )
        if trace.enabled() or command.message_id is None:
            dimse.send(message.context_id, dataclasses.replace(answer, responded_to=command.message_id, status=status))
        else:
            dimse.assoc.send_pdata(response_pdu(message.context_id, answer, command.message_id, status))
        return status

    def _store(
        self, dimse: Dimse, message: Message, calling: str, host: str, arriving: _Arriving, tally: ReceiveStats
    ) -> int:
        command = message.command
        abstract, syntax = dimse.assoc.accepted[message.context_id]
        if command.affected_sop_class not in STORAGE_CLASSES or command.affected_sop_class != abstract:
            return SOP_CLASS_NOT_SUPPORTED
        if message.data_set is None:
            return CANNOT_UNDERSTAND
        try:
            header = read_header(message.data_set, syntax == IMPLICIT_VR_LE)
        except DataSetError as e:
            LOGGER.info("receiver: instance %s from %s refused: %s", command.affected_sop_instance, calling, e)
            return CANNOT_UNDERSTAND
        if (header.sop_class_uid, header.sop_instance_uid) != (command.affected_sop_class,
                                                               command.affected_sop_instance):  # fmt: skip
            return DATA_SET_DOES_NOT_MATCH
        started = time.perf_counter()
        try:
            self.sink.keep(Received(header, syntax, message.data_set, calling, host, arriving.crc, arriving.stage))
        except OSError as e:
            LOGGER.warning("receiver: cannot keep instance %s from %s: %s", header.sop_instance_uid, calling, e)
            return OUT_OF_RESOURCES
        finally:
            tally.keep_s += time.perf_counter() - started
        return SUCCESS
