"""Read stored DICOM back into arrays: the CT volume in HU and the structure set's contours."""

from __future__ import annotations

import io
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pydicom.filereader
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from rtexport.model.course import Contour, Course
from rtexport.workspace.store import BlobStore

CONTOUR_DATA = Tag(0x3006, 0x0050)


def read_dataset(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


@dataclass(frozen=True)
class FileIdentity:
    sop_class_uid: str
    sop_instance_uid: str


def read_file_meta(path: Path) -> FileIdentity:
    """SOP Class and Instance UIDs from a Part 10 file's meta header, without reading the data set."""
    meta = pydicom.filereader.read_file_meta_info(path)
    return FileIdentity(str(meta.MediaStorageSOPClassUID), str(meta.MediaStorageSOPInstanceUID))


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


def _contour_points(item: Dataset) -> npt.NDArray[np.float64]:
    """ContourData as (N, 3) floats, parsed from the raw bytes when still raw (pydicom's DS objects are slow)."""
    elem = item.get_item(CONTOUR_DATA)
    if elem is None:
        return np.empty((0, 3))
    value = elem.value
    if isinstance(value, bytes):
        text = value.decode("ascii").strip(" \x00")
        flat = np.array(text.split("\\"), dtype=np.float64) if text else np.empty(0)
    else:
        flat = np.asarray([float(v) for v in (value if isinstance(value, Sequence) else [value])], dtype=np.float64)
    return flat.reshape(-1, 3)


def contours_by_name(ds: Dataset, names: Collection[str] | None = None) -> dict[str, list[Contour]]:
    """Contours of the RT Structure Set's ROIs (all, or those in ``names``), by ROI name."""
    numbers = {int(r.ROINumber): str(r.ROIName) for r in ds.get("StructureSetROISequence", [])}
    wanted = {n: name for n, name in numbers.items() if names is None or name in names}
    out: dict[str, list[Contour]] = {name: [] for name in wanted.values()}
    for rc in ds.get("ROIContourSequence", []):
        name = wanted.get(int(rc.ReferencedROINumber))
        if name is None:
            continue
        for c in rc.get("ContourSequence", []):
            pts = _contour_points(c)
            if len(pts):
                out[name].append(Contour(pts, str(c.get("ContourGeometricType", "CLOSED_PLANAR"))))
    return out
