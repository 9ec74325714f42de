"""What an export produces: encoded DICOM Part 10 files, held as stored bytes on disk or in memory, and what every
reader of them needs: the file meta group (read straight from the bytes when ordinary, else with pydicom's
reader). The sender checks stored bytes against the SHA-256 they were stored under as it reads them
(:mod:`rtexport.net.store`)."""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from pydicom.filereader import read_dataset, read_preamble
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR


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
    sha256: str | None = None  # of the Part 10 bytes at ``path``, when they are a stored blob: checked as they are read

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


def _not_file_meta(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag >> 16 != 0x0002


@dataclass(frozen=True)
class FileMeta:
    """What the sender needs from a Part 10 file meta group (PS3.10 7.1), and where the data set starts."""

    transfer_syntax: str
    sop_class_uid: str
    sop_instance_uid: str
    offset: int


# The VRs pydicom knows, and those whose explicit little endian length takes 4 bytes after 2 reserved ones.
_KNOWN_VRS = frozenset(str(vr).encode("ascii") for vr in VR)
_LONG_VRS = frozenset(str(vr).encode("ascii") for vr in EXPLICIT_VR_LENGTH_32)
_ELEMENT_HEAD = struct.Struct("<HH2sH")  # group, element, VR, a short length
_U32 = struct.Struct("<I")
_META_HEAD = 128 + 4 + 1024  # preamble, "DICM" and room for any ordinary file meta group


def _quick_file_meta(fp: BinaryIO) -> FileMeta | None:
    """The file meta read straight from the bytes when it is plainly well-formed (explicit VR little endian,
    defined lengths, within the first kilobyte); None for anything else, which pydicom's reader then judges."""
    start = fp.tell()
    head = fp.read(_META_HEAD)
    if head[128:132] != b"DICM":
        return None
    values: dict[int, bytes] = {}
    pos = 132
    while pos + 8 <= len(head):
        group, elem, vr, short = _ELEMENT_HEAD.unpack_from(head, pos)
        if group != 0x0002:
            if vr in _LONG_VRS and pos + 12 > len(head):
                return None  # the data set's first element header is cut off: pydicom's reader refuses the file
            fp.seek(start + pos)
            uid = {e: _uid(values.get(e, b"")) for e in (0x0010, 0x0002, 0x0003)}
            return FileMeta(uid[0x0010], uid[0x0002], uid[0x0003], start + pos)
        if vr not in _KNOWN_VRS:
            return None  # implicit VR or damage: pydicom's reader decides
        if vr in _LONG_VRS:
            if pos + 12 > len(head):
                return None
            length, pos = _U32.unpack_from(head, pos + 8)[0], pos + 12
        else:
            length, pos = short, pos + 8
        if pos + length > len(head):  # undefined (0xFFFFFFFF) or cut short
            return None
        values[elem] = head[pos : pos + length]
        pos += length
    return None  # a file meta that does not end in the first kilobyte, or a file that ends with it


def _uid(value: bytes) -> str:
    return value.decode("ascii", "replace").rstrip("\0 ")


def read_file_meta(fp: BinaryIO) -> FileMeta:
    """Read the file meta group; raises pydicom's InvalidDicomError when there is none.

    An ordinary group (explicit VR little endian, within the first kilobyte) is read straight from the bytes:
    pydicom's reader costs more than the rest of preparing a file to send. Anything else is read with pydicom's
    reader. The three UIDs are taken raw, unconverted: conversion and validation cost more than the read, once
    per file of every send, and the values only have to match the export's own."""
    start = fp.tell()
    quick = _quick_file_meta(fp)
    if quick is not None:
        return quick
    fp.seek(start)
    return pydicom_file_meta(fp)


def pydicom_file_meta(fp: BinaryIO) -> FileMeta:
    """:func:`read_file_meta` by pydicom's reader alone: the fallback for any group the quick reader leaves."""
    read_preamble(fp, False)
    meta = read_dataset(fp, is_implicit_VR=False, is_little_endian=True, stop_when=_not_file_meta)

    def uid(tag: int) -> str:
        elem = meta.get_item(tag)
        value = b"" if elem is None or elem.value is None else elem.value
        return (value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)).rstrip("\0 ")

    return FileMeta(uid(0x00020010), uid(0x00020002), uid(0x00020003), fp.tell())


def read_objects(paths: Sequence[Path], kind: ObjectKind) -> list[ExportObject]:
    """ExportObjects for stored Part 10 files (UIDs from their file meta); no expected digest."""
    out = []
    for path in paths:
        with path.open("rb") as fp:
            meta = read_file_meta(fp)
        out.append(ExportObject.from_file(kind, path, meta.sop_class_uid, meta.sop_instance_uid))
    return out
