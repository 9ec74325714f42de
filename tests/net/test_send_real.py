"""Send the phantom to real receivers (Orthanc, DCMTK storescp) on loopback and check what arrived."""

from __future__ import annotations

import pytest

from rtexport.errors import SendError
from rtexport.export.objects import ExportObject, ObjectKind
from rtexport.export.send import Destination, InstanceOutcome, InstanceResult, echo, send_objects
from tests.support.orthanc import Orthanc
from tests.support.storescp import StoreSCP, dataset_part

from .conftest import CALLING_AE

pytestmark = pytest.mark.integration


def _dest(orthanc: Orthanc) -> Destination:
    return Destination(orthanc.aet, "127.0.0.1", orthanc.dicom_port)


def test_orthanc_receives_every_instance_with_identical_bytes(orthanc: Orthanc, objects: list[ExportObject]) -> None:
    orthanc.clear()
    seen: list[InstanceResult] = []
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
    report = send_objects(
        objects[:2], _dest(orthanc), CALLING_AE, commit=True, commit_listen_port=port + 1,
        commit_listen_host="127.0.0.1", commit_timeout=2,
    )  # fmt: skip

    assert not report.ok
    assert report.committed == ()
    assert any("no N-EVENT-REPORT" in p and CALLING_AE in p for p in report.problems)


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
