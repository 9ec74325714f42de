"""The workspace: ``site.toml``, ``rtexport.db`` (SQLite) and ``store/`` (imported files, dose arrays, built
objects), seen through small repositories in one unit of work.

The rules (who may approve, what an approved plan allows, what export needs) live in :mod:`rtexport.services`;
this package only stores and reads, and gives the services one transaction to check and write in.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w

from rtexport.errors import ConfigError
from rtexport.model.course import Course
from rtexport.model.people import Actor
from rtexport.model.site import Site, load_site, read_site_toml, site_problems
from rtexport.model.state import PlanState
from rtexport.model.stored import parse_stored_plan
from rtexport.workspace.audit import AuditLog
from rtexport.workspace.built import BuiltObjects
from rtexport.workspace.courses import CourseRepository
from rtexport.workspace.db import Database
from rtexport.workspace.doses import DoseRepository
from rtexport.workspace.plans import PlanRepository
from rtexport.workspace.reports import ReportRepository
from rtexport.workspace.seals import Seals, row_key
from rtexport.workspace.setups import SetupCache
from rtexport.workspace.store import BlobStore
from rtexport.workspace.throttle import ThrottleRecords
from rtexport.workspace.users import UserRepository

DB_NAME = "rtexport.db"

MINIMAL_SITE = """\
# rtexport site configuration. 'rtexport site check' lists every problem.
# uid_root = "1.2.826.0.1.3680043.10.999"   # your organization's UID root; without it UIDs use 2.25.<uuid>
machines = []
ct_curves = []
materials = []

[dicom]
export_folder = "dicom-export"
local_ae_title = "RTEXPORT"
servers = []
export_roots = ["dicom-export"]
"""


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def default_home() -> Path:
    return Path(os.environ.get("RTEXPORT_HOME", "rtexport-home"))


def _drop_none(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _drop_none(v) for k, v in d.items() if v is not None}
    if isinstance(d, list):
        return [_drop_none(v) for v in d]
    return d


class Workspace:
    """A workspace folder. Open with :meth:`open`; create with :meth:`init`."""

    def __init__(self, home: Path, clock: Callable[[], datetime] = utcnow) -> None:
        self.home = home
        self.clock = clock
        self.blobs = BlobStore(home / "store")
        self.db = Database(home / DB_NAME)
        self.courses = CourseRepository(self.db)
        self.plans = PlanRepository(self.db)
        self.users = UserRepository(self.db)
        self.audit_log = AuditLog(self.db, self.now)
        self.seals = Seals(self.db)
        self.seals.seal_found(lambda *a, **k: self.audit_log.record(self.now(), *a, **k))
        self.doses = DoseRepository(self.db, self.blobs)
        self.built = BuiltObjects(self.db, self.blobs)
        self.reports = ReportRepository(self.db)
        self.setups = SetupCache(self.db)
        self.throttle = ThrottleRecords(self.db)

    # -- lifecycle ------------------------------------------------------------------------------------------
    @classmethod
    def init(cls, home: Path, site: dict[str, Any] | None = None, clock: Callable[[], datetime] = utcnow) -> Workspace:
        """Create a workspace (an existing one is refused)."""
        if (home / DB_NAME).exists():
            raise ConfigError(f"{home}: a workspace exists here already")
        home.mkdir(parents=True, exist_ok=True)
        (home / "store").mkdir(mode=0o700, exist_ok=True)
        text = MINIMAL_SITE if site is None else tomli_w.dumps(_drop_none(site))
        (home / "site.toml").write_text(text, encoding="utf-8")
        return cls(home, clock)

    @classmethod
    def open(cls, home: Path, clock: Callable[[], datetime] = utcnow) -> Workspace:
        if not (home / DB_NAME).is_file():
            raise ConfigError(
                f"{home}: no workspace here; give the workspace with --home DIR or RTEXPORT_HOME, "
                f"or create one with 'rtexport init --home {home}'"
            )
        return cls(home, clock)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """The unit of work: every read and write inside commits together or not at all."""
        with self.db.transaction():
            yield

    def now(self) -> str:
        return iso(self.clock())

    def audit(
        self,
        actor: Actor,
        action: str,
        outcome: str,
        plan_id: str | None = None,
        revision: int | None = None,
        **detail: Any,
    ) -> int:
        """Append an audit record now (in the current transaction, if any)."""
        return self.audit_log.record(self.now(), actor, action, outcome, plan_id, revision, **detail)

    # -- site -------------------------------------------------------------------------------------------------
    @property
    def site_path(self) -> Path:
        return self.home / "site.toml"

    def site(self) -> Site:
        return load_site(self.site_path)

    def site_problems(self) -> list[str]:
        _, problems = site_problems(read_site_toml(self.site_path))
        return problems

    def resolve(self, path: Path) -> Path:
        """A path from the site configuration, relative to the workspace when not absolute."""
        return path if path.is_absolute() else self.home / path

    # -- queries that join repositories ---------------------------------------------------------------------
    def course(self, course_id: str) -> Course:
        return self.courses.get(course_id)

    def plan_state(self, plan_id: str) -> PlanState:
        """The plan's current revision with its approval, authorization and (lazily loaded) dose."""
        rev = self.plans.last_revision(plan_id)
        plan, problems = parse_stored_plan(rev.toml, f"plan {plan_id} revision {rev.number}")
        return PlanState(
            plan=plan,
            revision=rev,
            revisions=self.plans.revision_count(plan_id),
            approval=self.plans.approval(plan_id, rev.number),
            authorization=self.plans.authorization(plan_id, rev.number),
            dose=self.doses.get(plan_id, rev.number),
            integrity=tuple(self.plan_integrity(plan_id, rev.number)),
            stored_problems=tuple(problems),
        )

    def plan_integrity(self, plan_id: str, revision: int) -> list[str]:
        """What differs between the rows a decision on this revision rests on and their seals (empty: intact);
        a later revision that was deleted counts too, and so do the users who signed it (their names go into the
        exported RT Plan), the plan's course (its files and patient) and the objects built for the revision."""
        keys = [row_key(t, (plan_id, revision)) for t in ("revisions", "doses", "approvals", "authorizations")]
        signers = self.db.all(
            "SELECT reviewer AS name FROM approvals WHERE plan_id = ? AND revision = ? UNION "
            "SELECT user FROM authorizations WHERE plan_id = ? AND revision = ?",
            (plan_id, revision, plan_id, revision),
        )
        users = [row_key("users", (str(r["name"]),)) for r in signers]
        course = self.plans.course_of(plan_id)
        courses = [row_key("courses", (course,))] if course is not None else []
        prefix = f"{plan_id}\x1f{revision}\x1f"
        built = self.db.all("SELECT key FROM built WHERE substr(key, 1, length(?)) = ?", (prefix, prefix))
        objects = [row_key("built", (str(r["key"]),)) for r in built]
        return self.seals.check(
            [
                *keys,
                row_key("revisions", (plan_id, revision + 1)),
                *users,
                row_key("plans", (plan_id,)),
                *courses,
                *objects,
            ]
        )

    def user_integrity(self, name: str) -> list[str]:
        """What differs between the user's row (role, password hash, name) and its seal (empty: intact)."""
        return self.seals.check([row_key("users", (name,))])
