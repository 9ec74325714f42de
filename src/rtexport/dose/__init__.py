"""Electron dose: a Hogstrom Gaussian pencil-beam engine behind a replaceable :class:`DoseEngine` interface.

NOT FOR CLINICAL USE. A pencil beam can err by up to ~25 % next to small heterogeneities.
"""

from rtexport.dose.commissioning import PDDMetrics, pdd_metrics
from rtexport.dose.engine import BeamSetup, DoseEngine, Medium, PencilBeamEngine
from rtexport.dose.plan import compute_plan_dose
from rtexport.dose.volume import CTVolume
from rtexport.model.dose import BeamDose, PlanDose

__all__ = [
    "BeamDose",
    "BeamSetup",
    "CTVolume",
    "DoseEngine",
    "Medium",
    "PDDMetrics",
    "PencilBeamEngine",
    "PlanDose",
    "compute_plan_dose",
    "pdd_metrics",
]
