"""Reassembly: packets in any order, with duplicates, gaps and corruption -> per-ScW data and a
record that counts exactly what was done to the stream."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isdc.ids import ScwId
from isdc.telemetry.packets import (
    APID_ISGRI_EVENTS,
    APID_ISGRI_HK,
    APID_SCW,
    FRAME_TICKS,
    MARK_END,
    PACKET_SIZE,
    SEQ_MODULO,
    ApidCounts,
    ScwMark,
    build_packets,
    crc16_ccitt,
    encode_mark,
    encode_scw,
    parse_headers,
)
from isdc.telemetry.reassembly import Reassembler, reassemble
from test_telemetry_packets import OBT0, make_events, make_hk

SWIDS = ("066500230010", "066500240010", "066500240021")


def make_stream(seconds=(30.0, 20.5, 12.0), rate=600.0, seed=0, counters=None):
    """Consecutive ScWs: (packets in on-board order, [(swid, obt_start, obt_end, events, hk)])."""
    rng = np.random.default_rng(seed)
    start, out, scws = OBT0, [], []
    counters = dict(counters or {})
    for swid, T in zip(SWIDS, seconds):
        ev = make_events(rng.poisson(rate * T), rng, start, T)
        n_hk = int(np.ceil(T / 8))
        hk = make_hk(n_hk, rng, start)
        hk["CYCLE_LEN"] = np.minimum(8.0, T - 8.0 * np.arange(n_hk)).astype(np.float32)
        end = start + int(T * FRAME_TICKS)
        p, counters = encode_scw(swid, start, end, ev, hk, counters)
        out.append(p)
        scws.append((swid, start, end, ev, hk))
        start = end
    return np.concatenate(out), scws


def hk_equal(got, hk):
    for k in ("OB_TIME", "TRIG_CNT", "VETO_CNT", "VETO_STB"):
        assert np.array_equal(got[k], hk[k]), k
    assert np.allclose(got["MDU_TEMP"], hk["MDU_TEMP"], atol=0.001 + 1e-6, rtol=0)
    assert np.allclose(got["BIAS_V"], hk["BIAS_V"], atol=0.0025 + 1e-5, rtol=0)


def late_by_definition(packets_in_arrival_order):
    """Per APID: packets that arrived after a packet of their APID sent later (brute force).

    On-board order is the OBT, and for marks of two ScWs at one OBT: END before START.
    """
    h = parse_headers(packets_in_arrival_order)
    kind = packets_in_arrival_order[:, 16].tolist()  # first payload byte: 1 START, 2 END
    seen, late = {}, {}
    for apid, obt, k in zip(h.apid.tolist(), h.obt.tolist(), kind):
        obt = (obt, 0 if apid == APID_SCW and k == 2 else 1)
        done = seen.setdefault(apid, [])
        if obt in done:
            continue  # a duplicate: only first arrivals count
        if done and max(done) > obt:
            late[apid] = late.get(apid, 0) + 1
        done.append(obt)
    return late


# --------------------------------------------------------------------------- fault-free

def test_fault_free_stream_reassembles_exactly():
    packets, scws = make_stream()
    chunks = [packets[i:i + 37].tobytes() for i in range(0, len(packets), 37)]
    out, r = reassemble(chunks)
    assert [str(t.scw) for t in out] == [f"{s}.000" for s, *_ in scws]
    assert r.corrupt == [] and r.unattributed() == 0
    for t, (swid, start, end, ev, hk) in zip(out, scws):
        assert (t.obt_start, t.obt_end) == (start, end)
        for k, v in ev.items():
            assert np.array_equal(t.events[k], v), k
        hk_equal(t.hk, hk)
        rep = t.report
        assert rep.complete and rep.start_mark and rep.end_mark and rep.notes == [] and rep.lost() == 0
        ev_rep = rep.apids[APID_ISGRI_EVENTS]
        h = parse_headers(packets)
        n_ev = int(np.sum((h.apid == APID_ISGRI_EVENTS) & (h.obt >= start) & (h.obt < end)))
        per_frame = np.unique(ev["OB_TIME"] // FRAME_TICKS, return_counts=True)[1]
        assert ev_rep.expected == ev_rep.received == n_ev == int(np.sum(-(-per_frame // 64)))
        assert (ev_rep.duplicates, ev_rep.out_of_order, ev_rep.conflicts, ev_rep.gaps) == (0, 0, 0, [])
        assert rep.apids[APID_ISGRI_HK].received == len(hk["OB_TIME"])
        json.dumps(rep.to_dict())  # JSON-ready


def test_events_packets_per_scw_match_the_end_mark():
    packets, scws = make_stream()
    out, _ = reassemble([packets.tobytes()])
    h = parse_headers(packets)
    for t, (swid, start, end, ev, hk) in zip(out, scws):
        inside = (h.apid == APID_ISGRI_EVENTS) & (h.obt >= start) & (h.obt < end)
        assert t.report.apids[APID_ISGRI_EVENTS].expected == int(inside.sum())


# --------------------------------------------------------------------------- order and duplicates

@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 0.5), st.integers(0, SEQ_MODULO - 1))
def test_any_order_and_duplication_reassemble_to_the_same_data(seed, dup_fraction, first_count):
    packets, scws = make_stream((6.0, 4.5), rate=400.0, seed=seed % 1000,
                                counters={APID_ISGRI_EVENTS: first_count, APID_ISGRI_HK: first_count})
    rng = np.random.default_rng(seed)
    extra = rng.choice(len(packets), int(dup_fraction * len(packets)))
    stream = np.concatenate([packets, packets[extra]])[rng.permutation(len(packets) + extra.size)]
    pieces = np.split(stream, np.sort(rng.integers(0, len(stream), 4)))
    out, r = reassemble([p.tobytes() for p in pieces])
    assert len(out) == 2
    h = parse_headers(stream)
    late = late_by_definition(stream)
    for t, (swid, start, end, ev, hk) in zip(out, scws):
        for k, v in ev.items():
            assert np.array_equal(t.events[k], v), k
        hk_equal(t.hk, hk)
        assert t.report.complete
        for apid in (APID_ISGRI_EVENTS, APID_ISGRI_HK):
            a = t.report.apids[apid]
            orig = (parse_headers(packets).apid == apid) & (parse_headers(packets).obt >= start) & \
                   (parse_headers(packets).obt < end)
            copies = (h.apid == apid) & (h.obt >= start) & (h.obt < end)
            assert a.duplicates == int(copies.sum() - orig.sum())
            assert a.lost == 0 and a.received == int(orig.sum())
    # disorder: the stream-wide brute-force count splits over the ScWs, except that a packet of
    # a later ScW that came before ScW k's packets makes them late too (counted in ScW k).
    per_apid = {apid: sum(t.report.apids[apid].out_of_order for t in out) for apid in (APID_ISGRI_EVENTS, APID_ISGRI_HK)}
    assert per_apid == {apid: late.get(apid, 0) for apid in per_apid}
    marks = r.stream_stats(APID_SCW)
    assert marks["out_of_order"] == late.get(APID_SCW, 0)
    assert (marks["distinct"], marks["lost"], marks["conflicts"]) == (4, 0, 0)
    assert marks["duplicates"] == int(np.sum(h.apid == APID_SCW)) - 4


def test_out_of_order_counts_late_packets_exactly():
    packets, scws = make_stream((30.0,))
    ev_rows = np.flatnonzero(parse_headers(packets).apid == APID_ISGRI_EVENTS)
    order = list(range(len(packets)))
    moved = [int(ev_rows[k]) for k in (3, 50, 51, 200)]
    for i in moved:  # deliver each 5 slots late
        order.remove(i)
    for i in moved:
        order.insert(order.index(i + 5 if i + 5 not in moved else i + 6) + 1, i)
    out, _ = reassemble([packets[order].tobytes()])
    rep = out[0].report.apids[APID_ISGRI_EVENTS]
    assert rep.out_of_order == 4 == late_by_definition(packets[order])[APID_ISGRI_EVENTS]
    assert rep.lost == 0 and out[0].report.complete


# --------------------------------------------------------------------------- gaps

def test_lost_packets_are_counted_and_located_exactly():
    packets, scws = make_stream()
    h = parse_headers(packets)
    rng = np.random.default_rng(1)
    swid, start, end, ev, hk = scws[1]
    ev_rows = np.flatnonzero((h.apid == APID_ISGRI_EVENTS) & (h.obt >= start) & (h.obt < end))
    hk_rows = np.flatnonzero((h.apid == APID_ISGRI_HK) & (h.obt >= start) & (h.obt < end))
    drop = np.r_[ev_rows[:2], ev_rows[40:47], rng.choice(ev_rows[50:-3], 9, replace=False), ev_rows[-1], hk_rows[0]]
    keep = np.setdiff1d(np.arange(len(packets)), drop)
    out, r = reassemble([packets[keep].tobytes()])
    t = out[1]
    e = t.report.apids[APID_ISGRI_EVENTS]
    assert e.lost == len(np.unique(drop)) - 1 == sum(g.lost for g in e.gaps)
    assert t.report.apids[APID_ISGRI_HK].lost == 1
    assert e.gaps[0].obt_start == start and e.gaps[0].lost == 2  # leading gap from the ScW start
    assert e.gaps[-1].obt_stop == end and e.gaps[-1].lost == 1   # trailing gap to the ScW end
    assert not t.report.complete
    # the data of every packet received, and only those, come back
    lost_ev = np.zeros(len(ev["OB_TIME"]), bool)
    first_event = np.r_[0, np.cumsum(h.items[ev_rows])[:-1]]
    for k, row in enumerate(ev_rows):
        if row in drop:
            lost_ev[first_event[k]:first_event[k] + h.items[row]] = True
    for k, v in ev.items():
        assert np.array_equal(t.events[k], v[~lost_ev]), k
    # every lost event lies in a reported gap
    lo = np.array([g.obt_start for g in e.gaps])
    hi = np.array([g.obt_stop for g in e.gaps])
    obt_lost = ev["OB_TIME"][lost_ev]
    assert np.all(np.any((obt_lost[:, None] >= lo) & (obt_lost[:, None] <= hi), axis=1))
    assert np.array_equal(t.hk["OB_TIME"], hk["OB_TIME"][1:])
    # neighbours are untouched
    assert out[0].report.complete and out[2].report.complete


def test_a_run_of_more_than_16384_lost_packets_is_counted_from_the_end_mark():
    n = SEQ_MODULO + 700
    hk = make_hk(n, np.random.default_rng(2))
    end = OBT0 + (n * 8 + 1) * FRAME_TICKS
    packets, _ = encode_scw(SWIDS[0], OBT0, end, None, hk, {APID_ISGRI_HK: 16000})
    h = parse_headers(packets)
    rows = np.flatnonzero(h.apid == APID_ISGRI_HK)
    drop = rows[100:100 + SEQ_MODULO + 500]  # 16884 lost: the 14-bit count alone would say 500
    keep = np.setdiff1d(np.arange(len(packets)), drop)
    out, _ = reassemble([packets[keep].tobytes()])
    rep = out[0].report
    a = rep.apids[APID_ISGRI_HK]
    assert a.lost == SEQ_MODULO + 500 and a.received == n - SEQ_MODULO - 500
    assert len(a.gaps) == 1 and a.gaps[0].lost == SEQ_MODULO + 500
    assert a.gaps[0].obt_start == hk["OB_TIME"][99] and a.gaps[0].obt_stop == hk["OB_TIME"][100 + SEQ_MODULO + 500]
    assert any("counter wrapped" in s for s in rep.notes)


# --------------------------------------------------------------------------- corruption

def test_corrupt_packets_are_recorded_and_count_as_lost_unless_a_good_copy_arrives():
    packets, scws = make_stream((30.0,))
    h = parse_headers(packets)
    ev_rows = np.flatnonzero(h.apid == APID_ISGRI_EVENTS)
    bad = packets.copy()
    hit = ev_rows[[5, 6, 100]]
    bad[hit[0], 200] ^= 0x10
    bad[hit[1], 7] ^= 0x01   # in the OBT: the header lies, the CRC tells
    bad[hit[2], 401] ^= 0x80  # in the CRC itself
    out, r = reassemble([("TM_0665_000001.pkt", bad.tobytes()), ("TM_0665_000002.pkt", packets[[hit[2]]].tobytes())])
    assert [(c.source, c.index, c.reason) for c in r.corrupt] == [("TM_0665_000001.pkt", int(i), "CRC mismatch")
                                                                  for i in hit]
    e = out[0].report.apids[APID_ISGRI_EVENTS]
    assert e.lost == 2 and e.duplicates == 0  # the third came again, intact
    # attributed to the ScW by their unverified header: the one whose OBT was hit (by 2**48) is not
    assert [c.index for c in out[0].report.corrupt] == [int(hit[0]), int(hit[2])]


def test_malformed_packet_with_valid_crc_and_truncated_tail():
    packets, _ = make_stream((10.0,))
    h = parse_headers(packets)
    i = int(np.flatnonzero((h.apid == APID_ISGRI_EVENTS) & (h.items < 64))[0])
    p = packets.copy()
    p[i, 16 + 6 * 63] = 1  # a byte in an unused event slot, with the CRC made right
    c = crc16_ccitt(p[i:i + 1, :400])[0]
    p[i, 400], p[i, 401] = c >> 8, c & 0xFF
    r = Reassembler()
    res = r.add(p.tobytes()[:-100], "chunk")
    assert res.packets == len(packets) - 1 and res.valid == len(packets) - 2
    reasons = [c.reason for c in r.corrupt]
    assert any("non-zero bytes after" in x for x in reasons)
    assert reasons[-1] == f"truncated packet: {PACKET_SIZE - 100} of {PACKET_SIZE} bytes"
    assert r.windows()[0].end is None  # the END mark was the truncated packet
    t = r.assemble(SWIDS[0])
    assert t.report.apids[APID_ISGRI_EVENTS].lost is None  # without END the tail cannot be counted
    assert any("END mark not received" in s for s in t.report.notes)


def test_unknown_apid_with_valid_crc_is_rejected():
    p = build_packets(0x7FF, 0, [OBT0], [1], np.zeros((1, 384), np.uint8))
    r = Reassembler()
    assert r.add(p).valid == 0
    assert r.corrupt[0].reason == "unknown APID 0x7ff"


# --------------------------------------------------------------------------- ScW boundaries

def test_closing_discarding_and_unattributed_packets():
    packets, scws = make_stream()
    h = parse_headers(packets)
    swid, start, end, ev, hk = scws[0]
    r = Reassembler()
    first_end = int(np.flatnonzero((h.apid == APID_SCW) & (h.obt == end))[0])  # END of ScW 0
    r.add(packets[1:first_end])  # START of ScW 0 missing, its data present
    assert r.windows() == [] and r.unattributed() == int(np.sum(np.isin(h.apid[1:first_end],
                                                                        [APID_ISGRI_EVENTS, APID_ISGRI_HK])))
    r.add(packets[first_end:first_end + 1])
    assert r.is_complete(swid) and r.closable(swid, grace_ticks=10**9)
    w = r.window(ScwId.parse(swid + ".000"))
    assert (w.start, w.end.obt_end) == (None, end)
    t = r.assemble(swid)
    assert t.report.complete and "START mark not received" in t.report.notes
    r.discard(swid)
    assert r.windows() == [] and r.unattributed() == 0
    # ScW 1 without its last event packet: not complete; closable once the stream has moved on
    swid1, start1, end1, *_ = scws[1]
    rows1 = np.flatnonzero((h.obt >= start1) & (h.obt <= end1))
    last_ev = int(rows1[(h.apid[rows1] == APID_ISGRI_EVENTS) & (h.obt[rows1] < end1)][-1])
    r.add(packets[[i for i in rows1 if i != last_ev]])
    assert not r.is_complete(swid1)
    assert not r.closable(swid1, grace_ticks=5 * FRAME_TICKS)
    nxt = np.flatnonzero(h.obt >= end1 + 5 * FRAME_TICKS)[:1]
    r.add(packets[nxt])
    assert r.closable(swid1, grace_ticks=5 * FRAME_TICKS)
    t1 = r.assemble(swid1)
    assert t1.report.apids[APID_ISGRI_EVENTS].lost == 1 and t1.report.apids[APID_ISGRI_EVENTS].gaps[0].obt_stop == end1
    with pytest.raises(KeyError, match="no START or END mark"):
        r.window("066500990010")


def test_discard_keeps_the_neighbours_marks_and_data():
    packets, scws = make_stream()
    r = Reassembler()
    r.add(packets)
    assert r.stream_stats(APID_SCW)["distinct"] == 6
    r.discard(SWIDS[1])
    assert r.stream_stats(APID_SCW)["distinct"] == 4  # START and END of ScW 1 only
    assert [w.swid for w in r.windows()] == [SWIDS[0], SWIDS[2]]
    for k in (0, 2):
        t = r.assemble(SWIDS[k])
        assert t.report.complete and np.array_equal(t.events["OB_TIME"], scws[k][3]["OB_TIME"])


def test_an_end_mark_announcing_fewer_packets_than_received_is_noted():
    packets, scws = make_stream((10.0,))
    swid, start, end, ev, hk = scws[0]
    h = parse_headers(packets)
    n_ev = int(np.sum(h.apid == APID_ISGRI_EVENTS))
    lie = ScwMark(MARK_END, swid, start, end, (ApidCounts(APID_ISGRI_EVENTS, 0, (n_ev - 1) % SEQ_MODULO, n_ev - 3),
                                               ApidCounts(APID_ISGRI_HK, 0, 1, 2)))
    obt, items, pl = encode_mark(lie)
    packets[-1] = build_packets(APID_SCW, int(h.seq[-1]), [obt], [items], pl[None, :])[0]
    t = reassemble([packets.tobytes()])[0][0]
    e = t.report.apids[APID_ISGRI_EVENTS]
    assert (e.expected, e.received, e.lost) == (n_ev - 3, n_ev, 0)
    assert any(f"{n_ev} distinct packets received, but the END mark announces {n_ev - 3}" in x for x in t.report.notes)
    assert np.array_equal(t.events["OB_TIME"], ev["OB_TIME"])
