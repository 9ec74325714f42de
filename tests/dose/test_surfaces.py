"""What the surface does to the dose: each pencil's own inverse square from the virtual source (a recessed step,
bolus, an extended SSD), the rise of shallow dose and the shift of dmax at oblique incidence, and a skin placed
where the contours put it, not snapped to the dose grid."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from rtexport.dose import CTVolume, Medium, PencilBeamEngine, compute_plan_dose
from rtexport.model.course import Contour, CTGeometry
from rtexport.model.dose import DoseGrid
from rtexport.model.plan import Plan
from rtexport.model.site import Site
from tests.dose.media import SURFACE_Y, beam, slab_grid

# --- per-pencil inverse square (Hogstrom) ---------------------------------------------------------------------


def stepped_medium(recess_mm: float) -> Medium:
    """Water whose surface is at SURFACE_Y for x < 0 and ``recess_mm`` deeper for x >= 0."""
    g = slab_grid(half_width=100.0, depth=130.0, top=-20.0)
    xs, ys, _ = g.axes()
    skin = np.where(xs < 0, SURFACE_Y, SURFACE_Y + recess_mm)
    inside = np.broadcast_to((ys[:, None] >= skin[None, :])[None], g.shape).copy()
    s = inside.astype(np.float32)
    return Medium(g, s, s.copy(), inside)


def dose_at(medium: Medium, dose: np.ndarray, x: float, y: float) -> float:
    """Dose at (x, y) in the plane z = 0, averaged over ±1 voxel in x (the grid's noise of interpolation)."""
    xs, ys, zs = medium.grid.axes()
    i, j = int(np.argmin(np.abs(zs))), int(np.argmin(np.abs(ys - y)))
    k = int(np.argmin(np.abs(xs - x)))
    return float(dose[i, j, k - 1 : k + 2].mean())


def test_a_recessed_surface_gets_the_inverse_square_of_its_own_air_gap(site: Site) -> None:
    """Half the field on a surface 40 mm deeper: at the same depth below each surface, the recess gets
    ((f + z)/(f + 40 + z))² of the dose (the reference note's ≈ 0.92 at 12 MeV, f = 930 mm, z = 27 mm)."""
    recess, depth = 40.0, 27.0
    med = stepped_medium(recess)
    bs, e = beam(site, None, 12.0, "15x15")
    dose = PencilBeamEngine().relative_dose(med, bs, e)
    upper = dose_at(med, dose, -35.0, SURFACE_Y + depth)
    lower = dose_at(med, dose, 35.0 * (1000 + recess + depth) / (1000 + depth), SURFACE_Y + recess + depth)
    f = e.virtual_ssd_mm
    assert lower / upper == pytest.approx(((f + depth) / (f + recess + depth)) ** 2, abs=0.01)


def test_an_extended_ssd_follows_the_virtual_source_inverse_square(site: Site) -> None:
    med = stepped_medium(0.0)
    near, e = beam(site, None, 12.0)
    far, _ = beam(site, None, 12.0, ssd=1100.0)
    engine = PencilBeamEngine()
    d100, d110 = engine.beam_dose(med, near, e), engine.beam_dose(med, far, e)
    f, dm = e.virtual_ssd_mm, 27.0
    ratio = dose_at(med, d110, 0.0, SURFACE_Y + dm) / dose_at(med, d100, 0.0, SURFACE_Y + dm)
    assert ratio == pytest.approx(((f + dm) / (f + 100.0 + dm)) ** 2, abs=0.005)


def test_bolus_on_the_skin_brings_the_surface_nearer_the_source(site: Site) -> None:
    """10 mm of water bolus on the skin, the source left where it was: at the same depth below the bolus surface
    the dose is ((f + z)/(f − 10 + z))² higher, about +2.2 % (the issue measured +0.0 %)."""
    bare = stepped_medium(0.0)
    g = bare.grid
    _, ys, _ = g.axes()
    inside = np.broadcast_to((ys >= SURFACE_Y - 10.0)[None, :, None], g.shape).copy()
    s = inside.astype(np.float32)
    bolus = Medium(g, s, s.copy(), inside)
    bs, e = beam(site, None, 12.0)
    engine = PencilBeamEngine()
    z = 20.0
    with_bolus = dose_at(bolus, engine.relative_dose(bolus, bs, e), 0.0, SURFACE_Y - 10.0 + z)
    without = dose_at(bare, engine.relative_dose(bare, bs, e), 0.0, SURFACE_Y + z)
    f = e.virtual_ssd_mm
    assert with_bolus / without == pytest.approx(((f + z) / (f - 10.0 + z)) ** 2, abs=0.005)


# --- oblique incidence and the skin, through the plan's own geometry -------------------------------------------

SURFACE = -80.0  # the water box's anterior surface (HFS: anterior is -y), before a shift


def box(shift_mm: float = 0.0) -> tuple[CTVolume, dict[str, list[Contour]]]:
    """A water box |x|, |z| <= 80 mm from y = SURFACE − shift to y = 80, in a 1 mm CT whose HU share the
    surface's partial volume: the External's contour holds the surface to a micrometre."""
    xs = -120.0 + np.arange(241)
    ys = -130.0 + np.arange(221)
    zs = tuple(float(z) for z in -90.0 + 3.0 * np.arange(61))
    top = SURFACE - shift_mm
    geom = CTGeometry("2.25.1", "2.25.2", (-120.0, -130.0, -90.0), (1.0, 1.0), len(ys), len(xs), zs)
    fraction_y = np.clip(ys + 0.5 - top, 0.0, 1.0) * (ys <= 80.0)
    inside = fraction_y[:, None] * (np.abs(xs) <= 80.0)[None, :]
    water = (np.abs(np.asarray(zs)) <= 80.0)[:, None, None] * inside[None]
    hu = -1000.0 + 1000.0 * water
    ring = [[-80.0, top], [80.0, top], [80.0, 80.0], [-80.0, 80.0]]
    body = [Contour(np.array([[x, y, z] for x, y in ring])) for z in zs if abs(z) <= 80.0]
    return CTVolume(geom, hu.astype(np.float32)), {"BOX": body}


def one_beam(**beam_keys: Any) -> Plan:
    b: dict[str, Any] = {"name": "B1", "energy_mev": 12.0, "applicator": "10x10", "mu": 100.0}
    b.update(beam_keys)
    return Plan.model_validate(
        {
            "format": 1, "id": "T", "label": "T", "course": "C", "machine": "DemoLinac", "ct_curve": "Default",
            "external": "BOX", "fractions": 1, "prescription_gy": 2.0, "dose_grid_mm": 2.5, "beam": [b],
        }
    )  # fmt: skip


def along(dose: DoseGrid, start: np.ndarray, direction: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Dose (trilinear) at start + s · direction."""
    xs, ys, zs = dose.geometry.axes()
    pts = start[None, :] + s[:, None] * direction[None, :]
    h = dose.geometry.spacing_mm
    idx = [(pts[:, 2] - zs[0]) / h[2], (pts[:, 1] - ys[0]) / h[1], (pts[:, 0] - xs[0]) / h[0]]
    return np.asarray(map_coordinates(dose.gy, idx, order=1), dtype=np.float64)


def depth_dose(site: Site, gantry: float, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depth (mm) and dose along the surface normal and along the central axis, from where the axis enters."""
    ct, contours = box(shift)
    t = math.radians(gantry)
    toward = np.array([-math.sin(t), math.cos(t), 0.0])  # direction of travel at this gantry angle (HFS)
    entry = np.array([0.0, SURFACE - shift, 0.0])
    plan = one_beam(gantry_deg=gantry, aim_mm=list(entry + 30.0 * toward))
    dose = compute_plan_dose(plan, site, ct, contours).plan
    s = np.arange(0.0, 80.0, 0.25)
    return s, along(dose, entry, np.array([0.0, 1.0, 0.0]), s), along(dose, entry, toward, s)


def test_oblique_incidence_raises_shallow_dose_and_moves_dmax_toward_the_surface(site: Site) -> None:
    """At 45° (Ekstrand & Dixon 1982; AAPM TG-25): more dose in the first millimetres and at dmax (about
    1.1 × normal incidence), and dmax nearer the surface."""
    s, normal, _ = depth_dose(site, 0.0)
    _, oblique, _ = depth_dose(site, 45.0)
    shallow = (s >= 2.0) & (s <= 5.0)
    assert np.all(oblique[shallow] > normal[shallow])
    assert 1.03 <= oblique.max() / normal.max() <= 1.15
    assert s[np.argmax(oblique)] <= s[np.argmax(normal)] - 5.0


def r50(s: np.ndarray, d: np.ndarray) -> float:
    k = int(np.argmax(d))
    below = k + int(np.nonzero(d[k:] < 0.5 * d[k])[0][0])
    return float(np.interp(0.5 * d[k], [d[below], d[below - 1]], [s[below], s[below - 1]]))


@pytest.mark.parametrize("gantry", [0.0, 45.0])
def test_the_skin_is_where_the_contour_is_not_where_the_dose_grid_has_voxels(site: Site, gantry: float) -> None:
    """The surface moved through a 2.5 mm voxel in fifths: R50 below it stays put (the issue measured -0.7 to
    +1.2 mm; what is left is mostly reading a 2.5 mm grid along a diagonal: 0.1 mm on a 1.25 mm grid), and so
    does the dose in the first millimetre under the skin (15-25 % low in the issue at 30-45°, where a voxel of
    air was interpolated in)."""
    ranges, shallow = [], []
    for shift in np.arange(5) * 0.5:
        s, _, axis = depth_dose(site, gantry, float(shift))
        ranges.append(r50(s, axis))
        shallow.append(np.interp([0.5, 1.0], s, axis) / axis.max())
    assert max(ranges) - min(ranges) <= 0.4
    assert np.ptp(np.array(shallow), axis=0).max() <= 0.03


# --- where pencils leave the patient ---------------------------------------------------------------------------


def test_electrons_that_have_left_the_patient_add_no_dose_inside_it(site: Site) -> None:
    """Water 100 mm thick for x < 0 but only 20 mm for x >= 0 (a back surface the beam leaves through, as at a
    tangential edge or the end of a CT): the pencils that left carry no dose on through the air. Beside the step
    in the thick half, beyond 20 mm, the dose can then only lose the in-scatter the missing water would have given;
    it never gains any from electrons already out in the air."""
    g = slab_grid(half_width=100.0, depth=130.0, top=-20.0)
    xs, ys, _ = g.axes()
    below = ys[:, None] >= SURFACE_Y
    back = np.where(xs < 0, SURFACE_Y + 100.0, SURFACE_Y + 20.0)
    thin = np.broadcast_to((below & (ys[:, None] <= back[None, :]))[None], g.shape).copy()
    thick = np.broadcast_to((below & (ys[:, None] <= SURFACE_Y + 100.0))[None], g.shape).copy()
    bs, e = beam(site, None, 12.0, "15x15")
    engine = PencilBeamEngine()

    def dose(inside: np.ndarray) -> tuple[Medium, np.ndarray]:
        s = inside.astype(np.float32)
        med = Medium(g, s, s.copy(), inside)
        return med, engine.relative_dose(med, bs, e)

    stepped, stepped_dose = dose(thin)
    uniform, uniform_dose = dose(thick)
    for depth in (30.0, 40.0):
        for x in (-4.0, -8.0):
            beside = dose_at(stepped, stepped_dose, x, SURFACE_Y + depth)
            assert beside <= dose_at(uniform, uniform_dose, x, SURFACE_Y + depth) + 1e-6, (depth, x)
