"""DIMSE messages (PS3.7): command sets, and messages carried as PDV fragments over an :class:`Association`.

A message is a command set (group 0000, always implicit VR little endian, PS3.7 6.3.1) and, when the command
says so, a data set in the presentation context's transfer syntax. :class:`Dimse` sends and receives whole
messages on one association. Stored files go by two fast paths: :meth:`Dimse.encode_view` frames a data set
already in memory (a file read whole into a reused buffer, :meth:`Dimse.scratch`) as PDU headers between views
of it, sent by gathering writes (no copy besides the file's read and the kernel's); :meth:`Dimse.send_stream`
sends a large one from the file in batches of reused P-DATA-TF buffers, shows it to an ``observe`` callback as it
goes (the sender hashes it there) and runs a ``before_last`` hook before the last fragment leaves, so a check can
still stop an incomplete data set from ever being complete at the receiver.

One request is outstanding at a time (no Asynchronous Operations Window is negotiated, PS3.7 D.3.3.3), so a
response must answer the message ID just sent: anything else is a protocol error that aborts the association
rather than being skipped.
"""

from __future__ import annotations

import io
import struct
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, BinaryIO

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom.status import STORAGE_SERVICE_CLASS_STATUS, code_to_category

from rtexport.net import pdu, trace
from rtexport.net.association import Association, AssociationLost
from rtexport.net.fileread import read_into
from rtexport.net.pdu import PDV

NO_DATA_SET = 0x0101  # Command Data Set Type when no data set follows (PS3.7 E.1)
# Fragment size when the peer announces no limit (0); keeps each buffer bounded.
UNLIMITED_FRAGMENT = 1 << 20
# Bytes of PDUs assembled before each send: few system calls, bounded memory.
BATCH_BYTES = 1 << 20
# The largest command set and data set we take from a peer (ours are a few hundred bytes and kilobytes).
_MAX_COMMAND = 1 << 16
_MAX_DATA_SET = 1 << 26
# Buffers one preadv may fill (IOV_MAX; 1024 on Linux).


class CommandField(IntEnum):
    """Command Field values of the messages we send or take (PS3.7 E.1)."""

    C_STORE_RQ = 0x0001
    C_STORE_RSP = 0x8001
    C_FIND_RQ = 0x0020
    C_FIND_RSP = 0x8020
    C_MOVE_RQ = 0x0021
    C_MOVE_RSP = 0x8021
    C_ECHO_RQ = 0x0030
    C_ECHO_RSP = 0x8030
    N_EVENT_REPORT_RQ = 0x0100
    N_EVENT_REPORT_RSP = 0x8100
    N_ACTION_RQ = 0x0130
    N_ACTION_RSP = 0x8130


def _name(command_field: int) -> str:
    try:
        return CommandField(command_field).name.replace("_", "-")
    except ValueError:
        return f"command 0x{command_field:04X}"


class DimseError(ValueError):
    """A command set that cannot be read."""


# Element number in group 0000 → (Command attribute, VR) (PS3.7 Annex E).
_ELEMENTS: dict[int, tuple[str, str]] = {
    0x0002: ("affected_sop_class", "UI"),
    0x0003: ("requested_sop_class", "UI"),
    0x0100: ("command_field", "US"),
    0x0110: ("message_id", "US"),
    0x0120: ("responded_to", "US"),
    0x0600: ("move_destination", "AE"),
    0x0700: ("priority", "US"),
    0x0800: ("data_set_type", "US"),
    0x0900: ("status", "US"),
    0x0902: ("error_comment", "LO"),
    0x1000: ("affected_sop_instance", "UI"),
    0x1001: ("requested_sop_instance", "UI"),
    0x1002: ("event_type_id", "US"),
    0x1008: ("action_type_id", "US"),
    0x1020: ("remaining", "US"),
    0x1021: ("completed", "US"),
    0x1022: ("failed", "US"),
    0x1023: ("warning", "US"),
}


@dataclass(frozen=True)
class Command:
    """A command set (PS3.7 9.3, 10.3); fields left at None or "" are not sent."""

    command_field: int
    message_id: int | None = None
    responded_to: int | None = None
    affected_sop_class: str = ""
    requested_sop_class: str = ""
    affected_sop_instance: str = ""
    requested_sop_instance: str = ""
    priority: int | None = None
    data_set_type: int = NO_DATA_SET
    status: int | None = None
    error_comment: str = ""
    event_type_id: int | None = None
    action_type_id: int | None = None
    move_destination: str = ""
    remaining: int | None = None
    completed: int | None = None
    failed: int | None = None
    warning: int | None = None

    @property
    def has_data_set(self) -> bool:
        return self.data_set_type != NO_DATA_SET

    @property
    def is_response(self) -> bool:
        return bool(self.command_field & 0x8000)

    @property
    def name(self) -> str:
        return _name(self.command_field)

    def describe(self) -> str:
        """The command in words, for logs and the trace (UIDs, no patient data)."""
        parts = [self.name]
        if self.message_id is not None:
            parts.append(f"id {self.message_id}")
        if self.responded_to is not None:
            parts.append(f"to {self.responded_to}")
        sop_class = self.affected_sop_class or self.requested_sop_class
        if sop_class:
            parts.append(trace.uid_name(sop_class))
        if self.affected_sop_instance or self.requested_sop_instance:
            parts.append(self.affected_sop_instance or self.requested_sop_instance)
        if self.status is not None:
            parts.append(f"status 0x{self.status:04X}")
        if self.error_comment:
            parts.append(repr(self.error_comment))
        return " ".join(parts)

    def encode(self) -> bytes:
        parts = []
        for elem, (attr, vr) in sorted(_ELEMENTS.items()):
            value = getattr(self, attr)
            if value is None or value == "":
                continue
            if vr == "US":
                raw = struct.pack("<H", value)
            else:
                raw = str(value).encode("ascii")
                if len(raw) % 2:
                    raw += b"\0" if vr == "UI" else b" "
            parts.append(struct.pack("<HHI", 0x0000, elem, len(raw)) + raw)
        body = b"".join(parts)
        return struct.pack("<HHII", 0x0000, 0x0000, 4, len(body)) + body

    @classmethod
    def decode(cls, data: bytes) -> Command:
        values: dict[str, Any] = {}
        pos = 0
        while pos < len(data):
            if pos + 8 > len(data):
                raise DimseError("truncated element in a command set")
            group, elem, length = struct.unpack_from("<HHI", data, pos)
            pos += 8
            if group != 0x0000 or pos + length > len(data):
                raise DimseError(f"element ({group:04X},{elem:04X}) does not belong in or fit its command set")
            raw = data[pos : pos + length]
            pos += length
            known = _ELEMENTS.get(elem)
            if known is None:
                continue
            attr, vr = known
            if vr == "US":
                if length != 2:
                    raise DimseError(f"command element (0000,{elem:04X}) is {length} bytes long, not 2")
                values[attr] = struct.unpack("<H", raw)[0]
            else:
                values[attr] = raw.decode("ascii", "replace").rstrip("\0 ")
        if "command_field" not in values:
            raise DimseError("command set without a Command Field")
        if "data_set_type" not in values:
            raise DimseError("command set without a Command Data Set Type")
        return cls(**values)


@dataclass(frozen=True)
class Outgoing:
    """A message encoded as the P-DATA-TF PDUs that carry it on one association, ready to send."""

    assoc: Association
    command: Command
    pdus: bytearray | list[bytes | memoryview]  # one buffer, or its parts (sent by gathering writes)


@dataclass(frozen=True)
class Message:
    """A received message. With :attr:`Dimse.reuse_buffer` the data set is a view into the association's one
    buffer, valid until the next :meth:`Dimse.receive`."""

    context_id: int
    command: Command
    data_set: bytes | memoryview | None = None


def status_meaning(status: int, table: Mapping[int, tuple[str, str]] = STORAGE_SERVICE_CLASS_STATUS) -> str:
    """The status in words: its category and, when the service's table names it, what it means."""
    category, text = table.get(status, (code_to_category(status), ""))
    category = str(category).lower()
    return f"{category}: {text}" if text else category


def encode_data_set(ds: Dataset, transfer_syntax: str) -> bytes:
    """A data set in implicit or explicit VR little endian, as a message carries it (no file meta)."""
    out = DicomBytesIO()
    out.is_little_endian = True
    out.is_implicit_VR = transfer_syntax == ImplicitVRLittleEndian
    write_dataset(out, ds)
    return out.getvalue()


def decode_data_set(data: bytes | memoryview, transfer_syntax: str) -> Dataset:
    return read_dataset(io.BytesIO(data), transfer_syntax == ImplicitVRLittleEndian, True)


class _DataSetText:
    """A traced message with its data set's content, decoded only if a trace with patient data prints it."""

    def __init__(self, text: str, data: bytes, transfer_syntax: str) -> None:
        self.text, self.data, self.transfer_syntax = text, data, transfer_syntax

    def __str__(self) -> str:
        try:
            return f"{self.text}:\n{decode_data_set(self.data, self.transfer_syntax)}"
        except Exception as e:  # pydicom raises many kinds on odd bytes; the trace says so and goes on
            return f"{self.text} (data set not readable: {e})"


class Dimse:
    """Messages over one association: one request outstanding at a time, not thread-safe."""

    def __init__(self, assoc: Association, *, reuse_buffer: bool = False) -> None:
        self.assoc = assoc
        # The receiver's fast path: data sets assembled in one buffer reused for every message (no allocation
        # and page faults per instance), each returned as a view valid until the next receive.
        self.reuse_buffer = reuse_buffer
        # ... and each P-DATA-TF read into one buffer too: its fragments are copied out before the next is read.
        assoc.transport.reuse_pdata_body = reuse_buffer
        self._assembly = bytearray(0)
        self._message_id = 0
        self._pending: deque[PDV] = deque()
        peer_max = assoc.peer_max_pdu
        self.fragment = peer_max - pdu.PDV_OVERHEAD if peer_max > pdu.PDV_OVERHEAD else UNLIMITED_FRAGMENT
        self._per_batch = max(1, BATCH_BYTES // self.fragment)
        self._buffer = bytearray(0)
        # Two buffers a sender reads whole files into, in turn (one may still be going out while the next is read).
        self._scratch = [bytearray(0), bytearray(0)]
        self._headers: dict[tuple[int, int, int], bytes] = {}

    def next_message_id(self) -> int:
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

    def _pdus(self, context_id: int, is_command: bool, data: bytes) -> bytearray:
        view = memoryview(data)
        control = 1 if is_command else 0
        chunks = [view[i : i + self.fragment] for i in range(0, len(data), self.fragment)] or [view]
        out = bytearray()
        for i, chunk in enumerate(chunks):
            out += pdu.pdata_header(context_id, control | (2 if i == len(chunks) - 1 else 0), len(chunk))
            out += chunk
        return out

    def _fill(
        self,
        buf: bytearray,
        pos: int,
        context_id: int,
        sizes: list[int],
        ends: bool,
        fp: BinaryIO,
        observe: Callable[[memoryview], None] | None,
    ) -> int:
        """Read data set fragments of ``sizes`` bytes from ``fp`` into ``buf`` at ``pos``, each behind its PDU
        header; the last one is marked last when ``ends``. Returns the position after them. A file is read
        with one scattered read (preadv) straight into the fragments' places."""
        view = memoryview(buf)
        parts = []
        for i, n in enumerate(sizes):
            pdu.pack_pdata_header(buf, pos, context_id, 2 if ends and i == len(sizes) - 1 else 0, n)
            pos += pdu.PDATA_HEADER_SIZE
            parts.append(view[pos : pos + n])
            pos += n
        read_into(fp, parts)
        if observe is not None:
            for part in parts:
                observe(part)
        return pos

    def _sizes(self, length: int) -> list[int]:
        return [min(self.fragment, length - i) for i in range(0, length, self.fragment)] or [0]

    def trace(self, outgoing: bool, context_id: int, command: Command, data_set: bytes | int | None = None) -> None:
        """One DIMSE message in the trace: its command, and its data set's size (content only with patient data)."""
        if not trace.enabled():
            return
        text = f"ctx {context_id} {command.describe()}"
        size = len(data_set) if isinstance(data_set, bytes) else data_set
        if size is not None:
            text += f" + data set {size} bytes"
        full = None
        if isinstance(data_set, bytes) and context_id in self.assoc.accepted:
            full = _DataSetText(text, data_set, self.assoc.accepted[context_id][1])
            text += " (content redacted)"
        trace.line(self.assoc.label, outgoing, text, full)

    def encode(self, context_id: int, command: Command, data_set: bytes | None = None) -> Outgoing:
        """A message whose data set (if any) is in memory, as the PDUs that carry it."""
        self.trace(True, context_id, command, data_set)
        out = self._pdus(context_id, True, command.encode())
        if data_set is not None:
            out += self._pdus(context_id, False, data_set)
        return Outgoing(self.assoc, command, out)

    def scratch(self, size: int) -> memoryview:
        """A buffer of ``size`` bytes to read a data set into for :meth:`encode_view`; the two most recent ones
        stay valid (a message encoded ahead while the previous one goes out), the one before is reused."""
        self._scratch.reverse()
        if len(self._scratch[0]) < size:
            self._scratch[0] = bytearray(size)  # new, not resized: a view of the old one may still be sending
        return memoryview(self._scratch[0])[:size]

    def _header(self, context_id: int, control: int, length: int) -> bytes:
        key = (context_id, control, length)
        header = self._headers.get(key)
        if header is None:
            header = pdu.pdata_header(context_id, control, length)
            if len(self._headers) < 64:
                self._headers[key] = header
        return header

    def encode_view(self, context_id: int, command: Command, data: memoryview) -> Outgoing:
        """A message whose data set is ``data`` (already in the context's transfer syntax, unchanged until it is
        sent), as the parts of its PDUs: each fragment of ``data`` behind its PDU header, not copied."""
        self.trace(True, context_id, command, len(data))
        parts: list[bytes | memoryview] = [memoryview(self._pdus(context_id, True, command.encode()))]
        step, length = self.fragment, len(data)
        last = (length - 1) // step * step if length else 0
        middle = self._header(context_id, 0, step)
        for start in range(0, last, step):
            parts += (middle, data[start : start + step])
        parts += (self._header(context_id, 2, length - last), data[last:])
        return Outgoing(self.assoc, command, parts)

    def send_outgoing(self, message: Outgoing) -> None:
        if message.assoc is not self.assoc:
            raise ValueError("a message encoded for another association")
        self.assoc.send_pdata(message.pdus)

    def send(self, context_id: int, command: Command, data_set: bytes | None = None) -> None:
        """Send a message whose data set (if any) is already in memory."""
        self.send_outgoing(self.encode(context_id, command, data_set))

    def send_stream(
        self,
        context_id: int,
        command: Command,
        fp: BinaryIO,
        length: int,
        *,
        observe: Callable[[memoryview], None] | None = None,
        before_last: Callable[[], None] | None = None,
    ) -> None:
        """Send ``command`` and ``length`` data set bytes read from ``fp`` in batches of bounded size.

        ``observe`` sees every data set byte once, in order; ``before_last`` runs before the PDUs holding the
        last fragment are sent, and whatever it raises stops them (the caller then aborts)."""
        self.trace(True, context_id, command, length)
        self.assoc.send_pdata(self._pdus(context_id, True, command.encode()))
        sizes = self._sizes(length)
        for start in range(0, len(sizes), self._per_batch):
            batch = sizes[start : start + self._per_batch]
            ends = start + self._per_batch >= len(sizes)
            total = sum(batch) + pdu.PDATA_HEADER_SIZE * len(batch)
            if len(self._buffer) < total:
                self._buffer = bytearray(total)
            self._fill(self._buffer, 0, context_id, batch, ends, fp, observe)
            if ends and before_last is not None:
                before_last()
            self.assoc.send_pdata(memoryview(self._buffer)[:total])

    def _protocol_error(self, what: str) -> AssociationLost:
        self.assoc.abort()
        return AssociationLost(f"protocol error by {self.assoc.peer}: {what}; association aborted")

    def receive(self, awaiting: str, observe: Callable[[memoryview], None] | None = None) -> Message | None:
        """The next whole message; None when the peer released the association between messages. ``observe``
        sees every data set fragment as it arrives, in order (the receiver checksums and stages it there); with
        :attr:`reuse_buffer` each is a view of the assembly buffer, valid until the next message is received."""
        timer = self.assoc.timer(self.assoc.timeouts.dimse)
        context_id: int | None = None
        command: Command | None = None
        command_bytes = bytearray()
        fragments: list[bytes | memoryview] = []  # views into the PDUs, joined once: the data set's one copy
        received = 0
        while True:
            while not self._pending:
                pdata = self.assoc.receive(timer, awaiting)
                if pdata is None:
                    if context_id is None:
                        return None
                    raise AssociationLost(f"{self.assoc.peer} released the association in the middle of a message")
                self._pending.extend(pdata.pdvs)
            pdv = self._pending.popleft()
            if context_id is None:
                if pdv.context_id not in self.assoc.accepted:
                    raise self._protocol_error(f"a message on presentation context {pdv.context_id}, never accepted")
                context_id = pdv.context_id
            elif pdv.context_id != context_id:
                raise self._protocol_error("one message's fragments on two presentation contexts")
            if command is None:
                command = self._command_fragment(pdv, command_bytes)
                if command is not None and not command.has_data_set:
                    self.trace(False, context_id, command)
                    return Message(context_id, command)
                continue
            if pdv.is_command:
                raise self._protocol_error(f"a command fragment inside the data set of a {command.name}")
            if received + len(pdv.data) > _MAX_DATA_SET:
                raise self._protocol_error(f"a data set longer than {_MAX_DATA_SET} bytes")
            fragment = memoryview(pdv.data)
            if self.reuse_buffer:  # observed in the assembly buffer: the PDU's buffer is read into again next
                fragment = self._assemble(received, fragment)
            else:
                fragments.append(pdv.data)
            received += len(fragment)
            if observe is not None:
                observe(fragment)
            if pdv.is_last:
                data_set = memoryview(self._assembly)[:received] if self.reuse_buffer else b"".join(fragments)
                if trace.enabled():
                    self.trace(False, context_id, command, bytes(data_set))
                return Message(context_id, command, data_set)

    def _command_fragment(self, pdv: PDV, command_bytes: bytearray) -> Command | None:
        """Add a command fragment; the command once its last fragment came."""
        if not pdv.is_command:
            raise self._protocol_error("a data set fragment before its command")
        command_bytes += pdv.data
        if len(command_bytes) > _MAX_COMMAND:
            raise self._protocol_error(f"a command set longer than {_MAX_COMMAND} bytes")
        if not pdv.is_last:
            return None
        try:
            return Command.decode(bytes(command_bytes))
        except DimseError as e:
            raise self._protocol_error(f"an unreadable command set ({e})") from e

    def _assemble(self, at: int, data: memoryview) -> memoryview:
        """Copy a data set fragment into the reused buffer at ``at``: its view there. A larger buffer replaces it
        when needed (a new one: views of the old stay valid, e.g. fragments still being written elsewhere)."""
        end = at + len(data)
        if end > len(self._assembly):
            grown = bytearray(max(end, 2 * len(self._assembly)))
            grown[:at] = memoryview(self._assembly)[:at]
            self._assembly = grown
        self._assembly[at:end] = data
        return memoryview(self._assembly)[at:end]

    def await_response(self, request: Command) -> Message:
        """The response to ``request`` (sent last); anything else aborts the association."""
        assert request.message_id is not None
        awaiting = f"the {_name(request.command_field | 0x8000)} to message ID {request.message_id}"
        message = self.receive(awaiting)
        if message is None:
            raise AssociationLost(f"{self.assoc.peer} released the association instead of sending {awaiting}")
        got = message.command
        if not got.is_response:
            raise self._protocol_error(f"a {got.name} request where we awaited {awaiting}")
        if got.responded_to != request.message_id:
            raise self._protocol_error(f"a {got.name} to message ID {got.responded_to} where we awaited {awaiting}")
        if got.command_field != request.command_field | 0x8000:
            raise self._protocol_error(f"a {got.name} where we awaited {awaiting}")
        if got.status is None:
            raise self._protocol_error(f"a {got.name} without a Status")
        return message
