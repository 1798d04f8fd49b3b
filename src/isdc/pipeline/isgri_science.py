"""ISGRI science-window levels IMA, SPE, LCR as pipeline tasks.

Dataset types (the data contract, docs/isgri.md):

| dataset | file | structure | made by |
|---|---|---|---|
| isgri_sky_ima | isgri_sky_ima.fits | GROUPING + ISGR-SKY.-IMA per band and map | IsgriIma |
| isgri_srcl_res | isgri_srcl_res.fits | ISGR-SRCL-RES (rows: sources x bands) | IsgriIma |
| isgri_spectrum | isgri_spectrum.fits | SPECTRUM (PHA type II) + ISGR-EVTS-SPE per source | IsgriSpe |
| isgri_rmf | isgri_rmf.fits | MATRIX + EBOUNDS (ISGR-RMF.-SPE, ISGR-EBDS-SPE) | IsgriSpe |
| isgri_arf | isgri_arf.fits | SPECRESP (ISGR-ARF.-SPE) | IsgriSpe |
| isgri_lc | isgri_lc.fits | ISGR-SRC.-LCR per source and band + GTI | IsgriLcr |

The science is in `isdc.instruments.isgri.{ima,spectra,lightcurves}`; these tasks read
the BIN/BKG/COR/GTI/DEAD products, call it and write.  Rates everywhere follow the OSA
intensity convention (counts/s of the whole detector on axis through an open mask, dead
time corrected): the efficiency maps hold the live fraction and the exposure passed to
the fits is ONTIME.
"""
from __future__ import annotations


import numpy as np

from isdc.dal import ogip
from isdc.dal.fitsfile import FitsError, FitsFile, Image
from isdc.dal.products import Product
from isdc.dal.skyimages import SkyImageSet, sky_image_hdus
from isdc.dal.templates import get as get_template
from isdc.imaging.projection import Attitude, radec_to_tan, sky_wcs
from isdc.instruments.isgri.ima import CatalogSources, ImaBand, ima_scw, isgri_decoder
from isdc.instruments.isgri.lightcurves import bin_efficiency, extract_light_curves, module_live_in_bins, \
    time_bin_edges
from isdc.instruments.isgri.response import IsgriResponse, ResponseError
from isdc.instruments.isgri.spectra import extract_spectra, grouped_response, standard_grouping
from isdc.pipeline import isgri_scw  # noqa: F401  (registers the datasets this module reads)
from isdc.pipeline.base import NoWork, PermanentError, ScwTask, canonical_digest, config_value, register_dataset
from isdc.pipeline.isgri_scw import read_band_products
from isdc.pipeline.skymaps import wcs_keywords
from isdc.pipeline.sourcelist import catalog_path, reference_sources, srcl_columns

__all__ = ["IsgriIma", "IsgriSpe", "IsgriLcr", "scw_sources", "SPECTRUM_FILES"]

register_dataset("isgri_sky_ima", "scw", "isgri_sky_ima.fits", "ISGRI sky images per band (ISGR-SKY.-IMA)")
register_dataset("isgri_srcl_res", "scw", "isgri_srcl_res.fits", "ISGRI source list (ISGR-SRCL-RES)")
register_dataset("isgri_spectrum", "scw", "isgri_spectrum.fits",
                 "ISGRI source spectra (OGIP PHA: SPECTRUM type II + ISGR-EVTS-SPE per source)")
register_dataset("isgri_rmf", "scw", "isgri_rmf.fits", "ISGRI spectral redistribution matrix (OGIP RMF)")
register_dataset("isgri_arf", "scw", "isgri_arf.fits", "ISGRI effective area (OGIP ARF)")
register_dataset("isgri_lc", "scw", "isgri_lc.fits", "ISGRI source light curves (ISGR-SRC.-LCR + GTI)")

SPECTRUM_FILES = {"RESPFILE": "isgri_rmf.fits", "ANCRFILE": "isgri_arf.fits"}
"""Response files a spectrum names, relative to it (written beside it by IsgriSpe)."""


def _cfg(task: ScwTask, key: str):
    return config_value(task.config, key)


def _scw_keywords(task: ScwTask) -> dict:
    info = task.scw_info()
    return {"REVOL": info.revol, "SWID": info.scw.swid, "TSTART": info.tstart, "TSTOP": info.tstop}


def _attitude(task: ScwTask) -> Attitude:
    info = task.scw_info()
    try:
        return Attitude(info.ra_scx, info.dec_scx, info.ra_scz, info.dec_scz)
    except ValueError as exc:
        raise PermanentError(f"{task.scw}: swg.fits attitude: {exc}") from exc


def _catalog_record(archive: str, config) -> dict:
    """Provenance/fingerprint record of the catalogue (a new catalogue -> products stale)."""
    path = catalog_path(archive, config)
    if path is None:
        return {"kind": "catalog", "structure": "GNRL-REFR-CAT", "file": "", "version": 0, "datasum": ""}
    try:
        sums = ",".join(str(h.header.get("DATASUM", "")) for h in FitsFile(path).hdus)
    except (FitsError, OSError) as exc:
        sums = f"unreadable: {exc}"
    return {"kind": "catalog", "structure": "GNRL-REFR-CAT", "file": str(path.name), "version": 0,
            "datasum": canonical_digest(sums)}


def _band_key(header) -> tuple[float, float]:
    return float(header["E_MIN"]), float(header["E_MAX"])


def _background_maps(product: Product) -> dict[tuple[float, float], np.ndarray]:
    return {_band_key(h.header): np.asarray(h.data, dtype=np.float64) for h in product.all("ISGR-BKG.-SHD")}


# --------------------------------------------------------------------------- IMA

class IsgriIma(ScwTask):
    """Sky images (INTENSITY, VARIANCE, SIGNIFICANCE, EXPOSURE per band) and the source list."""

    inputs = {"shadowgrams": "isgri_shadowgrams", "bkg": "isgri_bkg_shadowgrams"}
    outputs = {"images": "isgri_sky_ima", "srcl": "isgri_srcl_res"}
    algorithm_version = 1
    config_keys = ("isgri.ima.detection_threshold", "isgri.ima.max_sources", "isgri.ima.remove_catalog_sources",
                   "catalog")

    def ic_selection(self) -> list[dict]:
        return super().ic_selection() + [_catalog_record(self.archive, self.config)]

    def process(self, inputs):
        info = self.scw_info()
        attitude = _attitude(self)
        catalog = reference_sources(self.archive, self.config)
        bkg = _background_maps(inputs["bkg"])
        bands, headers = [], []
        for e1, e2, det, effi in read_band_products(inputs["shadowgrams"]):
            ontime = float(det.header["ONTIME"])
            if not ontime > 0:
                raise PermanentError(f"{self.scw}: {inputs['shadowgrams'].path}: ONTIME {ontime} in {e1:g}-{e2:g} keV")
            back = bkg.get((e1, e2))
            if back is None:
                raise PermanentError(f"{self.scw}: {inputs['bkg'].path} has no background for {e1:g}-{e2:g} keV")
            bands.append(ImaBand(e1, e2, det.data, effi.data, ontime, back))
            headers.append(det.header)
        if not bands:
            raise PermanentError(f"{self.scw}: {inputs['shadowgrams'].path} holds no shadowgram")
        cat = CatalogSources(catalog.ra, catalog.dec, catalog.err_rad_deg, np.asarray(catalog.bright, dtype=bool))
        try:
            results = ima_scw(bands, attitude, cat, threshold=_cfg(self, "isgri.ima.detection_threshold"),
                              max_sources=_cfg(self, "isgri.ima.max_sources"),
                              remove_catalog_sources=_cfg(self, "isgri.ima.remove_catalog_sources"))
        except ValueError as exc:
            raise PermanentError(f"{self.scw}: {exc}") from exc
        wcs = wcs_keywords(sky_wcs(isgri_decoder().grid, attitude))
        scw_kw = _scw_keywords(self)
        sets, cols = [], []
        for band, res, h in zip(bands, results, headers):
            kw = dict(wcs, SWID=scw_kw["SWID"], TSTART=info.tstart, TSTOP=info.tstop,
                      EXPOSURE=float(h["EXPOSURE"]), ONTIME=float(h["ONTIME"]), DEADC=float(h["DEADC"]))
            im = res.images
            maps = {name: Image(np.asarray(data, dtype=np.float32), dict(kw))
                    for name, data in (("INTENSITY", im.intensity), ("VARIANCE", im.variance),
                                       ("SIGNIFICANCE", im.significance), ("EXPOSURE", im.exposure))}
            sets.append(SkyImageSet(band.e_min, band.e_max, maps, "ISGR-SKY.-IMA"))
            s = res.sources
            cols.append(srcl_columns(s.ra, s.dec, s.snr, s.rate, s.error, band.e_min, band.e_max,
                                     s.catalog_index, s.offset_arcmin, catalog))
        primary = {"SWID": scw_kw["SWID"], "REVOL": scw_kw["REVOL"]}
        images = Product(sky_image_hdus(sets, "ISGR-SKY.-IMA", primary, str(self.dataset_path("isgri_sky_ima"))))
        table = {k: np.concatenate([c[k] for c in cols]) for k in cols[0]}
        srcl = get_template("ISGR-SRCL-RES").table(
            table, DETTHRES=float(_cfg(self, "isgri.ima.detection_threshold")),
            IMAFILE=self.dataset_path("isgri_sky_ima").name, CATFILE=(catalog.path or "NONE")[-68:],
            SWID=scw_kw["SWID"])
        return {"images": images, "srcl": Product([srcl])}


# --------------------------------------------------------------------------- sources for SPE / LCR

def scw_sources(srcl) -> list[dict]:
    """The distinct sources of a ScW's ISGR-SRCL-RES, most significant first: NAME,
    SOURCEID, RA_OBJ, DEC_OBJ (catalogue position when identified, else the fit of the band
    where the source is most significant) and DETSIG (the highest over the bands)."""
    best: dict[str, dict] = {}
    for i in range(len(srcl)):
        name = str(srcl["NAME"][i]).strip()
        sig = float(srcl["DETSIG"][i])
        if name not in best or sig > best[name]["DETSIG"]:
            best[name] = {"NAME": name, "SOURCEID": str(srcl["SOURCE_ID"][i]).strip(),
                          "RA_OBJ": float(srcl["RA_OBJ"][i]), "DEC_OBJ": float(srcl["DEC_OBJ"][i]), "DETSIG": sig}
    return sorted(best.values(), key=lambda s: -s["DETSIG"])


def _source_directions(task: ScwTask, sources: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    ty, tz = radec_to_tan(_attitude(task), [s["RA_OBJ"] for s in sources], [s["DEC_OBJ"] for s in sources])
    ty, tz = np.atleast_1d(ty), np.atleast_1d(tz)
    if not (np.all(np.isfinite(ty)) and np.all(np.isfinite(tz))):
        raise PermanentError(f"{task.scw}: a listed source lies behind the instrument")
    return ty, tz


def _good_events(task: ScwTask, inputs) -> dict[str, np.ndarray]:
    """TIME, ISGRI_Z, ISGRI_Y, ISGRI_ENERGY of events with SELECT_FLAG 0 inside the good time."""
    try:
        ev = inputs["events"].table("ISGR-EVTS-ALL")
        ec = inputs["events_cor"].table("ISGR-EVTS-COR")
        g = inputs["gti"].table("IBIS-GNRL-GTI")
    except FitsError as exc:
        raise PermanentError(f"{task.scw}: {exc}") from exc
    if len(ev) != len(ec):
        raise PermanentError(f"{task.scw}: {inputs['events_cor'].path} has {len(ec)} rows, the events "
                             f"{inputs['events'].path} {len(ev)}")
    t = np.asarray(ev["TIME"], dtype=np.float64)
    good = np.asarray(ec["SELECT_FLAG"]) == 0
    in_gti = np.zeros(len(t), dtype=bool)
    for a, b in zip(g["START"], g["STOP"]):
        in_gti |= (t >= a) & (t < b)
    keep = good & in_gti
    return {"TIME": t[keep], "ISGRI_Z": np.asarray(ev["ISGRI_Z"])[keep], "ISGRI_Y": np.asarray(ev["ISGRI_Y"])[keep],
            "ISGRI_ENERGY": np.asarray(ec["ISGRI_ENERGY"])[keep], "GTI": (np.asarray(g["START"]), np.asarray(g["STOP"]))}


def _nearest(bands: list[tuple[float, float]], energy: float) -> tuple[float, float]:
    """The band (E_MIN, E_MAX) holding `energy`, else the one nearest to it."""
    def dist(key):
        lo, hi = key
        return 0.0 if lo <= energy < hi else min(abs(energy - lo), abs(energy - hi))
    return min(bands, key=dist)


# --------------------------------------------------------------------------- SPE

class IsgriSpe(ScwTask):
    """Source spectra by PIF fits per channel (OGIP PHA type II + I) with their RMF and ARF."""

    inputs = {"events": "isgri_events_raw", "events_cor": "isgri_events_cor", "gti": "ibis_gti",
              "shadowgrams": "isgri_shadowgrams", "bkg": "isgri_bkg_shadowgrams", "srcl": "isgri_srcl_res"}
    outputs = {"spectrum": "isgri_spectrum", "rmf": "isgri_rmf", "arf": "isgri_arf"}
    algorithm_version = 1
    config_keys = ("isgri.spe.min_significance",)
    ic_structures = (("isgri", "ISGR-RMF.-RSP"),)

    def response(self) -> tuple[IsgriResponse, object]:
        sel = self.ic_file("isgri", "ISGR-RMF.-RSP")
        try:
            return IsgriResponse.load(sel.path), sel
        except ResponseError as exc:
            raise PermanentError(f"{self.scw}: response IC file: {exc}") from exc

    def process(self, inputs):
        srcl = inputs["srcl"].table("ISGR-SRCL-RES")
        sources = scw_sources(srcl)
        wanted = [s for s in sources if s["DETSIG"] >= _cfg(self, "isgri.spe.min_significance")]
        if not wanted:
            raise NoWork(f"no source above {_cfg(self, 'isgri.spe.min_significance'):g} sigma")
        resp, sel = self.response()
        try:
            grouping = standard_grouping(resp.e_min, resp.e_max)
        except ValueError as exc:
            raise PermanentError(f"{self.scw}: response {sel.path}: {exc}") from exc
        gr = grouped_response(resp, grouping)
        bands = {(e1, e2): (det, effi) for e1, e2, det, effi in read_band_products(inputs["shadowgrams"])}
        if not bands:
            raise PermanentError(f"{self.scw}: {inputs['shadowgrams'].path} holds no shadowgram")
        bkg = _background_maps(inputs["bkg"])
        det, effi = next(iter(bands.values()))
        ontime = float(det.header["ONTIME"])
        ev = _good_events(self, inputs)
        ty, tz = _source_directions(self, sources)
        # Each channel group takes the efficiency and background shape of the band nearest in energy.
        centre = 0.5 * (grouping.e_min + grouping.e_max)
        nearest = [_nearest(list(bands), c) for c in centre]
        weights = np.stack([bands[k][1].data for k in nearest])
        back = None
        if bkg:
            missing = [k for k in bands if k not in bkg]
            if missing:
                raise PermanentError(f"{self.scw}: {inputs['bkg'].path} has no background for {missing} keV")
            back = np.stack([bkg[k] for k in nearest])
        res = extract_spectra(ev["ISGRI_ENERGY"], ev["ISGRI_Z"], ev["ISGRI_Y"], grouping, weights, ontime, ty, tz,
                              back)
        rates, errors, good = res.rates, res.errors, res.good
        idx = [sources.index(s) for s in wanted]
        kw = dict(_scw_keywords(self), EXPOSURE=float(det.header["EXPOSURE"]), ONTIME=ontime,
                  DEADC=float(det.header["DEADC"]), **SPECTRUM_FILES)
        meta = [{k: s[k] for k in ("NAME", "SOURCEID", "RA_OBJ", "DEC_OBJ")} for s in wanted]
        tables = ogip.spectrum_tables(rates[idx], errors[idx], (~good).astype(np.int16), meta, **kw)
        rsp_kw = dict(RSPFILE=str(sel.file)[-68:], RSPVERS=int(sel.version))
        return {"spectrum": Product(tables),
                "rmf": Product(ogip.rmf_tables(gr.energ_lo, gr.energ_hi, gr.matrix, gr.e_min, gr.e_max, **rsp_kw)),
                "arf": Product([ogip.arf_table(gr.energ_lo, gr.energ_hi, gr.specresp, **rsp_kw)])}


# --------------------------------------------------------------------------- LCR

class IsgriLcr(ScwTask):
    """Source light curves per energy band by PIF fits per time bin (OGIP RATE + GTI)."""

    inputs = {"events": "isgri_events_raw", "events_cor": "isgri_events_cor", "gti": "ibis_gti",
              "dead": "isgri_dead", "shadowgrams": "isgri_shadowgrams", "bkg": "isgri_bkg_shadowgrams",
              "srcl": "isgri_srcl_res"}
    outputs = {"lc": "isgri_lc"}
    algorithm_version = 1
    config_keys = ("isgri.lcr.time_bin_s",)

    def process(self, inputs):
        srcl = inputs["srcl"].table("ISGR-SRCL-RES")
        sources = scw_sources(srcl)
        if not sources:
            raise NoWork("no source in the source list")
        bin_s = float(_cfg(self, "isgri.lcr.time_bin_s"))
        ev = _good_events(self, inputs)
        start, stop = ev["GTI"]
        edges = time_bin_edges(start, stop, bin_s)
        try:
            dead = inputs["dead"].table("ISGR-DEAD-SCP")
            live_scw = np.array([float(dead.header[f"DEADC_{m}"]) for m in range(8)])
            live = module_live_in_bins(edges, dead["TIME"], dead["TIMEDEL"], dead["DEADTIME"], start, stop)
        except (FitsError, KeyError, ValueError) as exc:
            raise PermanentError(f"{self.scw}: {inputs['dead'].path}: {exc}") from exc
        ty, tz = _source_directions(self, sources)
        bkg = _background_maps(inputs["bkg"])
        scw_kw = _scw_keywords(self)
        tables = []
        for e1, e2, det, effi in read_band_products(inputs["shadowgrams"]):
            sel = (ev["ISGRI_ENERGY"] >= e1) & (ev["ISGRI_ENERGY"] < e2)
            eff = bin_efficiency(effi.data, live, live_scw)
            lc = extract_light_curves(ev["TIME"][sel], ev["ISGRI_Z"][sel], ev["ISGRI_Y"][sel], start, stop, bin_s,
                                      eff, ty, tz, bkg.get((e1, e2)), edges=edges)
            rows = lc.good & (lc.ontime > 0)
            for k, s in enumerate(sources):
                tables.append(ogip.light_curve_table(
                    lc.time[rows], lc.rates[k, rows], lc.errors[k, rows], lc.fracexp[rows],
                    TIMEDEL=lc.bin_days, TSTART=float(edges[0]), TSTOP=float(edges[-1]),
                    ONTIME=float(det.header["ONTIME"]), EXPOSURE=float(det.header["EXPOSURE"]), E_MIN=e1, E_MAX=e2,
                    REVOL=scw_kw["REVOL"], SWID=scw_kw["SWID"], NAME=s["NAME"], SOURCEID=s["SOURCEID"],
                    RA_OBJ=s["RA_OBJ"], DEC_OBJ=s["DEC_OBJ"], EXTVER=len(tables) + 1))
        tables.append(ogip.gti_table(start, stop, scw_kw["TSTART"], scw_kw["TSTOP"]))
        return {"lc": Product(tables)}
