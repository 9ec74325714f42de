"""TLS: a receiver with a certificate from our test CA; the wrong CA fails with a clear SendError."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rtexport.errors import SendError
from rtexport.export.objects import ExportObject
from rtexport.model.site import TLSConfig
from rtexport.net.send import Destination, echo, send_objects

from .conftest import CALLING_AE
from .scp import FakeSCP

_NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _ca(folder: Path, cn: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - datetime.timedelta(days=1)).not_valid_after(_NOW + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return _write(folder / f"{cn}.pem", cert.public_bytes(serialization.Encoding.PEM)), key, cert


def _server_context(folder: Path, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost")).issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - datetime.timedelta(days=1)).not_valid_after(_NOW + datetime.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert_file = _write(folder / "server.pem", cert.public_bytes(serialization.Encoding.PEM))
    key_file = _write(
        folder / "server.key",
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


@pytest.fixture
def tls_scp(tmp_path: Path) -> tuple[FakeSCP, Path]:
    ca_file, ca_key, ca = _ca(tmp_path, "rtexport-test-ca")
    return FakeSCP(ssl_context=_server_context(tmp_path, ca_key, ca)), ca_file


def test_send_over_tls(tls_scp: tuple[FakeSCP, Path], objects: list[ExportObject]) -> None:
    scp, ca_file = tls_scp
    dest = Destination(scp.aet, "127.0.0.1", scp.port, TLSConfig(ca_file=ca_file, server_hostname="localhost"))
    with scp:
        echo(dest, CALLING_AE)
        report = send_objects(objects, dest, CALLING_AE)

        assert report.ok, report.summary()
        assert set(scp.stored) == {o.sop_instance_uid for o in objects}


def test_wrong_ca_fails_clearly(tls_scp: tuple[FakeSCP, Path], objects: list[ExportObject], tmp_path: Path) -> None:
    scp, _ = tls_scp
    other_ca, _, _ = _ca(tmp_path, "some-other-ca")
    dest = Destination(scp.aet, "127.0.0.1", scp.port, TLSConfig(ca_file=other_ca, server_hostname="localhost"))
    with scp, pytest.raises(SendError, match=r"\(TLS\): TLS certificate not trusted: .*check the CA file"):
        send_objects(objects, dest, CALLING_AE)

    assert scp.stored == {}


def test_plain_client_against_tls_server_fails_clearly(
    tls_scp: tuple[FakeSCP, Path], objects: list[ExportObject]
) -> None:
    scp, _ = tls_scp
    with scp, pytest.raises(SendError, match=r"cannot send to FAKESCP@127\.0\.0\.1:\d+: .*check"):
        send_objects(objects, Destination(scp.aet, "127.0.0.1", scp.port), CALLING_AE, timeout=3)
