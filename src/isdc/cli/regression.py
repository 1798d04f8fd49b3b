"""`isdc-run regression`: the nightly regression build (see isdc.pipeline.regression)."""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ORDER = 80


def register(sub):
    p = sub.add_parser("regression", help="process the committed sample through NRT, CONS and OSA and compare "
                                          "every product with the committed references",
                       description="The regression build: a fresh copy of test_data/sim through the nrt, cons "
                                   "and osa configurations; every product compared (headers without dates and "
                                   "provenance, data within the tolerances of regression/tolerances.yaml) with "
                                   "regression/reference/. Writes report.txt and report.html; exit 1 on any "
                                   "unexplained change. --bless makes this run's products the references.")
    p.add_argument("--bless", action="store_true", help="replace the references by this run's products (after review)")
    p.add_argument("--quick", action="store_true", help="only the first pointing (its ScW products), for CI")
    p.add_argument("--work", type=Path, help="work folder (default: a temporary one, removed afterwards)")
    p.add_argument("--report", type=Path, default=Path("regression-report"), help="report folder "
                   "(default ./regression-report)")
    p.add_argument("--references", type=Path, help="reference folder (default: regression/reference of the checkout)")
    p.set_defaults(func=run)


def run(args) -> int:
    from isdc.pipeline.regression import bless, check, checkout_paths, first_pointing, run_streams, write_report

    t0 = time.perf_counter()
    try:
        sample, reg = checkout_paths()
    except FileNotFoundError as exc:
        print(f"isdc-run regression: {exc}", file=sys.stderr)
        return 1
    refs = args.references or reg / "reference"
    if args.bless and args.quick:
        print("isdc-run regression: --bless needs the full build, not --quick", file=sys.stderr)
        return 2
    tmp = None
    work = args.work
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="isdc_regression_")
        work = Path(tmp.name)
    try:
        print(f"regression build of {sample} ({'quick' if args.quick else 'full'}) in {work}")
        try:
            outs = run_streams(work, sample, quick=args.quick)
        except RuntimeError as exc:
            print(f"isdc-run regression: a stream failed: {exc}", file=sys.stderr)
            return 1
        if args.bless:
            n = bless(outs, refs)
            print(f"blessed {n} reference products into {refs} ({time.perf_counter() - t0:.0f} s)")
            return 0
        quick = {str(first_pointing(work / "archive"))} if args.quick else None
        rep = check(outs, refs, reg / "tolerances.yaml", quick)
        rep.seconds = time.perf_counter() - t0
        txt, htm = write_report(rep, args.report)
        print(rep.text())
        print(f"report: {txt}, {htm}")
        return 0 if rep.ok else 1
    finally:
        if tmp is not None:
            tmp.cleanup()
