"""Site configuration (``site.toml``): machines, beam data, CT curves, materials and DICOM settings."""

from __future__ import annotations

import re
import tomllib
from enum import StrEnum
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rtexport.errors import ConfigError
from rtexport.model.network import (
    DicomServer,
    DicomSettings,
    ReceiverSettings,
    ReceiverTLS,
    TLSConfig,
    validate_ae_title,
)
from rtexport.model.values import LO, SH, Finite, Positive, Text

__all__ = ["DicomServer", "DicomSettings", "ReceiverSettings", "ReceiverTLS", "TLSConfig", "validate_ae_title"]

_UID_ROOT = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")

# Plausible ranges (refused outside): what a commissioned electron beam and a CT calibration can be.
Distance = Annotated[Finite, Field(gt=0, le=2000)]  # mm, source to anything
Fraction = Annotated[Finite, Field(ge=0.1, le=10)]  # output factors, relative to the reference field
Density = Annotated[Finite, Field(ge=0, le=25)]  # g/cm³ or relative to water; osmium is 22.6
HU = Annotated[Finite, Field(ge=-10000, le=100000)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _strictly_increasing(values: list[float], what: str) -> list[float]:
    if any(b <= a for a, b in pairwise(values)):
        raise ValueError(f"{what} must increase")
    return values


def _non_decreasing(values: list[float], what: str) -> list[float]:
    bad = next((k for k, (a, b) in enumerate(pairwise(values), start=1) if b < a), None)
    if bad is not None:
        raise ValueError(
            f"{what} must not decrease as HU increase (point {bad}: {values[bad]:g} < {values[bad - 1]:g})"
        )
    return values


class ApplicatorShape(StrEnum):
    """Applicator opening shape; maps to DICOM ApplicatorType ELECTRON_SQUARE / _RECT / _CIRC."""

    SQUARE = "square"
    RECTANGLE = "rectangle"
    CIRCLE = "circle"


JawPosition = Annotated[Finite, Field(ge=-400, le=400)]  # mm at the isocenter plane


class JawPositions(_Model):
    """Jaw positions (mm) projected to the isocenter plane, on the beam-limiting-device axes: (X1, X2), (Y1, Y2)."""

    x: tuple[JawPosition, JawPosition]
    y: tuple[JawPosition, JawPosition]

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        for name, (a, b) in (("x", self.x), ("y", self.y)):
            if a >= b:
                raise ValueError(f"{name}: the first jaw ({a:g}) must be below the second ({b:g})")
        return self

    def contains(self, opening_mm: tuple[float, float]) -> bool:
        """Whether the jaws open at least as wide as a centred field of ``opening_mm``."""
        w, h = opening_mm
        return self.x[0] <= -w / 2 and self.x[1] >= w / 2 and self.y[0] <= -h / 2 and self.y[1] >= h / 2


class JawDistances(_Model):
    """Source-to-jaw distances (mm) of the X and Y jaws (the RT Plan's SourceToBeamLimitingDeviceDistance)."""

    x: Annotated[Positive, Field(le=1500)]
    y: Annotated[Positive, Field(le=1500)]


class Applicator(_Model):
    """An electron applicator (cone). ``opening_mm`` is the field size at the isocenter plane (x, y);
    for a circle both values are the diameter. ``source_to_applicator_mm``: source to the applicator's end
    (patient side): no surface may come closer. ``jaws_mm``: the machine's fixed jaw setting with this applicator
    (energies whose setting differs list it in their ``applicator_jaws_mm``)."""

    id: Annotated[SH, Field(min_length=1, max_length=16)]  # ApplicatorID
    shape: ApplicatorShape
    opening_mm: tuple[Annotated[Positive, Field(le=500)], Annotated[Positive, Field(le=500)]]
    source_to_applicator_mm: Distance = 950.0
    source_to_cutout_tray_mm: Distance = 947.9
    default_cutout_material: Text = "Cerrobend"
    cutout_thickness_mm: Annotated[Positive, Field(le=100)] = 12.0
    jaws_mm: JawPositions | None = None

    @model_validator(mode="after")
    def _shape_matches_opening(self) -> Self:
        w, h = self.opening_mm
        if self.shape in (ApplicatorShape.SQUARE, ApplicatorShape.CIRCLE) and w != h:
            raise ValueError(f"a {self.shape.value} applicator needs equal opening sides, got {w} x {h}")
        return self


PDD_MAX_PCT = (95.0, 105.0)  # a PDD is normalized to 100 % at dmax


def pdd_tail_pct(energy_mev: float) -> float:
    """The largest dose (% of max) a PDD may end at: past the practical range Rp only the bremsstrahlung tail is
    left, a few percent that grow with energy (about 4 % at 20 MeV)."""
    return max(5.0, 0.3 * energy_mev)


class DepthDose(_Model):
    """Percent depth dose of the reference applicator at the reference SSD, depths in mm, from the surface
    (0 mm) to past the practical range."""

    depth_mm: list[Annotated[Finite, Field(ge=0, le=600)]]
    dose_pct: list[Annotated[Finite, Field(ge=0, le=110)]]

    @field_validator("depth_mm")
    @classmethod
    def _depths_increase(cls, v: list[float]) -> list[float]:
        if len(v) < 3:
            raise ValueError("needs at least 3 depths")
        if v[0] != 0:
            raise ValueError(f"must start at the surface, 0 mm (starts at {v[0]:g} mm)")
        return _strictly_increasing(v, "depths")

    @model_validator(mode="after")
    def _same_length(self) -> Self:
        if len(self.depth_mm) != len(self.dose_pct):
            raise ValueError(f"{len(self.depth_mm)} depths but {len(self.dose_pct)} dose values")
        top = max(self.dose_pct)
        if not PDD_MAX_PCT[0] <= top <= PDD_MAX_PCT[1]:
            raise ValueError(
                f"dose_pct: its maximum is {top:g} %; a PDD is normalized to 100 % at dmax "
                f"({PDD_MAX_PCT[0]:g}-{PDD_MAX_PCT[1]:g} % accepted)"
            )
        return self


class FactorPoint(_Model):
    """Output factor for a square cutout of side ``side_mm`` (equivalent square)."""

    side_mm: Annotated[Positive, Field(le=500)]
    factor: Fraction


class FieldDepthDose(DepthDose):
    """Central-axis percent depth dose of a square cutout of side ``side_mm`` on the reference applicator at the
    reference SSD, normalized to its own maximum: the small-field data the pencil kernel is fitted to."""

    side_mm: Annotated[Positive, Field(le=500)]


class EnergyData(_Model):
    """Beam data of one electron energy, commissioned with the reference applicator at ``reference_ssd_mm``."""

    energy_mev: Annotated[Finite, Field(ge=1, le=50)]
    pdd: DepthDose
    reference_applicator: Text
    reference_ssd_mm: Annotated[Finite, Field(ge=500, le=2000)] = 1000.0
    # In-air spread: give the angular spread directly or the 80-20 % penumbra at the isocenter plane in air.
    sigma_theta_rad: Annotated[Positive, Field(le=0.5)] | None = None
    penumbra_80_20_mm: Annotated[Positive, Field(le=100)] | None = None
    virtual_ssd_mm: Annotated[Finite, Field(ge=100, le=2000)] = 950.0
    applicator_factors: dict[str, Fraction] = Field(default_factory=dict)
    cutout_factors: list[FactorPoint] = Field(default_factory=list)
    field_pdds: list[FieldDepthDose] = Field(default_factory=list)  # square cutouts: the pencil kernel's data
    calibration_cgy_per_mu: Annotated[Finite, Field(ge=0.1, le=10)] = 1.0  # cGy/MU at dmax, reference conditions
    dose_rate_mu_per_min: Annotated[Finite, Field(ge=1, le=10000)] | None = None  # the RT Plan's DoseRateSet
    applicator_jaws_mm: dict[str, JawPositions] = Field(default_factory=dict)  # where this energy's jaws differ

    @model_validator(mode="after")
    def _has_spread(self) -> Self:
        if self.sigma_theta_rad is None and self.penumbra_80_20_mm is None:
            raise ValueError("give sigma_theta_rad or penumbra_80_20_mm")
        tail, limit = self.pdd.dose_pct[-1], pdd_tail_pct(self.energy_mev)
        if tail > limit:
            raise ValueError(
                f"pdd: ends at {tail:g} % at {self.pdd.depth_mm[-1]:g} mm; the table must reach past the practical "
                f"range Rp, where only the bremsstrahlung tail (at most {limit:g} % at {self.energy_mev:g} MeV) is left"
            )
        return self

    @model_validator(mode="after")
    def _field_pdds_have_factors(self) -> Self:
        _strictly_increasing([f.side_mm for f in self.field_pdds], "field_pdds sides")
        sides = [p.side_mm for p in self.cutout_factors]
        for f in self.field_pdds:
            if not sides or not sides[0] <= f.side_mm <= sides[-1]:
                raise ValueError(
                    f"field_pdds: the {f.side_mm:g} mm square needs its output, but cutout_factors "
                    + (f"cover {sides[0]:g}-{sides[-1]:g} mm" if sides else "are empty")
                )
        return self

    @field_validator("cutout_factors")
    @classmethod
    def _cutout_sides_increase(cls, v: list[FactorPoint]) -> list[FactorPoint]:
        _strictly_increasing([p.side_mm for p in v], "cutout factor sides")
        return v


class Machine(_Model):
    """A treatment machine with its electron applicators and energies."""

    name: Annotated[SH, Field(min_length=1, max_length=16)]  # TreatmentMachineName
    source_axis_distance_mm: Annotated[Finite, Field(ge=500, le=1500)] = 1000.0
    source_to_jaws_mm: JawDistances | None = None  # required by site check
    # The largest SSD planned without an acknowledgement in the plan file (default: SAD + 100 mm).
    usual_max_ssd_mm: Distance | None = None
    applicators: list[Applicator]
    energies: list[EnergyData]

    @property
    def max_usual_ssd_mm(self) -> float:
        return self.usual_max_ssd_mm or self.source_axis_distance_mm + 100.0

    @property
    def max_ssd_mm(self) -> float:
        """Beyond this SSD no plan is plausible (refused, acknowledged or not)."""
        return 1.5 * self.source_axis_distance_mm

    def applicator(self, applicator_id: str) -> Applicator | None:
        return next((a for a in self.applicators if a.id == applicator_id), None)

    def energy(self, energy_mev: float) -> EnergyData | None:
        return next((e for e in self.energies if abs(e.energy_mev - energy_mev) < 1e-6), None)

    def jaws(self, applicator_id: str, energy_mev: float) -> JawPositions | None:
        """The jaw setting with an applicator at an energy: the energy's own, else the applicator's."""
        energy, app = self.energy(energy_mev), self.applicator(applicator_id)
        own = energy.applicator_jaws_mm.get(applicator_id) if energy is not None else None
        return own or (app.jaws_mm if app is not None else None)


class CTCurve(_Model):
    """HU to relative electron density and mass density (g/cm³): HU strictly increasing, densities never
    decreasing as HU increase (denser matter scatters more X-rays), not all zero."""

    name: Text
    hu: list[HU]
    rel_electron_density: list[Density]
    mass_density: list[Density]

    @field_validator("hu")
    @classmethod
    def _hu_increase(cls, v: list[float]) -> list[float]:
        if len(v) < 2:
            raise ValueError("needs at least 2 points")
        return _strictly_increasing(v, "HU values")

    @field_validator("rel_electron_density", "mass_density")
    @classmethod
    def _densities(cls, v: list[float]) -> list[float]:
        if v and max(v) <= 0:
            raise ValueError("all zero: the curve would make every voxel vacuum")
        return _non_decreasing(v, "densities")

    @model_validator(mode="after")
    def _same_length(self) -> Self:
        if not len(self.hu) == len(self.rel_electron_density) == len(self.mass_density):
            raise ValueError("hu, rel_electron_density and mass_density need the same number of points")
        return self


class Material(_Model):
    """A material for overrides, bolus and cutouts."""

    name: Annotated[SH, Field(min_length=1)]  # MaterialID
    mass_density: Annotated[Density, Field(gt=0)]
    rel_electron_density: Annotated[Density, Field(gt=0)] | None = None
    rel_stopping_power: Annotated[Density, Field(gt=0)]
    rel_scattering_power: Annotated[Finite, Field(gt=0, le=1000)]


class Checks(_Model):
    """When rtexport asks for a second look: the independent MU check's action level, and the warnings of ``dose``."""

    # |engine MU − hand calculation| beyond this (%): approval needs the physicist's acknowledgement
    mu_check_action_level_pct: Positive = 5.0
    # 'dose' warns when the plan's maximum exceeds the prescription by more than this (%)
    max_dose_warning_pct: Annotated[float, Field(ge=0)] = 10.0
    # 'dose' warns when a beam's MU per fraction is outside [min, max]
    mu_per_fraction_min: Positive = 20.0
    mu_per_fraction_max: Positive = 800.0
    # a target whose D95 lies below this % of the prescription is warned of (approval asks to acknowledge it)
    target_d95_min_pct: Annotated[float, Field(ge=0, le=100)] = 90.0

    @model_validator(mode="after")
    def _mu_range(self) -> Self:
        if self.mu_per_fraction_min >= self.mu_per_fraction_max:
            raise ValueError("mu_per_fraction_min must be less than mu_per_fraction_max")
        return self


class Site(_Model):
    """The whole site configuration."""

    uid_root: Text | None = None
    manufacturer: LO = "rtexport"
    machines: list[Machine] = Field(default_factory=list)
    ct_curves: list[CTCurve] = Field(default_factory=list)
    materials: list[Material] = Field(default_factory=list)
    dicom: DicomSettings = Field(default_factory=DicomSettings)
    checks: Checks = Field(default_factory=Checks)

    @field_validator("uid_root")
    @classmethod
    def _valid_root(cls, v: str | None) -> str | None:
        if v is not None and (not _UID_ROOT.match(v) or len(v) > 40):
            raise ValueError("must be dotted digits without leading zeros, at most 40 characters")
        return v

    def machine(self, name: str) -> Machine | None:
        return next((m for m in self.machines if m.name == name), None)

    def ct_curve(self, name: str) -> CTCurve | None:
        return next((c for c in self.ct_curves if c.name == name), None)

    def material(self, name: str) -> Material | None:
        return next((m for m in self.materials if m.name == name), None)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _semantic_problems(site: Site) -> list[str]:
    problems: list[str] = []

    def unique(items: list[str], where: str, what: str) -> None:
        seen: set[str] = set()
        for i, name in enumerate(items):
            if name in seen:
                problems.append(f"{where}[{i}]: duplicate {what} {name!r}")
            seen.add(name)

    unique([m.name for m in site.machines], "machines", "machine name")
    unique([c.name for c in site.ct_curves], "ct_curves", "CT curve name")
    unique([m.name for m in site.materials], "materials", "material name")
    unique([s.name for s in site.dicom.servers], "dicom.servers", "server name")
    materials = {m.name for m in site.materials}
    for mi, machine in enumerate(site.machines):
        where = f"machines[{mi}]"
        unique([a.id for a in machine.applicators], f"{where}.applicators", "applicator id")
        unique([f"{e.energy_mev:g}" for e in machine.energies], f"{where}.energies", "energy")
        if not machine.applicators:
            problems.append(f"{where}.applicators: a machine needs at least one applicator")
        if not machine.energies:
            problems.append(f"{where}.energies: a machine needs at least one energy")
        for ai, app in enumerate(machine.applicators):
            if app.default_cutout_material not in materials:
                problems.append(
                    f"{where}.applicators[{ai}].default_cutout_material: unknown material "
                    f"{app.default_cutout_material!r}"
                )
            if app.source_to_applicator_mm > machine.source_axis_distance_mm:
                problems.append(
                    f"{where}.applicators[{ai}].source_to_applicator_mm: the applicator ends beyond the isocenter "
                    f"(source-axis distance {machine.source_axis_distance_mm:g})"
                )
            if app.source_to_cutout_tray_mm > app.source_to_applicator_mm:
                problems.append(
                    f"{where}.applicators[{ai}].source_to_cutout_tray_mm: the cutout tray lies beyond the "
                    f"applicator's end ({app.source_to_applicator_mm:g} mm from the source)"
                )
            if app.source_to_cutout_tray_mm >= machine.source_axis_distance_mm:
                problems.append(
                    f"{where}.applicators[{ai}].source_to_cutout_tray_mm: must be less than the "
                    f"source-axis distance {machine.source_axis_distance_mm:g}"
                )
        ids = {a.id for a in machine.applicators}
        for ei, energy in enumerate(machine.energies):
            ew = f"{where}.energies[{ei}]"
            if energy.reference_applicator not in ids:
                problems.append(f"{ew}.reference_applicator: unknown applicator {energy.reference_applicator!r}")
            for app_id in energy.applicator_factors:
                if app_id not in ids:
                    problems.append(f"{ew}.applicator_factors: unknown applicator {app_id!r}")
            missing = sorted(ids - set(energy.applicator_factors))
            if missing:
                problems.append(f"{ew}.applicator_factors: missing applicator(s) {', '.join(missing)}")
            for app_id in energy.applicator_jaws_mm:
                if app_id not in ids:
                    problems.append(f"{ew}.applicator_jaws_mm: unknown applicator {app_id!r}")
        problems += _machine_geometry_problems(machine, where)
    return problems


def _machine_geometry_problems(machine: Machine, where: str) -> list[str]:
    """The jaws and distances the RT Plan writes must come from the machine, not be invented."""
    problems: list[str] = []
    jaw_distances = machine.source_to_jaws_mm
    if jaw_distances is None:
        problems.append(
            f"{where}.source_to_jaws_mm: missing: the machine's source-to-jaw distances, e.g. "
            "{ x = 367.0, y = 280.0 } (mm), written to the RT Plan"
        )
    for ai, app in enumerate(machine.applicators):
        aw = f"{where}.applicators[{ai}]"
        if app.source_to_applicator_mm >= machine.source_axis_distance_mm:
            problems.append(
                f"{aw}.source_to_applicator_mm: the applicator's end must be nearer the source than the "
                f"isocenter ({machine.source_axis_distance_mm:g} mm)"
            )
        if jaw_distances is not None and max(jaw_distances.x, jaw_distances.y) >= app.source_to_cutout_tray_mm:
            problems.append(f"{aw}: the jaws must be nearer the source than the cutout tray")
        without = [f"{e.energy_mev:g}" for e in machine.energies if machine.jaws(app.id, e.energy_mev) is None]
        if without:
            problems.append(
                f"{aw}.jaws_mm: missing: the machine's fixed jaw setting with applicator {app.id} "
                f"(for {', '.join(without)} MeV), e.g. {{ x = [-100.0, 100.0], y = [-100.0, 100.0] }}, "
                "or per energy in applicator_jaws_mm"
            )
        for e in machine.energies:
            jaws = machine.jaws(app.id, e.energy_mev)
            if jaws is not None and not jaws.contains(app.opening_mm):
                problems.append(
                    f"{aw}: the jaws at {e.energy_mev:g} MeV (x {jaws.x}, y {jaws.y}) are narrower than the "
                    f"applicator opening {app.opening_mm[0]:g} x {app.opening_mm[1]:g} mm"
                )
    return problems


def site_problems(data: dict[str, Any]) -> tuple[Site | None, list[str]]:
    """Validate raw site data; return the site (if structurally valid) and every problem with its path."""
    try:
        site = Site.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{_loc(tuple(err['loc']))}: {msg}")
        return None, problems
    return site, _semantic_problems(site)


def read_site_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read site configuration {path}: {e.strerror}") from e
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e


def load_site(path: Path) -> Site:
    """Load and validate ``site.toml``; raise :class:`ConfigError` listing every problem."""
    site, problems = site_problems(read_site_toml(path))
    if problems or site is None:
        raise ConfigError(f"{path}: invalid site configuration (run 'rtexport site check')", problems)
    return site
