"""The file meta reader every sender and builder uses: the bytes read straight agree with pydicom's reader on
every file, well-formed or not, and what pydicom refuses is refused."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydicom.errors import InvalidDicomError

from rtexport.export.objects import FileMeta, pydicom_file_meta, read_file_meta


def _outcome(read: Callable[[BinaryIO], FileMeta], data: bytes) -> FileMeta | str:
    try:
        return read(io.BytesIO(data))
    except Exception as e:  # pydicom raises several kinds on bytes that are not a file meta; the kind must agree
        return type(e).__name__


def _element(elem: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"UN", b"SQ"):
        return struct.pack("<HH", 2, elem) + vr + b"\0\0" + struct.pack("<I", len(value)) + value
    return struct.pack("<HH", 2, elem) + vr + struct.pack("<H", len(value)) + value


def _part10(*elements: bytes, data_set: bytes = b"\x08\x00\x16\x00UI\x02\x001\x00") -> bytes:
    return bytes(128) + b"DICM" + b"".join(elements) + data_set


ORDINARY = (
    _element(0x0001, b"OB", b"\0\1"),
    _element(0x0002, b"UI", b"1.2.840.10008.5.1.4.1.1.2\0"),
    _element(0x0003, b"UI", b"2.25.12345"),
    _element(0x0010, b"UI", b"1.2.840.10008.1.2.1\0"),
)


def test_the_phantoms_files_read_the_same_aspydicom_file_meta(phantom_dir: Path) -> None:
    paths = sorted(phantom_dir.glob("*.dcm"))
    assert len(paths) > 3
    for path in paths:
        data = path.read_bytes()
        with path.open("rb") as fp:
            meta = read_file_meta(fp)
            assert fp.tell() == meta.offset
        assert meta == pydicom_file_meta(io.BytesIO(data)), path.name
        assert meta.transfer_syntax and meta.sop_class_uid and meta.sop_instance_uid


IDS = ["ordinary", "no data set", "long group", "padding", "repeated", "implicit VR", "undefined length", "truncated",
       "no DICM", "tiny"]  # fmt: skip


@pytest.mark.parametrize(
    "data",
    [
        _part10(*ORDINARY),
        _part10(*ORDINARY, data_set=b""),  # a file meta and nothing after it
        _part10(*ORDINARY[:2], _element(0x0100, b"OB", bytes(3000)), *ORDINARY[2:]),  # a group past 1 KiB
        _part10(*ORDINARY[:2], _element(0x0003, b"UI", b"2.25.1 \0"), ORDINARY[3]),  # padding stripped
        _part10(*ORDINARY, _element(0x0003, b"UI", b"2.25.99")),  # a repeated element: the last one counts
        _part10(*ORDINARY[:1], struct.pack("<HHI", 2, 2, 26) + b"1.2.840.10008.5.1.4.1.1.2\0"),  # implicit VR
        _part10(*ORDINARY[:3], struct.pack("<HH", 2, 0x10) + b"SQ\0\0" + struct.pack("<I", 0xFFFFFFFF)),
        _part10(*ORDINARY)[:200],  # cut inside the group
        bytes(128) + b"DICX" + b"".join(ORDINARY),  # no DICM
        b"DICM",
    ],
    ids=IDS,
)
def test_odd_file_metas_read_as_pydicom_reads_them_or_are_refused_alike(data: bytes) -> None:
    assert _outcome(read_file_meta, data) == _outcome(pydicom_file_meta, data)


def test_a_file_that_is_not_dicom_is_refused_by_pydicoms_error() -> None:
    with pytest.raises(InvalidDicomError):
        read_file_meta(io.BytesIO(bytes(132) + b"not a dicom file"))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(128, len(_part10(*ORDINARY)) - 1), st.integers(0, 255)), min_size=1, max_size=4))
@example(flips=[(231, 82)])  # the data set's first element becomes UR, whose 4-byte length the file cuts off
def test_damaged_file_metas_read_as_pydicom_reads_them_or_are_refused_alike(flips: list[tuple[int, int]]) -> None:
    data = bytearray(_part10(*ORDINARY))
    for pos, value in flips:
        data[pos] = value
    assert _outcome(read_file_meta, bytes(data)) == _outcome(pydicom_file_meta, bytes(data))
