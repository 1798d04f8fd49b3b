"""`isdc-run demo`: the main job on the embedded defaults, for a newcomer.

Simulates one revolution of a Crab-field observation (hexagonal dither) into a local
archive, runs the consolidated standard analysis of it with the local luigi scheduler,
and prints what was found: per-ScW summary, the observation's sources, and where the
sky images, mosaic, source lists, spectra and light curves are.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ORDER = 5


def register(sub):
    p = sub.add_parser("demo", help="simulate a revolution into a local archive and analyse it (the main job)",
                       description="Simulate one revolution of INTEGRAL observing the Crab field (hexagonal "
                                   "dither) into ARCHIVE, run the consolidated analysis (COR..LCR per ScW, then "
                                   "mosaic and source list of the observation) with a local luigi scheduler, "
                                   "and summarise what was found. Rerunning reuses what is already there.")
    p.add_argument("--archive", type=Path, default=Path("demo-archive"), help="archive folder (default ./demo-archive)")
    p.add_argument("--revolution", type=int, default=665, help="revolution (default 665, Crab season 2008)")
    p.add_argument("--pointings", type=int, default=7, help="pointings of the dither (default 7, a hexagon)")
    p.add_argument("--exposure", type=float, default=1800.0, help="seconds per pointing (default 1800)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    p.set_defaults(func=run)


def run(args) -> int:
    from isdc.dal.archive import Archive, ArchiveError
    from isdc.dal.fitsfile import FitsError, read_fits
    from isdc.ids import CONS, Revolution
    from isdc.pipeline.config import ConfigError, load_config
    from isdc.pipeline.graph import run_consolidated, summary_text
    from isdc.sim.plan import PlanError
    from isdc.sim.sky import Sky
    from isdc.sim.writer import simulate_revolution

    t0 = time.perf_counter()
    try:
        arch = Archive(args.archive) if args.archive.exists() else None
        rev = Revolution.parse(args.revolution)
        have = arch is not None and any(s.rev == rev and s.version == CONS for s in arch.scws())
        if have:
            print(f"revolution {rev} already in {args.archive}: analysing it")
        else:
            print(f"simulating revolution {rev}: {args.pointings} pointings of {args.exposure:g} s on the Crab "
                  f"field into {args.archive} ...", flush=True)
            result = simulate_revolution(args.archive, rev.number, n_pointings=args.pointings,
                                         exposure=args.exposure, sky=Sky.default(), seed=args.seed, version=CONS,
                                         pattern="hex", target="Crab")
            print(f"  {len(result.plans)} science windows, {sum(result.events.values())} events "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
        config = load_config("cons")
        print("analysing (consolidated standard analysis, local luigi scheduler) ...", flush=True)
        report, rows, outdir = run_consolidated(str(args.archive), rev.number, config, workers=args.workers)
        print(summary_text(rows))
        srcl = outdir / "obs" / f"rev{rev}" / "isgri_mosa_res.fits"
        if srcl.is_file():
            t = read_fits(srcl).table("ISGR-SRCL-RES")
            print(f"\nsources in the observation mosaic ({srcl.relative_to(args.archive)}):")
            for i in range(len(t)):
                print(f"  {t['NAME'][i]:<28s} {t['E_MIN'][i]:5.0f}-{t['E_MAX'][i]:<4.0f} keV  RA {t['RA_FIN'][i]:8.3f} "
                      f"Dec {t['DEC_FIN'][i]:+7.3f}  {t['DETSIG'][i]:7.1f} sigma  {t['FLUX'][i]:8.2f} counts/s"
                      f"{'  NEW' if t['NEW_SOURCE'][i] else ''}")
        print(f"\nproducts: {outdir}/scw/<scw>/ (sky images, source lists, spectra, light curves), "
              f"{outdir}/obs/ (mosaic, sources); {time.perf_counter() - t0:.0f} s in all")
    except (ArchiveError, ConfigError, FitsError, PlanError, ValueError, OSError) as exc:
        print(f"isdc-run demo: {exc}", file=sys.stderr)
        return 1
    if not report.ok:
        print(report.summary(), file=sys.stderr)
    return report.exit_code
