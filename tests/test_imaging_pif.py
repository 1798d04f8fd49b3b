"""Pixel illumination fraction: exact area overlap checked against Monte Carlo, symmetries,
field-of-view limits, and the pixel-lattice resampling used by the decoder."""
import numpy as np
import pytest

from isdc.imaging.geometry import CodedMaskGeometry
from isdc.imaging.pif import cos_theta, mask_on_pixel_grid, overlap_fractions, pif, response
from isdc.instruments.isgri.geometry import isgri_geometry


@pytest.fixture(scope="module")
def isgri():
    return isgri_geometry()


def monte_carlo_pif(geometry, tan_y, tan_z, n_per_pixel, rng):
    """PIF by tracing random points of each pixel's active area through the mask."""
    zc, yc = geometry.pixel_centres_mm
    a = geometry.pixel_active_mm
    nz, ny = geometry.shape
    dz = (rng.random((nz, ny, n_per_pixel)) - 0.5) * a + zc[:, None, None]
    dy = (rng.random((nz, ny, n_per_pixel)) - 0.5) * a + yc[None, :, None]
    mz = dz + geometry.mask_distance_mm * tan_z
    my = dy + geometry.mask_distance_mm * tan_y
    ez, ey = geometry.mask_edges_mm
    iz = np.floor((mz - ez[0]) / geometry.mask_element_mm).astype(int)
    iy = np.floor((my - ey[0]) / geometry.mask_element_mm).astype(int)
    inside = (iz >= 0) & (iz < geometry.mask.shape[0]) & (iy >= 0) & (iy < geometry.mask.shape[1])
    t = np.where(inside, geometry.mask[np.clip(iz, 0, geometry.mask.shape[0] - 1),
                                       np.clip(iy, 0, geometry.mask.shape[1] - 1)], 0.0)
    return t.mean(axis=-1) * geometry.real_pixels


def test_overlap_fractions_exact():
    # interval [1, 3] over bins [0, 1.5, 2, 10]: 0.5, 0.5, 1.0 of width 2
    f = overlap_fractions(np.array([2.0, -5.0]), 2.0, np.array([0.0, 1.5, 2.0, 10.0]))
    assert np.allclose(f, [[0.25, 0.25, 0.5], [0, 0, 0]])


def test_on_axis_pif_mean_is_open_fraction(isgri):
    p = pif(isgri, 0.0, 0.0)
    assert p.shape == (134, 130)
    assert np.all(p[~isgri.real_pixels] == 0)
    assert np.all((p >= 0) & (p <= 1))
    assert abs(p[isgri.real_pixels].mean() - isgri.open_fraction) < 0.01  # 0.492 vs 0.500


@pytest.mark.parametrize("tan_y, tan_z", [(0.0, 0.0), (0.0123, -0.0311), (0.14, 0.03), (-0.2, 0.18)])
def test_pif_matches_monte_carlo(isgri, tan_y, tan_z):
    rng = np.random.default_rng(42)
    n = 48
    mc = monte_carlo_pif(isgri, tan_y, tan_z, n, rng)
    exact = pif(isgri, tan_y, tan_z)
    assert exact.sum() > 100
    assert abs(mc.sum() / exact.sum() - 1) < 0.005
    # per pixel: binomial-like scatter of a mean of n points, never more than ~6 sigma
    real = isgri.real_pixels
    sd = np.sqrt(np.maximum(exact * (1 - exact), 1.0 / n) / n)
    assert np.max(np.abs(mc - exact)[real] / sd[real]) < 6.5


def test_beyond_partially_coded_field_is_zero(isgri):
    edge = isgri.partially_coded_half_tan
    assert pif(isgri, 1.001 * edge[1], 0.0).sum() == 0
    assert pif(isgri, 0.0, -1.001 * edge[0]).sum() == 0
    assert pif(isgri, 0.3, 0.3).sum() == 0
    # just inside the edge some pixels still see open elements
    assert pif(isgri, 0.0, 0.97 * edge[0]).sum() > 0


def test_shift_by_one_element_rolls_the_pattern(isgri):
    """Shifting the source by one mask element in tan moves the shadow by one element: in
    the fully coded field the PIF equals that of the mask rolled by one element."""
    step = isgri.mask_element_mm / isgri.mask_distance_mm
    t0 = (0.011, -0.007)
    rolled = CodedMaskGeometry(
        mask=np.roll(isgri.mask, -1, axis=1), mask_element_mm=isgri.mask_element_mm,
        mask_distance_mm=isgri.mask_distance_mm, pixel_pitch_mm=isgri.pixel_pitch_mm,
        pixel_active_mm=isgri.pixel_active_mm, module_pixels=isgri.module_pixels,
        n_modules=isgri.n_modules, gap_pitches=isgri.gap_pitches)
    np.testing.assert_allclose(pif(isgri, t0[0] + step, t0[1]), pif(rolled, *t0), atol=1e-12)
    # and a shift by one basic-pattern period (53 elements) leaves the PIF unchanged where
    # the detector sees the mask from both directions
    period = 53 * step
    a = pif(isgri, -0.5 * period, 0.0)
    b = pif(isgri, 0.5 * period, 0.0)
    ya = isgri.pixel_centres_mm[1] + isgri.mask_distance_mm * (-0.5 * period)
    yb = ya + 53 * isgri.mask_element_mm
    both = (np.abs(ya) < 95 * 11.2 / 2 - 2) & (np.abs(yb) < 95 * 11.2 / 2 - 2)
    assert both.sum() > 20
    np.testing.assert_allclose(a[:, both], b[:, both], atol=1e-12)
    assert a[isgri.real_pixels].sum() > 1000


def test_pif_is_exactly_the_lattice_resampled_mask_on_grid(isgri):
    grid = mask_on_pixel_grid(isgri)
    assert np.all(grid.open <= grid.inside + 1e-12)
    for kz, ky in [(0, 0), (7, -13), (-150, 90), (120, 170)]:
        p = pif(isgri, ky * isgri.pixel_tan, kz * isgri.pixel_tan)
        r = np.arange(134)[:, None] + kz + grid.first[0]
        c = np.arange(130)[None, :] + ky + grid.first[1]
        ok = (r >= 0) & (r < grid.open.shape[0]) & (c >= 0) & (c < grid.open.shape[1])
        ref = np.where(ok, grid.open[np.clip(r, 0, None) % grid.open.shape[0],
                                     np.clip(c, 0, None) % grid.open.shape[1]], 0.0) * isgri.real_pixels
        np.testing.assert_allclose(p, ref, atol=1e-12)


def test_response_and_cos_theta(isgri):
    assert cos_theta(0.0, 0.0) == 1.0
    assert cos_theta(np.tan(np.radians(10.0)), 0.0) == pytest.approx(np.cos(np.radians(10.0)))
    ty, tz = 0.05, -0.08
    assert cos_theta(ty, tz) == pytest.approx(1 / np.sqrt(1 + ty ** 2 + tz ** 2))
    np.testing.assert_allclose(response(isgri, ty, tz), pif(isgri, ty, tz) * cos_theta(ty, tz) / 16384)
    with pytest.raises(ValueError, match="finite"):
        pif(isgri, np.nan, 0.0)
