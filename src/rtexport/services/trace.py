"""The network trace as a service: every PDU and DIMSE message of what runs inside the block, written to a file
(``--trace FILE`` on the command line). Patient data stays out unless asked for."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from rtexport.errors import InputError
from rtexport.net.trace import trace_to


@contextlib.contextmanager
def network_trace(path: Path, *, patient_data: bool = False) -> Iterator[Path]:
    """Trace the DICOM network traffic of the block into ``path`` (appended); InputError when it cannot be opened."""
    try:
        tracing = trace_to(path, patient_data=patient_data)
        tracing.__enter__()
    except OSError as e:
        raise InputError(f"cannot write the trace to {path}: {e.strerror}") from e
    try:
        yield path
    finally:
        tracing.__exit__(None, None, None)
