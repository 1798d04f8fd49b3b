"""ISGRI spectral extraction (level SPE): source spectra by PIF fits per energy channel.

For each channel group of the standard grouping the events of the science window are
binned into a shadowgram, and every source in the field is fitted jointly with the
background (the BKG level's model shape and a flat term) with its pixel illumination
fraction at its position (:func:`isdc.imaging.decode.fit_sources`, Poisson likelihood).
The fitted rate of a source in a group is the count rate the whole detector would record
on axis through an open mask (the OSA intensity convention), dead time corrected - the
quantity the response matrix predicts from a photon spectrum.

Channel grouping
----------------
The 256 channels of the ISGRI response (``ISGR-RMF.-RSP``, 12.5-1029.5 keV) are grouped
into 51 channels (`STANDARD_GROUP_EDGES_KEV`): 12.5-15-17-20 keV, 44 logarithmic steps of
~6.3% from 20 to 300 keV (the energy resolution is ~8% FWHM at 60 keV), then 300-400,
400-520, 520-700, 700-1030 keV, every edge on a response channel edge.

Response (OGIP)
---------------
The response folds the effective area in (OSA 11: ``matrix[i, j]`` cm2).  Our products
split it the usual way: the ARF is the total effective area per photon energy,
``SPECRESP[i] = sum_j matrix[i, j]``, and the RMF the grouped redistribution
``MATRIX[i, g] = sum_{j in g} matrix[i, j] / SPECRESP[i]`` (rows sum to 1), so that a
photon spectrum ``N(E)`` gives ``RATE[g] = sum_i N_i dE_i SPECRESP_i MATRIX_ig``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isdc.imaging.decode import fit_sources
from isdc.imaging.pif import response as pif_response
from isdc.imaging.pif_fit import independent_components
from isdc.instruments.isgri.geometry import isgri_geometry
from isdc.instruments.isgri.response import IsgriResponse

__all__ = ["STANDARD_GROUP_EDGES_KEV", "ChannelGrouping", "standard_grouping", "GroupedResponse", "grouped_response",
           "shadowgram_cube", "source_responses", "SpectraResult", "fit_cube", "extract_spectra"]

#: Edges (keV) of the standard 51-channel grouping of the 256-channel ISGRI response.
STANDARD_GROUP_EDGES_KEV = (
    12.5, 15.0, 17.0, 20.0, 21.0, 23.0, 24.0, 26.0, 27.0, 29.0, 31.0, 33.0, 35.0, 36.5, 39.5, 42.5, 44.0,
    47.0, 50.0, 53.0, 57.5, 60.5, 63.5, 67.5, 73.5, 77.5, 81.5, 87.5, 93.5, 99.5, 104.5, 112.0, 119.5,
    127.0, 134.5, 144.5, 153.0, 162.0, 171.0, 183.0, 195.0, 208.0, 222.0, 236.0, 250.0, 264.0, 283.5,
    299.5, 398.0, 520.5, 697.5, 1029.5,
)


@dataclass(frozen=True, eq=False)
class ChannelGrouping:
    """Contiguous groups of response channels.

    first, last : (n_grp,) first and last response channel (0-based) of each group.
    e_min, e_max : (n_grp,) keV.
    """

    first: np.ndarray
    last: np.ndarray
    e_min: np.ndarray
    e_max: np.ndarray

    def __len__(self) -> int:
        return len(self.first)

    def group_of_energy(self, energy) -> np.ndarray:
        """Group index of energies (keV); -1 outside ``e_min[0] <= E < e_max[-1]``."""
        e = np.asarray(energy, dtype=np.float64)
        edges = np.append(self.e_min, self.e_max[-1])
        g = np.searchsorted(edges, e, side="right") - 1
        return np.where((g >= 0) & (g < len(self)) & np.isfinite(e), g, -1)


def standard_grouping(e_min, e_max, edges_kev=STANDARD_GROUP_EDGES_KEV) -> ChannelGrouping:
    """Group response channels (edges `e_min`, `e_max`, keV) at `edges_kev`.

    Every requested edge must be a channel edge of the response (within 1e-3 keV) and the
    groups must cover the channels contiguously; ValueError otherwise.
    """
    lo = np.asarray(e_min, dtype=np.float64)
    hi = np.asarray(e_max, dtype=np.float64)
    if np.any(np.abs(lo[1:] - hi[:-1]) > 1e-3):
        raise ValueError("response channels are not contiguous: cannot group them")
    chan_edges = np.append(lo, hi[-1])
    want = np.asarray(edges_kev, dtype=np.float64)
    if np.any(np.diff(want) <= 0):
        raise ValueError("group edges must increase")
    pos = np.searchsorted(chan_edges, want)
    pos = np.clip(pos, 0, chan_edges.size - 1)
    near = np.where(np.abs(chan_edges[pos] - want) <= 1e-3, pos,
                    np.where(np.abs(chan_edges[np.maximum(pos - 1, 0)] - want) <= 1e-3, pos - 1, -1))
    if np.any(near < 0):
        bad = want[near < 0]
        raise ValueError(f"group edges {bad.tolist()} keV are not channel edges of the response")
    first = near[:-1]
    last = near[1:] - 1
    return ChannelGrouping(first=first, last=last, e_min=chan_edges[first], e_max=chan_edges[last + 1])


@dataclass(frozen=True, eq=False)
class GroupedResponse:
    """OGIP response on the grouped channels: ARF x RMF.

    energ_lo, energ_hi : (n_e,) keV; specresp : (n_e,) cm2 (ARF);
    matrix : (n_e, n_grp) redistribution (rows sum to 1 where specresp > 0);
    e_min, e_max : (n_grp,) keV (EBOUNDS).
    """

    energ_lo: np.ndarray
    energ_hi: np.ndarray
    specresp: np.ndarray
    matrix: np.ndarray
    e_min: np.ndarray
    e_max: np.ndarray

    def fold(self, photon_flux) -> np.ndarray:
        """(n_grp,) counts/s of a photon flux per energy bin (n_e,) [ph/cm2/s]."""
        return (np.asarray(photon_flux, dtype=np.float64) * self.specresp) @ self.matrix


def grouped_response(response: IsgriResponse, grouping: ChannelGrouping) -> GroupedResponse:
    """ARF (total effective area) and grouped RMF (redistribution) of an area-folded response."""
    m = response.matrix
    if grouping.last[-1] >= m.shape[1]:
        raise ValueError(f"grouping needs {grouping.last[-1] + 1} channels, the response has {m.shape[1]}")
    area = m.sum(axis=1)
    cum = np.concatenate([np.zeros((m.shape[0], 1)), np.cumsum(m, axis=1)], axis=1)
    grouped = cum[:, grouping.last + 1] - cum[:, grouping.first]
    rmf = np.divide(grouped, area[:, None], out=np.zeros_like(grouped), where=area[:, None] > 0)
    np.clip(rmf, 0.0, None, out=rmf)  # cumulative-sum round-off
    return GroupedResponse(response.energ_lo.copy(), response.energ_hi.copy(), area, rmf,
                           grouping.e_min.copy(), grouping.e_max.copy())


def shadowgram_cube(index, isgri_z, isgri_y, n: int) -> np.ndarray:
    """Counts of events per (group, pixel) in the gapped ISGRI layout.

    Parameters
    ----------
    index : array of int
        Group (energy channel group, time bin, ...) of each event, 0..n-1; events with
        other values are ignored.
    isgri_z, isgri_y : array of int
        Logical pixel of each event (0..127).
    n : int
        Number of groups.

    Returns
    -------
    numpy.ndarray
        float64, shape (n, 134, 130).
    """
    g = isgri_geometry()
    idx = np.asarray(index, dtype=np.int64)
    z = np.asarray(isgri_z, dtype=np.int64)
    y = np.asarray(isgri_y, dtype=np.int64)
    if not (idx.shape == z.shape == y.shape):
        raise ValueError("index, isgri_z and isgri_y must have one length")
    nz, ny = g.logical_shape
    ok = (idx >= 0) & (idx < n) & (z >= 0) & (z < nz) & (y >= 0) & (y < ny)
    flat = (idx[ok] * nz + z[ok]) * ny + y[ok]
    counts = np.bincount(flat, minlength=n * nz * ny).astype(np.float64).reshape(n, nz, ny)
    return g.to_gapped(counts)


def source_responses(tan_y, tan_z) -> np.ndarray:
    """Per-unit-rate ISGRI responses (n_src, 134, 130) of sources at (tan_y, tan_z)."""
    g = isgri_geometry()
    ty = np.atleast_1d(np.asarray(tan_y, dtype=np.float64))
    tz = np.atleast_1d(np.asarray(tan_z, dtype=np.float64))
    if ty.size == 0:
        return np.zeros((0,) + g.shape)
    return np.stack([pif_response(g, a, b) for a, b in zip(ty, tz)])


@dataclass(frozen=True, eq=False)
class SpectraResult:
    """Rates of every source in every group (channel group or time bin).

    rates, errors : (n_src, n_grp) counts/s; background : (n_grp, n_bkg) scales;
    good : (n_grp,) bool, False where nothing could be fitted (no counts, no exposure).
    """

    rates: np.ndarray
    errors: np.ndarray
    background: list
    good: np.ndarray


def _as_cube(a, n, shape, name):
    a = np.asarray(a, dtype=np.float64)
    if a.shape == shape:
        return np.broadcast_to(a, (n,) + shape)
    if a.shape != (n,) + shape:
        raise ValueError(f"{name} shape {a.shape}: expected {shape} or {(n,) + shape}")
    return a


def fit_cube(counts, weights, exposure_s, responses, background=None) -> SpectraResult:
    """Fit source rates per group (energy channel group or time bin) with fixed PIFs.

    Parameters
    ----------
    counts : numpy.ndarray
        (n_grp, 134, 130) shadowgrams (gapped layout).
    weights : numpy.ndarray
        Efficiency (134, 130) or per group (n_grp, 134, 130).
    exposure_s : float or array (n_grp,)
        Exposure time of each group, s (groups with 0 are skipped).
    responses : numpy.ndarray
        (n_src, 134, 130) from :func:`source_responses`.
    background : numpy.ndarray, optional
        Background shape (134, 130) or per group (n_grp, 134, 130); a flat term (the
        efficiency) is always fitted beside it, and alone when this is None.

    Returns
    -------
    SpectraResult
    """
    g = isgri_geometry()
    d = np.asarray(counts, dtype=np.float64)
    if d.ndim != 3 or d.shape[1:] != g.shape:
        raise ValueError(f"counts shape {d.shape}: expected (n, {g.shape[0]}, {g.shape[1]})")
    n = d.shape[0]
    w = _as_cube(weights, n, g.shape, "efficiency")
    b = None if background is None else _as_cube(background, n, g.shape, "background")
    t = np.broadcast_to(np.asarray(exposure_s, dtype=np.float64), (n,))
    r = np.asarray(responses, dtype=np.float64)
    n_src = r.shape[0]
    rates = np.full((n_src, n), np.nan)
    errors = np.full((n_src, n), np.nan)
    bkg_scales = []
    good = np.zeros(n, dtype=bool)
    for k in range(n):
        wk = w[k]
        if b is not None:
            wk = np.where(b[k] > 0, wk, 0.0)  # no background expected: a pixel that records nothing
        use = wk > 0
        if not (t[k] > 0) or not use.any() or d[k][use].sum() <= 0:
            bkg_scales.append(np.zeros(0))
            continue
        comps = [wk] if b is None else [b[k] * use, wk]
        keep = independent_components(comps, use)
        bk = np.stack([comps[i] for i in keep]) if keep else None
        try:
            f = fit_sources(d[k], wk, r, bk, float(t[k]))
            if f.model[use].min() <= 0:
                # The Poisson fit pushed the model to 0 on pixels without counts (few counts per
                # pixel): its Fisher errors are meaningless there; least squares is robust.
                f = fit_sources(d[k], wk, r, bk, float(t[k]), method="least_squares")
        except (ValueError, np.linalg.LinAlgError):
            bkg_scales.append(np.zeros(0))
            continue
        if not (np.all(np.isfinite(f.rates)) and np.all(np.isfinite(f.errors))):
            bkg_scales.append(np.zeros(0))
            continue
        rates[:, k], errors[:, k] = f.rates, f.errors
        bkg_scales.append(f.background)
        good[k] = True
    return SpectraResult(rates=rates, errors=errors, background=bkg_scales, good=good)


def extract_spectra(energy, isgri_z, isgri_y, grouping: ChannelGrouping, weights, exposure_s, tan_y, tan_z,
                    background=None) -> SpectraResult:
    """Spectra of sources at (tan_y, tan_z) from selected events of one science window.

    Parameters
    ----------
    energy, isgri_z, isgri_y : arrays (n_events,)
        Corrected energy (keV) and logical pixel of the good events (selection flag 0,
        inside the good time).
    grouping : ChannelGrouping
    weights : numpy.ndarray
        Efficiency map (128 x 128 logical or 134 x 130 gapped), or one per group
        (n_groups, ...).
    exposure_s : float
        Time the efficiency refers to (ONTIME), s.
    tan_y, tan_z : arrays (n_src,)
        Source directions: every source in the field, fitted jointly.
    background : numpy.ndarray, optional
        Background model shape (logical or gapped, any normalisation), or one per group.

    Returns
    -------
    SpectraResult
        rates/errors (n_src, n_groups) counts/s.
    """
    g = isgri_geometry()
    cube = shadowgram_cube(grouping.group_of_energy(energy), isgri_z, isgri_y, len(grouping))
    w = _gapped(weights)
    bkg = None if background is None else _gapped(background)
    return fit_cube(cube, w, exposure_s, source_responses(tan_y, tan_z), bkg)


def _gapped(maps) -> np.ndarray:
    """Maps (..., 128, 128) logical or (..., 134, 130) gapped, in the gapped layout."""
    g = isgri_geometry()
    a = np.asarray(maps, dtype=np.float64)
    return g.to_gapped(a) if a.shape[-2:] == g.logical_shape else a
