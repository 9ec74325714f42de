"""Send the phantom to real receivers (Orthanc, DCMTK storescp) on loopback and check what arrived."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

import pytest

from rtexport.demo.phantom import PhantomSpec, write_phantom
from rtexport.errors import SendError
from rtexport.export.objects import ExportObject, ObjectKind, read_objects
from rtexport.net.send import STREAMED_ABOVE, Destination, InstanceOutcome, InstanceResult, echo, send_objects
from tests.support.orthanc import Orthanc, free_port
from tests.support.storescp import StoreSCP, dataset_part

from .conftest import CALLING_AE

pytestmark = pytest.mark.integration


def _dest(orthanc: Orthanc) -> Destination:
    return Destination(orthanc.aet, "127.0.0.1", orthanc.dicom_port)


def test_orthanc_receives_every_instance_with_identical_bytes(orthanc: Orthanc, objects: list[ExportObject]) -> None:
    orthanc.clear()
    seen: list[InstanceResult[ExportObject]] = []
    report = send_objects(objects, _dest(orthanc), CALLING_AE, progress=seen.append)

    assert report.ok, report.summary()
    assert [r.outcome for r in report.results] == [InstanceOutcome.STORED] * len(objects)
    assert sorted(r.obj.sop_instance_uid for r in seen) == sorted(o.sop_instance_uid for o in objects)
    stored = orthanc.instances()
    assert set(stored) == {o.sop_instance_uid for o in objects}
    # The receiver writes its own file meta (group 0002 is not sent over the network); the dataset must be
    # the file's bytes, unchanged.
    for obj in objects:
        assert dataset_part(orthanc.file(stored[obj.sop_instance_uid])) == dataset_part(obj.read_bytes())


def test_sending_again_is_harmless(orthanc: Orthanc, objects: list[ExportObject]) -> None:
    orthanc.clear()
    first = send_objects(objects[:5], _dest(orthanc), CALLING_AE)
    again = send_objects(objects, _dest(orthanc), CALLING_AE)

    assert first.ok and again.ok
    assert orthanc.count_instances() == len(objects)


def test_storage_commitment_against_orthanc(orthanc: Orthanc, objects: list[ExportObject]) -> None:
    orthanc.clear()
    _, host, port = orthanc.modalities["rtx"]
    report = send_objects(
        objects, _dest(orthanc), CALLING_AE, commit=True, commit_listen_port=port, commit_listen_host=host
    )

    assert report.ok, report.summary()
    assert report.committed is not None
    assert sorted(report.committed) == sorted(o.sop_instance_uid for o in objects)
    assert report.commit_failed == ()


def test_commitment_report_that_never_comes_is_reported(orthanc: Orthanc, objects: list[ExportObject]) -> None:
    """Orthanc calls back the port it knows; we listen elsewhere, so no report arrives."""
    _, _, port = orthanc.modalities["rtx"]
    elsewhere = next(p for p in iter(free_port, None) if p != port)  # free now, unlike port + 1
    report = send_objects(
        objects[:2], _dest(orthanc), CALLING_AE, commit=True, commit_listen_port=elsewhere,
        commit_listen_host="127.0.0.1", commit_timeout=2,
    )  # fmt: skip

    assert report.all_stored and not report.ok
    assert report.committed is None
    (problem,) = report.problems
    assert problem.startswith(f"storage commitment: no N-EVENT-REPORT from {_dest(orthanc)} within 2 s; ")
    assert f"knows AE title '{CALLING_AE}' with this host and port {elsewhere}" in problem


def test_echo_orthanc_and_storescp(orthanc: Orthanc, storescp: StoreSCP) -> None:
    echo(_dest(orthanc), CALLING_AE)
    echo(Destination(storescp.aet, "127.0.0.1", storescp.port), CALLING_AE)


def test_echo_wrong_ae_title_says_which_titles(orthanc: Orthanc) -> None:
    with pytest.raises(SendError, match=r"called AE title 'NOT-ORTHANC', calling AE title 'RTEXPORT'"):
        echo(Destination("NOT-ORTHANC", "127.0.0.1", orthanc.dicom_port), CALLING_AE)


def test_storescp_receives_identical_datasets(storescp: StoreSCP, objects: list[ExportObject]) -> None:
    report = send_objects(objects, Destination(storescp.aet, "127.0.0.1", storescp.port), CALLING_AE)

    assert report.ok, report.summary()
    received = storescp.received()
    prefix = {ObjectKind.CT: "CT", ObjectKind.RTSTRUCT: "RS"}
    for obj in objects:
        assert received[f"{prefix[obj.kind]}.{obj.sop_instance_uid}"] == dataset_part(obj.read_bytes())
    assert len(received) == len(objects)


# -- a damaged stored copy ----------------------------------------------------------------------------------


def _verified(objects: list[ExportObject]) -> list[ExportObject]:
    """The objects with the SHA-256 of their bytes as they are now (as the store records it)."""
    return [dataclasses.replace(o, sha256=hashlib.sha256(o.read_bytes()).hexdigest()) for o in objects]


def _flip_one_byte(path: Path, at: int) -> str:
    """Change one byte of the file; returns the SHA-256 it has now."""
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_damaged_copy_is_never_stored_and_nothing_after_it_is_sent(
    storescp: StoreSCP, objects: list[ExportObject]
) -> None:
    verified = _verified(objects)
    damaged = verified[5]
    assert damaged.path is not None
    actual = _flip_one_byte(damaged.path, -100)
    report = send_objects(verified, Destination(storescp.aet, "127.0.0.1", storescp.port), CALLING_AE, associations=1)

    assert [r.outcome for r in report.results] == (
        [InstanceOutcome.STORED] * 5 + [InstanceOutcome.FAILED] + [InstanceOutcome.NOT_SENT] * (len(objects) - 6)
    )
    assert report.results[5].meaning == (
        f"stored copy is damaged: sha256 {actual} expected {damaged.sha256}, file {damaged.path}"
    )
    stop = f"not sent: the send stopped because the stored copy of CT {damaged.sop_instance_uid} is damaged"
    assert {r.meaning for r in report.results[6:]} == {stop}
    assert sorted(storescp.received()) == sorted(f"CT.{o.sop_instance_uid}" for o in objects[:5])


def test_large_damaged_copy_whose_first_megabyte_already_left_is_discarded_by_orthanc(
    orthanc: Orthanc, tmp_path: Path
) -> None:
    """A data set too large to be read whole leaves in batches of 1 MiB: the damaged byte goes out in the first,
    the check runs before the last, and the abort makes Orthanc drop the incomplete data set."""
    orthanc.clear()
    paths = write_phantom(tmp_path / "big", PhantomSpec(rows=2048, columns=2048, slices=2, seed="big"))
    big = _verified(read_objects(sorted(p for p in paths if p.name.startswith("CT")), ObjectKind.CT))
    assert big[1].path is not None and big[1].size > STREAMED_ABOVE + 1024
    _flip_one_byte(big[1].path, 4096)
    report = send_objects(big, _dest(orthanc), CALLING_AE)

    assert report.results[1].outcome == InstanceOutcome.FAILED
    assert report.results[1].meaning.startswith("stored copy is damaged: sha256 ")
    assert big[1].sop_instance_uid not in orthanc.sop_instance_uids()
    # The other one went on the other association or not at all; never reported stored when it is not.
    assert {r.obj.sop_instance_uid for r in report.stored} == orthanc.sop_instance_uids()


def test_the_commitment_listener_binds_our_address_on_the_association_when_none_is_configured(
    orthanc: Orthanc, objects: list[ExportObject], caplog: pytest.LogCaptureFixture
) -> None:
    orthanc.clear()
    _, _, port = orthanc.modalities["rtx"]
    with caplog.at_level(logging.INFO, logger="rtexport.net.commitment"):
        report = send_objects(objects[:2], _dest(orthanc), CALLING_AE, commit=True, commit_listen_port=port)

    assert report.ok, report.summary()
    assert f"storage commitment: listening on 127.0.0.1 port {port}" in caplog.text  # not every interface
