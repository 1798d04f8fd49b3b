"""Fast synthetic observations without events: expected counts from the exact PIF, then Poisson.

For validation that needs many realisations (spectral fits over a revolution, trigger
efficiency curves): the same instrument models as the event simulator (response,
background spectrum and map, PIF), skipping event lists and files.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from isdc.dal.fitsfile import Image
from isdc.dal.ogip import arf_table, rmf_tables, spectrum_tables
from isdc.dal.products import write_product
from isdc.instruments.isgri.detector_model import BackgroundModel
from isdc.instruments.isgri.geometry import isgri_geometry
from isdc.instruments.isgri.response import IsgriResponse
from isdc.instruments.isgri.spectra import fit_cube, grouped_response, source_responses, standard_grouping

__all__ = ["spectrum_files"]


def spectrum_files(spectrum, folder: str | os.PathLike, *, exposure_s: float = 200e3, live: float = 0.774,
                   pixel_offset=(12.3, -27.6), seed: int = 2101, name: str = "Crab") -> Path:
    """Write isgri_spectrum.fits (type II + I), isgri_rmf.fits, isgri_arf.fits of one source.

    The source (photon spectrum `spectrum`, ph/cm2/s/keV) sits `pixel_offset` sky pixels
    (Y, Z) off axis with the simulator's background spectrum and map; the cube of counts per
    channel group and pixel is Poisson around PIF x rate + background, extracted with the SPE
    algorithm (`fit_cube`) and written as our products are. Returns the folder.
    """
    g = isgri_geometry()
    resp = IsgriResponse.default()
    grouping = standard_grouping(resp.e_min, resp.e_max)
    gr = grouped_response(resp, grouping)
    bm = BackgroundModel.default(resp)
    bmap = g.to_gapped(np.asarray(bm.spatial_map))
    w = (bmap > 0) * live
    bmap = bmap / bmap.sum() * g.n_pixels
    pt = g.pixel_tan
    r = source_responses([pixel_offset[0] * pt], [pixel_offset[1] * pt])
    src = gr.fold(spectrum.photon_flux(gr.energ_lo, gr.energ_hi))
    bkg = np.add.reduceat(bm.spectrum, grouping.first)
    mu = src[:, None, None] * exposure_s * w * r[0] + (bkg[:, None, None] * exposure_s * live / g.n_pixels) * bmap
    cube = np.random.default_rng(seed).poisson(mu).astype(float)
    res = fit_cube(cube, w, exposure_s, r, bmap * w)
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    kw = dict(EXPOSURE=exposure_s * live, ONTIME=exposure_s, DEADC=live, TSTART=3000.0, TSTOP=3002.3, REVOL=665,
              SWID="066500010010", RESPFILE="isgri_rmf.fits", ANCRFILE="isgri_arf.fits")
    meta = [dict(NAME=name, SOURCEID="J053432.0+220052", RA_OBJ=83.633, DEC_OBJ=22.0145)]
    write_product(d / "isgri_spectrum.fits", [Image()] + spectrum_tables(res.rates, res.errors,
                                                                          (~res.good).astype(int), meta, **kw))
    write_product(d / "isgri_rmf.fits", [Image()] + rmf_tables(gr.energ_lo, gr.energ_hi, gr.matrix, gr.e_min,
                                                               gr.e_max, RSPFILE="isgr_rmf_rsp_0001.fits", RSPVERS=1))
    write_product(d / "isgri_arf.fits", [Image(), arf_table(gr.energ_lo, gr.energ_hi, gr.specresp,
                                                            RSPFILE="isgr_rmf_rsp_0001.fits", RSPVERS=1)])
    return d
