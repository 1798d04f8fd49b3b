"""ISGRI detector model for the simulator: the truth the COR, GTI and DEAD steps undo.

Pure numpy, vectorised, no files. What is modelled and with which numbers is said in
each class; docs/simulator.md gathers the numbers and their sources.

- `GainModel`       PHA = (E q(rt) - offset(T, t)) / gain(T, t) per module; inverse.
- `RiseTimeModel`   interaction depth in 2 mm CdTe -> rise time -> charge loss q(rt).
- `DeadTimeModel`   per-module dead time from processed triggers and veto strobes; the
                    HK counters (per 8 s cycle) from which the DEAD step measures it.
- `NoisyPixelModel` a few pixels firing in short bursts of low-energy events.
- `telemetry_gtis`  random telemetry gaps: the true good-time intervals.
- `BackgroundModel` instrumental background: spectrum (continuum + lines) and pixel map.
- `HousekeepingModel`, `simulate_hk`  module temperatures, bias voltage, rate counters.

Conventions: detector arrays are numpy `[row, col] = [Z, Y]`, 128 x 128 logical pixels
(no gaps), 8 modules of 32 (Z) x 64 (Y) pixels numbered by `isdc.instruments.isgri.geometry`
(the one source of truth for the layout): `module = 2 * (z // 32) + y // 64`.
Times inside a science window are seconds since its start; absolute times are IJD.
Energies are keV, temperatures degC, rise times in the corrected 0-127 scale of OSA
(`RISE_MIN`/`RISE_MAX` of the response) unless called *raw*.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from isdc.instruments.isgri.geometry import ISGRI_MODULE_PIXELS, ISGRI_PIXELS, isgri_module
from isdc.instruments.isgri.response import AliasTable, ChannelSampler, IsgriResponse

__all__ = [
    "N_PIXELS",
    "N_MODULES",
    "MODULE_PIXELS",
    "PHA_MAX",
    "RISE_RAW_MAX",
    "RISE_MIN",
    "RISE_MAX",
    "HK_CYCLE_S",
    "default_module_map",
    "orbit_factor",
    "GainModel",
    "RiseTimeModel",
    "DeadTimeModel",
    "NoisyPixelModel",
    "NoisyEvents",
    "telemetry_gtis",
    "BackgroundLine",
    "BackgroundModel",
    "HousekeepingModel",
    "IsgriHK",
    "simulate_hk",
    "background_rate_for_snr",
    "crab_snr_estimate",
    "CODING_EFFICIENCY",
]

N_PIXELS = ISGRI_PIXELS[0]
N_MODULES = 8
MODULE_PIXELS = ISGRI_MODULE_PIXELS
"""Pixels per module along (Z, Y): 4 modules of 32 along Z, 2 of 64 along Y (the ISGRI geometry)."""
PHA_MAX = 2047
"""Largest raw pulse height (11-bit ADC): ~0.52 keV/channel covers ISGRI's 15 keV-1 MeV."""
RISE_RAW_MAX = 255
"""Largest raw rise-time channel (8 bits); the corrected scale is 0-127."""
RISE_MIN, RISE_MAX = 16, 116
"""Rise-time selection of the OSA 11 response (keywords RISE_MIN/RISE_MAX): the response
counts only events inside it, so events outside are extra ones COR must reject."""
HK_CYCLE_S = 8.0
"""ISGRI housekeeping cycle [s]."""


def default_module_map() -> np.ndarray:
    """(128, 128) int module number 0..7 of each logical pixel, `[z, y]` (`isgri_module`)."""
    z, y = np.mgrid[0:N_PIXELS, 0:N_PIXELS]
    return np.asarray(isgri_module(z, y), dtype=np.int64)


def orbit_factor(phase, amplitude: float = 0.4, width: float = 0.03) -> np.ndarray:
    """Rate multiplier near the radiation belts: 1 + amplitude exp(-d / width).

    d is the distance in revolution phase (0..1) to perigee (phase 0 = 1). Veto and
    background rates rise as INTEGRAL approaches the belts, at the ends of a revolution.
    """
    p = np.mod(np.asarray(phase, dtype=float), 1.0)
    d = np.minimum(p, 1.0 - p)
    return 1.0 + amplitude * np.exp(-d / width)


# --------------------------------------------------------------------------- gain

_GAIN = np.array([0.5210, 0.5283, 0.5236, 0.5359, 0.5164, 0.5309, 0.5224, 0.5264])
_OFFSET = np.array([0.62, -0.85, 0.14, 1.21, -0.47, 0.33, -1.02, 0.78])
_GAIN_TCOEF = np.array([-2.1, -1.8, -2.4, -2.0, -1.9, -2.2, -2.3, -1.7]) * 1e-3
_OFFSET_TCOEF = np.array([0.021, 0.018, 0.025, 0.020, 0.016, 0.023, 0.019, 0.022])
_RT_GAIN = np.array([1.98, 2.03, 2.00, 1.95, 2.06, 1.99, 2.02, 1.97])
_RT_OFFSET = np.array([3.1, 2.4, 2.8, 3.6, 2.2, 3.0, 2.6, 3.3])


@dataclass(frozen=True, eq=False)
class GainModel:
    """Energy -> pulse height per module, drifting with temperature and time.

    gain(m, T, t)   = gain[m] (1 + gain_tcoef[m] (T - temperature_ref)) (1 + gain_drift (t - t_ref))
    offset(m, T, t) = offset[m] + offset_tcoef[m] (T - temperature_ref)
    amplitude       = E q(rt), q(rt) = 1 - charge_loss * clip((rt - charge_loss_knee) / (RISE_MAX - charge_loss_knee), 0, None)
    PHA             = (amplitude - offset) / gain      (continuous; `digitise_pha` floors)

    gain [keV/channel], offset [keV], gain_tcoef [1/degC], offset_tcoef [keV/degC],
    gain_drift [1/day] (ISGRI's gain in keV/channel grew by a few % over the mission),
    t_ref [IJD], temperature_ref [degC]. Rise time: raw = rt_gain[m] rt + rt_offset[m].
    Charge loss: events with long rise times interacted deep in the crystal and lose
    charge (OSA IBIS user manual, ibis_isgr_energy): up to `charge_loss` of the amplitude
    at rise time RISE_MAX, none below `charge_loss_knee`.
    """

    gain: np.ndarray = field(default_factory=lambda: _GAIN.copy())
    offset: np.ndarray = field(default_factory=lambda: _OFFSET.copy())
    gain_tcoef: np.ndarray = field(default_factory=lambda: _GAIN_TCOEF.copy())
    offset_tcoef: np.ndarray = field(default_factory=lambda: _OFFSET_TCOEF.copy())
    rt_gain: np.ndarray = field(default_factory=lambda: _RT_GAIN.copy())
    rt_offset: np.ndarray = field(default_factory=lambda: _RT_OFFSET.copy())
    gain_drift: float = 2.0e-5
    t_ref: float = 3000.0
    temperature_ref: float = 0.0
    charge_loss: float = 0.30
    charge_loss_knee: float = 30.0

    def __post_init__(self):
        for name in ("gain", "offset", "gain_tcoef", "offset_tcoef", "rt_gain", "rt_offset"):
            a = np.asarray(getattr(self, name), dtype=float)
            if a.shape != (N_MODULES,):
                raise ValueError(f"GainModel.{name} must have one value per module ({N_MODULES}), got shape {a.shape}")
            object.__setattr__(self, name, a)
        if np.any(self.gain <= 0) or np.any(self.rt_gain <= 0):
            raise ValueError("GainModel: gains must be > 0")
        if not 0 <= self.charge_loss < 1:
            raise ValueError(f"GainModel: charge_loss must be in [0, 1), got {self.charge_loss}")

    def gain_at(self, module, t, temperature) -> np.ndarray:
        """Gain [keV/channel] of `module` at time `t` [IJD] and `temperature` [degC]."""
        m = np.asarray(module, dtype=np.intp)
        dT = np.asarray(temperature, dtype=float) - self.temperature_ref
        return self.gain[m] * (1.0 + self.gain_tcoef[m] * dT) * (1.0 + self.gain_drift * (np.asarray(t, float) - self.t_ref))

    def offset_at(self, module, t, temperature) -> np.ndarray:
        """Offset [keV] of `module` at `temperature` [degC] (`t` kept for a uniform signature)."""
        m = np.asarray(module, dtype=np.intp)
        dT = np.asarray(temperature, dtype=float) - self.temperature_ref
        return self.offset[m] + self.offset_tcoef[m] * dT + 0.0 * np.asarray(t, float)

    def charge_collection(self, rise_time) -> np.ndarray:
        """Fraction q of the charge collected for a corrected rise time (0-127 scale)."""
        x = (np.asarray(rise_time, dtype=float) - self.charge_loss_knee) / (RISE_MAX - self.charge_loss_knee)
        return 1.0 - self.charge_loss * np.clip(x, 0.0, None)

    def pha(self, energy, rise_time, module, t, temperature) -> np.ndarray:
        """Continuous pulse height [channel] of events of `energy` keV (all arrays broadcast)."""
        amp = np.asarray(energy, dtype=float) * self.charge_collection(rise_time)
        return (amp - self.offset_at(module, t, temperature)) / self.gain_at(module, t, temperature)

    def energy(self, pha, rise_time, module, t, temperature) -> np.ndarray:
        """Energy [keV] from a pulse height: the inverse of `pha`.

        For digitised PHA (`digitise_pha` floors) pass `pha + 0.5` (channel centre) or
        `pha + U(0, 1)` to spread events over the channel.
        """
        amp = np.asarray(pha, dtype=float) * self.gain_at(module, t, temperature) + self.offset_at(module, t, temperature)
        return amp / self.charge_collection(rise_time)

    def raw_rise_time(self, rise_time, module) -> np.ndarray:
        """Raw rise-time channel (continuous) of a corrected rise time."""
        m = np.asarray(module, dtype=np.intp)
        return self.rt_gain[m] * np.asarray(rise_time, dtype=float) + self.rt_offset[m]

    def rise_time(self, raw, module) -> np.ndarray:
        """Corrected rise time (0-127 scale) from a raw rise-time channel: inverse of `raw_rise_time`."""
        m = np.asarray(module, dtype=np.intp)
        return (np.asarray(raw, dtype=float) - self.rt_offset[m]) / self.rt_gain[m]


def digitise_pha(pha) -> np.ndarray:
    """Integer pulse height: floor, clipped to 0..PHA_MAX (int16)."""
    return np.clip(np.floor(pha), 0, PHA_MAX).astype(np.int16)


def digitise_rise_time(raw) -> np.ndarray:
    """Integer raw rise time: floor, clipped to 0..RISE_RAW_MAX (int16)."""
    return np.clip(np.floor(raw), 0, RISE_RAW_MAX).astype(np.int16)


__all__ += ["digitise_pha", "digitise_rise_time"]


# --------------------------------------------------------------------------- rise time

# Mass attenuation coefficient of CdTe [cm2/g], approximate (photo-absorption dominated;
# K edges of Cd at 26.71 keV and Te at 31.81 keV), rounded from standard tables; good to
# ~20%, which is what the depth distribution needs (spectral efficiency is in the RMF).
_MU_E = np.array([10.0, 15.0, 20.0, 25.0, 26.70, 26.72, 30.0, 31.80, 31.82, 40.0, 50.0, 60.0, 80.0,
                  100.0, 150.0, 200.0, 300.0, 500.0, 1000.0, 2000.0])
_MU = np.array([140.0, 47.0, 22.0, 12.3, 10.5, 34.0, 24.7, 21.2, 41.4, 22.7, 12.4, 7.6, 3.6,
                2.0, 0.80, 0.45, 0.20, 0.10, 0.06, 0.045])
CDTE_DENSITY = 5.85
"""g/cm3."""


@dataclass(frozen=True)
class RiseTimeModel:
    """Rise time of ISGRI events from the depth of interaction in the 2 mm CdTe crystals.

    Photons enter through the cathode; the depth z follows exp(-z / lambda(E)) truncated
    to the crystal. Low-energy photons stop near the cathode (short rise time); hard
    ones interact throughout (long rise times, charge loss). rise time =
    rt_cathode + (rt_anode - rt_cathode) z / thickness + N(0, sigma(E)),
    sigma(E) = noise + noise_keV / E (rise time is poorly measured near threshold).
    """

    thickness_mm: float = 2.0
    rt_cathode: float = 24.0
    rt_anode: float = 124.0
    noise: float = 2.0
    noise_keV: float = 60.0

    def attenuation_length_mm(self, energy) -> np.ndarray:
        """Mean free path [mm] of photons of `energy` keV in CdTe."""
        e = np.clip(np.asarray(energy, dtype=float), _MU_E[0], _MU_E[-1])
        mu = np.exp(np.interp(np.log(e), np.log(_MU_E), np.log(_MU)))
        return 10.0 / (mu * CDTE_DENSITY)

    def depth(self, energy, rng: np.random.Generator) -> np.ndarray:
        """Interaction depth [mm] below the cathode, drawn for each energy."""
        lam = self.attenuation_length_mm(energy)
        u = rng.random(np.shape(lam))
        # Inverse CDF of the exponential truncated to [0, thickness].
        return -lam * np.log1p(-u * -np.expm1(-self.thickness_mm / lam))

    def sigma(self, energy) -> np.ndarray:
        return self.noise + self.noise_keV / np.maximum(np.asarray(energy, dtype=float), 1.0)

    def sample(self, energy, rng: np.random.Generator) -> np.ndarray:
        """Corrected rise time (0-127 scale, continuous) of events of `energy` keV."""
        e = np.asarray(energy, dtype=float)
        z = self.depth(e, rng)
        rt = self.rt_cathode + (self.rt_anode - self.rt_cathode) * z / self.thickness_mm
        return rt + self.sigma(e) * rng.standard_normal(e.shape)

    def acceptance(self, energy, n_depth: int = 256) -> np.ndarray:
        """Probability that an event of `energy` keV has RISE_MIN <= rise time < RISE_MAX."""
        from scipy.special import ndtr

        e = np.atleast_1d(np.asarray(energy, dtype=float))
        mean = self.rt_cathode + (self.rt_anode - self.rt_cathode) * self._depth_quantiles(e, n_depth) / self.thickness_mm
        s = self.sigma(e)[:, None]
        p = (ndtr((RISE_MAX - mean) / s) - ndtr((RISE_MIN - mean) / s)).mean(axis=1)
        return p.reshape(np.shape(energy))

    def _depth_quantiles(self, energy: np.ndarray, n_depth: int) -> np.ndarray:
        """(n, n_depth) depths [mm] at the mid-quantiles of each energy's depth distribution."""
        lam = self.attenuation_length_mm(energy)[:, None]
        u = (np.arange(n_depth) + 0.5) / n_depth
        return -lam * np.log1p(-u * -np.expm1(-self.thickness_mm / lam))

    def sample_inside(self, energy, rng: np.random.Generator, max_rounds: int = 100) -> np.ndarray:
        """Rise times conditioned on RISE_MIN <= rt < RISE_MAX (rejection: acceptance > 0.9)."""
        e = np.asarray(energy, dtype=float).ravel()
        rt = self.sample(e, rng)
        for _ in range(max_rounds):
            bad = (rt < RISE_MIN) | (rt >= RISE_MAX)
            if not bad.any():
                return rt.reshape(np.shape(energy))
            rt[bad] = self.sample(e[bad], rng)
        raise RuntimeError("rise-time sampling did not converge: window acceptance too small for some energies")

    def sample_outside(self, energy, rng: np.random.Generator, n_depth: int = 64) -> np.ndarray:
        """Rise times conditioned on lying outside RISE_MIN..RISE_MAX, drawn directly.

        The depth is drawn among `n_depth` equiprobable depth slices with weight
        P(outside | depth), uniformly inside the slice; the rise-time noise then from the
        Gaussian tail(s) beyond the window by inverse CDF. Exact up to the slicing.
        """
        from scipy.special import ndtr, ndtri

        e = np.asarray(energy, dtype=float).ravel()
        if e.size == 0:
            return e.copy()
        span = self.rt_anode - self.rt_cathode
        s = self.sigma(e)[:, None]
        mean = self.rt_cathode + span * self._depth_quantiles(e, n_depth) / self.thickness_mm
        p_lo, p_hi = ndtr((RISE_MIN - mean) / s), ndtr((mean - RISE_MAX) / s)
        w = np.cumsum(p_lo + p_hi, axis=1)
        if np.any(w[:, -1] <= 0):
            raise RuntimeError("rise-time sampling: no probability outside the window for some energies")
        k = (w < rng.random(e.size)[:, None] * w[:, -1:]).sum(axis=1)
        # continuous depth inside the chosen slice, then the tail of the noise
        lam = self.attenuation_length_mm(e)
        u = (k + rng.random(e.size)) / n_depth
        z = -lam * np.log1p(-u * -np.expm1(-self.thickness_mm / lam))
        mu, sd = self.rt_cathode + span * z / self.thickness_mm, s[:, 0]
        lo, hi = ndtr((RISE_MIN - mu) / sd), ndtr((mu - RISE_MAX) / sd)
        low = rng.random(e.size) * (lo + hi) < lo
        v = rng.random(e.size)
        with np.errstate(divide="ignore"):
            rt_lo = mu + sd * ndtri(np.maximum(v * lo, 1e-300))
            rt_hi = mu - sd * ndtri(np.maximum(v * hi, 1e-300))
        rt = np.where(low, np.minimum(rt_lo, np.nextafter(RISE_MIN, -np.inf)), np.maximum(rt_hi, RISE_MAX))
        return rt.reshape(np.shape(energy))

    def rejected_events(self, energy, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Extra events outside the rise-time window that accompany accepted ones.

        The response counts only accepted events; for each accepted event of energy E,
        Poisson((1 - a(E)) / a(E)) events with the same energy and a rise time outside the
        window are added (a = `acceptance`). Returns (index of the parent event, rise time).
        """
        e = np.asarray(energy, dtype=float).ravel()
        grid = np.geomspace(10.0, 2000.0, 160)
        a = np.interp(np.log(np.clip(e, 10.0, 2000.0)), np.log(grid), self.acceptance(grid))
        k = rng.poisson((1.0 - a) / np.maximum(a, 1e-3))
        parent = np.repeat(np.arange(e.size), k)
        return parent, self.sample_outside(e[parent], rng)


# --------------------------------------------------------------------------- dead time

@dataclass(frozen=True)
class DeadTimeModel:
    """ISGRI dead time per module: each processed trigger and each veto strobe blocks it.

    With true rates n_e (detector triggers of the module, accepted + vetoed) and n_v
    (veto-shield strobes), x = tau_event n_e + tau_veto n_v and the dead fraction is
    D = x / (1 + x) (non-paralysable). The counters record only what arrives while the
    module is live, so D = (tau_event N_e + tau_veto N_v) / cycle exactly in expectation:
    the DEAD step measures D from the HK counters with these two constants.

    tau_event [s], tau_veto [s], veto_rate [1/s] far from the belts (scaled by
    `orbit_factor`), vetoed_fraction: share of background triggers in coincidence with
    the veto shield (rejected on board, counted). With the default background these
    give D = 0.22 (ISGRI: 20-30%; the OSA Crab ScW 066500280010 has DEADC = 0.69).
    """

    tau_event: float = 110e-6
    tau_veto: float = 6.0e-6
    veto_rate: float = 45_000.0
    vetoed_fraction: float = 0.35

    def veto_rate_at(self, phase) -> np.ndarray:
        """Veto strobe rate [1/s] at revolution phase `phase`."""
        return self.veto_rate * orbit_factor(phase)

    def vetoed_rate(self, background_rate) -> np.ndarray:
        """Rate [1/s] of triggers rejected by the veto for a background rate passing it."""
        f = self.vetoed_fraction
        return np.asarray(background_rate, dtype=float) * f / (1.0 - f)

    def dead_fraction(self, trigger_rate, veto_rate) -> np.ndarray:
        """Dead fraction from true trigger rates [1/s] per module and the veto rate [1/s]."""
        x = self.tau_event * np.asarray(trigger_rate, dtype=float) + self.tau_veto * np.asarray(veto_rate, dtype=float)
        return x / (1.0 + x)

    def measured_dead_fraction(self, n_triggers, n_veto, cycle_s: float = HK_CYCLE_S) -> np.ndarray:
        """Dead fraction from counted triggers and veto strobes of one cycle (what DEAD computes)."""
        return (self.tau_event * np.asarray(n_triggers, float) + self.tau_veto * np.asarray(n_veto, float)) / cycle_s


# --------------------------------------------------------------------------- noisy pixels

@dataclass(frozen=True)
class NoisyEvents:
    """Events of noisy pixels: times [s since ScW start], pixel (z, y), energy [keV], rise time."""

    time: np.ndarray
    z: np.ndarray
    y: np.ndarray
    energy: np.ndarray
    rise_time: np.ndarray
    bursts: np.ndarray
    """(n_bursts, 4) truth: start [s], stop [s], z, y of each burst."""


@dataclass(frozen=True)
class NoisyPixelModel:
    """A few pixels that fire in short bursts of low-energy events (COR/BIN must flag them).

    Per ScW, Poisson(`pixels_per_scw`) pixels are noisy; each bursts as a Poisson process
    of `bursts_per_hour`; a burst lasts log-uniform `duration_s` and emits
    log-uniform `rate` counts/s. Energies are near the threshold: 13 keV + exponential
    of scale `energy_scale` keV; rise times are uniform over 0-127 (electronic noise).
    """

    pixels_per_scw: float = 3.0
    bursts_per_hour: float = 6.0
    duration_s: tuple[float, float] = (0.5, 30.0)
    rate: tuple[float, float] = (50.0, 800.0)
    energy_scale: float = 5.0

    def sample(self, duration_s: float, rng: np.random.Generator) -> NoisyEvents:
        n_pix = rng.poisson(self.pixels_per_scw)
        pix = rng.choice(N_PIXELS * N_PIXELS, size=n_pix, replace=False)
        n_b = rng.poisson(self.bursts_per_hour * duration_s / 3600.0, size=n_pix)
        which = np.repeat(pix, n_b)
        start = rng.random(which.size) * duration_s
        dur = np.exp(rng.uniform(*np.log(self.duration_s), size=which.size))
        stop = np.minimum(start + dur, duration_s)
        rate = np.exp(rng.uniform(*np.log(self.rate), size=which.size))
        counts = rng.poisson(rate * (stop - start))
        b = np.repeat(np.arange(which.size), counts)
        t = start[b] + rng.random(b.size) * (stop - start)[b]
        order = np.argsort(t, kind="stable")
        t, b = t[order], b[order]
        z, y = np.divmod(which[b], N_PIXELS)
        energy = 13.0 + rng.exponential(self.energy_scale, size=b.size)
        rt = rng.uniform(0.0, 127.0, size=b.size)
        bursts = np.column_stack([start, stop, *np.divmod(which, N_PIXELS)]) if which.size else np.zeros((0, 4))
        return NoisyEvents(t, z, y, energy, rt, bursts)


# --------------------------------------------------------------------------- telemetry gaps

def telemetry_gtis(duration_s: float, rng: np.random.Generator, gaps_per_hour: float = 2.0,
                   gap_s: tuple[float, float] = (1.0, 300.0)) -> tuple[np.ndarray, np.ndarray]:
    """Good-time intervals [s since ScW start] between random telemetry gaps.

    Gaps start as a Poisson process (`gaps_per_hour`), last log-uniform in `gap_s`
    (seconds to minutes); overlapping gaps merge. Returns (start, stop), sorted, disjoint.
    """
    if not duration_s > 0:
        raise ValueError(f"duration must be > 0 s, got {duration_s}")
    n = rng.poisson(gaps_per_hour * duration_s / 3600.0)
    g0 = np.sort(rng.random(n) * duration_s)
    g1 = np.minimum(g0 + np.exp(rng.uniform(*np.log(gap_s), size=n)), duration_s)
    # Merge overlapping gaps: a gap starts a new block when it begins after all earlier ends.
    if n:
        run_end = np.maximum.accumulate(g1)
        new = np.r_[True, g0[1:] > run_end[:-1]]
        idx = np.flatnonzero(new)
        g0, g1 = g0[idx], np.maximum.reduceat(g1, idx)
    start = np.r_[0.0, g1]
    stop = np.r_[g0, duration_s]
    keep = stop > start
    return start[keep], stop[keep]


# --------------------------------------------------------------------------- background

@dataclass(frozen=True)
class BackgroundLine:
    """A background line: `energy` keV, `rate` counts/s over the detector, `name`."""

    name: str
    energy: float
    rate: float


DEFAULT_LINES = (
    BackgroundLine("Cd K-alpha", 23.17, 7.0),
    BackgroundLine("Te K-alpha", 27.47, 8.0),
    BackgroundLine("Te K-beta", 31.0, 2.5),
    BackgroundLine("W K-alpha", 59.3, 30.0),
    BackgroundLine("W K-beta", 67.2, 6.0),
    BackgroundLine("Pb K-alpha", 74.97, 4.0),
    BackgroundLine("Pb K-beta", 84.9, 1.5),
    BackgroundLine("e+e- annihilation", 511.0, 2.5),
)
"""ISGRI background lines: fluorescence of the Cd/Te crystals, of the tungsten mask and
collimator, of the lead shielding, and 511 keV annihilation (Terrier et al. 2003, A&A
411, L167; Lebrun et al. 2003, A&A 411, L141). Rates are the simulator's choice."""

CODING_EFFICIENCY = 0.878
"""Significance of an on-axis source in a decoded ISGRI image over the ideal S / sqrt(S + B).

The ideal assumes every detector pixel sees a mask element fully open or fully closed.
IBIS elements are 2.43 pixels wide, so many pixels are partly shadowed and the balanced
decoding weights them fractionally (`isdc.imaging.decode`). Measured by decoding the
*expected* shadowgram (no noise) of the Crab on axis with this background, 2000 s, the
dead time of every module (tests/test_sim_events.py): 0.878 for 300-470 counts/s."""

BACKGROUND_RATE_25_80 = 340.0
"""Total background rate [counts/s, true, whole detector] at 25-80 keV.

Calibrated on decoded images: a 2000 s ScW on the Crab (179.5 counts/s at 25-80 keV with
`IsgriResponse.default()`) at revolution phase 0.3, dead fraction 0.222 (T_eff = 1555 s),
open fraction 1/2: S = R T_eff / 2 = 1.40e5 counts; SNR = 150 in the decoded image needs
CODING_EFFICIENCY x S / sqrt(S + B) = 150, B = 5.3e5 counts = 340 counts/s x 1555 s
(`background_rate_for_snr`). The decoded expected shadowgram gives 149.8."""


def background_rate_for_snr(source_rate: float, snr: float, t_eff: float, open_fraction: float = 0.5,
                            coding_efficiency: float = CODING_EFFICIENCY) -> float:
    """Background rate [counts/s] that gives a source of `source_rate` the significance `snr`.

    Coded-mask estimate for a balanced decoding: detected source counts S = R T_eff f,
    SNR = coding_efficiency S / sqrt(S + B), B = rate T_eff background counts in the band.
    """
    s = source_rate * t_eff * open_fraction
    b = (coding_efficiency * s / snr) ** 2 - s
    if b < 0:
        raise ValueError(f"SNR {snr} is above what {s:.0f} source counts can give without background")
    return b / t_eff


def crab_snr_estimate(source_rate: float, background_rate: float, t_eff: float, open_fraction: float = 0.5,
                      coding_efficiency: float = CODING_EFFICIENCY) -> float:
    """SNR estimate coding_efficiency S / sqrt(S + B) of a source in one science window (see above)."""
    s = source_rate * t_eff * open_fraction
    return coding_efficiency * s / np.sqrt(s + background_rate * t_eff)


@dataclass(frozen=True, eq=False)
class BackgroundModel:
    """ISGRI instrumental background: spectrum per channel and relative pixel map.

    Continuum in recorded energy E [keV], counts/s/keV over the whole detector:
    C(E) = k (E/30)**-index_low for E < e_break, continued with -index_high above,
    times a low-threshold turn-on 0.5 (1 + erf((E - e_threshold) / (sqrt2 width))).
    Lines (`DEFAULT_LINES`) are Gaussian photopeaks of FWHM fwhm_60 (E/60)**fwhm_index
    keV (ISGRI: ~8% at 60 keV): fluorescence and annihilation photons made next to or in
    the crystals deposit their full energy. k is set so that the total at 25-80 keV is
    `rate_25_80`.

    Pixel map (mean 1 over live pixels, 0 on dead ones): module efficiencies, excess on
    the detector's outer edge (`edge_excess`, 2 pixels) and next to module gaps
    (`border_excess`, 1 pixel), a linear gradient along Z and Y (fraction end to end).
    """

    response: IsgriResponse
    rate_25_80: float = BACKGROUND_RATE_25_80
    index_low: float = 1.1
    e_break: float = 80.0
    index_high: float = 2.5
    e_threshold: float = 15.0
    threshold_width: float = 1.5
    lines: tuple[BackgroundLine, ...] = DEFAULT_LINES
    fwhm_60: float = 4.8
    fwhm_index: float = 0.7
    module_efficiency: tuple[float, ...] = (0.97, 1.02, 1.00, 0.95, 1.04, 0.99, 1.01, 1.03)
    edge_excess: float = 0.30
    border_excess: float = 0.12
    gradient: tuple[float, float] = (0.08, -0.04)
    dead_pixels: tuple[tuple[int, int], ...] = ((3, 17), (18, 90), (40, 41), (63, 5), (71, 122), (88, 64), (101, 33),
                                                (117, 99), (125, 70), (9, 127))
    module_map: np.ndarray = field(default_factory=default_module_map, repr=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def default(cls, response: IsgriResponse | None = None) -> "BackgroundModel":
        return cls(response if response is not None else IsgriResponse.default())

    # ---- spectrum
    def _shape(self, e: np.ndarray) -> np.ndarray:
        from scipy.special import erf

        low = (e / 30.0) ** -self.index_low
        high = (self.e_break / 30.0) ** -self.index_low * (e / self.e_break) ** -self.index_high
        turn_on = 0.5 * (1.0 + erf((e - self.e_threshold) / (np.sqrt(2.0) * self.threshold_width)))
        return np.where(e < self.e_break, low, high) * turn_on

    def _continuum_unit(self) -> np.ndarray:
        """Counts/s per channel of the continuum with k = 1 (Gauss-Legendre per channel)."""
        x, w = np.polynomial.legendre.leggauss(6)
        lo, hi = self.response.e_min[:, None], self.response.e_max[:, None]
        e = 0.5 * (hi - lo) * x + 0.5 * (hi + lo)
        return (0.5 * (hi - lo) * w * self._shape(e)).sum(axis=1)

    @property
    def line_spectrum(self) -> np.ndarray:
        """(n_ch,) counts/s per channel of the lines."""
        from scipy.special import ndtr

        out = np.zeros(self.response.n_channels)
        for line in self.lines:
            sigma = self.fwhm_60 * (line.energy / 60.0) ** self.fwhm_index / (2.0 * np.sqrt(2.0 * np.log(2.0)))
            out += line.rate * (ndtr((self.response.e_max - line.energy) / sigma)
                                - ndtr((self.response.e_min - line.energy) / sigma))
        return out

    @property
    def spectrum(self) -> np.ndarray:
        """(n_ch,) counts/s per channel (true rate, whole detector) on the response's channels."""
        if "spectrum" not in self._cache:
            w = self.response.band_weights(25.0, 80.0)
            lines = self.line_spectrum
            unit = self._continuum_unit()
            k = (self.rate_25_80 - lines @ w) / (unit @ w)
            if k <= 0:
                raise ValueError("background lines alone exceed rate_25_80")
            self._cache["spectrum"] = k * unit + lines
        return self._cache["spectrum"]

    def rate(self, e_lo: float, e_hi: float) -> float:
        """Background rate [counts/s, whole detector] at e_lo-e_hi keV."""
        return float(self.spectrum @ self.response.band_weights(e_lo, e_hi))

    @property
    def total_rate(self) -> float:
        return float(self.spectrum.sum())

    # ---- pixels
    @property
    def spatial_map(self) -> np.ndarray:
        """(128, 128) relative background rate per pixel `[z, y]`, mean 1 over live pixels."""
        if "map" not in self._cache:
            z, y = np.mgrid[0:N_PIXELS, 0:N_PIXELS] + 0.5
            m = np.asarray(self.module_efficiency, dtype=float)[self.module_map]
            m = m * (1.0 + self.gradient[0] * (z / N_PIXELS - 0.5) + self.gradient[1] * (y / N_PIXELS - 0.5))
            zi, yi = np.mgrid[0:N_PIXELS, 0:N_PIXELS]
            edge = (np.minimum(zi, N_PIXELS - 1 - zi) < 2) | (np.minimum(yi, N_PIXELS - 1 - yi) < 2)
            mz, my = MODULE_PIXELS
            border = ((zi % mz == 0) | (zi % mz == mz - 1) | (yi % my == 0) | (yi % my == my - 1)) & ~edge
            m = m * np.where(edge, 1.0 + self.edge_excess, np.where(border, 1.0 + self.border_excess, 1.0))
            for dz, dy in self.dead_pixels:
                m[dz, dy] = 0.0
            m = m / m[m > 0].mean()
            m.setflags(write=False)
            self._cache["map"] = m
        return self._cache["map"]

    @property
    def live_pixels(self) -> np.ndarray:
        """(128, 128) bool: pixels that record events."""
        return self.spatial_map > 0

    # ---- sampling
    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`n` background events: (z, y, energy [keV]); pixel and energy independent."""
        if "sampler" not in self._cache:
            self._cache["sampler"] = ChannelSampler(self.response.e_min, self.response.e_max, self.spectrum)
            self._cache["pixels"] = AliasTable(self.spatial_map)
        z, y = np.divmod(self._cache["pixels"].sample(n, rng), N_PIXELS)
        return z, y, self._cache["sampler"].sample(n, rng)

    def expected_counts(self, live_time_s: float, scale: float = 1.0) -> float:
        """Expected number of background events in `live_time_s` (all channels)."""
        return self.total_rate * live_time_s * scale


# --------------------------------------------------------------------------- housekeeping

@dataclass(frozen=True)
class HousekeepingModel:
    """ISGRI housekeeping truth: module temperatures and bias voltage.

    Temperatures [degC]: per-module mean `temperature_mean` (ISGRI runs at -5..+10
    degC), an orbital swing `temperature_swing` x cos(2 pi phase) (warmer near apogee
    at phase 0.5), Gaussian noise. Bias voltage [V]: `bias` with `bias_noise` jitter.
    """

    temperature_mean: tuple[float, ...] = (-1.2, -0.6, 0.3, -0.9, 0.8, -0.3, 0.5, -1.5)
    temperature_swing: float = 1.5
    temperature_noise: float = 0.05
    bias: float = -100.0
    bias_noise: float = 0.2

    def temperatures(self, phase, rng: np.random.Generator | None = None) -> np.ndarray:
        """(n, 8) module temperatures [degC] at revolution phases `phase` (n,)."""
        p = np.atleast_1d(np.asarray(phase, dtype=float))
        t = np.asarray(self.temperature_mean)[None, :] - self.temperature_swing * np.cos(2 * np.pi * p)[:, None]
        if rng is not None:
            t = t + self.temperature_noise * rng.standard_normal(t.shape)
        return t


@dataclass(frozen=True)
class IsgriHK:
    """Housekeeping of one science window, one row per 8 s cycle, one column per module.

    time: (n,) start of each cycle [s since ScW start]; temperature [degC], bias [V];
    counters per cycle: n_accepted (events sent to telemetry), n_vetoed (triggers
    rejected by the veto), n_veto (veto strobes seen while live); truth: dead_fraction,
    live_time [s].
    """

    time: np.ndarray
    temperature: np.ndarray
    bias: np.ndarray
    n_accepted: np.ndarray
    n_vetoed: np.ndarray
    n_veto: np.ndarray
    dead_fraction: np.ndarray
    live_time: np.ndarray

    @property
    def n_triggers(self) -> np.ndarray:
        return self.n_accepted + self.n_vetoed


def simulate_hk(duration_s: float, phase, accepted_rate, background_rate, rng: np.random.Generator,
                dead_time: DeadTimeModel = DeadTimeModel(), hk: HousekeepingModel = HousekeepingModel(),
                cycle_s: float = HK_CYCLE_S) -> IsgriHK:
    """Housekeeping and dead time of one ScW.

    duration_s : ScW length [s]; phase : revolution phase at each cycle start, scalar or
    (n_cycles,); accepted_rate : true rate [1/s] of events that pass the veto, per module,
    (8,) or (n_cycles, 8); background_rate : the background part of it (sets the vetoed
    triggers). Counters are Poisson draws of the live-time rates.
    """
    n = int(np.ceil(duration_s / cycle_s))
    t = np.arange(n) * cycle_s
    length = np.minimum(cycle_s, duration_s - t)[:, None]
    ph = np.broadcast_to(np.asarray(phase, dtype=float), (n,))
    acc = np.broadcast_to(np.asarray(accepted_rate, dtype=float), (n, N_MODULES))
    vet = dead_time.vetoed_rate(np.broadcast_to(np.asarray(background_rate, dtype=float), (n, N_MODULES)))
    veto = dead_time.veto_rate_at(ph)[:, None] * np.ones((1, N_MODULES))
    dead = dead_time.dead_fraction(acc + vet, veto)
    live = (1.0 - dead) * length
    return IsgriHK(
        time=t,
        temperature=hk.temperatures(ph, rng),
        bias=hk.bias + hk.bias_noise * rng.standard_normal((n, N_MODULES)),
        n_accepted=rng.poisson(acc * live),
        n_vetoed=rng.poisson(vet * live),
        n_veto=rng.poisson(veto * live),
        dead_fraction=dead,
        live_time=live,
    )
