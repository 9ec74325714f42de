"""Why an association could not be had, in words that name the real cause and what to do about it.

A TLS 1.3 server that wants a client certificate finishes the handshake first and refuses afterwards, so its
alert (TLSV13_ALERT_CERTIFICATE_REQUIRED) surfaces as the loss of the association while we await its answer:
the cause is looked for along the whole chain of exceptions, not only in the last one.
"""

from __future__ import annotations

import socket
import ssl

from rtexport.net.association import AssociationLost, AssociationRejected

_CERT_REQUIRED = ("CERTIFICATE_REQUIRED", "PEER_DID_NOT_RETURN_A_CERTIFICATE", "HANDSHAKE_FAILURE")
_CERT_REFUSED = ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN", "UNSUPPORTED_CERTIFICATE", "DECRYPT_ERROR")
_NOT_TLS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNEXPECTED_EOF", "PACKET_LENGTH_TOO_LONG")
_HOSTNAME_MISMATCH = 62  # X509_V_ERR_HOSTNAME_MISMATCH
_IP_MISMATCH = 64  # X509_V_ERR_IP_ADDRESS_MISMATCH


def _chain(e: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cause: BaseException | None = e
    while cause is not None and cause not in out:
        out.append(cause)
        cause = cause.__cause__ or cause.__context__
    return out


def _tls_hint(e: ssl.SSLError, host: str, has_cert: bool) -> str:
    if isinstance(e, ssl.SSLCertVerificationError):
        if e.verify_code in (_HOSTNAME_MISMATCH, _IP_MISMATCH):
            return (
                f"the server's TLS certificate is not for '{host}' ({e.verify_message}); connect with the name "
                "the certificate is for, or set the server's tls.server_hostname"
            )
        return (
            f"the server's TLS certificate is not trusted ({e.verify_message}); check the CA file "
            "(tls.ca_file, --tls-ca) and the server hostname"
        )
    reason = str(e.reason or e)
    if any(r in reason for r in _CERT_REQUIRED):
        if has_cert:
            return (
                f"the server refused our TLS client certificate ({reason}); check that it trusts the CA that "
                "signed our certificate (tls.cert_file, --tls-cert)"
            )
        return (
            f"the server requires a TLS client certificate ({reason}); give ours "
            "(tls.cert_file and tls.key_file, or --tls-cert and --tls-key)"
        )
    if any(r in reason for r in _CERT_REFUSED):
        return (
            f"the server does not accept our TLS client certificate ({reason}); check that it trusts the CA that "
            "signed it"
        )
    if isinstance(e, ssl.SSLEOFError) and not has_cert:
        return (
            f"the server closed the TLS connection at once ({reason}): it probably requires a TLS client "
            "certificate; give ours (tls.cert_file and tls.key_file, or --tls-cert and --tls-key)"
        )
    if any(r in reason for r in _NOT_TLS):
        return f"TLS handshake failed ({reason}): the server does not seem to speak TLS on this port"
    return f"TLS handshake failed ({reason}); check that the server speaks TLS on this port and the certificates"


def connect_hint(e: BaseException, *, host: str, port: int, called_ae: str, calling_ae: str, tls: bool,
                 has_cert: bool) -> str:  # fmt: skip
    """Why an association to ``called_ae`` at ``host:port`` failed with ``e``, and what to check."""
    chain = _chain(e)
    tls_error = next((c for c in chain if isinstance(c, ssl.SSLError)), None)
    if tls_error is not None:
        return _tls_hint(tls_error, host, has_cert)
    if isinstance(e, AssociationRejected):
        reason = (e.rj.source, e.rj.reason)
        titles = f"(called AE title '{called_ae}', calling AE title '{calling_ae}')"
        if reason == (1, 7):
            return f"{e} {titles}; the server is not '{called_ae}': check the server's AE title"
        if reason == (1, 3):
            return f"{e} {titles}; the server does not know our AE title '{calling_ae}': register it there"
        return f"{e} {titles}; check that the server's AE title is right and that the server knows our AE title"
    if isinstance(e, ConnectionRefusedError):
        return f"connection refused: nothing listens on {host} port {port}; check that the server runs and the port"
    if isinstance(e, socket.gaierror):
        return f"host name '{host}' cannot be resolved ({e.strerror}); check the host"
    if isinstance(e, TimeoutError):
        return f"no answer from {host} port {port} in time; check host, port and firewalls"
    if isinstance(e, AssociationLost):
        if "closed the connection" in str(e) and not tls:
            return (
                f"{e}: the server closed the connection without a DICOM answer; if it expects TLS on this port, "
                "configure TLS for it (tls.ca_file, --tls-ca)"
            )
        return f"{e}; check that {host} port {port} is a DICOM server"
    return f"{e}; check host and port"
