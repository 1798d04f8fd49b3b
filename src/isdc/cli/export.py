"""`isdc-run export`: copy what is public at a date out of an archive, for the public."""
from __future__ import annotations

import sys
from pathlib import Path

ORDER = 50


def register(sub):
    p = sub.add_parser("export", help="export the public part of an archive (raw data and results) to a folder",
                       description="Copy into a new folder, laid out like the archive, the data that are public at "
                                   "a date: the raw data of ScWs whose proprietary period has ended (idx/rights/; "
                                   "ScWs without rights are public), their analysis results, observation products "
                                   "all of whose ScWs are public, aux data without private pointings, calibration "
                                   "and catalogue; the ScW and results indexes rebuilt over what was exported; a "
                                   "listing SHA256SUMS and export.json. No file naming a private ScW is exported. "
                                   "Exporting again into the folder (a later date) updates it.")
    p.add_argument("--archive", type=Path, required=True, metavar="DIR", help="archive root")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="export folder (new, or an earlier export); not inside the archive")
    p.add_argument("--at", metavar="DATE",
                   help="public at this date: IJD (days, TT) or ISO UTC 2009-01-01T00:00:00 (default: now)")
    p.add_argument("--link", action="store_true",
                   help="hard-link unchanged files instead of copying them (same file system only)")
    p.set_defaults(func=run)


def _at(text: str | None) -> float:
    from astropy.time import Time

    from isdc.time import isot_to_ijd, time_to_ijd

    if text is None:
        return float(time_to_ijd(Time.now()))
    try:
        return float(text)
    except ValueError:
        return float(isot_to_ijd(text, scale="utc"))


def run(args) -> int:
    from isdc.dal.archive import ArchiveError
    from isdc.dal.fitsfile import FitsError
    from isdc.dal.rights import RightsError, export_public
    from isdc.ids import IdError

    try:
        at = _at(args.at)
        if not args.archive.is_dir():
            raise ArchiveError(f"archive {args.archive} is not a folder")
        report = export_public(args.archive, args.out, at, link=args.link)
    except (ArchiveError, RightsError, FitsError, IdError, ValueError, OSError) as exc:
        print(f"isdc-run export: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0
