"""Whole-plan dose on generated phantoms: beam entry, bolus, overrides, MU, and the grid the dose covers."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy.ndimage import map_coordinates
from threadpoolctl import threadpool_info

from rtexport.demo.beamdata import REFERENCE_TABLE, demo_site
from rtexport.dose import BeamSetup, CTVolume, Medium, PencilBeamEngine, compute_plan_dose, pdd_metrics
from rtexport.errors import PlanError
from rtexport.geometry.contours import rasterize
from rtexport.geometry.setup import aim_plan
from rtexport.model.course import Contour, CTGeometry
from rtexport.model.dose import DoseGrid, GridGeometry
from rtexport.model.plan import Plan
from rtexport.model.site import EnergyData, Site, site_problems


def square(cx: float, cy: float, half: float, z: float) -> np.ndarray:
    return np.array(
        [[cx - half, cy - half, z], [cx + half, cy - half, z], [cx + half, cy + half, z], [cx - half, cy + half, z]]
    )


def box_phantom(half: float = 80.0) -> tuple[CTVolume, dict[str, list[Contour]]]:
    """A water box |x|, |y|, |z| <= half (3 mm slices) centred in a 2 mm CT."""
    n, nz = 121, 61
    xs = -120.0 + 2.0 * np.arange(n)
    zs = tuple(float(z) for z in -90.0 + 3.0 * np.arange(nz))
    geom = CTGeometry("2.25.1", "2.25.2", (-120.0, -120.0, -90.0), (2.0, 2.0), n, n, zs)
    inbox = (np.abs(xs)[None, :] <= half) & (np.abs(xs)[:, None] <= half)
    hu = np.where(np.abs(np.asarray(zs))[:, None, None] <= half, np.where(inbox, 0.0, -1000.0), -1000.0)
    body = [Contour(square(0, 0, half, z)) for z in zs if abs(z) <= half]
    return CTVolume(geom, hu.astype(np.float32)), {"BOX": body}


def plan(overrides: list[dict[str, str]] | None = None, **beam: Any) -> Plan:
    b: dict[str, Any] = {"name": "B1", "energy_mev": 12.0, "applicator": "10x10", "aim_mm": [0.0, 0.0, 0.0]}
    b["mu"] = 100.0
    b.update(beam)
    return Plan.model_validate(
        {
            "format": 1, "id": "T", "label": "T", "course": "C", "machine": "DemoLinac", "ct_curve": "Default",
            "external": "BOX", "fractions": 1, "prescription_gy": 2.0, "dose_grid_mm": 2.0, "beam": [b],
            "override": overrides or [],
        }
    )  # fmt: skip


@pytest.fixture(scope="module")
def box() -> tuple[CTVolume, dict[str, list[Contour]]]:
    return box_phantom()


@pytest.fixture(scope="module")
def bare_box_dose(site: Site, box: tuple[CTVolume, dict[str, list[Contour]]]) -> DoseGrid:
    """The plain beam's dose in the water box: the reference several tests compare against, computed once."""
    return compute_plan_dose(plan(), site, *box).plan


def line_profile(dose: DoseGrid, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth below the box surface and dose along the line through the origin travelling in ``direction``."""
    xs, ys, zs = dose.geometry.axes()
    dx, dy, dz = dose.geometry.spacing_mm
    s = np.arange(-79.0, 80.0, 1.0)
    pts = s[:, None] * direction
    idx = [(pts[:, 2] - zs[0]) / dz, (pts[:, 1] - ys[0]) / dy, (pts[:, 0] - xs[0]) / dx]
    return s + 80.0, map_coordinates(dose.gy, idx, order=1)


def r50(depth: np.ndarray, d: np.ndarray) -> float:
    k = int(np.argmax(d))
    return float(np.interp(-0.5, -d[k:] / d.max(), depth[k:]))


@pytest.mark.parametrize("energy", sorted(REFERENCE_TABLE))
def test_demo_beam_data_reproduce_the_reference_table(site: Site, energy: int) -> None:
    e = site.machines[0].energy(float(energy))
    assert e is not None
    m = pdd_metrics(e.pdd.depth_mm, e.pdd.dose_pct)
    dmax, ds, r90, r80, r50_cm, rp = REFERENCE_TABLE[energy]
    got = (m.dmax_mm, m.r90_mm, m.r80_mm, m.r50_mm, m.rp_mm)
    assert got == pytest.approx(tuple(10 * v for v in (dmax, r90, r80, r50_cm, rp)), abs=0.5)
    assert m.surface_pct == pytest.approx(ds, abs=0.5)


def test_site_problems_name_bad_beam_data() -> None:
    data = demo_site()
    energy = data["machines"][0]["energies"][0]
    energy["pdd"]["depth_mm"][3] = energy["pdd"]["depth_mm"][2]
    _, problems = site_problems(data)
    assert any(p.startswith("machines[0].energies[0].pdd.depth_mm") and "increase" in p for p in problems)
    data = demo_site()
    del data["machines"][0]["energies"][1]["applicator_factors"]["6x6"]
    data["machines"][0]["energies"][2]["reference_applicator"] = "7x7"
    _, problems = site_problems(data)
    assert "machines[0].energies[1].applicator_factors: missing applicator(s) 6x6" in problems
    assert "machines[0].energies[2].reference_applicator: unknown applicator '7x7'" in problems


def test_gantry_90_enters_from_the_patients_left(site: Site, box: tuple[CTVolume, dict[str, list[Contour]]]) -> None:
    ct, contours = box
    dose = compute_plan_dose(plan(gantry_deg=90.0), site, ct, contours).plan
    _, d = line_profile(dose, np.array([-1.0, 0.0, 0.0]))
    assert int(np.argmax(d)) < 40  # maximum just inside the +x (left) surface
    xs, _, _ = dose.geometry.axes()
    assert dose.gy[:, :, xs > 40].max() > 0.9 * dose.gy.max()
    assert dose.gy[:, :, xs < -40].max() < 0.1 * dose.gy.max()


def test_water_bolus_shifts_depth_dose_by_its_thickness(
    site: Site, box: tuple[CTVolume, dict[str, list[Contour]]], bare_box_dose: DoseGrid
) -> None:
    ct, contours = box
    bare = bare_box_dose
    bolus = {"thickness_mm": 10.0, "margin_mm": 10.0, "material": "Water"}
    with_bolus = compute_plan_dose(plan(bolus=bolus), site, ct, contours).plan
    depth, a = line_profile(bare, np.array([0.0, 1.0, 0.0]))
    _, b = line_profile(with_bolus, np.array([0.0, 1.0, 0.0]))
    assert r50(depth, a) - r50(depth, b) == pytest.approx(10.0, abs=1.0)


def test_bolus_sits_on_the_surface_inside_the_grown_cutout(
    site: Site, box: tuple[CTVolume, dict[str, list[Contour]]]
) -> None:
    ct, contours = box
    p = plan(bolus={"thickness_mm": 10.0, "margin_mm": 10.0, "material": "Water"})
    cs = list(aim_plan(p, site, ct.geometry, contours).bolus["B1"])
    assert cs and all(len(c.points_mm) >= 3 and c.geometric_type == "CLOSED_PLANAR" for c in cs)
    assert {float(c.points_mm[0, 2]) for c in cs} <= set(ct.geometry.slice_z_mm)
    g = GridGeometry((-120.0, -120.0, -90.0), (2.0, 2.0, 2.0), (91, 121, 121))
    m = rasterize(cs, g, 3.0)
    ext = rasterize(contours["BOX"], g, 3.0)
    xs, ys, _ = g.axes()
    _, ky, kx = np.nonzero(m & ~ext)
    assert ys[ky].min() >= -90.0 - 1e-6 and ys[ky].max() < -80.0
    # cutout half-width 50 + margin 10 at the isocenter plane; the skin is 1000 + 10 mm from the source (SSD 100
    # to the bolus surface)
    assert np.abs(xs[kx]).max() == pytest.approx(60.0 * 1.0, abs=2.0)
    # the central slice's bolus is one slab on the anterior surface, outlined by its few corners, not per pixel
    (mid,) = [c.points_mm for c in cs if c.points_mm[0, 2] == 0.0]
    x, y = mid[:, 0], mid[:, 1]
    assert len(mid) <= 12
    assert y.min() == pytest.approx(-90.0, abs=1.0) and y.max() == pytest.approx(-80.0, abs=1.0)
    assert -x.min() == pytest.approx(60.0, abs=2.0) and x.max() == pytest.approx(60.0, abs=2.0)
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    assert area == pytest.approx(120.0 * 10.0, rel=0.1)


def test_override_of_water_by_water_changes_nothing_and_lung_does(
    site: Site, box: tuple[CTVolume, dict[str, list[Contour]]], bare_box_dose: DoseGrid
) -> None:
    ct, contours = box
    base = bare_box_dose.gy
    water = compute_plan_dose(plan([{"structure": "BOX", "material": "Water"}]), site, ct, contours).plan.gy
    assert np.max(np.abs(water - base)) < 0.005 * base.max()
    # lung carries the beam through the whole box: a coarser grid is plenty to see R50 move far deeper
    lung = compute_plan_dose(plan([{"structure": "BOX", "material": "Lung"}]), site, ct, contours, grid_mm=4.0).plan
    depth, d = line_profile(lung, np.array([0.0, 1.0, 0.0]))
    assert r50(depth, d) > 100.0  # 12 MeV R50 is 50 mm in water; lung at 0.26 pushes it far deeper


def test_demo_phantom_plan_dose(site: Site, phantom: tuple[CTVolume, dict[str, list[Contour]]]) -> None:
    ct, contours = phantom
    p = Plan.model_validate(
        {
            "format": 1, "id": "P", "label": "P", "course": "C", "machine": "DemoLinac", "ct_curve": "Default",
            "external": "BODY", "fractions": 10, "prescription_gy": 20.0,
            "override": [{"structure": "Prosthesis", "material": "CompactBone"}],
            "beam": [{"name": "AP", "energy_mev": 12.0, "applicator": "10x10", "target": "PTV", "ssd_mm": 1000.0,
                      "bolus": {"thickness_mm": 5.0, "margin_mm": 5.0, "material": "Superflab"}}],
        }
    )  # fmt: skip
    result = compute_plan_dose(p, site, ct, contours)
    gy = result.plan.gy
    assert np.all(np.isfinite(gy)) and gy.min() >= 0.0
    beam = result.beams[0]
    assert beam.dose_per_fraction_gy == pytest.approx(2.0)
    assert 19.0 <= gy.max() <= 22.0
    px, _, pz = beam.normalization_point_mm
    assert abs(px) < 3 and abs(pz) < 3  # on the central axis through the PTV centroid (x = z = 0)
    assert beam.mu_per_fraction == pytest.approx(200.0, rel=0.1)  # ~1 cGy/MU at dmax, 2 Gy per fraction


def test_a_cutout_the_table_does_not_cover_needs_its_measured_factor(
    site: Site, box: tuple[CTVolume, dict[str, list[Contour]]]
) -> None:
    ct, contours = box
    tiny = [[-10.0, -10.0], [10.0, -10.0], [10.0, 10.0], [-10.0, 10.0]]
    with pytest.raises(
        PlanError,
        match=r"beam\[0\]\.cutout_mm: beam B1: its equivalent square \(by lateral build-up, σ_r [\d.]+ mm\) is "
        r"20\.0 mm, outside the site's cutout factors \(30-250 mm at 12 MeV\): a factor is never extrapolated",
    ):
        compute_plan_dose(plan(cutout_mm=tiny), site, ct, contours)
    measured = {"value": 0.8, "note": "Markus chamber at 12 mm, 2027-01-05"}
    beam = compute_plan_dose(plan(cutout_mm=tiny, cutout_factor=measured), site, ct, contours).beams[0]
    e = site.machines[0].energy(12.0)
    assert e is not None
    # the normalization point is the field's own dmax on its axis: there the dose per MU is k · S_a · S_c
    per_mu = beam.dose_per_fraction_gy / beam.mu_per_fraction
    assert per_mu == pytest.approx(e.calibration_cgy_per_mu / 100.0 * e.applicator_factors["10x10"] * 0.8, rel=0.01)


def test_beam_missing_the_body_is_refused(site: Site, box: tuple[CTVolume, dict[str, list[Contour]]]) -> None:
    ct, contours = box
    with pytest.raises(PlanError, match="never meets the External"):
        compute_plan_dose(plan(aim_mm=None, isocenter_mm=[0.0, 0.0, 200.0], gantry_deg=90.0), site, ct, contours)


def test_dose_grid_covers_every_slice_holding_the_external_or_a_bolus(
    site: Site, phantom: tuple[CTVolume, dict[str, list[Contour]]]
) -> None:
    """In z as in x and y: the last CT slice's body is not left without dose (a DVH would miss it)."""
    ct, contours = phantom
    p = Plan.model_validate(
        {
            "format": 1, "id": "P", "label": "P", "course": "C", "machine": "DemoLinac", "ct_curve": "Default",
            "external": "BODY", "fractions": 10, "prescription_gy": 20.0, "dose_grid_mm": 2.5,
            "beam": [{"name": "AP", "energy_mev": 12.0, "applicator": "10x10", "target": "PTV", "ssd_mm": 1000.0,
                      "bolus": {"thickness_mm": 5.0, "margin_mm": 5.0, "material": "Superflab"}}],
        }
    )  # fmt: skip
    grid = compute_plan_dose(p, site, ct, contours).plan.geometry
    bolus = aim_plan(p, site, ct.geometry, contours).bolus["AP"]
    points = np.concatenate([c.points_mm for c in [*contours["BODY"], *bolus]])
    assert (ct.geometry.slice_z_mm[-1] - ct.geometry.slice_z_mm[0]) % 2.5 != 0  # the grid cannot end on the CT
    for axis, values in enumerate(grid.axes()):
        assert values[0] <= points[:, axis].min() and values[-1] >= points[:, axis].max(), "xyz"[axis]


def _blas_threads() -> list[int]:
    return [int(lib["num_threads"]) for lib in threadpool_info() if lib["user_api"] == "blas"]


class _Watching(PencilBeamEngine):
    """The engine, noting the BLAS thread counts each beam's dose was computed with."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, list[int]] = {}

    def beam_dose(self, medium: Medium, beam: BeamSetup, energy: EnergyData) -> npt.NDArray[np.float32]:
        self.seen[beam.name] = _blas_threads()
        return super().beam_dose(medium, beam, energy)


def test_each_beam_runs_its_matrix_products_on_one_blas_thread(
    site: Site, box: tuple[CTVolume, dict[str, list[Contour]]]
) -> None:
    """The beams run on threads of their own: BLAS's threads on top would outnumber the cores (and spin). Each
    beam's products use one, and BLAS is as it was afterwards."""
    ct, contours = box
    beams = [plan().beams[0], plan(name="B2", gantry_deg=20.0).beams[0]]
    two = Plan.model_validate({**plan().model_dump(by_alias=True), "beam": [b.model_dump() for b in beams]})
    before = _blas_threads()
    engine = _Watching()
    result = compute_plan_dose(two, site, ct, contours, grid_mm=4.0, engine=engine)
    assert [b.beam_name for b in result.beams] == ["B1", "B2"]
    assert engine.seen == {"B1": [1] * len(before), "B2": [1] * len(before)}
    assert _blas_threads() == before
