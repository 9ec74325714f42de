"""Electron monitor units by hand calculation, after AAPM TG-71 (Gibbons et al., Med Phys 41:031501, 2014)::

    MU = D / (k · PDD(d)/100 · S_a · S_c · ((f_eff + d_m) / (f_eff + g + d_m))²)

- ``D``: dose per fraction at the calculation point (here the dose engine's normalization point), cGy;
- ``k``: dose per MU at d_m in reference conditions (reference applicator, reference SSD), cGy/MU;
- ``PDD(d)``: the reference applicator's percent depth dose at the reference SSD, at the point's depth ``d`` below
  the surface where the central axis enters (bolus included, as water);
- ``S_a``: the applicator factor; ``S_c``: the cutout factor at the cutout's equivalent square (1 for the open
  applicator), or the factor measured for this cutout when the plan gives one;
- the last factor: the effective-SSD inverse-square law for an air gap ``g = SSD − SSD_ref`` (extended or
  shortened SSD), ``d_m`` the depth of the PDD maximum and ``f_eff`` the site's virtual SSD of the energy.

Where the site gives square fields' depth doses (``field_pdds``), ``PDD(d)`` and ``d_m`` are the cutout's own: the
depth doses of the two table squares around its equivalent square, interpolated linearly in the side (the
reference PDD standing for the reference applicator's square), so the shallow normalization point of a small field is
read from that field's depth dose, not the broad field's (TG-71's formalism, with ``S_c`` at the cutout's own d_m).
Without them the reference PDD is read at the point's depth and :attr:`HandCalc.not_made` says so.

What the formalism allows and this calculation does: the air gap through the effective-SSD inverse square. What it
does not do, and why: obliquity (TG-25's obliquity factors need the surface angle at entry and a measured table,
neither of which site.toml holds: at 45° the dose near d_m is about 10 % higher, Ekstrand & Dixon 1982);
heterogeneity and surface irregularity (a hand calculation treats patient and bolus as water); the change of the
PDD with SSD beyond the inverse square at d_m (small near d_m, where the engine normalizes). Tables are
interpolated linearly and never extrapolated: a value outside a table makes the beam "not checkable".

This module shares no code with the dose engine (:mod:`rtexport.dose`); it reads the site's tables only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from rtexport.model.site import Applicator, ApplicatorShape, EnergyData


class NotCheckable(Exception):
    """The beam cannot be checked by hand from the site's tables; the message says why."""


@dataclass(frozen=True)
class HandCalc:
    """The factors of one hand calculation and the MU it gives."""

    dose_cgy: float  # per fraction, at the calculation point
    calibration_cgy_per_mu: float  # k
    depth_mm: float  # d
    pdd_pct: float  # PDD(d) at the reference SSD
    applicator_factor: float  # S_a
    equivalent_square_mm: float | None  # of the cutout; None for the open applicator
    cutout_factor: float  # S_c
    ssd_mm: float
    reference_ssd_mm: float
    effective_ssd_mm: float  # f_eff
    dmax_mm: float  # d_m
    inverse_square: float  # ((f_eff + d_m) / (f_eff + g + d_m))²
    cutout_factor_measured: bool = False  # S_c is the plan's measured factor, not the site's table
    small_field_pdd: bool = False  # PDD(d) and d_m from the site's field_pdds at the equivalent square
    not_made: tuple[str, ...] = ()  # the corrections this calculation does not make, for the physicist to weigh

    @property
    def mu(self) -> float:
        per_mu = (
            self.calibration_cgy_per_mu
            * self.pdd_pct
            / 100.0
            * self.applicator_factor
            * self.cutout_factor
            * self.inverse_square
        )
        return self.dose_cgy / per_mu


def interpolate(x: float, xs: Sequence[float], ys: Sequence[float], what: str) -> float:
    """Linear interpolation in a table whose ``xs`` increase; :class:`NotCheckable` outside it."""
    if not xs or x < xs[0] or x > xs[-1]:
        span = f"{xs[0]:g}–{xs[-1]:g}" if xs else "empty"
        raise NotCheckable(f"{what} is outside the site's table ({span}); a table is never extrapolated")
    for (x0, y0), (x1, y1) in pairwise(zip(xs, ys, strict=True)):
        if x0 <= x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ys[-1]  # x == xs[-1] with a single point


def equivalent_square_mm(points: Sequence[tuple[float, float]]) -> float:
    """Side of the equivalent square, 4 · area / perimeter: the convention of the site's cutout factor table."""
    n = len(points)
    area = 0.5 * abs(
        sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1] for i in range(n))
    )
    perimeter = sum(math.dist(points[i], points[(i + 1) % n]) for i in range(n))
    return 4.0 * area / perimeter


def open_applicator(app: Applicator) -> list[tuple[float, float]]:
    w, h = app.opening_mm
    if app.shape is ApplicatorShape.CIRCLE:
        # a circle's 4·A/P is its diameter; a 360-gon is within 0.003 % of it
        return [(w / 2 * math.cos(math.radians(a)), w / 2 * math.sin(math.radians(a))) for a in range(360)]
    return [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]


def hand_calc(
    energy: EnergyData,
    applicator: Applicator,
    cutout_mm: Sequence[tuple[float, float]] | None,
    ssd_mm: float,
    depth_mm: float,
    dose_cgy: float,
    measured_cutout_factor: float | None = None,
    reference_side_mm: float | None = None,
) -> HandCalc:
    """The factors for one beam delivering ``dose_cgy`` at ``depth_mm`` with the surface at ``ssd_mm``; a cutout
    factor measured for this cutout (given in the plan) replaces the table's. ``reference_side_mm``: the
    reference applicator's equivalent square, where the reference PDD stands among the site's field_pdds (by
    default the cutout table's largest square)."""
    depths, pct = energy.pdd.depth_mm, energy.pdd.dose_pct
    top = max(pct)
    dmax = depths[pct.index(top)]
    pdd = 100.0 * interpolate(depth_mm, depths, pct, f"depth {depth_mm:.1f} mm") / top
    if pdd <= 0:
        raise NotCheckable(f"the PDD is 0 at depth {depth_mm:.1f} mm")
    app_factor = energy.applicator_factors.get(applicator.id)
    if app_factor is None:
        raise NotCheckable(f"the site has no applicator factor for {applicator.id} at {energy.energy_mev:g} MeV")
    eqsq: float | None = None
    cut_factor = 1.0
    if cutout_mm is not None:
        eqsq = equivalent_square_mm(cutout_mm)
        if measured_cutout_factor is not None:
            cut_factor = measured_cutout_factor
        elif eqsq < equivalent_square_mm(open_applicator(applicator)) - 1e-6:
            table = energy.cutout_factors
            if not table:
                raise NotCheckable(f"the site has no cutout factors at {energy.energy_mev:g} MeV")
            cut_factor = interpolate(
                eqsq,
                [p.side_mm for p in table],
                [p.factor for p in table],
                f"cutout equivalent square {eqsq:.1f} mm",
            )
    small = eqsq is not None and bool(energy.field_pdds)
    not_made = list(_NOT_MADE)
    if eqsq is not None and small:
        pdd, dmax = _small_field_pdd(energy, eqsq, depth_mm, reference_side_mm)
        if pdd <= 0:
            raise NotCheckable(f"the field's PDD is 0 at depth {depth_mm:.1f} mm")
    elif eqsq is not None:
        not_made.append(
            "small-field depth dose: the reference field's PDD is read at the point's depth (the site gives no "
            "field_pdds)"
        )
    f_eff = energy.virtual_ssd_mm
    gap = ssd_mm - energy.reference_ssd_mm
    if f_eff + gap + dmax <= 0:
        raise NotCheckable(f"SSD {ssd_mm:g} mm is shorter than the inverse-square law allows")
    isq = ((f_eff + dmax) / (f_eff + gap + dmax)) ** 2
    return HandCalc(
        dose_cgy=dose_cgy,
        calibration_cgy_per_mu=energy.calibration_cgy_per_mu,
        depth_mm=depth_mm,
        pdd_pct=pdd,
        applicator_factor=app_factor,
        equivalent_square_mm=eqsq,
        cutout_factor=cut_factor,
        ssd_mm=ssd_mm,
        reference_ssd_mm=energy.reference_ssd_mm,
        effective_ssd_mm=f_eff,
        dmax_mm=dmax,
        inverse_square=isq,
        cutout_factor_measured=cutout_mm is not None and measured_cutout_factor is not None,
        small_field_pdd=small,
        not_made=tuple(not_made),
    )


_NOT_MADE = (
    "obliquity: TG-25's factors need the surface angle and a measured table (about +10 % near d_m at 45°)",
    "heterogeneity: patient and bolus are water",
    "surface irregularity: the surface is flat at the SSD on the central axis",
)


def _pdd_at(depths: Sequence[float], pct: Sequence[float], depth_mm: float, what: str) -> tuple[float, float]:
    """(PDD % of its own maximum at the depth, depth of that maximum)."""
    top = max(pct)
    return 100.0 * interpolate(depth_mm, depths, pct, what) / top, depths[list(pct).index(top)]


def _small_field_pdd(
    energy: EnergyData, side_mm: float, depth_mm: float, reference_side_mm: float | None
) -> tuple[float, float]:
    """PDD(d) and d_m of a square of ``side_mm`` between the site's field_pdds and the reference PDD (standing for
    the reference applicator's square); a side below the smallest field PDD is not checkable."""
    rows = [(f.side_mm, f.depth_mm, f.dose_pct) for f in energy.field_pdds]
    largest = reference_side_mm if reference_side_mm is not None else energy.cutout_factors[-1].side_mm
    if largest > rows[-1][0]:
        rows.append((largest, energy.pdd.depth_mm, energy.pdd.dose_pct))
    sides = [r[0] for r in rows]
    what = f"depth {depth_mm:.1f} mm"
    if side_mm >= sides[-1]:
        return _pdd_at(rows[-1][1], rows[-1][2], depth_mm, what)
    if side_mm < sides[0]:
        raise NotCheckable(
            f"cutout equivalent square {side_mm:.1f} mm is below the site's smallest field_pdds square "
            f"({sides[0]:g} mm)"
        )
    k = max(i for i, s in enumerate(sides) if s <= side_mm)
    (s0, z0, p0), (s1, z1, p1) = rows[k], rows[k + 1]
    t = (side_mm - s0) / (s1 - s0)
    a, m0 = _pdd_at(z0, p0, depth_mm, what)
    b, m1 = _pdd_at(z1, p1, depth_mm, what)
    return (1 - t) * a + t * b, (1 - t) * m0 + t * m1
