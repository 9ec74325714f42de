"""Send exported objects to a DICOM server: C-ECHO, C-STORE and Storage Commitment (push model).

Stored Part 10 files go as their own bytes over a lean requestor (:mod:`rtexport.export.net_assoc`) on
several associations at once; CT first, then RT Structure Set, RT Plan, RT Dose, each kind only after the
previous one is confirmed. Nothing is lost silently: every object ends STORED, WARNING, FAILED (with the
server's status and its meaning) or NOT_SENT (with the reason). Sending the same objects again is safe: the
server keeps one copy per SOP Instance UID.

Use::

    dest = Destination.from_server(site.dicom.server("archive"))
    echo(dest, "RTEXPORT")
    report = send_objects(objects, dest, "RTEXPORT", commit=True, commit_listen_port=11113)
    if not report.ok:
        print(report.summary())
"""

from __future__ import annotations

import io
import ssl
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

from rtexport.errors import SendError
from rtexport.export.net_assoc import (
    VERIFICATION,
    Association,
    AssociationLost,
    AssociationRejected,
)
from rtexport.export.objects import ExportObject, ObjectKind
from rtexport.model.site import DicomServer, TLSConfig

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
STORAGE_COMMITMENT_PUSH = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
_SEND_ORDER = (ObjectKind.CT, ObjectKind.RTSTRUCT, ObjectKind.RTPLAN, ObjectKind.RTDOSE)


@dataclass(frozen=True)
class Destination:
    """Where to send: the server's AE title, host, port and optional TLS."""

    ae_title: str
    host: str
    port: int
    tls: TLSConfig | None = None

    @classmethod
    def from_server(cls, server: DicomServer) -> Destination:
        return cls(server.ae_title, server.host, server.port, server.tls)

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}{' (TLS)' if self.tls else ''}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context from the TLS files; raises SendError when they cannot be loaded."""
        if self.tls is None:
            return None
        try:
            ctx = ssl.create_default_context(
                cafile=str(self.tls.ca_file) if self.tls.ca_file else None,
            )
            if self.tls.cert_file is not None:
                ctx.load_cert_chain(str(self.tls.cert_file), str(self.tls.key_file) if self.tls.key_file else None)
        except (OSError, ssl.SSLError) as e:
            raise SendError(f"{self}: cannot load the TLS files ({e}); check ca_file, cert_file, key_file") from e
        return ctx


class InstanceOutcome(StrEnum):
    """What became of one object."""

    STORED = "stored"  # success status
    WARNING = "warning"  # stored, the server reported a warning (e.g. coerced elements)
    FAILED = "failed"  # the server refused it, or it could not be sent; not retried again
    NOT_SENT = "not sent"  # never sent, or its storage was not confirmed: send again


@dataclass(frozen=True)
class InstanceResult:
    """Outcome of one object; ``status`` is the DIMSE status when the server answered."""

    obj: ExportObject
    outcome: InstanceOutcome
    status: int | None
    meaning: str

    @property
    def stored(self) -> bool:
        return self.outcome in (InstanceOutcome.STORED, InstanceOutcome.WARNING)

    def describe(self) -> str:
        status = f" [0x{self.status:04X}]" if self.status is not None else ""
        return f"{self.obj.kind.value} {self.obj.sop_instance_uid}: {self.outcome.value}{status} {self.meaning}"


@dataclass(frozen=True)
class SendReport:
    """Everything a send did. ``committed`` is None when no commitment was asked for."""

    destination: Destination
    results: tuple[InstanceResult, ...]
    committed: tuple[str, ...] | None = None
    commit_failed: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    bytes_sent: int = 0
    seconds: float = 0.0

    @property
    def stored(self) -> tuple[InstanceResult, ...]:
        return tuple(r for r in self.results if r.stored)

    @property
    def unstored(self) -> tuple[InstanceResult, ...]:
        return tuple(r for r in self.results if not r.stored)

    @property
    def ok(self) -> bool:
        """Every object stored (success or warning), and committed when commitment was asked for."""
        if self.unstored:
            return False
        if self.committed is None:
            return True
        return {r.obj.sop_instance_uid for r in self.results} <= set(self.committed)

    @property
    def megabytes_per_second(self) -> float:
        return self.bytes_sent / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        n = len(self.results)
        lines = [f"{len(self.stored)} of {n} objects stored on {self.destination}"]
        lines += [f"  {r.describe()}" for r in self.results if r.outcome != InstanceOutcome.STORED]
        if self.committed is not None:
            lines.append(f"  storage commitment: {len(self.committed)} of {n} committed")
            lines += [f"  commitment failed: {uid}" for uid in self.commit_failed]
        lines += [f"  {p}" for p in self.problems]
        if not self.ok:
            lines.append("  sending the same export again sends what is missing; stored objects are kept once")
        return "\n".join(lines)


# -- statuses (PS3.4 B.2.3, PS3.7 C) -------------------------------------------------------------------------

_MEANINGS = {
    0x0000: "success",
    0x0001: "warning: requested optional attributes are not supported",
    0x0107: "warning: attribute list error",
    0x0116: "warning: attribute value out of range",
    0xB000: "warning: coercion of data elements",
    0xB006: "warning: elements discarded",
    0xB007: "warning: data set does not match SOP class",
    0x0110: "processing failure",
    0x0111: "duplicate SOP instance",
    0x0117: "invalid SOP instance",
    0x0122: "SOP class not supported",
    0x0124: "not authorized (refused by the server's policy)",
    0x0210: "duplicate invocation",
    0x0211: "unrecognised operation",
    0x0212: "mistyped argument",
}


def status_meaning(status: int) -> str:
    if status in _MEANINGS:
        return _MEANINGS[status]
    if 0xA700 <= status <= 0xA7FF:
        return "out of resources"
    if 0xA900 <= status <= 0xA9FF:
        return "data set does not match SOP class"
    if 0xC000 <= status <= 0xCFFF:
        return "cannot understand"
    if 0xB000 <= status <= 0xBFFF:
        return "warning"
    return "failure"


def _is_warning(status: int) -> bool:
    return status in (0x0001, 0x0107, 0x0116) or 0xB000 <= status <= 0xBFFF


# -- the files -----------------------------------------------------------------------------------------------

_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UT", b"UC", b"UR", b"UN", b"SV", b"UV"}


@dataclass(frozen=True)
class _Item:
    index: int
    obj: ExportObject
    transfer_syntax: str
    offset: int  # where the dataset starts in the Part 10 file
    length: int


def _part10_header(fp: BinaryIO) -> tuple[dict[int, str], int]:
    """File meta elements (element number → text) and the offset of the dataset (PS3.10 7.1)."""
    head = fp.read(132)
    if len(head) < 132 or head[128:] != b"DICM":
        raise ValueError("not a DICOM Part 10 file (no 'DICM' after the preamble)")
    meta: dict[int, str] = {}
    pos = 132
    while True:
        tag = fp.read(6)
        if len(tag) < 6 or struct.unpack_from("<H", tag)[0] != 0x0002:
            return meta, pos
        elem, vr = struct.unpack_from("<H", tag, 2)[0], tag[4:6]
        if vr in _LONG_VRS:
            length = struct.unpack("<I", fp.read(6)[2:])[0]
            pos += 12
        else:
            length = struct.unpack("<H", fp.read(2))[0]
            pos += 8
        value = fp.read(length)
        pos += length
        if vr == b"UI":
            meta[elem] = value.decode("ascii", "replace").rstrip("\0 ")
        fp.seek(pos)


def _prepare(index: int, obj: ExportObject) -> _Item | InstanceResult:
    try:
        with obj.open() as fp:
            meta, offset = _part10_header(fp)
            size = fp.seek(0, io.SEEK_END)
    except (OSError, ValueError) as e:
        return InstanceResult(obj, InstanceOutcome.FAILED, None, f"cannot read the file: {e}")
    ts = meta.get(0x0010)
    if not ts:
        return InstanceResult(obj, InstanceOutcome.FAILED, None, "the file meta has no Transfer Syntax UID")
    for elem, expected, what in (
        (0x0002, obj.sop_class_uid, "class"),
        (0x0003, obj.sop_instance_uid, "instance"),
    ):
        if meta.get(elem, expected) != expected:
            return InstanceResult(
                obj, InstanceOutcome.FAILED, None,
                f"the file's SOP {what} UID {meta.get(elem)} differs from the export's {expected}",
            )  # fmt: skip
    return _Item(index, obj, ts, offset, size - offset)


def presentation_contexts(items: Sequence[_Item]) -> list[tuple[str, list[str]]]:
    """One context per (SOP class, transfer syntax): each file's own syntax plus explicit and implicit VR
    little endian, so the server's choice is unambiguous and stored bytes can go as they are."""
    wanted: dict[str, list[str]] = {}
    for it in items:
        syntaxes = wanted.setdefault(it.obj.sop_class_uid, [])
        for ts in (it.transfer_syntax, EXPLICIT_VR_LE, IMPLICIT_VR_LE):
            if ts not in syntaxes:
                syntaxes.append(ts)
    return [(sop, [ts]) for sop, syntaxes in wanted.items() for ts in syntaxes]


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
    contexts: list[tuple[str, list[str]]]
    timeout: float
    ssl_context: ssl.SSLContext | None
    assoc: Association | None = None

    def open(self) -> Association:
        if self.assoc is None or self.assoc.closed:
            hostname = self.dest.tls.server_hostname if self.dest.tls else None
            try:
                self.assoc = Association.request(
                    self.dest.host, self.dest.port, self.calling_ae, self.dest.ae_title, self.contexts,
                    timeout=self.timeout, ssl_context=self.ssl_context, server_hostname=hostname,
                )  # fmt: skip
            except (OSError, AssociationRejected, AssociationLost) as e:
                raise _ConnectFailed(_connect_error(self.dest, self.calling_ae, e)) from e
        return self.assoc

    def close(self) -> None:
        if self.assoc is not None:
            self.assoc.release()
            self.assoc = None


def _store(assoc: Association, item: _Item) -> tuple[int, str] | str:
    """Store one object; (status, comment), or a reason why it cannot go on this association."""
    sop = item.obj.sop_class_uid
    ctx = assoc.context_for(sop, item.transfer_syntax)
    with item.obj.open() as fp:
        if ctx is not None:
            fp.seek(item.offset)
            rsp = assoc.store(ctx, sop, item.obj.sop_instance_uid, fp, item.length)
            return rsp.status, rsp.comment
        others = [(c, t) for c, t in assoc.contexts_for(sop) if t in (EXPLICIT_VR_LE, IMPLICIT_VR_LE)]
        if not others:
            return f"the server accepted no transfer syntax for SOP class {sop} that this file can be sent in"
        data = _transcode(fp, others[0][1])
    rsp = assoc.store(others[0][0], sop, item.obj.sop_instance_uid, io.BytesIO(data), len(data))
    return rsp.status, rsp.comment


def _transcode(fp: BinaryIO, transfer_syntax: str) -> bytes:
    """The dataset re-encoded in explicit or implicit VR little endian (the server declined its own)."""
    from pydicom import dcmread
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    fp.seek(0)
    ds = dcmread(fp)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    out = DicomBytesIO()
    out.is_little_endian = True
    out.is_implicit_VR = transfer_syntax == IMPLICIT_VR_LE
    write_dataset(out, ds)
    return out.getvalue()


# -- public API ----------------------------------------------------------------------------------------------


def echo(dest: Destination, calling_ae: str, timeout: float = 10) -> None:
    """C-ECHO the destination; raises SendError saying why it failed and what to check."""
    link = _Link(dest, calling_ae, [(VERIFICATION, [IMPLICIT_VR_LE])], timeout, dest.ssl_context())
    try:
        assoc = link.open()
    except _ConnectFailed as e:
        raise SendError(f"C-ECHO to {dest} failed: {e}") from e
    try:
        rsp = assoc.echo()
    except AssociationLost as e:
        raise SendError(f"C-ECHO to {dest} failed: {e}") from e
    finally:
        link.close()
    if rsp.status != 0x0000:
        raise SendError(f"C-ECHO to {dest} answered status 0x{rsp.status:04X} ({status_meaning(rsp.status)})")


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


def _send_one(link: _Link, item: _Item, retries: int, backoff: float) -> InstanceResult:
    """Send one object, reopening a lost association and backing off on 0xA7xx.

    Raises _ConnectFailed when the association cannot be reopened; the item is then still unsent."""
    obj, lost, busy = item.obj, 0, 0
    while True:
        try:
            assoc = link.open()
        except _ConnectFailed:
            if lost > retries:
                raise
            lost += 1
            time.sleep(backoff * lost)
            continue
        try:
            answer = _store(assoc, item)
        except AssociationLost as e:
            lost += 1
            if lost > retries:
                tries = f"{lost} attempt{'s' if lost > 1 else ''}"
                return InstanceResult(obj, InstanceOutcome.NOT_SENT, None, f"not confirmed: {e} ({tries})")
            continue
        except OSError as e:
            return InstanceResult(obj, InstanceOutcome.FAILED, None, f"cannot read the file: {e}")
        if isinstance(answer, str):
            return InstanceResult(obj, InstanceOutcome.FAILED, None, answer)
        status, comment = answer
        meaning = status_meaning(status) + (f": {comment}" if comment else "")
        if status == 0x0000:
            return InstanceResult(obj, InstanceOutcome.STORED, status, meaning)
        if _is_warning(status):
            return InstanceResult(obj, InstanceOutcome.WARNING, status, meaning)
        if 0xA700 <= status <= 0xA7FF and busy < retries:
            busy += 1
            time.sleep(backoff * 2 ** (busy - 1))
            continue
        return InstanceResult(obj, InstanceOutcome.FAILED, status, meaning)


def _worker(link: _Link, run: _Run, phase: int) -> None:
    """Take objects of the current phase until none is left. The association is opened before taking one,
    so a server that queues extra associations (storescp without --fork) delays nothing."""
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
                if run.phase != phase or not run.pending:
                    return
                item = run.pending.popleft()
                run.in_flight += 1
            try:
                result = _send_one(link, item, run.retries, run.backoff)
            except _ConnectFailed as e:
                with run.cond:
                    run.pending.appendleft(item)
                    run.in_flight -= 1
                    run.connect_failures.append(str(e))
                return
            run.record(result, item.index, item.length)
            with run.cond:
                run.in_flight -= 1
    finally:
        with run.cond:
            if run.phase == phase:
                run.workers -= 1
            run.cond.notify_all()


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
    associations: int = 2,
    timeout: float = 30,
    retries: int = 3,
    backoff: float = 0.5,
) -> SendReport:
    """C-STORE ``objects`` to ``dest`` as ``calling_ae``; the report says what became of each one.

    CT goes first on up to ``associations`` parallel associations, then RT Structure Set, RT Plan and RT Dose
    in order on one. A lost association (abort, ``timeout`` without answer, closed) is reopened and what was
    not confirmed is sent again, up to ``retries`` times; 0xA7xx (out of resources) is retried after
    ``backoff`` seconds, doubling; other failures are final. ``progress`` is called after each object, from
    worker threads but never concurrently. With ``commit``, Storage Commitment (push model) is asked for the
    stored objects and the server's N-EVENT-REPORT awaited on ``commit_listen_port`` (the server must know
    our AE title with our host and that port).

    Raises SendError when nothing could be sent: no connection, association rejected, TLS failure.
    """
    if associations < 1:
        raise ValueError("associations must be at least 1")
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
    contexts = presentation_contexts(items)
    ctx = dest.ssl_context()
    links = [_Link(dest, calling_ae, contexts, timeout, ctx) for _ in range(associations)]
    if items:
        try:
            links[0].open()
        except _ConnectFailed as e:
            raise SendError(f"cannot send to {dest}: {e}") from e
    problems: list[str] = []
    idle = list(links)
    try:
        for kind in dict.fromkeys(it.obj.kind for it in items):
            with run.cond:
                run.pending.extend(it for it in items if it.obj.kind == kind)
                # Only CT goes in parallel: later kinds reference earlier ones and go in order on one link.
                n = min(len(idle), len(run.pending)) if kind == ObjectKind.CT else 1
                use = [idle[0]] if kind != ObjectKind.CT else idle[:n]
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
                reason = run.connect_failures[-1] if run.connect_failures else "no association available"
                problems.append(f"association to {dest} lost and not reopened: {reason}")
                run.record(InstanceResult(item.obj, InstanceOutcome.NOT_SENT, None, reason), item.index)
    finally:
        with run.cond:
            run.finished = True
        links[0].close()
        for link in links[1:]:
            with run.cond:
                if link.assoc is not None and not link.assoc.closed:
                    link.close()
    seconds = time.perf_counter() - started
    results = tuple(run.results[i] for i in range(len(objects)))
    committed: tuple[str, ...] | None = None
    commit_failed: tuple[str, ...] = ()
    if commit and commit_listen_port is None:
        committed = ()
        problems.append("storage commitment not asked: no port to receive the server's report (commit_listen_port)")
    elif commit:
        assert commit_listen_port is not None
        stored = [r.obj for r in results if r.stored]
        committed, commit_failed, problem = request_commitment(
            stored,
            dest,
            calling_ae,
            commit_listen_port,
            listen_host=commit_listen_host,
            timeout=commit_timeout,
        )
        if problem:
            problems.append(problem)
    return SendReport(dest, results, committed, commit_failed, tuple(dict.fromkeys(problems)), run.bytes_sent, seconds)


def request_commitment(
    objects: Sequence[ExportObject],
    dest: Destination,
    calling_ae: str,
    listen_port: int,
    *,
    listen_host: str = "",
    timeout: float = 60,
) -> tuple[tuple[str, ...], tuple[str, ...], str | None]:
    """Storage Commitment push model (PS3.4 J): N-ACTION, then the server's N-EVENT-REPORT on a new
    association to our listener. Returns (committed UIDs, failed UIDs, problem or None)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence
    from pynetdicom import AE, evt

    if not objects:
        return (), (), None
    transaction = f"2.25.{uuid.uuid4().int}"
    reports: list[Dataset] = []
    arrived = threading.Event()

    def on_report(event: Any) -> tuple[int, None]:
        info = event.event_information
        if info.get("TransactionUID") == transaction:
            reports.append(info)
            arrived.set()
        return 0x0000, None

    listener_ae = AE(ae_title=calling_ae)
    listener_ae.add_supported_context(STORAGE_COMMITMENT_PUSH, scu_role=True, scp_role=True)
    try:
        server = listener_ae.start_server(
            (listen_host, listen_port), block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)]
        )
    except OSError as e:
        return (), (), f"storage commitment: cannot listen on port {listen_port}: {e}"
    assert server is not None
    try:
        request = Dataset()
        request.TransactionUID = transaction
        refs = []
        for obj in objects:
            ref = Dataset()
            ref.ReferencedSOPClassUID = obj.sop_class_uid
            ref.ReferencedSOPInstanceUID = obj.sop_instance_uid
            refs.append(ref)
        request.ReferencedSOPSequence = DicomSequence(refs)
        ae = AE(ae_title=calling_ae)
        ae.add_requested_context(STORAGE_COMMITMENT_PUSH)
        ctx = dest.ssl_context()
        tls_args = (ctx, (dest.tls and dest.tls.server_hostname) or dest.host) if ctx else None
        assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, tls_args=tls_args)
        if not assoc.is_established:
            return (), (), f"storage commitment: association to {dest} not accepted (N-ACTION not sent)"
        try:
            status, _ = assoc.send_n_action(request, 1, STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_INSTANCE)
        finally:
            assoc.release()
        code = getattr(status, "Status", None)
        if code != 0x0000:
            what = "no answer" if code is None else f"status 0x{code:04X} ({status_meaning(code)})"
            return (), (), f"storage commitment request (N-ACTION) failed: {what}"
        if not arrived.wait(timeout):
            return (), (), (
                f"storage commitment: no N-EVENT-REPORT from {dest} within {timeout:g} s; "
                f"check that the server knows AE title '{calling_ae}' with this host and port {listen_port}"
            )  # fmt: skip
    finally:
        server.shutdown()
    report = reports[0]
    committed = tuple(str(r.ReferencedSOPInstanceUID) for r in report.get("ReferencedSOPSequence", []))
    failed = tuple(str(r.ReferencedSOPInstanceUID) for r in report.get("FailedSOPSequence", []))
    return committed, failed, None


def read_objects(paths: Sequence[Path], kind: ObjectKind) -> list[ExportObject]:
    """ExportObjects for stored Part 10 files (UIDs from their file meta)."""
    out = []
    for path in paths:
        with path.open("rb") as fp:
            meta, _ = _part10_header(fp)
        out.append(ExportObject.from_file(kind, path, meta.get(0x0002, ""), meta.get(0x0003, "")))
    return out
