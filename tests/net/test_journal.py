"""The receiver's journal: under parallel associations one fdatasync makes the entries of several associations
durable together (group commit), and no append returns before a sync that covers its own entry; data sets
written as they arrive count only once kept; on recovery a damaged entry is detected (CRC-32) and segments of the
earlier entry format are still filed."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import struct
import threading
import time
import zlib
from pathlib import Path

import pytest

from rtexport.errors import WriteError
from rtexport.export.objects import ExportObject
from rtexport.workspace import Workspace, journal_format, journal_writeback
from rtexport.workspace import journal as journal_module
from rtexport.workspace.incoming import Arrival, IncomingInstance, IncomingRepository
from rtexport.workspace.journal import Journal, Staging

SEGMENT = 8 << 20


def _instance(obj: ExportObject, data: bytes) -> IncomingInstance:
    return IncomingInstance(0, obj.sop_instance_uid, obj.sop_class_uid, hashlib.sha256(data).hexdigest(), len(data),
                            "P", "N", "S", "SE", "F", "CT", (), "AE", "h", "now", "", None)  # fmt: skip


def test_parallel_appends_share_syncs_and_none_returns_before_its_entry_is_durable(
    workspace: Workspace, objects: list[ExportObject], monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(workspace.home / "incoming-test", IncomingRepository(workspace.db, workspace.blobs), SEGMENT)
    uids = [o.sop_instance_uid.encode() for o in objects]
    durable: set[bytes] = set()
    syncs: list[int] = []
    lock = threading.Lock()
    real_sync = os.fdatasync

    def slow_disk(fd: int) -> None:
        """What a sync makes durable is what was written before it began; this disk's flush takes 20 ms."""
        written = os.pread(fd, SEGMENT, 0)
        time.sleep(0.02)
        real_sync(fd)
        with lock:
            syncs.append(sum(u in written for u in uids))  # entries in the segment as it began
            durable.update(u for u in uids if u in written)

    monkeypatch.setattr(os, "fdatasync", slow_disk)
    journal.start()
    early: list[str] = []

    def associate(share: list[ExportObject]) -> None:
        for obj in share:
            data = obj.read_bytes()
            journal.append(_instance(obj, data), data)
            with lock:
                if obj.sop_instance_uid.encode() not in durable:
                    early.append(obj.sop_instance_uid)

    threads = [threading.Thread(target=associate, args=(objects[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    journal.stop()

    assert early == []  # every append returned after its own entry was synced
    assert durable == set(uids)
    assert len(syncs) < len(objects) / 2, f"{len(syncs)} syncs for {len(objects)} entries from 8 associations"
    filed = IncomingRepository(workspace.db, workspace.blobs).pending()
    assert sorted(i.sop_instance_uid for i in filed) == sorted(o.sop_instance_uid for o in objects)


def _record(obj: ExportObject, data: bytes) -> IncomingInstance:
    return IncomingInstance(0, obj.sop_instance_uid, obj.sop_class_uid, "", len(data), "P", "N", "S", "SE", "F",
                            "CT", (), "AE", "h", "now", "", None)  # fmt: skip


def test_a_damaged_entry_is_detected_on_recovery_and_nothing_of_it_is_filed(
    workspace: Workspace, objects: list[ExportObject], caplog: pytest.LogCaptureFixture
) -> None:
    """A byte of a durable entry's data changed on disk: recovery files the entries around it, each whole under
    its own content hash, not the damaged one, and says so."""
    folder = workspace.home / "incoming-test"
    journal = Journal(folder, IncomingRepository(workspace.db, workspace.blobs), SEGMENT)
    starts = []
    for obj in objects[:3]:
        starts.append(journal.position)
        data = obj.read_bytes()
        journal.append(_record(obj, data[:300]), data[300:], prefix=data[:300])
    (segment,) = folder.glob("seg-*")
    with segment.open("r+b") as f:  # one byte in the middle of the second entry: its pixel data
        f.seek((starts[1] + starts[2]) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))

    again = Journal(folder, IncomingRepository(workspace.db, workspace.blobs))
    assert again.recover() == 2
    filed = IncomingRepository(workspace.db, workspace.blobs).pending()
    assert [i.sop_instance_uid for i in filed] == [objects[0].sop_instance_uid, objects[2].sop_instance_uid]
    for inst, obj in zip(filed, (objects[0], objects[2]), strict=True):
        assert workspace.blobs.verified(inst.sha256) == obj.read_bytes()  # prefix and data, whole
    assert f"the entry at byte {starts[1]} is damaged" in caplog.text


def _fragments(data: bytes, size: int = 4000) -> list[memoryview]:
    return [memoryview(data)[i : i + size] for i in range(0, len(data), size)]


def test_data_sets_written_as_they_arrive_by_parallel_associations_are_kept_whole_and_only_when_kept(
    workspace: Workspace, objects: list[ExportObject], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three associations stage their data sets fragment by fragment, interleaved; one keeps two instances, one
    keeps one and then receives half of another (the process dies), one grows beyond its place. Recovery files
    exactly the kept instances, byte for byte."""
    folder = workspace.home / "incoming-test"
    journal = Journal(folder, IncomingRepository(workspace.db, workspace.blobs), SEGMENT)
    a, b, c = journal.staging(), journal.staging(), journal.staging()
    monkeypatch.setattr(journal_module, "STAGE_SLACK", 0)
    c.expect = 100  # its place is too small for what comes: it grows while it is the last, else goes whole
    kept = []

    def receive(staging: Staging, obj: ExportObject, keep: bool = True, upto: int | None = None) -> None:
        data = obj.read_bytes()
        prefix, data_set = data[:300], data[300:]
        for fragment in _fragments(data_set)[:upto]:
            staging.write(fragment)
        if keep:
            journal.append(_record(obj, data), data_set, prefix=prefix, staging=staging)
            kept.append(obj)
        staging.reset()

    first = _fragments(objects[2].read_bytes()[300:])[0]
    c.write(first)  # c's small place, then a's after it: c's fills up and it is not the last
    receive(a, objects[0])
    c.position = 0
    receive(c, objects[2])  # written whole when kept
    receive(b, objects[1], keep=False)  # refused when whole: its place is used again
    receive(b, objects[3])
    receive(a, objects[4])
    c.expect = 100
    receive(c, objects[5])  # the last place: it grows
    receive(b, objects[6], keep=False, upto=2)  # the crash: half of an instance, never kept
    a.close()

    again = Journal(folder, IncomingRepository(workspace.db, workspace.blobs))
    assert again.recover() == len(kept)
    filed = {i.sop_instance_uid: i for i in IncomingRepository(workspace.db, workspace.blobs).pending()}
    assert sorted(filed) == sorted(o.sop_instance_uid for o in kept)  # in the order of their places
    for obj in kept:
        assert workspace.blobs.verified(filed[obj.sop_instance_uid].sha256) == obj.read_bytes()


def _entry_format_1(obj: ExportObject) -> bytes:
    """An entry as receivers before format 2 wrote it: record and file, the file's sha256 in the record, the
    record's sha256 in the head, padded to 4 KiB."""
    data = obj.read_bytes()
    record = {**dataclasses.asdict(_instance(obj, data)), "references": []}
    header = json.dumps(record).encode()
    entry = struct.pack(">4sIQ32s", b"RTXJ", len(header), len(data), hashlib.sha256(header).digest()) + header + data
    return entry + bytes(-len(entry) % 4096)


def test_segments_of_the_earlier_entry_format_are_still_recovered(
    workspace: Workspace, objects: list[ExportObject]
) -> None:
    folder = workspace.home / "incoming-test"
    folder.mkdir()
    segment = b"".join(_entry_format_1(o) for o in objects[:3])
    (folder / "seg-000001").write_bytes(segment + bytes(1 << 20))
    damaged = bytearray(_entry_format_1(objects[3]))
    damaged[len(damaged) // 2] ^= 0x01
    (folder / "seg-000002").write_bytes(_entry_format_1(objects[4]) + damaged + _entry_format_1(objects[5]))

    journal = Journal(folder, IncomingRepository(workspace.db, workspace.blobs))
    assert journal.recover() == 4
    filed = IncomingRepository(workspace.db, workspace.blobs).pending()
    assert [i.sop_instance_uid for i in filed] == [o.sop_instance_uid for o in (*objects[:3], objects[4])]
    for inst, obj in zip(filed, (*objects[:3], objects[4]), strict=True):
        assert workspace.blobs.verified(inst.sha256) == obj.read_bytes()
    assert list(folder.glob("seg-*")) == []


class _FillingDisk(IncomingRepository):
    """The store's disk is full for the first ``full`` filings (the blob store cannot write)."""

    def __init__(self, workspace: Workspace, full: int) -> None:
        super().__init__(workspace.db, workspace.blobs)
        self.full = full

    def file_many(self, entries: list[tuple[IncomingInstance, bytes]]) -> list[Arrival]:
        if self.full > 0:
            self.full -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().file_many(entries)


def test_a_full_disk_while_filing_keeps_the_entries_and_files_them_once_there_is_room(
    workspace: Workspace, objects: list[ExportObject], caplog: pytest.LogCaptureFixture
) -> None:
    repo = _FillingDisk(workspace, full=2)
    journal = Journal(workspace.home / "incoming-test", repo, SEGMENT, retry_s=0.05)
    journal.start()
    for obj in objects[:4]:
        data = obj.read_bytes()
        journal.append(_record(obj, data), data)

    assert journal.flush(timeout=30)  # the third try finds room
    assert journal._filer is not None and journal._filer.is_alive()
    journal.stop()
    filed = IncomingRepository(workspace.db, workspace.blobs).pending()
    assert sorted(i.sop_instance_uid for i in filed) == sorted(o.sop_instance_uid for o in objects[:4])
    for inst in filed:
        workspace.blobs.verified(inst.sha256)
    assert "not filed yet (" in caplog.text and "No space left on device" in caplog.text


def test_entries_a_full_disk_kept_from_filing_are_filed_by_the_next_receiver(
    workspace: Workspace, objects: list[ExportObject]
) -> None:
    folder = workspace.home / "incoming-test"
    journal = Journal(folder, _FillingDisk(workspace, full=1 << 30), SEGMENT, retry_s=0.05)
    journal.start()
    for obj in objects[:3]:
        data = obj.read_bytes()
        journal.append(_record(obj, data), data)

    assert not journal.flush(timeout=30, until_failure=True)
    journal.stop()  # the disk is still full: the entries stay in their segment
    assert IncomingRepository(workspace.db, workspace.blobs).pending() == []

    again = Journal(folder, IncomingRepository(workspace.db, workspace.blobs), SEGMENT)
    assert again.recover() == 3
    filed = IncomingRepository(workspace.db, workspace.blobs).pending()
    assert sorted(i.sop_instance_uid for i in filed) == sorted(o.sop_instance_uid for o in objects[:3])


def test_a_journal_a_full_disk_cannot_hold_is_refused_as_such_and_frees_the_workspace(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receiver that cannot make its journal says so, naming the folder and the space it needs (not a busy
    port), and holds nothing: once there is room, the next one starts."""
    folder = workspace.home / "incoming-test"
    repo = IncomingRepository(workspace.db, workspace.blobs)
    real = Journal._make_segment

    def full(self: Journal) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Journal, "_make_segment", full)
    with pytest.raises(WriteError, match=r"journal in .*incoming-test cannot be made ready: No space left on device "
                                         r"\(it keeps two segments of 8 MB, 16 MB in all\)"):  # fmt: skip
        Journal(folder, repo, SEGMENT).start()
    monkeypatch.setattr(Journal, "_make_segment", real)
    again = Journal(folder, repo, SEGMENT)
    again.start()
    again.stop()


def test_entries_carry_zlibs_crc32_whichever_implementation_computed_it(
    workspace: Workspace, objects: list[ExportObject]
) -> None:
    """The data set's CRC-32 in an entry's head is zlib's (format 2), also when a faster library computed it."""
    folder = workspace.home / "incoming-test"
    journal = Journal(folder, IncomingRepository(workspace.db, workspace.blobs), SEGMENT)
    data = objects[0].read_bytes()
    journal.append(_record(objects[0], data), data)
    (segment,) = folder.glob("seg-*")
    head = journal_format.HEAD.unpack_from(segment.read_bytes(), 0)
    assert head[0] == journal_format.MAGIC and head[-1] == zlib.crc32(data)


def test_the_writeback_thread_writes_every_fragment_starts_its_writeback_and_reports_a_failed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[int, int, int]] = []
    monkeypatch.setattr(journal_writeback, "start_writeback", lambda fd, offset, n: started.append((fd, offset, n)))
    segment = tmp_path / "seg-000001"
    segment.write_bytes(bytes(1 << 16))
    data = memoryview(os.urandom(1 << 16))
    fd, read_only = os.open(segment, os.O_RDWR), os.open(segment, os.O_RDONLY)
    writeback, one, other = journal_writeback.Writeback(), journal_writeback.Pending(), journal_writeback.Pending()
    writeback.start()
    for offset in range(0, 1 << 16, 4096):
        writeback.write(one, fd, offset, data[offset : offset + 4096])
    writeback.write(other, read_only, 0, data[:4096])  # cannot be written

    assert writeback.drain(one) and segment.read_bytes() == data
    assert not writeback.drain(other)
    writeback.stop()
    os.close(fd)
    os.close(read_only)
    covered = sorted(b for f, offset, n in started if f == fd for b in range(offset, offset + n, 4096))
    assert covered == list(range(0, 1 << 16, 4096))  # each range started once (adjacent ones together)
