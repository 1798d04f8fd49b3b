"""Synthetic ISGRI science windows made directly with the detector models (test helper).

The truth (energies, rise times, noisy bursts, gain, temperatures) comes from
`isdc.instruments.isgri.detector_model`, the same models the simulator uses; the tests of
the COR..BKG algorithms run on these arrays, the end-to-end tests on simulated archives.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from isdc.instruments.isgri.detector_model import (
    HK_CYCLE_S, BackgroundModel, GainModel, HousekeepingModel, NoisyPixelModel, RiseTimeModel, default_module_map,
    digitise_pha, digitise_rise_time,
)

SECONDS_PER_DAY = 86400.0


@lru_cache(maxsize=1)
def background_model() -> BackgroundModel:
    return BackgroundModel.default()


@dataclass
class SynthScw:
    """Event columns (TIME IJD, ISGRI_PHA, RISE_TIME raw, ISGRI_Z, ISGRI_Y), HK (cycle
    starts IJD, temperatures (n, 8)) and the truth (energy, rise time, noisy bursts)."""

    tstart: float
    tstop: float
    time: np.ndarray
    pha: np.ndarray
    rise_raw: np.ndarray
    z: np.ndarray
    y: np.ndarray
    hk_time: np.ndarray
    temperature: np.ndarray
    gain: GainModel
    energy: np.ndarray
    rise_time: np.ndarray
    noisy: np.ndarray  # bool per event: made by a noisy pixel
    bursts: np.ndarray  # (k, 4) start s, stop s, z, y
    extra: dict = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return (self.tstop - self.tstart) * SECONDS_PER_DAY

    def cor_kwargs(self, **kw) -> dict:
        args = dict(tstart=self.tstart, tstop=self.tstop, rise_min=16, rise_max=116, pha_max=2047,
                    noisy_bin_s=10.0, noisy_sigma=8.0)
        args.update(kw)
        return args


def synthetic_scw(duration_s: float = 2000.0, seed: int = 1, tstart: float = 3500.0, *, live: float = 0.78,
                  noisy_pixels: float = 0.0, temperature_offset: float = 0.0, gain: GainModel | None = None,
                  pixel_boost: np.ndarray | None = None, gaps: tuple[tuple[float, float], ...] = ()) -> SynthScw:
    """Background events of one ScW through the gain model.

    live : fraction of the background rate recorded (dead time); noisy_pixels : mean
    number of noisy pixels (NoisyPixelModel); temperature_offset : added to the module
    temperatures [degC]; pixel_boost : (128, 128) rate multiplier per pixel (a bright
    source's lit pixels); gaps : telemetry gaps [(start s, stop s)] with no events and
    no HK rows starting in them.
    """
    rng = np.random.default_rng(seed)
    bkg = background_model()
    gain = gain or GainModel()
    n = rng.poisson(bkg.total_rate * duration_s * live)
    z, y, e = bkg.sample(n, rng)
    if pixel_boost is not None:
        # Thin the events of the other pixels instead of adding: same sampler, relative rates.
        boost = np.asarray(pixel_boost, dtype=float)
        keep = rng.random(n) < boost[z, y] / boost.max()
        z, y, e = z[keep], y[keep], e[keep]
    t = rng.random(z.size) * duration_s
    rt = RiseTimeModel().sample(e, rng)
    noisy = np.zeros(z.size, dtype=bool)
    bursts = np.zeros((0, 4))
    if noisy_pixels > 0:
        ne = NoisyPixelModel(pixels_per_scw=noisy_pixels).sample(duration_s, rng)
        t, z, y = np.r_[t, ne.time], np.r_[z, ne.z], np.r_[y, ne.y]
        e, rt = np.r_[e, ne.energy], np.r_[rt, ne.rise_time]
        noisy = np.r_[noisy, np.ones(ne.time.size, dtype=bool)]
        bursts = ne.bursts
    for g0, g1 in gaps:
        keep = (t < g0) | (t >= g1)
        t, z, y, e, rt, noisy = t[keep], z[keep], y[keep], e[keep], rt[keep], noisy[keep]
    order = np.argsort(t, kind="stable")
    t, z, y, e, rt, noisy = t[order], z[order], y[order], e[order], rt[order], noisy[order]
    n_cyc = int(np.ceil(duration_s / HK_CYCLE_S))
    cyc_t = np.arange(n_cyc) * HK_CYCLE_S
    phase = 0.3 + cyc_t / (72.0 * 3600.0)
    temp = (HousekeepingModel().temperatures(phase, rng) + temperature_offset).astype(np.float32)
    module = default_module_map()[z, y]
    cyc = np.minimum((t // HK_CYCLE_S).astype(np.int64), n_cyc - 1)
    t_ijd = tstart + t / SECONDS_PER_DAY
    pha = digitise_pha(gain.pha(e, rt, module, t_ijd, temp[cyc, module]))
    raw = digitise_rise_time(gain.raw_rise_time(rt, module))
    row = np.ones(n_cyc, dtype=bool)
    for g0, g1 in gaps:
        row &= ~((cyc_t >= g0) & (cyc_t < g1))
    return SynthScw(tstart, tstart + duration_s / SECONDS_PER_DAY, t_ijd, pha, raw, z.astype(np.uint8),
                    y.astype(np.uint8), tstart + cyc_t[row] / SECONDS_PER_DAY, temp[row], gain, e, rt, noisy, bursts,
                    {"cycle_all": cyc_t, "temperature_all": temp})


def fit_line(energy, e0: float, half_width: float, bin_kev: float = 0.25) -> tuple[float, float]:
    """Centroid [keV] and its error of a Gaussian line + quadratic continuum fitted to the
    histogram of `energy` within e0 +- half_width."""
    from scipy.optimize import curve_fit

    lo, hi = e0 - half_width, e0 + half_width
    h, edges = np.histogram(energy, bins=int(round(2 * half_width / bin_kev)), range=(lo, hi))
    x = 0.5 * (edges[1:] + edges[:-1])

    def f(x, a, mu, s, b0, b1, b2):
        return a * np.exp(-0.5 * ((x - mu) / s) ** 2) + b0 + b1 * (x - e0) + b2 * (x - e0) ** 2

    p0 = [h.max() - h.min(), e0, half_width / 4, h.min(), 0.0, 0.0]
    p, c = curve_fit(f, x, h, p0=p0, sigma=np.sqrt(np.maximum(h, 1)), maxfev=20000)
    return float(p[1]), float(np.sqrt(c[1, 1]))
