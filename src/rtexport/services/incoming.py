"""Courses pushed to us over DICOM: run the receiver, list what arrived as sets ready for import, import a set
through the same import service as ``rtexport import``, or discard it.

A set is an RT Structure Set with the CT series on its frame of reference that holds the images it references
(a CT series without a structure set is listed as waiting for one). It is complete when every image the
structure set references has arrived, and it has no instance that arrived twice with other bytes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtexport.errors import ConfigError, CourseImportError, InputError
from rtexport.model.people import Actor
from rtexport.net.dataset import file_meta
from rtexport.net.outcome import server_context
from rtexport.net.receiver import CT_IMAGE_STORAGE, RT_STRUCTURE_SET_STORAGE, Received, ReceiverPolicy, StorageSCP
from rtexport.services.courses import import_course
from rtexport.workspace import Workspace
from rtexport.workspace.db import Database
from rtexport.workspace.importer import ImportResult
from rtexport.workspace.incoming import CONFLICT, DISCARDED, IMPORTED, IncomingInstance, IncomingRepository
from rtexport.workspace.journal import Journal, Staging

LOGGER = logging.getLogger(__name__)


class WorkspaceSink:
    """The receiver's sink: each instance as a Part 10 file made durable in the workspace's incoming journal
    (one fdatasync; its data set staged there as it arrived) before the peer hears success, then filed into the
    blob store (which hashes it) and the ``incoming`` table by a background thread, on a database connection of
    its own."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._db: Database | None = None
        self.journal: Journal | None = None

    def open(self) -> None:
        self._db = Database(self.ws.db.path)
        self.journal = Journal(self.ws.home / "incoming", IncomingRepository(self._db, self.ws.blobs))
        self.journal.start()  # files what an earlier receiver left

    def stage(self) -> Staging | None:
        return self.journal.staging() if self.journal is not None else None

    def keep(self, received: Received) -> None:
        if self.journal is None:
            raise OSError("the receiver's journal is not open")
        h = received.header
        meta = file_meta(h, received.transfer_syntax, received.calling_ae)
        inst = IncomingInstance(
            0, h.sop_instance_uid, h.sop_class_uid, "", len(meta) + len(received.data_set), h.patient_id,
            h.patient_name, h.study_uid, h.series_uid, h.frame_of_reference_uid, h.modality, h.references,
            received.calling_ae, received.peer, self.ws.now(), "", None,
        )  # fmt: skip
        # The content hash is the store's, computed once when the entry is filed; the journal's CRC-32 detects
        # a torn entry.
        staging = received.stage if isinstance(received.stage, Staging) else None
        self.journal.append(inst, received.data_set, prefix=meta, data_crc=received.data_crc, staging=staging)

    def flush(self, timeout: float) -> bool:
        return self.journal.flush(timeout) if self.journal is not None else True

    def close(self) -> None:
        if self.journal is not None:
            self.journal.stop()
            self.journal = None
        if self._db is not None:
            self._db.close()
            self._db = None


def receiver(ws: Workspace, *, port: int | None = None) -> StorageSCP:
    """The receiver configured in ``[dicom.receiver]``, not started (``with`` starts and stops it); ``port``
    overrides the configured one (0: any free port). Raises ConfigError, SendError (TLS files)."""
    rs = ws.site().dicom.receiver
    if rs is None:
        raise ConfigError("the site configuration has no [dicom.receiver]: give at least its ae_title and port")
    policy = ReceiverPolicy(rs.ae_title, tuple(rs.allowed_ae_titles), tuple(rs.allowed_hosts))
    ctx = server_context(rs.tls, f"receiver {rs.ae_title}") if rs.tls is not None else None
    return StorageSCP(policy, rs.bind, rs.port if port is None else port, WorkspaceSink(ws), ssl_context=ctx,
                      max_associations=rs.max_associations)  # fmt: skip


@dataclass(frozen=True)
class Listening:
    """Where a started receiver listens, for the operator and for peers to be configured with."""

    ae_title: str
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        return f"receiving as {self.ae_title} on {self.host} port {self.port}{' (TLS)' if self.tls else ''}"


def _listening(scp: StorageSCP) -> Listening:
    return Listening(scp.policy.ae_title, scp.address[0], scp.port, scp.ssl_context is not None)


def run_receiver(
    ws: Workspace,
    stop: threading.Event,
    on_ready: Callable[[Listening], None] | None = None,
    *,
    port: int | None = None,
) -> None:
    """Receive until ``stop`` is set (blocking): ``rtexport receive``. ``port`` overrides the configured one.
    Raises ConfigError, SendError (TLS files), InputError (the port cannot be had) and WriteError (no room for
    the journal)."""
    with _started(receiver(ws, port=port)) as scp:
        if on_ready is not None:
            on_ready(_listening(scp))
        stop.wait()


@contextlib.contextmanager
def _started(scp: StorageSCP) -> Iterator[StorageSCP]:
    try:
        scp.__enter__()
    except OSError as e:
        host, port = scp.address
        if e.errno == errno.EBUSY:
            raise InputError(f"{e.strerror} ('rtexport receive' or 'rtexport serve'); stop it first") from e
        raise InputError(
            f"the receiver cannot listen on {host} port {port}: {e.strerror or e}; is dicom.receiver.port taken "
            "by another program?"
        ) from e
    try:
        yield scp
    finally:
        scp.__exit__(None, None, None)


@contextlib.contextmanager
def background_receiver(ws: Workspace) -> Iterator[Listening | None]:
    """The configured receiver running for the block (``serve``), or None when ``[dicom.receiver]`` is absent."""
    if ws.site().dicom.receiver is None:
        yield None
        return
    with _started(receiver(ws)) as scp:
        yield _listening(scp)


@dataclass(frozen=True)
class IncomingSet:
    """What arrived for one course: ``structure_set`` (None: a CT series waiting for one), ``images`` of its
    series, ``missing`` referenced images not (yet) received, ``conflicts`` UIDs that arrived with other bytes."""

    id: str
    patient_id: str
    patient_name: str
    study_uid: str
    series_uid: str
    frame_uid: str
    structure_set: IncomingInstance | None
    images: tuple[IncomingInstance, ...]
    missing: tuple[str, ...]
    conflicts: tuple[str, ...]
    received_at: str

    @property
    def complete(self) -> bool:
        return self.structure_set is not None and bool(self.images) and not self.missing and not self.conflicts

    @property
    def state(self) -> str:
        if self.conflicts:
            return f"conflict: {len(self.conflicts)} instance(s) arrived again with other bytes"
        if self.structure_set is None:
            return "waiting for a structure set"
        if not self.images:
            return "waiting for the images"
        if self.missing:
            return f"waiting for {len(self.missing)} referenced image(s)"
        return "complete"


def _set_id(key: str) -> str:
    return "in-" + hashlib.sha256(key.encode()).hexdigest()[:8]


def _sets(pending: list[IncomingInstance]) -> list[IncomingSet]:
    conflicting = {i.sop_instance_uid for i in pending if i.state == CONFLICT}
    fresh = [i for i in pending if i.state != CONFLICT]
    series: dict[str, list[IncomingInstance]] = {}
    for i in fresh:
        if i.sop_class_uid == CT_IMAGE_STORAGE:
            series.setdefault(i.series_uid, []).append(i)
    out, claimed = [], set()
    for rs in (i for i in fresh if i.sop_class_uid == RT_STRUCTURE_SET_STORAGE):
        refs = set(rs.references)
        on_frame = [s for s in series.values() if s[0].frame_uid == rs.frame_uid]
        chosen = max(on_frame, key=lambda s: len(refs & {i.sop_instance_uid for i in s}), default=[])
        have = {i.sop_instance_uid for i in chosen}
        claimed.add(chosen[0].series_uid if chosen else "")
        members = [rs, *chosen]
        out.append(IncomingSet(
            _set_id(rs.sop_instance_uid + rs.sha256), rs.patient_id, rs.patient_name, rs.study_uid,
            chosen[0].series_uid if chosen else "", rs.frame_uid, rs, tuple(chosen),
            tuple(sorted(refs - have)), tuple(sorted(conflicting & {m.sop_instance_uid for m in members})),
            max(m.received_at for m in members),
        ))  # fmt: skip
    for uid, images in series.items():
        if uid not in claimed:
            first = images[0]
            out.append(IncomingSet(
                _set_id(uid), first.patient_id, first.patient_name, first.study_uid, uid, first.frame_uid, None,
                tuple(images), (), tuple(sorted(conflicting & {i.sop_instance_uid for i in images})),
                max(i.received_at for i in images),
            ))  # fmt: skip
    return sorted(out, key=lambda s: s.received_at)


def incoming_sets(ws: Workspace) -> list[IncomingSet]:
    """Every set of received instances not imported or discarded, oldest first (what a running receiver has
    just confirmed appears once it is filed, within moments)."""
    return _sets(IncomingRepository(ws.db, ws.blobs).pending())


def _find(ws: Workspace, set_id: str) -> IncomingSet:
    found = next((s for s in incoming_sets(ws) if s.id == set_id), None)
    if found is None:
        known = ", ".join(s.id for s in incoming_sets(ws)) or "none"
        raise InputError(f"no incoming set {set_id!r} (incoming sets: {known}); 'rtexport incoming list' shows them")
    return found


def _named(found: IncomingSet) -> dict[str, Any]:
    """What the audit records of a set: which patient, study, series and structure set, and how many of each."""
    return {
        "set": found.id,
        "patient_id": found.patient_id,
        "study": found.study_uid,
        "series": found.series_uid,
        "structure_set": found.structure_set.sop_instance_uid if found.structure_set else None,
        "images": len(found.images),
        "missing": len(found.missing),
        "conflicts": len(found.conflicts),
    }


def import_incoming(ws: Workspace, set_id: str, actor: Actor, course_id: str | None = None) -> ImportResult:
    """Import a complete set as course ``course_id`` (default: the set's id) through the same import service as
    ``rtexport import`` (the same checks, all or nothing); its instances are then marked imported. Audited, a
    refusal too. Raises InputError (no such set), CourseImportError."""
    found = _find(ws, set_id)
    try:
        if not found.complete or found.structure_set is None:
            raise CourseImportError(f"incoming set {set_id} cannot be imported yet: {found.state}")
        members = [found.structure_set, *found.images]
        with tempfile.TemporaryDirectory(prefix="rtexport-incoming-") as tmp:
            folder = Path(tmp)
            folder.chmod(0o700)
            for n, inst in enumerate(members):
                (folder / f"{n:05d}.dcm").write_bytes(ws.blobs.verified(inst.sha256))
            result = import_course(ws, folder, course_id or found.id, actor)
    except CourseImportError as e:
        ws.audit(actor, "incoming-import", "refused", **_named(found), reason=str(e))
        raise
    with ws.transaction():
        IncomingRepository(ws.db, ws.blobs).mark([m.id for m in members], IMPORTED, result.course.id)
        ws.audit(actor, "incoming-import", "ok", **_named(found), course=result.course.id)
    return result


def discard_incoming(ws: Workspace, set_id: str, actor: Actor) -> int:
    """Drop a set from the list (its files stay in the store until nothing names them); how many instances."""
    found = _find(ws, set_id)
    members = [*([found.structure_set] if found.structure_set else []), *found.images]
    conflicting = [i for i in IncomingRepository(ws.db, ws.blobs).pending() if i.sop_instance_uid in found.conflicts]
    ids = list(dict.fromkeys([m.id for m in members] + [c.id for c in conflicting]))
    with ws.transaction():
        IncomingRepository(ws.db, ws.blobs).mark(ids, DISCARDED)
        ws.audit(actor, "incoming-discard", "ok", **_named(found), instances=len(ids))
    return len(ids)


__all__ = [
    "IncomingSet",
    "Listening",
    "background_receiver",
    "discard_incoming",
    "import_incoming",
    "incoming_sets",
    "receiver",
    "run_receiver",
]
