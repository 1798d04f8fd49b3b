"""Sky model: strict YAML, flux units, variability, the faint population, GRBs, default sky."""
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.integrate import quad

from isdc.dal.fitsfile import read_fits
from isdc.instruments.isgri.response import IsgriResponse
from isdc.sim.sky import Flare, Periodic, Sky, SkyError, fred_t90
from isdc.sim.spectra import CRAB, CutoffPowerLaw, PowerLaw, mcrab

REF = Path(__file__).resolve().parent.parent / "test_data" / "reference"

MINIMAL = """\
name: test
sources:
  - name: A
    ra: 10.0
    dec: -5.0
    spectrum: {model: powerlaw, index: 2.0}
    flux: {mcrab: 100}
"""


@pytest.fixture(scope="module")
def sky():
    return Sky.default()


def test_default_sky_has_the_whole_bat_catalogue_at_its_positions(sky):
    bat = read_fits(REF / "swift_bat_survey6b_2.cat.fits.gz").table("BAT_CATALOG")
    assert len(sky) == len(bat) == 1276
    pos = {n.strip(): (r, d) for n, r, d in zip(bat["NAME"], bat["RA_OBJ"], bat["DEC_OBJ"])}
    assert set(sky.names) == set(pos)
    ref = np.array([pos[n] for n in sky.names])
    assert np.max(np.abs(sky.dec - ref[:, 1])) < 1e-4
    assert np.max(np.abs(((sky.ra - ref[:, 0]) + 180) % 360 - 180)) < 1e-4
    assert sky.n_bright >= 40 and len(sky.grbs) == 2


def test_default_sky_bright_sources(sky):
    crab = sky.sources[sky.index("Crab Nebula/Pulsar")]
    assert crab.spectrum == CRAB or (crab.spectrum.index == 2.1 and crab.spectrum.norm == pytest.approx(CRAB.norm))
    assert crab.mcrab == pytest.approx(1000.0)
    cyg = sky.sources[sky.index("Cyg X-1")]
    assert isinstance(cyg.spectrum, CutoffPowerLaw) and cyg.spectrum.index < 2
    # Cyg X-1 (hard) is brighter than Sco X-1 (soft) above 40 keV although fainter at 20-40 keV
    sco = sky.sources[sky.index("Sco X-1")]
    assert mcrab(cyg.spectrum, (40, 100)) > 10 * mcrab(sco.spectrum, (40, 100))
    rates = sky.rates((25.0, 80.0))
    assert rates[sky.index("Crab Nebula/Pulsar")] == pytest.approx(179.5, abs=1.0)


def test_faint_population_follows_log_n_log_s(sky):
    pop = sky.population
    f = np.array([s.mcrab for s in sky.sources[sky.n_bright:]])
    assert f.min() >= 0.5 - 1e-9 and f.max() <= 20 + 1e-9
    # N(>S) propto S**-1.5 between 0.5 and 20 mCrab: fraction above 2 mCrab
    p = (2.0**-1.5 - 20.0**-1.5) / (0.5**-1.5 - 20.0**-1.5)
    n = f.size
    assert (f > 2.0).sum() == pytest.approx(n * p, abs=4 * np.sqrt(n * p * (1 - p)))
    # maximum-likelihood slope of the truncated power law
    grid = np.linspace(-2.0, -1.0, 2001)
    ll = [n * np.log(-g / (0.5**g - 20.0**g)) + (g - 1) * np.log(f).sum() for g in grid]
    assert grid[int(np.argmax(ll))] == pytest.approx(-1.5, abs=0.1)
    # reproducible: the same seed draws the same fluxes
    again = pop.draw(n)[0]
    np.testing.assert_allclose(again, f, rtol=1e-9)


def test_flux_given_three_ways_is_one_spectrum():
    base = MINIMAL.replace("{mcrab: 100}", "{}")
    shape = PowerLaw(2.0)
    a = Sky.loads(MINIMAL).sources[0].spectrum
    flux = a.energy_flux(20, 100)
    b = Sky.loads(base.replace("{}", f"{{energy_flux: {flux!r}, band: [20, 100]}}")).sources[0].spectrum
    c = Sky.loads(base.replace("{}", f"{{norm: {a.norm!r}}}")).sources[0].spectrum
    d = Sky.loads(base.replace("{}", f"{{mcrab: {mcrab(a, (40, 100))!r}, band: [40, 100]}}")).sources[0].spectrum
    for s in (b, c, d):
        assert s.norm == pytest.approx(a.norm, rel=1e-10) and s.index == shape.index


def test_variability():
    f = Flare(time=100.0, peak=5.0, rise=600.0, decay=3600.0)
    p = Periodic(period=86400.0, amplitude=0.3, phase=0.0, epoch=100.0)
    text = MINIMAL + """    variability:
      - {type: flare, time: 100.0, peak: 5.0, rise: 600, decay: 3600}
      - {type: periodic, period: 86400, amplitude: 0.3, epoch: 100.0}
"""
    s = Sky.loads(text).sources[0]
    assert s.variability == (f, p)
    assert float(s.flux_factor(100.0)) == pytest.approx(5.0)
    assert float(s.flux_factor(100.0 + 3600 / 86400)) == pytest.approx((1 + 4 / np.e) * (1 + 0.3 * np.sin(2 * np.pi / 24)))
    assert float(s.flux_factor(100.0 - 600 / 86400)) == pytest.approx((1 + 4 / np.e) * (1 - 0.3 * np.sin(2 * np.pi / 144)))
    quarter = 100.0 + 0.25 + 30.0  # far from the flare, a quarter period
    assert float(s.flux_factor(quarter)) == pytest.approx(1.3, rel=1e-6)
    sky = Sky.loads(text)
    t = np.array([50.0, 100.0, quarter])
    r = sky.rates((20, 40), t)
    assert r.shape == (3, 1) and r[1, 0] / sky.rates((20, 40))[0] == pytest.approx(5.0)


def test_grb_fluence_light_curve_and_times(sky):
    g = sky.grbs[0]
    assert g.fluence_spectrum.energy_flux(20, 200) == pytest.approx(g.fluence, rel=1e-10)
    total = quad(lambda t: float(g.lightcurve(t)), 0, 2000, points=[np.sqrt(g.rise * g.decay)], limit=200)[0]
    assert total == pytest.approx(1.0, rel=1e-6)
    t = g.sample_times(100_000, np.random.default_rng(1))
    cdf = lambda x: np.array([quad(lambda u: float(g.lightcurve(u)), 0, xi)[0] for xi in np.atleast_1d(x)])
    assert stats.kstest(t[:600], cdf).pvalue > 1e-3
    peak = np.sqrt(g.rise * g.decay)
    assert abs(np.median(t) - peak) < 4 * g.decay
    # the second GRB is given by its duration: T90 equals it
    assert sky.grbs[1].t90 == pytest.approx(12.0, rel=1e-3)
    assert fred_t90(0.5, 6.0) == pytest.approx(2 * fred_t90(0.25, 3.0), rel=1e-3)  # T90 scales with the time constants
    assert sky.grbs_between(g.time - 0.01, g.time + 0.01) == (g,)
    assert sky.grbs_between(g.time + 0.1, g.time + 0.2) == ()


def test_reference_catalog_from_sky(sky):
    cat = sky.reference_catalog()
    i = sky.index("Crab Nebula/Pulsar")
    assert cat["ISGR_FLUX_1"][i] == pytest.approx(sky.rates((20, 40))[i])
    assert cat["ISGR_FLUX_2"][i] == pytest.approx(sky.rates((40, 100))[i])
    assert cat["FLUX"][i] == pytest.approx(CRAB.energy_flux(20, 100))
    bright = set(cat.bright().name)
    assert "Crab Nebula/Pulsar" in bright and "Cyg X-1" in bright
    assert all(s.mcrab >= 100 for s in sky.sources if s.name in bright)
    assert all(s.mcrab < 100 for s in sky.sources if s.name not in bright)
    assert cat["SPE_MODL"][i] == "POWERLAW" and cat["SPE_PARS"][i, 0] == pytest.approx(2.1)


# --------------------------------------------------------------------------- strictness

@pytest.mark.parametrize("text, message", [
    (MINIMAL.replace("    dec: -5.0\n", "    dec: -5.0\n    decl: 3\n"), r"line 6: unknown key 'decl' in sources\[0\]"),
    (MINIMAL.replace("    ra: 10.0\n", "    ra: 10.0\n    ra: 11.0\n"), r"line 5: duplicate key 'ra'"),
    (MINIMAL.replace("    ra: 10.0\n", ""), r"line 3: sources\[0\] needs key 'ra'"),
    (MINIMAL.replace("dec: -5.0", "dec: south"), r"line 5: source 'A': dec must be a finite number"),
    (MINIMAL.replace("dec: -5.0", "dec: 95"), r"dec = 95 must be <= 90"),
    (MINIMAL.replace("powerlaw", "blackbody"), r"line 6: .*unknown spectral model 'blackbody'"),
    (MINIMAL.replace("index: 2.0", "index: 2.0, cutoff: 30"), r"unknown key 'cutoff' in source 'A' spectrum \(powerlaw\)"),
    (MINIMAL.replace("{mcrab: 100}", "{mcrab: 100, norm: 3}"), r"exactly one of mcrab, norm, energy_flux"),
    (MINIMAL.replace("{mcrab: 100}", "{energy_flux: 1.0e-10}"), r"energy_flux needs band"),
    (MINIMAL.replace("name: test\n", "name: test\nsorces: []\n"), r"line 2: unknown key 'sorces' in the sky model"),
    (MINIMAL + "  - name: A\n    ra: 1\n    dec: 1\n    spectrum: {model: powerlaw, index: 2}\n    flux: {mcrab: 1}\n",
     r"source name 'A' given twice"),
    ("- just a list\n", r"must be a YAML mapping"),
    ("name: [unclosed\n", r"not valid YAML"),
])
def test_strict_loading_names_line_and_key(text, message):
    with pytest.raises(SkyError, match=message):
        Sky.loads(text, "my_sky.yaml")
    with pytest.raises(SkyError, match="my_sky.yaml"):
        Sky.loads(text, "my_sky.yaml")


_ALLOWED = {"name", "ra", "dec", "spectrum", "flux", "class", "variability"}


@settings(max_examples=60, deadline=None)
@given(st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True).filter(lambda k: k not in _ALLOWED))
def test_any_unknown_source_key_is_refused(key):
    text = MINIMAL.replace("    dec: -5.0\n", f"    dec: -5.0\n    {key}: 1\n")
    with pytest.raises(SkyError, match=f"line 6: unknown key '{key}'"):
        Sky.loads(text)


def test_load_reads_files_and_reports_missing_ones(tmp_path):
    p = tmp_path / "sky.yaml"
    p.write_text(MINIMAL)
    assert Sky.load(p).sources[0].name == "A"
    with pytest.raises(SkyError, match="nothere.yaml"):
        Sky.load(tmp_path / "nothere.yaml")


def test_rates_use_the_given_response(sky):
    r = IsgriResponse.default()
    half = r.scaled(0.5)
    s = Sky.loads(MINIMAL)
    assert s.rates((25, 80), response=half)[0] == pytest.approx(0.5 * s.rates((25, 80), response=r)[0])
    near = sky.in_field(83.6332, 22.0145, 15.0)
    assert sky.index("Crab Nebula/Pulsar") in near and sky.index("1A 0535+262") in near
    assert sky.index("Cyg X-1") not in near
