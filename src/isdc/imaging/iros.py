"""Iterative removal of sources (IROS): cleaned sky images and detector-space source fits.

The decoded image of a point source is its central peak plus side lobes: coding noise
(the non-integer element/pixel ratio and the module gaps break the perfect MURA side
lobes) and, in the partially coded field, ghosts one basic-pattern period away.  A bright
source's side lobes hide or mimic fainter sources.  IROS (Goldwurm et al. 2003, A&A 411,
L223) removes them in detector space:

1. Decode the shadowgram ``D`` once: the variance map ``V`` (Poisson, from the counts) and
   the exposure map.
2. Fit the known sources (e.g. the catalogue's bright ones) and the background
   components jointly to ``D`` with their PIFs (:func:`~isdc.imaging.pif_fit.fit_positions`),
   the positions of significant ones free.
3. Decode the residual ``D - model`` (sources *and* background model): the sources, their
   coding noise and their ghosts are gone together.  Its significance ``I_res / sqrt(V)``
   is searched for the highest peak above the threshold; the peak (sub-pixel start from a
   parabola through the 3 x 3 neighbourhood) joins the fit with a free position, and
   step 2-3 repeat until no peak is left or ``max_sources`` are in the model.
4. A last joint fit frees every significant source's position; the cleaned intensity is
   the residual image plus each source's decoded central peak (the noise-free decode of
   its model restricted to +-3.5 sky pixels around it), its significance
   ``intensity / sqrt(V)``.

Source rates, errors and positions come from the detector-space fit (the PIF at the
fitted position: no loss for sources between sky pixels), not from the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from isdc.imaging.decode import Decoder, SkyImages
from isdc.imaging.pif_fit import PositionFit, fit_positions, independent_components

__all__ = ["SourceSeed", "IrosResult", "iros", "PEAK_HALF_WIDTH"]

#: Half-width (sky pixels) of the box holding a source's decoded central peak: one mask
#: element (2.43 ISGRI pixels) plus the pixel response (0.87), rounded up to a half pixel.
PEAK_HALF_WIDTH = 3.5


@dataclass(frozen=True)
class SourceSeed:
    """A source put into the model before the search (e.g. from the catalogue).

    tan_y, tan_z : float
        Direction (instrument frame).
    label : object
        Anything that identifies it for the caller (a catalogue index); new sources found
        by the search get ``None``.
    refine : bool
        Fit its position when it is significant (``refine_snr``).
    """

    tan_y: float
    tan_z: float
    label: object = None
    refine: bool = True


@dataclass(frozen=True, eq=False)
class IrosResult:
    """Result of :func:`iros` for one shadowgram.

    Attributes
    ----------
    images : SkyImages
        Cleaned intensity (counts/s), variance (of the raw decode, (counts/s)^2),
        significance, exposure (s).
    fit : PositionFit
        The final detector-space fit: every source in the model (seeds first, in their
        order, then found sources in the order found).
    labels : list
        ``SourceSeed.label`` per fitted source, ``None`` for found ones.
    found_peak : numpy.ndarray
        Residual-map significance of the peak that added each found source (NaN for seeds).
    residual_significance : numpy.ndarray
        Significance of the final residual (all sources and background removed), the map
        the search saw last.
    n_decodes : int
        Decodes done (for benchmarks).
    """

    images: SkyImages
    fit: PositionFit | None
    labels: list = field(default_factory=list)
    found_peak: np.ndarray = field(default_factory=lambda: np.zeros(0))
    residual_significance: np.ndarray | None = None
    n_decodes: int = 0


def _significance(intensity, sd):
    return np.divide(intensity, sd, out=np.zeros_like(intensity), where=sd > 0)


def _subpixel_peak(sig: np.ndarray, r: int, c: int) -> tuple[float, float]:
    """Vertex of parabolas through the peak and its neighbours along each axis."""
    out = []
    for axis, (i, n) in enumerate(((r, sig.shape[0]), (c, sig.shape[1]))):
        if i <= 0 or i >= n - 1:
            out.append(float(i))
            continue
        lo = sig[i - 1, c] if axis == 0 else sig[r, i - 1]
        hi = sig[i + 1, c] if axis == 0 else sig[r, i + 1]
        mid = sig[r, c]
        den = lo - 2 * mid + hi
        shift = 0.5 * (lo - hi) / den if den < 0 else 0.0
        out.append(i + float(np.clip(shift, -0.5, 0.5)))
    return out[0], out[1]


def iros(decoder: Decoder, counts: np.ndarray, weights: np.ndarray, exposure_s: float, *,
         seeds: list[SourceSeed] | tuple = (), background_models=None, threshold: float = 6.0,
         max_sources: int = 50, refine_snr: float = 5.0, min_separation_px: float = 2.5) -> IrosResult:
    """Clean one shadowgram: fit seeds, find and fit new sources, decode the cleaned sky.

    Parameters
    ----------
    decoder : Decoder
        Decoder of the telescope geometry.
    counts : numpy.ndarray
        Shadowgram (counts), shape ``decoder.geometry.shape``.
    weights : numpy.ndarray
        Efficiency map, same shape (0 = pixel not used).
    exposure_s : float
        Exposure time, s (the rates are counts/s for efficiency 1).
    seeds : sequence of SourceSeed
        Sources modelled from the start (catalogue sources in the field).
    background_models : sequence of numpy.ndarray, optional
        Background components (expected counts up to a scale each).  Default: the
        efficiency map (flat background).  Components that are linearly dependent on
        earlier ones are dropped.
    threshold : float
        Significance above which a residual peak becomes a source.
    max_sources : int
        Most sources in the model (seeds included).
    refine_snr : float
        Seeds whose fitted rate/error exceeds this get a free position in the final fit.
    min_separation_px : float
        Residual peaks closer than this (sky pixels) to a modelled source are not new
        sources (they are that source's residual).

    Returns
    -------
    IrosResult
    """
    geometry = decoder.geometry
    t = float(exposure_s)
    w = np.asarray(weights, dtype=np.float64)
    d = np.where(w > 0, np.asarray(counts, dtype=np.float64), 0.0)
    raw = decoder.decode(d, w, t)
    n_decodes = 1
    sd = np.sqrt(raw.variance)
    valid = raw.exposure > 0
    use = w > 0
    comps = [w] if background_models is None else [np.asarray(b, dtype=np.float64) for b in background_models]
    if background_models is not None:
        comps = comps + [w]  # a flat part beside any model shape (dropped if dependent)
    keep = independent_components(comps, use)
    bkg = np.stack([comps[i] for i in keep]) if keep else None
    grid = decoder.grid
    pt = geometry.pixel_tan

    ty = [float(s.tan_y) for s in seeds][:max_sources]
    tz = [float(s.tan_z) for s in seeds][:max_sources]
    labels = [s.label for s in seeds][:max_sources]
    refine = [bool(s.refine) for s in seeds][:max_sources]
    found_peak = [np.nan] * len(ty)
    # Seeds outside the field have no response: leave them out of the model.
    inside = []
    for i in range(len(ty)):
        r, c = grid.tan_to_pixel(ty[i], tz[i])
        ri, ci = int(round(float(r))), int(round(float(c)))
        inside.append(0 <= ri < grid.shape[0] and 0 <= ci < grid.shape[1] and valid[ri, ci])
    ty = [v for v, k in zip(ty, inside) if k]
    tz = [v for v, k in zip(tz, inside) if k]
    labels = [v for v, k in zip(labels, inside) if k]
    refine = [v for v, k in zip(refine, inside) if k]
    found_peak = [v for v, k in zip(found_peak, inside) if k]
    free = [False] * len(ty)
    last_free: list = []

    def fit(free_flags):
        last_free[:] = list(free_flags)
        return fit_positions(d, w, geometry, np.array(ty), np.array(tz), np.array(free_flags, dtype=bool), bkg, t)

    def residual_sig(f):
        model = f.background_model + f.source_model if f is not None else 0.0
        res = decoder.decode(d - model, w, t)
        return res, _significance(res.intensity, sd)

    result = fit(free) if (ty or bkg is not None) else None
    if result is not None and ty:
        # Significant seeds get free positions (catalogue positions may be off by the attitude).
        snr = result.snr
        free = [bool(refine[i] and snr[i] >= refine_snr) for i in range(len(ty))]
        if any(free):
            result = fit(free)
            ty, tz = list(result.tan_y), list(result.tan_z)
            free = [False] * len(ty)  # converged positions stay put while new sources are searched
    if ty or background_models is not None:
        res, sig = residual_sig(result)
        n_decodes += 1
    else:
        # Only a flat (efficiency-proportional) background: it decodes to exactly 0.
        res, sig = raw, raw.significance
    while len(ty) < max_sources:
        search = np.where(valid, sig, -np.inf)
        if ty:
            rows, cols = grid.tan_to_pixel(np.array(ty), np.array(tz))
            rr, cc = np.ogrid[: sig.shape[0], : sig.shape[1]]
            for r0, c0 in zip(rows, cols):
                r_lo, r_hi = int(max(np.floor(r0 - min_separation_px), 0)), int(np.ceil(r0 + min_separation_px)) + 1
                c_lo, c_hi = int(max(np.floor(c0 - min_separation_px), 0)), int(np.ceil(c0 + min_separation_px)) + 1
                box = search[r_lo:r_hi, c_lo:c_hi]
                near = (rr[r_lo:r_hi] - r0) ** 2 + (cc[:, c_lo:c_hi] - c0) ** 2 <= min_separation_px**2
                box[near] = -np.inf
        k = int(np.argmax(search))
        r, c = divmod(k, sig.shape[1])
        peak = float(search[r, c])
        if not np.isfinite(peak) or peak < threshold:
            break
        rf, cf = _subpixel_peak(sig, r, c)
        new_ty, new_tz = grid.pixel_to_tan(rf, cf)
        ty.append(float(new_ty))
        tz.append(float(new_tz))
        labels.append(None)
        refine.append(True)
        found_peak.append(peak)
        # Only the new source moves now; everything is refined together at the end.
        result = fit(free + [True])
        ty, tz = list(result.tan_y), list(result.tan_z)
        free = free + [False]
        res, sig = residual_sig(result)
        n_decodes += 1
    if result is not None and ty:
        snr = result.snr
        final_free = [bool(refine[i] and snr[i] >= refine_snr) for i in range(len(ty))]
        if any(final_free) and final_free != last_free:
            result = fit(final_free)
            res, sig = residual_sig(result)
            n_decodes += 1
    intensity = res.intensity.copy()
    if result is not None and ty:
        peaks = decoder.decode(result.source_model, w, t).intensity
        n_decodes += 1
        rows, cols = grid.tan_to_pixel(result.tan_y, result.tan_z)
        mask = np.zeros(intensity.shape, dtype=bool)
        for r0, c0 in zip(rows, cols):
            r_lo, r_hi = int(max(np.ceil(r0 - PEAK_HALF_WIDTH), 0)), int(np.floor(r0 + PEAK_HALF_WIDTH)) + 1
            c_lo, c_hi = int(max(np.ceil(c0 - PEAK_HALF_WIDTH), 0)), int(np.floor(c0 + PEAK_HALF_WIDTH)) + 1
            mask[r_lo:r_hi, c_lo:c_hi] = True
        intensity += np.where(mask, peaks, 0.0).astype(intensity.dtype)
    intensity *= valid
    images = SkyImages(intensity=intensity, variance=raw.variance, significance=_significance(intensity, sd),
                       exposure=raw.exposure, grid=grid)
    return IrosResult(images=images, fit=result, labels=labels, found_peak=np.array(found_peak, dtype=float),
                      residual_significance=sig, n_decodes=n_decodes)
