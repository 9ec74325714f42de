"""A scripted DICOM peer for protocol faults: the far end of a socket pair (or of a loopback connection),
driven step by step by a test on its own thread. It reads PDUs with pynetdicom's decoder, so what it checks
does not rest on the codec under test."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

from pynetdicom.pdu import A_ABORT_RQ, A_ASSOCIATE_RQ, P_DATA_TF

from rtexport.net import pdu
from rtexport.net.dimse import Command
from rtexport.net.pdu import AssociateAC, ContextAnswer, ContextResult, UserInformation
from tests.support.orthanc import free_port

# A safety net against a test that hangs; every wait below ends long before it when the code is right.
_NET = 10.0


class Peer:
    """One end of a connection, scripted."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(_NET)

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("closed")
            buf += chunk
        return buf

    def read_raw(self) -> tuple[int, bytes]:
        """The next PDU's type and its whole bytes (header included)."""
        head = self._exact(6)
        pdu_type, _, length = struct.unpack(">BBI", head)
        return pdu_type, head + self._exact(length)

    def read(self) -> Any:
        """The next PDU, decoded by pynetdicom."""
        pdu_type, raw = self.read_raw()
        cls = {0x01: A_ASSOCIATE_RQ, 0x04: P_DATA_TF, 0x07: A_ABORT_RQ}.get(pdu_type)
        if cls is None:
            return pdu_type
        decoded = cls()
        decoded.decode(raw)
        return decoded

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def accept_association(self, max_pdu: int = 16384) -> Any:
        """Read the A-ASSOCIATE-RQ and accept every context with its first transfer syntax."""
        rq = self.read()
        assert isinstance(rq, A_ASSOCIATE_RQ)
        answers = tuple(
            ContextAnswer(int(c.context_id or 0), ContextResult.ACCEPTANCE, str(c.transfer_syntax[0]))
            for c in rq.presentation_context
        )
        user = UserInformation(max_pdu, "1.2.3.4", "PEER")
        called, calling = rq.called_ae_title.strip(), rq.calling_ae_title.strip()
        self.send(pdu.encode(AssociateAC(called, calling, answers, user)))
        return rq

    def read_message(self) -> tuple[Command, bytes]:
        """The next DIMSE message's command and data set (empty when none), from P-DATA-TF PDUs."""
        command, data = b"", b""
        while True:
            pdata = self.read()
            assert isinstance(pdata, P_DATA_TF), f"expected P-DATA-TF, got {pdata!r}"
            for item in pdata.presentation_data_value_items:
                pdv = item.presentation_data_value or b""
                control, value = pdv[0], pdv[1:]
                if control & 1:
                    command += value
                    if control & 2 and not Command.decode(command).has_data_set:
                        return Command.decode(command), b""
                else:
                    data += value
                    if control & 2:
                        return Command.decode(command), data

    def respond(self, context_id: int, command: Command) -> None:
        self.send(pdu.encode(pdu.PDataTF((pdu.PDV(context_id, True, True, command.encode()),))))

    def read_abort(self) -> Any:
        """Skip anything else until an A-ABORT arrives; returns it."""
        while True:
            got = self.read()
            if isinstance(got, A_ABORT_RQ):
                return got

    def wait_closed(self) -> bool:
        """True once the other end has closed (whatever it sent before is discarded)."""
        try:
            while self.sock.recv(65536):
                pass
        except TimeoutError:
            return False
        except OSError:
            return True
        return True


def run(script: Callable[[Peer], Any], sock: socket.socket) -> Future[Any]:
    """Run ``script`` against ``sock`` on a thread; the future holds its result or its exception."""
    done: Future[Any] = Future()

    def target() -> None:
        try:
            done.set_result(script(Peer(sock)))
        except BaseException as e:
            done.set_exception(e)
        finally:
            sock.close()

    threading.Thread(target=target, daemon=True).start()
    return done


@contextmanager
def listening(script: Callable[[Peer], Any]) -> Iterator[tuple[int, Future[Any]]]:
    """A loopback port whose first connection is handed to ``script``; yields (port, the script's future)."""
    port = free_port()
    server = socket.create_server(("127.0.0.1", port))
    result: Future[Any] = Future()

    def target() -> None:
        try:
            server.settimeout(_NET)
            conn, _ = server.accept()
        except BaseException as e:
            result.set_exception(e)
            return
        finally:
            server.close()

        def relay(inner: Future[Any]) -> None:
            error = inner.exception()
            if error is not None:
                result.set_exception(error)
            else:
                result.set_result(inner.result())

        run(script, conn).add_done_callback(relay)

    threading.Thread(target=target, daemon=True).start()
    yield port, result


class SilentArchive:
    """Accepts every association and every context, answers the first ``answer`` C-STORE requests of all its
    associations together with success, then reads and never answers (an archive that hangs). Stopped by
    ``with``; every connection it holds is closed then."""

    def __init__(self, answer: int = 0) -> None:
        self.port = free_port()
        self.answer = answer
        self.answered = 0
        self.associations = 0
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()

    def __enter__(self) -> SilentArchive:
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.close()
        with self._lock:
            for conn in self._conns:
                conn.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
                self.associations += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        p = Peer(conn)
        p.sock.settimeout(None)
        try:
            p.accept_association()
            while True:
                command, _ = p.read_message()
                with self._lock:
                    if self.answered >= self.answer:
                        break
                    self.answered += 1
                rsp = Command(0x8001, responded_to=command.message_id, affected_sop_class=command.affected_sop_class,
                              affected_sop_instance=command.affected_sop_instance, status=0)  # fmt: skip
                p.respond(1, rsp)
            while p.sock.recv(65536):  # hang: take whatever comes, answer nothing
                pass
        except (OSError, EOFError, AssertionError):
            return
