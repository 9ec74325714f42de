"""Read stored DICOM back: the CT volume in HU and the structure set's contours."""

from __future__ import annotations

import io
from collections.abc import Collection

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset

from rtexport.dicom.contours import contours_by_name
from rtexport.geometry.axial import AxialOrientation
from rtexport.model.course import Contour, Course
from rtexport.workspace.store import BlobStore
from rtexport.workspace.workspace import Workspace


def read_dataset(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def course_contours(ws: Workspace, course: Course, names: Collection[str] | None = None) -> dict[str, list[Contour]]:
    """Contours of the course's structures (all, or those named), by name, from the stored structure set."""
    return contours_by_name(read_dataset(ws.blobs.verified(course.structure_set.sha256)), names)


def load_hu(store: BlobStore, course: Course) -> npt.NDArray[np.float32]:
    """The CT in HU on the canonical grid ``course.ct`` describes: [slice by ascending z, y, x], x increasing
    along columns and y along rows, whatever the stored images' orientation (the files stay as imported)."""
    ct = course.ct
    orientation = AxialOrientation.parse(ct.image_orientation)
    volume = np.empty((len(course.slices), ct.rows, ct.columns), dtype=np.float32)
    for k, s in enumerate(course.slices):
        ds = pydicom.dcmread(io.BytesIO(store.verified(s.sha256)))
        slope = float(ds.get("RescaleSlope", 1.0))
        intercept = float(ds.get("RescaleIntercept", 0.0))
        volume[k] = orientation.canonical_pixels(ds.pixel_array).astype(np.float32) * slope + intercept
    return volume


__all__ = ["contours_by_name", "course_contours", "load_hu", "read_dataset"]
