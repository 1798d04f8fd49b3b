"""COR..BKG end to end on simulated revolutions, checked against the simulator's truth."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from isdc.dal.archive import Archive
from isdc.dal.products import Product
from isdc.instruments.isgri import gti
from isdc.pipeline.config import load_config
from isdc.pipeline.isgri_scw import IbisGti, IsgriBin, IsgriBkg, IsgriCor, IsgriDead, read_band_products
from isdc.pipeline.runner import run_build
from isdc.resources import data_dir
from isdc.sim.sky import Sky
from isdc.sim.writer import simulate_revolution
from isgri_scw_synth import fit_line

BANDS = "20-40,40-100,25-80"
BKG_IC = "isgri/isgr_bkg_mod_0001.fits"


def _simulate(root, sky=None, **kw):
    # The background maps come from the IC files shipped with isdc (the archive's IC tree,
    # written by the simulator, has the true gain, the response and the mask).
    simulate_revolution(root, 665, n_pointings=2, exposure=1000.0, sky=sky, seed=3, durable=False, **kw)
    return Archive(root)


def _run(arch, out, config):
    scws = [s for s in arch.scws()]
    tasks = [IsgriBkg(archive=str(arch.root), outdir=str(out), scw=s, config=config) for s in scws]
    report = run_build(tasks, quarantine_dirs=[out / "quarantine"])
    assert report.ok, report.summary()
    return scws


def truth(arch, scw):
    return json.loads((arch.root / "sim" / "0665.001" / f"{scw}.json").read_text())


def product(out, scw, name):
    return Product.read(out / "scw" / str(scw) / name)


@pytest.fixture(scope="module")
def crab(tmp_path_factory):
    """A revolution of two 1000 s pointings on the Crab, processed COR..BKG."""
    root = tmp_path_factory.mktemp("crab")
    arch = _simulate(root / "archive")
    cfg = load_config("osa", overrides={"isgri.bands": BANDS})
    out = root / "out"
    scws = _run(arch, out, cfg)
    return arch, out, scws, cfg


@pytest.fixture(scope="module")
def empty(tmp_path_factory):
    root = tmp_path_factory.mktemp("empty")
    sky = root / "empty.yaml"
    sky.write_text("name: empty\nsources: []\n")
    arch = _simulate(root / "archive", sky=Sky.load(sky), target=(90.0, 60.0))
    cfg = load_config("osa", overrides={"isgri.bands": BANDS})
    out = root / "out"
    return arch, out, _run(arch, out, cfg)


def pointings(scws):
    return [s for s in scws if not s.is_slew]


def test_slews_have_no_good_time_and_every_level_says_so(crab):
    arch, out, scws, _ = crab
    slews = [s for s in scws if s.is_slew]
    assert len(slews) >= 2
    for s in slews:
        assert not product(out, s, "isgri_events_cor.fits").nowork  # COR runs on slews too
        for name in ("ibis_gti.fits", "isgri_dead.fits", "isgri_shadowgrams.fits", "isgri_bkg_shadowgrams.fits"):
            p = product(out, s, name)
            assert p.nowork and "slew" in p.nowork_reason


def test_gti_and_dead_time_match_the_truth_within_a_permille(crab):
    arch, out, scws, _ = crab
    for s in pointings(scws):
        tr = truth(arch, s)
        g = product(out, s, "ibis_gti.fits").table("IBIS-GNRL-GTI")
        assert g.header["ONTIME"] == pytest.approx(tr["ontime"], rel=1e-3)
        true_gti = np.array(tr["gti"])
        assert len(g) == len(true_gti)
        assert np.allclose(g["START"], true_gti[:, 0], atol=0.02 / 86400)
        assert np.allclose(g["STOP"], true_gti[:, 1], atol=0.02 / 86400)
        d = product(out, s, "isgri_dead.fits").table("ISGR-DEAD-SCP")
        assert d.header["DEADC"] == pytest.approx(tr["deadc"], rel=1e-3)
        live = [d.header[f"DEADC_{m}"] for m in range(8)]
        assert np.allclose(live, 1.0 - np.array(tr["dead_fraction"]), rtol=1e-3)
        assert d.header["EXPOSURE"] == pytest.approx(tr["ontime"] * tr["deadc"], rel=2e-3)


def test_cor_energies_recover_the_background_lines_and_name_the_gain_file(crab):
    arch, out, scws, _ = crab
    energies = []
    for s in pointings(scws):
        c = product(out, s, "isgri_events_cor.fits").table("ISGR-EVTS-COR")
        assert c.header["GAINFILE"] == "isgri/gain/isgr_gain_mod_r0665.fits"
        assert len(c) == truth(arch, s)["events"]  # rows align with ISGR-EVTS-ALL
        energies.append(c["ISGRI_ENERGY"][c["SELECT_FLAG"] == 0])
    e = np.concatenate(energies)
    for line, half in ((59.3, 6.0), (511.0, 40.0)):
        mu, err = fit_line(e, line, half)
        assert abs(mu / line - 1) < 0.005, (line, mu, err)


def test_noisy_pixels_are_the_truth_s(crab):
    arch, out, scws, _ = crab
    n_true = 0
    for s in scws:
        tr = truth(arch, s)
        want = {(b["isgri_z"], b["isgri_y"]) for b in tr["noisy_pixels"] if b["events"] >= 20}
        c = product(out, s, "isgri_events_cor.fits").table("ISGR-EVTS-COR")
        ev = Product.read(arch.scw_dir(s) / "isgri_events.fits").table("ISGR-EVTS-ALL")
        noisy = (c["SELECT_FLAG"] & 2) != 0
        got = set(zip(ev["ISGRI_Z"][noisy].tolist(), ev["ISGRI_Y"][noisy].tolist()))
        assert want <= got and len(got) == c.header["NOISYPIX"]
        assert got <= {(b["isgri_z"], b["isgri_y"]) for b in tr["noisy_pixels"]}
        n_true += len(want)
    assert n_true >= 2


def test_shadowgram_counts_match_the_simulated_counts_of_sources_and_background(crab):
    arch, out, scws, _ = crab
    for s in pointings(scws):
        tr = truth(arch, s)
        bands = read_band_products(product(out, s, "isgri_shadowgrams.fits"))
        assert [(e1, e2) for e1, e2, _, _ in bands] == [(20.0, 40.0), (40.0, 100.0), (25.0, 80.0)]
        for e1, e2, det, effi in bands:
            key = f"{e1:g}-{e2:g}"
            comps = [tr["background"]] + tr["sources"]
            simulated = sum(c["bands"][key]["counts"] for c in comps)  # events of the band, noisy ones apart
            expected = sum(c["bands"][key]["expected"] for c in comps)
            off = effi.data == 0
            assert off.sum() == effi.header["NOISYPIX"] + effi.header["DEADPIX"]
            assert effi.header["DEADPIX"] == 10  # the background model's dead pixels
            # Noisy pixels are switched off with all their counts.
            keep = 1.0 - effi.header["NOISYPIX"] / 16374.0
            # The same events: they differ only at the band and rise-time window edges (the
            # simulator's own selection takes the floor of the raw rise-time channel, COR its
            # centre, and COR dithers energies within the PHA channel).
            assert det.data.sum() == pytest.approx(simulated * keep, rel=0.003), key
            assert det.data.sum() == pytest.approx(expected * keep, rel=0.01), key
            assert effi.data[~off].mean() == pytest.approx(tr["deadc"], rel=2e-3)
            assert det.header["EXPOSURE"] == pytest.approx(tr["ontime"] * tr["deadc"], rel=2e-3)


def _bkg_and_shadowgrams(out, s):
    model = product(out, s, "isgri_bkg_shadowgrams.fits").all("ISGR-BKG.-SHD")
    shd = {(e1, e2): det for e1, e2, det, _ in read_band_products(product(out, s, "isgri_shadowgrams.fits"))}
    return [(b, shd[(b.header["E_MIN"], b.header["E_MAX"])]) for b in model]


def test_background_model_matches_the_true_background_of_an_empty_field(empty):
    arch, out, scws = empty
    for s in pointings(scws):
        tr = truth(arch, s)
        assert not tr["sources"]
        for b, det in _bkg_and_shadowgrams(out, s):
            key = f"{b.header['E_MIN']:g}-{b.header['E_MAX']:g}"
            true_bkg = tr["background"]["bands"][key]["expected"]
            # Poisson likelihood: the model holds the shadowgram's counts (up to clipped pixels) ...
            assert b.data.sum() == pytest.approx(det.data.sum(), rel=1e-3), key
            assert b.header["BKGNERR"] == pytest.approx(1 / np.sqrt(det.data.sum()), rel=0.05)
            # ... which are the true background's (the simulated events to 0.3%, their
            # expectation to 1%; 10 dead pixels: 0.06%).
            assert b.data.sum() == pytest.approx(tr["background"]["bands"][key]["counts"], rel=0.003), key
            assert b.data.sum() == pytest.approx(true_bkg, rel=0.01), key
            assert b.header["BKGFILE"] == BKG_IC and b.header["BKGFLAT"] == 0.0
            assert 0.9 < b.header["BKGCHI2"] < 1.3
            # Its shape is the background's: residuals summed per module are noise.
            resid = (det.data - b.data).reshape(4, 32, 2, 64).sum(axis=(1, 3))
            assert np.all(np.abs(resid) < 5 * np.sqrt(b.data.reshape(4, 32, 2, 64).sum(axis=(1, 3)))), key


def test_background_model_of_a_crab_field_holds_the_background_and_the_crab_s_mean(crab):
    arch, out, scws, _ = crab
    for s in pointings(scws):
        tr = truth(arch, s)
        crab_src = tr["sources"][0]
        assert crab_src["name"].startswith("Crab")
        for b, det in _bkg_and_shadowgrams(out, s):
            key = f"{b.header['E_MIN']:g}-{b.header['E_MAX']:g}"
            true_bkg = tr["background"]["bands"][key]["expected"]
            all_src = sum(src["bands"][key]["expected"] for src in tr["sources"])
            assert crab_src["bands"][key]["expected"] > 0.15 * true_bkg
            # The lit pixels of the Crab do not pull the scale: the model is the counts.
            assert b.data.sum() == pytest.approx(det.data.sum(), rel=2e-3), key
            assert b.data.sum() == pytest.approx(true_bkg + all_src, rel=0.01), key


def test_a_band_change_makes_only_bin_and_bkg_stale(crab):
    arch, out, scws, cfg = crab
    s = pointings(scws)[0]
    other = load_config("osa", overrides={"isgri.bands": "20-40,40-100"})
    kw = dict(archive=str(arch.root), outdir=str(out), scw=s)
    for task in (IsgriCor, IbisGti, IsgriDead, IsgriBin, IsgriBkg):
        assert task(config=cfg, **kw).complete()
    for task in (IsgriCor, IbisGti, IsgriDead):
        assert task(config=other, **kw).complete()
    for task in (IsgriBin, IsgriBkg):
        assert not task(config=other, **kw).complete()


def test_missing_hk_quarantines_the_scw_with_the_file_named(crab, tmp_path):
    arch, _, scws, cfg = crab
    s = pointings(scws)[0]
    # A copy of the archive where the HK of one ScW is damaged.
    root = tmp_path / "archive"
    shutil.copytree(arch.root, root)
    hk = Archive(root).scw_dir(s) / "isgri_hk.fits"
    hk.write_bytes(hk.read_bytes()[:5000])
    out = tmp_path / "out"
    rep = run_build([IsgriCor(archive=str(root), outdir=str(out), scw=s, config=cfg)],
                    quarantine_dirs=[out / "quarantine"])
    assert not rep.ok and rep.quarantined
    assert "isgri_hk.fits" in rep.quarantined[0]["reason"] and str(s) == rep.quarantined[0]["data_id"]


def _drifted_archive(arch, dest, scw, drift_from_s, rate_arcmin_per_s):
    """A copy of `arch` whose attitude drifts in declination from `drift_from_s` after the
    start of `scw` at `rate_arcmin_per_s`."""
    from isdc.dal import templates
    from isdc.dal.fitsfile import Image
    from isdc.dal.products import write_product

    shutil.copytree(arch.root, dest)
    new = Archive(dest)
    path = new.aux_adp(scw.rev, scw.version) / "attitude_historic.fits"
    t = Product.read(path).table("INTL-ATTI-HIS")
    info = json.loads((arch.root / "sim" / "0665.001" / f"{scw}.json").read_text())
    dt = (t["TIME"] - info["tstart"]) * 86400.0
    cols = {k: np.array(v) for k, v in t.columns.items()}
    moving = (dt > drift_from_s) & (t["TIME"] <= info["tstop"])
    cols["DEC_SCX"] = np.where(moving, cols["DEC_SCX"] + (dt - drift_from_s) * rate_arcmin_per_s / 60.0,
                               cols["DEC_SCX"])
    keep = {k: t.header[k] for k in ("REVOL", "TSTART", "TSTOP", "STEP")}
    write_product(path, [Image(), templates.get("INTL-ATTI-HIS").table(cols, **keep)])
    return new


def test_an_attitude_drift_ends_good_time_and_a_lost_pointing_has_none(crab, tmp_path):
    arch, _, scws, cfg = crab
    s = pointings(scws)[1]
    tr = truth(arch, s)
    # Drift of 1' per 100 s from 500 s on: the axis leaves the 3' circle at 800 s.
    drifted = _drifted_archive(arch, tmp_path / "drift", s, 500.0, 0.01)
    out = tmp_path / "out_drift"
    assert run_build([IsgriDead(archive=str(drifted.root), outdir=str(out), scw=s, config=cfg)]).ok
    g = product(out, s, "ibis_gti.fits").table("IBIS-GNRL-GTI")
    assert g.header["ATTILOSS"] == pytest.approx((tr["tstop"] - tr["tstart"]) * 86400 - 800.0, abs=8.0)
    true_gti = (np.array(tr["gti"]) - tr["tstart"]) * 86400
    before_800 = gti.overlap((true_gti[:, 0], true_gti[:, 1]), np.array([0.0]), np.array([800.0]))[0]
    assert g.header["ONTIME"] == pytest.approx(before_800, abs=8.0)  # 3" jitter: +-5 s
    assert (g["STOP"][-1] - tr["tstart"]) * 86400 == pytest.approx(800.0, abs=8.0)
    d = product(out, s, "isgri_dead.fits").table("ISGR-DEAD-SCP")
    assert d.header["ONTIME"] == pytest.approx(g.header["ONTIME"], rel=1e-9)
    # Off target from the start: no good time, every level after GTI is an empty product.
    lost = _drifted_archive(arch, tmp_path / "lost", s, -10.0, 1.0)
    out = tmp_path / "out_lost"
    assert run_build([IsgriBkg(archive=str(lost.root), outdir=str(out), scw=s, config=cfg)]).ok
    for name in ("ibis_gti.fits", "isgri_dead.fits", "isgri_shadowgrams.fits", "isgri_bkg_shadowgrams.fits"):
        p = product(out, s, name)
        assert p.nowork and "no good time" in p.nowork_reason


@pytest.mark.fitsverify
def test_products_and_the_background_ic_file_pass_fitsverify(crab, fitsverify):
    from test_fitsverify import verify

    arch, out, scws, _ = crab
    files = [p for s in scws[:2] for p in sorted((out / "scw" / str(s)).glob("*.fits"))]
    assert len(files) == 10  # a slew's empty products and a pointing's
    for p in files + [Path(data_dir("ic_files")) / BKG_IC]:
        verify(fitsverify, p)
