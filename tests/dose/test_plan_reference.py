"""The demo plan's dose, MU and bolus stay what they were before the beam setup was shared and sped up.

``data/demo_plan_main.npz`` was written by :func:`write_reference` with main at 5eac32e (before the change):
``PYTHONPATH=<main>/src python -m tests.dose.test_plan_reference tests/dose/data/demo_plan_main.npz``, and
regenerated so when the redefinition step (rtexport.dose.redefinition) changed the physics next to the demo's lung
and ribs (at most 2.8 % of the peak, MU +0.8 and −1.7 %), and again when the redefinition carried the range the
electrons keep through them (at most 1.0 % of the peak, MU −0.02 and −0.09 %), and when the ribs' extra
scattering lengthened the electrons' tracks behind them (redefinition.obliquity) and the range kept followed
the spread of the electrons that crossed them (at most 1.1 % of the peak, MU 0.00 and −0.003 %), and when a
pencil kept the electrons its Gaussian puts in the air in front of a sloped surface (rtexport.dose.surface: at
most 5.8 % of the peak, in the first two voxels under the chest's sloping sides; MU unchanged). A change meant
to alter the physics regenerates it and says so; a change meant to be faster must leave it alone.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from rtexport.demo.phantom import PhantomSpec
from rtexport.demo.plan import DEMO_PLAN
from rtexport.dose import compute_plan_dose
from rtexport.geometry.setup import aim_plan
from rtexport.model.dose import PlanDose
from rtexport.model.plan import Plan
from rtexport.model.site import Site
from tests.dose.conftest import phantom_volume

REFERENCE = Path(__file__).parent / "data" / "demo_plan_main.npz"
SPEC = PhantomSpec(rows=80, columns=80, pixel_mm=4.0, slices=16, slice_mm=5.0, seed="reference")
GRID_MM = 5.0  # coarse: the comparison is about sameness, not resolution


def _compute(site: Site) -> tuple[PlanDose, dict[str, npt.NDArray[np.float64]]]:
    ct, contours = phantom_volume(SPEC)
    plan = Plan.model_validate(tomllib.loads(DEMO_PLAN))
    dose = compute_plan_dose(plan, site, ct, contours, GRID_MM)
    aimed = aim_plan(plan, site, ct.geometry, contours)
    bolus = {name: np.concatenate([c.points_mm for c in cs]) for name, cs in aimed.bolus.items()}
    return dose, bolus


def test_demo_plan_dose_mu_and_bolus_are_unchanged(site: Site) -> None:
    ref = np.load(REFERENCE)
    dose, bolus = _compute(site)
    g = dose.plan.geometry
    assert g.shape == tuple(ref["shape"]) and np.allclose(g.origin_mm, ref["origin_mm"], atol=1e-9)
    peak = float(ref["plan_gy"].max())
    np.testing.assert_allclose(dose.plan.gy, ref["plan_gy"], rtol=1e-5, atol=1e-6 * peak)
    for i, beam in enumerate(dose.beams):
        np.testing.assert_allclose(beam.dose.gy, ref[f"beam{i}_gy"], rtol=1e-5, atol=1e-6 * peak)
    # MU come from float32 dose: equal to float32's precision (the RT Plan writes them to 0.01 MU)
    np.testing.assert_allclose([b.mu_per_fraction for b in dose.beams], ref["mu"], rtol=1e-6)
    np.testing.assert_allclose([b.dose_per_fraction_gy for b in dose.beams], ref["dose_per_fraction_gy"], rtol=1e-6)
    np.testing.assert_allclose([b.normalization_point_mm for b in dose.beams], ref["normalization_point_mm"], atol=1e-9)
    assert list(bolus) == ["ANT"]  # the demo's one bolus, point for point
    np.testing.assert_array_equal(bolus["ANT"], ref["bolus_points_mm"])


def write_reference(site: Site, path: Path) -> None:
    dose, bolus = _compute(site)
    arrays: dict[str, npt.NDArray[np.generic]] = {
        "origin_mm": np.asarray(dose.plan.geometry.origin_mm),
        "shape": np.asarray(dose.plan.geometry.shape),
        "plan_gy": dose.plan.gy,
        "mu": np.asarray([b.mu_per_fraction for b in dose.beams]),
        "normalization_point_mm": np.asarray([b.normalization_point_mm for b in dose.beams]),
        "dose_per_fraction_gy": np.asarray([b.dose_per_fraction_gy for b in dose.beams]),
        "bolus_points_mm": bolus["ANT"],
    }
    arrays.update({f"beam{i}_gy": b.dose.gy for i, b in enumerate(dose.beams)})
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]


if __name__ == "__main__":
    from rtexport.demo.beamdata import demo_site

    write_reference(Site.model_validate(demo_site()), Path(sys.argv[1]))
