"""The near-real-time operations daemon: telemetry in, raw data, quick-look and alerts out.

`Daemon(archive, inbox, config)` is the whole NRT stream of one archive:

1. **Input** (`isdc.nrt.ingest`): inbox chunks in arrival order -> packets -> per-ScW
   reassembly with a record of gaps, duplicates, disorder and corrupt packets; damaged
   chunks are used for their whole packets and quarantined with the reason.
2. **Burst trigger** (`isdc.nrt.trigger`): while a pointing is open, its ISGRI events feed
   an IBAS-like trigger; a burst is imaged against the pre-burst sky, localised, and
   alerted (GRB) within seconds.
3. **Preparation** (`isdc.nrt.prepare`): when a ScW closes its events and HK get IJD times
   and its group keywords; the raw data elements are written into the archive as version
   .000 (`isdc.dal.rawdata`, the simulator's writer), with `telemetry_report.json`; HK
   limits and telemetry losses raise OPS alerts.
4. **Quick-look**: one luigi build per ScW (`isdc.pipeline.graph.run_analysis`, the NRT
   configuration: COR..IMA) into `obs/nrt.000/` of the archive, in a worker thread so the
   trigger never waits for it; then the results index is updated (CONS results of the same
   ScW supersede these) and the source list is checked for new sources and flares.
5. **Alerts** (`isdc.dal.alerts.AlertStore`): each alert once, atomically, as JSON and
   VOEvent, optionally POSTed to an endpoint by a delivery thread (`isdc.nrt.delivery`).

Durable state (`isdc.dal.nrtstate`): one record per ScW (receiving, queued, running,
done, failed, quarantined) with its telemetry statistics and latencies, and the memory of
the source alerts. Every step is idempotent and the inbox keeps every chunk until all its
ScWs are written, so after SIGTERM, a crash or kill -9 a restart resumes without losing or
repeating work (docs/nrt.md, "Restart").

Testable in-process: `start()`, `step()` (one round: returns True if it did something),
`run(until=..., idle_exit_s=...)`, `stop()`, `close()`; `background=False` runs the
quick-look inside `step()`.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import luigi
import numpy as np

from isdc.dal.alerts import Alert, AlertStore
from isdc.dal.archive import Archive, ArchiveError, build_scw_index
from isdc.dal.catalog import CatalogError, read_catalog
from isdc.dal.fitsfile import FitsError, read_fits
from isdc.dal.icindex import ICError, ic_index_for
from isdc.dal.inbox import Inbox
from isdc.dal.nrtstate import DaemonLock, NrtState, ScwRecord, nrt_dir, state_path, utc_now
from isdc.dal.products import Product
from isdc.dal.rawdata import copy_revolution_aux, write_raw_scw, write_telemetry_report
from isdc.dal.results import update_results_index
from isdc.dal.templates import TemplateError
from isdc.ids import NRT, IdError, Revolution, ScwId, Version
from isdc.imaging.decode import Decoder
from isdc.imaging.projection import tan_to_radec
from isdc.instruments.isgri.detector_model import HK_CYCLE_S, DeadTimeModel
from isdc.instruments.isgri.geometry import isgri_geometry
from isdc.nrt.config import DaemonSettings, nrt_config, settings as make_settings
from isdc.nrt.delivery import Deliverer
from isdc.nrt.ingest import ChunkIntake, Ingest
from isdc.nrt.logs import event
from isdc.nrt.ops import event_gaps, failure_alert, hk_alerts, telemetry_alerts
from isdc.nrt.prepare import RevolutionAux, prepare_scw
from isdc.nrt.sources import SourceMonitor
from isdc.nrt.trigger import Burst, BurstMonitor, EventSelector
from isdc.telemetry.packets import FRAME_TICKS
from isdc.time import TimeError, ijd_to_isot

log = logging.getLogger("isdc.nrt")

__all__ = ["Daemon", "NRT_RUN"]

NRT_RUN = "nrt"
"""The quick-look results go to `obs/nrt.000/` of the archive."""
_SAVE_EVERY_S = 2.0  # progress of open ScWs is saved at most this often


@dataclass
class _Open:
    """Trigger state of an open pointing."""

    swid: str
    obt_start: int
    selector: EventSelector
    monitor: BurstMonitor


class Daemon:
    """The NRT daemon of one archive and inbox (see module docstring).

    archive, inbox : folders. config : effective configuration (default: pipelines/nrt.yaml
    with the `nrt` section's defaults). durable : fsync every write (off only for tests and
    benchmarks). background : quick-look in a worker thread (False: inside `step()`).
    aux_from : when a revolution's NRT auxiliary data (aux/adp/RRRR.000, the revolution plan)
    are missing, deliver them from this data version (`copy_revolution_aux`, what the
    operations centre does; simulated archives have .001 aux data). clock : wall clock (Unix
    seconds) for latencies.
    """

    def __init__(self, archive: str | Path, inbox: str | Path, config: dict | None = None, *, durable: bool = True,
                 background: bool = True, aux_from: Version | int | None = None,
                 clock: Callable[[], float] = time.time):
        self.archive = Archive(archive)
        if not self.archive.root.is_dir():
            raise ArchiveError(f"archive {self.archive.root} does not exist")
        self.inbox = Inbox(inbox)
        self.config = config if config is not None else nrt_config()
        self.settings: DaemonSettings = make_settings(self.config)
        self.durable, self.background, self.clock = durable, background, clock
        self.aux_from = None if aux_from is None else Version.parse(aux_from)
        self.outdir = self.archive.obs_dir(NRT_RUN, NRT)
        alerts_dir = Path(self.settings.alerts_dir) if self.settings.alerts_dir else nrt_dir(self.archive) / "alerts"
        self.store = AlertStore(alerts_dir, deliver=bool(self.settings.endpoint))
        self.lock = DaemonLock(nrt_dir(self.archive) / "daemon.lock")
        self.state: NrtState | None = None
        self.ingest: Ingest | None = None
        self._mutex = threading.RLock()
        self._scw_tree = threading.Lock()
        self._stop = threading.Event()
        self._open: dict[str, _Open] = {}
        self._aux: dict[int, RevolutionAux | None] = {}
        self._aux_warned: set[int] = set()
        self._qla: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        self._deliverer: Deliverer | None = None
        self._decoder: Decoder | None = None
        self._catalog: tuple | None = None
        self._last_chunk = self.clock()
        self._last_save = 0.0
        self._started = False
        self.sources = SourceMonitor(self.settings.sources)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "Daemon":
        """Take the archive's daemon lock, recover the state, start the worker threads."""
        if self._started:
            return self
        self.lock.acquire()
        try:
            self.state = NrtState.load(state_path(self.archive))
            self._repair_alerts()
            closed = [(r.obt_start, r.obt_end, r.scw) for r in self.state.scws.values() if r.status != "receiving"]
            self.ingest = Ingest(self.inbox, closed, grace_s=self.settings.grace_s, durable=self.durable,
                                 clock=self.clock)
            requeue = self.state.by_status("queued", "running", "failed") + [
                r for r in self.state.by_status("quarantined") if r.stage == "quick-look"]
            for rec in requeue:
                rec.status = "queued"
            self.state.daemon.update(pid=_pid(), started_utc=utc_now(), inbox=str(self.inbox.root),
                                     outdir=str(self.outdir), alerts=str(self.store.folder), stopped_utc=None)
            self._save(force=True)
            event(log, "daemon_start", archive=str(self.archive.root), inbox=str(self.inbox.root),
                  requeued=[r.scw for r in requeue], alerts=len(self.store.ids()))
            _luigi_in_threads()
            if self.background:
                self._worker = threading.Thread(target=self._qla_loop, name="quick-look", daemon=True)
                self._worker.start()
            if self.settings.endpoint:
                self._deliverer = Deliverer(self.store, self.settings.endpoint,
                                            timeout_s=self.settings.deliver_timeout_s,
                                            attempts=self.settings.deliver_attempts,
                                            backoff_s=self.settings.deliver_backoff_s).start()
            for rec in requeue:
                self._qla.put(rec.scw)
        except BaseException:
            self.lock.release()
            raise
        self._started = True
        return self

    def stop(self) -> None:
        """Ask the loop to stop after the current step (safe from a signal handler)."""
        self._stop.set()

    def close(self, timeout_s: float = 120.0) -> None:
        """Stop the threads (a running quick-look finishes; queued ones wait for the next start),
        save the state, release the lock."""
        if not self._started:
            return
        self._stop.set()
        if self._worker is not None:
            self._qla.put(None)
            self._worker.join(timeout_s)
        if self._deliverer is not None:
            self._deliverer.stop()
        with self._mutex:
            self.state.daemon["stopped_utc"] = utc_now()
            self._save(force=True)
        event(log, "daemon_stop", open=sorted(self._open), held_chunks=self.ingest.held())
        self.lock.release()
        self._started = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ the loop
    def run(self, until: Callable[[], bool] | None = None, idle_exit_s: float | None = None) -> None:
        """Step until stopped, `until()` is true, or (with `idle_exit_s`) everything is done and
        nothing arrived for that long."""
        self.start()
        idle_since = None
        while not self._stop.is_set():
            did = self.step()
            if until is not None and until():
                break
            if did or not self.idle():
                idle_since = None
            else:
                idle_since = idle_since if idle_since is not None else self.clock()
                if idle_exit_s is not None and self.clock() - idle_since >= idle_exit_s:
                    break
            if not did:
                self._stop.wait(self.settings.poll_s)

    def idle(self) -> bool:
        """Nothing waiting: no chunk in the inbox, no open ScW, no quick-look queued or running."""
        return not self.inbox.pending() and not self.ingest.windows() and self._qla.unfinished_tasks == 0

    def step(self) -> bool:
        """One round: read new chunks, run the trigger, close ScWs, release chunks, save."""
        self.start()
        did = False
        intakes = self.ingest.poll(limit=16)
        if intakes:
            did = True
            self._last_chunk = self.clock()
            for it in intakes:
                self._take(it)
        did |= self._trigger_step()
        force = not intakes and self.ingest.windows() and self.clock() - self._last_chunk >= self.settings.idle_close_s
        for swid in self.ingest.ready(force=bool(force)):
            did |= self._close(swid, intakes[-1].arrival if intakes else self.clock())
        moved = self.ingest.release()
        for name, where in moved:
            event(log, "chunk_" + where, chunk=str(name))
        did |= bool(moved)
        if not self.background:
            while not self._qla.empty():
                scw = self._qla.get()
                if scw is not None:
                    self._quicklook(scw)
                    did = True
                self._qla.task_done()
        with self._mutex:
            self._save()
        return did

    # ------------------------------------------------------------------ intake and trigger
    def _take(self, it: ChunkIntake) -> None:
        event(log, "chunk", chunk=str(it.name), packets=it.packets, valid=it.valid, corrupt=it.corrupt,
              late=it.late, problem=it.problem)
        with self._mutex:
            for swid, n in it.late_by_scw.items():
                rec = self._record(swid)
                if rec is not None:
                    rec.late_packets += n
            for swid in set(it.events) | set(it.hk):
                rec = self._record(swid, create=True)
                if rec.first_seen is None:
                    rec.first_seen = it.arrival
                    bounds = self.ingest.window_bounds(swid)
                    if bounds:
                        rec.obt_start, rec.obt_end = bounds
                    event(log, "scw_open", scw=rec.scw)
                got, expected = self.ingest.received(swid)
                rec.received, rec.expected = got, expected
                rec.telemetry_fraction = (got / expected) if expected else None
        if not self.settings.trigger_enabled:
            return
        for swid, hk in it.hk.items():
            op = self._open_monitor(swid)
            if op is not None:
                op.selector.update_temperatures(hk["MDU_TEMP"])
        for swid, ev in it.events.items():
            op = self._open_monitor(swid)
            if op is not None:
                m = op.selector(ev)
                op.monitor.add(ev["OB_TIME"][m], ev["ISGRI_Z"][m], ev["ISGRI_Y"][m])

    def _open_monitor(self, swid: str) -> _Open | None:
        op = self._open.get(swid)
        if op is not None or not swid.endswith("0"):  # slews: no trigger (the sky moves)
            return op
        bounds = self.ingest.window_bounds(swid)
        if bounds is None:
            return None
        scw = ScwId.parse(swid, version=NRT)
        aux = self._revolution_aux(scw.revolution)
        t_ijd = None
        if aux is not None:
            try:
                t_ijd = float(aux.tc.obt_to_ijd(np.int64(bounds[0])))
            except TimeError:
                t_ijd = None
        gain = self._gain(t_ijd) if t_ijd is not None else None
        if self._decoder is None:
            self._decoder = Decoder(isgri_geometry())  # the trigger's own: decoders are not thread-safe
        handled = [float(a.params.get("t_start_s", "nan")) for a in self._alerts_of(str(scw), "GRB")]
        op = _Open(swid, bounds[0], EventSelector(gain, self.settings.trigger, t_ijd or 0.0),
                   BurstMonitor(bounds[0], self.settings.trigger, self._decoder, handled=handled))
        self._open[swid] = op
        return op

    def _gain(self, t_ijd: float):
        from isdc.sim.icfiles import gain_model_from_table

        try:
            sel = ic_index_for(self.archive.root).select("isgri", "ISGR-GAIN-MOD", t_ijd)
            return gain_model_from_table(read_fits(sel.path).table(sel.hdu), str(sel.path))
        except (ICError, FitsError, TemplateError, OSError) as exc:
            event(log, "trigger_without_gain", severity=logging.WARNING, reason=str(exc))
            return None

    def _trigger_step(self, final: str | None = None) -> bool:
        did = False
        for swid in ([final] if final else list(self._open)):
            op = self._open.get(swid)
            if op is None:
                continue
            for burst in op.monitor.step(final=bool(final)):
                did = True
                self._burst(op, burst)
        return did

    def _burst(self, op: _Open, b: Burst) -> None:
        c, loc = b.candidate, b.location
        scw = ScwId.parse(op.swid, version=NRT)
        fields = dict(scw=str(scw), t_start_s=round(c.t_start, 3), timescale_s=c.timescale,
                      rate_sigma=round(c.sigma, 2), image_sigma=round(loc.significance, 2), burst_level=loc.level)
        if loc.level == "none":
            event(log, "trigger_rejected", **fields)
            return
        obt = op.obt_start + int(round(c.t_start * FRAME_TICKS))
        aux = self._revolution_aux(scw.revolution)
        ijd = ra = dec = None
        if aux is not None:
            try:
                ijd = float(aux.tc.obt_to_ijd(np.int64(obt)))
                att = aux.attitude_between(scw, ijd - 4.0 / 86400, ijd + 4.0 / 86400)
                r, d = tan_to_radec(att, loc.tan_y, loc.tan_z)
                ra, dec = float(r), float(d)
            except (TimeError, ArchiveError) as exc:
                event(log, "grb_without_position", severity=logging.WARNING, reason=str(exc), **fields)
        when = str(ijd_to_isot(ijd, precision=3)) if ijd is not None else utc_now()[:-1]
        alert = Alert("GRB", when, str(scw), f"trigger {when}", ra=ra, dec=dec, error_arcmin=loc.error_radius_arcmin,
                      significance=loc.significance, level=loc.level,
                      text=f"IBAS-like trigger: {c.timescale:g} s rate excess of {c.sigma:.1f} sigma, imaged at "
                           f"{loc.significance:.1f} sigma",
                      params={"t_start_s": f"{c.t_start:.3f}", "t_stop_s": f"{c.t_stop:.3f}",
                              "timescale_s": f"{c.timescale:g}", "rate_sigma": f"{c.sigma:.2f}",
                              "counts": int(c.counts), "expected_counts": f"{c.expected:.1f}",
                              "tan_y": f"{loc.tan_y:.6f}", "tan_z": f"{loc.tan_z:.6f}",
                              "obt": str(obt), "ijd": "" if ijd is None else f"{ijd:.8f}",
                              "rate": f"{loc.rate:.4g}", "rate_error": f"{loc.rate_error:.4g}",
                              "fit_significance": f"{loc.fit_significance:.2f}"})
        self._publish(alert, ra=ra, dec=dec, error_arcmin=round(loc.error_radius_arcmin, 2), **fields)

    # ------------------------------------------------------------------ closing a ScW
    def _close(self, swid: str, closed_at: float) -> bool:
        scw = ScwId.parse(swid, version=NRT)
        aux = self._revolution_aux(scw.revolution)
        if aux is None:
            return False  # the ScW waits for its auxiliary data (warned once)
        if self.settings.trigger_enabled and swid in self._open:
            self._trigger_step(final=swid)
        tel = self.ingest.assemble(swid)
        rep = tel.report
        rec = self._record(swid, create=True)
        try:
            prep = prepare_scw(tel, aux)
        except ArchiveError as exc:
            with self._mutex:
                rec.status, rec.reason, rec.stage = "quarantined", f"preparation: {exc}", "preparation"
                rec.closed = closed_at
                self._commit_close(swid, rec)
            self._publish(failure_alert(str(scw), utc_now()[:-1], "preparation", str(exc)), scw=str(scw))
            return True
        dt = DeadTimeModel()
        d = rep.to_dict()
        if self.ingest.synthesised(swid):
            d["notes"].append("window from the revolution plan: neither ScW mark was received")
        d["late_packets"] = self.ingest.late_by_scw.get(swid, 0)
        with self._scw_tree:  # the ScW index is not rebuilt while a ScW folder is half written
            write_raw_scw(self.archive, prep.info, prep.events, prep.hk, hk_cycle_s=HK_CYCLE_S,
                          tau_event=dt.tau_event, tau_veto=dt.tau_veto, durable=self.durable)
            write_telemetry_report(self.archive, scw, d, durable=self.durable)
        time_utc = str(ijd_to_isot(prep.info.tstart, precision=3))
        expected = None if any(r.expected is None for r in rep.apids.values()) else \
            sum(r.expected for r in rep.apids.values())
        received = sum(r.received for r in rep.apids.values())
        gaps = event_gaps(tel.events["OB_TIME"], tel.obt_start, tel.obt_end, self.settings.ops.min_gap_s)
        alerts = hk_alerts(str(scw), time_utc, prep.hk, self.settings.ops)
        alerts += telemetry_alerts(str(scw), time_utc, {"expected": expected, "lost": rep.lost(),
                                                        "end_mark": rep.end_mark}, gaps, self.settings.ops)
        for a in alerts:
            self._publish(a, scw=str(scw))
        with self._mutex:
            rec.obt_start, rec.obt_end = tel.obt_start, tel.obt_end
            rec.tstart, rec.tstop = prep.info.tstart, prep.info.tstop
            rec.closed = closed_at
            rec.expected, rec.received, rec.lost = expected, received, rep.lost()
            rec.telemetry_fraction = (received / expected) if expected else None
            rec.duplicates = sum(r.duplicates for r in rep.apids.values())
            rec.out_of_order = sum(r.out_of_order for r in rep.apids.values())
            rec.corrupt = len(rep.corrupt)
            rec.events, rec.hk_rows = int(prep.events["TIME"].size), int(prep.hk["TIME"].size)
            rec.gaps = sum(len(r.gaps) for r in rep.apids.values())
            rec.notes = list(d["notes"])
            rec.late_packets = d["late_packets"]
            rec.status = "queued"
            self._commit_close(swid, rec)
        event(log, "scw_closed", scw=str(scw), events=rec.events, hk_rows=rec.hk_rows, expected=expected,
              received=received, lost=rec.lost, fraction=rec.telemetry_fraction, duplicates=rec.duplicates,
              out_of_order=rec.out_of_order, corrupt=rec.corrupt, gaps=rec.gaps, notes=rec.notes)
        self._qla.put(rec.scw)
        return True

    def _commit_close(self, swid: str, rec: ScwRecord) -> None:
        """Durable before the reassembler forgets the ScW and its chunks may leave the inbox."""
        self._save(force=True)
        self.ingest.close(swid)
        self._open.pop(swid, None)

    # ------------------------------------------------------------------ quick-look
    def _qla_loop(self) -> None:
        while True:
            scw = self._qla.get()
            try:
                if scw is None or self._stop.is_set():
                    return  # stopping: what is still queued stays 'queued' in the state for the next start
                self._quicklook(scw)
            except Exception as exc:  # the worker must survive; the record says failed
                log.exception("quick-look of %s crashed", scw)
                with self._mutex:
                    rec = self.state.scws.get(scw)
                    if rec is not None:
                        rec.status, rec.reason, rec.stage = "failed", f"quick-look crashed: {exc}", "quick-look"
                        self._save(force=True)
            finally:
                self._qla.task_done()

    def _quicklook(self, key: str) -> None:
        from isdc.pipeline.graph import run_analysis

        with self._mutex:
            rec = self.state.scws[key]
            rec.status, rec.qla_start, rec.attempts = "running", self.clock(), rec.attempts + 1
            self._save(force=True)
        scw = rec.scw_id
        time_utc = str(ijd_to_isot(rec.tstart, precision=3)) if rec.tstart is not None else utc_now()[:-1]
        if scw.is_slew and not self.settings.quicklook_slews:
            self._finish(rec, "done", "slew: no quick-look imaging", [])
            return
        try:
            report, _ = run_analysis(str(self.archive.root), str(self.outdir), [scw], self.config, progress=False)
        except (ArchiveError, FitsError, TemplateError, IdError, OSError, ValueError) as exc:
            self._finish(rec, "failed", str(exc), [failure_alert(str(scw), time_utc, "quick-look", str(exc))])
            return
        mine = [q for q in report.quarantined if q.get("data_id") == str(scw)]
        if mine:
            why = f"{mine[0].get('task')}: {mine[0].get('reason')}"
            self._finish(rec, "quarantined", why, [failure_alert(str(scw), time_utc, "quick-look", why)])
            return
        if not report.ok:
            why = "; ".join(f"{t}: {w}" for t, w in report.incomplete)[:500] or report.luigi_status
            self._finish(rec, "failed", why, [failure_alert(str(scw), time_utc, "quick-look", why)])
            return
        alerts, memory = self._source_alerts(rec, time_utc)
        self._finish(rec, "done", "", alerts, memory)
        try:
            update_results_index(self.archive)
            with self._scw_tree:
                build_scw_index(self.archive)
        except (ArchiveError, FitsError, OSError) as exc:
            event(log, "index_update_failed", severity=logging.WARNING, scw=rec.scw, reason=str(exc))

    def _source_alerts(self, rec: ScwRecord, time_utc: str) -> tuple[list[Alert], dict | None]:
        path = self.outdir / "scw" / rec.scw / "isgri_srcl_res.fits"
        try:
            prod = Product.read(path)
            if prod.nowork:
                return [], None
            t = prod.table("ISGR-SRCL-RES")
        except (FitsError, TemplateError, OSError) as exc:
            event(log, "source_list_unreadable", severity=logging.WARNING, scw=rec.scw, reason=str(exc))
            return [], None
        rows = [{k: t[k][i] for k in t.columns} for i in range(len(t))]
        with self._mutex:
            memory = self.state.sources
        bursts = [(a.ra, a.dec, a.error_arcmin or 0.0) for a in self._alerts_of(rec.scw, "GRB") if a.ra is not None]
        alerts, memory = self.sources.evaluate(memory, rec.scw, time_utc, rows, self._catalog_rows(), bursts)
        return alerts, memory

    def _catalog_rows(self) -> dict[str, dict]:
        path = self.archive.cat_dir() / "gnrl_refr_cat.fits"
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if self._catalog is None or self._catalog[0] != stamp:
            try:
                cat = read_catalog(path)
            except (CatalogError, FitsError, OSError) as exc:
                event(log, "catalog_unreadable", severity=logging.WARNING, reason=str(exc))
                return {}
            cols = [c for c in ("ISGR_FLUX_1", "ISGR_FLUX_2") if cat.has(c)]
            rows = {str(n).strip(): {c: float(cat[c][i]) for c in cols} for i, n in enumerate(cat.name)}
            self._catalog = (stamp, rows)
        return self._catalog[1]

    def _finish(self, rec: ScwRecord, status: str, reason: str, alerts: list[Alert], memory: dict | None = None) -> None:
        for a in alerts:
            self._publish(a, scw=rec.scw)
        with self._mutex:
            rec.status, rec.reason, rec.qla_end = status, reason, self.clock()
            rec.stage = "quick-look" if status in ("failed", "quarantined") else ""
            rec.latency_s = (rec.qla_end - rec.closed) if rec.closed is not None else None
            if memory is not None:
                self.state.sources = memory
            self._save(force=True)
        event(log, "quicklook_" + status, scw=rec.scw, latency_s=None if rec.latency_s is None else
              round(rec.latency_s, 3), reason=reason, alerts=[a.id for a in alerts])

    # ------------------------------------------------------------------ helpers
    def _publish(self, alert: Alert, **fields) -> None:
        with self._mutex:
            new = self.store.publish(alert)
            rec = self.state.scws.get(alert.scw) if alert.scw else None
            if rec is not None and alert.id not in rec.alerts:
                rec.alerts.append(alert.id)
        if new:
            event(log, "alert", id=alert.id, kind=alert.kind, alert_level=alert.level, **fields)
            if self._deliverer is not None:
                self._deliverer.wake()

    def _alerts_of(self, scw: str, kind: str) -> list[Alert]:
        prefix = f"{kind.lower()}-{scw}-"
        out = []
        for aid in self.store.ids():
            if aid.startswith(prefix):
                try:
                    out.append(self.store.load(aid))
                except (OSError, ValueError, TypeError) as exc:
                    event(log, "alert_unreadable", severity=logging.WARNING, id=aid, reason=str(exc))
        return out

    def _repair_alerts(self) -> None:
        """Complete alerts a crash left half-written (JSON without its VOEvent or outbox entry)."""
        for aid in self.store.ids():
            try:
                self.store.publish(self.store.load(aid))
            except (OSError, ValueError, TypeError) as exc:
                event(log, "alert_unreadable", severity=logging.WARNING, id=aid, reason=str(exc))

    def _record(self, swid: str, create: bool = False) -> ScwRecord | None:
        key = str(ScwId.parse(swid, version=NRT))
        rec = self.state.scws.get(key)
        if rec is None and create:
            rec = self.state.record(ScwId.parse(key))
        return rec

    def _revolution_aux(self, rev: int) -> RevolutionAux | None:
        aux = self._aux.get(rev)
        if aux is not None:
            return aux
        try:
            if self.aux_from is not None and not self.archive.time_correlation(Revolution(rev), NRT).is_file():
                for path in copy_revolution_aux(self.archive, rev, self.aux_from, NRT, durable=self.durable):
                    event(log, "aux_delivered", revolution=rev, source=str(self.aux_from), file=str(path))
            aux = RevolutionAux.load(self.archive, Revolution(rev), NRT)
        except ArchiveError as exc:
            if rev not in self._aux_warned:
                self._aux_warned.add(rev)
                event(log, "aux_missing", severity=logging.WARNING, revolution=rev, reason=str(exc),
                      hint="its ScWs wait for the NRT auxiliary data; a simulated archive has them as version "
                           "001: start with --aux-from 001")
            return None
        self._aux[rev] = aux
        self.ingest.add_plan(aux.plan_windows())
        return aux

    def _save(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_save < _SAVE_EVERY_S:
            return
        self.state.daemon["heartbeat_utc"] = utc_now()
        self.state.daemon["held_chunks"] = self.ingest.held() if self.ingest is not None else 0
        self.state.save(durable=self.durable)
        self._last_save = now

    # ------------------------------------------------------------------ views
    def records(self) -> list[ScwRecord]:
        with self._mutex:
            return sorted(self.state.scws.values(), key=lambda r: (r.obt_start, r.scw))


def _pid() -> int:
    import os

    return os.getpid()


_LUIGI_READY = False


def _luigi_in_threads() -> None:
    """Luigi installs a SIGUSR1 handler in each worker, which only the main thread may do:
    tell it not to (the quick-look builds run in the daemon's worker thread)."""
    global _LUIGI_READY
    if _LUIGI_READY:
        return
    cfg = luigi.configuration.get_config()
    if not cfg.has_section("worker"):
        cfg.add_section("worker")
    cfg.set("worker", "no_install_shutdown_handler", "True")
    _LUIGI_READY = True

