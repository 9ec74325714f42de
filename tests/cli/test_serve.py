"""`rtexport serve` beyond loopback: refused in clear text unless forced, served over TLS with --cert/--key."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rtexport.workspace import Workspace
from tests.cli.shell import shell_env
from tests.cli.test_cli import run
from tests.support.orthanc import free_port


def test_a_non_loopback_address_in_clear_text_is_refused(workspace: Workspace) -> None:
    r = run(workspace.home, "serve", "--host", "0.0.0.0", "--port", "1")
    assert r.returncode == 2
    assert "refusing to serve 0.0.0.0 over plain HTTP" in r.stderr and "--cert FILE --key FILE" in r.stderr


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rtexport test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "web.pem", folder / "web.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def test_serve_over_tls_with_a_secure_session_cookie(workspace: Workspace, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--cert", str(cert), "--key", str(key)]
    env = shell_env(RTEXPORT_HOME=str(workspace.home))
    with subprocess.Popen(
        [sys.executable, "-m", "rtexport", *args], env=env, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stderr is not None
            for line in proc.stderr:  # uvicorn says when it listens: no polling, no sleep
                if "Uvicorn running on" in line:
                    break
            context = ssl.create_default_context(cafile=str(cert))
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/login", context=context, timeout=20) as rsp:
                assert rsp.status == 200
                cookie = rsp.headers["set-cookie"].lower()
            assert "secure" in cookie and "httponly" in cookie
            with pytest.raises((OSError, http.client.HTTPException)):  # no clear-text answer on the TLS port
                urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=20)
        finally:
            proc.terminate()
