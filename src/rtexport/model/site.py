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

_UID_ROOT = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # no backslash, printable, 1-16 chars

Positive = Annotated[float, Field(gt=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _strictly_increasing(values: list[float], what: str) -> list[float]:
    if any(b <= a for a, b in pairwise(values)):
        raise ValueError(f"{what} must increase")
    return values


class ApplicatorShape(StrEnum):
    """Applicator opening shape; maps to DICOM ApplicatorType ELECTRON_SQUARE / _RECT / _CIRC."""

    SQUARE = "square"
    RECTANGLE = "rectangle"
    CIRCLE = "circle"


class JawPositions(_Model):
    """Jaw positions (mm) projected to the isocenter plane, on the beam-limiting-device axes: (X1, X2), (Y1, Y2)."""

    x: tuple[float, float]
    y: tuple[float, float]

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

    x: Positive
    y: Positive


class Applicator(_Model):
    """An electron applicator (cone). ``opening_mm`` is the field size at the isocenter plane (x, y);
    for a circle both values are the diameter. ``source_to_applicator_mm``: source to the applicator's end
    (patient side): no surface may come closer. ``jaws_mm``: the machine's fixed jaw setting with this applicator
    (energies whose setting differs list it in their ``applicator_jaws_mm``)."""

    id: Annotated[str, Field(min_length=1, max_length=16)]
    shape: ApplicatorShape
    opening_mm: tuple[Positive, Positive]
    source_to_applicator_mm: Positive = 950.0
    source_to_cutout_tray_mm: Positive = 947.9
    default_cutout_material: str = "Cerrobend"
    cutout_thickness_mm: Positive = 12.0
    jaws_mm: JawPositions | None = None

    @model_validator(mode="after")
    def _shape_matches_opening(self) -> Self:
        w, h = self.opening_mm
        if self.shape in (ApplicatorShape.SQUARE, ApplicatorShape.CIRCLE) and w != h:
            raise ValueError(f"a {self.shape.value} applicator needs equal opening sides, got {w} x {h}")
        return self


class DepthDose(_Model):
    """Percent depth dose of the reference applicator at the reference SSD, depths in mm."""

    depth_mm: list[float]
    dose_pct: list[Annotated[float, Field(ge=0)]]

    @field_validator("depth_mm")
    @classmethod
    def _depths_increase(cls, v: list[float]) -> list[float]:
        if len(v) < 3:
            raise ValueError("needs at least 3 depths")
        if v[0] < 0:
            raise ValueError("depths must be >= 0")
        return _strictly_increasing(v, "depths")

    @model_validator(mode="after")
    def _same_length(self) -> Self:
        if len(self.depth_mm) != len(self.dose_pct):
            raise ValueError(f"{len(self.depth_mm)} depths but {len(self.dose_pct)} dose values")
        return self


class FactorPoint(_Model):
    """Output factor for a square cutout of side ``side_mm`` (equivalent square)."""

    side_mm: Positive
    factor: Positive


class EnergyData(_Model):
    """Beam data of one electron energy, commissioned with the reference applicator at ``reference_ssd_mm``."""

    energy_mev: Positive
    pdd: DepthDose
    reference_applicator: str
    reference_ssd_mm: Positive = 1000.0
    # In-air spread: give the angular spread directly or the 80-20 % penumbra at the isocenter plane in air.
    sigma_theta_rad: Positive | None = None
    penumbra_80_20_mm: Positive | None = None
    virtual_ssd_mm: Positive = 950.0
    applicator_factors: dict[str, Positive] = Field(default_factory=dict)
    cutout_factors: list[FactorPoint] = Field(default_factory=list)
    calibration_cgy_per_mu: Positive = 1.0
    dose_rate_mu_per_min: Positive | None = None  # the RT Plan's DoseRateSet, when given
    applicator_jaws_mm: dict[str, JawPositions] = Field(default_factory=dict)  # where this energy's jaws differ

    @model_validator(mode="after")
    def _has_spread(self) -> Self:
        if self.sigma_theta_rad is None and self.penumbra_80_20_mm is None:
            raise ValueError("give sigma_theta_rad or penumbra_80_20_mm")
        return self

    @field_validator("cutout_factors")
    @classmethod
    def _cutout_sides_increase(cls, v: list[FactorPoint]) -> list[FactorPoint]:
        _strictly_increasing([p.side_mm for p in v], "cutout factor sides")
        return v


class Machine(_Model):
    """A treatment machine with its electron applicators and energies."""

    name: Annotated[str, Field(min_length=1, max_length=16)]
    source_axis_distance_mm: Positive = 1000.0
    source_to_jaws_mm: JawDistances | None = None  # required by site check
    applicators: list[Applicator]
    energies: list[EnergyData]

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
    """HU to relative electron density and mass density (g/cm³), HU strictly increasing."""

    name: str
    hu: list[float]
    rel_electron_density: list[Annotated[float, Field(ge=0)]]
    mass_density: list[Annotated[float, Field(ge=0)]]

    @field_validator("hu")
    @classmethod
    def _hu_increase(cls, v: list[float]) -> list[float]:
        if len(v) < 2:
            raise ValueError("needs at least 2 points")
        return _strictly_increasing(v, "HU values")

    @model_validator(mode="after")
    def _same_length(self) -> Self:
        if not len(self.hu) == len(self.rel_electron_density) == len(self.mass_density):
            raise ValueError("hu, rel_electron_density and mass_density need the same number of points")
        return self


class Material(_Model):
    """A material for overrides, bolus and cutouts."""

    name: str
    mass_density: Positive
    rel_electron_density: Positive | None = None
    rel_stopping_power: Positive
    rel_scattering_power: Positive


class TLSConfig(_Model):
    """TLS for a DICOM association: CA bundle to verify the server, optional client certificate."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_hostname: str | None = None


class DicomServer(_Model):
    """A DICOM storage destination (C-STORE SCP)."""

    name: str
    ae_title: str
    host: str
    port: Annotated[int, Field(ge=1, le=65535)]
    tls: TLSConfig | None = None

    @field_validator("ae_title")
    @classmethod
    def _valid_ae(cls, v: str) -> str:
        return validate_ae_title(v)


class DicomSettings(_Model):
    """Where exports go by default, who we are on the network, and where the web page may write."""

    export_folder: Path = Path("dicom-export")
    local_ae_title: str = "RTEXPORT"
    servers: list[DicomServer] = Field(default_factory=list)
    export_roots: list[Path] = Field(default_factory=list)
    # Storage commitment: the archive reports back on a new association to this port (register our AE there).
    commitment_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    commitment_host: str = ""

    @field_validator("local_ae_title")
    @classmethod
    def _valid_ae(cls, v: str) -> str:
        return validate_ae_title(v)

    def server(self, name: str) -> DicomServer | None:
        return next((s for s in self.servers if s.name == name), None)


class Checks(_Model):
    """When rtexport asks for a second look: the independent MU check's action level, and the warnings of ``dose``."""

    # |engine MU − hand calculation| beyond this (%): approval needs the physicist's acknowledgement
    mu_check_action_level_pct: Positive = 5.0
    # 'dose' warns when the plan's maximum exceeds the prescription by more than this (%)
    max_dose_warning_pct: Annotated[float, Field(ge=0)] = 10.0
    # 'dose' warns when a beam's MU per fraction is outside [min, max]
    mu_per_fraction_min: Positive = 20.0
    mu_per_fraction_max: Positive = 800.0

    @model_validator(mode="after")
    def _mu_range(self) -> Self:
        if self.mu_per_fraction_min >= self.mu_per_fraction_max:
            raise ValueError("mu_per_fraction_min must be less than mu_per_fraction_max")
        return self


class Site(_Model):
    """The whole site configuration."""

    uid_root: str | None = None
    manufacturer: str = "rtexport"
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


def validate_ae_title(v: str) -> str:
    if not _AE_TITLE.match(v) or not v.strip():
        raise ValueError(f"AE title {v!r} must be 1-16 printable characters, no backslash")
    return v


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
