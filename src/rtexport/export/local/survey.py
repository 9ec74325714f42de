"""What else in an existing export folder the user should know about: the same instance under another file name,
another RT Plan of the same plan (other UIDs)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pydicom
from pydicom.errors import InvalidDicomError

from rtexport.export.objects import ExportObject

_OURS = re.compile(r"^(CT|RS|RP|RD)\.([0-9.]+)\.dcm$")
_RT_PLAN = "1.2.840.10008.5.1.4.1.1.481.5"


@dataclass(frozen=True)
class PlanIdentity:
    """What tells another export of the same plan apart in a folder: the patient and the plan's RTPlanName."""

    patient_id: str
    plan_name: str


def _header(d: int, name: str) -> pydicom.Dataset | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            ds = pydicom.dcmread(
                f,
                stop_before_pixels=True,
                specific_tags=["SOPClassUID", "SOPInstanceUID", "PatientID", "RTPlanName", "ApprovalStatus"],
            )
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, AttributeError, TypeError):
        return None
    return ds


def folder_warnings(
    d: int, names: Sequence[str], objects: Sequence[ExportObject], plan: PlanIdentity | None
) -> list[str]:
    """What else in the folder the user should know about: the same instance under another name, another export
    of the same plan (other UIDs)."""
    ours = {o.sop_instance_uid: o.filename for o in objects}
    filenames = set(ours.values())
    warnings: list[str] = []
    for name in sorted(names):
        if name in filenames or name.startswith("."):
            continue
        m = _OURS.match(name)
        if m is not None and m.group(1) != "RP":
            continue  # our own naming: the name says which instance it is, and it is not one of this export
        ds = _header(d, name)
        if ds is None:
            continue
        uid = str(ds.get("SOPInstanceUID", ""))
        if uid in ours:
            warnings.append(
                f"{name} in the folder is the same instance as {ours[uid]} (SOP Instance UID {uid}) under another "
                "file name: a receiver reading the folder gets it twice"
            )
        elif (
            plan is not None
            and str(ds.get("SOPClassUID", "")) == _RT_PLAN
            and str(ds.get("PatientID", "")) == plan.patient_id
            and str(ds.get("RTPlanName", "")) == plan.plan_name
        ):
            status = str(ds.get("ApprovalStatus", "")) or "no approval status"
            warnings.append(
                f"{name} in the folder is another RT Plan of plan {plan.plan_name} ({status}, SOP Instance UID "
                f"{uid}): this export's plan has other UIDs; remove the one that should not be imported"
            )
    return warnings
