"""ISGRI events, housekeeping and truth of one simulated science window (pure numpy).

`simulate_scw(plan, sky, tc, rng)` turns the models of `isdc.sim` and
`isdc.instruments.isgri` into what the spacecraft would have sent for one ScW:

1. **Sources through the mask.** A source of rate R (on-axis, whole detector, open mask:
   the OSA convention of docs/imaging.md) gives pixel k the expected counts
   ``R * E * W_k * pif_k * cos(theta) / n_pixels`` (`isdc.imaging.pif.response`), where
   ``W`` is 1 on live pixels and 0 on dead ones and ``E`` the integral of the source's flux
   factor over the time (flares, periodic modulation; s) or, for a GRB, the share of its
   fluence. In a **pointing** every source and GRB in the partially coded field gets the
   exact PIF at the ScW's mean attitude (`isdc.imaging.projection.radec_to_tan`) and
   Poisson counts per pixel. In a **slew** the sources move across the field: photons are
   traced one by one, each at its own time and attitude (uniform on the detector plane,
   kept when they land on the active area of a live pixel through an open mask element),
   the Monte-Carlo form of the same PIF, so sources are smeared along the track.
2. **Rise time.** The response counts only events with rise time in RISE_MIN..RISE_MAX;
   the detector records all. Channel rates are divided by the window acceptance a(E)
   (`RiseTimeModel.acceptance`) and every event gets a rise time drawn from its depth of
   interaction (`RiseTimeModel.sample`): a fraction a(E) falls in the window, exactly the
   response's rate. Long rise times lose charge (`GainModel.charge_collection`).
3. **Background** (`BackgroundModel`): spectrum / a(E), pixel map (module efficiencies,
   edges, dead pixels), rate x `orbit_factor` of the revolution phase (belts).
4. **Noisy pixels** (`NoisyPixelModel`): bursts of low-energy events.
5. **Dead time per module** (`DeadTimeModel`): in each 8 s HK cycle the triggers that
   arrived in a module (all the events above, plus background triggers rejected by the
   veto) and the veto strobes give x = (tau_e N_trig + tau_v N_strobe) / cycle and the
   dead fraction D = x / (1 + x); each event survives with probability 1 - D. The HK
   counters count what arrived while live (TRIG_CNT = the surviving events, exactly), so
   (tau_e (TRIG_CNT + VETO_CNT) + tau_v VETO_STB) / cycle estimates D without bias.
6. **Telemetry gaps** (`telemetry_gtis`): no events and no HK rows (a row is lost when
   the start of its cycle falls in a gap); the on-board counters still counted.
7. **PHA** through the true gain (`GainModel.pha`) at the module temperature of the
   event's HK cycle (the MDU_TEMP written, float32), and the raw rise time, both digitised.
8. **Time**: the simulation's seconds since the ScW start are on-board seconds: OBT =
   OBTSTART + t x 2**20 ticks, quantised to ISGRI's 2**-14 s (64 ticks); TIME = IJD of
   that OBT through the time correlation. HK cycles are 8 on-board seconds from OBTSTART,
   so an event's OBT falls in the cycle that counted it.

Component of each event (`ScwSimulation.component`): sky source index 0..n_src-1, GRB
``GRB_BASE + k``, `BACKGROUND` or `NOISY`. Everything is vectorised (no per-event Python
loop); benchmarks/bench_simulate.py times a 2000 s Crab ScW.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from isdc.imaging.geometry import CodedMaskGeometry
from isdc.imaging.pif import cos_theta, overlap_fractions, pif
from isdc.imaging.projection import Attitude, radec_to_tan, radec_to_unit, unit_to_radec
from isdc.instruments.isgri.detector_model import (
    HK_CYCLE_S,
    N_MODULES,
    N_PIXELS,
    RISE_MAX,
    RISE_MIN,
    BackgroundModel,
    DeadTimeModel,
    GainModel,
    HousekeepingModel,
    NoisyPixelModel,
    RiseTimeModel,
    default_module_map,
    digitise_pha,
    digitise_rise_time,
    orbit_factor,
    telemetry_gtis,
)
from isdc.instruments.isgri.geometry import isgri_geometry
from isdc.instruments.isgri.response import AliasTable, ChannelSampler, IsgriResponse
from isdc.sim.plan import ScwPlan, revolution_phase
from isdc.sim.sky import PointSource, Sky
from isdc.time import TimeCorrelation

__all__ = [
    "BACKGROUND",
    "NOISY",
    "GRB_BASE",
    "STANDARD_BANDS",
    "EVENT_TICKS",
    "TICKS_PER_SECOND",
    "Instrument",
    "SkyEmitters",
    "ScwSimulation",
    "simulate_scw",
    "mean_attitude",
    "cor_energy",
    "cor_rise_time",
    "band_key",
]

SECONDS_PER_DAY = 86400.0
BACKGROUND = -1
"""Component label of background events."""
NOISY = -2
"""Component label of noisy-pixel events."""
GRB_BASE = 1_000_000
"""Component label of the k-th GRB of the sky: GRB_BASE + k."""
STANDARD_BANDS = ((20.0, 40.0), (40.0, 100.0), (25.0, 80.0))
"""Energy bands [keV] the truth reports counts and rates in."""
EVENT_TICKS = 64
"""ISGRI event time resolution in OBT ticks (2**-14 s = 61.035 us)."""
TICKS_PER_SECOND = 2**20
"""OBT ticks per on-board second."""
_VARIABILITY_STEP_S = 8.0  # time step on which flux factors are integrated (finer for short periods)
_SLEW_GRID_S = 1.0  # attitude grid of a slew; photon directions are interpolated in between


def band_key(band: tuple[float, float]) -> str:
    """'20-40' for (20.0, 40.0): the key of a band in the truth."""
    return f"{band[0]:g}-{band[1]:g}"


# --------------------------------------------------------------------------- instrument

@dataclass(frozen=True, eq=False)
class Instrument:
    """The simulated IBIS/ISGRI: response, background, gain, rise time, dead time, noisy
    pixels, housekeeping, mask geometry and telemetry-gap statistics (gaps per hour,
    log-uniform gap length range in s)."""

    response: IsgriResponse
    background: BackgroundModel
    gain: GainModel = field(default_factory=GainModel)
    rise_time: RiseTimeModel = field(default_factory=RiseTimeModel)
    dead_time: DeadTimeModel = field(default_factory=DeadTimeModel)
    noisy: NoisyPixelModel = field(default_factory=NoisyPixelModel)
    hk: HousekeepingModel = field(default_factory=HousekeepingModel)
    geometry: CodedMaskGeometry = field(default_factory=isgri_geometry)
    gaps_per_hour: float = 2.0
    gap_s: tuple[float, float] = (1.0, 300.0)
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if self.geometry.logical_shape != (N_PIXELS, N_PIXELS):
            raise ValueError(f"instrument geometry {self.geometry.name}: detector {self.geometry.logical_shape}, "
                             f"the ISGRI models need {N_PIXELS} x {N_PIXELS}")

    @classmethod
    def default(cls, gain: GainModel | None = None) -> "Instrument":
        """The simulator's ISGRI (`IsgriResponse.default()` etc.), with `gain` if given."""
        resp = IsgriResponse.default()
        return cls(resp, BackgroundModel.default(resp), gain if gain is not None else GainModel())

    def _cached(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def acceptance(self) -> np.ndarray:
        """(n_ch,) rise-time window acceptance a(E) at each channel's centre energy."""
        r = self.response
        return self._cached("acceptance", lambda: self.rise_time.acceptance(0.5 * (r.e_min + r.e_max)))

    @property
    def module_map(self) -> np.ndarray:
        """(16384,) module of each logical pixel, flat index z * 128 + y."""
        return self._cached("modules", lambda: default_module_map().ravel())

    @property
    def live_pixels(self) -> np.ndarray:
        """(128, 128) bool: pixels that record events (the background model's dead pixels do not)."""
        return self.background.live_pixels

    @property
    def background_all(self) -> np.ndarray:
        """(n_ch,) background counts/s per channel, rise time in the window or not."""
        return self._cached("bkg_all", lambda: self.background.spectrum / self.acceptance)

    @property
    def background_sampler(self) -> ChannelSampler:
        r = self.response
        return self._cached("bkg_sampler", lambda: ChannelSampler(r.e_min, r.e_max, self.background_all))

    @property
    def background_pixels(self) -> np.ndarray:
        """(16384,) share of the background in each pixel (sums to 1)."""
        def make():
            m = self.background.spatial_map.ravel()
            return m / m.sum()
        return self._cached("bkg_pixels", make)

    @property
    def background_modules(self) -> np.ndarray:
        """(8,) share of the background in each module."""
        return self._cached("bkg_modules", lambda: np.bincount(self.module_map, self.background_pixels,
                                                               minlength=N_MODULES))

    def pixel_response(self, tan_y: float, tan_z: float) -> np.ndarray:
        """(16384,) expected share of a source's rate recorded by each logical pixel:
        `pif * cos(theta) / n_pixels` (`isdc.imaging.pif.response`), 0 on dead pixels."""
        g = self.geometry
        p = g.to_logical(pif(g, tan_y, tan_z)).ravel() * self.live_pixels.ravel()
        return p * (float(cos_theta(tan_y, tan_z)) / g.n_pixels)

    def module_response(self, tan_y: float, tan_z: float) -> np.ndarray:
        """(8,) `pixel_response` summed per module, without making the pixel map.

        The PIF is separable (Oz T Oy^T), so its sum over a module's rows and columns is
        (sum of the rows of Oz) T (sum of the columns of Oy): exact and ~30x cheaper. The
        dead pixels' own PIFs are subtracted.
        """
        g = self.geometry
        rows, cols, dead_r, dead_c, dead_m = self._cached("module_groups", self._module_groups)
        f = g.mask_distance_mm
        zc, yc = g.pixel_centres_mm
        ez, ey = g.mask_edges_mm
        oz = overlap_fractions(zc + f * tan_z, g.pixel_active_mm, ez)
        oy = overlap_fractions(yc + f * tan_y, g.pixel_active_mm, ey)
        s = (rows @ oz) @ g.mask @ (cols @ oy).T  # (modules along Z, modules along Y)
        out = s.ravel()  # module = iz * n_y + iy, the geometry's numbering
        if dead_r.size:
            dead = np.einsum("ij,jk,ik->i", oz[dead_r], g.mask, oy[dead_c])
            out = out - np.bincount(dead_m, dead, minlength=out.size)
        return np.clip(out, 0.0, None) * (float(cos_theta(tan_y, tan_z)) / g.n_pixels)

    def _module_groups(self):
        g = self.geometry
        mz, my = g.module_pixels
        nz, ny = g.n_modules
        rows = np.zeros((nz, g.shape[0]))
        cols = np.zeros((ny, g.shape[1]))
        lz, _ = g.logical_to_gapped(np.arange(N_PIXELS), np.zeros(N_PIXELS, int))
        _, ly = g.logical_to_gapped(np.zeros(N_PIXELS, int), np.arange(N_PIXELS))
        rows[np.arange(N_PIXELS) // mz, lz] = 1.0
        cols[np.arange(N_PIXELS) // my, ly] = 1.0
        dz, dy = np.nonzero(~self.live_pixels)
        gr, gc = g.logical_to_gapped(dz, dy)
        return rows, cols, gr, gc, self.module_map[dz * N_PIXELS + dy]

    def ray_trace(self, tan_y: np.ndarray, tan_z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Logical pixel (flat index) hit by photons of directions (tan_y, tan_z), or -1.

        Each photon lands uniformly on the detector plane (the whole gapped array) and is
        recorded when it falls on the active area of a live pixel and crossed the mask
        plane through an open element (transmission-weighted). Per photon that reaches
        the plane, the chance to be recorded in pixel k is pif_k a^2 / A_plane (a = active
        side): with `photons_per_rate` photons per unit of R E cos(theta), pixel k gets
        R E pif_k cos(theta) / n_pixels, as `pixel_response`.
        """
        g = self.geometry
        lookup = self._cached("gapped_to_logical", lambda: g.to_gapped(
            np.where(self.live_pixels, np.arange(N_PIXELS * N_PIXELS).reshape(N_PIXELS, N_PIXELS), -1), fill=-1))
        n = np.size(tan_y)
        pitch, act = g.pixel_pitch_mm, g.pixel_active_mm
        hz, hy = 0.5 * g.shape[0] * pitch, 0.5 * g.shape[1] * pitch
        z = (rng.random(n) * 2.0 - 1.0) * hz
        y = (rng.random(n) * 2.0 - 1.0) * hy
        iz = np.minimum(((z + hz) / pitch).astype(np.int64), g.shape[0] - 1)
        iy = np.minimum(((y + hy) / pitch).astype(np.int64), g.shape[1] - 1)
        zc, yc = g.pixel_centres_mm
        active = (np.abs(z - zc[iz]) < 0.5 * act) & (np.abs(y - yc[iy]) < 0.5 * act)
        ez, ey = g.mask_edges_mm
        jz = np.floor((z + g.mask_distance_mm * np.asarray(tan_z) - ez[0]) / g.mask_element_mm).astype(np.int64)
        jy = np.floor((y + g.mask_distance_mm * np.asarray(tan_y) - ey[0]) / g.mask_element_mm).astype(np.int64)
        on_mask = (jz >= 0) & (jz < g.mask.shape[0]) & (jy >= 0) & (jy < g.mask.shape[1])
        trans = np.where(on_mask, g.mask[np.clip(jz, 0, g.mask.shape[0] - 1), np.clip(jy, 0, g.mask.shape[1] - 1)], 0.0)
        through = rng.random(n) < trans
        return np.where(active & through, lookup[iz, iy], -1)

    @property
    def photons_per_rate(self) -> float:
        """Photons reaching the detector plane per unit of R x exposure x cos(theta): the
        plane's area over the active area of the real pixels."""
        g = self.geometry
        return g.shape[0] * g.shape[1] * g.pixel_pitch_mm ** 2 / (g.n_pixels * g.pixel_active_mm ** 2)


# --------------------------------------------------------------------------- emitters

@dataclass(frozen=True, eq=False)
class SkyEmitters:
    """The sky folded through the instrument once (reuse it over the ScWs of a run).

    labels          : (n,) component labels: sources 0..n_src-1, then GRB_BASE + k
    ra, dec         : (n,) positions [deg] in the same order
    channels        : (n, n_ch) per channel, inside the rise-time window (what the response
                      gives): counts/s for sources (on axis, whole detector, open mask),
                      counts for GRBs (the whole burst)
    """

    sky: Sky
    instrument: Instrument
    labels: np.ndarray = field(init=False)
    ra: np.ndarray = field(init=False)
    dec: np.ndarray = field(init=False)
    channels: np.ndarray = field(init=False)
    variable: np.ndarray = field(init=False)
    _samplers: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        r = self.instrument.response
        sky = self.sky
        src = sky.channel_rates(r) if len(sky) else np.zeros((0, r.n_channels))
        grb = [r.fold_many(g.fluence_spectrum.photon_flux(r.energ_lo, r.energ_hi)[None, :])[0] for g in sky.grbs]
        put = object.__setattr__
        put(self, "labels", np.r_[np.arange(len(sky)), GRB_BASE + np.arange(len(sky.grbs))].astype(np.int64))
        put(self, "ra", np.r_[sky.ra, [g.ra for g in sky.grbs]])
        put(self, "dec", np.r_[sky.dec, [g.dec for g in sky.grbs]])
        put(self, "channels", np.vstack([src, np.array(grb).reshape(len(grb), r.n_channels)]))
        put(self, "variable", np.array([bool(s.variability) for s in sky.sources], dtype=bool))

    def row(self, label: int) -> int:
        return int(label) - GRB_BASE + len(self.sky) if label >= GRB_BASE else int(label)

    def total_all(self, label: int) -> float:
        """Rate (counts/s) or counts (GRB) in all channels, rise time in the window or not."""
        return float((self.channels[self.row(label)] / self.instrument.acceptance).sum())

    def sampler(self, label: int) -> ChannelSampler:
        """Energies of all recorded events (any rise time) of a source or GRB."""
        if label not in self._samplers:
            r = self.instrument.response
            self._samplers[label] = ChannelSampler(r.e_min, r.e_max,
                                                   self.channels[self.row(label)] / self.instrument.acceptance)
        return self._samplers[label]

    def band_rate(self, label: int, band: tuple[float, float]) -> float:
        """In-window rate (counts/s) or counts (GRB) in `band` keV."""
        return float(self.channels[self.row(label)] @ self.instrument.response.band_weights(*band))

    def flux_factor(self, label: int, t0: float, t_s: np.ndarray) -> np.ndarray:
        """Flux factor of a source at `t_s` s after IJD `t0` (1 for constant sources)."""
        if label >= GRB_BASE or not self.variable[label]:
            return np.ones(np.shape(t_s))
        return self.sky.sources[label].flux_factor(t0 + np.asarray(t_s) / SECONDS_PER_DAY)


def _source_profile(src: PointSource, t0: float, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """Time grid edges [s] over [a, b) and the flux factor integrated in each bin [s]."""
    step = _VARIABILITY_STEP_S
    periods = [v.period for v in src.variability if hasattr(v, "period")]
    if periods:
        step = min(step, min(periods) / 32.0)
    n = max(1, int(np.ceil((b - a) / step)))
    edges = np.linspace(a, b, n + 1)
    mid = 0.5 * (edges[1:] + edges[:-1])
    return edges, src.flux_factor(t0 + mid / SECONDS_PER_DAY) * np.diff(edges)


def _cycle_exposure(emit: SkyEmitters, label: int, t0: float, a: float, b: float, c_start: np.ndarray,
                    c_len: np.ndarray) -> np.ndarray:
    """Flux-factor integral [s] (GRB: fluence share) of [a, b) within each HK cycle."""
    lo = np.maximum(a, c_start)
    hi = np.maximum(np.minimum(b, c_start + c_len), lo)
    if label >= GRB_BASE:
        g = emit.sky.grbs[label - GRB_BASE]
        off = (t0 - g.time) * SECONDS_PER_DAY
        return g.fraction_between(lo + off, hi + off)
    if not emit.variable[label]:
        return hi - lo
    edges, w = _source_profile(emit.sky.sources[label], t0, a, b)
    # integral of the binned profile between lo and hi of each cycle
    cum = np.r_[0.0, np.cumsum(w)]
    return np.interp(hi, edges, cum) - np.interp(lo, edges, cum)


def _sample_times(emit: SkyEmitters, label: int, t0: float, a: float, b: float, n: int,
                  rng: np.random.Generator) -> np.ndarray:
    """`n` event times [s since ScW start] in [a, b) following the component's light curve."""
    if label >= GRB_BASE:
        g = emit.sky.grbs[label - GRB_BASE]
        off = (t0 - g.time) * SECONDS_PER_DAY
        t = g.sample_times_between(n, a + off, b + off, rng) - off
    elif not emit.variable[label]:
        t = a + (b - a) * rng.random(n)
    else:
        edges, w = _source_profile(emit.sky.sources[label], t0, a, b)
        k = np.minimum(np.searchsorted(np.cumsum(w), rng.random(n) * w.sum(), side="right"), w.size - 1)
        t = edges[k] + rng.random(n) * np.diff(edges)[k]
    return np.clip(t, a, np.nextafter(b, a))


def _pixels(p: np.ndarray, mu: float, rng: np.random.Generator) -> np.ndarray:
    """Pixel indices of Poisson(mu) events distributed as `p` (sums to 1): per-pixel Poisson
    draws for bright components, a Poisson total and inverse-CDF pixels for faint ones
    (the same process, cheaper)."""
    if mu > 0.25 * p.size:
        return np.repeat(np.arange(p.size, dtype=np.int32), rng.poisson(mu * p))
    n = rng.poisson(mu)
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    cdf = np.cumsum(p)
    return np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), p.size - 1).astype(np.int32)


# --------------------------------------------------------------------------- attitude

def mean_attitude(plan: ScwPlan, step_s: float = 8.0) -> Attitude:
    """Mean attitude of a ScW: normalised mean X and Z axes of its `step_s` samples."""
    att = plan.sample_attitude(step_s)
    x = radec_to_unit(att.ra_x, att.dec_x).mean(axis=0)
    z = radec_to_unit(att.ra_z, att.dec_z).mean(axis=0)
    return Attitude(*map(float, unit_to_radec(x)), *map(float, unit_to_radec(z)))


def _attitudes(plan: ScwPlan, t_s: np.ndarray) -> list[Attitude]:
    a = plan.attitude(plan.tstart + np.asarray(t_s) / SECONDS_PER_DAY)
    return [Attitude(*map(float, v)) for v in zip(a.ra_x, a.dec_x, a.ra_z, a.dec_z)]


# --------------------------------------------------------------------------- COR truth

def cor_rise_time(rise_raw, module, gain: GainModel) -> np.ndarray:
    """Corrected rise time (0-127 scale) of raw rise-time channels (their centres): the
    ISGR-GAIN-MOD formula (RISE_TIME + 0.5 - RT_OFFSET) / RT_GAIN."""
    return gain.rise_time(np.asarray(rise_raw) + 0.5, module)


def cor_energy(pha, rise_raw, module, time_ijd, temperature, gain: GainModel) -> np.ndarray:
    """Energy [keV] of digitised events through the true gain: ((PHA + 0.5) gain + offset) / q,
    the ISGR-GAIN-MOD formula the COR step applies (temperature of the event's HK cycle)."""
    return gain.energy(np.asarray(pha) + 0.5, cor_rise_time(rise_raw, module, gain), module, time_ijd, temperature)


# --------------------------------------------------------------------------- the ScW

@dataclass(frozen=True, eq=False)
class ScwSimulation:
    """One simulated science window: events (in time order), HK, and the truth behind them.

    events : ISGR-EVTS-ALL columns TIME [IJD], OB_TIME, ISGRI_PHA, RISE_TIME, ISGRI_Y, ISGRI_Z
    component, energy, rise_time, module : per event, the truth: who made it, its energy
        [keV] and corrected rise time before digitisation, its module
    hk : ISGR-HK..-CNV columns of the rows that reached the ground
    cycle_start, cycle_length [s], dead_fraction (n_cycles, 8), temperature (n_cycles, 8)
        [degC, as written], gti_overlap [s of each cycle in good time], hk_row (the cycle's
        HK row exists): the truth per HK cycle
    gti_s : (start, stop) good-time intervals [s since ScW start]
    obt_start, obt_stop : OBT of TSTART and TSTOP
    clock : the time correlation (OBT <-> IJD) the times were made with
    sources : truth of each source and GRB in the field (dicts; docs/simulator.md)
    background : truth of the background (dict)
    noisy_bursts : (n, 5) start [s], stop [s], z, y, events recorded
    band_counts : events of all components with COR energy in each standard band and rise
        time in the window
    """

    plan: ScwPlan
    attitude: Attitude
    events: dict
    component: np.ndarray
    energy: np.ndarray
    rise_time: np.ndarray
    module: np.ndarray
    hk: dict
    cycle_start: np.ndarray
    cycle_length: np.ndarray
    dead_fraction: np.ndarray
    temperature: np.ndarray
    gti_overlap: np.ndarray
    hk_row: np.ndarray
    gti_s: tuple[np.ndarray, np.ndarray]
    obt_start: int
    obt_stop: int
    clock: TimeCorrelation
    gain: GainModel
    sources: list = field(default_factory=list)
    background: dict = field(default_factory=dict)
    noisy_bursts: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))
    band_counts: dict = field(default_factory=dict)

    @property
    def n_events(self) -> int:
        return int(self.component.size)

    def ijd(self, t_s) -> np.ndarray:
        """IJD of on-board seconds since the ScW start (through OBT and the time correlation)."""
        obt = self.obt_start + np.rint(np.asarray(t_s, dtype=float) * TICKS_PER_SECOND).astype(np.int64)
        return self.clock.obt_to_ijd(obt)

    @property
    def gti_ijd(self) -> tuple[np.ndarray, np.ndarray]:
        """Good-time intervals [IJD]."""
        return self.ijd(self.gti_s[0]), self.ijd(self.gti_s[1])

    @property
    def ontime(self) -> float:
        """Good time [s]."""
        return float((self.gti_s[1] - self.gti_s[0]).sum())

    def live_time(self) -> np.ndarray:
        """(8,) live time [s] of each module within the good time."""
        return ((1.0 - self.dead_fraction) * self.gti_overlap[:, None]).sum(axis=0)

    def event_cycle(self) -> np.ndarray:
        """HK cycle of each event (from its OBT: cycles are 8 on-board seconds)."""
        k = (self.events["OB_TIME"] - self.obt_start) // int(HK_CYCLE_S * TICKS_PER_SECOND)
        return np.clip(k, 0, self.cycle_start.size - 1)

    def cor(self) -> tuple[np.ndarray, np.ndarray]:
        """(energy keV, corrected rise time) of every event from its digitised PHA and raw
        rise time through the true gain: what a perfect COR step computes."""
        ev = self.events
        temp = self.temperature[self.event_cycle(), self.module]
        return (cor_energy(ev["ISGRI_PHA"], ev["RISE_TIME"], self.module, ev["TIME"], temp, self.gain),
                cor_rise_time(ev["RISE_TIME"], self.module, self.gain))

    def selected(self, band: tuple[float, float], energy: np.ndarray | None = None,
                 rise_time: np.ndarray | None = None) -> np.ndarray:
        """Bool per event: COR energy in [e_lo, e_hi) keV and rise time in the window."""
        if energy is None or rise_time is None:
            energy, rise_time = self.cor()
        return (energy >= band[0]) & (energy < band[1]) & (rise_time >= RISE_MIN) & (rise_time < RISE_MAX)


@dataclass
class _Pieces:
    """Events under construction, by component."""

    t: list = field(default_factory=list)
    pix: list = field(default_factory=list)
    lab: list = field(default_factory=list)
    e: list = field(default_factory=list)

    def add(self, t, pix, label, energy):
        self.t.append(np.asarray(t, dtype=float))
        self.pix.append(np.asarray(pix, dtype=np.int32))
        self.lab.append(np.full(np.size(pix), label, dtype=np.int32))
        self.e.append(np.asarray(energy, dtype=float))


def _in_field(inst: Instrument, ty: np.ndarray, tz: np.ndarray) -> np.ndarray:
    half_z, half_y = inst.geometry.partially_coded_half_tan
    with np.errstate(invalid="ignore"):
        return np.isfinite(ty) & np.isfinite(tz) & (np.abs(ty) < half_y) & (np.abs(tz) < half_z)


def _pointing_sources(plan: ScwPlan, att: Attitude, emit: SkyEmitters, inst: Instrument, c_start, c_len,
                      rng, out: _Pieces) -> dict:
    """Events of the sources and GRBs in the field of a pointing (exact PIF, mean attitude)."""
    T, t0 = plan.duration_s, plan.tstart
    ty, tz = radec_to_tan(att, emit.ra, emit.dec)
    active = _active_grbs(emit, plan)
    recs = {}
    for i in np.flatnonzero(_in_field(inst, ty, tz) & active):
        lab = int(emit.labels[i])
        p = inst.pixel_response(float(ty[i]), float(tz[i]))
        psum = float(p.sum())
        if psum <= 0.0:
            continue
        e_c = _cycle_exposure(emit, lab, t0, 0.0, T, c_start, c_len)
        recs[lab] = {"tan_y": float(ty[i]), "tan_z": float(tz[i]),
                     "pc": e_c[:, None] * np.bincount(inst.module_map, p, minlength=N_MODULES)[None, :]}
        pix = _pixels(p / psum, emit.total_all(lab) * float(e_c.sum()) * psum, rng)
        if pix.size:
            out.add(_sample_times(emit, lab, t0, 0.0, T, pix.size, rng), pix, lab, emit.sampler(lab).sample(pix.size, rng))
    return recs


def _active_grbs(emit: SkyEmitters, plan: ScwPlan) -> np.ndarray:
    """Bool per emitter: sources, and GRBs emitting during the ScW."""
    on = set(id(g) for g in emit.sky.grbs_between(plan.tstart, plan.tstop))
    return np.r_[np.ones(len(emit.sky), bool), [id(g) in on for g in emit.sky.grbs]].astype(bool)


def _slew_sources(plan: ScwPlan, emit: SkyEmitters, inst: Instrument, c_start, c_len, rng, out: _Pieces) -> dict:
    """Events of the sources and GRBs crossing the field during a slew (photons traced one
    by one at their own time and attitude)."""
    T, t0 = plan.duration_s, plan.tstart
    n = max(1, int(np.ceil(T / _SLEW_GRID_S)))
    edges = np.linspace(0.0, T, n + 1)
    mid = 0.5 * (edges[1:] + edges[:-1])
    dirs = np.array([radec_to_tan(a, emit.ra, emit.dec) for a in _attitudes(plan, mid)])  # (n, 2, n_emit)
    inside = _in_field(inst, dirs[:, 0], dirs[:, 1]) & _active_grbs(emit, plan)[None, :]
    c_mid = c_start + 0.5 * c_len
    c_dirs = None
    recs = {}
    for i in np.flatnonzero(inside.any(axis=0)):
        lab = int(emit.labels[i])
        ty, tz = dirs[:, 0, i], dirs[:, 1, i]
        cos = np.where(inside[:, i], cos_theta(np.where(inside[:, i], ty, 0.0), np.where(inside[:, i], tz, 0.0)), 0.0)
        if lab >= GRB_BASE:
            g = emit.sky.grbs[lab - GRB_BASE]
            off = (t0 - g.time) * SECONDS_PER_DAY
            expo = g.fraction_between(edges[:-1] + off, edges[1:] + off)
        else:
            expo = emit.flux_factor(lab, t0, mid) * np.diff(edges)
        w = expo * cos
        # truth: the module response at the middle of each HK cycle
        if c_dirs is None:
            c_dirs = np.array([radec_to_tan(a, emit.ra, emit.dec) for a in _attitudes(plan, c_mid)])
        cty, ctz = c_dirs[:, 0, i], c_dirs[:, 1, i]
        c_in = _in_field(inst, cty, ctz)
        pmod = np.array([inst.module_response(a, b) if ok else np.zeros(N_MODULES) for a, b, ok in zip(cty, ctz, c_in)])
        e_c = _cycle_exposure(emit, lab, t0, 0.0, T, c_start, c_len)
        k_mid = int(np.argmin(np.abs(c_mid - 0.5 * T)))
        recs[lab] = {"tan_y": float(cty[k_mid]), "tan_z": float(ctz[k_mid]), "pc": e_c[:, None] * pmod}
        n_ph = rng.poisson(emit.total_all(lab) * inst.photons_per_rate * float(w.sum()))
        if n_ph == 0:
            continue
        k = AliasTable(w).sample(n_ph, rng)
        if lab >= GRB_BASE:  # the light curve inside each grid step
            t = np.empty(n_ph)
            for j in np.unique(k):
                sel = k == j
                t[sel] = _sample_times(emit, lab, t0, edges[j], edges[j + 1], int(sel.sum()), rng)
        else:
            t = edges[k] + rng.random(n_ph) * np.diff(edges)[k]
        # direction at the photon's time: linear between the grid's mid-points
        pix = inst.ray_trace(np.interp(t, mid, ty), np.interp(t, mid, tz), rng)
        hit = pix >= 0
        if hit.any():
            out.add(t[hit], pix[hit], lab, emit.sampler(lab).sample(int(hit.sum()), rng))
    return recs


def _in_gaps(t: np.ndarray, g0: np.ndarray, g1: np.ndarray, T: float) -> np.ndarray:
    """Bool per time: inside a telemetry gap (between consecutive good-time intervals)."""
    gap = np.zeros(t.shape, dtype=bool)
    for a, b in zip(np.r_[0.0, g1], np.r_[g0, T]):
        if b > a:
            gap |= (t >= a) & (t < b)
    return gap


def simulate_scw(plan: ScwPlan, sky: Sky, tc: TimeCorrelation, rng: np.random.Generator,
                 instrument: Instrument | None = None, emitters: SkyEmitters | None = None) -> ScwSimulation:
    """Simulate one science window (pointing or slew): events, HK and truth.

    Parameters
    ----------
    plan : the ScW (times IJD, attitude).
    sky : sources and GRBs.
    tc : OBT <-> IJD correlation covering the ScW.
    rng : random generator (one per ScW keeps ScWs independent and reproducible).
    instrument : the simulated ISGRI (default `Instrument.default()`).
    emitters : `SkyEmitters(sky, instrument)`; pass it to reuse it over ScWs.
    """
    inst = instrument if instrument is not None else Instrument.default()
    emit = emitters if emitters is not None else SkyEmitters(sky, inst)
    if emit.instrument is not inst or emit.sky is not sky:
        raise ValueError("simulate_scw: emitters were made for another sky or instrument")
    T, t0 = plan.duration_s, plan.tstart
    n_cyc = max(1, int(np.ceil(T / HK_CYCLE_S - 1e-9)))
    c_start = np.arange(n_cyc) * HK_CYCLE_S
    c_len = np.minimum(HK_CYCLE_S, T - c_start)
    c_phase = revolution_phase(t0 + (c_start + 0.5 * c_len) / SECONDS_PER_DAY)
    c_orbit = orbit_factor(c_phase)
    modules = inst.module_map
    out = _Pieces()

    # ---- sources and GRBs
    if plan.is_slew:
        att = _attitudes(plan, [0.5 * T])[0]
        recs = _slew_sources(plan, emit, inst, c_start, c_len, rng, out)
    else:
        att = mean_attitude(plan)
        recs = _pointing_sources(plan, att, emit, inst, c_start, c_len, rng, out)

    # ---- instrumental background: pixels, then the HK cycle (rate x orbit factor), then the time in it
    w_cyc = c_len * c_orbit
    bkg_total = float(inst.background_all.sum())
    pix = _pixels(inst.background_pixels, bkg_total * float(w_cyc.sum()), rng)
    k = AliasTable(w_cyc).sample(pix.size, rng)
    out.add(np.minimum(c_start[k] + rng.random(pix.size) * c_len[k], np.nextafter(T, 0.0)), pix, BACKGROUND,
            inst.background_sampler.sample(pix.size, rng))

    # ---- noisy pixels (last: their events keep their time order through the sort below)
    noisy = inst.noisy.sample(T, rng)
    out.add(noisy.time, noisy.z * N_PIXELS + noisy.y, NOISY, noisy.energy)

    t = np.concatenate(out.t)
    pix = np.concatenate(out.pix)
    lab = np.concatenate(out.lab)
    energy = np.concatenate(out.e)
    cyc = np.minimum((t // HK_CYCLE_S).astype(np.int64), n_cyc - 1)
    cm = cyc * N_MODULES + modules[pix]

    # ---- dead time from the triggers that arrived; events lost in proportion
    dt = inst.dead_time
    n_trig = np.bincount(cm, minlength=n_cyc * N_MODULES).reshape(n_cyc, N_MODULES)
    bkg_module_rate = bkg_total * c_orbit[:, None] * inst.background_modules[None, :]
    n_vetoed = rng.poisson(dt.vetoed_rate(bkg_module_rate) * c_len[:, None])
    n_strobe = rng.poisson(dt.veto_rate_at(c_phase) * c_len)
    x = (dt.tau_event * (n_trig + n_vetoed) + dt.tau_veto * n_strobe[:, None]) / c_len[:, None]
    dead = x / (1.0 + x)
    live = rng.random(t.size) < (1.0 - dead).ravel()[cm]
    trig_cnt = np.bincount(cm[live], minlength=n_cyc * N_MODULES).reshape(n_cyc, N_MODULES)
    veto_cnt = rng.binomial(n_vetoed, 1.0 - dead)
    veto_stb = rng.binomial(np.broadcast_to(n_strobe[:, None], dead.shape), 1.0 - dead)

    # ---- telemetry gaps: the events in them never reach the ground
    g0, g1 = telemetry_gtis(T, rng, inst.gaps_per_hour, inst.gap_s)
    keep = live & ~_in_gaps(t, g0, g1, T)
    noisy_rt = np.asarray(noisy.rise_time, dtype=float)[keep[t.size - noisy.time.size:]]
    order = np.flatnonzero(keep)
    order = order[np.argsort(t[order])]  # quicksort, 4x faster than a stable sort; ties do not matter
    t, pix, lab, energy = t[order], pix[order], lab[order], energy[order]
    mod = modules[pix]
    cyc = np.minimum((t // HK_CYCLE_S).astype(np.int64), n_cyc - 1)

    # ---- housekeeping truth: temperatures (as written, float32) and bias
    temperature = inst.hk.temperatures(c_phase, rng).astype(np.float32).astype(np.float64)
    bias = (inst.hk.bias + inst.hk.bias_noise * rng.standard_normal((n_cyc, N_MODULES))).astype(np.float32)
    hk_row = ~_in_gaps(c_start, g0, g1, T)
    gti_overlap = sum((np.clip(np.minimum(b, c_start + c_len) - np.maximum(a, c_start), 0.0, None)
                       for a, b in zip(g0, g1)), np.zeros(n_cyc))

    # ---- rise time, PHA, time stamps
    rt = inst.rise_time.sample(energy, rng)
    rt[lab == NOISY] = noisy_rt  # electronic noise: its own rise times
    obt_start, obt_stop = int(tc.ijd_to_obt(t0)), int(tc.ijd_to_obt(plan.tstop))
    obt = obt_start + np.floor(t * (TICKS_PER_SECOND / EVENT_TICKS)).astype(np.int64) * EVENT_TICKS
    time = tc.obt_to_ijd(obt)
    pha = digitise_pha(inst.gain.pha(energy, rt, mod, time, temperature[cyc, mod]))
    rise_raw = digitise_rise_time(inst.gain.raw_rise_time(rt, mod))
    z, y = np.divmod(pix, N_PIXELS)
    events = {"TIME": time, "OB_TIME": obt, "ISGRI_PHA": pha, "RISE_TIME": rise_raw,
              "ISGRI_Y": y.astype(np.uint8), "ISGRI_Z": z.astype(np.uint8)}
    hk_obt = obt_start + np.rint(c_start * TICKS_PER_SECOND).astype(np.int64)
    hk = {"TIME": tc.obt_to_ijd(hk_obt)[hk_row], "OB_TIME": hk_obt[hk_row],
          "CYCLE_LEN": c_len[hk_row].astype(np.float32), "MDU_TEMP": temperature[hk_row].astype(np.float32),
          "BIAS_V": bias[hk_row], "TRIG_CNT": trig_cnt[hk_row].astype(np.int32),
          "VETO_CNT": veto_cnt[hk_row].astype(np.int32), "VETO_STB": veto_stb[hk_row].astype(np.int32)}
    sim = ScwSimulation(
        plan=plan, attitude=att, events=events, component=lab, energy=energy, rise_time=rt,
        module=mod.astype(np.int16), hk=hk, cycle_start=c_start, cycle_length=c_len, dead_fraction=dead,
        temperature=temperature, gti_overlap=gti_overlap, hk_row=hk_row, gti_s=(g0, g1), obt_start=obt_start,
        obt_stop=obt_stop, clock=tc, gain=inst.gain)
    _fill_truth(sim, recs, emit, inst, noisy.bursts, c_orbit)
    return sim


def _fill_truth(sim: ScwSimulation, recs: dict, emit: SkyEmitters, inst: Instrument, bursts: np.ndarray,
                c_orbit: np.ndarray) -> None:
    """Truth of the sources, GRBs, background and noisy pixels of `sim` (in place)."""
    sky, plan = emit.sky, sim.plan
    energy, rise = sim.cor()
    sel = {band: sim.selected(band, energy, rise) for band in STANDARD_BANDS}
    sim.band_counts.update({band_key(b): int(v.sum()) for b, v in sel.items()})
    gti_frac = sim.gti_overlap / sim.cycle_length
    live = 1.0 - sim.dead_fraction  # (n_cyc, 8)
    pif_norm = inst.geometry.n_pixels / float(inst.live_pixels.sum())
    for lab, rec in sorted(recs.items()):
        # expected events in a band: R_band x sum over cycles and modules of exposure x
        # good-time share x live fraction x the source's response in the module
        weight = float((rec["pc"] * gti_frac[:, None] * live).sum())
        ty, tz = rec["tan_y"], rec["tan_z"]
        cth = float(cos_theta(ty, tz))
        mine = sim.component == lab
        is_grb = lab >= GRB_BASE
        obj = sky.grbs[lab - GRB_BASE] if is_grb else sky.sources[lab]
        gti_expo = float(_cycle_exposure(emit, lab, plan.tstart, 0.0, plan.duration_s, sim.cycle_start,
                                         sim.cycle_length) @ gti_frac)
        out = {"name": obj.name, "label": int(lab), "kind": "grb" if is_grb else "source",
               "ra": float(obj.ra), "dec": float(obj.dec), "tan_y": ty, "tan_z": tz,
               "theta_deg": float(np.degrees(np.arccos(cth))), "cos_theta": cth,
               "pif_mean": float(inst.module_response(ty, tz).sum() / cth * pif_norm) if _in_field(
                   inst, np.array(ty), np.array(tz)) else 0.0,
               "events": int(mine.sum())}
        if is_grb:
            out.update(time=float(obj.time), fluence=float(obj.fluence), fluence_band=list(obj.fluence_band),
                       fluence_fraction_gti=gti_expo)
            scale = gti_expo
        else:
            out.update(mcrab=float(obj.mcrab), flux_factor_gti=gti_expo / sim.ontime if sim.ontime > 0 else 0.0)
            scale = out["flux_factor_gti"]
        out["bands"] = {band_key(b): {("counts_on_axis" if is_grb else "rate"): emit.band_rate(lab, b) * scale,
                                      "expected": emit.band_rate(lab, b) * weight,
                                      "counts": int((mine & sel[b]).sum())} for b in STANDARD_BANDS}
        sim.sources.append(out)
    bk = sim.component == BACKGROUND
    b_expo = float(((c_orbit * sim.gti_overlap)[:, None] * live * inst.background_modules[None, :]).sum())
    orbit_gti = float((c_orbit * sim.gti_overlap).sum() / sim.ontime) if sim.ontime > 0 else 0.0
    sim.background.update(events=int(bk.sum()), orbit_factor_gti=orbit_gti, bands={
        band_key(b): {"rate": inst.background.rate(*b) * orbit_gti, "expected": inst.background.rate(*b) * b_expo,
                      "counts": int((bk & sel[b]).sum())} for b in STANDARD_BANDS})
    # noisy-pixel bursts and how many of their events reached the ground
    nz = sim.component == NOISY
    ev_pix = sim.events["ISGRI_Z"][nz].astype(np.int64) * N_PIXELS + sim.events["ISGRI_Y"][nz]
    ev_t = (sim.events["OB_TIME"][nz] - sim.obt_start) / TICKS_PER_SECOND
    rows = [(a, b, bz, by, int(((ev_pix == bz * N_PIXELS + by) & (ev_t >= a - 1e-3) & (ev_t <= b + 1e-3)).sum()))
            for a, b, bz, by in np.asarray(bursts, dtype=float).reshape(-1, 4)]
    object.__setattr__(sim, "noisy_bursts", np.array(rows, dtype=float).reshape(-1, 5))
