"""Plan files (TOML, ``format = 1``) and their validation against the site and the course."""

from __future__ import annotations

import hashlib
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rtexport.errors import PlanError
from rtexport.geometry import polygon
from rtexport.model.course import Course
from rtexport.model.site import ApplicatorShape, Machine, Site, _loc
from rtexport.model.values import LO, SH, Count, Finite, Positive, Text

Angle = Annotated[Finite, Field(ge=0, lt=360)]
Coordinate = Annotated[Finite, Field(ge=-2000, le=2000)]  # mm, patient coordinates
# MU per fraction: refused outside DELIVERABLE_MU; unusual (acknowledged in the file) outside the site's
# [checks] mu_per_fraction_min..max.
MU = Annotated[Finite, Field(ge=1, le=9999)]
USUAL_GY_PER_FRACTION = (0.5, 10.0)
MAX_GY_PER_FRACTION = 25.0
# What a plan file may acknowledge as unusual but intended: on a beam, and on the plan.
BeamAcknowledgement = Literal["ssd_mm", "mu"]
PlanAcknowledgement = Literal["prescription_gy"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Bolus(_Model):
    """Bolus on the patient surface along a beam: thickness, margin around the cutout's projection, material."""

    thickness_mm: Annotated[Positive, Field(le=50)]
    margin_mm: Annotated[Finite, Field(ge=0, le=100)] = 0.0
    material: Text


class MeasuredFactor(_Model):
    """A cutout factor measured for this beam's own cutout (output at the cutout's own dmax relative to the open
    applicator's at its dmax, same energy, reference SSD), and how it was measured."""

    value: Annotated[Finite, Field(ge=0.1, le=1.0)]
    note: Annotated[Text, Field(min_length=1, max_length=200)]


class Beam(_Model):
    """An electron beam. ``cutout_mm`` is the aperture polygon in the isocenter plane, beam's-eye view (x, y).

    Setup, one of two models: aimed (``target`` — the structure's centroid — or ``aim_mm``), the central axis
    passes through the aim point and the source stands ``ssd_mm`` (default: the machine's source-axis distance)
    before the first surface the axis meets, External or bolus; or ``isocenter_mm``, the true isocenter, the
    SSD then follows from the geometry (``ssd_mm``, if also given, must agree within 0.5 mm)."""

    name: Annotated[LO, Field(min_length=1, max_length=16)]  # BeamName
    energy_mev: Annotated[Finite, Field(ge=1, le=50)]
    applicator: Text
    gantry_deg: Angle = 0.0
    collimator_deg: Angle = 0.0
    couch_deg: Angle = 0.0
    isocenter_mm: tuple[Coordinate, Coordinate, Coordinate] | None = None
    target: Text | None = None
    aim_mm: tuple[Coordinate, Coordinate, Coordinate] | None = None
    ssd_mm: Annotated[Positive, Field(le=2000)] | None = None
    mu: MU | None = None
    weight: Annotated[Finite, Field(ge=0.001, le=1000)] | None = None
    cutout_mm: (
        list[tuple[Annotated[Finite, Field(ge=-500, le=500)], Annotated[Finite, Field(ge=-500, le=500)]]] | None
    ) = None
    bolus: Bolus | None = None
    # a measured factor for a cutout the site's table does not cover (used by dose and the MU check alike)
    cutout_factor: MeasuredFactor | None = None
    acknowledge: list[BeamAcknowledgement] = Field(default_factory=list)

    @model_validator(mode="after")
    def _checks(self) -> Self:
        if sum(x is not None for x in (self.isocenter_mm, self.target, self.aim_mm)) != 1:
            raise ValueError("give exactly one of isocenter_mm, target and aim_mm")
        if self.mu is not None and self.weight is not None:
            raise ValueError("give mu or weight, not both")
        if self.cutout_mm is not None:
            if len(self.cutout_mm) < 3:
                raise ValueError("cutout_mm needs at least 3 points")
            if abs(polygon.area(self.cutout_mm)) < 1.0:
                raise ValueError("cutout_mm encloses no area")
        elif self.cutout_factor is not None:
            raise ValueError("cutout_factor is for a custom cutout: give cutout_mm too (an open applicator has 1)")
        if self.cutout_factor is not None and not self.cutout_factor.note.strip():
            raise ValueError("cutout_factor.note: say how the factor was measured (date, detector, depth)")
        return self

    @property
    def aimed(self) -> bool:
        """True for an SSD setup (target or aim point), False when the isocenter is given."""
        return self.isocenter_mm is None


class DensityOverride(_Model):
    """Assign a material to a structure; overrides apply in the order listed."""

    structure: Text
    material: Text


class Plan(_Model):
    """An electron plan as loaded from a plan file."""

    format: Literal[1]
    id: Annotated[LO, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]  # RTPlanName
    label: Annotated[SH, Field(min_length=1, max_length=16)]  # RTPlanLabel
    course: Text
    machine: Text
    ct_curve: Text
    external: Text
    fractions: Annotated[Count, Field(ge=1, le=100)]
    prescription_gy: Annotated[Finite, Field(ge=0.1, le=100)]  # whole course
    dose_grid_mm: Annotated[Finite, Field(ge=1.0, le=10.0)] = 2.5
    overrides: list[DensityOverride] = Field(default_factory=list, alias="override")
    beams: list[Beam] = Field(min_length=1, alias="beam")
    acknowledge: list[PlanAcknowledgement] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_beams(self) -> Self:
        names = [b.name for b in self.beams]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"beam names must be unique: {', '.join(sorted(dup))}")
        if any(b.mu is None for b in self.beams) and any(b.mu is not None for b in self.beams):
            raise ValueError("give mu for every beam or for none (then MU come from the prescription)")
        if self.prescription_per_fraction_gy > MAX_GY_PER_FRACTION:
            raise ValueError(
                f"prescription_gy: {self.prescription_gy:g} Gy in {self.fractions} fraction(s) is "
                f"{self.prescription_per_fraction_gy:g} Gy per fraction, more than {MAX_GY_PER_FRACTION:g}"
            )
        return self

    @property
    def prescription_per_fraction_gy(self) -> float:
        return self.prescription_gy / self.fractions

    def to_toml(self) -> str:
        """Canonical TOML text of this plan (used for display and clone)."""
        return dumps_plan(self)


def cutout_fits(points: list[tuple[float, float]], shape: ApplicatorShape, opening: tuple[float, float]) -> bool:
    w, h = opening
    tol = 1e-6
    if shape is ApplicatorShape.CIRCLE:
        return all(math.hypot(x, y) <= w / 2 + tol for x, y in points)
    return all(abs(x) <= w / 2 + tol and abs(y) <= h / 2 + tol for x, y in points)


def default_cutout(shape: ApplicatorShape, opening: tuple[float, float]) -> list[tuple[float, float]]:
    """The open applicator as a polygon (a circle as 72 points)."""
    w, h = opening
    if shape is ApplicatorShape.CIRCLE:
        r = w / 2
        return [
            (round(r * math.cos(2 * math.pi * k / 72), 3), round(r * math.sin(2 * math.pi * k / 72), 3))
            for k in range(72)
        ]
    return [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]


def parse_plan(text: str, source: str = "plan") -> Plan:
    """Parse plan TOML; raise :class:`PlanError` naming each bad key."""
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PlanError(f"{source}: not valid TOML: {e}") from e
    try:
        return Plan.model_validate(data)
    except ValidationError as e:
        problems = [f"{_loc(tuple(err['loc']))}: {err['msg'].removeprefix('Value error, ')}" for err in e.errors()]
        raise PlanError(f"{source}: invalid plan", problems) from e


def read_plan_file(path: Path) -> tuple[Plan, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PlanError(f"cannot read plan file {path}: {e.strerror}") from e
    return parse_plan(text, str(path)), text


def plan_digest(plan: Plan) -> str:
    """Content hash of a plan: equal for files that mean the same plan, whatever their formatting. Keys added
    since plans were first stored count only when used, so an unchanged file stays unchanged."""
    exclude: dict[str, Any] = {}
    if not plan.acknowledge:
        exclude["acknowledge"] = True
    quiet: dict[int, set[str]] = {}
    for i, b in enumerate(plan.beams):
        unused = {
            key for key, value in (("acknowledge", b.acknowledge), ("cutout_factor", b.cutout_factor)) if not value
        }
        if unused:
            quiet[i] = unused
    if quiet:
        exclude["beams"] = quiet
    return hashlib.sha256(plan.model_dump_json(by_alias=True, exclude=exclude).encode()).hexdigest()


@dataclass(frozen=True)
class Unusual:
    """A value outside its usual range but not impossible: accepted only when the plan file acknowledges it
    (``acknowledge = ["ssd_mm"]`` on the beam, ``acknowledge = ["prescription_gy"]`` on the plan)."""

    key: str  # where the value is, e.g. "beam[0].ssd_mm"
    name: str  # what to acknowledge, e.g. "ssd_mm"
    where: str  # "beam[0]", or "" for the plan itself
    why: str
    acknowledged: bool

    def problem(self) -> str:
        on = f"on {self.where}" if self.where else "at the top of the plan file"
        return f'{self.key}: {self.why}; if it is intended, acknowledge it {on}: acknowledge = ["{self.name}"]'


def _beam_mu_unusual(i: int, beam: Beam, mu: float, computed: bool, site: Site) -> Unusual | None:
    lo, hi = site.checks.mu_per_fraction_min, site.checks.mu_per_fraction_max
    if lo <= mu <= hi:
        return None
    what = "computed" if computed else "given"
    return Unusual(
        f"beam[{i}].mu",
        "mu",
        f"beam[{i}]",
        f"{mu:.1f} MU per fraction ({what}) is outside the site's usual {lo:g}-{hi:g} MU",
        "mu" in beam.acknowledge,
    )


def unusual_values(plan: Plan, site: Site, mu: Mapping[str, float] | None = None) -> list[Unusual]:
    """Every value of ``plan`` outside its usual range (acknowledged or not); ``mu``: computed MU per beam."""
    found: list[Unusual] = []
    per_fraction = plan.prescription_per_fraction_gy
    lo, hi = USUAL_GY_PER_FRACTION
    if not lo <= per_fraction <= hi:
        found.append(
            Unusual(
                "prescription_gy",
                "prescription_gy",
                "",
                f"{per_fraction:g} Gy per fraction is outside the usual {lo:g}-{hi:g} Gy",
                "prescription_gy" in plan.acknowledge,
            )
        )
    machine = site.machine(plan.machine)
    for i, beam in enumerate(plan.beams):
        if machine is not None:
            found += _ssd_unusual(i, beam, machine)
        given = beam.mu if mu is None else mu.get(beam.name)
        if given is not None:
            unusual = _beam_mu_unusual(i, beam, given, mu is not None, site)
            if unusual is not None:
                found.append(unusual)
    return found


def _ssd_unusual(i: int, beam: Beam, machine: Machine) -> list[Unusual]:
    if beam.ssd_mm is None:  # traced from the given isocenter; the setup checks it against the applicator
        return []
    lo, hi = machine.source_axis_distance_mm, machine.max_usual_ssd_mm
    app = machine.applicator(beam.applicator)
    impossible = beam.ssd_mm > machine.max_ssd_mm or (app is not None and beam.ssd_mm <= app.source_to_applicator_mm)
    if lo <= beam.ssd_mm <= hi or impossible:  # an impossible SSD is refused by plan_problems, whatever the file says
        return []
    why = (
        f"{beam.ssd_mm:g} mm is an extended SSD, beyond {machine.name}'s usual {lo:g}-{hi:g} mm"
        if beam.ssd_mm > hi
        else f"{beam.ssd_mm:g} mm is shorter than {machine.name}'s usual {lo:g}-{hi:g} mm"
    )
    return [Unusual(f"beam[{i}].ssd_mm", "ssd_mm", f"beam[{i}]", why, "ssd_mm" in beam.acknowledge)]


def mu_problems(plan: Plan, site: Site, mu: Mapping[str, float]) -> list[str]:
    """What is wrong with MU computed for ``plan`` (per beam): not finite, impossible, or unusual and not
    acknowledged (e.g. from a calibration typed wrong)."""
    problems: list[str] = []
    for i, beam in enumerate(plan.beams):
        value = mu.get(beam.name)
        if value is None:
            continue
        if not math.isfinite(value) or not 1 <= value <= 9999:
            problems.append(
                f"beam[{i}].mu: {value:.4g} MU per fraction computed for beam {beam.name} is not deliverable "
                "(1-9999 MU); check the site's calibration and factors and the plan's prescription"
            )
            continue
        unusual = _beam_mu_unusual(i, beam, value, True, site)
        if unusual is not None and not unusual.acknowledged:
            problems.append(unusual.problem())
    return problems


def plan_problems(plan: Plan, site: Site, course: Course) -> list[str]:
    """Everything in ``plan`` that does not fit ``site`` and ``course``, each naming its key."""
    problems: list[str] = []
    if plan.course != course.id:
        problems.append(f"course: plan is for course {plan.course!r}, not {course.id!r}")
    names = {s.name for s in course.structures}
    machine = site.machine(plan.machine)
    if machine is None:
        known = ", ".join(m.name for m in site.machines) or "none configured"
        problems.append(f"machine: unknown machine {plan.machine!r} (site has: {known})")
    if site.ct_curve(plan.ct_curve) is None:
        known = ", ".join(c.name for c in site.ct_curves) or "none configured"
        problems.append(f"ct_curve: unknown CT curve {plan.ct_curve!r} (site has: {known})")
    if plan.external not in names:
        problems.append(f"external: no structure {plan.external!r} in course {course.id}")
    for i, ov in enumerate(plan.overrides):
        if ov.structure not in names:
            problems.append(f"override[{i}].structure: no structure {ov.structure!r} in course {course.id}")
        if site.material(ov.material) is None:
            problems.append(f"override[{i}].material: unknown material {ov.material!r}")
    for i, beam in enumerate(plan.beams):
        where = f"beam[{i}]"
        if beam.target is not None and beam.target not in names:
            problems.append(f"{where}.target: no structure {beam.target!r} in course {course.id}")
        if beam.bolus is not None and site.material(beam.bolus.material) is None:
            problems.append(f"{where}.bolus.material: unknown material {beam.bolus.material!r}")
        if machine is None:
            continue
        if machine.energy(beam.energy_mev) is None:
            known = ", ".join(f"{e.energy_mev:g}" for e in machine.energies)
            problems.append(f"{where}.energy_mev: {machine.name} has no {beam.energy_mev:g} MeV (has: {known})")
        app = machine.applicator(beam.applicator)
        if app is None:
            known = ", ".join(a.id for a in machine.applicators)
            problems.append(f"{where}.applicator: {machine.name} has no applicator {beam.applicator!r} (has: {known})")
        elif beam.cutout_mm is not None and not cutout_fits(beam.cutout_mm, app.shape, app.opening_mm):
            problems.append(
                f"{where}.cutout_mm: cutout does not fit in applicator {app.id} "
                f"({app.opening_mm[0]:g} x {app.opening_mm[1]:g} mm {app.shape.value})"
            )
        if beam.ssd_mm is None:
            pass  # an isocentric setup: the SSD follows from the geometry, checked when the beam is set up
        elif app is not None and beam.ssd_mm <= app.source_to_applicator_mm:
            problems.append(
                f"{where}.ssd_mm: {beam.ssd_mm:g} mm puts the skin inside applicator {app.id}, whose end is "
                f"{app.source_to_applicator_mm:g} mm from the source; the SSD must be larger"
            )
        elif beam.ssd_mm > machine.max_ssd_mm:
            problems.append(
                f"{where}.ssd_mm: {beam.ssd_mm:g} mm is not a plausible SSD on {machine.name} "
                f"(at most {machine.max_ssd_mm:g} mm, 1.5 x its source-axis distance)"
            )
    problems += [u.problem() for u in unusual_values(plan, site) if not u.acknowledged]
    return problems


def dumps_plan(plan: Plan) -> str:
    """Canonical TOML of ``plan`` (tomli_w): the plan's own tables as ``[[override]]`` and ``[[beam]]``."""
    return tomli_w.dumps(plan.model_dump(by_alias=True, exclude_none=True, mode="json"))
