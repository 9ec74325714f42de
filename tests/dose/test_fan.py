"""The fan grid reaches the patient's grid at every voxel it would reach read everywhere: the resampling skips only
voxels where trilinear sampling gives nothing, whatever the beam's angles and wherever its dose lies."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage

from rtexport.dose.fan import to_patient
from rtexport.geometry.iec import BeamFrame, frame_toward
from rtexport.model.course import PatientPosition
from rtexport.model.dose import GridGeometry

GRID = GridGeometry(origin_mm=(-60.0, -50.0, -40.0), spacing_mm=(2.5, 2.0, 3.0), shape=(28, 51, 49))


def fan_dose(rng: np.random.Generator) -> tuple[npt.NDArray[np.float32], GridGeometry]:
    """Dose in a fan grid [d, u, v] that lies in a few separate lumps (one through its last plane), zero elsewhere."""
    out = np.zeros((70, 40, 36), dtype=np.float32)
    out[3:9, 5:12, 20:30] = rng.random((6, 7, 10))
    out[30:41, 18:22, 2:5] = rng.random((11, 4, 3))
    out[60:, 30:40, 10:36] = rng.random((10, 10, 26))
    return out, GridGeometry(origin_mm=(-45.0, -50.0, 940.0), spacing_mm=(2.5, 2.5, 1.5), shape=out.shape)


def everywhere(out: npt.NDArray[np.float32], fan: GridGeometry, frame: BeamFrame) -> npt.NDArray[np.float32]:
    """The fan grid read at every voxel of the grid, no box: the reference."""
    xs, ys, zs = GRID.axes()
    z, y, x = np.meshgrid(zs, ys, xs, indexing="ij")
    u, v, d = frame.to_fan(np.stack([x, y, z], axis=-1))
    (v0, u0, d0), (h, _, dstep) = fan.origin_mm, fan.spacing_mm
    idx = np.stack([(d - d0) / dstep, (u - u0) / h, (v - v0) / h]).reshape(3, -1)
    vals = ndimage.map_coordinates(out, idx, order=1, mode="constant", cval=0.0, prefilter=False)
    return np.asarray(np.maximum(vals, 0.0).reshape(GRID.shape), dtype=np.float32)


@pytest.mark.parametrize(("gantry", "collimator", "couch"), [(0, 0, 0), (35, 0, 0), (90, 30, 0), (210, 0, 40)])
def test_the_fan_reaches_every_voxel_it_would_reach_read_everywhere(
    gantry: float, collimator: float, couch: float
) -> None:
    rng = np.random.default_rng(int(gantry + collimator + couch))
    out, fan = fan_dose(rng)
    frame = frame_toward((0.0, 0.0, 0.0), gantry, collimator, couch, PatientPosition.HFS, 1000.0, 1000.0)
    inside = rng.random(GRID.shape) < 0.8
    reference = np.where(inside, everywhere(out, fan, frame), 0.0)
    got = to_patient(out, fan, GRID, inside, frame)
    assert np.count_nonzero(reference) > 300  # the lumps do reach the grid
    np.testing.assert_allclose(got, reference, rtol=1e-6, atol=1e-7)
