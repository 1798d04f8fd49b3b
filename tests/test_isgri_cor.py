"""COR level: energies through the gain IC model, rise-time selection, noisy pixels, flags."""
from dataclasses import replace

import numpy as np
import pytest

from isdc.instruments.isgri import cor
from isdc.instruments.isgri.detector_model import GainModel, default_module_map
from isgri_scw_synth import fit_line, synthetic_scw


def run_cor(s, gain=None, dither=True, **kw):
    u = np.random.default_rng(0).random(s.time.size) if dither else None
    return cor.correct_events(s.time, s.pha, s.rise_raw, s.z, s.y, s.hk_time, s.temperature, gain or s.gain,
                              dither=u, **s.cor_kwargs(**kw))


@pytest.fixture(scope="module")
def drifted():
    """A ScW 3000 days after the gain reference time (gain +6%) and 6 degC warmer than usual."""
    return synthetic_scw(2000.0, seed=11, tstart=6000.0, temperature_offset=6.0)


@pytest.fixture(scope="module")
def drifted_cor(drifted):
    return run_cor(drifted)


def test_module_map_is_the_geometry_layout():
    modules = cor.pixel_module_map().reshape(128, 128)
    assert np.array_equal(modules, default_module_map())
    assert modules[0, 0] == 0 and modules[0, 64] == 1 and modules[32, 0] == 2 and modules[127, 127] == 7
    assert np.bincount(cor.pixel_module_map()).tolist() == [2048] * 8


@pytest.mark.parametrize("line", [59.3, 511.0])
def test_background_lines_are_recovered_within_half_a_percent_across_the_gain_drift(drifted, drifted_cor, line):
    good = drifted_cor.select_flag == 0
    half = 6.0 if line < 100 else 40.0
    mu, err = fit_line(drifted_cor.energy[good], line, half)
    # The same fit on the true energies of the same events: the fit's own bias (line
    # blends on a sloped continuum) is not COR's.
    mu_true, _ = fit_line(drifted.energy[good], line, half)
    assert abs(mu / line - 1) < 0.005, (mu, err)
    assert abs(mu - mu_true) < 3 * err + 0.001 * line
    assert err < 0.001 * line


def test_energies_follow_gain_drift_and_temperature_and_fail_without_them(drifted, drifted_cor):
    good = (drifted_cor.select_flag == 0) & (drifted.energy > 30) & (drifted.energy < 300)
    ratio = drifted_cor.energy[good] / drifted.energy[good]
    assert abs(np.median(ratio) - 1) < 0.001
    # The gain model without its time drift (+6% since T_REF) is 6% off ...
    no_drift = run_cor(drifted, gain=replace(drifted.gain, gain_drift=0.0))
    assert abs(np.median(no_drift.energy[good] / drifted.energy[good]) - 1 / 1.06) < 0.005
    # ... and ignoring the HK temperatures (6 degC warmer) is ~1% off.
    cold = run_cor(drifted.__class__(**{**drifted.__dict__, "temperature": drifted.temperature - 6.0}))
    assert np.median(cold.energy[good] / drifted.energy[good]) > 1.009


def test_energy_resolution_is_the_channel_width(drifted, drifted_cor):
    good = (drifted_cor.select_flag == 0) & (drifted.energy > 20) & (drifted.energy < 100)
    err = drifted_cor.energy[good] - drifted.energy[good]
    # Uniform within a ~0.55 keV channel (0.52 keV x 1.06 drift): rms 0.16 keV; the rise-time
    # channel adds a little through the charge-loss correction.
    assert abs(np.mean(err)) < 0.005
    assert 0.14 < np.std(err) < 0.25


def test_dither_removes_aliasing_on_half_kev_channels(drifted, drifted_cor):
    centre = run_cor(drifted, dither=False)
    good = drifted_cor.select_flag == 0

    def roughness(e):
        h, _ = np.histogram(e[good], bins=np.arange(40.0, 50.0, 0.5))
        smooth = np.convolve(h, np.ones(5) / 5, mode="same")[2:-2]
        return float(np.sum((h[2:-2] - smooth) ** 2 / smooth) / smooth.size)  # ~1 for Poisson noise

    assert roughness(drifted_cor.energy) < 2.0
    assert roughness(centre.energy) > 5.0


def test_rise_time_window_flags_exactly_the_events_outside(drifted, drifted_cor):
    outside = (drifted.rise_time < 16) | (drifted.rise_time >= 116)
    flagged = (drifted_cor.select_flag & cor.FLAG_RISE_TIME) != 0
    assert 0.005 < outside.mean() < 0.1
    # Only events within a raw channel of the window edges can be misclassified, both ways.
    assert np.mean(flagged != outside) < 0.001
    # Net: the density of rise times rises towards the window, so a few more events cross
    # inwards than outwards; 1e-4 of the counts.
    assert abs(int(flagged.sum()) - int(outside.sum())) < 2e-4 * outside.size


def test_noisy_pixels_found_and_only_them():
    s = synthetic_scw(2000.0, seed=5, noisy_pixels=6.0)
    res = run_cor(s)
    truth = {(int(z), int(y)) for _, _, z, y in s.bursts}
    assert len(truth) >= 3
    assert set(res.noisy.pixels) == truth
    flagged = (res.select_flag & cor.FLAG_NOISY) != 0
    pix = s.z.astype(int) * 128 + s.y
    assert np.array_equal(flagged, res.noisy.noisy[pix])
    assert flagged[s.noisy].all()


def test_no_noisy_pixel_in_a_quiet_scw_with_a_bright_source_pattern():
    # Half the pixels 1.6x brighter (a 10-Crab source's lit pixels), hot edges: not noisy.
    boost = np.where(np.random.default_rng(3).random((128, 128)) < 0.5, 1.6, 1.0)
    s = synthetic_scw(2000.0, seed=6, pixel_boost=boost)
    res = run_cor(s)
    assert res.noisy.noisy.sum() == 0
    assert (res.select_flag & cor.FLAG_NOISY).sum() == 0


def test_a_bright_gamma_ray_burst_makes_no_pixel_noisy():
    from isdc.imaging.pif import pif
    from isdc.instruments.isgri.geometry import isgri_geometry

    s = synthetic_scw(1000.0, seed=8)
    g = isgri_geometry()
    shadow = g.to_logical(pif(g, 0.03, -0.02)).ravel()
    rng = np.random.default_rng(4)
    n = 40_000  # 8000 counts/s for 5 s: ~10x the background, through the mask
    pix = rng.choice(16384, n, p=shadow / shadow.sum())
    t_grb = s.tstart + (400.0 + rng.exponential(1.5, n).clip(0, 5)) / 86400
    time = np.r_[s.time, t_grb]
    order = np.argsort(time, kind="stable")
    z = np.r_[s.z, (pix // 128).astype(np.uint8)][order]
    y = np.r_[s.y, (pix % 128).astype(np.uint8)][order]
    pha = np.r_[s.pha, np.full(n, 200, np.int16)][order]
    raw = np.r_[s.rise_raw, np.full(n, 60, np.int16)][order]
    res = cor.correct_events(time[order], pha, raw, z, y, s.hk_time, s.temperature, s.gain, **s.cor_kwargs())
    assert res.noisy.noisy.sum() == 0


def test_a_pixel_hot_all_the_time_is_noisy():
    s = synthetic_scw(1000.0, seed=7)
    rng = np.random.default_rng(1)
    n_hot = 3000  # 3 counts/s in one pixel, ~50x its background, all the ScW
    t_hot = np.sort(s.tstart + rng.random(n_hot) * (s.tstop - s.tstart))
    time = np.r_[s.time, t_hot]
    order = np.argsort(time, kind="stable")
    z = np.r_[s.z, np.full(n_hot, 40, np.uint8)][order]
    y = np.r_[s.y, np.full(n_hot, 100, np.uint8)][order]
    pha = np.r_[s.pha, np.full(n_hot, 40, np.int16)][order]
    raw = np.r_[s.rise_raw, np.full(n_hot, 60, np.int16)][order]
    res = cor.correct_events(time[order], pha, raw, z, y, s.hk_time, s.temperature, s.gain, **s.cor_kwargs())
    assert res.noisy.pixels == [(40, 100)]


def test_range_and_other_flags():
    g = GainModel()
    t0 = 3500.0
    time = t0 + np.array([10.0, 20.0, 30.0, 40.0, 50.0, 5000.0]) / 86400
    pha = np.array([100, 0, 2047, 100, 100, 100], dtype=np.int16)
    raw = np.array([60, 60, 60, 60, 2, 60], dtype=np.int16)
    z = np.array([1, 1, 1, 200, 1, 1])
    y = np.array([1, 1, 1, 1, 1, 1])
    hk_t = t0 + np.arange(0, 1000, 8.0) / 86400
    temp = np.zeros((hk_t.size, 8), np.float32)
    res = cor.correct_events(time, pha, raw, z, y, hk_t, temp, g, tstart=t0, tstop=t0 + 1000 / 86400, rise_min=16,
                             rise_max=116, pha_max=2047, noisy_bin_s=10.0, noisy_sigma=8.0)
    assert res.select_flag.tolist() == [0, cor.FLAG_RANGE, cor.FLAG_RANGE, cor.FLAG_OTHER, cor.FLAG_RISE_TIME,
                                        cor.FLAG_OTHER]
    assert res.energy.dtype == np.float32 and res.select_flag.dtype == np.int16
    # Event 0: the exact inverse of the gain model at the channel centre.
    rt = (60 + 0.5 - g.rt_offset[0]) / g.rt_gain[0]
    assert res.energy[0] == pytest.approx(g.energy(100.5, rt, 0, time[0], 0.0), rel=1e-6)


def test_pixel_index_of_event_columns_and_of_any_integers():
    for z, y in ((np.array([0, 127, 200, 5, 3], np.uint8), np.array([0, 127, 3, 130, 64], np.uint8)),
                 (np.array([0, 127, 200, 5, 3]), np.array([0, 127, 3, 130, 64]))):
        idx, valid = cor.pixel_index(z, y)
        assert valid.tolist() == [True, True, False, False, True]
        assert idx.tolist() == [0, 16383, 0, 0, 3 * 128 + 64]
    assert cor.pixel_index(np.array([-1]), np.array([0]))[1].tolist() == [False]


def test_event_temperatures_hold_the_cycle_value_over_missing_rows():
    hk_t = np.array([0.0, 8.0, 24.0, 32.0])  # the cycle at 16 s is missing
    temp = np.arange(32, dtype=float).reshape(4, 8)
    t = np.array([-1.0, 0.0, 7.9, 8.0, 17.0, 23.99, 24.0, 100.0])
    m = np.array([0, 1, 2, 3, 4, 5, 6, 7])
    got = cor.event_temperatures(t, m, hk_t, temp)
    assert got.tolist() == [0.0, 1.0, 2.0, 11.0, 12.0, 13.0, 22.0, 31.0]
    with pytest.raises(ValueError, match="no housekeeping"):
        cor.event_temperatures(t, m, [], np.zeros((0, 8)))
    with pytest.raises(ValueError, match="increase"):
        cor.event_temperatures(t, m, [0.0, 0.0, 8.0, 16.0], temp)


def test_hk_rows_of_sorted_events_take_the_fast_path_with_the_same_answer():
    rng = np.random.default_rng(2)
    hk_t = np.sort(rng.choice(np.arange(0.0, 2000.0, 8.0), 200, replace=False))
    t = np.sort(np.r_[rng.uniform(-10.0, 2010.0, 5000), np.repeat(hk_t[5], 10)])
    fast = cor.hk_cycle_index(t, hk_t)
    slow = cor.hk_cycle_index(t[::-1], hk_t)[::-1]  # unsorted: the general path
    assert np.array_equal(fast, slow)
    assert np.array_equal(fast, np.clip(np.searchsorted(hk_t, t, side="right") - 1, 0, None))


def test_noisy_search_refuses_too_many_cells():
    with pytest.raises(ValueError, match="longer bin"):
        cor.find_noisy_pixels([0.0], [0], 1e6, 0.01, 8.0)
