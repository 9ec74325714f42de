"""Verify the workspace: every stored file that something references (the courses' CT images and structure sets,
the dose arrays, the objects built for export) still has the bytes it was stored with, and every row a decision
rests on (plan files, doses, users and roles, approvals, authorizations) still matches the seal rtexport wrote for
it in the audit log."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rtexport.model.people import Actor
from rtexport.workspace import Workspace


@dataclass(frozen=True)
class BlobProblem:
    """A stored file that is missing (``found`` None) or damaged (its bytes now hash to ``found``)."""

    sha256: str
    path: Path
    found: str | None
    referenced_by: tuple[str, ...]

    @property
    def state(self) -> str:
        return "missing" if self.found is None else "damaged"

    def describe(self) -> str:
        what = "missing" if self.found is None else f"damaged (its sha256 is now {self.found})"
        return f"{self.path} (sha256 {self.sha256}) is {what}; referenced by: " + "; ".join(self.referenced_by)


@dataclass(frozen=True)
class VerifyReport:
    checked: int  # distinct stored files
    problems: tuple[BlobProblem, ...]
    rows_checked: int = 0
    rows_changed: tuple[str, ...] = ()  # sealed rows changed, inserted or deleted behind rtexport's back

    @property
    def ok(self) -> bool:
        return not self.problems and not self.rows_changed

    def summary(self) -> str:
        if self.ok:
            return (
                f"all {self.checked} stored file(s) the workspace references are intact, and all "
                f"{self.rows_checked} sealed record(s) are as rtexport wrote them"
            )
        said = []
        if self.problems:
            said.append(
                f"{len(self.problems)} of {self.checked} stored file(s) are missing or damaged: nothing that uses "
                "them can be exported until they are restored (from a backup of the store) or re-imported/recomputed"
            )
        if self.rows_changed:
            said.append(
                f"{len(self.rows_changed)} of {self.rows_checked} sealed record(s) were changed outside rtexport: "
                "decisions on them are refused until the workspace is restored from a backup"
            )
        return "; ".join(said)


def verify_workspace(ws: Workspace, actor: Actor, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Hash every referenced stored file (in parallel: hashing releases the GIL) and audit the result."""
    refs: dict[str, list[str]] = {}
    for digest, what in [*ws.courses.blob_references(), *ws.doses.blob_references(), *ws.built.blob_references()]:
        refs.setdefault(digest, []).append(what)
    digests = sorted(refs)
    problems: list[BlobProblem] = []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for k, (digest, found) in enumerate(zip(digests, pool.map(ws.blobs.found, digests), strict=True), start=1):
            if found != digest:
                problems.append(BlobProblem(digest, ws.blobs.path(digest), found, tuple(refs[digest])))
            if progress is not None:
                progress(k, len(digests))
    rows = ws.seals.all_rows()
    report = VerifyReport(len(digests), tuple(problems), len(rows), tuple(ws.seals.check_all()))
    ws.audit(
        actor,
        "verify",
        "ok" if report.ok else "damaged",
        checked=report.checked,
        problems={p.sha256: p.state for p in problems},
        rows_checked=report.rows_checked,
        rows_changed=list(report.rows_changed),
    )
    return report
