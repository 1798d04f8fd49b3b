"""Source detection: synthetic sources with known truth, and real OSA images."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from isdc.dal.fitsfile import read_fits
from isdc.dal.skyimages import read_sky_images
from isdc.imaging.detect import find_sources, identify, psla_arcmin
from isdc.pipeline.sourcelist import ReferenceSources, source_list

REF = Path(__file__).resolve().parent.parent / "test_data" / "reference"


def _gauss_map(shape, sources, sigma=1.1):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    m = np.zeros(shape)
    for x, y, a in sources:
        m += a * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / sigma**2)
    return m


def _smooth_noise(rng, shape, sigma=1.1):
    """Unit-variance noise correlated like a decoded image (Gaussian kernel of the PSF)."""
    from scipy.ndimage import gaussian_filter

    n = gaussian_filter(rng.normal(size=shape), sigma / np.sqrt(2))
    return n / n.std()


def test_synthetic_sources_are_found_at_their_positions_with_their_amplitudes():
    rng = np.random.default_rng(3)
    truth = [(50.3, 60.7, 40.0), (120.8, 30.2, 12.0), (150.1, 150.6, 8.0)]
    sig = _gauss_map((200, 200), truth) + _smooth_noise(rng, (200, 200))
    dets = find_sources(sig, threshold=6.0)
    assert len(dets) == 3
    for (x, y, a), d in zip(sorted(truth, key=lambda t: -t[2]), dets):
        tol = 3 * 1.1 * np.sqrt(2) / a  # ~3 sigma of a PSF centroid at this SNR (pixels)
        assert abs(d.x - x) < tol and abs(d.y - y) < tol
        assert abs(d.detsig - a) < 1.5


def test_pure_noise_gives_no_detection_above_6_sigma():
    rng = np.random.default_rng(4)
    assert find_sources(_smooth_noise(rng, (400, 400)), threshold=6.0) == []


def test_bright_source_wings_are_not_taken_for_sources():
    rng = np.random.default_rng(5)
    sig = _gauss_map((120, 120), [(60.4, 59.6, 300.0)], sigma=1.2) + _smooth_noise(rng, (120, 120))
    dets = find_sources(sig, threshold=6.0)
    assert len(dets) == 1 and abs(dets[0].detsig - 300) < 6


def test_psla_curve_and_identification():
    assert psla_arcmin(30) == pytest.approx(22.1 * 30**-0.95 + 0.16)
    idx, dist = identify([83.63, 10.0], [22.02, 10.0], [100.0, 8.0], [83.6331, 50.0], [22.0145, 0.0])
    assert idx[0] == 0 and dist[0] < 0.4 and idx[1] == -1


def _crab_catalog():
    t = read_fits(REF / "crab_field_catalog.fits").table(1)
    i = list(t["src_names"]).index("Crab")
    return t, i


def test_real_osa_scw_image_crab_found_as_osa_did():
    """OSA: Crab ~163 sigma by a Gaussian fit of the peak (brightest pixel 146.8); nothing else > 6."""
    t, i = _crab_catalog()
    sets = read_sky_images(REF / "isgri_sky_ima_066500280010.fits.gz")
    assert len(sets) == 1 and (sets[0].e_min, sets[0].e_max) == (25.0, 80.0)
    cat = ReferenceSources(np.array(["Crab"]), np.array(["Crab"]), np.array([t["ra"][i]], float),
                           np.array([t["dec"][i]], float), np.zeros(1), "crab_field_catalog.fits")
    srcl = source_list(sets, cat, threshold=6.0)
    assert len(srcl) == 1, list(srcl["NAME"])
    assert srcl["NAME"][0] == "Crab" and srcl["NEW_SOURCE"][0] == 0
    assert srcl["OFF_ID"][0] < 1.0  # arcmin from the catalogue position
    assert srcl["DETSIG"][0] == pytest.approx(163.0, rel=0.10)
    assert srcl["FLUX"][0] / srcl["FLUX_ERR"][0] == pytest.approx(srcl["DETSIG"][0], rel=0.2)


def test_real_osa_mosaic_crab_within_1_arcmin_and_10_percent_of_osa_significance():
    t, i = _crab_catalog()
    osa_sig = float(t["significance"][i])
    assert osa_sig == pytest.approx(294.5, abs=0.1)
    sets = read_sky_images(REF / "isgri_mosaic_rev0727_20-40keV.fits.gz")
    cols = source_list(sets, None, threshold=6.0)
    j = int(np.argmax(cols["DETSIG"]))
    ra, dec = cols["RA_FIN"][j], cols["DEC_FIN"][j]
    sep = np.hypot((ra - t["ra"][i]) * np.cos(np.radians(dec)), dec - t["dec"][i]) * 60
    assert sep < 1.0
    assert cols["DETSIG"][j] == pytest.approx(osa_sig, rel=0.10)


def test_detect_cli_writes_a_valid_source_list(tmp_path):
    out = tmp_path / "srcl.fits"
    r = subprocess.run([sys.executable, "-m", "isdc.cli", "detect", str(REF / "isgri_sky_ima_066500280010.fits.gz"),
                        "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "DETSIG   163" in r.stdout or "DETSIG   164" in r.stdout
    srcl = read_fits(out).table("ISGR-SRCL-RES")
    assert len(srcl) == 1 and srcl.header["TEMPLATE"] == "ISGR-SRCL-RES"
    bad = subprocess.run([sys.executable, "-m", "isdc.cli", "detect", str(tmp_path / "none.fits"), "--out",
                          str(tmp_path / "x.fits")], capture_output=True, text=True)
    assert bad.returncode == 1 and "none.fits" in bad.stderr


def test_detect_cli_identifies_against_a_user_catalogue(tmp_path):
    out = tmp_path / "srcl.fits"
    r = subprocess.run([sys.executable, "-m", "isdc.cli", "detect", str(REF / "isgri_sky_ima_066500280010.fits.gz"),
                        "--catalog", str(REF / "swift_bat_survey6b_2.cat.fits.gz"), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    srcl = read_fits(out).table("ISGR-SRCL-RES")
    assert list(srcl["NAME"]) == ["Crab Nebula/Pulsar"] and srcl["NEW_SOURCE"][0] == 0 and srcl["OFF_ID"][0] < 1.0
    assert srcl.header["CATFILE"] == "swift_bat_survey6b_2.cat.fits.gz"
