"""fitsverify (HEASARC's FITS checker, on CFITSIO) finds nothing wrong in any file we write:
tables of every type, images of every BITPIX, gzip, and a product of every template."""
import re
import subprocess

import numpy as np
import pytest
from astropy.io import fits

from isdc.dal.fitsfile import ColumnSpec, Image, Table, write_fits
from isdc.dal.products import write_product
from isdc.dal.templates import all_templates

pytestmark = pytest.mark.fitsverify

SUMMARY = re.compile(r"Verification found (\d+) warning\(s\) and (\d+) error\(s\)")


def verify(fitsverify: str, path) -> None:
    """Run fitsverify on `path`; fail with its report unless it finds 0 warnings, 0 errors."""
    out = subprocess.run([fitsverify, str(path)], capture_output=True, text=True, timeout=60)
    found = SUMMARY.findall(out.stdout)
    assert len(found) == 1, f"no summary line from fitsverify for {path}:\n{out.stdout}\n{out.stderr}"
    assert found[0] == ("0", "0"), f"fitsverify on {path}:\n{out.stdout}"


def every_type_table(n: int, name: str = "ALL-TYPES") -> Table:
    rng = np.random.default_rng(3)
    cols = {
        "FLAG": rng.random(n) > 0.5, "BYTE": rng.integers(0, 255, n).astype(np.uint8),
        "SHORT": rng.integers(-(2**15), 2**15, n).astype(np.int16), "INT": rng.integers(-(2**31), 2**31, n).astype(np.int32),
        "LONG": rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64), "FLOAT": rng.normal(size=n).astype(np.float32),
        "DOUBLE": rng.normal(size=n), "TEXT": np.array(["Crab", "", "4U 1700-377"] * n)[:n],
        "VEC": rng.normal(size=(n, 3)), "FLAGS": rng.random((n, 5)) > 0.5,
        "MATRIX": rng.integers(0, 9, (n, 2, 3)).astype(np.int32), "USHORT": rng.integers(0, 65535, n).astype(np.uint16),
        "UINT": rng.integers(0, 2**32 - 1, n).astype(np.uint32), "ULONG": rng.integers(0, 2**64 - 1, n, dtype=np.uint64),
        "SBYTE": rng.integers(-128, 127, n).astype(np.int8), "CPLX": (rng.normal(size=n) + 1j).astype(np.complex64),
    }
    h = fits.Header([("EXTNAME", name), ("TSTART", 1234.5, "[d] start"), ("OBJECT", "x" * 120, "long string"),
                     ("ISDCOK", True), ("COMMENT", "a comment"), ("HISTORY", "a history")])
    return Table(cols, h)


@pytest.mark.parametrize("suffix", [".fits", ".fits.gz"])
def test_tables_of_every_type_pass_fitsverify(tmp_path, fitsverify, suffix):
    scaled = Table({"V": np.array([-1.5, 0.0, 16383.5])}, {"EXTNAME": "SCALED"},
                   [ColumnSpec("V", "1I", unit="V", tzero=0.5, tscal=0.5)])
    nulls = Table({"N": np.array([0, 1, 2], np.int32)}, {"EXTNAME": "NULLS"}, [ColumnSpec("N", "1J", tnull=0)])
    hdus = [Image(None, {"ORIGIN": "ISDC"}), every_type_table(100), every_type_table(0, "EMPTY"), scaled, nulls]
    verify(fitsverify, write_fits(tmp_path / f"tables{suffix}", hdus))
    # a table as the first HDU gets an empty primary in front
    verify(fitsverify, write_fits(tmp_path / f"lone{suffix}", [every_type_table(7)]))


@pytest.mark.parametrize("suffix", [".fits", ".fits.gz"])
def test_images_of_every_bitpix_pass_fitsverify(tmp_path, fitsverify, suffix):
    cube = np.arange(3 * 4 * 5).reshape(3, 4, 5)
    hdus = [Image(cube.astype(np.float32), {"BUNIT": "count"})]  # primary with data, 3-D
    for dt in ["u1", "i1", "i2", "u2", "i4", "u4", "i8", "u8", "f4", "f8"]:
        hdus.append(Image((cube[0] + 100).astype(dt), {"EXTNAME": f"IMG-{dt}"}))
    hdus.append(Image(np.eye(3, dtype=bool), {"EXTNAME": "MASK"}))
    hdus.append(Image(None, {"EXTNAME": "NODATA"}))
    verify(fitsverify, write_fits(tmp_path / f"images{suffix}", hdus))


def test_a_product_of_every_template_passes_fitsverify(tmp_path, fitsverify, synthetic):
    templates = all_templates()
    assert templates
    for name, t in templates.items():
        hdu = synthetic(t, nrows=20)
        for suffix in (".fits", ".fits.gz"):
            verify(fitsverify, write_product(tmp_path / f"{name}{suffix}", [Image(None, {"ORIGIN": "ISDC"}), hdu],
                                             durable=False))
        # empty products (the explicit "no work" outcome) too
        if t.kind == "table":
            empty = synthetic(t, nrows=0)
            verify(fitsverify, write_product(tmp_path / f"{name}-empty.fits", [empty], durable=False))


def test_the_checker_finds_errors_when_there_are_some(tmp_path, fitsverify):
    # the test above can fail: a file whose data do not match its DATASUM is reported
    path = write_fits(tmp_path / "ok.fits", [every_type_table(10)])
    raw = bytearray(path.read_bytes())
    raw[-3000] ^= 0xFF  # inside the table data
    bad = tmp_path / "bad.fits"
    bad.write_bytes(bytes(raw))
    with pytest.raises(AssertionError, match="fitsverify on"):
        verify(fitsverify, bad)
