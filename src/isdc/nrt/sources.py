"""Source alerts after a science window's quick-look: new sources and flares, each alerted once.

Input: the rows of the ScW's source list (ISGR-SRCL-RES: NAME, NEW_SOURCE, RA_FIN,
DEC_FIN, ERR_RAD, DETSIG, FLUX, FLUX_ERR, E_MIN, E_MAX) and the reference catalogue's
expected rates (ISGR_FLUX_1 at 20-40 keV, ISGR_FLUX_2 at 40-100 keV, counts/s in the OSA
intensity convention the source list uses too).

* **New source**: an unidentified detection (NEW_SOURCE = 1) of at least
  `new_source_sigma`. Alerted once: later detections within `match_arcmin` (or three
  error radii) of a source already alerted are the same source.
* **Flare**: a catalogue source whose flux F +- s exceeds its reference level R +- s_R by
  `flare_sigma`: (F - R) / sqrt(s^2 + s_R^2 + (systematic R)^2). The reference is the
  mean of its last `history` quiet measurements (weighted), or the catalogue's rate in the
  band while it has none. After an alert the source is *flaring*: no further alert, and
  its measurements do not enter the reference, until its excess falls below `quiet_sigma`
  (hysteresis: a flare that hovers around the threshold alerts once). Only brightening is
  alerted.

`SourceMonitor.evaluate` is a pure function of (memory, source list): it returns the
alerts and the new memory; the daemon stores the memory in its durable state together
with the ScW's status, so a re-evaluation after a crash gives the same alerts (same IDs:
the alert store keeps each once) and none twice.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from isdc.dal.alerts import Alert

__all__ = ["SourceAlertSettings", "SourceMonitor", "expected_rate", "iau_name"]


@dataclass(frozen=True)
class SourceAlertSettings:
    new_source_sigma: float = 7.0
    flare_sigma: float = 5.0
    quiet_sigma: float = 2.0
    systematic: float = 0.1
    match_arcmin: float = 6.0
    history: int = 5


_CATALOG_BANDS = {(20.0, 40.0): ("ISGR_FLUX_1",), (40.0, 100.0): ("ISGR_FLUX_2",),
                  (20.0, 100.0): ("ISGR_FLUX_1", "ISGR_FLUX_2")}


def expected_rate(catalog_row: dict, e_min: float, e_max: float) -> float | None:
    """The catalogue's rate [counts/s] of a source in a band (20-40, 40-100 or 20-100 keV), else None."""
    cols = _CATALOG_BANDS.get((float(e_min), float(e_max)))
    if cols is None or any(c not in catalog_row for c in cols):
        return None
    v = sum(float(catalog_row[c]) for c in cols)
    return v if np.isfinite(v) else None


def iau_name(ra: float, dec: float) -> str:
    """INTEGRAL-style name of a new source: IGR JHHMMm+DDMM (RA minutes to 0.1, truncated)."""
    # truncated as the name convention wants, after rounding away binary noise (17.76 h is 17h 45.6m)
    tenths = int(np.floor(round((ra % 360.0) / 15.0 * 600.0, 6)))
    hh, mm10 = divmod(tenths, 600)
    sign = "+" if dec >= 0 else "-"
    dd, dm = divmod(int(np.floor(round(abs(dec) * 60.0, 6))), 60)
    return f"IGR J{hh:02d}{mm10:03d}{sign}{dd:02d}{dm:02d}"


def _sep_arcmin(ra1, dec1, ra2, dec2) -> float:
    r1, d1, r2, d2 = map(np.radians, (ra1, dec1, ra2, dec2))
    c = np.sin(d1) * np.sin(d2) + np.cos(d1) * np.cos(d2) * np.cos(r1 - r2)
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))) * 60.0)


class SourceMonitor:
    """New-source and flare alerts with memory (see module docstring)."""

    def __init__(self, settings: SourceAlertSettings = SourceAlertSettings()):
        self.s = settings

    def evaluate(self, memory: dict, scw: str, time_utc: str, rows: list[dict], catalog: dict[str, dict],
                 bursts: list[tuple[float, float, float]] = ()) -> tuple[list[Alert], dict]:
        """Alerts raised by one ScW's source list, and the memory after it.

        memory : the previous memory (not modified). scw : ScW ID. time_utc : ISO time of the
        ScW (the alerts' time). rows : source-list rows (dicts of the ISGR-SRCL-RES columns).
        catalog : catalogue rows by NAME (dicts with ISGR_FLUX_1/2). bursts : (ra, dec, error
        radius [arcmin]) of the bursts alerted in this ScW: a bright burst images in the ScW as
        an unidentified source, which is that burst, not a new source.
        """
        mem = copy.deepcopy(memory) if memory else {}
        mem.setdefault("new_sources", [])
        mem.setdefault("catalog", {})
        alerts = []
        for row in rows:
            if int(row.get("NEW_SOURCE", 0)):
                if self._is_burst(row, bursts):
                    continue
                a = self._new_source(mem, scw, time_utc, row)
            else:
                a = self._flare(mem, scw, time_utc, row, catalog.get(str(row["NAME"]).strip()))
            if a is not None:
                alerts.append(a)
        return alerts, mem

    def _is_burst(self, row: dict, bursts) -> bool:
        ra, dec, err = float(row["RA_FIN"]), float(row["DEC_FIN"]), float(row["ERR_RAD"]) * 60.0
        return any(_sep_arcmin(ra, dec, b_ra, b_dec) <= max(self.s.match_arcmin, 3.0 * max(err, b_err))
                   for b_ra, b_dec, b_err in bursts)

    def _new_source(self, mem: dict, scw: str, time_utc: str, row: dict) -> Alert | None:
        sig = float(row["DETSIG"])
        if not sig >= self.s.new_source_sigma:
            return None
        ra, dec = float(row["RA_FIN"]), float(row["DEC_FIN"])
        err = float(row["ERR_RAD"]) * 60.0
        for known in mem["new_sources"]:
            radius = max(self.s.match_arcmin, 3.0 * max(err, known["err_arcmin"]))
            if _sep_arcmin(ra, dec, known["ra"], known["dec"]) <= radius:
                known["seen"] = int(known.get("seen", 1)) + 1
                known["last_scw"] = scw
                return None
        name = iau_name(ra, dec)
        alert = Alert("NEW_SOURCE", time_utc, scw, name, ra=ra, dec=dec, error_arcmin=err, significance=sig,
                      level="alert", text=f"{name}: a source not in the reference catalogue, detected at "
                                          f"{sig:.1f} sigma in ScW {scw}",
                      params={"flux": f"{float(row['FLUX']):.4g}", "flux_error": f"{float(row['FLUX_ERR']):.4g}",
                              "e_min": f"{float(row['E_MIN']):g}", "e_max": f"{float(row['E_MAX']):g}",
                              "flux_unit": "counts/s"})
        mem["new_sources"].append({"name": name, "ra": ra, "dec": dec, "err_arcmin": err, "first_scw": scw,
                                   "last_scw": scw, "seen": 1, "alert": alert.id})
        return alert

    def _flare(self, mem: dict, scw: str, time_utc: str, row: dict, cat: dict | None) -> Alert | None:
        name = str(row["NAME"]).strip()
        e1, e2 = float(row["E_MIN"]), float(row["E_MAX"])
        f, df = float(row["FLUX"]), float(row["FLUX_ERR"])
        if not (np.isfinite(f) and np.isfinite(df) and df > 0):
            return None
        key = f"{name}|{e1:g}-{e2:g}"
        st = mem["catalog"].setdefault(key, {"quiet": [], "flaring": False})
        ref = self._reference(st, cat, e1, e2)
        if ref is None:  # nothing to compare with yet: this measurement is the reference
            self._remember_quiet(st, f, df)
            return None
        r, dr = ref
        excess = (f - r) / np.sqrt(df**2 + dr**2 + (self.s.systematic * r) ** 2)
        st["last"] = {"scw": scw, "flux": f, "error": df, "excess_sigma": float(excess)}
        if st["flaring"]:
            if excess < self.s.quiet_sigma:
                st["flaring"] = False
                self._remember_quiet(st, f, df)
            return None
        if excess >= self.s.flare_sigma:
            st["flaring"] = True
            alert = Alert("FLARE", time_utc, scw, f"{name} {e1:g}-{e2:g} keV", ra=float(row["RA_OBJ"]),
                          dec=float(row["DEC_OBJ"]), error_arcmin=float(row["ERR_RAD"]) * 60.0,
                          significance=float(excess), level="alert",
                          text=f"{name} at {f:.3g} +- {df:.2g} counts/s ({e1:g}-{e2:g} keV), {f / r:.2f} times its "
                               f"reference level {r:.3g} counts/s: {excess:.1f} sigma above",
                          params={"flux": f"{f:.4g}", "flux_error": f"{df:.4g}", "reference": f"{r:.4g}",
                                  "reference_error": f"{dr:.4g}", "ratio": f"{f / r:.3f}", "e_min": f"{e1:g}",
                                  "e_max": f"{e2:g}", "flux_unit": "counts/s"})
            st["alert"] = alert.id
            return alert
        if excess < self.s.quiet_sigma:
            self._remember_quiet(st, f, df)
        return None

    def _reference(self, st: dict, cat: dict | None, e1: float, e2: float) -> tuple[float, float] | None:
        q = st["quiet"]
        if q:
            f = np.array([v for v, _ in q])
            w = 1.0 / np.square([e for _, e in q])
            return float(np.sum(w * f) / np.sum(w)), float(1.0 / np.sqrt(np.sum(w)))
        exp = expected_rate(cat, e1, e2) if cat is not None else None
        return None if exp is None else (exp, 0.0)

    def _remember_quiet(self, st: dict, f: float, df: float) -> None:
        st["quiet"] = (st["quiet"] + [[f, df]])[-self.s.history:]
