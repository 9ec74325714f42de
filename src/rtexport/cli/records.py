"""``audit`` and ``verify``: the audit log and the proof that nothing stored was changed."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from rtexport.cli.base import (
    Command,
    HomeOpt,
    JsonOpt,
    actor,
    app,
    console,
    fail,
    iso,
    print_json,
    say,
    when,
    wrapped,
    ws,
)


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


@app.command(cls=Command)
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
    from rtexport.services.records import audit_entries, verify_audit

    if verify:
        check = verify_audit(ws(home))
        for problem in check.problems:
            say(f"BROKEN: {problem}")
        if not check.ok:
            where = f"record {check.first_broken}" if check.first_broken is not None else "its protection"
            fail(f"the audit log is not as rtexport wrote it: first broken at {where}")
        say(f"audit log intact: {check.records} record(s); last record {check.last_id}, sha256 {check.head}")
        return
    entries = audit_entries(ws(home), plan)
    if as_json:
        print_json(entries)
        return
    for e in entries:
        what = e["action"] + (f" {e['plan_id']}" if e["plan_id"] else "")
        what += "" if e["revision"] is None else f" rev {e['revision']}"
        via = f"{e['via']}, " if e["via"] else ""
        wrapped(f"#{e['id']} {when(iso(e['at']))} {e['actor']} ({via}account {e['os_user']}): {what}: {e['outcome']}")
        for line in _detail_lines(e["detail"]):
            wrapped(line, "    ")


@app.command(cls=Command)
def verify(home: HomeOpt = None) -> None:
    """Check every stored file the workspace references (CT images, structure sets, dose arrays, built objects)
    against its SHA-256; list each missing or damaged one with what references it."""
    from rtexport.services.verify import verify_workspace

    with console(stderr=True).status("hashing the stored files ..."):
        report = verify_workspace(ws(home), actor())
    for problem in report.problems:
        say(f"{problem.state.upper()}: {problem.describe()}")
    for changed in report.rows_changed:
        say(f"CHANGED: {changed}")
    if not report.ok:
        fail(report.summary())
    say(report.summary())
