"""Import from the page: the folders under the site's ``dicom.import_roots`` with the CT series and RT Structure
Sets each holds (patient, date, slices, frame of reference), read from their headers only; importing one goes
through :func:`~rtexport.services.courses.import_course`, the service of ``rtexport import`` (the same checks and
messages, all or nothing)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from rtexport.errors import NotAllowedError
from rtexport.model.people import Actor
from rtexport.services.courses import import_course
from rtexport.services.site import load_site
from rtexport.workspace import Workspace
from rtexport.workspace.importer import ImportResult

LOGGER = logging.getLogger(__name__)
MAX_DEPTH = 4  # folders deeper below a root are not listed
MAX_FOLDERS = 200
MAX_FILES = 5000  # per folder: headers read at most
_CT = "1.2.840.10008.5.1.4.1.1.2"
_RTSTRUCT = "1.2.840.10008.5.1.4.1.1.481.3"
_TAGS = [
    "SOPClassUID", "PatientName", "PatientID", "StudyDate", "SeriesInstanceUID", "FrameOfReferenceUID",
    "StructureSetLabel", "StructureSetDate", "ReferencedFrameOfReferenceSequence", "StructureSetROISequence",
    "SeriesDescription",
]  # fmt: skip


@dataclass
class Found:
    """One CT series or RT Structure Set found in a folder."""

    kind: str  # "CT" or "RTSTRUCT"
    patient_name: str
    patient_id: str
    date: str
    frame_of_reference_uid: str
    series_uid: str
    label: str = ""
    count: int = 0  # slices of a CT series; structures of a structure set


@dataclass
class FolderScan:
    """A folder under an import root (``path``: absolute; ``shown``: relative to its root, for the list), what it
    holds, and whether it can be imported as it stands (one CT series and one structure set, below it)."""

    root: str
    path: str
    shown: str
    found: list[Found] = field(default_factory=list)
    other_files: int = 0

    @property
    def importable(self) -> bool:
        return any(f.kind == "CT" for f in self.found) and sum(f.kind == "RTSTRUCT" for f in self.found) == 1


def import_roots(ws: Workspace) -> list[Path]:
    """The site's import roots, resolved (relative ones below the workspace)."""
    return [ws.resolve(r).resolve() for r in load_site(ws).dicom.import_roots]


def _header(path: Path) -> dict[str, object] | None:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
    except (InvalidDicomError, OSError, ValueError, AttributeError, EOFError):
        return None
    refs = ds.get("ReferencedFrameOfReferenceSequence") or []
    frame = str(ds.get("FrameOfReferenceUID", "")) or (str(refs[0].get("FrameOfReferenceUID", "")) if refs else "")
    return {
        "sop_class": str(ds.get("SOPClassUID", "")),
        "patient_name": str(ds.get("PatientName", "")),
        "patient_id": str(ds.get("PatientID", "")),
        "date": str(ds.get("StudyDate", "") or ds.get("StructureSetDate", "")),
        "series": str(ds.get("SeriesInstanceUID", "")),
        "frame": frame,
        "label": str(ds.get("StructureSetLabel", "") or ds.get("SeriesDescription", "")),
        "rois": len(ds.get("StructureSetROISequence") or []),
    }


def _scan_folder(root: Path, folder: Path, files: list[str]) -> FolderScan:
    scan = FolderScan(str(root), str(folder), str(folder.relative_to(root)) or ".")
    series: dict[str, Found] = {}
    for name in sorted(files)[:MAX_FILES]:
        h = _header(folder / name)
        if h is None or h["sop_class"] not in (_CT, _RTSTRUCT):
            scan.other_files += 1
            continue
        ident = (str(h["patient_name"]), str(h["patient_id"]), str(h["date"]), str(h["frame"]), str(h["series"]))
        if h["sop_class"] == _RTSTRUCT:
            rois = h["rois"]
            scan.found.append(Found("RTSTRUCT", *ident, str(h["label"]), rois if isinstance(rois, int) else 0))
            continue
        found = series.setdefault(ident[4], Found("CT", *ident, str(h["label"])))
        found.count += 1
    scan.found[:0] = list(series.values())
    return scan


def scan_roots(ws: Workspace) -> list[FolderScan]:
    """Every folder under the import roots that holds CT images or an RT Structure Set (symbolic links are not
    followed), with what it holds."""
    out: list[FolderScan] = []
    for root in import_roots(ws):
        if not root.is_dir():
            continue
        for here, dirs, files in os.walk(root):
            folder = Path(here)
            depth = len(folder.relative_to(root).parts)
            dirs[:] = sorted(d for d in dirs if depth < MAX_DEPTH and not d.startswith("."))
            if not files:
                continue
            scan = _scan_folder(root, folder, files)
            if scan.found:
                out.append(scan)
            if len(out) >= MAX_FOLDERS:
                LOGGER.warning("import roots: more than %d folders with DICOM files; listing the first", MAX_FOLDERS)
                return out
    return out


def within_roots(ws: Workspace, folder: str) -> Path:
    """The folder if it lies below one of the import roots (symbolic links resolved), else NotAllowedError."""
    roots = import_roots(ws)
    if not roots:
        raise NotAllowedError("the site configuration lists no dicom.import_roots: import from a folder is off")
    path = Path(folder).resolve()
    if not any(path == r or path.is_relative_to(r) for r in roots):
        shown = ", ".join(str(r) for r in roots)
        raise NotAllowedError(f"{folder}: not below an import root ({shown})")
    return path


def import_folder(ws: Workspace, folder: str, course_id: str, actor: Actor) -> ImportResult:
    """Import the course in ``folder`` (below an import root) as ``course_id``: ``rtexport import``'s service."""
    return import_course(ws, within_roots(ws, folder), course_id.strip(), actor)
