"""Exports run as background jobs (one thread each) so the page can poll their progress."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtexport.errors import GateError, RTExportError
from rtexport.services.export import ExportObject, ExportRun, PreparedExport, ProgressEvent, finish_export
from rtexport.services.workspaces import open_workspace
from rtexport.web.common import plain

log = logging.getLogger(__name__)
KEEP_S = 3600.0  # finished jobs are forgotten after an hour


@dataclass
class Job:
    """One export; every field is read and written under ``lock``."""

    id: str
    owner: str
    plan_id: str
    kind: str  # "folder", "server" or "dose"
    destination: str
    notice: str = ""  # what the user must know about what leaves (an RT Plan that leaves UNAPPROVED)
    state: str = "running"  # running → done | failed
    phase: str = "preparing"
    total: int = 0
    done: int = 0
    ok: bool | None = None
    message: str = ""
    findings: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what the user should know although it succeeded
    results: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    ended: threading.Event = field(default_factory=threading.Event, repr=False)

    def begin(self, phase: str, total: int) -> None:
        with self.lock:
            self.phase, self.total = phase, total

    def add(self, result: dict[str, Any]) -> None:
        with self.lock:
            self.results.append(result)
            self.done = len(self.results)

    def finish(
        self, ok: bool, message: str, results: list[dict[str, Any]] | None = None, warnings: Collection[str] = ()
    ) -> None:
        with self.lock:
            self.warnings = list(warnings)
            if results is not None:
                self.results = results
                self.done = len(results)
            self.state, self.phase, self.ok, self.message = "done", "finished", ok, message
            self.finished = time.monotonic()
        self.ended.set()

    def fail(self, message: str, findings: Collection[str] = ()) -> None:
        with self.lock:
            self.state, self.phase, self.ok, self.message = "failed", "finished", False, message
            self.findings = list(findings)
            self.finished = time.monotonic()
        self.ended.set()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            end = self.finished if self.finished is not None else time.monotonic()
            exported = self.kind != "dose"  # a dose job's results are its beams, not exported objects
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
                "warnings": list(self.warnings),
                "notice": self.notice,
                "results": ordered(self.results) if exported else [dict(r) for r in self.results],
                "summary": summary(self.results) if exported else [],
                "seconds": round(end - self.started, 1),
            }


class Jobs:
    """The jobs of this process, by id."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(
        self, owner: str, plan_id: str, kind: str, destination: str, work: Callable[[Job], None], notice: str = ""
    ) -> Job:
        job = Job(secrets.token_urlsafe(12), owner, plan_id, kind, destination, notice)
        thread = threading.Thread(target=_guarded, args=(work, job), name=f"export-{job.id}", daemon=True)
        with self._lock:
            now = time.monotonic()
            for key in [k for k, j in self._jobs.items() if j.finished is not None and now - j.finished > KEEP_S]:
                del self._jobs[key]
                self._threads.pop(key, None)
            self._jobs[job.id] = job
            self._threads[job.id] = thread
        thread.start()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def wait(self, job_id: str, timeout: float) -> dict[str, Any]:
        """Block until the job's thread has ended (for tests and scripts); its final snapshot."""
        with self._lock:
            job, thread = self._jobs[job_id], self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)
        job.ended.wait(0)
        return job.snapshot()

    def join_all(self, timeout: float = 60.0) -> None:
        """Wait for every running job (the app's shutdown, and tests)."""
        with self._lock:
            threads = list(self._threads.values())
        for t in threads:
            t.join(timeout)


# What a physicist checks comes first: the structure set, the plan and the doses; the CT images last.
_ORDER = {kind: i for i, kind in enumerate(("RS", "RP", "RD", "CT"))}
_GOOD = {"written", "stored", "identical file already there"}


def ordered(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results, RS, RP and RD before the CT images (each kind in the order it was written or sent)."""
    return [dict(r) for r in sorted(results, key=lambda r: _ORDER.get(str(r.get("kind")), len(_ORDER)))]


def summary(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per object as the CLI prints them (RS, RP, RD), and one for all the CT images ("60 CT images, all
    stored"); ``ok``: every object of the row arrived."""
    rows: list[dict[str, Any]] = []
    ct = [r for r in results if r.get("kind") == "CT"]
    for r in ordered(results):
        if r.get("kind") == "CT":
            continue
        outcome = str(r.get("outcome"))
        text = outcome + (f" {r['status']}" if r.get("status") else "")
        if r.get("meaning") and outcome != "stored":
            text += f" · {r['meaning']}"
        rows.append({"kind": r["kind"], "label": r["description"], "uid": r["uid"], "file": r["file"],
                     "text": text, "ok": outcome in _GOOD})  # fmt: skip
    if ct:
        outcomes = Counter(str(r.get("outcome")) for r in ct)
        images = f"{len(ct)} CT image{'s' if len(ct) != 1 else ''}"
        if len(outcomes) == 1:
            text = f"{images}, {'all ' if len(ct) > 1 else ''}{next(iter(outcomes))}"
        else:
            text = f"{images}: " + ", ".join(f"{n} {o}" for o, n in outcomes.most_common())
        rows.append({"kind": "CT", "label": "CT Images", "uid": "", "file": "", "text": text,
                     "ok": all(o in _GOOD for o in outcomes)})  # fmt: skip
    return rows


def leaving_notice(prepared: PreparedExport) -> str:
    """What the export block says before the objects leave: an unapproved RT Plan leaves UNAPPROVED."""
    state = prepared.state
    if state.approved or not any(o.kind.value == "RP" for o in prepared.objects):
        return ""
    who = f", export authorized by {state.authorization.user}" if state.authorization else ""
    return (
        f"The RT Plan leaves UNAPPROVED (RT Plan Approval Status): revision {state.revision.number} of plan "
        f"{state.plan.id} is not approved{who}. A treatment system should not treat from it until it is approved."
    )


def _guarded(work: Callable[[Job], None], job: Job) -> None:
    try:
        work(job)
    except GateError as e:
        job.fail("export refused", e.findings)
    except RTExportError as e:
        job.fail(plain(str(e)))
    except Exception as e:  # a thread boundary: record and show any bug instead of a silent, eternal "running"
        log.exception("export job %s failed", job.id)
        job.fail(f"internal error: {type(e).__name__}: {e}")


def _object(obj: ExportObject) -> dict[str, Any]:
    return {"kind": obj.kind.value, "description": obj.description, "uid": obj.sop_instance_uid, "file": obj.filename}


class _JobProgress:
    def __init__(self, job: Job, phase: str) -> None:
        self.job = job
        self.phase = phase

    def start(self, prepared: PreparedExport) -> None:
        self.job.begin(self.phase, len(prepared.objects))

    def done(self, event: ProgressEvent) -> None:
        status = None if event.status is None else f"0x{event.status:04X}"
        self.job.add({**_object(event.obj), "outcome": event.outcome, "status": status, "meaning": event.meaning})


def export_work(home: Path, run: ExportRun) -> Callable[[Job], None]:
    """The job that writes or sends what :func:`~rtexport.services.export.begin_export` prepared."""

    def work(job: Job) -> None:
        with open_workspace(home) as ws:
            folder = run.action == "export"
            report = finish_export(ws, run, _JobProgress(job, "writing" if folder else "sending"))
        if report.written is not None:
            identical = {p.name for p in report.written.identical}
            results = [
                {**_object(o), "outcome": "identical file already there" if o.filename in identical else "written"}
                for o in report.prepared.objects
            ]
        elif report.sent is not None:
            results = [
                {
                    **_object(r.obj),
                    "outcome": r.outcome.value,
                    "status": None if r.status is None else f"0x{r.status:04X}",
                    "meaning": r.meaning,
                }
                for r in report.sent.results
            ]
        else:
            results = []
        job.finish(report.ok, report.message(), results, report.warnings)

    return work
