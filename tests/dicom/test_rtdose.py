"""RT Dose: 16-bit quantization from a scaling chosen first, PLAN and BEAM references, geometry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pydicom.dataset import Dataset

from rtexport.dicom.common import BuildContext, ds_value
from rtexport.dicom.rtdose import build_rtdose, dose_grid_scaling, quantize
from rtexport.errors import BuildError
from rtexport.model.course import Course
from rtexport.model.dose import DoseGrid

from .conftest import SERIES, Exported


def pixels(rd: Dataset) -> np.ndarray:
    return np.frombuffer(rd.PixelData, dtype="<u2").reshape(int(rd.NumberOfFrames), rd.Rows, rd.Columns)


def dose_gy(rd: Dataset) -> np.ndarray:
    return pixels(rd).astype(np.float64) * float(rd.DoseGridScaling)


@pytest.mark.parametrize("max_gy", [1e-4, 0.0123, 1.0, 65.535, 73.81234567891, 1234.5])
def test_scaling_fits_in_16_chars_and_16_bits(max_gy: float) -> None:
    scaling = dose_grid_scaling(max_gy)
    assert len(str(ds_value(scaling))) <= 16
    assert float(str(ds_value(scaling))) == scaling  # quantized with exactly what a reader sees
    assert max_gy / scaling <= 65535.0 + 1e-9
    assert max_gy / scaling > 65535.0 * (1 - 1e-6)  # no resolution thrown away


def test_quantization_rounds_and_clips_never_wraps() -> None:
    q = quantize(np.array([-1.0, 0.24, 0.26, 1e9]), 0.5)
    assert q.tolist() == [0, 0, 1, 65535]


def test_pixels_reproduce_the_dose_within_half_a_step(exported: Exported) -> None:
    for name, rd in exported.rd_beams.items():
        scaling = float(rd.DoseGridScaling)
        np.testing.assert_allclose(dose_gy(rd), exported.doses[name].gy, atol=scaling / 2 + 1e-9)
        assert pixels(rd).max() <= 65535
        assert (rd.BitsAllocated, rd.BitsStored, rd.HighBit, rd.PixelRepresentation) == (16, 16, 15, 0)


def test_beam_doses_add_up_to_the_plan_dose(exported: Exported) -> None:
    total = sum(dose_gy(rd) for rd in exported.rd_beams.values())
    tolerance = (
        float(exported.rd_plan.DoseGridScaling) + sum(float(rd.DoseGridScaling) for rd in exported.rd_beams.values())
    ) / 2
    assert np.abs(total - dose_gy(exported.rd_plan)).max() <= tolerance + 1e-9


def test_plan_dose_references_the_plan_without_fraction_group(exported: Exported) -> None:
    rd = exported.rd_plan
    assert rd.DoseSummationType == "PLAN"
    ref = rd.ReferencedRTPlanSequence[0]
    assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (
        exported.rp.SOPClassUID,
        exported.rp.SOPInstanceUID,
    )
    assert "ReferencedFractionGroupSequence" not in ref


def test_beam_dose_references_its_beam(exported: Exported) -> None:
    numbers = {b.BeamName: b.BeamNumber for b in exported.rp.BeamSequence}
    for name, rd in exported.rd_beams.items():
        assert rd.DoseSummationType == "BEAM"
        ref = rd.ReferencedRTPlanSequence[0]
        assert ref.ReferencedSOPInstanceUID == exported.rp.SOPInstanceUID
        group = ref.ReferencedFractionGroupSequence[0]
        assert group.ReferencedFractionGroupNumber == exported.rp.FractionGroupSequence[0].FractionGroupNumber
        assert [b.ReferencedBeamNumber for b in group.ReferencedBeamSequence] == [numbers[name]]
    assert len({rd.SOPInstanceUID for rd in [exported.rd_plan, *exported.rd_beams.values()]}) == 3


def test_dose_attributes_and_geometry(exported: Exported, course: Course) -> None:
    rd = exported.rd_plan
    geometry = exported.doses["AP"].geometry
    assert (rd.DoseUnits, rd.DoseType) == ("GY", "PHYSICAL")
    assert list(rd.TissueHeterogeneityCorrection) == ["IMAGE", "ROI_OVERRIDE"]
    assert rd.FrameOfReferenceUID == course.ct.frame_of_reference_uid
    assert [float(v) for v in rd.ImagePositionPatient] == list(geometry.origin_mm)
    assert [float(v) for v in rd.PixelSpacing] == [geometry.spacing_mm[1], geometry.spacing_mm[0]]
    assert (int(rd.NumberOfFrames), rd.Rows, rd.Columns) == geometry.shape
    offsets = [float(v) for v in rd.GridFrameOffsetVector]
    assert offsets == [5.0 * k for k in range(geometry.shape[0])]
    assert rd.FrameIncrementPointer == 0x3004000C


def test_a_dose_on_another_frame_is_refused(ctx: BuildContext, course: Course, exported: Exported) -> None:
    grid = dataclasses.replace(exported.doses["AP"], frame_of_reference_uid="2.25.42")
    with pytest.raises(BuildError, match="not the CT's"):
        build_rtdose(ctx, course, grid, exported.rp, None, series_number=SERIES["RD"])


def test_a_beam_not_in_the_plan_is_refused(ctx: BuildContext, course: Course, exported: Exported) -> None:
    with pytest.raises(BuildError, match="beam 'PA' is not in the exported RT Plan"):
        build_rtdose(ctx, course, exported.doses["AP"], exported.rp, "PA", series_number=SERIES["RD"])


def test_a_non_finite_dose_is_refused(ctx: BuildContext, course: Course, exported: Exported) -> None:
    grid = exported.doses["AP"]
    gy = grid.gy.copy()
    gy[0, 0, 0] = np.nan
    bad = DoseGrid(grid.geometry, gy, grid.frame_of_reference_uid)
    with pytest.raises(BuildError, match="non-finite"):
        build_rtdose(ctx, course, bad, exported.rp, None, series_number=SERIES["RD"])
