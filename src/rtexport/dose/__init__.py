"""Electron dose: a Hogstrom Gaussian pencil-beam engine behind a replaceable :class:`DoseEngine` interface.

NOT FOR CLINICAL USE. A pencil beam can err by up to ~25 % next to small heterogeneities.
"""

from rtexport.dose.commissioning import PDDMetrics, pdd_metrics
from rtexport.dose.engine import BeamSetup, DoseEngine, Medium, PencilBeamEngine
from rtexport.dose.geometry import BeamFrame, beam_axes
from rtexport.dose.plan import compute_plan_dose, resolve_beam
from rtexport.dose.raster import bolus_contours, bolus_mask, rasterize
from rtexport.dose.volume import CTVolume
from rtexport.model.dose import BeamDose, PlanDose

__all__ = [
    "BeamDose",
    "BeamFrame",
    "BeamSetup",
    "CTVolume",
    "DoseEngine",
    "Medium",
    "PDDMetrics",
    "PencilBeamEngine",
    "PlanDose",
    "beam_axes",
    "bolus_contours",
    "bolus_mask",
    "compute_plan_dose",
    "pdd_metrics",
    "rasterize",
    "resolve_beam",
]
