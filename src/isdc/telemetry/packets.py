"""CCSDS-style telemetry source packets of the simulated INTEGRAL/ISGRI: layout and codecs.

Pure and vectorised (numpy bytes <-> arrays, no files). The byte-by-byte layout is in
docs/telemetry.md; in short every packet is `PACKET_SIZE` = 402 bytes, big-endian:

====== ===== ==============================================================
offset bytes field
====== ===== ==============================================================
0      2     version 0 (3 bits), type 0 = telemetry (1), secondary header 1 (1), APID (11)
2      2     sequence flags 0b11 = standalone (2 bits), source sequence count (14)
4      2     packet data length = bytes after the primary header - 1 = 395
6      8     OBT of the packet, ticks of 2**-20 s (unsigned, top bit 0)
14     2     item count: events (event packets), modules (HK), APID entries (ScW marks)
16     384   payload (by APID, below); unused bytes are zero
400    2     packet error control: CRC-16-CCITT (poly 0x1021, init 0xFFFF) of bytes 0..399
====== ===== ==============================================================

APIDs (`APID_NAMES`): `APID_SCW` ScW start/end marks, `APID_ISGRI_EVENTS` ISGRI event
words, `APID_ISGRI_HK` ISGRI housekeeping. The sequence count runs per APID modulo
16384 and continues from one science window to the next, as on board.

ISGRI event word, 48 bits (6 bytes), 64 per packet, most significant bit first: time
offset from the packet OBT in units of 64 ticks = 2**-14 s = 61.035 µs (14 bits), ISGRI_Z
(7), ISGRI_Y (7), ISGRI_PHA (12), RISE_TIME raw (8). The packet OBT is the OB_TIME of its
first event; a packet never spans a boundary of the 1 s OBT frames (2**20 ticks), which
bounds the offset to 14 bits. Packet OBTs of one APID therefore increase strictly, which
the reassembly uses to order packets whatever their arrival order.

ISGRI HK payload: CYCLE_LEN (uint32 ticks) then per module 0..7 (16 bytes each) the raw
16-bit ADC words of MDU_TEMP and BIAS_V and the 32-bit counters TRIG_CNT, VETO_CNT,
VETO_STB. `HK_ADC` gives the conversion to physical units (the ScWG2 step "HK converted
to physical units").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

__all__ = [
    "PacketError",
    "PACKET_SIZE",
    "PRIMARY_HEADER_SIZE",
    "HEADER_SIZE",
    "PAYLOAD_SIZE",
    "DATA_LENGTH",
    "SEQ_MODULO",
    "APID_SCW",
    "APID_ISGRI_EVENTS",
    "APID_ISGRI_HK",
    "APID_NAMES",
    "DATA_APIDS",
    "EVENTS_PER_PACKET",
    "EVENT_BYTES",
    "EVENT_TICKS",
    "FRAME_TICKS",
    "EVENT_FIELDS",
    "HK_MODULES",
    "HK_ADC",
    "HK_COUNTERS",
    "MARK_START",
    "MARK_END",
    "UNKNOWN_SEQ",
    "UNKNOWN_COUNT",
    "crc16_ccitt",
    "build_packets",
    "split_packets",
    "PacketHeaders",
    "parse_headers",
    "check_headers",
    "encode_event_payloads",
    "decode_event_payloads",
    "check_event_payloads",
    "hk_to_raw",
    "hk_from_raw",
    "encode_hk_payloads",
    "decode_hk_payloads",
    "check_hk_payloads",
    "ApidCounts",
    "ScwMark",
    "encode_mark",
    "decode_mark",
    "encode_scw",
]


class PacketError(ValueError):
    """Data that cannot be put into packets, or bytes that are not valid packets."""


# --------------------------------------------------------------------------- layout constants

PRIMARY_HEADER_SIZE = 6
"""CCSDS primary header: packet identification, sequence control, data length."""
SECONDARY_HEADER_SIZE = 10
"""OBT (8 bytes) + item count (2 bytes)."""
HEADER_SIZE = PRIMARY_HEADER_SIZE + SECONDARY_HEADER_SIZE
PAYLOAD_SIZE = 384
CRC_SIZE = 2
PACKET_SIZE = HEADER_SIZE + PAYLOAD_SIZE + CRC_SIZE
"""Every packet, of every APID, has this length (402 bytes): a byte stream cuts into packets
without reading their headers, and a damaged length field cannot desynchronise it."""
DATA_LENGTH = PACKET_SIZE - PRIMARY_HEADER_SIZE - 1
"""CCSDS packet data length field: octets after the primary header minus one (395)."""
SEQ_MODULO = 1 << 14
"""The 14-bit source sequence count wraps here."""

APID_SCW = 0x010
APID_ISGRI_EVENTS = 0x140
APID_ISGRI_HK = 0x141
APID_NAMES = {APID_SCW: "SCW-MARK", APID_ISGRI_EVENTS: "ISGR-EVTS", APID_ISGRI_HK: "ISGR-HK"}
"""Our APIDs (not INTEGRAL's real ones, which are not public in a citable form)."""
DATA_APIDS = (APID_ISGRI_EVENTS, APID_ISGRI_HK)
"""APIDs whose packets belong to a science window (counted in its START/END marks)."""

_WORD0 = (0 << 13) | (0 << 12) | (1 << 11)  # version 0, telemetry, secondary header present
_SEQ_FLAGS = 0b11 << 14  # standalone packet (not segmented)

EVENT_BYTES = 6
EVENTS_PER_PACKET = PAYLOAD_SIZE // EVENT_BYTES  # 64
EVENT_TICKS = 64
"""ISGRI time resolution in OBT ticks (2**-14 s = 61.035 µs): the unit of the time offset."""
FRAME_TICKS = 1 << 20
"""Packets never cross an OBT frame boundary of 2**20 ticks (1 s)."""
EVENT_FIELDS = (  # (column, bit shift, bits) in the 48-bit event word; ISGR-EVTS-ALL names
    ("DT", 34, 14),
    ("ISGRI_Z", 27, 7),
    ("ISGRI_Y", 20, 7),
    ("ISGRI_PHA", 8, 12),
    ("RISE_TIME", 0, 8),
)
_EVENT_DTYPES = {"ISGRI_Z": np.uint8, "ISGRI_Y": np.uint8, "ISGRI_PHA": np.int16, "RISE_TIME": np.int16}

HK_MODULES = 8
HK_ADC = {  # column: (physical value of raw 0, physical units per raw step, unit); 16-bit words
    "MDU_TEMP": (-60.0, 0.002, "degC"),    # -60 .. +71.07 degC in 2 mK steps
    "BIAS_V": (0.0, -0.005, "V"),          # 0 .. -327.675 V in 5 mV steps
}
HK_COUNTERS = ("TRIG_CNT", "VETO_CNT", "VETO_STB")
"""32-bit counters per module (values 0 .. 2**31-1: the CNV columns are 8J)."""
_HK_MODULE_DTYPE = np.dtype([("MDU_TEMP", ">u2"), ("BIAS_V", ">u2"), ("TRIG_CNT", ">u4"), ("VETO_CNT", ">u4"),
                             ("VETO_STB", ">u4")])
_HK_DTYPE = np.dtype([("CYCLE_LEN", ">u4"), ("modules", _HK_MODULE_DTYPE, (HK_MODULES,)),
                      ("spare", "u1", (PAYLOAD_SIZE - 4 - HK_MODULES * _HK_MODULE_DTYPE.itemsize,))])
assert _HK_DTYPE.itemsize == PAYLOAD_SIZE

MARK_START, MARK_END = 1, 2
UNKNOWN_SEQ = 0xFFFF
UNKNOWN_COUNT = 0xFFFFFFFF
_MARK_HEAD = np.dtype([("kind", "u1"), ("spare", "u1"), ("swid", "S12"), ("obt_start", ">u8"), ("obt_end", ">u8")])
_MARK_ENTRY = np.dtype([("apid", ">u2"), ("first", ">u2"), ("last", ">u2"), ("n", ">u4")])
_MARK_MAX_ENTRIES = (PAYLOAD_SIZE - _MARK_HEAD.itemsize) // _MARK_ENTRY.itemsize

_MAX_ITEMS = {APID_ISGRI_EVENTS: EVENTS_PER_PACKET, APID_ISGRI_HK: HK_MODULES, APID_SCW: _MARK_MAX_ENTRIES}
_MIN_ITEMS = {APID_ISGRI_EVENTS: 1, APID_ISGRI_HK: HK_MODULES, APID_SCW: 0}

# --------------------------------------------------------------------------- CRC-16-CCITT

def _crc_tables() -> tuple[np.ndarray, np.ndarray]:
    t8 = np.zeros(256, dtype=np.uint32)
    for b in range(256):
        c = b << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
        t8[b] = c & 0xFFFF
    # Two bytes at a time: the register is 16 bits wide, so after xoring in a 16-bit word the
    # whole register is shifted out; t16[x] is the register after feeding two zero bytes from x.
    x = np.arange(65536, dtype=np.uint32)
    for _ in range(2):
        x = ((x << 8) & 0xFFFF) ^ t8[x >> 8]
    return t8.astype(np.uint16), x.astype(np.uint16)


_CRC8, _CRC16 = _crc_tables()
_POSITIONAL_MAX = 4096  # longest row length with a positional table (length x 256 x 2 bytes)
_ROWS = 256  # rows per step of the positional CRC: the (rows, length) gather stays in the CPU cache


@lru_cache(maxsize=16)
def _positional_table(m: int) -> tuple[np.ndarray, int]:
    """CRC contribution of every byte value at every position of an m-byte message.

    The CRC register update is linear over GF(2), so crc(init, msg) = crc(init, zeros) xor
    XOR_k crc(0, msg[k] at position k): table[k, v] is the latter (as flat indices k * 256 + v),
    the int the former.
    """
    t8 = _CRC8.astype(np.uint32)
    table = np.empty((m, 256), dtype=np.uint16)
    c = t8.copy()  # byte v last: one step from a zero register
    for k in range(m - 1, -1, -1):
        table[k] = c
        c = ((c << 8) & 0xFFFF) ^ t8[c >> 8]  # one more zero byte after it
    init = 0xFFFF
    for _ in range(m):
        init = ((init << 8) & 0xFFFF) ^ int(t8[init >> 8])
    return table.ravel(), init


def crc16_ccitt(data) -> int | np.ndarray:
    """CRC-16-CCITT (polynomial 0x1021, initial value 0xFFFF, not reflected, no final xor).

    The ECSS/CCSDS packet error control ("CRC-16/CCITT-FALSE": b'123456789' -> 0x29B1).
    `data` bytes give an int; a uint8 array of shape (n, m) gives (n,) uint16, one CRC per
    row, for all rows at once: rows up to 4096 bytes by a gather from a per-position table
    and one XOR reduction (as fast for one packet as per packet for thousands: the chunks
    of an inbox hold tens of packets), longer rows two bytes per step.
    Appending the CRC big-endian makes the CRC of the whole zero.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        return int(crc16_ccitt(np.frombuffer(bytes(data), dtype=np.uint8)[None, :])[0])
    a = np.asarray(data)
    if a.dtype != np.uint8 or a.ndim != 2:
        raise PacketError(f"crc16_ccitt needs bytes or a 2-D uint8 array, got {a.dtype} of shape {a.shape}")
    n, m = a.shape
    if m == 0:
        return np.full(n, 0xFFFF, dtype=np.uint16)
    if m <= _POSITIONAL_MAX:
        table, init = _positional_table(m)
        offset = np.arange(m, dtype=np.intp) * 256
        out = np.empty(n, dtype=np.uint16)
        for i in range(0, n, _ROWS):
            out[i:i + _ROWS] = np.bitwise_xor.reduce(table[a[i:i + _ROWS] + offset], axis=1)
        return out ^ np.uint16(init)
    crc = np.full(n, 0xFFFF, dtype=np.uint16)
    if m % 2:
        crc = (crc << 8) ^ _CRC8[(crc >> 8) ^ a[:, 0]]
        a = a[:, 1:]
    # Column-major 16-bit words so that each step reads one contiguous row.
    words = np.ascontiguousarray(a).view(">u2").astype(np.uint16).T.copy()
    for w in words:
        crc = _CRC16[crc ^ w]
    return crc


# --------------------------------------------------------------------------- packets

def build_packets(apid: int, seq0: int, obt, items, payload) -> np.ndarray:
    """Packets of one APID: headers, payloads and CRCs, shape (n, PACKET_SIZE) uint8.

    apid : 0..2047.  seq0 : the packet count of the first packet (any int >= 0; written
    modulo 16384, then incremented by one per packet).  obt : (n,) OBT ticks.
    items : (n,) item counts.  payload : (n, PAYLOAD_SIZE) uint8.
    """
    if not 0 <= apid < 2048:
        raise PacketError(f"APID {apid} does not fit 11 bits")
    obt = np.asarray(obt, dtype=np.int64)
    n = obt.size
    payload = np.asarray(payload, dtype=np.uint8)
    if payload.shape != (n, PAYLOAD_SIZE):
        raise PacketError(f"payload must have shape ({n}, {PAYLOAD_SIZE}), got {payload.shape}")
    if n and obt.min() < 0:
        raise PacketError("OBT must not be negative")
    head = np.zeros(n, dtype=[("id", ">u2"), ("seq", ">u2"), ("len", ">u2"), ("obt", ">u8"), ("items", ">u2")])
    head["id"] = _WORD0 | apid
    head["seq"] = _SEQ_FLAGS | ((int(seq0) + np.arange(n)) % SEQ_MODULO)
    head["len"] = DATA_LENGTH
    head["obt"] = obt
    head["items"] = items
    out = np.empty((n, PACKET_SIZE), dtype=np.uint8)
    out[:, :HEADER_SIZE] = head.view(np.uint8).reshape(n, HEADER_SIZE)
    out[:, HEADER_SIZE:HEADER_SIZE + PAYLOAD_SIZE] = payload
    crc = crc16_ccitt(out[:, :PACKET_SIZE - CRC_SIZE])
    out[:, -2] = crc >> 8
    out[:, -1] = crc & 0xFF
    return out


def split_packets(data) -> tuple[np.ndarray, int]:
    """Cut a byte stream into packets: ((n, PACKET_SIZE) uint8 view, number of trailing bytes)."""
    a = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) \
        else np.asarray(data, dtype=np.uint8).ravel()
    n = a.size // PACKET_SIZE
    return a[:n * PACKET_SIZE].reshape(n, PACKET_SIZE), int(a.size - n * PACKET_SIZE)


@dataclass(frozen=True)
class PacketHeaders:
    """The header fields of n packets (arrays of shape (n,)), as written: nothing checked."""

    version: np.ndarray
    type: np.ndarray
    sec_flag: np.ndarray
    apid: np.ndarray
    seq_flags: np.ndarray
    seq: np.ndarray
    length: np.ndarray
    obt: np.ndarray
    items: np.ndarray
    crc_ok: np.ndarray
    """CRC of the whole packet (including its stored CRC) is zero."""


def parse_headers(packets) -> PacketHeaders:
    """Header fields and CRC verdict of packets (n, PACKET_SIZE) uint8."""
    p = np.asarray(packets, dtype=np.uint8)
    if p.ndim != 2 or p.shape[1] != PACKET_SIZE:
        raise PacketError(f"packets must have shape (n, {PACKET_SIZE}), got {p.shape}")
    h = np.ascontiguousarray(p[:, :HEADER_SIZE]).view(
        [("id", ">u2"), ("seq", ">u2"), ("len", ">u2"), ("obt", ">u8"), ("items", ">u2")]).ravel()
    w0 = h["id"].astype(np.int64)
    w1 = h["seq"].astype(np.int64)
    return PacketHeaders(
        version=w0 >> 13, type=(w0 >> 12) & 1, sec_flag=(w0 >> 11) & 1, apid=w0 & 0x7FF,
        seq_flags=w1 >> 14, seq=w1 & (SEQ_MODULO - 1), length=h["len"].astype(np.int64),
        obt=h["obt"].astype(np.uint64), items=h["items"].astype(np.int64),
        crc_ok=crc16_ccitt(p) == 0,
    )


def check_headers(h: PacketHeaders) -> np.ndarray:
    """(n,) object array: None for a packet whose CRC and header are valid, else the reason."""
    reason = np.full(h.apid.shape, None, dtype=object)
    known = np.isin(h.apid, list(APID_NAMES))
    max_items = np.zeros(h.apid.shape, dtype=np.int64)
    min_items = np.zeros(h.apid.shape, dtype=np.int64)
    for apid in APID_NAMES:
        max_items[h.apid == apid] = _MAX_ITEMS[apid]
        min_items[h.apid == apid] = _MIN_ITEMS[apid]
    tests = (  # later tests take precedence: the CRC verdict is the one reported when it fails
        ((h.items < min_items) | (h.items > max_items), lambda i: f"item count {h.items[i]} outside "
                                                                 f"{min_items[i]}..{max_items[i]} for APID {h.apid[i]:#x}"),
        (h.obt >= np.uint64(1 << 63), lambda i: "OBT beyond 2**63 ticks"),
        (~known, lambda i: f"unknown APID {h.apid[i]:#05x}"),
        (h.length != DATA_LENGTH, lambda i: f"packet data length {h.length[i]}, expected {DATA_LENGTH}"),
        (h.seq_flags != 0b11, lambda i: f"sequence flags {h.seq_flags[i]:#04b}, expected 0b11 (standalone)"),
        ((h.version != 0) | (h.type != 0) | (h.sec_flag != 1),
         lambda i: f"not a telemetry packet with secondary header (version {h.version[i]}, type {h.type[i]}, "
                   f"secondary header flag {h.sec_flag[i]})"),
        (~h.crc_ok, lambda i: "CRC mismatch"),
    )
    for bad, why in tests:
        for i in np.flatnonzero(bad):
            reason[i] = why(i)
    return reason


def _payloads(packets: np.ndarray) -> np.ndarray:
    return np.asarray(packets, dtype=np.uint8)[:, HEADER_SIZE:HEADER_SIZE + PAYLOAD_SIZE]


# --------------------------------------------------------------------------- ISGRI events

def _column(events: dict, name: str, n: int | None) -> np.ndarray:
    if name not in events:
        raise PacketError(f"events lack column {name}")
    v = np.asarray(events[name])
    if v.ndim != 1 or (n is not None and v.size != n):
        raise PacketError(f"event column {name} must be 1-D of length {n}, got shape {v.shape}")
    if v.dtype.kind not in "iu":
        raise PacketError(f"event column {name} must be integer, got {v.dtype}")
    return v


def encode_event_payloads(events: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ISGRI events -> (packet OBT (m,) int64, item counts (m,), payloads (m, PAYLOAD_SIZE) uint8).

    events : ISGR-EVTS-ALL columns OB_TIME (ticks, non-decreasing), ISGRI_Z, ISGRI_Y
    (0..127), ISGRI_PHA (0..4095), RISE_TIME (raw, 0..255); other columns are ignored.
    Events are cut into packets of at most 64 inside each 1 s OBT frame; a packet's OBT
    is its first event's. Raises PacketError for a value that does not fit its field, an
    OB_TIME not on the 64-tick grid of its packet's first event, OB_TIME out of order, or
    more than 64 events in one tick (which would make two packets share one OBT).
    """
    obt = _column(events, "OB_TIME", None).astype(np.int64)
    n = obt.size
    cols = {name: _column(events, name, n) for name, _, _ in EVENT_FIELDS[1:]}
    for name, _, bits in EVENT_FIELDS[1:]:
        v = cols[name]
        if n and (v.min() < 0 or v.max() >= (1 << bits)):
            bad = v[(v < 0) | (v >= (1 << bits))]
            raise PacketError(f"{name} value {int(bad[0])} does not fit its {bits}-bit field "
                              f"(0..{(1 << bits) - 1}); {bad.size} event(s)")
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, PAYLOAD_SIZE), np.uint8)
    if obt[0] < 0:
        raise PacketError(f"OB_TIME {int(obt[0])} is negative")
    step = np.diff(obt)
    if np.any(step < 0):
        i = int(np.flatnonzero(step < 0)[0])
        raise PacketError(f"OB_TIME must not decrease: event {i + 1} ({int(obt[i + 1])}) precedes event {i} "
                          f"({int(obt[i])})")
    # Packets: runs of one 1 s frame, cut every EVENTS_PER_PACKET events.
    frame = obt // FRAME_TICKS
    run_start = np.flatnonzero(np.r_[True, frame[1:] != frame[:-1]])
    run_len = np.diff(np.r_[run_start, n])
    run = np.repeat(np.arange(run_start.size), run_len)
    pos = np.arange(n) - run_start[run]
    pk_per_run = -(-run_len // EVENTS_PER_PACKET)
    pk = np.r_[0, np.cumsum(pk_per_run)[:-1]][run] + pos // EVENTS_PER_PACKET
    slot = pos % EVENTS_PER_PACKET
    m = int(pk_per_run.sum())
    first = np.flatnonzero(slot == 0)
    pk_obt = obt[first]
    if m > 1 and np.any(np.diff(pk_obt) <= 0):
        i = int(np.flatnonzero(np.diff(pk_obt) <= 0)[0])
        raise PacketError(f"more than {EVENTS_PER_PACKET} events at OB_TIME {int(pk_obt[i])}: packets of one APID "
                          "need strictly increasing OBTs")
    dt = obt - pk_obt[pk]
    if np.any(dt % EVENT_TICKS):
        i = int(np.flatnonzero(dt % EVENT_TICKS)[0])
        raise PacketError(f"OB_TIME {int(obt[i])} is not a multiple of {EVENT_TICKS} ticks (ISGRI's 61.035 µs) "
                          f"after its packet's first event {int(pk_obt[pk[i]])}")
    word = (dt // EVENT_TICKS).astype(np.uint64) << np.uint64(EVENT_FIELDS[0][1])
    for name, shift, _ in EVENT_FIELDS[1:]:
        word |= cols[name].astype(np.uint64) << np.uint64(shift)
    words = np.zeros(m * EVENTS_PER_PACKET, dtype=">u8")
    words[pk * EVENTS_PER_PACKET + slot] = word
    payload = words.view(np.uint8).reshape(-1, 8)[:, 8 - EVENT_BYTES:].reshape(m, PAYLOAD_SIZE)
    return pk_obt, np.bincount(pk, minlength=m).astype(np.int64), payload


def _event_words(packets: np.ndarray) -> np.ndarray:
    """(m, 64) uint64 event words of event packets (m, PACKET_SIZE)."""
    m = packets.shape[0]
    b = np.zeros((m * EVENTS_PER_PACKET, 8), dtype=np.uint8)
    b[:, 8 - EVENT_BYTES:] = _payloads(packets).reshape(-1, EVENT_BYTES)
    return b.view(">u8").reshape(m, EVENTS_PER_PACKET).astype(np.uint64)


def check_event_payloads(packets, items) -> np.ndarray:
    """(m,) object array: None for a well-formed event payload, else the reason.

    Unused slots must be zero and time offsets must not decrease inside a packet.
    """
    packets = np.asarray(packets, dtype=np.uint8)
    words = _event_words(packets)
    items = np.asarray(items, dtype=np.int64)
    used = np.arange(EVENTS_PER_PACKET)[None, :] < items[:, None]
    reason = np.full(items.shape, None, dtype=object)
    dt = (words >> np.uint64(EVENT_FIELDS[0][1])).astype(np.int64)
    back = np.any((np.diff(dt, axis=1) < 0) & used[:, 1:], axis=1)
    for i in np.flatnonzero(back):
        reason[i] = "event time offsets decrease inside the packet"
    for i in np.flatnonzero(np.any((words != 0) & ~used, axis=1)):
        reason[i] = f"non-zero bytes after the {items[i]} events the header announces"
    return reason


def decode_event_payloads(packets, obt, items) -> dict[str, np.ndarray]:
    """Event packets (m, PACKET_SIZE), their OBT (m,) and item counts (m,) -> ISGR-EVTS-ALL columns.

    Returns OB_TIME int64, ISGRI_PHA int16, RISE_TIME int16, ISGRI_Y uint8, ISGRI_Z uint8
    in packet order (the order given), events of each packet in their order.
    """
    packets = np.asarray(packets, dtype=np.uint8)
    items = np.asarray(items, dtype=np.int64)
    words = _event_words(packets)
    used = (np.arange(EVENTS_PER_PACKET)[None, :] < items[:, None]).ravel()
    w = words.ravel()[used]
    out = {"OB_TIME": np.repeat(np.asarray(obt, dtype=np.int64), items)}
    fields = {}
    for name, shift, bits in EVENT_FIELDS:
        fields[name] = (w >> np.uint64(shift)) & np.uint64((1 << bits) - 1)
    out["OB_TIME"] += fields.pop("DT").astype(np.int64) * EVENT_TICKS
    for name in ("ISGRI_PHA", "RISE_TIME", "ISGRI_Y", "ISGRI_Z"):
        out[name] = fields[name].astype(_EVENT_DTYPES[name])
    return out


# --------------------------------------------------------------------------- ISGRI housekeeping

def hk_to_raw(name: str, value) -> np.ndarray:
    """Physical HK value(s) -> raw 16-bit ADC words (nearest step); PacketError outside the ADC range."""
    zero, step, unit = HK_ADC[name]
    v = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise PacketError(f"{name}: NaN or infinite value cannot be digitised")
    raw = np.rint((v - zero) / step)
    bad = (raw < 0) | (raw > 0xFFFF)
    if np.any(bad):
        lo, hi = sorted((zero, zero + step * 0xFFFF))
        raise PacketError(f"{name} = {float(v[bad].ravel()[0])} {unit} outside the ADC range {lo:g}..{hi:g} {unit}")
    return raw.astype(np.uint16)


def hk_from_raw(name: str, raw) -> np.ndarray:
    """Raw 16-bit ADC words -> physical value(s) (float32, units of `HK_ADC`)."""
    zero, step, _ = HK_ADC[name]
    return (zero + step * np.asarray(raw, dtype=np.float64)).astype(np.float32)


def encode_hk_payloads(hk: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ISGR-HK..-CNV rows -> (packet OBT (n,), item counts (n,), payloads (n, PAYLOAD_SIZE)).

    hk : OB_TIME (n,) ticks, strictly increasing; CYCLE_LEN (n,) s (0 < CYCLE_LEN < 4096 s,
    sent in OBT ticks); MDU_TEMP, BIAS_V (n, 8) in degC and V (digitised with `HK_ADC`:
    the decoder gives them back to within half a step); TRIG_CNT, VETO_CNT, VETO_STB (n, 8)
    counts 0..2**31-1 (exact).
    """
    obt = _column(hk, "OB_TIME", None).astype(np.int64)
    n = obt.size
    if n and (obt[0] < 0 or np.any(np.diff(obt) <= 0)):
        raise PacketError("HK OB_TIME must be non-negative and strictly increasing (one row per cycle)")
    rec = np.zeros(n, dtype=_HK_DTYPE)
    cyc = np.asarray(hk["CYCLE_LEN"], dtype=np.float64) if "CYCLE_LEN" in hk else None
    if cyc is None or cyc.shape != (n,):
        raise PacketError(f"HK column CYCLE_LEN must have shape ({n},)")
    ticks = np.rint(cyc * FRAME_TICKS)
    if n and not (np.all(np.isfinite(ticks)) and ticks.min() > 0 and ticks.max() < 2**32):
        raise PacketError("HK CYCLE_LEN must be finite, > 0 and < 4096 s")
    rec["CYCLE_LEN"] = ticks
    for name in (*HK_ADC, *HK_COUNTERS):
        if name not in hk:
            raise PacketError(f"HK lacks column {name}")
        v = np.asarray(hk[name])
        if v.shape != (n, HK_MODULES):
            raise PacketError(f"HK column {name} must have shape ({n}, {HK_MODULES}), got {v.shape}")
        if name in HK_ADC:
            rec["modules"][name] = hk_to_raw(name, v)
        else:
            if v.dtype.kind not in "iu":
                raise PacketError(f"HK counter {name} must be integer, got {v.dtype}")
            if v.size and (v.min() < 0 or v.max() > 2**31 - 1):
                raise PacketError(f"HK counter {name} value {int(v.min() if v.min() < 0 else v.max())} "
                                  "outside 0..2**31-1")
            rec["modules"][name] = v
    return obt, np.full(n, HK_MODULES, dtype=np.int64), rec.view(np.uint8).reshape(n, PAYLOAD_SIZE)


def _hk_records(packets) -> np.ndarray:
    return np.ascontiguousarray(_payloads(packets)).view(_HK_DTYPE).ravel()


def check_hk_payloads(packets) -> np.ndarray:
    """(n,) object array: None for a well-formed HK payload, else the reason."""
    rec = _hk_records(np.asarray(packets, dtype=np.uint8))
    reason = np.full(rec.shape, None, dtype=object)
    for name in HK_COUNTERS:
        for i in np.flatnonzero(np.any(rec["modules"][name] > 2**31 - 1, axis=1)):
            reason[i] = f"HK counter {name} beyond 2**31-1"
    for i in np.flatnonzero(rec["CYCLE_LEN"] == 0):
        reason[i] = "HK cycle length 0"
    for i in np.flatnonzero(np.any(rec["spare"] != 0, axis=1)):
        reason[i] = "non-zero spare bytes in the HK payload"
    return reason


def decode_hk_payloads(packets, obt) -> dict[str, np.ndarray]:
    """HK packets (n, PACKET_SIZE) and their OBT (n,) -> ISGR-HK..-CNV columns (physical units).

    OB_TIME int64 (n,), CYCLE_LEN float32 (n,) s, MDU_TEMP float32 (n, 8) degC, BIAS_V
    float32 (n, 8) V, TRIG_CNT/VETO_CNT/VETO_STB int32 (n, 8). TIME (IJD) is not in the
    telemetry: it comes from the time correlation.
    """
    rec = _hk_records(np.asarray(packets, dtype=np.uint8))
    out = {"OB_TIME": np.asarray(obt, dtype=np.int64).copy(),
           "CYCLE_LEN": (rec["CYCLE_LEN"].astype(np.float64) / FRAME_TICKS).astype(np.float32)}
    for name in HK_ADC:
        out[name] = hk_from_raw(name, rec["modules"][name])
    for name in HK_COUNTERS:
        out[name] = rec["modules"][name].astype(np.int32)
    return out


# --------------------------------------------------------------------------- ScW marks

@dataclass(frozen=True)
class ApidCounts:
    """What a ScW mark says of one data APID in the science window.

    first, last : 14-bit sequence counts of its first and last packet (None if unknown:
    `last` is unknown in a START mark); n : number of packets (None if unknown).
    """

    apid: int
    first: int | None
    last: int | None = None
    n: int | None = None


@dataclass(frozen=True)
class ScwMark:
    """A ScW boundary packet: START (sent at obt_start) or END (sent at obt_end).

    swid : the 12-digit ScW identifier (no version: the version is the ground's business).
    obt_start, obt_end : OBT of the ScW's start and end ticks; the ScW holds the data with
    obt_start <= OBT < obt_end. counts : one `ApidCounts` per data APID. Both marks carry
    the first counts, END also the last counts and packet numbers, so END alone lets the
    ground count every lost packet of the ScW, even at its edges.
    """

    kind: int
    swid: str
    obt_start: int
    obt_end: int
    counts: tuple[ApidCounts, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.kind not in (MARK_START, MARK_END):
            raise PacketError(f"ScW mark kind {self.kind} is neither START (1) nor END (2)")
        if not (isinstance(self.swid, str) and len(self.swid) == 12 and self.swid.isascii() and self.swid.isdigit()):
            raise PacketError(f"ScW mark SWID {self.swid!r} is not 12 ASCII digits")
        if not 0 <= self.obt_start < self.obt_end < 2**63:
            raise PacketError(f"ScW {self.swid}: OBT range {self.obt_start}..{self.obt_end} is empty or invalid")
        if len(self.counts) > _MARK_MAX_ENTRIES:
            raise PacketError(f"ScW mark holds at most {_MARK_MAX_ENTRIES} APID entries")

    def count(self, apid: int) -> ApidCounts | None:
        for c in self.counts:
            if c.apid == apid:
                return c
        return None


def encode_mark(mark: ScwMark) -> tuple[int, int, np.ndarray]:
    """A ScW mark -> (packet OBT, item count, payload (PAYLOAD_SIZE,) uint8)."""
    buf = np.zeros(PAYLOAD_SIZE, dtype=np.uint8)
    head = np.zeros(1, _MARK_HEAD)
    head["kind"], head["swid"] = mark.kind, mark.swid.encode("ascii")
    head["obt_start"], head["obt_end"] = mark.obt_start, mark.obt_end
    ent = np.zeros(len(mark.counts), _MARK_ENTRY)
    for i, c in enumerate(mark.counts):
        for what, v, hi in (("first", c.first, SEQ_MODULO - 1), ("last", c.last, SEQ_MODULO - 1),
                            ("n", c.n, UNKNOWN_COUNT - 1)):
            if v is not None and not 0 <= v <= hi:
                raise PacketError(f"ScW {mark.swid} APID {c.apid:#x}: {what} = {v} outside 0..{hi}")
        ent[i] = (c.apid, UNKNOWN_SEQ if c.first is None else c.first, UNKNOWN_SEQ if c.last is None else c.last,
                  UNKNOWN_COUNT if c.n is None else c.n)
    raw = head.tobytes() + ent.tobytes()
    buf[:len(raw)] = np.frombuffer(raw, np.uint8)
    obt = mark.obt_start if mark.kind == MARK_START else mark.obt_end
    return obt, len(mark.counts), buf


def decode_mark(packet, obt: int, items: int) -> ScwMark:
    """One ScW-mark packet (PACKET_SIZE,) -> ScwMark; PacketError if malformed."""
    pl = np.asarray(packet, dtype=np.uint8).reshape(-1)[HEADER_SIZE:HEADER_SIZE + PAYLOAD_SIZE]
    head = pl[:_MARK_HEAD.itemsize].view(_MARK_HEAD)[0]
    end = _MARK_HEAD.itemsize + items * _MARK_ENTRY.itemsize
    ent = pl[_MARK_HEAD.itemsize:end].view(_MARK_ENTRY)
    if np.any(pl[end:]) or head["spare"]:
        raise PacketError("non-zero bytes outside the ScW mark")
    try:
        swid = bytes(head["swid"]).decode("ascii")
    except UnicodeDecodeError:
        raise PacketError("ScW mark SWID is not ASCII") from None

    def opt(v, unknown):
        return None if int(v) == unknown else int(v)

    counts = tuple(ApidCounts(int(e["apid"]), opt(e["first"], UNKNOWN_SEQ), opt(e["last"], UNKNOWN_SEQ),
                              opt(e["n"], UNKNOWN_COUNT)) for e in ent)
    mark = ScwMark(int(head["kind"]), swid, int(head["obt_start"]), int(head["obt_end"]), counts)
    expect = mark.obt_start if mark.kind == MARK_START else mark.obt_end
    if int(obt) != expect:
        raise PacketError(f"ScW {swid} mark sent at OBT {int(obt)}, but it announces {expect}")
    return mark


# --------------------------------------------------------------------------- one science window

def encode_scw(swid: str, obt_start: int, obt_end: int, events: dict | None, hk: dict | None,
               counters: dict[int, int] | None = None) -> tuple[np.ndarray, dict[int, int]]:
    """The packet stream of one science window, in on-board time order.

    swid : 12-digit ScW identifier; obt_start, obt_end : its OBT range (data must have
    obt_start <= OB_TIME < obt_end); events : ISGR-EVTS-ALL columns; hk : ISGR-HK..-CNV
    columns (either may be None or empty); counters : next packet count per APID (missing
    APIDs start at 0), continued from the previous ScW.

    Returns the packets (n, PACKET_SIZE) uint8 - a START mark at obt_start, the event and
    HK packets merged by OBT, an END mark at obt_end - and the updated counters.
    """
    counters = dict(counters or {})
    parts = {APID_ISGRI_EVENTS: encode_event_payloads(events) if events is not None else None,
             APID_ISGRI_HK: encode_hk_payloads(hk) if hk is not None else None}
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, PAYLOAD_SIZE), np.uint8))
    parts = {a: (p if p is not None else empty) for a, p in parts.items()}
    for apid, (obt, _, _) in parts.items():
        if obt.size and (obt.min() < obt_start or obt.max() >= obt_end):
            bad = obt[(obt < obt_start) | (obt >= obt_end)]
            raise PacketError(f"ScW {swid}: {APID_NAMES[apid]} data at OBT {int(bad[0])} outside the ScW's "
                              f"{obt_start}..{obt_end} (end excluded)")
    first = {a: counters.get(a, 0) for a in DATA_APIDS}
    n = {a: parts[a][0].size for a in DATA_APIDS}
    start = ScwMark(MARK_START, swid, int(obt_start), int(obt_end),
                    tuple(ApidCounts(a, first[a] % SEQ_MODULO) for a in DATA_APIDS))
    end = ScwMark(MARK_END, swid, int(obt_start), int(obt_end),
                  tuple(ApidCounts(a, first[a] % SEQ_MODULO,
                                   (first[a] + n[a] - 1) % SEQ_MODULO if n[a] else None, n[a]) for a in DATA_APIDS))
    blocks, keys = [], []
    seq_scw = counters.get(APID_SCW, 0)
    for k, mark in enumerate((start, end)):
        o, items, pl = encode_mark(mark)
        blocks.append(build_packets(APID_SCW, seq_scw + k, [o], [items], pl[None, :]))
        keys.append(np.array([[o, 0 if k == 0 else 2]]))
    for apid in DATA_APIDS:
        obt, items, pl = parts[apid]
        blocks.append(build_packets(apid, first[apid], obt, items, pl))
        keys.append(np.column_stack([obt, np.ones_like(obt)]))
        counters[apid] = first[apid] + n[apid]
    counters[APID_SCW] = seq_scw + 2
    packets = np.concatenate(blocks)
    key = np.concatenate(keys)
    order = np.lexsort((key[:, 1], key[:, 0]))  # by OBT; START first and END last at equal OBT
    return packets[order], counters
