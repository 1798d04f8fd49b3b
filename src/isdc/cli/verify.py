"""`isdc-run verify PATH...`: check files, checksums, templates and groupings."""
from __future__ import annotations

import argparse

from isdc.dal.verify import verify

ORDER = 90


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "verify",
        help="verify FITS files and groupings (checksums, templates, members, back-pointers)",
        description="Verify FITS files and folders (walked for *.fits, *.fits.gz): readable FITS, "
        "DATASUM/CHECKSUM, template conformance, and every grouping table's members and "
        "back-pointers. Exit 0 when there is no error (warnings allowed), 1 otherwise.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="FITS file or folder to verify")
    p.add_argument("--root", metavar="DIR",
                   help="folder no member location may lead out of (default: the folder given, "
                   "or the folder of the file given)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not list the members of each grouping")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = verify(args.paths, root=args.root)
    print(report.text(members=not args.quiet))
    return 0 if report.ok else 1
