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


@dataclass(frozen=True)
class BeamDose:
    """One beam's dose for the whole course, its MU, and where it was normalized."""

    beam_name: str
    mu_per_fraction: float
    dose: DoseGrid
    normalization_point_mm: tuple[float, float, float]
    dose_per_fraction_gy: float  # this beam's dose per fraction at its normalization point
    # The setup the dose was computed with (what a second check needs): source-to-surface distance along the
    # central axis, where the axis enters the patient (or bolus), and the normalization point's depth below it.
    ssd_mm: float | None = None
    surface_entry_mm: tuple[float, float, float] | None = None
    normalization_depth_mm: float | None = None


@dataclass(frozen=True)
class PlanDose:
    """Every beam's dose and their sum (Gy, whole course)."""

    beams: tuple[BeamDose, ...]
    plan: DoseGrid

    def beam(self, name: str) -> BeamDose | None:
        return next((b for b in self.beams if b.beam_name == name), None)
