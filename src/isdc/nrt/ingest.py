"""The NRT input pipeline: inbox chunks -> packets -> the raw data of each science window.

`Ingest` reads the chunks waiting in the inbox in arrival order and hands their packets
to a `Reassembler` (isdc.telemetry.reassembly), which checks them, learns the ScW windows
from the START/END marks and, when a ScW closes, decodes its events and HK and accounts
for its faults (lost packets and gaps from the sequence counters, duplicates, disorder,
corrupt packets). Around it `Ingest` keeps what the daemon needs to be restartable:

* **Closed windows.** Packets whose OBT lies in a ScW already written (late packets, or
  packets re-read after a restart) are dropped before reassembly and counted per ScW; the
  marks of such ScWs too. The closed windows come from the durable state.
* **Chunk holds.** A chunk leaves the inbox (to `done/`, or to `quarantine/` with its
  problem when damaged) only when every valid packet in it belongs to a ScW already
  written. After a crash the chunks still waiting hold everything not yet written, so
  re-reading them rebuilds the reassembler: nothing is lost, nothing decoded twice.
* **New data for the burst trigger.** Each chunk's valid event and HK packets are decoded
  at once, first copies only (an event packet's OBT is its identity), and returned per
  ScW window, so the trigger sees the stream while the ScW is still open.
* **Windows from the plan.** When both marks of a ScW are lost, the revolution plan
  (OBTSTART/OBTEND of each ScW) provides its window: once the stream is `grace` past its
  end, a START mark with unknown counts is synthesised from the plan so the ScW can close.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from isdc.dal.inbox import Chunk, ChunkName, Inbox
from isdc.ids import NRT
from isdc.telemetry.packets import (
    APID_ISGRI_EVENTS,
    APID_ISGRI_HK,
    APID_SCW,
    DATA_APIDS,
    FRAME_TICKS,
    HEADER_SIZE,
    MARK_START,
    PACKET_SIZE,
    ApidCounts,
    ScwMark,
    build_packets,
    decode_event_payloads,
    decode_hk_payloads,
    encode_mark,
    parse_headers,
    split_packets,
)
from isdc.telemetry.reassembly import Reassembler, ScwTelemetry, ScwWindow

log = logging.getLogger(__name__)

__all__ = ["ChunkIntake", "Ingest", "Windows"]

_SWID_SLICE = slice(HEADER_SIZE + 2, HEADER_SIZE + 14)  # SWID in a mark's payload (docs/telemetry.md §4)


class Windows:
    """Sorted, non-overlapping OBT windows [start, end) with a name each; vectorised lookup."""

    def __init__(self, items: Iterable[tuple[int, int, str]] = ()):
        self.items = sorted((int(a), int(b), str(s)) for a, b, s in items)
        self._arrays()

    def _arrays(self):
        self.start = np.array([a for a, _, _ in self.items], dtype=np.int64)
        self.end = np.array([b for _, b, _ in self.items], dtype=np.int64)
        self.names = [s for _, _, s in self.items]

    def add(self, start: int, end: int, name: str) -> None:
        self.items = sorted(self.items + [(int(start), int(end), str(name))])
        self._arrays()

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def lookup(self, obt: np.ndarray) -> np.ndarray:
        """Index of the window holding each OBT, -1 for none."""
        obt = np.asarray(obt, dtype=np.int64)
        if not self.items:
            return np.full(obt.shape, -1, dtype=np.int64)
        i = np.searchsorted(self.start, obt, side="right") - 1
        ok = (i >= 0) & (obt < self.end[np.maximum(i, 0)])
        return np.where(ok, i, -1)


@dataclass
class ChunkIntake:
    """What one chunk brought: its damage, packet counts, and the new decoded data per ScW.

    late : packets dropped because their ScW was already written (per ScW in late_by_scw);
    events / hk : decoded ISGR-EVTS-ALL / ISGR-HK..-CNV columns (no TIME) of the valid packets
    seen for the first time, per 12-digit ScW id (packets outside every known window are not
    decoded here; the reassembler still holds them).
    """

    name: ChunkName
    problem: str | None
    arrival: float
    packets: int = 0
    valid: int = 0
    corrupt: int = 0
    late: int = 0
    late_by_scw: dict[str, int] = field(default_factory=dict)
    events: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    hk: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


@dataclass
class _Hold:
    chunk: Chunk
    obt: np.ndarray  # OBT of the valid data packets taken in
    marks: set[str]  # SWIDs of the valid marks taken in


class Ingest:
    """Inbox -> reassembler -> closable ScWs (see module docstring).

    inbox : the telemetry inbox. closed : (obt_start, obt_end, scw) of the ScWs already
    written (from the durable state; `scw` may carry a version, only its 12 digits count).
    grace_s : how far (on-board seconds) the stream must move past a ScW's end before it is
    closed with what arrived (a complete ScW closes at once). plan : (swid, obt_start,
    obt_end) of the planned ScWs (optional; used when a ScW's marks are lost).
    orphan_s : valid data packets in no ScW window that far behind the stream are dropped.
    """

    def __init__(self, inbox: Inbox, closed: Iterable[tuple[int, int, str]] = (), *, grace_s: float = 8.0,
                 plan: Iterable[tuple[str, int, int]] = (), orphan_s: float = 600.0, durable: bool = True,
                 clock: Callable[[], float] = time.time):
        self.inbox = inbox
        self.reassembler = Reassembler(NRT)
        self.closed = Windows((a, b, str(s)[:12]) for a, b, s in closed)
        self.plan = Windows((a, b, s) for s, a, b in plan)
        self.grace_ticks = int(round(grace_s * FRAME_TICKS))
        self.orphan_ticks = int(round(orphan_s * FRAME_TICKS))
        self.durable = durable
        self.clock = clock
        self._holds: dict[ChunkName, _Hold] = {}
        self._seen: dict[str, dict[int, set[int]]] = {}
        self._synthesised: set[str] = set()
        self.late_by_scw: dict[str, int] = {}

    # ------------------------------------------------------------------ intake
    def pending(self) -> list[ChunkName]:
        """Chunks waiting in the inbox that were not read yet, in arrival order."""
        return [c for c in self.inbox.pending() if c not in self._holds]

    def poll(self, limit: int | None = None) -> list[ChunkIntake]:
        """Read up to `limit` new chunks (all by default) into the reassembler."""
        out = []
        for name in self.pending()[:limit]:
            try:
                chunk = self.inbox.read(name)
            except FileNotFoundError:
                continue  # moved away meanwhile (another reader): nothing to do
            out.append(self._take(chunk))
        return out

    def _take(self, chunk: Chunk) -> ChunkIntake:
        intake = ChunkIntake(chunk.name, chunk.problem, self.clock())
        packets, tail = split_packets(chunk.data)
        intake.packets = packets.shape[0]
        drop = np.zeros(packets.shape[0], dtype=bool)
        if packets.shape[0]:
            h = parse_headers(packets)
            obt = np.where(h.obt < np.uint64(1 << 63), h.obt, 0).astype(np.int64)
            win = self.closed.lookup(obt)
            data = np.isin(h.apid, DATA_APIDS) & (win >= 0)
            marks = np.flatnonzero(h.apid == APID_SCW)
            mark_closed = np.zeros(packets.shape[0], dtype=bool)
            for i in marks:
                swid = bytes(packets[i, _SWID_SLICE]).decode("ascii", "replace")
                mark_closed[i] = swid in self.closed
            drop = data | mark_closed
            for i in np.flatnonzero(data):
                name = self.closed.names[win[i]]
                intake.late_by_scw[name] = intake.late_by_scw.get(name, 0) + 1
            intake.late = int(drop.sum())
            for name, n in intake.late_by_scw.items():
                self.late_by_scw[name] = self.late_by_scw.get(name, 0) + n
        keep = packets[~drop]
        res = self.reassembler.add(keep.tobytes() + bytes(chunk.data[packets.shape[0] * PACKET_SIZE:]),
                                   str(chunk.name))
        bad = np.zeros(keep.shape[0], dtype=bool)
        bad[[c.index for c in res.corrupt if c.index < keep.shape[0]]] = True
        intake.valid, intake.corrupt = res.valid, len(res.corrupt)
        good = keep[~bad]
        hold = _Hold(chunk, np.zeros(0, np.int64), {m.swid for m in res.marks})
        if good.shape[0]:
            h = parse_headers(good)
            obt = h.obt.astype(np.int64)
            is_data = np.isin(h.apid, DATA_APIDS)
            hold.obt = obt[is_data]
            self._decode_new(good, h, obt, intake)
        self._holds[chunk.name] = hold
        return intake

    def _decode_new(self, packets: np.ndarray, h, obt: np.ndarray, intake: ChunkIntake) -> None:
        """Decode the event and HK packets seen for the first time, per known window."""
        wins = self._known_windows()
        idx = wins.lookup(obt)
        for apid, decode, out in ((APID_ISGRI_EVENTS, lambda p, o, n: decode_event_payloads(p, o, n), intake.events),
                                  (APID_ISGRI_HK, lambda p, o, n: decode_hk_payloads(p, o), intake.hk)):
            sel = np.flatnonzero((h.apid == apid) & (idx >= 0))
            for w in np.unique(idx[sel]):
                swid = wins.names[w]
                seen = self._seen.setdefault(swid, {a: set() for a in DATA_APIDS})[apid]
                rows = [i for i in sel[idx[sel] == w] if int(obt[i]) not in seen]
                if not rows:
                    continue
                fresh, first = [], set()
                for i in rows:  # a packet twice in one chunk: its first copy only
                    if int(obt[i]) not in first:
                        first.add(int(obt[i]))
                        fresh.append(i)
                seen.update(first)
                fresh = np.array(fresh)
                out[swid] = decode(packets[fresh], obt[fresh], h.items[fresh])

    def _known_windows(self) -> Windows:
        items = {w.swid: (w.obt_start, w.obt_end) for w in self.reassembler.windows()}
        for a, b, s in self.plan.items:
            items.setdefault(s, (a, b))
        # overlapping windows (a plan that disagrees with the marks) resolve to the marks'
        out, last_end = [], None
        for s, (a, b) in sorted(items.items(), key=lambda kv: kv[1]):
            if s in self.closed or (last_end is not None and a < last_end):
                continue
            out.append((a, b, s))
            last_end = b
        return Windows(out)

    # ------------------------------------------------------------------ science windows
    def windows(self) -> list[ScwWindow]:
        """ScWs announced by marks (open ones: closed ScWs are not re-announced)."""
        return [w for w in self.reassembler.windows() if w.swid not in self.closed]

    def received(self, swid: str) -> tuple[int, int | None]:
        """(distinct valid data packets received so far, packets announced by END or None) of an open ScW."""
        seen = self._seen.get(swid, {})
        got = sum(len(v) for v in seen.values())
        try:
            w = self.reassembler.window(swid)
        except KeyError:
            return got, None
        if w.end is None:
            return got, None
        counts = [w.end.count(a) for a in DATA_APIDS]
        if any(c is None or c.n is None for c in counts):
            return got, None
        return got, sum(c.n for c in counts)

    def ready(self, force: bool = False) -> list[str]:
        """ScWs (12-digit ids) to close now, in OBT order: complete, or the stream moved on;
        with `force` (the stream stopped) every open ScW."""
        self._synthesise_marks()
        return [w.swid for w in self.windows() if force or self.reassembler.closable(w.swid, self.grace_ticks)]

    def add_plan(self, plan: Iterable[tuple[str, int, int]]) -> None:
        """More planned ScWs (swid, OBTSTART, OBTEND), e.g. of a new revolution."""
        for swid, a, b in plan:
            if swid not in self.plan:
                self.plan.add(a, b, swid)

    def window_bounds(self, swid: str) -> tuple[int, int] | None:
        """(OBTSTART, OBTEND) of an open ScW from its marks, else from the plan; None if unknown."""
        try:
            w = self.reassembler.window(swid)
            return w.obt_start, w.obt_end
        except KeyError:
            pass
        if swid in self.plan:
            a, b, _ = self.plan.items[self.plan.names.index(swid)]
            return a, b
        return None

    def _synthesise_marks(self) -> None:
        """A planned ScW with data but neither mark, the stream `grace` past its end: a START mark
        from the plan (counts unknown) lets it close with what arrived."""
        latest = self.reassembler.latest_obt
        if latest is None or not self.plan.items:
            return
        known = {w.swid for w in self.reassembler.windows()}
        for a, b, swid in self.plan.items:
            if swid in known or swid in self.closed or swid in self._synthesised or latest < b + self.grace_ticks:
                continue
            if not any(((h.obt >= a) & (h.obt < b)).any() for h in self._holds.values()):
                continue
            mark = ScwMark(MARK_START, swid, a, b, tuple(ApidCounts(x, None) for x in DATA_APIDS))
            o, items, payload = encode_mark(mark)
            self.reassembler.add(build_packets(APID_SCW, 0, [o], [items], payload[None, :]), "revolution plan")
            self._synthesised.add(swid)
            log.warning("ScW %s: no START or END mark received; window taken from the revolution plan", swid)

    def synthesised(self, swid: str) -> bool:
        """True when the ScW's window came from the revolution plan (both marks lost)."""
        return swid in self._synthesised

    def assemble(self, swid: str) -> ScwTelemetry:
        return self.reassembler.assemble(swid)

    def close(self, swid: str) -> None:
        """The ScW's raw data are written and committed: forget its packets, drop any more."""
        w = self.reassembler.window(swid)
        self.reassembler.discard(swid)
        self.closed.add(w.obt_start, w.obt_end, swid)
        self._seen.pop(swid, None)

    # ------------------------------------------------------------------ leaving the inbox
    def release(self) -> list[tuple[ChunkName, str]]:
        """Move every held chunk whose valid packets all belong to written ScWs out of the
        inbox: to done/, or to quarantine/ with its problem. Returns (chunk, 'done'|'quarantine')."""
        latest = self.reassembler.latest_obt
        out = []
        known = None
        for name in sorted(self._holds):
            hold = self._holds[name]
            inside = self.closed.lookup(hold.obt) >= 0
            if not inside.all() and latest is not None and hold.obt.min() < latest - self.orphan_ticks:
                # valid data in no window long behind the stream: orphans (both marks lost, no plan)
                known = known if known is not None else self._known_windows()
                orphan = (~inside) & (hold.obt < latest - self.orphan_ticks) & (known.lookup(hold.obt) < 0)
                if orphan.any():
                    log.warning("%s: %d data packets in no science window %.0f s behind the stream: dropped",
                                name, int(orphan.sum()), self.orphan_ticks / FRAME_TICKS)
                    hold.obt = hold.obt[~orphan]
                    inside = inside[~orphan]
            if not inside.all() or not all(s in self.closed for s in hold.marks):
                continue
            if hold.chunk.problem:
                self.inbox.quarantine(name, hold.chunk.problem, durable=self.durable)
                out.append((name, "quarantine"))
            else:
                self.inbox.mark_done(name, durable=self.durable)
                out.append((name, "done"))
            del self._holds[name]
        return out

    def held(self) -> int:
        """Chunks read but still in the inbox (their ScWs not all written)."""
        return len(self._holds)
