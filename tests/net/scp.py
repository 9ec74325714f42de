"""In-process receivers (pynetdicom) that misbehave on purpose, on a free loopback port."""

from __future__ import annotations

import ssl
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, StoragePresentationContexts, evt

from tests.support.orthanc import free_port


@dataclass
class FakeSCP:
    """A Storage SCP. ``statuses[uid]`` is a list of statuses answered to successive stores of that instance
    (then success); ``abort_at`` aborts on that (1-based) C-STORE once; ``hang_at`` does not answer that one
    until the SCP is stopped, so the sender's timeout is certain to expire first."""

    aet: str = "FAKESCP"
    transfer_syntaxes: tuple[str, ...] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
    statuses: dict[str, list[int]] = field(default_factory=dict)
    abort_at: int | None = None
    hang_at: int | None = None
    ssl_context: ssl.SSLContext | None = None
    port: int = field(default_factory=free_port)
    received: Counter[str] = field(default_factory=Counter)
    stored: dict[str, Any] = field(default_factory=dict)  # SOP Instance UID → dataset, answered with success
    requested: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)

    def _on_store(self, event: Any) -> int:
        with self._lock:
            self.calls += 1
            call = self.calls
            if not self.requested:
                self.requested.extend(
                    (c.abstract_syntax, tuple(c.transfer_syntax)) for c in event.assoc.requestor.requested_contexts
                )
        ds = event.dataset
        uid = str(ds.SOPInstanceUID)
        self.received[uid] += 1
        if call == self.abort_at:
            event.assoc.abort()
            return 0x0000
        if call == self.hang_at:
            self._stopping.wait()
            return 0x0000
        queued = self.statuses.get(uid)
        if queued:
            return queued.pop(0)
        ds.file_meta = event.file_meta
        self.stored[uid] = ds
        return 0x0000

    def __enter__(self) -> FakeSCP:
        ae = AE(ae_title=self.aet)
        ae.require_called_aet = True
        for ctx in StoragePresentationContexts:
            assert ctx.abstract_syntax is not None
            ae.add_supported_context(ctx.abstract_syntax, list(self.transfer_syntaxes))
        ae.add_supported_context("1.2.840.10008.1.1")
        self._server = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store)],
            ssl_context=self.ssl_context,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
