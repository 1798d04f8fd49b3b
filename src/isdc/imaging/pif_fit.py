"""Source fits in detector space with free positions: PIF gradients and a joint Poisson fit.

The expected counts of a shadowgram are a sum of source shadows and background components::

    mu = sum_s R_s t W r(tan_y_s, tan_z_s) + sum_j B_j b_j,     r = pif cos(theta) / N

(:func:`isdc.imaging.pif.response`).  :func:`isdc.imaging.decode.fit_sources` fits the
rates ``R`` and scales ``B`` for fixed positions; :func:`fit_positions` also fits the
positions of chosen sources, which is what gives coded-mask positions their accuracy:
the whole shadow pattern of every pixel constrains the position, not only the few sky
pixels of the decoded peak.

Gradient of the PIF
-------------------
``pif = Oz @ T @ Oy.T`` with ``Oz[r, j]`` the fraction of the active width of pixel row
``r``, shifted by ``F tan_z`` into the mask plane, that falls on element row ``j``.  The
covered length ``min(hi, e_j+1) - max(lo, e_j)`` of an interval ``[lo, hi]`` moving with
the shift changes at rate ``1{e_j < hi < e_j+1} - 1{e_j < lo < e_j+1}`` (the moving edges
that are inside the element), so::

    d pif / d tan_z = F/a (Dz @ T @ Oy.T),   d pif / d tan_y = F/a (Oz @ T @ Dy.T)

with ``D`` those indicator differences and ``a`` the active width: exact wherever no pixel
edge sits exactly on an element edge (a set of measure zero; the PIF is piecewise
bilinear in the shift).

Fit
---
Poisson maximum likelihood (Cash statistic) over pixels with ``W > 0`` by Fisher scoring
with a Levenberg-Marquardt damping on the scaled Fisher matrix; position steps are limited
to half a sky pixel per iteration (the PIF is only piecewise linear) and positions to
``max_offset_tan`` from their start.  Errors and the covariance come from the Fisher
information at the optimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isdc.imaging.geometry import CodedMaskGeometry
from isdc.imaging.pif import cos_theta, overlap_fractions, response

__all__ = ["pif_gradient", "response_gradient", "PositionFit", "fit_positions", "independent_components"]


def _overlap_derivative(centres: np.ndarray, width: float, edges: np.ndarray) -> np.ndarray:
    """d(overlap fraction)/d(shift) of intervals ``[c - w/2, c + w/2]`` with bins ``edges`` (per mm)."""
    c = np.asarray(centres, dtype=np.float64)[:, None]
    lo, hi = c - 0.5 * width, c + 0.5 * width
    e0, e1 = edges[None, :-1], edges[None, 1:]
    upper = (hi > e0) & (hi < e1)
    lower = (lo > e0) & (lo < e1)
    return (upper.astype(np.float64) - lower) / width


def pif_gradient(geometry: CodedMaskGeometry, tan_y: float, tan_z: float):
    """PIF of a point source and its derivatives with respect to the direction.

    Parameters
    ----------
    geometry : CodedMaskGeometry
    tan_y, tan_z : float
        Direction in the instrument frame.

    Returns
    -------
    pif, d_tan_y, d_tan_z : numpy.ndarray
        float64 arrays of shape ``geometry.shape``: the PIF (identical to
        :func:`isdc.imaging.pif.pif`) and its partial derivatives (per unit tan); 0 in gaps.
    """
    ty, tz = float(tan_y), float(tan_z)
    if not (np.isfinite(ty) and np.isfinite(tz)):
        raise ValueError(f"source direction must be finite, got tan_y={tan_y}, tan_z={tan_z}")
    f = geometry.mask_distance_mm
    zc, yc = geometry.pixel_centres_mm
    ez, ey = geometry.mask_edges_mm
    a = geometry.pixel_active_mm
    oz = overlap_fractions(zc + f * tz, a, ez)
    oy = overlap_fractions(yc + f * ty, a, ey)
    dz = _overlap_derivative(zc + f * tz, a, ez)
    dy = _overlap_derivative(yc + f * ty, a, ey)
    zero = np.zeros(geometry.shape)
    rz = np.flatnonzero(oz.any(axis=0) | dz.any(axis=0))
    ry = np.flatnonzero(oy.any(axis=0) | dy.any(axis=0))
    if rz.size == 0 or ry.size == 0:
        return zero, zero.copy(), zero.copy()
    sz = slice(rz[0], rz[-1] + 1)
    sy = slice(ry[0], ry[-1] + 1)
    t = geometry.mask[sz, sy]
    oy_t = np.ascontiguousarray(oy[:, sy].T)
    zt = oz[:, sz] @ t
    p = zt @ oy_t
    d_ty = zt @ np.ascontiguousarray(dy[:, sy].T)
    d_tz = (dz[:, sz] @ t) @ oy_t
    d_ty *= f
    d_tz *= f
    real = geometry.real_pixels
    for arr in (p, d_ty, d_tz):
        arr[~real] = 0.0
    return p, d_ty, d_tz


def response_gradient(geometry: CodedMaskGeometry, tan_y: float, tan_z: float):
    """:func:`isdc.imaging.pif.response` (``pif cos(theta) / N``) and its derivatives.

    Returns
    -------
    r, d_tan_y, d_tan_z : numpy.ndarray
        float64 arrays of shape ``geometry.shape``.
    """
    p, p_y, p_z = pif_gradient(geometry, tan_y, tan_z)
    c = float(cos_theta(tan_y, tan_z))
    n = geometry.n_pixels
    c3 = c**3
    # d cos / d tan_y = -tan_y cos^3
    r_y = (p_y * c - p * (float(tan_y) * c3)) / n
    r_z = (p_z * c - p * (float(tan_z) * c3)) / n
    p *= c / n
    return p, r_y, r_z


def independent_components(components, use: np.ndarray | None = None, rtol: float = 1e-6) -> list[int]:
    """Indices of a maximal linearly independent subset of maps, kept in order.

    Parameters
    ----------
    components : sequence of numpy.ndarray
        Maps of one shape (e.g. background models).
    use : numpy.ndarray of bool, optional
        Pixels to compare on (default all).
    rtol : float
        A map is dependent when its residual after projection on the kept ones is below
        ``rtol`` times its norm.
    """
    kept: list[int] = []
    basis: list[np.ndarray] = []
    for i, comp in enumerate(components):
        v = np.asarray(comp, dtype=np.float64)
        v = v[use] if use is not None else v.ravel()
        norm = float(np.linalg.norm(v))
        if norm == 0.0 or not np.isfinite(norm):
            continue
        r = v / norm
        for q in basis:
            r = r - (q @ r) * q
        rn = float(np.linalg.norm(r))
        if rn > rtol:
            basis.append(r / rn)
            kept.append(i)
    return kept


@dataclass(frozen=True, eq=False)
class PositionFit:
    """Result of :func:`fit_positions`.

    Attributes
    ----------
    tan_y, tan_z : numpy.ndarray
        Fitted (or fixed) source directions, shape (n_src,).
    position_covariance : numpy.ndarray
        Covariance of (tan_y, tan_z) per source, shape (n_src, 2, 2); 0 for fixed sources.
    free : numpy.ndarray
        bool (n_src,): which positions were fitted.
    rates, errors : numpy.ndarray
        Source rates and 1-sigma errors, counts/s (on-axis open-mask convention), (n_src,).
    background, background_errors : numpy.ndarray
        Background scales and errors, (n_bkg,).
    covariance : numpy.ndarray
        Covariance of (rates, background, positions of free sources as ty, tz pairs).
    responses : numpy.ndarray
        Per-unit-rate responses at the fitted positions, (n_src, n_z, n_y).
    source_model, background_model : numpy.ndarray
        Expected counts of the sources and of the background, (n_z, n_y); 0 where W = 0.
    cash : float
        ``2 sum (mu - D ln mu)`` at the optimum.
    n_iter : int
    converged : bool
    """

    tan_y: np.ndarray
    tan_z: np.ndarray
    position_covariance: np.ndarray
    free: np.ndarray
    rates: np.ndarray
    errors: np.ndarray
    background: np.ndarray
    background_errors: np.ndarray
    covariance: np.ndarray
    responses: np.ndarray
    source_model: np.ndarray
    background_model: np.ndarray
    cash: float
    n_iter: int
    converged: bool

    @property
    def snr(self) -> np.ndarray:
        """Rate / error per source."""
        return np.divide(self.rates, self.errors, out=np.zeros_like(self.rates), where=self.errors > 0)


class _Model:
    """Responses (and their gradients for free sources) on the used pixels."""

    def __init__(self, geometry, use, tw, free):
        self.geometry, self.use, self.tw, self.free = geometry, use, tw, free

    def evaluate(self, ty, tz, cache=None):
        n = ty.size
        r = np.empty((n, int(self.use.sum())))
        grads = []
        full = []
        for s in range(n):
            key = (float(ty[s]), float(tz[s]), bool(self.free[s]))
            hit = None if cache is None else cache.get(key)
            if hit is None:
                if self.free[s]:
                    rr, ry, rz = response_gradient(self.geometry, ty[s], tz[s])
                    hit = (rr, ry[self.use] * self.tw, rz[self.use] * self.tw)
                else:
                    hit = (response(self.geometry, ty[s], tz[s]), None, None)
                if cache is not None:
                    cache[key] = hit
            full.append(hit[0])
            r[s] = hit[0][self.use] * self.tw
            if self.free[s]:
                grads.append((hit[1], hit[2]))
        return r, grads, full


def fit_positions(shadowgram, weights, geometry: CodedMaskGeometry, tan_y, tan_z, free, background_model,
                  exposure_s: float, *, max_offset_tan: float | None = None, max_iter: int = 40,
                  tol: float = 0.01) -> PositionFit:
    """Fit source rates, background scales and the positions of `free` sources to a shadowgram.

    Parameters
    ----------
    shadowgram : numpy.ndarray
        Counts per pixel, shape ``geometry.shape`` (gapped layout, [Z, Y]).
    weights : numpy.ndarray
        Efficiency per pixel; pixels with 0 are excluded.
    geometry : CodedMaskGeometry
    tan_y, tan_z : array_like
        Starting (or fixed) source directions, shape (n_src,).
    free : array_like of bool
        Which positions to fit, shape (n_src,).
    background_model : numpy.ndarray or None
        Background components per unit scale, (n_z, n_y) or (n_bkg, n_z, n_y) (e.g.
        ``weights`` for a flat background).  Must be linearly independent of each other
        (see :func:`independent_components`).
    exposure_s : float
        Exposure, s.
    max_offset_tan : float, optional
        Largest distance (per axis, tan units) a free source may move from its start
        (default: 2 sky pixels).
    max_iter : int
        Largest number of Fisher-scoring iterations.
    tol : float
        Converged when every parameter step is below ``tol`` times its error, or when the
        Cash statistic improved by less than ``tol**2`` twice in a row.

    Returns
    -------
    PositionFit
    """
    d = np.asarray(shadowgram, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if d.shape != geometry.shape or w.shape != geometry.shape:
        raise ValueError(f"{geometry.name}: shadowgram {d.shape} / weights {w.shape} != detector {geometry.shape}")
    if not np.all(np.isfinite(d)) or not np.all(np.isfinite(w)) or w.min() < 0:
        raise ValueError(f"{geometry.name}: counts and efficiency must be finite, efficiency >= 0")
    t = float(exposure_s)
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"exposure must be positive, got {exposure_s}")
    ty0 = np.atleast_1d(np.asarray(tan_y, dtype=np.float64)).copy()
    tz0 = np.atleast_1d(np.asarray(tan_z, dtype=np.float64)).copy()
    free = np.broadcast_to(np.asarray(free, dtype=bool), ty0.shape).copy()
    if tz0.shape != ty0.shape or ty0.ndim != 1:
        raise ValueError("tan_y and tan_z must be 1-D arrays of one length")
    if background_model is None:
        bkg = np.zeros((0,) + d.shape)
    else:
        bkg = np.asarray(background_model, dtype=np.float64)
        bkg = bkg[None] if bkg.ndim == 2 else bkg
        if bkg.shape[1:] != d.shape:
            raise ValueError(f"background model shape {bkg.shape} does not match shadowgram {d.shape}")
    n_src, n_bkg = ty0.size, bkg.shape[0]
    if n_src + n_bkg == 0:
        raise ValueError("nothing to fit: no sources and no background")
    max_off = 2.0 * geometry.pixel_tan if max_offset_tan is None else float(max_offset_tan)
    max_step = 0.5 * geometry.pixel_tan
    use = w > 0
    y = d[use]
    tw = t * w[use]
    b = bkg[:, use]
    model = _Model(geometry, use, tw, free)
    cache: dict = {}
    floor = 1e-6 * max(float(y.mean()) if y.size else 0.0, 1e-6)
    n_free = int(free.sum())
    fi = np.flatnonzero(free)

    def linear_design(r):
        return np.concatenate([r, b]) if n_bkg else r

    def cash_of(mu):
        mu = np.maximum(mu, floor)
        return float(2.0 * np.sum(mu - y * np.log(mu)))

    # Start: linear parameters for the starting positions (a few scoring iterations).
    ty, tz = ty0.copy(), tz0.copy()
    r, grads, full = model.evaluate(ty, tz, cache)
    a = linear_design(r)
    if np.linalg.matrix_rank(a @ a.T) < a.shape[0]:
        raise ValueError("degenerate fit: source responses / background components are linearly dependent")
    x = np.linalg.lstsq(a.T, y, rcond=None)[0]
    for _ in range(3):
        mu = np.maximum(x @ a, floor)
        aw = a / mu
        x = np.linalg.solve(aw @ a.T, aw @ y)
    mu = x @ a
    cash = cash_of(mu)
    lam = 1e-3
    converged = False
    n_iter = 0
    flat_steps = 0
    for n_iter in range(1, max_iter + 1):
        rates = x[:n_src]
        cols = [a]
        if n_free:
            g = np.empty((2 * n_free, y.size))
            for k, (gy, gz) in enumerate(grads):
                s = fi[k]
                g[2 * k] = rates[s] * gy
                g[2 * k + 1] = rates[s] * gz
            cols.append(g)
        jac = np.concatenate(cols) if len(cols) > 1 else a
        mu_c = np.maximum(mu, floor)
        grad = jac @ (y / mu_c - 1.0)
        fisher = (jac / mu_c) @ jac.T
        scale = np.sqrt(np.maximum(np.diag(fisher), 1e-300))
        fs = fisher / np.outer(scale, scale)
        gs = grad / scale
        accepted = False
        for _ in range(12):
            try:
                step = np.linalg.solve(fs + lam * np.eye(fs.shape[0]), gs) / scale
            except np.linalg.LinAlgError:
                lam *= 10.0
                continue
            x_new = x + step[: n_src + n_bkg]
            ty_new, tz_new = ty.copy(), tz.copy()
            if n_free:
                dp = step[n_src + n_bkg:].reshape(n_free, 2)
                np.clip(dp, -max_step, max_step, out=dp)
                ty_new[fi] = np.clip(ty[fi] + dp[:, 0], ty0[fi] - max_off, ty0[fi] + max_off)
                tz_new[fi] = np.clip(tz[fi] + dp[:, 1], tz0[fi] - max_off, tz0[fi] + max_off)
                r_new, grads_new, full_new = model.evaluate(ty_new, tz_new, cache)
                a_new = linear_design(r_new)
            else:
                r_new, grads_new, full_new, a_new = r, grads, full, a
            mu_new = x_new @ a_new
            cash_new = cash_of(mu_new)
            if cash_new <= cash + 1e-9 * abs(cash):
                accepted = True
                break
            lam *= 10.0
        if not accepted:
            converged = True  # no downhill step exists at machine precision: at the optimum
            break
        # Convergence: every step below tol x its standard error.
        with np.errstate(divide="ignore", invalid="ignore"):
            cov_diag = np.diag(np.linalg.pinv(fisher))
        small = np.abs(step) <= tol * np.sqrt(np.maximum(cov_diag, 1e-300))
        x, ty, tz, r, grads, full, a, mu = x_new, ty_new, tz_new, r_new, grads_new, full_new, a_new, mu_new
        flat_steps = flat_steps + 1 if cash - cash_new < tol * tol else 0
        cash = cash_new
        lam = max(lam / 10.0, 1e-9)
        if np.all(small) or flat_steps >= 2:
            converged = True
            break
        if len(cache) > 4 * max(n_src, 1) + 64:
            cache.clear()
    # Fisher information at the optimum (positions' columns scale with the rates).
    rates = x[:n_src]
    cols = [a]
    if n_free:
        g = np.empty((2 * n_free, y.size))
        for k, (gy, gz) in enumerate(grads):
            g[2 * k] = rates[fi[k]] * gy
            g[2 * k + 1] = rates[fi[k]] * gz
        cols.append(g)
    jac = np.concatenate(cols) if len(cols) > 1 else a
    mu_c = np.maximum(mu, floor)
    fisher = (jac / mu_c) @ jac.T
    try:
        cov = np.linalg.inv(fisher)
    except np.linalg.LinAlgError:
        cov = np.linalg.pinv(fisher)
    err = np.sqrt(np.maximum(np.diag(cov), 0.0))
    pos_cov = np.zeros((n_src, 2, 2))
    for k, s in enumerate(fi):
        i0 = n_src + n_bkg + 2 * k
        pos_cov[s] = cov[i0:i0 + 2, i0:i0 + 2]
    responses = np.stack(full) if n_src else np.zeros((0,) + d.shape)
    src_model = np.zeros(d.shape)
    bkg_model = np.zeros(d.shape)
    if n_src:
        src_model[use] = rates @ r
    if n_bkg:
        bkg_model[use] = x[n_src:] @ b
    return PositionFit(tan_y=ty, tan_z=tz, position_covariance=pos_cov, free=free, rates=rates.copy(),
                       errors=err[:n_src], background=x[n_src:n_src + n_bkg].copy(),
                       background_errors=err[n_src:n_src + n_bkg], covariance=cov, responses=responses,
                       source_model=src_model, background_model=bkg_model, cash=cash_of(mu), n_iter=n_iter,
                       converged=converged)
