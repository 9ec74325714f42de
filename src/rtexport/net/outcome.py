"""Where a send goes and what became of it: :class:`Destination`, one :class:`InstanceResult` per object, and the
:class:`SendReport` that keeps storage and storage commitment apart."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from enum import StrEnum

from rtexport.errors import SendError
from rtexport.export.objects import ExportObject
from rtexport.model.site import DicomServer, TLSConfig
from rtexport.net.association import connect


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

    def open_socket(self, timeout: float, ssl_context: ssl.SSLContext | None) -> socket.socket:
        hostname = self.tls.server_hostname if self.tls else None
        return connect(self.host, self.port, timeout, ssl_context, hostname)


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
    """Everything a send did. Storage and commitment are separate: ``commit_asked`` says whether the caller
    asked for commitment, ``committed`` is None when it was not requested from the server (``problems`` say
    why), else the SOP Instance UIDs the server committed."""

    destination: Destination
    results: tuple[InstanceResult, ...]
    committed: tuple[str, ...] | None = None
    commit_failed: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    bytes_sent: int = 0
    seconds: float = 0.0
    commit_asked: bool = False

    @property
    def stored(self) -> tuple[InstanceResult, ...]:
        return tuple(r for r in self.results if r.stored)

    @property
    def unstored(self) -> tuple[InstanceResult, ...]:
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
        if not self.all_stored:
            lines.append("  sending the same export again sends what is missing; stored objects are kept once")
        return "\n".join(lines)
