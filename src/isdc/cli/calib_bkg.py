"""`isdc-run calib-bkg`: build the ISGRI background maps (ISGR-BKG.-MOD) from empty fields."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ORDER = 60


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "calib-bkg",
        help="build the ISGRI background maps (IC ISGR-BKG.-MOD) by stacking empty-field science windows",
        description="The ISGRI background calibration procedure: run COR..BIN on every pointing of the given "
        "archives of empty-field science windows with the IC energy slices as bands, stack the shadowgrams "
        "(sum of counts / sum of efficiency x ONTIME per pixel and slice) and write an ISGR-BKG.-MOD IC file. "
        "Install it in an archive's ic/isgri/ and rebuild its IC index (docs/isgri.md).",
    )
    p.add_argument("--archive", required=True, type=Path, action="append", metavar="DIR",
                   help="archive of empty-field science windows (repeat for several)")
    p.add_argument("--workdir", required=True, type=Path, metavar="DIR", help="folder for the COR..BIN products")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="IC file to write")
    p.add_argument("--ic-version", type=int, default=1, metavar="N", help="VERSION of the IC file (default 1)")
    p.add_argument("--vstart", type=float, default=0.0, metavar="IJD", help="start of validity (default 0)")
    p.add_argument("--vstop", type=float, default=None, metavar="IJD", help="end of validity (default open)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="luigi workers (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from isdc.dal.fitsfile import FitsError
    from isdc.pipeline.isgri_scw import calibrate_background
    from isdc.sim.icfiles import VSTOP_OPEN

    t0 = time.perf_counter()
    history = ["Made by isdc-run calib-bkg (isdc.pipeline.isgri_scw.calibrate_background) from the pointings of "
               + ", ".join(a.name for a in args.archive) + "."]
    try:
        if args.ic_version < 1:
            raise ValueError(f"--ic-version must be >= 1, got {args.ic_version}")
        path, _ = calibrate_background(args.archive, args.workdir, args.out, version=args.ic_version,
                                       vstart=args.vstart, vstop=VSTOP_OPEN if args.vstop is None else args.vstop,
                                       workers=args.workers, history=history)
    except (FitsError, ValueError, RuntimeError, OSError) as exc:
        print(f"isdc-run calib-bkg: {exc}", file=sys.stderr)
        return 1
    from isdc.dal.fitsfile import read_fits

    t = read_fits(path).table("ISGR-BKG.-MOD")
    print(f"wrote {path}: {t.header['NSCW']} science windows, ONTIME {t.header['ONTIME']:.0f} s, "
          f"{len(t)} slices, in {time.perf_counter() - t0:.1f} s")
    return 0
