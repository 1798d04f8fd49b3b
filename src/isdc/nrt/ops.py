"""Operations alerts: housekeeping out of limits, telemetry losses, processing failures.

One alert per science window and kind of problem (its subject: 'HK MDU_TEMP', 'HK BIAS_V',
'telemetry', 'processing'), so a re-evaluation after a restart gives the same alert IDs
and the alert store keeps each once. Pure functions of the ScW's data and report.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isdc.dal.alerts import Alert
from isdc.telemetry.packets import FRAME_TICKS

__all__ = ["OpsSettings", "hk_alerts", "telemetry_alerts", "failure_alert", "event_gaps"]


@dataclass(frozen=True)
class OpsSettings:
    max_temperature_c: float = 5.0
    min_abs_bias_v: float = 80.0
    max_lost_fraction: float = 0.01
    min_gap_s: float = 10.0


def hk_alerts(scw: str, time_utc: str, hk: dict[str, np.ndarray], s: OpsSettings) -> list[Alert]:
    """HK rows (MDU_TEMP, BIAS_V: (n, 8)) out of limits -> one alert per quantity."""
    out = []
    checks = (("MDU_TEMP", lambda v: v > s.max_temperature_c, f"above {s.max_temperature_c:g} degC", "degC"),
              ("BIAS_V", lambda v: np.abs(v) < s.min_abs_bias_v, f"|V| below {s.min_abs_bias_v:g} V", "V"))
    for col, bad_of, what, unit in checks:
        v = np.asarray(hk.get(col, np.zeros((0, 8))), dtype=float).reshape(-1, 8)
        bad = bad_of(v)
        if not bad.any():
            continue
        modules = sorted({int(m) for m in np.flatnonzero(bad.any(axis=0))})
        worst = float(v[bad].max() if col == "MDU_TEMP" else v[bad][np.argmin(np.abs(v[bad]))])
        out.append(Alert("OPS", time_utc, scw, f"HK {col}", level="warning",
                         text=f"ISGRI {col} {what} in {int(bad.any(axis=1).sum())} of {v.shape[0]} HK cycles, "
                              f"modules {modules}; worst {worst:.3g} {unit}",
                         params={"parameter": col, "cycles": int(bad.any(axis=1).sum()), "worst": f"{worst:.4g}",
                                 "modules": ",".join(map(str, modules))}))
    return out


def event_gaps(ob_time: np.ndarray, obt_start: int, obt_end: int, min_gap_s: float) -> list[tuple[float, float]]:
    """Intervals [s since OBTSTART] longer than `min_gap_s` without an event (edges included)."""
    t = (np.asarray(ob_time, dtype=np.int64) - int(obt_start)) / FRAME_TICKS
    edges = np.concatenate([[0.0], t, [(int(obt_end) - int(obt_start)) / FRAME_TICKS]])
    d = np.diff(edges)
    return [(float(edges[i]), float(edges[i + 1])) for i in np.flatnonzero(d > min_gap_s)]


def telemetry_alerts(scw: str, time_utc: str, report: dict, gaps_s: list[tuple[float, float]],
                     s: OpsSettings) -> list[Alert]:
    """Lost packets above `max_lost_fraction`, or data gaps of at least `min_gap_s` -> one alert."""
    expected, lost = report.get("expected"), report.get("lost")
    frac = (lost / expected) if expected and lost is not None else None
    problems = []
    if frac is not None and frac > s.max_lost_fraction:
        problems.append(f"{lost} of {expected} packets lost ({100 * frac:.2f}%)")
    if gaps_s:
        total = sum(b - a for a, b in gaps_s)
        problems.append(f"{len(gaps_s)} gap(s) without events of >= {s.min_gap_s:g} s, {total:.0f} s in all")
    if not report.get("end_mark", True):
        problems.append("END mark not received")
    if not problems:
        return []
    return [Alert("OPS", time_utc, scw, "telemetry", level="warning", text="; ".join(problems),
                  params={"lost_packets": "" if lost is None else int(lost),
                          "expected_packets": "" if expected is None else int(expected),
                          "lost_fraction": "" if frac is None else f"{frac:.5f}",
                          "gaps": len(gaps_s), "gap_seconds": f"{sum(b - a for a, b in gaps_s):.1f}"})]


def failure_alert(scw: str, time_utc: str, stage: str, reason: str) -> Alert:
    """A processing failure of a ScW (ingest or quick-look)."""
    return Alert("OPS", time_utc, scw, "processing", level="error", text=f"{stage} failed: {reason}"[:1000],
                 params={"stage": stage})
