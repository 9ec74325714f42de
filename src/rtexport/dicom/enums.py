"""DICOM defined terms used by the RT builders (PS3.3 C.8.8)."""

from __future__ import annotations

from enum import StrEnum


class Modality(StrEnum):
    """Modality (0008,0060) of the RT objects we build (PS3.3 C.8.8.1)."""

    RTSTRUCT = "RTSTRUCT"
    RTPLAN = "RTPLAN"
    RTDOSE = "RTDOSE"


class RTROIInterpretedType(StrEnum):
    """RT ROI Interpreted Type (3006,00A4), PS3.3 C.8.8.8; the terms this package writes."""

    EXTERNAL = "EXTERNAL"
    BOLUS = "BOLUS"
    NONE = ""  # Type 2 empty: "no interpretation", used for a former EXTERNAL


class ROIPhysicalProperty(StrEnum):
    """ROI Physical Property (3006,00B2), PS3.3 C.8.8.8."""

    REL_MASS_DENSITY = "REL_MASS_DENSITY"  # mass density relative to water
    REL_ELEC_DENSITY = "REL_ELEC_DENSITY"  # electron density relative to water


class ROIGenerationAlgorithm(StrEnum):
    """ROI Generation Algorithm (3006,0036), PS3.3 C.8.8.5."""

    AUTOMATIC = "AUTOMATIC"
    SEMIAUTOMATIC = "SEMIAUTOMATIC"
    MANUAL = "MANUAL"


class ContourGeometricType(StrEnum):
    """Contour Geometric Type (3006,0042), PS3.3 C.8.8.6."""

    POINT = "POINT"
    OPEN_PLANAR = "OPEN_PLANAR"
    OPEN_NONPLANAR = "OPEN_NONPLANAR"
    CLOSED_PLANAR = "CLOSED_PLANAR"


class PlanGeometry(StrEnum):
    """RT Plan Geometry (300A,000C): PATIENT means a structure set is referenced."""

    PATIENT = "PATIENT"
    TREATMENT_DEVICE = "TREATMENT_DEVICE"


class DoseReferenceStructureType(StrEnum):
    """Dose Reference Structure Type (300A,0014)."""

    POINT = "POINT"
    VOLUME = "VOLUME"
    COORDINATES = "COORDINATES"
    SITE = "SITE"


class DoseReferenceType(StrEnum):
    """Dose Reference Type (300A,0020)."""

    TARGET = "TARGET"
    ORGAN_AT_RISK = "ORGAN_AT_RISK"


class SetupTechnique(StrEnum):
    """Setup Technique (300A,01B0)."""

    ISOCENTRIC = "ISOCENTRIC"
    FIXED_SSD = "FIXED_SSD"


class BeamType(StrEnum):
    """Beam Type (300A,00C4)."""

    STATIC = "STATIC"
    DYNAMIC = "DYNAMIC"


class RadiationType(StrEnum):
    """Radiation Type (300A,00C6)."""

    ELECTRON = "ELECTRON"
    PHOTON = "PHOTON"


class PrimaryDosimeterUnit(StrEnum):
    """Primary Dosimeter Unit (300A,00B3)."""

    MU = "MU"
    MINUTE = "MINUTE"


class TreatmentDeliveryType(StrEnum):
    """Treatment Delivery Type (300A,00CE)."""

    TREATMENT = "TREATMENT"
    OPEN_PORTFILM = "OPEN_PORTFILM"
    TRMT_PORTFILM = "TRMT_PORTFILM"


class BeamLimitingDeviceType(StrEnum):
    """RT Beam Limiting Device Type (300A,00B8)."""

    X = "X"
    Y = "Y"
    ASYMX = "ASYMX"
    ASYMY = "ASYMY"


class BlockType(StrEnum):
    """Block Type (300A,00F8). A cutout is an APERTURE ("CUTOUT" is not a defined term)."""

    SHIELDING = "SHIELDING"
    APERTURE = "APERTURE"


class BlockDivergence(StrEnum):
    """Block Divergence (300A,00FA)."""

    PRESENT = "PRESENT"
    ABSENT = "ABSENT"


class BlockMountingPosition(StrEnum):
    """Block Mounting Position (300A,00FB)."""

    PATIENT_SIDE = "PATIENT_SIDE"
    SOURCE_SIDE = "SOURCE_SIDE"


class ApplicatorType(StrEnum):
    """Applicator Type (300A,0109) for electron cones."""

    ELECTRON_SQUARE = "ELECTRON_SQUARE"
    ELECTRON_RECT = "ELECTRON_RECT"
    ELECTRON_CIRC = "ELECTRON_CIRC"
    ELECTRON_SHORT = "ELECTRON_SHORT"
    ELECTRON_OPEN = "ELECTRON_OPEN"


class ApplicatorApertureShape(StrEnum):
    """Applicator Aperture Shape (300A,0432)."""

    SYM_SQUARE = "SYM_SQUARE"
    SYM_RECTANGLE = "SYM_RECTANGLE"
    SYM_CIRCULAR = "SYM_CIRCULAR"


class RotationDirection(StrEnum):
    """Rotation directions of gantry, collimator, couch and table top (e.g. (300A,011F))."""

    NONE = "NONE"
    CW = "CW"
    CC = "CC"


class RTPlanRelationship(StrEnum):
    """RT Plan Relationship (300A,0055), PS3.3 C.8.8.9: how a referenced RT Plan relates to this one."""

    PRIOR = "PRIOR"  # given to the patient before this one
    ALTERNATIVE = "ALTERNATIVE"  # another plan for the same treatment
    PREDECESSOR = "PREDECESSOR"  # the plan this one replaces: an earlier revision, the unapproved one, a clone's source
    VERIFIED_PLAN = "VERIFIED_PLAN"  # the plan this verification plan checks
    CONCURRENT = "CONCURRENT"  # delivered in the same session


class ApprovalStatus(StrEnum):
    """Approval Status (300E,0002), PS3.3 C.8.8.16."""

    APPROVED = "APPROVED"
    UNAPPROVED = "UNAPPROVED"
    REJECTED = "REJECTED"


class DoseUnits(StrEnum):
    """Dose Units (3004,0002); CGY is not a defined term."""

    GY = "GY"
    RELATIVE = "RELATIVE"


class DoseType(StrEnum):
    """Dose Type (3004,0004)."""

    PHYSICAL = "PHYSICAL"
    EFFECTIVE = "EFFECTIVE"
    ERROR = "ERROR"


class DoseSummationType(StrEnum):
    """Dose Summation Type (3004,000A): whole plan, or one beam of it."""

    PLAN = "PLAN"
    BEAM = "BEAM"


class TissueHeterogeneityCorrection(StrEnum):
    """Tissue Heterogeneity Correction (3004,0014)."""

    IMAGE = "IMAGE"
    ROI_OVERRIDE = "ROI_OVERRIDE"
    WATER = "WATER"
