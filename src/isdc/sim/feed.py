"""The telemetry feed: simulated ScWs emitted as packets into an inbox, as a ground station would.

From each science window's raw data (read from the archive through the DAL, or given as
arrays) the feed makes the on-board packet stream (`isdc.telemetry.packets.encode_scw`:
START mark, event and HK packets by OBT, END mark; sequence counts continue from ScW to
ScW), injects the faults of real transmission if asked, cuts the stream into chunks of
`chunk_seconds` of on-board time and writes them into the inbox (`isdc.dal.inbox`) at
`speed` x real time (0 = as fast as possible).

Fault model (`FaultSpec`; every choice comes from one seeded generator):

- gaps      fraction of packets lost, in runs of geometric length (mean `gap_run` packets)
- dups      fraction of packets delivered twice (the copy up to `max_delay` packets later)
- corrupt   fraction of packets with one bit flipped (the CRC-16 always detects it)
- disorder  fraction of packets delivered late, 1..`max_delay` packet slots after their turn
- truncate  fraction of chunk files cut short inside a packet (as by an interrupted transfer)

A packet suffers at most one of gaps/dups/corrupt/disorder. The `FaultLog` then counts,
from what was really delivered, exactly what the reassembly must find per ScW and data
APID: packets lost (dropped, corrupted, or cut off by a truncation), duplicate copies,
packets arriving after a later one of their APID, corrupt packets; and the marks lost.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from isdc.dal.archive import Archive, read_scw_info
from isdc.dal.inbox import CHUNK_HEADER_SIZE, ChunkName, Inbox, encode_chunk
from isdc.dal.products import open_product
from isdc.ids import Revolution, ScwId, Version
from isdc.sim.writer import EVENTS_FILE, HK_FILE
from isdc.telemetry.packets import (
    APID_NAMES,
    APID_SCW,
    DATA_APIDS,
    FRAME_TICKS,
    PACKET_SIZE,
    SEQ_MODULO,
    encode_scw,
    parse_headers,
)

log = logging.getLogger(__name__)

__all__ = ["FeedError", "FaultSpec", "ScwData", "FaultLog", "FeedResult", "read_scw_data", "archive_scws",
           "packet_stream", "emit"]


class FeedError(ValueError):
    """Bad feed options, or a ScW that cannot be emitted."""


@dataclass(frozen=True)
class FaultSpec:
    """Transmission faults to inject (fractions of packets, or of chunks for `truncate`)."""

    gaps: float = 0.0
    dups: float = 0.0
    corrupt: float = 0.0
    disorder: float = 0.0
    truncate: float = 0.0
    gap_run: float = 5.0
    """Mean length of a run of lost packets."""
    max_delay: int = 40
    """Largest delay (packet slots) of a late packet or a duplicate copy."""

    def __post_init__(self):
        for k in ("gaps", "dups", "corrupt", "disorder", "truncate"):
            v = getattr(self, k)
            if not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise FeedError(f"fault {k} must be a fraction in [0, 1), got {v!r}")
        if self.gaps + self.dups + self.corrupt + self.disorder >= 1.0:
            raise FeedError("the packet fault fractions gaps + dups + corrupt + disorder must add up to less than 1")
        if not self.gap_run >= 1.0:
            raise FeedError(f"gap_run must be >= 1 packet, got {self.gap_run!r}")
        if not isinstance(self.max_delay, int) or self.max_delay < 1:
            raise FeedError(f"max_delay must be an integer >= 1, got {self.max_delay!r}")

    @classmethod
    def parse(cls, text: str | None) -> "FaultSpec":
        """'gaps=0.01,dups=0.01,corrupt=0.001,disorder=0.02,truncate=0.01' (any subset; '' = none)."""
        if text is None or not text.strip():
            return cls()
        known = {f for f in cls.__dataclass_fields__}
        values: dict = {}
        for part in text.split(","):
            key, sep, val = part.partition("=")
            key = key.strip()
            if not sep or key not in known:
                raise FeedError(f"fault {part.strip()!r}: expected NAME=VALUE with NAME one of {', '.join(sorted(known))}")
            if key in values:
                raise FeedError(f"fault {key} given twice")
            try:
                values[key] = int(val) if key == "max_delay" else float(val)
            except ValueError:
                raise FeedError(f"fault {key}: {val.strip()!r} is not a number") from None
            if key != "max_delay" and not math.isfinite(values[key]):
                raise FeedError(f"fault {key} must be finite")
        return cls(**values)

    @property
    def any(self) -> bool:
        return any((self.gaps, self.dups, self.corrupt, self.disorder, self.truncate))


@dataclass(frozen=True)
class ScwData:
    """One ScW to emit: its 12-digit id, OBT range [obt_start, obt_end), ISGR-EVTS-ALL and
    ISGR-HK..-CNV columns (TIME columns are not needed: telemetry carries OBT)."""

    swid: str
    obt_start: int
    obt_end: int
    events: dict
    hk: dict


def read_scw_data(archive: Archive, scw: ScwId) -> ScwData:
    """A ScW's raw data from the archive (swg.fits keywords, isgri_events.fits, isgri_hk.fits)."""
    info = read_scw_info(archive, scw)
    if info.obtstart is None or info.obtend is None:
        raise FeedError(f"ScW {scw}: swg.fits has no OBTSTART/OBTEND: its packets cannot be time-stamped")
    folder = archive.scw_dir(scw)
    events = open_product(folder / EVENTS_FILE).table("ISGR-EVTS-ALL").columns
    hk = open_product(folder / HK_FILE).table("ISGR-HK..-CNV").columns
    return ScwData(scw.swid, info.obtstart, info.obtend, events, hk)


def archive_scws(archive: Archive, revolution: Revolution | int, version: Version | int | None = None) -> list[ScwId]:
    """The ScWs of a revolution in the archive, of `version` (default: the highest present), by OBT."""
    rev = Revolution.parse(revolution)
    scws = archive.scws(rev)
    if version is None:
        if not scws:
            raise FeedError(f"archive {archive.root}: no science windows in revolution {rev}")
        version = max(s.version for s in scws)
    version = Version.parse(version)
    chosen = [s for s in scws if s.version == version]
    if not chosen:
        have = sorted({str(s.version) for s in scws})
        raise FeedError(f"archive {archive.root}: no science windows of version {version} in revolution {rev}"
                        + (f" (versions present: {', '.join(have)})" if have else ""))
    return sorted(chosen, key=lambda s: (read_scw_info(archive, s).obtstart or 0, s))


# --------------------------------------------------------------------------- the packet stream

def packet_stream(scws: Iterable[ScwData], counters: dict[int, int]) -> Iterator[tuple[ScwData, np.ndarray]]:
    """(ScW, its packets in on-board order) for each ScW; `counters` (next count per APID) is updated."""
    last_end = None
    for s in scws:
        if last_end is not None and s.obt_start < last_end:
            raise FeedError(f"ScW {s.swid} starts at OBT {s.obt_start}, before the previous one ends ({last_end}): "
                            "ScWs must be emitted in on-board time order")
        try:
            packets, new = encode_scw(s.swid, s.obt_start, s.obt_end, s.events, s.hk, counters)
        except ValueError as exc:
            raise FeedError(f"ScW {s.swid}: {exc}") from exc
        counters.clear()
        counters.update(new)
        last_end = s.obt_end
        yield s, packets


# --------------------------------------------------------------------------- fault log

@dataclass
class FaultLog:
    """What the feed did and what the reassembly must therefore find.

    per_scw[swid][APID name] = {lost, duplicates, out_of_order, corrupt}: the data APIDs
    of each ScW, by the definitions of `isdc.telemetry.reassembly`; marks_lost[swid] =
    ScW marks (START/END) of the ScW lost; totals of every injected fault.
    """

    per_scw: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    marks_lost: dict[str, int] = field(default_factory=dict)
    packets: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    corrupted: int = 0
    delayed: int = 0
    truncated_chunks: int = 0
    truncated_packets: int = 0
    """Packets lost to truncations, the partial one included."""
    corrupt_delivered: int = 0
    """Corrupted packets that reached the inbox (not cut off by a truncation): the CRC failures to find."""
    chunks: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FeedResult:
    chunks: list[ChunkName]
    log: FaultLog
    scws: list[str]


class _Emitter:
    """Streaming fault injection, chunking and truth keeping over the whole revolution."""

    def __init__(self, faults: FaultSpec, rng: np.random.Generator, chunk_ticks: int):
        self.f, self.rng, self.chunk_ticks = faults, rng, int(chunk_ticks)
        self.base = 0              # global index of the next original packet
        self.carry: list[tuple[float, int, bytes]] = []  # (key, global index, bytes) not yet due
        self.obt = np.zeros(0, np.int64)  # OBT of every original packet (global index)
        self.apid = np.zeros(0, np.int64)
        self.scw_of = np.zeros(0, np.int64)
        self.swids: list[str] = []
        self.valid_copies: list[tuple[int, int]] = []  # (global index, arrival number) of valid deliveries
        self.corrupt: set[int] = set()  # global indices of the packets corrupted
        self.corrupt_delivered: list[int] = []
        self.arrival = 0
        self.log = FaultLog()
        self.t0: int | None = None
        self.open_chunk: int | None = None
        self.open_items: list[tuple[int, bytes, bool]] = []  # (global index, bytes, valid)

    def add_scw(self, s: ScwData, packets: np.ndarray) -> list[tuple[int, list]]:
        """Inject faults into one ScW's packets; return the chunks that became complete."""
        n = packets.shape[0]
        h = parse_headers(packets)
        g = self.base + np.arange(n)
        self.obt = np.r_[self.obt, h.obt.astype(np.int64)]
        self.apid = np.r_[self.apid, h.apid]
        self.scw_of = np.r_[self.scw_of, np.full(n, len(self.swids))]
        self.swids.append(s.swid)
        if self.t0 is None:
            self.t0 = int(h.obt[0]) if n else s.obt_start
        f, rng = self.f, self.rng
        # gaps: runs of geometric length starting at random packets
        lost = np.zeros(n, bool)
        if f.gaps and n:
            runs = rng.binomial(n, f.gaps / f.gap_run)
            starts = rng.integers(0, n, runs)
            lens = rng.geometric(1.0 / f.gap_run, runs)
            for a, k in zip(starts, lens):
                lost[a:a + k] = True
        # one fault per packet: duplicates, corruptions and delays are disjoint sets of survivors
        alive = np.flatnonzero(~lost)
        pick = rng.permutation(alive)
        k_dup, k_cor, k_del = (int(rng.binomial(n, p)) for p in (f.dups, f.corrupt, f.disorder))
        dup = pick[:k_dup]
        cor = pick[k_dup:k_dup + k_cor]
        dly = pick[k_dup + k_cor:k_dup + k_cor + k_del]
        keys = g.astype(np.float64)
        keys[dly] += rng.integers(1, f.max_delay + 1, dly.size) + 0.5
        data = {int(i): packets[i].tobytes() for i in alive}
        for i in cor:  # flip one bit anywhere in the packet: a single-bit error, always caught by the CRC
            pos = int(rng.integers(PACKET_SIZE * 8))
            b = bytearray(data[int(i)])
            b[pos // 8] ^= 1 << (pos % 8)
            data[int(i)] = bytes(b)
            self.corrupt.add(int(g[i]))
        items = [(float(keys[i]), int(g[i]), data[int(i)]) for i in alive]
        items += [(float(keys[i]) + int(rng.integers(0, f.max_delay + 1)) + 0.25, int(g[i]), data[int(i)]) for i in dup]
        self.log.packets += n
        self.log.dropped += int(lost.sum())
        self.log.duplicated += int(dup.size)
        self.log.corrupted += int(cor.size)
        self.log.delayed += int(dly.size)
        self.base += n
        self.carry.extend(items)
        return self._release(self.base)

    def _release(self, limit: float) -> list[tuple[int, list]]:
        """Deliver every item with key < limit (all of them for limit = inf), in key order."""
        self.carry.sort(key=lambda t: t[0])
        cut = next((k for k, t in enumerate(self.carry) if t[0] >= limit), len(self.carry))
        due, self.carry = self.carry[:cut], self.carry[cut:]
        done = []
        for key, gi, data in due:
            slot = min(int(key), self.obt.size - 1)
            chunk = (int(self.obt[slot]) - self.t0) // self.chunk_ticks
            if self.open_chunk is not None and chunk != self.open_chunk:
                done.append((self.open_chunk, self.open_items))
                self.open_items = []
            self.open_chunk = chunk
            self.open_items.append((gi, data, gi not in self.corrupt))
        return done

    def finish(self) -> list[tuple[int, list]]:
        done = self._release(math.inf)
        if self.open_items:
            done.append((self.open_chunk, self.open_items))
            self.open_items = []
        return done

    def chunk_bytes(self, items: list) -> bytes:
        """Encode a chunk (maybe truncated) and record which packets were delivered valid."""
        raw = encode_chunk(b"".join(d for _, d, _ in items))
        n = len(items)
        keep = n
        if self.f.truncate and n and self.rng.random() < self.f.truncate:
            cut = int(self.rng.integers(0, n * PACKET_SIZE))
            if cut % PACKET_SIZE == 0:
                cut += 1 + int(self.rng.integers(PACKET_SIZE - 1))  # always inside a packet
            raw = raw[:CHUNK_HEADER_SIZE + cut]
            keep = cut // PACKET_SIZE
            self.log.truncated_chunks += 1
            self.log.truncated_packets += n - keep
        for gi, _, valid in items[:keep]:
            if valid:
                self.valid_copies.append((gi, self.arrival))
            else:
                self.corrupt_delivered.append(gi)
            self.arrival += 1
        self.arrival += n - keep  # the partial and cut packets still count as arrivals
        self.log.delivered += keep
        self.log.chunks += 1
        return raw

    def truth(self) -> FaultLog:
        """Per ScW and data APID: lost, duplicates, out of order, corrupt; marks lost."""
        lg = self.log
        lg.corrupt_delivered = len(self.corrupt_delivered)
        n = self.obt.size
        if self.valid_copies:
            gi, arr = np.array(self.valid_copies, dtype=np.int64).T
        else:
            gi = arr = np.zeros(0, np.int64)
        copies = np.bincount(gi, minlength=n)
        first = np.full(n, np.iinfo(np.int64).max)
        np.minimum.at(first, gi, arr)
        corrupt = np.bincount(np.asarray(self.corrupt_delivered, dtype=np.int64), minlength=n)
        # late: arrived after a packet of the same APID with a higher count (later original index)
        late = np.zeros(n, bool)
        for apid in np.unique(self.apid):
            idx = np.flatnonzero((self.apid == apid) & (copies > 0))
            a = first[idx]
            tail = np.r_[np.minimum.accumulate(a[::-1])[::-1][1:], np.iinfo(np.int64).max]
            late[idx[a > tail]] = True
        for k, swid in enumerate(self.swids):
            in_scw = self.scw_of == k
            lg.per_scw[swid] = {}
            for apid in DATA_APIDS:
                m = in_scw & (self.apid == apid)
                lg.per_scw[swid][APID_NAMES[apid]] = {
                    "lost": int((copies[m] == 0).sum()),
                    "duplicates": int(np.clip(copies[m] - 1, 0, None).sum()),
                    "out_of_order": int(late[m].sum()),
                    "corrupt": int(corrupt[m].sum()),
                }
            lg.marks_lost[swid] = int((copies[in_scw & (self.apid == APID_SCW)] == 0).sum())
        return lg


def emit(scws: Iterable[ScwData], inbox: Inbox, revolution: Revolution | int, *, faults: FaultSpec = FaultSpec(),
         seed: int = 0, speed: float = 0.0, chunk_seconds: float = 4.0, durable: bool = True,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
         progress: Callable[[str], None] | None = None) -> FeedResult:
    """Emit ScWs (in on-board time order) as telemetry chunks into `inbox`.

    revolution : names the chunks (`TM_RRRR_NNNNNN.pkt`, numbers after those already used).
    faults, seed : fault injection (the seed also sets the first sequence counts, so counters
    wrap somewhere in the stream). speed : telemetry seconds per wall-clock second (0 = as
    fast as possible): a chunk is written once the on-board time at its end has elapsed,
    scaled. chunk_seconds : on-board time per chunk. clock/sleep : injectable for tests.
    Returns the chunk names written, the fault log (the truth) and the ScW ids.
    """
    if not speed >= 0 or not math.isfinite(speed):
        raise FeedError(f"speed must be >= 0 (0 = as fast as possible), got {speed!r}")
    if not chunk_seconds > 0 or not math.isfinite(chunk_seconds):
        raise FeedError(f"chunk_seconds must be > 0, got {chunk_seconds!r}")
    rev = Revolution.parse(revolution)
    rng = np.random.default_rng([int(seed), rev.number, 7010])
    counters = {a: int(rng.integers(SEQ_MODULO)) for a in (*DATA_APIDS, APID_SCW)}
    chunk_ticks = max(1, int(round(chunk_seconds * FRAME_TICKS)))
    em = _Emitter(faults, rng, chunk_ticks)
    names: list[ChunkName] = []
    wall0 = clock()
    number = inbox.next_name(rev).number

    def write(done):
        nonlocal number
        for chunk, items in done:
            if speed > 0:
                due = wall0 + (chunk + 1) * chunk_ticks / FRAME_TICKS / speed
                wait = due - clock()
                if wait > 0:
                    sleep(wait)
            name = ChunkName(rev, number)
            inbox.write(name, em.chunk_bytes(items), durable=durable)
            names.append(name)
            number += 1

    swids = []
    for s, packets in packet_stream(scws, counters):
        write(em.add_scw(s, packets))
        swids.append(s.swid)
        if progress is not None:
            progress(f"ScW {s.swid}: {packets.shape[0]} packets, {len(names)} chunks written so far")
    write(em.finish())
    return FeedResult(names, em.truth(), swids)
