"""Send stored DICOM files to a DICOMweb service: STOW-RS (PS3.18 10.5), with a result per instance as C-STORE's.

Each request is a ``multipart/related; type="application/dicom"`` POST to ``{base}/studies`` holding whole Part 10
files as they are stored, in batches of at most :data:`BATCH_BYTES`: the bytes that go are the bytes that were
stored (and checked against their SHA-256 before any of a batch leaves). The service's answer (DICOM JSON, PS3.18
F.2) names every instance stored (ReferencedSOPSequence, with WarningReason when stored with a warning) or failed
(FailedSOPSequence with its FailureReason).

Why not dicomweb-client, the maintained DICOMweb client: its ``store_instances`` takes pydicom Datasets and
encodes each again with ``pydicom.dcmwrite`` before sending; what leaves would no longer be the stored bytes (CT
images are sent byte for byte, as with C-STORE) and could not be checked against their stored hash. Its path for
bytes already encoded is private. The standard library's HTTP client is enough for one POST per batch.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import ssl
import time
import urllib.parse
import uuid
from collections.abc import Callable, Sequence

from pydicom.dataset import Dataset

from rtexport.errors import SendError
from rtexport.net.outcome import InstanceOutcome, InstanceResult, SendReport, T, WebDestination

LOGGER = logging.getLogger(__name__)
BATCH_BYTES = 32 << 20
_FAILURE_REASONS = {  # PS3.18 Table 10.5.3-1 and PS3.4 status meanings
    0xA700: "out of resources",
    0xA900: "data set does not match SOP class",
    0xC000: "cannot understand",
    0xC122: "referenced transfer syntax not supported",
    0x0110: "processing failure",
    0x0122: "referenced SOP class not supported",
    0xA770: "out of resources",
    0xC119: "duplicate SOP Instance UID (another instance with this UID is stored)",
}


def _batches(objects: Sequence[T]) -> list[list[int]]:
    out: list[list[int]] = [[]]
    size = 0
    for i, obj in enumerate(objects):
        if out[-1] and size + obj.size > BATCH_BYTES:
            out.append([])
            size = 0
        out[-1].append(i)
        size += obj.size
    return [b for b in out if b]


def _read_checked(obj: T) -> bytes:
    """The stored file's bytes, proven against its SHA-256 when it has one; raises SendError when damaged."""
    with obj.open() as fp:
        data = fp.read()
    if obj.sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != obj.sha256:
            where = f", file {obj.path}" if obj.path is not None else ""
            raise SendError(f"stored copy is damaged: sha256 {actual} expected {obj.sha256}{where}")
    return data


def _body(parts: list[bytes], boundary: str) -> bytes:
    chunks = []
    for data in parts:
        chunks.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        chunks.append(data)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks)


def _connection(dest: WebDestination, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parsed = urllib.parse.urlsplit(dest.url)
    if parsed.scheme == "https":
        context = ssl.create_default_context()
        return http.client.HTTPSConnection(parsed.netloc, timeout=timeout, context=context), parsed.path.rstrip("/")
    return http.client.HTTPConnection(parsed.netloc, timeout=timeout), parsed.path.rstrip("/")


def check(dest: WebDestination, timeout: float = 10) -> None:
    """Test the service (QIDO-RS ``GET {base}/studies?limit=1``); raises SendError saying what failed."""
    connection, base = _connection(dest, timeout)
    try:
        connection.request("GET", base + "/studies?limit=1", headers={"Accept": "application/dicom+json",
                                                                      **dest.auth_headers()})  # fmt: skip
        status = connection.getresponse().status
    except OSError as e:
        raise SendError(f"cannot reach {dest}: {e}; check the URL and that the service runs") from e
    finally:
        connection.close()
    if status in (401, 403):
        raise SendError(f"{dest} refused our credentials (HTTP {status}); check user and password_env")
    if status not in (200, 204):
        raise SendError(f"{dest} answered HTTP {status}: check the base URL (…/dicom-web)")


def _post(dest: WebDestination, body: bytes, boundary: str, timeout: float) -> tuple[int, bytes]:
    connection, base = _connection(dest, timeout)
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json",
        **dest.auth_headers(),
    }
    try:
        connection.request("POST", base + "/studies", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _answer(objects: Sequence[T], batch: list[int], status: int, payload: bytes) -> list[tuple[int, InstanceResult[T]]]:
    """Per-instance results from the STOW-RS response of one batch."""
    try:
        ds = Dataset.from_json(json.loads(payload)) if payload.strip() else Dataset()
    except (ValueError, TypeError) as e:
        ds = Dataset()
        LOGGER.info("STOW-RS answer (HTTP %d) not readable as DICOM JSON: %s", status, e)
    stored = {str(r.ReferencedSOPInstanceUID): r for r in ds.get("ReferencedSOPSequence", [])}
    failed = {str(r.ReferencedSOPInstanceUID): r for r in ds.get("FailedSOPSequence", [])}
    results = []
    for i in batch:
        obj, uid = objects[i], objects[i].sop_instance_uid
        if uid in failed:
            reason = int(failed[uid].get("FailureReason", 0x0110))
            why = _FAILURE_REASONS.get(reason, "failure")
            result = InstanceResult(obj, InstanceOutcome.FAILED, reason, f"{why} (HTTP {status})")
        elif uid in stored:
            warning = stored[uid].get("WarningReason")
            if warning is not None:
                result = InstanceResult(obj, InstanceOutcome.WARNING, int(warning), f"warning (HTTP {status})")
            else:
                result = InstanceResult(obj, InstanceOutcome.STORED, 0x0000, "success")
        else:
            result = InstanceResult(obj, InstanceOutcome.FAILED, None, f"not confirmed by the service (HTTP {status})")
        results.append((i, result))
    return results


def stow(
    objects: Sequence[T],
    dest: WebDestination,
    *,
    progress: Callable[[InstanceResult[T]], None] | None = None,
    timeout: float = 60,
) -> SendReport[T]:
    """STOW-RS ``objects`` to ``dest``; the report says what became of each one. Raises SendError when the
    service cannot be reached or refuses the request as a whole (authentication, not a STOW-RS endpoint)."""
    started = time.perf_counter()
    results: dict[int, InstanceResult[T]] = {}
    sent = 0
    problems: list[str] = []
    for batch in _batches(objects):
        boundary = uuid.uuid4().hex
        try:
            body = _body([_read_checked(objects[i]) for i in batch], boundary)
        except SendError as e:
            problems.append(f"not sent: {e}")
            break
        try:
            status, payload = _post(dest, body, boundary, timeout)
        except OSError as e:
            if not results:
                raise SendError(f"cannot send to {dest}: {e}; check the URL and that the service runs") from e
            problems.append(f"connection to {dest} lost: {e}")
            break
        if status in (401, 403):
            raise SendError(f"{dest} refused our credentials (HTTP {status}); check user and password_env")
        if status in (404, 405, 415):
            raise SendError(f"{dest} answered HTTP {status} to STOW-RS: check the base URL (…/dicom-web)")
        for index, r in _answer(objects, batch, status, payload):
            results[index] = r
            sent += r.obj.size if r.stored else 0
            if progress is not None:
                progress(r)
    for i, obj in enumerate(objects):
        if i not in results:
            why = problems[-1] if problems else "not sent"
            results[i] = InstanceResult(obj, InstanceOutcome.NOT_SENT, None, why)
    seconds = time.perf_counter() - started
    LOGGER.info("STOW-RS to %s: %d of %d stored in %.1f s", dest, sum(r.stored for r in results.values()),
                len(objects), seconds)  # fmt: skip
    return SendReport(dest, tuple(results[i] for i in range(len(objects))), problems=tuple(problems),
                      bytes_sent=sent, seconds=seconds)  # fmt: skip
