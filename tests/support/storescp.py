"""DCMTK ``storescp`` for tests and benchmarks: a free port, an output folder, TCP_NODELAY=1, stopped by PID.

The DCMTK programs are called by absolute path: pynetdicom installs Python scripts named ``storescu`` and
``storescp`` that come first on PATH in this environment.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import pytest

from .certs import TestCA
from .orthanc import MissingProgram, free_port, require, stop_by_pid

DCMTK_BIN = Path("/usr/bin")
STORESCP = DCMTK_BIN / "storescp"
STORESCU = DCMTK_BIN / "storescu"
ECHOSCU = DCMTK_BIN / "echoscu"


def dataset_part(data: bytes) -> bytes:
    """The bytes after the Part 10 file meta (group 0002, explicit VR little endian)."""
    pos = 132
    while data[pos : pos + 2] == b"\x02\x00":
        vr = data[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC", b"UR"):
            pos += 12 + int.from_bytes(data[pos + 8 : pos + 12], "little")
        else:
            pos += 8 + int.from_bytes(data[pos + 6 : pos + 8], "little")
    return data[pos:]


class StoreSCP:
    """``storescp`` writing what it receives into ``output``; ``fork`` handles associations in parallel."""

    def __init__(
        self,
        output: Path,
        aet: str = "STORESCP",
        fork: bool = False,
        ignore: bool = False,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        """``tls``: (our key, our certificate, the CA whose certificates clients must present)."""
        require(STORESCP, "dcmtk")
        self.output = output
        self.aet = aet
        self.port = free_port()
        self.fork = fork
        self.ignore = ignore
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None
        self.log = output.parent / f"storescp-{self.port}.log"

    def start(self, timeout: float = 10) -> StoreSCP:
        self.output.mkdir(parents=True, exist_ok=True)
        args = [str(STORESCP), "-aet", self.aet, "--output-directory", str(self.output)]
        args += ["--fork"] if self.fork else []
        args += ["--ignore"] if self.ignore else []
        if self.tls is not None:
            key, cert, ca = self.tls
            args += ["+tls", str(key), str(cert), "+cf", str(ca), "--require-peer-cert"]
        env = dict(os.environ, TCP_NODELAY="1")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen([*args, str(self.port)], env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"storescp exited with {self.process.returncode}: {self.log.read_text()}")
            try:
                # A bare TCP connect only makes storescp log a short error; it shows the port is listening.
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"storescp did not listen on port {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.process is None:
            return
        stop_by_pid(self.process, 10)
        self.process = None

    def __enter__(self) -> StoreSCP:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def received(self) -> dict[str, bytes]:
        """File name → dataset bytes of everything received (storescp names files ``<modality>.<SOP UID>``)."""
        return {p.name: dataset_part(p.read_bytes()) for p in sorted(self.output.iterdir()) if p.is_file()}


@contextmanager
def storescp_over_tls(output: Path, ca: TestCA) -> Iterator[StoreSCP]:
    """DCMTK storescp over TLS with a certificate from ``ca``, requiring client certificates signed by it."""
    server = ca.issue("storescp")
    try:
        scp = StoreSCP(output, tls=(server.key, server.cert, ca.file))
    except MissingProgram as e:
        pytest.fail(str(e))
    with scp:
        yield scp


def storescu(paths: list[Path], port: int, called: str, calling: str = "STORESCU", timeout: float = 120,
             host: str = "127.0.0.1") -> subprocess.CompletedProcess[str]:  # fmt: skip
    """DCMTK ``storescu`` sending ``paths`` (files or folders, recursively) to ``host:port`` on one association;
    the finished process (its return code is not checked: a refusal is a test's to look at)."""
    require(STORESCU, "dcmtk")
    args = [str(STORESCU), "-aet", calling, "-aec", called, "+sd", "+r", "-nh", host, str(port)]
    env = dict(os.environ, TCP_NODELAY="1")
    return subprocess.run([*args, *map(str, paths)], env=env, capture_output=True, text=True, timeout=timeout)
