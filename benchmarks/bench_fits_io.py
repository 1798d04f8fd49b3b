"""FITS event-table I/O: our writer and reader against the floors and the alternatives.

2e6 ISGRI-like events (30 bytes a row, 60 MB): TIME 1D, OB_TIME 1K, ISGRI_ENERGY 1E,
ISGRI_PHA 1I, RISE_TIME 1I, ISGRI_PI 1I, ISGRI_Y 1B, ISGRI_Z 1B, SELECT_FLAG 1I.

Measured in the same run, each repeated (median of 5):
- write: isdc `write_fits` (durable: fsync of file and folder; and without), against the
  floor `ndarray.tofile` of the already packed big-endian record array, astropy
  `BinTableHDU.from_columns(...).writeto(checksum=True)` and `fitsio.write`;
- read to native-byte-order column arrays: isdc `read_fits(path).table()`, against the
  floor `np.fromfile` + one byte-order conversion per column, astropy `fits.getdata` +
  conversion, and `fitsio.read` + conversion.
MB/s counts the table's data bytes (rows x 30). Files are in the page cache: this measures
the software, not the disk. The issue's targets: write >= 200 MB/s, read >= 1 GB/s.

Run: .venv/bin/python benchmarks/bench_fits_io.py [N_ROWS] [--dir DIR] [--repeat N]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import fitsio
import numpy as np
from astropy.io import fits

from isdc.dal.fitsfile import ColumnSpec, Table, read_fits, write_fits

WRITE_TARGET = 200e6  # bytes/s
READ_TARGET = 1e9

FORMATS = {"TIME": "1D", "OB_TIME": "1K", "ISGRI_ENERGY": "1E", "ISGRI_PHA": "1I", "RISE_TIME": "1I",
           "ISGRI_PI": "1I", "ISGRI_Y": "1B", "ISGRI_Z": "1B", "SELECT_FLAG": "1I"}


def isgri_events(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    """n events of one science window, native arrays, sorted in time."""
    rng = np.random.default_rng(seed)
    obt = np.sort(rng.integers(0, 1800 * 2**20, n))
    return {
        "TIME": 1000.0 + obt / 2**20 / 86400.0,
        "OB_TIME": obt.astype(np.int64),
        "ISGRI_ENERGY": rng.exponential(40.0, n).astype(np.float32) + 15.0,
        "ISGRI_PHA": rng.integers(0, 2048, n).astype(np.int16),
        "RISE_TIME": rng.integers(0, 256, n).astype(np.int16),
        "ISGRI_PI": rng.integers(0, 2048, n).astype(np.int16),
        "ISGRI_Y": rng.integers(0, 128, n).astype(np.uint8),
        "ISGRI_Z": rng.integers(0, 128, n).astype(np.uint8),
        "SELECT_FLAG": (rng.random(n) < 0.02).astype(np.int16),
    }


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def median_write_time(write, folder: Path, name: str, repeat: int) -> float:
    """Median time of `write(path)` to a new file each time (as products are written);
    the files are removed between runs, outside the timing."""
    times = []
    for i in range(repeat):
        path = folder / f"{i}-{name}"
        t0 = time.perf_counter()
        write(path)
        times.append(time.perf_counter() - t0)
        path.unlink()
    return statistics.median(times)


def to_native(data, names) -> dict[str, np.ndarray]:
    return {k: np.asarray(data[k]).astype(data[k].dtype.newbyteorder("=")) for k in names}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="?", type=int, default=2_000_000)
    ap.add_argument("--dir", type=Path, default=None, help="folder for the files (default: a temporary folder)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)

    cols = isgri_events(args.rows)
    names = list(cols)
    specs = [ColumnSpec(k, FORMATS[k]) for k in names]
    table = Table(cols, {"EXTNAME": "ISGR-EVTS-ALL"}, specs)
    be = np.empty(args.rows, np.dtype([(k, cols[k].dtype.newbyteorder(">")) for k in names]))
    for k in names:
        be[k] = cols[k]
    native_rec = np.empty(args.rows, np.dtype([(k, cols[k].dtype) for k in names]))
    for k in names:
        native_rec[k] = cols[k]
    nbytes = be.nbytes
    print(f"{args.rows} events, {be.dtype.itemsize} bytes/row, {nbytes / 1e6:.1f} MB of table data; "
          f"median of {args.repeat} runs; files in the page cache")

    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        tmp = Path(d)
        ours, floor_r = tmp / "read-isdc.fits", tmp / "read-floor.bin"
        ap_path, fio_path = tmp / "read-astropy.fits", tmp / "read-fitsio.fits"

        def check(got: dict[str, np.ndarray], who: str) -> None:
            for k in names:
                if not (got[k].dtype == cols[k].dtype and np.array_equal(got[k], cols[k])):
                    raise SystemExit(f"{who}: column {k} read back wrong ({got[k].dtype})")

        def fitsio_write(path):
            fitsio.write(str(path), native_rec)

        def astropy_write(path):
            hdu = fits.BinTableHDU.from_columns([fits.Column(k, FORMATS[k], array=cols[k]) for k in names])
            hdu.writeto(path, checksum=True)

        writes = [  # (label, write(path), file name)
            ("floor: ndarray.tofile (packed)", be.tofile, "floor.bin"),
            ("isdc write_fits durable=True", lambda p: write_fits(p, [table], durable=True), "isdc.fits"),
            ("isdc write_fits durable=False", lambda p: write_fits(p, [table], durable=False), "isdc.fits"),
            ("astropy BinTableHDU.writeto", astropy_write, "astropy.fits"),
            ("fitsio write", fitsio_write, "fitsio.fits"),
        ]
        # the files read below
        be.tofile(floor_r)
        write_fits(ours, [table])
        astropy_write(ap_path)
        fitsio_write(fio_path)

        def floor_read_bytes():
            return np.fromfile(floor_r, dtype=be.dtype)

        def floor_read():
            return to_native(floor_read_bytes(), names)

        def astropy_read():
            return to_native(fits.getdata(ap_path, 1, memmap=False), names)

        def fitsio_read():
            return to_native(fitsio.read(str(fio_path), ext=1), names)

        reads = [
            ("floor: np.fromfile (bytes only)", floor_read_bytes),
            ("np.fromfile + to native", floor_read),
            ("isdc read_fits().table()", lambda: read_fits(ours).table(1).columns),
            ("astropy getdata + to native", astropy_read),
            ("fitsio read + to native", fitsio_read),
        ]

        results = {}
        print(f"\n{'write':34s} {'time':>9s} {'MB/s':>8s} {'x floor':>8s}")
        for label, fn, name in writes:
            results[label] = t = median_write_time(fn, tmp, name, args.repeat)
            print(f"{label:34s} {t * 1e3:7.1f}ms {nbytes / t / 1e6:8.0f} {t / results[writes[0][0]]:8.2f}")
        # replacing an existing file costs more on ext4: a rename over a file makes the
        # kernel allocate (start writing) the new one at once (auto_da_alloc)
        label = "isdc write_fits over existing file"
        results[label] = t = median_time(lambda: write_fits(ours, [table], durable=False), args.repeat)
        print(f"{label:34s} {t * 1e3:7.1f}ms {nbytes / t / 1e6:8.0f} {t / results[writes[0][0]]:8.2f}")

        print(f"\n{'read to native arrays':34s} {'time':>9s} {'MB/s':>8s} {'x floor':>8s}")
        for label, fn in reads:
            if label != reads[0][0]:
                check(fn(), label)
            results[label] = t = median_time(fn, args.repeat)
            print(f"{label:34s} {t * 1e3:7.1f}ms {nbytes / t / 1e6:8.0f} {t / results[reads[0][0]]:8.2f}")

    w = nbytes / results["isdc write_fits durable=True"]
    r = nbytes / results["isdc read_fits().table()"]
    ok_w, ok_r = w >= WRITE_TARGET, r >= READ_TARGET
    print()
    print(f"{'PASS' if ok_w else 'FAIL'}: write {w / 1e6:.0f} MB/s (durable) against the target {WRITE_TARGET / 1e6:.0f} MB/s")
    print(f"{'PASS' if ok_r else 'FAIL'}: read {r / 1e9:.2f} GB/s to native arrays against the target "
          f"{READ_TARGET / 1e9:.0f} GB/s")
    return 0 if ok_w and ok_r else 1


if __name__ == "__main__":
    sys.exit(main())
