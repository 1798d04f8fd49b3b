"""Sky model of the simulator: point sources, a faint population, gamma-ray bursts.

A sky is a YAML file (schema below, a default one ships: `Sky.default()`), loaded
strictly: an unknown or duplicate key, a missing one, or a value of the wrong type is a
`SkyError` naming the file, the line and the key.

    name: my-sky                      # required
    description: free text            # optional
    sources:                          # bright sources, each:
      - name: Crab Nebula/Pulsar
        ra: 83.633                    # J2000 deg
        dec: 22.014
        class: PWN                    # optional free text
        spectrum: {model: powerlaw, index: 2.1}          # or cutoffpl (index, cutoff keV)
        flux: {mcrab: 1000}           # or {mcrab: x, band: [20, 40]} | {norm: N(1 keV) ph/cm2/s/keV}
                                      #    | {energy_flux: erg/cm2/s, band: [e_lo, e_hi]}
        variability:                  # optional list; flares add, periodic multiplies
          - {type: flare, time: 3006.2, peak: 4.0, rise: 3600, decay: 36000}   # IJD, x flux, s, s
          - {type: periodic, period: 180300, amplitude: 0.3, phase: 0.25, epoch: 3000.0}  # s, fraction, cycles, IJD
    population:                       # optional faint sources at real positions
      slope: -1.5                     # of the cumulative log N(>S) - log S
      flux_min_mcrab: 0.5
      flux_max_mcrab: 20
      seed: 20021017                  # fluxes (and indices) are drawn with it
      index_mean: 2.0
      index_sigma: 0.3
      band: [20, 40]                  # optional, the mCrab band
      positions:                      # [name, ra, dec] each
        - ["SWIFT J0016.7+4800", 4.175, 48.0]
    grbs:
      - name: GRB 080324A
        time: 3005.6                  # IJD of the burst onset
        ra: 85.0
        dec: 23.5
        fluence: 1.0e-5               # erg/cm2 in fluence_band
        fluence_band: [20, 200]       # optional, keV
        spectrum: {model: band, alpha: -1.0, beta: -2.3, epeak: 250}   # or cutoffpl
        lightcurve: {shape: fred, rise: 0.5, decay: 4.0}   # s; or {shape: fred, duration: T90 s}

Fluxes: mCrab relative to `isdc.sim.spectra.CRAB` in the band (default 20-40 keV).
Count rates (`Sky.rates`) are ISGRI's on-axis, whole-detector rates (the OSA
intensity convention) through an `IsgriResponse`.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from isdc.sim.spectra import MCRAB_BAND, Band, CutoffPowerLaw, PowerLaw, Spectrum, mcrab, with_energy_flux, with_mcrab

__all__ = [
    "SkyError",
    "Flare",
    "Periodic",
    "PointSource",
    "Population",
    "GammaRayBurst",
    "Sky",
    "DEFAULT_SKY",
    "fred_t90",
]

SECONDS_PER_DAY = 86400.0
DEFAULT_SKY = Path(__file__).with_name("default_sky.yaml")


class SkyError(ValueError):
    """A sky model that cannot be used; the message names the file, line and key."""


# --------------------------------------------------------------------------- variability

@dataclass(frozen=True)
class Flare:
    """A flare: flux x `peak` at `time` [IJD], exponential `rise` and `decay` [s].

    factor(t) = 1 + (peak - 1) exp(-|t - time| / (rise before, decay after)).
    """

    time: float
    peak: float
    rise: float
    decay: float

    def excess(self, t) -> np.ndarray:
        dt = (np.asarray(t, dtype=float) - self.time) * SECONDS_PER_DAY
        tau = np.where(dt < 0, self.rise, self.decay)
        return (self.peak - 1.0) * np.exp(-np.abs(dt) / tau)


@dataclass(frozen=True)
class Periodic:
    """Periodic modulation: factor(t) = 1 + amplitude sin(2 pi ((t - epoch) / period + phase)).

    period [s], amplitude (fraction, 0..1), phase (cycles), epoch [IJD].
    """

    period: float
    amplitude: float
    phase: float = 0.0
    epoch: float = 0.0

    def factor(self, t) -> np.ndarray:
        cycles = (np.asarray(t, dtype=float) - self.epoch) * SECONDS_PER_DAY / self.period
        return 1.0 + self.amplitude * np.sin(2 * np.pi * (cycles + self.phase))


# --------------------------------------------------------------------------- sources

@dataclass(frozen=True)
class PointSource:
    """A point source: position [deg J2000], photon spectrum, variability."""

    name: str
    ra: float
    dec: float
    spectrum: Spectrum
    variability: tuple = ()
    source_class: str = ""

    def flux_factor(self, t) -> np.ndarray:
        """Flux relative to `spectrum` at times `t` [IJD] (1 for a constant source)."""
        t = np.asarray(t, dtype=float)
        f = np.ones_like(t)
        for v in self.variability:
            if isinstance(v, Flare):
                f = f + v.excess(t)
        for v in self.variability:
            if isinstance(v, Periodic):
                f = f * v.factor(t)
        return f

    @property
    def mcrab(self) -> float:
        """Mean flux in mCrab at 20-40 keV."""
        return mcrab(self.spectrum)


@dataclass(frozen=True)
class Population:
    """Parameters of the faint population (the sources themselves are in `Sky.sources`)."""

    slope: float
    flux_min_mcrab: float
    flux_max_mcrab: float
    seed: int
    index_mean: float
    index_sigma: float
    band: tuple[float, float] = MCRAB_BAND

    def draw(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(flux [mCrab], photon index) of `n` sources.

        N(>S) propto S**slope between the limits: S = (a - u (a - b))**(1/slope) with
        a = S_min**slope, b = S_max**slope (inverse CDF of the truncated power law).
        """
        rng = np.random.default_rng(self.seed)
        u = rng.random(n)
        a, b = self.flux_min_mcrab**self.slope, self.flux_max_mcrab**self.slope
        s = (a - u * (a - b)) ** (1.0 / self.slope)
        index = np.clip(self.index_mean + self.index_sigma * rng.standard_normal(n), 1.0, 3.5)
        return s, index


def fred_t90(rise: float, decay: float) -> float:
    """T90 [s] of a FRED pulse exp(-rise/t - t/decay) (time from 5% to 95% of the fluence)."""
    t, cdf = _fred_cdf(rise, decay)
    return float(np.interp(0.95, cdf, t) - np.interp(0.05, cdf, t))


def _fred_cdf(rise: float, decay: float, n: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    peak = np.sqrt(rise * decay)
    t = np.concatenate([[0.0], np.geomspace(peak * 1e-3, peak + 40.0 * decay, n)])
    with np.errstate(divide="ignore", over="ignore"):
        f = np.where(t > 0, np.exp(-rise / np.where(t > 0, t, 1.0) - t / decay), 0.0)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(t))])
    return t, cdf / cdf[-1]


@dataclass(frozen=True)
class GammaRayBurst:
    """A GRB: onset `time` [IJD], position [deg], `fluence` [erg/cm2] in `fluence_band` [keV],
    spectral shape (Band or cut-off power law), FRED light curve (Norris et al. 1996):
    rate(t) propto exp(-rise / t - t / decay) for t > 0 seconds after onset.
    """

    name: str
    time: float
    ra: float
    dec: float
    fluence: float
    shape: Spectrum
    rise: float
    decay: float
    fluence_band: tuple[float, float] = (20.0, 200.0)

    @property
    def fluence_spectrum(self) -> Spectrum:
        """Time-integrated photon spectrum [ph/cm2/keV]."""
        return with_energy_flux(self.shape, self.fluence, *self.fluence_band)

    @property
    def t90(self) -> float:
        """Duration [s] containing 90% of the fluence."""
        return fred_t90(self.rise, self.decay)

    @property
    def duration(self) -> float:
        return self.t90

    def lightcurve(self, t_s) -> np.ndarray:
        """Normalised light curve [1/s] at `t_s` seconds after onset (integral 1)."""
        from scipy.special import k1

        t = np.asarray(t_s, dtype=float)
        x = 2.0 * np.sqrt(self.rise / self.decay)
        norm = 2.0 * np.sqrt(self.rise * self.decay) * k1(x)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            f = np.where(t > 0, np.exp(-self.rise / np.where(t > 0, t, 1.0) - t / self.decay), 0.0)
        return f / norm

    def sample_times(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` photon arrival times [s after onset] drawn from the light curve (inverse CDF)."""
        return self.sample_times_between(n, 0.0, np.inf, rng)

    def fraction_between(self, t0_s, t1_s) -> np.ndarray:
        """Fraction of the fluence emitted between `t0_s` and `t1_s` seconds after onset."""
        t, cdf = _fred_cdf(self.rise, self.decay)
        return np.interp(t1_s, t, cdf, left=0.0, right=1.0) - np.interp(t0_s, t, cdf, left=0.0, right=1.0)

    def sample_times_between(self, n: int, t0_s: float, t1_s: float, rng: np.random.Generator) -> np.ndarray:
        """`n` photon arrival times [s after onset] drawn from the light curve restricted to
        [t0_s, t1_s) (inverse CDF, as far as the tabulated CDF resolves the interval)."""
        t, cdf = _fred_cdf(self.rise, self.decay)
        lo, hi = np.interp([t0_s, t1_s], t, cdf, left=0.0, right=1.0)
        return np.clip(np.interp(lo + (hi - lo) * rng.random(int(n)), cdf, t), t0_s, t1_s)


# --------------------------------------------------------------------------- the sky

@dataclass(frozen=True, eq=False)
class Sky:
    """A sky: `sources` (bright ones first, then the population), `grbs`, metadata."""

    name: str
    sources: tuple[PointSource, ...]
    grbs: tuple[GammaRayBurst, ...] = ()
    population: Population | None = None
    n_bright: int = 0
    description: str = ""
    path: str = ""
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    # ---- loading
    @classmethod
    def load(cls, path: str | os.PathLike) -> "Sky":
        """Read a sky YAML file (strict: see the module docstring)."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise SkyError(f"{path}: cannot read sky model: {exc}") from exc
        return cls.loads(text, str(path))

    @classmethod
    def loads(cls, text: str, where: str = "<sky>") -> "Sky":
        """Parse a sky model from YAML text; `where` names it in errors."""
        doc = _parse_yaml(text, where)
        return _build_sky(doc, where)

    @classmethod
    def default(cls) -> "Sky":
        """The default sky (`default_sky.yaml`): BAT-catalogue positions, literature fluxes."""
        return _default_sky()

    # ---- arrays
    def __len__(self) -> int:
        return len(self.sources)

    @property
    def names(self) -> np.ndarray:
        return np.array([s.name for s in self.sources])

    @property
    def ra(self) -> np.ndarray:
        return np.array([s.ra for s in self.sources], dtype=float)

    @property
    def dec(self) -> np.ndarray:
        return np.array([s.dec for s in self.sources], dtype=float)

    def index(self, name: str) -> int:
        """Position of the source called `name` in `sources`."""
        for i, s in enumerate(self.sources):
            if s.name == name:
                return i
        raise KeyError(f"sky {self.name!r} has no source named {name!r}")

    def flux_factors(self, t) -> np.ndarray:
        """(..., n_src) flux relative to the mean spectrum at times `t` [IJD]."""
        t = np.asarray(t, dtype=float)
        out = np.ones(t.shape + (len(self.sources),))
        for i, s in enumerate(self.sources):
            if s.variability:
                out[..., i] = s.flux_factor(t)
        return out

    def channel_rates(self, response) -> np.ndarray:
        """(n_src, n_ch) mean counts/s per channel of each source (on-axis, whole detector)."""
        key = ("channels", id(response))
        if key not in self._cache:
            flux = np.vstack([s.spectrum.photon_flux(response.energ_lo, response.energ_hi) for s in self.sources]) \
                if self.sources else np.zeros((0, response.energ_lo.size))
            self._cache[key] = (response, response.fold_many(flux))
        return self._cache[key][1]

    def rates(self, band: tuple[float, float], t=None, response=None) -> np.ndarray:
        """Count rates [counts/s] of every source in `band` keV, on-axis, whole detector.

        `t` [IJD] (scalar or array) applies the variability (shape t.shape + (n_src,));
        None gives the mean rates. `response` defaults to `IsgriResponse.default()`.
        """
        if response is None:
            from isdc.instruments.isgri.response import IsgriResponse

            response = IsgriResponse.default()
        mean = self.channel_rates(response) @ response.band_weights(*band)
        return mean if t is None else mean * self.flux_factors(t)

    def in_field(self, ra: float, dec: float, radius: float = 15.0) -> np.ndarray:
        """Indices of the sources within `radius` deg of (ra, dec)."""
        from isdc.sim.plan import separation

        return np.flatnonzero(separation(ra, dec, self.ra, self.dec) <= radius)

    def grbs_between(self, t0: float, t1: float) -> tuple[GammaRayBurst, ...]:
        """GRBs whose emission overlaps [t0, t1] IJD (onset before t1, 99.9% done after t0)."""
        out = []
        for g in self.grbs:
            t, cdf = _fred_cdf(g.rise, g.decay)
            end = g.time + float(np.interp(0.999, cdf, t)) / SECONDS_PER_DAY
            if g.time <= t1 and end >= t0:
                out.append(g)
        return tuple(out)

    def reference_catalog(self, response=None, bright_mcrab: float = 100.0):
        """This sky as a reference catalogue (`isdc.dal.catalog.Catalog`, GNRL-REFR-CAT columns).

        ISGR_FLUX_1/2 = mean count rates at 20-40 / 40-100 keV; FLUX = energy flux at
        20-100 keV; ISGRI_FLAG = 1 for every source; ISGRI_FLAG2 = 5 for sources of at
        least `bright_mcrab` mCrab (20-40 keV), the bright ones ghosts are removed for.
        """
        from isdc.dal.catalog import Catalog, source_id

        n = len(self.sources)
        f1 = self.rates((20.0, 40.0), response=response)
        f2 = self.rates((40.0, 100.0), response=response)
        pars = np.full((n, 3), np.nan)
        modl, npar = [], np.zeros(n, np.int16)
        for i, s in enumerate(self.sources):
            sp = s.spectrum
            if isinstance(sp, CutoffPowerLaw):
                modl.append("CUTOFFPL")
                pars[i], npar[i] = (sp.index, sp.cutoff, sp.norm), 3
            elif isinstance(sp, PowerLaw):
                modl.append("POWERLAW")
                pars[i, :2], npar[i] = (sp.index, sp.norm), 2
            else:
                modl.append(type(sp).__name__.upper()[:10])
        var = ["CONSTANT" if not s.variability else
               ("FLARE" if any(isinstance(v, Flare) for v in s.variability) else "PERIODIC") for s in self.sources]
        mc = np.array([s.mcrab for s in self.sources])
        cols = {
            "SOURCE_ID": source_id(self.ra, self.dec) if n else np.array([], dtype="U16"),
            "CLASS": np.array([s.source_class for s in self.sources], dtype=str),
            "ERR_RAD": np.full(n, 1.0 / 3600.0),
            "SPE_MODL": np.array(modl, dtype=str), "SPE_NPAR": npar, "SPE_PARS": pars,
            "VAR_MODL": np.array(var, dtype=str),
            "ISGR_FLUX_1": f1, "ISGR_FLUX_2": f2,
            "E_MIN": np.full(n, 20.0), "E_MAX": np.full(n, 100.0),
            "FLUX": np.array([s.spectrum.energy_flux(20.0, 100.0) for s in self.sources]),
            "FLUX_ERR": np.zeros(n),
            "ISGRI_FLAG": np.ones(n, np.int16),
            "ISGRI_FLAG2": np.where(mc >= bright_mcrab, 5, 0).astype(np.int16),
        }
        return Catalog(self.names, self.ra, self.dec, cols, cat_name=f"isdc-sim-{self.name}")


@functools.lru_cache(maxsize=1)
def _default_sky() -> Sky:
    # Immutable (frozen dataclasses): one parsed copy per process.
    return Sky.load(DEFAULT_SKY)


# --------------------------------------------------------------------------- strict YAML

class _Map(dict):
    """A YAML mapping that remembers the line of itself and of each key (1-based)."""

    line: int = 0
    key_lines: dict


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    pass


def _construct_mapping(loader, node):
    loader.flatten_mapping(node)
    out = _Map()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for k_node, v_node in node.value:
        key = loader.construct_object(k_node, deep=True)
        line = k_node.start_mark.line + 1
        if key in out:
            raise SkyError(f"line {line}: duplicate key {key!r}")
        out[key] = loader.construct_object(v_node, deep=True)
        out.key_lines[key] = line
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text: str, where: str) -> _Map:
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except SkyError as exc:
        raise SkyError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        raise SkyError(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(doc, _Map):
        raise SkyError(f"{where}: a sky model must be a YAML mapping (name, sources, ...)")
    return doc


class _Ctx:
    """Where we are in the document, for error messages."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, m: Any, key: str | None, msg: str):
        line = None
        if isinstance(m, _Map):
            line = m.key_lines.get(key, m.line) if key is not None else m.line
        at = f" line {line}:" if line else ""
        raise SkyError(f"{self.where}:{at} {msg}")

    def keys(self, m: Any, what: str, required: set[str], optional: set[str] = frozenset()):
        if not isinstance(m, _Map):
            raise SkyError(f"{self.where}: {what} must be a mapping, got {type(m).__name__}")
        for k in m:
            if k not in required and k not in optional:
                self.fail(m, k, f"unknown key {k!r} in {what} (allowed: {', '.join(sorted(required | set(optional)))})")
        for k in sorted(required):
            if k not in m:
                self.fail(m, None, f"{what} needs key {k!r}")

    def num(self, m: _Map, key: str, what: str, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False, default: float | None = None) -> float:
        if key not in m:
            if default is None:
                self.fail(m, None, f"{what} needs key {key!r}")
            return default
        v = m[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
            self.fail(m, key, f"{what}: {key} must be a finite number, got {v!r}")
        if lo is not None and (v < lo or (lo_open and v == lo)):
            self.fail(m, key, f"{what}: {key} = {v} must be {'>' if lo_open else '>='} {lo}")
        if hi is not None and v > hi:
            self.fail(m, key, f"{what}: {key} = {v} must be <= {hi}")
        return float(v)

    def text(self, m: _Map, key: str, what: str, default: str | None = None) -> str:
        if key not in m:
            if default is None:
                self.fail(m, None, f"{what} needs key {key!r}")
            return default
        v = m[key]
        if not isinstance(v, str) or not v.strip():
            self.fail(m, key, f"{what}: {key} must be a non-empty string, got {v!r}")
        return v.strip()

    def band(self, m: _Map, key: str, what: str, default: tuple[float, float]) -> tuple[float, float]:
        if key not in m:
            return default
        v = m[key]
        if (not isinstance(v, list) or len(v) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                               for x in v) or not 0 < v[0] < v[1]):
            self.fail(m, key, f"{what}: {key} must be [e_lo, e_hi] keV with 0 < e_lo < e_hi, got {v!r}")
        return float(v[0]), float(v[1])


def _spectrum(ctx: _Ctx, m: Any, what: str, allow_band: bool = False) -> Spectrum:
    models = {"powerlaw": ({"model", "index"}, set()), "cutoffpl": ({"model", "index", "cutoff"}, set())}
    if allow_band:
        models["band"] = ({"model", "alpha", "beta", "epeak"}, set())
    if not isinstance(m, _Map) or "model" not in m:
        ctx.keys(m, what, {"model"}, {"index", "cutoff", "alpha", "beta", "epeak"})
    model = m["model"]
    if model not in models:
        ctx.fail(m, "model", f"{what}: unknown spectral model {model!r} (use {', '.join(sorted(models))})")
    ctx.keys(m, f"{what} ({model})", *models[model])
    try:
        if model == "powerlaw":
            return PowerLaw(ctx.num(m, "index", what))
        if model == "cutoffpl":
            return CutoffPowerLaw(ctx.num(m, "index", what), ctx.num(m, "cutoff", what, lo=0, lo_open=True))
        return Band(ctx.num(m, "alpha", what), ctx.num(m, "beta", what), ctx.num(m, "epeak", what, lo=0, lo_open=True))
    except ValueError as exc:
        if isinstance(exc, SkyError):
            raise
        ctx.fail(m, None, f"{what}: {exc}")


def _flux(ctx: _Ctx, shape: Spectrum, m: Any, what: str) -> Spectrum:
    ctx.keys(m, what, set(), {"mcrab", "band", "norm", "energy_flux"})
    given = [k for k in ("mcrab", "norm", "energy_flux") if k in m]
    if len(given) != 1:
        ctx.fail(m, None, f"{what}: give exactly one of mcrab, norm, energy_flux (got {given or 'none'})")
    kind = given[0]
    if kind == "norm":
        if "band" in m:
            ctx.fail(m, "band", f"{what}: band goes with mcrab or energy_flux, not norm")
        return shape.scaled(ctx.num(m, "norm", what, lo=0) / shape.norm)
    if kind == "mcrab":
        return with_mcrab(shape, ctx.num(m, "mcrab", what, lo=0), ctx.band(m, "band", what, MCRAB_BAND))
    if "band" not in m:
        ctx.fail(m, None, f"{what}: energy_flux needs band: [e_lo, e_hi]")
    return with_energy_flux(shape, ctx.num(m, "energy_flux", what, lo=0), *ctx.band(m, "band", what, MCRAB_BAND))


def _variability(ctx: _Ctx, v: Any, what: str) -> tuple:
    if v is None:
        return ()
    if not isinstance(v, list):
        v = [v]
    out = []
    for i, m in enumerate(v):
        w = f"{what} variability[{i}]"
        if not isinstance(m, _Map) or "type" not in m:
            ctx.keys(m, w, {"type"}, {"time", "peak", "rise", "decay", "period", "amplitude", "phase", "epoch"})
        if m["type"] == "flare":
            ctx.keys(m, w + " (flare)", {"type", "time", "peak", "rise", "decay"})
            out.append(Flare(ctx.num(m, "time", w), ctx.num(m, "peak", w, lo=0), ctx.num(m, "rise", w, lo=0, lo_open=True),
                             ctx.num(m, "decay", w, lo=0, lo_open=True)))
        elif m["type"] == "periodic":
            ctx.keys(m, w + " (periodic)", {"type", "period", "amplitude"}, {"phase", "epoch"})
            out.append(Periodic(ctx.num(m, "period", w, lo=0, lo_open=True), ctx.num(m, "amplitude", w, lo=0, hi=1),
                                ctx.num(m, "phase", w, default=0.0), ctx.num(m, "epoch", w, default=0.0)))
        elif m["type"] == "constant":
            ctx.keys(m, w + " (constant)", {"type"})
        else:
            ctx.fail(m, "type", f"{w}: unknown variability type {m['type']!r} (use constant, flare, periodic)")
    return tuple(out)


def _position(ctx: _Ctx, m: _Map, what: str) -> tuple[float, float]:
    return ctx.num(m, "ra", what, lo=-360, hi=360) % 360.0, ctx.num(m, "dec", what, lo=-90, hi=90)


def _build_sky(doc: _Map, where: str) -> Sky:
    ctx = _Ctx(where)
    ctx.keys(doc, "the sky model", {"name"}, {"description", "sources", "population", "grbs"})
    name = ctx.text(doc, "name", "the sky model")
    sources: list[PointSource] = []
    seen: dict[str, int] = {}
    raw = doc.get("sources") or []
    if not isinstance(raw, list):
        ctx.fail(doc, "sources", "sources must be a list")
    for i, m in enumerate(raw):
        what = f"sources[{i}]"
        ctx.keys(m, what, {"name", "ra", "dec", "spectrum", "flux"}, {"class", "variability"})
        nm = ctx.text(m, "name", what)
        what = f"source {nm!r}"
        if nm in seen:
            ctx.fail(m, "name", f"source name {nm!r} given twice")
        seen[nm] = i
        ra, dec = _position(ctx, m, what)
        shape = _spectrum(ctx, m["spectrum"], f"{what} spectrum")
        spec = _flux(ctx, shape, m["flux"], f"{what} flux")
        sources.append(PointSource(nm, ra, dec, spec, _variability(ctx, m.get("variability"), what),
                                   ctx.text(m, "class", what, default="")))
    n_bright = len(sources)
    population = None
    if "population" in doc:
        p = doc["population"]
        what = "population"
        ctx.keys(p, what, {"slope", "flux_min_mcrab", "flux_max_mcrab", "seed", "positions"},
                 {"index_mean", "index_sigma", "band", "class", "description"})
        seed = p["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            ctx.fail(p, "seed", f"{what}: seed must be an integer >= 0, got {seed!r}")
        population = Population(
            ctx.num(p, "slope", what, hi=0.0), ctx.num(p, "flux_min_mcrab", what, lo=0, lo_open=True),
            ctx.num(p, "flux_max_mcrab", what, lo=0, lo_open=True), seed,
            ctx.num(p, "index_mean", what, default=2.0), ctx.num(p, "index_sigma", what, lo=0, default=0.0),
            ctx.band(p, "band", what, MCRAB_BAND))
        if population.flux_max_mcrab <= population.flux_min_mcrab or population.slope == 0:
            ctx.fail(p, None, f"{what}: needs slope < 0 and flux_max_mcrab > flux_min_mcrab")
        pos = p["positions"]
        if not isinstance(pos, list):
            ctx.fail(p, "positions", f"{what}: positions must be a list of [name, ra, dec]")
        names, ras, decs = [], [], []
        for j, row in enumerate(pos):
            ok = (isinstance(row, list) and len(row) == 3 and isinstance(row[0], str)
                  and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in row[1:])
                  and -90 <= row[2] <= 90)
            if not ok:
                ctx.fail(p, "positions", f"{what}: positions[{j}] must be [name, ra, dec (-90..90)], got {row!r}")
            if row[0] in seen:
                ctx.fail(p, "positions", f"{what}: positions[{j}] name {row[0]!r} is already a source")
            seen[row[0]] = len(seen)
            names.append(row[0])
            ras.append(float(row[1]) % 360.0)
            decs.append(float(row[2]))
        s, index = population.draw(len(names))
        cls = ctx.text(p, "class", what, default="")
        for nm, ra, dec, f, g in zip(names, ras, decs, s, index):
            sources.append(PointSource(nm, ra, dec, with_mcrab(PowerLaw(float(g)), float(f), population.band), (), cls))
    grbs = []
    raw = doc.get("grbs") or []
    if not isinstance(raw, list):
        ctx.fail(doc, "grbs", "grbs must be a list")
    for i, m in enumerate(raw):
        what = f"grbs[{i}]"
        ctx.keys(m, what, {"name", "time", "ra", "dec", "fluence", "spectrum", "lightcurve"}, {"fluence_band"})
        nm = ctx.text(m, "name", what)
        what = f"GRB {nm!r}"
        ra, dec = _position(ctx, m, what)
        lc = m["lightcurve"]
        ctx.keys(lc, f"{what} lightcurve", {"shape"}, {"rise", "decay", "duration"})
        if lc["shape"] != "fred":
            ctx.fail(lc, "shape", f"{what}: light-curve shape {lc['shape']!r} unknown (use fred)")
        if "duration" in lc:
            if "rise" in lc or "decay" in lc:
                ctx.fail(lc, "duration", f"{what}: give duration or rise and decay, not both")
            # Fixed FRED asymmetry rise/decay = 0.05 (Norris et al. 1996 pulses are this
            # asymmetric), scaled so that T90 = duration: T90 scales with the time constants.
            scale = ctx.num(lc, "duration", what, lo=0, lo_open=True) / fred_t90(0.05, 1.0)
            rise, decay = 0.05 * scale, scale
        else:
            rise = ctx.num(lc, "rise", f"{what} lightcurve", lo=0, lo_open=True)
            decay = ctx.num(lc, "decay", f"{what} lightcurve", lo=0, lo_open=True)
        grbs.append(GammaRayBurst(nm, ctx.num(m, "time", what), ra, dec, ctx.num(m, "fluence", what, lo=0, lo_open=True),
                                  _spectrum(ctx, m["spectrum"], f"{what} spectrum", allow_band=True), rise, decay,
                                  ctx.band(m, "fluence_band", what, (20.0, 200.0))))
    desc = doc.get("description", "")
    if not isinstance(desc, str):
        ctx.fail(doc, "description", "description must be text")
    return Sky(name, tuple(sources), tuple(grbs), population, n_bright, desc.strip(), where)
