"""The ``[dicom]`` part of ``site.toml``: who we are on the network, the servers we send to or query (DICOM or
DICOMweb), the receiver that takes courses pushed to us, and how long a send may take."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rtexport.model.values import Count, Finite, Text, TimeZoneName

_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # no backslash, printable, 1-16 chars
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Port = Annotated[Count, Field(ge=1, le=65535)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def validate_ae_title(v: str) -> str:
    if not _AE_TITLE.match(v) or not v.strip():
        raise ValueError(f"AE title {v!r} must be 1-16 printable characters, no backslash")
    return v


class TLSConfig(_Model):
    """TLS for a DICOM association: CA bundle to verify the peer, our certificate and key (sent to servers that
    ask for one; presented by our listeners)."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_hostname: str | None = None

    @model_validator(mode="after")
    def _key_with_cert(self) -> Self:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file without cert_file: give both")
        return self


class ReceiverTLS(_Model):
    """TLS for the receiver: our certificate and its key, presented to every peer; with ``ca_file``, peers must
    present a client certificate that CA file trusts."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None


class DicomServer(_Model):
    """A server we send to or query. ``kind = "dimse"`` (default): a DICOM AE (``ae_title``, ``host``, ``port``,
    optional ``tls``); ``kind = "dicomweb"``: a DICOMweb service at ``url`` (STOW-RS), with HTTP basic
    credentials ``user`` and the password in the environment variable ``password_env``."""

    name: Text
    kind: Literal["dimse", "dicomweb"] = "dimse"
    ae_title: Text = ""
    host: Text = ""
    port: Port | None = None
    tls: TLSConfig | None = None
    url: Text = ""
    user: Text = ""
    password_env: Text = ""

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Self:
        if self.kind == "dimse":
            missing = [k for k in ("ae_title", "host") if not getattr(self, k)] + (
                ["port"] if self.port is None else []
            )
            if missing:
                raise ValueError(f"a DICOM server needs {', '.join(missing)}")
            validate_ae_title(self.ae_title)
            if self.url:
                raise ValueError("url is for kind = 'dicomweb'")
        else:
            if not self.url.startswith(("http://", "https://")):
                raise ValueError("a DICOMweb server needs url = 'http(s)://host:port/path' (its base URL)")
            if self.ae_title or self.port is not None or self.tls is not None:
                raise ValueError("ae_title, port and tls are for kind = 'dimse'; a DICOMweb server has a url")
        if self.password_env and not _ENV_NAME.match(self.password_env):
            raise ValueError(f"password_env {self.password_env!r} is not an environment variable name")
        return self


class ReceiverSettings(_Model):
    """The Storage SCP that takes CT and RT Structure Sets pushed to us (``rtexport receive``, ``serve``).

    Only calling AE titles in ``allowed_ae_titles`` (empty: any) from hosts in ``allowed_hosts`` (addresses or
    networks; empty: loopback only) may associate."""

    ae_title: Text = "RTEXPORT"
    port: Port = 11112
    bind: Text = "127.0.0.1"
    tls: ReceiverTLS | None = None
    allowed_ae_titles: list[Text] = Field(default_factory=list)
    allowed_hosts: list[Text] = Field(default_factory=list)
    max_associations: Annotated[Count, Field(ge=1, le=64)] = 8

    @field_validator("ae_title")
    @classmethod
    def _valid_ae(cls, v: str) -> str:
        return validate_ae_title(v)

    @field_validator("allowed_ae_titles")
    @classmethod
    def _valid_titles(cls, v: list[str]) -> list[str]:
        for title in v:
            validate_ae_title(title)
        return v

    @field_validator("bind")
    @classmethod
    def _valid_bind(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError as e:
            raise ValueError(f"{v!r} is not an IP address (e.g. 127.0.0.1, or 0.0.0.0 for every interface)") from e
        return v

    @field_validator("allowed_hosts")
    @classmethod
    def _valid_hosts(cls, v: list[str]) -> list[str]:
        for host in v:
            try:
                ipaddress.ip_network(host, strict=False)
            except ValueError as e:
                raise ValueError(f"{host!r} is not an address or network (e.g. 10.0.0.5 or 10.0.0.0/24)") from e
        return v


class DicomSettings(_Model):
    """Where exports go by default, who we are on the network, and where the web page may write."""

    export_folder: Path = Path("dicom-export")
    local_ae_title: Text = "RTEXPORT"
    servers: list[DicomServer] = Field(default_factory=list)
    export_roots: list[Path] = Field(default_factory=list)
    import_roots: list[Path] = Field(default_factory=list)  # where the web page may read courses to import
    # Storage commitment: the archive reports back on a new association to this port (register our AE there).
    commitment_port: Port | None = None
    # The address the commitment listener binds; empty: our address on the association to the archive.
    commitment_host: Text = ""
    # Custom servers (an AE title, host and port typed on the web page) and Test connection to them: physicists
    # only, unless this is true.
    allow_custom_servers: Annotated[bool, Field(strict=True)] = False
    # A send to a server ends when nothing was confirmed for send_idle_s seconds, and after send_deadline_s in all.
    send_idle_s: Annotated[Finite, Field(gt=0, le=86400)] = 300.0
    send_deadline_s: Annotated[Finite, Field(gt=0, le=86400)] | None = None
    # Parallel associations a send opens for CT images (the archive may limit how many a caller may open).
    send_associations: Annotated[Count, Field(ge=1, le=16)] = 3
    receiver: ReceiverSettings | None = None
    # DICOM dates and times are local: the time zone they are written in; default: the machine's local zone.
    timezone: TimeZoneName | None = None

    @field_validator("local_ae_title")
    @classmethod
    def _valid_ae(cls, v: str) -> str:
        return validate_ae_title(v)

    def server(self, name: str) -> DicomServer | None:
        return next((s for s in self.servers if s.name == name), None)
