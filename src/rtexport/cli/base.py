"""What every command shares: the typer app and its groups, help that reads naturally, the common options, and
output (plain lines never wrapped, paragraphs wrapped at spaces, tables, JSON, warnings and errors).

Only typer is imported up front: every command imports what it uses when it runs, so ``rtexport --help`` and the
quick listings answer at once.
"""

from __future__ import annotations

import gc
import json
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

if TYPE_CHECKING:
    from rich.console import Console

    from rtexport.model.people import Actor
    from rtexport.model.state import Signature
    from rtexport.services.workspaces import Workspace

PROG = "rtexport"
RoleName = Literal["planner", "physicist"]  # rtexport.model.people.Role's values, without importing it


class _Argument(TyperArgument):
    """An argument shown by its name alone (``PLAN``), as usage lines are written by hand."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        return name if self.required else f"[{name}]"


class Command(TyperCommand):
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


# The order `rtexport --help` lists the commands in: setting up, planning, signing, sending, records.
ORDER = (
    "init", "site", "import", "course", "user", "plan", "dose", "dose-accept", "approve", "authorize", "report",
    "export", "echo", "query", "retrieve", "receive", "incoming", "serve", "audit", "verify", "demo",
)  # fmt: skip


class Group(TyperGroup):
    """A group whose flags show no value (``--version``) and whose commands are listed in :data:`ORDER`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for p in self.params:
            if isinstance(p, TyperOption) and p.is_flag and p.metavar is None:
                p.metavar = ""

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))

    def get_help_option(self, ctx: Any) -> TyperOption | None:
        option = super().get_help_option(ctx)
        if isinstance(option, TyperOption):
            option.metavar = ""
        return option


def _typer(help: str) -> typer.Typer:
    return typer.Typer(help=help, no_args_is_help=True, cls=Group)


app = typer.Typer(
    help="DICOM export for electron radiotherapy planning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=Group,
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

# -- output ---------------------------------------------------------------------------------------------------

_consoles: dict[str, Console] = {}


def console(stderr: bool = False) -> Console:
    key = "err" if stderr else "out"
    if key not in _consoles:
        from rich.console import Console

        _consoles[key] = Console(stderr=stderr)
    return _consoles[key]


def say(text: str) -> None:
    """A line as it is: never wrapped, so a UID or a path can be copied whole."""
    console().print(text, highlight=False, markup=False, soft_wrap=True)


def wrapped(text: str, indent: str = "") -> None:
    """A paragraph wrapped to the terminal at spaces only (no word is ever cut), its later lines indented more."""
    width = max(40, console().width)
    for line in textwrap.wrap(
        text,
        width,
        initial_indent=indent,
        subsequent_indent=indent + "    ",
        break_long_words=False,
        break_on_hyphens=False,
    ) or [indent]:
        say(line)


def warn(text: str) -> None:
    from rich.markup import escape

    console(stderr=True).print(f"[yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=True)


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def error(message: str) -> None:
    from rich.markup import escape

    console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    error(message)
    raise typer.Exit(code)


def table(*columns: str, title: str | None = None) -> Any:
    """A rich table whose cells wrap at spaces and fold a word too long for its column, never truncate it."""
    from rich.table import Column, Table

    return Table(*(Column(c, overflow="fold") for c in columns), title=title)


def show(t: Any) -> None:
    console().print(t)


# -- workspace, who acts, passwords, names and times ------------------------------------------------------------


@contextmanager
def quiet_collector() -> Iterator[None]:
    """Heavy imports (numpy, scipy, pydicom, the models) without the cyclic garbage collector: they make hundreds of
    thousands of objects and no garbage, and the collector's passes over them took about a tenth of their time.
    What they made is then frozen out of later passes (the collector runs again afterwards)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was:
            gc.enable()


def ws(home: Path | None) -> Workspace:
    from rtexport.services.workspaces import open_workspace

    return open_workspace(home)


def actor(user: str | None = None) -> Actor:
    from rtexport.model.people import Actor

    return Actor.here("cli", user)


def password(from_stdin: bool, prompt: str = "Password") -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            fail(f"{prompt}: expected a line on standard input")
        return line.rstrip("\r\n")
    return str(typer.prompt(prompt, hide_input=True))


def when(t: Any) -> str:
    from rtexport.model.display import local_time

    return local_time(t)


def iso(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)


def signer(s: Signature) -> str:
    from rtexport.model.display import person

    shown = person(s.person_name)
    return f"{shown} ({s.user})" if shown != s.user else s.user


def signature_json(s: Signature | None) -> dict[str, str] | None:
    return None if s is None else {"user": s.user, "name": s.person_name, "at": s.at.isoformat()}


def mm(point: Any) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in point) + ") mm" if point is not None else "-"
