"""CodedMaskGeometry and the ISGRI instance: layout, gaps, index maps, angular scales."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from isdc.imaging.geometry import CodedMaskGeometry
from isdc.instruments.isgri.geometry import isgri_geometry, isgri_module, isgri_to_gapped


@pytest.fixture(scope="module")
def isgri():
    return isgri_geometry()


def test_isgri_layout(isgri):
    assert isgri.shape == (134, 130)  # [Z, Y] with gaps, as OSA's ISGRI arrays
    assert isgri.logical_shape == (128, 128)
    assert isgri.n_pixels == 16384
    assert isgri.real_pixels.sum() == 16384
    # gaps: 2 pitches after every 32 rows (Z) and after 64 columns (Y)
    dead_rows = np.flatnonzero(~isgri.real_pixels.any(axis=1))
    dead_cols = np.flatnonzero(~isgri.real_pixels.any(axis=0))
    assert dead_rows.tolist() == [32, 33, 66, 67, 100, 101]
    assert dead_cols.tolist() == [64, 65]
    # 8 modules of 32 x 64 pixels
    mods, counts = np.unique(isgri.module_map[isgri.real_pixels], return_counts=True)
    assert mods.tolist() == list(range(8)) and set(counts) == {32 * 64}
    assert np.all(isgri.module_map[~isgri.real_pixels] == -1)


def test_isgri_angular_scales(isgri):
    # 1 detector pixel = 4.94', 1 mask element = 12.0', element/pixel = 2.43 (DESIGN.md)
    assert isgri.pixel_arcmin == pytest.approx(4.937, abs=0.001)
    assert isgri.element_arcmin == pytest.approx(12.02, abs=0.01)
    assert isgri.mask_element_mm / isgri.pixel_pitch_mm == pytest.approx(2.435, abs=0.001)
    # OSA's ISGRI sky image pixel (isgri_sky_ima_066500280010: CD1_2 = -0.0822858131720178,
    # CD1_1 = -0.000269321519656927): the same scale within 1e-5
    osa_scale = np.hypot(0.0822858131720178, 0.000269321519656927)
    assert np.degrees(isgri.pixel_tan) == pytest.approx(osa_scale, rel=1e-5)
    # field of view: fully coded ~8 deg, zero response beyond ~29 deg (full widths)
    fc = 2 * np.degrees(np.arctan(isgri.fully_coded_half_tan))
    pc = 2 * np.degrees(np.arctan(isgri.partially_coded_half_tan))
    assert np.all((fc > 7.9) & (fc < 8.4)) and np.all((pc > 29.0) & (pc < 29.5))


def test_pixel_centres_and_mask_edges(isgri):
    z, y = isgri.pixel_centres_mm
    assert len(z) == 134 and len(y) == 130
    assert np.allclose(np.diff(z), 4.6) and np.allclose(np.diff(y), 4.6)
    assert z[0] == pytest.approx(-z[-1]) and y[0] == pytest.approx(-y[-1])
    ez, ey = isgri.mask_edges_mm
    assert ez[0] == pytest.approx(-95 * 11.2 / 2) and ey[-1] == pytest.approx(95 * 11.2 / 2)


@given(st.integers(0, 127), st.integers(0, 127))
def test_isgri_index_map(z, y):
    r, c = isgri_to_gapped(z, y)
    assert r == z + 2 * (z // 32) and c == y + 2 * (y // 64)
    assert isgri_geometry().real_pixels[r, c]
    assert isgri_module(z, y) == 2 * (z // 32) + y // 64


def test_gapped_logical_round_trip(isgri):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 1000, size=(3, 128, 128))
    gapped = isgri.to_gapped(img, fill=-1)
    assert gapped.shape == (3, 134, 130)
    assert np.all(gapped[:, ~isgri.real_pixels] == -1)
    assert np.array_equal(isgri.to_logical(gapped), img)
    # vectorised index map agrees with to_gapped
    zz, yy = np.meshgrid(np.arange(128), np.arange(128), indexing="ij")
    r, c = isgri.logical_to_gapped(zz, yy)
    assert np.array_equal(gapped[1][r, c], img[1])


def test_bad_indices_and_shapes_raise(isgri):
    with pytest.raises(ValueError, match="Z pixel index"):
        isgri_to_gapped(128, 0)
    with pytest.raises(ValueError, match="Y pixel index"):
        isgri_to_gapped(0, -1)
    with pytest.raises(ValueError, match="trailing shape"):
        isgri.to_gapped(np.zeros((134, 130)))
    with pytest.raises(ValueError, match="trailing shape"):
        isgri.to_logical(np.zeros((128, 128)))


@pytest.mark.parametrize("change, message", [
    (dict(mask=np.full((3, 3), 2.0)), "transmissions"),
    (dict(pixel_active_mm=5.0), "exceeds"),
    (dict(mask_distance_mm=-1.0), "mask_distance_mm"),
    (dict(module_pixels=(0, 4)), "module_pixels"),
    (dict(gap_pitches=(-1, 0)), "gap_pitches"),
    (dict(mask=np.zeros(5)), "2-D"),
])
def test_invalid_geometry_raises(change, message):
    kw = dict(mask=np.ones((5, 5)), mask_element_mm=2.0, mask_distance_mm=100.0, pixel_pitch_mm=1.0,
              pixel_active_mm=0.8, module_pixels=(4, 4), n_modules=(2, 1), gap_pitches=(1, 0))
    kw.update(change)
    with pytest.raises(ValueError, match=message):
        CodedMaskGeometry(**kw)
