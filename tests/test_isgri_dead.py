"""DEAD level: dead fraction from the HK counters and live time over good time vs the truth."""
import numpy as np
import pytest

from isdc.instruments.isgri import dead, gti
from isdc.instruments.isgri.detector_model import DeadTimeModel, simulate_hk, telemetry_gtis

MODEL = DeadTimeModel()


def hk_scw(duration=2000.0, seed=0, phase=0.5):
    rng = np.random.default_rng(seed)
    # Module rates like a Crab ScW's (accepted ~150/s per module, 2/3 of it background).
    accepted = np.linspace(130.0, 170.0, 8)
    return simulate_hk(duration, phase, accepted, accepted * 0.67, rng), rng


def measured(hk):
    length = np.minimum(8.0, 2000.0 - hk.time)
    return dead.dead_fractions(hk.n_accepted, hk.n_vetoed, hk.n_veto, length, MODEL.tau_event, MODEL.tau_veto)


def test_dead_fraction_per_cycle_is_unbiased():
    hk, _ = hk_scw()
    d = measured(hk)
    assert 0.15 < hk.dead_fraction.mean() < 0.3
    # Unbiased to 1e-4 over the ScW; per cycle within the Poisson scatter of the strobes.
    assert np.mean(d - hk.dead_fraction) == pytest.approx(0.0, abs=2e-4)
    assert np.std(d - hk.dead_fraction) < 0.01
    # A short last cycle is measured over its own length.
    assert d[-1].mean() == pytest.approx(hk.dead_fraction[-1].mean(), abs=0.02)
    # The model's own estimator gives the same numbers for full cycles.
    assert np.allclose(d[:-1], MODEL.measured_dead_fraction(hk.n_triggers, hk.n_veto)[:-1])


@pytest.mark.parametrize("seed", [1, 2])
def test_live_time_within_gti_matches_the_truth_to_a_permille(seed):
    hk, rng = hk_scw(seed=seed, phase=0.95)  # near the belts: veto rate x1.4, dead time higher
    true_gti = telemetry_gtis(2000.0, rng, gaps_per_hour=6.0)
    row = gti.in_gti(hk.time, true_gti)  # HK rows are lost when their cycle starts in a gap
    d = measured(hk)[row]
    lt = dead.live_time(hk.time[row], d, true_gti)
    length = np.minimum(8.0, 2000.0 - hk.time)
    overlap = gti.overlap(true_gti, hk.time, hk.time + length)
    truth = ((1.0 - hk.dead_fraction) * overlap[:, None]).sum(axis=0) / overlap.sum()
    assert lt.ontime == pytest.approx(gti.total(true_gti), rel=1e-12)
    assert np.allclose(lt.live_fraction, truth, rtol=1e-3)
    assert lt.deadc == pytest.approx(truth.mean(), rel=1e-3)
    assert lt.livetime == pytest.approx(lt.ontime * truth.mean(), rel=1e-3)


def test_counter_errors_are_refused():
    ok = np.ones((3, 8))
    with pytest.raises(ValueError, match="negative"):
        dead.dead_fractions(-ok, ok, ok, [8.0, 8.0, 8.0], 1e-4, 6e-6)
    with pytest.raises(ValueError, match="length"):
        dead.dead_fractions(ok, ok, ok, [8.0, 0.0, 8.0], 1e-4, 6e-6)
    with pytest.raises(ValueError, match="shape"):
        dead.dead_fractions(ok[:, :4], ok, ok, [8.0, 8.0, 8.0], 1e-4, 6e-6)
    with pytest.raises(ValueError, match="no good time"):
        dead.live_time([0.0, 8.0], np.zeros((2, 8)), (np.zeros(0), np.zeros(0)))
