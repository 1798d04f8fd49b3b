"""Telemetry packets: CRC, header bytes, ISGRI event words, HK, ScW marks, one ScW's stream."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isdc.telemetry.packets import (
    APID_ISGRI_EVENTS,
    APID_ISGRI_HK,
    APID_SCW,
    DATA_LENGTH,
    EVENTS_PER_PACKET,
    FRAME_TICKS,
    HEADER_SIZE,
    HK_ADC,
    MARK_END,
    MARK_START,
    PACKET_SIZE,
    SEQ_MODULO,
    ApidCounts,
    PacketError,
    ScwMark,
    build_packets,
    check_event_payloads,
    check_headers,
    check_hk_payloads,
    crc16_ccitt,
    decode_event_payloads,
    decode_hk_payloads,
    decode_mark,
    encode_event_payloads,
    encode_hk_payloads,
    encode_mark,
    encode_scw,
    hk_from_raw,
    parse_headers,
    split_packets,
)

OBT0 = 213629501702144  # OBTSTART of a real ScW (docs/archive.md), a multiple of 64


def crc_reference(data: bytes) -> int:
    """Bit-by-bit CRC-16-CCITT (poly 0x1021, init 0xFFFF), straight from the definition."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def make_events(n, rng, obt0=OBT0, seconds=10.0):
    obt = obt0 + np.sort(rng.integers(0, int(seconds * 2**14), n)) * 64
    return {"OB_TIME": obt, "ISGRI_PHA": rng.integers(0, 4096, n).astype(np.int16),
            "RISE_TIME": rng.integers(0, 256, n).astype(np.int16), "ISGRI_Y": rng.integers(0, 128, n).astype(np.uint8),
            "ISGRI_Z": rng.integers(0, 128, n).astype(np.uint8)}


def make_hk(n, rng, obt0=OBT0):
    return {"OB_TIME": obt0 + np.arange(n) * 8 * FRAME_TICKS, "CYCLE_LEN": np.full(n, 8.0, np.float32),
            "MDU_TEMP": rng.uniform(-10, 10, (n, 8)).astype(np.float32),
            "BIAS_V": rng.normal(-100, 0.2, (n, 8)).astype(np.float32),
            "TRIG_CNT": rng.integers(0, 2**31, (n, 8)).astype(np.int32),
            "VETO_CNT": rng.integers(0, 20000, (n, 8)).astype(np.int32),
            "VETO_STB": rng.integers(0, 400000, (n, 8)).astype(np.int32)}


# --------------------------------------------------------------------------- CRC

def test_crc_known_values():
    assert crc16_ccitt(b"123456789") == 0x29B1  # the catalogued check value of CRC-16/CCITT-FALSE
    assert crc16_ccitt(b"") == 0xFFFF
    assert crc16_ccitt(b"A") == 0xB915


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=41), min_size=1, max_size=6).filter(
    lambda rows: len({len(r) for r in rows}) == 1))
def test_crc_vectorised_equals_bitwise_definition(rows):
    a = np.frombuffer(b"".join(rows), np.uint8).reshape(len(rows), len(rows[0]))
    got = crc16_ccitt(a)
    assert [int(x) for x in got] == [crc_reference(r) for r in rows]


def test_crc_long_rows_and_many_rows_agree_with_the_definition():
    rng = np.random.default_rng(8)
    long = rng.integers(0, 256, (2, 5001), dtype=np.uint8)  # beyond the positional tables: two bytes per step
    assert [int(x) for x in crc16_ccitt(long)] == [crc_reference(r.tobytes()) for r in long]
    many = rng.integers(0, 256, (700, 9), dtype=np.uint8)  # several row blocks
    assert [int(x) for x in crc16_ccitt(many)] == [crc_reference(r.tobytes()) for r in many]
    assert crc16_ccitt(np.zeros((3, 0), np.uint8)).tolist() == [0xFFFF] * 3


def test_crc_of_packet_with_its_crc_is_zero_and_every_single_bit_flip_is_caught():
    p = build_packets(APID_ISGRI_HK, 5, [OBT0], [8], np.arange(384, dtype=np.uint8)[None, :])
    assert crc16_ccitt(p) == 0
    flips = np.repeat(p, PACKET_SIZE * 8, axis=0)
    bit = np.arange(PACKET_SIZE * 8)
    flips[bit, bit // 8] ^= (1 << (bit % 8)).astype(np.uint8)
    assert np.all(crc16_ccitt(flips) != 0)  # all 3216 single-bit errors detected


# --------------------------------------------------------------------------- headers

def test_header_bytes_by_hand():
    p = build_packets(APID_ISGRI_EVENTS, SEQ_MODULO + 3, [0x0102030405060708], [7], np.zeros((1, 384), np.uint8))[0]
    assert PACKET_SIZE == 402 and DATA_LENGTH == 395
    # 000 0 1 00101000000: version 0, telemetry, secondary header, APID 0x140
    assert p[:2].tobytes() == bytes([0x09, 0x40])
    assert p[2:4].tobytes() == bytes([0xC0, 0x03])  # standalone, count 16387 mod 16384 = 3
    assert p[4:6].tobytes() == bytes([0x01, 0x8B])  # 395
    assert p[6:14].tobytes() == bytes(range(1, 9))  # OBT big-endian
    assert p[14:16].tobytes() == bytes([0, 7])
    assert int.from_bytes(p[400:402].tobytes(), "big") == crc_reference(p[:400].tobytes())
    h = parse_headers(p[None, :])
    assert (h.version[0], h.type[0], h.sec_flag[0], h.apid[0], h.seq_flags[0], h.seq[0], h.length[0], int(h.obt[0]),
            h.items[0], bool(h.crc_ok[0])) == (0, 0, 1, 0x140, 3, 3, 395, 0x0102030405060708, 7, True)
    assert list(check_headers(h)) == [None]


def _recrc(p):
    p = p.copy()
    c = crc16_ccitt(p[:, :400])
    p[:, 400], p[:, 401] = c >> 8, c & 0xFF
    return p


@pytest.mark.parametrize("byte,value,reason", [
    (0, 0x0D, "unknown APID 0x540"),                 # APID bits changed, CRC recomputed
    (0, 0x29, "not a telemetry packet"),             # version 1
    (2, 0x40, "sequence flags 0b01"),                # first segment of a segmented packet
    (5, 0x8C, "packet data length 396"),
    (15, 65, "item count 65 outside 1..64"),
])
def test_valid_crc_but_wrong_header_is_rejected_with_its_reason(byte, value, reason):
    p = build_packets(APID_ISGRI_EVENTS, 0, [OBT0], [1], np.zeros((1, 384), np.uint8))
    p[0, byte] = value
    r = check_headers(parse_headers(_recrc(p)))[0]
    assert r is not None and reason in r
    p2 = build_packets(APID_ISGRI_EVENTS, 0, [OBT0], [1], np.zeros((1, 384), np.uint8))
    p2[0, byte] = value  # not re-CRC'ed: the CRC verdict comes first
    assert check_headers(parse_headers(p2))[0] == "CRC mismatch"


def test_split_packets_counts_trailing_bytes():
    p = build_packets(APID_ISGRI_HK, 0, [1, 2, 3], [8] * 3, np.zeros((3, 384), np.uint8))
    whole, tail = split_packets(p.tobytes()[:-10])
    assert whole.shape == (2, PACKET_SIZE) and tail == PACKET_SIZE - 10
    assert np.array_equal(whole, p[:2])


# --------------------------------------------------------------------------- ISGRI events

def test_event_word_bits_by_hand():
    ev = {"OB_TIME": np.array([OBT0, OBT0 + 3 * 64]), "ISGRI_Z": np.array([1, 127]), "ISGRI_Y": np.array([2, 0]),
          "ISGRI_PHA": np.array([3, 4095]), "RISE_TIME": np.array([4, 255])}
    obt, items, pl = encode_event_payloads(ev)
    assert list(obt) == [OBT0] and list(items) == [2]
    # word = dt<<34 | z<<27 | y<<20 | pha<<8 | rt
    w0 = (0 << 34) | (1 << 27) | (2 << 20) | (3 << 8) | 4
    w1 = (3 << 34) | (127 << 27) | (0 << 20) | (4095 << 8) | 255
    assert pl[0, :6].tobytes() == w0.to_bytes(6, "big")
    assert pl[0, 6:12].tobytes() == w1.to_bytes(6, "big")
    assert not pl[0, 12:].any()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 700), st.integers(0, 2**40), st.integers(0, 2**32 - 1), st.floats(0.01, 5.0))
def test_events_round_trip_exactly(n, start, seed, seconds):
    rng = np.random.default_rng(seed)
    obt0 = start * 64 + int(rng.integers(64))  # any OBT phase: only offsets must be multiples of 64
    ev = make_events(n, rng, obt0, seconds)
    obt, items, pl = encode_event_payloads(ev)
    assert items.sum() == n and np.all(items <= EVENTS_PER_PACKET) and np.all(np.diff(obt) > 0)
    p = build_packets(APID_ISGRI_EVENTS, 0, obt, items, pl)
    h = parse_headers(p)
    assert all(r is None for r in check_event_payloads(p, h.items))
    out = decode_event_payloads(p, h.obt.astype(np.int64), h.items)
    for k, v in ev.items():
        assert np.array_equal(out[k], v), k
    assert {k: out[k].dtype for k in out} == {"OB_TIME": np.int64, "ISGRI_PHA": np.int16, "RISE_TIME": np.int16,
                                              "ISGRI_Y": np.uint8, "ISGRI_Z": np.uint8}


def test_packets_never_cross_a_one_second_frame_and_hold_at_most_64():
    rng = np.random.default_rng(2)
    ev = make_events(20000, rng, seconds=7.3)
    obt, items, pl = encode_event_payloads(ev)
    start = np.r_[0, np.cumsum(items)[:-1]]
    last = ev["OB_TIME"][start + items - 1]
    assert np.all(obt // FRAME_TICKS == last // FRAME_TICKS)
    assert items.max() == 64
    # 20000 events in 8 frames (7.3 s from an arbitrary phase): ceil per frame
    frames = ev["OB_TIME"] // FRAME_TICKS
    expect = sum(-(-c // 64) for c in np.unique(frames, return_counts=True)[1])
    assert len(items) == expect


@pytest.mark.parametrize("column,value,message", [
    ("ISGRI_PHA", 4096, "ISGRI_PHA value 4096 does not fit its 12-bit field"),
    ("ISGRI_PHA", -1, "ISGRI_PHA value -1"),
    ("ISGRI_Y", 128, "ISGRI_Y value 128 does not fit its 7-bit field"),
    ("RISE_TIME", 256, "RISE_TIME value 256 does not fit its 8-bit field"),
])
def test_values_that_do_not_fit_are_refused(column, value, message):
    ev = make_events(5, np.random.default_rng(0))
    ev[column] = ev[column].astype(np.int64)
    ev[column][3] = value
    with pytest.raises(PacketError, match=message):
        encode_event_payloads(ev)


def test_time_errors_are_refused():
    ev = make_events(5, np.random.default_rng(0))
    ev["OB_TIME"] = OBT0 + np.array([0, 64, 128, 192, 256])  # one packet (OBT0 starts a 1 s frame)
    bad = dict(ev, OB_TIME=ev["OB_TIME"] + np.array([0, 0, 0, 0, 1]))
    with pytest.raises(PacketError, match="not a multiple of 64 ticks"):
        encode_event_payloads(bad)
    with pytest.raises(PacketError, match="must not decrease"):
        encode_event_payloads(dict(ev, OB_TIME=ev["OB_TIME"][::-1].copy()))
    same = {k: np.repeat(v[:1], 65) for k, v in ev.items()}
    with pytest.raises(PacketError, match="more than 64 events at OB_TIME"):
        encode_event_payloads(same)
    same64 = {k: np.r_[np.repeat(v[:1], 64), v[1:2]] for k, v in ev.items()}
    assert encode_event_payloads(same64)[1].tolist() == [64, 1]
    with pytest.raises(PacketError, match="lack column ISGRI_Z"):
        encode_event_payloads({k: v for k, v in ev.items() if k != "ISGRI_Z"})


def test_malformed_event_payloads_are_flagged():
    ev = make_events(10, np.random.default_rng(4), seconds=0.5)
    obt, items, pl = encode_event_payloads(ev)
    pad = pl.copy()
    pad[0, 10 * 6 + 3] = 1  # a byte in the unused slot 10
    back = pl.copy()
    back[0, 0] = 0xFF  # first event's time offset now larger than the second's
    p = build_packets(APID_ISGRI_EVENTS, 0, np.r_[obt, obt, obt], np.r_[items, items, items], np.r_[pl, pad, back])
    r = check_event_payloads(p, parse_headers(p).items)
    assert r[0] is None
    assert "non-zero bytes after the 10 events" in r[1]
    assert "decrease" in r[2]


# --------------------------------------------------------------------------- HK

def test_hk_round_trip_counters_exact_analog_within_half_a_step():
    rng = np.random.default_rng(3)
    hk = make_hk(50, rng)
    hk["CYCLE_LEN"][-1] = np.float32(3.734)
    obt, items, pl = encode_hk_payloads(hk)
    p = build_packets(APID_ISGRI_HK, 0, obt, items, pl)
    assert all(r is None for r in check_hk_payloads(p))
    out = decode_hk_payloads(p, parse_headers(p).obt.astype(np.int64))
    for k in ("OB_TIME", "TRIG_CNT", "VETO_CNT", "VETO_STB"):
        assert np.array_equal(out[k], hk[k]) and out[k].dtype == hk[k].dtype
    assert np.max(np.abs(out["MDU_TEMP"] - hk["MDU_TEMP"])) <= 0.001 + 1e-6  # step 2 mK
    assert np.max(np.abs(out["BIAS_V"] - hk["BIAS_V"])) <= 0.0025 + 1e-5     # step 5 mV
    assert np.max(np.abs(out["CYCLE_LEN"] - hk["CYCLE_LEN"])) <= 2**-21 + 1e-6  # half an OBT tick
    assert out["MDU_TEMP"].dtype == np.float32 and out["MDU_TEMP"].shape == (50, 8)


def test_hk_adc_scales():
    assert hk_from_raw("MDU_TEMP", [0, 30000, 65535]).tolist() == pytest.approx([-60.0, 0.0, 71.07], abs=1e-4)
    assert hk_from_raw("BIAS_V", [0, 20000]).tolist() == pytest.approx([0.0, -100.0])
    assert HK_ADC["MDU_TEMP"][2] == "degC"
    hk = make_hk(2, np.random.default_rng(0))
    hk["MDU_TEMP"][1, 3] = 80.0
    with pytest.raises(PacketError, match="MDU_TEMP = 80.0 degC outside the ADC range -60..71.07"):
        encode_hk_payloads(hk)
    hk = make_hk(2, np.random.default_rng(0))
    hk["VETO_CNT"] = hk["VETO_CNT"].astype(np.int64)
    hk["VETO_CNT"][0, 0] = 2**31
    with pytest.raises(PacketError, match="VETO_CNT value 2147483648 outside"):
        encode_hk_payloads(hk)
    hk = make_hk(2, np.random.default_rng(0))
    hk["OB_TIME"] = hk["OB_TIME"][::-1].copy()
    with pytest.raises(PacketError, match="strictly increasing"):
        encode_hk_payloads(hk)


def test_hk_payload_checks():
    obt, items, pl = encode_hk_payloads(make_hk(3, np.random.default_rng(0)))
    pl = pl.copy()
    pl[1, 4 + 4] = 0x80  # TRIG_CNT of module 0: top bit set
    pl[2, 383] = 1       # spare byte
    r = check_hk_payloads(build_packets(APID_ISGRI_HK, 0, obt, items, pl))
    assert r[0] is None and "TRIG_CNT beyond" in r[1] and "spare" in r[2]


# --------------------------------------------------------------------------- ScW marks

def test_marks_round_trip_and_validation():
    m = ScwMark(MARK_END, "066500230010", OBT0, OBT0 + 2000 * FRAME_TICKS,
                (ApidCounts(APID_ISGRI_EVENTS, 16380, 27, 28032), ApidCounts(APID_ISGRI_HK, 5, None, 0)))
    obt, items, pl = encode_mark(m)
    p = build_packets(APID_SCW, 0, [obt], [items], pl[None, :])
    assert check_headers(parse_headers(p))[0] is None
    assert decode_mark(p[0], obt, items) == m
    assert m.count(APID_ISGRI_HK).last is None and m.count(0x7FF) is None
    with pytest.raises(PacketError, match="sent at OBT"):
        decode_mark(p[0], obt + 1, items)
    with pytest.raises(PacketError, match="12 ASCII digits"):
        ScwMark(MARK_START, "0665002300100", 0, 1)
    with pytest.raises(PacketError, match="empty or invalid"):
        ScwMark(MARK_START, "066500230010", 5, 5)
    with pytest.raises(PacketError, match="neither START"):
        ScwMark(3, "066500230010", 0, 1)
    with pytest.raises(PacketError, match="first = 16384"):
        encode_mark(ScwMark(MARK_START, "066500230010", 0, 1, (ApidCounts(APID_ISGRI_HK, 16384),)))


# --------------------------------------------------------------------------- one ScW

def test_encode_scw_orders_by_obt_and_continues_counters():
    rng = np.random.default_rng(5)
    ev, hk = make_events(3000, rng, seconds=20.0), make_hk(3, rng)
    end = OBT0 + 24 * FRAME_TICKS
    counters = {APID_ISGRI_EVENTS: SEQ_MODULO - 10, APID_ISGRI_HK: 7, APID_SCW: 40}
    p, new = encode_scw("066500230010", OBT0, end, ev, hk, counters)
    h = parse_headers(p)
    n_ev = int(np.sum(h.apid == APID_ISGRI_EVENTS))
    assert list(h.apid[[0, -1]]) == [APID_SCW, APID_SCW]
    assert np.all(np.diff(h.obt.astype(np.int64)) >= 0)
    assert new == {APID_ISGRI_EVENTS: SEQ_MODULO - 10 + n_ev, APID_ISGRI_HK: 10, APID_SCW: 42}
    ev_seq = h.seq[h.apid == APID_ISGRI_EVENTS]
    assert ev_seq[0] == SEQ_MODULO - 10 and ev_seq[10] == 0  # the 14-bit count wrapped
    start = decode_mark(p[0], int(h.obt[0]), int(h.items[0]))
    endm = decode_mark(p[-1], int(h.obt[-1]), int(h.items[-1]))
    assert (start.kind, endm.kind) == (MARK_START, MARK_END)
    c = endm.count(APID_ISGRI_EVENTS)
    assert (c.first, c.last, c.n) == (SEQ_MODULO - 10, (SEQ_MODULO - 10 + n_ev - 1) % SEQ_MODULO, n_ev)
    assert endm.count(APID_ISGRI_HK) == ApidCounts(APID_ISGRI_HK, 7, 9, 3)
    assert start.count(APID_ISGRI_HK) == ApidCounts(APID_ISGRI_HK, 7, None, None)
    with pytest.raises(PacketError, match="outside the ScW's"):
        encode_scw("066500230010", OBT0, OBT0 + 10 * FRAME_TICKS, ev, hk)
