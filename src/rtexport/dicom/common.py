"""Modules common to every object we build (PS3.3 C.7, C.12) and Part 10 encoding."""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian
from pydicom.valuerep import DSfloat

from rtexport.dicom.enums import Modality
from rtexport.dicom.uids import UIDFactory
from rtexport.errors import BuildError
from rtexport.model.course import PatientStudy

# Fixed, so that the same dataset always encodes to the same bytes.
IMPLEMENTATION_CLASS_UID = UID("2.25.203957446174523183306452151963818093573")
IMPLEMENTATION_VERSION_NAME = "RTEXPORT_1"


@dataclass(frozen=True)
class BuildContext:
    """Everything a builder needs besides the model: UIDs, the frozen clock and the time zone, who we are.

    DICOM dates and times are local (PS3.5 6.2): every date and time an object gets is written in ``zone`` (the
    site's; None: the machine's local zone, DST included) at the offset in force at ``when``, which
    TimezoneOffsetFromUTC (0008,0201) states; one offset for all of an object's dates and times, as the attribute
    applies to all of them."""

    uids: UIDFactory
    when: datetime  # with its time zone (stored times are UTC)
    manufacturer: str
    software_version: str
    station_name: str = ""
    operator: str = ""  # OperatorsName (PN, Family^Given): who made the plan revision; '' when not known
    zone: tzinfo | None = None

    def __post_init__(self) -> None:
        if self.when.tzinfo is None:
            raise BuildError("the build time has no time zone: give it as UTC or with its offset")

    @property
    def offset(self) -> timedelta:
        """The zone's offset from UTC at ``when``."""
        offset = self.when.astimezone(self.zone).utcoffset()
        return timedelta(0) if offset is None else offset

    def local(self, t: datetime) -> datetime:
        """``t`` at this object's offset from UTC."""
        if t.tzinfo is None:
            raise BuildError(f"time {t.isoformat()} has no time zone: give it as UTC or with its offset")
        return t.astimezone(timezone(self.offset))

    @property
    def timezone_offset(self) -> str:
        """TimezoneOffsetFromUTC (0008,0201): ``+HHMM`` or ``-HHMM``."""
        minutes = int(self.offset.total_seconds() // 60)
        hours, rest = divmod(abs(minutes), 60)
        return f"{'-' if minutes < 0 else '+'}{hours:02d}{rest:02d}"

    def date_of(self, t: datetime) -> str:
        return self.local(t).strftime("%Y%m%d")

    def time_of(self, t: datetime) -> str:
        return self.local(t).strftime("%H%M%S")

    @property
    def date(self) -> str:
        return self.date_of(self.when)

    @property
    def time(self) -> str:
        return self.time_of(self.when)


def ds_value(x: float) -> DSfloat:
    """A Decimal String of at most 16 characters."""
    return DSfloat(float(x), auto_format=True)


def ds_values(xs: Iterable[float]) -> list[DSfloat]:
    return [ds_value(x) for x in xs]


def sop_reference(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    """An item of a Referenced SOP sequence."""
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class_uid
    item.ReferencedSOPInstanceUID = sop_instance_uid
    return item


def seq(items: Iterable[Dataset]) -> Sequence:
    return Sequence(list(items))


def add_patient_module(ds: Dataset, patient: PatientStudy) -> None:
    """Patient Module (PS3.3 C.7.1.1), copied from the imported CT."""
    ds.PatientName = patient.patient_name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.patient_birth_date
    ds.PatientSex = patient.patient_sex


def add_general_study_module(ds: Dataset, patient: PatientStudy) -> None:
    """General Study Module (PS3.3 C.7.2.1), copied from the imported CT."""
    if not patient.study_instance_uid:
        raise BuildError("the course has no StudyInstanceUID; re-import the CT series")
    ds.StudyInstanceUID = patient.study_instance_uid
    ds.StudyDate = patient.study_date
    ds.StudyTime = patient.study_time
    ds.ReferringPhysicianName = patient.referring_physician_name
    ds.StudyID = patient.study_id
    ds.AccessionNumber = patient.accession_number
    if patient.study_description:
        ds.StudyDescription = patient.study_description


def add_rt_series_module(
    ds: Dataset, ctx: BuildContext, modality: Modality, series_number: int, description: str = "", part: str = ""
) -> None:
    """RT Series Module (PS3.3 C.8.8.1): a series per object kind in an export state, or per ``part`` of a kind
    (each beam dose is its own series, so that readers never take one for the plan dose). ``series_number`` is
    the one allocated to this object, distinct within the study (:mod:`rtexport.services.lineage`)."""
    ds.Modality = modality.value
    ds.SeriesInstanceUID = ctx.uids.uid(modality.value, "series", *([part] if part else []))
    ds.SeriesNumber = check_series_number(series_number)
    ds.SeriesDate = ctx.date
    ds.SeriesTime = ctx.time
    if description:
        ds.SeriesDescription = description
    ds.OperatorsName = ctx.operator


def check_series_number(number: int) -> int:
    """A Series Number (IS) we may write: 1 to 2^31 - 1."""
    if not 1 <= number <= 2**31 - 1:
        raise BuildError(f"series number {number} is outside 1 to 2147483647")
    return number


def add_frame_of_reference_module(ds: Dataset, frame_of_reference_uid: str) -> None:
    """Frame of Reference Module (PS3.3 C.7.4.1): the CT's frame."""
    if not frame_of_reference_uid:
        raise BuildError("no Frame of Reference UID: the CT series must carry one; re-import it")
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""


def add_general_equipment_module(ds: Dataset, ctx: BuildContext) -> None:
    """General Equipment Module (PS3.3 C.7.5.1): this software."""
    ds.Manufacturer = ctx.manufacturer
    ds.SoftwareVersions = ctx.software_version
    if ctx.station_name:
        ds.StationName = ctx.station_name


def add_sop_common_module(ds: Dataset, ctx: BuildContext, sop_class_uid: str, sop_instance_uid: str) -> None:
    """SOP Common Module (PS3.3 C.12.1), with the file meta that must agree with it. The Specific Character Set
    is declared once the object's text is complete (:func:`rtexport.dicom.charset.apply_character_set`)."""
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceCreationDate = ctx.date
    ds.InstanceCreationTime = ctx.time
    ds.TimezoneOffsetFromUTC = ctx.timezone_offset
    ds.file_meta = file_meta(ds)


def file_meta(ds: Dataset) -> FileMetaDataset:
    """File meta information (PS3.10 7.1) agreeing with ``ds``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def encode(ds: Dataset) -> bytes:
    """Part 10 bytes of ``ds``: explicit VR little endian, file meta agreeing with the dataset.

    ``ds`` is not modified; its own file meta (if any) is replaced in the output.
    """
    if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
        raise BuildError("cannot encode a dataset without SOPClassUID and SOPInstanceUID")
    out = Dataset(ds)  # shallow: shares elements, own file meta
    # ds's own encoding as read: elements read in the encoding written (an imported structure set's contours) are
    # copied as read instead of each parsed and encoded again, exactly as writing ds itself would
    implicit, little = ds.original_encoding
    out.set_original_encoding(implicit, little, ds.original_character_set)
    out.file_meta = file_meta(ds)
    buffer = io.BytesIO()
    dcmwrite(buffer, out, enforce_file_format=True)
    return buffer.getvalue()
