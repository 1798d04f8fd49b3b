"""The telemetry feed: ScWs -> packets -> faults -> chunk files in an inbox -> reassembly.

The fault log the feed keeps (what it really delivered) must be what the decoder finds,
exactly, per ScW and APID; a fault-free feed of a simulated archive must decode to the
archive's events bit for bit."""
import json
from pathlib import Path

import numpy as np
import pytest

from isdc.cli import main as isdc_run
from isdc.dal.archive import Archive, read_time_correlation
from isdc.dal.inbox import Inbox
from isdc.dal.products import open_product
from isdc.ids import CONS, Revolution
from isdc.sim.feed import FaultSpec, FeedError, ScwData, archive_scws, emit, read_scw_data
from isdc.sim.sky import Sky
from isdc.sim.writer import EVENTS_FILE, HK_FILE, simulate_revolution
from isdc.telemetry.packets import APID_ISGRI_EVENTS, APID_ISGRI_HK, APID_NAMES, FRAME_TICKS, parse_headers
from isdc.telemetry.reassembly import Reassembler
from test_telemetry_packets import OBT0, make_events, make_hk

REPO = Path(__file__).resolve().parents[1]


def scw_list(seconds=(40.0, 25.5, 31.0), rate=700.0, seed=0):
    rng = np.random.default_rng(seed)
    out, start = [], OBT0 + 12345 * 64
    for k, T in enumerate(seconds):
        ev = make_events(rng.poisson(rate * T), rng, start, T)
        n = int(np.ceil(T / 8))
        hk = make_hk(n, rng, start)
        hk["CYCLE_LEN"] = np.minimum(8.0, T - 8.0 * np.arange(n)).astype(np.float32)
        end = start + int(T * FRAME_TICKS)
        out.append(ScwData(f"0665{k:04d}0010", start, end, ev, hk))
        start = end
    return out


def read_all(inbox: Inbox) -> tuple[Reassembler, list]:
    r, problems = Reassembler(), []
    for name in inbox.pending():
        c = inbox.read(name)
        if c.problem:
            problems.append(c.problem)
        r.add(c.data, str(name))
    return r, problems


# --------------------------------------------------------------------------- options

def test_fault_spec_parsing():
    f = FaultSpec.parse("gaps=0.01,dups=0.02, corrupt=0.001,disorder=0.03,truncate=0.5,gap_run=3,max_delay=9")
    assert (f.gaps, f.dups, f.corrupt, f.disorder, f.truncate, f.gap_run, f.max_delay) == \
        (0.01, 0.02, 0.001, 0.03, 0.5, 3.0, 9)
    assert FaultSpec.parse("") == FaultSpec() and not FaultSpec().any and f.any
    for text, msg in (("gap=0.1", "expected NAME=VALUE"), ("gaps", "expected NAME=VALUE"),
                      ("gaps=0.1,gaps=0.2", "given twice"), ("dups=x", "not a number"),
                      ("corrupt=1", r"fraction in \[0, 1\)"), ("disorder=-0.1", "fraction"),
                      ("gaps=0.5,dups=0.5", "less than 1"), ("gaps=nan", "fraction|finite"),
                      ("max_delay=0", "max_delay must be")):
        with pytest.raises(FeedError, match=msg):
            FaultSpec.parse(text)


# --------------------------------------------------------------------------- fault-free

def test_fault_free_feed_decodes_exactly_and_chunks_hold_their_seconds(tmp_path):
    scws = scw_list()
    ib = Inbox(tmp_path)
    res = emit(scws, ib, 665, seed=4, chunk_seconds=3.0, durable=False)
    assert res.chunks == ib.pending() and [c.number for c in res.chunks] == list(range(len(res.chunks)))
    # 96.5 s of telemetry in 3 s chunks counted from the first packet (the START mark): 33 chunks
    assert len(res.chunks) == 33
    for name in res.chunks:
        c = ib.read(name)
        assert c.problem is None
        obt = parse_headers(c.packets).obt.astype(np.int64)
        assert np.all(np.diff(obt) >= 0) and obt[-1] - obt[0] < 3 * FRAME_TICKS
    r, problems = read_all(ib)
    assert problems == [] and r.corrupt == []
    for s in scws:
        t = r.assemble(s.swid)
        assert t.report.complete and t.report.notes == []
        for k, v in s.events.items():
            assert np.array_equal(t.events[k], v), k
        for k in ("OB_TIME", "TRIG_CNT", "VETO_CNT", "VETO_STB"):
            assert np.array_equal(t.hk[k], s.hk[k])
        assert np.allclose(t.hk["MDU_TEMP"], s.hk["MDU_TEMP"], atol=0.001 + 1e-6, rtol=0)
    lg = res.log
    assert (lg.dropped, lg.duplicated, lg.corrupted, lg.delayed, lg.truncated_chunks) == (0, 0, 0, 0, 0)
    assert lg.delivered == lg.packets and all(v == 0 for v in lg.marks_lost.values())
    # a second feed continues the numbering
    more = emit(scw_list((5.0,), seed=9), ib, 665, durable=False)
    assert more.chunks[0].number == len(res.chunks)


# --------------------------------------------------------------------------- faults

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_injected_faults_are_found_exactly(tmp_path, seed):
    scws = scw_list(seed=seed)
    ib = Inbox(tmp_path)
    spec = FaultSpec(gaps=0.02, dups=0.03, corrupt=0.02, disorder=0.05, truncate=0.15, max_delay=60)
    res = emit(scws, ib, 665, faults=spec, seed=seed, chunk_seconds=2.0, durable=False)
    lg = res.log
    assert lg.dropped > 10 and lg.duplicated > 10 and lg.corrupted > 3 and lg.delayed > 20 and lg.truncated_chunks > 2
    r, problems = read_all(ib)
    assert len(problems) == lg.truncated_chunks and all("truncated" in p for p in problems)
    crc = [c for c in r.corrupt if c.reason == "CRC mismatch"]
    cut = [c for c in r.corrupt if c.reason.startswith("truncated packet")]
    assert len(crc) == lg.corrupt_delivered and len(cut) == lg.truncated_chunks and len(r.corrupt) == len(crc) + len(cut)
    assert lg.corrupt_delivered <= lg.corrupted
    assert lg.corrupt_delivered >= sum(v["corrupt"] for sw in lg.per_scw.values() for v in sw.values())
    checked = 0
    for s in scws:
        t = r.assemble(s.swid)
        truth = lg.per_scw[s.swid]
        if not t.report.end_mark:  # without END the ScW's tail cannot be counted: lost is unknown
            assert lg.marks_lost[s.swid] >= 1
            continue
        checked += 1
        for apid in (APID_ISGRI_EVENTS, APID_ISGRI_HK):
            a, want = t.report.apids[apid], truth[APID_NAMES[apid]]
            assert (a.lost, a.duplicates, a.out_of_order) == (want["lost"], want["duplicates"], want["out_of_order"])
            assert sum(g.lost for g in a.gaps) == a.lost
        # the events that came are exactly the original ones minus those of lost packets
        ev = s.events
        got = t.events
        assert len(got["OB_TIME"]) < len(ev["OB_TIME"]) or truth["ISGR-EVTS"]["lost"] == 0
        pos = np.searchsorted(ev["OB_TIME"], got["OB_TIME"])
        assert np.all(ev["OB_TIME"][np.minimum(pos, len(ev["OB_TIME"]) - 1)] == got["OB_TIME"])
    assert checked >= 1


def test_fault_rates_follow_the_fractions_asked(tmp_path):
    scws = scw_list((200.0, 200.0), rate=900.0)
    spec = FaultSpec(gaps=0.03, dups=0.02, corrupt=0.01, disorder=0.04, gap_run=4.0)
    lg = emit(scws, Inbox(tmp_path), 665, faults=spec, seed=11, chunk_seconds=8.0, durable=False).log
    n = lg.packets
    assert n > 5000
    for got, p in ((lg.duplicated, spec.dups), (lg.corrupted, spec.corrupt), (lg.delayed, spec.disorder)):
        assert abs(got - n * p) < 4.5 * np.sqrt(n * p)  # binomial draws of all packets
    # gap runs: Poisson starts of geometric runs (mean 4): variance of the total ~ n p (2 x 4 - 1)
    assert abs(lg.dropped - n * spec.gaps) < 4.5 * np.sqrt(n * spec.gaps * 7)
    assert lg.delivered == n - lg.dropped + lg.duplicated


def test_same_seed_same_bytes(tmp_path):
    spec = FaultSpec(gaps=0.02, dups=0.02, corrupt=0.01, disorder=0.03, truncate=0.1)

    def run(d, seed):
        ib = Inbox(d)
        emit(scw_list((12.0, 9.0)), ib, 665, faults=spec, seed=seed, durable=False)
        return [ib.path(n).read_bytes() for n in ib.pending()]

    a, b, c = run(tmp_path / "a", 7), run(tmp_path / "b", 7), run(tmp_path / "c", 8)
    assert a == b and a != c


def test_speed_paces_the_chunks():
    class Clock:
        now = 100.0
        writes = []

        def __call__(self):
            return self.now

        def sleep(self, s):
            assert s > 0
            self.now += s

    clock = Clock()

    class Recorder(Inbox):
        def write(self, name, data, durable=True):
            clock.writes.append((name.number, clock.now))

        def next_name(self, rev):
            from isdc.dal.inbox import ChunkName
            return ChunkName(rev, 0)

    ib = Recorder.__new__(Recorder)
    scws = scw_list((10.0, 6.0))
    emit(scws, ib, 665, speed=20.0, chunk_seconds=2.0, clock=clock, sleep=clock.sleep)
    # chunk k covers OBT [2k, 2k + 2) s after the first packet; the last END mark, at 16 s, opens a 9th
    assert len(clock.writes) == 9
    for number, when in clock.writes:
        # chunk k is written once its end has passed at 20x: (k + 1) x 2 s / 20 after the start
        assert when == pytest.approx(100.0 + (number + 1) * 0.1, abs=1e-9)


def test_bad_emit_arguments(tmp_path):
    ib = Inbox(tmp_path)
    with pytest.raises(FeedError, match="speed"):
        emit(scw_list((2.0,)), ib, 665, speed=-1)
    with pytest.raises(FeedError, match="chunk_seconds"):
        emit(scw_list((2.0,)), ib, 665, chunk_seconds=0)
    a, b = scw_list((4.0, 4.0))
    with pytest.raises(FeedError, match="on-board time order"):
        emit([b, a], ib, 665)


# --------------------------------------------------------------------------- a simulated archive

@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("feed_archive")
    simulate_revolution(root, 665, n_pointings=2, exposure=60.0, sky=Sky.load(REPO / "test_data/sim/sky.yaml"), seed=3,
                        slew_overhead_s=10.0, slew_rate=0.5, durable=False)
    return Archive(root)


def test_simulated_archive_through_inbox_decodes_to_its_events_exactly(archive, tmp_path):
    scws = archive_scws(archive, 665)
    assert len(scws) == 4 and all(s.version == CONS for s in scws)
    ib = Inbox(tmp_path / "inbox")
    rc = isdc_run(["feed", "--archive", str(archive.root), "--revolution", "665", "--inbox", str(ib.root),
                   "--seed", "2", "--no-fsync"])
    assert rc == 0
    r, problems = read_all(ib)
    assert problems == [] and r.corrupt == []
    tc = read_time_correlation(archive.time_correlation(Revolution(665), CONS))
    assert [w.swid for w in r.windows()] == [s.swid for s in scws]
    for s in scws:
        t = r.assemble(s.swid)
        assert t.report.complete
        ev = open_product(archive.scw_dir(s) / EVENTS_FILE).table("ISGR-EVTS-ALL").columns
        for k in ("OB_TIME", "ISGRI_PHA", "RISE_TIME", "ISGRI_Y", "ISGRI_Z"):
            assert np.array_equal(t.events[k], ev[k]) and t.events[k].dtype == ev[k].dtype, k
        # TIME is the time correlation's image of OB_TIME: the same doubles as in the archive
        assert np.array_equal(tc.obt_to_ijd(t.events["OB_TIME"]), ev["TIME"])
        hk = open_product(archive.scw_dir(s) / HK_FILE).table("ISGR-HK..-CNV").columns
        for k in ("OB_TIME", "TRIG_CNT", "VETO_CNT", "VETO_STB"):
            assert np.array_equal(t.hk[k], hk[k]), k
        assert np.max(np.abs(t.hk["MDU_TEMP"] - hk["MDU_TEMP"])) <= 0.001 + 1e-6
        assert np.max(np.abs(t.hk["BIAS_V"] - hk["BIAS_V"])) <= 0.0025 + 1e-5
        assert np.max(np.abs(t.hk["CYCLE_LEN"] - hk["CYCLE_LEN"])) <= 2**-20


def test_feed_cli_with_faults_writes_the_truth(archive, tmp_path, capsys):
    truth = tmp_path / "truth.json"
    rc = isdc_run(["feed", "--archive", str(archive.root), "--revolution", "665", "--inbox", str(tmp_path / "ib"),
                   "--faults", "gaps=0.01,dups=0.01,corrupt=0.005,disorder=0.02", "--seed", "5", "--truth", str(truth),
                   "--no-fsync", "--version", "001"])
    out = capsys.readouterr().out
    assert rc == 0 and "revolution 0665: 4 ScWs" in out and "faults:" in out
    doc = json.loads(truth.read_text())
    assert set(doc["per_scw"]) == {s.swid for s in archive_scws(archive, 665)}
    r, _ = read_all(Inbox(tmp_path / "ib"))
    for swid, per in doc["per_scw"].items():
        t = r.assemble(swid)
        if t.report.end_mark:
            assert t.report.apids[APID_ISGRI_EVENTS].lost == per["ISGR-EVTS"]["lost"]
            assert t.report.apids[APID_ISGRI_EVENTS].out_of_order == per["ISGR-EVTS"]["out_of_order"]


def test_feed_cli_errors(archive, tmp_path, capsys):
    rc = isdc_run(["feed", "--archive", str(archive.root), "--revolution", "665", "--inbox", str(tmp_path / "ib"),
                   "--version", "000"])
    assert rc == 1 and "no science windows of version 000 in revolution 0665 (versions present: 001)" in \
        capsys.readouterr().err
    rc = isdc_run(["feed", "--archive", str(tmp_path / "none"), "--revolution", "665", "--inbox", str(tmp_path / "ib")])
    assert rc == 1 and "does not exist" in capsys.readouterr().err
    rc = isdc_run(["feed", "--archive", str(archive.root), "--revolution", "665", "--inbox", str(tmp_path / "ib"),
                   "--truth", str(tmp_path / "no" / "truth.json")])
    assert rc == 1 and "its folder does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        isdc_run(["feed", "--archive", ".", "--revolution", "665", "--inbox", "x", "--faults", "gaps=2"])
    assert "fraction" in capsys.readouterr().err


def test_read_scw_data_needs_obt(archive):
    s = archive_scws(archive, 665)[0]
    d = read_scw_data(archive, s)
    assert d.swid == s.swid and d.obt_start < d.obt_end
    assert set(d.events) >= {"OB_TIME", "ISGRI_PHA"} and "VETO_STB" in d.hk
