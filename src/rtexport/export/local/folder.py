"""The export folder, opened once: every later operation goes through its directory handle (``dir_fd``), so a
symbolic link swapped in after the folder was checked cannot redirect the files. Only the last folder of the path
is ever created."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from types import TracebackType
from typing import Self

from rtexport.errors import WriteError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def describe(e: OSError) -> str:
    """An OS error in the words of the export's messages."""
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
            return os.open(existing, DIR_FLAGS), existing, tuple(missing)
        except FileNotFoundError:
            if existing.parent == existing:
                raise WriteError(f"cannot open {what}: no such file system") from None
            missing.insert(0, existing.name)
            existing = existing.parent
        except OSError as e:
            raise WriteError(f"cannot open {what}: {describe(e)}; nothing was written") from e


def _parts(relative: Path) -> tuple[str, ...]:
    return tuple(p for p in relative.parts if p not in ("", "."))


def _make_below(fd: int, part: str, path: Path) -> int:
    """The folder ``part`` below ``fd`` (made if missing, no link followed), as a new handle; ``fd`` is closed."""
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(part, 0o777, dir_fd=fd)
        return os.open(part, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise WriteError(
                f"cannot create export folder {path}: {part} was replaced by a symbolic link or a file meanwhile; "
                "nothing was written"
            ) from None
        raise WriteError(f"cannot create export folder {path}: {describe(e)}; nothing was written") from e
    finally:
        os.close(fd)


class ExportFolder:
    """An export folder opened once: the deepest directory that existed when it was opened, as a handle, and the
    folders still missing below it (only the last of them may be missing when the export writes)."""

    def __init__(self, path: Path, fd: int, missing: tuple[str, ...], site_made: int = 0) -> None:
        self.path = path
        self._fd: int | None = fd
        self._missing = missing
        self._site_made = site_made  # how many of the missing folders are the site's export root, made as needed

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
                child = os.open(part, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                return cls(target, fd, parts[k:], max(0, len(pending) - k))
            except OSError as e:
                os.close(fd)
                where = base.joinpath(*parts[: k + 1])
                if e.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(where):
                    raise WriteError(
                        f"{typed} leads outside the export folder {root}: {where} is a symbolic link"
                    ) from None
                raise WriteError(f"cannot open export folder {where}: {describe(e)}") from e
            os.close(fd)
            fd = child
        return cls(target, fd, ())

    def target(self) -> tuple[int, str | None]:
        """A new handle on the folder and None when it exists; else a handle on its parent and the folder's name
        (the caller closes the handle). Refused when more than the last folder is missing."""
        if self._fd is None:
            raise ValueError("the export folder was closed")
        if len(self._missing) - self._site_made > 1:
            raise WriteError(
                f"cannot export to {self.path}: its parent folder {self.path.parent} does not exist. Only the export "
                "folder itself is created: check the path, or create the parent first. Nothing was written."
            )
        fd = os.open(".", DIR_FLAGS, dir_fd=self._fd)  # its own open file: a lock on it is this export's alone
        for part in self._missing[:-1]:  # the site's export root, configured but not made yet
            fd = _make_below(fd, part, self.path)
        return fd, (self._missing[-1] if self._missing else None)

    def directory(self) -> int:
        """The folder itself as a new handle, made when it is the one folder missing (and the site's export root
        with it); the caller closes the handle."""
        fd, name = self.target()
        return fd if name is None else _make_below(fd, name, self.path)

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
