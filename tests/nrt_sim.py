"""A simulated revolution for the NRT daemon tests (helper module, not a test file).

Three short pointings of a hex dither around the Crab (and the slews between them), with
- a GRB in the second pointing (the burst trigger's truth),
- a 300 mCrab source missing from the reference catalogue (the new-source truth),
- a catalogue source quiet at 60 mCrab that flares x12 at the start of the second pointing
  and stays bright through the third (the flare truth: one alert, not two),
written into an archive as version .001 by the simulator; its auxiliary data are then
delivered as version .000 (`copy_revolution_aux`) for the NRT stream.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from isdc.dal.archive import Archive
from isdc.dal.inbox import Inbox
from isdc.dal.rawdata import copy_revolution_aux
from isdc.ids import CONS, NRT
from isdc.instruments.isgri.detector_model import GainModel
from isdc.sim.events import Instrument
from isdc.sim.feed import FaultSpec, archive_scws, emit, read_scw_data
from isdc.sim.icfiles import revolution_gain
from isdc.sim.plan import offset_position, plan_revolution, revolution_start
from isdc.sim.sky import Sky
from isdc.sim.writer import simulate_revolution, write_reference_catalog

REV = 665
DAY = 86400.0
PLAN = dict(n_pointings=3, exposure=300.0, pattern="hex", seed=11, target="Crab", slew_overhead_s=10.0,
            slew_rate=0.5)
GRB_OFFSET_S = 150.0  # burst onset after the start of the second pointing
NEW_NAME, FLARE_NAME = "Newcomer", "XTE J0530+230"


@dataclass
class NrtRevolution:
    archive: Path
    scws: list[str]  # 12-digit ids in OBT order
    pointings: list[str]
    grb: dict  # name, time (IJD), ra, dec, fluence, scw
    new_source: tuple[float, float]
    flare_source: str
    flare_pointings: list[str]


def sky_text(p2_start: float, grb_ra: float, grb_dec: float, new_pos, flare_pos, with_new: bool = True) -> str:
    new = f"""
  - name: {NEW_NAME}
    ra: {new_pos[0]!r}
    dec: {new_pos[1]!r}
    spectrum: {{model: powerlaw, index: 2.0}}
    flux: {{mcrab: 300}}""" if with_new else ""
    return f"""
name: nrt-test-sky
sources:
  - name: Crab
    ra: 83.6332
    dec: 22.0145
    spectrum: {{model: powerlaw, index: 2.1}}
    flux: {{mcrab: 1000}}
  - name: {FLARE_NAME}
    ra: {flare_pos[0]!r}
    dec: {flare_pos[1]!r}
    spectrum: {{model: powerlaw, index: 2.0}}
    flux: {{mcrab: 60}}
    variability:
      - {{type: flare, time: {p2_start + 20.0 / DAY!r}, peak: 12.0, rise: 10, decay: 3000}}{new}
grbs:
  - name: GRB test
    time: {p2_start + GRB_OFFSET_S / DAY!r}
    ra: {grb_ra!r}
    dec: {grb_dec!r}
    fluence: 2.0e-6
    spectrum: {{model: band, alpha: -1.0, beta: -2.3, epeak: 250}}
    lightcurve: {{shape: fred, duration: 5.0}}
"""


def simulate(root: Path, grb_offset_deg: float = 4.0) -> NrtRevolution:
    """Simulate the revolution into `root/archive` (version .001) and deliver its NRT aux data."""
    plans = plan_revolution(REV, PLAN["n_pointings"], PLAN["exposure"], PLAN["pattern"], PLAN["seed"],
                            PLAN["target"], slew_overhead_s=PLAN["slew_overhead_s"], slew_rate=PLAN["slew_rate"])
    pointings = [p for p in plans if not p.is_slew]
    p2 = pointings[1]
    grb_ra, grb_dec = (float(v) for v in offset_position(p2.ra_x, p2.dec_x, 130.0, grb_offset_deg))
    new_pos = tuple(float(v) for v in offset_position(83.6332, 22.0145, 250.0, 2.2))
    flare_pos = tuple(float(v) for v in offset_position(83.6332, 22.0145, 40.0, 1.6))
    text = sky_text(p2.tstart, grb_ra, grb_dec, new_pos, flare_pos)
    sky = Sky.loads(text, "nrt-test-sky")
    archive = Archive(root / "archive")
    simulate_revolution(archive, REV, n_pointings=PLAN["n_pointings"], exposure=PLAN["exposure"], sky=sky,
                        seed=PLAN["seed"], version=CONS, pattern=PLAN["pattern"], target=PLAN["target"],
                        slew_overhead_s=PLAN["slew_overhead_s"], slew_rate=PLAN["slew_rate"], durable=False)
    # the reference catalogue does not know the new source
    known = Sky.loads(sky_text(p2.tstart, grb_ra, grb_dec, new_pos, flare_pos, with_new=False), "catalogue")
    inst = Instrument.default(revolution_gain(GainModel(), float(revolution_start(REV))))
    write_reference_catalog(archive, known, inst, durable=False)
    copy_revolution_aux(archive, REV, CONS, NRT, durable=False)
    grb = {"name": "GRB test", "time": p2.tstart + GRB_OFFSET_S / DAY, "ra": grb_ra, "dec": grb_dec,
           "fluence": 2.0e-6, "scw": p2.scw_id.swid}
    return NrtRevolution(archive.root, [p.scw_id.swid for p in plans], [p.scw_id.swid for p in pointings], grb,
                         new_pos, FLARE_NAME, [p.scw_id.swid for p in pointings[1:]])


def feed(rev: NrtRevolution, inbox: Path, faults: str = "", seed: int = 3, speed: float = 0.0, **kw):
    """Emit the revolution's .001 ScWs as telemetry into `inbox` (fault spec as for isdc-run feed)."""
    arch = Archive(rev.archive)
    scws = archive_scws(arch, REV, CONS)
    return emit((read_scw_data(arch, s) for s in scws), Inbox(inbox), REV, faults=FaultSpec.parse(faults), seed=seed,
                speed=speed, durable=False, **kw)


def separation_arcmin(ra1, dec1, ra2, dec2) -> float:
    r1, d1, r2, d2 = map(np.radians, (ra1, dec1, ra2, dec2))
    c = np.sin(d1) * np.sin(d2) + np.cos(d1) * np.cos(d2) * np.cos(r1 - r2)
    return float(np.degrees(np.arccos(np.clip(c, -1, 1))) * 60)


def event_key(ev, ob0: int) -> np.ndarray:
    """One integer per event (< 2**63 for a ScW of up to 4 h after `ob0`): OBT on the 64-tick
    grid, pixel, pulse height (11 bits) and rise time (8 bits)."""
    k = (np.asarray(ev["OB_TIME"], np.int64) - ob0) // 64
    for col, bits in (("ISGRI_Z", 7), ("ISGRI_Y", 7), ("ISGRI_PHA", 11), ("RISE_TIME", 8)):
        k = (k << bits) + np.asarray(ev[col], np.int64)
    return k
