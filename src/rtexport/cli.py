"""The ``rtexport`` command line: parses, calls one service, renders its result. No rule lives here.

Only typer is imported up front: every command imports what it uses (the workspace, numpy, pydantic models,
pydicom, the web server) when it runs, so ``rtexport --help`` and the quick listings answer at once.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from rtexport.errors import GateError, InputError, RTExportError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress as Bar

    from rtexport.export.build import PreparedExport
    from rtexport.model.people import Actor
    from rtexport.model.site import Site
    from rtexport.model.state import PlanState, Signature
    from rtexport.mucheck import MUCheck
    from rtexport.services.export import ExportReport, ProgressEvent
    from rtexport.workspace import Workspace

PROG = "rtexport"
RoleName = Literal["planner", "physicist"]  # rtexport.workspace.Role's values, without importing the workspace


class _Argument(TyperArgument):
    """An argument shown by its name alone (``PLAN``), as usage lines are written by hand."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        return name if self.required else f"[{name}]"


class _Command(TyperCommand):
    """Help that reads naturally: ``Usage: rtexport export [OPTIONS] PLAN``, an option with the name of its value
    (``--to DIR``), a flag with nothing after it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for p in self.params:
            if isinstance(p, TyperArgument):
                p.__class__ = _Argument
            elif isinstance(p, TyperOption) and p.is_flag and p.metavar is None:
                p.metavar = ""

    def get_help_option(self, ctx: Any) -> TyperOption | None:
        option = super().get_help_option(ctx)
        if isinstance(option, TyperOption):
            option.metavar = ""
        return option


class _Group(TyperGroup):
    def get_help_option(self, ctx: Any) -> TyperOption | None:
        option = super().get_help_option(ctx)
        if isinstance(option, TyperOption):
            option.metavar = ""
        return option


def _typer(help: str) -> typer.Typer:
    return typer.Typer(help=help, no_args_is_help=True, cls=_Group)


app = typer.Typer(
    help="DICOM export for electron radiotherapy planning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=_Group,
)
site_app = _typer("Site configuration.")
course_app = _typer("Imported courses.")
plan_app = _typer("Plans and their revisions.")
user_app = _typer("Users (planners and physicists).")
app.add_typer(site_app, name="site")
app.add_typer(course_app, name="course")
app.add_typer(plan_app, name="plan")
app.add_typer(user_app, name="user")

HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home",
        envvar="RTEXPORT_HOME",
        metavar="DIR",
        help="Workspace folder (default: ./rtexport-home).",
        show_default=False,
    ),
]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password(s) from standard input, one per line.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (the keys are listed in the README).")]
PlanArg = Annotated[str, typer.Argument(metavar="PLAN", help="Plan id (see 'rtexport plan list').", show_default=False)]


@app.callback()
def _root(
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            metavar="DIR",
            help="Workspace folder for every command (or RTEXPORT_HOME; default ./rtexport-home).",
        ),
    ] = None,
) -> None:
    # Commands read RTEXPORT_HOME; the group runs before they parse, so `rtexport --home DIR CMD` works too.
    if home is not None:
        os.environ["RTEXPORT_HOME"] = str(home)


# -- output ---------------------------------------------------------------------------------------------------

_consoles: dict[str, Console] = {}


def _console(stderr: bool = False) -> Console:
    key = "err" if stderr else "out"
    if key not in _consoles:
        from rich.console import Console

        _consoles[key] = Console(stderr=stderr)
    return _consoles[key]


def _print(text: str) -> None:
    """A line as it is: never wrapped, so a UID or a path can be copied whole."""
    _console().print(text, highlight=False, markup=False, soft_wrap=True)


def _wrapped(text: str, indent: str = "") -> None:
    """A paragraph wrapped to the terminal at spaces only (no word is ever cut), its later lines indented more."""
    width = max(40, _console().width)
    for line in textwrap.wrap(
        text,
        width,
        initial_indent=indent,
        subsequent_indent=indent + "    ",
        break_long_words=False,
        break_on_hyphens=False,
    ) or [indent]:
        _print(line)


def _warn(text: str) -> None:
    from rich.markup import escape

    _console(stderr=True).print(f"[yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=True)


def _json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _error(message: str) -> None:
    from rich.markup import escape

    _console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    _error(message)
    raise typer.Exit(code)


def _table(*columns: str, title: str | None = None) -> Any:
    """A rich table whose cells wrap at spaces and fold a word too long for its column, never truncate it."""
    from rich.table import Column, Table

    return Table(*(Column(c, overflow="fold") for c in columns), title=title)


def _show(table: Any) -> None:
    _console().print(table)


# -- workspace --------------------------------------------------------------------------------------------------


def _home(home: Path | None) -> Path:
    return home if home is not None else Path(os.environ.get("RTEXPORT_HOME", "rtexport-home"))


def _ws(home: Path | None) -> Workspace:
    from rtexport.workspace import Workspace

    return Workspace.open(_home(home))


def _actor(user: str | None = None) -> Actor:
    from rtexport.model.people import Actor

    return Actor.here("cli", user)


def _password(from_stdin: bool, prompt: str = "Password") -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            fail(f"{prompt}: expected a line on standard input")
        return line.rstrip("\r\n")
    return str(typer.prompt(prompt, hide_input=True))


def _when(t: Any) -> str:
    from rtexport.model.display import local_time

    return local_time(t)


def _signer(s: Signature) -> str:
    from rtexport.model.display import person

    shown = person(s.person_name)
    return f"{shown} ({s.user})" if shown != s.user else s.user


def _signature_json(s: Signature | None) -> dict[str, str] | None:
    return None if s is None else {"user": s.user, "name": s.person_name, "at": s.at.isoformat()}


# -- commands ---------------------------------------------------------------------------------------------------


@app.command(cls=_Command)
def init(home: HomeOpt = None) -> None:
    """Create an empty workspace (site.toml, database, store)."""
    from rtexport.workspace import Workspace

    ws = Workspace.init(_home(home))
    _print(
        f"workspace created in {ws.home}; edit {ws.site_path}, run 'rtexport site check', then add the first "
        "physicist with 'rtexport user add NAME --role physicist --name Family^Given'"
    )


@site_app.command("check", cls=_Command)
def site_check(home: HomeOpt = None) -> None:
    """List every problem in site.toml, each with its path, and whether export is available."""
    from rtexport.services.site import site_status

    ws = _ws(home)
    status = site_status(ws)
    for p in status.problems:
        _print(f"{ws.site_path}: {p}")
    if status.site is not None:
        for reason in status.unavailable:
            _print(f"export unavailable: {reason}")
    if status.problems:
        fail(status.summary())
    _print(status.summary())
    if status.unavailable:
        raise typer.Exit(1)


@app.command("import", cls=_Command)
def import_(
    folder: Annotated[
        Path, typer.Argument(metavar="FOLDER", help="Folder holding one CT series and one RT Structure Set.")
    ],
    course: Annotated[str, typer.Option("--course", metavar="ID", help="Id of the new course.")],
    home: HomeOpt = None,
) -> None:
    """Import one CT series and one RT Structure Set from FOLDER as a course."""
    from rtexport.services.courses import import_course

    result = import_course(_ws(home), folder, course, _actor())
    c = result.course
    _print(
        f"imported course {c.id}: patient {c.patient.patient_id}, {len(c.slices)} CT slices, "
        f"{len(c.structures)} structures (External: {c.external.name if c.external else 'none'})"
    )
    for path, reason in result.skipped:
        _print(f"  skipped {path}: {reason}")


@course_app.command("list", cls=_Command)
def course_list(as_json: JsonOpt = False, home: HomeOpt = None) -> None:
    """List the imported courses."""
    from rtexport.model.display import person
    from rtexport.services.courses import courses

    found = courses(_ws(home))
    if as_json:
        _json(
            [
                {
                    "id": c.id,
                    "patient_name": c.patient.patient_name,
                    "patient_id": c.patient.patient_id,
                    "slices": len(c.slices),
                    "structures": [s.name for s in c.structures],
                    "external": c.external.name if c.external else None,
                    "imported_at": c.imported_at,
                }
                for c in found
            ]
        )
        return
    table = _table("course", "patient", "slices", "structures", "External", "imported")
    for c in found:
        table.add_row(
            c.id,
            f"{person(c.patient.patient_name)} ({c.patient.patient_id})",
            str(len(c.slices)),
            ", ".join(s.name for s in c.structures),
            c.external.name if c.external else "-",
            _when(_iso(c.imported_at)) if c.imported_at else "-",
        )
    _show(table)


def _iso(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)


@plan_app.command("load", cls=_Command)
def plan_load(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Plan file (TOML, format = 1).")], home: HomeOpt = None
) -> None:
    """Load a plan file: a new plan, or a new revision when it changed."""
    from rtexport.model.plan import read_plan_file
    from rtexport.services.plans import load_plan

    _, text = read_plan_file(file)
    state, changed = load_plan(_ws(home), text, str(file), _actor())
    if changed:
        _print(f"plan {state.plan.id}: revision {state.revision.number} stored")
    else:
        _print(f"plan {state.plan.id}: unchanged (revision {state.revision.number})")


@plan_app.command("list", cls=_Command)
def plan_list(as_json: JsonOpt = False, home: HomeOpt = None) -> None:
    """List plans: id, label, revision, approval and dose state."""
    from rtexport.services.plans import plan_states

    states = plan_states(_ws(home))
    if as_json:
        _json(
            [
                {
                    "id": s.plan.id,
                    "label": s.plan.label,
                    "course": s.plan.course,
                    "revision": s.revision.number,
                    "revisions": s.revisions,
                    "approval": _signature_json(s.approval),
                    "authorization": _signature_json(s.authorization),
                    "dose": s.dose is not None,
                }
                for s in states
            ]
        )
        return
    table = _table("plan", "label", "course", "revision", "approval", "export authorization", "dose")
    for s in states:
        table.add_row(
            s.plan.id,
            s.plan.label,
            s.plan.course,
            f"{s.revision.number} of {s.revisions}",
            f"APPROVED by {_signer(s.approval)}" if s.approval else "UNAPPROVED",
            _signer(s.authorization) if s.authorization else "-",
            s.dose_state,
        )
    _show(table)


def _plan_json(s: PlanState, site: Site | None, check: MUCheck | None) -> dict[str, Any]:
    from rtexport.model.plan import default_cutout
    from rtexport.mucheck import equivalent_square_mm

    p = s.plan
    machine = site.machine(p.machine) if site else None
    beams = []
    for b in p.beams:
        app_ = machine.applicator(b.applicator) if machine else None
        outline = b.cutout_mm or (default_cutout(app_.shape, app_.opening_mm) if app_ else None)
        d = s.dose.beam(b.name) if s.dose else None
        beams.append(
            {
                "name": b.name,
                "energy_mev": b.energy_mev,
                "applicator": b.applicator,
                "cutout_mm": b.cutout_mm,
                "equivalent_square_mm": None if outline is None else round(equivalent_square_mm(outline), 1),
                "ssd_mm": b.ssd_mm,
                "gantry_deg": b.gantry_deg,
                "collimator_deg": b.collimator_deg,
                "couch_deg": b.couch_deg,
                "isocenter_mm": b.isocenter_mm,
                "target": b.target,
                "bolus": None if b.bolus is None else b.bolus.model_dump(),
                "weight": b.weight,
                "mu_per_fraction": d.mu_per_fraction if d else b.mu,
                "normalization_point_mm": d.normalization_point_mm if d else None,
                "dose_per_fraction_gy": d.dose_per_fraction_gy if d else None,
            }
        )
    return {
        "id": p.id,
        "label": p.label,
        "course": p.course,
        "machine": p.machine,
        "ct_curve": p.ct_curve,
        "external": p.external,
        "fractions": p.fractions,
        "prescription_gy": p.prescription_gy,
        "revision": s.revision.number,
        "revisions": s.revisions,
        "created_at": s.revision.created_at.isoformat(),
        "created_by": s.revision.created_by,
        "approval": _signature_json(s.approval),
        "authorization": _signature_json(s.authorization),
        "overrides": [{"structure": o.structure, "material": o.material} for o in p.overrides],
        "dose": None if s.dose is None else {"computed_at": s.dose.computed_at.isoformat(), "engine": s.dose.engine},
        "beams": beams,
        "mu_check": None if check is None else check.as_dict(),
    }


def _mm(point: Any) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in point) + ") mm" if point is not None else "-"


def _show_mu_check(check: MUCheck | None) -> None:
    if check is None:
        return
    _print(f"independent MU check (TG-71 hand calculation; action level {check.action_level_pct:g} %):")
    for b in check.beams:
        _wrapped(b.summary(check.action_level_pct), "  ")


@plan_app.command("show", cls=_Command)
def plan_show(
    plan: PlanArg,
    as_json: JsonOpt = False,
    as_toml: Annotated[
        bool, typer.Option("--toml", help="Print the current revision's plan file as loaded (to edit a copy).")
    ] = False,
    home: HomeOpt = None,
) -> None:
    """Show one plan: state, prescription, beams and the independent MU check."""
    from rtexport.errors import ConfigError
    from rtexport.services.checks import mu_check

    ws = _ws(home)
    s = ws.plan_state(plan)
    if as_toml:
        sys.stdout.write(s.revision.toml if s.revision.toml.endswith("\n") else s.revision.toml + "\n")
        return
    try:
        site: Site | None = ws.site()
    except ConfigError:
        site = None  # the plan is still worth showing; the check needs the site's tables
    check = mu_check(site, s) if site is not None else None
    if as_json:
        _json(_plan_json(s, site, check))
        return
    p = s.plan
    course = ws.course(p.course)
    from rtexport.model.display import person

    _print(
        f"{p.id} '{p.label}' · course {p.course} · patient {person(course.patient.patient_name)} "
        f"({course.patient.patient_id})"
    )
    _print(
        f"revision {s.revision.number} of {s.revisions}, loaded {_when(s.revision.created_at)} by "
        f"{s.revision.created_by}"
    )
    _print(
        "approval: " + (f"APPROVED by {_signer(s.approval)} on {_when(s.approval.at)}" if s.approval else "UNAPPROVED")
    )
    if not s.approved:
        auth = s.authorization
        _print("export authorization: " + (f"{_signer(auth)} on {_when(auth.at)}" if auth else "none"))
    _print(f"machine {p.machine} · CT curve {p.ct_curve} · External {p.external}")
    _print(
        f"prescription: {p.prescription_gy:g} Gy in {p.fractions} fractions "
        f"({p.prescription_per_fraction_gy:.3g} Gy per fraction)"
    )
    _print("density overrides: " + ("; ".join(f"{o.structure} → {o.material}" for o in p.overrides) or "none"))
    _print(
        f"dose: computed {_when(s.dose.computed_at)} ({s.dose.engine})"
        if s.dose
        else f"dose: none for this revision (run 'rtexport dose {p.id}')"
    )
    data = _plan_json(s, site, check)
    for b, j in zip(p.beams, data["beams"], strict=True):
        eq = j["equivalent_square_mm"]
        cutout = ("custom cutout" if b.cutout_mm else "open applicator") + (
            "" if eq is None else f" (equivalent square {eq:g} mm)"
        )
        if b.target:
            aim = f"aimed at the centroid of {b.target}"
        elif b.aim_mm is not None:
            aim = "aimed at " + _mm(b.aim_mm)
        else:
            aim = "isocenter " + _mm(b.isocenter_mm)
        ssd = "SSD traced from the isocenter" if b.ssd_mm is None else f"SSD {b.ssd_mm:g} mm"
        _wrapped(f"beam {b.name}: {b.energy_mev:g} MeV, applicator {b.applicator}, {cutout}, {ssd}")
        _wrapped(f"gantry {b.gantry_deg:g}°, collimator {b.collimator_deg:g}°, couch {b.couch_deg:g}°; {aim}", "  ")
        bolus = (
            f"{b.bolus.thickness_mm:g} mm {b.bolus.material}, margin {b.bolus.margin_mm:g} mm" if b.bolus else "none"
        )
        _wrapped(f"bolus: {bolus}", "  ")
        mu = j["mu_per_fraction"]
        if j["normalization_point_mm"] is not None:
            _wrapped(
                f"{mu:.1f} MU per fraction; normalization point {_mm(j['normalization_point_mm'])}, "
                f"{j['dose_per_fraction_gy']:.3f} Gy per fraction there",
                "  ",
            )
        elif mu is not None:
            _wrapped(f"{mu:.1f} MU per fraction (from the plan)", "  ")
    _show_mu_check(check)


@plan_app.command("clone", cls=_Command)
def plan_clone(
    plan: Annotated[str, typer.Argument(metavar="PLAN", help="Plan id to copy.")],
    new_id: Annotated[str, typer.Argument(metavar="NEW_ID", help="Id of the copy.")],
    label: Annotated[
        str | None, typer.Option("--label", metavar="TEXT", help="Label of the copy (default: the same).")
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Make an unapproved copy of PLAN under NEW_ID."""
    from rtexport.services.plans import clone_plan

    s = clone_plan(_ws(home), plan, new_id, _actor(), label)
    _print(f"plan {s.plan.id} '{s.plan.label}': unapproved copy of {plan}, revision 1")


@user_app.command("add", cls=_Command)
def user_add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Login name.")],
    role: Annotated[RoleName, typer.Option("--role", metavar="ROLE", help="planner, or physicist (qualified).")],
    full_name: Annotated[
        str,
        typer.Option("--name", metavar="Family^Given", help="Full name as DICOM writes a person.", show_default=False),
    ] = "",
    by: Annotated[
        str | None,
        typer.Option("--by", metavar="NAME", help="The physicist who consents (needed for every user but the first)."),
    ] = None,
    password_stdin: PasswordStdin = False,
    home: HomeOpt = None,
) -> None:
    """Add a user. The first user is a physicist; later ones need a physicist's consent (--by and password).

    With --password-stdin, the new user's password is the first line, the consenting physicist's the second."""
    from rtexport.model.people import Role
    from rtexport.services.users import add_user

    ws = _ws(home)
    password = _password(password_stdin, f"Password for {name}")
    consent = None if by is None else (by, _password(password_stdin, f"Password of {by} (consent)"))
    user = add_user(ws, name, Role(role), password, _actor(), full_name=full_name, consent=consent)
    _print(f"user {user.name} added ({user.role.value})")


@user_app.command("list", cls=_Command)
def user_list(as_json: JsonOpt = False, home: HomeOpt = None) -> None:
    """List users and their roles."""
    from rtexport.model.display import person
    from rtexport.services.users import users

    found = users(_ws(home))
    if as_json:
        _json([{"name": u.name, "role": u.role.value, "full_name": u.full_name} for u in found])
        return
    table = _table("user", "role", "name")
    for u in found:
        table.add_row(u.name, u.role.value, person(u.full_name) if u.full_name else "-")
    _show(table)


@app.command(cls=_Command)
def approve(
    plan: PlanArg,
    user: Annotated[str, typer.Option("--user", metavar="NAME", help="The approving physicist.")],
    acknowledge_mu_check: Annotated[
        bool,
        typer.Option(
            "--acknowledge-mu-check",
            help="Approve although the independent MU check differs beyond the site's action level or cannot "
            "check a beam (recorded in the audit log).",
        ),
    ] = False,
    password_stdin: PasswordStdin = False,
    home: HomeOpt = None,
) -> None:
    """Approve PLAN's current revision (physicists only; needs current dose)."""
    from rtexport.services.approval import approve as approve_plan
    from rtexport.services.checks import mu_check

    ws = _ws(home)
    credentials = (user, _password(password_stdin))
    with _console(stderr=True).status("approving and preparing the export objects ..."):
        signed = approve_plan(ws, plan, credentials, _actor(), acknowledge_mu_check=acknowledge_mu_check)
    s = signed.state
    assert s.approval is not None
    _print(f"plan {plan} revision {s.revision.number} APPROVED by {_signer(s.approval)} on {_when(s.approval.at)}")
    _show_mu_check(mu_check(ws.site(), s))
    if signed.warning:
        _warn(signed.warning)


@app.command(cls=_Command)
def authorize(
    plan: PlanArg,
    user: Annotated[str, typer.Option("--user", metavar="NAME", help="The authorizing physicist.")],
    password_stdin: PasswordStdin = False,
    home: HomeOpt = None,
) -> None:
    """Authorize export of an unapproved PLAN's current revision (physicists only)."""
    from rtexport.services.approval import authorize as authorize_plan

    s = authorize_plan(_ws(home), plan, (user, _password(password_stdin)), _actor()).state
    assert s.authorization is not None
    _print(f"export of plan {plan} revision {s.revision.number} authorized by {_signer(s.authorization)}")


def _detail_lines(detail: object, key: str = "") -> list[str]:
    """An audit record's detail as "key: value" lines, nested keys joined with dots."""
    if isinstance(detail, dict) and detail:
        return [line for k, v in detail.items() for line in _detail_lines(v, f"{key}.{k}" if key else str(k))]
    if isinstance(detail, list) and detail and all(isinstance(v, str) for v in detail):
        return [f"{key}: {', '.join(detail)}"]
    if isinstance(detail, list) and detail and all(isinstance(v, dict) for v in detail):
        return [line for i, v in enumerate(detail) for line in _detail_lines(v, f"{key}[{i}]")]
    value = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False)
    return [f"{key}: {value}" if key else value]


@app.command(cls=_Command)
def audit(
    plan: Annotated[str | None, typer.Option("--plan", metavar="PLAN", help="Only this plan's records.")] = None,
    as_json: JsonOpt = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Prove the log's hash chain, or name the first record not as written.")
    ] = False,
    home: HomeOpt = None,
) -> None:
    """Show the append-only audit log, oldest first (times in local time; --json gives them in UTC), or, with
    --verify, prove that nothing in it was changed or removed."""
    if verify:
        check = _ws(home).audit_log.verify()
        for problem in check.problems:
            _print(f"BROKEN: {problem}")
        if not check.ok:
            where = f"record {check.first_broken}" if check.first_broken is not None else "its protection"
            fail(f"the audit log is not as rtexport wrote it: first broken at {where}")
        _print(f"audit log intact: {check.records} record(s); last record {check.last_id}, sha256 {check.head}")
        return
    entries = _ws(home).audit_log.entries(plan)
    if as_json:
        _json(entries)
        return
    for e in entries:
        what = e["action"] + (f" {e['plan_id']}" if e["plan_id"] else "")
        what += "" if e["revision"] is None else f" rev {e['revision']}"
        via = f"{e['via']}, " if e["via"] else ""
        _wrapped(
            f"#{e['id']} {_when(_iso(e['at']))} {e['actor']} ({via}account {e['os_user']}): {what}: {e['outcome']}"
        )
        for line in _detail_lines(e["detail"]):
            _wrapped(line, "    ")


@app.command(cls=_Command)
def verify(home: HomeOpt = None) -> None:
    """Check every stored file the workspace references (CT images, structure sets, dose arrays, built objects)
    against its SHA-256; list each missing or damaged one with what references it."""
    from rtexport.services.verify import verify_workspace

    with _console(stderr=True).status("hashing the stored files ..."):
        report = verify_workspace(_ws(home), _actor())
    for problem in report.problems:
        _print(f"{problem.state.upper()}: {problem.describe()}")
    if not report.ok:
        fail(report.summary())
    _print(report.summary())


@app.command(cls=_Command)
def dose(
    plan: PlanArg,
    grid_mm: Annotated[
        float | None, typer.Option("--grid-mm", metavar="MM", help="Dose grid spacing in mm (default: the plan's).")
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Compute and store dose for PLAN's current revision (one grid per beam, and their sum)."""
    from rtexport.services.checks import mu_check
    from rtexport.services.dose import compute_dose

    ws = _ws(home)
    with _console(stderr=True).status(f"computing dose for {plan} ..."):
        result = compute_dose(ws, plan, _actor(), grid_mm)
    state = result.state
    assert state.dose is not None
    table = _table("beam", "MU/fx", "dose/fx at norm. point (Gy)", "normalization point (mm)")
    for b in state.dose.beams:
        table.add_row(
            b.beam_name,
            f"{b.mu_per_fraction:.1f}",
            f"{b.dose_per_fraction_gy:.3f}",
            ", ".join(f"{v:.1f}" for v in b.normalization_point_mm),
        )
    _show(table)
    g = state.dose.plan.load()
    _print(
        f"plan dose: max {float(g.gy.max()):.2f} Gy on a {' x '.join(map(str, g.geometry.shape[::-1]))} "
        f"grid of {g.geometry.spacing_mm[0]:g} mm (revision {state.revision.number})"
    )
    _show_mu_check(mu_check(ws.site(), state))
    for w in result.warnings:
        _warn(w)


@app.command(cls=_Command)
def report(
    plan: PlanArg,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="FILE",
            help="Where to write the PDF (default: ./report-PLAN-revN-ID.pdf).",
            show_default=False,
        ),
    ] = None,
    listing: Annotated[bool, typer.Option("--list", help="List the plan's reports made so far instead.")] = False,
    report_id: Annotated[
        int | None, typer.Option("--id", metavar="ID", help="Write report ID made earlier instead of a new one.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="With --list: print JSON (keys in the README).")] = False,
    home: HomeOpt = None,
) -> None:
    """Make the plan report (PDF) of PLAN's current revision, keep it in the workspace and write it to a file."""
    from rtexport.services.report import make_report, plan_reports, report_filename, report_pdf

    if as_json and not listing:
        raise typer.BadParameter("--json lists the reports: give it with --list", param_hint="--json")
    if listing and (report_id is not None or out is not None):
        raise typer.BadParameter("--list shows the reports; --id and --out write one", param_hint="--list")
    ws = _ws(home)
    if listing:
        found = plan_reports(ws, plan)
        if as_json:
            _json(
                [
                    {
                        "id": r.id,
                        "plan": r.plan_id,
                        "revision": r.revision,
                        "approved": r.approved,
                        "made_at": r.made_at.isoformat(),
                        "made_by": r.made_by,
                        "sha256": r.sha256,
                        "size": r.size,
                    }
                    for r in found
                ]
            )
            return
        table = _table("id", "made", "by", "revision", "plan state", "kB")
        for r in found:
            state = "APPROVED" if r.approved else "UNAPPROVED"
            table.add_row(str(r.id), _when(r.made_at), r.made_by, str(r.revision), state, f"{r.size / 1000:.0f}")
        _show(table)
        return
    if report_id is not None:
        stored, pdf = report_pdf(ws, plan, report_id)
    else:
        with _console(stderr=True).status(f"making the report of {plan} ..."):
            made = make_report(ws, plan, _actor())
        stored, pdf = made.stored, made.pdf
    target = out if out is not None else Path(report_filename(stored))
    try:
        target.write_bytes(pdf)
    except OSError as e:
        fail(f"cannot write {target}: {e.strerror}; the report is kept in the workspace as report {stored.id}")
    state = "APPROVED" if stored.approved else "UNAPPROVED"
    _print(
        f"report {stored.id} of plan {plan} revision {stored.revision} ({state}) written to {target} "
        f"({len(pdf) / 1000:.0f} kB)"
    )


ItemsOpt = Annotated[
    str,
    typer.Option("--items", metavar="ITEMS", help="Comma-separated: ct,rtstruct,rtplan,dose-plan,dose-beam."),
]
ServerOpt = Annotated[
    str | None, typer.Option("--server", metavar="NAME", help="A DICOM server from site.toml, by name.")
]
AetOpt = Annotated[str | None, typer.Option("--aet", metavar="AE_TITLE", help="Custom server: called AE title.")]
HostOpt = Annotated[str | None, typer.Option("--host", metavar="HOST", help="Custom server: host.")]
PortOpt = Annotated[int | None, typer.Option("--port", metavar="PORT", help="Custom server: port.", min=1, max=65535)]
TlsOpt = Annotated[
    Path | None,
    typer.Option("--tls-ca", metavar="FILE", help="Custom server: use TLS, verifying with this CA file."),
]


class _BarProgress:
    """Export progress as a rich progress bar, with one line per object that did not simply arrive."""

    def __init__(self, bar: Bar, label: str) -> None:
        self.bar = bar
        self.label = label
        self.task = bar.add_task(label, total=None)
        self.lines: list[str] = []

    def start(self, prepared: PreparedExport) -> None:
        self.bar.update(self.task, total=prepared.total_bytes)

    def done(self, event: ProgressEvent) -> None:
        self.bar.advance(self.task, event.obj.size)
        status = "" if event.status is None else f" 0x{event.status:04X}"
        self.lines.append(f"{event.outcome:<8} {event.obj.filename}{status} {event.meaning}".rstrip())


def _bar() -> Bar:
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=_console(stderr=True),
        transient=True,
    )


@app.command("export", cls=_Command)
def export(
    plan: PlanArg,
    to: Annotated[
        Path | None, typer.Option("--to", metavar="DIR", help="Folder (default: the site's export folder).")
    ] = None,
    items: ItemsOpt = "ct,rtstruct,rtplan,dose-plan,dose-beam",
    server: ServerOpt = None,
    aet: AetOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    tls_ca: TlsOpt = None,
    commit: Annotated[bool, typer.Option("--commit", help="Ask the server to commit storage (push model).")] = False,
    user: Annotated[
        str | None,
        typer.Option(
            "--user", metavar="NAME", help="Record this rtexport user as the exporter (asks for their password)."
        ),
    ] = None,
    password_stdin: PasswordStdin = False,
    home: HomeOpt = None,
) -> None:
    """Export PLAN's DICOM objects to a folder, or to a DICOM server (C-STORE)."""
    from rtexport.services.export import export_plan, parse_items, resolve_destination
    from rtexport.services.users import authenticate

    ws = _ws(home)
    try:
        chosen = parse_items(items)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--items") from e
    actor = _actor()
    if user is not None:
        actor = actor.as_user(authenticate(ws, user, _password(password_stdin), "export", actor).name)
    destination = resolve_destination(
        ws, ws.site(), folder=to, server=server, aet=aet, host=host, port=port, tls_ca=tls_ca
    )
    with _bar() as bar:
        progress = _BarProgress(bar, f"exporting to {destination}")
        result = export_plan(ws, plan, chosen, destination, actor, progress, commit=commit)
    _summary(result)
    if result.sent is not None:
        for line in progress.lines:
            _print(line)
        _print(result.message())
        if not result.ok:
            if not result.sent.all_stored:
                fail("not every instance was stored; run the same export again to send the rest", 3)
            fail("every instance was stored, but the server did not commit to keeping all of them (see above)", 3)


@app.command(cls=_Command)
def echo(
    server: ServerOpt = None,
    aet: AetOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    tls_ca: TlsOpt = None,
    home: HomeOpt = None,
) -> None:
    """Test a DICOM server with C-ECHO."""
    from rtexport.services.export import Destination, check_server, resolve_destination

    ws = _ws(home)
    if server is None and aet is None and host is None and port is None:
        raise typer.BadParameter("give --server NAME or --aet/--host/--port")
    dest = resolve_destination(ws, ws.site(), server=server, aet=aet, host=host, port=port, tls_ca=tls_ca)
    assert isinstance(dest, Destination)
    _print(check_server(ws, dest, _actor()))


@app.command(cls=_Command)
def serve(
    host: Annotated[str, typer.Option("--host", metavar="ADDRESS", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="Port to listen on.")] = 8000,
    cert: Annotated[
        Path | None, typer.Option("--cert", metavar="FILE", help="TLS certificate (PEM): serve HTTPS.")
    ] = None,
    key: Annotated[Path | None, typer.Option("--key", metavar="FILE", help="TLS private key (PEM) of --cert.")] = None,
    insecure_http: Annotated[
        bool, typer.Option("--insecure-http", help="Serve a non-loopback address over plain HTTP anyway.")
    ] = False,
    home: HomeOpt = None,
) -> None:
    """Serve the web page (plans, pictures, DVH, reports, the Export block). Beyond loopback, only over TLS."""
    from rtexport.web.app import serve as run

    ws = _ws(home)
    ws.close()

    run(ws.home, host=host, port=port, cert=cert, key=key, insecure_http=insecure_http, warn=_warn)


@app.command(cls=_Command)
def demo(
    home: Annotated[
        Path, typer.Option("--home", metavar="DIR", help="Demo workspace folder (replaced on each run).")
    ] = Path("rtexport-demo"),
) -> None:
    """Build the demo: phantom course, site, users, two-beam plan; compute dose; authorize; export everything."""
    from rtexport.services.demo import run_demo

    with _bar() as bar:
        result = run_demo(home, step=lambda s: _print(f"- {s}"), progress=_BarProgress(bar, "exporting"))
    assert result.state.dose is not None
    for b in result.state.dose.beams:
        _print(f"    beam {b.beam_name}: {b.mu_per_fraction:.1f} MU/fraction")
    _summary(result.export)
    _print(f"demo workspace: {result.workspace.home}  (try: rtexport --home {result.workspace.home} plan show CW-E1)")
    result.workspace.close()


def _summary(report: ExportReport) -> None:
    """A table of what was exported, then each new object's SOP Instance UID on a line of its own (never wrapped,
    so it can be copied whole)."""
    from rtexport.export.objects import ObjectKind

    prep = report.prepared
    state = prep.state
    table = _table(
        "object",
        "files",
        "MB",
        title=f"export of {state.plan.id} revision "
        f"{state.revision.number} ({'APPROVED' if state.approved else 'UNAPPROVED'}) to {report.destination}",
    )
    by_kind: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    for o in prep.objects:
        name = o.description if o.kind is not ObjectKind.CT else "CT Images"
        by_kind.setdefault(name, []).append(o.sop_instance_uid)
        sizes[name] = sizes.get(name, 0) + o.size
    for name, uids in by_kind.items():
        table.add_row(name, str(len(uids)), f"{sizes[name] / 1e6:.2f}")
    _show(table)
    for name, uids in by_kind.items():
        if len(uids) == 1:
            _print(f"{name}: {uids[0]}")
    if report.written is not None:
        _print(f"{report.message()}; {prep.total_bytes / 1e6:.1f} MB in all")
    for warning in report.warnings:
        _warn(warning)


def main() -> None:
    try:
        app(prog_name=PROG)
    except (GateError, InputError) as e:
        _error(str(e))
        sys.exit(2)
    except RTExportError as e:
        _error(str(e))
        sys.exit(1)
