"""Writing an export into a folder: all files or none, never overwriting a different file, never outside it."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rtexport.dicom.uids import uid_problem
from rtexport.errors import WriteError
from rtexport.export.local import staging
from rtexport.export.local.files import CHUNK, rename_noreplace, same_content
from rtexport.export.local.folder import DIR_FLAGS, ExportFolder, describe
from rtexport.export.local.survey import PlanIdentity, folder_warnings
from rtexport.export.objects import ExportObject, ObjectKind

_NO_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS)
Progress = Callable[[ExportObject], None] | None


@dataclass
class WriteReport:
    folder: Path
    written: list[Path] = field(default_factory=list)
    identical: list[Path] = field(default_factory=list)  # already there with the same bytes: skipped
    warnings: list[str] = field(default_factory=list)  # what the user should know about the folder
    removed_stale: list[str] = field(default_factory=list)  # staging left by earlier, interrupted exports
    renamed: bool = False  # put in place by rename (the file system has no hard links)
    created: bool = False  # the folder was made by this export, with every file in it at once

    @property
    def bytes_written(self) -> int:
        return sum(p.stat().st_size for p in self.written)


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
    progress: Progress = None,
    *,
    plan: PlanIdentity | None = None,
) -> WriteReport:
    """Write ``objects`` into ``folder`` as ``<kind>.<uid>.dcm``.

    A folder that does not exist yet (only the last folder of the path is created) appears with every file in
    it at once: the files are made, verified and made durable in a hidden staging folder beside it, which is then
    renamed into place. Into an existing folder the files are staged the same way inside it, then put in place
    together while the export holds the folder's lock. Either way a damaged stored object or a failure while
    writing leaves the folder as it was and raises :class:`StoreError` or :class:`WriteError`; an identical file
    already there is skipped and a different one never overwritten. ``progress`` is called as each file is
    safely on disk. ``plan`` identifies the exported plan, to warn about another export of it in the folder.
    """
    _check_names(objects)
    handle = folder if isinstance(folder, ExportFolder) else ExportFolder.open(folder)
    try:
        fd, name = handle.target()
    finally:
        if handle is not folder:
            handle.close()
    try:
        if name is None:
            return _into_existing(objects, fd, handle.path, progress, plan)
        return _into_new(objects, fd, name, handle.path, progress, plan)
    finally:
        os.close(fd)


def _check_space(d: int, todo: Sequence[ExportObject], folder: Path) -> None:
    need = sum(o.size for o in todo)
    fs = os.fstatvfs(d)
    free = fs.f_bavail * fs.f_frsize
    if need > free:
        raise WriteError(
            f"not enough space in {folder}: need {need / 1e6:.1f} MB, {free / 1e6:.1f} MB free; nothing was written"
        )


def _into_new(
    objects: Sequence[ExportObject], parent: int, name: str, folder: Path, progress: Progress, plan: PlanIdentity | None
) -> WriteReport:
    """The folder made with every file in it: staged beside it, then one rename that never replaces."""
    report = WriteReport(folder)
    report.removed_stale = staging.remove_stale(parent, staging.beside(name), folder.parent, time.time(), False)
    _check_space(parent, objects, folder)
    temporary, sd = staging.make(parent, name, folder.parent)
    placed = False
    try:
        staging.fill(objects, sd, folder, progress)
        try:
            rename_noreplace(parent, temporary, parent, name)
            placed = True
        except FileExistsError:
            pass  # made meanwhile (another export of the same plan, say): written into as an existing folder
        except OSError as e:
            raise WriteError(f"creating {folder} failed: {describe(e)}; nothing was written") from e
    finally:
        if not placed:
            staging.remove(parent, temporary, sd)
        os.close(sd)
    if placed:
        os.fsync(parent)
        report.written = [folder / o.filename for o in objects]
        report.created = True
        return report
    try:
        fd = os.open(name, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent)
    except OSError as e:
        replaced = e.errno in (errno.ELOOP, errno.ENOTDIR)
        why = "it was replaced by a symbolic link or a file meanwhile" if replaced else describe(e)
        raise WriteError(f"cannot open export folder {folder}: {why}; nothing was written") from None
    try:
        again = _into_existing(objects, fd, folder, None, plan)
    finally:
        os.close(fd)
    again.removed_stale = report.removed_stale + again.removed_stale
    return again


def _lock(d: int) -> bool:
    """Hold the folder for this export (waiting while another export writes into it); False without locks."""
    try:
        fcntl.flock(d, fcntl.LOCK_EX)
    except OSError:
        return False
    return True


def _into_existing(
    objects: Sequence[ExportObject], d: int, folder: Path, progress: Progress, plan: PlanIdentity | None
) -> WriteReport:
    report = WriteReport(folder)
    alone = _lock(d)
    report.removed_stale = staging.remove_stale(d, staging.INSIDE, folder, time.time(), alone)
    names = os.listdir(d)
    present = set(names)
    buf = memoryview(bytearray(CHUNK))  # for comparing with files already there
    todo: list[ExportObject] = []
    conflicts: list[str] = []
    for obj in objects:
        if obj.filename not in present:
            todo.append(obj)
            continue
        st = os.stat(obj.filename, dir_fd=d, follow_symlinks=False)
        if stat.S_ISREG(st.st_mode) and same_content(obj, d, obj.filename, st.st_size, buf):
            report.identical.append(folder / obj.filename)
        else:
            conflicts.append(str(folder / obj.filename))  # a symbolic link, too: never followed, never replaced
    if conflicts:
        raise WriteError(
            f"{len(conflicts)} file(s) in {folder} have the same name but other content and were not "
            f"overwritten: {', '.join(conflicts[:3])}{' …' if len(conflicts) > 3 else ''}; "
            "choose another folder or move them away. Nothing was written."
        )
    report.warnings = folder_warnings(d, names, objects, plan)
    if not todo:
        return report
    _check_space(d, todo, folder)
    temporary, sd = staging.make(d, None, folder)
    try:
        staging.fill(todo, sd, folder, progress)
        _put_in_place(todo, sd, d, folder, report)
    finally:
        staging.remove(d, temporary, sd)
        os.close(sd)
    os.fsync(d)
    return report


def _put_in_place(todo: Sequence[ExportObject], sd: int, d: int, folder: Path, report: WriteReport) -> None:
    """Hard-link every staged file into the folder, in order (CT first: a reader that sees a file sees what it
    references); rename where the file system has no hard links. Neither ever replaces a name."""
    for obj in todo:
        target = folder / obj.filename
        try:
            if not report.renamed:
                try:
                    os.link(obj.filename, obj.filename, src_dir_fd=sd, dst_dir_fd=d, follow_symlinks=False)
                except OSError as e:
                    if e.errno not in _NO_LINKS or report.written:
                        raise
                    report.renamed = True  # no hard links here (FAT, exFAT, some shares)
            if report.renamed:
                rename_noreplace(sd, obj.filename, d, obj.filename)
        except OSError as e:
            done = ", ".join(p.name for p in report.written) or "none"
            raise WriteError(
                f"putting {target} in place failed: {describe(e)}. {len(report.written)} file(s) were written "
                f"before the failure ({done}); no partial file was left. Fix the cause and export again: files "
                "already written are recognized and skipped.",
                written=[str(p) for p in report.written],
            ) from e
        report.written.append(target)
