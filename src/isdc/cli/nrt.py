"""`isdc-run nrt`: the near-real-time daemon (telemetry in, raw data, quick-look, alerts out)."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from isdc.cli.simulate import _version  # the same VVV argument type

ORDER = 30


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "nrt", help="near-real-time daemon: decode telemetry from an inbox, quick-look each ScW, raise alerts",
        description="Ingest the telemetry chunks arriving in INBOX (isdc-run feed writes them) into the raw data "
                    "of each science window (version .000) with a record of lost, duplicated, disordered and "
                    "corrupt packets; run the IBAS-like burst trigger on open pointings; when a ScW closes, run "
                    "the NRT quick-look (pipelines/nrt.yaml) into obs/nrt.000/ of the archive; alert (JSON + "
                    "VOEvent 2.0 in the alerts folder, optionally POSTed) on bursts, new sources, flares and "
                    "operations problems. Stops cleanly on SIGTERM/SIGINT; a restart (even after kill -9) "
                    "resumes without losing or repeating work. State: ARCHIVE/nrt/; see docs/nrt.md and "
                    "isdc-run status.")
    p.add_argument("--inbox", required=True, type=Path, metavar="DIR", help="telemetry inbox (created if missing)")
    p.add_argument("--archive", required=True, type=Path, metavar="DIR", help="archive root")
    p.add_argument("--config", type=Path, metavar="FILE", help="configuration file (YAML) over pipelines/nrt.yaml; "
                   "its nrt: section sets the daemon (trigger, alerts, delivery)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one configuration option, e.g. nrt.trigger.alert_threshold=9 (repeatable)")
    p.add_argument("--alerts", type=Path, metavar="DIR", help="alerts folder (default ARCHIVE/nrt/alerts)")
    p.add_argument("--endpoint", metavar="URL", help="POST every alert (VOEvent) to this http(s) URL, with retries")
    p.add_argument("--aux-from", type=_version, metavar="VVV",
                   help="deliver a revolution's missing NRT auxiliary data (aux/adp/RRRR.000, revolution plan) "
                   "from this data version, e.g. 001 for a simulated archive")
    p.add_argument("--exit-when-idle", type=float, metavar="SECONDS",
                   help="exit once everything is processed and nothing arrived for SECONDS (default: run until "
                   "SIGTERM/SIGINT)")
    p.add_argument("--log", type=Path, metavar="FILE", help="append the structured log (JSON lines) to FILE "
                   "(default: standard error)")
    p.add_argument("--no-fsync", action="store_true", help="do not fsync writes (faster, not crash-safe)")
    p.set_defaults(func=run)


def _logging(path: Path | None) -> None:
    from isdc.nrt.logs import JsonFormatter

    handler = logging.FileHandler(path) if path is not None else logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("isdc.nrt", "isdc"):
        lg = logging.getLogger(name)
        lg.handlers = [handler]
        lg.setLevel(logging.INFO if name == "isdc.nrt" else logging.WARNING)
        lg.propagate = False


def run(args: argparse.Namespace) -> int:
    from isdc.dal.archive import ArchiveError
    from isdc.dal.inbox import InboxError
    from isdc.dal.nrtstate import StateError
    from isdc.ids import IdError
    import isdc.nrt.config  # noqa: F401  (declares the nrt section of the configuration)
    from isdc.cli.osa import effective_config
    from isdc.nrt.daemon import Daemon
    from isdc.pipeline.config import ConfigError

    try:
        extra = [f"nrt.alerts_dir={args.alerts}"] if args.alerts is not None else []
        extra += [f"nrt.endpoint={args.endpoint}"] if args.endpoint is not None else []
        config = effective_config(argparse.Namespace(set=list(args.set) + extra, levels=None, bands=None,
                                                     config=args.config), "nrt")
        if config["nrt"]["endpoint"] and not config["nrt"]["endpoint"].startswith(("http://", "https://")):
            raise ConfigError(f"alert endpoint {config['nrt']['endpoint']!r} is not an http(s) URL")
        _logging(args.log)
        daemon = Daemon(args.archive, args.inbox, config, durable=not args.no_fsync, aux_from=args.aux_from)
        daemon.start()
    except (ConfigError, ArchiveError, InboxError, StateError, IdError, OSError, ValueError) as exc:
        print(f"isdc-run nrt: {exc}", file=sys.stderr)
        return 1

    def _stop(signum, frame):
        daemon.stop()

    old = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        daemon.run(idle_exit_s=args.exit_when_idle)
    except Exception as exc:  # e.g. a full disk: stop with the inbox intact; a restart resumes
        logging.getLogger("isdc.nrt").exception("daemon_error: %s", exc)
        print(f"isdc-run nrt: stopped on an error (the inbox keeps every chunk not yet processed; "
              f"restart to resume): {exc}", file=sys.stderr)
        code = 1
    finally:
        daemon.close()
        for s, h in old.items():
            signal.signal(s, h)
    return code
