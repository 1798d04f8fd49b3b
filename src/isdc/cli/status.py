"""`isdc-run status`: what the NRT stream of an archive is doing (pending, running, done, failed,
quarantined ScWs, telemetry received, latencies, alerts)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ORDER = 35


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "status", help="status of the NRT stream of an archive: ScWs, telemetry, latencies, alerts",
        description="Read the NRT daemon's state (ARCHIVE/nrt/state.json) and alerts: whether a daemon runs on "
                    "the archive, the chunks waiting in its inbox, and per science window its status (receiving, "
                    "queued, running, done, failed, quarantined), the fraction of its telemetry received, lost, "
                    "duplicated, late and corrupt packets, the latency from its closing to its quick-look "
                    "products, and its alerts. Read-only; safe while the daemon runs.")
    p.add_argument("--archive", required=True, type=Path, metavar="DIR", help="archive root")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from isdc.dal.archive import Archive
    from isdc.dal.nrtstate import StateError, state_path
    from isdc.nrt.status import status_json, status_report, status_text

    archive = Archive(args.archive)
    if not archive.root.is_dir():
        print(f"isdc-run status: archive {archive.root} does not exist", file=sys.stderr)
        return 1
    if not state_path(archive).is_file():
        print(f"isdc-run status: {archive.root} has no NRT state ({state_path(archive)}): the NRT daemon "
              f"never ran on it", file=sys.stderr)
        return 1
    try:
        rep = status_report(archive)
    except (StateError, OSError) as exc:
        print(f"isdc-run status: {exc}", file=sys.stderr)
        return 1
    print(status_json(rep) if args.json else status_text(rep))
    return 0
