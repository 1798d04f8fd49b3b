"""The simulator's truth: what was put into each simulated science window, machine-readable.

Not ISDC data: the answer key the pipeline's results are checked against. It lives beside
the data in the archive, `sim/RRRR.VVV/` (docs/simulator.md, section "Truth"):

- `sim/RRRR.VVV/revolution.json`: the run (command, seed, sky), the true gain model (the
  ISGR-GAIN-MOD written to `ic/` and the IC file's path), the calibration lines of the
  background with their true energies, dead-time constants, rise-time window, dead pixels,
  each source and GRB that was in the field of some ScW (position, flux, spectrum, rate per
  response channel), and the list of ScWs;
- `sim/RRRR.VVV/<scwid>.json`, one per ScW: times, OBT, attitude, good-time intervals
  (IJD), ONTIME, dead fraction per module (mean over good time and per HK cycle), live
  time, DEADC, module temperatures, the gain at the ScW's start, and per source in the
  field its position (tan_y, tan_z, off-axis angle, mean PIF) and per standard band
  (20-40, 40-100, 25-80 keV) its rate R (OSA convention), the expected and the simulated
  counts in the band (events with COR energy in the band and rise time in the window);
  the same for the background; noisy-pixel bursts; events per component.

JSON (sorted keys, no NaN), written atomically through `isdc.dal.atomic`. `scw_truth`
and `revolution_truth` build the documents (pure); `write_json`/`read_json` and the path
helpers do the files.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from isdc.dal.atomic import atomic_write_bytes
from isdc.dal.archive import Archive
from isdc.ids import Revolution, ScwId, Version
from isdc.instruments.isgri.detector_model import HK_CYCLE_S, RISE_MAX, RISE_MIN, GainModel
from isdc.sim.events import BACKGROUND, GRB_BASE, NOISY, STANDARD_BANDS, Instrument, ScwSimulation, SkyEmitters, band_key
from isdc.time import format_obt

__all__ = ["TRUTH_FORMAT", "TRUTH_VERSION", "truth_dir", "scw_truth_path", "revolution_truth_path", "scw_truth",
           "revolution_truth", "gain_truth", "write_json", "read_json", "read_scw_truth", "read_revolution_truth"]

TRUTH_FORMAT = "isdc-sim-truth"
TRUTH_VERSION = 1


# --------------------------------------------------------------------------- paths

def truth_dir(archive: Archive, rev: Revolution | int, version: Version | int) -> Path:
    """`sim/RRRR.VVV/` of an archive (validated identifiers only)."""
    rev = rev if isinstance(rev, Revolution) else Revolution(int(rev))
    version = version if isinstance(version, Version) else Version(int(version))
    return Path(archive.root, "sim", f"{rev}.{version}")


def scw_truth_path(archive: Archive, scw: ScwId) -> Path:
    if not isinstance(scw, ScwId):
        raise TypeError(f"scw must be a ScwId (parse the text with ScwId.parse first), got {scw!r}")
    return truth_dir(archive, scw.rev, scw.version) / f"{scw}.json"


def revolution_truth_path(archive: Archive, rev: Revolution | int, version: Version | int) -> Path:
    return truth_dir(archive, rev, version) / "revolution.json"


# --------------------------------------------------------------------------- documents

def _f(x) -> float | list:
    """Plain floats (lists) for JSON."""
    a = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"truth: non-finite value {x!r}")
    return a.tolist()


def gain_truth(gain: GainModel) -> dict:
    """The true gain law (ISGR-GAIN-MOD contents; formula in templates/ISGR-GAIN-MOD.yaml)."""
    return {"gain": _f(gain.gain), "offset": _f(gain.offset), "gain_tcoef": _f(gain.gain_tcoef),
            "offset_tcoef": _f(gain.offset_tcoef), "rt_gain": _f(gain.rt_gain), "rt_offset": _f(gain.rt_offset),
            "gain_drift": float(gain.gain_drift), "t_ref": float(gain.t_ref),
            "temperature_ref": float(gain.temperature_ref), "charge_loss": float(gain.charge_loss),
            "charge_loss_knee": float(gain.charge_loss_knee)}


def scw_truth(sim: ScwSimulation) -> dict:
    """The truth document of one simulated ScW."""
    plan = sim.plan
    g0, g1 = sim.gti_ijd
    ontime = sim.ontime
    w = sim.gti_overlap
    dead_mean = (sim.dead_fraction * w[:, None]).sum(axis=0) / w.sum() if w.sum() > 0 else np.zeros(8)
    live_time = sim.live_time()
    temp_mean = (sim.temperature * w[:, None]).sum(axis=0) / w.sum() if w.sum() > 0 else sim.temperature.mean(0)
    comp = sim.component
    counts = {"background": int((comp == BACKGROUND).sum()), "noisy": int((comp == NOISY).sum()),
              "sources": int(((comp >= 0) & (comp < GRB_BASE)).sum()), "grbs": int((comp >= GRB_BASE).sum())}
    att = sim.attitude
    return {
        "format": TRUTH_FORMAT, "format_version": TRUTH_VERSION,
        "scw": str(plan.scw_id), "sw_type": plan.scw_id.sw_type, "revolution": plan.revolution,
        "tstart": float(plan.tstart), "tstop": float(plan.tstop),
        "obtstart": format_obt(sim.obt_start), "obtend": format_obt(sim.obt_stop),
        "target": plan.target, "dither": int(plan.dither),
        "attitude": {"ra_scx": att.ra_x, "dec_scx": att.dec_x, "ra_scz": att.ra_z, "dec_scz": att.dec_z,
                     "posangle": att.posangle, "kind": "mean" if not plan.is_slew else "middle of the slew"},
        "gti": [[a, b] for a, b in zip(_f(g0), _f(g1))],
        "ontime": ontime,
        "dead_fraction": _f(dead_mean),
        "live_time": _f(live_time),
        "deadc": float(live_time.mean() / ontime) if ontime > 0 else 0.0,
        "cycles": {"time": _f(sim.ijd(sim.cycle_start)), "length": _f(sim.cycle_length),
                   "hk_row": [bool(v) for v in sim.hk_row], "good_time": _f(sim.gti_overlap),
                   "dead_fraction": _f(sim.dead_fraction)},
        "temperature_mean": _f(temp_mean),
        "gain_at_tstart": _f(sim.gain.gain_at(np.arange(8), plan.tstart, temp_mean)),
        "offset_at_tstart": _f(sim.gain.offset_at(np.arange(8), plan.tstart, temp_mean)),
        "events": sim.n_events, "events_by_component": counts, "selected_events": sim.band_counts,
        "sources": sim.sources,
        "background": sim.background,
        "noisy_pixels": [{"start": float(sim.ijd(a)), "stop": float(sim.ijd(b)),
                          "isgri_z": int(z), "isgri_y": int(y), "events": int(n)} for a, b, z, y, n in sim.noisy_bursts],
    }


def revolution_truth(rev: int, version: Version, plans, emit: SkyEmitters, instrument: Instrument,
                     in_field: set, run: dict, gain_file: str) -> dict:
    """The truth document of a simulated revolution (see the module docstring)."""
    sky = emit.sky
    bg = instrument.background
    r = instrument.response
    sources = []
    for lab in sorted(in_field):
        row = emit.channels[emit.row(lab)]
        if lab >= GRB_BASE:
            g = sky.grbs[lab - GRB_BASE]
            d = {"label": int(lab), "kind": "grb", "name": g.name, "ra": g.ra, "dec": g.dec, "time": g.time,
                 "fluence": g.fluence, "fluence_band": list(g.fluence_band), "rise_s": g.rise, "decay_s": g.decay,
                 "t90_s": g.t90, "spectrum": _spectrum(g.shape)}
            d["counts_on_axis"] = {band_key(b): emit.band_rate(lab, b) for b in STANDARD_BANDS}
        else:
            s = sky.sources[lab]
            d = {"label": int(lab), "kind": "source", "name": s.name, "ra": s.ra, "dec": s.dec, "class": s.source_class,
                 "mcrab": s.mcrab, "spectrum": _spectrum(s.spectrum), "variable": bool(s.variability)}
            d["rate"] = {band_key(b): emit.band_rate(lab, b) for b in STANDARD_BANDS}
        d["channel_counts" if lab >= GRB_BASE else "channel_rate"] = _f(row)
        sources.append(d)
    return {
        "format": TRUTH_FORMAT, "format_version": TRUTH_VERSION,
        "revolution": int(rev), "data_version": str(version), "run": run,
        "sky": {"name": sky.name, "file": Path(sky.path).name if sky.path else "", "sources": len(sky),
                "grbs": len(sky.grbs)},
        "gain": gain_truth(instrument.gain), "gain_ic_file": gain_file,
        "response": {"file": Path(r.origin).name, "channels": r.n_channels, "e_min": _f(r.e_min),
                     "e_max": _f(r.e_max)},
        "rise_time_window": [RISE_MIN, RISE_MAX],
        "calibration_lines": [{"name": line.name, "energy": line.energy, "rate": line.rate} for line in bg.lines],
        "background": {"rate": {band_key(b): bg.rate(*b) for b in STANDARD_BANDS}, "total_rate": bg.total_rate},
        "dead_time": {"tau_event": instrument.dead_time.tau_event, "tau_veto": instrument.dead_time.tau_veto,
                      "veto_rate": instrument.dead_time.veto_rate,
                      "vetoed_fraction": instrument.dead_time.vetoed_fraction, "hk_cycle": HK_CYCLE_S},
        "dead_pixels": [[int(z), int(y)] for z, y in zip(*np.nonzero(~instrument.live_pixels))],
        "sources": sources,
        "scws": [str(p.scw_id) for p in plans],
    }


def _spectrum(sp) -> dict:
    d = {"model": type(sp).__name__}
    for k in ("index", "cutoff", "alpha", "beta", "epeak", "norm"):
        if hasattr(sp, k):
            d[k] = float(getattr(sp, k))
    return d


# --------------------------------------------------------------------------- files

def write_json(path: str | os.PathLike, doc: dict, durable: bool = True) -> Path:
    """Write a truth document atomically (sorted keys, no NaN: the same document gives the same bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, sort_keys=True, indent=1, allow_nan=False) + "\n"
    return atomic_write_bytes(path, text.encode("ascii"), durable=durable)


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read a truth document; ValueError naming the file if it is not one."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable simulator truth file: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != TRUTH_FORMAT:
        raise ValueError(f"{path}: not a simulator truth file (format {doc.get('format') if isinstance(doc, dict) else doc!r})")
    if doc.get("format_version") != TRUTH_VERSION:
        raise ValueError(f"{path}: truth format version {doc.get('format_version')!r}, this code reads {TRUTH_VERSION}")
    return doc


def read_scw_truth(archive: Archive, scw: ScwId) -> dict:
    """The truth of one simulated ScW of `archive`."""
    return read_json(scw_truth_path(archive, scw))


def read_revolution_truth(archive: Archive, rev: Revolution | int, version: Version | int) -> dict:
    """The truth of a simulated revolution of `archive`."""
    return read_json(revolution_truth_path(archive, rev, version))
