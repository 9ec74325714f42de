"""The independent MU check of a plan: each beam's MU by hand calculation (:mod:`.tg71`) beside the dose engine's,
with the difference and the site's action level."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rtexport.model.plan import Plan
from rtexport.model.site import EnergyData, Machine, Site
from rtexport.mucheck.tg71 import HandCalc, NotCheckable, equivalent_square_mm, hand_calc, open_applicator


class EngineBeam(Protocol):
    """What the check reads of the engine's result for one beam (a stored dose record has these fields)."""

    @property
    def beam_name(self) -> str: ...
    @property
    def mu_per_fraction(self) -> float: ...
    @property
    def dose_per_fraction_gy(self) -> float: ...
    @property
    def ssd_mm(self) -> float | None: ...
    @property
    def normalization_depth_mm(self) -> float | None: ...


@dataclass(frozen=True)
class BeamCheck:
    """One beam: the engine's MU and the hand calculation, or why the beam cannot be checked."""

    beam: str
    engine_mu: float | None
    calc: HandCalc | None = None
    not_checkable: str = ""

    @property
    def check_mu(self) -> float | None:
        return None if self.calc is None else self.calc.mu

    @property
    def difference_pct(self) -> float | None:
        """(engine − check) / check, in %."""
        if self.calc is None or self.engine_mu is None:
            return None
        return 100.0 * (self.engine_mu - self.calc.mu) / self.calc.mu

    def beyond(self, level_pct: float) -> bool:
        diff = self.difference_pct
        return diff is not None and abs(diff) > level_pct

    def summary(self, level_pct: float) -> str:
        """One line a physicist reads: both MU and the difference, or why there is no check."""
        if self.not_checkable:
            return f"beam {self.beam}: not checkable: {self.not_checkable}"
        diff = self.difference_pct
        assert diff is not None and self.engine_mu is not None and self.check_mu is not None
        flag = f" beyond the action level of {level_pct:g} %" if abs(diff) > level_pct else ""
        return (
            f"beam {self.beam}: engine {self.engine_mu:.1f} MU, hand calculation {self.check_mu:.1f} MU "
            f"({diff:+.1f} %{flag})"
        )

    def as_dict(self) -> dict[str, Any]:
        """Stable keys for the audit log and ``--json``."""
        c = self.calc
        return {
            "beam": self.beam,
            "engine_mu": None if self.engine_mu is None else round(self.engine_mu, 2),
            "check_mu": None if c is None else round(c.mu, 2),
            "difference_pct": None if self.difference_pct is None else round(self.difference_pct, 2),
            "not_checkable": self.not_checkable or None,
            "factors": None
            if c is None
            else {
                "dose_cgy": round(c.dose_cgy, 2),
                "calibration_cgy_per_mu": c.calibration_cgy_per_mu,
                "depth_mm": round(c.depth_mm, 1),
                "pdd_pct": round(c.pdd_pct, 2),
                "applicator_factor": c.applicator_factor,
                "equivalent_square_mm": None if c.equivalent_square_mm is None else round(c.equivalent_square_mm, 1),
                "cutout_factor": round(c.cutout_factor, 4),
                "cutout_factor_measured": c.cutout_factor_measured,
                "ssd_mm": round(c.ssd_mm, 1),
                "effective_ssd_mm": c.effective_ssd_mm,
                "inverse_square": round(c.inverse_square, 4),
                "small_field_pdd": c.small_field_pdd,
                "corrections_not_made": list(c.not_made),
            },
        }


@dataclass(frozen=True)
class MUCheck:
    """Every beam of a plan, and the site's action level (% difference beyond which a physicist acknowledges)."""

    beams: tuple[BeamCheck, ...]
    action_level_pct: float

    @property
    def beyond(self) -> tuple[BeamCheck, ...]:
        return tuple(b for b in self.beams if b.beyond(self.action_level_pct))

    @property
    def unchecked(self) -> tuple[BeamCheck, ...]:
        return tuple(b for b in self.beams if b.not_checkable)

    @property
    def needs_acknowledgement(self) -> bool:
        """A beam differs beyond the action level, or has no independent check at all."""
        return bool(self.beyond or self.unchecked)

    def findings(self) -> list[str]:
        """The lines that need a physicist's acknowledgement."""
        return [b.summary(self.action_level_pct) for b in self.beams if b in self.beyond or b.not_checkable]

    def as_dict(self) -> dict[str, Any]:
        return {"action_level_pct": self.action_level_pct, "beams": [b.as_dict() for b in self.beams]}


def _reference_side(machine: Machine, energy: EnergyData) -> float | None:
    ref = machine.applicator(energy.reference_applicator)
    return None if ref is None else equivalent_square_mm(open_applicator(ref))


def check_beams(plan: Plan, site: Site, engine: Sequence[EngineBeam]) -> MUCheck:
    """Check every beam of ``plan`` against the engine's result for it (the dose of the plan's revision)."""
    level = site.checks.mu_check_action_level_pct
    machine = site.machine(plan.machine)
    found = {b.beam_name: b for b in engine}
    rows: list[BeamCheck] = []
    for beam in plan.beams:
        e = found.get(beam.name)
        if e is None:
            rows.append(BeamCheck(beam.name, None, not_checkable="the dose record has no result for this beam"))
            continue
        try:
            if machine is None:
                raise NotCheckable(f"the site has no machine {plan.machine!r}")
            energy = machine.energy(beam.energy_mev)
            app = machine.applicator(beam.applicator)
            if energy is None or app is None:
                what = f"{beam.energy_mev:g} MeV" if energy is None else f"applicator {beam.applicator!r}"
                raise NotCheckable(f"machine {machine.name} has no {what}")
            if e.ssd_mm is None or e.normalization_depth_mm is None:
                raise NotCheckable(
                    "the dose record does not give this beam's SSD and the depth of its normalization point "
                    "(the dose engine did not report them); check this beam by hand"
                )
            measured = beam.cutout_factor.value if beam.cutout_factor is not None else None
            calc = hand_calc(
                energy,
                app,
                beam.cutout_mm,
                e.ssd_mm,
                e.normalization_depth_mm,
                100.0 * e.dose_per_fraction_gy,
                measured_cutout_factor=measured,
                reference_side_mm=_reference_side(machine, energy),
            )
        except NotCheckable as why:
            rows.append(BeamCheck(beam.name, e.mu_per_fraction, not_checkable=str(why)))
            continue
        rows.append(BeamCheck(beam.name, e.mu_per_fraction, calc))
    return MUCheck(tuple(rows), level)
