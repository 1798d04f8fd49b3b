"""ISGRI imaging level (IMA): sky images and source lists of one science window.

Per energy band: the shadowgram (counts), efficiency map and background model of the BIN
and BKG levels are cleaned by iterative removal of sources in detector space
(:func:`isdc.imaging.iros.iros`): the catalogue's bright sources in the field (ISGRI_FLAG2
= 5) are fitted first with their PIFs, then every residual peak above the threshold joins
the fit, and the model of all sources and the background is subtracted from the
shadowgram before the residual is decoded - which removes each source's coding noise and
ghosts with it.  Sources get their rate (FLUX, counts/s) and position (RA_FIN, DEC_FIN)
from the PIF fit in detector space; DETSIG is the fit's rate / error.  Found sources are
identified with the nearest catalogue source within the PSLA radius (x2, at least 3');
the others are new (NEW_SOURCE = 1).

Pure numpy: arrays, an attitude and a catalogue in; images and source-list columns out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from isdc.imaging.decode import Decoder, SkyImages
from isdc.imaging.detect import identify
from isdc.imaging.iros import IrosResult, SourceSeed, iros
from isdc.imaging.projection import Attitude, radec_to_tan, tan_to_radec
from isdc.instruments.isgri.geometry import isgri_geometry

__all__ = ["ImaBand", "CatalogSources", "BandSources", "ImaBandResult", "ima_band", "ima_scw", "isgri_decoder"]

_DECODER: list[Decoder] = []


def isgri_decoder() -> Decoder:
    """The shared ISGRI decoder (kernel spectra computed once per process, ~50 ms)."""
    if not _DECODER:
        _DECODER.append(Decoder(isgri_geometry()))
    return _DECODER[0]


@dataclass(frozen=True, eq=False)
class ImaBand:
    """Inputs of one energy band (logical 128 x 128 arrays [ISGRI_Z, ISGRI_Y] or gapped 134 x 130).

    counts : shadowgram, counts.
    efficiency : efficiency per pixel (live fraction x pixel status x threshold efficiency).
    exposure_s : time the efficiency map refers to, s (ONTIME when the efficiency holds the
        live fraction).
    background : background model shadowgram (expected counts), or None (flat).
    """

    e_min: float
    e_max: float
    counts: np.ndarray
    efficiency: np.ndarray
    exposure_s: float
    background: np.ndarray | None = None

    def gapped(self):
        """(counts, efficiency, background) in the gapped 134 x 130 layout."""
        g = isgri_geometry()
        out = []
        for name in ("counts", "efficiency", "background"):
            a = getattr(self, name)
            if a is None:
                out.append(None)
                continue
            a = np.asarray(a, dtype=np.float64)
            if a.shape == g.logical_shape:
                a = g.to_gapped(a)
            elif a.shape != g.shape:
                raise ValueError(f"{self.e_min:g}-{self.e_max:g} keV: {name} has shape {a.shape}, expected "
                                 f"{g.logical_shape} or {g.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{self.e_min:g}-{self.e_max:g} keV: {name} has non-finite values")
            out.append(a)
        return tuple(out)


@dataclass(frozen=True, eq=False)
class CatalogSources:
    """The reference-catalogue columns imaging needs (arrays of one length).

    ra, dec : deg (J2000); err_rad_deg : catalogue position error (deg);
    bright : bool, sources fitted and removed before the search (ISGRI_FLAG2 = 5).
    """

    ra: np.ndarray
    dec: np.ndarray
    err_rad_deg: np.ndarray
    bright: np.ndarray

    @classmethod
    def empty(cls) -> "CatalogSources":
        z = np.zeros(0)
        return cls(z, z, z, np.zeros(0, bool))

    def __len__(self) -> int:
        return len(self.ra)


@dataclass
class BandSources:
    """Sources of one band (arrays of one length, brightest-first not implied).

    tan_y, tan_z : fitted directions (instrument frame); ra, dec : deg (RA_FIN, DEC_FIN);
    snr : rate / error of the PIF fit (DETSIG); rate, error : counts/s (FLUX, FLUX_ERR);
    catalog_index : row of the identified catalogue source, -1 for a new source;
    offset_arcmin : distance to it (NaN when new); seed : fitted from the catalogue's
    bright sources (listed whatever their significance, like OSA's fitted catalogue sources).
    """

    tan_y: np.ndarray
    tan_z: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    snr: np.ndarray
    rate: np.ndarray
    error: np.ndarray
    catalog_index: np.ndarray
    offset_arcmin: np.ndarray
    seed: np.ndarray

    def __len__(self) -> int:
        return len(self.tan_y)


@dataclass(frozen=True, eq=False)
class ImaBandResult:
    e_min: float
    e_max: float
    images: SkyImages
    sources: BandSources
    iros: IrosResult = field(repr=False)


def _seeds(attitude: Attitude, catalog: CatalogSources, decoder: Decoder) -> list[SourceSeed]:
    """Bright catalogue sources whose direction is inside the decoded field."""
    idx = np.flatnonzero(catalog.bright)
    if idx.size == 0:
        return []
    ty, tz = radec_to_tan(attitude, catalog.ra[idx], catalog.dec[idx])
    hy, hz = decoder.geometry.partially_coded_half_tan
    ok = np.isfinite(ty) & (np.abs(ty) < hy) & (np.abs(tz) < hz)
    return [SourceSeed(float(ty[k]), float(tz[k]), int(idx[k])) for k in np.flatnonzero(ok)]


def _angular_distance_arcmin(ra1, dec1, ra2, dec2) -> np.ndarray:
    r1, d1, r2, d2 = (np.radians(np.asarray(v, dtype=float)) for v in (ra1, dec1, ra2, dec2))
    cosd = np.sin(d1) * np.sin(d2) + np.cos(d1) * np.cos(d2) * np.cos(r1 - r2)
    return np.degrees(np.arccos(np.clip(cosd, -1.0, 1.0))) * 60.0


def _band_sources(result: IrosResult, attitude: Attitude, catalog: CatalogSources, threshold: float) -> BandSources:
    fit = result.fit
    if fit is None or len(fit.rates) == 0:
        keep = np.zeros(0, dtype=int)
        seed = np.zeros(0, dtype=bool)
    else:
        seed = np.array([lab is not None for lab in result.labels], dtype=bool)
        # Found sources were above the threshold when found and must stay above it.
        keep = np.flatnonzero(seed | (fit.snr >= threshold))
        seed = seed[keep]
    n = keep.size
    if n == 0:
        z = np.zeros(0)
        return BandSources(z, z, z, z, z, z, z, np.zeros(0, int), z, np.zeros(0, bool))
    ty, tz = fit.tan_y[keep], fit.tan_z[keep]
    ra, dec = tan_to_radec(attitude, ty, tz)
    ra = np.asarray(ra, float) % 360.0
    dec = np.asarray(dec, float)
    snr = fit.snr[keep]
    cat_idx = np.array([-1 if result.labels[k] is None else int(result.labels[k]) for k in keep], dtype=int)
    found = np.flatnonzero(~seed)
    if found.size and len(catalog):
        idx, _ = identify(ra[found], dec[found], np.maximum(snr[found], 1.0), catalog.ra, catalog.dec,
                          catalog.err_rad_deg)
        cat_idx[found] = idx
    off = np.full(n, np.nan)
    ok = cat_idx >= 0
    if ok.any():
        off[ok] = _angular_distance_arcmin(ra[ok], dec[ok], catalog.ra[cat_idx[ok]], catalog.dec[cat_idx[ok]])
    return BandSources(ty, tz, ra, dec, snr, fit.rates[keep], fit.errors[keep], cat_idx, off, seed)


def ima_band(band: ImaBand, attitude: Attitude, catalog: CatalogSources | None = None, *, threshold: float = 6.0,
             max_sources: int = 50, remove_catalog_sources: bool = True,
             decoder: Decoder | None = None) -> ImaBandResult:
    """Images and sources of one energy band.

    Parameters
    ----------
    band : ImaBand
    attitude : Attitude
        Pointing of the science window (RA/DEC_SCX, RA/DEC_SCZ).
    catalog : CatalogSources, optional
        Reference sources for identification; its bright ones are fitted first when
        `remove_catalog_sources`.
    threshold : float
        Detection threshold, sigma (residual-map peak and fitted rate/error).
    max_sources : int
        Most sources in the model.
    decoder : Decoder, optional
        Default: the shared ISGRI decoder.

    Returns
    -------
    ImaBandResult
    """
    dec = decoder or isgri_decoder()
    catalog = catalog if catalog is not None else CatalogSources.empty()
    counts, eff, bkg = band.gapped()
    if not np.any(eff > 0):
        raise ValueError(f"{band.e_min:g}-{band.e_max:g} keV: the efficiency map is 0 everywhere")
    seeds = _seeds(attitude, catalog, dec) if remove_catalog_sources else []
    res = iros(dec, counts, eff, band.exposure_s, seeds=seeds,
               background_models=None if bkg is None else [bkg], threshold=threshold, max_sources=max_sources)
    sources = _band_sources(res, attitude, catalog, threshold)
    return ImaBandResult(band.e_min, band.e_max, res.images, sources, res)


def ima_scw(bands: list[ImaBand], attitude: Attitude, catalog: CatalogSources | None = None,
            **kwargs) -> list[ImaBandResult]:
    """`ima_band` for every band of a science window (same keyword arguments)."""
    return [ima_band(b, attitude, catalog, **kwargs) for b in bands]
