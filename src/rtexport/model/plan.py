"""Plan files (TOML, ``format = 1``) and their validation against the site and the course."""

from __future__ import annotations

import hashlib
import math
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rtexport.errors import PlanError
from rtexport.geometry import polygon
from rtexport.model.course import Course
from rtexport.model.site import ApplicatorShape, Site, _loc

Positive = Annotated[float, Field(gt=0)]
Angle = Annotated[float, Field(ge=0, lt=360)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Bolus(_Model):
    """Bolus on the patient surface along a beam: thickness, margin around the cutout's projection, material."""

    thickness_mm: Positive
    margin_mm: Annotated[float, Field(ge=0)] = 0.0
    material: str


class Beam(_Model):
    """An electron beam. ``cutout_mm`` is the aperture polygon in the isocenter plane, beam's-eye view (x, y).

    Setup, one of two models: aimed (``target`` — the structure's centroid — or ``aim_mm``), the central axis
    passes through the aim point and the source stands ``ssd_mm`` (default: the machine's source-axis distance)
    before the first surface the axis meets, External or bolus; or ``isocenter_mm``, the true isocenter, the
    SSD then follows from the geometry (``ssd_mm``, if also given, must agree within 0.5 mm)."""

    name: Annotated[str, Field(min_length=1, max_length=16)]
    energy_mev: Positive
    applicator: str
    gantry_deg: Angle = 0.0
    collimator_deg: Angle = 0.0
    couch_deg: Angle = 0.0
    isocenter_mm: tuple[float, float, float] | None = None
    target: str | None = None
    aim_mm: tuple[float, float, float] | None = None
    ssd_mm: Positive | None = None
    mu: Positive | None = None
    weight: Positive | None = None
    cutout_mm: list[tuple[float, float]] | None = None
    bolus: Bolus | None = None

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
        return self

    @property
    def aimed(self) -> bool:
        """True for an SSD setup (target or aim point), False when the isocenter is given."""
        return self.isocenter_mm is None


class DensityOverride(_Model):
    """Assign a material to a structure; overrides apply in the order listed."""

    structure: str
    material: str


class Plan(_Model):
    """An electron plan as loaded from a plan file."""

    format: Literal[1]
    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    label: Annotated[str, Field(min_length=1, max_length=16)]
    course: str
    machine: str
    ct_curve: str
    external: str
    fractions: Annotated[int, Field(ge=1, le=100)]
    prescription_gy: Positive
    dose_grid_mm: Annotated[float, Field(ge=1.0, le=10.0)] = 2.5
    overrides: list[DensityOverride] = Field(default_factory=list, alias="override")
    beams: list[Beam] = Field(min_length=1, alias="beam")

    @model_validator(mode="after")
    def _unique_beams(self) -> Self:
        names = [b.name for b in self.beams]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"beam names must be unique: {', '.join(sorted(dup))}")
        if any(b.mu is None for b in self.beams) and any(b.mu is not None for b in self.beams):
            raise ValueError("give mu for every beam or for none (then MU come from the prescription)")
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
    """Content hash of a plan: equal for files that mean the same plan, whatever their formatting."""
    return hashlib.sha256(plan.model_dump_json(by_alias=True).encode()).hexdigest()


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
    return problems


def dumps_plan(plan: Plan) -> str:
    """Canonical TOML of ``plan`` (tomli_w): the plan's own tables as ``[[override]]`` and ``[[beam]]``."""
    return tomli_w.dumps(plan.model_dump(by_alias=True, exclude_none=True, mode="json"))
