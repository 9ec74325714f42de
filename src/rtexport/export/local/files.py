"""File operations of the folder export, all relative to a directory handle and none following a symbolic link:
copying a stored file by the kernel, hashing, comparing with a file already there, renaming without replacing."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
from collections.abc import Callable

from rtexport.errors import StoreError
from rtexport.export.objects import ExportObject

CHUNK = 1 << 20
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_RENAME_NOREPLACE = 1  # linux/fs.h


def damaged(obj: ExportObject, found: str | None) -> StoreError:
    """The error for a stored file that is missing (``found`` None) or no longer has its stored hash."""
    where = f"{obj.filename} ({obj.description})" if obj.description else obj.filename
    source = f"stored file {obj.path}" if obj.path is not None else "the object built in memory"
    if found is None:
        what = f"{source} is missing"
    else:
        what = f"{source} is damaged: its sha256 is {found}, expected {obj.sha256}"
    return StoreError(
        f"{where}: {what}. Nothing was written. Run 'rtexport verify' and re-import or recompute what it names."
    )


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _kernel_copy(src: int, dst: int, size: int) -> None:
    """``size`` bytes from ``src`` to ``dst`` by copy_file_range, falling back to reads and writes."""
    done = 0
    try:
        while done < size:
            n = os.copy_file_range(src, dst, size - done)
            if n == 0:
                break
            done += n
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP) or done:
            raise
    while done < size:
        chunk = os.pread(src, min(CHUNK, size - done), done)
        if not chunk:
            raise OSError(errno.EIO, f"the file ended after {done} of {size} bytes")
        _write_all(dst, memoryview(chunk))
        done += len(chunk)


def _open_source(obj: ExportObject) -> int:
    if obj.path is None:
        raise ValueError("an object built in memory has no stored file")
    try:
        return os.open(obj.path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise damaged(obj, None) from None


def _writeback_starter() -> Callable[[int, int, int], object]:
    """``sync_file_range(fd, offset, n, WRITE)`` (``n`` 0: to the end): start writing a range to disk without
    waiting (Linux), so the disk works while other work goes on and the ``fsync``/``fdatasync`` that follows finds
    most of it written; elsewhere a no-op (the sync then does it all)."""
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return lambda fd, offset, n: None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return lambda fd, offset, n: call(fd, offset, n, _SYNC_FILE_RANGE_WRITE)


_SYNC_FILE_RANGE_WRITE = 2
start_writeback = _writeback_starter()


def copy_into(obj: ExportObject, d: int, name: str) -> None:
    """``obj``'s bytes into the new file ``name`` of directory ``d`` (created exclusively, no link followed; the
    umask gives the mode, as for any new file): a stored file copied by the kernel, built bytes written; its
    writeback started."""
    fd = os.open(name, NEW_FILE_FLAGS, 0o666, dir_fd=d)
    try:
        if obj.data is not None:
            _write_all(fd, memoryview(obj.data))
        else:
            src = _open_source(obj)
            try:
                _kernel_copy(src, fd, obj.size)
            finally:
                os.close(src)
        start_writeback(fd, 0, 0)  # the disk writes it while the next files are copied and hashed
    finally:
        os.close(fd)


def prove(obj: ExportObject, d: int, name: str) -> str | None:
    """The SHA-256 of the staged file's bytes (read back from memory, while the disk writes them), or None when
    there is no stored hash to compare with."""
    if obj.sha256 is None:
        return None
    fd = os.open(name, READ_FLAGS, dir_fd=d)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "rb", closefd=False) as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


def make_durable(d: int, name: str) -> None:
    """``fsync`` the staged file ``name`` of directory ``d``."""
    fd = os.open(name, READ_FLAGS, dir_fd=d)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def same_content(obj: ExportObject, d: int, name: str, size: int, buf: memoryview) -> bool:
    """Whether the folder's file ``name`` holds ``obj``'s bytes; the stored bytes are verified on the way."""
    h = hashlib.sha256()
    same = size == obj.size
    chunks: list[memoryview] = [memoryview(obj.data)] if obj.data is not None else []
    src = -1 if obj.data is not None else _open_source(obj)
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=d)
    except OSError:
        if src >= 0:
            os.close(src)
        raise
    try:
        with os.fdopen(fd, "rb", closefd=False) as there:
            remaining = obj.size
            while remaining > 0:
                if src < 0:
                    if not chunks:
                        break
                    piece = chunks.pop()
                else:
                    n = os.readv(src, [buf[: min(len(buf), remaining)]])
                    if n == 0:
                        break
                    piece = buf[:n]
                h.update(piece)
                if same and there.read(len(piece)) != piece:
                    same = False
                remaining -= len(piece)
    finally:
        os.close(fd)
        if src >= 0:
            os.close(src)
    if obj.sha256 is not None and h.hexdigest() != obj.sha256:
        raise damaged(obj, h.hexdigest())
    return same


def rename_noreplace(src_dir: int, src: str, dst_dir: int, dst: str) -> None:
    """Rename without replacing an existing ``dst`` (renameat2 RENAME_NOREPLACE where the file system offers it;
    otherwise a check right before a plain rename). Raises FileExistsError when ``dst`` exists."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        if renameat2(src_dir, src.encode(), dst_dir, dst.encode(), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise FileExistsError(code, os.strerror(code), dst)
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), dst)
    try:
        os.stat(dst, dir_fd=dst_dir, follow_symlinks=False)
    except FileNotFoundError:
        os.rename(src, dst, src_dir_fd=src_dir, dst_dir_fd=dst_dir)
        return
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)


def unlink(d: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=d)
