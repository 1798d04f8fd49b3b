"""Observation plan: revolutions, ScW numbering, dithers, attitude and the Sun constraint."""
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord, get_sun
from hypothesis import given, settings
from hypothesis import strategies as st

from isdc.dal.fitsfile import read_fits
from isdc.ids import ScwId
from isdc.sim import plan as P
from isdc.time import ijd_to_time, isot_to_ijd

REF = Path(__file__).resolve().parent.parent / "test_data" / "reference"


def test_revolutions_match_real_integral_times():
    # ScW 066500280010 started at IJD 3006.1241 (OSA sky image TSTART)
    assert int(P.revolution_of(3006.12412246426)) == 665
    # the orbit table of ScW 078900560010: revolution 789, phase 0.6317 at 2009-04-01T02:11:24 UTC
    t = isot_to_ijd("2009-04-01T02:11:24")
    assert int(P.revolution_of(t)) == 789
    assert float(P.revolution_phase(t)) == pytest.approx(0.6317, abs=0.002)
    assert float(P.revolution_start(1) - P.revolution_start(0)) == pytest.approx(71.8 / 24)


def test_sun_direction_agrees_with_astropy():
    for ijd in (1100.0, 3006.1, 3378.09, 5000.3, 7356.4):
        s = get_sun(ijd_to_time(ijd))
        ra, dec = P.sun_direction(ijd)
        assert float(P.separation(ra, dec, s.ra.deg, s.dec.deg)) < 0.01


def test_galactic_conversion_agrees_with_astropy():
    l = np.array([0.0, 10.0, 120.0, 359.0])
    b = np.array([0.0, 5.0, -30.0, 80.0])
    ra, dec = P.galactic_to_equatorial(l, b)
    c = SkyCoord(l=l, b=b, frame="galactic", unit="deg").fk5
    assert np.all(P.separation(ra, dec, c.ra.deg, c.dec.deg) < 1e-5)
    l2, b2 = P.equatorial_to_galactic(ra, dec)
    assert np.all(P.separation(l2, b2, l, b) < 1e-9)


@pytest.mark.reference
def test_sun_constraint_reproduces_the_real_attitude():
    tab = read_fits(REF / "sc_orbit_param_078900560010.fits.gz").table("INTL-ORBI-SCP")
    t = isot_to_ijd("2009-04-01T02:11:24")  # the table spans 30 min: the Sun moves 0.02 deg
    ra_z, dec_z, pa = P.sun_attitude(tab["RA_SCX"], tab["DEC_SCX"], t)
    assert np.max(P.separation(ra_z, dec_z, tab["RA_SCZ"], tab["DEC_SCZ"])) < 0.5
    assert np.max(np.abs(pa - tab["POSANGLE"])) < 0.5


def test_pointing_attitude_is_sun_constrained_and_orthogonal():
    plans = P.plan_revolution(665, n_pointings=7, seed=3)
    for p in plans:
        x = P.unit_vector(p.ra_x, p.dec_x)
        z = P.unit_vector(p.ra_z, p.dec_z)
        s = P.unit_vector(*P.sun_direction(0.5 * (p.tstart + p.tstop)))
        y = np.cross(z, x)
        assert abs(x @ z) < 1e-9
        assert abs(y @ s) < 1e-6 and z @ s > 0  # the Sun lies in the X-Z plane, on the +Z side
        # POSANGLE is minus the position angle of Z seen from X
        assert p.posangle == pytest.approx(-float(P.position_angle(p.ra_x, p.dec_x, p.ra_z, p.dec_z)), abs=1e-9)
        assert abs(float(P.sun_aspect_angle(p.ra_x, p.dec_x, p.tstart)) - 90) <= P.SUN_ASPECT_LIMIT


def test_scw_numbering_follows_integral():
    plans = P.plan_revolution(665, n_pointings=4, seed=1)
    ids = [p.scw_id.swid for p in plans]
    assert ids == ["066500000021", "066500010010", "066500010021", "066500020010", "066500020021",
                   "066500030010", "066500030021", "066500040010"]
    for p in plans:
        assert p.scw_id == ScwId.parse(str(p.scw_id))
        assert p.is_slew == (p.dither == -1)
    # contiguous, inside the observable part of revolution 665
    for a, b in zip(plans, plans[1:]):
        assert b.tstart == a.tstop
    assert plans[0].tstart >= P.revolution_start(665) + P.BELT_EXIT_PHASE * P.REVOLUTION_PERIOD - 1e-9
    pointings = [p for p in plans if not p.is_slew]
    assert all(1800 <= p.duration_s <= 3600 for p in pointings)
    slews = [p for p in plans if p.is_slew]
    assert all(p.duration_s >= 120 for p in slews)


def test_hexagon_dither_geometry():
    ra, dec = P.dither_positions(83.6332, 22.0145, "hex")
    assert ra.size == 7
    assert ra[0] == pytest.approx(83.6332) and dec[0] == pytest.approx(22.0145)
    np.testing.assert_allclose(P.separation(ra[0], dec[0], ra[1:], dec[1:]), 2.0, atol=1e-9)
    ring = P.separation(ra[1:], dec[1:], np.roll(ra[1:], -1), np.roll(dec[1:], -1))
    np.testing.assert_allclose(ring, 2.0, atol=0.01)  # a regular hexagon: side = radius


@settings(max_examples=40, deadline=None)
@given(st.floats(0.0, 360.0), st.floats(-75.0, 75.0))
def test_square_5x5_dither_geometry(ra0, dec0):
    ra, dec = P.dither_positions(ra0, dec0, "5x5")
    assert ra.size == 25
    steps = P.separation(ra[:-1], dec[:-1], ra[1:], dec[1:])
    np.testing.assert_allclose(steps, 2.0, atol=0.01)  # serpentine: every move is one 2 deg step
    assert P.separation(ra0, dec0, ra, dec).min() < 1e-9  # centre included
    corner = np.degrees(np.arccos(np.cos(np.radians(4.0)) ** 2))  # corners of the 8 x 8 deg square
    np.testing.assert_allclose(P.separation(ra0, dec0, ra, dec).max(), corner, rtol=1e-9)


def test_galactic_plane_scan():
    ra, dec = P.galactic_plane_scan(10.0, 30)
    l, b = P.equatorial_to_galactic(ra, dec)
    assert np.all(np.abs(b) <= 10.0 + 1e-9)
    steps = P.separation(ra[:-1], dec[:-1], ra[1:], dec[1:])
    np.testing.assert_allclose(steps, 6.0, atol=0.5)  # 6 deg along the saw-tooth (reflections shorten)
    assert np.all(np.diff(np.unwrap(np.radians(l))) > 0)
    plans = P.plan_revolution(700, pattern="gps", gps_l_start=300.0, n_pointings=5, exposure=1100.0, check_sun=False)
    assert [p.target for p in plans] == ["GPS"] * 10


def test_plan_is_deterministic_with_seed():
    a = P.plan_revolution(665, n_pointings=10, seed=42)
    b = P.plan_revolution(665, n_pointings=10, seed=42)
    c = P.plan_revolution(665, n_pointings=10, seed=43)
    assert a == b
    assert [p.tstop for p in a] != [p.tstop for p in c]
    t = np.linspace(a[1].tstart, a[1].tstop, 50)
    np.testing.assert_array_equal(a[1].attitude(t).ra_x, b[1].attitude(t).ra_x)


def test_full_revolution_fits_between_the_belts():
    plans = P.plan_revolution(665, pattern="5x5", seed=0)
    n = sum(not p.is_slew for p in plans)
    assert 50 <= n <= 110  # INTEGRAL: ~50-110 pointings per revolution
    assert plans[-1].tstop <= P.revolution_start(665) + P.BELT_ENTRY_PHASE * P.REVOLUTION_PERIOD
    with pytest.raises(P.PlanError, match="belt entry"):
        P.plan_revolution(665, n_pointings=200, seed=0)


def test_attitude_jitter_and_slew_track():
    plans = P.plan_revolution(665, n_pointings=3, seed=5, jitter_arcsec=3.0)
    point, slew = plans[1], plans[2]
    a = point.sample_attitude(8.0)
    off = P.separation(point.ra_x, point.dec_x, a.ra_x, a.dec_x) * 3600
    assert 1.5 < np.sqrt(np.mean(off**2)) / np.sqrt(2) < 6.0 and off.max() < 20
    s = slew.sample_attitude(1.0)
    assert P.separation(s.ra_x[0], s.dec_x[0], slew.start_ra_x, slew.start_dec_x) < 1e-9
    assert P.separation(s.ra_x[-1], s.dec_x[-1], slew.ra_x, slew.dec_x) < 1e-9
    # the slew goes along the great circle: every sample is on the arc (distances add up)
    d_total = P.separation(slew.start_ra_x, slew.start_dec_x, slew.ra_x, slew.dec_x)
    d1 = P.separation(slew.start_ra_x, slew.start_dec_x, s.ra_x, s.dec_x)
    d2 = P.separation(s.ra_x, s.dec_x, slew.ra_x, slew.dec_x)
    np.testing.assert_allclose(d1 + d2, d_total, atol=1e-9)


def test_sun_constraint_refuses_unobservable_targets():
    t = P.revolution_start(665) + 0.1 * P.REVOLUTION_PERIOD
    ra_s, dec_s = P.sun_direction(t)
    with pytest.raises(P.PlanError, match="from the Sun"):
        P.plan_revolution(665, n_pointings=1, target=("near Sun", float(ra_s) + 10, float(dec_s)))
    with pytest.raises(P.PlanError, match="unknown target"):
        P.plan_revolution(665, target="Nowhere")
    with pytest.raises(P.PlanError, match="dither pattern"):
        P.plan_revolution(665, pattern="spiral")
