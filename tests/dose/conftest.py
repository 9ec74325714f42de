"""Shared fixtures: the demo site, a small phantom as CTVolume + contours, water media."""

from __future__ import annotations

import numpy as np
import pytest

from rtexport.demo.beamdata import demo_site
from rtexport.demo.phantom import PhantomSpec, ct_uids, hu_slice, rtstruct_dataset
from rtexport.dose import CTVolume
from rtexport.model.course import Contour, CTGeometry
from rtexport.model.site import Site

SMALL = PhantomSpec(rows=128, columns=128, pixel_mm=3.0, slices=24, slice_mm=4.0, seed="dose-test")


@pytest.fixture(scope="session")
def site() -> Site:
    return Site.model_validate(demo_site())


def phantom_volume(spec: PhantomSpec) -> tuple[CTVolume, dict[str, list[Contour]]]:
    series, frame, _ = ct_uids(spec)
    zs = tuple(spec.z(k) for k in range(spec.slices))
    geom = CTGeometry(
        frame_of_reference_uid=frame,
        series_instance_uid=series,
        origin_mm=spec.origin_mm,
        pixel_spacing_mm=(spec.pixel_mm, spec.pixel_mm),
        rows=spec.rows,
        columns=spec.columns,
        slice_z_mm=zs,
    )
    hu = np.stack([hu_slice(spec, z) for z in zs]).astype(np.float32)
    rs = rtstruct_dataset(spec)
    names = {roi.ROINumber: roi.ROIName for roi in rs.StructureSetROISequence}
    contours: dict[str, list[Contour]] = {}
    for rc in rs.ROIContourSequence:
        items = contours.setdefault(names[rc.ReferencedROINumber], [])
        for c in rc.ContourSequence:
            pts = np.asarray([float(v) for v in c.ContourData]).reshape(-1, 3)
            items.append(Contour(points_mm=pts, geometric_type=c.ContourGeometricType))
    return CTVolume(geom, hu), contours


@pytest.fixture(scope="session")
def phantom() -> tuple[CTVolume, dict[str, list[Contour]]]:
    return phantom_volume(SMALL)
