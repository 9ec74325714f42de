"""Reading an RT Structure Set's contours into the model (PS3.3 C.8.8.6, ROI Contour Module)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from rtexport.model.course import Contour

CONTOUR_DATA = Tag(0x3006, 0x0050)


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
