"""`isdc-run osa`: offline scientific analysis of any set of ScWs."""
from __future__ import annotations

import sys
from pathlib import Path

from isdc.dal.archive import ArchiveError
from isdc.dal.fitsfile import FitsError
from isdc.ids import IdError, ScwId, safe_name
from isdc.pipeline.config import ConfigError, load_config
from isdc.time import isot_to_ijd

ORDER = 20


def add_run_options(p, stream: str) -> None:
    """Options shared by the analysis commands (osa, cons)."""
    p.add_argument("--config", type=Path, help="user configuration file (YAML) over pipelines/%s.yaml" % stream)
    p.add_argument("--levels", help="ScW levels: a range COR..IMA or a list COR,GTI,BIN")
    p.add_argument("--bands", help="ISGRI energy bands in keV, e.g. 20-40,40-100 (edges multiples of 0.5)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one configuration option, e.g. isgri.ima.detection_threshold=7 (repeatable)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--scheduler-host", help="share the build through luigid at this host (default: local scheduler)")
    p.add_argument("--scheduler-port", type=int, default=8082, help="luigid port (default 8082)")
    p.add_argument("--no-progress", action="store_true", help="no progress line")


def effective_config(args, stream: str) -> dict:
    overrides = {}
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: write KEY=VALUE")
        k, v = item.split("=", 1)
        overrides[k.strip()] = v.strip()
    if args.levels:
        overrides["levels"] = args.levels
    if args.bands:
        overrides["isgri.bands"] = args.bands
    return load_config(stream, args.config, overrides)


def _time(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return float(isot_to_ijd(text, scale="utc"))


def register(sub):
    p = sub.add_parser("osa", help="analyse any set of ScWs (offline scientific analysis)",
                       description="Run the ISGRI analysis (COR..LCR and observation mosaics) on ScWs chosen by "
                                   "ID, list, revolution, time range or sky position. Resumable: a rerun does only "
                                   "what is missing or stale. Exit code 0 only if everything asked for was made.")
    p.add_argument("--archive", type=Path, required=True, help="archive root (input data, IC files, indexes)")
    p.add_argument("--out", type=Path, required=True, help="output folder of this analysis")
    sel = p.add_argument_group("ScW selection (one or more; explicit IDs win)")
    sel.add_argument("--scw", nargs="+", default=[], metavar="ID", help="ScW IDs RRRRPPPPSSSF.VVV")
    sel.add_argument("--scw-list", type=Path, help="file with one ScW ID per line ('#' comments)")
    sel.add_argument("--revolution", type=int, help="every pointing of this revolution")
    sel.add_argument("--tstart", help="start of a time range (IJD or ISO UTC)")
    sel.add_argument("--tstop", help="end of a time range (IJD or ISO UTC)")
    sel.add_argument("--ra", type=float, help="sky position RA (deg) for a cone selection")
    sel.add_argument("--dec", type=float, help="sky position Dec (deg)")
    sel.add_argument("--radius", type=float, help="cone radius (deg) around RA/Dec for the pointing axis")
    sel.add_argument("--version", help="data version 000 (NRT) or 001 (CONS); default: the latest of each ScW")
    p.add_argument("--group", default="osa", help="observation group name for mosaics (default 'osa')")
    add_run_options(p, "osa")
    p.set_defaults(func=run)


def run(args) -> int:
    from isdc.pipeline.graph import run_analysis, select_run_scws, summary_text

    try:
        config = effective_config(args, "osa")
        ids = list(args.scw)
        if args.scw_list:
            for line in args.scw_list.read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    ids.append(line)
        for s in ids:
            ScwId.parse(s)  # fail early, naming the bad ID
        safe_name(args.group, "observation group name")  # before the build, not after every ScW is done
        if not ids and all(v is None for v in (args.revolution, args.tstart, args.tstop, args.ra)):
            print("isdc-run osa: choose ScWs with --scw, --scw-list, --revolution, --tstart/--tstop or "
                  "--ra/--dec/--radius", file=sys.stderr)
            return 2
        scws = select_run_scws(str(args.archive), scw_ids=ids, revolution=args.revolution,
                               tstart=_time(args.tstart), tstop=_time(args.tstop), ra=args.ra, dec=args.dec,
                               radius=args.radius, version=int(args.version) if args.version else None)
        if not scws:
            print("isdc-run osa: no ScW matches the selection", file=sys.stderr)
            return 1
        print(f"{len(scws)} ScW(s), levels {','.join(config['levels'])}, bands "
              f"{', '.join(f'{a:g}-{b:g}' for a, b in config['isgri']['bands'])} keV -> {args.out}")
        report, rows = run_analysis(str(args.archive), str(args.out), scws, config, groups={args.group: scws},
                                    workers=args.workers, scheduler_host=args.scheduler_host,
                                    scheduler_port=args.scheduler_port, progress=not args.no_progress)
    except (ConfigError, IdError, ArchiveError, FitsError, OSError, ValueError) as exc:
        print(f"isdc-run osa: {exc}", file=sys.stderr)
        return 1
    print(summary_text(rows))
    if not report.ok:
        print(report.summary(), file=sys.stderr)
    return report.exit_code
