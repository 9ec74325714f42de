"""Derived RT Structure Set: only overrides, boli, the External and the identity change."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from rtexport.demo.phantom import rtstruct_dataset
from rtexport.dicom.common import BuildContext, encode
from rtexport.dicom.rtstruct import bolus_roi_numbers, build_rtstruct, needs_derived_structure_set
from rtexport.errors import BuildError
from rtexport.model.course import Contour, Course
from rtexport.model.plan import Plan, parse_plan
from rtexport.model.site import Site

from .conftest import PLAN_TOML, SERIES, SPEC, square_bolus


def diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths at which two datasets differ, element by element, into sequences."""
    if isinstance(a, Dataset) and isinstance(b, Dataset):
        out = []
        for tag in sorted(set(a.keys()) | set(b.keys())):
            ea, eb = a.get(tag), b.get(tag)
            name = (ea or eb).keyword
            where = f"{path}.{name}" if path else name
            if ea is None or eb is None:
                out.append(where + (" added" if ea is None else " removed"))
            elif ea.VR == "SQ":
                for i in range(max(len(ea.value), len(eb.value))):
                    if i >= len(ea.value):
                        out.append(f"{where}[{i}] added")
                    elif i >= len(eb.value):
                        out.append(f"{where}[{i}] removed")
                    else:
                        out.extend(diff(ea.value[i], eb.value[i], f"{where}[{i}]"))
            elif ea.value != eb.value or ea.VR != eb.VR:
                out.append(where)
        return out
    raise TypeError("datasets expected")


def roi_index(ds: Dataset, name: str) -> int:
    return next(i for i, r in enumerate(ds.StructureSetROISequence) if r.ROIName == name)


def observation(ds: Dataset, name: str) -> Dataset:
    number = next(r.ROINumber for r in ds.StructureSetROISequence if r.ROIName == name)
    found: Dataset = next(o for o in ds.RTROIObservationsSequence if o.ReferencedROINumber == number)
    return found


def test_only_the_intended_elements_change(
    ctx: BuildContext, original: Dataset, plan: Plan, site: Site, bolus: dict[str, list[Contour]], course: Course
) -> None:
    rs = build_rtstruct(ctx, original, plan, site, bolus, slices=course.slices, series_number=SERIES["RS"])
    obs = {n: f"RTROIObservationsSequence[{roi_index(original, n)}]" for n in ("BODY", "OUTLINE2", "Lung")}
    prosthesis = f"RTROIObservationsSequence[{roi_index(original, 'Prosthesis')}]"
    new = len(original.StructureSetROISequence)
    assert sorted(diff(original, rs)) == sorted(
        [
            "SOPInstanceUID",
            "SeriesInstanceUID",
            "SeriesNumber",  # a series of its own, saying it is derived
            "SeriesDescription added",
            "StructureSetLabel",
            "StructureSetName added",
            "StructureSetDate",
            "StructureSetTime",
            "InstanceCreationDate added",  # made now, in the site's time zone
            "InstanceCreationTime added",
            "SeriesDate added",
            "SeriesTime added",
            "TimezoneOffsetFromUTC added",
            "Manufacturer",
            "SoftwareVersions added",
            "StationName added",
            "PredecessorStructureSetSequence added",
            f"{obs['BODY']}.RTROIInterpretedType",
            f"{obs['OUTLINE2']}.RTROIInterpretedType",
            f"{obs['Lung']}.MaterialID added",
            f"{obs['Lung']}.ROIPhysicalPropertiesSequence added",
            f"{prosthesis}.MaterialID added",
            f"{prosthesis}.ROIPhysicalPropertiesSequence added",
            f"StructureSetROISequence[{new}] added",
            f"ROIContourSequence[{new}] added",
            f"RTROIObservationsSequence[{new}] added",
        ]
    )
    assert rs.StudyInstanceUID == original.StudyInstanceUID
    assert rs.FrameOfReferenceUID == original.FrameOfReferenceUID
    assert rs.PredecessorStructureSetSequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID
    assert rs.file_meta.MediaStorageSOPInstanceUID == rs.SOPInstanceUID
    assert diff(original, rtstruct_dataset(SPEC)) == []  # the input is left alone


def test_the_chosen_structure_is_the_only_external(
    ctx: BuildContext, original: Dataset, plan: Plan, site: Site, bolus: dict[str, list[Contour]]
) -> None:
    rs = build_rtstruct(ctx, original, plan, site, bolus, series_number=SERIES["RS"])
    types = {r.ROIName: observation(rs, r.ROIName).RTROIInterpretedType for r in rs.StructureSetROISequence}
    assert [n for n, t in types.items() if t == "EXTERNAL"] == ["OUTLINE2"]
    assert types["BODY"] == ""


def test_overridden_structures_carry_material_and_densities(
    ctx: BuildContext, original: Dataset, plan: Plan, site: Site, bolus: dict[str, list[Contour]]
) -> None:
    rs = build_rtstruct(ctx, original, plan, site, bolus, series_number=SERIES["RS"])
    bone = observation(rs, "Prosthesis")
    assert bone.MaterialID == "CompactBone"
    props = {p.ROIPhysicalProperty: float(p.ROIPhysicalPropertyValue) for p in bone.ROIPhysicalPropertiesSequence}
    assert props == {"REL_MASS_DENSITY": 1.85, "REL_ELEC_DENSITY": 1.65}
    assert "MaterialID" not in observation(rs, "PTV")


def test_each_bolus_is_a_bolus_roi_on_the_ct_slices(
    ctx: BuildContext, original: Dataset, plan: Plan, site: Site, bolus: dict[str, list[Contour]], course: Course
) -> None:
    rs = build_rtstruct(ctx, original, plan, site, bolus, slices=course.slices, series_number=SERIES["RS"])
    numbers = bolus_roi_numbers(rs)
    assert list(numbers) == ["AP"]
    roi = next(r for r in rs.StructureSetROISequence if r.ROINumber == numbers["AP"])
    assert roi.ROIName == "Bolus_AP"
    assert roi.ReferencedFrameOfReferenceUID == course.ct.frame_of_reference_uid
    obs = observation(rs, "Bolus_AP")
    assert (obs.RTROIInterpretedType, obs.MaterialID) == ("BOLUS", "Superflab")
    contours = next(c for c in rs.ROIContourSequence if c.ReferencedROINumber == numbers["AP"]).ContourSequence
    assert len(contours) == len(bolus["AP"])
    by_z = {s.z_mm: s.sop_instance_uid for s in course.slices}
    for item, contour in zip(contours, bolus["AP"], strict=True):
        assert item.ContourGeometricType == "CLOSED_PLANAR"
        points = np.array(item.ContourData, dtype=float).reshape(-1, 3)
        np.testing.assert_allclose(points, contour.points_mm)
        assert item.ContourImageSequence[0].ReferencedSOPInstanceUID == by_z[float(points[0, 2])]


def test_bolus_contours_read_back_from_the_written_file_as_given(
    ctx: BuildContext, original: Dataset, plan: Plan, site: Site, bolus: dict[str, list[Contour]], course: Course
) -> None:
    """The file a reader opens holds each point to Decimal String precision, however the points were written."""
    shifted = {"AP": [Contour(c.points_mm + np.array([0.0, 1 / 3, 0.0])) for c in bolus["AP"]]}  # 16 characters
    for given in (bolus, shifted):
        rs = build_rtstruct(ctx, original, plan, site, given, slices=course.slices, series_number=SERIES["RS"])
        back = dcmread(BytesIO(encode(rs)))
        number = bolus_roi_numbers(back)["AP"]
        contours = next(c for c in back.ROIContourSequence if c.ReferencedROINumber == number).ContourSequence
        for item, contour in zip(contours, given["AP"], strict=True):
            points = np.array(item.ContourData, dtype=float).reshape(-1, 3)
            assert int(item.NumberOfContourPoints) == len(points)
            np.testing.assert_allclose(points, contour.points_mm, rtol=1e-12, atol=1e-9)


def test_slice_planes_learnt_from_the_imported_contours_match_the_course(
    ctx: BuildContext, original: Dataset, plan: Plan, site: Site, bolus: dict[str, list[Contour]], course: Course
) -> None:
    with_slices = build_rtstruct(ctx, original, plan, site, bolus, slices=course.slices, series_number=SERIES["RS"])
    assert diff(with_slices, build_rtstruct(ctx, original, plan, site, bolus, series_number=SERIES["RS"])) == []


def test_degenerate_bolus_contours_are_never_two_point_closed(
    ctx: BuildContext, original: Dataset, plan: Plan, site: Site, course: Course
) -> None:
    z = course.ct.slice_z_mm[5]
    contours = [Contour(np.array([[0.0, -100.0, z]])), Contour(np.array([[0.0, -100.0, z], [5.0, -100.0, z]]))]
    rs = build_rtstruct(ctx, original, plan, site, {"AP": contours}, series_number=SERIES["RS"])
    items = rs.ROIContourSequence[-1].ContourSequence
    assert [c.ContourGeometricType for c in items] == ["POINT", "OPEN_PLANAR"]


def test_a_bolus_roi_name_does_not_clash(
    ctx: BuildContext, original: Dataset, plan: Plan, site: Site, bolus: dict[str, list[Contour]]
) -> None:
    original.StructureSetROISequence[2].ROIName = "Bolus_AP"  # the PTV renamed, as a user might
    rs = build_rtstruct(ctx, original, plan, site, bolus, series_number=SERIES["RS"])
    names = [r.ROIName for r in rs.StructureSetROISequence]
    assert len(set(names)) == len(names)
    assert bolus_roi_numbers(rs) == {"AP": rs.StructureSetROISequence[-1].ROINumber}


def test_a_bolus_off_the_slice_planes_is_refused(
    ctx: BuildContext, original: Dataset, plan: Plan, site: Site, course: Course
) -> None:
    off = square_bolus(course, 0.0, -105.0, 20.0, (-30.0, 30.0))[0]
    moved = Contour(off.points_mm + np.array([0.0, 0.0, 1.0]))
    with pytest.raises(BuildError, match="no CT slice at z"):
        build_rtstruct(ctx, original, plan, site, {"AP": [moved]}, slices=course.slices, series_number=SERIES["RS"])


def test_a_missing_bolus_is_refused(ctx: BuildContext, original: Dataset, plan: Plan, site: Site) -> None:
    with pytest.raises(BuildError, match="has a bolus but no bolus contours"):
        build_rtstruct(ctx, original, plan, site, {}, series_number=SERIES["RS"])


def test_an_unknown_override_structure_is_refused(
    ctx: BuildContext, original: Dataset, site: Site, bolus: dict[str, list[Contour]]
) -> None:
    plan = parse_plan(PLAN_TOML.replace('structure = "Lung"', 'structure = "Liver"'))
    with pytest.raises(BuildError, match="no structure 'Liver'"):
        build_rtstruct(ctx, original, plan, site, bolus, series_number=SERIES["RS"])


def test_a_structure_set_without_frame_of_reference_is_refused(
    ctx: BuildContext, original: Dataset, plan: Plan, site: Site, bolus: dict[str, list[Contour]]
) -> None:
    del original.FrameOfReferenceUID
    del original.ReferencedFrameOfReferenceSequence
    with pytest.raises(BuildError, match="no single Frame of Reference"):
        build_rtstruct(ctx, original, plan, site, bolus, series_number=SERIES["RS"])


def _plain(toml: str) -> str:
    cut = toml.index("[[override]]")
    beams = toml.index("[[beam]]")
    text = toml[:cut] + toml[beams:]
    return text.replace('external = "OUTLINE2"', 'external = "BODY"').replace(
        'bolus = { thickness_mm = 5.0, margin_mm = 10.0, material = "Superflab" }', ""
    )


def test_an_unchanged_structure_set_needs_no_derived_copy(original: Dataset) -> None:
    assert not needs_derived_structure_set(original, parse_plan(_plain(PLAN_TOML)), {})


@pytest.mark.parametrize(
    "change",
    [
        ('external = "BODY"', 'external = "OUTLINE2"'),
        ("[[beam]]", '[[override]]\nstructure = "Bone"\nmaterial = "Water"\n\n[[beam]]'),
    ],
)
def test_a_changed_external_or_an_override_needs_a_derived_copy(original: Dataset, change: tuple[str, str]) -> None:
    text = _plain(PLAN_TOML).replace(*change, 1)
    assert needs_derived_structure_set(original, parse_plan(text), {})


def test_a_bolus_needs_a_derived_copy(original: Dataset, bolus: dict[str, list[Contour]]) -> None:
    assert needs_derived_structure_set(original, parse_plan(_plain(PLAN_TOML)), bolus)
