"""Reading a stored file straight into the buffers a message goes out in (the sender's one copy)."""

from __future__ import annotations

import io
import os
from typing import BinaryIO, cast

_IOV_MAX = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 16


def _file_descriptor(fp: BinaryIO) -> int | None:
    if not hasattr(os, "preadv"):
        return None
    try:
        return fp.fileno()
    except (AttributeError, OSError):  # io.UnsupportedOperation (BytesIO) is an OSError
        return None


def read_into(fp: BinaryIO, parts: list[memoryview]) -> None:
    """Fill ``parts`` in order from ``fp``'s current position, leaving it after them; OSError when the file
    ends first. A file is read by preadv, as few system calls as the kernel allows (IOV_MAX buffers each)."""
    fd = _file_descriptor(fp)
    if fd is None:
        readinto = cast(io.BufferedIOBase, fp).readinto  # BinaryIO's stub lacks it; files and BytesIO have it
        for part in parts:
            got = 0
            while got < len(part):
                r = readinto(part[got:])
                if not r:
                    raise OSError(f"the file ended {len(part) - got} bytes early while being read for sending")
                got += r
        return
    start = offset = fp.tell()
    pending = [p for p in parts if len(p)]  # a copy: the caller's parts stay whole
    total, first = sum(len(p) for p in pending), 0
    while first < len(pending):
        got = os.preadv(fd, pending[first : first + _IOV_MAX], offset)
        if not got:
            raise OSError(f"the file ended {start + total - offset} bytes early while being read for sending")
        offset += got
        while first < len(pending) and got >= len(pending[first]):  # drop what was filled
            got -= len(pending[first])
            first += 1
        if got:  # a part filled in part continues where it stopped
            pending[first] = pending[first][got:]
    fp.seek(start + total)


def read_file(path: str | os.PathLike[str], into: memoryview) -> None:
    """Fill ``into`` from the start of the file at ``path`` (open, scattered reads, close: few system calls);
    OSError when the file is shorter."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if hasattr(os, "preadv"):
            got = 0
            while got < len(into):
                n = os.preadv(fd, [into[got:]], got)
                if not n:
                    raise OSError(f"the file ended {len(into) - got} bytes early while being read for sending")
                got += n
        else:
            with os.fdopen(fd, "rb", closefd=False) as fp:
                read_into(fp, [into])
    finally:
        os.close(fd)
