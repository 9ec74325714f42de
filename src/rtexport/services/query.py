"""Query an archive and retrieve a study into our receiver (C-FIND, C-MOVE), from a server in ``site.toml``.

A retrieve starts the receiver for its duration when none is running on the configured port (``serve`` or
``rtexport receive`` may already run it), asks the archive to move the study to our receiver's AE title, and
leaves the result where every push lands: in the incoming sets, for import.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

from rtexport.errors import ConfigError, InputError
from rtexport.model.people import Actor
from rtexport.net.outcome import Destination
from rtexport.net.query import LEVELS, MoveResult, find, move_study
from rtexport.services.incoming import receiver
from rtexport.workspace import Workspace


def _server(ws: Workspace, name: str) -> Destination:
    found = ws.site().dicom.server(name)
    if found is None or found.kind != "dimse":
        known = ", ".join(s.name for s in ws.site().dicom.servers if s.kind == "dimse") or "none configured"
        raise InputError(f"no DICOM server {name!r} to query in the site configuration (servers: {known})")
    return Destination.from_server(found)


# What a query shows of each match, per level (the command line's table columns, the page's), and their names.
COLUMNS: dict[str, tuple[str, ...]] = {
    "patient": ("PatientID", "PatientName", "PatientBirthDate", "NumberOfPatientRelatedStudies"),
    "study": ("PatientID", "PatientName", "StudyDate", "StudyDescription", "ModalitiesInStudy", "StudyInstanceUID"),
    "series": ("Modality", "SeriesNumber", "SeriesDescription", "NumberOfSeriesRelatedInstances", "SeriesInstanceUID"),
}
COLUMN_NAMES = {
    "PatientID": "Patient ID",
    "PatientName": "Patient's name",
    "PatientBirthDate": "Birth date",
    "NumberOfPatientRelatedStudies": "Studies",
    "StudyDate": "Study date",
    "StudyDescription": "Description",
    "ModalitiesInStudy": "Modalities",
    "StudyInstanceUID": "Study Instance UID",
    "Modality": "Modality",
    "SeriesNumber": "Series",
    "SeriesDescription": "Description",
    "NumberOfSeriesRelatedInstances": "Instances",
    "SeriesInstanceUID": "Series Instance UID",
}


def query_servers(ws: Workspace) -> list[str]:
    """The names of the site's DICOM (DIMSE) servers, which can be queried and retrieved from."""
    return [s.name for s in ws.site().dicom.servers if s.kind == "dimse"]


def query(
    ws: Workspace, server: str, level: str, actor: Actor, keys: Mapping[str, str] | None = None
) -> list[dict[str, str]]:
    """C-FIND on ``server`` at ``level`` (patient, study or series) matching ``keys`` (DICOM keywords, wildcards
    allowed, e.g. ``{"PatientID": "RTX*"}``); each match as keyword → value. Audited (who looked for which
    patients where, and how many matched), a failure too. Raises InputError, SendError."""
    asked = dict(keys or {})
    try:
        if level.upper() not in LEVELS:
            raise InputError(f"query level {level!r}: use patient, study or series")
        matches = find(_server(ws, server), ws.site().dicom.local_ae_title, level.upper(), asked)
    except Exception as e:
        ws.audit(actor, "query", "failed", server=server, level=level.lower(), keys=asked, error=str(e))
        raise
    found = [{e.keyword: str(e.value) for e in m if e.keyword and e.keyword != "QueryRetrieveLevel"} for m in matches]
    ws.audit(actor, "query", "ok", server=server, level=level.lower(), keys=asked, matches=len(found))
    return found


@dataclass(frozen=True)
class Retrieved:
    """A retrieve's outcome: what the archive reported; the instances are in the incoming sets."""

    server: str
    study_uid: str
    move: MoveResult


def retrieve(ws: Workspace, server: str, study_uid: str, actor: Actor) -> Retrieved:
    """C-MOVE the study from ``server`` into our receiver (started for the move when not running); audited.
    Raises ConfigError (no receiver configured), InputError, SendError."""
    settings = ws.site().dicom.receiver
    if settings is None:
        raise ConfigError("retrieve needs the receiver: configure [dicom.receiver] (ae_title, port) in site.toml")
    dest = _server(ws, server)
    with contextlib.ExitStack() as stack:
        scp = receiver(ws)
        with contextlib.suppress(OSError):  # the port is taken: the receiver already runs (serve, receive)
            stack.enter_context(scp)
        try:
            move = move_study(dest, ws.site().dicom.local_ae_title, settings.ae_title, study_uid)
        except Exception as e:
            ws.audit(actor, "retrieve", "failed", server=server, study=study_uid, error=str(e))
            raise
        if scp.listening:
            scp.settle(60)  # the archive's association to us ends after its last store; then all is filed
    ws.audit(actor, "retrieve", "ok" if move.ok else "incomplete", server=server, study=study_uid,
             completed=move.completed, failed=move.failed)  # fmt: skip
    return Retrieved(server, study_uid, move)
