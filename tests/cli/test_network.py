"""The DICOM node from the command line, with real peers: DCMTK storescu pushes to `rtexport receive` (a process of
its own, stopped by SIGTERM), `incoming list|import|discard`, `serve` running the receiver too, `query` and
`retrieve` against Orthanc, `--trace` files, and `--tls-cert/--tls-key` against storescp requiring client
certificates."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rtexport.model.course import Course
from rtexport.workspace import Workspace
from tests.cli.shell import Process, run_rtexport, start_rtexport
from tests.conftest import edit_site_toml
from tests.support.certs import TestCA
from tests.support.orthanc import Orthanc, free_port
from tests.support.storescp import STORESCU, StoreSCP, storescp_over_tls, storescu

pytestmark = pytest.mark.integration
AET = "RTXRECV"


def _receiver(home: Path, port: int, **extra: Any) -> None:
    def change(site: dict[str, Any]) -> None:
        site["dicom"]["receiver"] = {"ae_title": AET, "port": port, **extra}

    edit_site_toml(home, change)


@contextmanager
def running(home: Path, *args: str) -> Iterator[tuple[Process, str]]:
    """``rtexport ARGS`` as a process of its own; yields it and its first line of output (once it listens)."""
    proc = start_rtexport(home, *args)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first, proc.communicate(timeout=30)[1]
        yield proc, first
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=60)


def _stop(proc: Process) -> str:
    """SIGTERM, then what it printed after its first line; it must stop cleanly (exit 0)."""
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out


def _json(home: Path, *args: str) -> Any:
    r = run_rtexport(home, *args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _same_course(a: Course, b: Course) -> bool:
    """Equal but for what names the copy: id, import time and the stored files' digests (the receiver stores
    the data sets byte for byte under a file meta header of its own)."""

    def plain(c: Course) -> Course:
        slices = tuple(replace(s, sha256="", size=0) for s in c.slices)
        return replace(c, id="", imported_at="", slices=slices,
                       structure_set=replace(c.structure_set, sha256=""))  # fmt: skip

    return plain(a) == plain(b)


def test_storescu_to_receive_then_incoming_import_equals_a_folder_import(
    workspace: Workspace, phantom_dir: Path, tmp_path: Path
) -> None:
    home, port = workspace.home, free_port()
    _receiver(home, port)
    trace = tmp_path / "receive.trace"
    with running(home, "receive", "--trace", str(trace)) as (proc, first):
        assert first.strip() == f"receiving as {AET} on 127.0.0.1 port {port}; Ctrl-C stops"
        pushed = storescu([phantom_dir], port, AET)
        assert pushed.returncode == 0, pushed.stderr
        out = _stop(proc)
    assert "receiver stopped; 1 incoming set(s)" in out

    (found,) = _json(home, "incoming", "list")
    assert found["complete"] and found["state"] == "complete"
    assert (found["images"], found["missing"], found["conflicts"]) == (16, [], [])
    imported = run_rtexport(home, "incoming", "import", found["id"], "--course", "C-NET")
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith(f"imported {found['id']} as course C-NET: 16 CT slices")
    assert run_rtexport(home, "import", str(phantom_dir), "--course", "C-FOLDER").returncode == 0

    assert _same_course(workspace.course("C-NET"), workspace.course("C-FOLDER"))
    assert _json(home, "incoming", "list") == []
    record = next(r for r in _json(home, "audit") if r["action"] == "incoming-import")
    assert record["outcome"] == "ok" and record["detail"]["course"] == "C-NET"
    assert record["detail"]["patient_id"] == found["patient_id"] and record["detail"]["images"] == 16
    assert record["detail"]["study"] == found["study_uid"] and record["detail"]["series"] == found["series_uid"]
    text = trace.read_text()
    assert "C-STORE-RQ" in text and "C-STORE-RSP" in text and "A-ASSOCIATE-AC" in text
    assert "Phantom^Electron" not in text  # patient data redacted without --trace-patient-data


def test_incoming_discard_is_audited_with_the_set_it_dropped(workspace: Workspace, phantom_dir: Path) -> None:
    home, port = workspace.home, free_port()
    _receiver(home, port)
    with running(home, "receive") as (proc, _):
        assert storescu([phantom_dir / "RS.phantom.dcm"], port, AET).returncode == 0
        _stop(proc)
    (waiting,) = _json(home, "incoming", "list")
    assert waiting["state"] == "waiting for the images" and waiting["images"] == 0
    listed = run_rtexport(home, "incoming", "list")
    assert waiting["id"] in listed.stdout and "waiting for the images" in listed.stdout

    refused = run_rtexport(home, "incoming", "import", waiting["id"])
    assert refused.returncode == 1 and "cannot be imported yet: waiting for the images" in refused.stderr
    dropped = run_rtexport(home, "incoming", "discard", waiting["id"])
    assert dropped.returncode == 0 and dropped.stdout.strip() == f"discarded {waiting['id']}: 1 instance(s)"
    unknown = run_rtexport(home, "incoming", "discard", waiting["id"])
    assert unknown.returncode == 2 and f"no incoming set {waiting['id']!r}" in unknown.stderr

    records = {r["action"]: r for r in _json(home, "audit")}
    detail = records["incoming-discard"]["detail"]
    assert detail["set"] == waiting["id"] and detail["patient_id"] == waiting["patient_id"]
    assert (detail["structure_set"], detail["images"], detail["instances"]) == (waiting["structure_set"], 0, 1)
    assert records["incoming-import"]["outcome"] == "refused"


def test_one_receiver_per_workspace_and_a_second_leaves_the_first_intact(
    workspace: Workspace, phantom_dir: Path
) -> None:
    r = run_rtexport(workspace.home, "receive")
    assert r.returncode == 1 and "the site configuration has no [dicom.receiver]" in r.stderr
    port = free_port()
    _receiver(workspace.home, port)
    with running(workspace.home, "receive") as (proc, _):
        segments = sorted((workspace.home / "incoming").glob("seg-*"))
        for args in ((), ("--port", str(free_port()))):
            second = run_rtexport(workspace.home, "receive", *args)
            assert second.returncode == 2, second.stderr
            assert "another receiver is running on this workspace" in second.stderr
        assert segments and sorted((workspace.home / "incoming").glob("seg-*")) == segments  # its journal intact
        assert storescu([phantom_dir], port, AET).returncode == 0  # the first still keeps what arrives
        assert "receiver stopped; 1 incoming set(s)" in _stop(proc)
    (found,) = _json(workspace.home, "incoming", "list")
    assert found["complete"]


def test_a_port_taken_by_another_program_is_named(workspace: Workspace) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        _receiver(workspace.home, port)
        r = run_rtexport(workspace.home, "receive")
    assert r.returncode == 2 and f"the receiver cannot listen on 127.0.0.1 port {port}" in r.stderr


def test_serve_runs_the_receiver_too(workspace: Workspace, phantom_dir: Path) -> None:
    home, port = workspace.home, free_port()
    _receiver(home, port)
    with running(home, "serve", "--port", str(free_port())) as (proc, first):
        assert first.strip() == f"receiving as {AET} on 127.0.0.1 port {port}"
        assert storescu([phantom_dir], port, AET).returncode == 0
        proc.send_signal(signal.SIGINT)  # Ctrl-C: uvicorn ends, then the receiver
        proc.communicate(timeout=60)
        assert proc.returncode == 0
    (found,) = _json(home, "incoming", "list")
    assert found["complete"]


def test_the_receiver_over_tls_takes_storescu_with_a_client_certificate(
    workspace: Workspace, phantom_dir: Path, tmp_path: Path
) -> None:
    ca = TestCA(tmp_path / "pki")
    ours, theirs = ca.issue("rtexport"), ca.issue("storescu")
    home, port = workspace.home, free_port()
    _receiver(home, port, tls={"cert_file": str(ours.cert), "key_file": str(ours.key), "ca_file": str(ca.file)})
    base = [str(STORESCU), "-aec", AET, "+sd", "+r", "-nh"]
    env = dict(os.environ, TCP_NODELAY="1")
    with running(home, "receive") as (proc, first):
        assert first.strip().endswith(f"port {port} (TLS); Ctrl-C stops")
        plain = subprocess.run([*base, "127.0.0.1", str(port), str(phantom_dir)], env=env, capture_output=True,
                               text=True, timeout=60)  # fmt: skip
        assert plain.returncode != 0
        with_cert = [*base, "+tls", str(theirs.key), str(theirs.cert), "+cf", str(ca.file)]
        pushed = subprocess.run([*with_cert, "127.0.0.1", str(port), str(phantom_dir)], env=env,
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr
        _stop(proc)
    (found,) = _json(home, "incoming", "list")
    assert found["complete"]


@pytest.fixture
def archive(workspace: Workspace, phantom_dir: Path, tmp_path: Path) -> Iterator[Orthanc]:
    """Orthanc holding the phantom and knowing our receiver; site.toml names it "pacs"."""
    port = free_port()
    with Orthanc(tmp_path / "orthanc", modalities={"rtx": (AET, "127.0.0.1", port)}) as orthanc:
        for path in sorted(phantom_dir.glob("*.dcm")):
            orthanc.request("POST", "/instances", raw=path.read_bytes())

        def change(site: dict[str, Any]) -> None:
            site["dicom"]["local_ae_title"] = AET
            site["dicom"]["receiver"] = {"ae_title": AET, "port": port}
            site["dicom"]["servers"] = [{"name": "pacs", "ae_title": orthanc.aet, "host": "127.0.0.1",
                                         "port": orthanc.dicom_port}]  # fmt: skip

        edit_site_toml(workspace.home, change)
        yield orthanc


def test_query_at_each_level_then_retrieve_into_the_incoming_sets(
    workspace: Workspace, archive: Orthanc, tmp_path: Path
) -> None:
    home = workspace.home
    (patient,) = _json(home, "query", "pacs", "--level", "patient", "--patient-id", "RTX*")
    assert patient["PatientName"] == "Phantom^Electron"
    (study,) = _json(home, "query", "pacs", "--level", "study", "--patient-id", patient["PatientID"])
    series = _json(home, "query", "pacs", "--level", "series", "--study-uid", study["StudyInstanceUID"])
    assert sorted(s["Modality"] for s in series) == ["CT", "RTSTRUCT"]
    shown = run_rtexport(home, "query", "pacs", "--level", "study")
    assert shown.returncode == 0 and study["StudyInstanceUID"] + "\n" in shown.stdout
    assert run_rtexport(home, "query", "pacs", "--patient-id", "NOBODY").stdout == "no study on pacs matches\n"

    trace = tmp_path / "retrieve.trace"
    with running(home, "receive") as (proc, _):  # the move lands in the receiver that runs
        got = run_rtexport(home, "retrieve", "pacs", study["StudyInstanceUID"], "--trace", str(trace))
        assert got.returncode == 0, got.stderr
        assert "receiver stopped; 1 incoming set(s)" in _stop(proc)
    assert got.stdout.startswith("pacs sent 17 instance(s), 0 failed")
    (found,) = _json(home, "incoming", "list")
    assert found["complete"] and found["study_uid"] == study["StudyInstanceUID"]
    assert "C-MOVE-RQ" in trace.read_text() and "C-MOVE-RSP" in trace.read_text()
    found_trace = tmp_path / "find.trace"
    run_rtexport(home, "query", "pacs", "--level", "patient", "--trace", str(found_trace), "--trace-patient-data")
    assert "C-FIND-RSP" in found_trace.read_text() and "Phantom^Electron" in found_trace.read_text()  # asked for
    record = next(r for r in _json(home, "audit") if r["action"] == "retrieve")
    assert record["outcome"] == "ok" and record["detail"]["completed"] == 17


def test_query_refusals_name_the_cause(workspace: Workspace) -> None:
    """Refused before any association: "pacs" names a port nobody listens on (no archive needed to refuse)."""
    home = workspace.home
    pacs = [{"name": "pacs", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": free_port()}]
    edit_site_toml(home, lambda site: site["dicom"].update(servers=pacs))
    unknown = run_rtexport(home, "query", "nope")
    assert unknown.returncode == 2 and "no DICOM server 'nope' to query" in unknown.stderr
    level = run_rtexport(home, "query", "pacs", "--level", "image")
    assert level.returncode == 2 and "image" in level.stderr
    lone = run_rtexport(home, "query", "pacs", "--trace-patient-data")
    assert lone.returncode == 2 and "--trace-patient-data needs --trace FILE" in lone.stderr


@pytest.fixture
def tls_storescp(tmp_path: Path) -> Iterator[tuple[StoreSCP, TestCA]]:
    """DCMTK storescp over TLS, requiring client certificates signed by the test CA."""
    ca = TestCA(tmp_path / "pki")
    with storescp_over_tls(tmp_path / "storescp-out", ca) as scp:
        yield scp, ca


def test_echo_with_our_client_certificate_where_the_server_requires_one(
    tls_storescp: tuple[StoreSCP, TestCA], workspace: Workspace, tmp_path: Path
) -> None:
    scp, ca = tls_storescp
    me = ca.issue("rtexport")
    server = ["--aet", scp.aet, "--host", "127.0.0.1", "--port", str(scp.port), "--tls-ca", str(ca.file)]
    bare = run_rtexport(workspace.home, "echo", *server)
    assert bare.returncode == 1
    assert "the server requires a TLS client certificate" in bare.stderr and "--tls-cert and --tls-key" in bare.stderr

    trace = tmp_path / "echo.trace"
    ok = run_rtexport(workspace.home, "echo", *server, "--tls-cert", str(me.cert), "--tls-key", str(me.key),
                      "--trace", str(trace))  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "C-ECHO-RQ" in trace.read_text() and "C-ECHO-RSP" in trace.read_text()
