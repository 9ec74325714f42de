"""RT Structure Set (PS3.3 A.19): the imported one, plus density overrides, boli and the chosen External.

A derived structure set is a copy of the imported one with new SOP Instance and Series UIDs (Study and Frame
of Reference kept) in which only these change: series number and description, structure set label and name (they
say it is derived), the dates and times of the instance, series and structure set (now, in the site's time zone,
with TimezoneOffsetFromUTC), equipment (this software), the predecessor reference, the observations of overridden
structures, the External, and the new bolus ROIs.
A former EXTERNAL gets an empty RTROIInterpretedType (Type 2: "no interpretation"), so that planning systems
see exactly one External.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.uid import RTStructureSetStorage

from rtexport.dicom.charset import UTF8, apply_character_set
from rtexport.dicom.common import (
    BuildContext,
    check_series_number,
    ds_value,
    file_meta,
    seq,
    sop_reference,
)
from rtexport.dicom.enums import (
    ContourGeometricType,
    ROIGenerationAlgorithm,
    ROIPhysicalProperty,
    RTROIInterpretedType,
)
from rtexport.errors import BuildError
from rtexport.model.course import Contour, CTSlice
from rtexport.model.plan import Plan
from rtexport.model.site import Material, Site
from rtexport.model.text import check_text, fit

BOLUS_PREFIX = "Bolus_"
_BOLUS_DESCRIPTION = "Bolus of beam "  # ROIDescription; lets bolus_roi_numbers find the beam again
_BOLUS_COLOR = [0, 160, 255]
_Z_TOLERANCE_MM = 0.01
_DERIVED = " derived"


def _rois_by_name(ds: Dataset) -> dict[str, int]:
    return {str(item.ROIName): int(item.ROINumber) for item in ds.get("StructureSetROISequence", [])}


def _observation(ds: Dataset, roi_number: int) -> Dataset | None:
    return next((o for o in ds.get("RTROIObservationsSequence", []) if int(o.ReferencedROINumber) == roi_number), None)


def external_roi_numbers(ds: Dataset) -> list[int]:
    """ROI numbers whose RTROIInterpretedType is EXTERNAL."""
    return [
        int(o.ReferencedROINumber)
        for o in ds.get("RTROIObservationsSequence", [])
        if o.get("RTROIInterpretedType", "") == RTROIInterpretedType.EXTERNAL
    ]


def needs_derived_structure_set(original: Dataset, plan: Plan, bolus: Mapping[str, Sequence[Contour]]) -> bool:
    """True when the exported structure set must differ from the imported one: density overrides, boli, or
    an External other than the single imported EXTERNAL."""
    if plan.overrides or any(bolus.values()):
        return True
    external = _rois_by_name(original).get(plan.external)
    return external is None or external_roi_numbers(original) != [external]


def bolus_roi_numbers(ds: Dataset) -> dict[str, int]:
    """Beam name → ROI number of its bolus ROI, in a structure set built by :func:`build_rtstruct`."""
    out: dict[str, int] = {}
    for roi in ds.get("StructureSetROISequence", []):
        description = str(roi.get("ROIDescription", ""))
        obs = _observation(ds, int(roi.ROINumber))
        if (
            description.startswith(_BOLUS_DESCRIPTION)
            and obs is not None
            and obs.get("RTROIInterpretedType", "") == RTROIInterpretedType.BOLUS
        ):
            out[description.removeprefix(_BOLUS_DESCRIPTION)] = int(roi.ROINumber)
    return out


def _material(site: Site, name: str, where: str) -> Material:
    material = site.material(name)
    if material is None:
        raise BuildError(f"{where}: unknown material {name!r}; add it to the site's materials")
    problem = check_text(material.name, "SH")  # MaterialID; site.toml is checked the same way
    if problem:
        raise BuildError(f"{where}: material name {material.name!r} {problem} (MaterialID); rename it in site.toml")
    return material


def _physical_properties(material: Material) -> list[Dataset]:
    props = [(ROIPhysicalProperty.REL_MASS_DENSITY, material.mass_density / 1.0)]  # water: 1.0 g/cm³
    if material.rel_electron_density is not None:
        props.append((ROIPhysicalProperty.REL_ELEC_DENSITY, material.rel_electron_density))
    items = []
    for prop, value in props:
        item = Dataset()
        item.ROIPhysicalProperty = prop.value
        item.ROIPhysicalPropertyValue = ds_value(value)
        items.append(item)
    return items


def _set_material(observation: Dataset, material: Material) -> None:
    observation.MaterialID = material.name
    observation.ROIPhysicalPropertiesSequence = seq(_physical_properties(material))


def _frame_of_reference_uid(ds: Dataset) -> str:
    uid = ds.get("FrameOfReferenceUID")
    if not uid:
        frames = ds.get("ReferencedFrameOfReferenceSequence", [])
        uid = frames[0].get("FrameOfReferenceUID") if len(frames) == 1 else None
    if not uid:
        raise BuildError(
            "the imported RT Structure Set names no single Frame of Reference; re-import a structure set "
            "that references the CT series"
        )
    return str(uid)


def _referenced_images(ds: Dataset) -> dict[str, str]:
    """SOP Instance UID → SOP Class UID of every CT image the structure set references."""
    out: dict[str, str] = {}
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                for image in series.get("ContourImageSequence", []):
                    out[str(image.ReferencedSOPInstanceUID)] = str(image.ReferencedSOPClassUID)
    return out


def _slices_from_contours(ds: Dataset) -> list[tuple[float, str]]:
    """(z, SOP Instance UID) pairs learnt from the imported contours that reference one image each."""
    pairs: dict[str, float] = {}
    for roi in ds.get("ROIContourSequence", []):
        for contour in roi.get("ContourSequence", []):
            images = contour.get("ContourImageSequence", [])
            data = contour.get("ContourData")
            if len(images) == 1 and data is not None and len(data) >= 3:
                pairs[str(images[0].ReferencedSOPInstanceUID)] = float(data[2])
    return [(z, uid) for uid, z in pairs.items()]


def _slice_at(z: float, planes: list[tuple[float, str]], where: str) -> str:
    if planes:
        z_found, uid = min(planes, key=lambda p: abs(p[0] - z))
        if abs(z_found - z) <= _Z_TOLERANCE_MM:
            return uid
    raise BuildError(f"{where}: no CT slice at z = {z:g} mm; bolus contours must lie on CT slice planes")


def _geometric_type(contour: Contour) -> ContourGeometricType:
    n = len(contour.points_mm)
    if n == 1:
        return ContourGeometricType.POINT
    if n == 2:  # never a two-point CLOSED_PLANAR
        return ContourGeometricType.OPEN_PLANAR
    return ContourGeometricType(contour.geometric_type)


def _unique_name(wanted: str, taken: set[str]) -> str:
    """An ROI name (LO) not in ``taken``: ``wanted`` within 64 characters and bytes, else with a suffix _2, _3…"""
    name = fit("LO", wanted)
    k = 2
    while name in taken:
        name = fit("LO", wanted, f"_{k}")
        k += 1
    return name


def add_structure_set_identity(
    ds: Dataset, ctx: BuildContext, original: Dataset, plan: Plan, series_number: int
) -> None:
    """Structure Set Module (PS3.3 C.8.8.5), RT Series and SOP Common: new instance in a series of its own
    (``series_number``), dated now in the site's time zone, a label and name that say it is derived (and from what),
    the predecessor."""
    ds.SOPInstanceUID = ctx.uids.uid("RTSTRUCT")
    ds.InstanceCreationDate = ctx.date
    ds.InstanceCreationTime = ctx.time
    ds.TimezoneOffsetFromUTC = ctx.timezone_offset
    ds.SeriesInstanceUID = ctx.uids.uid("RTSTRUCT", "series")
    ds.SeriesNumber = check_series_number(series_number)
    ds.SeriesDate = ctx.date
    ds.SeriesTime = ctx.time
    ds.SeriesDescription = fit("LO", plan.label, " structures (derived)")
    imported = str(original.get("StructureSetLabel", "")).strip()
    ds.StructureSetLabel = fit("SH", imported, _DERIVED)
    ds.StructureSetName = fit("LO", imported or "structure set", f" derived for plan {plan.label}")
    ds.StructureSetDate = ctx.date
    ds.StructureSetTime = ctx.time
    ds.PredecessorStructureSetSequence = seq([sop_reference(str(original.SOPClassUID), str(original.SOPInstanceUID))])
    ds.file_meta = file_meta(ds)


def add_equipment(ds: Dataset, ctx: BuildContext) -> None:
    """General Equipment Module (PS3.3 C.7.5.1): the derived instance is made by this software."""
    ds.Manufacturer = ctx.manufacturer
    ds.SoftwareVersions = ctx.software_version
    if ctx.station_name:
        ds.StationName = ctx.station_name


def add_density_overrides(ds: Dataset, plan: Plan, site: Site) -> None:
    """RT ROI Observations Module (PS3.3 C.8.8.8): MaterialID and physical properties of overridden ROIs."""
    rois = _rois_by_name(ds)
    for i, override in enumerate(plan.overrides):
        where = f"override[{i}]"
        number = rois.get(override.structure)
        if number is None:
            raise BuildError(f"{where}: no structure {override.structure!r} in the structure set")
        observation = _observation(ds, number)
        if observation is None:
            raise BuildError(f"{where}: structure {override.structure!r} has no RT ROI observation")
        _set_material(observation, _material(site, override.material, where))


def set_external(ds: Dataset, name: str) -> None:
    """RT ROI Observations Module (PS3.3 C.8.8.8): ``name`` becomes the only EXTERNAL."""
    number = _rois_by_name(ds).get(name)
    if number is None:
        raise BuildError(f"external: no structure {name!r} in the structure set")
    observation = _observation(ds, number)
    if observation is None:
        raise BuildError(f"external: structure {name!r} has no RT ROI observation")
    for other in external_roi_numbers(ds):
        if other != number:
            obs = _observation(ds, other)
            if obs is None:
                raise BuildError(f"external: ROI {other} has no RT ROI observation")
            obs.RTROIInterpretedType = RTROIInterpretedType.NONE.value
    if observation.get("RTROIInterpretedType", "") != RTROIInterpretedType.EXTERNAL:
        observation.RTROIInterpretedType = RTROIInterpretedType.EXTERNAL.value


_CONTOUR_DATA = Tag(0x3006, 0x0050)


def _contour_data(points: npt.NDArray[np.float64], memo: dict[tuple[float, bool], str]) -> RawDataElement:
    """ContourData as it is written (explicit VR little endian): each coordinate as :func:`ds_value` writes it,
    each distinct one (its sign included, so -0.0 stays itself) formatted once, joined as the file holds them.
    A traced bolus repeats few coordinates; formatting, and pydicom writing each value, are most of its cost."""
    out = []
    for x in points.ravel().tolist():
        key = (x, math.copysign(1.0, x) < 0)
        value = memo.get(key)
        if value is None:
            value = memo[key] = str(ds_value(x))
        out.append(value)
    raw = "\\".join(out).encode("ascii")
    if len(raw) % 2:
        raw += b" "  # DS values are padded to even length with a space (PS3.5 6.2)
    return RawDataElement(_CONTOUR_DATA, "DS", len(raw), raw, 0, False, True)


def add_bolus_rois(
    ds: Dataset,
    plan: Plan,
    site: Site,
    bolus: Mapping[str, Sequence[Contour]],
    planes: list[tuple[float, str]],
) -> None:
    """Structure Set, ROI Contour and RT ROI Observations Modules (PS3.3 C.8.8.5, .6, .8): one BOLUS ROI per
    beam with a bolus, in plan order."""
    beams = {b.name: b for b in plan.beams}
    unknown = sorted(set(bolus) - set(beams))
    if unknown:
        raise BuildError(f"bolus contours given for beam(s) not in the plan: {', '.join(unknown)}")
    frame = _frame_of_reference_uid(ds)
    images = _referenced_images(ds)
    taken = set(_rois_by_name(ds))
    next_roi = max([int(r.ROINumber) for r in ds.get("StructureSetROISequence", [])], default=0) + 1
    next_obs = max([int(o.ObservationNumber) for o in ds.get("RTROIObservationsSequence", [])], default=0) + 1
    formatted: dict[tuple[float, bool], str] = {}
    for i, beam in enumerate(plan.beams):
        contours = bolus.get(beam.name)
        if beam.bolus is None:
            if contours:
                raise BuildError(f"beam[{i}] {beam.name!r}: bolus contours given but the beam has no bolus")
            continue
        where = f"beam[{i}].bolus"
        if not contours:
            raise BuildError(f"{where}: beam {beam.name!r} has a bolus but no bolus contours were computed")
        material = _material(site, beam.bolus.material, f"{where}.material")
        name = _unique_name(BOLUS_PREFIX + beam.name, taken)
        taken.add(name)

        roi = Dataset()
        roi.ROINumber = next_roi
        roi.ReferencedFrameOfReferenceUID = frame
        roi.ROIName = name
        roi.ROIDescription = _BOLUS_DESCRIPTION + beam.name
        roi.ROIGenerationAlgorithm = ROIGenerationAlgorithm.AUTOMATIC.value
        ds.StructureSetROISequence.append(roi)

        items = []
        for contour in contours:
            points = np.asarray(contour.points_mm, dtype=np.float64)
            if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
                raise BuildError(f"{where}: a contour needs (N, 3) points, got shape {points.shape}")
            z = float(points[0, 2])
            if np.ptp(points[:, 2]) > _Z_TOLERANCE_MM:
                raise BuildError(f"{where}: a bolus contour is not planar in z (starts at z = {z:g} mm)")
            sop = _slice_at(z, planes, where)
            if sop not in images:
                raise BuildError(f"{where}: CT slice {sop} is not referenced by the structure set")
            item = Dataset()
            item.ContourImageSequence = seq([sop_reference(images[sop], sop)])
            item.ContourGeometricType = _geometric_type(contour).value
            item.NumberOfContourPoints = len(points)
            item[_CONTOUR_DATA] = _contour_data(points, formatted)
            # as if read from a file of this encoding: pydicom writes the raw ContourData as it is (the item's
            # other values are ASCII; a character set chosen later decodes the whole data set, this item too)
            item.set_original_encoding(False, True, default_encoding)
            items.append(item)
        roi_contour = Dataset()
        roi_contour.ROIDisplayColor = list(_BOLUS_COLOR)
        roi_contour.ContourSequence = seq(items)
        roi_contour.ReferencedROINumber = next_roi
        ds.ROIContourSequence.append(roi_contour)

        observation = Dataset()
        observation.ObservationNumber = next_obs
        observation.ReferencedROINumber = next_roi
        observation.ROIObservationLabel = fit("SH", name)
        observation.RTROIInterpretedType = RTROIInterpretedType.BOLUS.value
        observation.ROIInterpreter = ""
        _set_material(observation, material)
        ds.RTROIObservationsSequence.append(observation)
        next_roi += 1
        next_obs += 1


def build_rtstruct(
    ctx: BuildContext,
    original: Dataset,
    plan: Plan,
    site: Site,
    bolus: Mapping[str, Sequence[Contour]],
    *,
    series_number: int,
    slices: Sequence[CTSlice] = (),
) -> Dataset:
    """The derived RT Structure Set (PS3.3 A.19) for ``plan``, in a series numbered ``series_number``;
    ``original`` is not modified.

    ``bolus`` maps beam name → closed planar contours (patient mm) on CT slice planes. ``slices`` (the
    course's CT slices) place each bolus contour on its image; without them the planes are learnt from the
    imported contours' image references.
    """
    if original.get("SOPClassUID") != RTStructureSetStorage:
        raise BuildError("the imported structure set is not an RT Structure Set (wrong SOP Class UID)")
    for keyword in ("StructureSetROISequence", "ROIContourSequence", "RTROIObservationsSequence"):
        if keyword not in original:
            raise BuildError(f"the imported RT Structure Set has no {keyword}; re-import a complete one")
    ds = copy.deepcopy(original)
    frame = _frame_of_reference_uid(ds)
    if "FrameOfReferenceUID" not in ds:  # dciodvfy errors without the Frame of Reference module
        ds.FrameOfReferenceUID = frame
        ds.PositionReferenceIndicator = ""
    add_structure_set_identity(ds, ctx, original, plan, series_number)
    add_equipment(ds, ctx)
    add_density_overrides(ds, plan, site)
    set_external(ds, plan.external)
    planes = [(s.z_mm, s.sop_instance_uid) for s in slices] or _slices_from_contours(original)
    add_bolus_rois(ds, plan, site, bolus, planes)
    set_character_set(ds)
    return ds


# Where a derived structure set gets text of ours: (sequence or None for the data set itself, keywords).
_OUR_TEXT = (
    (None, ("Manufacturer", "SoftwareVersions", "StationName")),
    (None, ("SeriesDescription", "StructureSetLabel", "StructureSetName")),
    ("StructureSetROISequence", ("ROIName", "ROIDescription")),
    ("RTROIObservationsSequence", ("ROIObservationLabel", "MaterialID")),
)


def set_character_set(ds: Dataset) -> None:
    """Specific Character Set (PS3.3 C.12.1.1.2): the derived set keeps the imported one's, unless some text of
    ours (a bolus ROI named after a beam, a material, the plan label, this software's equipment) cannot be written
    in it; then the whole data set is written in the character set the RT Plan and RT Dose would choose for its
    text (:mod:`rtexport.dicom.charset`: single-byte when one holds it all, else UTF-8). Only those elements are
    read while the imported set holds them: the imported contours stay as they were read, unparsed."""
    declared = ds.get("SpecificCharacterSet", "") or ""
    terms = list(declared) if isinstance(declared, MultiValue) else [str(declared)]
    if terms == [UTF8]:
        return
    codecs = convert_encodings(terms)
    # One character set, not the default repertoire (ASCII) nor code extensions: test against it; else ASCII.
    single = len(codecs) == 1 and terms[0] not in ("", "ISO_IR 6") and not terms[0].startswith("ISO 2022")

    def fits(value: object) -> bool:
        values = value if isinstance(value, MultiValue) else [value]
        try:
            for v in values:
                str(v).encode(codecs[0] if single else "ascii")
        except (UnicodeEncodeError, LookupError):
            return False
        return True

    for sequence, keywords in _OUR_TEXT:
        items = [ds] if sequence is None else ds.get(sequence, [])
        if not all(fits(item.get(k, "") or "") for item in items for k in keywords):
            ds.decode()  # every value as text, read in the imported character set, then written in the chosen one
            apply_character_set(ds)
            return
