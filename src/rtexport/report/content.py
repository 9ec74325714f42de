"""What a plan report shows, gathered by :mod:`rtexport.services.report` and rendered by :mod:`.pdf`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rtexport.model.course import Course
from rtexport.model.plan import Beam
from rtexport.model.site import Machine, Site
from rtexport.model.state import PlanState, StoredBeamDose
from rtexport.mucheck import MUCheck
from rtexport.pictures.render import DVHCurve


@dataclass(frozen=True)
class BeamRow:
    """One beam as the plan view gives it (the report only formats it)."""

    beam: Beam
    bev_svg: str
    equivalent_square_mm: float | None
    dose: StoredBeamDose | None
    aim: str = ""  # how the plan file aims the beam
    technique: str | None = None  # FIXED_SSD or ISOCENTRIC, as the RT Plan says
    isocenter_mm: tuple[float, float, float] | None = None  # as set up (the RT Plan's IsocenterPosition)
    ssd_mm: float | None = None  # as set up (the RT Plan's SourceToSurfaceDistance)
    entry_mm: tuple[float, float, float] | None = None
    boli: tuple[str, ...] = ()  # the BOLUS ROIs the beam references, by their exported names
    mu_per_fraction: float | None = None


@dataclass(frozen=True)
class SliceImage:
    view: str  # axial, sagittal, coronal
    index: int
    png: bytes


@dataclass(frozen=True)
class ExportRow:
    """One DICOM export of the revision, from the audit log."""

    at: datetime
    who: str
    os_user: str
    to_server: bool
    destination: str
    outcome: str
    ct_images: int
    uids: dict[str, list[str]]  # SOP Instance UIDs by kind (RS, RP, RD), CT left out
    not_stored: dict[str, str]


@dataclass(frozen=True)
class ReportContent:
    state: PlanState
    course: Course
    site: Site
    machine: Machine | None
    beams: list[BeamRow]
    mu_check: MUCheck | None
    warnings: list[str]
    max_dose_gy: float
    images: list[SliceImage]
    colors: dict[str, str]
    isodose: tuple[tuple[int, str], ...]
    dvh_svg: str
    curves: list[DVHCurve]
    targets: list[str]
    exports: list[ExportRow]
    as_of: datetime  # the report's date: the latest fact it shows (approved plan), or when it was made
    made_by: str | None  # who made it (an unapproved plan's report only)
