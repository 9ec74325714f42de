"""Polygons: the one fill, containment, area and centroid the engine, the DVH and the plan checks share."""

from __future__ import annotations

import numpy as np
import pytest

from rtexport.geometry import polygon

SQUARE = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
HOLE = np.array([[3.0, 3.0], [7.0, 3.0], [7.0, 7.0], [3.0, 7.0]])


def test_area_perimeter_centroid_and_equivalent_square_of_a_rectangle() -> None:
    rect = np.array([[-40.0, -30.0], [40.0, -30.0], [40.0, 30.0], [-40.0, 30.0]])
    assert polygon.area(rect) == pytest.approx(4800.0)
    assert polygon.area(rect[::-1]) == pytest.approx(-4800.0)  # clockwise: negative
    assert polygon.perimeter(rect) == pytest.approx(280.0)
    assert polygon.equivalent_square(rect) == pytest.approx(4 * 4800.0 / 280.0)
    assert polygon.centroid(rect + np.array([5.0, -2.0])) == pytest.approx((5.0, -2.0))
    assert polygon.centroid(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])) is None  # encloses nothing


def test_fill_is_even_odd_so_holes_stay_holes() -> None:
    xs = ys = np.arange(0.5, 10.0, 1.0)
    mask = polygon.fill([SQUARE, HOLE], xs, ys)
    assert mask.shape == (10, 10)
    assert mask.sum() == 100 - 16
    assert not mask[5, 5] and mask[1, 1]


def test_contains_follows_the_same_rule_as_fill_on_edges_and_vertices() -> None:
    rng = np.random.default_rng(3)
    xs = np.arange(-1.0, 11.5, 0.5)  # grid points fall exactly on edges and vertices
    ys = np.arange(-1.0, 11.5, 0.5)
    tri = np.array([[0.0, 0.0], [10.0, 0.0], [5.0, 10.0]])
    for polys in ([SQUARE, HOLE], [tri], [SQUARE + rng.normal(0, 0.5, SQUARE.shape)]):
        grid = polygon.fill(polys, xs, ys)
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        assert np.array_equal(polygon.contains(polys, xx, yy), grid)


def test_inside_with_margin_grows_the_polygon() -> None:
    x = np.array([5.0, 10.5, 11.5, -0.9, 5.0])
    y = np.array([5.0, 5.0, 5.0, 5.0, 10.8])
    assert polygon.inside_with_margin(SQUARE, x, y, 1.0).tolist() == [True, True, False, True, True]
    assert polygon.inside_with_margin(SQUARE, x, y, 0.0).tolist() == [True, False, False, False, False]


def test_drop_collinear_keeps_only_the_corners_of_a_traced_outline() -> None:
    edge = np.arange(0.0, 10.0, 0.5)
    ring = np.concatenate(
        [np.c_[edge, 0 * edge], np.c_[0 * edge + 10, edge], np.c_[10 - edge, 0 * edge + 10], np.c_[0 * edge, 10 - edge]]
    )
    assert polygon.drop_collinear(ring).tolist() == [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]]
    notch = np.array([[0.0, 0.0], [4.0, 0.0], [5.0, 1.0], [6.0, 0.0], [10.0, 0.0], [10.0, 5.0], [0.0, 5.0]])
    assert len(polygon.drop_collinear(notch)) == len(notch)


def test_planar_centroid_weights_each_contour_by_its_area() -> None:
    big = np.c_[SQUARE, np.full(4, 0.0)]  # area 100, centre (5, 5, 0)
    small = np.c_[HOLE + 20.0, np.full(4, 3.0)]  # area 16, centre (25, 25, 3)
    expected = (np.array([5.0, 5.0, 0.0]) * 100 + np.array([25.0, 25.0, 3.0]) * 16) / 116
    assert polygon.planar_centroid([big, small]) == pytest.approx(tuple(expected))
    assert polygon.planar_centroid([big[:2]]) is None


def test_coverage_gives_each_cells_share_inside_not_its_centre_snapped() -> None:
    """A rectangle with edges between cell centres: exact shares along x, to 1/(2·16) of a cell along y; a hole
    and a slanted edge add up to the polygon's area."""
    xs = ys = np.arange(0.0, 10.0, 1.0)
    rect = np.array([[2.3, 3.6], [7.2, 3.6], [7.2, 8.1], [2.3, 8.1]])
    cov = polygon.coverage([rect], xs, ys)
    assert cov[6, 2:8] == pytest.approx([0.2, 1.0, 1.0, 1.0, 1.0, 0.7])
    assert cov[4, 4] == pytest.approx(0.9, abs=1 / 32) and cov[8, 4] == pytest.approx(0.6, abs=1 / 32)
    assert cov.sum() == pytest.approx(4.9 * 4.5, abs=0.05)
    assert polygon.coverage([SQUARE, HOLE], xs, ys).sum() == pytest.approx(
        9.5 * 9.5 - 16.0, abs=0.05
    )  # cells reach 9.5
    triangle = np.array([[0.2, 0.2], [9.1, 0.7], [3.3, 8.8]])
    assert polygon.coverage([triangle], xs, ys).sum() == pytest.approx(abs(polygon.area(triangle)), rel=1e-3)
