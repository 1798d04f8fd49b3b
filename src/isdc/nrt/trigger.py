"""The IBAS-like burst trigger on the ISGRI event stream of an open science window.

The algorithms are `isdc.instruments.isgri.ibas` (`rate_candidates`: Poisson excess on
0.1-10 s time scales over a background window; `localise_burst`: burst-minus-background
image, PSF fit). This module keeps their streaming state per pointing:

* `EventSelector` keeps the events of the trigger band (default 15-200 keV) with a rise
  time in the response's window: energies from the raw pulse height through the gain IC
  file (ISGR-GAIN-MOD) at the module temperatures of the latest HK cycle received. Low-
  energy electronic noise (noisy pixels) and the events outside the rise-time window do
  not reach the trigger.
* `BurstMonitor` receives the selected events as chunks arrive (any order within the
  `lag_s` the telemetry may be late), scans every new window once the data are `lag_s`
  old, and decides a trigger when `settle_s` seconds of data after its start have arrived:
  the most significant window near it (all time scales, within the hold-off) is imaged
  against its pre-burst background and localised. Time the stream does not cover (lost
  packets, telemetry gaps: event intervals longer than `max_event_gap_s` or 20 mean
  intervals) is dead time: counts and background are taken in live base bins only and
  windows less than `min_live` live are not tested, so losses cost exposure, never a
  false trigger.

Times are seconds since the ScW's OBTSTART (on-board seconds).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from isdc.imaging.decode import Decoder
from isdc.instruments.isgri.cor import pixel_module_map
from isdc.instruments.isgri.detector_model import GainModel
from isdc.instruments.isgri.geometry import isgri_geometry, isgri_to_gapped
from isdc.instruments.isgri.ibas import (BurstCandidate, BurstLocation, TriggerParams, localise_burst,
                                         rate_candidates)
from isdc.telemetry.packets import FRAME_TICKS

__all__ = ["TriggerSettings", "EventSelector", "Burst", "BurstMonitor"]


@dataclass(frozen=True)
class TriggerSettings:
    """Trigger settings: energy band [keV], rise-time window (corrected, 0-127 scale), the
    IBAS parameters, and the streaming delays [s] (see module docstring)."""

    band: tuple[float, float] = (15.0, 200.0)
    rise_min: float = 16.0
    rise_max: float = 116.0
    params: TriggerParams = field(default_factory=TriggerParams)
    lag_s: float = 1.0
    settle_s: float = 3.0
    max_event_gap_s: float = 0.05
    min_live: float = 0.8
    images: int = 3
    """Time scales imaged per trigger (their most significant windows); the best image decides."""

    def __post_init__(self):
        if not 0 < self.band[0] < self.band[1]:
            raise ValueError(f"trigger band {self.band} keV: need 0 < E1 < E2")
        for name in ("lag_s", "settle_s", "max_event_gap_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"trigger {name} must be >= 0, got {getattr(self, name)}")
        if self.images < 1:
            raise ValueError(f"trigger images must be >= 1, got {self.images}")
        if not 0 < self.min_live <= 1:
            raise ValueError(f"trigger min_live must be in (0, 1], got {self.min_live}")

    @property
    def lookback_s(self) -> float:
        """Data before a window's end that its test needs: longest time scale + gap + background."""
        p = self.params
        return max(p.timescales) + p.gap_s + p.background_s + 2 * p.bin_s


class EventSelector:
    """Which raw events (ISGR-EVTS-ALL columns) the trigger counts.

    gain : the ScW's gain model (None: every event counts); t_ijd : time for its drift.
    """

    def __init__(self, gain: GainModel | None, settings: TriggerSettings, t_ijd: float):
        self.gain, self.s, self.t_ijd = gain, settings, float(t_ijd)
        self.temperature = None if gain is None else np.full(8, gain.temperature_ref, dtype=float)

    def update_temperatures(self, mdu_temp: np.ndarray) -> None:
        """Module temperatures [degC] (rows of MDU_TEMP, the latest row counts)."""
        t = np.asarray(mdu_temp, dtype=float).reshape(-1, 8)
        if t.size and self.temperature is not None:
            self.temperature = t[-1].copy()

    def __call__(self, events: dict[str, np.ndarray]) -> np.ndarray:
        z = np.asarray(events["ISGRI_Z"])
        y = np.asarray(events["ISGRI_Y"])
        ok = (z < 128) & (y < 128)
        if self.gain is None:
            return ok
        module = pixel_module_map()[np.where(ok, z.astype(np.int64) * 128 + y, 0)]
        rt = self.gain.rise_time(np.asarray(events["RISE_TIME"]) + 0.5, module)
        e = self.gain.energy(np.asarray(events["ISGRI_PHA"]) + 0.5, rt, module, self.t_ijd, self.temperature[module])
        return ok & (rt >= self.s.rise_min) & (rt < self.s.rise_max) & (e >= self.s.band[0]) & (e < self.s.band[1])


@dataclass
class Burst:
    """A decided trigger: the burst window and its localisation (times in s since OBTSTART)."""

    candidate: BurstCandidate
    location: BurstLocation
    first_seen: float  # start of the window that first crossed the threshold


class _Events:
    """Growable (time, z, y) arrays kept sorted by time."""

    def __init__(self):
        self.t = np.zeros(1024)
        self.z = np.zeros(1024, np.uint8)
        self.y = np.zeros(1024, np.uint8)
        self.n = 0
        self.sorted = True
        self.latest = 0.0

    def add(self, t, z, y) -> None:
        m = t.size
        if self.n + m > self.t.size:
            cap = max(2 * self.t.size, self.n + m)
            for name in ("t", "z", "y"):
                a = getattr(self, name)
                b = np.zeros(cap, a.dtype)
                b[:self.n] = a[:self.n]
                setattr(self, name, b)
        if m and self.n and t.min() < self.t[self.n - 1]:
            self.sorted = False
        if m and np.any(np.diff(t) < 0):
            self.sorted = False
        self.t[self.n:self.n + m], self.z[self.n:self.n + m], self.y[self.n:self.n + m] = t, z, y
        self.n += m
        if m:
            self.latest = max(self.latest, float(t.max()))

    def between(self, a: float, b: float):
        if not self.sorted:
            o = np.argsort(self.t[:self.n], kind="stable")
            for name in ("t", "z", "y"):
                getattr(self, name)[:self.n] = getattr(self, name)[:self.n][o]
            self.sorted = True
        i, j = np.searchsorted(self.t[:self.n], [a, b], side="left")
        return self.t[i:j], self.z[i:j], self.y[i:j]



class BurstMonitor:
    """Streaming trigger of one pointing (see module docstring).

    obt_start : the ScW's OBTSTART (ticks): event times are (OB_TIME - obt_start) / 2**20 s.
    decoder : a Decoder of the ISGRI geometry (one per monitor thread: decoders are not
    thread-safe). handled : start times [s] of triggers already alerted (after a restart),
    no new trigger within the hold-off of them.
    """

    def __init__(self, obt_start: int, settings: TriggerSettings, decoder: Decoder, handled=()):
        self.obt_start = int(obt_start)
        self.s = settings
        self.decoder = decoder
        self.weights = isgri_geometry().real_pixels.astype(float)
        self.events = _Events()
        self.scanned_to = 0.0
        self.pending: list[BurstCandidate] = []
        self.handled: list[float] = [float(h) for h in handled]
        self.rejected: list[Burst] = []
        self._vetoed: list[tuple[float, float]] = []  # windows of rejected triggers

    def add(self, ob_time: np.ndarray, isgri_z: np.ndarray, isgri_y: np.ndarray) -> None:
        """Selected events (OB_TIME ticks, logical pixels)."""
        t = (np.asarray(ob_time, dtype=np.int64) - self.obt_start) / FRAME_TICKS
        self.events.add(t.astype(np.float64), np.asarray(isgri_z, np.uint8), np.asarray(isgri_y, np.uint8))

    # ------------------------------------------------------------------ scanning
    def _grid(self, t: float) -> float:
        b = self.s.params.bin_s
        return max(0.0, np.floor(t / b) * b)

    def _good(self, t: np.ndarray, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
        """Good time in [a, b): the stream minus event intervals longer than the gap limit."""
        if t.size < 2:
            return np.zeros(0), np.zeros(0)
        rate = (t.size - 1) / max(t[-1] - t[0], 1e-9)
        limit = max(self.s.max_event_gap_s, 20.0 / rate)
        edges = np.concatenate([[a], t, [b]])
        d = np.diff(edges)
        bad = np.flatnonzero(d > limit)
        starts = np.concatenate([[a], edges[bad + 1]])
        stops = np.concatenate([edges[bad], [b]])
        keep = stops > starts
        return starts[keep], stops[keep]

    def _candidates(self, a: float, b: float, since: float | None) -> list[BurstCandidate]:
        t, _, _ = self.events.between(a, b)
        good = self._good(t, a, b)
        return rate_candidates(t, a, b, self.s.params, since=since, good=good, min_live=self.s.min_live)

    def _near(self, t: float, times) -> bool:
        return any(abs(t - h) <= self.s.params.holdoff_s for h in times)

    def step(self, final: bool = False) -> list[Burst]:
        """Scan the new data; return the triggers decided now (imaged and localised, any level).

        final : the ScW is closing: scan to the end of the data and decide every pending trigger.
        """
        if self.events.n == 0:
            return []
        p = self.s.params
        latest = self.events.latest
        complete = latest + p.bin_s if final else latest - self.s.lag_s
        if complete > self.scanned_to:
            a = self._grid(self.scanned_to - self.s.lookback_s)
            since = self.scanned_to if self.scanned_to > 0 else None
            for c in self._candidates(a, complete, since):
                if self._near(c.t_start, self.handled) or self._near(c.t_start, [q.t_start for q in self.pending]):
                    continue
                if any(lo <= c.t_start < hi for lo, hi in self._vetoed):
                    continue
                self.pending.append(c)
            self.scanned_to = complete
        out = []
        for c in list(self.pending):
            if not final and complete < c.t_start + self.s.settle_s:
                continue
            self.pending.remove(c)
            burst = self._decide(c, min(c.t_start + p.holdoff_s, complete))
            if burst.location.level == "none":
                # not a burst (noisy pixel, background): only its own windows are vetoed, so a
                # real burst right after it still triggers
                self._vetoed.append((min(c.t_start, burst.candidate.t_start), max(c.t_stop, burst.candidate.t_stop)))
            else:
                self.handled += [c.t_start, burst.candidate.t_start]
            out.append(burst)
        return out

    def _decide(self, first: BurstCandidate, end: float) -> Burst:
        p = self.s.params
        a = self._grid(first.t_start - self.s.lookback_s)
        lo, hi = first.t_start, first.t_stop + self.s.settle_s
        near = [c for c in self._candidates(a, end, None) if c.t_stop > lo and c.t_start < hi] or [first]
        # the most significant window of each time scale; the `images` best of them are imaged
        per_scale: dict[float, BurstCandidate] = {}
        for c in near:
            if c.timescale not in per_scale or c.sigma > per_scale[c.timescale].sigma:
                per_scale[c.timescale] = c
        tries = sorted(per_scale.values(), key=lambda c: -c.sigma)[:self.s.images]
        burst = None
        for c in tries:
            t, z, y = self.events.between(c.bkg_start, c.t_stop)
            zg, yg = isgri_to_gapped(z, y)
            loc = localise_burst(self.decoder, t, zg, yg, self.weights, c, p, good=self._good(t, c.bkg_start, c.t_stop))
            if burst is None or loc.significance > burst.location.significance:
                burst = Burst(c, loc, first.t_start)
        if burst.location.level == "none":
            self.rejected.append(burst)
        return burst
