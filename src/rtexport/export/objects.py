"""What an export produces: encoded DICOM Part 10 files, held as stored bytes on disk or in memory."""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO


class ObjectKind(StrEnum):
    """Kinds of exported object, in the order they are written and sent (references point backwards)."""

    CT = "CT"
    RTSTRUCT = "RS"
    RTPLAN = "RP"
    RTDOSE = "RD"


@dataclass(frozen=True)
class ExportObject:
    """One DICOM Part 10 file to export.

    ``path`` is a stored file to copy byte for byte (CT images, an unchanged structure set); ``data`` is a
    newly encoded file. Exactly one is set. ``sha256`` is the hex digest the stored file's bytes must have
    (the sender checks it as it reads them); None for objects built in memory, which need no check.
    """

    kind: ObjectKind
    sop_class_uid: str
    sop_instance_uid: str
    size: int
    path: Path | None = None
    data: bytes | None = None
    description: str = ""
    sha256: str | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.data is None):
            raise ValueError("an ExportObject holds either a path or data")

    @property
    def filename(self) -> str:
        return f"{self.kind.value}.{self.sop_instance_uid}.dcm"

    def open(self) -> BinaryIO:
        """The Part 10 file's bytes as a binary stream (caller closes)."""
        if self.path is not None:
            return self.path.open("rb")
        assert self.data is not None
        return io.BytesIO(self.data)

    def read_bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()

    @classmethod
    def from_file(
        cls,
        kind: ObjectKind,
        path: Path,
        sop_class_uid: str,
        sop_instance_uid: str,
        description: str = "",
        sha256: str | None = None,
    ) -> ExportObject:
        size = path.stat().st_size
        return cls(kind, sop_class_uid, sop_instance_uid, size, path=path, description=description, sha256=sha256)

    @classmethod
    def from_bytes(
        cls, kind: ObjectKind, data: bytes, sop_class_uid: str, sop_instance_uid: str, description: str = ""
    ) -> ExportObject:
        return cls(kind, sop_class_uid, sop_instance_uid, len(data), data=data, description=description)
