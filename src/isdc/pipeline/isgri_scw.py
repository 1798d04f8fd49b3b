"""ISGRI science-window levels COR, GTI, DEAD, BIN, BKG (ScWG3 + OSMG) as pipeline tasks.

Dataset types (the data contract, docs/isgri.md):

| dataset | dimension | file | structure |
|---|---|---|---|
| isgri_events_raw | raw | isgri_events.fits | ISGR-EVTS-ALL |
| isgri_hk | raw | isgri_hk.fits | ISGR-HK..-CNV |
| attitude_historic | aux | attitude_historic.fits | INTL-ATTI-HIS |
| orbit_historic | aux | orbit_historic.fits | INTL-ORBI-SCP |
| time_correlation | aux | time_correlation.fits | AUXL-TCOR-HIS |
| isgri_events_cor | scw | isgri_events_cor.fits | ISGR-EVTS-COR |
| ibis_gti | scw | ibis_gti.fits | IBIS-GNRL-GTI |
| isgri_dead | scw | isgri_dead.fits | ISGR-DEAD-SCP |
| isgri_shadowgrams | scw | isgri_shadowgrams.fits | ISGR-DETE-SHD + ISGR-EFFI-SHD per band |
| isgri_bkg_shadowgrams | scw | isgri_bkg_shadowgrams.fits | ISGR-BKG.-SHD per band |

The science is in `isdc.instruments.isgri.{cor,gti,dead,binning,background}`; these tasks
read, call and write. `build_background_ic` is the driver of the background calibration
procedure (`isdc.instruments.isgri.calib_bkg`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from isdc.dal import templates
from isdc.dal.fitsfile import FitsError, Image, read_fits
from isdc.dal.products import Product, write_product
from isdc.instruments.isgri import background as bkg_alg
from isdc.instruments.isgri import binning, cor, dead, gti
from isdc.instruments.isgri.calib_bkg import DEFAULT_SLICES, BackgroundStack
from isdc.pipeline.base import NoWork, PermanentError, ScwTask, config_value, raw_input, register_dataset
from isdc.sim.icfiles import VSTOP_OPEN, gain_model_from_table
from isdc.time import TimeCorrelation, TimeError

__all__ = ["IsgriCor", "IbisGti", "IsgriDead", "IsgriBin", "IsgriBkg", "read_gti", "read_band_products",
           "build_background_ic", "calibrate_background", "check_times", "MAX_CLOCK_ERROR_S", "SECONDS_PER_DAY"]

SECONDS_PER_DAY = 86400.0

# --------------------------------------------------------------------------- datasets

register_dataset("isgri_events_raw", "raw", "isgri_events.fits", "ISGRI prepared events (ISGR-EVTS-ALL)")
register_dataset("isgri_hk", "raw", "isgri_hk.fits", "ISGRI converted housekeeping (ISGR-HK..-CNV)")
register_dataset("attitude_historic", "aux", "attitude_historic.fits", "attitude history (INTL-ATTI-HIS)")
register_dataset("orbit_historic", "aux", "orbit_historic.fits", "orbit history (INTL-ORBI-SCP)")
register_dataset("time_correlation", "aux", "time_correlation.fits", "OBT-IJD correlation (AUXL-TCOR-HIS)")
for _name in ("isgri_events_raw", "isgri_hk", "attitude_historic", "orbit_historic", "time_correlation"):
    raw_input(_name)

register_dataset("isgri_events_cor", "scw", "isgri_events_cor.fits", "ISGRI corrected events (ISGR-EVTS-COR)")
register_dataset("ibis_gti", "scw", "ibis_gti.fits", "IBIS good-time intervals (IBIS-GNRL-GTI)")
register_dataset("isgri_dead", "scw", "isgri_dead.fits", "ISGRI dead time (ISGR-DEAD-SCP)")
register_dataset("isgri_shadowgrams", "scw", "isgri_shadowgrams.fits",
                 "ISGRI shadowgrams and efficiency maps per band (ISGR-DETE-SHD, ISGR-EFFI-SHD)")
register_dataset("isgri_bkg_shadowgrams", "scw", "isgri_bkg_shadowgrams.fits",
                 "ISGRI background model per band (ISGR-BKG.-SHD)")


def _cfg(task: ScwTask, key: str):
    return config_value(task.config, key)


def _scw_keywords(info) -> dict:
    return {"REVOL": info.revol, "SWID": info.scw.swid, "TSTART": info.tstart, "TSTOP": info.tstop}


def _table(product: Product, extname: str, task: ScwTask):
    try:
        return product.table(extname)
    except FitsError as exc:
        raise PermanentError(f"{task.scw}: {exc}") from exc


def _seconds(t_ijd, tstart: float) -> np.ndarray:
    return (np.asarray(t_ijd, dtype=float) - tstart) * SECONDS_PER_DAY


# Largest accepted difference between a row's TIME and its OB_TIME converted through the
# revolution's time correlation. Data prepared with that table agree exactly; a clock
# jump, an OBT reset the conversion missed or a wrong table shows as seconds or more.
# 1 ms leaves room for a correlation refined after preparation and is far below any
# time bin of the products (light curves, noisy-pixel search, GTIs).
MAX_CLOCK_ERROR_S = 1e-3


def check_times(task: ScwTask, inputs: dict, tables: dict[str, str]) -> None:
    """PermanentError unless the TIME column of each table (local input name -> EXTNAME)
    increases and agrees with its OB_TIME through the time correlation (input 'tc')."""
    tc_prod = inputs["tc"]
    tc_tab = _table(tc_prod, "AUXL-TCOR-HIS", task)
    try:
        tc = TimeCorrelation(tc_tab["OB_TIME"], tc_tab["IJD"], name=str(tc_prod.path))
    except TimeError as exc:
        raise PermanentError(f"{task.scw}: {exc}") from exc
    for local, extname in tables.items():
        t, where = _table(inputs[local], extname, task), f"{task.scw}: {inputs[local].path}"
        if len(t) == 0:
            continue
        back = np.flatnonzero(np.diff(t["TIME"]) < 0)
        if back.size:
            i = int(back[0]) + 1
            step = (t["TIME"][i - 1] - t["TIME"][i]) * SECONDS_PER_DAY
            raise PermanentError(f"{where}: TIME goes back by {step:.6f} s at row {i + 1} ({back.size} places): "
                                 f"rows out of time order or a clock jump")
        try:
            err = tc.time_error(t["OB_TIME"], t["TIME"])
        except TimeError as exc:
            raise PermanentError(f"{where}: OB_TIME cannot be checked against the time correlation: {exc}") from exc
        bad = np.flatnonzero(np.abs(err) > MAX_CLOCK_ERROR_S)
        if bad.size:
            i = int(bad[0])
            raise PermanentError(f"{where}: TIME differs from OB_TIME through {tc_prod.path} by {err[i]:+.6f} s from "
                                 f"row {i + 1} on ({bad.size} of {len(t)} rows; at most {MAX_CLOCK_ERROR_S:g} s "
                                 f"allowed): an on-board clock jump or a wrong time conversion")


# --------------------------------------------------------------------------- COR

class IsgriCor(ScwTask):
    """Energies and selection flags of every event (ISGR-EVTS-COR, rows as ISGR-EVTS-ALL)."""

    inputs = {"events": "isgri_events_raw", "hk": "isgri_hk", "tc": "time_correlation"}
    outputs = {"events_cor": "isgri_events_cor"}
    algorithm_version = 1
    config_keys = ("isgri.cor.rise_time_min", "isgri.cor.rise_time_max", "isgri.cor.noisy_pixel_sigma",
                   "isgri.cor.noisy_pixel_bin_s")
    ic_structures = (("isgri", "ISGR-GAIN-MOD"),)

    def gain_model(self):
        """The GainModel of the ISGR-GAIN-MOD valid at the ScW, and its IC selection."""
        sel = self.ic_file("isgri", "ISGR-GAIN-MOD")
        try:
            table = read_fits(sel.path).table(sel.hdu)
            return gain_model_from_table(table, f"{sel.path} HDU {sel.hdu + 1}"), table.header, sel
        except (FitsError, OSError) as exc:
            raise PermanentError(f"{self.scw}: gain IC file {sel.path}: {exc}") from exc

    def process(self, inputs):
        info = self.scw_info()
        ev = _table(inputs["events"], "ISGR-EVTS-ALL", self)
        hk = _table(inputs["hk"], "ISGR-HK..-CNV", self)
        if len(ev) == 0:
            raise NoWork("no ISGRI events in the science window")
        if len(hk) == 0:
            raise PermanentError(f"{self.scw}: {inputs['hk'].path}: no housekeeping rows (module temperatures "
                                 f"unknown)")
        check_times(self, inputs, {"events": "ISGR-EVTS-ALL", "hk": "ISGR-HK..-CNV"})
        gain, gain_header, sel = self.gain_model()
        # Dither inside the PHA channel, reproducible per ScW (see isdc.instruments.isgri.cor).
        rng = np.random.default_rng([int(self.scw.swid), int(str(self.scw.version))])
        try:
            res = cor.correct_events(
                ev["TIME"], ev["ISGRI_PHA"], ev["RISE_TIME"], ev["ISGRI_Z"], ev["ISGRI_Y"], hk["TIME"], hk["MDU_TEMP"],
                gain, tstart=info.tstart, tstop=info.tstop,
                rise_min=_cfg(self, "isgri.cor.rise_time_min"), rise_max=_cfg(self, "isgri.cor.rise_time_max"),
                pha_max=int(gain_header["PHA_MAX"]), noisy_bin_s=_cfg(self, "isgri.cor.noisy_pixel_bin_s"),
                noisy_sigma=_cfg(self, "isgri.cor.noisy_pixel_sigma"), dither=rng.random(len(ev)))
        except ValueError as exc:
            raise PermanentError(f"{self.scw}: {exc}") from exc
        table = templates.get("ISGR-EVTS-COR").table(
            {"ISGRI_ENERGY": res.energy, "SELECT_FLAG": res.select_flag}, **_scw_keywords(info),
            GAINFILE=sel.file, GAINVERS=int(sel.version), RISE_MIN=int(_cfg(self, "isgri.cor.rise_time_min")),
            RISE_MAX=int(_cfg(self, "isgri.cor.rise_time_max")), NOISYPIX=int(res.noisy.noisy.sum()),
            NGOOD=res.n_good)
        return {"events_cor": Product([table])}


# --------------------------------------------------------------------------- GTI

class IbisGti(ScwTask):
    """Good time: attitude stability, HK limits and telemetry (IBIS-GNRL-GTI); slews have none."""

    inputs = {"events": "isgri_events_raw", "hk": "isgri_hk", "attitude": "attitude_historic",
              "tc": "time_correlation"}
    outputs = {"gti": "ibis_gti"}
    algorithm_version = 1
    config_keys = ("isgri.gti.max_attitude_offset_arcmin", "isgri.gti.min_abs_bias_v",
                   "isgri.gti.max_temperature_c", "isgri.gti.min_interval_s", "isgri.gti.max_event_gap_s")

    def process(self, inputs):
        info = self.scw_info()
        if self.scw.is_slew:
            raise NoWork("slew: no good time for imaging")
        t0, t1 = 0.0, (info.tstop - info.tstart) * SECONDS_PER_DAY
        ev = _table(inputs["events"], "ISGR-EVTS-ALL", self)
        hk = _table(inputs["hk"], "ISGR-HK..-CNV", self)
        att = _table(inputs["attitude"], "INTL-ATTI-HIS", self)
        check_times(self, inputs, {"events": "ISGR-EVTS-ALL", "hk": "ISGR-HK..-CNV"})
        # Attitude samples of this ScW (one beyond each end, for the interpolation).
        ta = _seconds(att["TIME"], info.tstart)
        lo = max(int(np.searchsorted(ta, t0, side="right")) - 1, 0)
        hi = int(np.searchsorted(ta, t1, side="left")) + 1
        ta = ta[lo:hi]
        if ta.size < 2 or ta[0] > t0 + 1e-6 or ta[-1] < t1 - 1e-6:
            cover = f"{ta[0]:.1f}..{ta[-1]:.1f} s" if ta.size else "none"
            raise PermanentError(f"{self.scw}: attitude {inputs['attitude'].path} does not cover the ScW "
                                 f"(0..{t1:.1f} s after TSTART; samples cover {cover})")
        offset = gti.angular_offset_deg(att["RA_SCX"][lo:hi], att["DEC_SCX"][lo:hi], info.ra_scx, info.dec_scx)
        step = float(np.median(np.diff(ta)))
        try:
            good_att = gti.attitude_gti(ta, offset, _cfg(self, "isgri.gti.max_attitude_offset_arcmin") / 60.0,
                                        1.5 * step, t0, t1)
            good_hk = gti.hk_gti(_seconds(hk["TIME"], info.tstart), hk["CYCLE_LEN"], hk["BIAS_V"], hk["MDU_TEMP"],
                                 _cfg(self, "isgri.gti.min_abs_bias_v"), _cfg(self, "isgri.gti.max_temperature_c"),
                                 t0, t1)
            good_tlm = gti.event_stream_gti(_seconds(ev["TIME"], info.tstart), t0, t1,
                                            _cfg(self, "isgri.gti.max_event_gap_s"))
        except ValueError as exc:
            raise PermanentError(f"{self.scw}: {exc}") from exc
        merged = gti.intersect(gti.intersect(good_att, good_hk), good_tlm)
        merged = gti.drop_short(merged, _cfg(self, "isgri.gti.min_interval_s"))
        ontime = gti.total(merged)
        if ontime <= 0:
            raise NoWork("no good time")
        telapse = t1 - t0
        table = templates.get("IBIS-GNRL-GTI").table(
            {"START": info.tstart + merged[0] / SECONDS_PER_DAY, "STOP": info.tstart + merged[1] / SECONDS_PER_DAY},
            **_scw_keywords(info), ONTIME=ontime, TELAPSE=telapse, ATTILOSS=telapse - gti.total(good_att),
            HKLOSS=telapse - gti.total(good_hk), TLMLOSS=telapse - gti.total(good_tlm))
        return {"gti": Product([table])}


def read_gti(product: Product, tstart: float) -> tuple[np.ndarray, np.ndarray]:
    """(start, stop) [s since `tstart`] of an ibis_gti product."""
    g = product.table("IBIS-GNRL-GTI")
    return _seconds(g["START"], tstart), _seconds(g["STOP"], tstart)


# --------------------------------------------------------------------------- DEAD

class IsgriDead(ScwTask):
    """Dead fraction per module and HK cycle, live fraction over good time (ISGR-DEAD-SCP)."""

    inputs = {"hk": "isgri_hk", "gti": "ibis_gti"}
    outputs = {"dead": "isgri_dead"}
    algorithm_version = 1

    def process(self, inputs):
        info = self.scw_info()
        hk = _table(inputs["hk"], "ISGR-HK..-CNV", self)
        if len(hk) == 0:
            raise PermanentError(f"{self.scw}: {inputs['hk'].path}: no housekeeping rows (dead time unknown)")
        tau_e, tau_v = float(hk.header["TAU_EVT"]), float(hk.header["TAU_VETO"])
        try:
            d = dead.dead_fractions(hk["TRIG_CNT"], hk["VETO_CNT"], hk["VETO_STB"], hk["CYCLE_LEN"], tau_e, tau_v)
            lt = dead.live_time(_seconds(hk["TIME"], info.tstart), d, read_gti(inputs["gti"], info.tstart))
        except ValueError as exc:
            raise PermanentError(f"{self.scw}: {inputs['hk'].path}: {exc}") from exc
        per_module = {f"DEADC_{m}": float(v) for m, v in enumerate(lt.live_fraction)}
        table = templates.get("ISGR-DEAD-SCP").table(
            {"TIME": hk["TIME"], "TIMEDEL": hk["CYCLE_LEN"], "DEADTIME": d.astype(np.float32)},
            **_scw_keywords(info), TAU_EVT=tau_e, TAU_VETO=tau_v, ONTIME=lt.ontime, DEADC=lt.deadc,
            LIVETIME=lt.livetime, EXPOSURE=lt.livetime, **per_module)
        return {"dead": Product([table])}


# --------------------------------------------------------------------------- BIN

class IsgriBin(ScwTask):
    """Shadowgrams and efficiency maps per energy band (ISGR-DETE-SHD, ISGR-EFFI-SHD)."""

    inputs = {"events": "isgri_events_raw", "events_cor": "isgri_events_cor", "gti": "ibis_gti",
              "dead": "isgri_dead"}
    outputs = {"shadowgrams": "isgri_shadowgrams"}
    algorithm_version = 1
    config_keys = ("isgri.bands",)

    def process(self, inputs):
        info = self.scw_info()
        bands = _cfg(self, "isgri.bands")
        ev = _table(inputs["events"], "ISGR-EVTS-ALL", self)
        ec = _table(inputs["events_cor"], "ISGR-EVTS-COR", self)
        if len(ev) != len(ec):
            raise PermanentError(f"{self.scw}: {inputs['events_cor'].path} has {len(ec)} rows, the events "
                                 f"{inputs['events'].path} {len(ev)}")
        dead_t = _table(inputs["dead"], "ISGR-DEAD-SCP", self)
        good_time = read_gti(inputs["gti"], info.tstart)
        flag = ec["SELECT_FLAG"]
        select = (flag == 0) & gti.in_gti(_seconds(ev["TIME"], info.tstart), good_time)
        counts = binning.bin_shadowgrams(ev["ISGRI_Z"], ev["ISGRI_Y"], ec["ISGRI_ENERGY"], select, bands)
        # Pixel status from every valid event of the ScW (noisy: COR flag bit 2).
        valid = (flag & cor.FLAG_OTHER) == 0
        pix = ev["ISGRI_Z"][valid].astype(np.int64) * 128 + ev["ISGRI_Y"][valid]
        all_counts = np.bincount(pix, minlength=cor.N_PIX)
        noisy = np.zeros(cor.N_PIX, dtype=bool)
        noisy[pix[(flag[valid] & cor.FLAG_NOISY) != 0]] = True
        status = binning.pixel_status(all_counts, noisy)
        live = np.array([dead_t.header[f"DEADC_{m}"] for m in range(8)], dtype=float)
        effi = binning.efficiency_map(live, status.status)
        h = dead_t.header
        common = dict(_scw_keywords(info), ONTIME=float(h["ONTIME"]), DEADC=float(h["DEADC"]),
                      EXPOSURE=float(h["EXPOSURE"]))
        hdus = [Image()]
        for (e1, e2), c in zip(bands, counts):
            hdus.append(templates.get("ISGR-DETE-SHD").image(c, E_MIN=float(e1), E_MAX=float(e2), **common))
            hdus.append(templates.get("ISGR-EFFI-SHD").image(effi, E_MIN=float(e1), E_MAX=float(e2), **common,
                                                             NOISYPIX=status.n_noisy, DEADPIX=status.n_dead))
        return {"shadowgrams": Product(hdus)}


def read_band_products(product: Product) -> list[tuple[float, float, Image, Image]]:
    """[(E_MIN, E_MAX, shadowgram, efficiency), ...] of an isgri_shadowgrams product, in file order."""
    out = []
    for det in product.all("ISGR-DETE-SHD"):
        e1, e2 = float(det.header["E_MIN"]), float(det.header["E_MAX"])
        effi = product.image("ISGR-EFFI-SHD", E_MIN=det.header["E_MIN"], E_MAX=det.header["E_MAX"])
        out.append((e1, e2, det, effi))
    return out


# --------------------------------------------------------------------------- BKG

class IsgriBkg(ScwTask):
    """Background model per band: IC map x efficiency x ONTIME x fitted scale (ISGR-BKG.-SHD)."""

    inputs = {"shadowgrams": "isgri_shadowgrams"}
    outputs = {"bkg": "isgri_bkg_shadowgrams"}
    algorithm_version = 1
    config_keys = ("isgri.bkg.clip_sigma", "isgri.bkg.flat_term")
    ic_structures = (("isgri", "ISGR-BKG.-MOD"),)

    def process(self, inputs):
        info = self.scw_info()
        sel = self.ic_file("isgri", "ISGR-BKG.-MOD")
        try:
            ic = read_fits(sel.path).table(sel.hdu)
            templates.get("ISGR-BKG.-MOD").validate(ic, f"{sel.path} HDU {sel.hdu + 1}")
        except (FitsError, OSError) as exc:
            raise PermanentError(f"{self.scw}: background IC file {sel.path}: {exc}") from exc
        hdus = [Image()]
        for e1, e2, det, effi in read_band_products(inputs["shadowgrams"]):
            try:
                rate = bkg_alg.band_map(ic["E_MIN"], ic["E_MAX"], ic["BACKGROUND"], e1, e2)
                ontime = float(det.header["ONTIME"])
                fit = bkg_alg.fit_background(det.data, rate * effi.data * ontime, effi.data,
                                             clip_sigma=_cfg(self, "isgri.bkg.clip_sigma"),
                                             flat=bool(_cfg(self, "isgri.bkg.flat_term")))
            except ValueError as exc:
                raise PermanentError(f"{self.scw}: band {e1:g}-{e2:g} keV: {exc}") from exc
            hdus.append(templates.get("ISGR-BKG.-SHD").image(
                fit.model.astype(np.float32), **_scw_keywords(info), E_MIN=e1, E_MAX=e2, ONTIME=ontime,
                EXPOSURE=float(det.header["EXPOSURE"]), BKGFILE=sel.file, BKGVERS=int(sel.version),
                BKGNORM=fit.norm, BKGNERR=fit.norm_err, BKGFLAT=fit.flat, BKGCHI2=fit.chi2, BKGNPIX=fit.n_pixels))
        return {"bkg": Product(hdus)}


# --------------------------------------------------------------------------- background IC procedure

def build_background_ic(shadowgram_files: Iterable[str | os.PathLike], out: str | os.PathLike, *,
                        version: int = 1, vstart: float = 0.0, vstop: float = VSTOP_OPEN,
                        edges=DEFAULT_SLICES, history: Iterable[str] = ()) -> Path:
    """Stack the isgri_shadowgrams products of empty-field ScWs into an ISGR-BKG.-MOD file.

    Each product must hold one band per slice of `edges` (made with `isgri.bands` = the
    slices; `BackgroundStack.bands`); products of ScWs without good time are skipped.
    Returns the path written. Raises ValueError naming a product that lacks a slice.
    """
    stack = BackgroundStack(edges)
    for path in shadowgram_files:
        prod = Product.read(path)
        if prod.nowork:
            continue
        have = {(e1, e2): (det, effi) for e1, e2, det, effi in read_band_products(prod)}
        missing = [b for b in stack.bands if tuple(b) not in have]
        if missing:
            raise ValueError(f"{path}: no shadowgram for the slices {missing} (bin with isgri.bands = the slices)")
        dets = [have[tuple(b)] for b in stack.bands]
        stack.add(np.stack([d.data for d, _ in dets]), np.stack([e.data for _, e in dets]),
                  float(dets[0][0].header["ONTIME"]))
    maps = stack.maps()
    table = templates.get("ISGR-BKG.-MOD").table(
        {"E_MIN": stack.e_min, "E_MAX": stack.e_max, "COUNTS": stack.counts.sum(axis=(1, 2)),
         "BACKGROUND": maps.astype(np.float32)},
        VERSION=int(version), VSTART=float(vstart), VSTOP=float(vstop), NSCW=stack.n_scw, ONTIME=stack.ontime)
    for line in history:
        table.header.add_history(line)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return write_product(out, [Image(None, {}), table])


def calibrate_background(archives: Iterable[str | os.PathLike], workdir: str | os.PathLike, out: str | os.PathLike,
                         *, version: int = 1, vstart: float = 0.0, vstop: float = VSTOP_OPEN, edges=DEFAULT_SLICES,
                         workers: int = 1, history: Iterable[str] = ()) -> tuple[Path, list]:
    """The background calibration procedure on archives of empty-field science windows.

    Runs COR..BIN on every pointing of each archive with the slices as energy bands
    (products under `workdir`), stacks the shadowgrams and writes the ISGR-BKG.-MOD file
    `out`. Returns (path, build reports). RuntimeError when a build fails.
    """
    from isdc.dal.archive import Archive
    from isdc.pipeline.config import load_config
    from isdc.pipeline.runner import run_build

    bands = ",".join(f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:]))
    cfg = load_config("osa", overrides={"isgri.bands": bands})
    files, reports = [], []
    for root in archives:
        arch = Archive(root)
        scws = [s for s in arch.scws() if not s.is_slew]
        if not scws:
            raise ValueError(f"archive {root}: no pointing science windows")
        work = Path(workdir) / arch.root.name
        tasks = [IsgriBin(archive=str(arch.root), outdir=str(work), scw=s, config=cfg) for s in scws]
        rep = run_build(tasks, workers=workers, quarantine_dirs=[work / "quarantine"])
        reports.append(rep)
        if not rep.ok:
            raise RuntimeError(f"archive {root}: BIN failed:\n{rep.summary()}")
        files += [t.dataset_path("isgri_shadowgrams") for t in tasks]
    path = build_background_ic(files, out, version=version, vstart=vstart, vstop=vstop, edges=edges,
                               history=history)
    return path, reports
