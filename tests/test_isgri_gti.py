"""GTI level: interval algebra, attitude / housekeeping / telemetry criteria against the truth."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isdc.instruments.isgri import gti
from isdc.instruments.isgri.detector_model import telemetry_gtis

GRID = np.arange(-10.0, 130.0, 0.05) + 0.025  # probe times for the brute-force truth


def intervals(draw_list):
    s = np.array([a for a, _ in draw_list], dtype=float)
    e = np.array([a + b for a, b in draw_list], dtype=float)
    return s, e


interval_lists = st.lists(st.tuples(st.integers(0, 95).map(float), st.integers(0, 20).map(float)), max_size=8)


def inside(a, t=GRID):
    s, e = gti._arrays(a)
    return np.any((t[:, None] >= s[None, :]) & (t[:, None] < e[None, :]), axis=1)


@settings(max_examples=200, deadline=None)
@given(interval_lists, interval_lists)
def test_interval_algebra_matches_brute_force(la, lb):
    a, b = intervals(la), intervals(lb)
    assert np.array_equal(inside(gti.intersect(a, b)), inside(a) & inside(b))
    assert np.array_equal(inside(gti.union(a, b)), inside(a) | inside(b))
    assert np.array_equal(inside(gti.complement(a, 10.0, 90.0)), ~inside(a) & (GRID >= 10) & (GRID < 90))
    n = gti.normalise(a)
    assert np.all(n[1] > n[0]) and np.all(n[0][1:] > n[1][:-1])  # sorted, disjoint, not touching
    assert gti.total(a) == pytest.approx(inside(a).sum() * 0.05, abs=1e-9)
    assert np.array_equal(gti.in_gti(GRID, n), inside(a))
    # overlap with windows = brute force
    w0, w1 = np.array([0.0, 12.5, 40.0, -5.0]), np.array([10.0, 57.3, 40.0, 200.0])
    brute = [(inside(a) & (GRID >= x0) & (GRID < x1)).sum() * 0.05 for x0, x1 in zip(w0, w1)]
    assert np.allclose(gti.overlap(a, w0, w1), brute, atol=0.051 * 2)


def test_in_gti_of_sorted_event_times_takes_the_fast_path_with_the_same_answer():
    rng = np.random.default_rng(9)
    t = np.sort(np.r_[rng.uniform(-5.0, 105.0, 5000), [10.0, 20.0, 20.0, 30.0]])
    a = gti.normalise((np.array([10.0, 30.0, 60.0]), np.array([20.0, 50.0, 60.5])))
    fast = gti.in_gti(t, a)
    slow = gti.in_gti(t[::-1], a)[::-1]  # unsorted: the general path
    assert np.array_equal(fast, slow) and np.array_equal(fast, inside(a, t))
    assert fast[np.searchsorted(t, 10.0)] and not fast[np.searchsorted(t, 20.0)]


def test_overlap_is_exact_on_interval_ends():
    a = (np.array([1.0, 5.0]), np.array([3.0, 6.5]))
    got = gti.overlap(a, np.array([-np.inf, 2.0, 3.0, 0.0]), np.array([np.inf, 5.5, 5.0, 1.0]))
    assert got.tolist() == [3.5, 1.5, 0.0, 0.0]
    assert gti.drop_short(a, 1.6)[0].tolist() == [1.0]


def test_angular_offset():
    assert gti.angular_offset_deg(83.0, 22.05, 83.0, 22.0) == pytest.approx(0.05, rel=1e-9)
    assert gti.angular_offset_deg(10.0 + 0.05 / np.cos(np.radians(60.0)), 60.0, 10.0, 60.0) == pytest.approx(
        0.05, rel=1e-3)
    assert gti.angular_offset_deg(0.0, -90.0, 180.0, -90.0) == pytest.approx(0.0, abs=1e-9)


def test_attitude_drift_ends_good_time_where_it_crosses_the_threshold():
    t = np.arange(-8.0, 2100.0, 8.0)
    # Stable, then from 1000 s a drift of 1 arcmin per 100 s in declination: 3' at 1300 s.
    dec = 22.0 + np.where(t > 1000.0, (t - 1000.0) / 100.0 / 60.0, 0.0)
    off = gti.angular_offset_deg(np.full(t.size, 83.6), dec, 83.6, 22.0)
    good = gti.attitude_gti(t, off, 3.0 / 60.0, 12.0, 0.0, 2000.0)
    assert good[0].tolist() == [0.0]
    assert good[1][0] == pytest.approx(1300.0, abs=1e-6)
    # With INTEGRAL's 3" rms jitter the crossing moves by ~ jitter / drift rate = 5 s.
    dec_j = dec + np.random.default_rng(0).normal(0, 3 / 3600, t.size)
    off_j = gti.angular_offset_deg(np.full(t.size, 83.6), dec_j, 83.6, 22.0)
    good = gti.attitude_gti(t, off_j, 3.0 / 60.0, 12.0, 0.0, 2000.0)
    assert good[0].tolist() == [0.0] and good[1][0] == pytest.approx(1300.0, abs=15.0)
    # A gap in the attitude samples is bad time.
    keep = (t < 400) | (t > 440)
    good = gti.attitude_gti(t[keep], off[keep], 3.0 / 60.0, 12.0, 0.0, 2000.0)
    assert good[1][0] == 392.0 and good[0][1] == 448.0  # last sample before, first after


def test_housekeeping_limits():
    hk_t = np.arange(0.0, 400.0, 8.0)
    bias = np.full((hk_t.size, 8), -100.0)
    temp = np.zeros((hk_t.size, 8))
    bias[10, 3] = -40.0  # bias dropping on module 3 in the cycle at 80 s
    temp[[30, 31], 6] = 7.0  # module 6 too warm at 240-256 s
    good = gti.hk_gti(hk_t, np.full(hk_t.size, 8.0), bias, temp, 80.0, 5.0, 0.0, 400.0)
    assert good[0].tolist() == [0.0, 88.0, 256.0]
    assert good[1].tolist() == [80.0, 240.0, 400.0]
    # A missing row after a bad one: the bad status holds until the next row.
    keep = np.ones(hk_t.size, bool)
    keep[11] = False
    good = gti.hk_gti(hk_t[keep], np.full(keep.sum(), 8.0), bias[keep], temp[keep], 80.0, 5.0, 0.0, 400.0)
    assert good[0][1] == 96.0
    # Everything nominal: the whole ScW.
    good = gti.hk_gti(hk_t, np.full(hk_t.size, 8.0), np.full((hk_t.size, 8), -100.0), temp * 0, 80.0, 5.0, 0.0, 400.0)
    assert good[0].tolist() == [0.0] and good[1].tolist() == [400.0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_event_stream_gaps_recover_the_true_gtis(seed):
    rng = np.random.default_rng(seed)
    duration = 3600.0
    true = telemetry_gtis(duration, rng, gaps_per_hour=6.0)
    rate = 700.0
    n = rng.poisson(rate * duration)
    t = np.sort(rng.random(n) * duration)
    t = t[gti.in_gti(t, true)]
    got = gti.event_stream_gti(t, 0.0, duration)
    assert len(got[0]) == len(true[0])
    # Boundaries within a few mean event intervals (1.4 ms); ONTIME within 1e-4.
    assert np.max(np.abs(got[0] - true[0])) < 0.02 and np.max(np.abs(got[1] - true[1])) < 0.02
    assert gti.total(got) == pytest.approx(gti.total(true), rel=1e-4)


def test_event_stream_without_gaps_is_all_good_and_low_rates_do_not_make_false_gaps():
    rng = np.random.default_rng(4)
    t = np.sort(rng.random(20000) * 2000.0)  # 10 events/s: mean interval 0.1 s > 0.5 s / 5
    got = gti.event_stream_gti(t, 0.0, 2000.0, min_gap_s=0.5)
    assert got[0].tolist() == [0.0] and got[1].tolist() == [2000.0]
    assert gti.event_stream_gti([], 0.0, 10.0)[0].size == 0
    with pytest.raises(ValueError, match="sorted"):
        gti.event_stream_gti([3.0, 1.0], 0.0, 10.0)
