"""A pencil's lateral spread in water as two Gaussians per depth: a core and a wide, low halo.

A single Fermi–Eyges Gaussian (Rossi's scattering power) is too narrow near the surface: it misses the large-angle
single scatters and the secondary electrons that carry a few percent of a pencil's energy centimetres aside, so a
small field loses too little dose before its dmax and, normalized there, is shown 5–8 % too cold in its build-up.
Commercial pencil beams model each pencil as a sum of Gaussians for that reason. Here the sum has two terms,

    K(r; z) = (1 − w(z)) G(r; σ_core(z)) + w(z) G(r; σ_halo(z)),

fitted to the site's central-axis depth doses of square cutouts (``field_pdds``, each scaled by its cutout factor,
so absolute per MU) together with the reference field: at each depth the central-axis dose of a field of half
sides a, b is D∞(z) · Σ_k w_k erf(a/√2σ_k) erf(b/√2σ_k) + D_x. The three curves are smooth in depth (a
second-difference penalty) and held beyond the last depth the data reach (10 % of D∞'s maximum), as σ is held
beyond R90 in the single-Gaussian model. The core is multiple scattering plus what the data add: its σ never
falls below Fermi–Eyges's with Highland's scattering angle (Rossi's without the single-scattering tail) and never
shrinks with depth, as a pencil's spread cannot. D∞ is unfolded from the reference field with the fitted kernel.

In a heterogeneous medium each pencil's σ_core is scaled by the ratio of its Fermi–Eyges spread along its own path
to water's at the same effective depth (O'Connor's theorem for the density, X0 for bone); σ_halo is water's at that
effective depth (the engine, :mod:`rtexport.dose.engine`, applies both).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import optimize
from scipy.special import erf

FloatArray = npt.NDArray[np.float64]

KNOT_MM = 2.0  # depth step of the fitted curves
MAX_HALO = 0.5  # the halo's weight stays below this
MAX_HALO_MM = 40.0  # and its σ below this: wider is noise in the data, not electrons
_SMOOTH = 0.02  # second-difference penalty on the (log / logit) curves, in units of dose residual
_RIDGE = 0.002  # a halo only where the data ask for one
_PRIOR = 0.05  # where the data say nothing (at the surface every field is broad), the core is Fermi–Eyges's
_REACH = 0.1  # fitted where D∞ is at least this share of its maximum
_EXTRA_MM2 = 0.05  # the core's extra variance starts growing by this per knot (mm²)


@dataclass(frozen=True)
class LateralKernel:
    """The fitted curves at effective depths in water (mm): the halo's weight, σ of core and halo (mm at the
    depth, at the reference SSD, the in-air spread there included); ``rms_pct``: how far the fitted fields'
    central-axis doses stay from their data (% of the reference dmax dose)."""

    depth_mm: FloatArray
    halo_weight: FloatArray
    core_mm: FloatArray
    halo_mm: FloatArray
    rms_pct: float

    def at(self, zeff_mm: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(w, σ_core, σ_halo) at effective depths; beyond the fitted depths, the last values."""
        z = np.asarray(zeff_mm, dtype=np.float64)
        return (
            np.interp(z, self.depth_mm, self.halo_weight),
            np.interp(z, self.depth_mm, self.core_mm),
            np.interp(z, self.depth_mm, self.halo_mm),
        )

    def axis_fraction(self, half_a: float, half_b: float, zeff_mm: FloatArray, to_iso: FloatArray) -> FloatArray:
        """Share of the broad-beam dose a centred a × b rectangle (half sides in the isocenter plane) keeps on its
        axis; ``to_iso`` projects a σ at the depth to the isocenter plane."""
        w, s1, s2 = self.at(zeff_mm)
        return (1.0 - w) * rectangle_fraction(half_a, half_b, s1 * to_iso) + w * rectangle_fraction(
            half_a, half_b, s2 * to_iso
        )


@dataclass(frozen=True)
class FieldData:
    """One field of the fit: half sides in the isocenter plane and its central-axis dose per MU relative to the
    reference field's dmax dose, at the knots."""

    half_a: float
    half_b: float
    dose: FloatArray


def rectangle_fraction(half_a: float, half_b: float, sigma: FloatArray) -> FloatArray:
    """Share of a 2-D Gaussian of spread σ inside a centred rectangle of half sides a, b."""
    s = math.sqrt(2.0) * np.maximum(sigma, 1e-6)
    return np.asarray(erf(half_a / s) * erf(half_b / s), dtype=np.float64)


def _core(p: FloatArray, floor2: FloatArray) -> tuple[FloatArray, FloatArray]:
    """σ_core and d ln σ_core / d p: the core's variance is multiple scattering's (``floor2``) plus an extra
    variance whose increments from knot to knot are exp(p) (mm²), so it never falls below the floor nor shrinks
    with depth."""
    inc = np.exp(np.minimum(p, 10.0))  # (an LM trial step may overshoot)
    s1 = np.sqrt(floor2 + np.cumsum(inc))
    return s1, np.tril(np.ones((len(p), len(p)))) * inc[None, :] / (2.0 * s1[:, None] ** 2)


def _unpack(p: FloatArray, n: int, fe2: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    s1 = _core(p[:n], fe2)[0]
    s2 = np.minimum(s1 * (1.0 + np.exp(p[n : 2 * n])), np.maximum(MAX_HALO_MM, s1))
    w = MAX_HALO / (1.0 + np.exp(-p[2 * n :]))
    return w, s1, s2


def fit_kernel(
    knots_mm: FloatArray,
    dinf: FloatArray,
    tail: float,
    fields: Sequence[FieldData],
    first_sigma_mm: FloatArray,
    floor_mm: FloatArray,
    to_iso: FloatArray,
    start: LateralKernel | None = None,
) -> LateralKernel:
    """Least-squares fit of the kernel's curves on ``knots_mm`` to the fields' central-axis doses, given the
    broad beam's electron dose ``dinf`` and bremsstrahlung ``tail`` there; ``first_sigma_mm`` (Fermi–Eyges)
    starts the core, or ``start`` the whole fit, and holds it where the data say little. The core's σ is
    ``floor_mm`` (multiple scattering alone, never shrinking with depth) plus an extra variance that never shrinks
    either: σ_core² = floor² + Σ exp(p) over the knots so far."""
    reach = dinf >= _REACH * float(dinf.max())
    last = int(np.nonzero(reach)[0].max()) + 1
    z, d, sig0, iso = knots_mm[:last], dinf[:last], first_sigma_mm[:last], to_iso[:last]
    n = len(z)
    data = np.stack([f.dose[:last] for f in fields])
    pairs = [(f.half_a, f.half_b) for f in fields]

    second = np.diff(np.eye(n), 2, axis=0)

    def residuals(p: FloatArray) -> FloatArray:
        w, s1, s2 = _unpack(p, n, fe2)
        keep = [(1 - w) * rectangle_fraction(a, b, s1 * iso) + w * rectangle_fraction(a, b, s2 * iso) for a, b in pairs]
        smooth = [_SMOOTH * (second @ c) for c in (np.log(s1), p[n : 2 * n], p[2 * n :])]
        prior = _PRIOR * (np.log(s1) - log_fe)
        return np.concatenate([(d * np.stack(keep) + tail - data).ravel(), *smooth, _RIDGE * w / MAX_HALO, prior])

    def jacobian(p: FloatArray) -> FloatArray:
        w, s1, s2 = _unpack(p, n, fe2)
        dcore = _core(p[:n], fe2)[1]  # d ln σ_core[k] / d p[j]
        dw = w * (1.0 - w / MAX_HALO)
        ds2_db = np.where(s1 * (1.0 + np.exp(p[n : 2 * n])) > s2, 0.0, s2 - s1)  # none where held at the cap
        rows = []
        for a, b in pairs:
            e1, e2 = rectangle_fraction(a, b, s1 * iso), rectangle_fraction(a, b, s2 * iso)
            g1, g2 = _log_slope(a, b, s1 * iso), _log_slope(a, b, s2 * iso)  # dE / d ln σ
            rows.append(
                np.hstack(
                    [
                        (d * ((1 - w) * g1 + w * g2))[:, None] * dcore,
                        np.diag(d * w * g2 * ds2_db / s2),
                        np.diag(d * (e2 - e1) * dw),
                    ]
                )
            )
        zero = np.zeros((n - 2, n))
        first = [second @ dcore, second, second]
        smooth = [np.hstack([_SMOOTH * first[c] if k == c else zero for k in range(3)]) for c in range(3)]
        ridge = np.hstack([np.zeros((n, 2 * n)), np.diag(_RIDGE * dw / MAX_HALO)])
        prior = np.hstack([_PRIOR * dcore, np.zeros((n, 2 * n))])
        return np.vstack([*rows, *smooth, ridge, prior])

    log_fe = np.log(np.maximum(sig0, 0.05))
    fe2 = np.maximum.accumulate(np.maximum(floor_mm[:last], 0.05)) ** 2  # the floor, never shrinking
    # start at Fermi–Eyges (Rossi): the extra variance's increments are the floor's shortfall from it
    inc0 = np.maximum(np.diff(np.maximum(np.maximum.accumulate(sig0**2) - fe2, 0.0), prepend=0.0), _EXTRA_MM2)
    p0 = np.concatenate([np.log(inc0), np.full(n, math.log(2.0)), np.full(n, -2.0)])
    if start is not None and len(start.depth_mm) == n:
        w0 = np.clip(start.halo_weight / MAX_HALO, 1e-6, 1 - 1e-6)
        ratio = np.maximum(start.halo_mm / start.core_mm - 1.0, 1e-6)
        held = np.maximum.accumulate(np.maximum(start.core_mm**2 - fe2, 0.0))
        extra = np.maximum(np.diff(held, prepend=0.0), _EXTRA_MM2)
        p0 = np.concatenate([np.log(extra), np.log(ratio), np.log(w0 / (1 - w0))])
    # ftol 1e-6: the cost stops improving in its sixth digit long before the default 1e-8 is met
    fit = optimize.least_squares(residuals, p0, jac=jacobian, method="lm", ftol=1e-6, max_nfev=200)
    w, s1, s2 = _unpack(fit.x, n, fe2)
    resid = residuals(fit.x)[: data.size]
    return LateralKernel(z, w, s1, s2, float(100.0 * math.sqrt(float(np.mean(resid**2)))))


def _log_slope(half_a: float, half_b: float, sigma: FloatArray) -> FloatArray:
    """d/d ln σ of :func:`rectangle_fraction`."""
    s = math.sqrt(2.0) * np.maximum(sigma, 1e-6)
    ga = -2.0 / math.sqrt(math.pi) * (half_a / s) * np.exp(-((half_a / s) ** 2))
    gb = -2.0 / math.sqrt(math.pi) * (half_b / s) * np.exp(-((half_b / s) ** 2))
    return np.asarray(ga * erf(half_b / s) + gb * erf(half_a / s), dtype=np.float64)


def unfold(
    reference: tuple[float, float],
    depth_mm: FloatArray,
    reference_dose: FloatArray,
    tail: float,
    kernel: LateralKernel,
    to_iso: Callable[[FloatArray], FloatArray],
) -> FloatArray:
    """D∞ on ``depth_mm`` from the reference field's dose (relative to its maximum) and the kernel."""
    keep = kernel.axis_fraction(reference[0], reference[1], depth_mm, to_iso(depth_mm))
    return np.asarray(np.maximum(reference_dose - tail, 0.0) / np.maximum(keep, 1e-3), dtype=np.float64)
