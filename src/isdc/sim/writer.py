"""Write a simulated revolution into an ISDC archive (the raw data the analysis reads).

`simulate_revolution(archive, rev, ...)` plans the revolution (`isdc.sim.plan`), simulates
each science window (`isdc.sim.events.simulate_scw`) and writes, through the DAL
(templates, `isdc.dal.grouping`, atomic checksummed FITS), the layout of the data contract
(docs/simulator.md, "Archive layout"):

    scw/RRRR/<scwid>.VVV/swg.fits              GNRL-SCWG-GRP grouping (ScwInfo keywords)
    scw/RRRR/<scwid>.VVV/isgri_events.fits     ISGR-EVTS-ALL
    scw/RRRR/<scwid>.VVV/isgri_hk.fits         ISGR-HK..-CNV
    scw/RRRR/rev.VVV/revolution_plan.fits      INTL-PLAN-HIS (the ScWs of the revolution)
    aux/adp/RRRR.VVV/attitude_historic.fits    INTL-ATTI-HIS (8 s)
    aux/adp/RRRR.VVV/orbit_historic.fits       INTL-ORBI-SCP (60 s)
    aux/adp/RRRR.VVV/time_correlation.fits     AUXL-TCOR-HIS
    ic/isgri/isgr_rmf_rsp_0001.fits.gz         ISGR-EBDS-MOD + ISGR-RMF.-RSP (the simulator's response)
    ic/isgri/ibis_mask_mod_0001.fits           IBIS-MASK-MOD
    ic/isgri/gain/isgr_gain_mod_rRRRR.fits     ISGR-GAIN-MOD: the true gain of the revolution
    idx/ic/ic_master_file.fits                 IC index
    cat/gnrl_refr_cat.fits                     GNRL-REFR-CAT of the sky
    idx/scw/GNRL-SCWG-GRP-IDX.fits             ScW index (every ScW of the archive)
    sim/RRRR.VVV/revolution.json, <scwid>.json the truth (isdc.sim.truth)

Reproducible: the random numbers of a ScW come from (seed, revolution, pointing, sub,
type), FITS DATE keywords are the end of the revolution's last ScW (UTC), gzip headers
carry no time stamp; the same arguments give the same bytes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from isdc.dal import templates
from isdc.dal.archive import Archive, ScwInfo, build_scw_index, write_time_correlation
from isdc.dal.catalog import catalog_table
from isdc.dal.fitsfile import Image, fixed_date
from isdc.dal.icindex import build_ic_index
from isdc.dal.products import write_product
from isdc.dal.rawdata import ATTITUDE_FILE, EVENTS_FILE, HK_FILE, ORBIT_FILE, PLAN_FILE, write_raw_scw
from isdc.ids import CONS, Revolution, Version
from isdc.instruments.isgri.detector_model import HK_CYCLE_S, GainModel
from isdc.instruments.isgri.response import SIM_RESPONSE_FILE
from isdc.sim.events import Instrument, ScwSimulation, SkyEmitters, simulate_scw
from isdc.sim.icfiles import SIM_MASK_FILE, gain_model_table, mask_image, response_hdus, revolution_gain
from isdc.sim.plan import (REVOLUTION_PERIOD, ScwPlan, onboard_clock, orbit_state, plan_revolution, revolution_of,
                           revolution_phase, revolution_start)
from isdc.sim.sky import Sky
from isdc.sim.truth import revolution_truth, revolution_truth_path, scw_truth, scw_truth_path, write_json
from isdc.time import TimeCorrelation, ijd_to_isot

__all__ = ["EVENTS_FILE", "HK_FILE", "ATTITUDE_FILE", "ORBIT_FILE", "PLAN_FILE", "CATALOG_FILE", "IC_INSTRUMENT",
           "ATTITUDE_STEP_S", "ORBIT_STEP_S", "RevolutionResult", "simulate_revolution", "write_scw", "write_aux",
           "write_ic", "write_reference_catalog", "scw_rng", "archive_date"]

CATALOG_FILE = "gnrl_refr_cat.fits"
IC_INSTRUMENT = "isgri"
"""Instrument folder of the IC files in the archive (as in the shipped `ic_files/`)."""
ATTITUDE_STEP_S = 8.0
ORBIT_STEP_S = 60.0
SECONDS_PER_DAY = 86400.0


def scw_rng(seed: int, plan: ScwPlan) -> np.random.Generator:
    """The random generator of one ScW: independent of the others, the same in every run."""
    s = plan.scw_id
    return np.random.default_rng([int(seed), s.revolution, s.pointing, s.subnumber, s.type, 20021017])


def archive_date(plans: Sequence[ScwPlan]) -> str:
    """DATE of every file written for these ScWs: the end of the last one, UTC, to the second."""
    return str(ijd_to_isot(max(p.tstop for p in plans), precision=0))[:19]


def write_scw(archive: Archive, sim: ScwSimulation, instrument: Instrument, *, durable: bool = True) -> Path:
    """Write one simulated ScW: events, HK and their group swg.fits (`isdc.dal.rawdata.write_raw_scw`)."""
    plan = sim.plan
    att = sim.attitude
    info = ScwInfo(plan.scw_id, plan.tstart, plan.tstop, att.ra_x, att.dec_x, att.ra_z, att.dec_z, att.posangle,
                   obtstart=sim.obt_start, obtend=sim.obt_stop)
    dt = instrument.dead_time
    return write_raw_scw(archive, info, sim.events, sim.hk, hk_cycle_s=HK_CYCLE_S, tau_event=dt.tau_event,
                         tau_veto=dt.tau_veto, durable=durable)


def _attitude_table(plans: Sequence[ScwPlan], tc: TimeCorrelation, rev: int) -> object:
    t0, t1 = plans[0].tstart, plans[-1].tstop
    span = (t1 - t0) * SECONDS_PER_DAY
    t = t0 + np.arange(int(np.floor(span / ATTITUDE_STEP_S + 1e-6)) + 1) * ATTITUDE_STEP_S / SECONDS_PER_DAY
    if (t1 - t[-1]) * SECONDS_PER_DAY > 1e-3:  # the end of the last ScW, unless a sample falls on it
        t = np.r_[t, t1]
    which = np.minimum(np.searchsorted([p.tstop for p in plans], t, side="left"), len(plans) - 1)
    cols = {k: np.empty(t.size) for k in ("RA_SCX", "DEC_SCX", "RA_SCZ", "DEC_SCZ", "POSANGLE")}
    for i in np.unique(which):
        sel = which == i
        a = plans[i].attitude(t[sel])
        for k, v in zip(cols, (a.ra_x, a.dec_x, a.ra_z, a.dec_z, a.posangle)):
            cols[k][sel] = v
    obt = tc.ijd_to_obt(t)
    return templates.get("INTL-ATTI-HIS").table({"TIME": tc.obt_to_ijd(obt), "OB_TIME": obt, **cols}, REVOL=rev,
                                                TSTART=float(t[0]), TSTOP=float(t[-1]), STEP=ATTITUDE_STEP_S)


def _orbit_table(plans: Sequence[ScwPlan], tc: TimeCorrelation, rev: int) -> object:
    t0, t1 = plans[0].tstart, plans[-1].tstop
    n = int(np.ceil((t1 - t0) * SECONDS_PER_DAY / ORBIT_STEP_S)) + 1
    obt = tc.ijd_to_obt(np.minimum(t0 + np.arange(n) * ORBIT_STEP_S / SECONDS_PER_DAY, tc.ijd_range[1]))
    t = tc.obt_to_ijd(obt)
    pos, vel = orbit_state(t)
    cols = {"TIME": t, "OB_TIME": obt, "REVOL": revolution_of(t).astype(np.int32), "REVOL_PHASE": revolution_phase(t),
            "REVOL_FRAC": (t - revolution_start(0)) / REVOLUTION_PERIOD, "DISTANCE": np.linalg.norm(pos, axis=1)}
    for i, ax in enumerate("XYZ"):
        cols[f"{ax}POS"] = pos[:, i]
        cols[f"{ax}VEL"] = vel[:, i]
    return templates.get("INTL-ORBI-SCP").table(cols, REVOL=rev, TSTART=float(t[0]), TSTOP=float(t[-1]),
                                                STEP=ORBIT_STEP_S)


def _plan_table(plans: Sequence[ScwPlan], tc: TimeCorrelation, rev: int) -> object:
    cols = {"SWID": [p.scw_id.swid for p in plans], "SW_TYPE": [p.scw_id.sw_type for p in plans],
            "TSTART": [p.tstart for p in plans], "TSTOP": [p.tstop for p in plans],
            "OBTSTART": tc.ijd_to_obt(np.array([p.tstart for p in plans])),
            "OBTEND": tc.ijd_to_obt(np.array([p.tstop for p in plans])),
            "RA_SCX": [p.ra_x for p in plans], "DEC_SCX": [p.dec_x for p in plans],
            "RA_SCZ": [p.ra_z for p in plans], "DEC_SCZ": [p.dec_z for p in plans],
            "POSANGLE": [p.posangle for p in plans], "TARGET": [p.target[:32] for p in plans],
            "DITHER": np.array([p.dither for p in plans], dtype=np.int32)}
    return templates.get("INTL-PLAN-HIS").table({k: np.asarray(v) for k, v in cols.items()}, REVOL=rev,
                                                NSCW=len(plans))


def write_aux(archive: Archive, rev: int, version: Version, plans: Sequence[ScwPlan], tc: TimeCorrelation, *,
              durable: bool = True) -> list[Path]:
    """Attitude, orbit and time correlation of the revolution (aux/adp/RRRR.VVV/) and its ScW
    list (scw/RRRR/rev.VVV/)."""
    adp = archive.aux_adp(rev, version)
    adp.mkdir(parents=True, exist_ok=True)
    rev_dir = archive.rev_dir(rev, version)
    rev_dir.mkdir(parents=True, exist_ok=True)
    return [
        write_product(adp / ATTITUDE_FILE, [Image(), _attitude_table(plans, tc, rev)], durable=durable),
        write_product(adp / ORBIT_FILE, [Image(), _orbit_table(plans, tc, rev)], durable=durable),
        write_time_correlation(archive.time_correlation(rev, version), tc, rev),
        write_product(rev_dir / PLAN_FILE, [Image(), _plan_table(plans, tc, rev)], durable=durable),
    ]


def gain_file(rev: int) -> str:
    """The revolution's ISGR-GAIN-MOD, relative to `ic/`."""
    return f"{IC_INSTRUMENT}/gain/isgr_gain_mod_r{Revolution(int(rev))}.fits"


def write_ic(archive: Archive, rev: int, instrument: Instrument, *, durable: bool = True) -> list[Path]:
    """IC files: the response and the mask (valid until further notice, written once), and the
    revolution's true gain model (valid over the revolution); then the IC index."""
    ic = archive.ic_root()
    out = []
    resp = ic / SIM_RESPONSE_FILE
    if not resp.exists():
        resp.parent.mkdir(parents=True, exist_ok=True)
        out.append(write_product(resp, [Image()] + response_hdus(instrument.response, history=(
            "The simulator's ISGRI response (isdc.instruments.isgri.response.IsgriResponse.default).",)),
                                 durable=durable))
    mask = ic / SIM_MASK_FILE
    if not mask.exists():
        mask.parent.mkdir(parents=True, exist_ok=True)
        out.append(write_product(mask, [Image(), mask_image(instrument.geometry)], durable=durable))
    path = ic / gain_file(rev)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = float(revolution_start(rev))
    out.append(write_product(path, [Image(), gain_model_table(instrument.gain, vstart=t0, vstop=t0 + REVOLUTION_PERIOD)],
                             durable=durable))
    build_ic_index(archive)
    return out


def write_reference_catalog(archive: Archive, sky: Sky, instrument: Instrument, *, durable: bool = True) -> Path:
    """`cat/gnrl_refr_cat.fits`: the sky as a GNRL-REFR-CAT."""
    archive.cat_dir().mkdir(parents=True, exist_ok=True)
    table = catalog_table(sky.reference_catalog(instrument.response))
    return write_product(archive.cat_dir() / CATALOG_FILE, [Image(), table], durable=durable)


@dataclass
class RevolutionResult:
    """What `simulate_revolution` wrote: the plans, per ScW its event count, the files."""

    revolution: int
    version: Version
    plans: list[ScwPlan]
    events: dict = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    date: str = ""


def simulate_revolution(
    archive: Archive | str | os.PathLike,
    revolution: int,
    *,
    n_pointings: int | None = None,
    exposure: float | tuple[float, float] = (1800.0, 3600.0),
    sky: Sky | None = None,
    seed: int = 0,
    version: Version = CONS,
    pattern: str = "hex",
    target="Crab",
    slew_overhead_s: float = 120.0,
    slew_rate: float = 0.1,
    base_gain: GainModel | None = None,
    durable: bool = True,
    progress: Callable[[ScwSimulation], None] | None = None,
) -> RevolutionResult:
    """Simulate revolution `revolution` and write it into `archive` (see the module docstring).

    n_pointings, exposure [s or (min, max)], pattern, target, seed, slew_overhead_s,
    slew_rate [deg/s]: the observation plan (`isdc.sim.plan.plan_revolution`); sky: default
    `Sky.default()`; version: data version of the ScWs (NRT 000, CONS 001); base_gain: the
    gain law re-referenced to the revolution's start (`revolution_gain`), default `GainModel()`;
    progress: called with each simulated ScW.

    Raises PlanError (`isdc.sim.plan`) when the plan is impossible (Sun constraint, too many
    pointings), ArchiveError/FitsError on a write problem.
    """
    archive = archive if isinstance(archive, Archive) else Archive(archive)
    version = version if isinstance(version, Version) else Version(int(version))
    rev = int(revolution)
    sky = sky if sky is not None else Sky.default()
    plans = plan_revolution(rev, n_pointings, exposure, pattern, seed, target, version=version,
                            slew_overhead_s=slew_overhead_s, slew_rate=slew_rate)
    tc = onboard_clock(rev)
    gain = revolution_gain(base_gain if base_gain is not None else GainModel(), float(revolution_start(rev)))
    inst = Instrument.default(gain)
    emit = SkyEmitters(sky, inst)
    result = RevolutionResult(rev, version, plans, date=archive_date(plans))
    archive.root.mkdir(parents=True, exist_ok=True)
    in_field: set[int] = set()
    with fixed_date(result.date):
        for plan in plans:
            sim = simulate_scw(plan, sky, tc, scw_rng(seed, plan), inst, emit)
            result.files.append(write_scw(archive, sim, inst, durable=durable))
            write_json(scw_truth_path(archive, plan.scw_id), scw_truth(sim), durable=durable)
            result.events[str(plan.scw_id)] = sim.n_events
            in_field.update(s["label"] for s in sim.sources)
            if progress is not None:
                progress(sim)
            del sim
        result.files += write_aux(archive, rev, version, plans, tc, durable=durable)
        result.files += write_ic(archive, rev, inst, durable=durable)
        result.files.append(write_reference_catalog(archive, sky, inst, durable=durable))
        build_scw_index(archive)
        run = {"revolution": rev, "pointings": n_pointings, "exposure": exposure if np.isscalar(exposure)
               else list(exposure), "seed": int(seed), "version": str(version), "pattern": pattern,
               "target": target if isinstance(target, str) else list(target), "slew_overhead_s": slew_overhead_s,
               "slew_rate": slew_rate}
        write_json(revolution_truth_path(archive, rev, version),
                   revolution_truth(rev, version, plans, emit, inst, in_field, run, gain_file(rev)), durable=durable)
    return result
