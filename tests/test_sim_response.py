"""ISGRI response: the Crab calibration, folding and event-energy sampling."""
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from isdc.instruments.isgri.response import AREA_SCALE, AliasTable, ChannelSampler, IsgriResponse, ResponseError
from isdc.sim.spectra import CRAB, CutoffPowerLaw, PowerLaw

REF = Path(__file__).resolve().parent.parent / "test_data" / "reference"


@pytest.fixture(scope="module")
def response():
    return IsgriResponse.default()


def test_crab_count_rate_at_25_80_kev(response):
    rate = response.expected_rate(CRAB, 25.0, 80.0)
    print(f"Crab 25-80 keV: {rate:.1f} counts/s (OSA single-ScW images: 169-187)")
    assert 140.0 <= rate <= 210.0
    assert rate == pytest.approx(178.0, abs=9.0)  # the middle of the OSA 169-187 counts/s


def test_crab_count_rate_at_20_40_kev_matches_isgri_in_flight(response):
    # ISGRI measured 158.3 counts/s at 20-40 keV in revolution 1268 (ATel 4869)
    rate = response.expected_rate(CRAB, 20.0, 40.0)
    print(f"Crab 20-40 keV: {rate:.1f} counts/s (ATel 4869: 158.3)")
    assert rate == pytest.approx(158.3, rel=0.05)


def test_grid_and_effective_area(response):
    assert response.matrix.shape == (2466, 256)
    assert response.e_min[0] == 12.5 and response.e_max[-1] == 1029.5
    # ISGRI's area peaks around 50-80 keV at ~1000 cm2 (OSA matrix x AREA_SCALE)
    area = response.area_at(np.array([20.0, 60.0, 300.0]))
    assert 900 < area[1] < 1200 and area[0] < area[1] and area[2] < area[1]


@pytest.mark.reference
def test_simulator_response_is_the_osa11_matrix_scaled():
    real = IsgriResponse.load(REF / "isgri_rmf_osa11_2020.fits.gz")  # variable-length OGIP matrix
    sim = IsgriResponse.default()
    np.testing.assert_array_equal(sim.e_min, real.e_min)
    np.testing.assert_allclose(sim.energ_lo, real.energ_lo, rtol=1e-7)
    np.testing.assert_allclose(sim.matrix, AREA_SCALE * real.matrix, rtol=1e-6, atol=1e-5)
    assert real.expected_rate(CRAB, 25, 80) == pytest.approx(211.2, abs=0.5)


def test_band_rates_add_up_and_split_channels_linearly(response):
    s = CutoffPowerLaw(1.2, 30.0, 2.0)
    whole = response.expected_rate(s, 25.0, 80.0)
    assert response.expected_rate(s, 25.0, 52.25) + response.expected_rate(s, 52.25, 80.0) == pytest.approx(whole, rel=1e-12)
    w = response.band_weights(25.25, 26.0)
    j = np.flatnonzero(w)
    assert list(response.e_min[j]) == [25.0] and w[j][0] == pytest.approx(0.75)
    assert response.channel_rates(s).sum() == pytest.approx(response.expected_rate(s, 1.0, 2000.0), rel=1e-12)
    with pytest.raises(ResponseError, match="e_hi > e_lo"):
        response.band_weights(80.0, 25.0)


def test_sampled_energies_follow_the_folded_spectrum(response):
    rng = np.random.default_rng(7)
    n = 400_000
    e = response.sample_energies(CRAB, n, rng)
    assert e.min() >= 12.5 and e.max() <= 1029.5
    expected = response.channel_rates(CRAB)
    expected = n * expected / expected.sum()
    edges = np.r_[response.e_min, response.e_max[-1]]
    counts = np.histogram(e, edges)[0]
    keep = expected > 20
    chi2 = ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    dof = keep.sum() - 1
    p = stats.chi2.sf(chi2, dof)
    print(f"chi2 = {chi2:.1f} for {dof} channels, p = {p:.3f}")
    assert p > 1e-4
    # within one channel the energies are uniform (half of them in the lower half)
    k = np.searchsorted(edges, e, side="right") - 1
    frac = (e - edges[k]) / (edges[k + 1] - edges[k])
    assert abs((frac < 0.5).mean() - 0.5) < 5 * 0.5 / np.sqrt(n)
    # band fraction of the sample equals expected_rate / total rate
    total = response.channel_rates(CRAB).sum()
    assert ((e >= 25) & (e < 80)).mean() == pytest.approx(response.expected_rate(CRAB, 25, 80) / total, abs=0.003)


def test_channel_sampler_rejects_bad_weights():
    with pytest.raises(ResponseError, match="no counts"):
        ChannelSampler(np.array([1.0, 2.0]), np.array([2.0, 3.0]), np.zeros(2))
    with pytest.raises(ResponseError, match=">= 0"):
        ChannelSampler(np.array([1.0, 2.0]), np.array([2.0, 3.0]), np.array([1.0, -1.0]))


def test_load_names_the_file_on_bad_input(tmp_path):
    bad = tmp_path / "not_a_response.fits"
    bad.write_bytes(b"SIMPLE  =                    T" + b" " * 2850)
    with pytest.raises(ResponseError, match="not_a_response.fits"):
        IsgriResponse.load(bad)
    with pytest.raises(ResponseError, match="does not match"):
        IsgriResponse(np.array([1.0]), np.array([2.0]), np.array([1.0, 2.0]), np.array([2.0, 3.0]), np.ones((1, 3)))


def test_alias_table_draws_in_proportion_to_weights():
    w = np.array([0.0, 1.0, 5.0, 0.5, 0.0, 3.5, 10.0])
    k = AliasTable(w).sample(1_000_000, np.random.default_rng(12))
    counts = np.bincount(k, minlength=w.size)
    assert counts[0] == counts[4] == 0
    keep = w > 0
    expected = k.size * w[keep] / w.sum()
    chi2 = ((counts[keep] - expected) ** 2 / expected).sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4
    with pytest.raises(ResponseError, match="alias table"):
        AliasTable(np.zeros(3))
