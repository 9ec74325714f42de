"""The transport under an association: a TCP (or TLS) stream carrying PDUs, and the clocks that bound its waits.

:class:`Timer` is one wait's limit on an injectable monotonic clock; :class:`Deadline` is a whole operation's
(a total limit and a limit without progress), shared by its threads; :class:`Transport` reads whole PDUs within
a timer and refuses, unread, a P-DATA-TF longer than the Maximum Length we announced.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rtexport.net import pdu
from rtexport.net.pdu import PDUError, PDUType

Clock = Callable[[], float]

# The largest non-P-DATA PDU we read (an A-ASSOCIATE-AC with 128 contexts is about 12 KiB).
_MAX_CONTROL_PDU = 1 << 20
# Buffers one gathering write may take (IOV_MAX; 1024 on Linux).
_IOV_MAX = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 16


class ConnectionClosed(EOFError):
    """The peer closed the transport connection."""


class Deadline:
    """When a whole operation (an export to a server) must end: ``total`` seconds after it starts, or ``idle``
    seconds after its last progress, whichever comes first (None: no such limit). Shared by the threads of the
    operation; every timer of its associations ends by it, so no wait outlives it."""

    def __init__(self, total: float | None = None, idle: float | None = None, clock: Clock = time.monotonic) -> None:
        self.total = total
        self.idle = idle
        self._clock = clock
        self._start = self._last = clock()

    def progress(self) -> None:
        """Something was confirmed: the limit without progress starts again."""
        self._last = self._clock()

    def end(self) -> float:
        ends = [math.inf]
        if self.total is not None:
            ends.append(self._start + self.total)
        if self.idle is not None:
            ends.append(self._last + self.idle)
        return min(ends)

    def remaining(self) -> float:
        return self.end() - self._clock()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def why(self) -> str:
        """Which limit passed, in words."""
        now = self._clock()
        if self.total is not None and now >= self._start + self.total:
            return f"the deadline of {self.total:g} s for the whole operation passed"
        return f"nothing was confirmed for {self.idle:g} s"


class Timer:
    """A deadline on a monotonic clock (injectable, so tests can make time pass without waiting), ending no
    later than the operation's :class:`Deadline` when one is given."""

    def __init__(self, seconds: float, clock: Clock = time.monotonic, deadline: Deadline | None = None) -> None:
        self.seconds = seconds
        self._clock = clock
        self._end = clock() + seconds
        if deadline is not None:
            self._end = min(self._end, deadline.end())

    def remaining(self) -> float:
        return self._end - self._clock()


@dataclass(frozen=True)
class Timeouts:
    """Seconds. ``connect``: TCP and TLS; ``acse``: answer to our association or release request; ``dimse``: a
    response, or the next PDU of a message; ``artim``: PS3.8 9.1.5 (Sta2, Sta13); ``send``: the peer reading."""

    connect: float = 30
    acse: float = 30
    dimse: float = 30
    artim: float = 5
    send: float = 30

    @classmethod
    def uniform(cls, seconds: float, artim: float = 5) -> Timeouts:
        return cls(seconds, seconds, seconds, min(artim, seconds), seconds)


def _after(parts: Sequence[bytes | bytearray | memoryview], sent: int) -> list[memoryview]:
    """What is left of ``parts`` once their first ``sent`` bytes went."""
    rest = []
    for part in parts:
        if sent >= len(part):
            sent -= len(part)
        else:
            rest.append(memoryview(part)[sent:])
            sent = 0
    return rest


class Transport:
    """A connected stream socket (TCP or TLS) carrying PDUs; every read is bounded by a :class:`Timer`."""

    def __init__(self, sock: socket.socket, max_pdata_length: int, send_timeout: float) -> None:
        self.sock = sock
        self.max_pdata_length = max_pdata_length
        self._send_timeout = send_timeout
        self._timeout: float | None = None
        self._head = bytearray(pdu.HEADER_SIZE)
        # With reuse_pdata_body (the receiver), every P-DATA-TF body is read into this one buffer (no allocation
        # per PDU): its PDVs are then views valid only until the next read, which the receiver's DIMSE layer copies
        # at once; and a plain TCP socket is read without a poll before each read (:meth:`_read_ready`).
        self.reuse_pdata_body = False
        self._pdata_body = bytearray(0)
        self._poller: select.poll | None = None

    def _settimeout(self, seconds: float) -> None:
        if seconds != self._timeout:  # each change is a system call; most sends reuse the last value
            self.sock.settimeout(seconds)
            self._timeout = seconds

    def send(self, data: bytes | bytearray | memoryview, timeout: float | None = None) -> None:
        """Send all of ``data``; TimeoutError when the peer takes nothing for ``timeout`` (default: send timeout)."""
        self._settimeout(self._send_timeout if timeout is None else max(timeout, 1e-3))
        self.sock.sendall(data)

    def send_parts(self, parts: Sequence[bytes | bytearray | memoryview], timeout: float | None = None) -> None:
        """Send the concatenation of ``parts`` (byte buffers) by gathering writes: PDU headers and the data
        between them go without being joined first, mostly in one system call. TimeoutError when the peer does
        not take all of it within ``timeout`` (default: the send timeout)."""
        seconds = self._send_timeout if timeout is None else max(timeout, 1e-3)
        if isinstance(self.sock, ssl.SSLSocket):  # TLS has no gathering write
            self.send(b"".join(parts), timeout)
            return
        end = time.monotonic() + seconds
        # As for reads: a timeout no longer than ``seconds`` and not much shorter stays (each change is system
        # calls); should it pass first, the rest of ``seconds`` is waited below.
        if self._timeout is None or not seconds / 2 <= self._timeout <= seconds:
            self._settimeout(seconds)
        try:
            sent = self.sock.sendmsg(parts) if len(parts) <= _IOV_MAX else 0
        except TimeoutError:
            sent = 0
        if sent < sum(map(len, parts)):  # the peer is slow to read (or too many parts): the rest, by ``end``
            self._send_rest(_after(parts, sent), end)

    def _send_rest(self, views: list[memoryview], end: float) -> None:
        while views:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self._settimeout(left)
            views = _after(views, self.sock.sendmsg(views[:_IOV_MAX]))

    def _recv_into(self, view: memoryview, timer: Timer) -> None:
        if self.reuse_pdata_body and not isinstance(self.sock, ssl.SSLSocket):
            self._read_ready(view, timer)
            return
        got = 0
        while got < len(view):
            left = timer.remaining()
            if left <= 0:
                raise TimeoutError
            # The socket's timeout may stay when it ends no later than the timer and not much earlier: a
            # change is system calls, and the timer moves on only by the time each read took.
            if self._timeout is None or not left / 2 <= self._timeout <= left:
                self._settimeout(left)
            try:
                n = self.sock.recv_into(view[got:])
            except TimeoutError:
                if timer.remaining() > 0:  # the socket's timeout was the shorter: wait the rest
                    self._timeout = None
                    continue
                raise
            if n == 0:
                raise ConnectionClosed
            got += n

    def _read_ready(self, view: memoryview, timer: Timer) -> None:
        """:meth:`_recv_into` on the receiver's plain TCP sockets: read what is there and wait (poll) only when
        nothing is; a socket with a timeout would poll before every read (twice the system calls a fragment)."""
        if self._poller is None:
            self._settimeout(self._timeout or self._send_timeout)  # a timeout: the descriptor does not block
            self._poller = select.poll()
            self._poller.register(self.sock.fileno(), select.POLLIN)
        fd, got = self.sock.fileno(), 0
        while got < len(view):
            try:
                n = os.readv(fd, [view[got:]])
            except BlockingIOError:
                left = timer.remaining()
                if left <= 0:
                    raise TimeoutError from None
                self._poller.poll(math.ceil(left * 1000))
                continue
            if n == 0:
                raise ConnectionClosed
            got += n

    def read_pdu(self, timer: Timer) -> tuple[int, bytearray | memoryview]:
        """The next PDU's type and body (a fresh buffer each time: received PDVs are views into it; with
        :attr:`reuse_pdata_body` a P-DATA-TF's is a view of the reused buffer). A P-DATA-TF longer than we
        announced raises PDUError unread."""
        self._recv_into(memoryview(self._head), timer)
        pdu_type, _, length = pdu.HEADER.unpack(self._head)
        if pdu_type == PDUType.P_DATA_TF and self.max_pdata_length and length > self.max_pdata_length:
            raise PDUError(
                f"P-DATA-TF PDU of {length} bytes, longer than the maximum of {self.max_pdata_length} we announced"
            )
        if pdu_type != PDUType.P_DATA_TF and length > _MAX_CONTROL_PDU:
            raise PDUError(f"PDU type 0x{pdu_type:02x} of {length} bytes; not a DICOM peer?")
        if pdu_type == PDUType.P_DATA_TF and self.reuse_pdata_body:
            if len(self._pdata_body) < length:
                self._pdata_body = bytearray(max(length, self.max_pdata_length))
            view = memoryview(self._pdata_body)[:length]
            self._recv_into(view, timer)
            return pdu_type, view
        body = bytearray(length)
        self._recv_into(memoryview(body), timer)
        return pdu_type, body

    def drain_until_closed(self, timer: Timer) -> bool:
        """Discard whatever arrives until the peer closes (True) or the timer expires (False)."""
        scratch = memoryview(bytearray(65536))
        try:
            while True:
                left = timer.remaining()
                if left <= 0:
                    return False
                self._settimeout(left)
                if self.sock.recv_into(scratch) == 0:
                    return True
        except TimeoutError:
            return False
        except OSError:
            return True

    def tls_alert(self) -> ssl.SSLError | None:
        """After a failed send on TLS: the alert the peer sent before closing (e.g. that it requires our
        certificate), read if it is there; None otherwise."""
        if not isinstance(self.sock, ssl.SSLSocket):
            return None
        try:
            self.sock.settimeout(1.0)
            self.sock.recv(1)
        except ssl.SSLError as e:
            return e
        except OSError:
            return None
        return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def connect(
    host: str,
    port: int,
    timeout: float,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> socket.socket:
    """A TCP (and TLS) connection with Nagle off; raises OSError (refused, timed out, TLS failure)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        # DCMTK and Orthanc delay their ACKs; with Nagle on our side each response would wait ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock, server_hostname=server_hostname or host)
    except BaseException:
        sock.close()
        raise
    return sock
