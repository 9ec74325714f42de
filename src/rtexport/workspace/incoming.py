"""Instances received over the network, before they are imported: one row each in ``incoming``, the file in the
blob store (content-addressed, verified when read).

The same SOP Instance UID with the same bytes is one row (a resend is idempotent); with other bytes it is a
second row marked ``conflict``: nothing is overwritten, and the set it belongs to says so. Rows move from
``new`` to ``imported`` (with the course) or ``discarded``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

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


def fsync_dir(path: Path) -> None:
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
            fsync_dir(folder)
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
