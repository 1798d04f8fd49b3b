"""Simulator: one 2000 s ScW on the Crab (default sky), simulated and written, against floors.

Times (median of N repeats, same run, same machine):
- `simulate_scw`: sources through the exact PIF, background, noisy pixels, dead time per
  module, telemetry gaps, rise time, PHA, OBT/TIME, and the truth (~1.2e6 events);
- `write_scw`: ISGR-EVTS-ALL + ISGR-HK..-CNV + swg.fits through the templates and the
  grouping module, with and without fsync;
- floors: the least work for the same number of events: one uniform random number per
  event and a sort by time (a time-ordered list of N events), and writing the packed
  22-byte rows with `ndarray.tofile` (no FITS, no checksum, no fsync).
Once each (not in the target): the instrument and the sky folded through the response.

Target (issue 3): a 2000 s ScW simulated and written in < 2 s. Exit 1 if missed.

Run: .venv/bin/python benchmarks/bench_simulate.py [--repeat N] [--exposure S]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_fits_io import median_time  # the benchmarks' shared timer (this folder)

from isdc.dal.archive import Archive
from isdc.dal.fitsfile import fixed_date
from isdc.sim.events import Instrument, SkyEmitters, simulate_scw
from isdc.sim.plan import onboard_clock, plan_revolution
from isdc.sim.sky import Sky
from isdc.sim.writer import write_scw

TARGET_S = 2.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--exposure", type=float, default=2000.0)
    a = p.parse_args()
    t0 = time.perf_counter()
    inst = Instrument.default()
    sky = Sky.default()
    emit = SkyEmitters(sky, inst)
    t_setup = time.perf_counter() - t0
    plan = plan_revolution(665, 1, a.exposure, "staring", seed=1, target="Crab", start_phase=0.3)[1]
    tc = onboard_clock(665)
    sim = simulate_scw(plan, sky, tc, np.random.default_rng(0), inst, emit)  # warm caches (samplers, acceptance)
    n = sim.n_events
    t_sim = median_time(lambda: simulate_scw(plan, sky, tc, np.random.default_rng(1), inst, emit), a.repeat)

    rng = np.random.default_rng(2)
    t_floor_sim = median_time(lambda: np.argsort(rng.random(n)), a.repeat)
    rows = np.zeros(n, dtype=[("TIME", ">f8"), ("OB_TIME", ">i8"), ("PHA", ">i2"), ("RT", ">i2"), ("Y", "u1"),
                              ("Z", "u1")])
    with tempfile.TemporaryDirectory() as tmp:
        archive = Archive(Path(tmp) / "archive")
        floor_path = Path(tmp) / "rows.bin"
        t_floor_write = median_time(lambda: rows.tofile(floor_path), a.repeat)
        with fixed_date("2008-03-24T00:00:00"):
            t_write = median_time(lambda: write_scw(archive, sim, inst, durable=True), a.repeat)
            t_write_nosync = median_time(lambda: write_scw(archive, sim, inst, durable=False), a.repeat)
        size = sum(f.stat().st_size for f in archive.scw_dir(plan.scw_id).iterdir())

    total = t_sim + t_write
    floor = t_floor_sim + t_floor_write
    print(f"one {a.exposure:.0f} s Crab ScW: {n:,} events, {size / 1e6:.1f} MB written; median of {a.repeat}")
    print(f"{'step':44s} {'time':>9s} {'ns/event':>9s} {'x floor':>8s}")
    for name, t, fl in [
        ("floor: random + argsort (N events)", t_floor_sim, None),
        ("floor: tofile of the packed rows", t_floor_write, None),
        ("simulate_scw (events, HK, truth)", t_sim, t_floor_sim),
        ("write_scw, fsync (events, HK, swg.fits)", t_write, t_floor_write),
        ("write_scw, no fsync", t_write_nosync, t_floor_write),
        ("simulate + write (fsync)", total, floor),
    ]:
        ratio = f"{t / fl:8.1f}" if fl else f"{'':8s}"
        print(f"{name:44s} {t * 1e3:7.0f} ms {t / n * 1e9:9.0f} {ratio}")
    print(f"{'once: Instrument + Sky.default() + fold':44s} {t_setup * 1e3:7.0f} ms")
    ok = total < TARGET_S
    print(f"{'PASS' if ok else 'FAIL'}: simulate + write {total:.2f} s < {TARGET_S:.0f} s")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
