"""What a send takes and where it goes, and what became of it: the :class:`Instance` protocol (a Part 10 file the
sender can read), :class:`Destination`, one :class:`InstanceResult` per instance, and the :class:`SendReport` that
keeps storage and storage commitment apart. Reports are generic in the caller's instance type, so a caller gets
its own objects back."""

from __future__ import annotations

import base64
import socket
import ssl
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Generic, Protocol, TypeVar

from rtexport.errors import SendError
from rtexport.model.site import DicomServer, ReceiverTLS, TLSConfig
from rtexport.net.transport import connect


class Instance(Protocol):
    """A DICOM Part 10 file to send. ``sha256``: the digest its bytes must have (checked as they are read and
    before the last of them leaves), or None; ``kind``: a short label shown in results (e.g. "CT"); ``path``: the
    file ``open`` reads, when its bytes are a file (the sender then reads it by system calls, not ``open``)."""

    @property
    def kind(self) -> str: ...

    @property
    def sop_class_uid(self) -> str: ...

    @property
    def sop_instance_uid(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def sha256(self) -> str | None: ...

    @property
    def path(self) -> Path | None: ...

    def open(self) -> BinaryIO: ...


T = TypeVar("T", bound=Instance)


@dataclass(frozen=True)
class Destination:
    """Where to send: the server's AE title, host, port and optional TLS."""

    ae_title: str
    host: str
    port: int
    tls: TLSConfig | None = None

    @classmethod
    def from_server(cls, server: DicomServer) -> Destination:
        """The DICOM server's destination; raises SendError for a server of another kind (DICOMweb)."""
        if server.kind != "dimse" or server.port is None:
            raise SendError(f"server {server.name!r} is a {server.kind} server, not a DICOM AE")
        return cls(server.ae_title, server.host, server.port, server.tls)

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}{' (TLS)' if self.tls else ''}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context from the TLS files; raises SendError when they cannot be loaded."""
        if self.tls is None:
            return None
        return client_context(self.tls, str(self))

    def open_socket(self, timeout: float, ssl_context: ssl.SSLContext | None) -> socket.socket:
        hostname = self.tls.server_hostname if self.tls else None
        return connect(self.host, self.port, timeout, ssl_context, hostname)


@dataclass(frozen=True)
class WebDestination:
    """A DICOMweb service: its base URL (e.g. ``http://host:8042/dicom-web``) and HTTP basic credentials."""

    url: str
    user: str = ""
    password: str = ""

    def __str__(self) -> str:
        return self.url

    def auth_headers(self) -> dict[str, str]:
        if not self.user:
            return {}
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


class InstanceOutcome(StrEnum):
    """What became of one object."""

    STORED = "stored"  # success status
    WARNING = "warning"  # stored, the server reported a warning (e.g. coerced elements)
    FAILED = "failed"  # the server refused it, or it could not be sent; not retried again
    NOT_SENT = "not sent"  # never sent, or its storage was not confirmed: send again


@dataclass(frozen=True)
class InstanceResult(Generic[T]):
    """Outcome of one object; ``status`` is the DIMSE status when the server answered."""

    obj: T
    outcome: InstanceOutcome
    status: int | None
    meaning: str

    @property
    def stored(self) -> bool:
        return self.outcome in (InstanceOutcome.STORED, InstanceOutcome.WARNING)

    def describe(self) -> str:
        status = f" [0x{self.status:04X}]" if self.status is not None else ""
        return f"{self.obj.kind} {self.obj.sop_instance_uid}: {self.outcome.value}{status} {self.meaning}"


@dataclass(frozen=True)
class SendReport(Generic[T]):
    """Everything a send did. Storage and commitment are separate: ``commit_asked`` says whether the caller
    asked for commitment, ``committed`` is None when it was not requested from the server (``problems`` say
    why), else the SOP Instance UIDs the server committed."""

    destination: Destination | WebDestination
    results: tuple[InstanceResult[T], ...]
    committed: tuple[str, ...] | None = None
    commit_failed: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    bytes_sent: int = 0
    seconds: float = 0.0
    commit_asked: bool = False

    @property
    def stored(self) -> tuple[InstanceResult[T], ...]:
        return tuple(r for r in self.results if r.stored)

    @property
    def unstored(self) -> tuple[InstanceResult[T], ...]:
        return tuple(r for r in self.results if not r.stored)

    @property
    def all_stored(self) -> bool:
        return not self.unstored

    @property
    def all_committed(self) -> bool:
        """Storage commitment was requested and the server committed every object."""
        if self.committed is None:
            return False
        return {r.obj.sop_instance_uid for r in self.results} <= set(self.committed)

    @property
    def ok(self) -> bool:
        """Every object stored (success or warning), and committed when commitment was asked for."""
        return self.all_stored and (self.all_committed or not self.commit_asked)

    def summary(self) -> str:
        n = len(self.results)
        lines = [f"{len(self.stored)} of {n} objects stored on {self.destination}"]
        lines += [f"  {r.describe()}" for r in self.results if r.outcome != InstanceOutcome.STORED]
        if self.committed is not None:
            lines.append(f"  storage commitment: {len(self.committed)} of {n} committed")
            lines += [f"  commitment failed: {uid}" for uid in self.commit_failed]
        lines += [f"  {p}" for p in self.problems]
        if not self.all_stored:
            lines.append("  sending the same export again sends what is missing; stored objects are kept once")
        return "\n".join(lines)


def _files(tls: TLSConfig | ReceiverTLS) -> tuple[str | None, str | None, str | None]:
    return (
        str(tls.ca_file) if tls.ca_file else None,
        str(tls.cert_file) if tls.cert_file else None,
        str(tls.key_file) if tls.key_file else None,
    )


def client_context(tls: TLSConfig, where: str) -> ssl.SSLContext:
    """A TLS client context: the server verified against ``ca_file`` (else the system's CAs), our certificate
    and key presented when given. Raises SendError naming the file that cannot be loaded."""
    ca, cert, key = _files(tls)
    if key is not None and cert is None:
        raise SendError(f"{where}: a TLS key_file without its cert_file; give both (--tls-cert and --tls-key)")
    try:
        ctx = ssl.create_default_context(cafile=ca)
        if cert is not None:
            ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise SendError(f"{where}: cannot load the TLS files ({e}); check ca_file, cert_file, key_file") from e
    return ctx


def server_context(tls: TLSConfig | ReceiverTLS, where: str) -> ssl.SSLContext:
    """A TLS server context for our listeners: our certificate and key; the peer must present a certificate
    signed by ``ca_file`` when one is given. Raises SendError when the files are missing or cannot be loaded."""
    ca, cert, key = _files(tls)
    if cert is None:
        raise SendError(f"{where}: listening with TLS needs our certificate (tls cert_file and key_file)")
    try:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise SendError(f"{where}: cannot load the TLS files ({e}); check ca_file, cert_file, key_file") from e
    ctx.verify_mode = ssl.CERT_REQUIRED if ca is not None else ssl.CERT_NONE
    return ctx
