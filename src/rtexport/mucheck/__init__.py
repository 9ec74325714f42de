"""An independent check of each electron beam's monitor units: the TG-71 hand calculation from the site's tables
(:mod:`.tg71`) beside the dose engine's MU (:mod:`.check`). Separate code from the engine: it shares nothing with
:mod:`rtexport.dose` but the site configuration it reads."""

from rtexport.mucheck.check import BeamCheck, EngineBeam, MUCheck, check_beams
from rtexport.mucheck.tg71 import HandCalc, NotCheckable, equivalent_square_mm, hand_calc

__all__ = [
    "BeamCheck",
    "EngineBeam",
    "HandCalc",
    "MUCheck",
    "NotCheckable",
    "check_beams",
    "equivalent_square_mm",
    "hand_calc",
]
