"""Telemetry packets: encode and decode a ScW's events, against a numpy copy of the same bytes.

A 2000 s ISGRI ScW has ~1e6 events (~16 000 event packets of 402 bytes, 6.6 MB). The NRT
input (inbox chunk -> packets -> events) and the feed (events -> packets) must each take
well under a second per ScW.

Measured in the same run (median of N repeats), for N_EVENTS events over 2000 s + 250 HK
cycles:
- floor: `packets.copy()` of the packet bytes (the least any pass over them costs);
- `crc16_ccitt` over every packet (two bytes per step, table of 65536);
- encode: `encode_event_payloads` + `build_packets` (headers, CRC);
- `encode_scw`: the whole ScW (START mark, events, HK, END mark, merged by OBT);
- decode: `parse_headers` + `check_headers` + `check_event_payloads` + `decode_event_payloads`;
- `Reassembler.add` + `assemble` of the ScW's stream: in order, and shuffled with 1%
  duplicates (dedupe, unwrap, disorder accounting);
- the file path: `emit` into an inbox (4 s chunks, no fsync) and reading every chunk back
  into a `Reassembler` and assembling (page cache: software, not disk).

Prints time, MB/s of packet bytes, events/s and the ratio to the floor; PASS/FAIL (exit 1)
for encode_scw and add+assemble (in order) each < BUDGET s.

Run: .venv/bin/python benchmarks/bench_telemetry.py [N_EVENTS] [--repeat N]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from bench_fits_io import median_time  # the benchmarks' shared timer (this folder)

from isdc.dal.inbox import Inbox
from isdc.sim.feed import ScwData, emit
from isdc.telemetry.packets import (APID_ISGRI_EVENTS, FRAME_TICKS, build_packets, check_event_payloads,
                                    check_headers, crc16_ccitt, decode_event_payloads, encode_event_payloads,
                                    encode_scw, parse_headers)
from isdc.telemetry.reassembly import Reassembler

BUDGET = 0.5
"""Seconds encode_scw and reassembly may each take for the ScW's events."""
SECONDS = 2000.0
OBT0 = 213629501702144


def scw_data(n: int) -> ScwData:
    rng = np.random.default_rng(0)
    obt = OBT0 + np.sort(rng.integers(0, int(SECONDS * 2**14), n)) * 64
    ev = {"OB_TIME": obt, "ISGRI_PHA": rng.integers(0, 2048, n).astype(np.int16),
          "RISE_TIME": rng.integers(0, 256, n).astype(np.int16), "ISGRI_Y": rng.integers(0, 128, n).astype(np.uint8),
          "ISGRI_Z": rng.integers(0, 128, n).astype(np.uint8)}
    m = int(SECONDS // 8)
    hk = {"OB_TIME": OBT0 + np.arange(m) * 8 * FRAME_TICKS, "CYCLE_LEN": np.full(m, 8.0, np.float32),
          "MDU_TEMP": rng.normal(0, 1, (m, 8)).astype(np.float32),
          "BIAS_V": rng.normal(-100, 0.2, (m, 8)).astype(np.float32),
          **{k: rng.integers(0, 10**5, (m, 8)).astype(np.int32) for k in ("TRIG_CNT", "VETO_CNT", "VETO_STB")}}
    return ScwData("066500230010", OBT0, OBT0 + int(SECONDS * FRAME_TICKS), ev, hk)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("n", nargs="?", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    n, rep = a.n, a.repeat
    s = scw_data(n)
    ev = s.events
    obt, items, pl = encode_event_payloads(ev)
    packets = build_packets(APID_ISGRI_EVENTS, 0, obt, items, pl)
    stream, _ = encode_scw(s.swid, s.obt_start, s.obt_end, ev, s.hk)
    mb = packets.nbytes / 1e6

    def decode():
        h = parse_headers(packets)
        check_headers(h)
        check_event_payloads(packets, h.items)
        return decode_event_payloads(packets, h.obt.astype(np.int64), h.items)

    out = decode()
    assert all(np.array_equal(out[k], ev[k]) for k in ev), "decode(encode(x)) != x"

    def reassemble(data):
        r = Reassembler()
        r.add(data)
        t = r.assemble(s.swid)
        assert len(t.events["OB_TIME"]) == n and t.report.complete
        return t

    rng = np.random.default_rng(1)
    extra = rng.choice(len(stream), len(stream) // 100)
    shuffled = np.concatenate([stream, stream[extra]])[rng.permutation(len(stream) + extra.size)]
    with tempfile.TemporaryDirectory() as d:
        folders = iter(range(10**6))

        def feed():
            ib = Inbox(Path(d) / f"inbox{next(folders)}")
            emit([s], ib, 665, durable=False)
            return ib

        ib = feed()

        def read_back():
            r = Reassembler()
            for name in ib.pending():
                r.add(ib.read(name).data, str(name))
            return r.assemble(s.swid)

        assert len(read_back().events["OB_TIME"]) == n
        floor = median_time(lambda: packets.copy(), rep)
        rows = [
            ("floor: packets.copy()", floor),
            ("crc16_ccitt (all event packets)", median_time(lambda: crc16_ccitt(packets), rep)),
            ("encode: payloads + build_packets", median_time(
                lambda: build_packets(APID_ISGRI_EVENTS, 0, *encode_event_payloads(ev)), rep)),
            ("encode_scw (events + HK + marks)", median_time(
                lambda: encode_scw(s.swid, s.obt_start, s.obt_end, ev, s.hk), rep)),
            ("decode: headers + checks + events", median_time(decode, rep)),
            ("Reassembler add + assemble, in order", median_time(lambda: reassemble(stream), rep)),
            ("... shuffled, 1% duplicates", median_time(lambda: reassemble(shuffled), rep)),
            ("emit into inbox (4 s chunks, no fsync)", median_time(feed, max(1, rep // 2))),
            ("read inbox chunks + reassemble", median_time(read_back, max(1, rep // 2))),
        ]
    print(f"{n:.3g} events in {len(packets)} event packets ({mb:.1f} MB), {len(stream)} packets in the ScW; "
          f"median of {rep}")
    print(f"{'step':40s} {'time':>9s} {'MB/s':>7s} {'Mevents/s':>10s} {'x floor':>8s}")
    res = {}
    for name, t in rows:
        res[name] = t
        print(f"{name:40s} {t * 1e3:7.1f} ms {mb / t:7.0f} {n / t / 1e6:10.2f} {t / floor:8.1f}")
    ok = True
    for name in ("encode_scw (events + HK + marks)", "Reassembler add + assemble, in order"):
        good = res[name] < BUDGET
        ok &= good
        print(f"{'PASS' if good else 'FAIL'}: {name} {res[name]:.3f} s < {BUDGET} s for {n:.3g} events")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
