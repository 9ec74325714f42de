"""Writing exported files to a folder: verified, atomic, all files or none, never overwriting a different file.

The folder is opened once (:class:`ExportFolder`) and every later operation goes through that directory handle
(``dir_fd``), so a symbolic link swapped in after the folder was checked cannot redirect the files. Every stored
file is hashed as it is copied and compared with the hash it was stored under before anything is put in place;
files are staged under temporary names (``.rtexport-*.part``), made durable, then hard-linked into place
together. Where the file system has no hard links (FAT, exFAT, some SMB shares) they are renamed into place
instead, with the same guarantees except the one the README states. Files get the mode the umask gives.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import pydicom
from pydicom.errors import InvalidDicomError

from rtexport.dicom.uids import uid_problem
from rtexport.errors import StoreError, WriteError
from rtexport.export.objects import ExportObject, ObjectKind

_CHUNK = 1 << 20
_PART = re.compile(r"^\.rtexport-[A-Za-z0-9_-]+\.part$")
_OURS = re.compile(r"^(CT|RS|RP|RD)\.([0-9.]+)\.dcm$")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NO_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS)
_RT_PLAN = "1.2.840.10008.5.1.4.1.1.481.5"
_RENAME_NOREPLACE = 1  # linux/fs.h
# Without locks (some network file systems), a temporary file counts as stale once untouched this long.
STALE_WITHOUT_LOCKS_S = 3600.0


def _describe(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "the disk is full"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied"
    if e.errno == errno.ELOOP:
        return "it is a symbolic link"
    return e.strerror or str(e)


def _deepest_existing(path: Path, what: str) -> tuple[int, Path, tuple[str, ...]]:
    """A handle on the deepest existing directory of ``path`` (links followed: the path is the user's or the
    site's), that directory, and the names below it still to create."""
    existing = path
    missing: list[str] = []
    while True:
        try:
            return os.open(existing, _DIR_FLAGS), existing, tuple(missing)
        except FileNotFoundError:
            if existing.parent == existing:
                raise WriteError(f"cannot open {what}: no such file system") from None
            missing.insert(0, existing.name)
            existing = existing.parent
        except OSError as e:
            raise WriteError(f"cannot open {what}: {_describe(e)}; nothing was written") from e


def _parts(relative: Path) -> tuple[str, ...]:
    return tuple(p for p in relative.parts if p not in ("", "."))


class ExportFolder:
    """An export folder opened once: the deepest directory that existed when it was opened, as a handle, and the
    folders still to create below it (created through the handle, never following a symbolic link)."""

    def __init__(self, path: Path, fd: int, missing: tuple[str, ...]) -> None:
        self.path = path
        self._fd: int | None = fd
        self._missing = missing

    @classmethod
    def open(cls, path: Path) -> ExportFolder:
        """The folder the user named (symbolic links in ``path`` are followed, as a shell would)."""
        path = Path(os.path.abspath(path))
        fd, _, missing = _deepest_existing(path, f"export folder {path}")
        return cls(path, fd, missing)

    @classmethod
    def within(cls, root: Path, typed: Path) -> ExportFolder:
        """``typed`` (relative to ``root``, or absolute) opened below ``root`` one component at a time without
        following symbolic links: no ``..``, link or later swap can lead outside ``root``."""
        target = Path(os.path.normpath(root / typed))
        try:
            relative = target.relative_to(os.path.normpath(root))
        except ValueError:
            raise WriteError(f"{typed} is outside the export folder {root}") from None
        # The root is the site's (its own path may hold symbolic links); the part of it not made yet is created
        # like the rest, without following links.
        fd, base, pending = _deepest_existing(Path(os.path.normpath(root)), f"the export root {root}")
        parts = (*pending, *_parts(relative))
        for k, part in enumerate(parts):
            try:
                child = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                return cls(target, fd, parts[k:])
            except OSError as e:
                os.close(fd)
                where = base.joinpath(*parts[: k + 1])
                if e.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(where):
                    raise WriteError(
                        f"{typed} leads outside the export folder {root}: {where} is a symbolic link"
                    ) from None
                raise WriteError(f"cannot open export folder {where}: {_describe(e)}") from e
            os.close(fd)
            fd = child
        return cls(target, fd, ())

    def directory(self) -> int:
        """A new handle on the folder itself, creating what is missing (the caller closes it)."""
        if self._fd is None:
            raise ValueError("the export folder was closed")
        fd = os.dup(self._fd)
        for part in self._missing:
            try:
                os.mkdir(part, 0o777, dir_fd=fd)
            except FileExistsError:
                pass
            except OSError as e:
                os.close(fd)
                raise WriteError(f"cannot create export folder {self.path}: {_describe(e)}; nothing was written") from e
            try:
                child = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise WriteError(
                        f"cannot create export folder {self.path}: {part} was replaced by a symbolic link or a "
                        "file meanwhile; nothing was written"
                    ) from None
                raise WriteError(f"cannot open export folder {self.path}: {_describe(e)}") from e
            os.close(fd)
            fd = child
        return fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class PlanIdentity:
    """What tells another export of the same plan apart in a folder: the patient and the plan's RTPlanName."""

    patient_id: str
    plan_name: str


@dataclass
class WriteReport:
    folder: Path
    written: list[Path] = field(default_factory=list)
    identical: list[Path] = field(default_factory=list)  # already there with the same bytes: skipped
    warnings: list[str] = field(default_factory=list)  # what the user should know about the folder
    removed_stale: list[str] = field(default_factory=list)  # temporary files of earlier, interrupted exports
    renamed: bool = False  # put in place by rename (the file system has no hard links)

    @property
    def bytes_written(self) -> int:
        return sum(p.stat().st_size for p in self.written)


def _damaged(obj: ExportObject, found: str | None) -> StoreError:
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
        chunk = os.pread(src, min(_CHUNK, size - done), done)
        if not chunk:
            raise OSError(errno.EIO, f"the file ended after {done} of {size} bytes")
        _write_all(dst, memoryview(chunk))
        done += len(chunk)


def _copy(obj: ExportObject, dst: int) -> None:
    """``obj``'s bytes into ``dst``: a stored file copied by the kernel (copy_file_range), built bytes written."""
    if obj.path is None:
        assert obj.data is not None
        _write_all(dst, memoryview(obj.data))
        return
    try:
        src = os.open(obj.path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _damaged(obj, None) from None
    try:
        _kernel_copy(src, dst, obj.size)
    finally:
        os.close(src)


def _hash_at(d: int, name: str) -> str:
    """SHA-256 of the folder's file ``name`` (a staged copy, read back from memory)."""
    h = hashlib.sha256()
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def _same_content(obj: ExportObject, d: int, name: str, size: int, buf: memoryview) -> bool:
    """Whether the folder's file ``name`` holds ``obj``'s bytes; the stored bytes are verified on the way."""
    h = hashlib.sha256()
    same = size == obj.size
    if obj.path is None:
        assert obj.data is not None
        chunks: list[memoryview] = [memoryview(obj.data)]
        src = -1
    else:
        try:
            src = os.open(obj.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise _damaged(obj, None) from None
        chunks = []
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d)
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
        raise _damaged(obj, h.hexdigest())
    return same


class _StagingFailed(Exception):
    """Staging ``filename`` failed with ``cause``; every file staged was removed again."""

    def __init__(self, filename: str, cause: BaseException) -> None:
        super().__init__(filename)
        self.filename, self.cause = filename, cause


STAGING_THREADS = 2  # the kernel copies two files at once


def _stage_all(todo: Sequence[ExportObject], d: int) -> list[tuple[ExportObject, str]]:
    """Every object copied into a temporary file, in order; on any failure none is left and
    :class:`_StagingFailed` names the first object that failed."""
    names = [f".rtexport-{secrets.token_hex(8)}.part" for _ in todo]
    created: set[str] = set()
    lock = threading.Lock()

    def stage(k: int) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(names[k], flags, 0o666, dir_fd=d)  # 0o666: the umask gives the mode, as for any new file
        with lock:
            created.add(names[k])
        try:
            _copy(todo[k], fd)
        finally:
            os.close(fd)

    failure: tuple[int, BaseException] | None = None
    with ThreadPoolExecutor(max_workers=min(STAGING_THREADS, len(todo)) or 1) as pool:
        futures = [pool.submit(stage, k) for k in range(len(todo))]
        try:
            for k, future in enumerate(futures):
                try:
                    future.result()
                except Exception as e:
                    failure = failure or (k, e)
                    for f in futures:
                        f.cancel()
        except BaseException:  # an interrupt: stop the rest, remove what was made
            for f in futures:
                f.cancel()
            wait(futures)
            for name in created:
                _unlink(d, name)
            raise
    if failure is not None:
        for name in created:
            _unlink(d, name)
        raise _StagingFailed(todo[failure[0]].filename, failure[1])
    return list(zip(todo, names, strict=True))


def _fsync_at(d: int, name: str) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(d: int, folder: Path, start: float, report: WriteReport) -> None:
    """Hold the folder (a shared lock) for this export; when no other export holds it, the temporary files in it
    are those of interrupted exports: remove them first (only ours, by name)."""
    try:
        fcntl.flock(d, fcntl.LOCK_EX | fcntl.LOCK_NB)
        alone, locks = True, True
    except BlockingIOError:
        alone, locks = False, True
    except OSError:
        alone, locks = False, False
    if alone or not locks:
        for name in os.listdir(d):
            if not _PART.match(name):
                continue
            try:
                st = os.stat(name, dir_fd=d, follow_symlinks=False)
                if not alone and st.st_mtime > start - STALE_WITHOUT_LOCKS_S:
                    continue
                if st.st_mtime <= start:
                    os.unlink(name, dir_fd=d)
                    report.removed_stale.append(name)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise WriteError(
                    f"cannot remove {folder / name}, a temporary file of an earlier export: {_describe(e)}"
                ) from e
    if locks:
        fcntl.flock(d, fcntl.LOCK_SH)  # waits only for another export's removal of its stale files


def _rename_noreplace(d: int, src: str, dst: str) -> None:
    """Rename without replacing an existing ``dst`` (renameat2 RENAME_NOREPLACE where the file system offers it;
    otherwise a check right before a plain rename)."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        if renameat2(d, src.encode(), d, dst.encode(), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), dst)
    try:
        os.stat(dst, dir_fd=d, follow_symlinks=False)
    except FileNotFoundError:
        os.rename(src, dst, src_dir_fd=d, dst_dir_fd=d)
        return
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)


def _header(d: int, name: str) -> pydicom.Dataset | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            ds = pydicom.dcmread(
                f,
                stop_before_pixels=True,
                specific_tags=["SOPClassUID", "SOPInstanceUID", "PatientID", "RTPlanName", "ApprovalStatus"],
            )
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, AttributeError, TypeError):
        return None
    return ds


def _folder_warnings(
    d: int, names: Sequence[str], objects: Sequence[ExportObject], plan: PlanIdentity | None
) -> list[str]:
    """What else in the folder the user should know about: the same instance under another name, another export
    of the same plan (other UIDs)."""
    ours = {o.sop_instance_uid: o.filename for o in objects}
    filenames = set(ours.values())
    warnings: list[str] = []
    for name in sorted(names):
        if name in filenames or name.startswith("."):
            continue
        m = _OURS.match(name)
        if m is not None and m.group(1) != "RP":
            continue  # our own naming: the name says which instance it is, and it is not one of this export
        ds = _header(d, name)
        if ds is None:
            continue
        uid = str(ds.get("SOPInstanceUID", ""))
        if uid in ours:
            warnings.append(
                f"{name} in the folder is the same instance as {ours[uid]} (SOP Instance UID {uid}) under another "
                "file name: a receiver reading the folder gets it twice"
            )
        elif (
            plan is not None
            and str(ds.get("SOPClassUID", "")) == _RT_PLAN
            and str(ds.get("PatientID", "")) == plan.patient_id
            and str(ds.get("RTPlanName", "")) == plan.plan_name
        ):
            status = str(ds.get("ApprovalStatus", "")) or "no approval status"
            warnings.append(
                f"{name} in the folder is another RT Plan of plan {plan.plan_name} ({status}, SOP Instance UID "
                f"{uid}): this export's plan has other UIDs; remove the one that should not be imported"
            )
    return warnings


def _check_names(objects: Sequence[ExportObject]) -> None:
    """Every file name is built from a kind and a SOP Instance UID checked by the UID grammar (digits and dots):
    a name can then hold no separator and no ``..``, whatever reached the store. Checked before anything is
    created."""
    for obj in objects:
        problem = uid_problem(obj.sop_instance_uid)
        if problem is not None or not isinstance(obj.kind, ObjectKind):
            what = f" ({obj.description})" if obj.description else ""
            raise WriteError(
                f"the SOP Instance UID {obj.sop_instance_uid!r} of a {obj.kind} object{what} is not a valid DICOM "
                f"UID: {problem or 'unknown kind'}; no file name is built from it and nothing was written. Run "
                "'rtexport verify' and re-import the course from files with valid UIDs."
            )
        name = obj.filename
        if "/" in name or "\0" in name or name.startswith("."):
            raise WriteError(f"{name!r} is not a file name rtexport writes; nothing was written")


def write_folder(
    objects: Sequence[ExportObject],
    folder: Path | ExportFolder,
    progress: Callable[[ExportObject], None] | None = None,
    *,
    plan: PlanIdentity | None = None,
) -> WriteReport:
    """Write ``objects`` into ``folder`` as ``<kind>.<uid>.dcm``.

    Checked before anything is written: the folder can be created and written, no name holds different
    content, and the disk has room. Each stored object is verified against its hash as it is copied; a damaged
    one, or a failure while writing, leaves the folder as it was and raises :class:`StoreError` or
    :class:`WriteError`. ``progress`` is called as each file is safely on disk. ``plan`` identifies the exported
    plan, to warn about another export of it already in the folder.
    """
    _check_names(objects)
    handle = folder if isinstance(folder, ExportFolder) else ExportFolder.open(folder)
    try:
        d = handle.directory()
    finally:
        if handle is not folder:
            handle.close()
    try:
        return _write(objects, d, handle.path, progress, plan)
    finally:
        os.close(d)


def _write(
    objects: Sequence[ExportObject],
    d: int,
    folder: Path,
    progress: Callable[[ExportObject], None] | None,
    plan: PlanIdentity | None,
) -> WriteReport:
    report = WriteReport(folder)
    buf = memoryview(bytearray(_CHUNK))  # for comparing with files already there
    _lock(d, folder, time.time(), report)
    names = os.listdir(d)
    present = set(names)
    todo: list[ExportObject] = []
    conflicts: list[str] = []
    for obj in objects:
        target = folder / obj.filename
        if obj.filename not in present:
            todo.append(obj)
            continue
        st = os.stat(obj.filename, dir_fd=d, follow_symlinks=False)
        if stat.S_ISREG(st.st_mode) and _same_content(obj, d, obj.filename, st.st_size, buf):
            report.identical.append(target)
        else:
            conflicts.append(str(target))
    if conflicts:
        raise WriteError(
            f"{len(conflicts)} file(s) in {folder} have the same name but other content and were not "
            f"overwritten: {', '.join(conflicts[:3])}{' …' if len(conflicts) > 3 else ''}; "
            "choose another folder or move them away. Nothing was written."
        )
    report.warnings = _folder_warnings(d, names, objects, plan)
    need = sum(o.size for o in todo)
    fs = os.fstatvfs(d)
    free = fs.f_bavail * fs.f_frsize
    if need > free:
        raise WriteError(
            f"not enough space in {folder}: need {need / 1e6:.1f} MB, {free / 1e6:.1f} MB free; nothing was written"
        )
    # All files are staged, verified and made durable first, then put in place: a damaged stored file or a
    # failure while writing (full disk, I/O error) leaves the folder as it was, and the disk writes the files
    # back together, not one commit each.
    staged: list[tuple[ExportObject, str]] = []
    current = ""
    try:
        staged = _stage_all(todo, d)
        # Made durable and proven together: while the disk writes the staged files back (fsync, one after the
        # other, as one journal commit), their bytes are hashed from memory and compared with the stored hashes,
        # so verification costs next to no time beside the disk's own. What is proven is exactly what is put in
        # place; a damaged stored file leaves the folder as it was.
        with ThreadPoolExecutor(max_workers=STAGING_THREADS) as pool:
            digests = {tmp: pool.submit(_hash_at, d, tmp) for obj, tmp in staged if obj.sha256 is not None}
            for obj, tmp in staged:
                current = obj.filename
                _fsync_at(d, tmp)
            for obj, tmp in staged:
                current = obj.filename
                found = digests[tmp].result() if tmp in digests else obj.sha256
                if found != obj.sha256:
                    raise _damaged(obj, found)
                if progress is not None:
                    progress(obj)
    except BaseException as e:  # an interrupt, too, leaves no temporary file behind
        for _, tmp in staged:
            _unlink(d, tmp)
        if isinstance(e, _StagingFailed):
            current, e = e.filename, e.cause
        if not isinstance(e, OSError):
            raise e
        raise WriteError(
            f"writing {folder / current} failed: {_describe(e)}. Nothing was written: the {len(todo)} file(s) "
            "of this export are put in place only once all of them are on disk. Fix the cause and export again.",
        ) from e
    try:
        for obj, tmp in staged:
            target = folder / obj.filename
            try:
                if report.renamed:
                    _rename_noreplace(d, tmp, obj.filename)
                else:
                    try:
                        # fails if the name appeared meanwhile: never overwrite, even in a race
                        os.link(tmp, obj.filename, src_dir_fd=d, dst_dir_fd=d, follow_symlinks=False)
                    except OSError as e:
                        if e.errno not in _NO_LINKS or report.written:
                            raise
                        report.renamed = True  # no hard links here (FAT, exFAT, some shares)
                        _rename_noreplace(d, tmp, obj.filename)
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
            _unlink(d, tmp)
    os.fsync(d)
    return report


def _unlink(d: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=d)
