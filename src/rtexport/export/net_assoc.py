"""A lean DICOM Upper Layer requestor (PS3.8) for sending stored bytes: associate, C-STORE, C-ECHO, release.

pynetdicom hands every PDU through a reactor thread and a state machine, which caps a sender at about half of
DCMTK's storescu on two cores. Stored Part 10 files need none of that: the dataset bytes go from the file into
P-DATA-TF PDUs and straight onto the socket, and each response is one small PDU read on the same thread.
"""

from __future__ import annotations

import contextlib
import io
import socket
import ssl
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, cast

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPLEMENTATION_CLASS_UID = "2.25.262396437145406497328407409306128741553"
IMPLEMENTATION_VERSION = "RTEXPORT_01"
VERIFICATION = "1.2.840.10008.1.1"

# Our receive limit, announced in A-ASSOCIATE-RQ; responses are tiny.
_OUR_MAX_PDU = 65536
# Fragment size when the peer announces no limit (0); keeps each batch bounded.
_UNLIMITED_FRAGMENT = 1 << 20
# How many bytes of PDUs are assembled before each sendall: few syscalls, bounded memory.
_BATCH_BYTES = 1 << 20

_PDU_HEADER = struct.Struct(">BBI")
_PDATA_HEADER = struct.Struct(">BBIIBB")  # PDU type, reserved, PDU length, PDV length, context ID, control

_REJECT_REASONS = {
    (1, 1): "no reason given by the server",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognised by the server",
    (1, 7): "called AE title not recognised by the server",
    (2, 1): "no reason given (ACSE)",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion at the server",
    (3, 2): "the server's limit of associations is exceeded",
}
_ABORT_SOURCES = {0: "the server (service user)", 2: "the server's network layer (service provider)"}


class AssociationRejected(Exception):
    """The peer answered A-ASSOCIATE-RJ."""

    def __init__(self, result: int, source: int, reason: int) -> None:
        self.result, self.source, self.reason = result, source, reason
        self.permanent = result == 1
        text = _REJECT_REASONS.get((source, reason), f"source {source}, reason {reason}")
        kind = "permanently" if self.permanent else "transiently"
        super().__init__(f"association {kind} rejected: {text}")


class AssociationLost(Exception):
    """The association is unusable (aborted, closed, timed out, bad PDU); nothing pending is confirmed."""


@dataclass(frozen=True)
class Response:
    """A DIMSE response: status and the peer's error comment, if any."""

    status: int
    comment: str = ""


def _uid_bytes(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def _element(elem: int, value: bytes) -> bytes:
    """One group-0000 element, implicit VR little endian (PS3.7 6.3.1)."""
    return struct.pack("<HHI", 0x0000, elem, len(value)) + value


def _command(fields: Sequence[tuple[int, bytes]]) -> bytes:
    body = b"".join(_element(e, v) for e, v in fields)
    return _element(0x0000, struct.pack("<I", len(body))) + body


def c_store_rq(message_id: int, sop_class: str, sop_instance: str) -> bytes:
    """C-STORE-RQ command set (PS3.7 9.3.1.1), medium priority, a dataset follows."""
    return _command(
        [
            (0x0002, _uid_bytes(sop_class)),
            (0x0100, struct.pack("<H", 0x0001)),
            (0x0110, struct.pack("<H", message_id)),
            (0x0700, struct.pack("<H", 0x0000)),
            (0x0800, struct.pack("<H", 0x0000)),
            (0x1000, _uid_bytes(sop_instance)),
        ]
    )


def c_echo_rq(message_id: int) -> bytes:
    """C-ECHO-RQ command set (PS3.7 9.3.5.1), no dataset."""
    return _command(
        [
            (0x0002, _uid_bytes(VERIFICATION)),
            (0x0100, struct.pack("<H", 0x0030)),
            (0x0110, struct.pack("<H", message_id)),
            (0x0800, struct.pack("<H", 0x0101)),
        ]
    )


def parse_command(data: bytes) -> dict[int, bytes]:
    """Element number → raw value of a group-0000 command set (implicit VR little endian)."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos + 8 <= len(data):
        group, elem, length = struct.unpack_from("<HHI", data, pos)
        pos += 8
        if group != 0x0000 or pos + length > len(data):
            raise AssociationLost("malformed DIMSE command from the server")
        out[elem] = data[pos : pos + length]
        pos += length
    return out


def _item(item_type: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(payload)) + payload


def _ae(title: str) -> bytes:
    return title.encode("ascii").ljust(16, b" ")


def associate_rq(calling: str, called: str, contexts: Sequence[tuple[int, str, Sequence[str]]]) -> bytes:
    """A-ASSOCIATE-RQ PDU (PS3.8 9.3.2); ``contexts`` are (odd ID, abstract syntax, transfer syntaxes)."""
    items = [_item(0x10, APPLICATION_CONTEXT.encode())]
    for ctx_id, abstract, syntaxes in contexts:
        sub = _item(0x30, abstract.encode()) + b"".join(_item(0x40, ts.encode()) for ts in syntaxes)
        items.append(_item(0x20, bytes([ctx_id, 0, 0, 0]) + sub))
    user = (
        _item(0x51, struct.pack(">I", _OUR_MAX_PDU))
        + _item(0x52, IMPLEMENTATION_CLASS_UID.encode())
        + _item(0x55, IMPLEMENTATION_VERSION.encode())
    )
    items.append(_item(0x50, user))
    body = struct.pack(">HH", 1, 0) + _ae(called) + _ae(calling) + bytes(32) + b"".join(items)
    return _PDU_HEADER.pack(0x01, 0, len(body)) + body


def _items(data: bytes, pos: int) -> list[tuple[int, bytes]]:
    out = []
    while pos + 4 <= len(data):
        item_type, _, length = struct.unpack_from(">BBH", data, pos)
        out.append((item_type, data[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    return out


class Association:
    """An established association on which we are the requestor; one operation at a time, not thread-safe."""

    def __init__(self, sock: socket.socket, peer_max_pdu: int, accepted: dict[int, tuple[str, str]]) -> None:
        self._sock = sock
        self.peer_max_pdu = peer_max_pdu
        self.accepted = accepted  # context ID → (abstract syntax, transfer syntax)
        self._message_id = 0
        self.closed = False

    @classmethod
    def request(
        cls,
        host: str,
        port: int,
        calling: str,
        called: str,
        contexts: Sequence[tuple[str, Sequence[str]]],
        *,
        timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> Association:
        """Connect and negotiate. Raises OSError (connect, TLS), AssociationRejected or AssociationLost."""
        if len(contexts) > 128:
            raise ValueError(f"{len(contexts)} presentation contexts; at most 128 fit in an association")
        numbered = [(2 * i + 1, ab, ts) for i, (ab, ts) in enumerate(contexts)]
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            # DCMTK and Orthanc delay their ACKs; with Nagle on our side each response would wait ~40 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if ssl_context is not None:
                sock = ssl_context.wrap_socket(sock, server_hostname=server_hostname or host)
            sock.sendall(associate_rq(calling, called, numbered))
            pdu_type, body = _read_pdu(sock)
        except BaseException:
            sock.close()
            raise
        if pdu_type == 0x03 and len(body) >= 4:
            sock.close()
            raise AssociationRejected(body[1], body[2], body[3])
        if pdu_type != 0x02:
            sock.close()
            if pdu_type == 0x07:
                raise AssociationLost("the server aborted the association request")
            raise AssociationLost(f"unexpected PDU type 0x{pdu_type:02x} in answer to A-ASSOCIATE-RQ")
        proposed = {cid: ab for cid, ab, _ in numbered}
        accepted: dict[int, tuple[str, str]] = {}
        peer_max = 0
        for item_type, payload in _items(body, 68):
            if item_type == 0x21 and len(payload) >= 4 and payload[2] == 0:
                syntaxes = [v for t, v in _items(payload, 4) if t == 0x40]
                if syntaxes and payload[0] in proposed:
                    accepted[payload[0]] = (proposed[payload[0]], syntaxes[0].decode().rstrip("\0 "))
            elif item_type == 0x50:
                for sub_type, value in _items(payload, 0):
                    if sub_type == 0x51 and len(value) == 4:
                        peer_max = struct.unpack(">I", value)[0]
        return cls(sock, peer_max, accepted)

    def context_for(self, abstract: str, transfer_syntax: str) -> int | None:
        return next((c for c, (a, t) in self.accepted.items() if a == abstract and t == transfer_syntax), None)

    def contexts_for(self, abstract: str) -> list[tuple[int, str]]:
        return [(c, t) for c, (a, t) in sorted(self.accepted.items()) if a == abstract]

    def _next_id(self) -> int:
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

    def _fragment(self) -> int:
        return self.peer_max_pdu - 6 if self.peer_max_pdu > 6 else _UNLIMITED_FRAGMENT

    def _send_pdvs(self, ctx_id: int, control: int, fp: BinaryIO, length: int) -> None:
        """Send ``length`` bytes of ``fp`` as P-DATA-TF PDUs, one PDV each, read straight into the buffer."""
        frag = self._fragment()
        readinto = cast(io.BufferedIOBase, fp).readinto  # BinaryIO's stub lacks it; files and BytesIO have it
        per_batch = max(1, _BATCH_BYTES // frag)
        remaining = length
        while True:
            sizes = []
            for _ in range(per_batch):
                n = min(frag, remaining)
                sizes.append(n)
                remaining -= n
                if remaining == 0:
                    break
            buf = bytearray(sum(sizes) + 12 * len(sizes))
            view = memoryview(buf)
            pos = 0
            for i, n in enumerate(sizes):
                last = remaining == 0 and i == len(sizes) - 1
                _PDATA_HEADER.pack_into(buf, pos, 0x04, 0, n + 6, n + 2, ctx_id, control | (2 if last else 0))
                pos += 12
                got = 0
                while got < n:
                    r = readinto(view[pos + got : pos + n])
                    if not r:
                        raise OSError("the file became shorter while it was being sent")
                    got += r
                pos += n
            self._sendall(view)
            if remaining == 0:
                return

    def _sendall(self, data: bytes | memoryview) -> None:
        try:
            self._sock.sendall(data)
        except TimeoutError as e:
            self._drop()
            raise AssociationLost("the server stopped reading (send timed out)") from e
        except OSError as e:
            self._drop()
            raise AssociationLost(f"connection lost while sending: {e}") from e

    def _send_command(self, ctx_id: int, command: bytes) -> None:
        head = _PDATA_HEADER.pack(0x04, 0, len(command) + 6, len(command) + 2, ctx_id, 0x03)
        self._sendall(head + command)

    def _await_response(self, message_id: int) -> Response:
        command = bytearray()
        while True:
            pdu_type, body = self._read()
            if pdu_type == 0x07:
                self._drop()
                src = body[2] if len(body) > 2 else -1
                raise AssociationLost(f"aborted by {_ABORT_SOURCES.get(src, 'the server')}")
            if pdu_type == 0x05:
                self._sendall(_PDU_HEADER.pack(0x06, 0, 4) + bytes(4))
                self._drop()
                raise AssociationLost("the server released the association before answering")
            if pdu_type != 0x04:
                self.abort()
                raise AssociationLost(f"unexpected PDU type 0x{pdu_type:02x} while awaiting a response")
            pos = 0
            while pos + 6 <= len(body):
                pdv_len = struct.unpack_from(">I", body, pos)[0]
                control = body[pos + 5]
                if control & 1:
                    command += body[pos + 6 : pos + 4 + pdv_len]
                    if control & 2:
                        fields = parse_command(bytes(command))
                        command.clear()
                        answered = fields.get(0x0120)
                        if answered is not None and struct.unpack("<H", answered[:2])[0] != message_id:
                            continue  # a late answer to an abandoned request
                        status = struct.unpack("<H", fields.get(0x0900, b"\xff\xff")[:2])[0]
                        comment = fields.get(0x0902, b"").decode("ascii", "replace").strip("\0 ")
                        return Response(status, comment)
                pos += 4 + pdv_len

    def _read(self) -> tuple[int, bytes]:
        try:
            return _read_pdu(self._sock)
        except TimeoutError as e:
            self.abort()
            raise AssociationLost("no answer from the server in time") from e
        except (OSError, EOFError) as e:
            self._drop()
            raise AssociationLost(f"connection lost: {e or 'closed by the server'}") from e

    def store(self, ctx_id: int, sop_class: str, sop_instance: str, fp: BinaryIO, length: int) -> Response:
        """C-STORE ``length`` dataset bytes from ``fp``, already encoded in the context's transfer syntax."""
        if self.closed:
            raise AssociationLost("the association is closed")
        message_id = self._next_id()
        self._send_command(ctx_id, c_store_rq(message_id, sop_class, sop_instance))
        self._send_pdvs(ctx_id, 0x00, fp, length)
        return self._await_response(message_id)

    def echo(self) -> Response:
        ctx = next((c for c, (a, _) in self.accepted.items() if a == VERIFICATION), None)
        if ctx is None:
            raise AssociationLost("the server did not accept the Verification SOP class")
        message_id = self._next_id()
        self._send_command(ctx, c_echo_rq(message_id))
        return self._await_response(message_id)

    def release(self) -> None:
        """A-RELEASE; falls back to closing the socket if the peer does not answer properly."""
        if self.closed:
            return
        try:
            self._sock.sendall(_PDU_HEADER.pack(0x05, 0, 4) + bytes(4))
            for _ in range(16):
                pdu_type, _ = _read_pdu(self._sock)
                if pdu_type in (0x06, 0x07):
                    break
        except (OSError, EOFError):
            pass
        self._drop()

    def abort(self) -> None:
        if self.closed:
            return
        with contextlib.suppress(OSError):
            self._sock.sendall(_PDU_HEADER.pack(0x07, 0, 4) + bytes(4))
        self._drop()

    def _drop(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self._sock.close()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        r = sock.recv_into(view[got:])
        if r == 0:
            raise EOFError("the server closed the connection")
        got += r
    return bytes(buf)


def _read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    pdu_type, _, length = _PDU_HEADER.unpack(_recv_exact(sock, 6))
    if length > 64 * 1024 * 1024:
        raise OSError(f"PDU of {length} bytes announced; not a DICOM peer?")
    return pdu_type, _recv_exact(sock, length)
