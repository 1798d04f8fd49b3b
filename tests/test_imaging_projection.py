"""Sky projection: attitude, instrument frame <-> RA/Dec, sky-image grid and its TAN WCS."""
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from isdc.imaging.decode import Decoder
from isdc.imaging.projection import (
    Attitude, SkyGrid, pixel_to_radec, radec_to_pixel, radec_to_tan, sky_wcs, tan_to_radec)
from isdc.instruments.isgri.geometry import isgri_geometry

REFERENCE = Path(__file__).resolve().parents[1] / "test_data" / "reference"
ARCMIN = 1.0 / 60.0


@pytest.fixture(scope="module")
def grid():
    return Decoder(isgri_geometry(), sky_shape=(400, 400)).grid


def angular_distance(ra1, dec1, ra2, dec2):
    from isdc.imaging.projection import radec_to_unit
    d = np.sum(radec_to_unit(ra1, dec1) * radec_to_unit(ra2, dec2), axis=-1)
    c = np.cross(radec_to_unit(ra1, dec1), radec_to_unit(ra2, dec2))
    return np.degrees(np.arctan2(np.linalg.norm(c, axis=-1), d))


attitudes = st.builds(
    Attitude.from_posangle,
    st.floats(0, 360, exclude_max=True), st.floats(-89, 89), st.floats(-180, 180))


@settings(max_examples=60, deadline=None)
@given(attitudes, st.floats(-14, 14), st.floats(-14, 14))
def test_round_trip_radec_tan_pixel_wcs(grid, att, oy, oz):
    """RA/Dec -> (tan_y, tan_z) -> sky pixel -> WCS -> RA/Dec closes within 0.01'."""
    ra, dec = tan_to_radec(att, np.tan(np.radians(oy)), np.tan(np.radians(oz)))
    row, col = radec_to_pixel(grid, att, ra, dec)
    ra2, dec2 = sky_wcs(grid, att).wcs_pix2world(col, row, 0)
    assert angular_distance(ra, dec, ra2, dec2) < 0.01 * ARCMIN
    ty, tz = radec_to_tan(att, ra, dec)
    assert ty == pytest.approx(np.tan(np.radians(oy)), abs=1e-12)
    assert tz == pytest.approx(np.tan(np.radians(oz)), abs=1e-12)
    ra3, dec3 = pixel_to_radec(grid, att, row, col)
    assert angular_distance(ra, dec, ra3, dec3) < 1e-6 * ARCMIN


@settings(max_examples=40, deadline=None)
@given(attitudes)
def test_attitude_frame_is_right_handed_and_posangle_round_trips(att):
    m = att.matrix
    np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(m) == pytest.approx(1.0)
    again = Attitude(att.ra_x, att.dec_x, att.ra_z, att.dec_z)
    assert Attitude.from_posangle(att.ra_x, att.dec_x, again.posangle).matrix == pytest.approx(m, abs=1e-9)


def test_position_angle_convention(grid):
    """POSANGLE 0: Z axis to the north (Y = Z x X to the east); a source 2 deg north lands
    at +Z (rows above the pointing), a source 2 deg east at +Y, i.e. at lower column
    numbers: north up, east left, the usual sky orientation.  POSANGLE 90: Z to the west,
    Y to the north: the northern source now lands at lower columns on the pointing's row."""
    ra0, dec0 = 120.0, 30.0
    r0, c0 = grid.on_axis
    step = np.tan(np.radians(2.0)) / grid.scale
    north = (ra0, dec0 + 2.0)
    att0 = Attitude.from_posangle(ra0, dec0, 0.0)
    assert att0.posangle == pytest.approx(0.0, abs=1e-12)
    row, col = radec_to_pixel(grid, att0, *north)
    assert (row, col) == pytest.approx((r0 + step, c0), abs=1e-9)
    east = tan_to_radec(att0, np.tan(np.radians(2.0)), 0.0)
    assert east[0] > ra0  # +Y is east with Z to the north
    row, col = radec_to_pixel(grid, att0, *east)
    assert (row, col) == pytest.approx((r0, c0 - step), abs=1e-9)
    att90 = Attitude.from_posangle(ra0, dec0, 90.0)
    local_east = np.array([-np.sin(np.radians(ra0)), np.cos(np.radians(ra0)), 0.0])
    assert att90.matrix[2] @ local_east == pytest.approx(-1.0)  # Z points west
    row, col = radec_to_pixel(grid, att90, *north)
    assert (row, col) == pytest.approx((r0, c0 - step), abs=1e-9)
    # the WCS agrees: with POSANGLE 0 a step to a higher column goes west (smaller RA)
    w = sky_wcs(grid, att0)
    ra_a, _ = w.wcs_pix2world(c0, r0, 0)
    ra_b, _ = w.wcs_pix2world(c0 + 10, r0, 0)
    assert ra_b < ra_a
    assert np.linalg.det(w.wcs.cd) < 0  # sky handedness: images are not mirrored


def test_wcs_like_osa_crab_image(grid):
    """OSA's ISGRI sky image of ScW 066500280010 (test_data/reference) has CRVAL (87.83467,
    25.83135) and CD = [[-0.000269321519656927, -0.0822858131720178],
    [-0.0822858131720178, 0.000269321519656927]]: a rotated TAN with the same scale.  The
    attitude with the Z axis to the west (POSANGLE 89.8125 deg) gives the same CD matrix."""
    osa_cd = np.array([[-0.000269321519656927, -0.0822858131720178],
                       [-0.0822858131720178, 0.000269321519656927]])
    att = Attitude.from_posangle(87.8346710205078, 25.8313484191895, 89.8125)
    w = sky_wcs(grid, att)
    assert list(w.wcs.ctype) == ["RA---TAN", "DEC--TAN"]
    assert w.wcs.crpix == pytest.approx([201.0, 201.0])
    np.testing.assert_allclose(w.wcs.cd, osa_cd, atol=2e-6)
    # the Crab: where OSA's image shows it, ours puts it within 0.01 pixel of the same offset
    from astropy.wcs import WCS
    osa = WCS(naxis=2)
    osa.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    osa.wcs.crval = [87.8346710205078, 25.8313484191895]
    osa.wcs.crpix = [200.5, 200.5]
    osa.wcs.cd = osa_cd
    osa.wcs.set()
    crab = (83.6331, 22.0145)
    x_osa, y_osa = osa.wcs_world2pix(*crab, 0)
    row, col = radec_to_pixel(grid, att, *crab)
    assert (col - grid.on_axis[1], row - grid.on_axis[0]) == pytest.approx(
        (x_osa - 199.5, y_osa - 199.5), abs=0.05)


@pytest.mark.reference
def test_posangle_convention_against_aux_attitude_file():
    """INTL-ORBI-SCP of ScW 078900560010: POSANGLE, RA/DEC_SCX and RA/DEC_SCZ agree with
    POSANGLE = -(position angle of Z, north through east)."""
    from isdc.dal.fitsfile import read_fits
    f = read_fits(REFERENCE / "sc_orbit_param_078900560010.fits.gz")
    t = f.table("INTL-ORBI-SCP").columns
    for i in range(0, len(t["POSANGLE"]), 10):
        att = Attitude.from_posangle(t["RA_SCX"][i], t["DEC_SCX"][i], t["POSANGLE"][i])
        # the file's angles carry float32 precision (~0.1")
        assert angular_distance(att.ra_z, att.dec_z, t["RA_SCZ"][i], t["DEC_SCZ"][i]) < 0.01 * ARCMIN
        direct = Attitude(t["RA_SCX"][i], t["DEC_SCX"][i], t["RA_SCZ"][i], t["DEC_SCZ"][i])
        assert direct.posangle == pytest.approx(t["POSANGLE"][i], abs=1e-3)
        # the opposite sign convention would put Z 2 x 83 deg away
        wrong = Attitude.from_posangle(t["RA_SCX"][i], t["DEC_SCX"][i], -t["POSANGLE"][i])
        assert angular_distance(wrong.ra_z, wrong.dec_z, t["RA_SCZ"][i], t["DEC_SCZ"][i]) > 100


def test_behind_and_invalid():
    att = Attitude.from_posangle(10.0, 20.0, 0.0)
    ty, tz = radec_to_tan(att, 190.0, -20.0)  # the antipode
    assert np.isnan(ty) and np.isnan(tz)
    with pytest.raises(ValueError, match="not perpendicular"):
        Attitude(10.0, 20.0, 10.0, 25.0)
    with pytest.raises(ValueError, match="pole"):
        Attitude.from_posangle(0.0, 90.0, 0.0)
    with pytest.raises(ValueError, match="finite"):
        Attitude(np.nan, 0.0, 0.0, 90.0)


def test_sky_grid_pixel_tan_inverse():
    g = SkyGrid(shape=(11, 9), on_axis=(5.0, 4.0), scale=0.01)
    ty, tz = g.pixel_to_tan(7.0, 1.0)
    assert (ty, tz) == pytest.approx((0.03, 0.02))
    assert g.tan_to_pixel(ty, tz) == pytest.approx((7.0, 1.0))


def test_end_to_end_sky_positions_through_mask_and_wcs():
    """Sources at known RA/Dec -> PIF shadowgram -> decode -> peak pixel -> WCS lands on
    the sources (within 1' for 30-sigma sources; the sky pixel is 4.94')."""
    from isdc.imaging.decode import model_shadowgram
    from isdc.imaging.pif import response
    geom = isgri_geometry()
    dec = Decoder(geom, sky_shape=(400, 400))
    att = Attitude.from_posangle(87.8347, 25.8313, 89.8125)
    sources = [(83.6331, 22.0145, 60.0), (84.7270, 26.3160, 25.0)]  # Crab, A0535+26 (deg, c/s)
    w = geom.real_pixels.astype(float)
    mu = 61.0 * w
    for ra, dec_, rate in sources:
        mu = mu + model_shadowgram(response(geom, *radec_to_tan(att, ra, dec_)), rate, 2000.0, w)
    img = dec.decode(np.random.default_rng(0).poisson(mu).astype(float), w, 2000.0)
    wcs = sky_wcs(dec.grid, att)
    for ra, dec_, _ in sources:
        row, col = (int(round(float(v))) for v in radec_to_pixel(dec.grid, att, ra, dec_))
        win = img.significance[row - 3:row + 4, col - 3:col + 4]
        r, c = np.unravel_index(np.argmax(win), win.shape)
        r, c = row - 3 + r, col - 3 + c
        patch = np.clip(img.intensity[r - 2:r + 3, c - 2:c + 3], 0, None)
        yy, xx = np.mgrid[-2:3, -2:3]
        rr, cc = r + (patch * yy).sum() / patch.sum(), c + (patch * xx).sum() / patch.sum()
        ra_f, dec_f = wcs.wcs_pix2world(cc, rr, 0)
        assert img.significance[r, c] > 20
        assert angular_distance(ra, dec_, ra_f, dec_f) < 1.0 * ARCMIN
