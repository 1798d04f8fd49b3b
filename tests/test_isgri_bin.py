"""BIN level: shadowgrams per band (overlapping bands, edges), pixel status, efficiency maps."""
import numpy as np
import pytest

from isdc.instruments.isgri import binning
from isdc.instruments.isgri.detector_model import default_module_map
from isgri_scw_synth import background_model, synthetic_scw

BANDS = [[20.0, 40.0], [40.0, 100.0], [25.0, 80.0], [15.0, 1000.0]]


def test_band_slices_split_overlapping_bands():
    edges, member = binning.band_slices(BANDS)
    assert edges.tolist() == [15.0, 20.0, 25.0, 40.0, 80.0, 100.0, 1000.0]
    assert member.astype(int).tolist() == [[0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 0], [0, 0, 1, 1, 0, 0],
                                           [1, 1, 1, 1, 1, 1]]
    with pytest.raises(ValueError, match="E1 < E2"):
        binning.band_slices([[40.0, 20.0]])


def test_shadowgrams_equal_a_brute_force_histogram():
    rng = np.random.default_rng(0)
    n = 200_000
    z, y = rng.integers(0, 128, n), rng.integers(0, 128, n)
    e = rng.choice([15.0, 19.99, 20.0, 25.0, 39.999, 40.0, 99.5, 100.0, 1000.0, 1500.0], n).astype(np.float32)
    e[: n // 2] = rng.uniform(10, 1200, n // 2).astype(np.float32)
    select = rng.random(n) < 0.9
    got = binning.bin_shadowgrams(z.astype(np.uint8), y.astype(np.uint8), e, select, BANDS)
    assert got.shape == (4, 128, 128) and got.dtype == np.float32
    for k, (e1, e2) in enumerate(BANDS):
        ok = select & (e >= e1) & (e < e2)  # E1 <= E < E2
        want = np.zeros((128, 128))
        np.add.at(want, (z[ok], y[ok]), 1)
        assert np.array_equal(got[k], want), (e1, e2)
    assert got[3].sum() == (select & (e >= 15) & (e < 1000)).sum()


def test_dead_and_noisy_pixels_are_switched_off():
    s = synthetic_scw(1000.0, seed=3)
    counts = np.zeros((128, 128))
    np.add.at(counts, (s.z.astype(int), s.y.astype(int)), 1)
    noisy = np.zeros((128, 128), bool)
    noisy[[5, 77], [9, 100]] = True
    st = binning.pixel_status(counts, noisy)
    dead_truth = ~background_model().live_pixels
    assert np.array_equal(st.dead, dead_truth) and st.n_dead == 10
    assert np.array_equal(st.noisy, noisy) and st.n_noisy == 2
    assert np.array_equal(st.status == 0, dead_truth | noisy)
    # Too few counts to call a silent pixel dead: it stays on.
    st_short = binning.pixel_status(counts * 0.01, noisy)
    assert st_short.n_dead == 0


def test_efficiency_map_is_the_module_live_fraction_times_status():
    live = np.linspace(0.70, 0.77, 8)
    status = np.ones((128, 128))
    status[10, 20] = 0.0
    w = binning.efficiency_map(live, status)
    assert w.dtype == np.float32
    assert np.allclose(w, live[default_module_map()] * status)
    assert w[10, 20] == 0.0 and w[0, 64] == pytest.approx(live[1]) and w[127, 0] == pytest.approx(live[6])
    with pytest.raises(ValueError, match="one value per module"):
        binning.efficiency_map(live[:4], status)
