"""Dose grids on the CT's Frame of Reference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class GridGeometry:
    """An axial voxel grid in patient coordinates (mm). ``origin_mm`` is the centre of voxel [0, 0, 0];
    arrays on it are indexed [z, y, x]; ``shape`` is (nz, ny, nx); spacing is (dx, dy, dz)."""

    origin_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]
    shape: tuple[int, int, int]

    def axes(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Coordinates (x, y, z) of voxel centres along each axis."""
        (ox, oy, oz), (dx, dy, dz), (nz, ny, nx) = self.origin_mm, self.spacing_mm, self.shape
        return (
            ox + dx * np.arange(nx, dtype=np.float64),
            oy + dy * np.arange(ny, dtype=np.float64),
            oz + dz * np.arange(nz, dtype=np.float64),
        )


@dataclass(frozen=True)
class DoseGrid:
    """Dose in Gy (whole course) on a grid of the CT's Frame of Reference."""

    geometry: GridGeometry
    gy: npt.NDArray[np.float32]
    frame_of_reference_uid: str

    def __post_init__(self) -> None:
        if self.gy.shape != self.geometry.shape:
            raise ValueError(f"dose array shape {self.gy.shape} does not match grid {self.geometry.shape}")
