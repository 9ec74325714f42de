"""Read stored DICOM back into arrays: the CT volume in HU and the structure set's contours."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset

from rtexport.model.course import Contour, Course
from rtexport.workspace.store import BlobStore


def read_dataset(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def load_hu(store: BlobStore, course: Course) -> npt.NDArray[np.float32]:
    """The CT in HU, shape (slices, rows, columns), slices by ascending z."""
    ct = course.ct
    volume = np.empty((len(course.slices), ct.rows, ct.columns), dtype=np.float32)
    for k, s in enumerate(course.slices):
        ds = pydicom.dcmread(store.path(s.sha256))
        slope = float(ds.get("RescaleSlope", 1.0))
        intercept = float(ds.get("RescaleIntercept", 0.0))
        volume[k] = ds.pixel_array.astype(np.float32) * slope + intercept
    return volume


def contours_by_name(ds: Dataset) -> dict[str, list[Contour]]:
    """Contours of every ROI of an RT Structure Set, by ROI name."""
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.get("StructureSetROISequence", [])}
    out: dict[str, list[Contour]] = {name: [] for name in names.values()}
    for rc in ds.get("ROIContourSequence", []):
        name = names.get(int(rc.ReferencedROINumber))
        if name is None:
            continue
        for c in rc.get("ContourSequence", []):
            data: Sequence[float] = c.get("ContourData", [])
            if not data:
                continue
            pts = np.asarray([float(v) for v in data], dtype=np.float64).reshape(-1, 3)
            out[name].append(Contour(pts, str(c.get("ContourGeometricType", "CLOSED_PLANAR"))))
    return out
