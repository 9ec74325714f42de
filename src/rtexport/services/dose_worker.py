"""A second process for ``rtexport dose``, forked before the command's heavy imports.

The dose engine's stack (numpy, scipy, the engine) takes about a third of a second to import, and the command's
own (pydicom, the models, the workspace) about as long; one interpreter imports one module at a time. So the
command forks this worker first: the worker imports the engine's stack while the command imports its own and
reads the plan, the site, the CT and the contours (checked as always, in the command). The worker is then sent
those, sets the beams up and computes the dose exactly as the command would (the same functions on the same
values: :func:`~rtexport.geometry.setup.aim_plan`, :func:`~rtexport.dose.compute_plan_dose`), and sends back the
setup and the dose; the command stores them and builds the export objects without ever importing scipy. The
worker never opens the workspace.

Where the worker fails in any way (an error, a killed process, a result that does not unpickle), the command
computes the dose itself, so every error is raised there as it always was. Where fork is not available the
command computes the dose itself.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # this module is imported before the fork: nothing heavy up front
    import numpy as np
    import numpy.typing as npt

    from rtexport.geometry.setup import AimedPlan
    from rtexport.model.course import Contour, CTGeometry
    from rtexport.model.dose import PlanDose
    from rtexport.model.plan import Plan
    from rtexport.model.site import Site

CAN_FORK = sys.platform == "linux" and hasattr(os, "fork")


@contextmanager
def quiet_collector() -> Iterator[None]:
    """Heavy imports (numpy, scipy, pydicom, the models) without the cyclic garbage collector: they make hundreds of
    thousands of objects and no garbage, and the collector's passes over them took about a tenth of their time.
    What they made is then frozen out of later passes (and, before a fork, out of the copy's)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was:
            gc.enable()


def _serve(requests: int, replies: int) -> None:  # pragma: no cover - runs in the worker, whose coverage is lost
    """The worker: import the engine's stack, wait for one request, answer it (nothing on failure), end."""
    payload = b""
    try:
        with quiet_collector():
            import rtexport.dose.plan
            import rtexport.geometry.bolus
            import rtexport.geometry.rays  # noqa: F401
        with os.fdopen(requests, "rb") as pipe:
            request = pipe.read()
        if request:
            payload = pickle.dumps(_compute(*pickle.loads(request)), protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException:  # any failure: the command computes the dose itself and raises its error there
        payload = b""
    finally:
        try:
            with os.fdopen(replies, "wb") as out:
                out.write(payload)
        finally:
            os._exit(0)


def _compute(
    plan: Plan,
    site: Site,
    ct: CTGeometry,
    hu: npt.NDArray[np.float32],
    contours: Mapping[str, Sequence[Contour]],
    grid_mm: float | None,
) -> tuple[AimedPlan, PlanDose]:  # pragma: no cover - runs in the worker
    from rtexport.dose import CTVolume, compute_plan_dose
    from rtexport.geometry.setup import aim_plan

    volume = CTVolume(ct, hu)
    aimed = aim_plan(plan, site, ct, contours)
    return aimed, compute_plan_dose(plan, site, volume, contours, grid_mm, None, aimed)


class DoseWorker:
    """A forked worker waiting for one dose to compute (see the module docstring)."""

    def __init__(self, pid: int, requests: int, replies: int) -> None:
        self._pid, self._requests, self._replies = pid, requests, replies
        self._done = False  # asked (or ended)
        self._submitted = False  # asked, its answer not read yet

    @property
    def pid(self) -> int:
        return self._pid

    @classmethod
    def start(cls) -> DoseWorker | None:
        """Fork the worker; None where fork is not available or no process could be started."""
        if not CAN_FORK:
            return None
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for fd in (request_r, request_w, reply_r, reply_w):
                os.close(fd)
            return None
        if pid == 0:  # pragma: no cover - the worker
            os.close(request_w)
            os.close(reply_r)
            _serve(request_r, reply_w)
        os.close(request_r)
        os.close(reply_w)
        return cls(pid, request_w, reply_r)

    def submit(
        self,
        plan: Plan,
        site: Site,
        ct: CTGeometry,
        hu: npt.NDArray[np.float32],
        contours: Mapping[str, Sequence[Contour]],
        grid_mm: float | None,
    ) -> bool:
        """Send the worker what it computes from; False if it cannot take it (compute here)."""
        if self._done:
            return False
        self._done = True
        try:
            request = pickle.dumps((plan, site, ct, hu, dict(contours), grid_mm), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(self._requests, "wb") as pipe:
                pipe.write(request)
        except (OSError, pickle.PicklingError):
            os.close(self._replies)
            self._end(kill=True)
            return False
        self._submitted = True
        return True

    def result(self) -> tuple[AimedPlan, PlanDose] | None:
        """The beams' setup and the plan's dose the worker computed; None if it failed (compute them here)."""
        if not self._submitted:
            return None
        self._submitted = False
        with os.fdopen(self._replies, "rb") as pipe:
            payload = pipe.read()
        self._end(kill=False)
        if not payload:
            return None
        try:
            aimed, dose = pickle.loads(payload)  # the worker's own bytes, through a pipe only it holds
        except Exception:  # unreadable: computed here instead
            return None
        return aimed, dose

    def close(self) -> None:
        """End the worker if it was never asked or its answer never read (the command failed meanwhile)."""
        if not self._done:
            self._done = True
            os.close(self._requests)
            os.close(self._replies)
            self._end(kill=True)
        elif self._submitted:
            self._submitted = False
            os.close(self._replies)
            self._end(kill=True)

    def _end(self, *, kill: bool) -> None:
        if kill:
            os.kill(self._pid, signal.SIGKILL)
        os.waitpid(self._pid, 0)


@contextmanager
def dose_worker() -> Iterator[DoseWorker | None]:
    """A worker for one dose (None where none can be started), ended on leaving. What both processes need (numpy,
    pydantic and the models) is imported first, once: the worker then imports only the engine's stack, while this
    process imports pydicom and the workspace and reads the plan, about as long."""
    with quiet_collector():
        import rtexport.model.course
        import rtexport.model.dose
        import rtexport.model.plan
        import rtexport.model.site
        import rtexport.model.state  # noqa: F401
    worker = DoseWorker.start()
    try:
        yield worker
    finally:
        if worker is not None:
            worker.close()
