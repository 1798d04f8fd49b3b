"""Photon spectra of the simulator: integrals against analytic results, mCrab units."""
import numpy as np
import pytest
from scipy.integrate import quad

from isdc.sim.spectra import CRAB, KEV_TO_ERG, Band, CutoffPowerLaw, PowerLaw, mcrab, with_energy_flux, with_mcrab


def test_power_law_integral_is_analytic_and_matches_quadrature():
    pl = PowerLaw(2.1, 9.5)
    lo, hi = np.array([20.0, 40.0, 100.0]), np.array([40.0, 100.0, 1000.0])
    exact = 9.5 * (hi**-1.1 - lo**-1.1) / -1.1
    np.testing.assert_allclose(pl.photon_flux(lo, hi), exact, rtol=1e-12)
    # the generic Gauss-Legendre integral of the base class agrees on narrow bins
    e = np.geomspace(15, 1000, 300)
    generic = super(PowerLaw, pl).photon_flux(e[:-1], e[1:])
    np.testing.assert_allclose(generic, pl.photon_flux(e[:-1], e[1:]), rtol=1e-9)


def test_cutoff_power_law_and_band_integrals_against_quad():
    for s in (CutoffPowerLaw(1.6, 150.0, 3.0), Band(-1.0, -2.3, 300.0, 0.01)):
        for lo, hi in ((20.0, 21.0), (150.0, 200.0), (400.0, 600.0)):
            ref = quad(lambda e: float(s(e)), lo, hi, epsabs=0, epsrel=1e-11)[0]
            assert float(s.photon_flux(np.array([lo]), np.array([hi]))[0]) == pytest.approx(ref, rel=1e-7)
        ref = quad(lambda e: float(s(e)) * e, 20, 200, epsrel=1e-11, limit=200)[0] * KEV_TO_ERG
        assert s.energy_flux(20, 200) == pytest.approx(ref, rel=1e-7)


def test_band_function_is_continuous_and_peaks_at_epeak():
    b = Band(-0.8, -2.5, 250.0, 1.0)
    ebreak = (b.alpha - b.beta) * b.epeak / (2 + b.alpha)
    assert float(b(ebreak * (1 - 1e-9))) == pytest.approx(float(b(ebreak * (1 + 1e-9))), rel=1e-6)
    e = np.geomspace(10, 5000, 20001)
    assert e[np.argmax(e * e * b(e))] == pytest.approx(250.0, rel=2e-3)  # E^2 N(E) peaks at epeak
    with pytest.raises(ValueError, match="alpha > -2 > beta"):
        Band(-2.5, -2.2, 300.0)


def test_crab_reproduces_ibis_catalogue_mcrab_energy_fluxes():
    # Bird et al. 2016: 1 mCrab = 7.57e-12 (20-40 keV) and 9.42e-12 (40-100 keV) erg/cm2/s
    assert CRAB.energy_flux(20, 40) == pytest.approx(7.57e-9, rel=0.01)
    assert CRAB.energy_flux(40, 100) == pytest.approx(9.42e-9, rel=0.03)
    # analytic energy flux of a power law equals the numerical one
    assert CRAB.energy_flux(20, 40) == pytest.approx(super(PowerLaw, CRAB).energy_flux(20, 40), rel=1e-9)


def test_mcrab_and_energy_flux_normalisations_round_trip():
    shape = CutoffPowerLaw(1.0, 20.0)
    s = with_mcrab(shape, 37.0)
    assert mcrab(s) == pytest.approx(37.0, rel=1e-12)
    s2 = with_mcrab(shape, 5.0, band=(40.0, 100.0))
    assert mcrab(s2, (40.0, 100.0)) == pytest.approx(5.0, rel=1e-12)
    s3 = with_energy_flux(PowerLaw(2.0), 1e-10, 20, 100)
    assert s3.energy_flux(20, 100) == pytest.approx(1e-10, rel=1e-12)
    # a Crab-shaped source of 1000 mCrab is the Crab
    assert with_mcrab(PowerLaw(2.1), 1000.0).norm == pytest.approx(CRAB.norm, rel=1e-12)
    with pytest.raises(ValueError):
        with_energy_flux(shape, -1.0, 20, 40)
