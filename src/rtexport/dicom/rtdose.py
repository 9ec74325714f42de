"""RT Dose (PS3.3 A.18): a plan dose or a beam dose, 16-bit unsigned with a DoseGridScaling chosen first."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import RTDoseStorage

from rtexport.dicom.charset import apply_character_set
from rtexport.dicom.common import (
    BuildContext,
    add_frame_of_reference_module,
    add_general_equipment_module,
    add_general_study_module,
    add_patient_module,
    add_rt_series_module,
    add_sop_common_module,
    ds_value,
    ds_values,
    seq,
    sop_reference,
)
from rtexport.dicom.enums import (
    DoseSummationType,
    DoseType,
    DoseUnits,
    Modality,
    TissueHeterogeneityCorrection,
)
from rtexport.errors import BuildError
from rtexport.model.course import Course
from rtexport.model.dose import DoseGrid
from rtexport.model.text import fit

MAX_PIXEL = 65535
_SIGNIFICANT_DIGITS = 8  # "1.2345678e-05" is 13 characters: well within DS's 16


def dose_grid_scaling(max_gy: float) -> float:
    """The smallest scaling with 8 significant digits such that ``max_gy`` fits in 16 bits."""
    if not math.isfinite(max_gy):
        raise BuildError("the dose grid contains non-finite values; recompute the dose")
    if max_gy <= 0.0:
        return 1.0
    raw = max_gy / MAX_PIXEL
    step = 10.0 ** (math.floor(math.log10(raw)) - (_SIGNIFICANT_DIGITS - 1))
    scaling = math.ceil(raw / step) * step
    # Round-trip through the written text: quantization must use exactly the value a reader sees.
    return float(str(ds_value(scaling)))


def quantize(gy: npt.NDArray[np.floating], scaling: float) -> npt.NDArray[np.uint16]:
    """Dose in Gy → pixel values: round, then clip to [0, 65535] (never wrap)."""
    return np.clip(np.rint(np.asarray(gy, dtype=np.float64) / scaling), 0, MAX_PIXEL).astype(np.uint16)


def _beam_number(rtplan: Dataset, beam_name: str) -> int:
    for beam in rtplan.get("BeamSequence", []):
        if beam.get("BeamName") == beam_name:
            return int(beam.BeamNumber)
    raise BuildError(f"beam {beam_name!r} is not in the exported RT Plan; cannot write its beam dose")


def add_image_modules(ds: Dataset, ctx: BuildContext, dose: DoseGrid) -> None:
    """General Image, Image Plane, Multi-frame (PS3.3 C.7.6.1, C.7.6.2, C.7.6.6): axial frames in z order."""
    g = dose.geometry
    (ox, oy, oz), (dx, dy, dz), (nz, ny, nx) = g.origin_mm, g.spacing_mm, g.shape
    if min(dx, dy, dz) <= 0 or min(nx, ny, nz) < 1:
        raise BuildError(f"dose grid has spacing {dose.geometry.spacing_mm} and shape {dose.geometry.shape}")
    ds.ContentDate = ctx.date
    ds.ContentTime = ctx.time
    ds.PixelSpacing = ds_values([dy, dx])  # row spacing, column spacing
    ds.ImageOrientationPatient = ds_values([1, 0, 0, 0, 1, 0])
    ds.ImagePositionPatient = ds_values([ox, oy, oz])
    ds.SliceThickness = ds_value(dz)
    ds.NumberOfFrames = nz
    ds.FrameIncrementPointer = Tag("GridFrameOffsetVector")
    ds.GridFrameOffsetVector = ds_values(dz * k for k in range(nz))  # relative: first 0


def add_image_pixel(ds: Dataset, pixels: npt.NDArray[np.uint16]) -> None:
    """Image Pixel Module (PS3.3 C.7.6.3) as the RT Dose Module restricts it: 16-bit unsigned MONOCHROME2."""
    _, ny, nx = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ny
    ds.Columns = nx
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()


def add_rt_dose_module(ds: Dataset, rtplan: Dataset, beam_number: int | None, scaling: float) -> None:
    """RT Dose Module (PS3.3 C.8.8.3): Gy, physical, PLAN or BEAM, referencing the exported plan."""
    ds.DoseUnits = DoseUnits.GY.value
    ds.DoseType = DoseType.PHYSICAL.value
    ds.DoseSummationType = (DoseSummationType.PLAN if beam_number is None else DoseSummationType.BEAM).value
    ref = sop_reference(str(rtplan.SOPClassUID), str(rtplan.SOPInstanceUID))
    if beam_number is not None:  # for PLAN the fraction group reference must be absent
        groups = rtplan.get("FractionGroupSequence", [])
        if len(groups) != 1:
            raise BuildError("the exported RT Plan needs exactly one fraction group to reference a beam dose")
        beam_ref = Dataset()
        beam_ref.ReferencedBeamNumber = beam_number
        group_ref = Dataset()
        group_ref.ReferencedFractionGroupNumber = int(groups[0].FractionGroupNumber)
        group_ref.ReferencedBeamSequence = seq([beam_ref])
        ref.ReferencedFractionGroupSequence = seq([group_ref])
    ds.ReferencedRTPlanSequence = seq([ref])
    ds.DoseGridScaling = ds_value(scaling)
    ds.TissueHeterogeneityCorrection = [
        TissueHeterogeneityCorrection.IMAGE.value,
        TissueHeterogeneityCorrection.ROI_OVERRIDE.value,
    ]


def build_rtdose(
    ctx: BuildContext,
    course: Course,
    dose: DoseGrid,
    rtplan: Dataset,
    beam_name: str | None,
    *,
    series_number: int,
) -> Dataset:
    """The RT Dose (PS3.3 A.18) of the whole plan (``beam_name`` None) or of one beam, course dose in Gy, in a
    series of its own numbered ``series_number``."""
    frame = course.ct.frame_of_reference_uid
    if dose.frame_of_reference_uid != frame:
        raise BuildError(
            f"the dose grid is on Frame of Reference {dose.frame_of_reference_uid}, not the CT's {frame}; "
            "recompute the dose for this course"
        )
    if rtplan.get("FrameOfReferenceUID", frame) != frame:
        raise BuildError("the RT Plan is not on the CT's Frame of Reference; export the plan of this course")
    if "SOPInstanceUID" not in rtplan:
        raise BuildError("the RT Plan has no SOP Instance UID to reference")
    beam_number = None if beam_name is None else _beam_number(rtplan, beam_name)
    gy = np.asarray(dose.gy, dtype=np.float64)
    scaling = dose_grid_scaling(float(gy.max()) if gy.size else 0.0)
    kind = DoseSummationType.PLAN if beam_name is None else DoseSummationType.BEAM
    parts: tuple[str, ...] = (kind.value,) if beam_name is None else (kind.value, beam_name)

    label = str(rtplan.get("RTPlanLabel", ""))
    # LO: within 64 characters (and bytes), the beam name kept whole
    description = fit("LO", label, " plan dose" if beam_name is None else f" beam {beam_name}")
    ds = Dataset()
    add_sop_common_module(ds, ctx, RTDoseStorage, ctx.uids.uid("RTDOSE", *parts))
    add_patient_module(ds, course.patient)
    add_general_study_module(ds, course.patient)
    add_rt_series_module(ds, ctx, Modality.RTDOSE, series_number, description, beam_name or "")
    add_frame_of_reference_module(ds, frame)
    add_general_equipment_module(ds, ctx)
    add_image_modules(ds, ctx, dose)
    ds.InstanceNumber = 1 + (beam_number or 0)
    add_image_pixel(ds, quantize(gy, scaling))
    add_rt_dose_module(ds, rtplan, beam_number, scaling)
    ds.DoseComment = description
    apply_character_set(ds)
    return ds
