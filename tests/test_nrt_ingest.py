"""The NRT input pipeline (isdc.nrt.ingest + isdc.nrt.prepare + isdc.dal.rawdata) on the
committed simulated sample: telemetry decodes into the archive's raw data bit for bit,
faults are accounted as the feed's log says, chunks leave the inbox only when all their
science windows are written, a restart (a new Ingest on the chunks left) finishes the job,
and a ScW whose marks were both lost is closed from the revolution plan."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from isdc.dal.archive import Archive, read_scw_info
from isdc.dal.inbox import Inbox, encode_chunk
from isdc.dal.products import open_product
from isdc.dal.rawdata import copy_revolution_aux, write_raw_scw
from isdc.ids import CONS, NRT, ScwId
from isdc.instruments.isgri.detector_model import HK_CYCLE_S, DeadTimeModel
from isdc.nrt.ingest import Ingest, Windows
from isdc.nrt.prepare import RevolutionAux, prepare_scw
from isdc.sim.feed import FaultSpec, archive_scws, emit, read_scw_data
from isdc.telemetry.packets import APID_SCW, parse_headers
from nrt_sim import event_key

SAMPLE = Path(__file__).resolve().parent.parent / "test_data" / "sim" / "archive"
REV = 665


@pytest.fixture()
def setup(tmp_path):
    arch = Archive(tmp_path / "archive")
    shutil.copytree(SAMPLE, arch.root)
    copy_revolution_aux(arch, REV, CONS, NRT, durable=False)
    return arch, Inbox(tmp_path / "inbox")


def feed(arch, inbox, faults="", seed=3):
    return emit((read_scw_data(arch, s) for s in archive_scws(arch, REV, CONS)), inbox, REV,
                faults=FaultSpec.parse(faults), seed=seed, durable=False)


def drain(ingest: Ingest, arch: Archive, aux: RevolutionAux, limit=5, stop_after=None, force_at_end=True):
    """Run the input pipeline: poll, close what is ready (prepare + write), release chunks."""
    closed, reports = [], {}
    while True:
        got = ingest.poll(limit=limit)
        ready = ingest.ready(force=force_at_end and not got and not ingest.pending())
        for swid in ready:
            tel = ingest.assemble(swid)
            p = prepare_scw(tel, aux)
            dt = DeadTimeModel()
            write_raw_scw(arch, p.info, p.events, p.hk, hk_cycle_s=HK_CYCLE_S, tau_event=dt.tau_event,
                          tau_veto=dt.tau_veto, durable=False)
            ingest.close(swid)
            closed.append(swid)
            reports[swid] = tel.report
            if stop_after is not None and len(closed) >= stop_after:
                ingest.release()
                return closed, reports
        ingest.release()
        if not got and not ready and not ingest.pending():
            return closed, reports


def columns(arch, scw, name, ext):
    return open_product(arch.scw_dir(ScwId.parse(scw)) / name).table(ext).columns


def test_fault_free_telemetry_gives_the_archive_raw_data_bit_for_bit(setup):
    arch, inbox = setup
    res = feed(arch, inbox)
    aux = RevolutionAux.load(arch, REV)
    closed, reports = drain(Ingest(inbox, plan=aux.plan_windows(), durable=False), arch, aux)
    assert closed == res.scws  # every ScW once, in on-board order
    for swid in closed:
        assert reports[swid].complete
        a, b = (columns(arch, f"{swid}.{v}", "isgri_events.fits", "ISGR-EVTS-ALL") for v in ("000", "001"))
        assert a.keys() == b.keys()
        for k in b:  # TIME too: the time correlation's image of OB_TIME, the same doubles
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{swid} ISGR-EVTS-ALL {k}")
        a, b = (columns(arch, f"{swid}.{v}", "isgri_hk.fits", "ISGR-HK..-CNV") for v in ("000", "001"))
        for k in ("TIME", "OB_TIME", "TRIG_CNT", "VETO_CNT", "VETO_STB"):
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{swid} ISGR-HK..-CNV {k}")
        # converted HK: within half an ADC step of the simulator's values (docs/telemetry.md)
        assert np.abs(a["MDU_TEMP"] - b["MDU_TEMP"]).max() <= 0.001 + 1e-6
        assert np.abs(a["BIAS_V"] - b["BIAS_V"]).max() <= 0.0025 + 1e-5
        nrt, cons = (read_scw_info(arch, ScwId.parse(f"{swid}.{v}")) for v in ("000", "001"))
        assert (nrt.obtstart, nrt.obtend) == (cons.obtstart, cons.obtend)
        assert nrt.tstart == pytest.approx(cons.tstart, abs=1e-9) and nrt.tstop == pytest.approx(cons.tstop, abs=1e-9)
    assert not inbox.pending() and len(inbox.processed()) == len(res.chunks)


def test_faults_are_accounted_as_the_feed_log_says(setup):
    arch, inbox = setup
    res = feed(arch, inbox, "gaps=0.01,dups=0.02,corrupt=0.003,disorder=0.03,truncate=0.05", seed=8)
    aux = RevolutionAux.load(arch, REV)
    ing = Ingest(inbox, plan=aux.plan_windows(), durable=False)
    closed, reports = drain(ing, arch, aux)
    assert sorted(closed) == sorted(res.scws)
    for swid, rep in reports.items():
        truth = res.log.per_scw[swid]
        for apid, r in rep.apids.items():
            t = truth[r.name]
            assert r.lost == t["lost"], (swid, r.name)
            # a copy that arrives after its ScW was written is counted as late, not lost or twice
            assert r.duplicates <= t["duplicates"]
        assert sum(r.duplicates for r in rep.apids.values()) + ing.late_by_scw.get(swid, 0) == \
            sum(t["duplicates"] for t in truth.values())
        events = columns(arch, swid + ".000", "isgri_events.fits", "ISGR-EVTS-ALL")
        ref = columns(arch, swid + ".001", "isgri_events.fits", "ISGR-EVTS-ALL")
        kept = np.isin(event_key(ref, ref["OB_TIME"][0]), event_key(events, ref["OB_TIME"][0]))
        assert kept.sum() == len(events["TIME"])  # every decoded event is one of the archive's ...
        for k in ref:  # ... with its time and columns
            np.testing.assert_array_equal(events[k], ref[k][kept])
    assert len(inbox.quarantined()) == res.log.truncated_chunks > 0
    assert len(inbox.processed()) + len(inbox.quarantined()) == res.log.chunks and not inbox.pending()


def test_a_chunk_stays_in_the_inbox_until_all_its_scws_are_written(setup):
    arch, inbox = setup
    feed(arch, inbox)
    aux = RevolutionAux.load(arch, REV)
    ing = Ingest(inbox, plan=aux.plan_windows(), durable=False)
    closed, _ = drain(ing, arch, aux, limit=1, stop_after=2)
    last = ScwId.parse(closed[-1] + ".000")
    end = read_scw_info(arch, last).obtend
    for name in inbox.processed():  # everything moved out holds only written ScWs' packets
        obt = parse_headers(np.frombuffer(inbox.path(name, "done").read_bytes()[16:], np.uint8).reshape(-1, 402)).obt
        assert int(obt.max()) <= end
    waiting = inbox.pending()
    assert 1 <= ing.held() <= len(waiting)  # chunks read but kept for the ScW still open
    assert ing.windows() and all(w.swid not in closed for w in ing.windows())


def test_restart_on_the_chunks_left_finishes_every_scw_once(setup, tmp_path):
    """A first Ingest writes two ScWs and 'crashes'; a new one, told which ScWs are written,
    re-reads the chunks still waiting and writes the others: the same data as one run."""
    arch, inbox = setup
    feed(arch, inbox, "gaps=0.005,dups=0.02,disorder=0.03", seed=4)
    aux = RevolutionAux.load(arch, REV)
    first, _ = drain(Ingest(inbox, plan=aux.plan_windows(), durable=False), arch, aux, limit=3, stop_after=2)
    written = [(read_scw_info(arch, ScwId.parse(s + ".000")).obtstart,
                read_scw_info(arch, ScwId.parse(s + ".000")).obtend, s + ".000") for s in first]
    stamps = {s: arch.swg(ScwId.parse(s + ".000")).stat().st_mtime_ns for s in first}
    ing = Ingest(inbox, written, plan=aux.plan_windows(), durable=False)
    second, _ = drain(ing, arch, aux)
    assert not set(first) & set(second) and sorted(first + second) == sorted(archive_scws_swids(arch))
    assert {s: arch.swg(ScwId.parse(s + ".000")).stat().st_mtime_ns for s in first} == stamps
    assert sum(ing.late_by_scw.values()) > 0  # packets of the written ScWs re-read and dropped
    # the same bytes as an uninterrupted run of the same telemetry
    ref = Archive(tmp_path / "ref")
    shutil.copytree(SAMPLE, ref.root)
    copy_revolution_aux(ref, REV, CONS, NRT, durable=False)
    rin = Inbox(tmp_path / "ref_inbox")
    feed(ref, rin, "gaps=0.005,dups=0.02,disorder=0.03", seed=4)
    drain(Ingest(rin, plan=aux.plan_windows(), durable=False), ref, RevolutionAux.load(ref, REV))
    for s in first + second:
        a = columns(arch, s + ".000", "isgri_events.fits", "ISGR-EVTS-ALL")
        b = columns(ref, s + ".000", "isgri_events.fits", "ISGR-EVTS-ALL")
        assert all(np.array_equal(a[k], b[k]) for k in b), s
    assert not inbox.pending()


def archive_scws_swids(arch):
    return [s.swid for s in archive_scws(arch, REV, CONS)]


def lose_marks(inbox: Inbox, victim: str) -> None:
    """Remove both ScW marks of `victim` from the chunks (lost in transmission)."""
    for name in inbox.pending():
        p = inbox.path(name)
        pk = np.frombuffer(p.read_bytes()[16:], np.uint8).reshape(-1, 402)
        h = parse_headers(pk)
        swids = [bytes(pk[i, 18:30]).decode() if h.apid[i] == APID_SCW else "" for i in range(pk.shape[0])]
        keep = np.array([s != victim for s in swids])
        if not keep.all():
            p.write_bytes(encode_chunk(pk[keep]))


def test_without_marks_or_plan_the_data_are_dropped_once_far_behind(setup):
    """No mark and no plan: the ScW cannot be known; its packets are held until the stream
    is `orphan_s` past them, then dropped, so its chunks do not stay in the inbox forever."""
    arch, inbox = setup
    res = feed(arch, inbox)
    lose_marks(inbox, res.scws[1])
    ing = Ingest(inbox, orphan_s=20.0, durable=False)
    closed, _ = drain(ing, arch, RevolutionAux.load(arch, REV))
    assert res.scws[1] not in closed and sorted(closed) == sorted(set(res.scws) - {res.scws[1]})
    assert not inbox.pending() and ing.held() == 0


def test_a_scw_without_marks_is_closed_from_the_revolution_plan(setup):
    arch, inbox = setup
    res = feed(arch, inbox)
    victim = res.scws[2]
    lose_marks(inbox, victim)
    aux = RevolutionAux.load(arch, REV)
    ing = Ingest(inbox, plan=aux.plan_windows(), durable=False)
    closed, reports = drain(ing, arch, aux)
    assert sorted(closed) == sorted(res.scws) and ing.synthesised(victim)
    rep = reports[victim]
    assert rep.start_mark and not rep.end_mark and any("END" in n for n in rep.notes)  # START from the plan
    a = columns(arch, victim + ".000", "isgri_events.fits", "ISGR-EVTS-ALL")
    b = columns(arch, victim + ".001", "isgri_events.fits", "ISGR-EVTS-ALL")
    assert all(np.array_equal(a[k], b[k]) for k in b)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 1000)), max_size=12),
       st.lists(st.integers(-10, 2 * 10**6), max_size=40))
def test_window_lookup_agrees_with_a_scan(spans, points):
    items, start = [], 0
    for gap, length in spans:  # disjoint, sorted windows
        a = start + gap
        items.append((a, a + length, f"w{len(items)}"))
        start = a + length
    w = Windows(items[::-1])
    got = w.lookup(np.array(points, dtype=np.int64)) if points else np.zeros(0, int)
    for p, g in zip(points, got):
        want = next((k for k, (a, b, _) in enumerate(sorted(items)) if a <= p < b), -1)
        assert g == want
