"""C-STORE of one stored Part 10 file on an association: the file read, checked and framed for sending.

A file goes as its own bytes (the data set after its file meta) when the server accepted its transfer syntax,
else re-encoded in explicit or implicit VR little endian. A file that carries its expected SHA-256 is hashed as
it is read: data sets up to :data:`STREAMED_ABOVE` bytes are read whole and checked before any of them leaves;
larger ones are streamed and checked before their last fragment leaves, so a damaged copy is never complete at
the receiver (the caller aborts the association).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic

from pydicom import dcmread

from rtexport.export.objects import read_file_meta
from rtexport.net.dimse import Command, CommandField, Dimse, Outgoing, encode_data_set
from rtexport.net.fileread import read_file, read_into
from rtexport.net.outcome import InstanceOutcome, InstanceResult, T
from rtexport.net.pdu import ProposedContext

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
_LITTLE_ENDIAN = (EXPLICIT_VR_LE, IMPLICIT_VR_LE)
# Data sets up to this size are read whole (and checked) before they go, while the previous response is awaited;
# larger ones are streamed in batches and checked before their last batch.
STREAMED_ABOVE = 8 << 20


class DamagedInstance(Exception):
    """A stored file's bytes differ from the SHA-256 it was stored under."""


class _Digest:
    """SHA-256 of the bytes as they are read, checked against the instance's expected digest."""

    def __init__(self, expected: str, where: str) -> None:
        self.expected = expected
        self.where = where
        self.hash = hashlib.sha256()
        self.update = self.hash.update

    def check(self) -> None:
        actual = self.hash.hexdigest()
        if actual != self.expected:
            raise DamagedInstance(f"stored copy is damaged: sha256 {actual} expected {self.expected}{self.where}")


@dataclass(frozen=True)
class Item(Generic[T]):
    """An instance ready to send: where its data set starts in the file, how long it is, its transfer syntax."""

    index: int
    obj: T
    transfer_syntax: str
    offset: int
    length: int

    def verifier(self) -> _Digest | None:
        if self.obj.sha256 is None:
            return None
        return _Digest(self.obj.sha256, f", file {self.obj.path}" if self.obj.path is not None else "")


def prepare(index: int, obj: T) -> Item[T] | InstanceResult[T]:
    """The instance's item, or a FAILED result saying why its file cannot be sent."""
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
    return Item(index, obj, meta.transfer_syntax, meta.offset, size - meta.offset)


def presentation_contexts(items: Sequence[Item[T]]) -> tuple[ProposedContext, ...]:
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
        raise ValueError(f"{len(pairs)} presentation contexts needed; at most 128 fit in an association")
    return tuple(ProposedContext(2 * i + 1, sop, (ts,)) for i, (sop, ts) in enumerate(pairs))


def _transcode(data: bytes, transfer_syntax: str) -> bytes:
    """The dataset re-encoded in explicit or implicit VR little endian (the server declined its own)."""
    ds = dcmread(io.BytesIO(data))
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    return encode_data_set(ds, transfer_syntax)


def _command(dimse: Dimse, item: Item[T]) -> Command:
    return Command(
        CommandField.C_STORE_RQ,
        message_id=dimse.next_message_id(),
        affected_sop_class=item.obj.sop_class_uid,
        affected_sop_instance=item.obj.sop_instance_uid,
        priority=0x0000,
        data_set_type=0x0000,
    )


def _context(dimse: Dimse, item: Item[T]) -> int | None:
    sop, ts = item.obj.sop_class_uid, item.transfer_syntax
    return next((c for c, (a, t) in sorted(dimse.assoc.accepted.items()) if a == sop and t == ts), None)


def _read_whole(dimse: Dimse, item: Item[T]) -> memoryview:
    """The whole Part 10 file (file meta and data set) read into one of the association's reused buffers."""
    whole = dimse.scratch(item.offset + item.length)
    if item.obj.path is not None:
        read_file(item.obj.path, whole)
    else:
        with item.obj.open() as fp:
            read_into(fp, [whole])
    return whole


def encode(dimse: Dimse, item: Item[T]) -> Outgoing | str | None:
    """The C-STORE-RQ of ``item``, its file read whole into a reused buffer and its digest checked, as the PDUs
    that carry it (headers between views of that buffer: the data set is not copied again); None when
    it is too large to hold (it is then streamed); a reason when the server took no syntax it can go in.

    Raises DamagedInstance and OSError before anything is sent."""
    sop = item.obj.sop_class_uid
    ctx = _context(dimse, item)
    if ctx is not None and item.length > STREAMED_ABOVE:
        return None
    others = [c for c, (a, t) in sorted(dimse.assoc.accepted.items()) if a == sop and t in _LITTLE_ENDIAN]
    if ctx is None and not others:
        return f"the server accepted no transfer syntax for SOP class {sop} that this file can be sent in"
    digest = item.verifier()
    if ctx is not None:
        whole = _read_whole(dimse, item)
        if digest is not None:
            digest.update(whole)  # one call: the hash runs without the interpreter lock, beside the other worker
            digest.check()
        return dimse.encode_view(ctx, _command(dimse, item), whole[item.offset :])
    with item.obj.open() as fp:
        data = fp.read()
    if digest is not None:
        digest.update(data)
        digest.check()
    try:
        data = _transcode(data, dimse.assoc.accepted[others[0]][1])
    except Exception as e:  # pydicom raises many kinds on a data set it cannot re-encode
        return f"the server declined transfer syntax {item.transfer_syntax} and the file cannot be re-encoded: {e}"
    return dimse.encode(others[0], _command(dimse, item), data)


def _stream(dimse: Dimse, item: Item[T]) -> Command:
    """Send a large ``item`` in bounded batches, its digest checked before the last one leaves."""
    ctx = _context(dimse, item)
    if ctx is None:
        raise ValueError("streamed without an accepted context")  # encode() returns None only with one
    digest = item.verifier()
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


def store(
    dimse: Dimse, item: Item[T], ready: Ready = None, meanwhile: Callable[[Dimse], None] | None = None
) -> tuple[tuple[int, str] | str, Outgoing | None]:
    """Store one object: ((status, comment), or a reason why it cannot go on this association; the message
    sent, which a retry on this association sends again). ``ready`` is the object as encoded ahead of time (or
    what stopped that); ``meanwhile`` runs while the response is awaited.

    A retry must send the message it was given, not encode the object again: the association's two buffers
    hold this object and the next one, read ahead meanwhile, and a third reading would overwrite that one.

    Raises AssociationLost, DamagedInstance, OSError (the association may then be mid-message: abort it)."""
    if isinstance(ready, Exception):
        raise ready
    message: Outgoing | str | None = ready if ready is not None and ready.assoc is dimse.assoc else encode(dimse, item)
    if isinstance(message, str):
        return message, None
    if message is None:
        command = _stream(dimse, item)
    else:
        dimse.send_outgoing(message)
        command = message.command
    if meanwhile is not None:
        meanwhile(dimse)
    rsp = dimse.await_response(command).command
    return (rsp.status if rsp.status is not None else 0xFFFF, rsp.error_comment), message
