"""The ``rtexport`` command line: parses, calls one service, renders its result. No rule lives here.

One module per group of commands (:mod:`.setup`: workspace, site, import, courses, users; :mod:`.plans`;
:mod:`.signing`: dose, approval, authorization, reports; :mod:`.transfer`: export, C-ECHO, the web page, the demo;
:mod:`.records`: audit log and verify); :mod:`.base` holds the app, the shared options and the output helpers.
The CLI configures :mod:`logging` (``--log-level``); the library never does.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from rtexport import __version__
from rtexport.cli import network, plans, records, setup, signing, transfer
from rtexport.cli.base import PROG, RoleName, app, error
from rtexport.errors import GateError, InputError, RTExportError

__all__ = ["PROG", "RoleName", "app", "main"]
_COMMANDS = (network, plans, records, setup, signing, transfer)  # importing them registers their commands

LogLevel = Literal["debug", "info", "warning", "error"]
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _version(shown: bool) -> None:
    if shown:
        typer.echo(f"{PROG} {__version__}")
        raise typer.Exit()


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
    log_level: Annotated[
        LogLevel | None,
        typer.Option(
            "--log-level",
            metavar="LEVEL",
            help="Log to standard error from this level on: debug, info, warning or error (default: warning; "
            "'serve' logs its requests at info).",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    # Commands read RTEXPORT_HOME; the group runs before they parse, so `rtexport --home DIR CMD` works too.
    if home is not None:
        os.environ["RTEXPORT_HOME"] = str(home)
    logging.basicConfig(level=(log_level or "warning").upper(), format=LOG_FORMAT, stream=sys.stderr)
    if log_level is not None:
        transfer.LOG_LEVEL = log_level


def main() -> None:
    # rtexport's models use no pydantic plugin, and looking for them reads every installed package's entry points
    # (tens of ms of each command's start); a plugin is still loaded when this is set otherwise, e.g. to ""
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        app(prog_name=PROG)
    except (GateError, InputError) as e:
        error(str(e))
        sys.exit(2)
    except RTExportError as e:
        error(str(e))
        sys.exit(1)
