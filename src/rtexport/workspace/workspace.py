"""The workspace: ``site.toml``, ``rtexport.db`` (SQLite) and ``store/`` (imported files, dose arrays)."""

from __future__ import annotations

import io
import json
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from rtexport.errors import AuthError, ConfigError, CourseImportError, PlanError
from rtexport.geometry.setup import aim_plan, plan_structures
from rtexport.model.course import Course, CTGeometry, CTSlice, PatientStudy, Structure, StructureSetRef
from rtexport.model.dose import BeamDose, DoseGrid, GridGeometry
from rtexport.model.plan import Plan, parse_plan, plan_digest, plan_problems
from rtexport.model.site import Site, load_site, read_site_toml, site_problems
from rtexport.workspace.dicomio import contours_by_name, read_dataset
from rtexport.workspace.importer import ImportResult, read_course
from rtexport.workspace.passwords import hash_password, verify_password
from rtexport.workspace.store import BlobStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS courses (
    id TEXT PRIMARY KEY, data TEXT NOT NULL, imported_at TEXT NOT NULL, imported_by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plans (
    id TEXT PRIMARY KEY, course_id TEXT NOT NULL REFERENCES courses(id), created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revisions (
    plan_id TEXT NOT NULL REFERENCES plans(id), number INTEGER NOT NULL, digest TEXT NOT NULL,
    toml TEXT NOT NULL, token TEXT NOT NULL, created_at TEXT NOT NULL, created_by TEXT NOT NULL,
    PRIMARY KEY (plan_id, number));
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS approvals (
    plan_id TEXT NOT NULL, revision INTEGER NOT NULL, reviewer TEXT NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (plan_id, revision));
CREATE TABLE IF NOT EXISTS authorizations (
    plan_id TEXT NOT NULL, revision INTEGER NOT NULL, user TEXT NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (plan_id, revision));
CREATE TABLE IF NOT EXISTS doses (
    plan_id TEXT NOT NULL, revision INTEGER NOT NULL, data TEXT NOT NULL, computed_at TEXT NOT NULL,
    PRIMARY KEY (plan_id, revision));
CREATE TABLE IF NOT EXISTS built (
    key TEXT PRIMARY KEY, sha256 TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    plan_id TEXT, revision INTEGER, outcome TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


class Role(StrEnum):
    """A user's role; a physicist is a qualified user (may approve and authorize export)."""

    PLANNER = "planner"
    PHYSICIST = "physicist"


@dataclass(frozen=True)
class User:
    name: str
    role: Role

    @property
    def qualified(self) -> bool:
        return self.role is Role.PHYSICIST


@dataclass(frozen=True)
class Revision:
    plan_id: str
    number: int
    digest: str
    toml: str
    token: str  # random per revision: the seed of this revision's UIDs
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class Signature:
    """Who approved or authorized a revision, and when."""

    user: str
    at: datetime


@dataclass(frozen=True)
class StoredDose:
    revision: int
    computed_at: datetime
    beams: tuple[BeamDose, ...]
    plan: DoseGrid
    engine: str

    def beam(self, name: str) -> BeamDose | None:
        return next((b for b in self.beams if b.beam_name == name), None)


@dataclass(frozen=True)
class PlanState:
    """A plan as it stands: its current revision, approval, authorization and dose state."""

    plan: Plan
    revision: Revision
    revisions: int
    approval: Signature | None
    authorization: Signature | None
    dose: StoredDose | None  # dose of the current revision, if computed

    @property
    def approved(self) -> bool:
        return self.approval is not None

    @property
    def dose_state(self) -> str:
        return "current" if self.dose is not None else "none"


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds")


def _dt(s: str) -> datetime:
    return datetime.fromisoformat(s)


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _course_to_json(course: Course) -> str:
    return json.dumps(asdict(course), sort_keys=True)


def _course_from_json(text: str) -> Course:
    d = json.loads(text)
    ss = d["structure_set"]
    ct = d["ct"]
    return Course(
        id=d["id"],
        patient=PatientStudy(**d["patient"]),
        ct=CTGeometry(
            **{
                **ct,
                "origin_mm": tuple(ct["origin_mm"]),
                "pixel_spacing_mm": tuple(ct["pixel_spacing_mm"]),
                "slice_z_mm": tuple(ct["slice_z_mm"]),
            }
        ),
        slices=tuple(CTSlice(**s) for s in d["slices"]),
        structure_set=StructureSetRef(**{**ss, "structures": tuple(Structure(**s) for s in ss["structures"])}),
        imported_at=d.get("imported_at", ""),
        extras=d.get("extras", {}),
    )


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


class Workspace:
    """A workspace folder. Open with :meth:`open`; create with :meth:`init`."""

    def __init__(self, home: Path, clock: Callable[[], datetime] = _utcnow) -> None:
        self.home = home
        self.clock = clock
        self.store = BlobStore(home / "store")
        self._db = sqlite3.connect(home / "rtexport.db", isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(SCHEMA)

    # -- lifecycle ------------------------------------------------------------------------------------------
    @classmethod
    def init(cls, home: Path, site: dict[str, Any] | None = None, clock: Callable[[], datetime] = _utcnow) -> Workspace:
        """Create a workspace (an existing one is refused)."""
        if (home / "rtexport.db").exists():
            raise ConfigError(f"{home}: a workspace exists here already")
        home.mkdir(parents=True, exist_ok=True)
        text = MINIMAL_SITE if site is None else tomli_w.dumps(_drop_none(site))
        (home / "site.toml").write_text(text, encoding="utf-8")
        return cls(home, clock)

    @classmethod
    def open(cls, home: Path, clock: Callable[[], datetime] = _utcnow) -> Workspace:
        if not (home / "rtexport.db").is_file():
            raise ConfigError(f"{home}: no workspace here; create one with 'rtexport init --home {home}'")
        return cls(home, clock)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

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

    # -- audit ------------------------------------------------------------------------------------------------
    def audit(
        self,
        actor: str,
        action: str,
        outcome: str,
        plan_id: str | None = None,
        revision: int | None = None,
        **detail: Any,
    ) -> None:
        self._db.execute(
            "INSERT INTO audit (at, actor, action, plan_id, revision, outcome, detail) VALUES (?,?,?,?,?,?,?)",
            (_iso(self.clock()), actor, action, plan_id, revision, outcome, json.dumps(detail, sort_keys=True)),
        )

    def audit_entries(self, plan_id: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM audit" + (" WHERE plan_id = ?" if plan_id else "") + " ORDER BY id"
        rows = self._db.execute(q, (plan_id,) if plan_id else ()).fetchall()
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]

    # -- users ------------------------------------------------------------------------------------------------
    def add_user(self, name: str, role: Role, password: str) -> User:
        if not name or not name.strip():
            raise AuthError("a user name is needed")
        if len(password) < 8:
            raise AuthError("a password needs at least 8 characters")
        try:
            self._db.execute(
                "INSERT INTO users VALUES (?,?,?,?)", (name, role.value, hash_password(password), _iso(self.clock()))
            )
        except sqlite3.IntegrityError as e:
            raise AuthError(f"user {name!r} exists already") from e
        self.audit(name, "user-add", "ok", role=role.value)
        return User(name, role)

    def users(self) -> list[User]:
        return [User(r["name"], Role(r["role"])) for r in self._db.execute("SELECT * FROM users ORDER BY name")]

    def authenticate(
        self, name: str, password: str, action: str, plan_id: str | None = None, revision: int | None = None
    ) -> User:
        """Check the password; a refusal is audited and raised. Password never logged."""
        row = self._db.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        if row is None or not verify_password(password, row["password_hash"]):
            self.audit(name, action, "refused", plan_id, revision, reason="unknown user or wrong password")
            raise AuthError(f"{action}: unknown user or wrong password for {name!r}")
        return User(row["name"], Role(row["role"]))

    # -- courses ----------------------------------------------------------------------------------------------
    def import_course(self, folder: Path, course_id: str, actor: str = "system") -> ImportResult:
        """Import one CT series and one RT Structure Set; all or nothing."""
        if not course_id or "/" in course_id:
            raise CourseImportError(f"invalid course id {course_id!r}")
        if self._db.execute("SELECT 1 FROM courses WHERE id = ?", (course_id,)).fetchone():
            raise CourseImportError(f"course {course_id!r} exists already in this workspace")
        result = read_course(folder, course_id)
        created: list[str] = []
        try:
            for f in result.files:
                digest, new = self.store.put(f.data)
                if new:
                    created.append(digest)
            course = replace(result.course, imported_at=_iso(self.clock()))
            with self._tx() as db:
                db.execute(
                    "INSERT INTO courses VALUES (?,?,?,?)",
                    (course_id, _course_to_json(course), course.imported_at, actor),
                )
        except BaseException:
            for digest in created:
                self.store.remove(digest)
            raise
        self.audit(
            actor,
            "import",
            "ok",
            course=course_id,
            folder=str(folder),
            files=len(result.files),
            skipped=[str(p) for p, _ in result.skipped],
        )
        result.course = course
        return result

    def course(self, course_id: str) -> Course:
        row = self._db.execute("SELECT data FROM courses WHERE id = ?", (course_id,)).fetchone()
        if row is None:
            raise PlanError(f"no course {course_id!r} in this workspace (see 'rtexport course list')")
        return _course_from_json(row["data"])

    def courses(self) -> list[Course]:
        return [_course_from_json(r["data"]) for r in self._db.execute("SELECT data FROM courses ORDER BY id")]

    # -- plans ------------------------------------------------------------------------------------------------
    def load_plan(self, text: str, source: str = "plan", actor: str = "system") -> tuple[PlanState, bool]:
        """Load plan text: a new plan, a new revision of a changed one, or nothing for an unchanged one."""
        plan = parse_plan(text, source)
        course = self.course(plan.course)
        problems = plan_problems(plan, self.site(), course)
        if problems:
            raise PlanError(f"{source}: plan does not fit the site or course", problems)
        try:  # the beams' setup needs no dose: contradictions are refused now
            contours = contours_by_name(
                read_dataset(self.store.get(course.structure_set.sha256)), plan_structures(plan)
            )
            aim_plan(plan, self.site(), course.ct, contours)
        except PlanError as e:
            raise PlanError(f"{source}: the beam setup does not fit course {course.id}", e.problems) from e
        digest = plan_digest(plan)
        with self._tx() as db:
            existing = db.execute("SELECT course_id FROM plans WHERE id = ?", (plan.id,)).fetchone()
            if existing is None:
                db.execute("INSERT INTO plans VALUES (?,?,?)", (plan.id, plan.course, _iso(self.clock())))
                number = 1
            else:
                if existing["course_id"] != plan.course:
                    raise PlanError(f"{source}: plan {plan.id} belongs to course {existing['course_id']}")
                last = self._last_revision(plan.id)
                if last.digest == digest:
                    number = 0
                elif self._approval(plan.id, last.number) is not None:
                    self.audit(actor, "plan-load", "refused", plan.id, last.number, reason="plan is approved")
                    raise PlanError(
                        f"{source}: plan {plan.id} is approved and read-only; "
                        f"make an unapproved copy with 'rtexport plan clone {plan.id} NEW_ID'"
                    )
                else:
                    number = last.number + 1
            if number:
                db.execute(
                    "INSERT INTO revisions VALUES (?,?,?,?,?,?,?)",
                    (plan.id, number, digest, text, secrets.token_hex(16), _iso(self.clock()), actor),
                )
        changed = number != 0
        if changed:
            self.audit(actor, "plan-load", "ok", plan.id, number, source=source)
        return self.plan_state(plan.id), changed

    def _last_revision(self, plan_id: str) -> Revision:
        row = self._db.execute(
            "SELECT * FROM revisions WHERE plan_id = ? ORDER BY number DESC LIMIT 1", (plan_id,)
        ).fetchone()
        if row is None:
            raise PlanError(f"no plan {plan_id!r} in this workspace (see 'rtexport plan list')")
        return Revision(
            row["plan_id"],
            row["number"],
            row["digest"],
            row["toml"],
            row["token"],
            _dt(row["created_at"]),
            row["created_by"],
        )

    def _approval(self, plan_id: str, revision: int) -> Signature | None:
        row = self._db.execute(
            "SELECT * FROM approvals WHERE plan_id = ? AND revision = ?", (plan_id, revision)
        ).fetchone()
        return None if row is None else Signature(row["reviewer"], _dt(row["at"]))

    def _authorization(self, plan_id: str, revision: int) -> Signature | None:
        row = self._db.execute(
            "SELECT * FROM authorizations WHERE plan_id = ? AND revision = ?", (plan_id, revision)
        ).fetchone()
        return None if row is None else Signature(row["user"], _dt(row["at"]))

    def plan_ids(self) -> list[str]:
        return [r["id"] for r in self._db.execute("SELECT id FROM plans ORDER BY id")]

    def plan_state(self, plan_id: str) -> PlanState:
        rev = self._last_revision(plan_id)
        count = self._db.execute("SELECT COUNT(*) FROM revisions WHERE plan_id = ?", (plan_id,)).fetchone()[0]
        return PlanState(
            plan=parse_plan(rev.toml, f"plan {plan_id} revision {rev.number}"),
            revision=rev,
            revisions=count,
            approval=self._approval(plan_id, rev.number),
            authorization=self._authorization(plan_id, rev.number),
            dose=self.dose(plan_id, rev.number),
        )

    def clone_plan(self, plan_id: str, new_id: str, actor: str = "system") -> PlanState:
        state = self.plan_state(plan_id)
        if self._db.execute("SELECT 1 FROM plans WHERE id = ?", (new_id,)).fetchone():
            raise PlanError(f"plan {new_id!r} exists already")
        clone = state.plan.model_copy(update={"id": new_id})
        new_state, _ = self.load_plan(clone.to_toml(), f"clone of {plan_id}", actor)
        self.audit(actor, "plan-clone", "ok", new_id, 1, source_plan=plan_id, source_revision=state.revision.number)
        return new_state

    # -- approval and authorization ---------------------------------------------------------------------------
    def _qualified(self, action: str, user: str, password: str, plan_id: str, revision: int) -> User:
        who = self.authenticate(user, password, action, plan_id, revision)
        if not who.qualified:
            self.audit(user, action, "refused", plan_id, revision, reason=f"role {who.role.value} is not qualified")
            raise AuthError(f"{action}: {user} is a {who.role.value}; only a physicist may {action} a plan")
        return who

    def approve(self, plan_id: str, user: str, password: str) -> PlanState:
        state = self.plan_state(plan_id)
        rev = state.revision.number
        self._qualified("approve", user, password, plan_id, rev)
        if state.approved:
            raise PlanError(f"plan {plan_id} revision {rev} is approved already")
        if state.dose is None:
            self.audit(user, "approve", "refused", plan_id, rev, reason="no current dose")
            raise PlanError(f"plan {plan_id} revision {rev} has no current dose; run 'rtexport dose {plan_id}'")
        self._db.execute("INSERT INTO approvals VALUES (?,?,?,?)", (plan_id, rev, user, _iso(self.clock())))
        self.audit(user, "approve", "ok", plan_id, rev)
        return self.plan_state(plan_id)

    def authorize(self, plan_id: str, user: str, password: str) -> PlanState:
        state = self.plan_state(plan_id)
        rev = state.revision.number
        self._qualified("authorize", user, password, plan_id, rev)
        if state.approved:
            raise PlanError(f"plan {plan_id} is approved: export needs no authorization")
        self._db.execute(
            "INSERT OR REPLACE INTO authorizations VALUES (?,?,?,?)", (plan_id, rev, user, _iso(self.clock()))
        )
        self.audit(user, "authorize", "ok", plan_id, rev)
        return self.plan_state(plan_id)

    # -- dose -------------------------------------------------------------------------------------------------
    def save_dose(
        self,
        plan_id: str,
        revision: int,
        beams: Sequence[BeamDose],
        plan: DoseGrid,
        engine: str,
        actor: str = "system",
    ) -> None:
        def put(grid: DoseGrid) -> dict[str, Any]:
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(grid.gy, dtype=np.float32), allow_pickle=False)
            digest, _ = self.store.put(buf.getvalue())
            g = grid.geometry
            return {
                "sha256": digest,
                "origin_mm": g.origin_mm,
                "spacing_mm": g.spacing_mm,
                "shape": g.shape,
                "frame": grid.frame_of_reference_uid,
            }

        data = {
            "engine": engine,
            "plan": put(plan),
            "beams": [
                {
                    "name": b.beam_name,
                    "mu_per_fraction": b.mu_per_fraction,
                    "dose_per_fraction_gy": b.dose_per_fraction_gy,
                    "normalization_point_mm": b.normalization_point_mm,
                    "grid": put(b.dose),
                }
                for b in beams
            ],
        }
        self._db.execute(
            "INSERT OR REPLACE INTO doses VALUES (?,?,?,?)", (plan_id, revision, json.dumps(data), _iso(self.clock()))
        )
        self.audit(
            actor,
            "dose",
            "ok",
            plan_id,
            revision,
            engine=engine,
            mu={b.beam_name: round(b.mu_per_fraction, 1) for b in beams},
        )

    # -- built objects ----------------------------------------------------------------------------------------
    def built(self, key: str, build: Callable[[], bytes]) -> str:
        """The stored digest of the object built for ``key`` (its UID key): built once, then the same bytes on
        every export, so one UID never stands for two contents, even across software versions."""
        row = self._db.execute("SELECT sha256 FROM built WHERE key = ?", (key,)).fetchone()
        digest = None if row is None or not self.store.has(row["sha256"]) else str(row["sha256"])
        if digest is None:
            digest, _ = self.store.put(build())
            self._db.execute("INSERT OR REPLACE INTO built VALUES (?,?,?)", (key, digest, _iso(self.clock())))
        return digest

    def _grid(self, g: dict[str, Any]) -> DoseGrid:
        arr = np.load(self.store.path(g["sha256"]), allow_pickle=False)
        geometry = GridGeometry(tuple(g["origin_mm"]), tuple(g["spacing_mm"]), tuple(g["shape"]))
        return DoseGrid(geometry, arr, g["frame"])

    def dose(self, plan_id: str, revision: int) -> StoredDose | None:
        row = self._db.execute("SELECT * FROM doses WHERE plan_id = ? AND revision = ?", (plan_id, revision)).fetchone()
        if row is None:
            return None
        d = json.loads(row["data"])
        beams = tuple(
            BeamDose(
                beam_name=b["name"],
                mu_per_fraction=b["mu_per_fraction"],
                dose=self._grid(b["grid"]),
                normalization_point_mm=tuple(b["normalization_point_mm"]),
                dose_per_fraction_gy=b["dose_per_fraction_gy"],
            )
            for b in d["beams"]
        )
        return StoredDose(revision, _dt(row["computed_at"]), beams, self._grid(d["plan"]), d["engine"])


def _drop_none(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _drop_none(v) for k, v in d.items() if v is not None}
    if isinstance(d, list):
        return [_drop_none(v) for v in d]
    return d


def default_home() -> Path:
    return Path(os.environ.get("RTEXPORT_HOME", "rtexport-home"))
