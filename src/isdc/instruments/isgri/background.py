"""ISGRI background model of a shadowgram (level BKG): IC map per band, fitted scale.

Pure numpy. The IC structure ISGR-BKG.-MOD holds, per energy slice, the background rate
per pixel at unit efficiency (counts/s); `band_map` makes the map of a user band from the
slices it overlaps. `fit_background` scales it to one ScW's shadowgram D:

    D ~ s M            (default)      or      D ~ s M + c W      (flat=True),
    M = map x W x ONTIME,  W the efficiency map.

The scale s is the Poisson maximum-likelihood solution (weighted least squares with
weights 1 / model, iterated), with pixels more than `clip_sigma` from the model left out
(remnants of hot pixels, a very bright source's lit pixels): a source's coded modulation
averages out over the detector, so its pixel pattern does not drive the fit. Its mean
counts (R <PIF> t W / N per pixel, a term proportional to W) do enter s: the model is
"background + the sources' mean", the convention of OSA's ISGRI background correction.
That part is invisible to coded-mask imaging (balanced decoding removes anything
proportional to W), and the IMA and SPE levels refit the scale of this shape jointly with
the sources' PIFs and a flat term.

With `flat=True` the flat term c W takes the sources' mean and s measures the background
alone, through the background's structure (module efficiencies, edges, gradients; ~9% rms
in the simulator). That estimate is unbiased on average over source positions, but for
one position a source's shadow correlates by chance with the structure (a Crab with 20%
of the counts moves s by ~6%), its statistical error is ~10x larger, and noise in the IC
map dilutes the structure and biases s low (errors in variables: a map with 17% noise per
pixel gives s ~0.4). It is the right tool only with a map of high statistics. When M
carries no structure beyond W, s and c cannot be told apart and the fit uses s alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["band_map", "BackgroundFit", "fit_background"]


def band_map(e_min, e_max, maps, e1: float, e2: float) -> np.ndarray:
    """Background rate map of the band e1-e2 keV from IC slices.

    e_min, e_max : (k,) slice edges [keV]; maps : (k, ...) rate per pixel in each slice.
    Each slice contributes in proportion to the part of it inside the band (counts taken
    uniform in energy within a slice). ValueError when the band is outside the slices.
    """
    lo, hi = np.asarray(e_min, dtype=float), np.asarray(e_max, dtype=float)
    m = np.asarray(maps, dtype=float)
    if not (lo.shape == hi.shape and m.shape[0] == lo.size) or np.any(~(hi > lo)):
        raise ValueError("band_map: need k slices with E_MIN < E_MAX and k maps")
    frac = np.clip((np.minimum(hi, e2) - np.maximum(lo, e1)) / (hi - lo), 0.0, 1.0)
    covered = float(np.sum(frac * (hi - lo)))
    if covered < 0.999 * (e2 - e1):
        raise ValueError(f"band {e1:g}-{e2:g} keV is not covered by the background map slices "
                         f"({lo.min():g}-{hi.max():g} keV)")
    return np.tensordot(frac, m, axes=1)


@dataclass(frozen=True)
class BackgroundFit:
    """Fitted background of one shadowgram.

    model : background counts per pixel (s M); norm, norm_err : s and its 1-sigma error;
    flat : c (counts per unit efficiency); chi2 : reduced chi-square; n_pixels : pixels
    used after clipping; with_flat : whether the flat term was fitted.
    """

    model: np.ndarray
    norm: float
    norm_err: float
    flat: float
    chi2: float
    n_pixels: int
    with_flat: bool


def fit_background(counts, shape_model, efficiency, clip_sigma: float = 5.0, n_iter: int = 6,
                   flat: bool = False) -> BackgroundFit:
    """Fit D ~ s M + c W (or s M) to a shadowgram.

    counts : shadowgram D; shape_model : M (expected background counts up to the scale,
    e.g. map x W x ONTIME); efficiency : W (pixels with W <= 0 or M <= 0 are not used);
    all of one shape. Raises ValueError when fewer than 10 pixels are usable.
    """
    d = np.asarray(counts, dtype=float).ravel()
    m = np.asarray(shape_model, dtype=float).ravel()
    w = np.asarray(efficiency, dtype=float).ravel()
    if not (d.shape == m.shape == w.shape):
        raise ValueError(f"counts, model and efficiency shapes differ: {np.shape(counts)}, {np.shape(shape_model)}, "
                         f"{np.shape(efficiency)}")
    use = (w > 0) & (m > 0) & np.isfinite(d)
    if use.sum() < 10:
        raise ValueError(f"background fit: only {int(use.sum())} usable pixels")
    mu_, wu = m[use], w[use]
    # A flat term is separable from M only if M / W varies over the detector.
    ratio = mu_ / wu
    with_flat = flat and float(np.std(ratio)) > 1e-6 * float(np.mean(ratio))
    cols = [mu_, wu] if with_flat else [mu_]
    k = len(cols)
    du = d[use]
    keep = np.ones(du.size, dtype=bool)
    coef = np.array([du.sum() / mu_.sum(), 0.0])[:k]
    cov = np.zeros((k, k))

    def predict(c):
        return sum(ci * x for ci, x in zip(c, cols))

    for _ in range(max(n_iter, 1)):
        # Weights 1 / model: at the fixed point these are the Poisson likelihood equations.
        var = np.maximum(predict(coef), 1e-3)
        resid = (du - var) / np.sqrt(np.maximum(var, 1.0))
        new_keep = np.abs(resid) <= clip_sigma
        inv_var = np.where(new_keep, 1.0 / var, 0.0)
        # Normal equations by element-wise sums: BLAS calls on these small arrays cost more
        # than the work (thread wake-up, slow paths for tall matrices).
        wcols = [c * inv_var for c in cols]
        normal = np.array([[float((wcols[i] * cols[j]).sum()) for j in range(k)] for i in range(k)])
        rhs = np.array([float((wcols[i] * du).sum()) for i in range(k)])
        cov = np.linalg.inv(normal)
        coef_new = cov @ rhs
        done = np.array_equal(new_keep, keep) and np.allclose(coef_new, coef, rtol=1e-7, atol=0)
        keep, coef = new_keep, coef_new
        if done:
            break
    pred = np.maximum(predict(coef), 1e-3)
    chi2 = float((((du - pred) ** 2) / np.maximum(pred, 1.0))[keep].sum() / max(keep.sum() - k, 1))
    s = float(coef[0])
    model = np.zeros_like(d)
    model[use] = s * mu_
    return BackgroundFit(model.reshape(np.shape(counts)), s, float(np.sqrt(cov[0, 0])),
                         float(coef[1]) if with_flat else 0.0, chi2, int(keep.sum()), with_flat)
