"""Time conversion and ScW-index speed against floors measured in the same run.

- `TimeCorrelation.obt_to_ijd` / `ijd_to_obt` of N event times through a 100-point
  table, against the floor of one multiply-add per event (a single linear segment,
  `ijd0 + (obt - obt0) * slope`, no interval search);
- `ScwIndex` over a grouping of M science windows (every row validated: SWID digits,
  REVOL/SW_TYPE agreement, ranges), against touching every cell once (a length per
  text cell, a finiteness test per number);
- `ScwIndex.select` with a revolution + time + 10-degree sky cone, against the same
  mask written in plain numpy on the columns;
- `build_scw_index` of an archive of K ScWs on disk (list the tree, read every
  swg.fits header, write the index), against opening every swg.fits (`read_fits`).

Run: .venv/bin/python benchmarks/bench_archive.py [N_EVENTS] [M_SCW] [K_SCW_ON_DISK]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from isdc.dal.archive import SCW_INDEX_GRPNAME, Archive, ScwIndex, ScwInfo, _SCW_AUX_SPECS, angular_separation, \
    build_scw_index
from isdc.dal.fitsfile import read_fits
from isdc.dal.grouping import Grouping, Member, write_group_file
from isdc.ids import ScwId
from isdc.time import TimeCorrelation


def best(fn, repeat: int = 3) -> float:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def bench_time(n: int) -> None:
    rng = np.random.default_rng(1)
    tc = TimeCorrelation.linear(213629501702144, 3377.0, 3.0, drift=3e-7, points=100)
    obt = np.sort(rng.integers(tc.obt[0], tc.obt[-1], n))
    obt0, ijd0, slope = tc.obt[0], tc.ijd[0], (tc.ijd[-1] - tc.ijd[0]) / float(tc.obt[-1] - tc.obt[0])
    t_floor = best(lambda: ijd0 + (obt - obt0).astype(np.float64) * slope)
    t_fwd = best(lambda: tc.obt_to_ijd(obt))
    ijd = tc.obt_to_ijd(obt)
    t_inv = best(lambda: tc.ijd_to_obt(ijd))
    exact = bool(np.array_equal(tc.ijd_to_obt(ijd), obt))
    print(f"time correlation, {n:.0e} events, 100-point table:")
    print(f"  floor (one multiply-add)   {t_floor * 1e3:8.1f} ms")
    print(f"  obt_to_ijd                 {t_fwd * 1e3:8.1f} ms   x{t_fwd / t_floor:5.1f} floor")
    print(f"  ijd_to_obt                 {t_inv * 1e3:8.1f} ms   x{t_inv / t_floor:5.1f} floor   round trip exact: {exact}")


def fake_index_grouping(m: int) -> Grouping:
    rng = np.random.default_rng(2)
    g = Grouping(SCW_INDEX_GRPNAME, aux={s.name: s for s in _SCW_AUX_SPECS})
    rev = 100 + np.arange(m) // 80
    pnt = np.arange(m) % 80 + 1
    tstart = 1000.0 + np.arange(m) * 0.035
    ra, dec = rng.uniform(0, 360, m), np.degrees(np.arcsin(rng.uniform(-1, 1, m)))
    for i in range(m):
        swid = f"{rev[i]:04d}{pnt[i]:04d}0010"
        g.append(Member("BINTABLE", "GROUPING", 1, 2, f"../../scw/{rev[i]:04d}/{swid}.001/swg.fits", "URL"),
                 {"SWID": swid, "SW_VER": 1, "SW_TYPE": "POINTING", "REVOL": int(rev[i]), "TSTART": tstart[i],
                  "TSTOP": tstart[i] + 0.03, "RA_SCX": ra[i], "DEC_SCX": dec[i], "RA_SCZ": 0.0, "DEC_SCZ": 0.0,
                  "POSANGLE": 0.0, "OBS_ID": ""})
    for s in _SCW_AUX_SPECS:  # freeze the columns into arrays as a read from file would
        g.column(s.name)
    return g


def bench_index(m: int) -> None:
    g = fake_index_grouping(m)
    cols = [np.asarray(g.column(s.name)) for s in _SCW_AUX_SPECS]
    # floor: touch every cell once (a length per text cell, a finiteness test per number)
    t_floor = best(lambda: [np.char.str_len(c) if c.dtype.kind == "U" else np.isfinite(c) for c in cols])
    t_build = best(lambda: ScwIndex(g), repeat=2)
    idx = ScwIndex(g)
    crit = dict(revolution=range(150, 1500), tstart=3000.0, tstop=20000.0, ra=83.63, dec=22.01, radius_deg=10.0)
    t_sel = best(lambda: idx.select(**crit))

    def floor_select():
        rev, ts, te = g.column("REVOL"), g.column("TSTART"), g.column("TSTOP")
        keep = (rev >= 150) & (rev < 1500) & (te > 3000.0) & (ts < 20000.0)
        keep &= angular_separation(g.column("RA_SCX"), g.column("DEC_SCX"), 83.63, 22.01) <= 10.0
        return np.flatnonzero(keep)

    t_sel_floor = best(floor_select)
    n = len(idx.select(**crit))
    assert n == floor_select().size
    print(f"ScW index, {m} science windows:")
    print(f"  floor (touch every cell)    {t_floor * 1e3:8.1f} ms")
    print(f"  ScwIndex (validate rows)   {t_build * 1e3:8.1f} ms   x{t_build / t_floor:7.1f} floor   "
          f"{t_build / m * 1e6:.1f} us/ScW")
    print(f"  select rev+time+cone       {t_sel * 1e3:8.1f} ms   x{t_sel / t_sel_floor:7.1f} numpy mask "
          f"({t_sel_floor * 1e3:.1f} ms), {n} ScWs")


def bench_build(k: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ar = Archive(Path(tmp))
        for i in range(k):
            info = ScwInfo(ScwId(100 + i // 80, i % 80 + 1, 1, 0), 1000.0 + 0.035 * i, 1000.03 + 0.035 * i,
                           (7.0 * i) % 360.0, 10.0, 0.0, 0.0, 0.0)
            ar.swg(info.scw).parent.mkdir(parents=True, exist_ok=True)
            write_group_file(ar.swg(info.scw), Grouping("GNRL-SCWG-GRP", header=info.header()), durable=False)
        paths = [ar.swg(s) for s in ar.scws()]
        t_floor = best(lambda: [read_fits(p) for p in paths], repeat=2)
        t_build = best(lambda: build_scw_index(ar), repeat=2)
        print(f"build_scw_index, {k} ScWs on disk:")
        print(f"  floor (open every swg.fits){t_floor * 1e3:8.1f} ms")
        print(f"  build_scw_index            {t_build * 1e3:8.1f} ms   x{t_build / t_floor:5.1f} floor   "
              f"{t_build / k * 1e3:.2f} ms/ScW")


if __name__ == "__main__":
    n_events = int(float(sys.argv[1])) if len(sys.argv) > 1 else 2_000_000
    m_scw = int(float(sys.argv[2])) if len(sys.argv) > 2 else 100_000
    k_disk = int(float(sys.argv[3])) if len(sys.argv) > 3 else 2000
    bench_time(n_events)
    bench_index(m_scw)
    bench_build(k_disk)
