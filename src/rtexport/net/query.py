"""Query/Retrieve as SCU (PS3.4 C): C-FIND at patient, study and series level, and C-MOVE of a study to an AE
(our receiver), on the same association code as the sender.

Patient level uses the Patient Root information model; study and series level the Study Root one. A C-FIND's
pending responses each carry one match; the final response ends it. A C-MOVE's pending responses count the
sub-operations; the final one says how many were completed, failed or warned.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom.status import QR_FIND_SERVICE_CLASS_STATUS, QR_MOVE_SERVICE_CLASS_STATUS

from rtexport.errors import SendError
from rtexport.net.association import AssociationLost
from rtexport.net.dimse import Command, CommandField, Dimse, decode_data_set, encode_data_set, status_meaning
from rtexport.net.link import ConnectFailed, Link, check_ae_titles
from rtexport.net.outcome import Destination
from rtexport.net.pdu import ProposedContext
from rtexport.net.transport import Timeouts

LOGGER = logging.getLogger(__name__)

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
_PENDING = (0xFF00, 0xFF01)
LEVELS = ("PATIENT", "STUDY", "SERIES")
# The keys asked for at each level (returned when the archive has them), besides those the caller gives.
RETURN_KEYS: dict[str, tuple[str, ...]] = {
    "PATIENT": ("PatientName", "PatientID", "PatientBirthDate", "NumberOfPatientRelatedStudies"),
    "STUDY": ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "StudyDescription", "AccessionNumber",
              "ModalitiesInStudy", "NumberOfStudyRelatedInstances"),
    "SERIES": ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
               "NumberOfSeriesRelatedInstances"),
}  # fmt: skip


@dataclass(frozen=True)
class MoveResult:
    """What the archive said of a C-MOVE: its final status and sub-operation counts."""

    status: int
    completed: int
    failed: int
    warning: int

    @property
    def ok(self) -> bool:
        return self.status == 0x0000 and self.failed == 0


def _open(dest: Destination, calling_ae: str, abstract: str, timeout: float) -> tuple[Link, Dimse]:
    check_ae_titles(dest, calling_ae)
    link = Link(dest, calling_ae, (ProposedContext(1, abstract, SYNTAXES),), Timeouts.uniform(timeout),
                dest.ssl_context())  # fmt: skip
    try:
        dimse = link.open()
    except ConnectFailed as e:
        raise SendError(f"cannot query {dest}: {e}") from e
    if 1 not in dimse.assoc.accepted:
        link.close()
        raise SendError(f"{dest} does not offer {abstract} (the query/retrieve information model asked for)")
    return link, dimse


def _identifier(level: str, keys: Mapping[str, str]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in RETURN_KEYS[level]:
        setattr(ds, keyword, "")
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def find(dest: Destination, calling_ae: str, level: str, keys: Mapping[str, str], *, timeout: float = 30
         ) -> list[Dataset]:  # fmt: skip
    """C-FIND at ``level`` (PATIENT, STUDY or SERIES) matching ``keys`` (DICOM keywords → values, wildcards
    allowed); every match's identifier. Raises SendError."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}")
    link, dimse = _open(dest, calling_ae, PATIENT_ROOT_FIND if level == "PATIENT" else STUDY_ROOT_FIND, timeout)
    matches: list[Dataset] = []
    try:
        syntax = dimse.assoc.accepted[1][1]
        command = Command(CommandField.C_FIND_RQ, message_id=dimse.next_message_id(),
                          affected_sop_class=dimse.assoc.accepted[1][0], priority=0, data_set_type=0)  # fmt: skip
        dimse.send(1, command, encode_data_set(_identifier(level, keys), syntax))
        while True:
            rsp = dimse.await_response(command)
            status = rsp.command.status or 0
            if status not in _PENDING:
                break
            if rsp.data_set is not None:
                matches.append(decode_data_set(rsp.data_set, syntax))
    except AssociationLost as e:
        raise SendError(f"C-FIND on {dest} failed: {e}") from e
    finally:
        link.close()
    if status != 0x0000:
        raise SendError(f"C-FIND on {dest} ended with status 0x{status:04X} "
                        f"({status_meaning(status, QR_FIND_SERVICE_CLASS_STATUS)})")  # fmt: skip
    LOGGER.info("C-FIND %s on %s: %d match(es)", level, dest, len(matches))
    return matches


def move_study(dest: Destination, calling_ae: str, move_destination: str, study_uid: str, *, timeout: float = 120
               ) -> MoveResult:  # fmt: skip
    """C-MOVE the study to the AE ``move_destination`` (which ``dest`` must know by that title). Raises
    SendError when the move cannot be asked for or is refused."""
    link, dimse = _open(dest, calling_ae, STUDY_ROOT_MOVE, timeout)
    try:
        syntax = dimse.assoc.accepted[1][1]
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = study_uid
        command = Command(CommandField.C_MOVE_RQ, message_id=dimse.next_message_id(),
                          affected_sop_class=STUDY_ROOT_MOVE, priority=0, data_set_type=0,
                          move_destination=move_destination)  # fmt: skip
        dimse.send(1, command, encode_data_set(identifier, syntax))
        while True:
            rsp = dimse.await_response(command).command
            if (rsp.status or 0) not in _PENDING:
                break
            LOGGER.debug("C-MOVE from %s: %s remaining, %s completed", dest, rsp.remaining, rsp.completed)
    except AssociationLost as e:
        raise SendError(f"C-MOVE from {dest} failed: {e}") from e
    finally:
        link.close()
    status = rsp.status or 0
    result = MoveResult(status, rsp.completed or 0, rsp.failed or 0, rsp.warning or 0)
    if status != 0x0000 and not (0xB000 <= status <= 0xBFFF):
        raise SendError(
            f"C-MOVE from {dest} to {move_destination} ended with status 0x{status:04X} "
            f"({status_meaning(status, QR_MOVE_SERVICE_CLASS_STATUS)}); {result.completed} sent, {result.failed} "
            "failed; check that the archive knows our receiver's AE title with its host and port"
        )
    LOGGER.info("C-MOVE of a study from %s to %s: %d completed, %d failed", dest, move_destination, result.completed,
                result.failed)  # fmt: skip
    return result
