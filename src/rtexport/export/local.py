"""Writing exported files to a folder: atomic (temporary files in the target folder, fsync, link into place),
all files or none, never overwriting a different file, and saying exactly what was written when something fails."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rtexport.errors import WriteError
from rtexport.export.objects import ExportObject

_CHUNK = 1 << 20


@dataclass
class WriteReport:
    folder: Path
    written: list[Path] = field(default_factory=list)
    identical: list[Path] = field(default_factory=list)  # already there with the same bytes: skipped

    @property
    def bytes_written(self) -> int:
        return sum(p.stat().st_size for p in self.written)


def _same_content(obj: ExportObject, path: Path) -> bool:
    if path.stat().st_size != obj.size:
        return False
    with obj.open() as a, path.open("rb") as b:
        while True:
            x, y = a.read(_CHUNK), b.read(_CHUNK)
            if x != y:
                return False
            if not x:
                return True


def _fsync(path: Path) -> None:
    """Make a file's data, or a folder's entries, durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(src: int, dst: int, size: int) -> None:
    """Copy a stored file in the kernel (copy_file_range: no trip through Python, reflinks where the file system
    offers them), falling back to plain reads and writes."""
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
        chunk = os.pread(src, min(_CHUNK, size - done), done)
        if not chunk:
            raise OSError(errno.EIO, f"stored file ended after {done} of {size} bytes")
        os.write(dst, chunk)
        done += len(chunk)


def _stage(obj: ExportObject, folder: Path) -> Path:
    """``obj``'s bytes in a new temporary file in ``folder`` (removed again if this fails)."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".rtexport-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            if obj.path is not None:
                with obj.path.open("rb") as src:
                    _copy(src.fileno(), f.fileno(), obj.size)
            else:
                assert obj.data is not None
                f.write(obj.data)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _describe(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "the disk is full"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied"
    return e.strerror or str(e)


def write_folder(
    objects: Sequence[ExportObject], folder: Path, progress: Callable[[ExportObject], None] | None = None
) -> WriteReport:
    """Write ``objects`` into ``folder`` as ``<kind>.<uid>.dcm``.

    Checked before anything is written: the folder can be created and written, no name holds different
    content, and the disk has room. A failure while writing leaves the folder as it was and raises
    :class:`WriteError`; ``progress`` is called as each file is safely on disk.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(f"cannot create export folder {folder}: {_describe(e)}; nothing was written") from e
    report = WriteReport(folder)
    todo: list[ExportObject] = []
    conflicts: list[str] = []
    for obj in objects:
        target = folder / obj.filename
        if target.exists():
            if _same_content(obj, target):
                report.identical.append(target)
            else:
                conflicts.append(str(target))
        else:
            todo.append(obj)
    if conflicts:
        raise WriteError(
            f"{len(conflicts)} file(s) in {folder} have the same name but other content and were not "
            f"overwritten: {', '.join(conflicts[:3])}{' …' if len(conflicts) > 3 else ''}; "
            "choose another folder or move them away. Nothing was written."
        )
    need = sum(o.size for o in todo)
    free = shutil.disk_usage(folder).free
    if need > free:
        raise WriteError(
            f"not enough space in {folder}: need {need / 1e6:.1f} MB, {free / 1e6:.1f} MB free; nothing was written"
        )
    # All files are staged and made durable first, then linked into place: a failure while writing (full disk,
    # I/O error) leaves the folder as it was, and the disk writes the files back together, not one commit each.
    staged: list[tuple[ExportObject, Path]] = []
    current = ""
    try:
        for obj in todo:
            current = obj.filename
            staged.append((obj, _stage(obj, folder)))
        for obj, tmp in staged:
            current = obj.filename
            _fsync(tmp)
            if progress is not None:
                progress(obj)
    except BaseException as e:  # an interrupt, too, leaves no temporary file behind
        for _, tmp in staged:
            tmp.unlink(missing_ok=True)
        if not isinstance(e, OSError):
            raise
        raise WriteError(
            f"writing {folder / current} failed: {_describe(e)}. Nothing was written: the {len(todo)} file(s) "
            "of this export are put in place only once all of them are on disk. Fix the cause and export again.",
        ) from e
    try:
        for obj, tmp in staged:
            target = folder / obj.filename
            try:
                os.link(tmp, target)  # fails if the name appeared meanwhile: never overwrite, even in a race
            except OSError as e:
                done = ", ".join(p.name for p in report.written) or "none"
                raise WriteError(
                    f"putting {target} in place failed: {_describe(e)}. {len(report.written)} file(s) were written "
                    f"before the failure ({done}); no partial file was left. Fix the cause and export again: files "
                    "already written are recognized and skipped.",
                    written=[str(p) for p in report.written],
                ) from e
            report.written.append(target)
    finally:
        for _, tmp in staged:
            tmp.unlink(missing_ok=True)
    _fsync(folder)
    return report
