"""Decoding of coded-mask shadowgrams into sky images; source models and PIF fits.

Method (balanced cross-correlation, Goldwurm et al. 2003, A&A 411, L223)
-----------------------------------------------------------------------
The mask is resampled on the detector pixel lattice (:func:`~isdc.imaging.pif.mask_on_pixel_grid`):
``M`` = fraction of a pixel's active area seeing open mask, ``U`` = fraction seeing the
mask at all, for every on-grid shift ``k`` (one sky pixel = one detector pitch).  With
``G+ = M`` and ``G- = Ub - M``, ``Ub = (U > 0)`` (cells that see any of the mask; rays
missing the mask hit the shield, i.e. count as closed), ``D`` the counts and ``W`` the
efficiency (0 in gaps, dead and noisy pixels), for each sky pixel ``k``::

    b_k   = sum W G+_k / sum W G-_k                              (background balance)
    S_k   = sum D (G+_k - b_k G-_k)                              (flat background -> 0)
    VarS  = sum D (G+_k - b_k G-_k)^2                            (Poisson, exact)
    E_k   = sum W M_k (G+_k - b_k G-_k)                          (point-source response)
    I_k   = S_k * N / (t cos(theta_k) E_k)        [counts/s]     N = number of real pixels
    Var_k = VarS * (N / (t cos(theta_k) E_k))^2
    SNR_k = S_k / sqrt(VarS)
    Exp_k = t cos(theta_k) sum W U_k / N          [s]

where ``sum X Y_k`` is the correlation ``sum_i X_i Y_{i+k}`` over detector pixels ``i``.
An on-grid point source of rate R (counts/s the whole detector's active area would
record on axis through an open mask, the OSA convention) gives expected counts
``R t W M_k cos(theta) / N`` per pixel, hence ``E[I_k] = R`` exactly; the background is
any map proportional to ``W``.  Since ``G+ Ub = G+`` and ``Ub^2 = Ub``, the data need only
three correlations (``D * M``, ``D * Ub``, ``D * M^2``); the efficiency-map correlations
(``W * M``, ``W * Ub``, ``W * M^2``, ``W * U``) are cached per efficiency map.  All are
FFT products with kernel spectra computed once in :class:`Decoder`.

Round-off: the counts are split as ``D = level W + (D - level W)``; the flat part decodes
to exactly 0 and its variance term comes from the efficiency-map correlations, so the FFT
round-off scales with the fluctuations, not with the background level.  Likewise
``W = rho R + dW`` (R = map of real pixels, whose correlations are computed once in double
precision).  In single precision (the default) the significance differs from a double
precision decode by < 1e-3 everywhere.

Known artefacts (documented in docs/imaging.md): a source between pixel centres decodes
to a lower peak (use :func:`fit_sources` for fluxes); the non-integer element/pixel ratio
and the gaps leave coding noise of order 1% of a source's peak in the side lobes; a
source in the partially coded field produces ghosts one basic-pattern period
(53 elements = 129.04 pixels for ISGRI) away along Y and Z, removed later by PIF
subtraction.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import scipy.fft

from isdc.imaging.geometry import CodedMaskGeometry
from isdc.imaging.pif import cos_theta, mask_on_pixel_grid
from isdc.imaging.projection import SkyGrid

__all__ = ["SkyImages", "Decoder", "model_shadowgram", "SourceFit", "fit_sources"]

# Working precision of the FFT correlations, of the arithmetic and of the output images.
_PRECISIONS = {"single": (np.float32, np.complex64), "double": (np.float64, np.complex128)}
# Sky pixels need E_k > _MIN_CONTRAST * (1 + b) sum W M^2 (see Decoder._weight_terms).
_MIN_CONTRAST = 1e-3


@dataclass(frozen=True, eq=False)
class SkyImages:
    """Decoded sky images of one shadowgram, all shape ``grid.shape`` (float32, or float64
    with ``Decoder(precision="double")``).

    Attributes
    ----------
    intensity : numpy.ndarray
        counts/s (on-axis, open-mask, whole-detector equivalent rate); 0 outside the field.
    variance : numpy.ndarray
        (counts/s)^2; 0 outside the field.
    significance : numpy.ndarray
        intensity / sqrt(variance); 0 outside the field.
    exposure : numpy.ndarray
        On-axis-equivalent effective exposure, s (exposure x cos(theta) x efficiency-weighted
        fraction of the detector that sees the mask); 0 outside the field.
    grid : SkyGrid
        Pixel -> instrument-direction mapping (see :mod:`isdc.imaging.projection`).
    """

    intensity: np.ndarray
    variance: np.ndarray
    significance: np.ndarray
    exposure: np.ndarray
    grid: SkyGrid


@dataclass(frozen=True, eq=False)
class _WeightTerms:
    valid: np.ndarray  # bool: decoded sky pixels
    s1: np.ndarray  # (1 + b) on valid, 0 elsewhere
    s2: np.ndarray  # b on valid
    v1: np.ndarray  # (1 + b)^2
    v2: np.ndarray  # -2 b (1 + b)
    v3: np.ndarray  # b^2
    var_w: np.ndarray  # sum W (G+ - b G-)^2: variance of S per unit flat background
    gain: np.ndarray  # N / (cos(theta) E) on valid, 0 elsewhere
    gain2: np.ndarray  # gain^2
    exposure: np.ndarray  # cos(theta) sum W U / N (per second of exposure)
    weight_sum: float


class Decoder:
    """FFT decoder of shadowgrams of one telescope geometry (build once, decode many).

    Parameters
    ----------
    geometry : CodedMaskGeometry
        Telescope geometry.
    sky_shape : (int, int), optional
        Shape of the sky images.  Default: the whole partially coded field, i.e.
        ``J + n_det - 1`` per axis (J = size of the mask resampled on the pixel lattice;
        365 x 361 for ISGRI).  A larger shape pads with zeros and puts the pointing at
        pixel ``(rows // 2, cols // 2)`` (``(400, 400)`` gives OSA-sized ISGRI images).
    min_coded_pixels : float
        Sky pixels are decoded only where the efficiency-weighted active area seeing the
        mask amounts to at least this many pixels (default 1).
    precision : {'single', 'double'}
        Floating-point precision of the data correlations and of the output images
        (default 'single': about twice as fast; the round-off it adds is below 1e-3 sigma,
        see tests/test_imaging_decode.py).
    weights_cache : int
        Number of efficiency maps whose correlations are kept (default 8).
    workers : int
        Threads for the FFTs (scipy.fft ``workers``; default 1: pipelines run one
        process per core).

    Notes
    -----
    Holds precomputed arrays and a small cache; not thread-safe.
    """

    def __init__(self, geometry: CodedMaskGeometry, sky_shape=None, min_coded_pixels: float = 1.0,
                 precision: str = "single", weights_cache: int = 8, workers: int = 1):
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
        self.geometry = geometry
        self.precision = precision
        self.workers = int(workers)
        self._real, self._complex = _PRECISIONS[precision]
        self.min_coded_pixels = float(min_coded_pixels)
        self._cache_size = max(int(weights_cache), 0)
        self._cache: OrderedDict = OrderedDict()
        grid_mask = mask_on_pixel_grid(geometry)
        self.pixel_grid_mask = grid_mask
        n_det = geometry.shape
        j_shape = grid_mask.open.shape
        natural = tuple(j + n - 1 for j, n in zip(j_shape, n_det))
        # natural on-axis pixel: row index r <-> shift k_z = r - row0; column c <-> k_y = col0 - c
        row0_nat = grid_mask.first[0] + n_det[0] - 1
        col0_nat = j_shape[1] - 1 - grid_mask.first[1]
        if sky_shape is None:
            shape = natural
            pad = (0, 0)
        else:
            shape = tuple(int(s) for s in sky_shape)
            if len(shape) != 2:
                raise ValueError(f"sky_shape must be (rows, cols), got {sky_shape!r}")
            pad = (shape[0] // 2 - row0_nat, shape[1] // 2 - col0_nat)
            if pad[0] < 0 or pad[1] < 0 or shape[0] - natural[0] - pad[0] < 0 or shape[1] - natural[1] - pad[1] < 0:
                raise ValueError(
                    f"{geometry.name}: sky_shape {shape} cannot hold the partially coded field "
                    f"{natural} centred on the pointing"
                )
        row0 = row0_nat + pad[0]
        col0 = col0_nat + pad[1]
        self.grid = SkyGrid(shape=shape, on_axis=(float(row0), float(col0)), scale=geometry.pixel_tan)
        self._fft_shape = tuple(scipy.fft.next_fast_len(s, real=True) for s in shape)
        # sky[r, c] = sum_{u, iy} D[nz-1-u, iy] h[(r - u) mod L0, (c - iy) mod L1] with
        # h[a, b] = K[a + a0, b0 - b]  (K on the pixel lattice, see PixelGridMask)
        a0 = n_det[0] - 1 - row0 + grid_mask.first[0]
        b0 = col0 + grid_mask.first[1]
        self._h_rows = (np.arange(j_shape[0]) - a0) % self._fft_shape[0]
        self._h_cols = (b0 - np.arange(j_shape[1])) % self._fft_shape[1]
        m = grid_mask.open
        ub = (grid_mask.inside > 0).astype(np.float64)
        self._data_kernels = self._spectra([m, ub, m * m]).astype(self._complex)
        weight_kernels = [m, ub, m * m, grid_mask.inside]
        spectra = self._spectra(weight_kernels)
        self._weight_kernels = spectra.astype(self._complex)
        self._kernel_norm = max(float(np.sqrt(np.sum(k * k))) for k in weight_kernels)
        # Efficiency maps are decomposed as W = rho * R + dW with R the map of real pixels:
        # the R correlations are computed here once in double precision, so the FFT
        # round-off of a decode scales with dW (dead pixels, module differences), not W.
        self._ref_pixels = geometry.real_pixels.astype(np.float64)
        ref = np.array(self._correlate(self._ref_pixels, spectra))
        ref[np.abs(ref) < 1e-9] = 0.0  # exact zeros outside the field (FFT leaves ~1e-12)
        self._ref_corr = ref.astype(self._real)
        tan_y, tan_z = self.grid.pixel_to_tan(np.arange(shape[0])[:, None], np.arange(shape[1])[None, :])
        self._cos = cos_theta(tan_y, tan_z).astype(self._real)

    @property
    def fft_shape(self) -> tuple[int, int]:
        """Padded FFT size used for the correlations (>= the sky image shape)."""
        return self._fft_shape

    # ---- FFT machinery ----------------------------------------------------------------
    def _spectra(self, kernels) -> np.ndarray:
        h = np.zeros((len(kernels),) + self._fft_shape)
        for i, k in enumerate(kernels):
            h[i][np.ix_(self._h_rows, self._h_cols)] = k
        return scipy.fft.rfft2(h, axes=(-2, -1))

    def _correlate(self, image: np.ndarray, spectra: np.ndarray) -> np.ndarray:
        f = scipy.fft.rfft2(image[::-1, :], s=self._fft_shape)
        out = scipy.fft.irfft2(f * spectra, s=self._fft_shape, axes=(-2, -1), workers=self.workers)
        r, c = self.grid.shape
        return out[:, :r, :c]

    # ---- efficiency-map terms -----------------------------------------------------------
    def _weight_terms(self, weights: np.ndarray) -> _WeightTerms:
        key = hashlib.blake2b(weights.tobytes(), digest_size=16).hexdigest()
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        rt = self._real
        weight_sum = float(weights.sum())
        rho = weight_sum / float(self._ref_pixels.sum())
        delta = weights - rho * self._ref_pixels
        delta_norm = float(np.sqrt(np.sum(delta * delta)))
        corr = self._ref_corr * rt(rho)
        if delta_norm > 0:
            corr += self._correlate(delta.astype(rt), self._weight_kernels)
        w_open, w_ub, w_open2, w_inside = corr
        # True zeros come out of the FFT as round-off noise: compare with a floor above it
        eps = 1e-6 if rt is np.float32 else 1e-13
        tol = rt(1e-9 * max(weight_sum, 1.0) + eps * delta_norm * self._kernel_norm)
        w_closed = w_ub - w_open
        valid = w_open > tol
        valid &= w_closed > tol
        valid &= w_inside >= self.min_coded_pixels
        b = np.divide(w_open, w_closed, out=np.zeros_like(w_open), where=valid)
        onep = b + valid
        resp = onep * w_open2
        resp -= b * w_open
        # Too little coding contrast (the pixels that see this direction are almost equally
        # open): no information and a response lost in round-off.  ISGRI: all above 1%.
        valid &= resp > rt(_MIN_CONTRAST) * onep * w_open2
        b *= valid
        onep *= valid
        gain = np.divide(rt(self.geometry.n_pixels), self._cos * resp, out=np.zeros_like(resp), where=valid)
        v1, v2, v3 = onep * onep, rt(-2.0) * b * onep, b * b
        var_w = v1 * w_open2
        var_w += v2 * w_open
        var_w += v3 * w_ub
        exposure = self._cos * w_inside
        exposure *= valid
        exposure *= rt(1.0 / self.geometry.n_pixels)
        terms = _WeightTerms(valid=valid, s1=onep, s2=b, v1=v1, v2=v2, v3=v3, var_w=var_w, gain=gain,
                             gain2=gain * gain, exposure=exposure, weight_sum=weight_sum)
        if self._cache_size:
            self._cache[key] = terms
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return terms

    def _check_inputs(self, shadowgram, weights):
        shape = self.geometry.shape
        d = np.asarray(shadowgram, dtype=np.float64)
        w = np.ascontiguousarray(weights, dtype=np.float64)
        if d.shape != shape:
            raise ValueError(f"{self.geometry.name}: shadowgram shape {d.shape} != detector shape {shape}")
        if w.shape != shape:
            raise ValueError(f"{self.geometry.name}: efficiency map shape {w.shape} != detector shape {shape}")
        if not np.all(np.isfinite(w)) or w.min() < 0:
            raise ValueError(f"{self.geometry.name}: efficiency map must be finite and >= 0")
        if not np.all(np.isfinite(d)):
            raise ValueError(f"{self.geometry.name}: shadowgram has non-finite values")
        return d, w

    # ---- public ---------------------------------------------------------------------------
    def decode(self, shadowgram: np.ndarray, weights: np.ndarray, exposure_s: float) -> SkyImages:
        """Decode one shadowgram into sky images.

        Parameters
        ----------
        shadowgram : numpy.ndarray
            Counts per pixel, shape ``geometry.shape`` (gapped layout, [Z, Y]).
        weights : numpy.ndarray
            Efficiency per pixel (0..1), same shape; 0 in gaps, dead and noisy pixels
            (counts there are ignored).
        exposure_s : float
            Exposure time, s (> 0).

        Returns
        -------
        SkyImages
        """
        t = float(exposure_s)
        if not np.isfinite(t) or t <= 0:
            raise ValueError(f"{self.geometry.name}: exposure must be positive, got {exposure_s}")
        d, w = self._check_inputs(shadowgram, weights)
        terms = self._weight_terms(w)
        d = np.where(w > 0, d, 0.0)
        # Split D = level * W + residual: the flat part decodes to exactly 0 and its variance
        # term is known from the (double-precision) efficiency-map correlations, so the FFT
        # round-off scales with the fluctuations, not with the background level.
        level = float(d.sum()) / terms.weight_sum if terms.weight_sum > 0 else 0.0
        resid = (d - level * w).astype(self._real)
        c_open, c_ub, c_open2 = self._correlate(resid, self._data_kernels)
        signal = np.multiply(c_open, terms.s1)
        tmp = np.multiply(c_ub, terms.s2)
        signal -= tmp
        var = np.multiply(c_open2, terms.v1)
        var += np.multiply(c_open, terms.v2, out=tmp)
        var += np.multiply(c_ub, terms.v3, out=tmp)
        var += np.multiply(terms.var_w, self._real(level), out=tmp)
        np.maximum(var, 0.0, out=var)  # round-off can leave tiny negatives where var is 0
        sd = np.sqrt(var, out=tmp)
        sig = np.divide(signal, sd, out=np.zeros_like(signal), where=sd > 0)
        signal *= terms.gain
        signal *= 1.0 / t
        var *= terms.gain2
        var *= 1.0 / (t * t)
        return SkyImages(intensity=signal, variance=var, significance=sig,
                         exposure=terms.exposure * t, grid=self.grid)


def model_shadowgram(response: np.ndarray, rate, exposure_s: float, weights=1.0) -> np.ndarray:
    """Expected counts per pixel from sources.

    Parameters
    ----------
    response : numpy.ndarray
        Per-unit-rate response, shape (n_det_z, n_det_y) or (n_src, n_det_z, n_det_y), from
        :func:`isdc.imaging.pif.response` (PIF x cos(theta) / n_pixels).
    rate : float or array (n_src,)
        Source rates, counts/s (OSA intensity convention).
    exposure_s : float
        Exposure, s.
    weights : float or numpy.ndarray
        Efficiency per pixel.

    Returns
    -------
    numpy.ndarray
        Expected counts, shape (n_det_z, n_det_y).
    """
    r = np.asarray(response, dtype=np.float64)
    rates = np.atleast_1d(np.asarray(rate, dtype=np.float64))
    if r.ndim == 2:
        r = r[None]
    if r.ndim != 3 or rates.shape != (r.shape[0],):
        raise ValueError(f"response shape {np.shape(response)} does not match rates shape {np.shape(rate)}")
    return np.tensordot(rates, r, axes=1) * (float(exposure_s) * np.asarray(weights, dtype=np.float64))


@dataclass(frozen=True, eq=False)
class SourceFit:
    """Result of :func:`fit_sources`.

    Attributes
    ----------
    rates, errors : numpy.ndarray
        Source rates and 1-sigma errors, counts/s, shape (n_src,).
    background, background_errors : numpy.ndarray
        Scale factors of the background components and errors, shape (n_bkg,).
    covariance : numpy.ndarray
        Covariance of (rates, background), shape (n_src + n_bkg,) * 2.
    model : numpy.ndarray
        Best-fit expected counts per pixel (0 where the efficiency is 0).
    cash : float
        Cash statistic ``2 sum (mu - D ln mu)`` + const (Poisson deviance) of the fit.
    n_iter : int
        Iterations used.
    """

    rates: np.ndarray
    errors: np.ndarray
    background: np.ndarray
    background_errors: np.ndarray
    covariance: np.ndarray
    model: np.ndarray
    cash: float
    n_iter: int


def fit_sources(shadowgram, weights, responses, background_model, exposure_s: float,
                method: str = "poisson", max_iter: int = 50, tol: float = 1e-10) -> SourceFit:
    """Fit source rates (and background scales) to a shadowgram with known PIFs.

    Model: ``mu = sum_s rate_s * exposure * W * response_s + sum_j scale_j * background_j``.

    Parameters
    ----------
    shadowgram : numpy.ndarray
        Counts per pixel, shape (n_det_z, n_det_y).
    weights : numpy.ndarray
        Efficiency per pixel; pixels with 0 are excluded from the fit.
    responses : numpy.ndarray
        Shape (n_src, n_det_z, n_det_y) (or 2-D for one source), from
        :func:`isdc.imaging.pif.response`.
    background_model : numpy.ndarray or None
        Expected background counts per unit scale, (n_det_z, n_det_y) or
        (n_bkg, n_det_z, n_det_y); e.g. ``weights`` for a flat background (scale = counts
        per pixel at unit efficiency).  None: no background term.
    exposure_s : float
        Exposure, s.
    method : {'poisson', 'least_squares'}
        'poisson': maximum likelihood by iteratively reweighted least squares (weights
        1/mu), errors from the Fisher information.  'least_squares': ordinary least
        squares, errors propagated with Poisson variances of the fitted model.

    Returns
    -------
    SourceFit
    """
    d = np.asarray(shadowgram, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    r = np.asarray(responses, dtype=np.float64)
    if r.ndim == 2:
        r = r[None]
    if d.shape != w.shape or r.shape[1:] != d.shape:
        raise ValueError(f"shapes differ: shadowgram {d.shape}, weights {w.shape}, responses {r.shape}")
    if background_model is None:
        bkg = np.zeros((0,) + d.shape)
    else:
        bkg = np.asarray(background_model, dtype=np.float64)
        if bkg.ndim == 2:
            bkg = bkg[None]
        if bkg.shape[1:] != d.shape:
            raise ValueError(f"background model shape {bkg.shape} does not match shadowgram {d.shape}")
    if method not in ("poisson", "least_squares"):
        raise ValueError(f"unknown fit method {method!r}")
    t = float(exposure_s)
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"exposure must be positive, got {exposure_s}")
    use = w > 0
    y = d[use]
    a = np.concatenate([(r * (t * w))[:, use], bkg[:, use]]).T  # (n_pix, n_par)
    n_src = r.shape[0]
    if a.shape[1] == 0:
        raise ValueError("nothing to fit: no sources and no background")
    if np.linalg.matrix_rank(a) < a.shape[1]:
        raise ValueError("degenerate fit: source responses / background components are linearly dependent")
    x = np.linalg.lstsq(a, y, rcond=None)[0]
    n_iter = 1
    floor = 1e-6 * max(float(y.mean()), 1e-6)
    if method == "poisson":
        for n_iter in range(2, max_iter + 2):
            mu = np.maximum(a @ x, floor)
            aw = a / mu[:, None]
            x_new = np.linalg.solve(aw.T @ a, aw.T @ y)
            done = np.all(np.abs(x_new - x) <= tol * (np.abs(x_new) + np.sqrt(np.diag(np.linalg.inv(aw.T @ a)))))
            x = x_new
            if done:
                break
        mu = np.maximum(a @ x, floor)
        cov = np.linalg.inv((a / mu[:, None]).T @ a)
    else:
        mu = np.maximum(a @ x, floor)
        pinv = np.linalg.pinv(a)
        cov = (pinv * mu[None, :]) @ pinv.T
    err = np.sqrt(np.diag(cov))
    model = np.zeros_like(d)
    model[use] = a @ x
    mu = np.maximum(model[use], floor)
    cash = float(2.0 * np.sum(mu - y * np.log(mu)))
    return SourceFit(rates=x[:n_src], errors=err[:n_src], background=x[n_src:], background_errors=err[n_src:],
                     covariance=cov, model=model, cash=cash, n_iter=n_iter)
