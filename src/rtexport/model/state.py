"""A plan as it stands: its current revision, who approved or authorized it, and the dose computed for it (as
stored: beam MU and normalization in the record, arrays loaded on demand)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from rtexport.model.dose import DoseGrid, GridGeometry
from rtexport.model.plan import Plan


@dataclass(frozen=True)
class Revision:
    plan_id: str
    number: int
    digest: str
    toml: str
    token: str  # random per revision: the seed of this revision's UIDs
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class Signature:
    """Who approved or authorized a revision, and when; ``person_name`` is their DICOM Person Name."""

    user: str
    at: datetime
    person_name: str = ""


@dataclass(frozen=True)
class StoredGrid:
    """A dose grid as stored: its geometry, the hash of its array, and how to read that array (verified against the
    hash, memory-mapped); :meth:`load` reads it."""

    sha256: str
    geometry: GridGeometry
    frame_of_reference_uid: str
    reader: Callable[[str], npt.NDArray[np.float32]] = field(compare=False, repr=False)

    def load(self) -> DoseGrid:
        return DoseGrid(self.geometry, self.reader(self.sha256), self.frame_of_reference_uid)


@dataclass(frozen=True)
class StoredBeamDose:
    beam_name: str
    mu_per_fraction: float
    dose_per_fraction_gy: float  # this beam's dose per fraction at its normalization point
    normalization_point_mm: tuple[float, float, float]
    grid: StoredGrid
    ssd_mm: float | None = None
    surface_entry_mm: tuple[float, float, float] | None = None
    normalization_depth_mm: float | None = None


@dataclass(frozen=True)
class StoredDose:
    revision: int
    computed_at: datetime
    engine: str
    beams: tuple[StoredBeamDose, ...]
    plan: StoredGrid
    # What the dose was computed with (part → hash, see services.integrity); None: not recorded (an older dose)
    inputs: dict[str, str] | None = field(default=None, compare=False)

    def beam(self, name: str) -> StoredBeamDose | None:
        return next((b for b in self.beams if b.beam_name == name), None)


@dataclass(frozen=True)
class PlanState:
    """A plan as it stands: its current revision, approval, authorization and dose state."""

    plan: Plan
    revision: Revision
    revisions: int
    approval: Signature | None
    authorization: Signature | None
    dose: StoredDose | None  # dose of the current revision, if computed
    # Rows of this revision changed behind rtexport's back (they no longer match their seals): decisions refuse.
    integrity: tuple[str, ...] = ()
    # What the stored plan file breaks of rules made stricter since it was stored: decisions refuse, views warn.
    stored_problems: tuple[str, ...] = ()
    # What changed in the site's beam data, CT curve or materials since the dose was computed (and not accepted).
    dose_stale: tuple[str, ...] = ()

    @property
    def approved(self) -> bool:
        return self.approval is not None

    @property
    def dose_state(self) -> str:
        if self.dose is None:
            return "none"
        return "stale" if self.dose_stale else "current"
