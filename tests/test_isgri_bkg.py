"""BKG level: background map per band, normalisation fit robust to sources, IC stacking."""
import numpy as np
import pytest

from isdc.imaging.pif import pif
from isdc.instruments.isgri import background as bkg
from isdc.instruments.isgri.calib_bkg import DEFAULT_SLICES, BackgroundStack
from isdc.instruments.isgri.geometry import isgri_geometry
from isgri_scw_synth import background_model

MAP = background_model().spatial_map  # mean 1 over live pixels, 0 on the 10 dead ones


def efficiency():
    w = np.where(MAP > 0, np.repeat(np.linspace(0.74, 0.78, 8), 2048).reshape(4, 2, 32, 64).transpose(0, 2, 1, 3)
                 .reshape(128, 128), 0.0)
    return w


def crab_shadow(counts_total: float) -> np.ndarray:
    """Logical 128 x 128 expected counts of a source 2 deg off axis with `counts_total` counts."""
    g = isgri_geometry()
    p = g.to_logical(pif(g, np.tan(np.radians(2.0)), 0.0))
    return counts_total * p / p.sum()


def test_band_map_weights_the_slices_by_overlap():
    lo, hi = np.array([15.0, 20.0, 30.0]), np.array([20.0, 30.0, 50.0])
    maps = np.stack([np.full((2, 2), v) for v in (1.0, 10.0, 100.0)])
    assert bkg.band_map(lo, hi, maps, 20.0, 30.0)[0, 0] == pytest.approx(10.0)
    assert bkg.band_map(lo, hi, maps, 17.5, 40.0)[0, 0] == pytest.approx(0.5 + 10.0 + 50.0)
    with pytest.raises(ValueError, match="not covered"):
        bkg.band_map(lo, hi, maps, 40.0, 60.0)


def test_empty_field_normalisation_is_unbiased_and_its_error_right():
    rng = np.random.default_rng(1)
    w = efficiency()
    shape = MAP * w * 1500.0 * 0.02  # ~22 counts per pixel, as 20-40 keV in a 1.5 ks ScW
    for flat in (False, True):
        fits = [bkg.fit_background(rng.poisson(1.3 * shape), shape, w, flat=flat) for _ in range(40)]
        norms = np.array([f.norm for f in fits])
        errs = np.array([f.norm_err for f in fits])
        assert all(f.with_flat == flat for f in fits)
        assert abs(norms.mean() - 1.3) < 3 * errs.mean() / np.sqrt(len(fits))
        assert 0.7 < norms.std() / errs.mean() < 1.3  # the quoted error is the scatter
        assert 0.9 < np.mean([f.chi2 for f in fits]) < 1.1
        assert np.allclose(fits[0].model, fits[0].norm * shape)
        # The flat term is compatible with 0 without sources.
        flats = np.array([f.flat for f in fits])
        assert abs(flats.mean()) <= 3 * flats.std() / np.sqrt(len(fits))
    # Scale alone: the error is the Poisson error of all the counts; with the flat term
    # the structure alone measures it (~10x worse).
    one = bkg.fit_background(rng.poisson(shape), shape, w)
    two = bkg.fit_background(rng.poisson(shape), shape, w, flat=True)
    assert one.norm_err == pytest.approx(1 / np.sqrt(shape.sum()), rel=0.02)
    assert two.norm_err > 5 * one.norm_err


def test_the_flat_term_takes_a_bright_source_which_the_scale_alone_counts_as_background():
    # A source with 20% of the counts at 30 random positions in the fully coded field.
    rng = np.random.default_rng(2)
    w = efficiency()
    shape = MAP * w * 1500.0 * 0.02
    g = isgri_geometry()
    two, one, flat_ratio = [], [], []
    for _ in range(30):
        ty, tz = np.tan(np.radians(rng.uniform(-4.0, 4.0, 2)))
        p = g.to_logical(pif(g, ty, tz))
        src = 0.2 * shape.sum() * p / p.sum() * w / w.mean()
        d = rng.poisson(shape + src)
        f2 = bkg.fit_background(d, shape, w, flat=True)
        two.append(f2.norm)
        flat_ratio.append(f2.flat * w.sum() / src.sum())
        one.append(bkg.fit_background(d, shape, w).norm)
    # Unbiased over source positions; for one position the source's shadow correlates by
    # chance with the background's structure (edges, modules): a few % scatter.
    assert abs(np.mean(two) - 1.0) < 0.03
    assert 0.02 < np.std(two) < 0.12
    # The flat term holds the source's mean counts.
    assert np.mean(flat_ratio) == pytest.approx(1.0, abs=0.15)
    # A fit of the scale alone puts the source's mean counts into the model: +20%.
    assert np.mean(one) == pytest.approx(1.2, abs=0.01)


def test_clipping_ignores_a_hot_pixel():
    rng = np.random.default_rng(3)
    w = efficiency()
    shape = MAP * w * 1500.0 * 0.02
    d = rng.poisson(shape).astype(float)
    ref = bkg.fit_background(d, shape, w)
    d[50, 50] += 5000.0
    hot = bkg.fit_background(d, shape, w)
    assert hot.n_pixels == ref.n_pixels - 1
    assert hot.norm == pytest.approx(ref.norm, abs=1e-4)
    assert bkg.fit_background(d, shape, w, clip_sigma=1e9).norm > ref.norm + 0.01


def test_with_a_flat_map_the_flat_term_falls_back_to_the_scale_alone():
    w = efficiency()
    d = np.random.default_rng(4).poisson(20.0 * w)
    f = bkg.fit_background(d, w * 20.0, w, flat=True)
    assert not f.with_flat and f.flat == 0.0 and f.norm == pytest.approx(1.0, abs=0.01)
    with pytest.raises(ValueError, match="usable pixels"):
        bkg.fit_background(d, w * 0, w)


def test_stacking_recovers_the_rate_map():
    rng = np.random.default_rng(5)
    edges = (20.0, 40.0, 100.0)
    rate = np.stack([MAP * 0.012, MAP * 0.008])  # counts/s per pixel at unit efficiency
    stack = BackgroundStack(edges)
    for k in range(10):
        w = efficiency() * (0.95 + 0.01 * k)
        w[k, k] = 0.0  # a noisy pixel, switched off in this ScW only
        ontime = 3000.0 + 100 * k
        counts = rng.poisson(rate * w * ontime).astype(float)
        counts[:, k, k] = 999.0  # its counts must not enter the stack
        stack.add(counts, w, ontime)
    maps = stack.maps()
    live = MAP > 0
    rel = (maps - rate)[:, live] / rate[:, live]
    noise = stack.relative_noise()
    assert np.all(np.abs(rel.mean(axis=1)) < 0.003)
    assert np.allclose(rel.std(axis=1), noise, rtol=0.1)
    assert np.all(maps[:, ~live] == 0.0) and stack.n_scw == 10 and stack.bands == [[20.0, 40.0], [40.0, 100.0]]
    with pytest.raises(ValueError, match="shape"):
        stack.add(np.zeros((3, 128, 128)), np.ones((128, 128)), 100.0)
    with pytest.raises(ValueError, match="no science window"):
        BackgroundStack(edges).maps()


def test_default_slices_are_valid_bands():
    e = np.asarray(DEFAULT_SLICES)
    assert np.all(np.diff(e) > 0) and np.all(np.abs(e * 2 - np.round(e * 2)) < 1e-9)
    assert e[0] <= 20.0 and e[-1] >= 1000.0


def test_noise_in_the_ic_map_biases_the_flat_term_fit_but_not_the_scale_alone():
    rng = np.random.default_rng(6)
    w = efficiency()
    shape = MAP * w * 1500.0 * 0.02
    d = rng.poisson(shape)
    noisy_map = shape * rng.normal(1.0, 0.17, shape.shape)  # an IC map stacked from 3 ScWs
    assert bkg.fit_background(d, noisy_map, w).norm == pytest.approx(1.0, abs=0.01)
    assert bkg.fit_background(d, noisy_map, w, flat=True).norm < 0.6
