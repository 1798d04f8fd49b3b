"""`isdc-run feed`: emit a revolution of the archive as telemetry chunks into an inbox (NRT input)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from isdc.cli.simulate import _version  # the same VVV argument type

ORDER = 15


def _faults(text: str):
    from isdc.sim.feed import FaultSpec, FeedError

    try:
        return FaultSpec.parse(text)
    except FeedError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "feed",
        help="emit a revolution's raw data as CCSDS-style telemetry chunks into an inbox, optionally with faults",
        description="Read the science windows of one revolution from the archive (isgri_events.fits, "
        "isgri_hk.fits, swg.fits OBTSTART/OBTEND), turn them into telemetry packets (ScW START/END marks, ISGRI "
        "event and HK packets with per-APID sequence counts, CRC-16) in on-board time order, and write them "
        "into the inbox as chunk files TM_RRRR_NNNNNN.pkt, atomically, at SPEED x real time, as a ground "
        "station would; the NRT daemon decodes them. Faults of real transmission are injected on request. "
        "Packet layout, chunk format and fault model: docs/telemetry.md.",
    )
    p.add_argument("--archive", required=True, type=Path, metavar="DIR", help="archive root to read")
    p.add_argument("--revolution", required=True, type=int, metavar="N", help="revolution number (0..9999)")
    p.add_argument("--inbox", required=True, type=Path, metavar="DIR", help="inbox folder (created if missing)")
    p.add_argument("--version", type=_version, default=None, metavar="VVV",
                   help="data version of the archive ScWs to emit, e.g. 000 or 001 (default: the highest present, "
                   "i.e. the complete set)")
    p.add_argument("--speed", type=float, default=0.0, metavar="X",
                   help="telemetry seconds per wall-clock second (default 0: as fast as possible)")
    p.add_argument("--faults", type=_faults, default=None, metavar="SPEC",
                   help="faults to inject, e.g. gaps=0.01,dups=0.01,corrupt=0.001,disorder=0.02,truncate=0.01 "
                   "(fractions of packets; truncate: of chunk files; also gap_run=PACKETS, max_delay=PACKETS)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed of the faults and counters (default 0)")
    p.add_argument("--chunk-seconds", type=float, default=4.0, metavar="SECONDS",
                   help="on-board time per chunk file (default 4 s)")
    p.add_argument("--truth", type=Path, metavar="FILE",
                   help="write the fault log (what the decoder must find, per ScW) as JSON to FILE")
    p.add_argument("--no-fsync", action="store_true", help="do not fsync each chunk (faster, not crash-safe)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from isdc.dal.archive import Archive, ArchiveError
    from isdc.dal.atomic import atomic_write_bytes
    from isdc.dal.fitsfile import FitsError
    from isdc.dal.inbox import Inbox, InboxError
    from isdc.dal.templates import TemplateError
    from isdc.ids import IdError, Revolution
    from isdc.sim.feed import FaultSpec, FeedError, archive_scws, emit, read_scw_data

    t0 = time.perf_counter()
    try:
        rev = Revolution.parse(args.revolution)
        if args.truth is not None and not args.truth.expanduser().resolve().parent.is_dir():
            raise FeedError(f"--truth {args.truth}: its folder does not exist")
        archive = Archive(args.archive)
        if not archive.root.is_dir():
            raise FeedError(f"archive {archive.root} does not exist")
        scws = archive_scws(archive, rev, args.version)
        inbox = Inbox(args.inbox)
        faults = args.faults or FaultSpec()
        result = emit((read_scw_data(archive, s) for s in scws), inbox, rev, faults=faults, seed=args.seed,
                      speed=args.speed, chunk_seconds=args.chunk_seconds, durable=not args.no_fsync,
                      progress=lambda msg: print(msg, flush=True))
        if args.truth is not None:
            atomic_write_bytes(args.truth, json.dumps(result.log.to_dict(), indent=1).encode())
    except (FeedError, ArchiveError, FitsError, TemplateError, InboxError, IdError, OSError, ValueError) as exc:
        print(f"isdc-run feed: {exc}", file=sys.stderr)
        return 1
    lg = result.log
    print(f"revolution {rev}: {len(result.scws)} ScWs, {lg.packets} packets, {lg.chunks} chunks "
          f"({result.chunks[0] if result.chunks else '-'} .. {result.chunks[-1] if result.chunks else '-'}) "
          f"into {inbox.root} in {time.perf_counter() - t0:.1f} s")
    if faults.any:
        print(f"faults: {lg.dropped} dropped, {lg.duplicated} duplicated, {lg.corrupted} corrupted, "
              f"{lg.delayed} delayed, {lg.truncated_chunks} chunks truncated ({lg.truncated_packets} packets cut)")
    return 0
