"""A private Orthanc for tests and benchmarks: free ports, a temporary folder, TCP_NODELAY=1, stopped by PID.

::

    with Orthanc(tmp_path, modalities={"rtx": ("RTEXPORT", "127.0.0.1", port)}) as orthanc:
        send_objects(objs, Destination(orthanc.aet, "127.0.0.1", orthanc.dicom_port), "RTEXPORT")
        assert set(orthanc.sop_instance_uids()) == {...}
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


class MissingProgram(RuntimeError):
    """A program the tests need is not installed."""


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require(program: Path, package: str) -> None:
    if not (program.is_file() and os.access(program, os.X_OK)):
        raise MissingProgram(f"{program} is not installed; install the '{package}' package (apt-get install {package})")


def stop_by_pid(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the process by its PID, and SIGKILL it if it has not ended within ``grace_s``."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


class Orthanc:
    """Orthanc 1.x started from ``/usr/sbin/Orthanc config.json`` in ``workdir``."""

    user = "rtx"
    password = "rtx-test-password"

    def __init__(
        self,
        workdir: Path,
        aet: str = "ORTHANC",
        modalities: dict[str, tuple[str, str, int]] | None = None,
        startup_timeout: float = 30,
        dicomweb: bool = False,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        """``dicomweb``: load Debian's orthanc-dicomweb plugin (STOW-RS, QIDO-RS, WADO-RS under /dicom-web/).
        ``tls``: (certificate, key, trusted CA) for DICOM TLS, both ways: peers must present a certificate the CA
        signed, and Orthanc calls its modalities over TLS."""
        self.tls = tls
        require(ORTHANC, "orthanc")
        if dicomweb and not DICOMWEB_PLUGIN.is_file():
            raise MissingProgram(f"{DICOMWEB_PLUGIN} is not installed; install the 'orthanc-dicomweb' package")
        self.dicomweb = dicomweb
        self.workdir = workdir
        self.aet = aet
        self.modalities = modalities or {}
        self.startup_timeout = startup_timeout
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "orthanc.log"

    def config(self) -> dict[str, Any]:
        return {
            "Name": "rtexport-test",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.user: self.password},
            "DicomModalities": {
                k: {"AET": v[0], "Host": v[1], "Port": v[2], "UseDicomTls": self.tls is not None}
                for k, v in self.modalities.items()
            },
            **self._tls_config(),
            "DicomCheckCalledAet": True,
            "Plugins": [str(DICOMWEB_PLUGIN)] if self.dicomweb else [],
            "DicomWeb": {"Enable": self.dicomweb, "Root": "/dicom-web/"},
            "StableAge": 60,
        }

    def _tls_config(self) -> dict[str, Any]:
        if self.tls is None:
            return {}
        cert, key, ca = self.tls
        return {
            "DicomTlsEnabled": True,
            "DicomTlsCertificate": str(cert),
            "DicomTlsPrivateKey": str(key),
            "DicomTlsTrustedCertificates": str(ca),
            "DicomTlsRemoteCertificateRequired": True,
        }

    def start(self) -> Orthanc:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.json"
        config.write_text(json.dumps(self.config(), indent=2))
        env = dict(os.environ, TCP_NODELAY="1")  # DCMTK inside Orthanc: no Nagle stall on responses
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(ORTHANC), str(config)], cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}:\n{self._log_tail()}")
            try:
                self.get("/system")
                return self
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {self.startup_timeout} s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        """SIGKILL by PID: its storage and index are the test's to throw away, and a graceful stop waits 3.5 s on
        Orthanc's own polling loops (HTTP, then DICOM server) for nothing a test reads."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    # -- REST ----------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> bytes:
        """The answer's body; ``body`` goes as JSON, ``raw`` as it is (e.g. a DICOM file to ``POST /instances``)."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data, method=method)
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=60) as rsp:
            return bytes(rsp.read())

    def get(self, path: str) -> Any:
        return json.loads(self.request("GET", path))

    def instances(self) -> dict[str, str]:
        """SOP Instance UID → Orthanc instance ID, for everything stored."""
        out = {}
        for orthanc_id in self.get("/instances"):
            tags = self.get(f"/instances/{orthanc_id}/simplified-tags")
            out[tags["SOPInstanceUID"]] = orthanc_id
        return out

    def sop_instance_uids(self) -> set[str]:
        return set(self.instances())

    def file(self, orthanc_id: str) -> bytes:
        """The stored Part 10 file, as Orthanc keeps it."""
        return self.request("GET", f"/instances/{orthanc_id}/file")

    def clear(self) -> None:
        """Delete every patient (and so every instance)."""
        for patient in self.get("/patients"):
            self.request("DELETE", f"/patients/{patient}")

    @property
    def dicomweb_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    def count_instances(self) -> int:
        return int(self.get("/statistics")["CountInstances"])
