"""ISGRI science-window levels COR, GTI, DEAD, BIN, BKG: seconds per level on one ScW.

Simulates one revolution with one 2000 s pointing on the Crab (`isdc.sim.writer`, ~1.3e6
events; the background maps are the shipped IC files) and times with 4 energy bands (median of --repeat runs, files in the page cache):

- per level, the task's whole `run()` as luigi calls it: read and validate the inputs,
  the science (`process`), provenance, checksums and the atomic durable write;
- per level, `process()` alone (inputs already in memory);
- the floor: read the event table (`read_fits().table()`) and bin its energies into the
  4 bands x 128 x 128 with one `np.bincount` on a flat index (DESIGN §5);
- the completeness check of the last level (`IsgriBkg.complete()`: fingerprints of the
  whole chain, checksums of the products), which luigi runs before and after.

It prints each figure with its ratio to the floor, the sum COR..BKG, and PASS/FAIL
against the budget of the ISGRI issue (COR..BKG <= 0.5 s including I/O, so that
COR..IMA fits in 1 s on one core); exits 1 on FAIL.

Run: .venv/bin/python benchmarks/bench_isgri_scw.py [--repeat N] [--dir DIR]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_fits_io import median_time  # the benchmarks' shared timer (this folder)

from isdc.dal.archive import Archive
from isdc.dal.fitsfile import read_fits
from isdc.pipeline.config import load_config
from isdc.pipeline.isgri_scw import IbisGti, IsgriBin, IsgriBkg, IsgriCor, IsgriDead
from isdc.sim.writer import simulate_revolution

BANDS = "20-40,40-60,60-100,100-200"
BUDGET_S = 0.5
LEVELS = (("COR", IsgriCor), ("GTI", IbisGti), ("DEAD", IsgriDead), ("BIN", IsgriBin), ("BKG", IsgriBkg))


def make_archive(root: Path) -> tuple[Archive, object]:
    t0 = time.perf_counter()
    res = simulate_revolution(root, 665, n_pointings=1, exposure=2000.0, seed=0, durable=False)
    arch = Archive(root)  # background maps: the shipped IC files, under the archive's own
    scw = next(s for s in arch.scws() if not s.is_slew)
    print(f"simulated {scw}: {res.events[str(scw)]} events in {time.perf_counter() - t0:.1f} s")
    return arch, scw


def floor(arch: Archive, scw, energy: np.ndarray):
    edges = np.array([20.0, 40.0, 60.0, 100.0, 200.0], dtype=energy.dtype)
    path = arch.scw_dir(scw) / "isgri_events.fits"

    def run():
        ev = read_fits(path).table()
        b = np.full(energy.shape, -1, dtype=np.int8)
        for edge in edges:  # band index by comparisons (cheaper than a binary search per event)
            b += energy >= edge
        ok = (b >= 0) & (b < 4)
        flat = (b[ok].astype(np.int64) * 128 + ev["ISGRI_Z"][ok]) * 128 + ev["ISGRI_Y"][ok]
        return np.bincount(flat, minlength=4 * 16384)

    return run


def timed(fn, repeat: int) -> tuple[float, float]:
    """(median, best) of `repeat` runs [s]."""
    best = [float("inf")]

    def one():
        t0 = time.perf_counter()
        fn()
        best[0] = min(best[0], time.perf_counter() - t0)

    return median_time(one, repeat), best[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    a = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(dir=a.dir, prefix="bench_isgri_scw_"))
    try:
        arch, scw = make_archive(tmp / "archive")
        cfg = load_config("osa", overrides={"isgri.bands": BANDS})
        kw = dict(archive=str(arch.root), outdir=str(tmp / "out"), scw=scw, config=cfg)
        tasks = {name: cls(**kw) for name, cls in LEVELS}
        for t in tasks.values():  # first run: products exist, caches warm
            t.run()
        cor = read_fits(tasks["COR"].dataset_path("isgri_events_cor")).table("ISGR-EVTS-COR")
        n = len(cor)
        t_floor, b_floor = timed(floor(arch, scw, cor["ISGRI_ENERGY"]), a.repeat)
        print(f"{n} events, bands {BANDS} keV, median (best) of {a.repeat}")
        print(f"  {'floor: read events + bincount 4 bands':40s} {t_floor * 1e3:7.1f} ms ({b_floor * 1e3:6.1f})")
        total = best_total = 0.0
        for name, t in tasks.items():
            t_run, b_run = timed(t.run, a.repeat)
            inputs = t.read_inputs()
            t_proc, b_proc = timed(lambda: t.process(inputs), a.repeat)
            total += t_run
            best_total += b_run
            print(f"  {name + ' run() (read, process, write)':40s} {t_run * 1e3:7.1f} ms ({b_run * 1e3:6.1f})"
                  f"  x{t_run / t_floor:5.1f} floor   process() {t_proc * 1e3:6.1f} ms ({b_proc * 1e3:6.1f})")
        print(f"  {'COR..BKG run()':40s} {total * 1e3:7.1f} ms ({best_total * 1e3:6.1f})  x{total / t_floor:5.1f} floor")
        t_complete, b_complete = timed(tasks["BKG"].complete, a.repeat)
        print(f"  {'IsgriBkg.complete() (whole chain)':40s} {t_complete * 1e3:7.1f} ms ({b_complete * 1e3:6.1f})")
        ok = total <= BUDGET_S
        print(f"{'PASS' if ok else 'FAIL'}: COR..BKG {total:.3f} s (median; best {best_total:.3f} s) <= {BUDGET_S} s "
              f"for {n} events")
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
