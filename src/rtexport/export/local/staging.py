"""Staging folders: a hidden folder (``.<name>.part-<random>`` beside a new export folder, ``.rtexport-<random>.part``
inside an existing one) that an export fills, verifies and makes durable before anything is put in place. Its
export holds a lock on it while it lives, so a staging folder nobody holds is one of an interrupted export: the
next export removes it (only rtexport's own names are touched)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from rtexport.errors import WriteError
from rtexport.export.local.files import copy_into, damaged, make_durable, prove, unlink
from rtexport.export.local.folder import DIR_FLAGS, describe
from rtexport.export.objects import ExportObject

STAGING_THREADS = 2  # two files copied and hashed at once, then two fsynced at once
# Without locks (some network file systems), a staging folder counts as stale once untouched this long.
STALE_WITHOUT_LOCKS_S = 3600.0
INSIDE = re.compile(r"^\.rtexport-[A-Za-z0-9_-]+\.part$")  # also the temporary files of earlier versions


def beside(name: str) -> re.Pattern[str]:
    """The names of staging folders of a new export folder ``name``, made in its parent."""
    return re.compile(rf"^\.{re.escape(name)}\.part-[0-9a-f]{{16}}$")


def new_name(beside_of: str | None) -> str:
    token = secrets.token_hex(8)
    return f".{beside_of}.part-{token}" if beside_of is not None else f".rtexport-{token}.part"


def _try_lock(fd: int) -> bool | None:
    """Take ``fd``'s exclusive lock if free: True, False when another holds it, None when there are no locks."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def make(d: int, beside_of: str | None, folder: Path) -> tuple[str, int]:
    """Create a staging folder in ``d`` (see :func:`new_name`) and return its name and a handle on it, locked as
    this export's. Between its creation and its lock, another export may take it for an interrupted one's and
    remove it: then another name is tried."""
    for _ in range(8):
        name = new_name(beside_of)
        try:
            os.mkdir(name, 0o777, dir_fd=d)  # the umask gives the mode: the folder may become the export folder
            sd = os.open(name, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=d)
        except FileNotFoundError:
            continue  # removed as stale before we opened it
        except OSError as e:
            raise WriteError(f"cannot create a folder in {folder}: {describe(e)}; nothing was written") from e
        if _try_lock(sd) is not False and _still_there(d, name, sd):
            return name, sd
        os.close(sd)
    raise WriteError(f"cannot create a staging folder in {folder}: another program keeps removing them")


def _still_there(d: int, name: str, sd: int) -> bool:
    """Whether ``sd`` is still the folder ``name`` of ``d`` (not removed meanwhile)."""
    try:
        st = os.stat(name, dir_fd=d, follow_symlinks=False)
    except FileNotFoundError:
        return False
    own = os.fstat(sd)
    return own.st_nlink > 0 and (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def remove(d: int, name: str, sd: int) -> None:
    """Empty and remove the staging folder ``name`` of ``d`` (``sd`` its handle): our files only, no link
    followed; a folder someone put inside is left, and the staging folder with it. Never raises."""
    with contextlib.suppress(OSError):  # best effort: what is left is removed by the next export
        for entry in os.listdir(sd):
            st = os.stat(entry, dir_fd=sd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                unlink(sd, entry)
        os.rmdir(name, dir_fd=d)


def remove_stale(d: int, pattern: re.Pattern[str], folder: Path, start: float, alone: bool) -> list[str]:
    """Remove the staging folders of interrupted exports in ``d``: those matching ``pattern`` whose lock nobody
    holds; and the temporary files earlier versions left when ``alone`` (no other export writes into ``d``).
    Returns their names."""
    removed: list[str] = []
    for name in os.listdir(d):
        if not pattern.match(name):
            continue
        try:
            st = os.stat(name, dir_fd=d, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                if alone or st.st_mtime <= start - STALE_WITHOUT_LOCKS_S:
                    os.unlink(name, dir_fd=d)
                    removed.append(name)
                continue
            sd = os.open(name, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=d)
            try:
                free = _try_lock(sd)
                if free or (free is None and st.st_mtime <= start - STALE_WITHOUT_LOCKS_S):
                    remove(d, name, sd)
                    removed.append(name)
            finally:
                os.close(sd)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise WriteError(
                f"cannot remove {folder / name}, left by an interrupted export: {describe(e)}; nothing was written"
            ) from e
    return removed


class _StagingFailed(Exception):
    """Staging ``filename`` failed with ``cause``."""

    def __init__(self, filename: str, cause: BaseException) -> None:
        super().__init__(filename)
        self.filename, self.cause = filename, cause


def _in_parallel(todo: Sequence[ExportObject], work: Callable[[ExportObject], object]) -> list[object]:
    """``work`` on every object, two at a time; the first failure (in order) raised as :class:`_StagingFailed`
    once every started piece has ended, the rest not started."""
    with ThreadPoolExecutor(max_workers=min(STAGING_THREADS, len(todo)) or 1) as pool:
        futures = [pool.submit(work, obj) for obj in todo]
        try:
            results: list[object] = []
            for obj, future in zip(todo, futures, strict=True):
                try:
                    results.append(future.result())
                except Exception as e:
                    for f in futures:
                        f.cancel()
                    wait(futures)
                    raise _StagingFailed(obj.filename, e) from e
            return results
        except BaseException:  # an interrupt: stop the rest
            for f in futures:
                f.cancel()
            wait(futures)
            raise


def _copy_and_prove(obj: ExportObject, sd: int) -> str | None:
    copy_into(obj, sd, obj.filename)
    return prove(obj, sd, obj.filename)


def fill(todo: Sequence[ExportObject], sd: int, folder: Path, progress: Callable[[ExportObject], None] | None) -> None:
    """Copy every object into the staging folder under its name, verify it against its stored hash, make it
    durable (each file, then the folder once). Raises :class:`WriteError` or :class:`StoreError`; the caller
    removes the staging folder."""
    try:
        # Each file copied, its writeback started and its bytes hashed back from memory while the disk writes the
        # files before it; then each made durable, most of it already on disk.
        digests = _in_parallel(todo, lambda obj: _copy_and_prove(obj, sd))
        for obj, found in zip(todo, digests, strict=True):
            if found != obj.sha256:
                raise damaged(obj, found if isinstance(found, str) else None)
        _in_parallel(todo, lambda obj: make_durable(sd, obj.filename))
        if progress is not None:
            for obj in todo:
                progress(obj)
        os.fsync(sd)
    except _StagingFailed as failed:
        e = failed.cause
        if not isinstance(e, OSError):
            raise e from None
        if e.errno == errno.EEXIST:
            e = OSError(errno.EEXIST, "the staging folder was changed by another program")
        raise WriteError(
            f"writing {folder / failed.filename} failed: {describe(e)}. Nothing was written: the {len(todo)} "
            "file(s) of this export are put in place only once all of them are on disk. Fix the cause and export "
            "again.",
        ) from e
    except OSError as e:
        raise WriteError(f"making the files in {folder} durable failed: {describe(e)}; nothing was written") from e
