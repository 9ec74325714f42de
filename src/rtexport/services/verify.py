"""Verify the workspace: every stored file that something references (the courses' CT images and structure sets,
the dose arrays, the objects built for export) still has the bytes it was stored with."""

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

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return f"all {self.checked} stored file(s) the workspace references are intact"
        return (
            f"{len(self.problems)} of {self.checked} stored file(s) are missing or damaged: nothing that uses them "
            "can be exported until they are restored (from a backup of the store) or re-imported/recomputed"
        )


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
    report = VerifyReport(len(digests), tuple(problems))
    ws.audit(
        actor,
        "verify",
        "ok" if report.ok else "damaged",
        checked=report.checked,
        problems={p.sha256: p.state for p in problems},
    )
    return report
