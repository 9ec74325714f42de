"""The DVH statistics the report prints, on a structure whose doses are known voxel by voxel."""

from __future__ import annotations

import numpy as np

from rtexport.model.course import CTGeometry
from rtexport.model.dose import DoseGrid, GridGeometry
from rtexport.pictures.render import CourseVolume, dvh


def test_d95_and_volumes_at_least_a_level_count_voxels() -> None:
    # one row of 100 voxels receiving 1, 2, ..., 100 Gy
    ct = CTGeometry("2.25.1", "2.25.2", (0.0, 0.0, 0.0), (1.0, 1.0), 1, 100, (0.0,))
    vol = CourseVolume(ct, np.zeros((1, 1, 100), np.float32), {"PTV": np.ones((1, 1, 100), bool)}, {})
    dose = DoseGrid(
        GridGeometry((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (1, 1, 100)),
        np.arange(1, 101, dtype=np.float32)[None, None],
        "2.25.1",
    )
    (curve,) = dvh(vol, dose, {"PTV": "#ff0000"}, levels_gy=(45.0, 47.5))
    assert curve.max_gy == 100.0 and curve.mean_gy == 50.5
    assert curve.d95_gy == 6.0  # voxels 6..100 Gy are 95 % of the structure
    assert curve.volume_at_least(45.0) == 56.0  # 45..100 Gy
    assert curve.volume_at_least(47.5) == 53.0  # 48..100 Gy
