"""What the command line shows a physicist: help that reads naturally, every listing as JSON with the keys the
documentation lists, the plan with its MU check, the plan file to edit a copy from, an audit log whose lines never
cut a word, reports, and approval with the MU check's acknowledgement."""

from __future__ import annotations

import json
import re
import subprocess
import typing
from pathlib import Path

import pydicom
import pytest
import typer
from typer.testing import CliRunner

from rtexport.cli import RoleName, app
from rtexport.demo.plan import DEMO_PLAN
from rtexport.model.people import Role
from rtexport.workspace import Workspace
from tests.cli.shell import run_rtexport
from tests.conftest import PHYS, forget_beam_setups, strict_mu_check

PLAN = "CW-E1"
CLI_PAGE = (Path(__file__).parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")


def run(
    home: Path, *args: str, stdin: str = "", columns: int = 200, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``rtexport ARGS`` in a real process, in a terminal ``columns`` wide, in a time zone that is not UTC."""
    return run_rtexport(home, *args, stdin=stdin, columns=columns, cwd=cwd, TZ="Europe/Berlin")


def commands(group: typer.core.TyperGroup, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], typing.Any]]:
    found: list[tuple[tuple[str, ...], typing.Any]] = []
    for name, cmd in group.commands.items():
        if isinstance(cmd, typer.core.TyperGroup):
            found += commands(cmd, (*path, name))
        else:
            found.append(((*path, name), cmd))
    return found


def test_every_option_and_argument_has_help_and_usage_reads_naturally() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    everything = commands(root)
    assert len(everything) >= 18
    runner = CliRunner()
    for path, cmd in everything:
        for param in cmd.params:
            assert getattr(param, "help", None), f"rtexport {' '.join(path)}: {param.name} has no help text"
        shown = runner.invoke(app, [*path, "--help"], prog_name="rtexport", env={"COLUMNS": "200"}).output
        usage = next(line.strip() for line in shown.splitlines() if "Usage:" in line)
        assert usage.startswith(f"Usage: rtexport {' '.join(path)} [OPTIONS]"), usage
        assert not re.search(r"[{}]", usage), usage
        assert not re.search(r"<(bool|str|path|int|float)>", shown), (path, shown)
    export_usage = runner.invoke(app, ["export", "--help"], prog_name="rtexport", env={"COLUMNS": "200"}).output
    assert "Usage: rtexport export [OPTIONS] PLAN" in export_usage and re.search(r"--to +DIR +Folder", export_usage)


def test_the_role_choices_are_the_roles() -> None:
    assert set(typing.get_args(RoleName)) == {r.value for r in Role}


def test_no_workspace_says_how_to_give_one(tmp_path: Path) -> None:
    r = run(tmp_path / "nowhere", "plan", "list")
    assert r.returncode == 1
    assert "no workspace here" in r.stderr and "--home" in r.stderr and "RTEXPORT_HOME" in r.stderr


def documented_keys(command: str) -> set[str]:
    """The keys docs/cli.md's JSON table lists for ``command`` (what is in brackets describes a key)."""
    row = next(line for line in CLI_PAGE.splitlines() if line.startswith(f"| `{command}`"))
    keys = row.split("|")[2]
    while re.search(r"\([^()]*\)", keys):
        keys = re.sub(r"\([^()]*\)", "", keys)
    return set(re.findall(r"`([a-z_0-9]+)`", keys))


@pytest.mark.parametrize(
    "command",
    ["course list --json", "plan list --json", "plan show CW-E1 --json", "user list --json", "audit --json"],
)
def test_listings_as_json_have_the_documented_keys(planned: Workspace, command: str) -> None:
    r = run(planned.home, *command.split())
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    first = data[0] if isinstance(data, list) else data
    documented = documented_keys(command.replace("CW-E1", "PLAN"))
    assert set(first) == documented
    if command.startswith("plan show"):
        row = next(line for line in CLI_PAGE.splitlines() if line.startswith("| `plan show PLAN --json`"))
        beam_keys = {k.strip() for k in row.split("`beams` (`[{")[1].split("}]`")[0].split(",")}
        assert set(first["beams"][0]) == beam_keys


def test_plan_show_gives_what_a_physicist_checks(planned: Workspace) -> None:
    r = run(planned.home, "plan", "show", PLAN)
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    state = planned.plan_state(PLAN)
    assert state.dose is not None
    for fact in (
        "prescription: 50 Gy in 25 fractions (2 Gy per fraction)",
        "density overrides: Prosthesis → Water",
        "export authorization: Phil Physicist (phil) on ",
        "beam ANT: 16 MeV, applicator 15x15, custom cutout (equivalent square 114.1 mm), SSD 1000 mm",
        "gantry 20°, collimator 0°, couch 0°; aimed at the centroid of PTV",
        "setup (fixed SSD): isocenter (",
        "bolus: Bolus_ANT; own bolus 10 mm Superflab, margin 10 mm",
        "independent MU check (TG-71 hand calculation; action level 5 %):",
        "beam ANT_OBL: engine ",
    ):
        assert fact in text, fact
    for b in state.dose.beams:
        assert f"{b.mu_per_fraction:.1f} MU per fraction; normalization point" in text


def test_plan_show_toml_prints_the_plan_file_to_edit_a_copy_from(planned: Workspace, tmp_path: Path) -> None:
    r = run(planned.home, "plan", "show", PLAN, "--toml")
    assert r.returncode == 0 and r.stdout == DEMO_PLAN  # as loaded, comments and all
    copy = tmp_path / "copy.toml"
    copy.write_text(r.stdout.replace('id = "CW-E1"', 'id = "CW-E3"').replace("fractions = 25", "fractions = 20"))
    assert run(planned.home, "plan", "load", str(copy)).returncode == 0
    shown = json.loads(run(planned.home, "plan", "show", "CW-E3", "--json").stdout)
    assert shown["fractions"] == 20 and [b["name"] for b in shown["beams"]] == ["ANT", "ANT_OBL"]
    cloned = run(planned.home, "plan", "clone", PLAN, "CW-E4", "--label", "Chestwall v2")
    assert cloned.returncode == 0 and "Chestwall v2" in cloned.stdout
    assert json.loads(run(planned.home, "plan", "show", "CW-E4", "--json").stdout)["label"] == "Chestwall v2"


def test_the_audit_log_never_cuts_a_word(planned: Workspace) -> None:
    forget_beam_setups(planned.home, PLAN)  # a long refusal reason to wrap: the beams cannot be checked
    refused = run(planned.home, "approve", PLAN, "--user", PHYS[0], "--password-stdin", stdin=PHYS[1] + "\n")
    assert refused.returncode == 1
    r = run(planned.home, "audit", "--plan", PLAN, columns=60)
    assert r.returncode == 0
    words = set(r.stdout.split())
    for line in r.stdout.splitlines():
        assert len(line) <= 60 or " " not in line.strip(), line
    reason = "the dose record does not give this beam's SSD and the depth of its normalization point"
    assert reason in " ".join(r.stdout.split())
    assert {"normalization", "acknowledged"} <= words


def test_approve_asks_to_acknowledge_the_mu_check(planned: Workspace) -> None:
    strict_mu_check(planned.home)
    args = ("approve", PLAN, "--user", PHYS[0], "--password-stdin")
    refused = run(planned.home, *args, stdin=PHYS[1] + "\n")
    assert refused.returncode == 1
    assert "approval needs you to acknowledge the independent MU check" in refused.stderr
    assert "--acknowledge-mu-check" in refused.stderr
    assert "beam ANT: engine" in refused.stderr and "beyond the action level of 0.01 %" in refused.stderr
    ok = run(planned.home, *args, "--acknowledge-mu-check", stdin=PHYS[1] + "\n")
    assert ok.returncode == 0, ok.stderr
    assert f"plan {PLAN} revision 1 APPROVED by Phil Physicist (phil)" in ok.stdout


@pytest.mark.integration  # poppler-utils
def test_report_is_made_written_listed_and_fetched_again(planned: Workspace, tmp_path: Path) -> None:
    r = run(planned.home, "report", PLAN, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    default = tmp_path / "report-CW-E1-rev1-1.pdf"
    assert r.stdout.startswith(f"report 1 of plan {PLAN} revision 1 (UNAPPROVED) written to {default.name}")
    text = subprocess.run(["pdftotext", str(default), "-"], capture_output=True, text=True, check=True).stdout
    assert "Plan report" in text and "Chestwall e-" in text
    listed = json.loads(run(planned.home, "report", PLAN, "--list", "--json").stdout)
    assert [(x["id"], x["revision"], x["approved"]) for x in listed] == [(1, 1, False)]
    assert set(listed[0]) == documented_keys("report PLAN --list --json")
    again = tmp_path / "again.pdf"
    assert run(planned.home, "report", PLAN, "--id", "1", "--out", str(again)).returncode == 0
    assert again.read_bytes() == default.read_bytes()
    missing = run(planned.home, "report", PLAN, "--id", "7")
    assert missing.returncode == 2 and "plan CW-E1 has no report 7" in missing.stderr


def test_export_summary_keeps_each_uid_on_one_line(planned: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = run(planned.home, "export", PLAN, "--to", str(out), columns=40)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for path in out.glob("R[SP].*.dcm"):
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        assert any(line.endswith(uid) for line in lines), uid
