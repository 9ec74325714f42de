"""The longest names a plan and a structure set may have, in Latin-1, Greek and CJK: every object stays valid, every
name rtexport builds from them fits its VR in characters and in bytes, and each object is written in the smallest
character set that holds its text."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from rtexport.demo.phantom import rtstruct_dataset
from rtexport.dicom.common import encode
from rtexport.dicom.contours import contours_by_name
from rtexport.geometry.setup import aim_plan
from rtexport.model.course import Course
from rtexport.model.plan import Plan, parse_plan
from rtexport.model.site import Site
from rtexport.model.text import max_length
from tests.support.dciodvfy import assert_valid

from .conftest import PLAN_TOML, SPEC, Exported, export_all, make_context

LETTERS = {"latin-1": "ÄöüßéèàçñøåæÉÀÇ", "greek": "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠ", "cjk": "乳房左胸壁電子線照射計画放射線治"}
IMPORTED_CHARSET = {"latin-1": "ISO_IR 100", "greek": "ISO_IR 126", "cjk": "ISO_IR 192"}
WRITTEN_CHARSET = {"latin-1": "ISO_IR 100", "greek": "ISO_IR 126", "cjk": "ISO_IR 192"}
PLAN_ID = "P" + "1234567890" * 6 + "abc"  # 64: the longest plan id (letters, digits, . _ -)


def longest(script: str, n: int, shift: int = 0) -> str:
    letters = LETTERS[script][shift:] + LETTERS[script][:shift]
    return (letters * (n // len(letters) + 1))[:n]


def names(script: str) -> dict[str, str]:
    return {
        "label": longest(script, 16),
        "AP": longest(script, 16, 1),
        "LAO": longest(script, 15, 2) + "2",
        "Lung": longest(script, 64, 3),
    }


def longest_plan(script: str) -> Plan:
    n = names(script)
    text = (
        PLAN_TOML.replace('id = "P1"', f'id = "{PLAN_ID}"')
        .replace('label = "Chestwall"', f'label = "{n["label"]}"')
        .replace('name = "AP"', f'name = "{n["AP"]}"')
        .replace('name = "LAO"', f'name = "{n["LAO"]}"')
        .replace('structure = "Lung"', f'structure = "{n["Lung"]}"')
    )
    return parse_plan(text)


def imported(script: str) -> Dataset:
    """The phantom's structure set as a clinic of that script would send it: its character set, a long name."""
    ds = rtstruct_dataset(SPEC)
    ds.SpecificCharacterSet = IMPORTED_CHARSET[script]
    next(r for r in ds.StructureSetROISequence if r.ROIName == "Lung").ROIName = names(script)["Lung"]
    return ds


def build(script: str, course: Course, site: Site) -> Exported:
    plan, original = longest_plan(script), imported(script)
    aimed = aim_plan(plan, site, course.ct, contours_by_name(original))
    ctx = make_context([PLAN_ID, "rev-1", "APPROVED"])
    return export_all(ctx, course, plan, site, aimed, original=original)


def generated(exported: Exported) -> list[tuple[str, str, str]]:
    """(keyword, VR, value) of every name rtexport builds rather than copies."""
    out = [(k, "LO", str(ds.get(k))) for ds in exported.all() for k in ("SeriesDescription",)]
    out += [("DoseComment", "LO", str(rd.DoseComment)) for rd in (exported.rd_plan, *exported.rd_beams.values())]
    rs = exported.rs
    out += [
        ("StructureSetLabel", "SH", str(rs.StructureSetLabel)),
        ("StructureSetName", "LO", str(rs.StructureSetName)),
    ]
    bolus = [r for r in rs.StructureSetROISequence if str(r.ROIName).startswith("Bolus_")]
    out += [("ROIName", "LO", str(r.ROIName)) for r in bolus]
    numbers = {int(r.ROINumber) for r in bolus}
    out += [
        ("ROIObservationLabel", "SH", str(o.ROIObservationLabel))
        for o in rs.RTROIObservationsSequence
        if int(o.ReferencedROINumber) in numbers
    ]
    return out


@pytest.mark.integration
@pytest.mark.parametrize("script", LETTERS)
def test_the_longest_names_give_valid_objects(script: str, course: Course, site: Site, tmp_path: Path) -> None:
    exported = build(script, course, site)
    for ds in exported.all():
        assert ds.SpecificCharacterSet == WRITTEN_CHARSET[script], ds.Modality
        report = assert_valid(encode(ds))  # and again under tmp_path below, as every test's files are
        lengths = [line for line in report.ignored if "Length invalid" in line]
        if script != "cjk":  # one byte per character: byte-counting readers agree
            assert lengths == [], ds.Modality
        else:  # UTF-8: only the user's own text, verbatim, is longer in bytes than PS3.5's count in characters
            assert {line.split(") ")[1].split(" ")[0] for line in lengths} <= {"SH", "LO"}
            assert all("RT Plan Label" in line or "ROI Name" in line for line in lengths), lengths
        (tmp_path / f"{ds.Modality}.{ds.SOPInstanceUID}.dcm").write_bytes(encode(ds))
    n = names(script)
    assert (exported.rp.RTPlanLabel, exported.rp.RTPlanName) == (n["label"], PLAN_ID)
    assert [b.BeamName for b in exported.rp.BeamSequence] == [n["AP"], n["LAO"]]
    assert n["Lung"] in {r.ROIName for r in exported.rs.StructureSetROISequence}


@pytest.mark.parametrize("script", LETTERS)
def test_every_name_rtexport_builds_fits_in_characters_and_bytes(script: str, course: Course, site: Site) -> None:
    exported = build(script, course, site)
    built = generated(exported)
    assert {k for k, _, _ in built} == {
        "SeriesDescription",
        "DoseComment",
        "StructureSetLabel",
        "StructureSetName",
        "ROIName",
        "ROIObservationLabel",
    }
    too_long = [(k, v) for k, vr, v in built if len(v) > max_length(vr) or len(v.encode("utf-8")) > max_length(vr)]
    assert too_long == []
    n = names(script)
    # what identifies each: the beam of a beam dose, whole; the plan's label, as much of it as fits
    for beam, rd in exported.rd_beams.items():
        assert rd.SeriesDescription == rd.DoseComment and rd.SeriesDescription.endswith(f" beam {beam}")
        assert rd.SeriesDescription.startswith(n["label"][:3])
    assert exported.rs.StructureSetLabel.endswith(" derived")
