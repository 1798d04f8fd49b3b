"""Grouping and verify speed against floors measured in the same run.

- a ScW index (GNRL-SCWG-GRP-IDX, N rows: SWID, REVOL, TSTART, TSTOP, RA_SCX, DEC_SCX):
  build row by row, write, read back, select -- against write_fits / FitsFile.table of
  the same columns as plain arrays and a bare numpy mask;
- `verify` of a tree of ScW groups (swg.fits + one member file each, back-pointers) --
  against opening every file and checking every HDU's checksum, the I/O it cannot avoid.

Run: .venv/bin/python benchmarks/bench_grouping.py [N_ROWS] [N_SCW]
"""
from __future__ import annotations

import sys
import tempfile
import timeit
from pathlib import Path

import numpy as np

from isdc.dal import grouping as G
from isdc.dal.fitsfile import ColumnSpec, FitsFile, Table, write_fits
from isdc.dal.verify import fits_files, verify


def best(fn, repeat: int = 3) -> float:
    """Fastest of `repeat` runs, in seconds."""
    return min(timeit.repeat(fn, number=1, repeat=repeat))


def index_columns(n: int, rng) -> dict[str, np.ndarray]:
    rev = 100 + np.arange(n) // 60
    swid = np.array([f"{r:04d}{p:04d}0010" for r, p in zip(rev, np.arange(n) % 60 + 1)])
    tstart = 1000.0 + np.arange(n) * 0.03
    return {"SWID": swid, "REVOL": rev.astype(np.int32), "TSTART": tstart, "TSTOP": tstart + 0.025,
            "RA_SCX": rng.uniform(0, 360, n), "DEC_SCX": rng.uniform(-90, 90, n)}


def bench_index(tmp: Path, n: int) -> None:
    rng = np.random.default_rng(1)
    cols = index_columns(n, rng)
    aux = {"SWID": "12A", "REVOL": "1J", "TSTART": ColumnSpec("TSTART", "1D", unit="d"),
           "TSTOP": ColumnSpec("TSTOP", "1D", unit="d"), "RA_SCX": ColumnSpec("RA_SCX", "1D", unit="deg"),
           "DEC_SCX": ColumnSpec("DEC_SCX", "1D", unit="deg")}
    locs = [f"../../scw/{s[:4]}/{s}.001/swg.fits" for s in cols["SWID"]]
    rows = [{k: v[i].item() for k, v in cols.items()} for i in range(n)]

    def build():
        g = G.Grouping("GNRL-SCWG-GRP-IDX", aux=aux)
        for i in range(n):
            g.append(G.Member("BINTABLE", "GROUPING", 1, 2, locs[i], "URL"), rows[i])
        return g

    t_build = best(build, 1)
    g = build()
    t_table = best(g.to_table, 1)
    table = g.to_table()
    plain = Table(dict(table.columns), table.header.copy(), table.specs)
    path, floor_path = tmp / "idx.fits", tmp / "floor.fits"
    t_write = best(lambda: write_fits(path, [g.to_table()], durable=False))
    t_write_floor = best(lambda: write_fits(floor_path, [plain], durable=False))
    t_read = best(lambda: G.Grouping.read(path))
    t_read_floor = best(lambda: FitsFile(floor_path).table(1))
    back = G.Grouping.read(path)
    want = set(cols["SWID"][:: max(1, n // 100)])
    t_sel = best(lambda: back.select(SWID=want, TSTART=(1000.0 + 0.25 * n * 0.03, None)))
    sw, ts = back["SWID"], back["TSTART"]
    t_sel_floor = best(lambda: np.flatnonzero(np.isin(sw, list(want)) & (ts >= 1000.0 + 0.25 * n * 0.03)))
    print(f"ScW index of {n} rows ({path.stat().st_size / 1e6:.1f} MB):")
    print(f"  build row by row   {t_build * 1e3:8.1f} ms  ({t_build / n * 1e6:.2f} us/row)")
    print(f"  to_table           {t_table * 1e3:8.1f} ms")
    print(f"  to_table + write   {t_write * 1e3:8.1f} ms  floor write_fits {t_write_floor * 1e3:.1f} ms  "
          f"ratio {t_write / t_write_floor:.1f}")
    print(f"  read               {t_read * 1e3:8.1f} ms  floor FitsFile.table {t_read_floor * 1e3:.1f} ms  "
          f"ratio {t_read / t_read_floor:.1f}")
    print(f"  select SWID+TSTART {t_sel * 1e3:8.2f} ms  floor numpy mask {t_sel_floor * 1e3:.2f} ms  "
          f"ratio {t_sel / t_sel_floor:.1f}")


def bench_verify(tmp: Path, n_scw: int) -> None:
    root = tmp / "arch"
    for k in range(n_scw):
        d = root / "scw" / f"{100 + k // 60:04d}" / f"{k:012d}.001"
        d.mkdir(parents=True)
        swg = G.Grouping("GNRL-SCWG-GRP")
        sf, ef = G.PendingFile(d / "swg.fits"), G.PendingFile(d / "isgri_events.fits")
        sf.append(swg)
        ev = Table({"TIME": np.arange(1000.0), "ISGRI_PHA": np.arange(1000, dtype=np.int16)}, {"EXTNAME": "ISGR-EVTS-ALL"})
        ef.append(ev)
        G.link(swg, sf, ev, ef, root=root)
        sf.write(durable=False)
        ef.write(durable=False)
    files = fits_files(root)

    def floor():
        for f in files:
            ff = FitsFile(f)
            for h in ff.hdus:
                ff.verify_checksum(h)

    t_floor = best(floor)
    t = best(lambda: verify(root))
    report = verify(root)
    assert report.ok and not report.warnings, report.text()
    print(f"verify {len(files)} files ({n_scw} ScW groups, {len(report.findings)} findings):")
    print(f"  verify             {t * 1e3:8.1f} ms  ({t / len(files) * 1e3:.2f} ms/file)  "
          f"floor open+checksums {t_floor * 1e3:.1f} ms  ratio {t / t_floor:.1f}")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    n_scw = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    with tempfile.TemporaryDirectory() as tmp:
        bench_index(Path(tmp), n)
        bench_verify(Path(tmp), n_scw)


if __name__ == "__main__":
    main()
