"""The NRT daemon end to end, in-process, against the simulator's truth.

A simulated revolution (tests/nrt_sim.py: three 300 s pointings and slews, a GRB in the
second pointing, a 300 mCrab source the reference catalogue lacks, a catalogue source that
flares x12) is emitted as telemetry with transmission faults; the daemon ingests it, runs
the burst trigger, the quick-look of every pointing and the alert logic, and POSTs every
alert to a local HTTP endpoint that refuses the first two requests.
"""
from __future__ import annotations

import json
import shutil
import threading
import xml.etree.ElementTree as ET
from collections import Counter
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

import nrt_sim
from nrt_sim import event_key
from isdc.cli import main as isdc_run
from isdc.dal.alerts import AlertStore
from isdc.dal.archive import Archive
from isdc.dal.inbox import Inbox
from isdc.dal.nrtstate import NrtState, StateError, state_path
from isdc.dal.products import open_product
from isdc.dal.rawdata import read_telemetry_report
from isdc.dal.results import current_results, update_results_index
from isdc.ids import ScwId
from isdc.nrt.config import nrt_config
from isdc.nrt.daemon import Daemon
from isdc.sim.truth import read_scw_truth

FAULTS = "gaps=0.003,dups=0.01,corrupt=0.002,disorder=0.02,truncate=0.02"
VOE = "{http://www.ivoa.net/xml/VOEvent/v2.0}"


class _Endpoint:
    """A local VOEvent receiver; answers 503 to the first `fail` requests."""

    def __init__(self, fail: int = 2):
        received, lock = [], threading.Lock()
        state = {"fail": fail, "refused": 0}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    if state["fail"] > 0:
                        state["fail"] -= 1
                        state["refused"] += 1
                        self.send_response(503)
                        self.end_headers()
                        return
                    received.append((self.headers["X-Alert-Id"], body))
                self.send_response(202)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.received, self.state = received, state
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("nrt")
    rev = nrt_sim.simulate(root)
    fed = nrt_sim.feed(rev, root / "inbox", FAULTS, seed=3)
    endpoint = _Endpoint(fail=2)
    cfg = nrt_config(overrides={"nrt.idle_close_s": "0.5", "nrt.endpoint": endpoint.url,
                                "nrt.deliver_backoff_s": "0.05"})
    daemon = Daemon(rev.archive, root / "inbox", cfg, durable=False)
    try:
        daemon.run(until=lambda: daemon.idle() and not daemon.store.outbox(), idle_exit_s=30.0)
    finally:
        daemon.close()
        endpoint.close()
    return rev, fed, daemon, endpoint, root


def alerts(rev, kind=None):
    store = AlertStore(rev.archive / "nrt" / "alerts")
    return [a for a in store.all() if kind is None or a.kind == kind]


def test_every_scw_is_ingested_analysed_and_its_telemetry_accounted(run):
    rev, fed, daemon, _, root = run
    arch = Archive(rev.archive)
    recs = {r.scw[:12]: r for r in daemon.records()}
    assert sorted(recs) == sorted(rev.scws)
    assert all(r.status == "done" for r in recs.values()), [(r.scw, r.status, r.reason) for r in recs.values()]
    for swid, rec in recs.items():
        scw = ScwId.parse(swid + ".000")
        truth = fed.log.per_scw[swid]
        # lost packets: exactly what the feed dropped, corrupted or cut off (fault log)
        assert rec.lost == sum(v["lost"] for v in truth.values()), swid
        # every extra copy is a duplicate, counted in the ScW or, once it closed, as late
        assert rec.duplicates + rec.late_packets == sum(v["duplicates"] for v in truth.values()), swid
        assert rec.expected == rec.received + rec.lost and rec.telemetry_fraction == pytest.approx(
            rec.received / rec.expected)
        rep = read_telemetry_report(arch, scw)
        assert rep["scw"] == str(scw) and rep["late_packets"] == rec.late_packets
        events = open_product(arch.scw_dir(scw) / "isgri_events.fits").table("ISGR-EVTS-ALL")
        assert len(events) == rec.events and np.all(np.diff(events["TIME"]) >= 0)
        # every event decoded from telemetry is one of the archive's (same OBT, pixel, PHA, TIME)
        ref = open_product(arch.scw_dir(ScwId.parse(swid + ".001")) / "isgri_events.fits").table("ISGR-EVTS-ALL")
        a, b = event_key(events, ref["OB_TIME"][0]), event_key(ref, ref["OB_TIME"][0])
        assert np.isin(a, b).all() and len(ref) - len(events) <= 64 * rec.lost
        np.testing.assert_array_equal(events["TIME"], ref["TIME"][np.isin(b, a)])
        group = arch.root / "obs" / "nrt.000" / "scw" / str(scw) / "swg_isgri.fits"
        assert group.is_file() == (not scw.is_slew)
        assert rec.latency_s is not None and rec.latency_s >= 0
    inbox = Inbox(root / "inbox")
    assert not inbox.pending()
    assert len(inbox.processed()) + len(inbox.quarantined()) == fed.log.chunks
    assert len(inbox.quarantined()) == fed.log.truncated_chunks > 0
    assert all("truncated" in inbox.quarantine_reason(c) for c in inbox.quarantined())


def test_the_nrt_group_keywords_agree_with_the_simulated_scw(run):
    rev = run[0]
    arch = Archive(rev.archive)
    from isdc.dal.archive import read_scw_info

    for swid in rev.scws:
        nrt, cons = (read_scw_info(arch, ScwId.parse(f"{swid}.{v}")) for v in ("000", "001"))
        assert (nrt.obtstart, nrt.obtend) == (cons.obtstart, cons.obtend)
        assert abs(nrt.tstart - cons.tstart) * 86400 < 1e-3 and abs(nrt.tstop - cons.tstop) * 86400 < 1e-3
        sep = nrt_sim.separation_arcmin(nrt.ra_scx, nrt.dec_scx, cons.ra_scx, cons.dec_scx)
        # pointings: mean of the 8 s attitude samples vs the simulator's; slews: the history
        # interpolated linearly between 8 s samples of an accelerating great-circle track
        assert sep < (0.5 if not nrt.scw.is_slew else 10.0), (swid, sep)


def test_one_grb_alert_localised_within_its_error_radius(run):
    rev = run[0]
    grbs = alerts(rev, "GRB")
    assert len(grbs) == 1
    a = grbs[0]
    assert a.scw == rev.grb["scw"] + ".000" and a.level == "alert" and a.significance >= 8.0
    off = nrt_sim.separation_arcmin(a.ra, a.dec, rev.grb["ra"], rev.grb["dec"])
    assert off <= a.error_arcmin <= 3.0, (off, a.error_arcmin)
    t_start = float(a.params["ijd"])
    assert -1.0 <= (t_start - rev.grb["time"]) * 86400 <= 5.0  # the trigger window starts at the rise
    truth = {s["name"]: s for s in read_scw_truth(Archive(rev.archive), ScwId.parse(rev.grb["scw"] + ".001"))[
        "sources"]}
    assert truth["GRB test"]["fluence_fraction_gti"] > 0.99  # the burst was in good time


def test_new_source_and_flare_are_alerted_once_each_across_scws(run):
    rev, _, daemon, _, _ = run
    new = alerts(rev, "NEW_SOURCE")
    assert len(new) == 1, [a.subject for a in new]
    assert nrt_sim.separation_arcmin(new[0].ra, new[0].dec, *rev.new_source) <= max(3.0, 3 * new[0].error_arcmin)
    flares = alerts(rev, "FLARE")
    assert len(flares) == 1, [a.subject for a in flares]
    assert flares[0].subject.startswith(rev.flare_source) and flares[0].scw[:12] == rev.flare_pointings[0]
    assert float(flares[0].params["ratio"]) > 5
    # the memory knows the new source was seen in every pointing, and the flare is still on
    mem = NrtState.load(state_path(Archive(rev.archive))).sources
    assert [s["seen"] for s in mem["new_sources"]] == [len(rev.pointings)]
    assert mem["catalog"][f"{rev.flare_source}|20-100"]["flaring"] is True
    assert mem["catalog"]["Crab|20-100"]["flaring"] is False


def test_alert_documents_are_json_and_voevent_with_unique_ids(run):
    rev = run[0]
    folder = rev.archive / "nrt" / "alerts"
    ids = sorted(p.stem for p in folder.glob("*.json"))
    assert ids == sorted(p.stem for p in folder.glob("*.xml")) and len(ids) == len(set(ids)) >= 3
    kinds = Counter(a.kind for a in alerts(rev))
    assert kinds["GRB"] == kinds["NEW_SOURCE"] == kinds["FLARE"] == 1
    for aid in ids:
        doc = json.loads((folder / f"{aid}.json").read_text())
        assert doc["id"] == aid and doc["ivorn"].endswith("#" + aid)
        root = ET.fromstring((folder / f"{aid}.xml").read_bytes())
        assert root.tag == f"{VOE}VOEvent" and root.get("version") == "2.0" and root.get("ivorn") == doc["ivorn"]
        params = {p.get("name"): p.get("value") for p in root.iter("Param")}
        assert params["kind"] == doc["kind"] and params["scw"] == doc["scw"]
        if doc["ra"] is not None:
            c1 = root.find("WhereWhen/ObsDataLocation/ObservationLocation/AstroCoords/Position2D/Value2/C1")
            assert float(c1.text) == pytest.approx(doc["ra"], abs=1e-5)


def test_every_alert_was_posted_once_despite_refusals(run):
    rev, _, _, endpoint, _ = run
    store = AlertStore(rev.archive / "nrt" / "alerts")
    posted = Counter(aid for aid, _ in endpoint.received)
    assert endpoint.state["refused"] == 2
    assert sorted(posted) == store.ids() and set(posted.values()) == {1}
    assert not store.outbox() and sorted(p.name for p in (store.folder / "sent").iterdir()) == store.ids()
    for aid, body in endpoint.received:
        assert body == store.voevent(aid)


def test_status_command(run, capsys):
    rev = run[0]
    assert isdc_run(["status", "--archive", str(rev.archive)]) == 0
    out = capsys.readouterr().out
    assert "daemon not running" in out and f"{len(rev.scws)} done" in out and "quick-look latency" in out
    for swid in rev.scws:
        assert f"{swid}.000" in out
    assert isdc_run(["status", "--archive", str(rev.archive), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["counts"]["done"] == len(rev.scws) and rep["pending"] == 0 and rep["inbox_pending"] == 0
    assert rep["alerts"]["GRB"] == 1 and all(0 < r["fraction"] <= 1 for r in rep["scws"])


def test_restart_on_a_finished_stream_does_nothing(run):
    rev, _, _, _, root = run
    arch = rev.archive
    before = {p: p.stat().st_mtime_ns for p in (arch / "obs" / "nrt.000").rglob("*.fits")}
    raw = {p: p.stat().st_mtime_ns for p in (arch / "scw").rglob("*.000/*")}
    ids = AlertStore(arch / "nrt" / "alerts").ids()
    d = Daemon(arch, root / "inbox", nrt_config(overrides={"nrt.idle_close_s": "0.5"}), durable=False)
    d.run(idle_exit_s=0.3)
    d.close()
    assert {p: p.stat().st_mtime_ns for p in (arch / "obs" / "nrt.000").rglob("*.fits")} == before
    assert {p: p.stat().st_mtime_ns for p in (arch / "scw").rglob("*.000/*")} == raw
    assert AlertStore(arch / "nrt" / "alerts").ids() == ids
    assert all(r.attempts == 1 for r in d.records() if r.status == "done")


def test_one_daemon_per_archive(run):
    rev, _, _, _, root = run
    first = Daemon(rev.archive, root / "inbox", nrt_config(), durable=False).start()
    try:
        with pytest.raises(StateError, match="another NRT daemon"):
            Daemon(rev.archive, root / "inbox", nrt_config(), durable=False).start()
        assert isdc_run(["status", "--archive", str(rev.archive), "--json"]) == 0
    finally:
        first.close()


def test_cons_results_supersede_the_nrt_quicklook(run, tmp_path):
    from isdc.pipeline.config import load_config
    from isdc.pipeline.graph import run_consolidated

    rev = run[0]
    arch = Archive(tmp_path / "archive")
    shutil.copytree(rev.archive, arch.root)
    p = rev.pointings[0]
    rows = {(r.scw, r.run) for r in update_results_index(arch)}
    assert (ScwId.parse(p + ".000"), "nrt.000") in rows
    assert str(current_results(arch, p).scw) == p + ".000"
    report, _, _ = run_consolidated(str(arch.root), nrt_sim.REV, load_config("cons", overrides={"levels": "COR..IMA"}),
                                    progress=False)
    assert report.ok, report.summary()
    cur = current_results(arch, p)
    assert str(cur.scw) == p + ".001" and cur.run == "rev0665.001"
    assert all(r.superseded for r in update_results_index(arch) if r.scw.swid == p and r.run == "nrt.000")


def test_missing_aux_data_then_a_failing_quicklook_then_a_fixed_restart(tmp_path):
    """The committed sample: without its NRT auxiliary data the ScWs wait (nothing written,
    every chunk kept); once delivered they close; a quick-look that cannot read its catalogue
    quarantines the ScW with an OPS alert, and the next start with a good configuration
    retries it (the catalogue is in the IMA level's fingerprint)."""
    from isdc.dal.rawdata import copy_revolution_aux
    from isdc.ids import CONS, NRT
    from isdc.sim.feed import archive_scws, emit, read_scw_data

    arch = Archive(tmp_path / "archive")
    shutil.copytree(nrt_sim.Path(__file__).resolve().parent.parent / "test_data" / "sim" / "archive", arch.root)
    inbox = Inbox(tmp_path / "inbox")
    res = emit((read_scw_data(arch, s) for s in archive_scws(arch, 665, CONS)), inbox, 665, seed=2, durable=False)
    bad = nrt_config(overrides={"nrt.idle_close_s": "0.2", "catalog": str(tmp_path / "missing.fits")})
    d = Daemon(arch.root, inbox.root, bad, durable=False, background=False)
    d.run(until=lambda: not d.ingest.pending(), idle_exit_s=0.5)
    for _ in range(5):
        d.step()
    assert all(r.status == "receiving" for r in d.records()) and len(d.records()) == len(res.scws)
    assert len(inbox.pending()) == len(res.chunks) and not (arch.root / "scw" / "0665" / "066500010010.000").exists()
    copy_revolution_aux(arch, 665, CONS, NRT, durable=False)  # operations deliver the aux data
    d.run(idle_exit_s=0.3)
    d.close()
    recs = {r.scw: r for r in d.records()}
    pointings = [s for s in recs if not ScwId.parse(s).is_slew]
    assert all(recs[s].status == "quarantined" and "missing.fits" in recs[s].reason for s in pointings)
    assert all(recs[s].status == "done" for s in recs if s not in pointings)
    ops = [a for a in alerts_in(arch.root) if a.kind == "OPS" and a.subject == "processing"]
    assert sorted(a.scw for a in ops) == sorted(pointings) and all(a.level == "error" for a in ops)
    assert not inbox.pending()  # the raw data were written: the chunks could go
    good = Daemon(arch.root, inbox.root, nrt_config(overrides={"nrt.idle_close_s": "0.2"}), durable=False,
                  background=False)
    good.run(idle_exit_s=0.3)
    good.close()
    recs = {r.scw: r for r in good.records()}
    assert all(recs[s].status == "done" and recs[s].attempts == 2 for s in pointings)
    assert all((arch.root / "obs" / "nrt.000" / "scw" / s / "isgri_srcl_res.fits").is_file() for s in pointings)


def alerts_in(archive_root):
    return AlertStore(archive_root / "nrt" / "alerts").all()
