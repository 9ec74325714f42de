"""What a physicist expects to be told about a plan's dose: the independent MU check of each beam, a maximum well
above the prescription (levels from the site's ``[checks]``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rtexport.model.dose import DoseGrid
from rtexport.model.plan import Plan, mu_problems
from rtexport.model.site import Site
from rtexport.model.state import PlanState
from rtexport.mucheck import EngineBeam, MUCheck, check_beams


def mu_check(site: Site, state: PlanState) -> MUCheck | None:
    """The independent MU check of the plan's current revision; None when it has no dose."""
    if state.dose is None:
        return None
    return check_beams(state.plan, site, state.dose.beams)


def dose_warnings(site: Site, plan: Plan, total: DoseGrid, beams: Sequence[EngineBeam]) -> list[str]:
    """Warnings about a computed dose: the plan's maximum against the prescription, and each beam's MU per fraction
    that is not deliverable or outside the site's usual range without the plan file's acknowledgement
    (:func:`~rtexport.model.plan.mu_problems`, which also blocks approval and export)."""
    checks = site.checks
    warnings: list[str] = []
    gy = np.asarray(total.gy)
    k = int(np.argmax(gy))
    top = float(gy.flat[k])
    limit = plan.prescription_gy * (1.0 + checks.max_dose_warning_pct / 100.0)
    if top > limit:
        iz, iy, ix = np.unravel_index(k, gy.shape)
        xs, ys, zs = total.geometry.axes()
        where = f"({xs[ix]:.1f}, {ys[iy]:.1f}, {zs[iz]:.1f}) mm"
        over = 100.0 * (top / plan.prescription_gy - 1.0)
        warnings.append(
            f"plan {plan.id}: the maximum dose {top:.2f} Gy at {where} is {over:.0f} % above the prescription of "
            f"{plan.prescription_gy:g} Gy (the site warns above {checks.max_dose_warning_pct:g} %); "
            "check beam weights, energies and bolus"
        )
    mu = {b.beam_name: b.mu_per_fraction for b in beams}
    warnings += [
        f"{p}; the plan cannot be approved or exported until this is resolved" for p in mu_problems(plan, site, mu)
    ]
    return warnings


__all__ = ["MUCheck", "dose_warnings", "mu_check"]
