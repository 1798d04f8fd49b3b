"""Source lists from sky images: detection + identification -> ISGR-SRCL-RES.

The component between the generic detection algorithm (`imaging.detect`) and the
products: used by the IMA level on our own images and by `isdc-run detect` on any
sky image or mosaic in the OSA layout.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.wcs import WCS, FITSFixedWarning

from isdc.dal.archive import Archive
from isdc.dal.catalog import read_catalog
from isdc.dal.fitsfile import Table
from isdc.dal.skyimages import SkyImageSet
from isdc.dal.templates import get as get_template
from isdc.imaging.detect import find_sources, identify, psla_arcmin

__all__ = ["ReferenceSources", "detect_band", "srcl_columns", "source_list", "celestial_wcs", "catalog_path",
           "reference_sources"]


@dataclass
class ReferenceSources:
    """The catalogue columns identification needs (arrays of equal length); `bright`: the
    sources the IMA level fits and removes before searching (ISGRI_FLAG2 = 5)."""

    source_id: np.ndarray
    name: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    err_rad_deg: np.ndarray
    path: str = ""
    bright: np.ndarray | None = None

    def __post_init__(self):
        if self.bright is None:
            self.bright = np.zeros(len(self.ra), dtype=bool)

    @classmethod
    def from_catalog(cls, cat, path: str = "") -> "ReferenceSources":
        """From an `isdc.dal.catalog.Catalog` (SOURCE_ID, ERR_RAD, ISGRI_FLAG2 used when present)."""
        n = len(cat)
        sid = cat["SOURCE_ID"] if cat.has("SOURCE_ID") else np.full(n, "")
        err = cat["ERR_RAD"].astype(float) if cat.has("ERR_RAD") else np.zeros(n)
        bright = np.asarray(cat["ISGRI_FLAG2"]) == 5 if cat.has("ISGRI_FLAG2") else np.zeros(n, dtype=bool)
        return cls(np.asarray(sid, dtype=str), cat.name, cat.ra, cat.dec, np.nan_to_num(err), path or cat.cat_name,
                   bright)

    @classmethod
    def empty(cls) -> "ReferenceSources":
        z = np.zeros(0)
        return cls(np.zeros(0, "U1"), np.zeros(0, "U1"), z, z, z, "")


def catalog_path(archive: str, config) -> Path | None:
    """The reference catalogue file of a run: config 'catalog' ('default' = the archive's
    cat/gnrl_refr_cat.fits, None when the archive has none; else a file path)."""
    name = config.get("catalog", "default") if hasattr(config, "get") else "default"
    if name == "default":
        path = Archive(archive).cat_dir() / "gnrl_refr_cat.fits"
        return path if path.is_file() else None
    return Path(name)


def reference_sources(archive: str, config) -> ReferenceSources:
    """The run's reference sources (empty without a catalogue); CatalogError if unreadable."""
    path = catalog_path(archive, config)
    if path is None:
        return ReferenceSources.empty()
    return ReferenceSources.from_catalog(read_catalog(path), path.name)


def celestial_wcs(header) -> WCS:
    """The celestial WCS of an image header (OSA's deprecated RADECSYS accepted quietly)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header).celestial


def detect_band(
    images: SkyImageSet,
    catalog: ReferenceSources | None = None,
    *,
    threshold: float = 6.0,
    psf_sigma: float = 1.1,
) -> dict[str, np.ndarray]:
    """Detect and identify sources in one band's maps: the ISGR-SRCL-RES columns."""
    sig = images.maps["SIGNIFICANCE"].data
    inten = images.get("INTENSITY").data if images.get("INTENSITY") is not None else None
    var = images.get("VARIANCE").data if images.get("VARIANCE") is not None else None
    expo = images.get("EXPOSURE")
    valid = (expo.data > 0) if expo is not None else None
    dets = find_sources(sig, inten, var, threshold=threshold, psf_sigma=psf_sigma, valid=valid)
    wcs = celestial_wcs(images.header)
    n = len(dets)
    if n:
        sky = wcs.pixel_to_world_values(np.array([d.x for d in dets]), np.array([d.y for d in dets]))
        ra, dec = np.asarray(sky[0], float) % 360.0, np.asarray(sky[1], float)
    else:
        ra = dec = np.zeros(0)
    snr = np.array([d.detsig for d in dets])
    cat = catalog or ReferenceSources.empty()
    idx, dist = identify(ra, dec, snr, cat.ra, cat.dec, cat.err_rad_deg)
    return srcl_columns(ra, dec, snr, np.array([d.flux for d in dets]), np.array([d.flux_err for d in dets]),
                        images.e_min, images.e_max, idx, dist, cat)


def srcl_columns(ra, dec, snr, flux, flux_err, e_min: float, e_max: float, idx, dist,
                 catalog: ReferenceSources | None = None) -> dict[str, np.ndarray]:
    """ISGR-SRCL-RES columns of identified sources.

    ra, dec : fitted positions (deg); snr : DETSIG; flux, flux_err : counts/s;
    idx : catalogue row of each source or -1 (new: named NEW_k, RA_OBJ = fitted);
    dist : distance to the identified catalogue source (arcmin).
    """
    cat = catalog or ReferenceSources.empty()
    ra, dec, snr = (np.asarray(a, dtype=float) for a in (ra, dec, snr))
    idx = np.asarray(idx, dtype=int)
    n = len(ra)
    new = idx < 0
    names, ids, ra_obj, dec_obj = [], [], ra.copy(), dec.copy()
    k = 0
    for i in range(n):
        if new[i]:
            k += 1
            names.append(f"NEW_{k}")
            ids.append("")
        else:
            j = idx[i]
            names.append(str(cat.name[j]))
            ids.append(str(cat.source_id[j]))
            ra_obj[i], dec_obj[i] = cat.ra[j], cat.dec[j]
    cols = {
        "SOURCE_ID": np.array(ids, dtype="U16") if n else np.zeros(0, "U1"),
        "NAME": np.array(names, dtype="U50") if n else np.zeros(0, "U1"),
        "RA_OBJ": ra_obj, "DEC_OBJ": dec_obj, "RA_FIN": ra, "DEC_FIN": dec,
        "ERR_RAD": psla_arcmin(snr) / 60.0 if n else np.zeros(0),
        "DETSIG": snr,
        "FLUX": np.asarray(flux, dtype=float), "FLUX_ERR": np.asarray(flux_err, dtype=float),
        "E_MIN": np.full(n, float(e_min)), "E_MAX": np.full(n, float(e_max)),
        "NEW_SOURCE": new.astype(np.int16),
        "OFF_ID": np.where(new, np.nan, np.asarray(dist, dtype=float)),
    }
    return cols


def source_list(
    sets: list[SkyImageSet],
    catalog: ReferenceSources | None = None,
    *,
    threshold: float = 6.0,
    psf_sigma: float = 1.1,
    image_name: str = "",
    swid: str | None = None,
) -> Table:
    """ISGR-SRCL-RES of every band of an image file (rows: sources x bands, band by band)."""
    per_band = [detect_band(s, catalog, threshold=threshold, psf_sigma=psf_sigma) for s in sets]
    cols = {k: np.concatenate([c[k] for c in per_band]) for k in per_band[0]} if per_band else {}
    kw = dict(DETTHRES=float(threshold), IMAFILE=image_name[-68:],
              CATFILE=((catalog.path if catalog else "") or "NONE")[-68:])
    if swid:
        kw["SWID"] = swid
    return get_template("ISGR-SRCL-RES").table(cols, **kw)
