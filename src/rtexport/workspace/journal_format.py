"""The receiver journal's entry formats, and reading a segment back on recovery.

An entry (format 2) takes ``span`` bytes of its segment (a multiple of 4 KiB) and starts with a head: the magic,
``span``, where the data set starts (``data_at``, from the entry's start), the lengths of the record (JSON), of the
file's prefix (its meta) and of the data set, the CRC-32 of record and prefix, and the CRC-32 of the data set. The
record and the prefix follow the head; the data set is at ``data_at``: right after them, or at 4 KiB for an entry
whose data set was written as it arrived. A head whose lengths are zero is a placeholder: the space an
association holds for the entry it is receiving. The content hash is the store's, computed when the entry is filed.

Recovery walks from a segment's start by ``span``: a placeholder or a damaged entry (its CRCs do not match) is
skipped, not filed; a head that is not there (zeros, or a torn head) ends the segment. Only positions the chain
of heads names are read, so bytes inside a data set are never taken for an entry.

Format 1 (receivers before it; still recovered): magic ``RTXJ``, record length, file length, SHA-256 of the
record, then record and file one after the other, padded to 4 KiB; the record holds the file's SHA-256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from isal.isal_zlib import crc32 as crc32  # zlib's CRC-32, 15x faster (carry-less multiply)

from rtexport.workspace.incoming import IncomingInstance

LOGGER = logging.getLogger(__name__)

ALIGN = 4096
MAGIC = b"RTJ2"
HEAD = struct.Struct(">4sQIIIQII")  # magic, span, data_at, record length, prefix length, data length, 2 CRC-32s
STAGED_DATA_AT = ALIGN  # where a data set written as it arrived starts: record and prefix fit before it
_FIELDS = tuple(f.name for f in dataclasses.fields(IncomingInstance))
_MAGIC_V1 = b"RTXJ"
_HEAD_V1 = struct.Struct(">4sIQ32s")


def aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def record_bytes(inst: IncomingInstance) -> bytes:
    return json.dumps({f: getattr(inst, f) for f in _FIELDS}).encode()  # asdict's deep copy costs more


def placeholder(span: int) -> bytes:
    return HEAD.pack(MAGIC, span, 0, 0, 0, 0, 0, 0)


@dataclass(frozen=True)
class EntryHead:
    """A format-2 entry's head and what follows it up to its data set (record and prefix)."""

    span: int
    data_at: int
    record: bytes
    prefix: bytes
    data_len: int
    data_crc: int

    def encode(self) -> bytes:
        head_crc = crc32(self.prefix, crc32(self.record))
        return HEAD.pack(MAGIC, self.span, self.data_at, len(self.record), len(self.prefix), self.data_len,
                         head_crc, self.data_crc) + self.record + self.prefix  # fmt: skip

    @property
    def prefix_at(self) -> int:
        """Where the prefix starts, from the entry's start."""
        return HEAD.size + len(self.record)


def _record(raw: bytes | memoryview) -> IncomingInstance:
    fields = json.loads(bytes(raw))
    return IncomingInstance(**{**fields, "references": tuple(fields["references"])})


def _entry_v2(buf: memoryview, pos: int, name: str) -> tuple[tuple[IncomingInstance, bytes] | None, int]:
    """The entry at ``pos`` (None: a placeholder or a damaged entry) and its span; span 0 ends the segment."""
    _, span, data_at, hlen, plen, dlen, head_crc, data_crc = HEAD.unpack_from(buf, pos)
    if span < ALIGN or span % ALIGN or pos + span > len(buf):
        return None, 0
    if hlen == plen == dlen == 0:
        return None, span
    start, data = pos + HEAD.size, pos + data_at
    if (data_at < HEAD.size + hlen + plen or data_at + dlen > span
            or crc32(buf[start : start + hlen + plen]) != head_crc
            or crc32(buf[data : data + dlen]) != data_crc):  # fmt: skip
        LOGGER.warning("incoming journal %s: the entry at byte %d is damaged; it is not filed", name, pos)
        return None, span
    file = bytes(buf[start + hlen : start + hlen + plen]) + bytes(buf[data : data + dlen])
    return (_record(buf[start : start + hlen]), file), span


def _entry_v1(buf: memoryview, pos: int) -> tuple[tuple[IncomingInstance, bytes] | None, int]:
    _, hlen, dlen, head_sum = _HEAD_V1.unpack_from(buf, pos)
    start = pos + _HEAD_V1.size
    if start + hlen + dlen > len(buf) or hashlib.sha256(buf[start : start + hlen]).digest() != head_sum:
        return None, 0
    inst = _record(buf[start : start + hlen])
    data = bytes(buf[start + hlen : start + hlen + dlen])
    if hashlib.sha256(data).hexdigest() != inst.sha256:
        return None, 0
    return (inst, data), aligned(_HEAD_V1.size + hlen + dlen)


def journal_entries(buf: bytes, name: str = "segment") -> Iterator[tuple[IncomingInstance, bytes]]:
    """The whole entries of a segment (format 2 or 1), in order, each with its Part 10 file."""
    view = memoryview(buf)
    pos = 0
    while pos + max(HEAD.size, _HEAD_V1.size) <= len(view):
        magic = bytes(view[pos : pos + 4])
        if magic == MAGIC:
            entry, span = _entry_v2(view, pos, name)
        elif magic == _MAGIC_V1:
            entry, span = _entry_v1(view, pos)
        else:
            return
        if span == 0:
            return
        if entry is not None:
            yield entry
        pos += span
