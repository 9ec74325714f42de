"""A listening socket that hands each connection to a thread of its own, at most ``max_connections`` at once:
what the storage commitment listener and the Storage SCP stand on. Stopped by ``with`` (or :meth:`stop`):
connections still open are shut down, so their reads end at once, not at a timeout."""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import ssl
import threading

LOGGER = logging.getLogger(__name__)


class Acceptor:
    """Listens on ``(host, port)``; :meth:`handle` runs on a thread per connection (TLS when ``ssl_context``,
    a server context, is given; the handshake is bounded by ``handshake_s``)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 8,
        handshake_s: float = 5,
        name: str = "listener",
    ) -> None:
        self.address = (host, port)
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self.handshake_s = handshake_s
        self.name = name
        self.refused_busy = 0  # connections closed because max_connections were open
        self._lock = threading.Condition()
        self._wake: tuple[socket.socket, socket.socket] | None = None  # made when started
        self._server: socket.socket | None = None
        self._serving: threading.Thread | None = None
        self._connections: dict[socket.socket, threading.Thread] = {}

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("not listening")
        return int(self._server.getsockname()[1])

    @property
    def listening(self) -> bool:
        return self._serving is not None

    def start(self) -> None:
        """Bind and listen (raises OSError when the address cannot be had), then serve in the background."""
        self._server = socket.create_server(self.address, backlog=max(16, self.max_connections * 2))
        self._wake = socket.socketpair()
        self._serving = threading.Thread(target=self._serve, name=f"{self.name}-{self.port}", daemon=True)
        self._serving.start()
        LOGGER.info("%s listening on %s port %d%s", self.name, self.address[0] or "every interface", self.port,
                    " (TLS)" if self.ssl_context else "")  # fmt: skip

    def stop(self) -> None:
        if self._wake is None:
            return
        self._wake[1].send(b"x")
        if self._serving is not None:
            self._serving.join()
        with self._lock:
            connections = list(self._connections.items())
        for sock, _ in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # a peer still connected: its reads end now, not at a timeout
        for _, thread in connections:
            thread.join()
        for s in (self._server, *self._wake):
            if s is not None:
                s.close()
        LOGGER.info("%s stopped", self.name)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no connection is open (True) or ``timeout`` passes (False)."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._connections, timeout)

    def handle(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        """Serve one connection (overridden); the socket is closed afterwards."""
        raise NotImplementedError

    def _serve(self) -> None:
        if self._server is None or self._wake is None:
            return
        wake = self._wake[0]
        with selectors.DefaultSelector() as sel:
            sel.register(self._server, selectors.EVENT_READ)
            sel.register(wake, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in sel.select()}
                if wake in ready:
                    return
                try:
                    conn, peer = self._server.accept()
                except OSError:
                    continue
                with self._lock:
                    if len(self._connections) >= self.max_connections:
                        self.refused_busy += 1
                        LOGGER.info("%s: connection from %s closed: %d already open", self.name, peer[0],
                                    self.max_connections)  # fmt: skip
                        conn.close()
                        continue
                    thread = threading.Thread(target=self._connection, args=(conn, peer), daemon=True)
                    self._connections[conn] = thread
                thread.start()

    def _connection(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        sock = conn
        # Our answers are small: with Nagle on, each would wait for the ACK the peer delays (~40 ms).
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if self.ssl_context is not None:
                conn.settimeout(self.handshake_s)
                try:
                    sock = self.ssl_context.wrap_socket(conn, server_side=True)
                except OSError as e:
                    self.tls_failed(peer, e)
                    return
            self.handle(sock, (str(peer[0]), int(peer[1])))
        finally:
            sock.close()
            with self._lock:
                del self._connections[conn]
                self._lock.notify_all()

    def tls_failed(self, peer: tuple[str, int], e: OSError) -> None:
        """A TLS handshake that failed (overridden to note it)."""
        LOGGER.info("%s: TLS handshake with %s failed: %s", self.name, peer[0], e)
