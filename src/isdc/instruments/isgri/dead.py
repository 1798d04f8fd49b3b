"""ISGRI dead time (level DEAD): dead fraction per module from the HK counters, live time.

Pure numpy. Each processed trigger blocks a module for `tau_event` and each veto-shield
strobe for `tau_veto` (non-paralysable). The HK counters of a cycle count only what
arrived while the module was live, so

    D = (tau_event (TRIG_CNT + VETO_CNT) + tau_veto VETO_STB) / CYCLE_LEN

is the dead fraction of the cycle without bias (for true rates n, E[N] = n (1 - D) L and
tau n (1 - D) = x / (1 + x) = D; `isdc.instruments.isgri.detector_model.DeadTimeModel`).

The live fraction of a module over the good time weights each cycle's 1 - D by the good
time it holds. A cycle whose HK row is missing (telemetry gap at its start) may still hold
good time after the gap: row i stands for [TIME_i, TIME_i+1), the last row until the end.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isdc.instruments.isgri.detector_model import N_MODULES
from isdc.instruments.isgri.gti import Intervals, overlap

__all__ = ["dead_fractions", "LiveTime", "live_time"]


def dead_fractions(accepted, vetoed, veto_strobes, cycle_len, tau_event: float, tau_veto: float) -> np.ndarray:
    """(n, 8) dead fraction per HK cycle and module from the counters.

    accepted, vetoed, veto_strobes : (n, 8) counts in the cycle (TRIG_CNT, VETO_CNT,
    VETO_STB); cycle_len : (n,) cycle length [s]; tau_event, tau_veto : [s].
    Raises ValueError on negative counts or non-positive cycle lengths.
    """
    acc, vet, stb = (np.asarray(a, dtype=float) for a in (accepted, vetoed, veto_strobes))
    length = np.asarray(cycle_len, dtype=float)
    if not (acc.shape == vet.shape == stb.shape) or acc.ndim != 2 or acc.shape[1] != N_MODULES:
        raise ValueError(f"counters must all have shape (n, {N_MODULES}), got {acc.shape}, {vet.shape}, {stb.shape}")
    if length.shape != (acc.shape[0],):
        raise ValueError(f"cycle_len must have shape ({acc.shape[0]},), got {length.shape}")
    if np.any(acc < 0) or np.any(vet < 0) or np.any(stb < 0):
        raise ValueError("negative HK counter")
    if np.any(~(length > 0)):
        raise ValueError("HK cycle length must be > 0")
    return (tau_event * (acc + vet) + tau_veto * stb) / length[:, None]


@dataclass(frozen=True)
class LiveTime:
    """Live time of one ScW over its good time.

    ontime : good time [s]; live_fraction : (8,) per module; deadc : mean of the modules
    (equal areas); good_per_cycle : (n,) good time [s] each HK row stands for.
    """

    ontime: float
    live_fraction: np.ndarray
    deadc: float
    good_per_cycle: np.ndarray

    @property
    def livetime(self) -> float:
        """ONTIME x DEADC [s]."""
        return self.ontime * self.deadc


def live_time(hk_time, dead, gti: Intervals) -> LiveTime:
    """Live fraction per module over the good time.

    hk_time : (n,) cycle starts [s, same origin as `gti`] (increasing); dead : (n, 8)
    dead fractions; gti : (start, stop) good time [s]. Row i stands
    for [hk_time_i, hk_time_i+1) (the first from the start of time, the last to the end),
    so good time in cycles without an HK row takes the previous row's dead fraction.
    """
    t = np.asarray(hk_time, dtype=float)
    d = np.asarray(dead, dtype=float)
    if t.size == 0:
        raise ValueError("no HK rows: the dead time is unknown")
    if np.any(np.diff(t) <= 0):
        raise ValueError("HK cycle times must increase")
    start = np.r_[-np.inf, t[1:]]
    stop = np.r_[t[1:], np.inf]
    good = overlap(gti, start, stop)
    ontime = float(good.sum())
    if ontime <= 0:
        raise ValueError("no good time")
    live = ((1.0 - d) * good[:, None]).sum(axis=0) / ontime
    return LiveTime(ontime, live, float(live.mean()), good)
