"""Reassembly: telemetry packets in arrival order -> the raw data of each science window.

Pure (no files): the NRT daemon reads inbox chunks with `isdc.dal.inbox` and hands their
bytes to a `Reassembler`, which

- checks every packet (CRC, header constants, APID, payload form) and keeps a record of
  each one rejected (`CorruptPacket`: where it came from and why);
- learns the science windows from the START/END mark packets (ScW id, OBT range, first
  and last sequence counts and packet numbers of every data APID);
- on `assemble(scw)` orders the packets of each data APID by OBT (strictly increasing
  per APID by construction), drops exact duplicates, unwraps the 14-bit sequence count
  and derives from it the lost packets (`Gap`: OBT range and count, edges included when
  the marks say where the ScW's counts start and end), the duplicates, the packets that
  arrived after a later one of their APID (disorder), and decodes the events and HK.

Definitions (they are what the feed's fault log counts too, see docs/telemetry.md):

- *lost*: packets the sequence counts say were sent but no valid copy arrived;
- *duplicate*: each extra valid copy of a packet already received;
- *conflict*: a valid packet with the OBT of another but different bytes (first kept);
- *out of order*: a packet that arrived after a packet of its APID with a higher count;
- *corrupt*: a packet that fails its CRC or is malformed; it is also lost, unless a valid
  copy arrives.

A run of 16384 or more consecutive lost packets of one APID cannot be seen from the
14-bit counts alone; the END mark's packet number reveals it, and the missing multiple
of 16384 is attributed to the gap with the longest OBT jump (noted in the report).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from isdc.ids import NRT, ScwId, Version
from isdc.telemetry.packets import (
    APID_ISGRI_EVENTS,
    APID_ISGRI_HK,
    APID_NAMES,
    APID_SCW,
    DATA_APIDS,
    EVENT_BYTES,
    EVENT_FIELDS,
    EVENT_TICKS,
    HEADER_SIZE,
    MARK_END,
    MARK_START,
    PACKET_SIZE,
    SEQ_MODULO,
    PacketError,
    ScwMark,
    check_event_payloads,
    check_headers,
    check_hk_payloads,
    decode_event_payloads,
    decode_hk_payloads,
    decode_mark,
    parse_headers,
    split_packets,
)

__all__ = [
    "CorruptPacket",
    "Gap",
    "ApidReport",
    "TelemetryReport",
    "ScwTelemetry",
    "ScwWindow",
    "AddResult",
    "Reassembler",
    "reassemble",
]


@dataclass(frozen=True)
class CorruptPacket:
    """A packet rejected on arrival.

    source : where it came from (chunk name); index : packet number in the source (for a
    truncated tail, the number the whole packet would have had); arrival : global arrival
    number; reason : why; apid, obt : as its header reads (unverified, None if unreadable).
    """

    source: str
    index: int
    arrival: int
    reason: str
    apid: int | None = None
    obt: int | None = None


@dataclass(frozen=True)
class Gap:
    """Lost packets of one APID: `lost` packets, their data between OBT obt_start and obt_stop.

    obt_start is the OBT of the last datum received before the gap (the ScW start for a gap
    at its beginning), obt_stop the OBT of the first datum after it (the ScW end for a gap
    at its end); first_seq is the 14-bit count of the first lost packet.
    """

    apid: int
    obt_start: int
    obt_stop: int
    lost: int
    first_seq: int


@dataclass
class ApidReport:
    """What the packets of one data APID in one ScW looked like.

    expected : packets the END mark announces (None without END); received : distinct valid
    packets; lost : packets missing (None if it cannot be known: no END mark and no count
    for an edge); duplicates, conflicts, out_of_order : see the module docstring.
    """

    apid: int
    name: str
    expected: int | None
    received: int
    lost: int | None
    duplicates: int = 0
    conflicts: int = 0
    out_of_order: int = 0
    gaps: list[Gap] = field(default_factory=list)


@dataclass
class TelemetryReport:
    """The record of a ScW's telemetry: marks seen, per-APID accounting, corrupt packets, notes."""

    scw: ScwId
    obt_start: int
    obt_end: int
    start_mark: bool
    end_mark: bool
    apids: dict[int, ApidReport]
    corrupt: list[CorruptPacket]
    """Rejected packets whose (unverified) header places them in this ScW."""
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """END mark seen and no packet of any data APID lost."""
        return self.end_mark and all(r.lost == 0 for r in self.apids.values())

    def lost(self) -> int | None:
        v = [r.lost for r in self.apids.values()]
        return None if any(x is None for x in v) else sum(v)

    def to_dict(self) -> dict:
        """JSON-ready record (the daemon writes it beside the ScW's raw data)."""
        d = asdict(self)
        d["scw"] = str(self.scw)
        d["apids"] = {APID_NAMES.get(a, f"{a:#x}"): asdict(r) for a, r in self.apids.items()}
        d["complete"] = self.complete
        return d


@dataclass
class ScwTelemetry:
    """The decoded raw data of one ScW.

    events : ISGR-EVTS-ALL columns without TIME (OB_TIME, ISGRI_PHA, RISE_TIME, ISGRI_Y,
    ISGRI_Z), in on-board order; hk : ISGR-HK..-CNV columns without TIME (OB_TIME,
    CYCLE_LEN, MDU_TEMP, BIAS_V, TRIG_CNT, VETO_CNT, VETO_STB), physical units. TIME
    (IJD) is added by data preparation from the time correlation.
    """

    scw: ScwId
    obt_start: int
    obt_end: int
    events: dict[str, np.ndarray]
    hk: dict[str, np.ndarray]
    report: TelemetryReport


@dataclass(frozen=True)
class ScwWindow:
    """A science window known from its marks: OBT range [obt_start, obt_end) and the marks seen."""

    swid: str
    obt_start: int
    obt_end: int
    start: ScwMark | None
    end: ScwMark | None


@dataclass(frozen=True)
class AddResult:
    """What one `Reassembler.add` took in: packets (whole ones), valid ones, rejects, marks."""

    packets: int
    valid: int
    corrupt: tuple[CorruptPacket, ...]
    marks: tuple[ScwMark, ...]


class _Table:
    """Valid packets held: raw bytes and header fields, concatenated lazily."""

    def __init__(self):
        self.blocks: list[dict[str, np.ndarray]] = []
        self._cat: dict[str, np.ndarray] | None = None

    def append(self, block: dict[str, np.ndarray]) -> None:
        if block["apid"].size:
            self.blocks.append(block)
            self._cat = None

    def get(self) -> dict[str, np.ndarray]:
        if self._cat is None:
            if not self.blocks:
                self._cat = {"raw": np.zeros((0, PACKET_SIZE), np.uint8),
                             **{k: np.zeros(0, np.int64) for k in ("apid", "seq", "obt", "items", "arrival", "sub")}}
            else:
                self._cat = {k: np.concatenate([b[k] for b in self.blocks]) for k in self.blocks[0]}
                self.blocks = [self._cat]
        return self._cat

    def keep(self, mask: np.ndarray) -> None:
        t = self.get()
        self._cat = {k: v[mask] for k, v in t.items()}
        self.blocks = [self._cat] if mask.any() else []


class Reassembler:
    """Collects packets as they arrive and assembles science windows from them.

    version : data version given to the assembled ScWs (NRT = 000 for the daemon).
    Stateful but pure: no files, no clock. `add` the chunks in arrival order; ask
    `windows()`, `closable()`; `assemble()` a ScW and `discard()` it when written.
    """

    def __init__(self, version: Version | int = NRT):
        self.version = Version.parse(version)
        self._table = _Table()
        self._marks: dict[str, dict[int, ScwMark]] = {}
        self._mark_notes: dict[str, list[str]] = {}
        self.corrupt: list[CorruptPacket] = []
        self.arrived = 0
        self.latest_obt: int | None = None
        """Largest OBT of any valid packet received (the daemon's measure of stream progress)."""

    # ------------------------------------------------------------------ intake
    def add(self, data, source: str = "") -> AddResult:
        """Take packets in arrival order: bytes (concatenated packets; a partial packet at the end
        is recorded as corrupt) or a (n, PACKET_SIZE) uint8 array."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            packets, tail = split_packets(data)
        else:
            packets, tail = np.asarray(data, dtype=np.uint8), 0
            if packets.ndim != 2 or packets.shape[1] != PACKET_SIZE:
                raise PacketError(f"{source or 'packets'}: expected shape (n, {PACKET_SIZE}), got {packets.shape}")
        n = packets.shape[0]
        h = parse_headers(packets)
        reason = check_headers(h)
        ok = np.array([r is None for r in reason], dtype=bool)
        for apid, check in ((APID_ISGRI_EVENTS, lambda p, i: check_event_payloads(p, i)),
                            (APID_ISGRI_HK, lambda p, i: check_hk_payloads(p))):
            sel = np.flatnonzero(ok & (h.apid == apid))
            if sel.size:
                r = check(packets[sel], h.items[sel])
                for j in np.flatnonzero([x is not None for x in r]):
                    reason[sel[j]] = r[j]
        ok = np.array([r is None for r in reason], dtype=bool)
        obt = np.where(h.obt < np.uint64(1 << 63), h.obt, 0).astype(np.int64)
        sub = np.zeros(n, dtype=np.int64)
        marks = []
        for i in np.flatnonzero(ok & (h.apid == APID_SCW)):
            try:
                m = decode_mark(packets[i], int(obt[i]), int(h.items[i]))
            except PacketError as exc:
                reason[i], ok[i] = str(exc), False
                continue
            marks.append(m)
            sub[i] = 0 if m.kind == MARK_END else 1  # at one OBT, the END of a ScW precedes the next START
        arrival = self.arrived + np.arange(n, dtype=np.int64)
        bad = []
        for i in np.flatnonzero(~ok):
            readable = h.obt[i] < np.uint64(1 << 63)
            bad.append(CorruptPacket(source, int(i), int(arrival[i]), str(reason[i]), int(h.apid[i]),
                                     int(h.obt[i]) if readable else None))
        if tail:
            bad.append(CorruptPacket(source, n, self.arrived + n, f"truncated packet: {tail} of {PACKET_SIZE} bytes"))
        self.arrived += n + (1 if tail else 0)
        self.corrupt.extend(bad)
        sel = np.flatnonzero(ok)
        self._table.append({"raw": packets[sel].copy(), "apid": h.apid[sel], "seq": h.seq[sel], "obt": obt[sel],
                            "items": h.items[sel], "arrival": arrival[sel], "sub": sub[sel]})
        for m in marks:
            self._add_mark(m)
        if sel.size:
            top = int(obt[sel].max())
            self.latest_obt = top if self.latest_obt is None else max(self.latest_obt, top)
        return AddResult(n, int(sel.size), tuple(bad), tuple(marks))

    def _add_mark(self, m: ScwMark) -> None:
        have = self._marks.setdefault(m.swid, {})
        old = have.get(m.kind)
        if old is not None and old != m:
            self._mark_notes.setdefault(m.swid, []).append(
                f"two different {'START' if m.kind == MARK_START else 'END'} marks; the first is used")
            return
        have[m.kind] = m

    # ------------------------------------------------------------------ science windows
    def windows(self) -> list[ScwWindow]:
        """The science windows announced by the marks received, by OBT."""
        out = []
        for swid, marks in self._marks.items():
            start, end = marks.get(MARK_START), marks.get(MARK_END)
            ref = end or start
            out.append(ScwWindow(swid, ref.obt_start, ref.obt_end, start, end))
        return sorted(out, key=lambda w: (w.obt_start, w.swid))

    def window(self, scw: ScwId | str) -> ScwWindow:
        swid = scw.swid if isinstance(scw, ScwId) else ScwId.parse(scw, version=self.version).swid
        for w in self.windows():
            if w.swid == swid:
                return w
        raise KeyError(f"ScW {swid}: no START or END mark received")

    def _select(self, apid: int, lo: int, hi: int) -> dict[str, np.ndarray]:
        t = self._table.get()
        m = (t["apid"] == apid) & (t["obt"] >= lo) & (t["obt"] < hi)
        return {k: v[m] for k, v in t.items()}

    def _distinct(self, apid: int, lo: int, hi: int) -> int:
        t = self._select(apid, lo, hi)
        return int(np.unique(t["obt"]).size)

    def is_complete(self, scw: ScwId | str) -> bool:
        """END mark seen and every packet it announces received (the ScW can close now)."""
        w = self.window(scw)
        if w.end is None:
            return False
        for apid in DATA_APIDS:
            c = w.end.count(apid)
            if c is None or c.n is None or self._distinct(apid, w.obt_start, w.obt_end) != c.n:
                return False
        return True

    def closable(self, scw: ScwId | str, grace_ticks: int) -> bool:
        """True when the ScW should be assembled now: it is complete, or the stream has moved
        `grace_ticks` past its end (late packets no longer expected) and either its END mark
        or a later ScW's mark was received."""
        w = self.window(scw)
        if self.is_complete(scw):
            return True
        if self.latest_obt is None or self.latest_obt < w.obt_end + grace_ticks:
            return False
        return w.end is not None or any(o.obt_start >= w.obt_end for o in self.windows())

    # ------------------------------------------------------------------ assembly
    def assemble(self, scw: ScwId | str) -> ScwTelemetry:
        """Decode the ScW's events and HK from the packets held, and account for its faults."""
        w = self.window(scw)
        scw_id = ScwId.parse(w.swid, version=self.version)
        notes = list(self._mark_notes.get(w.swid, []))
        if w.start is None:
            notes.append("START mark not received")
        if w.end is None:
            notes.append("END mark not received: packets lost at the end of the ScW cannot be counted")
        elif w.start is not None and (w.start.obt_start, w.start.obt_end) != (w.end.obt_start, w.end.obt_end):
            notes.append(f"START announced OBT {w.start.obt_start}..{w.start.obt_end}, END says "
                         f"{w.end.obt_start}..{w.end.obt_end}: END used")
        reports, data = {}, {}
        t_all = self._table.get()
        for apid in DATA_APIDS:
            sel = self._select(apid, w.obt_start, w.obt_end)
            after = (t_all["apid"] == apid) & (t_all["obt"] >= w.obt_end)
            later_arrival = int(t_all["arrival"][after].min()) if after.any() else None
            counts = [m.count(apid) for m in (w.end, w.start) if m is not None]
            counts = [c for c in counts if c is not None]
            reports[apid], data[apid] = _account(apid, sel, w, counts, later_arrival, notes)
        corrupt = [c for c in self.corrupt if c.obt is not None and w.obt_start <= c.obt <= w.obt_end
                   and c.apid in APID_NAMES]
        report = TelemetryReport(scw_id, w.obt_start, w.obt_end, w.start is not None, w.end is not None,
                                 reports, corrupt, notes)
        return ScwTelemetry(scw_id, w.obt_start, w.obt_end, data[APID_ISGRI_EVENTS], data[APID_ISGRI_HK], report)

    def discard(self, scw: ScwId | str) -> None:
        """Forget the packets, marks and corrupt-packet records of an assembled ScW."""
        w = self.window(scw)
        t = self._table.get()
        inside = (t["obt"] >= w.obt_start) & (t["obt"] < w.obt_end) & (t["apid"] != APID_SCW)
        # its own marks only: the previous ScW's END and the next one's START share its edge OBTs
        mark = (t["apid"] == APID_SCW) & (((t["obt"] == w.obt_start) & (t["sub"] == 1)) |
                                          ((t["obt"] == w.obt_end) & (t["sub"] == 0)))
        self._table.keep(~(inside | mark))
        self._marks.pop(w.swid, None)
        self._mark_notes.pop(w.swid, None)
        self.corrupt = [c for c in self.corrupt if not (c.obt is not None and w.obt_start <= c.obt <= w.obt_end)]

    def unattributed(self) -> int:
        """Valid data packets held whose OBT lies in no known ScW (their marks not yet received)."""
        t = self._table.get()
        m = np.isin(t["apid"], DATA_APIDS)
        for w in self.windows():
            m &= ~((t["obt"] >= w.obt_start) & (t["obt"] < w.obt_end))
        return int(m.sum())

    def stream_stats(self, apid: int) -> dict[str, int]:
        """Counts over every packet of `apid` held (e.g. the marks): distinct, duplicates,
        conflicts, lost between the first and last received, out of order."""
        t = self._table.get()
        m = t["apid"] == apid
        sel = {k: v[m] for k, v in t.items()}
        u, dup, conf = _dedupe(sel)
        seq = sel["seq"][u]
        step = (np.diff(seq) % SEQ_MODULO) if seq.size > 1 else np.zeros(0, np.int64)
        step[step == 0] = SEQ_MODULO
        return {"distinct": int(u.size), "duplicates": dup, "conflicts": conf,
                "lost": int((step - 1).sum()), "out_of_order": _late(sel["arrival"][u], None)}


# --------------------------------------------------------------------------- accounting helpers

def _dedupe(sel: dict[str, np.ndarray]) -> tuple[np.ndarray, int, int]:
    """Indices of distinct packets in on-board order (first arrival kept), duplicates, conflicts.

    Packets of one APID are ordered by (OBT, sub-key): data packets have strictly
    increasing OBTs; marks of two ScWs may share one OBT (END before START).
    """
    order = np.lexsort((sel["arrival"], sel["sub"], sel["obt"]))
    obt, sub = sel["obt"][order], sel["sub"][order]
    new = np.r_[True, (obt[1:] != obt[:-1]) | (sub[1:] != sub[:-1])] if order.size else np.zeros(0, bool)
    first = order[new]
    dup = conf = 0
    rep = order[~new]
    if rep.size:
        owner = first[np.cumsum(new)[~new] - 1]
        same = np.all(sel["raw"][rep] == sel["raw"][owner], axis=1)
        dup, conf = int(same.sum()), int((~same).sum())
    return first, dup, conf


def _late(arrival: np.ndarray, later_arrival: int | None) -> int:
    """Packets (in count order) that arrived after a packet with a higher count: arrival[i] >
    min(arrival[j > i]), packets after the range (first arrival `later_arrival`) included."""
    if arrival.size == 0:
        return 0
    tail = np.minimum.accumulate(arrival[::-1])[::-1]
    nxt = np.r_[tail[1:], np.iinfo(np.int64).max if later_arrival is None else later_arrival]
    if later_arrival is not None:
        nxt = np.minimum(nxt, later_arrival)
    return int((arrival > nxt).sum())


def _last_datum_obt(apid: int, raw: np.ndarray, obt: np.ndarray, items: np.ndarray) -> np.ndarray:
    """OBT of the last datum in each packet: the last event of an event packet, the cycle of HK."""
    if apid != APID_ISGRI_EVENTS or raw.shape[0] == 0:
        return obt.copy()
    off = HEADER_SIZE + (items - 1) * EVENT_BYTES
    b = raw[np.arange(raw.shape[0])[:, None], off[:, None] + np.arange(2)[None, :]].astype(np.int64)
    dt = ((b[:, 0] << 8) | b[:, 1]) >> (EVENT_FIELDS[0][1] - 32)
    return obt + dt * EVENT_TICKS


def _account(apid: int, sel: dict, w: ScwWindow, counts: list, later_arrival: int | None,
             notes: list[str]) -> tuple[ApidReport, dict[str, np.ndarray]]:
    name = APID_NAMES[apid]
    u, dup, conf = _dedupe(sel)
    seq, obt, raw, items = sel["seq"][u], sel["obt"][u], sel["raw"][u], sel["items"][u]
    first_seq = next((c.first for c in counts if c.first is not None), None)
    last_seq = next((c.last for c in counts if c.last is not None), None)
    expected = next((c.n for c in counts if c.n is not None), None)
    rep = ApidReport(apid, name, expected, int(u.size), None, dup, conf, _late(sel["arrival"][u], later_arrival))
    if apid == APID_ISGRI_EVENTS:
        if conf:
            notes.append(f"{name}: {conf} packet(s) with the OBT of another but different content (first kept)")
        data = decode_event_payloads(raw, obt, items)
    else:
        data = decode_hk_payloads(raw, obt)
    if u.size == 0:
        if expected is not None:
            rep.lost = expected
            if expected:
                rep.gaps.append(Gap(apid, w.obt_start, w.obt_end, expected, first_seq if first_seq is not None else 0))
        elif last_seq is None and w.end is not None:
            rep.lost = 0  # END says this APID sent nothing
        return rep, data
    step = np.diff(seq) % SEQ_MODULO
    step[step == 0] = SEQ_MODULO  # two distinct packets with one count: a whole counter cycle lost
    lead = (int(seq[0]) - first_seq) % SEQ_MODULO if first_seq is not None else None
    trail = (last_seq - int(seq[-1])) % SEQ_MODULO if last_seq is not None else None
    last_obt = _last_datum_obt(apid, raw, obt, items)
    lost_inner = step - 1
    if expected is not None and lead is not None and trail is not None:
        extra = expected - (lead + int(step.sum()) + 1 + trail)
        if extra:
            if extra > 0 and extra % SEQ_MODULO == 0:
                jump = np.diff(obt)
                k = int(np.argmax(jump)) if jump.size else -1
                if k >= 0:
                    lost_inner[k] += extra
                else:
                    trail += extra
                notes.append(f"{name}: {extra} packets lost in a run of >= {SEQ_MODULO} (counter wrapped); "
                             "attributed to the longest OBT gap")
            else:
                notes.append(f"{name}: END mark announces {expected} packets, sequence counts span "
                             f"{expected - extra}; lost = announced - received")
    gaps = []
    if lead:
        gaps.append(Gap(apid, w.obt_start, int(obt[0]), lead, first_seq))
    for k in np.flatnonzero(lost_inner):
        gaps.append(Gap(apid, int(last_obt[k]), int(obt[k + 1]), int(lost_inner[k]), (int(seq[k]) + 1) % SEQ_MODULO))
    if trail:
        gaps.append(Gap(apid, int(last_obt[-1]), w.obt_end, trail, (int(seq[-1]) + 1) % SEQ_MODULO))
    rep.gaps = gaps
    if expected is not None:
        rep.lost = expected - rep.received
        if rep.lost < 0:
            notes.append(f"{name}: {rep.received} distinct packets received, but the END mark announces {expected}")
            rep.lost = 0
    elif lead is not None and trail is not None:
        rep.lost = sum(g.lost for g in gaps)
    return rep, data


def reassemble(chunks, version: Version | int = NRT) -> tuple[list[ScwTelemetry], Reassembler]:
    """Reassemble every ScW announced in `chunks` (iterable of bytes or (source, bytes), in
    arrival order). Returns the ScWs by OBT and the reassembler (its `corrupt` list etc.)."""
    r = Reassembler(version)
    for k, c in enumerate(chunks):
        source, data = c if isinstance(c, tuple) else (f"chunk {k}", c)
        r.add(data, source)
    return [r.assemble(w.swid) for w in r.windows()], r
