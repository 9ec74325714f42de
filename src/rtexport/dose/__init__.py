"""Electron dose: a Hogstrom Gaussian pencil-beam engine behind a replaceable :class:`DoseEngine` interface.

NOT FOR CLINICAL USE. A pencil beam can err by up to ~25 % next to small heterogeneities.

The names below are imported from their modules when first used: a module that needs one of them (say the beam-data
analysis, :func:`pdd_metrics`) does not import the engine's stack (scipy) with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rtexport.dose.commissioning import PDDMetrics, pdd_metrics
    from rtexport.dose.engine import BeamSetup, DoseEngine, Medium, PencilBeamEngine
    from rtexport.dose.plan import compute_plan_dose
    from rtexport.dose.volume import CTVolume
    from rtexport.model.dose import BeamDose, PlanDose

_HOME = {
    "BeamDose": "rtexport.model.dose",
    "BeamSetup": "rtexport.dose.engine",
    "CTVolume": "rtexport.dose.volume",
    "DoseEngine": "rtexport.dose.engine",
    "Medium": "rtexport.dose.engine",
    "PDDMetrics": "rtexport.dose.commissioning",
    "PencilBeamEngine": "rtexport.dose.engine",
    "PlanDose": "rtexport.model.dose",
    "compute_plan_dose": "rtexport.dose.plan",
    "pdd_metrics": "rtexport.dose.commissioning",
}


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


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
