"""The receiver's journal: each received file durable in one step, before its success answer; filed into the store
and the ``incoming`` table in the background (entry format: :mod:`rtexport.workspace.journal_format`)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from rtexport.errors import WriteError
from rtexport.workspace.incoming import IncomingInstance, IncomingRepository, fsync_dir
from rtexport.workspace.journal_format import (
    HEAD,
    STAGED_DATA_AT,
    EntryHead,
    aligned,
    crc32,
    journal_entries,
    placeholder,
    record_bytes,
)
from rtexport.workspace.journal_writeback import Pending, Writeback

LOGGER = logging.getLogger(__name__)

SEGMENT_BYTES = 256 << 20
# The filer waits for a pause in arrivals (its fsyncs would slow the journal's), unless this much waits filing.
QUIET_S = 0.3
MAX_QUEUED_BYTES = 256 << 20
FILING_BATCH = 64  # entries filed in one transaction
RETRY_S = 5.0  # after filing (or making a spare segment) failed, e.g. on a full disk: the wait before trying again
STAGE_EXPECT = 1 << 20  # the data set size a new staging place is made for (it grows while it is the last one)
STAGE_SLACK = 64 << 10  # room beyond the last data set's size: the next one may be a little larger


@dataclass
class _Place:
    """Space an association holds in a segment (a placeholder head at ``offset``, ``span`` bytes)."""

    segment: Path
    fd: int  # its own descriptor: the journal may switch segments meanwhile
    offset: int
    span: int


@dataclass
class Staging:
    """One association's staging place: the data set it is receiving goes into the journal fragment by fragment
    as it arrives (:meth:`write`), so confirming it costs the head and a sync of what is still unwritten."""

    journal: Journal
    place: _Place | None = None
    position: int = 0  # data set bytes seen of the message being received
    whole: bool = True  # every one of them written at its place
    expect: int = STAGE_EXPECT
    pending: Pending = field(default_factory=Pending)  # fragments the writeback thread has yet to write

    def write(self, fragment: memoryview) -> None:
        """Stage a fragment (a view that must stay as it is until the message is kept or :meth:`reset`)."""
        if self.whole:
            try:
                self.whole = self.journal.stage(self, fragment)
            except OSError:
                self.whole = False  # the entry is then written whole when it is kept (or refused then)
        self.position += len(fragment)

    def drain(self) -> None:
        """Wait until the fragments staged are written (one that could not be: the entry is written whole)."""
        if not self.journal.writeback.drain(self.pending):
            self.whole = False

    def reset(self) -> None:
        """The next message starts (at the same place unless the last one was kept there)."""
        self.drain()
        self.position, self.whole = 0, True

    def close(self) -> None:
        self.drain()
        if self.place is not None:
            self.journal.release(self.place)
            self.place = None


class Journal:
    """Received files made durable in one step each, then filed into the store and the table in the background.

    Segments (``incoming/seg-NNNNNN``) are written full of zeros when made, so an entry later written into one
    changes no file metadata: one ``fdatasync`` makes it durable, where a new file would cost a write, an
    ``fsync``, a rename and an ``fsync`` of its folder. Space is taken one entry (or staging place) after
    another (the lock), each with its head; :meth:`recover` files what a crash left, skipping placeholders and
    damaged entries; a segment is removed once everything in it is filed.

    Group commit: entries written by parallel associations while an ``fdatasync`` runs are made durable together
    by the next one (each waits for a sync that began after its write), so N associations cost fewer than N
    syncs, and none answers success before its own entry is durable.
    """

    def __init__(
        self, folder: Path, repo: IncomingRepository, segment_bytes: int = SEGMENT_BYTES, retry_s: float = RETRY_S
    ) -> None:
        self.folder = folder
        self.repo = repo
        self.segment_bytes = segment_bytes
        self.retry_s = retry_s
        self.failing = False  # the last filing failed (entries wait in the journal for the next try)
        self.conflicts: list[str] = []
        self._lock = threading.Lock()
        self._filed = threading.Condition()
        # segment, prefix offset, prefix length, data offset, data length, record
        self._queue: list[tuple[Path, int, int, int, int, IncomingInstance]] = []
        self._fd = -1
        self._held = -1  # the folder's lock, while started
        self._number = 0
        self._spare: Path | None = None
        self._segment: Path | None = None
        self._offset = 0
        self._places: dict[Path, int] = {}  # staging places held, per segment
        self._pending = 0
        self._queued_bytes = 0
        self._last_append = 0.0
        self._written = 0  # entries written (tickets), and how many of them a finished fdatasync covers
        self._synced = 0
        self._syncing = False
        self._sync = threading.Condition()
        self._stop = False
        self._filer: threading.Thread | None = None
        self.writeback = Writeback()  # started with the journal: the receiving threads only queue their fragments

    @property
    def position(self) -> int:
        """Where the next entry goes in the current segment."""
        return self._offset

    # -- space -------------------------------------------------------------------------------------------

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
            fsync_dir(self.folder)
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

    def _take(self, span: int) -> tuple[Path, int]:
        """``span`` bytes of the current segment (switching when they do not fit). Called under the lock."""
        if span > self.segment_bytes:
            raise OSError(errno.EFBIG, f"an entry of {span} bytes is larger than a journal segment")
        if self._segment is None or self._offset + span > self.segment_bytes:
            self._switch()
        if self._segment is None:
            raise OSError("no journal segment")
        offset, self._offset = self._offset, self._offset + span
        return self._segment, offset

    def staging(self) -> Staging:
        """A staging place for one association (:meth:`Staging.close` when it ends)."""
        return Staging(self)

    def stage(self, staging: Staging, fragment: memoryview) -> bool:
        """Have a data set fragment written at the staging place and its writeback started (by the writeback
        thread); False when it does not fit there (the place is not the last one and is full)."""
        need = STAGED_DATA_AT + staging.position + len(fragment)
        place = staging.place
        if place is None:
            with self._lock:
                segment, offset = self._take(aligned(max(need, STAGED_DATA_AT + staging.expect + STAGE_SLACK)))
                place = _Place(segment, os.dup(self._fd), offset, self._offset - offset)
                os.pwrite(place.fd, placeholder(place.span), offset)  # recovery steps over it until it is an entry
                self._places[segment] = self._places.get(segment, 0) + 1
            staging.place = place
        if need > place.span:
            with self._lock:  # the last place in the segment grows; any other is full
                if self._segment != place.segment or self._offset != place.offset + place.span:
                    return False
                span = min(aligned(need) + STAGE_EXPECT, self.segment_bytes - place.offset)
                if span < need:
                    return False
                os.pwrite(place.fd, placeholder(span), place.offset)
                place.span, self._offset = span, place.offset + span
        self.writeback.write(staging.pending, place.fd, place.offset + STAGED_DATA_AT + staging.position, fragment)
        return True

    def release(self, place: _Place) -> None:
        """An association's staging place is no longer needed (its placeholder stays: recovery skips it)."""
        with self._lock:
            os.close(place.fd)
            self._places[place.segment] -= 1
            if not self._places[place.segment]:
                del self._places[place.segment]
        self._retire_if_done(place.segment)

    # -- writing -----------------------------------------------------------------------------------------

    def append(
        self,
        inst: IncomingInstance,
        data: bytes | memoryview,
        *,
        prefix: bytes = b"",
        data_crc: int | None = None,
        staging: Staging | None = None,
    ) -> None:
        """Make a Part 10 file (``prefix`` then ``data``) and its record durable; it is filed (hashed into the
        store) afterwards. ``data_crc`` is ``data``'s CRC-32 when the caller computed it as the bytes arrived;
        with ``staging`` whose place holds all of ``data`` already, only the head is written. Raises OSError
        when it cannot be (no room for a new segment, a failed sync)."""
        record = record_bytes(inst)
        crc = crc32(data) if data_crc is None else data_crc
        if staging is not None:
            staging.drain()
        place = staging.place if staging is not None else None
        fits = HEAD.size + len(record) + len(prefix) <= STAGED_DATA_AT
        if staging is not None and place is not None and staging.whole and staging.position == len(data) and fits:
            with self._lock:
                span = place.span
                if self._segment == place.segment and self._offset == place.offset + place.span:
                    span = aligned(STAGED_DATA_AT + len(data))  # the last place: the rest is the next entry's
                    self._offset = place.offset + span
                head = EntryHead(span, STAGED_DATA_AT, record, prefix, len(data), crc)
                written = os.pwrite(place.fd, head.encode(), place.offset)
                segment, offset, current = place.segment, place.offset, place.segment == self._segment
                self._written += 1
                ticket = self._written
            if written != HEAD.size + len(record) + len(prefix):
                raise OSError(errno.ENOSPC, "the journal entry's head was written only in part")
            if current:
                self._durable(ticket)
            else:
                os.fdatasync(place.fd)  # a segment switched from since: its own sync
            staging.place, staging.expect = None, len(data)
            self._queued(segment, offset, head, inst)
            self.release(place)
            return
        head = EntryHead(aligned(HEAD.size + len(record) + len(prefix) + len(data)),
                         HEAD.size + len(record) + len(prefix), record, prefix, len(data), crc)  # fmt: skip
        with self._lock:
            segment, offset = self._take(head.span)
            if os.pwritev(self._fd, (head.encode(), data), offset) != head.data_at + len(data):
                raise OSError(errno.ENOSPC, "the journal entry was written only in part")
            self._written += 1
            ticket = self._written
        self._durable(ticket)
        self._queued(segment, offset, head, inst)

    def _queued(self, segment: Path, offset: int, head: EntryHead, inst: IncomingInstance) -> None:
        with self._filed:
            self._queue.append((segment, offset + head.prefix_at, len(head.prefix), offset + head.data_at,
                                head.data_len, inst))  # fmt: skip
            self._pending += 1
            self._queued_bytes += head.data_len
            self._last_append = time.monotonic()
            # The filer is woken only when it has something new to look at: a wake-up per entry would take the
            # interpreter from the receiving thread while the peer waits (it looks again every QUIET_S anyway).
            if len(self._queue) == 1 or self._queued_bytes > MAX_QUEUED_BYTES:
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
        except BaseException as e:
            os.close(self._held)
            self._held = -1
            if isinstance(e, OSError):  # a full or read-only disk: not the port's fault
                need = 2 * self.segment_bytes >> 20
                raise WriteError(
                    f"the receiver's journal in {self.folder} cannot be made ready: {e.strerror or e} (it keeps two "
                    f"segments of {self.segment_bytes >> 20} MB, {need} MB in all)"
                ) from e
            raise
        self.writeback.start()
        self._filer = threading.Thread(target=self._file_loop, name="incoming-filer", daemon=True)
        self._filer.start()

    def stop(self) -> None:
        """File everything appended, then stop (what cannot be filed now stays in the journal for the next start)."""
        self.flush(until_failure=True)
        with self._filed:
            self._stop = True
            self._filed.notify_all()
        if self._filer is not None:
            self._filer.join()
        self.writeback.stop()
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            for segment in (self._segment, self._spare):
                unfiled = any(q[0] == segment for q in self._queue)  # filing failed: recovery files them
                if segment is not None and segment not in self._places and not unfiled:
                    segment.unlink(missing_ok=True)
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

    def flush(self, timeout: float = 60, *, until_failure: bool = False) -> bool:
        """Wait until everything appended is filed (True) or ``timeout`` passes (False); with ``until_failure``
        a failed filing (a full disk) ends the wait too (False)."""
        with self._filed:
            self._filed.wait_for(lambda: self._pending == 0 or (until_failure and self.failing), timeout)
            return self._pending == 0

    def _quiet(self) -> bool:
        return time.monotonic() - self._last_append >= QUIET_S or self._queued_bytes > MAX_QUEUED_BYTES

    def _make_spare(self) -> None:
        """Make the next segment ahead if there is none (a failure is logged: the writers then make their own)."""
        with self._lock:
            if self._spare is not None or self._stop:
                return
        try:
            spare = self._make_segment()
        except OSError as e:
            LOGGER.warning("incoming journal: no spare segment (%s); tried again in %g s", e, self.retry_s)
            self.failing = True
            return
        with self._lock:
            self._spare = spare

    def _file_loop(self) -> None:
        """File entries in batches after a pause in arrivals. A batch that cannot be filed (full disk, a database
        error) goes back to the head of the queue, its entries kept in the journal, and is tried again
        ``retry_s`` later: the filer never dies and never drops an entry."""
        while True:
            self._make_spare()
            with self._filed:
                if self.failing:
                    self._filed.wait_for(lambda: self._stop, self.retry_s)
                else:
                    self._filed.wait_for(lambda: self._queue or self._stop or self._spare is None)
                if not self._queue:
                    if self._stop:
                        return
                    self.failing = self.failing and self._spare is None
                    continue
                while not self._stop and not self._quiet():
                    self._filed.wait(QUIET_S)
                batch, self._queue = self._queue[:FILING_BATCH], self._queue[FILING_BATCH:]
                self._queued_bytes -= sum(q[4] for q in batch)
            try:
                self._file_batch(batch)
            except Exception as e:  # whatever the store or the database raise: the entries must not be lost
                LOGGER.warning("incoming journal: %d received instance(s) not filed yet (%s); they stay in the "
                               "journal and are tried again in %g s", len(batch), e, self.retry_s)  # fmt: skip
                with self._filed:
                    self._queue[:0] = batch
                    self._queued_bytes += sum(q[4] for q in batch)
                    self.failing = True
                    self._filed.notify_all()
                    if self._stop:
                        return  # the next receiver's recovery files them
                continue
            with self._filed:
                self.failing = False
                self._pending -= len(batch)
                self._filed.notify_all()
            for segment in {q[0] for q in batch}:
                self._retire_if_done(segment)

    def _file_batch(self, batch: list[tuple[Path, int, int, int, int, IncomingInstance]]) -> None:
        """File entries, each read back from its segment (the page cache: nothing waits in memory)."""
        handles: dict[Path, BinaryIO] = {}
        try:
            entries = []
            for segment, prefix_at, prefix_len, data_at, data_len, inst in batch:
                if segment not in handles:
                    handles[segment] = segment.open("rb")
                fd = handles[segment].fileno()
                entries.append((inst, os.pread(fd, prefix_len, prefix_at) + os.pread(fd, data_len, data_at)))
            self._file(entries)
        finally:
            for f in handles.values():
                f.close()

    def _file(self, entries: list[tuple[IncomingInstance, bytes]]) -> None:
        for arrival, (inst, _) in zip(self.repo.file_many(entries), entries, strict=True):
            if arrival.conflict:
                self.conflicts.append(inst.sop_instance_uid)

    def _retire_if_done(self, segment: Path) -> None:
        """Remove a segment no longer written into whose entries are all filed."""
        with self._lock, self._filed:
            if segment in (self._segment, self._spare) or segment in self._places:
                return
            if any(q[0] == segment for q in self._queue):
                return
            with contextlib.suppress(FileNotFoundError):
                segment.unlink()

    def recover(self) -> int:
        """File the entries a stopped or crashed receiver left in its segments (format 2, and format 1 of
        earlier versions); how many. Placeholders and damaged entries are skipped (a damaged one is logged);
        a torn head ends its segment (only the last write can be torn, and it was never confirmed)."""
        filed = 0
        for segment in sorted(self.folder.glob("seg-*")):
            entries = list(journal_entries(segment.read_bytes(), segment.name))
            for start in range(0, len(entries), FILING_BATCH):
                self._file(entries[start : start + FILING_BATCH])
            filed += len(entries)
            segment.unlink()
        return filed
