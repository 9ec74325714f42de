"""Beam setup: where each beam of a plan stands relative to the patient, computed once for dose and export alike.

Two setup models (see :class:`rtexport.model.plan.Beam`):

- **aimed** (``target`` or ``aim_mm``, an SSD setup): the central axis passes through the aim point, which must be
  inside the External; the source stands ``ssd_mm`` (default: the source-axis distance) before the first surface
  the central axis meets — the External or a bolus — and the isocenter lies the source-axis distance from the
  source (on the skin when SSD = SAD, in air for an extended SSD);
- **isocentric** (``isocenter_mm``): the source stands the source-axis distance before the isocenter and the SSD is
  traced along the central axis (``ssd_mm``, if given, must agree within :data:`SSD_TOLERANCE_MM`).

Surfaces are the contours themselves (:mod:`rtexport.geometry.contours`), so the IsocenterPosition,
SourceToSurfaceDistance and SurfaceEntryPoint written to the RT Plan are what a receiving system rebuilds from the
exported structure set. Bolus is built on the External along its beam (placed as if only its own bolus were on
the skin) and is part of the medium of every beam: each beam lists the boli its field crosses. Contradictions —
an aim point in air, an SSD the geometry cannot have, a surface nearer the source than the applicator's end — are
refused with the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rtexport.errors import PlanError
from rtexport.geometry import polygon
from rtexport.geometry.contours import PlanarStructure, structure_centroid
from rtexport.geometry.iec import BeamFrame, Point, beam_axes, box_corners
from rtexport.model.course import Contour, CTGeometry
from rtexport.model.plan import Beam, Plan, default_cutout
from rtexport.model.site import Applicator, Site

FloatArray = npt.NDArray[np.float64]

SSD_TOLERANCE_MM = 0.5
_FIELD_RAYS_MM = 2.5  # lattice of the rays that check the whole field against the applicator
_FIELD_RASTER_MM = 1.0  # their surface is found to within half of this
_POINTS_PER_CHECK = 4096  # bolus points tested against a field at a time


@dataclass(frozen=True)
class AimedBeam:
    """One beam as set up: its frame (source, axes, SAD), the source-to-surface distance and surface entry point
    of the central axis, whether it is an SSD setup, its aperture (beam's-eye view, isocenter plane), and the
    beams whose bolus its field crosses (by the name of the beam that declares each bolus)."""

    name: str
    frame: BeamFrame
    ssd_mm: float
    entry_mm: Point
    fixed_ssd: bool
    cutout_mm: FloatArray
    boli: tuple[str, ...]

    @property
    def isocenter_mm(self) -> Point:
        return self.frame.isocenter_mm

    @property
    def source_mm(self) -> Point:
        return self.frame.source_mm


@dataclass(frozen=True)
class AimedPlan:
    """Every beam's setup and every bolus (CLOSED_PLANAR contours on CT slices, by the beam that declares it)."""

    beams: tuple[AimedBeam, ...]
    bolus: Mapping[str, Sequence[Contour]]

    def beam(self, name: str) -> AimedBeam:
        found = next((b for b in self.beams if b.name == name), None)
        if found is None:
            raise KeyError(f"no beam {name!r} in this plan geometry")
        return found


class _Refused(Exception):
    """One problem of one beam, already worded for the user."""


def plan_structures(plan: Plan) -> set[str]:
    """The structures a plan's geometry depends on: its External and its beams' targets."""
    return {plan.external} | {b.target for b in plan.beams if b.target}


def beam_cutout(beam: Beam, applicator: Applicator) -> FloatArray:
    """The aperture polygon (beam's-eye view, isocenter plane): the beam's cutout, or the open applicator."""
    points = beam.cutout_mm if beam.cutout_mm is not None else default_cutout(applicator.shape, applicator.opening_mm)
    return np.asarray(points, dtype=np.float64)


def _fmt(p: Sequence[float] | FloatArray) -> str:
    return "(" + ", ".join(f"{float(v):.1f}" for v in p) + ")"


def _reach(structures: Sequence[PlanarStructure], point: FloatArray) -> float:
    """A distance from ``point`` beyond which no structure lies."""
    far = 0.0
    for s in structures:
        lo, hi = s.bounds()
        far = max(far, float(np.linalg.norm(box_corners(lo, hi) - point, axis=1).max()))
    return far + 10.0


@dataclass(frozen=True)
class _Aim:
    """A beam's axes, aperture and aim before the boli exist; ``nominal`` places the source as if only the
    beam's own bolus were on the skin (the frame its bolus is built from)."""

    index: int
    beam: Beam
    applicator: Applicator
    axes: FloatArray
    cutout: FloatArray
    point: FloatArray  # the aim point, or the isocenter
    nominal: BeamFrame

    @property
    def where(self) -> str:
        return f"beam[{self.index}]"

    @property
    def direction(self) -> FloatArray:
        return np.asarray(-self.axes[:, 2], dtype=np.float64)


def _aim_point(index: int, beam: Beam, contours: Mapping[str, Sequence[Contour]]) -> tuple[FloatArray, str]:
    where = f"beam[{index}]"
    if beam.isocenter_mm is not None:
        return np.asarray(beam.isocenter_mm, dtype=np.float64), "isocenter"
    if beam.aim_mm is not None:
        return np.asarray(beam.aim_mm, dtype=np.float64), "aim point"
    if beam.target is None:  # the plan model allows exactly one of the three
        raise PlanError(f"{where}: beam {beam.name} gives neither isocenter_mm, aim_mm nor target")
    centroid = structure_centroid(contours.get(beam.target, ()))
    if centroid is None:
        raise _Refused(
            f"{where}.target: structure {beam.target!r} encloses no area (no closed contour); "
            f"aim beam {beam.name} with aim_mm or isocenter_mm instead"
        )
    return np.asarray(centroid, dtype=np.float64), f"centroid of {beam.target}"


def _first_aim(
    index: int,
    beam: Beam,
    site: Site,
    plan: Plan,
    ct: CTGeometry,
    external: PlanarStructure,
    contours: Mapping[str, Sequence[Contour]],
) -> _Aim:
    from rtexport.geometry.rays import first_entry  # rays and bolus bring scipy: imported where used

    where = f"beam[{index}]"
    machine = site.machine(plan.machine)
    if machine is None:
        raise PlanError(f"machine: the site has no machine {plan.machine!r} (any more); see 'rtexport site check'")
    app = machine.applicator(beam.applicator)
    if app is None:
        raise _Refused(f"{where}.applicator: {machine.name} has no applicator {beam.applicator!r}")
    sad = machine.source_axis_distance_mm
    axes = beam_axes(beam.gantry_deg, beam.collimator_deg, beam.couch_deg, ct.patient_position)
    direction = -axes[:, 2]
    cutout = beam_cutout(beam, app)
    point, what = _aim_point(index, beam, contours)
    if not beam.aimed:
        source = point - sad * direction
    else:
        key = "target" if beam.target is not None else "aim_mm"
        if not bool(external.contains(point[None, :])[0]):
            raise _Refused(
                f"{where}.{key}: the {what} {_fmt(point)} mm of beam {beam.name} is outside the External "
                f"{plan.external!r} (in air); aim at a point inside the patient"
            )
        reach = _reach([external], point)
        start = point - reach * direction
        s = first_entry([external], start, direction, reach)
        if s is None:  # the aim point is inside the External, so the axis enters it: not for degenerate contours
            raise PlanError(
                f"{where}: the central axis of beam {beam.name} never enters the External {plan.external!r}"
            )
        surface = start + s * direction
        bolus = beam.bolus
        if bolus is not None and bool(polygon.inside_with_margin(cutout, 0.0, 0.0, bolus.margin_mm)):
            surface = surface - bolus.thickness_mm * direction  # its own bolus is the first surface
        source = surface - (beam.ssd_mm or sad) * direction
    frame = BeamFrame((float(source[0]), float(source[1]), float(source[2])), axes, sad)
    return _Aim(index, beam, app, axes, cutout, point, frame)


def _final_frame(aim: _Aim, surfaces: Sequence[PlanarStructure], plan: Plan) -> tuple[BeamFrame, float, FloatArray]:
    """The beam's frame with every bolus in place, its SSD and surface entry point (exact on the contours)."""
    from rtexport.geometry.rays import first_entry

    beam, direction, sad = aim.beam, aim.direction, aim.nominal.sad_mm
    if beam.aimed:
        reach = _reach(surfaces, aim.point)
        start = aim.point - reach * direction
        s = first_entry(surfaces, start, direction, reach)
        if s is None:  # the aim point is inside the External, so the axis enters it: not for degenerate contours
            raise PlanError(f"beam {beam.name}: its central axis never enters the patient's surface")
        entry = start + s * direction
        ssd = beam.ssd_mm or sad
        source = entry - ssd * direction
    else:
        source = np.asarray(aim.nominal.source_mm)
        length = sad + _reach(surfaces, aim.point)
        s = first_entry(surfaces, source, direction, length)
        if s is None:
            raise _Refused(
                f"{aim.where}.isocenter_mm: the central axis of beam {beam.name} through the isocenter "
                f"{_fmt(aim.point)} mm never meets the External {plan.external!r}; check the isocenter and the angles"
            )
        ssd, entry = s, source + s * direction
        if beam.ssd_mm is not None and abs(ssd - beam.ssd_mm) > SSD_TOLERANCE_MM:
            raise _Refused(
                f"{aim.where}.ssd_mm: beam {beam.name}: ssd_mm is {beam.ssd_mm:g} but the isocenter "
                f"{_fmt(aim.point)} mm puts the surface {ssd:.1f} mm from the source (source-axis distance "
                f"{sad:g}); drop ssd_mm, or give target or aim_mm with ssd_mm for an SSD setup"
            )
    frame = BeamFrame((float(source[0]), float(source[1]), float(source[2])), aim.axes, sad)
    return frame, float(ssd), entry


def field_surface(
    ct: CTGeometry,
    surfaces: Sequence[PlanarStructure],
    frame: BeamFrame,
    u: FloatArray,
    v: FloatArray,
    raster_mm: float = _FIELD_RASTER_MM,
) -> FloatArray:
    """Each ray's own source-to-surface distance (mm, along the ray) through beam's-eye-view points (u, v): where
    it first meets any of ``surfaces`` (External, boli); NaN where it meets none. Surfaces are rasterized at
    ``raster_mm`` in-plane, so the distance is good to about half of that."""
    from rtexport.geometry.rays import surface_distances

    x_ct, y_ct, z_ct = ct.axes()
    lo = np.array([float(np.min(u)), float(np.min(v))]) - 5.0
    hi = np.array([float(np.max(u)), float(np.max(v))]) + 5.0
    xs = np.arange(x_ct[0], x_ct[-1] + 1e-6, raster_mm)
    ys = np.arange(y_ct[0], y_ct[-1] + 1e-6, raster_mm)
    near, far = frame.depth_range((xs[0], ys[0], z_ct[0]), (xs[-1], ys[-1], z_ct[-1]))
    d_range = (max(near, 1.0), far)
    bmin, bmax = frame.field_box(lo, hi, d_range)
    pad = ct.slice_spacing_mm
    xs = xs[(xs >= bmin[0] - pad) & (xs <= bmax[0] + pad)]
    ys = ys[(ys >= bmin[1] - pad) & (ys <= bmax[1] + pad)]
    zs = z_ct[(z_ct >= bmin[2] - pad) & (z_ct <= bmax[2] + pad)]
    out = np.full(np.broadcast(u, v).shape, np.nan)
    if min(len(xs), len(ys), len(zs)) == 0:
        return out
    mask = np.zeros((len(zs), len(ys), len(xs)), dtype=bool)
    for s in surfaces:
        mask |= s.fill(xs, ys, zs)
    dist = surface_distances(frame, mask, (xs, ys, zs), u, v, d_range, raster_mm / 2)
    return frame.ray_length(u, v, dist)


def _check_applicator(
    aim: _Aim, ct: CTGeometry, surfaces: Sequence[PlanarStructure], frame: BeamFrame, ssd: float
) -> None:
    """No surface may come nearer the source than the applicator's end: on the central axis (exactly) and
    anywhere in the field (to half the field raster)."""
    app, beam = aim.applicator, aim.beam
    end = app.source_to_applicator_mm
    fix = (
        f"increase ssd_mm to {end:g} or more"
        if beam.aimed
        else "move the isocenter out to at least the applicator's end, or give target or aim_mm with ssd_mm"
    )
    key = "ssd_mm" if beam.aimed else "isocenter_mm"
    if ssd < end:
        raise _Refused(
            f"{aim.where}.{key}: beam {beam.name}: the surface is {ssd:.1f} mm from the source on the central "
            f"axis, nearer than the end of applicator {app.id} ({end:g} mm): the applicator would be in the "
            f"patient; {fix}"
        )
    lo, hi = aim.cutout.min(axis=0), aim.cutout.max(axis=0)
    uu, vv = np.meshgrid(
        np.arange(lo[0], hi[0] + _FIELD_RAYS_MM, _FIELD_RAYS_MM),
        np.arange(lo[1], hi[1] + _FIELD_RAYS_MM, _FIELD_RAYS_MM),
    )
    inside = polygon.contains([aim.cutout], uu, vv)
    u, v = uu[inside], vv[inside]
    if u.size == 0:
        return
    length = field_surface(ct, surfaces, frame, u, v)
    d = length / frame.ray_length(u, v, 1.0)  # distance along the axis: the applicator's plane
    if np.all(np.isnan(d)):
        return
    k = int(np.nanargmin(d))
    if d[k] < end - _FIELD_RASTER_MM / 2:
        raise _Refused(
            f"{aim.where}.{key}: beam {beam.name}: inside the field the surface comes to {d[k]:.1f} mm from the "
            f"source (at beam's-eye view ({u[k]:.0f}, {v[k]:.0f}) mm), nearer than the end of applicator {app.id} "
            f"({end:g} mm): the applicator would be in the patient; {fix}"
        )


def _bolus_points(structure: PlanarStructure, raster_mm: float = 1.0) -> FloatArray:
    """Points filling a bolus: its voxels on each contour plane, repeated through the slab the plane stands for."""
    lo, hi = structure.bounds()
    xs = np.arange(lo[0], hi[0] + raster_mm, raster_mm)
    ys = np.arange(lo[1], hi[1] + raster_mm, raster_mm)
    out = []
    for k, z in enumerate(structure.planes):
        m = polygon.fill(structure.polygons[k], xs, ys)
        jy, ix = np.nonzero(m)
        for dz in (-0.9, 0.0, 0.9):
            out.append(np.c_[xs[ix], ys[jy], np.full(len(ix), z + dz * structure.half_thickness_mm)])
    return np.concatenate(out) if out else np.empty((0, 3))


def _crosses(frame: BeamFrame, cutout: FloatArray, points: FloatArray) -> bool:
    """Whether any point lies in the beam's geometric field (the cutout's divergent projection)."""
    for lo in range(0, len(points), _POINTS_PER_CHECK):  # the answer is usually in the first block
        u, v, d = frame.to_fan(points[lo : lo + _POINTS_PER_CHECK])
        ahead = d > 0
        if polygon.contains([cutout], u[ahead], v[ahead]).any():
            return True
    return False


def aim_plan(plan: Plan, site: Site, ct: CTGeometry, contours: Mapping[str, Sequence[Contour]]) -> AimedPlan:
    """Set up every beam of ``plan`` on the course (see the module docstring); raise :class:`PlanError` naming
    each beam's problem with its numbers."""
    from rtexport.geometry.bolus import bolus_contours

    machine = site.machine(plan.machine)
    if machine is None:
        raise PlanError(f"plan {plan.id}: unknown machine {plan.machine!r}")
    spacing = ct.slice_spacing_mm
    external = PlanarStructure(contours.get(plan.external, ()), spacing)
    if external.empty:
        raise PlanError(f"plan {plan.id}: the External {plan.external!r} has no closed contour")
    problems: list[str] = []
    aims: list[_Aim] = []
    for i, beam in enumerate(plan.beams):
        try:
            aims.append(_first_aim(i, beam, site, plan, ct, external, contours))
        except _Refused as e:
            problems.append(str(e))
    if problems:
        raise PlanError(f"plan {plan.id}: the beam setup does not fit course {plan.course}", problems)

    bolus: dict[str, list[Contour]] = {}
    for aim in aims:
        spec = aim.beam.bolus
        if spec is None:
            continue
        bolus[aim.beam.name] = bolus_contours(ct, external, aim.nominal, aim.cutout, spec)
        if not bolus[aim.beam.name]:
            problems.append(
                f"{aim.where}.bolus: the bolus of beam {aim.beam.name} covers nothing: its field (cutout grown by "
                f"the margin) never meets the External {plan.external!r}"
            )
    if problems:
        raise PlanError(f"plan {plan.id}: the beam setup does not fit course {plan.course}", problems)
    boli = {name: PlanarStructure(cs, spacing) for name, cs in bolus.items()}
    surfaces = [external, *boli.values()]
    points = {name: _bolus_points(s) for name, s in boli.items()}

    beams: list[AimedBeam] = []
    for aim in aims:
        try:
            frame, ssd, entry = _final_frame(aim, surfaces, plan)
            _check_applicator(aim, ct, surfaces, frame, ssd)
        except _Refused as e:
            problems.append(str(e))
            continue
        crossed = tuple(name for name in bolus if _crosses(frame, aim.cutout, points[name]))
        beams.append(
            AimedBeam(
                name=aim.beam.name,
                frame=frame,
                ssd_mm=ssd,
                entry_mm=(float(entry[0]), float(entry[1]), float(entry[2])),
                fixed_ssd=aim.beam.aimed,
                cutout_mm=aim.cutout,
                boli=crossed,
            )
        )
    if problems:
        raise PlanError(f"plan {plan.id}: the beam setup does not fit course {plan.course}", problems)
    return AimedPlan(tuple(beams), bolus)


def nominal_setup(
    plan: Plan, site: Site, ct: CTGeometry, contours: Mapping[str, Sequence[Contour]], index: int = 0
) -> tuple[BeamFrame, float, Point]:
    """Beam ``index`` set up quickly, as if only its own bolus were on the skin (taken as its thickness along the
    central axis): its frame, SSD and surface entry point. What the page shows while a beam is edited;
    :func:`aim_plan` gives the exact setup with every bolus built. Raises :class:`PlanError` naming the problem."""
    from rtexport.geometry.rays import first_entry

    machine = site.machine(plan.machine)
    if machine is None:
        raise PlanError(f"plan {plan.id}: unknown machine {plan.machine!r}", [f"machine: unknown {plan.machine!r}"])
    external = PlanarStructure(contours.get(plan.external, ()), ct.slice_spacing_mm)
    if external.empty:
        raise PlanError(
            f"the External {plan.external!r} has no closed contour", [f"external: {plan.external!r} is empty"]
        )
    beam = plan.beams[index]
    try:
        aim = _first_aim(index, beam, site, plan, ct, external, contours)
    except _Refused as e:
        raise PlanError(f"beam {beam.name} cannot be set up", [str(e)]) from e
    frame, direction = aim.nominal, aim.direction
    if beam.aimed:
        ssd = beam.ssd_mm or frame.sad_mm
    else:
        found = first_entry(
            [external], np.asarray(frame.source_mm), direction, frame.sad_mm + _reach([external], aim.point)
        )
        if found is None:
            raise PlanError(
                f"beam {beam.name} cannot be set up",
                [f"beam[{index}].isocenter_mm: the central axis never meets the External {plan.external!r}"],
            )
        ssd = found
    return frame, float(ssd), frame.point_at(ssd)
