"""What the receiver reads of an arriving data set before it answers: that it is whole, and who and what it is.

:func:`read_header` walks the data set's elements (little endian, explicit or implicit VR) to its last byte,
sequences and encapsulated pixel data included, without decoding values: an element that runs past the end, a
sequence without its delimiter or nesting deeper than :data:`MAX_DEPTH` is :class:`DataSetError`. On the way it
takes the top-level attributes that group instances (patient, study, series, frame of reference). An RT
Structure Set's references (its frame of reference and the images it names) are read with pydicom: it is small.
"""

from __future__ import annotations

import functools
import io
import struct
import warnings
from dataclasses import dataclass

from pydicom.filereader import read_dataset

from rtexport.dicom.common import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

MAX_DEPTH = 16
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"})
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_TAG = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_EXPLICIT = struct.Struct("<HH2sH")  # tag, VR, 2-byte length
RT_STRUCTURE_SET = "1.2.840.10008.5.1.4.1.1.481.3"

_WANTED = {
    0x00080016: "sop_class_uid",
    0x00080018: "sop_instance_uid",
    0x00080060: "modality",
    0x00100010: "patient_name",
    0x00100020: "patient_id",
    0x0020000D: "study_uid",
    0x0020000E: "series_uid",
    0x00200052: "frame_of_reference_uid",
}


class DataSetError(ValueError):
    """A data set that cannot be read to its end."""


@dataclass(frozen=True)
class Header:
    """What an instance says of itself; ``references`` are the SOP Instance UIDs of the images an RT Structure
    Set names, and its ``frame_of_reference_uid`` the one it references."""

    sop_class_uid: str
    sop_instance_uid: str
    modality: str = ""
    patient_id: str = ""
    patient_name: str = ""
    study_uid: str = ""
    series_uid: str = ""
    frame_of_reference_uid: str = ""
    references: tuple[str, ...] = ()


Data = bytes | bytearray | memoryview


def _items(data: Data, pos: int, implicit: bool, depth: int) -> int:
    """Skip the items of an undefined-length sequence (or encapsulated pixel data) up to its delimiter."""
    end = len(data)
    while True:
        if pos + 8 > end:
            raise DataSetError(f"a sequence without its end (the data set stops at byte {end})")
        group, elem = _TAG.unpack_from(data, pos)
        tag, length = group << 16 | elem, _U32.unpack_from(data, pos + 4)[0]
        pos += 8
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM:
            raise DataSetError(f"({group:04X},{elem:04X}) where a sequence item was expected, at byte {pos - 8}")
        if length == _UNDEFINED:
            pos = _walk(data, pos, implicit, depth + 1, None, in_item=True)
        elif pos + length > end:
            raise DataSetError(f"a sequence item of {length} bytes runs past the end of the data set")
        else:
            pos += length


def _walk(data: Data, pos: int, implicit: bool, depth: int, out: dict[int, bytes] | None, in_item: bool = False
          ) -> int:  # fmt: skip
    """Walk elements from ``pos`` to the end (or to the item delimiter when ``in_item``); the position after."""
    if depth > MAX_DEPTH:
        raise DataSetError(f"sequences nested deeper than {MAX_DEPTH}")
    end = len(data)
    while pos < end:
        if pos + 8 > end:
            raise DataSetError(f"a truncated element at byte {pos} of {end}")
        group, elem, vr, length = _EXPLICIT.unpack_from(data, pos)  # one unpack; implicit VR reads it again
        tag = group << 16 | elem
        if tag == _ITEM_END and in_item:
            return pos + 8
        if implicit or group == 0xFFFE:
            length, pos = _U32.unpack_from(data, pos + 4)[0], pos + 8
        elif vr in _LONG_VRS:
            if pos + 12 > end:
                raise DataSetError(f"a truncated element at byte {pos} of {end}")
            length, pos = _U32.unpack_from(data, pos + 8)[0], pos + 12
        else:
            pos += 8
        if length == _UNDEFINED:
            pos = _items(data, pos, implicit, depth)
            continue
        if pos + length > end:
            raise DataSetError(
                f"element ({group:04X},{elem:04X}) of {length} bytes runs past the end of the data set "
                f"({end - pos} bytes left): the instance is truncated"
            )
        if out is not None and tag in _WANTED:
            out[tag] = bytes(data[pos : pos + length])
        pos += length
    if in_item:
        raise DataSetError("a sequence item without its end")
    return pos


def _text(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.rstrip("\0 ")


def _structure_set_references(data: Data, implicit: bool) -> tuple[str, tuple[str, ...]]:
    """An RT Structure Set's referenced frame of reference and the images its contours are on."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # odd values are the importer's to judge, not the receiver's
            ds = read_dataset(io.BytesIO(data), implicit, True)
            frames = ds.get("ReferencedFrameOfReferenceSequence", [])
            frame = str(frames[0].get("FrameOfReferenceUID", "")) if frames else ""
            images: dict[str, None] = {}
            for f in frames:
                for study in f.get("RTReferencedStudySequence", []):
                    for series in study.get("RTReferencedSeriesSequence", []):
                        for image in series.get("ContourImageSequence", []):
                            images[str(image.get("ReferencedSOPInstanceUID", ""))] = None
    except Exception as e:  # pydicom raises many kinds on odd bytes
        raise DataSetError(f"the structure set's references cannot be read: {e}") from e
    return frame, tuple(uid for uid in images if uid)


def read_header(data: Data, implicit: bool) -> Header:
    """The instance's :class:`Header`, once its whole data set was walked; raises DataSetError."""
    found: dict[int, bytes] = {}
    _walk(data, 0, implicit, 0, found)
    values = {name: _text(found.get(tag, b"")) for tag, name in _WANTED.items()}
    if not values["sop_class_uid"] or not values["sop_instance_uid"]:
        raise DataSetError("the data set has no SOP Class UID or SOP Instance UID")
    references: tuple[str, ...] = ()
    if values["sop_class_uid"] == RT_STRUCTURE_SET:
        values["frame_of_reference_uid"], references = _structure_set_references(data, implicit)
    return Header(**values, references=references)


def _meta_element(elem: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr == b"UI" else b" "
    if vr == b"OB":
        return _TAG.pack(0x0002, elem) + vr + b"\0\0" + _U32.pack(len(value)) + value
    return _TAG.pack(0x0002, elem) + vr + _U16.pack(len(value)) + value


def file_meta(header: Header, transfer_syntax: str, source_ae: str) -> bytes:
    """What goes before the data set's bytes in a DICOM Part 10 file (PS3.10 7.1): preamble, prefix and our file
    meta (explicit VR little endian, written here: pydicom's writer costs more than the rest of receiving an
    instance)."""
    body = b"".join((
        _meta_element(0x0002, b"UI", header.sop_class_uid.encode("ascii")),
        _meta_element(0x0003, b"UI", header.sop_instance_uid.encode("ascii")),
        _meta_tail(transfer_syntax, source_ae),
    ))  # fmt: skip
    return b"".join((_PREAMBLE, _U32.pack(len(body) + len(_VERSION)), _VERSION, body))


@functools.lru_cache(maxsize=64)
def _meta_tail(transfer_syntax: str, source_ae: str) -> bytes:
    """The file meta elements after the SOP Instance UID: the same for every instance of an association."""
    elements = [
        _meta_element(0x0010, b"UI", transfer_syntax.encode("ascii")),
        _meta_element(0x0012, b"UI", str(IMPLEMENTATION_CLASS_UID).encode("ascii")),
        _meta_element(0x0013, b"SH", IMPLEMENTATION_VERSION_NAME.encode("ascii")),
    ]
    if source_ae:
        elements.append(_meta_element(0x0016, b"AE", source_ae.encode("ascii")))
    return b"".join(elements)


_VERSION = _meta_element(0x0001, b"OB", b"\0\1")
_PREAMBLE = bytes(128) + b"DICM" + _TAG.pack(0x0002, 0x0000) + b"UL" + _U16.pack(4)  # then the group's length


def part10(header: Header, transfer_syntax: str, data_set: Data, source_ae: str) -> bytes:
    """The instance as a DICOM Part 10 file: :func:`file_meta`, then the data set's bytes as they arrived."""
    return file_meta(header, transfer_syntax, source_ae) + bytes(data_set)
