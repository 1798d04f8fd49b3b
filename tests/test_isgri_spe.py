"""ISGRI SPE algorithm: channel grouping, OGIP response split, spectral extraction by PIF
fits per channel (synthetic ScWs from the response, the simulator's background and PIF + Poisson)."""
import numpy as np
import pytest

from isdc.dal.ogip import FIRST_CHANNEL, rmf_tables, spectrum_tables
from isdc.dal.templates import TemplateError, get as get_template
from isdc.instruments.isgri.detector_model import BackgroundModel
from isdc.instruments.isgri.geometry import isgri_geometry
from isdc.instruments.isgri.response import IsgriResponse
from isdc.instruments.isgri.spectra import (
    STANDARD_GROUP_EDGES_KEV, extract_spectra, fit_cube, grouped_response, shadowgram_cube, source_responses,
    standard_grouping,
)
from isdc.sim.spectra import CRAB, PowerLaw


@pytest.fixture(scope="module")
def response():
    return IsgriResponse.default()


@pytest.fixture(scope="module")
def grouping(response):
    return standard_grouping(response.e_min, response.e_max)


def test_standard_grouping(response, grouping):
    """51 contiguous channels covering the response; 44 of them between 20 and 300 keV;
    widths >= 1 keV (the response's own resolution there) and <= 6.5% of the energy in 20-300 keV."""
    assert len(grouping) == 51 == len(STANDARD_GROUP_EDGES_KEV) - 1
    assert grouping.first[0] == 0 and grouping.last[-1] == response.n_channels - 1
    assert np.all(grouping.first[1:] == grouping.last[:-1] + 1)
    inside = (grouping.e_min >= 20) & (grouping.e_max <= 300)
    assert inside.sum() == 44
    width = grouping.e_max - grouping.e_min
    assert width.min() >= 1.0 and np.all(width[inside] / grouping.e_min[inside] <= 0.115)
    # the RMF and type II templates carry this channel count
    assert get_template("ISGR-RMF.-SPE").columns[-1].tform == f"{len(grouping)}E"
    assert get_template("ISGR-PHA2-SPE").columns[6].tform == f"{len(grouping)}E"
    assert list(grouping.group_of_energy([12.4, 12.5, 20.0, 20.99, 1029.49, 1029.5, np.nan])) == [-1, 0, 3, 3, 50, -1, -1]
    with pytest.raises(ValueError, match="not channel edges"):
        standard_grouping(response.e_min, response.e_max, (12.5, 20.2, 40.0))


def test_grouped_response_folds_like_the_ic_matrix(response, grouping):
    """ARF x RMF folds a spectrum into exactly the IC matrix's channel rates summed per group;
    RMF rows sum to 1 where there is area; ARF = the matrix's total area."""
    gr = grouped_response(response, grouping)
    for spec in (CRAB, PowerLaw(index=1.5, norm=0.3)):
        chan = response.channel_rates(spec)
        expect = np.add.reduceat(chan, grouping.first)
        got = gr.fold(spec.photon_flux(gr.energ_lo, gr.energ_hi))
        assert np.allclose(got, expect, rtol=1e-10)
    rows = gr.matrix.sum(axis=1)
    assert np.allclose(rows[gr.specresp > 0], 1.0, atol=1e-12)
    assert np.allclose(gr.specresp, response.effective_area)
    # group edges are channel edges: a band of whole groups is exactly the simulator's band rate
    crab = gr.fold(CRAB.photon_flux(gr.energ_lo, gr.energ_hi))
    band = (grouping.e_min >= 20) & (grouping.e_max <= 39.5)
    assert crab[band].sum() == pytest.approx(response.expected_rate(CRAB, 20, 39.5), rel=1e-9)


def test_shadowgram_cube_counts_events_per_group_and_pixel():
    g = isgri_geometry()
    idx = np.array([0, 0, 1, 2, -1, 5])
    z = np.array([0, 0, 127, 64, 3, 3])
    y = np.array([0, 0, 127, 5, 3, 3])
    cube = shadowgram_cube(idx, z, y, 3)
    assert cube.shape == (3,) + g.shape and cube.sum() == 4
    assert cube[0, 0, 0] == 2 and cube[1, 133, 129] == 1 and cube[2, 68, 5] == 1  # Z 64 -> row 64 + 2*2


def synthetic_cube(grouping, response, rng, exposure, sources, live=0.774):
    """Expected counts per channel group and pixel: sources (spectrum, tan_y, tan_z) folded
    through the IC matrix + the simulator's background (spectrum x pixel map)."""
    g = isgri_geometry()
    bm = BackgroundModel.default(response)
    bkg_g = np.add.reduceat(bm.spectrum, grouping.first)
    bmap = g.to_gapped(np.asarray(bm.spatial_map))
    w = (bmap > 0) * live  # dead pixels have efficiency 0 (BIN's pixel status)
    bmap = bmap / bmap.sum() * g.n_pixels
    mu = (bkg_g[:, None, None] * exposure * live / g.n_pixels) * bmap
    truth = []
    for spec, ty, tz in sources:
        rates = np.add.reduceat(response.channel_rates(spec), grouping.first)
        mu = mu + rates[:, None, None] * exposure * w * source_responses([ty], [tz])[0]
        truth.append(rates)
    return rng.poisson(mu).astype(float), w, bmap * w, np.array(truth)


def test_spectra_of_two_sources_match_truth(response, grouping):
    """A Crab 3 deg off axis and a 100 mCrab hard source 8 deg away in one 2 ks ScW: per-channel
    rates agree with the truth (chi-square per source within 4 sigma of its 51 dof; pulls
    over 20-300 keV have mean 0 +- 0.3 and std 1 +- 0.25)."""
    pt = isgri_geometry().pixel_tan
    hard = PowerLaw(index=1.6, norm=0.12)
    src = [(CRAB, 12.3 * pt, -34.6 * pt), (hard, -80.2 * pt, 60.1 * pt)]
    cube, w, bshape, truth = synthetic_cube(grouping, response, np.random.default_rng(4), 2000.0, src)
    res = fit_cube(cube, w, 2000.0, source_responses([s[1] for s in src], [s[2] for s in src]), bshape)
    assert res.good.all()
    mid = (grouping.e_min >= 20) & (grouping.e_max <= 300)
    for k in range(2):
        pull = (res.rates[k] - truth[k]) / res.errors[k]
        assert abs(np.sum(pull**2) - 51) < 4 * np.sqrt(2 * 51)
        assert abs(pull[mid].mean()) < 0.3 and abs(pull[mid].std() - 1) < 0.25


def test_extract_spectra_from_events(response, grouping):
    """Events (energy, pixel) binned into the grouping give the same rates as the cube."""
    g = isgri_geometry()
    pt = g.pixel_tan
    cube, w, bshape, truth = synthetic_cube(grouping, response, np.random.default_rng(7), 2000.0,
                                            [(CRAB, 0.3 * pt, 0.2 * pt)])
    logical = g.to_logical(cube).astype(int)
    gi, zi, yi = np.nonzero(logical)
    n = logical[gi, zi, yi]
    rng = np.random.default_rng(1)
    energy = rng.uniform(grouping.e_min[gi], grouping.e_max[gi])
    energy, z, y = np.repeat(energy, n), np.repeat(zi, n), np.repeat(yi, n)
    energy = rng.uniform(grouping.e_min[np.repeat(gi, n)], grouping.e_max[np.repeat(gi, n)])
    res = extract_spectra(energy, z, y, grouping, g.to_logical(w), 2000.0, [0.3 * pt], [0.2 * pt],
                          g.to_logical(bshape))
    ref = fit_cube(cube, w, 2000.0, source_responses([0.3 * pt], [0.2 * pt]), bshape)
    assert np.allclose(res.rates, ref.rates, rtol=1e-9, atol=1e-12)


def test_empty_channels_are_flagged_bad(response, grouping):
    g = isgri_geometry()
    cube = np.zeros((len(grouping),) + g.shape)
    cube[:10] = 30.0 * g.real_pixels
    w = g.real_pixels * 0.8
    res = fit_cube(cube, w, 1000.0, source_responses([0.0], [0.0]))
    assert res.good[:10].all() and not res.good[10:].any()
    assert np.all(np.isnan(res.rates[:, 10:]))
    res0 = fit_cube(cube, w, np.where(np.arange(len(grouping)) < 5, 0.0, 1000.0), source_responses([0.0], [0.0]))
    assert not res0.good[:5].any() and res0.good[5:10].all()


def test_ogip_tables(response, grouping):
    """Type II + type I tables: channels from 0, bad channels zeroed with QUALITY 1; the response
    files must be named and EXPOSURE positive."""
    gr = grouped_response(response, grouping)
    n = len(grouping)
    rates = np.vstack([np.linspace(1, 2, n), np.linspace(3, 4, n)])
    errors = np.full_like(rates, 0.1)
    errors[1, 5] = np.nan
    kw = dict(EXPOSURE=1500.0, ONTIME=2000.0, DEADC=0.75, TSTART=1.0, TSTOP=1.02, REVOL=1, SWID="000100010010",
              RESPFILE="isgri_rmf.fits", ANCRFILE="isgri_arf.fits")
    src = [dict(NAME="A", SOURCEID="J1", RA_OBJ=1.0, DEC_OBJ=2.0), dict(NAME="NEW_1", SOURCEID="", RA_OBJ=3.0,
                                                                       DEC_OBJ=4.0)]
    tabs = spectrum_tables(rates, errors, np.zeros(n, int), src, **kw)
    assert [t.name for t in tabs] == ["SPECTRUM", "ISGR-EVTS-SPE", "ISGR-EVTS-SPE"]
    t2 = tabs[0]
    assert t2["CHANNEL"][0, 0] == FIRST_CHANNEL and t2.header["TLMIN6"] == 0 and t2.header["DETCHANS"] == n
    assert t2["QUALITY"][1, 5] == 1 and t2["RATE"][1, 5] == 0 and t2["QUALITY"].sum() == 1
    assert tabs[2].header["NAME"] == "NEW_1" and tabs[2].header["EXTVER"] == 2
    assert tabs[1].header["POISSERR"] is False and tabs[1].header["ANCRFILE"] == "isgri_arf.fits"
    for k in ("RESPFILE", "ANCRFILE"):
        with pytest.raises(TemplateError, match=k):
            spectrum_tables(rates, errors, 0, src, **dict(kw, **{k: "NONE"}))
    with pytest.raises(TemplateError, match="EXPOSURE"):
        spectrum_tables(rates, errors, 0, src, **dict(kw, EXPOSURE=0.0))
    mat, ebd = rmf_tables(gr.energ_lo, gr.energ_hi, gr.matrix, gr.e_min, gr.e_max, RSPFILE="x", RSPVERS=1)
    assert mat.header["TLMIN4"] == 0 and mat.name == "MATRIX" and ebd.name == "EBOUNDS"
    assert np.array_equal(ebd["CHANNEL"], np.arange(n))
