"""Iterative removal of sources: cleaned images, ghost removal, significance statistics
(synthetic ISGRI shadowgrams: PIF + Poisson, ~2 ks ScW background)."""
import numpy as np
import pytest

from isdc.imaging.decode import Decoder, model_shadowgram
from isdc.imaging.iros import PEAK_HALF_WIDTH, SourceSeed, iros
from isdc.imaging.pif import response
from isdc.instruments.isgri.geometry import isgri_geometry

EXPOSURE = 2000.0
LIVE = 0.774
BKG_COUNTS = 7.3e5  # 25-80 keV background of a 2 ks ScW (docs/simulator.md)
CRAB = 179.5  # counts/s at 25-80 keV


@pytest.fixture(scope="module")
def isgri():
    return isgri_geometry()


@pytest.fixture(scope="module")
def decoder(isgri):
    return Decoder(isgri)


def background_pattern(isgri, seed=5):
    """Module efficiencies 0.95-1.04, +30% on the outer 2 pixels, a 10% gradient along Z."""
    rng = np.random.default_rng(seed)
    mod = isgri.module_map
    pat = np.where(mod >= 0, rng.uniform(0.95, 1.04, 8)[np.maximum(mod, 0)], 0.0)
    pat *= 1 + 0.1 * (np.arange(isgri.shape[0])[:, None] - 67) / 67
    edge = np.zeros(isgri.shape, bool)
    edge[:2] = edge[-2:] = True
    edge[:, :2] = edge[:, -2:] = True
    return pat * np.where(edge, 1.3, 1.0)


def shadowgram(isgri, rng, sources, pattern=None):
    w = isgri.real_pixels * LIVE
    pat = w if pattern is None else pattern * w
    mu = pat * (BKG_COUNTS / pat.sum())
    for rate, ty, tz in sources:
        mu = mu + model_shadowgram(response(isgri, ty, tz), rate, EXPOSURE, w)
    return rng.poisson(mu).astype(float), w, mu, pat


def away_from(images, grid, positions, radius=5.0):
    rr, cc = np.mgrid[: grid.shape[0], : grid.shape[1]]
    far = images.exposure > 0
    for ty, tz in positions:
        r0, c0 = grid.tan_to_pixel(ty, tz)
        far &= (rr - r0) ** 2 + (cc - c0) ** 2 > radius**2
    return far


def test_crab_ghosts_and_coding_noise_are_removed(decoder, isgri):
    """A Crab 8 deg off axis: its raw image has a ghost far above 6 sigma and a side-lobe
    standard deviation of ~2; after IROS nothing away from the Crab exceeds 6 sigma and the
    significance there has mean 0 +- 0.05 and std 1 +- 0.05."""
    pt = isgri.pixel_tan
    crab = (CRAB, -98.3 * pt, 3.4 * pt)
    d, w, _, _ = shadowgram(isgri, np.random.default_rng(9), [crab])
    raw = decoder.decode(d, w, EXPOSURE)
    far = away_from(raw, decoder.grid, [crab[1:]])
    assert raw.significance[far].max() > 30  # the ghost one mask period away
    assert raw.significance[far].std() > 1.5
    out = iros(decoder, d, w, EXPOSURE)
    assert len(out.fit.rates) == 1 and out.labels == [None]
    assert abs(out.fit.tan_y[0] - crab[1]) < 0.05 * pt and abs(out.fit.tan_z[0] - crab[2]) < 0.05 * pt
    assert abs(out.fit.rates[0] - CRAB) < 3 * out.fit.errors[0]
    s = out.images.significance[far]
    assert s.max() < 6.0 and s.min() > -6.0
    assert abs(s.mean()) < 0.05 and abs(s.std() - 1.0) < 0.05


def test_crowded_field_with_background_structure(decoder, isgri):
    """Crab near the axis + three fainter sources + a structured background given as the
    background model: all four found within 0.3 px, rates within 4 sigma; source-free
    significance mean 0 +- 0.05, std 1 +- 0.05, nothing spurious above 6 sigma."""
    pt = isgri.pixel_tan
    truth = [(CRAB, 2.3 * pt, -3.6 * pt), (50.0, -100.6 * pt, -80.2 * pt), (25.0, 40.4 * pt, 20.3 * pt),
             (20.0, -60.2 * pt, 70.7 * pt)]
    pattern = background_pattern(isgri)
    d, w, _, pat = shadowgram(isgri, np.random.default_rng(21), truth, pattern)
    out = iros(decoder, d, w, EXPOSURE, seeds=[SourceSeed(truth[0][1], truth[0][2], "crab")],
               background_models=[pat])
    f = out.fit
    assert out.labels[0] == "crab" and len(f.rates) == 4
    for rate, ty, tz in truth:
        k = int(np.argmin(np.hypot(f.tan_y - ty, f.tan_z - tz)))
        assert np.hypot(f.tan_y[k] - ty, f.tan_z[k] - tz) < 0.3 * pt
        assert abs(f.rates[k] - rate) < 4 * f.errors[k]
    far = away_from(out.images, decoder.grid, [t[1:] for t in truth])
    s = out.images.significance[far]
    assert abs(s.mean()) < 0.05 and abs(s.std() - 1.0) < 0.05
    assert s.max() < 6.0 and s.min() > -6.0
    # Without the background model the structure shows: the flat model alone is worse.
    flat = iros(decoder, d, w, EXPOSURE, seeds=[SourceSeed(truth[0][1], truth[0][2], "crab")], max_sources=4)
    assert flat.images.significance[far].std() > s.std() + 0.05


def test_empty_sky(decoder, isgri):
    d, w, _, _ = shadowgram(isgri, np.random.default_rng(4), [])
    out = iros(decoder, d, w, EXPOSURE)
    assert len(out.fit.rates) == 0 and out.n_decodes == 1
    raw = decoder.decode(d, w, EXPOSURE)
    assert np.allclose(out.images.significance, raw.significance, rtol=1e-5, atol=1e-5)
    s = out.images.significance[out.images.exposure > 0]
    assert abs(s.mean()) < 0.02 and abs(s.std() - 1) < 0.02 and s.max() < 6


def test_clean_intensity_keeps_each_source_central_peak(decoder, isgri):
    """Noise-free data: the cleaned intensity equals the raw decode inside each source's peak
    box and is ~0 elsewhere (side lobes and ghosts gone)."""
    pt = isgri.pixel_tan
    truth = [(CRAB, -98.3 * pt, 3.4 * pt), (30.0, 20.2 * pt, 10.7 * pt)]
    _, w, mu, _ = shadowgram(isgri, np.random.default_rng(0), truth)
    raw = decoder.decode(mu, w, EXPOSURE)
    out = iros(decoder, mu, w, EXPOSURE, seeds=[SourceSeed(t[1], t[2]) for t in truth], max_sources=2)
    box = np.zeros(raw.intensity.shape, bool)
    for _, ty, tz in truth:
        r0, c0 = decoder.grid.tan_to_pixel(ty, tz)
        rows = (np.arange(box.shape[0]) >= r0 - PEAK_HALF_WIDTH) & (np.arange(box.shape[0]) <= r0 + PEAK_HALF_WIDTH)
        cols = (np.arange(box.shape[1]) >= c0 - PEAK_HALF_WIDTH) & (np.arange(box.shape[1]) <= c0 + PEAK_HALF_WIDTH)
        box |= rows[:, None] & cols[None, :]
    valid = raw.exposure > 0
    peak = raw.intensity.max()
    assert np.abs(out.images.intensity - raw.intensity)[box & valid].max() < 1e-3 * peak
    assert np.abs(out.images.intensity[~box & valid]).max() < 1e-3 * peak
    assert np.abs(raw.intensity[~box & valid]).max() > 0.3 * CRAB  # the ghost that was removed


def test_seeds_outside_the_field_and_absent_sources(decoder, isgri):
    """A seed beyond the partially coded field is dropped; a seed with no source gets a rate
    consistent with 0 and keeps its (fixed) catalogue position."""
    pt = isgri.pixel_tan
    d, w, _, _ = shadowgram(isgri, np.random.default_rng(6), [(40.0, 10.1 * pt, 5.2 * pt)])
    seeds = [SourceSeed(0.5, 0.0, "outside"), SourceSeed(-30 * pt, 30 * pt, "absent"),
             SourceSeed(10.1 * pt, 5.2 * pt, "real")]
    out = iros(decoder, d, w, EXPOSURE, seeds=seeds)
    assert out.labels == ["absent", "real"]
    f = out.fit
    assert abs(f.rates[0]) < 4 * f.errors[0] and not f.free[0]
    assert f.tan_y[0] == -30 * pt and f.tan_z[0] == 30 * pt
    assert f.snr[1] > 15
