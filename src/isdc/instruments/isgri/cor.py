"""ISGRI event correction (level COR): energies, rise-time selection, noisy pixels.

Pure numpy on event columns; the pipeline task (`isdc.pipeline.isgri_scw.IsgriCor`) reads
the files and the IC gain model and writes ISGR-EVTS-COR.

* **Energy.** The gain model of the IC file ISGR-GAIN-MOD (a `GainModel`) turns the raw
  pulse height and raw rise time of an event into energy at the temperature of its module
  (housekeeping MDU_TEMP of the event's 8 s cycle) and its time:
  ``rt = (RISE_TIME + 0.5 - RT_OFFSET) / RT_GAIN``,
  ``E = ((PHA + u) gain(T, t) + offset(T)) / q(rt)`` with u the position inside the PHA
  channel. u = 0.5 (the channel centre) or, by default in the pipeline, uniform in [0, 1)
  from a generator seeded by the ScW: a digitised energy scale of ~0.52 keV steps binned
  on 0.5 keV response channels would otherwise alias (empty and doubled channels).
* **Rise-time window.** The response counts only events with RISE_MIN <= rt < RISE_MAX;
  the others are flagged (bit 1). The raw rise time is taken at its channel centre, so
  events near the window edges are classified without bias.
* **Noisy pixels.** Counts per pixel in time bins are compared with the expectation from
  the pixel's module in that bin (robust mean per pixel, excluding flagged cells) times the
  pixel's own relative rate (capped at `MAX_PIXEL_WEIGHT`, so a pixel hot all the time is
  found too); a cell whose Poisson significance exceeds the threshold makes the pixel
  noisy for the whole ScW (all its events get bit 2; BIN switches it off).

SELECT_FLAG bits: `FLAG_RISE_TIME` 1, `FLAG_NOISY` 2, `FLAG_RANGE` 4 (PHA 0 or saturated),
`FLAG_OTHER` 8 (pixel index outside 0..127, time outside the ScW, non-finite energy).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from isdc.instruments.isgri.detector_model import N_MODULES, N_PIXELS, RISE_RAW_MAX, GainModel, default_module_map
from isdc.instruments.isgri.ibas import poisson_sigma

__all__ = [
    "FLAG_RISE_TIME",
    "FLAG_NOISY",
    "FLAG_RANGE",
    "FLAG_OTHER",
    "MAX_PIXEL_WEIGHT",
    "pixel_module_map",
    "pixel_index",
    "hk_cycle_index",
    "event_temperatures",
    "corrected_rise_time",
    "NoisyPixels",
    "find_noisy_pixels",
    "CorResult",
    "correct_events",
]

FLAG_RISE_TIME = 1
FLAG_NOISY = 2
FLAG_RANGE = 4
FLAG_OTHER = 8

MAX_PIXEL_WEIGHT = 3.0
"""Largest rate of a pixel relative to its module that the noisy-pixel search accepts as
the pixel's normal level. Real structure stays well below: the detector edges are +30%,
and a 10-Crab source's lit pixels reach ~1.6x the module mean."""

N_PIX = N_PIXELS * N_PIXELS


@lru_cache(maxsize=1)
def pixel_module_map() -> np.ndarray:
    """(16384,) int8 module number of each logical pixel, flat index z * 128 + y (read-only)."""
    m = default_module_map().ravel().astype(np.int8)
    m.setflags(write=False)
    return m


def pixel_index(isgri_z, isgri_y) -> tuple[np.ndarray, np.ndarray]:
    """(flat pixel index z * 128 + y, valid) of event pixels; invalid ones get index 0."""
    z, y = np.asarray(isgri_z), np.asarray(isgri_y)
    if z.dtype == np.uint8 and y.dtype == np.uint8:
        # The event columns (1B): one test for both (128 is a power of two), 32-bit arithmetic.
        valid = (z | y) < N_PIXELS
        idx = z.astype(np.int32) * N_PIXELS + y
    else:
        z, y = z.astype(np.int64), y.astype(np.int64)
        valid = (z >= 0) & (z < N_PIXELS) & (y >= 0) & (y < N_PIXELS)
        idx = z * N_PIXELS + y
    if not valid.all():
        idx = np.where(valid, idx, 0)
    return idx, valid


def hk_cycle_index(time, hk_time) -> np.ndarray:
    """(n,) index of the HK row of each event: the last cycle starting at or before it.

    An event in a cycle whose HK row is missing (telemetry gap) gets the previous row,
    one before the first cycle the first row. ValueError without rows or if the HK times
    do not increase.
    """
    hk_time = np.asarray(hk_time, dtype=float)
    if hk_time.size == 0:
        raise ValueError("no housekeeping rows: the module temperatures are unknown")
    if np.any(np.diff(hk_time) <= 0):
        raise ValueError("housekeeping times must increase")
    time = np.asarray(time, dtype=float)
    if time.size > 1000 and np.all(time[1:] >= time[:-1]):
        # Sorted events (ISGR-EVTS-ALL is): locate the HK rows among the events instead of
        # every event among the rows (10x faster), then repeat each row over its events.
        first = np.searchsorted(time, hk_time[1:], side="left")
        counts = np.diff(np.r_[0, first, time.size])
        return np.repeat(np.arange(hk_time.size), counts)
    row = np.searchsorted(hk_time, time, side="right") - 1
    return np.clip(row, 0, hk_time.size - 1, out=row)


def event_temperatures(time, module, hk_time, hk_temperature) -> np.ndarray:
    """Temperature [degC] of each event's module: that of its HK row (`hk_cycle_index`).

    time : (n,) event times; module : (n,); hk_time : (m,) cycle starts (same unit,
    increasing); hk_temperature : (m, 8).
    """
    temp = np.asarray(hk_temperature, dtype=float)
    row = hk_cycle_index(time, hk_time)
    if temp.shape != (np.size(hk_time), N_MODULES):
        raise ValueError(f"hk_temperature must have shape ({np.size(hk_time)}, {N_MODULES}), got {temp.shape}")
    return temp.ravel()[row * N_MODULES + np.asarray(module, dtype=np.intp)]


def corrected_rise_time(rise_raw, module, gain: GainModel) -> np.ndarray:
    """Corrected rise time (0-127 scale) at the centre of the raw rise-time channel."""
    return gain.rise_time(np.asarray(rise_raw, dtype=float) + 0.5, module)


@dataclass(frozen=True)
class NoisyPixels:
    """Result of the noisy-pixel search.

    noisy : (16384,) bool, flat pixel index z * 128 + y.
    cells : (k, 3) int: time bin, pixel and counts of each significant cell.
    significance : (k,) Gaussian-equivalent significance of each cell.
    """

    noisy: np.ndarray
    cells: np.ndarray
    significance: np.ndarray

    @property
    def pixels(self) -> list[tuple[int, int]]:
        """(z, y) of the noisy pixels."""
        return [tuple(int(v) for v in divmod(int(p), N_PIXELS)) for p in np.flatnonzero(self.noisy)]


def find_noisy_pixels(time_s, pixel, duration_s: float, bin_s: float, sigma: float, n_iter: int = 4,
                      max_cells: int = 50_000_000) -> NoisyPixels:
    """Pixels with a significant excess of counts in some time bin of the ScW.

    time_s : (n,) event times [s since the ScW start] (any order); pixel : (n,) flat pixel
    indices 0..16383 (valid events only); duration_s : ScW length [s]; bin_s : time bin
    [s]; sigma : significance threshold (Gaussian-equivalent, one-sided Poisson).

    The expectation of a cell (bin b, pixel p) is r[b, m] w[p]: r the counts per unit
    weight of p's module m in bin b, w the pixel's rate relative to its module over the
    ScW, within 1/`MAX_PIXEL_WEIGHT`..`MAX_PIXEL_WEIGHT` (1 in the first pass). Both are
    re-estimated without the significant cells (up to `n_iter` passes), so a burst neither
    raises its own expectation nor hides others. Only cells with >= 2 counts are tested.
    """
    if not (bin_s > 0 and duration_s > 0 and sigma > 0):
        raise ValueError("bin_s, duration_s and sigma must be > 0")
    nb = max(int(np.ceil(duration_s / bin_s)), 1)
    if nb * N_PIX > max_cells:
        raise ValueError(f"noisy-pixel search: {nb} bins of {bin_s:g} s x {N_PIX} pixels is too many cells; "
                         f"use a longer bin")
    t = np.asarray(time_s, dtype=float)
    # Truncation after a multiplication: floor for t >= 0, and far cheaper than t // bin_s.
    b = np.clip((t * (1.0 / bin_s)).astype(np.int64), 0, nb - 1)
    pixel = np.asarray(pixel, dtype=np.int64)
    modules = pixel_module_map().astype(np.intp)
    cell = b * N_PIX + pixel
    counts = np.bincount(cell, minlength=nb * N_PIX)
    own_all = np.bincount(pixel, minlength=N_PIX).astype(float)
    mod_all = np.bincount(b * N_MODULES + modules[pixel], minlength=nb * N_MODULES).reshape(nb, N_MODULES)
    mod_all = mod_all.astype(float)
    cand_cells = np.flatnonzero(counts >= 2)
    cb, cp = np.divmod(cand_cells, N_PIX)
    cc = counts[cand_cells].astype(float)
    cm = modules[cp]
    live = own_all > 0
    w = live.astype(float)
    hit = np.zeros(cc.size, dtype=bool)
    sig = np.zeros(cc.size)
    for it in range(max(n_iter, 1)):
        fb, fp, fm, fc = cb[hit], cp[hit], cm[hit], cc[hit]
        mod_counts = mod_all.copy()
        np.subtract.at(mod_counts, (fb, fm), fc)
        mod_weight = np.broadcast_to(np.bincount(modules, weights=w, minlength=N_MODULES), (nb, N_MODULES)).copy()
        np.subtract.at(mod_weight, (fb, fm), w[fp])
        rate = np.divide(mod_counts, mod_weight, out=np.zeros_like(mod_counts), where=mod_weight > 0)
        mu = rate[cb, cm] * w[cp]
        # Cheap necessary condition first (a Poisson excess of `sigma` is at least this).
        cand = cc - mu > 0.5 * sigma * np.sqrt(mu)
        s = np.zeros(cc.size)
        s[cand] = poisson_sigma(cc[cand], np.maximum(mu[cand], 1e-9))
        new = s > sigma
        sig = s
        if np.array_equal(new, hit) and it > 0:
            break
        hit = new
        # The pixel weights from the cells that are not significant.
        fb, fp, fm, fc = cb[hit], cp[hit], cm[hit], cc[hit]
        own = own_all - np.bincount(fp, weights=fc, minlength=N_PIX)
        expect = rate.sum(axis=0)[modules] - np.bincount(fp, weights=rate[fb, fm], minlength=N_PIX)
        w = np.divide(own, expect, out=np.zeros(N_PIX), where=expect > 0)
        w = np.where(live, np.clip(w, 1.0 / MAX_PIXEL_WEIGHT, MAX_PIXEL_WEIGHT), 0.0)
    noisy = np.zeros(N_PIX, dtype=bool)
    noisy[cp[hit]] = True
    cells = np.column_stack([cb[hit], cp[hit], cc[hit].astype(np.int64)]).astype(np.int64)
    return NoisyPixels(noisy, cells.reshape(-1, 3), sig[hit])


@dataclass(frozen=True)
class CorResult:
    """Corrected events: energy [keV] float32 (n,), SELECT_FLAG int16 (n,), corrected rise
    time float32 (n,), and the noisy-pixel search."""

    energy: np.ndarray
    select_flag: np.ndarray
    rise_time: np.ndarray
    noisy: NoisyPixels

    @property
    def n_good(self) -> int:
        return int(np.count_nonzero(self.select_flag == 0))


def correct_events(time, pha, rise_raw, isgri_z, isgri_y, hk_time, hk_temperature, gain: GainModel, *,
                   tstart: float, tstop: float, rise_min: float, rise_max: float, pha_max: int,
                   noisy_bin_s: float, noisy_sigma: float, dither=None) -> CorResult:
    """The COR level on the event columns of one ScW.

    time : (n,) event times [IJD]; pha, rise_raw : raw pulse height and rise time;
    isgri_z, isgri_y : pixel; hk_time : (m,) HK cycle starts [IJD]; hk_temperature :
    (m, 8) [degC]; gain : the IC gain model; tstart, tstop : the ScW [IJD]; rise_min,
    rise_max : window on the corrected rise time (rise_min <= rt < rise_max); pha_max :
    saturated pulse height; noisy_bin_s, noisy_sigma : noisy-pixel search; dither :
    position inside the PHA channel, scalar or (n,) in [0, 1) (None: 0.5, the centre).

    The gain model is evaluated per HK row and module (temperature of the row, time of its
    start: the drift within an 8 s cycle is ~2e-9) and the rise-time correction per module
    and raw channel, then looked up per event: the same numbers as evaluating the model
    per event, at a fraction of the cost.
    """
    time = np.asarray(time, dtype=float)
    pha = np.asarray(pha)
    hk_time = np.asarray(hk_time, dtype=float)
    temp = np.asarray(hk_temperature, dtype=float)
    pix, valid = pixel_index(isgri_z, isgri_y)
    module = pixel_module_map()[pix].astype(np.intp)
    row = hk_cycle_index(time, hk_time)
    if temp.shape != (hk_time.size, N_MODULES):
        raise ValueError(f"hk_temperature must have shape ({hk_time.size}, {N_MODULES}), got {temp.shape}")
    # Gain and offset per (HK row, module); rise time and charge collection per (module, raw channel).
    modules = np.arange(N_MODULES)
    gain_tab = gain.gain_at(modules[None, :], hk_time[:, None], temp).ravel()
    offset_tab = gain.offset_at(modules[None, :], hk_time[:, None], temp).ravel()
    rt_tab = corrected_rise_time(np.arange(RISE_RAW_MAX + 1)[None, :], modules[:, None], gain)
    inv_q_tab = (1.0 / gain.charge_collection(rt_tab)).ravel()
    window_tab = np.where((rt_tab >= rise_min) & (rt_tab < rise_max), 0, FLAG_RISE_TIME).astype(np.int16).ravel()
    raw = np.asarray(rise_raw)
    raw_ok = (raw >= 0) & (raw <= RISE_RAW_MAX)
    k_rt = module * (RISE_RAW_MAX + 1) + np.clip(raw, 0, RISE_RAW_MAX).astype(np.intp)
    k_cyc = row * N_MODULES + module
    u = 0.5 if dither is None else dither
    energy = ((pha + u) * gain_tab[k_cyc] + offset_tab[k_cyc]) * inv_q_tab[k_rt]
    flag = window_tab[k_rt]
    flag[(pha <= 0) | (pha >= pha_max)] |= FLAG_RANGE
    other = ~valid | ~raw_ok | (time < tstart) | (time > tstop) | ~np.isfinite(energy)
    flag[other] |= FLAG_OTHER
    ok = ~other
    all_ok = bool(ok.all())
    t_s = ((time if all_ok else time[ok]) - tstart) * 86400.0
    noisy = find_noisy_pixels(t_s, pix if all_ok else pix[ok], (tstop - tstart) * 86400.0, noisy_bin_s, noisy_sigma)
    if noisy.noisy.any():
        flag[noisy.noisy[pix] & valid] |= FLAG_NOISY
    energy = (energy if all_ok else np.where(ok, energy, 0.0)).astype(np.float32)
    return CorResult(energy, flag, rt_tab.ravel()[k_rt].astype(np.float32), noisy)
