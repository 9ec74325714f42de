"""Commands that set a workspace up: ``init``, ``site check``, ``import``, ``course list``, ``user add|list|role``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rtexport.cli.base import (
    Command,
    HomeOpt,
    JsonOpt,
    PasswordStdin,
    RoleName,
    actor,
    app,
    course_app,
    fail,
    iso,
    password,
    print_json,
    say,
    show,
    site_app,
    table,
    user_app,
    when,
    ws,
)


@app.command(cls=Command)
def init(home: HomeOpt = None) -> None:
    """Create an empty workspace (site.toml, database, store)."""
    from rtexport.services.workspaces import create_workspace

    made = create_workspace(home)
    say(
        f"workspace created in {made.home}; edit {made.site_path}, run 'rtexport site check', then add the first "
        "physicist with 'rtexport user add NAME --role physicist --name Family^Given'"
    )


@site_app.command("check", cls=Command)
def site_check(home: HomeOpt = None) -> None:
    """List every problem in site.toml, each with its path, and whether export is available."""
    from rtexport.services.site import site_status

    status = site_status(ws(home))
    for p in status.problems:
        say(f"{status.path}: {p}")
    if status.site is not None:
        for reason in status.unavailable:
            say(f"export unavailable: {reason}")
    if status.problems:
        fail(status.summary())
    say(status.summary())
    if status.unavailable:
        raise typer.Exit(1)


@app.command("import", cls=Command)
def import_(
    folder: Annotated[
        Path, typer.Argument(metavar="FOLDER", help="Folder holding one CT series and one RT Structure Set.")
    ],
    course: Annotated[str, typer.Option("--course", metavar="ID", help="Id of the new course.")],
    home: HomeOpt = None,
) -> None:
    """Import one CT series and one RT Structure Set from FOLDER as a course."""
    from rtexport.services.courses import import_course

    result = import_course(ws(home), folder, course, actor())
    c = result.course
    say(
        f"imported course {c.id}: patient {c.patient.patient_id}, {len(c.slices)} CT slices, "
        f"{len(c.structures)} structures (External: {c.external.name if c.external else 'none'})"
    )
    for path, reason in result.skipped:
        say(f"  skipped {path}: {reason}")


@course_app.command("list", cls=Command)
def course_list(as_json: JsonOpt = False, home: HomeOpt = None) -> None:
    """List the imported courses."""
    from rtexport.model.display import person
    from rtexport.services.courses import courses

    found = courses(ws(home))
    if as_json:
        print_json(
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
    t = table("course", "patient", "slices", "structures", "External", "imported")
    for c in found:
        t.add_row(
            c.id,
            f"{person(c.patient.patient_name)} ({c.patient.patient_id})",
            str(len(c.slices)),
            ", ".join(s.name for s in c.structures),
            c.external.name if c.external else "-",
            when(iso(c.imported_at)) if c.imported_at else "-",
        )
    show(t)


ByOpt = Annotated[
    str | None,
    typer.Option("--by", metavar="NAME", help="The physicist who consents (needed for every user but the first)."),
]


@user_app.command("add", cls=Command)
def user_add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Login name.")],
    role: Annotated[RoleName, typer.Option("--role", metavar="ROLE", help="planner, or physicist (qualified).")],
    full_name: Annotated[
        str,
        typer.Option("--name", metavar="Family^Given", help="Full name as DICOM writes a person.", show_default=False),
    ] = "",
    by: ByOpt = None,
    password_stdin: PasswordStdin = False,
    home: HomeOpt = None,
) -> None:
    """Add a user. The first user is a physicist; later ones need a physicist's consent (--by and password).

    With --password-stdin, the new user's password is the first line, the consenting physicist's the second."""
    from rtexport.model.people import Role
    from rtexport.services.users import add_user

    workspace = ws(home)
    secret = password(password_stdin, f"Password for {name}")
    consent = None if by is None else (by, password(password_stdin, f"Password of {by} (consent)"))
    user = add_user(workspace, name, Role(role), secret, actor(), full_name=full_name, consent=consent)
    say(f"user {user.name} added ({user.role.value})")


@user_app.command("role", cls=Command)
def user_role(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The user whose role changes.")],
    role: Annotated[RoleName, typer.Option("--role", metavar="ROLE", help="planner, or physicist (qualified).")],
    by: Annotated[str, typer.Option("--by", metavar="PHYSICIST", help="The physicist who changes it.")],
    password_stdin: PasswordStdin = False,
    home: HomeOpt = None,
) -> None:
    """Change a user's role (a physicist's name and password; audited). The last physicist keeps the role."""
    from rtexport.model.people import Role
    from rtexport.services.users import set_role

    workspace = ws(home)
    consent = (by, password(password_stdin, f"Password of {by}"))
    user = set_role(workspace, name, Role(role), actor(), consent)
    say(f"user {user.name} is now a {user.role.value} (changed by {by})")


@user_app.command("list", cls=Command)
def user_list(as_json: JsonOpt = False, home: HomeOpt = None) -> None:
    """List users and their roles."""
    from rtexport.model.display import person
    from rtexport.services.users import users

    found = users(ws(home))
    if as_json:
        print_json([{"name": u.name, "role": u.role.value, "full_name": u.full_name} for u in found])
        return
    t = table("user", "role", "name")
    for u in found:
        t.add_row(u.name, u.role.value, person(u.full_name) if u.full_name else "-")
    show(t)
