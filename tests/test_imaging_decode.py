"""Decoding: FFT implementation against direct sums, normalisation, variance, significance
statistics, exposure, PCFOV handling, ghosts, and PIF fits (synthetic Poisson data)."""
import numpy as np
import pytest

from isdc.imaging.decode import Decoder, fit_sources, model_shadowgram
from isdc.imaging.geometry import CodedMaskGeometry
from isdc.imaging.mask import mura_pattern, replicate
from isdc.imaging.pif import cos_theta, mask_on_pixel_grid, response
from isdc.instruments.isgri.geometry import isgri_geometry

EXPOSURE = 2000.0  # s
BACKGROUND_COUNTS = 1.0e6  # per image, as in a ~2 ks ISGRI ScW (DESIGN.md)


@pytest.fixture(scope="module")
def isgri():
    return isgri_geometry()


@pytest.fixture(scope="module")
def decoder(isgri):
    return Decoder(isgri)


@pytest.fixture(scope="module")
def flat(isgri):
    """Efficiency 1 on real pixels and the flat background level (counts/pixel)."""
    w = isgri.real_pixels.astype(float)
    return w, BACKGROUND_COUNTS / isgri.n_pixels


def small_geometry():
    """A deliberately awkward geometry: non-integer element/pitch ratio, unequal gaps,
    offset mask, rectangular detector and mask."""
    return CodedMaskGeometry(
        mask=replicate(mura_pattern(5), (9, 8), (2, 1)), mask_element_mm=2.7, mask_distance_mm=500.0,
        pixel_pitch_mm=1.1, pixel_active_mm=0.9, module_pixels=(4, 5), n_modules=(2, 2),
        gap_pitches=(1, 2), mask_offset_mm=(0.37, -0.81), name="test")


def direct_decode(geometry, counts, weights, exposure, sky_shape=None):
    """The decoding equations as explicit sums over detector pixels for every sky pixel."""
    dec = Decoder(geometry, sky_shape=sky_shape, precision="double")
    grid = mask_on_pixel_grid(geometry)
    m, ub, u = grid.open, (grid.inside > 0).astype(float), grid.inside
    r0, c0 = (int(v) for v in dec.grid.on_axis)
    nz, ny = geometry.shape
    out = {k: np.zeros(dec.grid.shape) for k in ("intensity", "variance", "significance", "exposure")}
    for r in range(dec.grid.shape[0]):
        for c in range(dec.grid.shape[1]):
            kz, ky = r - r0, c0 - c
            jr = np.arange(nz)[:, None] + kz + grid.first[0]
            jc = np.arange(ny)[None, :] + ky + grid.first[1]
            ok = (jr >= 0) & (jr < m.shape[0]) & (jc >= 0) & (jc < m.shape[1])
            jr, jc = np.clip(jr, 0, m.shape[0] - 1), np.clip(jc, 0, m.shape[1] - 1)
            gp = np.where(ok, m[jr, jc], 0.0)
            gm = np.where(ok, ub[jr, jc], 0.0) - gp
            if (weights * gp).sum() <= 1e-9 or (weights * gm).sum() <= 1e-9:
                continue
            if (weights * np.where(ok, u[jr, jc], 0)).sum() < 1.0:
                continue
            b = (weights * gp).sum() / (weights * gm).sum()
            g = gp - b * gm
            if (weights * gp * g).sum() <= 1e-3 * (1 + b) * (weights * gp * gp).sum():
                continue  # contributing pixels (almost) equally open: no coding contrast
            s, vs = (counts * g).sum(), (counts * g * g).sum()
            ty, tz = dec.grid.pixel_to_tan(r, c)
            norm = geometry.n_pixels / (exposure * cos_theta(ty, tz) * (weights * gp * g).sum())
            out["intensity"][r, c] = s * norm
            out["variance"][r, c] = vs * norm ** 2
            out["significance"][r, c] = s / np.sqrt(vs)
            out["exposure"][r, c] = exposure * cos_theta(ty, tz) * (weights * np.where(ok, u[jr, jc], 0)).sum() / geometry.n_pixels
    return dec, out


@pytest.mark.parametrize("sky_shape", [None, (40, 37)])
def test_fft_decoding_equals_direct_sums(sky_shape):
    geom = small_geometry()
    rng = np.random.default_rng(7)
    w = geom.real_pixels * rng.uniform(0.5, 1.0, geom.shape)
    w[3, 4] = 0.0  # a dead pixel
    counts = rng.poisson(40.0, geom.shape) * (w > 0)
    dec, ref = direct_decode(geom, counts, w, 100.0, sky_shape)
    assert dec.grid.shape == (sky_shape or dec.grid.shape)
    for precision, rtol in (("double", 1e-9), ("single", 2e-3)):  # single: round-off near degenerate edges
        got = Decoder(geom, sky_shape=sky_shape, precision=precision).decode(counts, w, 100.0)
        for name, expect in ref.items():
            scale = np.abs(expect).max()
            np.testing.assert_allclose(getattr(got, name), expect, atol=rtol * scale, err_msg=f"{precision} {name}")
    assert (ref["exposure"] > 0).sum() > 0.8 * ref["exposure"].size if sky_shape is None else True


def test_sky_grid_geometry(decoder, isgri):
    g = decoder.grid
    assert g.shape == (365, 361)  # upsampled mask (232) + detector (134 x 130) - 1
    assert g.on_axis == (182.0, 180.0)
    assert g.scale == isgri.pixel_tan
    padded = Decoder(isgri, sky_shape=(400, 400))
    assert padded.grid.on_axis == (200.0, 200.0)
    with pytest.raises(ValueError, match="cannot hold"):
        Decoder(isgri, sky_shape=(360, 400))


def poisson_image(rng, isgri, w, level, sources=()):
    mu = level * w * 1.0
    for rate, ty, tz in sources:
        mu = mu + model_shadowgram(response(isgri, ty, tz), rate, EXPOSURE, w)
    return rng.poisson(mu).astype(float), mu


def centroid(image, r, c, half=2):
    win = np.clip(image[r - half:r + half + 1, c - half:c + half + 1], 0, None)
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    return r + (win * yy).sum() / win.sum(), c + (win * xx).sum() / win.sum()


@pytest.mark.parametrize("kz, ky", [(0.0, 0.0), (0.0, -98.0), (61.0, 69.0)])
def test_on_grid_source_intensity_is_unbiased(decoder, isgri, flat, kz, ky):
    """An on-grid point source of rate R decodes to R exactly without noise, and within
    3 sigma of the variance map with Poisson noise (on axis, 8 deg off axis, and 8 deg in
    both axes, in the partially coded field)."""
    w, level = flat
    rate = 20.0  # counts/s: ~17 sigma on axis in 2 ks on 1e6 background counts
    ty, tz = ky * isgri.pixel_tan, kz * isgri.pixel_tan
    r, c = (int(round(float(v))) for v in decoder.grid.tan_to_pixel(ty, tz))
    counts, mu = poisson_image(np.random.default_rng(11), isgri, w, level, [(rate, ty, tz)])
    exact = decoder.decode(mu, w, EXPOSURE)
    assert exact.intensity[r, c] == pytest.approx(rate, rel=1e-5)
    img = decoder.decode(counts, w, EXPOSURE)
    assert np.unravel_index(np.argmax(img.significance), img.significance.shape) == (r, c)
    assert abs(img.intensity[r, c] - rate) < 3 * np.sqrt(img.variance[r, c])
    assert img.significance[r, c] > 10


@pytest.mark.parametrize("kz, ky", [(0.3, -0.4), (-0.45, 97.6), (40.2, -98.35)])
def test_off_grid_source_centroid(decoder, isgri, flat, kz, ky):
    """Sub-pixel position from the 5x5 barycentre of the intensity within 0.3 pixel."""
    w, level = flat
    ty, tz = ky * isgri.pixel_tan, kz * isgri.pixel_tan
    counts, _ = poisson_image(np.random.default_rng(5), isgri, w, level, [(20.0, ty, tz)])
    img = decoder.decode(counts, w, EXPOSURE)
    r, c = np.unravel_index(np.argmax(img.significance), img.significance.shape)
    truth = decoder.grid.tan_to_pixel(ty, tz)
    found = centroid(img.intensity, r, c)
    assert np.hypot(found[0] - truth[0], found[1] - truth[1]) < 0.3


def test_flat_background_decodes_to_zero(decoder, isgri):
    """Any background proportional to the efficiency map decodes to 0 everywhere in the
    partially coded field, also with uneven module efficiencies and dead pixels."""
    rng = np.random.default_rng(3)
    w = isgri.real_pixels * np.array([0.9, 1.0, 0.8, 0.95, 1.0, 0.85, 0.7, 1.0])[np.clip(isgri.module_map, 0, 7)]
    w[rng.random(w.shape) < 0.02] = 0.0  # dead / noisy pixels
    img = decoder.decode(61.0 * w, w, EXPOSURE)
    valid = img.exposure > 0
    assert valid.sum() > 0.95 * valid.size
    assert np.max(np.abs(img.significance)) < 1e-4
    assert np.max(np.abs(img.intensity[valid]) / np.sqrt(img.variance[valid])) < 1e-4


def test_significance_statistics_without_sources(decoder, isgri, flat):
    """Acceptance criterion: significance in empty sky has mean 0 +- 0.05, std 1.00 +- 0.05
    (1e6 background counts), over the whole partially coded field of one image and over
    the fully coded field pooled from 8 images (neighbouring sky pixels are correlated:
    one image's fully coded field scatters by ~0.02 in mean and ~0.01 in std)."""
    w, level = flat
    rng = np.random.default_rng(2024)
    rows, cols = np.indices(decoder.grid.shape)
    pooled = []
    for i in range(8):
        counts, _ = poisson_image(rng, isgri, w, level)
        assert counts.sum() == pytest.approx(BACKGROUND_COUNTS, rel=0.01)
        img = decoder.decode(counts, w, EXPOSURE)
        valid = img.exposure > 0
        fully = img.exposure >= 0.999 * EXPOSURE * cos_theta(*decoder.grid.pixel_to_tan(rows, cols))
        if i == 0:
            assert valid.sum() > 0.98 * valid.size
            assert abs(img.significance[valid].mean()) < 0.05
            assert abs(img.significance[valid].std() - 1.0) < 0.05
        pooled.append(img.significance[fully])
    assert fully.sum() > 9000  # the ~8 x 8 deg fully coded field: ~ 97 x 97 pixels
    pooled = np.concatenate(pooled)
    assert abs(pooled.mean()) < 0.05
    assert abs(pooled.std() - 1.0) < 0.05


def test_significance_statistics_with_a_bright_source(decoder, isgri, flat):
    """With a ~26-sigma source in the fully coded field, the rest of that field (away from
    the source and from its row and column, where MURA coding noise concentrates) keeps
    mean 0 +- 0.05 and std 1.00 +- 0.05 (8 images pooled; the source's coding noise there
    is a -0.02 sigma pedestal with 0.04 sigma rms)."""
    w, level = flat
    ty, tz = -30 * isgri.pixel_tan, 20 * isgri.pixel_tan
    r, c = (int(round(float(v))) for v in decoder.grid.tan_to_pixel(ty, tz))
    rows, cols = np.indices(decoder.grid.shape)
    rng = np.random.default_rng(99)
    pooled = []
    for _ in range(8):
        counts, _ = poisson_image(rng, isgri, w, level, [(30.0, ty, tz)])
        img = decoder.decode(counts, w, EXPOSURE)
        assert img.significance[r, c] > 20
        fully = img.exposure >= 0.999 * EXPOSURE * cos_theta(*decoder.grid.pixel_to_tan(rows, cols))
        away = fully & (np.abs(rows - r) > 3) & (np.abs(cols - c) > 3)
        pooled.append(img.significance[away])
    pooled = np.concatenate(pooled)
    assert abs(pooled.mean()) < 0.05
    assert abs(pooled.std() - 1.0) < 0.05


def test_variance_map_matches_monte_carlo(decoder, isgri, flat):
    """The variance map equals the scatter of the intensity over Poisson realisations."""
    w, level = flat
    ty, tz = 25 * isgri.pixel_tan, -80 * isgri.pixel_tan
    mu = level * w + model_shadowgram(response(isgri, ty, tz), 15.0, EXPOSURE, w)
    rng = np.random.default_rng(17)
    probe = (np.array([182, 100, 300, 20, 182]), np.array([180, 260, 40, 180, 350]))
    src = tuple(int(round(float(v))) for v in decoder.grid.tan_to_pixel(ty, tz))
    probe = (np.append(probe[0], src[0]), np.append(probe[1], src[1]))
    samples = np.array([decoder.decode(rng.poisson(mu).astype(float), w, EXPOSURE).intensity[probe]
                        for _ in range(300)])
    model = decoder.decode(mu, w, EXPOSURE).variance[probe]
    ratio = samples.var(axis=0, ddof=1) / model
    # 300 samples: relative standard error of a variance ~ 8%
    assert np.all(np.abs(ratio - 1) < 0.3)
    assert abs(ratio.mean() - 1) < 0.1


def test_exposure_map(decoder, isgri, flat):
    w, _ = flat
    img = decoder.decode(np.zeros(isgri.shape), w, EXPOSURE)
    assert img.exposure[182, 180] == pytest.approx(EXPOSURE)
    rows, cols = np.indices(img.exposure.shape)
    ty, tz = decoder.grid.pixel_to_tan(rows, cols)
    assert np.all(img.exposure <= EXPOSURE * cos_theta(ty, tz) * (1 + 1e-6))
    # zero beyond the partially coded field (|tan| > (mask + detector) / 2 / F)
    hz, hy = isgri.partially_coded_half_tan
    assert np.all(img.exposure[(np.abs(tz) > hz) | (np.abs(ty) > hy)] == 0)
    # efficiency scales it; half efficiency -> half exposure
    assert decoder.decode(np.zeros(isgri.shape), 0.5 * w, EXPOSURE).exposure[182, 180] == pytest.approx(EXPOSURE / 2)
    # along +Y, outside the fully coded field, the exposure falls monotonically to 0
    profile = img.exposure[182, 180:]
    assert np.all(np.diff(profile[60:]) <= 1e-3) and profile[-1] < 0.02 * EXPOSURE


def test_single_precision_round_off_is_negligible(isgri, flat):
    w, level = flat
    rng = np.random.default_rng(8)
    # uneven module efficiencies and dead pixels exercise the efficiency-map correlations
    w = w * np.array([0.9, 1.0, 0.8, 0.95, 1.0, 0.85, 0.7, 1.0])[np.clip(isgri.module_map, 0, 7)]
    w[rng.random(w.shape) < 0.02] = 0.0
    counts, _ = poisson_image(rng, isgri, w, level, [(200.0, 0.02, -0.01), (5.0, -0.1, 0.12)])
    single = Decoder(isgri, precision="single").decode(counts, w, EXPOSURE)
    double = Decoder(isgri, precision="double").decode(counts, w, EXPOSURE)
    assert single.intensity.dtype == np.float32 and double.intensity.dtype == np.float64
    assert np.array_equal(single.exposure > 0, double.exposure > 0)
    assert np.max(np.abs(single.significance - double.significance)) < 1e-3
    # relative round-off of the variance: tiny where the field is coded by >10% of the
    # detector, ~1e-3 at the extreme corners where correlations are sums over a few pixels
    valid = double.exposure > 0
    rel = np.abs(single.variance / np.where(valid, double.variance, 1) - 1)
    assert np.max(rel[double.exposure > 0.1 * EXPOSURE]) < 1e-5
    assert np.max(rel[valid]) < 3e-3


def test_ghosts_and_their_removal_by_pif_subtraction(decoder, isgri, flat):
    """A source in the fully coded field has ghosts one basic-pattern period (53 elements =
    129.04 pixels) away; subtracting the fitted PIF model removes source and ghosts."""
    w, level = flat
    ty, tz = 0.0, 0.0
    counts, _ = poisson_image(np.random.default_rng(1), isgri, w, level, [(60.0, ty, tz)])
    img = decoder.decode(counts, w, EXPOSURE)
    period = 53 * isgri.mask_element_mm / isgri.pixel_pitch_mm
    r0, c0 = 182, 180
    ghosts = [(r0 + int(round(period)), c0), (r0 - int(round(period)), c0), (r0, c0 + int(round(period)))]
    for r, c in ghosts:
        assert img.significance[r, c] > 20
    resp = response(isgri, ty, tz)
    fit = fit_sources(counts, w, resp, w, EXPOSURE)
    assert abs(fit.rates[0] - 60.0) < 3 * fit.errors[0]
    cleaned = decoder.decode(counts - model_shadowgram(resp, fit.rates, EXPOSURE, w), w, EXPOSURE)
    for r, c in [(r0, c0)] + ghosts:
        assert abs(cleaned.significance[r, c]) < 4


def test_fit_sources_rates_errors_and_pulls(isgri, flat):
    w, level = flat
    srcs = [(30.0, 0.01, -0.02), (4.0, -0.09, 0.05), (0.0, 0.12, 0.12)]
    resp = np.array([response(isgri, ty, tz) for _, ty, tz in srcs])
    rng = np.random.default_rng(123)
    pulls = []
    for _ in range(40):
        counts, _ = poisson_image(rng, isgri, w, level, srcs)
        fit = fit_sources(counts, w, resp, w, EXPOSURE)
        pulls.append((fit.rates - [s[0] for s in srcs]) / fit.errors)
        bkg_pull = (fit.background[0] - level) / fit.background_errors[0]
        assert abs(bkg_pull) < 4
    pulls = np.array(pulls)
    assert np.all(np.abs(pulls.mean(axis=0)) < 0.5)
    assert np.all(np.abs(pulls.std(axis=0) - 1) < 0.3)
    ls = fit_sources(counts, w, resp, w, EXPOSURE, method="least_squares")
    assert np.all(np.abs(ls.rates - fit.rates) < 0.5 * fit.errors)
    assert fit.model.shape == isgri.shape and np.all(fit.model[w == 0] == 0)


def test_model_shadowgram_counts(isgri, flat):
    w, _ = flat
    resp = response(isgri, 0.0, 0.0)
    m = model_shadowgram(resp, 10.0, 100.0, w)
    # on axis through an open mask the detector would record R t; the mask passes ~half
    assert m.sum() == pytest.approx(10.0 * 100.0 * resp.sum() * 1.0)
    assert 0.48 < m.sum() / 1000.0 < 0.51
    two = model_shadowgram(np.array([resp, resp]), [1.0, 2.0], 100.0, w)
    np.testing.assert_allclose(two, 3 * model_shadowgram(resp, 1.0, 100.0, w))


def test_bad_inputs_raise(decoder, isgri, flat):
    w, _ = flat
    with pytest.raises(ValueError, match="shadowgram shape"):
        decoder.decode(np.zeros((128, 128)), w, 1.0)
    with pytest.raises(ValueError, match="efficiency map shape"):
        decoder.decode(np.zeros(isgri.shape), np.ones((128, 128)), 1.0)
    with pytest.raises(ValueError, match="exposure"):
        decoder.decode(np.zeros(isgri.shape), w, 0.0)
    bad = np.zeros(isgri.shape)
    bad[5, 5] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        decoder.decode(bad, w, 1.0)
    with pytest.raises(ValueError, match=">= 0"):
        decoder.decode(np.zeros(isgri.shape), -w, 1.0)
    with pytest.raises(ValueError, match="precision"):
        Decoder(isgri, precision="half")
    resp = response(isgri, 0.0, 0.0)
    with pytest.raises(ValueError, match="linearly dependent"):
        fit_sources(np.ones(isgri.shape), w, np.array([resp, 2 * resp]), None, 10.0)
    with pytest.raises(ValueError, match="method"):
        fit_sources(np.ones(isgri.shape), w, resp, w, 10.0, method="magic")


def test_weights_cache_distinguishes_maps(isgri, flat):
    w, level = flat
    dec = Decoder(isgri, weights_cache=2)
    counts, _ = poisson_image(np.random.default_rng(4), isgri, w, level, [(20.0, 0.0, 0.0)])
    w2 = w.copy()
    w2[:66] *= 0.5
    a = dec.decode(counts, w, EXPOSURE)
    b = dec.decode(counts, w2, EXPOSURE)
    c = dec.decode(counts, w, EXPOSURE)
    assert not np.allclose(a.intensity, b.intensity)
    np.testing.assert_array_equal(a.intensity, c.intensity)
