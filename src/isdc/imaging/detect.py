"""Source detection on decoded sky images: peak search, PSF fit, iterative removal, identification.

Works on any coded-mask sky image in the OSA layout (significance, intensity, variance
maps on one grid): ours, OSA's single-ScW images and mosaics. Pure numpy/scipy; sky
coordinates come from a `astropy.wcs.WCS` passed in by the caller.

The point-spread function of a coded-mask image is the autocorrelation of the mask
element convolved with the pixel: for ISGRI, 12' FWHM (mask element at 3203 mm) on a
4.94' pixel grid, close to a Gaussian of sigma ~1.1 pixel. Each candidate's peak is
fitted with a 2-D Gaussian plus a constant on a small window: the fitted amplitude is
DETSIG (as OSA's source lists report), its centre the position. The fitted model is
subtracted before the next peak is searched, so the wings of a bright source are not
taken for sources.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

__all__ = ["Detection", "find_sources", "psla_arcmin", "identify", "PSLA_A", "PSLA_B", "PSLA_C"]

# Point-source location accuracy of ISGRI, 90% radius (Gros et al. 2003, A&A 411, L179
# fit): r90 = A * SNR**-B + C arcmin.
PSLA_A, PSLA_B, PSLA_C = 22.1, 0.95, 0.16


def psla_arcmin(snr) -> np.ndarray:
    """90% point-source location error radius (arcmin) at detection significance `snr`."""
    snr = np.maximum(np.asarray(snr, dtype=float), 1e-3)
    return PSLA_A * snr ** (-PSLA_B) + PSLA_C


@dataclass
class Detection:
    """One source found in a sky image (pixel coordinates 0-based, x = axis 1 / column)."""

    x: float
    y: float
    detsig: float  # fitted peak significance
    peak_pixel: float  # brightest-pixel significance before the fit
    sigma_px: float  # fitted Gaussian sigma (pixels)
    flux: float = np.nan  # fitted peak intensity (image units, e.g. counts/s)
    flux_err: float = np.nan  # sqrt(variance) at the fitted position
    fit_ok: bool = True


def _gauss(p, yy, xx):
    amp, x0, y0, s, c = p
    return amp * np.exp(-0.5 * ((xx - x0) ** 2 + (yy - y0) ** 2) / s**2) + c


def _fit_peak(img, y, x, half, sigma0, fit_sigma):
    ny, nx = img.shape
    y0, y1, x0, x1 = max(0, y - half), min(ny, y + half + 1), max(0, x - half), min(nx, x + half + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    win = img[y0:y1, x0:x1]
    good = np.isfinite(win)
    p0 = [img[y, x], float(x), float(y), sigma0, 0.0]
    lo = [0.0, x - 1.5, y - 1.5, 0.5 if fit_sigma else sigma0 - 1e-6, -np.inf]
    hi = [np.inf, x + 1.5, y + 1.5, 3.0 if fit_sigma else sigma0 + 1e-6, np.inf]

    def resid(p):
        return (_gauss(p, yy, xx) - win)[good]

    try:
        r = least_squares(resid, p0, bounds=(lo, hi), x_scale="jac")
        return r.x, bool(r.success)
    except ValueError:
        return np.array(p0), False


def find_sources(
    significance: np.ndarray,
    intensity: np.ndarray | None = None,
    variance: np.ndarray | None = None,
    *,
    threshold: float = 6.0,
    psf_sigma: float = 1.1,
    fit_sigma: bool = True,
    max_sources: int = 200,
    half_window: int = 3,
    valid: np.ndarray | None = None,
) -> list[Detection]:
    """Iteratively find and fit sources above `threshold` sigma.

    significance, intensity, variance : (ny, nx) maps on one grid (NaN = no data).
    psf_sigma : Gaussian sigma of the PSF in pixels (first guess when `fit_sigma`).
    valid : optional boolean map of usable pixels (e.g. exposure > 0).
    Returns detections brightest first; each detection's fitted model is removed from
    the residual significance (and intensity) maps before the next search.
    """
    sig = np.array(significance, dtype=float)
    bad = ~np.isfinite(sig)
    if valid is not None:
        bad |= ~np.asarray(valid, dtype=bool)
    sig[bad] = np.nan
    inten = None if intensity is None else np.array(intensity, dtype=float)
    out: list[Detection] = []
    ny, nx = sig.shape
    yy_all, xx_all = np.mgrid[0:ny, 0:nx]
    while len(out) < max_sources:
        search = np.where(np.isfinite(sig), sig, -np.inf)
        idx = int(np.argmax(search))
        y, x = divmod(idx, nx)
        peak = search[y, x]
        if not np.isfinite(peak) or peak < threshold:
            break
        p, ok = _fit_peak(sig, y, x, half_window, psf_sigma, fit_sigma)
        amp, xf, yf, s, _ = p
        det = Detection(float(xf), float(yf), float(amp), float(peak), float(s), fit_ok=ok)
        # Remove the fitted source from a box of +-5 sigma around it.
        r = int(np.ceil(5 * s)) + 1
        ya, yb, xa, xb = max(0, y - r), min(ny, y + r + 1), max(0, x - r), min(nx, x + r + 1)
        g = np.exp(-0.5 * ((xx_all[ya:yb, xa:xb] - xf) ** 2 + (yy_all[ya:yb, xa:xb] - yf) ** 2) / s**2)
        if inten is not None:
            pi, _ = _fit_peak(inten, y, x, half_window, s, False)
            # Same shape, position fixed to the significance fit: amplitude by linear least squares.
            gw = g[max(0, y - half_window) - ya : min(ny, y + half_window + 1) - ya,
                   max(0, x - half_window) - xa : min(nx, x + half_window + 1) - xa]
            iw = inten[max(0, y - half_window) : min(ny, y + half_window + 1),
                       max(0, x - half_window) : min(nx, x + half_window + 1)]
            m = np.isfinite(iw)
            A = np.stack([gw[m], np.ones(m.sum())], axis=1)
            coef, *_ = np.linalg.lstsq(A, iw[m], rcond=None)
            det.flux = float(coef[0])
            inten[ya:yb, xa:xb] -= coef[0] * g
        if variance is not None:
            yi, xi = int(round(yf)), int(round(xf))
            yi, xi = min(max(yi, 0), ny - 1), min(max(xi, 0), nx - 1)
            v = float(variance[yi, xi])
            det.flux_err = float(np.sqrt(v)) if v > 0 else np.nan
        sig[ya:yb, xa:xb] -= amp * g
        # Never pick the same peak twice: blank the core of a fitted source.
        core = (xx_all[ya:yb, xa:xb] - xf) ** 2 + (yy_all[ya:yb, xa:xb] - yf) ** 2 <= (1.5 * s) ** 2
        sig[ya:yb, xa:xb][core] = np.nan
        out.append(det)
    return out


def identify(
    ra: np.ndarray,
    dec: np.ndarray,
    snr: np.ndarray,
    cat_ra: np.ndarray,
    cat_dec: np.ndarray,
    cat_err_deg: np.ndarray | None = None,
    *,
    min_radius_arcmin: float = 3.0,
    psla_factor: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Match detections to catalogue sources.

    A detection is identified with the nearest catalogue source within
    max(min_radius, psla_factor * r90(SNR)) plus the catalogue's own error radius.
    Returns (index into the catalogue or -1, distance in arcmin).
    """
    ra, dec, snr = (np.atleast_1d(np.asarray(a, dtype=float)) for a in (ra, dec, snr))
    cra, cdec = np.radians(np.asarray(cat_ra, float)), np.radians(np.asarray(cat_dec, float))
    if cat_err_deg is None:
        cat_err_deg = np.zeros(len(cra))
    idx = np.full(len(ra), -1)
    dist = np.full(len(ra), np.nan)
    if len(cra) == 0:
        return idx, dist
    for i in range(len(ra)):
        r1, d1 = np.radians(ra[i]), np.radians(dec[i])
        cosd = np.sin(d1) * np.sin(cdec) + np.cos(d1) * np.cos(cdec) * np.cos(cra - r1)
        sep = np.degrees(np.arccos(np.clip(cosd, -1, 1))) * 60
        radius = max(min_radius_arcmin, psla_factor * float(psla_arcmin(snr[i]))) + np.asarray(cat_err_deg) * 60
        j = int(np.argmin(sep))
        dist[i] = sep[j]
        if sep[j] <= radius[j]:
            idx[i] = j
    return idx, dist
