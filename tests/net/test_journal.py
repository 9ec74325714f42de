"""The receiver's journal under parallel associations: one fdatasync makes the entries of several associations
durable together (group commit), and no append returns before a sync that covers its own entry."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest

from rtexport.export.objects import ExportObject
from rtexport.workspace import Workspace
from rtexport.workspace.incoming import IncomingInstance, IncomingRepository, Journal

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
