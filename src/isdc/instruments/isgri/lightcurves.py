"""ISGRI light curves (level LCR): source rates per time bin by PIF fits.

The good events of an energy band are binned in time (bins of the configured width from
the science window's first good time) and per pixel; in every bin all sources of the
field are fitted jointly with the background (shape from the BKG level, scale free per
bin, plus a flat term) with their PIFs fixed at their IMA positions
(:func:`isdc.instruments.isgri.spectra.fit_cube`).  Each bin has its own exposure (the
good time inside it) and efficiency map: the science window's map with each module's
live fraction replaced by its mean over the bin's good time (the DEAD level's per-HK-cycle
dead fractions), so dead-time changes within the science window do not leak into the
light curve.  Rates are the OSA intensity convention (counts/s, dead time corrected).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isdc.instruments.isgri.geometry import isgri_geometry
from isdc.instruments.isgri.spectra import _gapped, fit_cube, shadowgram_cube, source_responses

__all__ = ["SECONDS_PER_DAY", "time_bin_edges", "good_time_in_bins", "module_live_in_bins", "bin_efficiency",
           "LightCurves", "extract_light_curves"]

SECONDS_PER_DAY = 86400.0


def time_bin_edges(gti_start, gti_stop, bin_s: float) -> np.ndarray:
    """Bin edges (IJD) of width `bin_s` seconds from the first good time to past the last one."""
    start = np.asarray(gti_start, dtype=np.float64)
    stop = np.asarray(gti_stop, dtype=np.float64)
    if not bin_s > 0:
        raise ValueError(f"time bin must be > 0 s, got {bin_s}")
    if start.size == 0:
        return np.zeros(0)
    t0, t1 = float(start.min()), float(stop.max())
    width = bin_s / SECONDS_PER_DAY
    n = max(int(np.ceil((t1 - t0) / width - 1e-9)), 1)
    return t0 + width * np.arange(n + 1)


def good_time_in_bins(edges, gti_start, gti_stop) -> np.ndarray:
    """Good time (s) inside each bin of `edges` (IJD) from disjoint intervals [start, stop)."""
    e = np.asarray(edges, dtype=np.float64)
    a = np.asarray(gti_start, dtype=np.float64)[:, None]
    b = np.asarray(gti_stop, dtype=np.float64)[:, None]
    overlap = np.minimum(b, e[None, 1:]) - np.maximum(a, e[None, :-1])
    return np.clip(overlap, 0.0, None).sum(axis=0) * SECONDS_PER_DAY


def module_live_in_bins(edges, hk_time, hk_length_s, dead_fraction, gti_start, gti_stop) -> np.ndarray:
    """Mean live fraction of each module over the good time of each bin.

    Parameters
    ----------
    edges : (n_bins + 1,) IJD.
    hk_time : (n_hk,) start of each housekeeping cycle (IJD); hk_length_s : (n_hk,) its length, s.
    dead_fraction : (n_hk, n_mod) dead fraction of each module in each cycle.
    gti_start, gti_stop : good-time intervals (IJD).

    Returns
    -------
    numpy.ndarray
        (n_bins, n_mod); bins with no good time covered by HK cycles get the mean over the
        whole good time (NaN if there is none at all).
    """
    e = np.asarray(edges, dtype=np.float64)
    t = np.asarray(hk_time, dtype=np.float64)
    length = np.broadcast_to(np.asarray(hk_length_s, dtype=np.float64), t.shape) / SECONDS_PER_DAY
    dead = np.atleast_2d(np.asarray(dead_fraction, dtype=np.float64))
    if dead.shape[0] != t.size:
        raise ValueError(f"{dead.shape[0]} dead-time rows for {t.size} HK cycles")
    live = 1.0 - dead
    # good time of each HK cycle inside each bin: cycles x bins, through the cycle's good part
    n_bins = e.size - 1
    weight = np.zeros((t.size, n_bins))
    for a, b in zip(np.asarray(gti_start, dtype=np.float64), np.asarray(gti_stop, dtype=np.float64)):
        lo = np.maximum(t, a)
        hi = np.minimum(t + length, b)
        ok = hi > lo
        if not ok.any():
            continue
        ov = np.minimum(hi[ok, None], e[None, 1:]) - np.maximum(lo[ok, None], e[None, :-1])
        weight[ok] += np.clip(ov, 0.0, None)
    total = weight.sum(axis=0)
    out = np.empty((n_bins, live.shape[1]))
    mean_all = (weight.sum(axis=1) @ live) / weight.sum() if weight.sum() > 0 else np.full(live.shape[1], np.nan)
    has = total > 0
    out[has] = (weight[:, has].T @ live) / total[has, None]
    out[~has] = mean_all
    return out


def bin_efficiency(efficiency, live_bins, live_scw) -> np.ndarray:
    """Efficiency maps per bin: the ScW map with module live fractions rescaled.

    efficiency : (134, 130) gapped or (128, 128) logical; live_bins : (n_bins, 8);
    live_scw : (8,) live fractions the map holds. Returns (n_bins, 134, 130).
    """
    g = isgri_geometry()
    w = _gapped(efficiency)
    lb = np.atleast_2d(np.asarray(live_bins, dtype=np.float64))
    ls = np.asarray(live_scw, dtype=np.float64)
    ratio = np.divide(lb, ls[None, :], out=np.zeros_like(lb), where=ls[None, :] > 0)
    mod = g.module_map
    per_pixel = np.where(mod >= 0, ratio[:, np.maximum(mod, 0)], 0.0)
    return w[None] * per_pixel


@dataclass(frozen=True, eq=False)
class LightCurves:
    """Light curves of every source in one band.

    time : (n_bins,) bin centres (IJD); bin_days : bin width (d);
    rates, errors : (n_src, n_bins) counts/s; fracexp : (n_bins,) good fraction of each bin;
    ontime : (n_bins,) good time per bin (s); good : (n_bins,) bins with a fit.
    """

    time: np.ndarray
    bin_days: float
    rates: np.ndarray
    errors: np.ndarray
    fracexp: np.ndarray
    ontime: np.ndarray
    good: np.ndarray


def extract_light_curves(times, isgri_z, isgri_y, gti_start, gti_stop, bin_s: float, efficiency_bins, tan_y,
                         tan_z, background=None, edges=None) -> LightCurves:
    """Light curves of sources at (tan_y, tan_z) from the good events of one band.

    Parameters
    ----------
    times, isgri_z, isgri_y : arrays (n_events,)
        Event time (IJD) and logical pixel of the band's good events.
    gti_start, gti_stop : arrays
        Good-time intervals (IJD); events outside them are ignored.
    bin_s : float
        Time bin, s.
    efficiency_bins : numpy.ndarray
        (n_bins, 134, 130) efficiency per bin (:func:`bin_efficiency`), or one map for all.
    tan_y, tan_z : arrays (n_src,)
        Source directions (every source in the field).
    background : numpy.ndarray, optional
        Background shape (gapped or logical).
    edges : numpy.ndarray, optional
        Bin edges (IJD); default :func:`time_bin_edges`.

    Returns
    -------
    LightCurves
    """
    e = time_bin_edges(gti_start, gti_stop, bin_s) if edges is None else np.asarray(edges, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    a = np.asarray(gti_start, dtype=np.float64)
    b = np.asarray(gti_stop, dtype=np.float64)
    good_evt = np.zeros(t.shape, dtype=bool)
    for lo, hi in zip(a, b):
        good_evt |= (t >= lo) & (t < hi)
    idx = np.where(good_evt, np.searchsorted(e, t, side="right") - 1, -1)
    n = e.size - 1
    cube = shadowgram_cube(idx, isgri_z, isgri_y, n)
    ontime = good_time_in_bins(e, a, b)
    bkg = None if background is None else _gapped(background)
    res = fit_cube(cube, _gapped(efficiency_bins), ontime, source_responses(tan_y, tan_z), bkg)
    width = (e[1:] - e[:-1])
    return LightCurves(time=0.5 * (e[1:] + e[:-1]), bin_days=float(bin_s) / SECONDS_PER_DAY, rates=res.rates,
                       errors=res.errors, fracexp=ontime / (width * SECONDS_PER_DAY), ontime=ontime, good=res.good)
