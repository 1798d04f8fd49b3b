"""IBAS-like burst trigger: rate excess on several time scales, image confirmation, localisation."""
from __future__ import annotations

import numpy as np
import pytest

from isdc.imaging.decode import Decoder
from isdc.imaging.pif import response
from isdc.instruments.isgri.geometry import isgri_geometry
from isdc.instruments.isgri.ibas import TriggerParams, localise_burst, poisson_sigma, rate_candidates

GEOM = isgri_geometry()
BKG_RATE = 1000.0  # counts/s over the detector in the trigger band


@pytest.fixture(scope="module")
def decoder():
    return Decoder(GEOM)


def _background(rng, t0, t1, rate=BKG_RATE):
    n = rng.poisson(rate * (t1 - t0))
    t = rng.uniform(t0, t1, n)
    real = np.argwhere(GEOM.real_pixels)
    pix = real[rng.integers(0, len(real), n)]
    return t, pix[:, 0], pix[:, 1]


def _burst(rng, t_peak, counts_rate, duration, tan_y, tan_z):
    """A FRED-like burst: `counts_rate` = R (open-mask whole-detector rate) at its peak."""
    resp = response(GEOM, tan_y, tan_z)  # expected fraction per pixel of R
    total = counts_rate * duration * resp.sum()
    n = rng.poisson(total)
    t = t_peak + rng.exponential(duration / 2.0, n) - duration * 0.1
    p = resp.ravel() / resp.sum()
    k = rng.choice(p.size, n, p=p)
    return t, k // GEOM.shape[1], k % GEOM.shape[1]


def test_poisson_sigma_matches_gaussian_for_large_counts_and_exact_tail_for_small():
    assert poisson_sigma(10000 + 500, 10000.0) == pytest.approx(5.0, abs=0.1)
    # P(N >= 5 | mu = 0.1) = 7.6e-8 -> 5.25 sigma
    assert poisson_sigma(5, 0.1) == pytest.approx(5.25, abs=0.02)
    assert poisson_sigma(3, 10.0) == 0.0


def test_no_false_trigger_in_20_hours_of_burst_free_counts():
    """20 h at 1000 counts/s in 25 ms bins: no window of any time scale above 6.5 sigma."""
    rng = np.random.default_rng(1)
    params = TriggerParams()
    hours = 20
    total = 0
    for h in range(hours):
        t = rng.uniform(0, 3600, rng.poisson(BKG_RATE * 3600))
        total += len(rate_candidates(t, 0.0, 3600.0, params))
    assert total == 0


def test_bright_burst_triggers_and_is_localised_within_its_error_radius(decoder):
    rng = np.random.default_rng(2)
    tb, zb, yb = _background(rng, 0.0, 200.0)
    ty, tz = np.tan(np.radians(3.0)), np.tan(np.radians(-2.0))
    tg, zg, yg = _burst(rng, 120.0, 3000.0, 4.0, ty, tz)
    t = np.concatenate([tb, tg])
    z = np.concatenate([zb, zg])
    y = np.concatenate([yb, yg])
    cands = rate_candidates(t, 0.0, 200.0)
    assert len(cands) == 1
    c = cands[0]
    assert 115 < c.t_start < 125 and c.sigma > 10
    loc = localise_burst(decoder, t, z, y, GEOM.real_pixels.astype(float), c)
    assert loc.level == "alert" and loc.significance > 8
    err = np.degrees(np.hypot(loc.tan_y - ty, loc.tan_z - tz)) * 60
    assert err < loc.error_radius_arcmin and loc.error_radius_arcmin < 3.0


def test_noisy_pixel_burst_raises_the_rate_but_does_not_image(decoder):
    rng = np.random.default_rng(3)
    tb, zb, yb = _background(rng, 0.0, 200.0)
    n = 600  # a pixel firing 600 counts in 1 s
    tn = rng.uniform(100.0, 101.0, n)
    real = np.argwhere(GEOM.real_pixels)[5000]
    t = np.concatenate([tb, tn])
    z = np.concatenate([zb, np.full(n, real[0])])
    y = np.concatenate([yb, np.full(n, real[1])])
    cands = rate_candidates(t, 0.0, 200.0)
    assert len(cands) == 1
    loc = localise_burst(decoder, t, z, y, GEOM.real_pixels.astype(float), cands[0])
    assert loc.level == "none" and loc.significance < 6.5


def test_bad_time_is_not_tested():
    rng = np.random.default_rng(4)
    t = rng.uniform(0, 100, rng.poisson(BKG_RATE * 100))
    t = np.concatenate([t, rng.uniform(50.0, 50.5, 2000)])  # a burst inside a gap must not count
    good = (np.array([0.0, 52.0]), np.array([49.0, 100.0]))
    assert rate_candidates(t, 0.0, 100.0, good=good) == []
    assert len(rate_candidates(t, 0.0, 100.0)) == 1


def test_streaming_scan_only_tests_new_windows():
    rng = np.random.default_rng(5)
    t = np.concatenate([rng.uniform(0, 100, rng.poisson(BKG_RATE * 100)), rng.uniform(60.0, 60.5, 2000)])
    assert len(rate_candidates(t, 0.0, 100.0, since=None)) == 1
    assert rate_candidates(t, 0.0, 100.0, since=80.0) == []
