"""IMA, SPE and LCR tasks end to end on a simulated science window, against the
simulator's truth: `isdc-run simulate`'s writer makes one 2000 s Crab-field pointing with a
flaring source that the reference catalogue lacks; COR..BKG (with the shipped background
maps, ic_files/isgri/isgr_bkg_mod_0001.fits) and our levels run through luigi
(run_build); products are checked against the truth, by fitsverify and by Sherpa."""
import json
import warnings

import numpy as np
import pytest

from isdc.dal.archive import Archive
from isdc.dal.catalog import read_catalog, write_catalog
from isdc.dal.fitsfile import read_fits
from isdc.dal.products import Product
from isdc.dal.skyimages import read_sky_images
from isdc.ids import ScwId
from isdc.imaging.detect import psla_arcmin
from isdc.pipeline.config import load_config
from isdc.pipeline.isgri_science import IsgriIma, IsgriLcr, IsgriSpe, scw_sources
from isdc.pipeline.runner import run_build
from isdc.pipeline.sourcelist import celestial_wcs
from isdc.sim.plan import plan_revolution
from isdc.sim.sky import Sky
from isdc.sim.writer import simulate_revolution

REV = 665
SCW = ScwId.parse("066500010010.001")
DAY = 86400.0
FLARE_RA, FLARE_DEC = 81.3, 20.6  # 2.4 deg from the Crab; not in the reference catalogue


def sky_yaml(flare_time: float) -> str:
    return f"""
name: crab-field-with-flare
sources:
  - name: Crab
    ra: 83.6332
    dec: 22.0145
    spectrum: {{model: powerlaw, index: 2.1}}
    flux: {{mcrab: 1000}}
  - name: 1A 0535+262
    ra: 84.7274
    dec: 26.3158
    spectrum: {{model: cutoffpl, index: 1.0, cutoff: 25.0}}
    flux: {{mcrab: 100}}
  - name: XTE J0525+206
    ra: {FLARE_RA}
    dec: {FLARE_DEC}
    spectrum: {{model: powerlaw, index: 2.0}}
    flux: {{mcrab: 150}}
    variability:
      - {{type: flare, time: {flare_time}, peak: 5.0, rise: 120, decay: 400}}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    archive = Archive(root / "archive")
    plan = [p for p in plan_revolution(REV, 1, 2000.0) if not p.is_slew][0]
    assert plan.scw_id == SCW
    sky = Sky.loads(sky_yaml(plan.tstart + 900.0 / DAY))
    simulate_revolution(archive, REV, n_pointings=1, exposure=2000.0, sky=sky, durable=False)
    cat_path = archive.cat_dir() / "gnrl_refr_cat.fits"
    cat = read_catalog(cat_path)
    write_catalog(cat_path, cat.select(cat.name != "XTE J0525+206"))
    out = root / "out"
    cfg = load_config("osa")
    tasks = [cls(archive=str(archive.root), outdir=str(out), scw=SCW, config=cfg) for cls in (IsgriIma, IsgriSpe,
                                                                                               IsgriLcr)]
    report = run_build(tasks, quarantine_dirs=[out / "quarantine"])
    assert report.ok, report.summary()
    truth = json.loads((archive.root / "sim" / f"{REV:04d}.001" / f"{SCW}.json").read_text())
    return {"archive": archive, "out": out / "scw" / str(SCW), "truth": truth, "sky": sky, "cfg": cfg,
            "tasks": tasks}


def truth_source(run, name):
    return next(s for s in run["truth"]["sources"] if s["name"] == name)


def distance_arcmin(ra1, dec1, ra2, dec2):
    r1, d1, r2, d2 = np.radians([ra1, dec1, ra2, dec2])
    c = np.sin(d1) * np.sin(d2) + np.cos(d1) * np.cos(d2) * np.cos(r1 - r2)
    return float(np.degrees(np.arccos(min(c, 1.0))) * 60)


@pytest.mark.fitsverify
def test_products_are_valid_fits(run, fitsverify):
    """Every product validates against its templates on read, and fitsverify finds 0 warnings
    and 0 errors in it."""
    import re
    import subprocess

    for name in ("isgri_sky_ima.fits", "isgri_srcl_res.fits", "isgri_spectrum.fits", "isgri_rmf.fits",
                 "isgri_arf.fits", "isgri_lc.fits"):
        path = run["out"] / name
        Product.read(path)
        out = subprocess.run([fitsverify, str(path)], capture_output=True, text=True, timeout=60).stdout
        assert re.findall(r"Verification found (\d+) warning\(s\) and (\d+) error\(s\)", out) == [("0", "0")], out


def test_source_list_against_truth(run):
    """Crab and 1A 0535+262 identified, the flaring source (missing from the catalogue) found as
    NEW_1; rates within 4 sigma of the truth (the mean over the good time); positions within
    the PSLA radius; nothing else above 6 sigma."""
    t = read_fits(run["out"] / "isgri_srcl_res.fits").table("ISGR-SRCL-RES")
    assert sorted(set(t["NAME"])) == ["1A 0535+262", "Crab", "NEW_1"]
    for i in range(len(t)):
        name = str(t["NAME"][i])
        truth = truth_source(run, "XTE J0525+206" if name == "NEW_1" else name)
        band = f"{t['E_MIN'][i]:g}-{t['E_MAX'][i]:g}"
        rate = truth["bands"][band]["rate"]
        assert abs(t["FLUX"][i] - rate) < 4 * t["FLUX_ERR"][i], (name, band, t["FLUX"][i], rate)
        off = distance_arcmin(truth["ra"], truth["dec"], t["RA_FIN"][i], t["DEC_FIN"][i])
        assert off < psla_arcmin(t["DETSIG"][i]), (name, band, off)
        assert t["NEW_SOURCE"][i] == (name == "NEW_1")
    crab = (t["NAME"] == "Crab") & (t["E_MIN"] == 20)
    assert t["DETSIG"][crab][0] > 140  # the simulator's 148-sigma Crab (docs/simulator.md)
    assert t.header["CATFILE"] == "gnrl_refr_cat.fits"


def test_sky_images_statistics_and_wcs(run):
    """Away from the three sources the significance has mean 0 +- 0.05, std 1 +- 0.05 and no
    pixel beyond 6 sigma (ghosts and coding noise removed); the WCS puts each source's
    catalogue position on its brightest pixel."""
    sets = read_sky_images(run["out"] / "isgri_sky_ima.fits")
    assert [(s.e_min, s.e_max) for s in sets] == [(20.0, 40.0), (40.0, 100.0)]
    positions = [(s["ra"], s["dec"]) for s in run["truth"]["sources"]]
    for s in sets:
        assert sorted(s.maps) == ["EXPOSURE", "INTENSITY", "SIGNIFICANCE", "VARIANCE"]
        sig, expo = s.maps["SIGNIFICANCE"].data, s.maps["EXPOSURE"].data
        w = celestial_wcs(s.header)
        rr, cc = np.mgrid[: sig.shape[0], : sig.shape[1]]
        far = expo > 0
        for ra, dec in positions:
            x, y = w.world_to_pixel_values(ra, dec)
            far &= (rr - y) ** 2 + (cc - x) ** 2 > 5.0**2
        v = sig[far]
        assert abs(v.mean()) < 0.05 and abs(v.std() - 1) < 0.05, (s.e_min, v.mean(), v.std())
        assert np.abs(v).max() < 6.0
        x, y = w.world_to_pixel_values(83.6332, 22.0145)
        r, c = np.unravel_index(np.argmax(sig), sig.shape)
        assert abs(r - y) <= 1 and abs(c - x) <= 1
        h = s.maps["INTENSITY"].header  # dead-time corrected exposure, as the truth's live time
        assert h["EXPOSURE"] == pytest.approx(h["ONTIME"] * h["DEADC"])
        assert h["DEADC"] == pytest.approx(run["truth"]["deadc"], abs=2e-3)
        assert h["ONTIME"] == pytest.approx(run["truth"]["ontime"], abs=10.0)


def test_crab_spectrum_in_sherpa(run):
    """Sherpa loads the type II spectrum with its RMF and ARF; the Crab's 20-300 keV power
    law has index 2.10 +- 0.05 in this single ScW."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sherpa_io = pytest.importorskip("sherpa.astro.io")
        from sherpa.astro.instrument import Response1D
        from sherpa.fit import Fit
        from sherpa.models.basic import PowLaw1D
        from sherpa.stats import Chi2

        phas = sherpa_io.read_pha(str(run["out"] / "isgri_spectrum.fits"), use_errors=True)
    spec = read_fits(run["out"] / "isgri_spectrum.fits").table("SPECTRUM")
    phas = phas if isinstance(phas, list) else [phas]
    assert len(phas) == len(spec)
    k = list(spec["NAME"]).index("Crab")
    pha = phas[k]
    assert pha.get_response()[0] is not None and pha.exposure == pytest.approx(spec.header["EXPOSURE"])
    assert pha.exposure == pytest.approx(run["truth"]["ontime"] * run["truth"]["deadc"], rel=0.01)
    pha.notice(20.0, 300.0)
    pl = PowLaw1D("pl")
    pl.gamma = 2.0
    fit = Fit(pha, Response1D(pha)(pl), Chi2())
    res = fit.fit()
    assert abs(pl.gamma.val - 2.10) < 0.05 and res.statval / res.dof < 2.0


def test_light_curves_against_truth(run):
    """100 s bins: the flaring source's light curve against the sky model's rate averaged over
    each bin's good time gives chi-square consistent with 1 per bin (within 4 sigma); the
    Crab's is flat at its truth rate likewise."""
    lc = read_fits(run["out"] / "isgri_lc.fits")
    sky = run["sky"]
    g = lc.table("GTI")
    gti = list(zip(g["START"], g["STOP"]))
    seen = set()
    for info in lc.hdus[1:]:
        if info.extname != "ISGR-SRC.-LCR":
            continue
        t = lc.table(info.index)
        h = t.header
        name = "XTE J0525+206" if h["NAME"] == "NEW_1" else h["NAME"]
        if name == "1A 0535+262":
            continue
        seen.add(name)
        band = (float(h["E_MIN"]), float(h["E_MAX"]))
        i = sky.index(name)
        truth = []
        for c in t["TIME"]:
            ts = c + (np.arange(200) + 0.5 - 100) * h["TIMEDEL"] / 200
            good = np.zeros(ts.size, bool)
            for a, b in gti:
                good |= (ts >= a) & (ts < b)
            truth.append(sky.rates(band, ts[good])[:, i].mean())
        truth = np.array(truth)
        n = len(truth)
        assert n == 20 and h["TIMEDEL"] == pytest.approx(100.0 / DAY)
        chi2 = np.sum(((t["RATE"] - truth) / t["ERROR"]) ** 2)
        assert abs(chi2 - n) < 4 * np.sqrt(2 * n), (name, band, chi2)
        if name != "Crab":
            assert t["RATE"].max() > 3 * t["RATE"][:3].mean()  # the flare
    assert seen == {"Crab", "XTE J0525+206"}


def test_products_are_complete_and_go_stale_on_their_config(run):
    """A rerun is a no-op (complete); a new detection threshold makes IMA and its consumers
    stale but not BIN; a new light-curve bin only LCR."""
    tasks = run["tasks"]
    assert all(t.complete() for t in tasks)

    def with_config(change):
        cfg = json.loads(json.dumps(run["cfg"]))
        change(cfg)
        return [type(t)(archive=t.archive, outdir=t.outdir, scw=t.scw, config=cfg) for t in tasks]

    changed = with_config(lambda c: c["isgri"]["ima"].update(detection_threshold=7.0))
    assert not any(t.complete() for t in changed)
    assert changed[0].requires()["shadowgrams"].complete()
    ima, spe, lcr = with_config(lambda c: c["isgri"]["lcr"].update(time_bin_s=50.0))
    assert ima.complete() and spe.complete() and not lcr.complete()


def test_scw_sources_picks_the_most_significant_band(run):
    t = read_fits(run["out"] / "isgri_srcl_res.fits").table("ISGR-SRCL-RES")
    s = scw_sources(t)
    assert [x["NAME"] for x in s][0] == "Crab"
    assert s[0]["DETSIG"] == pytest.approx(float(np.max(t["DETSIG"][t["NAME"] == "Crab"])))
    crab = next(x for x in s if x["NAME"] == "Crab")
    assert crab["RA_OBJ"] == pytest.approx(83.6332, abs=1e-4)  # catalogue position


def test_bad_or_empty_inputs(run):
    """A background product without one of the bands is a permanent error naming the file and
    the band; no source above the SPE threshold is 'no work'."""
    from isdc.pipeline.base import NoWork, PermanentError

    ima = run["tasks"][0]
    inputs = {k: Product.read(ima.dataset_path(v)) for k, v in ima.inputs.items()}
    inputs["bkg"].hdus = [h for h in inputs["bkg"].hdus if not (h.name == "ISGR-BKG.-SHD" and h.header["E_MIN"] == 40)]
    with pytest.raises(PermanentError, match=r"isgri_bkg_shadowgrams.fits has no background for 40-100 keV"):
        ima.process(inputs)
    cfg = json.loads(json.dumps(run["cfg"]))
    cfg["isgri"]["spe"]["min_significance"] = 1000.0
    spe = IsgriSpe(archive=ima.archive, outdir=ima.outdir, scw=SCW, config=cfg)
    with pytest.raises(NoWork, match="no source above 1000 sigma"):
        spe.process({k: Product.read(spe.dataset_path(v)) for k, v in spe.inputs.items()})
