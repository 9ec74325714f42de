"""Writing staged fragments into the receiver's journal and starting their disk writes, on a thread of its own.

While the receiving thread reads the next fragment from the peer, :class:`Writeback` copies the last one into
its segment (``pwrite``) and starts its writeback (``sync_file_range(WRITE)``, Linux: submitting the writes is
the kernel's work, done on the calling thread), so that the ``fdatasync`` that confirms an entry finds most of it
on disk already and the peer's answer waits for neither. Adjacent ranges that queued meanwhile are started
together. A writer waits for its own fragments (:meth:`Writeback.drain`) before it writes the entry's head.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from dataclasses import dataclass

from rtexport.export.local.files import start_writeback


@dataclass
class Pending:
    """One writer's (association's) fragments not yet written, and whether one of them failed."""

    count: int = 0
    failed: bool = False


class Writeback:
    """Writes fragments and starts their writeback on a background thread (:meth:`start`); before it is started,
    or after :meth:`stop`, :meth:`write` does both on the calling thread. A fragment's bytes (a view) and its
    descriptor must stay as they are until :meth:`drain` returned for its writer."""

    def __init__(self) -> None:
        self._queue: deque[tuple[int, int, memoryview, Pending]] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False

    def start(self) -> None:
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="incoming-writeback", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Write what is queued, then stop the thread."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def write(self, writer: Pending, fd: int, offset: int, data: memoryview) -> None:
        """Have ``data`` written at ``offset`` of ``fd`` and start going to disk."""
        with self._cond:
            if self._thread is not None and not self._stop:
                writer.count += 1
                self._queue.append((fd, offset, data, writer))
                if len(self._queue) == 1:
                    self._cond.notify_all()
                return
        writer.failed |= not _written(fd, offset, data)
        start_writeback(fd, offset, len(data))

    def drain(self, writer: Pending) -> bool:
        """Wait until ``writer``'s fragments are written; False when one could not be (then forgotten)."""
        with self._cond:
            self._cond.wait_for(lambda: writer.count == 0)
            ok, writer.failed = not writer.failed, False
        return ok

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stop)
                if not self._queue:
                    return
                jobs = list(self._queue)
                self._queue.clear()
            failed = {id(writer) for fd, offset, data, writer in jobs if not _written(fd, offset, data)}
            with self._cond:
                for _, _, _, writer in jobs:
                    writer.count -= 1
                    writer.failed |= id(writer) in failed
                self._cond.notify_all()
            for fd, offset, n in _merged([(fd, offset, len(data)) for fd, offset, data, _ in jobs]):
                start_writeback(fd, offset, n)


def _written(fd: int, offset: int, data: memoryview) -> bool:
    try:
        return os.pwrite(fd, data, offset) == len(data)
    except OSError:
        return False


def _merged(ranges: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Ranges in order, each joined with the next when that one starts where it ends in the same file."""
    out: list[tuple[int, int, int]] = []
    for fd, offset, n in ranges:
        if out and out[-1][0] == fd and out[-1][1] + out[-1][2] == offset:
            out[-1] = (fd, out[-1][1], out[-1][2] + n)
        else:
            out.append((fd, offset, n))
    return out
