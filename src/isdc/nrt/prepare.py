"""Data preparation of a reassembled science window (ScWG2): times, attitude, group keywords.

Telemetry carries on-board time only. Preparation converts every OB_TIME to IJD (TT)
through the revolution's time correlation (`tc.obt_to_ijd`, the same conversion the
simulator used, so fault-free telemetry gives the archive's TIME bit for bit), and fills
the ScW group's keywords (`ScwInfo`): TSTART/TSTOP from OBTSTART/OBTEND, the pointing (X)
and Z axes from the attitude history (normalised mean of its samples in a pointing, the
attitude at mid-ScW in a slew, as the simulator does), or from the revolution plan when the
attitude history does not cover the ScW. HK arrive already in physical units (the
reassembler converts the ADC words).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isdc.dal.archive import Archive, ArchiveError, ScwInfo
from isdc.dal.rawdata import read_attitude, read_aux_time_correlation, read_revolution_plan
from isdc.ids import NRT, Revolution, ScwId, Version
from isdc.imaging.projection import Attitude, radec_to_unit, unit_to_radec
from isdc.telemetry.reassembly import ScwTelemetry
from isdc.time import TimeCorrelation, TimeError

__all__ = ["RevolutionAux", "PreparedScw", "prepare_scw"]


@dataclass
class RevolutionAux:
    """The auxiliary data of one revolution for the NRT stream (version .000).

    tc : OBT -> IJD correlation (required); attitude : INTL-ATTI-HIS columns or None;
    plan : INTL-PLAN-HIS columns or None.
    """

    revolution: Revolution
    tc: TimeCorrelation
    attitude: dict | None = None
    plan: dict | None = None

    @classmethod
    def load(cls, archive: Archive, rev: Revolution | int, version: Version | int = NRT) -> "RevolutionAux":
        """Read `aux/adp/RRRR.VVV/` (+ the plan); ArchiveError when the time correlation is missing."""
        rev = Revolution.parse(rev)
        tc = read_aux_time_correlation(archive, rev, version)
        att = plan = None
        try:
            att = read_attitude(archive, rev, version)
        except ArchiveError:
            pass  # the plan's commanded attitude stands in
        try:
            plan = read_revolution_plan(archive, rev, version)
        except ArchiveError:
            pass
        return cls(rev, tc, att, plan)

    def plan_windows(self) -> list[tuple[str, int, int]]:
        """(swid, OBTSTART, OBTEND) of every planned ScW ([] without a plan)."""
        if self.plan is None:
            return []
        return [(str(s).strip(), int(a), int(b)) for s, a, b in
                zip(self.plan["SWID"], self.plan["OBTSTART"], self.plan["OBTEND"])]

    def _plan_row(self, swid: str) -> int | None:
        if self.plan is None:
            return None
        hit = np.flatnonzero(np.char.strip(np.asarray(self.plan["SWID"], dtype=str)) == swid)
        return int(hit[0]) if hit.size else None

    def attitude_between(self, scw: ScwId, tstart: float, tstop: float) -> Attitude:
        """Mean attitude of a pointing over [tstart, tstop] IJD, or the attitude at mid-ScW of a
        slew; from the attitude history, else the plan. ArchiveError if neither knows the ScW."""
        a = self.attitude
        if a is not None and a["TIME"].size >= 2 and a["TIME"][0] <= tstart and a["TIME"][-1] >= tstop:
            t = a["TIME"]
            if scw.is_slew:
                mid = 0.5 * (tstart + tstop)
                x = np.array([np.interp(mid, t, c) for c in radec_to_unit(a["RA_SCX"], a["DEC_SCX"]).T])
                z = np.array([np.interp(mid, t, c) for c in radec_to_unit(a["RA_SCZ"], a["DEC_SCZ"]).T])
            else:
                sel = (t >= tstart) & (t <= tstop)
                if not sel.any():
                    sel = np.abs(t - 0.5 * (tstart + tstop)) == np.abs(t - 0.5 * (tstart + tstop)).min()
                x = radec_to_unit(a["RA_SCX"][sel], a["DEC_SCX"][sel]).mean(axis=0)
                z = radec_to_unit(a["RA_SCZ"][sel], a["DEC_SCZ"][sel]).mean(axis=0)
            return Attitude(*map(float, unit_to_radec(x)), *map(float, unit_to_radec(z)))
        row = self._plan_row(scw.swid)
        if row is None:
            raise ArchiveError(f"ScW {scw}: the attitude history of revolution {self.revolution} does not cover "
                               f"IJD {tstart:.6f}..{tstop:.6f} and the revolution plan does not list it")
        p = self.plan
        return Attitude(float(p["RA_SCX"][row]), float(p["DEC_SCX"][row]), float(p["RA_SCZ"][row]),
                        float(p["DEC_SCZ"][row]))

    def scw_info(self, scw: ScwId, obt_start: int, obt_end: int) -> ScwInfo:
        """The ScW group keywords (times from the OBT window, mean attitude)."""
        try:
            tstart, tstop = (float(v) for v in self.tc.obt_to_ijd(np.array([obt_start, obt_end], dtype=np.int64)))
        except TimeError as exc:
            raise ArchiveError(f"ScW {scw}: OBT {obt_start}..{obt_end}: {exc}") from exc
        att = self.attitude_between(scw, tstart, tstop)
        return ScwInfo(scw, tstart, tstop, att.ra_x, att.dec_x, att.ra_z, att.dec_z, att.posangle,
                       obtstart=int(obt_start), obtend=int(obt_end))


@dataclass
class PreparedScw:
    """A ScW ready to be written: group keywords, events and HK with TIME (IJD)."""

    info: ScwInfo
    events: dict[str, np.ndarray]
    hk: dict[str, np.ndarray]


def prepare_scw(tel: ScwTelemetry, aux: RevolutionAux) -> PreparedScw:
    """Add TIME to the events and HK of a reassembled ScW and make its group keywords.

    ArchiveError (naming the ScW) when an OBT lies outside the time correlation or the
    attitude is unknown.
    """
    info = aux.scw_info(tel.scw, tel.obt_start, tel.obt_end)
    try:
        ev_time = aux.tc.obt_to_ijd(np.asarray(tel.events["OB_TIME"], dtype=np.int64))
        hk_time = aux.tc.obt_to_ijd(np.asarray(tel.hk["OB_TIME"], dtype=np.int64))
    except TimeError as exc:
        raise ArchiveError(f"ScW {tel.scw}: {exc}") from exc
    events = {"TIME": np.asarray(ev_time, dtype=np.float64), **tel.events}
    hk = {"TIME": np.asarray(hk_time, dtype=np.float64), **tel.hk}
    return PreparedScw(info, events, hk)
