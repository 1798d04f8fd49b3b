"""Time systems: IJD/MJD/UTC against known values, OBT unit and time correlation."""
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isdc import time as T
from isdc.time import TimeCorrelation, TimeError

REF = Path(__file__).resolve().parent.parent / "test_data" / "reference"
US = 1e-6 / 86400.0  # one microsecond in days


# --------------------------------------------------------------------------- IJD, MJD, UTC

def test_ijd_zero_is_2000_tt_and_known_utc():
    assert T.ijd_to_mjd(0.0) == 51544.0
    assert T.mjd_to_ijd(51544.0) == 0.0
    assert T.ijd_to_isot(0.0, scale="tt", precision=3) == "2000-01-01T00:00:00.000"
    # TT - UTC = 32.184 s + 32 leap seconds in 2000
    assert T.ijd_to_isot(0.0, precision=3) == "1999-12-31T23:58:55.816"
    assert T.isot_to_ijd("1999-12-31T23:58:55.816") == pytest.approx(0.0, abs=US)
    assert T.tt_minus_utc(0.0) == pytest.approx(64.184, abs=1e-6)


def test_2017_date_has_37_leap_seconds():
    ijd = T.isot_to_ijd("2017-06-01T00:00:00")
    # MJD(UTC) 57905 - 51544 = 6361 days, plus TT - UTC = 32.184 + 37 s
    assert ijd == pytest.approx(6361.0 + 69.184 / 86400.0, abs=US)
    assert T.tt_minus_utc(ijd) == pytest.approx(69.184, abs=1e-6)
    assert T.ijd_to_mjd(ijd, scale="utc") == pytest.approx(57905.0, abs=US)


def test_leap_second_of_2016_12_31_is_counted():
    before = T.isot_to_ijd("2016-12-31T23:59:59")
    inside = T.isot_to_ijd("2016-12-31T23:59:60.5")
    after = T.isot_to_ijd("2017-01-01T00:00:00")
    assert (after - before) * 86400 == pytest.approx(2.0, abs=1e-6)
    assert (inside - before) * 86400 == pytest.approx(1.5, abs=1e-6)
    assert T.ijd_to_isot(inside, precision=1) == "2016-12-31T23:59:60.5"
    assert T.tt_minus_utc(before) == pytest.approx(68.184, abs=1e-6)


def test_vectorised_shapes_and_scalars():
    ijd = np.array([[0.0, 6361.0], [1000.25, 9000.5]])
    iso = T.ijd_to_isot(ijd)
    assert iso.shape == (2, 2)
    back = T.isot_to_ijd(iso)
    assert back.shape == (2, 2)
    np.testing.assert_allclose(back, ijd, rtol=0, atol=US)
    assert isinstance(T.ijd_to_mjd(1.0, "utc"), float)
    assert isinstance(T.tt_minus_utc(1.0), float)
    np.testing.assert_allclose(T.tt_minus_utc(np.array([0.0, 6361.0])), [64.184, 69.184], atol=1e-6)


def test_time_keywords_declare_ijd():
    kw = T.time_keywords()
    assert kw["MJDREF"][0] == 51544.0 and kw["MJDREFI"][0] == 51544 and kw["MJDREFF"][0] == 0.0
    assert kw["TIMESYS"][0] == "TT" and kw["TIMEUNIT"][0] == "d"


def test_bad_times_raise():
    with pytest.raises(TimeError, match="ISO"):
        T.isot_to_ijd("2017-13-45Tnonsense")
    with pytest.raises(TimeError, match="finite"):
        T.ijd_to_isot(float("nan"))


ijds = st.floats(min_value=-700.0, max_value=9700.0, allow_nan=False)  # 1998 .. 2026


@settings(max_examples=200, deadline=None)
@given(ijds)
def test_utc_iso_round_trip_within_a_microsecond(ijd):
    assert abs(T.isot_to_ijd(T.ijd_to_isot(ijd, precision=6)) - ijd) <= US


@settings(max_examples=200, deadline=None)
@given(ijds)
def test_utc_mjd_round_trip_within_a_microsecond(ijd):
    assert abs(T.mjd_to_ijd(T.ijd_to_mjd(ijd, "utc"), "utc") - ijd) <= US


# --------------------------------------------------------------------------- OBT unit and encodings

def test_obt_unit_and_isgri_resolution():
    assert T.OBT_TICK_SECONDS == 2.0**-20
    assert T.obt_to_seconds(2**20) == 1.0
    assert T.ISGRI_TIME_RESOLUTION_TICKS * T.OBT_TICK_SECONDS == pytest.approx(61.035e-6, abs=1e-9)
    assert T.seconds_to_obt(61.03515625e-6) == 64


@pytest.mark.reference
def test_obt_unit_matches_real_integral_orbit_table():
    """A real INTEGRAL aux table: the spacecraft moves |v| * dt between rows, with dt = dOBT * 2**-20 s."""
    from isdc.dal.fitsfile import read_fits

    f = read_fits(REF / "sc_orbit_param_078900560010.fits.gz")
    t = f.table("INTL-ORBI-SCP")
    obt = T.obt_from_words(t["OB_TIME"])
    pos = np.stack([t["XPOS"], t["YPOS"], t["ZPOS"]], axis=1)  # km
    vel = np.stack([t["XVEL"], t["YVEL"], t["ZVEL"]], axis=1)  # km/s
    dt_orbit = np.linalg.norm(np.diff(pos, axis=0), axis=1) / np.linalg.norm(0.5 * (vel[1:] + vel[:-1]), axis=1)
    dt_obt = T.obt_to_seconds(np.diff(obt))
    np.testing.assert_allclose(dt_obt, 8.0)  # one row every 8 s
    np.testing.assert_allclose(dt_orbit, dt_obt, rtol=1e-5)
    h = f.header("INTL-ORBI-SCP")
    start, end = T.parse_obt(h["OBTSTART"]), T.parse_obt(h["OBTEND"])
    assert start == 213629501702144 and T.format_obt(start) == "00000213629501702144"
    assert start <= obt[0] and obt[-1] <= end
    assert T.obt_to_seconds(end - start) == 1956.0  # the ScW lasted 1956 s


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_obt_words_and_text_round_trip(obt):
    w = T.obt_to_words(obt)
    assert w.shape == (4,) and w.dtype == np.uint16
    assert T.obt_from_words(w) == obt
    assert T.parse_obt(T.format_obt(obt)) == obt


@pytest.mark.parametrize("text", ["", "12a", "-5", "1" * 21, "99999999999999999999", "1.5"])
def test_parse_obt_rejects(text):
    with pytest.raises(TimeError):
        T.parse_obt(text)


# --------------------------------------------------------------------------- time correlation

DAY = 86400 * 2**20  # ticks in one nominal day


def test_piecewise_linear_values():
    # the clock runs 1e-5 fast in the first day, nominal in the second
    obt = np.array([1000, 1000 + int(DAY * (1 + 1e-5)), 1000 + int(DAY * (1 + 1e-5)) + DAY])
    tc = TimeCorrelation(obt, [5000.0, 5001.0, 5002.0])
    half = 1000 + int(DAY * (1 + 1e-5)) // 2
    assert tc.obt_to_ijd(half) == pytest.approx(5000.5, abs=US)
    assert tc.obt_to_ijd(obt[1] + DAY // 4) == pytest.approx(5001.25, abs=US)
    np.testing.assert_allclose(tc.obt_to_ijd(obt), [5000.0, 5001.0, 5002.0], rtol=0, atol=US / 100)
    # inverse: one nominal hour after the start is (1 + 1e-5) hours of ticks
    assert tc.ijd_to_obt(5000.0 + 1 / 24) == 1000 + round(3600 * 2**20 * (1 + 1e-5))


def test_linear_table_has_its_drift():
    tc = TimeCorrelation.linear(10**12, 3000.0, 2.0, drift=2e-6, points=3)
    assert tc.ijd_to_obt(3001.0) - 10**12 == round(DAY * (1 + 2e-6))
    assert tc.ijd_range == (3000.0, 3002.0)


@settings(max_examples=100, deadline=None)
@given(
    obt0=st.integers(min_value=0, max_value=2**50),
    ijd0=st.floats(min_value=1000.0, max_value=9000.0),
    drift=st.floats(min_value=-5e-5, max_value=5e-5),
    points=st.integers(min_value=2, max_value=20),
    fracs=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=50),
)
def test_obt_ijd_round_trip_exact_to_a_tick(obt0, ijd0, drift, points, fracs):
    tc = TimeCorrelation.linear(obt0, ijd0, 3.0, drift=drift, points=points)
    lo, hi = tc.obt[0], tc.obt[-1]
    obt = np.clip(lo + np.rint(np.array(fracs) * (hi - lo)).astype(np.int64), lo, hi)
    np.testing.assert_array_equal(tc.ijd_to_obt(tc.obt_to_ijd(obt)), obt)


def test_outside_the_table_raises_with_ranges():
    tc = TimeCorrelation.linear(0, 100.0, 1.0)
    with pytest.raises(TimeError, match=r"outside the table.*IJD 100\.0\.\.101\.0"):
        tc.ijd_to_obt(np.array([100.5, 101.5]))
    with pytest.raises(TimeError, match="outside the table, first -1"):
        tc.obt_to_ijd(-1)
    assert tc.obt_to_ijd(tc.obt[-1]) == 101.0  # ends included


def test_clock_reset_starts_a_segment():
    # clock runs 1 day, is reset to 0 and runs another day; 0.5 d gap without correlation
    obt = [5 * DAY, 6 * DAY, 0, DAY]
    ijd = [200.0, 201.0, 201.5, 202.5]
    tc = TimeCorrelation(obt, ijd)
    assert len(tc.segments) == 2
    assert tc.obt_to_ijd(DAY // 2) == pytest.approx(202.0, abs=US)
    assert tc.obt_to_ijd(5 * DAY + DAY // 2) == pytest.approx(200.5, abs=US)
    np.testing.assert_array_equal(tc.segment_of_ijd([200.2, 202.0]), [0, 1])
    assert tc.ijd_to_obt(202.0) == DAY // 2
    with pytest.raises(TimeError, match="outside the table.*segment 0.*segment 1"):
        tc.ijd_to_obt(201.25)  # during the reset: no correlation


def test_ambiguous_obt_after_reset_needs_segment():
    obt = [0, 2 * DAY, DAY, 3 * DAY]  # reset back to DAY: OBT 1.5 DAY is in both segments
    tc = TimeCorrelation(obt, [0.0, 2.0, 3.0, 5.0])
    with pytest.raises(TimeError, match="more than one clock segment"):
        tc.obt_to_ijd(3 * DAY // 2)
    assert tc.obt_to_ijd(3 * DAY // 2, segment=0) == pytest.approx(1.5, abs=US)
    assert tc.obt_to_ijd(3 * DAY // 2, segment=1) == pytest.approx(3.5, abs=US)
    with pytest.raises(TimeError, match="outside segment 1"):
        tc.obt_to_ijd(0, segment=1)


@pytest.mark.parametrize(
    "obt, ijd, match",
    [
        ([0, DAY, 2 * DAY], [0.0, 1.0, 1.0], "increase strictly"),
        ([0, DAY, DAY], [0.0, 1.0, 2.0], "same OBT"),
        ([0, DAY, 0], [0.0, 1.0, 2.0], "single point"),
        ([0, DAY], [0.0, 1.5], "clock rate"),  # 50 % off: seconds instead of ticks?
        ([0], [0.0], "at least 2"),
        ([0.0, 1.0], [0.0, 1.0], "integer ticks"),
    ],
)
def test_bad_tables_are_rejected(obt, ijd, match):
    with pytest.raises(TimeError, match=match):
        TimeCorrelation(np.array(obt), ijd, name="tc.fits")
