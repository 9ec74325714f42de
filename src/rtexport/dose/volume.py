"""The CT as the dose engine sees it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rtexport.errors import DoseError
from rtexport.model.course import CTGeometry


@dataclass(frozen=True)
class CTVolume:
    """HU on the CT grid: ``hu`` is [slice, row, column], slices sorted by z ascending."""

    geometry: CTGeometry
    hu: npt.NDArray[np.float32] | npt.NDArray[np.int16]

    def __post_init__(self) -> None:
        g = self.geometry
        expected = (len(g.slice_z_mm), g.rows, g.columns)
        if self.hu.shape != expected:
            raise DoseError(f"CT volume has shape {self.hu.shape}, its geometry needs {expected}")
        if len(g.slice_z_mm) > 1 and np.any(np.diff(g.slice_z_mm) <= 0):
            raise DoseError("CT slices must be sorted by z ascending, without duplicates")
