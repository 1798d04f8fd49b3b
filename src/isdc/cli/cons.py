"""`isdc-run cons`: the consolidated standard analysis of a revolution, ingested into the archive."""
from __future__ import annotations

import sys
from pathlib import Path

from isdc.cli.osa import add_run_options, effective_config
from isdc.dal.archive import ArchiveError
from isdc.dal.fitsfile import FitsError
from isdc.ids import IdError
from isdc.pipeline.config import ConfigError

ORDER = 25


def register(sub):
    p = sub.add_parser("cons", help="standard (consolidated) analysis of a revolution into the archive",
                       description="Every pointing of the revolution (data version .001) through the ScW levels, "
                                   "then the observations (mosaics, source lists); results go to "
                                   "obs/revRRRR.001/ in the archive and the results index is updated, so these "
                                   "products supersede the near-real-time ones of the same ScWs.")
    p.add_argument("--archive", type=Path, required=True, help="archive root")
    p.add_argument("--revolution", type=int, required=True, help="revolution number")
    add_run_options(p, "cons")
    p.set_defaults(func=run)


def run(args) -> int:
    from isdc.pipeline.graph import run_consolidated, summary_text

    try:
        config = effective_config(args, "cons")
        report, rows, outdir = run_consolidated(str(args.archive), args.revolution, config, workers=args.workers,
                                                scheduler_host=args.scheduler_host,
                                                scheduler_port=args.scheduler_port, progress=not args.no_progress)
    except (ConfigError, IdError, ArchiveError, FitsError, OSError, ValueError) as exc:
        print(f"isdc-run cons: {exc}", file=sys.stderr)
        return 1
    print(summary_text(rows))
    print(f"results in {outdir}")
    if not report.ok:
        print(report.summary(), file=sys.stderr)
    return report.exit_code
