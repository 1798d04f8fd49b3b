"""Mosaics: identity on one image, significance adds in quadrature, OSA layout in and out."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.wcs import WCS

from isdc.dal.skyimages import read_sky_images
from isdc.imaging.mosaic import mosaic
from isdc.pipeline.skymaps import mosaic_sets
from isdc.pipeline.sourcelist import source_list

REF = Path(__file__).resolve().parent.parent / "test_data" / "reference"
PIX = 0.0822862  # deg, ISGRI sky pixel


def _wcs(ra0, dec0, rot_deg, n):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [(n + 1) / 2, (n + 1) / 2]
    c, s = np.cos(np.radians(rot_deg)), np.sin(np.radians(rot_deg))
    w.wcs.cd = PIX * np.array([[-c, s], [s, c]])
    return w


def _image(w, n, src_ra, src_dec, flux, sigma_flux, rng, psf=1.1):
    x0, y0 = w.world_to_pixel_values(src_ra, src_dec)
    yy, xx = np.mgrid[0:n, 0:n]
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(rng.normal(size=(n, n)), psf / np.sqrt(2))
    noise *= sigma_flux / noise.std()
    inten = flux * np.exp(-0.5 * ((xx - x0) ** 2 + (yy - y0) ** 2) / psf**2) + noise
    return inten, np.full((n, n), sigma_flux**2)


def test_mosaic_of_one_real_image_reproduces_it():
    s = read_sky_images(REF / "isgri_sky_ima_066500280010.fits.gz")[0]
    m = mosaic_sets([[s]])[0]
    sig_in, sig_out = s.maps["SIGNIFICANCE"].data, m.maps["SIGNIFICANCE"].data
    assert sig_out.shape == sig_in.shape
    ok = np.isfinite(sig_out)
    assert ok.sum() > 0.7 * ok.size
    np.testing.assert_allclose(sig_out[ok], sig_in[ok], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(m.maps["INTENSITY"].data[ok], s.maps["INTENSITY"].data[ok], rtol=1e-4, atol=1e-5)


def test_significance_of_a_source_adds_in_quadrature_across_rotated_dithered_images():
    rng = np.random.default_rng(11)
    n, src = 121, (83.63, 22.01)
    intens, varis, wcss, sigs = [], [], [], []
    for k, (dra, ddec, rot) in enumerate([(0, 0, 0), (2, 0, 35), (-2, 1, 80), (0, -2, 130), (1.5, 1.5, 200)]):
        w = _wcs(src[0] + dra, src[1] + ddec, rot, n)
        err = 0.8 + 0.2 * k
        i, v = _image(w, n, *src, flux=10.0, sigma_flux=err, rng=rng)
        intens.append(i), varis.append(v), wcss.append(w), sigs.append(10.0 / err)
    m = mosaic(intens, varis, [None] * 5, wcss)
    x0, y0 = (float(v) for v in m.wcs.world_to_pixel_values(*src))
    # fit the peak as the detection does
    from isdc.imaging.detect import find_sources

    dets = find_sources(m.significance, threshold=6.0)
    d = dets[0]
    assert np.hypot(d.x - x0, d.y - y0) < 0.3
    expected = np.sqrt(np.sum(np.square(sigs)))
    assert d.detsig == pytest.approx(expected, rel=0.10)
    assert int(m.n_images[int(round(y0)), int(round(x0))]) == 5


def test_mosaic_cli_on_osa_image_then_detect_finds_the_crab(tmp_path):
    out = tmp_path / "mosa.fits"
    r = subprocess.run([sys.executable, "-m", "isdc.cli", "mosaic", str(REF / "isgri_sky_ima_066500280010.fits.gz"),
                        "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    sets = read_sky_images(out)
    assert sets[0].maps["SIGNIFICANCE"].header["TEMPLATE"] == "ISGR-MOSA-IMA"
    srcl = source_list(sets)
    assert len(srcl) == 1 and srcl["DETSIG"][0] == pytest.approx(163.0, rel=0.10)
    bad = subprocess.run([sys.executable, "-m", "isdc.cli", "mosaic", str(tmp_path / "nope.fits"), "--out",
                          str(tmp_path / "m.fits")], capture_output=True, text=True)
    assert bad.returncode == 1 and "nope.fits" in bad.stderr
