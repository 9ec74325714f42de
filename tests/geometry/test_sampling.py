"""One sampler: trilinear or nearest on axes (z may be uneven), zero or edge values outside."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from rtexport.geometry.sampling import resample, sample
from rtexport.model.dose import GridGeometry


def linear_volume() -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    xs = np.arange(5, dtype=np.float64) * 2.0 - 4.0
    ys = np.arange(4, dtype=np.float64) * 3.0
    zs = np.array([0.0, 1.0, 3.0, 7.0])  # uneven, as CT slices may be
    zz, yy, xx = np.meshgrid(zs, ys, xs, indexing="ij")
    return 2.0 * xx - yy + 0.5 * zz + 10.0, (xs, ys, zs)


def test_trilinear_is_exact_for_a_linear_field_and_zero_outside() -> None:
    vol, axes = linear_volume()
    pts = np.array([[-3.0, 1.5, 0.5], [3.9, 8.9, 6.0], [0.0, 4.0, 2.0], [5.0, 0.0, 0.0], [0.0, 0.0, 7.5]])
    got = sample(vol, axes, pts)
    expected = 2 * pts[:, 0] - pts[:, 1] + 0.5 * pts[:, 2] + 10.0
    assert got[:3] == pytest.approx(expected[:3])
    assert got[3:].tolist() == [0.0, 0.0]  # beyond the last x column, beyond the last slice


def test_nearest_and_edge_values() -> None:
    vol, axes = linear_volume()
    p = np.array([[-3.1, 0.2, 2.9]])
    assert sample(vol, axes, p, order=0)[0] == vol[2, 0, 0]
    assert sample(vol, axes, np.array([[-9.0, 0.0, 20.0]]), outside="edge")[0] == vol[3, 0, 0]


def test_a_boolean_mask_samples_as_its_fraction() -> None:
    mask = np.zeros((2, 2, 2), dtype=bool)
    mask[:, :, 1] = True
    axes = (np.array([0.0, 1.0]), np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    assert sample(mask, axes, np.array([[0.25, 0.5, 0.5]]))[0] == pytest.approx(0.25)


def test_resample_onto_a_grid_matches_pointwise_sampling() -> None:
    vol, axes = linear_volume()
    grid = GridGeometry(origin_mm=(-4.0, 0.0, 0.0), spacing_mm=(1.5, 2.0, 2.5), shape=(3, 5, 6))
    out = resample(vol.astype(np.float32), axes, grid)
    gx, gy, gz = grid.axes()
    zz, yy, xx = np.meshgrid(gz, gy, gx, indexing="ij")
    pts = np.stack([xx, yy, zz], axis=-1)
    assert out == pytest.approx(sample(vol, axes, pts, outside="edge").astype(np.float32), abs=1e-4)


@pytest.mark.parametrize(
    "origin",
    [(-9.0, -7.0, -2.0), (3.3, 4.1, 1.0), (40.0, 30.0, 2.0), (-100.0, -100.0, 0.5)],
    ids=["beyond-the-first-edges", "inside", "beyond-the-last-edges", "all-before"],
)
def test_resample_gives_what_the_whole_planes_give_to_the_last_bit(origin: tuple[float, float, float]) -> None:
    """The resampled medium (hence the dose) does not change when only the grid's part of each plane is read: a
    trilinear blend of whole CT planes, clamped at their edges, gives the same bits."""
    rng = np.random.default_rng(7)
    vol = rng.normal(0.0, 300.0, (6, 40, 50)).astype(np.float32)
    xs = np.arange(50, dtype=np.float64) * 0.97 - 3.0
    ys = np.arange(40, dtype=np.float64) * 0.97 - 1.0
    zs = np.array([0.0, 1.5, 3.0, 4.5, 6.0, 7.5], dtype=np.float64)
    grid = GridGeometry(origin_mm=origin, spacing_mm=(1.3, 1.1, 1.7), shape=(5, 9, 11))
    gx, gy, gz = grid.axes()
    iz = np.interp(gz, zs, np.arange(len(zs), dtype=np.float64))
    yy, xx = np.meshgrid((gy - ys[0]) / (ys[1] - ys[0]), (gx - xs[0]) / (xs[1] - xs[0]), indexing="ij")
    whole = np.empty(grid.shape, dtype=np.float32)
    for k, zk in enumerate(iz):
        k0 = min(int(np.floor(zk)), len(zs) - 1)
        k1, f = min(k0 + 1, len(zs) - 1), float(zk - k0)
        plane = (1 - f) * vol[k0] + f * vol[k1]
        whole[k] = ndimage.map_coordinates(plane, [yy, xx], order=1, mode="nearest", prefilter=False)
    assert resample(vol, (xs, ys, zs), grid).tobytes() == whole.tobytes()
