"""A structure is its contours: nearest contour plane within half the contour spacing, even-odd inside it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rtexport.geometry.contours import PlanarStructure, rasterize, structure_centroid
from rtexport.geometry.rays import first_entry
from rtexport.model.course import Contour
from rtexport.model.dose import GridGeometry


def square(cx: float, cy: float, half: float, z: float) -> np.ndarray:
    return np.array(
        [[cx - half, cy - half, z], [cx + half, cy - half, z], [cx + half, cy + half, z], [cx - half, cy + half, z]]
    )


def ellipse(a: float, b: float, z: float, n: int = 180) -> Contour:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return Contour(np.c_[a * np.cos(t), b * np.sin(t), np.full(n, z)])


def test_rasterize_even_odd_keeps_holes_and_half_slice_rule() -> None:
    cs = [Contour(square(0, 0, 20, z)) for z in (0.0, 3.0, 6.0)] + [Contour(square(0, 0, 10, 3.0))]
    g = GridGeometry((-30.0, -30.0, -3.0), (1.0, 1.0, 1.0), (14, 61, 61))
    m = rasterize(cs, g, fallback_spacing_mm=3.0)
    _, _, gz = g.axes()
    at = {round(float(z)): m[k] for k, z in enumerate(gz)}
    assert at[0].sum() == 40 * 40
    assert not at[3][30, 30] and at[3][30, 45]  # hole at the centre, ring kept
    assert at[-1].any() and not at[-2].any()  # within half a contour spacing (1.5 mm) of z = 0 only
    assert not at[8].any()


def test_contains_agrees_with_rasterize_point_for_point() -> None:
    cs = [ellipse(40.0, 25.0, z) for z in (-4.0, 0.0, 4.0)] + [Contour(square(0, 0, 8, 0.0))]
    structure = PlanarStructure(cs, fallback_spacing_mm=4.0)
    g = GridGeometry((-45.0, -30.0, -7.0), (1.0, 1.0, 0.5), (29, 61, 91))
    xs, ys, zs = g.axes()
    zz, yy, xx = np.meshgrid(zs, ys, xs, indexing="ij")
    assert np.array_equal(structure.contains(np.stack([xx, yy, zz], axis=-1)), structure.fill(xs, ys, zs))


def test_single_plane_uses_the_fallback_spacing() -> None:
    s = PlanarStructure([Contour(square(0, 0, 5, 10.0))], fallback_spacing_mm=2.0)
    pts = np.array([[0.0, 0.0, 10.9], [0.0, 0.0, 11.1], [0.0, 0.0, 9.0]])
    assert s.contains(pts).tolist() == [True, False, True]


def test_first_entry_is_exact_on_the_contours() -> None:
    body = PlanarStructure([ellipse(150.0, 100.0, z, 720) for z in (-6.0, -3.0, 0.0, 3.0, 6.0)], 3.0)
    # from 1 m anterior toward the centre: enters at y = -100 (polygon vertex at t = 270°)
    d = first_entry([body], np.array([0.0, -1100.0, 0.0]), np.array([0.0, 1.0, 0.0]), 1200.0)
    assert d == pytest.approx(1000.0, abs=1e-6)
    # an oblique in-plane ray meets a polygon edge; compare with the exact edge intersection
    start, direction = np.array([300.0, -400.0, 3.0]), np.array([-0.6, 0.8, 0.0])
    d = first_entry([body], start, direction, 800.0)
    assert d is not None
    hit = start + d * direction
    poly = body.polygons[body.plane_index(np.array([3.0]))[0]][0]

    def off_edge(a: np.ndarray, b: np.ndarray) -> float:
        (ex, ey), (px, py) = b - a, hit[:2] - a
        return float(abs(ex * py - ey * px) / np.hypot(ex, ey))

    dist = min(off_edge(a, b) for a, b in zip(poly, np.roll(poly, -1, axis=0), strict=True))
    assert dist < 1e-6
    # along z the body ends half a contour spacing beyond its last plane
    d = first_entry([body], np.array([0.0, 0.0, 50.0]), np.array([0.0, 0.0, -1.0]), 100.0)
    assert d == pytest.approx(50.0 - 7.5, abs=1e-6)
    assert first_entry([body], np.array([0.0, -1100.0, 20.0]), np.array([0.0, 1.0, 0.0]), 1200.0) is None


def test_first_entry_meets_the_nearer_of_several_structures() -> None:
    body = PlanarStructure([Contour(square(0, 0, 50, z)) for z in (-3.0, 0.0, 3.0)], 3.0)
    bolus = PlanarStructure(
        [Contour(np.array([[-20, -60, z], [20, -60, z], [20, -50, z], [-20, -50, z]])) for z in (0.0,)], 3.0
    )
    ray = (np.array([0.0, -200.0, 0.0]), np.array([0.0, 1.0, 0.0]), 300.0)
    assert first_entry([body], *ray) == pytest.approx(150.0)
    assert first_entry([body, bolus], *ray) == pytest.approx(140.0)


def test_structure_centroid() -> None:
    cs = [Contour(square(10.0, -80.0, 20.0, z)) for z in (-3.0, 0.0, 3.0)]
    assert structure_centroid(cs) == pytest.approx((10.0, -80.0, 0.0))
    assert structure_centroid([Contour(square(0, 0, 1, 0)[:2], "OPEN_PLANAR")]) is None
