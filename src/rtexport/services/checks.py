"""What a physicist expects to be told about a plan's dose: the independent MU check of each beam, a maximum well
above the prescription, and MU per fraction outside a plausible range (all levels from the site's ``[checks]``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rtexport.model.dose import DoseGrid
from rtexport.model.plan import Plan
from rtexport.model.site import Site
from rtexport.mucheck import EngineBeam, MUCheck, check_beams
from rtexport.workspace import PlanState


def mu_check(site: Site, state: PlanState) -> MUCheck | None:
    """The independent MU check of the plan's current revision; None when it has no dose."""
    if state.dose is None:
        return None
    return check_beams(state.plan, site, state.dose.beams)


def dose_warnings(site: Site, plan: Plan, total: DoseGrid, beams: Sequence[EngineBeam]) -> list[str]:
    """Warnings about a computed dose: the plan's maximum against the prescription, each beam's MU per fraction."""
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
    lo, hi = checks.mu_per_fraction_min, checks.mu_per_fraction_max
    for b in beams:
        if not lo <= b.mu_per_fraction <= hi:
            warnings.append(
                f"plan {plan.id}: beam {b.beam_name} has {b.mu_per_fraction:.1f} MU per fraction, outside the "
                f"site's plausible range {lo:g}–{hi:g} MU; check its weight, prescription and normalization"
            )
    return warnings
