"""A readable trace of what crosses the wire: every PDU and DIMSE message, one line each, for diagnosing a refusal.

The stack writes trace lines to the logger ``rtexport.net.trace`` at DEBUG, only when someone listens (a check of
``TRACE.isEnabledFor`` costs nothing on the send path). :func:`trace_to` is the opt-in: it writes that logger to
a file for the duration of a ``with`` block, as pynetdicom's ``debug_logger()`` does for its own. Patient data
(names, IDs, birth dates: whatever a data set carries) stays out of the trace unless ``patient_data=True``: a
line's redacted form is its message, and the full form rides along in the record's ``patient`` attribute, which
only a trace written with ``patient_data`` prints.

A line looks like::

    12:00:01.234 #1 STORESCP@127.0.0.1:11112 -> A-ASSOCIATE-RQ called STORESCP calling RTEXPORT, max PDU 65536,
        contexts: 1 CT Image Storage [1.2.840.10008.1.2.1]
    12:00:01.240 #1 STORESCP@127.0.0.1:11112 <- A-ASSOCIATE-AC max PDU 16384, ..., contexts: 1 acceptance [...]
    12:00:01.241 #1 STORESCP@127.0.0.1:11112 -> ctx 1 C-STORE-RQ id 1 CT Image Storage 1.2.3.4 + data set 525312 bytes
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Iterator
from pathlib import Path

from pydicom.uid import UID

from rtexport.net import pdu

TRACE = logging.getLogger("rtexport.net.trace")
_numbers = itertools.count(1)


def association_number() -> int:
    """A number naming one association in the trace (its lines interleave with those of parallel ones)."""
    return next(_numbers)


def enabled() -> bool:
    return TRACE.isEnabledFor(logging.DEBUG)


def uid_name(uid: str) -> str:
    """A SOP class or transfer syntax UID by its name, when pydicom knows it."""
    name = UID(uid).name
    return name if name and name != uid else uid


def describe(record: pdu.PDU) -> str:
    """One PDU in words (P-DATA-TF: its PDVs' contexts and sizes; DIMSE content is traced by the DIMSE layer)."""
    if isinstance(record, pdu.AssociateRQ):
        contexts = "; ".join(
            f"{c.context_id} {uid_name(c.abstract_syntax)} [{', '.join(c.transfer_syntaxes)}]" for c in record.contexts
        )
        roles = "".join(f", role {uid_name(r.sop_class_uid)} scu={r.scu:d} scp={r.scp:d}" for r in record.user.roles)
        return (
            f"A-ASSOCIATE-RQ called {record.called_ae} calling {record.calling_ae}, max PDU "
            f"{record.user.max_pdu_length}, implementation {record.user.implementation_class_uid} "
            f"{record.user.implementation_version_name}{roles}, contexts: {contexts}"
        )
    if isinstance(record, pdu.AssociateAC):
        answers = "; ".join(
            f"{a.context_id} {a.result.name.lower()}" + (f" [{a.transfer_syntax}]" if a.transfer_syntax else "")
            for a in record.contexts
        )
        return (
            f"A-ASSOCIATE-AC max PDU {record.user.max_pdu_length}, implementation "
            f"{record.user.implementation_class_uid} {record.user.implementation_version_name}, contexts: {answers}"
        )
    if isinstance(record, pdu.AssociateRJ):
        return f"A-ASSOCIATE-RJ result {record.result} source {record.source} reason {record.reason}"
    if isinstance(record, pdu.Abort):
        return f"A-ABORT source {record.source} reason {record.reason}"
    if isinstance(record, pdu.PDataTF):
        pdvs = ", ".join(
            f"ctx {v.context_id} {'command' if v.is_command else 'data'}{' last' if v.is_last else ''} {len(v.data)} B"
            for v in record.pdvs
        )
        return f"P-DATA-TF {pdvs}"
    return pdu.type_of(record).title


def describe_raw(data: bytes | bytearray | memoryview) -> str:
    """P-DATA-TF PDUs as sent from a buffer: how many and how many bytes (their content is traced as DIMSE)."""
    view = memoryview(data)
    count, pos = 0, 0
    while pos + pdu.HEADER_SIZE <= len(view):
        _, _, length = pdu.HEADER.unpack_from(view, pos)
        pos += pdu.HEADER_SIZE + length
        count += 1
    return f"P-DATA-TF x{count}, {len(view)} bytes"


def line(label: str, outgoing: bool, text: str, patient: object = None) -> None:
    """Write one trace line for association ``label``; ``patient`` is the line with patient data in it (made into
    text only when a trace with patient data prints it)."""
    arrow = "->" if outgoing else "<-"
    TRACE.debug("%s %s %s", label, arrow, text, extra={"patient": (f"{label} {arrow} ", patient) if patient else None})


class _TraceFormatter(logging.Formatter):
    def __init__(self, patient_data: bool) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(message)s", "%H:%M:%S")
        self.patient_data = patient_data

    def format(self, record: logging.LogRecord) -> str:
        full = getattr(record, "patient", None)
        if self.patient_data and full:
            prefix, content = full
            record = logging.makeLogRecord({**record.__dict__, "msg": f"{prefix}{content}", "args": ()})
        return super().format(record)


@contextlib.contextmanager
def trace_to(path: Path, *, patient_data: bool = False) -> Iterator[Path]:
    """Write the PDU/DIMSE trace of everything the stack does in this block to ``path`` (appended).

    Patient data is redacted unless ``patient_data``. Raises OSError when the file cannot be opened."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(_TraceFormatter(patient_data))
    old_level = TRACE.level
    TRACE.addHandler(handler)
    TRACE.setLevel(logging.DEBUG)
    try:
        yield path
    finally:
        TRACE.removeHandler(handler)
        TRACE.setLevel(old_level)
        handler.close()
