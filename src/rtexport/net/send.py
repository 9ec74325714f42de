"""Send exported objects to a DICOM server: C-ECHO, C-STORE and Storage Commitment (push model).

The sender sits on rtexport's own DICOM stack (:mod:`rtexport.net`: PDU codec, PS3.8 association state
machine, DIMSE messages, storage commitment listener). Stored Part 10 files go as their own bytes on several
associations at once; CT first, then RT Structure Set, RT Plan, RT Dose, each kind only after every object of
the kinds before it is stored (they reference them; ``send_dependents`` overrides). Nothing is lost silently:
every object ends STORED, WARNING, FAILED (with the server's status and its meaning) or NOT_SENT (with the
reason). Sending the same objects again is safe: the server keeps one copy per SOP Instance UID.

Each worker reads, checks and encodes its next object while the server works on the previous one, so between
two stores there is only a send. A stored object that carries its expected SHA-256 is hashed as it is read
for sending and checked before any of it leaves (data sets up to :data:`STREAMED_ABOVE` bytes, read whole) or
before its last fragment leaves (larger ones, streamed): a damaged copy aborts its association (the receiver
discards an incomplete data set), fails, and stops the whole send.

Use::

    dest = Destination.from_server(site.dicom.server("archive"))
    echo(dest, "RTEXPORT")
    report = send_objects(objects, dest, "RTEXPORT", commit=True, commit_listen_port=11113)
    if not report.ok:
        print(report.summary())
"""

from __future__ import annotations

import contextlib
import io
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydicom import dcmread
from pynetdicom.status import STATUS_WARNING, VERIFICATION_SERVICE_CLASS_STATUS, code_to_category

from rtexport.dicom.common import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from rtexport.errors import SendError
from rtexport.export.objects import DamagedObject, ExportObject, ObjectKind, read_file_meta
from rtexport.net import commitment
from rtexport.net.association import (
    Association,
    AssociationLost,
    AssociationRejected,
    Timeouts,
)
from rtexport.net.dimse import Command, CommandField, Dimse, Outgoing, encode_data_set, status_meaning
from rtexport.net.outcome import Destination, InstanceOutcome, InstanceResult, SendReport
from rtexport.net.pdu import AssociateRQ, ProposedContext, UserInformation, ae_title_bytes

__all__ = [
    "DEFAULT_ASSOCIATIONS",
    "STREAMED_ABOVE",
    "Destination",
    "InstanceOutcome",
    "InstanceResult",
    "SendReport",
    "echo",
    "request_commitment",
    "send_objects",
    "status_meaning",
]

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
VERIFICATION = commitment.VERIFICATION
STORAGE_COMMITMENT_PUSH = commitment.STORAGE_COMMITMENT_PUSH
# Parallel associations for CT: two keep a receiver busy on two cores (benchmarks/bench_send.py).
DEFAULT_ASSOCIATIONS = 2
_SEND_ORDER = (ObjectKind.CT, ObjectKind.RTSTRUCT, ObjectKind.RTPLAN, ObjectKind.RTDOSE)
_KIND_NAMES = {
    ObjectKind.CT: "CT image",
    ObjectKind.RTSTRUCT: "RT Structure Set",
    ObjectKind.RTPLAN: "RT Plan",
    ObjectKind.RTDOSE: "RT Dose",
}


def _is_warning(status: int) -> bool:
    return bool(code_to_category(status) == STATUS_WARNING)


def _is_out_of_resources(status: int) -> bool:
    return 0xA700 <= status <= 0xA7FF  # PS3.4 B.2.3: worth a retry after a while


# -- the files -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    index: int
    obj: ExportObject
    transfer_syntax: str
    offset: int  # where the dataset starts in the Part 10 file
    length: int


def _prepare(index: int, obj: ExportObject) -> _Item | InstanceResult:
    try:
        with obj.open() as fp:
            meta = read_file_meta(fp)
            size = fp.seek(0, io.SEEK_END)
    except Exception as e:  # pydicom raises several kinds on a file that is not DICOM; each is this file's fault
        return InstanceResult(obj, InstanceOutcome.FAILED, None, f"cannot read the file: {e}")
    if not meta.transfer_syntax:
        return InstanceResult(obj, InstanceOutcome.FAILED, None, "the file meta has no Transfer Syntax UID")
    for found, expected, what in (
        (meta.sop_class_uid, obj.sop_class_uid, "class"),
        (meta.sop_instance_uid, obj.sop_instance_uid, "instance"),
    ):
        if found and found != expected:
            return InstanceResult(
                obj,
                InstanceOutcome.FAILED,
                None,
                f"the file's SOP {what} UID {found} differs from the export's {expected}",
            )
    return _Item(index, obj, meta.transfer_syntax, meta.offset, size - meta.offset)


def presentation_contexts(items: Sequence[_Item]) -> tuple[ProposedContext, ...]:
    """One context per (SOP class, transfer syntax): each file's own syntax plus explicit and implicit VR
    little endian, so the server's choice is unambiguous and stored bytes can go as they are."""
    wanted: dict[str, list[str]] = {}
    for it in items:
        syntaxes = wanted.setdefault(it.obj.sop_class_uid, [])
        for ts in (it.transfer_syntax, EXPLICIT_VR_LE, IMPLICIT_VR_LE):
            if ts not in syntaxes:
                syntaxes.append(ts)
    pairs = [(sop, ts) for sop, syntaxes in wanted.items() for ts in syntaxes]
    if len(pairs) > 128:
        raise SendError(f"{len(pairs)} presentation contexts needed; at most 128 fit in an association")
    return tuple(ProposedContext(2 * i + 1, sop, (ts,)) for i, (sop, ts) in enumerate(pairs))


# Data sets up to this size are read whole (and checked) before they go, while the previous response is awaited;
# larger ones are streamed in batches and checked before their last batch.
STREAMED_ABOVE = 8 << 20
_LITTLE_ENDIAN = (EXPLICIT_VR_LE, IMPLICIT_VR_LE)


def _transcode(data: bytes, transfer_syntax: str) -> bytes:
    """The dataset re-encoded in explicit or implicit VR little endian (the server declined its own)."""
    ds = dcmread(io.BytesIO(data))
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    return encode_data_set(ds, transfer_syntax)


def _command(dimse: Dimse, item: _Item) -> Command:
    return Command(
        CommandField.C_STORE_RQ,
        message_id=dimse.next_message_id(),
        affected_sop_class=item.obj.sop_class_uid,
        affected_sop_instance=item.obj.sop_instance_uid,
        priority=0x0000,
        data_set_type=0x0000,
    )


def _context(dimse: Dimse, item: _Item) -> int | None:
    sop, ts = item.obj.sop_class_uid, item.transfer_syntax
    return next((c for c, (a, t) in sorted(dimse.assoc.accepted.items()) if a == sop and t == ts), None)


def _encode(dimse: Dimse, item: _Item) -> Outgoing | str | None:
    """The C-STORE-RQ of ``item`` read whole into the PDUs that carry it, its digest already checked; None when
    it is too large to hold (it is then streamed); a reason when the server took no syntax it can go in.

    Raises DamagedObject and OSError before anything is sent."""
    obj, sop = item.obj, item.obj.sop_class_uid
    ctx = _context(dimse, item)
    if ctx is not None and item.length > STREAMED_ABOVE:
        return None
    others = [c for c, (a, t) in sorted(dimse.assoc.accepted.items()) if a == sop and t in _LITTLE_ENDIAN]
    if ctx is None and not others:
        return f"the server accepted no transfer syntax for SOP class {sop} that this file can be sent in"
    digest = obj.verifier()
    with obj.open() as fp:
        head = fp.read(item.offset)
        if digest is not None:
            digest.update(head)
        if ctx is not None:
            out = dimse.encode_stream(
                ctx, _command(dimse, item), fp, item.length, observe=digest.update if digest else None
            )
        else:
            data = head + fp.read()
            if digest is not None:
                digest.update(data[len(head) :])
    if digest is not None:
        digest.check()
    if ctx is not None:
        return out
    try:
        data = _transcode(data, dimse.assoc.accepted[others[0]][1])
    except Exception as e:  # pydicom raises many kinds on a data set it cannot re-encode
        return f"the server declined transfer syntax {item.transfer_syntax} and the file cannot be re-encoded: {e}"
    return dimse.encode(others[0], _command(dimse, item), data)


def _stream(dimse: Dimse, item: _Item) -> Command:
    """Send a large ``item`` in bounded batches, its digest checked before the last one leaves."""
    ctx = _context(dimse, item)
    assert ctx is not None
    digest = item.obj.verifier()
    command = _command(dimse, item)
    with item.obj.open() as fp:
        head = fp.read(item.offset)
        if digest is None:
            dimse.send_stream(ctx, command, fp, item.length)
        else:
            digest.update(head)
            dimse.send_stream(ctx, command, fp, item.length, observe=digest.update, before_last=digest.check)
    return command


Ready = Outgoing | Exception | None


def _store(
    dimse: Dimse, item: _Item, ready: Ready = None, meanwhile: Callable[[Dimse], None] | None = None
) -> tuple[int, str] | str:
    """Store one object; (status, comment), or a reason why it cannot go on this association. ``ready`` is the
    object as encoded ahead of time (or what stopped that); ``meanwhile`` runs while the response is awaited.

    Raises AssociationLost, DamagedObject, OSError (the association may then be mid-message: abort it)."""
    if isinstance(ready, Exception):
        raise ready
    message: Outgoing | str | None = ready if ready is not None and ready.assoc is dimse.assoc else _encode(dimse, item)
    if isinstance(message, str):
        return message
    if message is None:
        command = _stream(dimse, item)
    else:
        dimse.send_outgoing(message)
        command = message.command
    if meanwhile is not None:
        meanwhile(dimse)
    rsp = dimse.await_response(command).command
    assert rsp.status is not None
    return rsp.status, rsp.error_comment


# -- associations --------------------------------------------------------------------------------------------


class _ConnectFailed(Exception):
    pass


def _connect_error(dest: Destination, calling_ae: str, e: BaseException) -> str:
    """Why an association could not be opened, and what to check."""
    if isinstance(e, AssociationRejected):
        return (
            f"{e} (called AE title '{dest.ae_title}', calling AE title '{calling_ae}'); "
            "check that the server's AE title is right and that the server knows our AE title"
        )
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {e.verify_message}; check the CA file and the server hostname"
    if isinstance(e, ssl.SSLError):
        return f"TLS handshake failed: {e}; check that the server speaks TLS on this port and the certificates"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused; check that the server is running and the host and port are right"
    if isinstance(e, TimeoutError):
        return "no answer in time; check host, port and firewalls"
    if isinstance(e, AssociationLost):
        return f"{e}; check that this port is a DICOM server and that it accepts our AE title"
    return f"{e}; check host and port"


@dataclass
class _Link:
    """One association slot, reopened after a loss."""

    dest: Destination
    calling_ae: str
    contexts: tuple[ProposedContext, ...]
    timeouts: Timeouts
    ssl_context: ssl.SSLContext | None
    dimse: Dimse | None = None

    def open(self) -> Dimse:
        if self.dimse is None or not self.dimse.assoc.established:
            user = UserInformation(commitment.MAX_PDU_LENGTH, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME)
            rq = AssociateRQ(self.dest.ae_title, self.calling_ae, self.contexts, user)
            try:
                assoc = Association.request(
                    rq, lambda: self.dest.open_socket(self.timeouts.connect, self.ssl_context), timeouts=self.timeouts
                )
            except (OSError, AssociationRejected, AssociationLost) as e:
                raise _ConnectFailed(_connect_error(self.dest, self.calling_ae, e)) from e
            self.dimse = Dimse(assoc)
        return self.dimse

    def abort(self) -> None:
        if self.dimse is not None:
            self.dimse.assoc.abort()

    def close(self) -> None:
        if self.dimse is not None:
            self.dimse.assoc.release()
            self.dimse = None


def _check_ae_titles(dest: Destination, calling_ae: str) -> None:
    for title, which in ((dest.ae_title, "the server's"), (calling_ae, "our (calling)")):
        try:
            ae_title_bytes(title)
        except ValueError as e:
            raise SendError(f"{dest}: {which} AE title is invalid: {e}") from e


# -- public API ----------------------------------------------------------------------------------------------


def echo(dest: Destination, calling_ae: str, timeout: float = 10) -> None:
    """C-ECHO the destination; raises SendError saying why it failed and what to check."""
    _check_ae_titles(dest, calling_ae)
    contexts = (ProposedContext(1, VERIFICATION, (IMPLICIT_VR_LE,)),)
    link = _Link(dest, calling_ae, contexts, Timeouts.uniform(timeout), dest.ssl_context())
    try:
        dimse = link.open()
    except _ConnectFailed as e:
        raise SendError(f"C-ECHO to {dest} failed: {e}") from e
    try:
        if 1 not in dimse.assoc.accepted:
            raise SendError(f"C-ECHO to {dest} failed: the server did not accept the Verification SOP class")
        command = Command(CommandField.C_ECHO_RQ, message_id=dimse.next_message_id(), affected_sop_class=VERIFICATION)
        dimse.send(1, command)
        status = dimse.await_response(command).command.status
    except AssociationLost as e:
        raise SendError(f"C-ECHO to {dest} failed: {e}") from e
    finally:
        link.close()
    if status != 0x0000:
        assert status is not None
        meaning = status_meaning(status, VERIFICATION_SERVICE_CLASS_STATUS)
        raise SendError(f"C-ECHO to {dest} answered status 0x{status:04X} ({meaning})")


class _Halt(Exception):
    """Stop the whole send: ``result`` is the object that caused it."""

    def __init__(self, result: InstanceResult) -> None:
        super().__init__(result.meaning)
        self.result = result


@dataclass
class _Run:
    """Shared state of one send, guarded by one condition: the queue of a phase, results, counters."""

    progress: Callable[[InstanceResult], None] | None
    retries: int
    backoff: float
    results: dict[int, InstanceResult] = field(default_factory=dict)
    connect_failures: list[str] = field(default_factory=list)
    pending: deque[_Item] = field(default_factory=deque)
    in_flight: int = 0
    workers: int = 0
    phase: int = 0
    finished: bool = False
    halted: str | None = None  # why the send stopped early (a damaged stored copy)
    bytes_sent: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)

    def record(self, result: InstanceResult, index: int, nbytes: int = 0) -> None:
        with self.cond:
            self.results[index] = result
            if result.stored:
                self.bytes_sent += nbytes
            if self.progress is not None:
                self.progress(result)

    def phase_done(self) -> bool:
        return (not self.pending and self.in_flight == 0) or self.workers == 0


def _send_one(
    link: _Link,
    item: _Item,
    retries: int,
    backoff: float,
    ready: Ready = None,
    meanwhile: Callable[[Dimse], None] | None = None,
) -> InstanceResult:
    """Send one object, reopening a lost association and backing off on 0xA7xx.

    Raises _ConnectFailed when the association cannot be reopened (the item is then still unsent), and _Halt
    when the stored copy is damaged."""
    obj, lost, busy = item.obj, 0, 0
    while True:
        try:
            dimse = link.open()
        except _ConnectFailed:
            if lost > retries:
                raise
            lost += 1
            time.sleep(backoff * lost)
            continue
        try:
            answer = _store(dimse, item, ready, meanwhile)
        except AssociationLost as e:
            ready = None
            lost += 1
            if lost > retries:
                tries = f"{lost} attempt{'s' if lost > 1 else ''}"
                return InstanceResult(obj, InstanceOutcome.NOT_SENT, None, f"not confirmed: {e} ({tries})")
            continue
        except DamagedObject as e:
            link.abort()  # before the last fragment: the receiver discards the incomplete data set
            raise _Halt(InstanceResult(obj, InstanceOutcome.FAILED, None, str(e))) from e
        except OSError as e:
            link.abort()  # the message may be half sent
            return InstanceResult(obj, InstanceOutcome.FAILED, None, f"cannot read the file: {e}")
        if isinstance(answer, str):
            return InstanceResult(obj, InstanceOutcome.FAILED, None, answer)
        status, comment = answer
        meaning = status_meaning(status) + (f": {comment}" if comment else "")
        if status == 0x0000:
            return InstanceResult(obj, InstanceOutcome.STORED, status, meaning)
        if _is_warning(status):
            return InstanceResult(obj, InstanceOutcome.WARNING, status, meaning)
        if _is_out_of_resources(status) and busy < retries:
            busy += 1
            time.sleep(backoff * 2 ** (busy - 1))
            continue
        return InstanceResult(obj, InstanceOutcome.FAILED, status, meaning)


@dataclass
class _Ahead:
    """The next object of a worker, taken and encoded while the previous response was awaited."""

    item: _Item
    ready: Ready = None


def _worker(link: _Link, run: _Run, phase: int) -> None:
    """Take objects of the current phase until none is left. The association is opened before taking one,
    so a server that queues extra associations (storescp without --fork) delays nothing. While a response is
    awaited the next object is read, checked and encoded, so the time between two stores is a send."""
    ahead: _Ahead | None = None

    def take_next(dimse: Dimse) -> None:
        nonlocal ahead
        with run.cond:
            if ahead is not None or run.phase != phase or not run.pending or run.halted or run.finished:
                return
            ahead = _Ahead(run.pending.popleft())
            run.in_flight += 1
        try:
            encoded = _encode(dimse, ahead.item)
        except (DamagedObject, OSError) as e:
            ahead.ready = e  # raised when its turn comes, after the response now awaited
        else:
            ahead.ready = encoded if isinstance(encoded, Outgoing) else None

    try:
        while True:
            try:
                link.open()
            except _ConnectFailed as e:
                with run.cond:
                    run.connect_failures.append(str(e))
                return
            with run.cond:
                if run.finished:
                    link.close()
                    return
                if ahead is not None:
                    if run.halted:
                        return
                    item, ready, ahead = ahead.item, ahead.ready, None
                else:
                    if run.phase != phase or not run.pending or run.halted:
                        return
                    item, ready = run.pending.popleft(), None
                    run.in_flight += 1
            try:
                result = _send_one(link, item, run.retries, run.backoff, ready, take_next)
            except _ConnectFailed as e:
                with run.cond:
                    run.pending.appendleft(item)
                    run.in_flight -= 1
                    run.connect_failures.append(str(e))
                return
            except _Halt as halt:
                result = halt.result
                with run.cond:
                    run.halted = (
                        f"not sent: the send stopped because the stored copy of "
                        f"{item.obj.kind.value} {item.obj.sop_instance_uid} is damaged"
                    )
            run.record(result, item.index, item.length)
            with run.cond:
                run.in_flight -= 1
    finally:
        with run.cond:
            if ahead is not None:  # taken but not sent: back to the queue
                run.pending.appendleft(ahead.item)
                run.in_flight -= 1
            if run.phase == phase:
                run.workers -= 1
            run.cond.notify_all()


def _blocked(kind: ObjectKind, objects: Sequence[ExportObject], run: _Run) -> str | None:
    """Why objects of ``kind`` must not go: an object of an earlier kind in this send was not stored."""
    earlier_kinds = _SEND_ORDER[: _SEND_ORDER.index(kind)]
    own = _KIND_NAMES[kind]
    for earlier in earlier_kinds:
        indices = [i for i, o in enumerate(objects) if o.kind == earlier]
        missing = [i for i in indices if not (i in run.results and run.results[i].stored)]
        if missing:
            name = _KIND_NAMES[earlier]
            what = f"{len(missing)} of {len(indices)} {name}s" if len(indices) > 1 else f"the {name}"
            verb = "were" if len(missing) > 1 else "was"
            return f"not sent: {what} {verb} not stored, and this {own} depends on them; send again once they are"
    return None


def send_objects(
    objects: Sequence[ExportObject],
    dest: Destination,
    calling_ae: str,
    *,
    progress: Callable[[InstanceResult], None] | None = None,
    commit: bool = False,
    commit_listen_port: int | None = None,
    commit_listen_host: str = "",
    commit_timeout: float = 60,
    associations: int = DEFAULT_ASSOCIATIONS,
    timeout: float = 30,
    artim: float = 5,
    retries: int = 3,
    backoff: float = 0.5,
    send_dependents: bool = False,
) -> SendReport:
    """C-STORE ``objects`` to ``dest`` as ``calling_ae``; the report says what became of each one.

    CT goes first on up to ``associations`` parallel associations, then RT Structure Set, RT Plan and RT Dose
    in order on one; a kind goes only when every object of the kinds before it was stored, unless
    ``send_dependents``. A lost association (abort, ``timeout`` without answer, closed) is reopened and what
    was not confirmed is sent again, up to ``retries`` times; 0xA7xx (out of resources) is retried after
    ``backoff`` seconds, doubling; other failures are final. ``artim`` bounds the wait for the server to close
    after an abort (PS3.8 ARTIM). ``progress`` is called after each object, from worker threads but never
    concurrently. With ``commit``, Storage Commitment (push model) is asked for the stored objects and the
    server's N-EVENT-REPORT awaited on ``commit_listen_port`` (the server must know our AE title with our
    host and that port).

    Raises SendError when nothing could be sent: no connection, association rejected, TLS failure.
    """
    if associations < 1:
        raise ValueError("associations must be at least 1")
    _check_ae_titles(dest, calling_ae)
    started = time.perf_counter()
    run = _Run(progress, retries, backoff)
    items: list[_Item] = []
    for index, obj in enumerate(objects):
        prepared = _prepare(index, obj)
        if isinstance(prepared, InstanceResult):
            run.record(prepared, index)
        else:
            items.append(prepared)
    rank = {kind: i for i, kind in enumerate(_SEND_ORDER)}
    items.sort(key=lambda it: (rank.get(it.obj.kind, len(rank)), it.index))
    timeouts = Timeouts.uniform(timeout, artim)
    contexts, ctx = presentation_contexts(items), dest.ssl_context()
    links = [_Link(dest, calling_ae, contexts, timeouts, ctx) for _ in range(associations)]
    if items:
        try:
            links[0].open()
        except _ConnectFailed as e:
            raise SendError(f"cannot send to {dest}: {e}") from e
    problems: list[str] = []
    idle = list(links)
    try:
        for kind in dict.fromkeys(it.obj.kind for it in items):
            phase_items = [it for it in items if it.obj.kind == kind]
            skip = run.halted or (None if send_dependents else _blocked(kind, objects, run))
            if skip:
                for item in phase_items:
                    run.record(InstanceResult(item.obj, InstanceOutcome.NOT_SENT, None, skip), item.index)
                continue
            with run.cond:
                run.pending.extend(phase_items)
                # Only CT goes in parallel: later kinds reference earlier ones and go in order on one link.
                use = idle[: min(len(idle), len(run.pending))] if kind == ObjectKind.CT else [idle[0]]
                run.workers = len(use)
                run.phase += 1
            threads = [threading.Thread(target=_worker, args=(link, run, run.phase), daemon=True) for link in use]
            for t in threads:
                t.start()
            with run.cond:
                run.cond.wait_for(run.phase_done)
                leftover = list(run.pending)
                run.pending.clear()
            # A link whose opening still hangs keeps its thread; later phases use link 0 only.
            threads[0].join()
            for item in leftover:
                if run.halted:
                    reason = run.halted
                else:
                    reason = run.connect_failures[-1] if run.connect_failures else "no association available"
                    problems.append(f"association to {dest} lost and not reopened: {reason}")
                run.record(InstanceResult(item.obj, InstanceOutcome.NOT_SENT, None, reason), item.index)
    finally:
        with run.cond:
            run.finished = True
        links[0].close()
        for link in links[1:]:
            with run.cond:
                if link.dimse is not None and not link.dimse.assoc.closed:
                    link.close()
    seconds = time.perf_counter() - started
    results = tuple(run.results[i] for i in range(len(objects)))
    committed: tuple[str, ...] | None = None
    commit_failed: tuple[str, ...] = ()
    stored = [r.obj for r in results if r.stored]
    if commit:
        why_not = None
        if run.halted:
            why_not = "the send stopped at a damaged stored copy"
        elif commit_listen_port is None:
            why_not = "no port to receive the server's report is configured (dicom.commitment_port)"
        elif not stored:
            why_not = "no object was stored"
        if why_not is not None:
            problems.append(f"storage commitment not requested: {why_not}")
        else:
            assert commit_listen_port is not None
            committed, commit_failed, problem = request_commitment(
                stored,
                dest,
                calling_ae,
                commit_listen_port,
                listen_host=commit_listen_host,
                timeout=commit_timeout,
                network_timeout=timeout,
            )
            if problem:
                committed = None
                problems.append(problem)
    return SendReport(
        dest, results, committed, commit_failed, tuple(dict.fromkeys(problems)), run.bytes_sent, seconds, commit
    )


def request_commitment(
    objects: Sequence[ExportObject],
    dest: Destination,
    calling_ae: str,
    listen_port: int,
    *,
    listen_host: str = "",
    timeout: float = 60,
    network_timeout: float = 30,
) -> tuple[tuple[str, ...], tuple[str, ...], str | None]:
    """Storage Commitment push model (PS3.4 J): N-ACTION, then the server's N-EVENT-REPORT on a new
    association to our listener, awaited ``timeout`` seconds (``network_timeout`` bounds each network wait).
    Returns (committed UIDs, failed UIDs, problem or None)."""
    if not objects:
        return (), (), None
    transaction = f"2.25.{uuid.uuid4().int}"
    contexts = (ProposedContext(1, STORAGE_COMMITMENT_PUSH, (EXPLICIT_VR_LE, IMPLICIT_VR_LE)),)
    timeouts = Timeouts.uniform(network_timeout)
    with contextlib.ExitStack() as stack:
        try:
            listener = stack.enter_context(
                commitment.ReportListener(calling_ae, listen_host, listen_port, timeouts=timeouts)
            )
        except OSError as e:
            return (), (), f"storage commitment not requested: cannot listen on port {listen_port}: {e}"
        link = _Link(dest, calling_ae, contexts, timeouts, dest.ssl_context())
        try:
            refused = commitment.request(
                link.open(), transaction, [(o.sop_class_uid, o.sop_instance_uid) for o in objects]
            )
        except _ConnectFailed as e:
            return (), (), f"storage commitment not requested: {e}"
        except AssociationLost as e:
            return (), (), f"storage commitment request (N-ACTION) not answered: {e}"
        finally:
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
    return report.committed, tuple(uid for uid, _ in report.failed), None
