"""ISGRI detector model: gain inverse, rise time, dead time, gaps, background, SNR calibration."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from isdc.instruments.isgri.detector_model import (
    BACKGROUND_RATE_25_80,
    N_MODULES,
    PHA_MAX,
    RISE_MAX,
    RISE_MIN,
    BackgroundModel,
    DeadTimeModel,
    GainModel,
    NoisyPixelModel,
    RiseTimeModel,
    background_rate_for_snr,
    crab_snr_estimate,
    default_module_map,
    digitise_pha,
    digitise_rise_time,
    simulate_hk,
    telemetry_gtis,
)
from isdc.instruments.isgri.geometry import isgri_module
from isdc.instruments.isgri.response import IsgriResponse
from isdc.sim.spectra import CRAB


@pytest.fixture(scope="module")
def response():
    return IsgriResponse.default()


@pytest.fixture(scope="module")
def background(response):
    return BackgroundModel.default(response)


# --------------------------------------------------------------------------- gain

@settings(max_examples=200, deadline=None)
@given(st.floats(12.0, 1000.0), st.floats(0.0, 127.0), st.integers(0, 7), st.floats(1000.0, 8000.0),
       st.floats(-10.0, 15.0))
def test_gain_inverse_round_trip(energy, rt, module, t, temperature):
    g = GainModel()
    pha = g.pha(energy, rt, module, t, temperature)
    assert g.energy(pha, rt, module, t, temperature) == pytest.approx(energy, rel=1e-12)
    assert g.rise_time(g.raw_rise_time(rt, module), module) == pytest.approx(rt, abs=1e-9)


def test_digitised_pha_recovers_energy_within_half_a_channel():
    g = GainModel()
    rng = np.random.default_rng(3)
    n = 100_000
    e = rng.uniform(15, 900, n)
    rt = rng.uniform(RISE_MIN, RISE_MAX, n)
    m = rng.integers(0, N_MODULES, n)
    t = rng.uniform(2000, 6000, n)
    temp = rng.uniform(-5, 10, n)
    pha = digitise_pha(g.pha(e, rt, m, t, temp))
    raw_rt = digitise_rise_time(g.raw_rise_time(rt, m))
    assert pha.dtype == np.int16 and 0 <= pha.min() and pha.max() <= PHA_MAX
    # COR: rise time back from its raw channel (centre), energy from the PHA channel centre
    rt_back = g.rise_time(raw_rt + 0.5, m)
    e_back = g.energy(pha + 0.5, rt_back, m, t, temp)
    bound = 0.5 * g.gain_at(m, t, temp) / g.charge_collection(rt) + e * 0.3 / (RISE_MAX - 30) * 0.5 / g.rt_gain[m] / 0.7
    assert np.all(np.abs(e_back - e) <= bound + 1e-9)
    assert np.abs(e_back - e).mean() < 0.35  # keV: about half a channel


def test_gain_realism_range_modules_temperature_and_drift():
    g = GainModel()
    # ~0.5 keV per channel: 1 MeV still inside the 11-bit PHA range, 15 keV well above 0
    assert g.pha(1000.0, 25.0, np.arange(8), 3000.0, 10.0).max() < PHA_MAX
    assert g.pha(15.0, 25.0, np.arange(8), 3000.0, -5.0).min() > 20
    p60 = g.pha(60.0, 25.0, np.arange(8), 3000.0, 0.0)
    assert (p60.max() - p60.min()) / p60.mean() > 0.02  # per-module gain differences of a few %
    # warmer: gain (keV/channel) lower by |tcoef| per degree, so more channels for the same energy
    hot = g.pha(60.0, 25.0, 2, 3000.0, 10.0)
    expected = (60.0 - g.offset_at(2, 0, 10.0)) / (g.gain[2] * (1 + 10 * g.gain_tcoef[2]))
    assert hot == pytest.approx(expected, rel=1e-12) and hot > p60[2]
    # a year of drift moves the 60 keV line by gain_drift x 365 (0.7%)
    later = g.pha(60.0, 25.0, 2, 3365.0, 0.0)
    assert (p60[2] - later) / p60[2] == pytest.approx(1 - 1 / (1 + g.gain_drift * 365), rel=0.05)
    # charge loss: long rise times give smaller pulses for the same energy
    assert g.pha(100.0, 110.0, 2, 3000.0, 0.0) < 0.8 * g.pha(100.0, 25.0, 2, 3000.0, 0.0)
    with pytest.raises(ValueError, match="one value per module"):
        GainModel(gain=np.ones(7))


# --------------------------------------------------------------------------- rise time

def test_rise_time_grows_with_energy_and_window_acceptance():
    rt = RiseTimeModel()
    rng = np.random.default_rng(1)
    # photons of 60 keV stop within ~0.2 mm of the cathode in CdTe; 300 keV ones cross the 2 mm
    assert 0.15 < float(rt.attenuation_length_mm(60.0)) < 0.3
    assert float(rt.attenuation_length_mm(300.0)) > 5.0
    means = [rt.sample(np.full(20000, e), rng).mean() for e in (30.0, 100.0, 300.0)]
    assert means[0] < means[1] < means[2]
    a = rt.acceptance(np.array([20.0, 60.0, 500.0]))
    assert 0.95 < a[1] <= 1.0 and a[0] < a[1] and a[2] < a[1]
    # Monte Carlo agrees with the acceptance computed by quadrature
    s = rt.sample(np.full(200_000, 500.0), rng)
    mc = ((s >= RISE_MIN) & (s < RISE_MAX)).mean()
    assert mc == pytest.approx(a[2], abs=4 * np.sqrt(a[2] * (1 - a[2]) / s.size))
    inside = rt.sample_inside(np.full(5000, 20.0), rng)
    assert np.all((inside >= RISE_MIN) & (inside < RISE_MAX))


@pytest.mark.parametrize("energy", [18.0, 60.0, 300.0])
def test_rejected_events_restore_the_full_rise_time_distribution(energy):
    rt = RiseTimeModel()
    rng = np.random.default_rng(2)
    e = np.full(200_000, energy)
    parent, rejected = rt.rejected_events(e, rng)
    assert np.all((rejected < RISE_MIN) | (rejected >= RISE_MAX))
    a = float(rt.acceptance(energy))
    # accepted / (accepted + rejected) equals the acceptance
    frac = e.size / (e.size + parent.size)
    assert frac == pytest.approx(a, abs=4 * np.sqrt(a * (1 - a) / e.size) + 1e-6)
    # the rejected rise times have the distribution of the full model's outside part
    full = rt.sample(np.full(2_000_000, energy), rng)
    out = full[(full < RISE_MIN) | (full >= RISE_MAX)]
    if out.size > 200 and rejected.size > 200:
        assert stats.ks_2samp(out, rejected).pvalue > 1e-3


# --------------------------------------------------------------------------- dead time, HK

def test_dead_time_fraction_and_its_measurement_from_counters(background, response):
    dt = DeadTimeModel()
    crab = response.channel_rates(CRAB).sum() / 2  # detected through the open half of the mask
    per_module = np.full(N_MODULES, (background.total_rate + crab) / N_MODULES)
    bkg_module = np.full(N_MODULES, background.total_rate / N_MODULES)
    d = dt.dead_fraction(per_module + dt.vetoed_rate(bkg_module), dt.veto_rate_at(0.3))
    print(f"dead fraction {d.mean():.3f}")
    assert np.all((0.2 < d) & (d < 0.3))  # ISGRI: 20-30 %
    hk = simulate_hk(2000.0, 0.3, per_module, bkg_module, np.random.default_rng(5))
    assert hk.n_accepted.shape == (250, N_MODULES) and hk.temperature.shape == (250, N_MODULES)
    measured = dt.measured_dead_fraction(hk.n_triggers, hk.n_veto)
    # the DEAD step's estimate from the counters is unbiased: mean over the ScW within 0.3%
    np.testing.assert_allclose(measured.mean(axis=0), hk.dead_fraction.mean(axis=0), rtol=3e-3)
    assert hk.live_time.sum(axis=0) == pytest.approx(2000.0 * (1 - d), rel=1e-9)
    assert -110 < hk.bias.mean() < -90 and -5 < hk.temperature.mean() < 10


def test_veto_and_dead_time_rise_near_the_belts():
    dt = DeadTimeModel()
    assert dt.veto_rate_at(0.01) > 1.25 * dt.veto_rate_at(0.5)
    assert dt.dead_fraction(100.0, dt.veto_rate_at(0.99)) > dt.dead_fraction(100.0, dt.veto_rate_at(0.5))


# --------------------------------------------------------------------------- gaps, noisy pixels

@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(10.0, 5000.0), st.floats(0.0, 60.0))
def test_telemetry_gtis_are_sorted_disjoint_and_inside(seed, duration, rate):
    start, stop = telemetry_gtis(duration, np.random.default_rng(seed), gaps_per_hour=rate)
    assert start.size == stop.size >= 1
    assert np.all(stop > start) and np.all(start[1:] > stop[:-1])
    assert start[0] >= 0 and stop[-1] <= duration


def test_telemetry_gaps_statistics():
    rng = np.random.default_rng(9)
    lost = []
    for _ in range(400):
        s, e = telemetry_gtis(3600.0, rng, gaps_per_hour=2.0, gap_s=(1.0, 300.0))
        lost.append(3600.0 - (e - s).sum())
    # mean gap of a log-uniform 1..300 s is (300 - 1) / ln 300 = 52.4 s; 2 gaps/h; edges clip a little
    assert np.mean(lost) == pytest.approx(2 * 52.4, rel=0.15)
    s, e = telemetry_gtis(100.0, rng, gaps_per_hour=0.0)
    assert list(s) == [0.0] and list(e) == [100.0]


def test_noisy_pixels_fire_in_bursts_of_few_pixels():
    ev = NoisyPixelModel(pixels_per_scw=4, bursts_per_hour=20).sample(3000.0, np.random.default_rng(11))
    assert ev.time.size > 100 and np.all(np.diff(ev.time) >= 0)
    pixels = set(zip(ev.z.tolist(), ev.y.tolist()))
    assert 1 <= len(pixels) <= 12
    inside = np.zeros(ev.time.size, bool)
    for t0, t1, z, y in ev.bursts:
        inside |= (ev.time >= t0) & (ev.time <= t1) & (ev.z == z) & (ev.y == y)
    assert inside.all()
    assert np.median(ev.energy) < 20.0


# --------------------------------------------------------------------------- background

def test_background_spectrum_normalisation_and_lines(background, response):
    assert background.rate(25.0, 80.0) == pytest.approx(BACKGROUND_RATE_25_80, rel=1e-12)
    assert np.all(background.spectrum >= 0)
    # continuum rises to low energies (per keV), the W K-alpha line stands out at 59 keV
    per_kev = background.spectrum / (response.e_max - response.e_min)
    mid = 0.5 * (response.e_min + response.e_max)
    assert per_kev[np.argmin(abs(mid - 30))] > per_kev[np.argmin(abs(mid - 150))] * 5
    line = background.rate(56.5, 62.0) / 5.5
    side = (background.rate(45.0, 50.5) / 5.5 + background.rate(87.0, 92.5) / 5.5) / 2
    assert line > 1.5 * side
    # 511 keV annihilation line above its neighbourhood
    assert background.rate(490, 530) / 40 > 1.2 * background.rate(400, 440) / 40
    print(f"background: {background.total_rate:.0f} counts/s in all channels, "
          f"{background.rate(25, 80):.0f} at 25-80 keV")


def test_background_pixel_map(background):
    m = background.spatial_map
    live = m > 0
    assert m.shape == (128, 128) and m[live].mean() == pytest.approx(1.0, rel=1e-12)
    assert (~live).sum() == len(background.dead_pixels)
    modules = default_module_map()
    # outer edge brighter than the module interiors by ~edge_excess
    # the 2-pixel outer edge is brighter than the inside of its module by edge_excess
    assert m[0:2, 40:56].mean() / m[2:6, 40:56].mean() == pytest.approx(1.30, rel=0.03)
    # pixels next to a module gap (ISGRI geometry: y = 63 | 64, z = 31 | 32) are brighter by border_excess
    assert m[40:56, 63].mean() / m[40:56, 60].mean() == pytest.approx(1.12, rel=0.02)
    assert m[31, 40:56].mean() / m[28, 40:56].mean() == pytest.approx(1.12, rel=0.02)
    assert m[40:56, 31].mean() / m[40:56, 28].mean() == pytest.approx(1.0, rel=0.02)  # no gap there
    assert np.array_equal(modules, isgri_module(*np.mgrid[0:128, 0:128]))
    # module-to-module efficiency differences are visible (module 3 is the lowest)
    eff = np.array([m[(modules == k) & live].mean() for k in range(8)])
    assert np.argmin(eff) == 3 and eff.max() / eff.min() > 1.05


def test_background_sampling_follows_map_and_spectrum(background, response):
    rng = np.random.default_rng(4)
    n = 1_000_000
    z, y, e = background.sample(n, rng)
    counts = np.bincount(z * 128 + y, minlength=128 * 128).reshape(128, 128)
    assert counts[~background.live_pixels].sum() == 0
    expected = n * background.spatial_map / background.spatial_map.sum()
    live = background.live_pixels
    chi2 = ((counts[live] - expected[live]) ** 2 / expected[live]).sum()
    assert stats.chi2.sf(chi2, live.sum() - 1) > 1e-4
    frac = ((e >= 25) & (e < 80)).mean()
    assert frac == pytest.approx(BACKGROUND_RATE_25_80 / background.total_rate, abs=0.003)


# --------------------------------------------------------------------------- the calibration

def test_crab_single_scw_snr_estimate_is_150(background, response):
    """A 2000 s ScW on the Crab: S = R T_eff / 2, SNR = S / sqrt(S + B) must be 150 +- 25."""
    dt = DeadTimeModel()
    crab_all = response.channel_rates(CRAB).sum() / 2
    per_module = (background.total_rate + crab_all) / N_MODULES
    d = float(dt.dead_fraction(per_module + dt.vetoed_rate(background.total_rate / N_MODULES), dt.veto_rate_at(0.3)))
    t_eff = 2000.0 * (1 - d)
    r = response.expected_rate(CRAB, 25.0, 80.0)
    snr = crab_snr_estimate(r, background.rate(25.0, 80.0), t_eff)
    print(f"Crab 2000 s ScW: R = {r:.1f} counts/s, T_eff = {t_eff:.0f} s, "
          f"B = {background.rate(25, 80) * t_eff:.3g} counts, SNR = {snr:.1f}")
    assert 125 <= snr <= 175
    assert snr == pytest.approx(150, abs=5)  # the background was chosen for 150
    # the inverse relation
    assert background_rate_for_snr(r, snr, t_eff) == pytest.approx(background.rate(25, 80), rel=1e-9)
    with pytest.raises(ValueError, match="above what"):
        background_rate_for_snr(1.0, 1000.0, 10.0)
