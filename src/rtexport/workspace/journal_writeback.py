"""Starting the disk writes of what the receiver's journal just wrote, so that the ``fdatasync`` that confirms an
entry finds most of it on disk already.

``sync_file_range(WRITE)`` (Linux) starts writing a range without waiting for it, but submitting the writes is the
kernel's work done on the calling thread: about as much CPU as copying the bytes into the page cache. Done on the
receiving thread, it delays the answer the peer waits for; :class:`Writeback` does it on a thread of its own while
the receiving thread reads the next fragment (adjacent ranges that queued meanwhile are started together).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

_SYNC_FILE_RANGE_WRITE = 2
_OPEN_SEGMENTS = 4  # descriptors kept open (the segments written into lately)


def _writeback_starter() -> Callable[[int, int, int], object]:
    """``sync_file_range(fd, offset, n, WRITE)``: start writing a range to disk without waiting (Linux); a no-op
    elsewhere."""
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return lambda fd, offset, n: None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return lambda fd, offset, n: call(fd, offset, n, _SYNC_FILE_RANGE_WRITE)


start_writeback = _writeback_starter()


class Writeback:
    """Starts the writeback of ranges of segments on a background thread (:meth:`start`); before it is started,
    or after :meth:`stop`, :meth:`submit` starts it on the calling thread. Each segment is opened read-only by its
    path here, so a range queued after its writer closed its descriptor is still written back (or, when the
    segment is gone, skipped)."""

    def __init__(self) -> None:
        self._queue: deque[tuple[Path, int, int]] = deque()
        self._cond = threading.Condition()
        self._fds: dict[Path, int] = {}
        self._thread: threading.Thread | None = None
        self._stop = False

    def start(self) -> None:
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="incoming-writeback", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Start what is queued, then stop the thread."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def submit(self, segment: Path, fd: int, offset: int, n: int) -> None:
        """Have ``n`` bytes at ``offset`` of ``segment`` (written through ``fd``) start going to disk."""
        with self._cond:
            if self._thread is not None and not self._stop:
                self._queue.append((segment, offset, n))
                if len(self._queue) == 1:
                    self._cond.notify()
                return
        start_writeback(fd, offset, n)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stop)
                if not self._queue:
                    return
                ranges = list(self._queue)
                self._queue.clear()
            for segment, offset, n in _merged(ranges):
                fd = self._descriptor(segment)
                if fd >= 0:
                    start_writeback(fd, offset, n)

    def _descriptor(self, segment: Path) -> int:
        fd = self._fds.get(segment)
        if fd is None:
            try:
                fd = os.open(segment, os.O_RDONLY)
            except OSError:
                return -1  # removed: everything in it was filed
            self._fds[segment] = fd
            while len(self._fds) > _OPEN_SEGMENTS:
                with contextlib.suppress(OSError):
                    os.close(self._fds.pop(next(iter(self._fds))))
        return fd


def _merged(ranges: list[tuple[Path, int, int]]) -> list[tuple[Path, int, int]]:
    """Ranges in order, each joined with the next when that one starts where it ends in the same segment."""
    out: list[tuple[Path, int, int]] = []
    for segment, offset, n in ranges:
        if out and out[-1][0] == segment and out[-1][1] + out[-1][2] == offset:
            out[-1] = (segment, out[-1][1], out[-1][2] + n)
        else:
            out.append((segment, offset, n))
    return out
