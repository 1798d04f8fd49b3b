"""`isdc-run simulate`: write one simulated revolution of raw data into an archive."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ORDER = 10


def _target(text: str):
    """A known target name, a sky source name (resolved later), or 'RA,DEC' in degrees."""
    parts = text.split(",")
    if len(parts) == 2:
        try:
            return (float(parts[0]), float(parts[1]))
        except ValueError:
            pass
    return text


def _version(text: str):
    from isdc.ids import IdError, Version

    try:
        return Version.parse(text)
    except IdError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="simulate one revolution of IBIS/ISGRI raw data into an archive (events, HK, aux, IC, truth)",
        description="Plan one revolution (dither pattern around a target), simulate every science window "
        "(pointings and slews: sources through the IBIS mask, background, dead time, telemetry gaps, gain) "
        "and write it into the archive as ISDC raw data: scw/RRRR/<scwid>.VVV/ (swg.fits, isgri_events.fits, "
        "isgri_hk.fits), scw/RRRR/rev.VVV/, aux/adp/RRRR.VVV/ (attitude, orbit, time correlation), ic/ and "
        "idx/ic/, cat/gnrl_refr_cat.fits, idx/scw/, and the truth in sim/RRRR.VVV/ (docs/simulator.md). "
        "The same arguments give the same bytes.",
    )
    p.add_argument("--archive", required=True, type=Path, metavar="DIR", help="archive root (created if missing)")
    p.add_argument("--revolution", required=True, type=int, metavar="N", help="revolution number (0..9999)")
    p.add_argument("--pointings", type=int, metavar="K",
                   help="number of pointings (default: as many as fit before the radiation belts)")
    p.add_argument("--exposure", type=float, metavar="SECONDS",
                   help="duration of each pointing (default: uniform 1800-3600 s)")
    p.add_argument("--sky", type=Path, metavar="FILE", help="sky model YAML (default: the built-in sky)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--version", type=_version, default="001", metavar="VVV",
                   help="data version: 000 (NRT) or 001 (CONS, default)")
    p.add_argument("--pattern", choices=("hex", "5x5", "staring", "gps"), default="hex",
                   help="dither pattern (default hex; gps = Galactic-plane scan, --target ignored)")
    p.add_argument("--target", type=_target, default="Crab", metavar="NAME",
                   help="pattern centre: a known target (Crab, Cyg X-1, Galactic Centre, Vela X-1, GX 301-2, "
                   "4U 1700-377), a source of the sky model, or RA,DEC in degrees (default Crab)")
    p.add_argument("--slew-overhead", type=float, default=120.0, metavar="SECONDS",
                   help="fixed part of every slew's duration (default 120 s)")
    p.add_argument("--slew-rate", type=float, default=0.1, metavar="DEG_PER_S",
                   help="slew speed on top of the overhead (default 0.1 deg/s)")
    p.add_argument("--no-fsync", action="store_true",
                   help="do not fsync each file (faster; a crash may leave files that must be simulated again)")
    p.add_argument("--owner", metavar="NAME",
                   help="the simulated ScWs are private data of NAME (the observation's PI) until the "
                   "proprietary period ends (idx/rights/, docs/archive.md); default: public")
    p.add_argument("--proprietary-days", type=float, metavar="N",
                   help="with --owner: days after the end of the last simulated ScW until the data are public "
                   "(default 365)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from isdc.dal.archive import Archive, ArchiveError
    from isdc.dal.fitsfile import FitsError
    from isdc.dal.rights import RightsError, check_owner, check_period, proprietary_rights, write_rights
    from isdc.ids import IdError
    from isdc.sim.plan import KNOWN_TARGETS, PlanError
    from isdc.sim.sky import Sky, SkyError
    from isdc.sim.writer import simulate_revolution

    t0 = time.perf_counter()
    try:
        if not 0 <= args.revolution <= 9999:
            raise ValueError(f"revolution {args.revolution} outside 0..9999")
        if args.pointings is not None and args.pointings < 1:
            raise ValueError(f"--pointings must be >= 1, got {args.pointings}")
        if args.exposure is not None and not args.exposure > 0:
            raise ValueError(f"--exposure must be > 0 s, got {args.exposure}")
        if not (args.slew_overhead >= 0 and args.slew_rate > 0):
            raise ValueError("--slew-overhead must be >= 0 s and --slew-rate > 0 deg/s")
        if args.proprietary_days is not None and args.owner is None:
            raise ValueError("--proprietary-days needs --owner (whose data are private)")
        days = 365.0 if args.proprietary_days is None else args.proprietary_days
        if args.owner is not None:  # refuse a bad owner or period before simulating anything
            check_owner(args.owner)
            check_period(days)
        sky = Sky.load(args.sky) if args.sky is not None else Sky.default()
        target = args.target
        if isinstance(target, str) and target not in KNOWN_TARGETS and args.pattern != "gps":
            try:
                s = sky.sources[sky.index(target)]
            except KeyError:
                raise ValueError(f"unknown target {target!r}: not a known target ({', '.join(sorted(KNOWN_TARGETS))}), "
                                 f"not a source of sky {sky.name!r}, not RA,DEC") from None
            target = (s.name, s.ra, s.dec)

        def progress(sim):
            print(f"{sim.plan.scw_id} {sim.plan.scw_id.sw_type:<8s} {sim.plan.duration_s:7.1f} s "
                  f"{sim.n_events:9d} events  ONTIME {sim.ontime:7.1f} s", flush=True)

        result = simulate_revolution(
            args.archive, args.revolution, n_pointings=args.pointings,
            exposure=args.exposure if args.exposure is not None else (1800.0, 3600.0), sky=sky, seed=args.seed,
            version=args.version, pattern=args.pattern, target=target, slew_overhead_s=args.slew_overhead,
            slew_rate=args.slew_rate, durable=not args.no_fsync, progress=progress)
        if args.owner is not None:
            rights = proprietary_rights([(p.scw_id, p.tstop) for p in result.plans], args.owner, days)
            write_rights(Archive(args.archive), args.revolution, rights)
            print(f"data rights: {len(rights)} science windows owned by {args.owner} until IJD {rights[0].public:.6f}")
    except (PlanError, SkyError, ArchiveError, FitsError, IdError, RightsError, ValueError, OSError) as exc:
        print(f"isdc-run simulate: {exc}", file=sys.stderr)
        return 1
    n = sum(result.events.values())
    print(f"revolution {result.revolution:04d}.{result.version}: {len(result.plans)} science windows, {n} events, "
          f"written to {args.archive} in {time.perf_counter() - t0:.1f} s")
    return 0
