"""Exports run as background jobs (one thread each) so the page can poll their progress."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtexport.errors import GateError, RTExportError, WriteError
from rtexport.export.gate import Item
from rtexport.export.objects import ExportObject
from rtexport.export.pipeline import export_to_folder, export_to_server, prebuild, prepare
from rtexport.export.send import Destination, InstanceResult
from rtexport.workspace import Workspace

log = logging.getLogger(__name__)
KEEP_S = 3600.0  # finished jobs are forgotten after an hour


@dataclass
class Job:
    """One export; every field is read and written under ``lock``."""

    id: str
    owner: str
    plan_id: str
    kind: str  # "folder" or "server"
    destination: str
    state: str = "running"  # running → done | failed
    phase: str = "preparing"
    total: int = 0
    done: int = 0
    ok: bool | None = None
    message: str = ""
    findings: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def begin(self, phase: str, total: int) -> None:
        with self.lock:
            self.phase, self.total = phase, total

    def add(self, result: dict[str, Any]) -> None:
        with self.lock:
            self.results.append(result)
            self.done = len(self.results)

    def finish(self, ok: bool, message: str, results: list[dict[str, Any]] | None = None) -> None:
        with self.lock:
            if results is not None:
                self.results = results
                self.done = len(results)
            self.state, self.phase, self.ok, self.message = "done", "finished", ok, message
            self.finished = time.monotonic()

    def fail(self, message: str, findings: Collection[str] = ()) -> None:
        with self.lock:
            self.state, self.phase, self.ok, self.message = "failed", "finished", False, message
            self.findings = list(findings)
            self.finished = time.monotonic()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            end = self.finished if self.finished is not None else time.monotonic()
            return {
                "id": self.id,
                "plan": self.plan_id,
                "kind": self.kind,
                "destination": self.destination,
                "state": self.state,
                "phase": self.phase,
                "total": self.total,
                "done": self.done,
                "ok": self.ok,
                "message": self.message,
                "findings": list(self.findings),
                "results": [dict(r) for r in self.results],
                "seconds": round(end - self.started, 1),
            }


class Jobs:
    """The jobs of this process, by id."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, owner: str, plan_id: str, kind: str, destination: str, work: Callable[[Job], None]) -> Job:
        job = Job(secrets.token_urlsafe(12), owner, plan_id, kind, destination)
        with self._lock:
            now = time.monotonic()
            for key in [k for k, j in self._jobs.items() if j.finished is not None and now - j.finished > KEEP_S]:
                del self._jobs[key]
            self._jobs[job.id] = job
        threading.Thread(target=_guarded, args=(work, job), name=f"export-{job.id}", daemon=True).start()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def wait(self, job_id: str, timeout: float) -> dict[str, Any]:
        """Poll until the job ends (for tests and scripts)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job is None:
                raise KeyError(job_id)
            snap = job.snapshot()
            if snap["state"] != "running" or time.monotonic() > deadline:
                return snap
            time.sleep(0.05)


def _guarded(work: Callable[[Job], None], job: Job) -> None:
    try:
        work(job)
    except GateError as e:
        job.fail("export refused", e.findings)
    except RTExportError as e:
        job.fail(str(e))
    except Exception as e:  # a thread boundary: record and show any bug instead of a silent, eternal "running"
        log.exception("export job %s failed", job.id)
        job.fail(f"internal error: {type(e).__name__}: {e}")


def prebuild_in_background(home: Path, plan_id: str) -> threading.Thread:
    """Build the export objects of a plan whose state was just fixed (approval), off the request, so that its
    export only copies files. A failure is logged: the export builds again and reports it to the user."""

    def work() -> None:
        ws = Workspace.open(home)
        try:
            prebuild(ws, plan_id)
        except Exception:  # a thread boundary
            log.exception("preparing the export of plan %s failed", plan_id)
        finally:
            ws.close()

    thread = threading.Thread(target=work, name=f"prebuild-{plan_id}", daemon=True)
    thread.start()
    return thread


def _object(obj: ExportObject) -> dict[str, Any]:
    return {"kind": obj.kind.value, "description": obj.description, "uid": obj.sop_instance_uid, "file": obj.filename}


def folder_work(home: Path, plan_id: str, items: Collection[Item], folder: Path, actor: str) -> Callable[[Job], None]:
    def work(job: Job) -> None:
        ws = Workspace.open(home)
        try:
            prep = prepare(ws, plan_id, items, actor)
            job.begin("writing", len(prep.objects))

            def progress(obj: ExportObject) -> None:
                job.add({**_object(obj), "outcome": "written"})

            try:
                _, report = export_to_folder(ws, plan_id, items, folder, actor, progress, prep)
            except WriteError as e:
                job.fail(str(e))
                return
            identical = {p.name for p in report.identical}
            results = [
                {**_object(o), "outcome": "identical file already there" if o.filename in identical else "written"}
                for o in prep.objects
            ]
            job.finish(
                True,
                f"{len(report.written)} file(s) written to {report.folder}"
                + (f"; {len(identical)} identical file(s) were already there" if identical else ""),
                results,
            )
        finally:
            ws.close()

    return work


def server_work(
    home: Path, plan_id: str, items: Collection[Item], dest: Destination, actor: str
) -> Callable[[Job], None]:
    def result(r: InstanceResult) -> dict[str, Any]:
        status = None if r.status is None else f"0x{r.status:04X}"
        return {**_object(r.obj), "outcome": r.outcome.value, "status": status, "meaning": r.meaning}

    def work(job: Job) -> None:
        ws = Workspace.open(home)
        try:
            prep = prepare(ws, plan_id, items, actor)
            job.begin("sending", len(prep.objects))
            _, report = export_to_server(ws, plan_id, items, dest, actor, lambda r: job.add(result(r)), False, prep)
            job.finish(report.ok, report.summary(), [result(r) for r in report.results])
        finally:
            ws.close()

    return work
