"""PIF gradients and the joint Poisson fit of rates, background and positions (synthetic data)."""
import numpy as np
import pytest

from isdc.imaging.decode import fit_sources, model_shadowgram
from isdc.imaging.pif import pif, response
from isdc.imaging.pif_fit import fit_positions, independent_components, pif_gradient, response_gradient
from isdc.instruments.isgri.geometry import isgri_geometry

EXPOSURE = 2000.0
LEVEL = 1.0e6 / 16384  # background counts per pixel of a ~2 ks ScW


@pytest.fixture(scope="module")
def isgri():
    return isgri_geometry()


@pytest.mark.parametrize("ty_px, tz_px", [(0.0, 0.0), (10.37, -5.61), (-97.2, 60.45), (150.3, 0.2)])
def test_pif_gradient_is_the_pif_and_its_derivative(isgri, ty_px, tz_px):
    """The value equals pif() exactly; the derivatives equal central differences (the PIF is
    piecewise bilinear in the shift, so a step small against the kink spacing is exact)."""
    pt = isgri.pixel_tan
    ty, tz = ty_px * pt, tz_px * pt
    p, p_y, p_z = pif_gradient(isgri, ty, tz)
    assert np.array_equal(p, pif(isgri, ty, tz))
    h = 1e-8
    fd_y = (pif(isgri, ty + h, tz) - pif(isgri, ty - h, tz)) / (2 * h)
    fd_z = (pif(isgri, ty, tz + h) - pif(isgri, ty, tz - h)) / (2 * h)
    assert np.abs(p_y).max() > 100 and np.abs(p_z).max() > 100  # the PIF does move with the source
    # a handful of pixels may sit on a kink within h: compare in L1
    assert np.abs(p_y - fd_y).sum() <= 1e-6 * np.abs(p_y).sum() + 1e-9
    assert np.abs(p_z - fd_z).sum() <= 1e-6 * np.abs(p_z).sum() + 1e-9
    r, r_y, r_z = response_gradient(isgri, ty, tz)
    assert np.allclose(r, response(isgri, ty, tz), rtol=0, atol=1e-18)
    fd = (response(isgri, ty, tz + h) - response(isgri, ty, tz - h)) / (2 * h)
    assert np.abs(r_z - fd).sum() <= 1e-6 * np.abs(fd).sum() + 1e-15


def test_gradient_beyond_the_field_is_zero(isgri):
    p, p_y, p_z = pif_gradient(isgri, 0.6, 0.0)
    assert not p.any() and not p_y.any() and not p_z.any()


def test_independent_components_drops_dependent_maps(isgri):
    w = isgri.real_pixels.astype(float)
    ramp = w * np.linspace(0.9, 1.1, isgri.shape[1])[None, :]
    assert independent_components([w, 2 * w, ramp, w + ramp, np.zeros_like(w)]) == [0, 2]


def test_fixed_positions_reproduce_fit_sources(isgri):
    """With every position fixed the fit is decode.fit_sources (same likelihood)."""
    rng = np.random.default_rng(2)
    w = isgri.real_pixels * rng.uniform(0.7, 0.8, isgri.shape)
    pt = isgri.pixel_tan
    pos = [(3.2 * pt, -7.7 * pt), (-40.1 * pt, 22.6 * pt)]
    resp = np.stack([response(isgri, *p) for p in pos])
    d = rng.poisson(LEVEL * w + model_shadowgram(resp, [15.0, 4.0], EXPOSURE, w)).astype(float)
    ref = fit_sources(d, w, resp, w, EXPOSURE)
    got = fit_positions(d, w, isgri, [p[0] for p in pos], [p[1] for p in pos], False, w, EXPOSURE)
    assert np.allclose(got.rates, ref.rates, rtol=1e-6)
    assert np.allclose(got.errors, ref.errors, rtol=1e-6)
    assert np.allclose(got.background, ref.background, rtol=1e-8)
    assert got.converged


def test_positions_rates_and_errors_over_realisations(isgri):
    """A 20-sigma source started 0.4/0.3 pixel off: fitted positions scatter as their Fisher
    errors say (pulls std 0.75-1.25 per axis over 40 realisations), without bias; rates unbiased."""
    rng = np.random.default_rng(8)
    w = isgri.real_pixels * 0.78
    pt = isgri.pixel_tan
    rate = 25.0
    pulls, rate_pulls, offsets = [], [], []
    for _ in range(40):
        ty, tz = rng.uniform(-40, 40, 2) * pt
        mu = LEVEL * w + model_shadowgram(response(isgri, ty, tz), rate, EXPOSURE, w)
        d = rng.poisson(mu).astype(float)
        f = fit_positions(d, w, isgri, [ty + 0.4 * pt], [tz - 0.3 * pt], [True], w, EXPOSURE)
        assert f.converged
        err = np.sqrt(np.diag(f.position_covariance[0]))
        pulls.append(((f.tan_y[0] - ty) / err[0], (f.tan_z[0] - tz) / err[1]))
        offsets.append(((f.tan_y[0] - ty) / pt, (f.tan_z[0] - tz) / pt))
        rate_pulls.append((f.rates[0] - rate) / f.errors[0])
    pulls = np.array(pulls)
    assert np.all((pulls.std(axis=0) > 0.75) & (pulls.std(axis=0) < 1.25)), pulls.std(axis=0)
    assert np.all(np.abs(pulls.mean(axis=0)) < 0.45)
    assert np.abs(np.array(offsets)).max() < 0.6  # pixels: far better than the 0.4 px start
    assert abs(np.mean(rate_pulls)) < 0.45 and 0.7 < np.std(rate_pulls) < 1.3


def test_two_free_sources_and_background_components(isgri):
    """Two overlapping-shadow sources and a background with a gradient: positions to < 0.15 px
    (noise-free data converge onto the truth), rates to 1e-3."""
    w = isgri.real_pixels * 0.8
    pt = isgri.pixel_tan
    grad = w * np.linspace(0.8, 1.2, isgri.shape[0])[:, None]
    truth = [(5.3 * pt, 2.2 * pt, 40.0), (30.6 * pt, -12.45 * pt, 12.0)]
    mu = 0.7 * LEVEL * grad + 0.3 * LEVEL * w
    for ty, tz, r in truth:
        mu += model_shadowgram(response(isgri, ty, tz), r, EXPOSURE, w)
    f = fit_positions(mu, w, isgri, [t[0] + 0.5 * pt for t in truth], [t[1] - 0.5 * pt for t in truth], True,
                      np.stack([grad, w]), EXPOSURE, max_iter=80, tol=1e-4)
    assert np.allclose(f.tan_y / pt, [t[0] / pt for t in truth], atol=0.01)
    assert np.allclose(f.tan_z / pt, [t[1] / pt for t in truth], atol=0.01)
    assert np.allclose(f.rates, [t[2] for t in truth], rtol=1e-3)
    assert np.allclose(f.background, [0.7 * LEVEL, 0.3 * LEVEL], rtol=1e-3)
    model = f.source_model + f.background_model
    assert np.abs(model - mu).max() < 1e-3 * mu.max()


def test_position_stays_within_max_offset(isgri):
    """Pure background: a 'source' has nothing to lock on to and stops at the offset limit."""
    rng = np.random.default_rng(1)
    w = isgri.real_pixels.astype(float)
    d = rng.poisson(LEVEL * w).astype(float)
    pt = isgri.pixel_tan
    f = fit_positions(d, w, isgri, [0.0], [0.0], [True], w, EXPOSURE, max_offset_tan=1.0 * pt)
    assert abs(f.tan_y[0]) <= 1.0 * pt + 1e-15 and abs(f.tan_z[0]) <= 1.0 * pt + 1e-15


def test_bad_inputs(isgri):
    w = isgri.real_pixels.astype(float)
    with pytest.raises(ValueError, match="detector"):
        fit_positions(np.zeros((3, 3)), w, isgri, [0.0], [0.0], [True], w, EXPOSURE)
    with pytest.raises(ValueError, match="exposure"):
        fit_positions(w, w, isgri, [0.0], [0.0], [True], w, 0.0)
    with pytest.raises(ValueError, match="degenerate"):
        fit_positions(w * 50, w, isgri, [0.0, 0.0], [0.0, 0.0], [False, False], w, EXPOSURE)
    with pytest.raises(ValueError, match="nothing to fit"):
        fit_positions(w, w, isgri, [], [], [], None, EXPOSURE)
