"""Instances received over the network, before they are imported: one row each in ``incoming``, the file in the
blob store (content-addressed, verified when read).

The same SOP Instance UID with the same bytes is one row (a resend is idempotent); with other bytes it is a
second row marked ``conflict``: nothing is overwritten, and the set it belongs to says so. Rows move from
``new`` to ``imported`` (with the course) or ``discarded``.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import sqlite3
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rtexport.workspace.db import Database
from rtexport.workspace.store import BlobStore

NEW, CONFLICT, IMPORTED, DISCARDED = "new", "conflict", "imported", "discarded"


@dataclass(frozen=True)
class IncomingInstance:
    """One received instance as recorded."""

    id: int
    sop_instance_uid: str
    sop_class_uid: str
    sha256: str
    size: int
    patient_id: str
    patient_name: str
    study_uid: str
    series_uid: str
    frame_uid: str
    modality: str
    references: tuple[str, ...]
    calling_ae: str
    peer: str
    received_at: str
    state: str
    course_id: str | None


@dataclass(frozen=True)
class Arrival:
    """What :meth:`IncomingRepository.add` did: ``duplicate`` (the same bytes were there), ``conflict`` (the UID
    was there with other bytes; kept apart)."""

    id: int
    duplicate: bool
    conflict: bool


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _instance(r: sqlite3.Row) -> IncomingInstance:
    return IncomingInstance(
        int(r["id"]), r["sop_instance_uid"], r["sop_class_uid"], r["sha256"], int(r["size"]), r["patient_id"],
        r["patient_name"], r["study_uid"], r["series_uid"], r["frame_uid"], r["modality"],
        tuple(json.loads(r["refs"])), r["calling_ae"], r["peer"], r["received_at"], r["state"], r["course_id"],
    )  # fmt: skip


class IncomingRepository:
    """The ``incoming`` table and the files it names. Not thread-safe: callers serialize."""

    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db = db
        self.blobs = blobs

    def file_many(self, entries: list[tuple[IncomingInstance, bytes]]) -> list[Arrival]:
        """Store received Part 10 files (each hashed once, here) and record them in one transaction: each file
        and each of their folders fsynced once, then one commit (not one per instance). OSError when a file
        cannot be stored (no space): nothing of the batch is recorded."""
        digests, folders = [], set()
        for _, data in entries:
            digest, created = self.blobs.put(data)
            digests.append(digest)
            if created:
                folders.add(self.blobs.path(digest).parent)
        for folder in sorted(folders):
            _fsync_dir(folder)
        with self.db.transaction():
            return [self.add(dataclasses.replace(i, sha256=d)) for (i, _), d in zip(entries, digests, strict=True)]

    def add(self, inst: IncomingInstance) -> Arrival:
        """Record an instance whose file is stored (``inst.id`` and ``state`` are ignored)."""
        with self.db.transaction():
            same = self.db.one(
                "SELECT id FROM incoming WHERE sop_instance_uid = ? AND sha256 = ? AND state != ?",
                (inst.sop_instance_uid, inst.sha256, DISCARDED),
            )
            if same is not None:
                return Arrival(int(same["id"]), duplicate=True, conflict=False)
            other = self.db.one(
                "SELECT id FROM incoming WHERE sop_instance_uid = ? AND sha256 != ? AND state != ?",
                (inst.sop_instance_uid, inst.sha256, DISCARDED),
            )
            state = CONFLICT if other is not None else NEW
            cur = self.db.execute(
                "INSERT INTO incoming (sop_instance_uid, sop_class_uid, sha256, size, patient_id, patient_name, "
                "study_uid, series_uid, frame_uid, modality, refs, calling_ae, peer, received_at, state) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    inst.sop_instance_uid, inst.sop_class_uid, inst.sha256, inst.size, inst.patient_id,
                    inst.patient_name, inst.study_uid, inst.series_uid, inst.frame_uid, inst.modality,
                    json.dumps(list(inst.references)), inst.calling_ae, inst.peer, inst.received_at, state,
                ),
            )  # fmt: skip
            return Arrival(int(cur.lastrowid or 0), duplicate=False, conflict=state == CONFLICT)

    def pending(self) -> list[IncomingInstance]:
        """Every instance not imported or discarded (new and conflicting), oldest first."""
        rows = self.db.all("SELECT * FROM incoming WHERE state IN (?, ?) ORDER BY id", (NEW, CONFLICT))
        return [_instance(r) for r in rows]

    def mark(self, ids: list[int], state: str, course_id: str | None = None) -> None:
        with self.db.transaction():
            for i in ids:
                self.db.execute("UPDATE incoming SET state = ?, course_id = ? WHERE id = ?", (state, course_id, i))


# -- the journal: durable before the answer, filed afterwards ---------------------------------------------------

SEGMENT_BYTES = 256 << 20
# The filer waits for a pause in arrivals (its fsyncs would slow the journal's), unless this much waits in memory.
QUIET_S = 0.3
MAX_QUEUED_BYTES = 256 << 20
FILING_BATCH = 64  # entries filed in one transaction
_ALIGN = 4096
_FIELDS = tuple(f.name for f in dataclasses.fields(IncomingInstance))
# Entry format 2: magic, lengths of the record (JSON), of the file's prefix (its meta) and of its data set, CRC-32
# of record and prefix, CRC-32 of the data set (computed as it arrived); the content hash is the store's, later.
_MAGIC = b"RTJ2"
_ENTRY = struct.Struct(">4sIIQII")
# Entry format 1 (still recovered): magic, record length, file length, sha256 of the record; the record holds
# the file's sha256.
_MAGIC_V1 = b"RTXJ"
_ENTRY_V1 = struct.Struct(">4sIQ32s")


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _record(raw: bytes | memoryview) -> IncomingInstance:
    fields = json.loads(bytes(raw))
    return IncomingInstance(**{**fields, "references": tuple(fields["references"])})


def _entry_v2(buf: memoryview, pos: int) -> tuple[IncomingInstance, bytes, int] | None:
    _, hlen, plen, dlen, head_crc, data_crc = _ENTRY.unpack_from(buf, pos)
    start = pos + _ENTRY.size
    body, end = start + hlen + plen, start + hlen + plen + dlen
    if end > len(buf) or zlib.crc32(buf[start:body]) != head_crc or zlib.crc32(buf[body:end]) != data_crc:
        return None
    return _record(buf[start : start + hlen]), bytes(buf[start + hlen : end]), _aligned(end - pos)


def _entry_v1(buf: memoryview, pos: int) -> tuple[IncomingInstance, bytes, int] | None:
    _, hlen, dlen, head_sum = _ENTRY_V1.unpack_from(buf, pos)
    start = pos + _ENTRY_V1.size
    if start + hlen + dlen > len(buf) or hashlib.sha256(buf[start : start + hlen]).digest() != head_sum:
        return None
    inst = _record(buf[start : start + hlen])
    data = bytes(buf[start + hlen : start + hlen + dlen])
    if hashlib.sha256(data).hexdigest() != inst.sha256:
        return None
    return inst, data, _aligned(_ENTRY_V1.size + hlen + dlen)


def journal_entries(buf: bytes) -> Iterator[tuple[IncomingInstance, bytes]]:
    """The whole entries of a segment, in order (format 2 or 1), up to the first torn or damaged one."""
    view = memoryview(buf)
    pos = 0
    while pos + max(_ENTRY.size, _ENTRY_V1.size) <= len(view):
        magic = bytes(view[pos : pos + 4])
        if magic == _MAGIC:
            entry = _entry_v2(view, pos)
        elif magic == _MAGIC_V1:
            entry = _entry_v1(view, pos)
        else:
            return
        if entry is None:
            return
        inst, data, size = entry
        yield inst, data
        pos += size


class Journal:
    """Received files made durable in one step each, then filed into the store and the table in the background.

    Segments (``incoming/seg-NNNNNN``) are written full of zeros when made, so an entry later written into one
    changes no file metadata: one ``fdatasync`` makes it durable, where a new file would cost a write, an
    ``fsync``, a rename and an ``fsync`` of its folder. Entries go one after another (the lock), so only the last
    one can be torn by a crash, and a torn one was never confirmed. :meth:`recover` files what a crash left;
    a segment is removed once everything in it is filed.

    Group commit: entries written by parallel associations while an ``fdatasync`` runs are made durable together
    by the next one (each waits for a sync that began after its write), so N associations cost fewer than N
    syncs, and none answers success before its own entry is durable.
    """

    def __init__(self, folder: Path, repo: IncomingRepository, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.folder = folder
        self.repo = repo
        self.segment_bytes = segment_bytes
        self.conflicts: list[str] = []
        self._lock = threading.Lock()
        self._filed = threading.Condition()
        self._queue: list[tuple[Path, int, int, IncomingInstance]] = []  # segment, file offset, size, record
        self._fd = -1
        self._held = -1  # the folder's lock, while started
        self._number = 0
        self._spare: Path | None = None
        self._segment: Path | None = None
        self._offset = 0
        self._pending = 0
        self._queued_bytes = 0
        self._last_append = 0.0
        self._written = 0  # entries written (tickets), and how many of them a finished fdatasync covers
        self._synced = 0
        self._syncing = False
        self._sync = threading.Condition()
        self._stop = False
        self._filer: threading.Thread | None = None

    @property
    def position(self) -> int:
        """Where the next entry goes in the current segment."""
        return self._offset

    # -- writing -----------------------------------------------------------------------------------------

    def _make_segment(self) -> Path:
        """A new segment full of zeros, durable with its name."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._lock:
            self._number += 1
            path = self.folder / f"seg-{self._number:06d}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            zeros = bytes(1 << 20)
            for _ in range(self.segment_bytes >> 20):
                os.write(fd, zeros)
            os.fsync(fd)
            _fsync_dir(self.folder)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)
        return path

    def _switch(self) -> None:
        """Write into the spare segment (made in the background; now if there is none). Called under the lock."""
        path, self._spare = self._spare, None
        if path is None:
            self._lock.release()
            try:
                path = self._make_segment()
            finally:
                self._lock.acquire()
        fd = os.open(path, os.O_RDWR)
        if self._fd >= 0:
            os.fdatasync(self._fd)  # what was written there is durable before its descriptor goes
            os.close(self._fd)
        self._fd, self._segment, self._offset = fd, path, 0
        with self._filed:
            self._filed.notify_all()  # the filer makes the next spare

    def append(
        self,
        inst: IncomingInstance,
        data: bytes | memoryview,
        *,
        prefix: bytes = b"",
        data_crc: int | None = None,
    ) -> None:
        """Make a Part 10 file (``prefix`` then ``data``: written as they are, no copy joins them) and its
        record durable; it is filed (hashed into the store) afterwards. ``data_crc`` is ``data``'s CRC-32 when
        the caller computed it as the bytes arrived. Raises OSError when it cannot be (no room for a new
        segment, a failed sync)."""
        header = json.dumps({f: getattr(inst, f) for f in _FIELDS}).encode()  # asdict's deep copy costs more
        if data_crc is None:
            data_crc = zlib.crc32(data)
        head = _ENTRY.pack(_MAGIC, len(header), len(prefix), len(data), zlib.crc32(prefix, zlib.crc32(header)),
                           data_crc)  # fmt: skip
        written = len(head) + len(header) + len(prefix) + len(data)
        size = _aligned(written)
        if size > self.segment_bytes:
            raise OSError(errno.EFBIG, f"an instance of {len(data)} bytes is larger than a journal segment")
        with self._lock:
            if self._segment is None or self._offset + size > self.segment_bytes:
                self._switch()
            segment, offset = self._segment, self._offset
            if os.pwritev(self._fd, (head, header, prefix, data), offset) != written:
                raise OSError(errno.ENOSPC, "the journal entry was written only in part")
            self._offset += size
            self._written += 1
            ticket = self._written
        self._durable(ticket)
        if segment is None:
            raise OSError("no journal segment")
        with self._filed:
            self._queue.append((segment, offset + len(head) + len(header), len(prefix) + len(data), inst))
            self._pending += 1
            self._queued_bytes += len(prefix) + len(data)
            self._last_append = time.monotonic()
            self._filed.notify_all()

    def _durable(self, ticket: int) -> None:
        """Return once an ``fdatasync`` that began after entry ``ticket`` was written has finished: run one, or
        wait for the one running (it may not cover this entry: then run the next)."""
        with self._sync:
            while self._synced < ticket:
                if self._syncing:
                    self._sync.wait()
                    continue
                self._syncing = True
                try:
                    with self._lock:
                        covered, fd = self._written, os.dup(self._fd)  # a switch may close the segment's own fd
                    self._sync.release()
                    try:
                        os.fdatasync(fd)
                    finally:
                        os.close(fd)
                        self._sync.acquire()
                    self._synced = max(self._synced, covered)
                finally:
                    self._syncing = False
                    self._sync.notify_all()

    # -- filing ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Hold the journal (one receiver per workspace: OSError EBUSY while another holds it), file what an
        earlier receiver left, make the first segments, start the filer."""
        self._hold()
        try:
            self.recover()
            numbers = [int(p.name[4:]) for p in self.folder.glob("seg-*") if p.name[4:].isdigit()]
            self._number = max(numbers, default=0)
            self._spare = self._make_segment()
            with self._lock:
                self._switch()
            self._spare = self._make_segment()
        except BaseException:
            os.close(self._held)
            self._held = -1
            raise
        self._filer = threading.Thread(target=self._file_loop, name="incoming-filer", daemon=True)
        self._filer.start()

    def stop(self) -> None:
        """File everything appended, then stop."""
        self.flush()
        with self._filed:
            self._stop = True
            self._filed.notify_all()
        if self._filer is not None:
            self._filer.join()
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._retire(self._segment)
            self._retire(self._spare)
            self._segment = self._spare = None
        if self._held >= 0:
            os.close(self._held)  # releases the lock
            self._held = -1

    def _hold(self) -> None:
        """Lock the journal's folder for this receiver: another one (a second 'rtexport receive', a retrieve
        while 'serve' receives) would otherwise file and remove the segments the running one writes into."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            raise OSError(errno.EBUSY, "another receiver is running on this workspace") from e
        self._held = fd

    def flush(self, timeout: float = 60) -> bool:
        """Wait until everything appended is filed (True) or ``timeout`` passes (False)."""
        with self._filed:
            return self._filed.wait_for(lambda: self._pending == 0, timeout)

    def _quiet(self) -> bool:
        return time.monotonic() - self._last_append >= QUIET_S or self._queued_bytes > MAX_QUEUED_BYTES

    def _file_loop(self) -> None:
        while True:
            with self._lock:
                need_spare = self._spare is None and not self._stop
            if need_spare:
                spare = self._make_segment()
                with self._lock:
                    self._spare = spare
            with self._filed:
                self._filed.wait_for(lambda: self._queue or self._stop or self._spare is None)
                if not self._queue:
                    if self._stop:
                        return
                    continue
                while not self._stop and not self._quiet():
                    self._filed.wait(QUIET_S)
                batch, self._queue = self._queue[:FILING_BATCH], self._queue[FILING_BATCH:]
                self._queued_bytes -= sum(size for _, _, size, _ in batch)
            self._file_batch(batch)
            with self._filed:
                self._pending -= len(batch)
                self._filed.notify_all()
            for segment in {s for s, *_ in batch}:
                if segment != self._segment and not any(s == segment for s, *_ in self._queue):
                    self._retire(segment)

    def _file_batch(self, batch: list[tuple[Path, int, int, IncomingInstance]]) -> None:
        """File entries, each read back from its segment (the page cache: nothing waits in memory)."""
        handles: dict[Path, BinaryIO] = {}
        try:
            for segment, *_ in batch:
                if segment not in handles:
                    handles[segment] = segment.open("rb")
            self._file([(inst, os.pread(handles[segment].fileno(), size, offset)) for segment, offset, size, inst
                        in batch])  # fmt: skip
        finally:
            for f in handles.values():
                f.close()

    def _file(self, entries: list[tuple[IncomingInstance, bytes]]) -> None:
        for arrival, (inst, _) in zip(self.repo.file_many(entries), entries, strict=True):
            if arrival.conflict:
                self.conflicts.append(inst.sop_instance_uid)

    def _retire(self, segment: Path | None) -> None:
        if segment is not None:
            segment.unlink(missing_ok=True)

    def recover(self) -> int:
        """File the entries a stopped or crashed receiver left in its segments (format 2, and format 1 of
        earlier versions); how many. A torn or damaged entry (never confirmed: only the last one can be) ends
        its segment."""
        filed = 0
        for segment in sorted(self.folder.glob("seg-*")):
            entries = list(journal_entries(segment.read_bytes()))
            for start in range(0, len(entries), FILING_BATCH):
                self._file(entries[start : start + FILING_BATCH])
            filed += len(entries)
            segment.unlink()
        return filed
