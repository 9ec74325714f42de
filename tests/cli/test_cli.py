"""The command line as a user runs it: real processes, exit codes and messages."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from rtexport.demo.plan import DEMO_PLAN
from rtexport.workspace import Workspace
from tests.cli.shell import run_rtexport, shell_env


def run(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``rtexport ARGS`` with the workspace given by RTEXPORT_HOME, as a user's shell would."""
    return run_rtexport(home, *args, stdin=stdin)


def test_help_lists_every_command(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "rtexport", "--help"],
        capture_output=True,
        text=True,
        env=shell_env(),
    )
    assert r.returncode == 0
    for command in (
        "init",
        "demo",
        "import",
        "site",
        "course",
        "plan",
        "user",
        "approve",
        "authorize",
        "audit",
        "dose",
        "report",
        "export",
        "echo",
        "query",
        "retrieve",
        "receive",
        "incoming",
        "serve",
        "verify",
    ):
        assert f" {command} " in r.stdout, command


def test_site_check_lists_problems_with_paths(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    assert run(home, "init").returncode == 0
    fresh = run(home, "site", "check")
    assert fresh.returncode == 1 and "OK" not in fresh.stdout  # readable, but nothing can be exported yet
    assert "export unavailable: the site configuration has no treatment machine" in fresh.stdout
    assert "export unavailable: the site configuration has no CT curve" in fresh.stdout
    site = home / "site.toml"
    text = site.read_text().replace('local_ae_title = "RTEXPORT"', 'local_ae_title = "A\\\\B"')
    text = text.replace(
        "ct_curves = []",
        'ct_curves = [{ name = "X", hu = [0.0, -5.0], rel_electron_density = [1.0, 1.0], mass_density = [1.0, 1.0] }]',
    )
    site.write_text(text)
    r = run(home, "site", "check")
    assert r.returncode == 1
    assert "ct_curves[0].hu: HU values must increase" in r.stdout
    assert "dicom.local_ae_title:" in r.stdout
    assert "2 problem(s)" in r.stderr


def test_import_error_names_file_and_stores_nothing(tmp_path: Path, phantom_dir: Path) -> None:
    home = tmp_path / "ws"
    run(home, "init")
    (phantom_dir / "CT0004.dcm").unlink()
    r = run(home, "import", str(phantom_dir), "--course", "C1")
    assert r.returncode == 1
    assert "missing slice" in r.stderr and "CT0003.dcm" in r.stderr
    assert "C1" not in run(home, "course", "list").stdout


def test_users_plans_and_authorization_from_the_shell(tmp_path: Path, phantom_dir: Path) -> None:
    from rtexport.demo.beamdata import demo_site
    from rtexport.workspace import Workspace

    home = tmp_path / "ws"
    Workspace.init(home, demo_site()).close()
    assert run(home, "import", str(phantom_dir), "--course", "C1").returncode == 0
    assert (
        run(home, "user", "add", "phil", "--role", "physicist", "--password-stdin", stdin="a-long-secret\n").returncode
        == 0
    )
    plan = tmp_path / "plan.toml"
    plan.write_text(DEMO_PLAN)
    r = run(home, "plan", "load", str(plan))
    assert r.returncode == 0 and "revision 1 stored" in r.stdout
    assert "unchanged" in run(home, "plan", "load", str(plan)).stdout
    r = run(home, "authorize", "CW-E1", "--user", "phil", "--password-stdin", stdin="wrong-secret\n")
    assert r.returncode == 1 and "wrong password" in r.stderr
    r = run(home, "authorize", "CW-E1", "--user", "phil", "--password-stdin", stdin="a-long-secret\n")
    assert r.returncode == 0 and "authorized by phil" in r.stdout
    listing = run(home, "plan", "list").stdout
    assert "CW-E1" in listing and "UNAPPROVED" in listing
    log = run(home, "audit").stdout
    assert "refused" in log and "authorize" in log and "a-long-secret" not in log


def test_verify_exits_non_zero_and_names_a_damaged_file(planned: Workspace) -> None:
    assert run(planned.home, "verify").returncode == 0
    s = planned.course("C1").slices[0]
    path = planned.blobs.path(s.sha256)
    original = path.read_bytes()
    path.write_bytes(original.replace(b"DICM", b"DICN", 1))
    r = run(planned.home, "verify")
    assert r.returncode == 1
    assert f"DAMAGED: {path}" in r.stdout and f"course C1: CT image z={s.z_mm:g} mm" in r.stdout
    assert "1 of " in r.stderr and "missing or damaged" in r.stderr
    path.write_bytes(original)


def test_audit_verify_proves_the_log_or_names_the_first_broken_record(planned: Workspace) -> None:
    home = planned.home
    planned.close()
    ok = run(home, "audit", "--verify")
    assert ok.returncode == 0 and "audit log intact" in ok.stdout
    with sqlite3.connect(home / "rtexport.db") as db:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("UPDATE audit SET actor = 'mallory' WHERE id = 4")
    r = run(home, "audit", "--verify")
    assert r.returncode == 1
    assert "BROKEN: record 4 was changed after it was written" in r.stdout
    assert "first broken at record 4" in r.stderr


def test_export_as_a_user_needs_that_users_password(planned: Workspace, tmp_path: Path) -> None:
    home = planned.home
    planned.close()
    out = tmp_path / "out"
    args = ("export", "CW-E1", "--to", str(out), "--items", "rtplan", "--user", "phil", "--password-stdin")
    r = run(home, *args, stdin="not-phils-password\n")
    assert r.returncode == 1 and "wrong password" in r.stderr and not out.exists()
    assert run(home, *args, stdin="physicist-pass-1\n").returncode == 0
    ws = Workspace.open(home)
    records = ws.audit_log.entries()[-3:]
    ws.close()
    entries = [(e["action"], e["outcome"], e["actor"], e["via"]) for e in records]
    # the refused attempt proves nobody: the account that ran the command is the actor, the claimed user a detail
    os_user = records[0]["os_user"]
    assert entries == [
        ("export", "refused", f"({os_user})", "cli"),
        ("export", "started", "phil", "cli"),
        ("export", "ok", "phil", "cli"),
    ]
    assert records[0]["detail"]["user"] == "phil" and records[0]["detail"]["client"] == f"account {os_user}"


def test_version_and_log_level(planned: Workspace, tmp_path: Path) -> None:
    import rtexport

    home = planned.home
    planned.close()
    r = run(home, "--version")
    assert r.returncode == 0 and r.stdout == f"rtexport {rtexport.__version__}\n"
    args = ("export", "CW-E1", "--to", str(tmp_path / "out"), "--items", "rtplan")
    quiet = run(home, *args)
    assert quiet.returncode == 0 and "INFO" not in quiet.stderr
    told = run(home, "--log-level", "info", *args)
    assert told.returncode == 0
    assert "INFO rtexport.services.export: export of plan CW-E1 revision 1 to " in told.stderr
