"""What lies beside a pencil: the lateral structure of a heterogeneity, redefined at the plane where it lies.

A pencil beam gives each pencil the scattering of the medium on its own central ray and spreads it with the
pencil's whole σ from the surface (5–6 mm at 25 mm in water at 12 MeV). Behind a small insert that blurs the
insert's shadow away: Monte Carlo shows a 1 cm bone insert's shadow 13 % cold and an air cavity's 15 % hot a few
millimetres behind them, the pencil beam 0–4 %. The electrons that cross the insert have already spread by the
time they reach it; what the insert changes is their angular spread there, and that change spreads on only from
the insert's plane, by the angular spread the electrons carry (θ·L) and what they scatter beyond it — the idea of
Shiu & Hogstrom's pencil-beam redefinition (Med Phys 18:7, 1991), kept to first order here:

- The scattering power per depth plane is split into a smooth part (laterally averaged over ``SMOOTH_MM`` within
  the patient) that the pencils carry as before, and a sharp remainder ε = ½ (T − T̄) Δℓ (projected angle²).
- A uniform electron fluence whose angular variance grows by ε(x) at a plane has, a distance L beyond it, the
  relative fluence 1 + ½ L² ∇²ε (Fokker–Planck, to first order), blurred by the spread the electrons gain from
  that plane on: s² = θ² L² + ½ ∫ T (ℓ − u)² du, θ² the angular variance they arrive with.
- The pencils' electron dose at each point is multiplied by that relative fluence. The Laplacian sees no flux
  through the skin (ε only where the beam is in the patient), so a slab, the skin and the field's edges give
  none; the pencil beam keeps them.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.special import erf

from rtexport.dose.commissioning import BroadBeam, scattering_power_water

FloatArray = npt.NDArray[np.float64]

SMOOTH_MM = 10.0  # structure narrower than this is the redefinition's; broader, the pencils'
BLOCK_MM = 6.0  # source planes are summed in blocks this thick
_RATIO = 1.35  # σ ladder of the blur
_TISSUE = 0.1  # lateral structure below this share of water's scattering (soft tissue, CT noise): the pencils'
_NEGLIGIBLE = 1e-3  # a block whose first-order change stays below this everywhere is left out


def obliquity(
    bb: BroadBeam,
    zeff: FloatArray,
    media: tuple[FloatArray, FloatArray, FloatArray],
    inside: npt.NDArray[np.bool_],
    cells: float,
) -> tuple[FloatArray, FloatArray]:
    """(effective depth, dose per fluence factor) [u, v, d] for electrons that crossed a medium scattering more
    (bone) or less than its stopping power says.

    The broad beam's depth dose at effective depth z holds water's angular spread there, A0_w(z) = ∫ T_w du
    (polar). A medium whose relative scattering power T_rel exceeds its relative stopping power S_rel leaves the
    electrons with more, ΔA0 = ∫ (T_rel − S_rel) T_w dℓ. Their tracks are longer per unit depth by ⟨sec θ⟩,
    1 + ½ A0 to first order, so behind it they deposit more dose per unit fluence and lose energy faster with
    depth, both by f = (1 + ½ (A0_w + ΔA0)) / (1 + ½ A0_w): the dose is multiplied by f and the effective depth
    gains ∫ S_rel (f − 1) dℓ. Water, water-like bolus, soft tissue and lung (|T_rel − S_rel| below a tenth) give
    f = 1. Scattering beyond R90 is taken at R90's energy, as for the pencils' σ."""
    s_rel, t_rel, dl = media
    more = np.subtract(t_rel, s_rel) * inside  # the scattering beyond the stopping, per unit of water's
    more[np.abs(more) < _TISSUE] = 0.0  # soft tissues, CT noise: water
    planes = np.nonzero(more.any(axis=(0, 1)))[0]
    reach = float(bb.depth_mm[np.nonzero(bb.dinf > 0)[0][-1]])  # the electrons' last depth dose
    alive = np.nonzero((inside & (zeff < reach)).any(axis=(0, 1)))[0]
    if planes.size == 0 or alive.size == 0 or planes[0] > alive[-1]:
        return zeff, np.ones_like(zeff)
    # ΔA0 changes from k0 to k1 and is constant beyond; nothing is left to deliver dose beyond k2
    k0, k1, k2 = int(planes[0]), int(planes[-1]) + 1, int(alive[-1]) + 1
    frozen = np.minimum(zeff[..., k0:k2], bb.sigma_frozen_mm)
    k1 = min(k1, k2)
    extra = more[..., k0:k1] * dl * scattering_power_water(bb.energy_at(frozen[..., : k1 - k0]))
    z_tab = np.linspace(0.0, float(frozen.max()) + 1.0, 256)
    t_tab = scattering_power_water(bb.energy_at(z_tab))
    a0_tab = np.concatenate([[0.0], np.cumsum(0.5 * (t_tab[1:] + t_tab[:-1]) * np.diff(z_tab))])
    half_over = 0.5 / (1.0 + 0.5 * np.interp(frozen, z_tab, a0_tab))

    def integral(x: FloatArray, n: int) -> FloatArray:
        """Trapezoid from the first plane (as the effective depth) of x on the first of n planes, 0 beyond."""
        out = np.empty((*x.shape[:-1], n))
        np.cumsum(x, axis=-1, out=out[..., : x.shape[-1]])
        out[..., : x.shape[-1]] -= 0.5 * (x + (x[..., :1] if k0 == 0 else 0.0))
        out[..., x.shape[-1] :] = out[..., x.shape[-1] - 1 : x.shape[-1]] + 0.5 * x[..., -1:]
        return out

    n = frozen.shape[-1]
    gain = integral(s_rel[..., k0:k2] * integral(extra, n) * half_over * dl, n)  # each electron's own track
    zeff = zeff.copy()
    zeff[..., k0:k2] += gain
    zeff[..., k2:] += gain[..., -1:]
    # the dose per fluence: lateral structure narrower than SMOOTH_MM carries the longer tracks sideways
    # (fluence_ratio) rather than depositing them where they are; only the smooth part counts here
    sel = planes[planes < k1] - k0
    smooth = np.zeros_like(extra)
    smooth[..., sel] = split_lateral(extra[..., sel], inside[..., sel + k0], SMOOTH_MM / cells)[0]
    f = np.ones_like(zeff)
    f[..., k0:k2] += integral(smooth, n) * half_over
    return np.asarray(zeff, dtype=np.float64), f


def split_lateral(
    tw: FloatArray, inside: npt.NDArray[np.bool_], cells: float, weights: tuple[FloatArray, FloatArray] | None = None
) -> tuple[FloatArray, FloatArray]:
    """(smooth, sharp) parts of per-plane scattering ``tw`` [u, v, d]: the smooth part is the average over a
    Gaussian of ``cells`` lattice cells of the pencils inside the patient. ``weights``: :func:`_inside_weights`
    of ``inside`` and ``cells`` when the caller has them."""
    m, den = _inside_weights(inside, cells) if weights is None else weights
    num = _lateral_gauss(tw * m, cells)
    smooth = np.where(den > 1e-6, num / np.maximum(den, 1e-6), tw) * m
    return smooth, (tw - smooth) * m


def _inside_weights(inside: npt.NDArray[np.bool_], cells: float) -> tuple[FloatArray, FloatArray]:
    """The patient mask as 0/1 and its Gaussian average over ``cells`` lattice cells per plane."""
    m = inside.astype(np.float64)
    return m, _lateral_gauss(m, cells)


def _lateral_gauss(x: FloatArray, cells: float) -> FloatArray:
    """x [u, v, d] averaged in each plane over a Gaussian of σ ``cells`` lattice cells, truncated at 3 σ, zero
    beyond the lattice (as ``ndimage.gaussian_filter`` with σ 0 along d, as two matrix products)."""
    radius = int(3.0 * cells + 0.5)
    taps = np.exp(-0.5 / (cells * cells) * np.arange(-radius, radius + 1, dtype=np.float64) ** 2)
    taps /= taps.sum()

    def band(n: int) -> FloatArray:
        lag = np.arange(n)[None, :] - np.arange(n)[:, None] + radius
        return np.where((lag >= 0) & (lag <= 2 * radius), taps[np.clip(lag, 0, 2 * radius)], 0.0)

    nu, nv = x.shape[:2]
    along_u = (band(nu) @ x.reshape(nu, -1)).reshape(x.shape)
    return np.asarray(np.matmul(band(nv), along_u), dtype=np.float64)


def sharp_scattering(
    bb: BroadBeam,
    depths: tuple[FloatArray, FloatArray],
    t_mat: FloatArray,
    tw: FloatArray,
    ell: FloatArray,
    inside: npt.NDArray[np.bool_],
    h: float,
) -> FloatArray:
    """The lateral structure of the scattering [u, v, d] that the redefinition carries: the scattering power
    where the electrons at each point have the mean energy of the pencils that reach it (their effective depth
    averaged over the pencils' spread there), less its average over ``SMOOTH_MM``."""
    weights = _inside_weights(inside, SMOOTH_MM / h)
    material = split_lateral(t_mat, inside, SMOOTH_MM / h, weights)[1]
    material[np.abs(material) < _TISSUE] = 0.0
    if not material.any():
        return np.zeros_like(material)  # laterally uniform (water, slabs): nothing to redefine
    zeff, water = depths
    a0, a1, a2, el = plane_moments(tw, ell, inside)
    sig = np.sqrt(np.maximum(0.5 * (el * el * a0 - 2 * el * a1 + a2), 0.0))
    mixed = _mixed_excess(zeff - water, weights[0], sig, h)
    t_mixed = scattering_power_water(bb.energy_at(np.minimum(water + mixed, bb.sigma_frozen_mm)))
    t_water = scattering_power_water(bb.energy_at(np.minimum(water, bb.sigma_frozen_mm)))
    energy = split_lateral((t_mixed - t_water) * t_mat, inside, SMOOTH_MM / h, weights)[1]
    return np.asarray(t_mixed * material + energy, dtype=np.float64)


def _mixed_excess(excess: FloatArray, m: FloatArray, sig: FloatArray, h: float) -> FloatArray:
    """The effective depth the heterogeneities added (``excess`` [u, v, d]) averaged over the pencils in the
    patient (``m``) within each plane's spread ``sig`` (on the ladder; the planes of one rung at once)."""
    mixed = excess.copy()
    ou = np.arange(excess.shape[0], dtype=np.float64) * h
    ov = np.arange(excess.shape[1], dtype=np.float64) * h
    planes = np.nonzero(sig >= 0.3 * h)[0]
    # the pencils' spread on the ladder
    rungs = np.array([round(math.log(float(sig[k]) / (0.3 * h)) / math.log(_RATIO)) for k in planes], dtype=int)
    md, xd = np.moveaxis(m, -1, 0), np.moveaxis(excess, -1, 0)
    for r in np.unique(rungs):
        sel = planes[rungs == r]
        gu, gv = _blur(ou, h, 0.3 * h * _RATIO ** int(r)), _blur(ov, h, 0.3 * h * _RATIO ** int(r))
        mk, xk = md[sel], xd[sel]
        den = gu @ mk @ gv.T
        num = gu @ (xk * mk) @ gv.T
        mixed[..., sel] = np.moveaxis(np.where(den > 1e-6, num / np.maximum(den, 1e-6), xk), 0, -1)
    return mixed


def plane_moments(
    tw: FloatArray, ell: FloatArray, inside: npt.NDArray[np.bool_] | FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Per plane, the mean over the pencils in the patient (or weighted by ``inside`` [u, v, d]) of the
    cumulative moments A0, A1, A2 of the scattering ``tw`` [u, v, d] about the path ``ell`` [u, v, d], and the
    mean path."""
    m = inside.astype(np.float64)
    n_in = np.maximum(m.sum(axis=(0, 1)), 1e-12)
    buf = np.empty_like(tw)
    moments = []
    for weight in (None, ell, ell * ell):
        np.cumsum(tw if weight is None else np.multiply(tw, weight, out=buf), axis=-1, out=buf)
        moments.append(np.multiply(buf, m, out=buf).sum(axis=(0, 1)) / n_in)
    return moments[0], moments[1], moments[2], np.asarray(ell.mean(axis=(0, 1)), dtype=np.float64)


def _laplacian(eps: FloatArray, inside: npt.NDArray[np.bool_]) -> FloatArray:
    """Σ over the four neighbours of (ε_n − ε), only between cells both inside (no flux through the skin), per
    cell² [u, v, ...]."""
    out = np.zeros_like(eps)
    for axis in (0, 1):
        n = eps.shape[axis]
        a = [slice(None)] * eps.ndim
        b = [slice(None)] * eps.ndim
        a[axis], b[axis] = slice(0, n - 1), slice(1, n)
        ta, tb = tuple(a), tuple(b)
        diff = np.subtract(eps[tb], eps[ta])
        diff *= inside[ta] & inside[tb]
        out[ta] += diff
        out[tb] -= diff
    return out


def _blur(offsets: FloatArray, h: float, sigma: float) -> FloatArray:
    """G[o, i]: the share of a pencil of width h at offsets[i] that a Gaussian of σ ``sigma`` lays on offsets[o].
    On a lattice of step h it depends on o − i only: the erf runs once per difference."""
    s = math.sqrt(2.0) * max(sigma, 1e-6)
    n = len(offsets)
    if n > 1 and np.all(np.abs(np.diff(offsets) - h) <= 1e-9 * h):
        diff = h * np.arange(1 - n, n, dtype=np.float64)
        g = 0.5 * (erf((diff + h / 2) / s) - erf((diff - h / 2) / s))
        return np.asarray(g[np.arange(n)[:, None] - np.arange(n)[None, :] + (n - 1)], dtype=np.float64)
    diff = offsets[:, None] - offsets[None, :]
    return np.asarray(0.5 * (erf((diff + h / 2) / s) - erf((diff - h / 2) / s)), dtype=np.float64)


def _add_blurred(
    ratio: FloatArray,
    targets: npt.NDArray[np.intp],
    scale: FloatArray,
    src: FloatArray,
    s_iso: FloatArray,
    ladder: list[FloatArray],
    lattice: tuple[FloatArray, FloatArray, int, int, float],
) -> None:
    """ratio[z] += scale · (src blurred by a Gaussian of σ s_iso[z]) for each target plane z; ``src`` is the
    pencils' block, at (iu0, iv0) of the output lattice ``lattice`` (uo, vo, iu0, iv0, h). σ on a geometric
    ladder from a third of a cell (finer is no blur on this lattice), neighbouring rungs shared linearly; the
    ladder's matrices (u and v, stacked by rung) are kept in ``ladder`` for the next block."""
    uo, vo, iu0, iv0, h = lattice
    rows, cols = np.nonzero(src.any(axis=1))[0], np.nonzero(src.any(axis=0))[0]
    src = src[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # the rest of the source is zero
    bu, bv = slice(iu0 + rows[0], iu0 + rows[-1] + 1), slice(iv0 + cols[0], iv0 + cols[-1] + 1)
    smin = 0.3 * h
    t = np.log(np.maximum(s_iso, smin) / smin) / math.log(_RATIO)
    rung = np.floor(t).astype(np.int64)
    frac = t - rung
    low, top = int(rung.min()), int(rung.max()) + 2
    if not ladder or len(ladder[0]) < top:
        start = len(ladder[0]) if ladder else 0
        more = [(_blur(uo, h, smin * _RATIO**r), _blur(vo, h, smin * _RATIO**r)) for r in range(start, top)]
        new = [np.stack([g[i] for g in more]) for i in (0, 1)]
        ladder[:] = [np.concatenate([ladder[i], new[i]]) for i in (0, 1)] if ladder else new
    # the rest of the source is zero: only the pencils' block of the matrices counts
    blurred = ladder[0][low:top, :, bu] @ src @ ladder[1][low:top, :, bv].transpose(0, 2, 1)
    peak = np.maximum(blurred.max(axis=(1, 2)), -blurred.min(axis=(1, 2)))
    # a block that changes a plane by less than a tenth of a percent anywhere leaves it alone
    keep = np.nonzero(~(scale * np.maximum(peak[rung - low], peak[rung + 1 - low]) < _NEGLIGIBLE))[0]
    part, other = np.empty_like(blurred[0]), np.empty_like(blurred[0])
    for j in keep:
        r, f = int(rung[j]) - low, float(frac[j])
        np.multiply(blurred[r], 1.0 - f, out=part)
        part += np.multiply(blurred[r + 1], f, out=other)
        part *= scale[j]
        ratio[targets[j]] += part


def _block_sums(x: FloatArray, block: int) -> FloatArray:
    """x [u, v, d] summed over each ``block`` planes along d, in order (as each block's own sum), [u, v, blocks]."""
    nb = -(-x.shape[-1] // block)
    padded = np.zeros((*x.shape[:-1], nb * block))
    padded[..., : x.shape[-1]] = x
    planes = padded.reshape(*x.shape[:-1], nb, block)
    out = planes[..., 0].copy()
    for j in range(1, block):
        out += planes[..., j]
    return out


def fluence_ratio(
    sharp: FloatArray,
    inside: npt.NDArray[np.bool_],
    moments: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
    geometry: tuple[FloatArray, float, float],
    lattice: tuple[FloatArray, FloatArray, int, int],
    theta0_2: float,
) -> FloatArray:
    """Relative electron fluence [d, uo, vo] from the sharp scattering ``sharp`` [u, v, d] (polar, per plane) of
    the pencils' lattice. ``moments``: the planes' mean cumulative A0, A1, A2 of the scattering power and the
    path along the ray from the first plane (:func:`plane_moments`); ``geometry``: plane distances from the
    source, the isocenter distance and the lattice step there; ``lattice``: the output offsets and where the
    pencils' block starts in it; ``theta0_2``: the in-air angular variance (projected)."""
    d, sad, h = geometry
    uo, vo, iu0, iv0 = lattice
    a0, a1, a2, ell = moments
    nd = len(d)
    step = float(ell[1] - ell[0]) if nd > 1 else 1.0
    block = max(1, round(BLOCK_MM / max(step, 1e-6)))
    lap = _laplacian(0.5 * sharp, inside)  # projected ε: per cell² of the isocenter lattice
    scale = (sad / d) ** 2 / (h * h)  # → per mm² at the plane
    lap *= scale[None, None, :]
    sources = _block_sums(lap, block)
    ratio = np.zeros((nd, len(uo), len(vo)), dtype=np.float64)
    ladder: list[FloatArray] = []
    for k0 in range(0, nd, block):
        src_small = sources[:, :, k0 // block]
        if 0.5 * float(np.abs(src_small).max()) * float(ell[-1] - ell[k0]) ** 2 < _NEGLIGIBLE:
            continue
        kc = (k0 + min(k0 + block, nd) - 1) / 2.0
        lc = float(np.interp(kc, np.arange(nd), ell))
        a0c, a1c, a2c = (float(np.interp(kc, np.arange(nd), m)) for m in (a0, a1, a2))
        targets = np.nonzero(ell > lc + 0.5 * step)[0]
        if targets.size == 0:
            continue
        length = ell[targets] - lc
        lz = ell[targets]
        s2 = (0.5 * a0c + theta0_2) * length**2 + 0.5 * (
            lz**2 * (a0[targets] - a0c) - 2 * lz * (a1[targets] - a1c) + (a2[targets] - a2c)
        )
        s_iso = np.sqrt(np.maximum(s2, 1e-6)) * sad / d[targets]
        _add_blurred(ratio, targets, 0.5 * length**2, src_small, s_iso, ladder, (uo, vo, iu0, iv0, h))
    ratio += 1.0
    return np.maximum(ratio, 0.0, out=ratio)


def _plane_blur(
    x: FloatArray, s_iso: FloatArray, blurs: dict[int, tuple[FloatArray, FloatArray]], h: float
) -> FloatArray:
    """x [u, v, d] blurred in each plane by a Gaussian of σ ``s_iso[d]`` (lattice units of ``h``), the σ on the
    ladder, the planes of one rung at once; [u, v, d] out."""
    out = np.ascontiguousarray(np.moveaxis(x, -1, 0))  # [d, u, v]
    ou = np.arange(x.shape[0], dtype=np.float64) * h
    ov = np.arange(x.shape[1], dtype=np.float64) * h
    smin = 0.3 * h
    rung = np.round(np.log(np.maximum(s_iso, smin) / smin) / math.log(_RATIO)).astype(np.int64)
    rung[s_iso < smin] = -1  # finer than the lattice: left as it is
    for r in np.unique(rung[rung >= 0]):
        r = int(r)
        if r not in blurs:
            blurs[r] = (_blur(ou, h, smin * _RATIO**r), _blur(ov, h, smin * _RATIO**r))
        gu, gv = blurs[r]
        sel = np.nonzero(rung == r)[0]
        out[sel] = gu @ out[sel] @ gv.T  # the rungs' planes are disjoint: each read before it is written
    return np.moveaxis(out, 0, -1)


def range_change(
    bb: BroadBeam,
    zeff: FloatArray,
    excess: FloatArray,
    weight: FloatArray,
    moments: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
    geometry: tuple[FloatArray, float, float],
    theta0_2: float,
    own: tuple[FloatArray, FloatArray] | None = None,
) -> FloatArray:
    """Dose to add [u, v, d] on the pencils' lattice (relative to the reference field's maximum) so the electrons
    reaching each point carry the range they kept through the heterogeneities they crossed.

    The pencils read the broad beam's depth dose at their own effective depth ``zeff`` and spread it with their
    whole σ from the surface, so behind a small insert the shorter (bone) or longer (air) range of the electrons
    that crossed it is shared with the pencils beside it as far as σ reaches. The electrons that reach a point
    behind the insert crossed it within the spread they gained since its plane, s (as in :func:`fluence_ratio`),
    which Shiu & Hogstrom's redefinition follows by carrying each pencil's energy plane by plane. To first order:
    the change of the depth dose that the heterogeneities' effective depth (``excess``) makes, averaged over the
    pencils around each point within s, less the same averaged within the pencils' whole σ, times the fluence
    there. A laterally uniform change (water, a slab, the skin) averages alike either way and adds nothing.
    s follows the electrons that crossed the heterogeneities with their own scattering (``own``: each pencil's
    scattering per plane and path, [u, v, d]; weighted by the effective depth each gained or lost): behind air
    they carry less angle than the water beside them and keep their range in a narrower column, behind bone
    more. Their scattering is taken at R90's energy beyond it, as for the pencils' σ. Without ``own``, the
    planes' mean (``moments``).
    ``weight``: each pencil's share in the medium [u, v, d]; ``moments``, ``geometry`` as :func:`fluence_ratio`.
    """
    d, sad, h = geometry
    a0, a1, a2, ell = moments
    step = np.abs(np.diff(excess, axis=-1, prepend=0.0)).sum(axis=(0, 1))  # where along the axis it is added
    if not step.any():
        return np.zeros_like(zeff)
    plane = np.arange(len(d), dtype=np.float64)
    kc = np.minimum(np.cumsum(step * plane) / np.maximum(np.cumsum(step), 1e-12), plane)  # its mean plane so far
    lc = np.interp(kc, plane, ell)
    a0c, a1c, a2c = (np.interp(kc, plane, m) for m in (a0, a1, a2))
    length = np.maximum(ell - lc, 0.0)
    full2 = 0.5 * (ell**2 * a0 - 2 * ell * a1 + a2) + theta0_2 * ell**2
    crossed = np.abs(excess) * weight
    if own is not None and crossed.any():  # the electrons that crossed: their own scattering, not the planes'
        bu, bv = (np.nonzero(crossed.any(axis=axes))[0] for axes in ((1, 2), (0, 2)))
        box = (slice(bu[0], bu[-1] + 1), slice(bv[0], bv[-1] + 1))  # the pencils that crossed
        tw_own = own[0][box].copy()
        deep = zeff[box] > bb.sigma_frozen_mm  # scattering at R90's energy beyond it
        at_r90 = scattering_power_water(bb.energy_at(np.array([bb.sigma_frozen_mm])))
        tw_own[deep] *= at_r90 / scattering_power_water(bb.energy_at(zeff[box][deep]))
        a0, a1, a2, _ = plane_moments(tw_own, own[1][box], crossed[box])
        a0c, a1c, a2c = (np.interp(kc, plane, m) for m in (a0, a1, a2))
    s2 = (0.5 * a0c + theta0_2) * length**2 + 0.5 * (ell**2 * (a0 - a0c) - 2 * ell * (a1 - a1c) + (a2 - a2c))
    to_iso = sad / d
    fv = bb.virtual_ssd_mm
    q = weight * ((fv + zeff) / (fv + d - bb.reference_ssd_mm)) ** 2  # fluence, inverse square from the source
    change = q * (bb.electron_dose(zeff) - bb.electron_dose(zeff - excess))
    blurs: dict[int, tuple[FloatArray, FloatArray]] = {}
    narrow = np.sqrt(np.maximum(s2, 0.0)) * to_iso
    wide = np.sqrt(np.maximum(full2, 0.0)) * to_iso
    fluence = _plane_blur(q, wide, blurs, h)
    mean_narrow = _plane_blur(change, narrow, blurs, h) / np.maximum(_plane_blur(q, narrow, blurs, h), 1e-9)
    mean_wide = _plane_blur(change, wide, blurs, h) / np.maximum(fluence, 1e-9)
    return np.asarray(fluence * (mean_narrow - mean_wide), dtype=np.float64)
