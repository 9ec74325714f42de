"""TLS: a receiver with a certificate from our test CA; the wrong CA fails with a clear SendError."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pynetdicom import AE, build_role

from rtexport.errors import SendError
from rtexport.export.objects import ExportObject
from rtexport.model.site import TLSConfig
from rtexport.net.commitment import STORAGE_COMMITMENT_INSTANCE, STORAGE_COMMITMENT_PUSH, ReportListener
from rtexport.net.outcome import server_context
from rtexport.net.send import Destination, echo, send_objects
from rtexport.net.transport import Timeouts
from tests.support.certs import TestCA
from tests.support.orthanc import MissingProgram, Orthanc, free_port
from tests.support.storescp import StoreSCP, storescp_over_tls

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
    with (
        scp,
        pytest.raises(
            SendError, match=r"\(TLS\): the server.s TLS certificate is not trusted \(.*\); check the CA file"
        ),
    ):
        send_objects(objects, dest, CALLING_AE)

    assert scp.stored == {}


def test_plain_client_against_tls_server_fails_clearly(
    tls_scp: tuple[FakeSCP, Path], objects: list[ExportObject]
) -> None:
    scp, _ = tls_scp
    with scp, pytest.raises(SendError, match=r"cannot send to FAKESCP@127\.0\.0\.1:\d+: .*check"):
        send_objects(objects, Destination(scp.aet, "127.0.0.1", scp.port), CALLING_AE, timeout=3)


# -- DCMTK storescp requiring a client certificate (+tls ... +cf ca.pem, --require-peer-cert) -------------------


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "pki")


@pytest.fixture
def tls_storescp(tmp_path: Path, ca: TestCA) -> Iterator[StoreSCP]:
    with storescp_over_tls(tmp_path / "storescp-out", ca) as scp:
        yield scp


def test_storescp_requiring_a_client_certificate_says_so_when_none_is_given(
    tls_storescp: StoreSCP, ca: TestCA, objects: list[ExportObject]
) -> None:
    dest = Destination(tls_storescp.aet, "127.0.0.1", tls_storescp.port, TLSConfig(ca_file=ca.file))
    with pytest.raises(SendError, match=r"the server requires a TLS client certificate \(.*CERTIFICATE_REQUIRED.*\); "
                       r"give ours \(tls\.cert_file and tls\.key_file, or --tls-cert and --tls-key\)"):  # fmt: skip
        send_objects(objects, dest, CALLING_AE)


def test_storescp_stores_what_we_send_with_our_client_certificate(
    tls_storescp: StoreSCP, ca: TestCA, objects: list[ExportObject]
) -> None:
    me = ca.issue("rtexport")
    dest = Destination(
        tls_storescp.aet, "127.0.0.1", tls_storescp.port, TLSConfig(ca_file=ca.file, cert_file=me.cert, key_file=me.key)
    )
    echo(dest, CALLING_AE)
    report = send_objects(objects, dest, CALLING_AE)

    assert report.ok, report.summary()
    assert len(tls_storescp.received()) == len(objects)


def test_a_certificate_for_another_host_is_named_as_such(
    tls_storescp: StoreSCP, ca: TestCA, objects: list[ExportObject]
) -> None:
    me = ca.issue("rtexport")
    tls = TLSConfig(ca_file=ca.file, cert_file=me.cert, key_file=me.key, server_hostname="archive.example")
    dest = Destination(tls_storescp.aet, "127.0.0.1", tls_storescp.port, tls)
    with pytest.raises(SendError, match=r"the server's TLS certificate is not for '127\.0\.0\.1' \(Hostname mismatch"):
        echo(dest, CALLING_AE)


def test_the_commitment_listener_speaks_tls_with_our_certificate(ca: TestCA) -> None:
    """The archive reports back over TLS, verifying our certificate; we verify its."""
    me, archive = ca.issue("rtexport"), ca.issue("archive")
    ours = server_context(TLSConfig(ca_file=ca.file, cert_file=me.cert, key_file=me.key), "test")
    with ReportListener("RTEXPORT", "127.0.0.1", free_port(), timeouts=Timeouts.uniform(10, 0.2),
                        ssl_context=ours) as listener:  # fmt: skip
        client = ssl.create_default_context(cafile=ca.file)
        client.load_cert_chain(archive.cert, archive.key)
        ae = AE(ae_title="ARCHIVE")
        ae.add_requested_context(STORAGE_COMMITMENT_PUSH)
        assoc = ae.associate("127.0.0.1", listener.port, ae_title="RTEXPORT", tls_args=(client, "localhost"),
                             ext_neg=[build_role(STORAGE_COMMITMENT_PUSH, scp_role=True)])  # fmt: skip
        assert assoc.is_established
        report = Dataset()
        report.TransactionUID = "2.25.5"
        report.ReferencedSOPSequence = DicomSequence([])
        status, _ = assoc.send_n_event_report(report, 1, STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_INSTANCE)
        assoc.release()

        assert int(status.Status) == 0
        assert listener.wait("2.25.5", timeout=5) is not None

        # A plain connection is refused at the handshake, and said so.
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as plain:
            plain.sendall(b"\x01\x00\x00\x00\x00\x04\x00\x01\x00\x00")  # not a TLS ClientHello
            try:
                while plain.recv(65536):  # whatever alert comes, then the end
                    pass
            except ConnectionResetError:
                pass
    assert any("TLS handshake failed" in p for p in listener.problems)


def test_orthanc_over_tls_both_ways_stores_and_commits(ca: TestCA, tmp_path: Path, objects: list[ExportObject]) -> None:
    """Orthanc requires our certificate, and reports storage commitment over TLS to our listener, which requires
    its certificate in turn."""
    server, me = ca.issue("orthanc"), ca.issue("rtexport")
    commit_port = free_port()
    try:
        orthanc = Orthanc(tmp_path / "orthanc-tls", modalities={"rtx": (CALLING_AE, "127.0.0.1", commit_port)},
                          tls=(server.cert, server.key, ca.file))  # fmt: skip
    except MissingProgram as e:
        pytest.fail(str(e))
    tls = TLSConfig(ca_file=ca.file, cert_file=me.cert, key_file=me.key, server_hostname="localhost")
    with orthanc:
        dest = Destination(orthanc.aet, "127.0.0.1", orthanc.dicom_port, tls)
        with pytest.raises(SendError, match=r"requires a TLS client certificate"):
            echo(Destination(orthanc.aet, "127.0.0.1", orthanc.dicom_port, TLSConfig(ca_file=ca.file)), CALLING_AE)
        report = send_objects(objects, dest, CALLING_AE, commit=True, commit_listen_port=commit_port)

        assert report.ok, report.summary()
        assert sorted(report.committed or ()) == sorted(o.sop_instance_uid for o in objects)
        assert orthanc.count_instances() == len(objects)
