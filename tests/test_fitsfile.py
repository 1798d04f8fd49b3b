"""The FITS reader/writer: round trips checked against astropy, checksums, atomic writes,
and damaged files that must raise FitsError naming the file."""
import gzip
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from isdc.dal import fitsfile
from isdc.dal.fitsfile import (
    ColumnSpec,
    FitsError,
    fixed_date,
    Image,
    Table,
    encode_checksum,
    native_column,
    native_dtype,
    ones_complement_sum,
    read_fits,
    write_fits,
)

SUFFIXES = [".fits", ".fits.gz"]


def all_types_columns(n: int = 7) -> dict[str, np.ndarray]:
    """One column per supported TFORM and offset, with the extreme values of each type."""
    rng = np.random.default_rng(42)

    def ints(dt):
        info = np.iinfo(dt)
        return np.resize(np.array([info.min, info.max, 0, 1, -1 if info.min < 0 else 2], dtype=dt), n)

    f32 = np.resize(np.array([np.nan, np.inf, -np.inf, np.finfo(np.float32).max, np.finfo(np.float32).tiny, -0.0, 1.5],
                             np.float32), n)
    f64 = np.resize(np.array([np.nan, np.inf, -np.inf, np.finfo(np.float64).max, 5e-324, -0.0, np.pi]), n)
    return {
        "FLAG": np.resize([True, False, False], n),  # 1L
        "BYTE": ints(np.uint8),  # 1B
        "SHORT": ints(np.int16),  # 1I
        "INT": ints(np.int32),  # 1J
        "LONG": ints(np.int64),  # 1K
        "FLOAT": f32,  # 1E
        "DOUBLE": f64,  # 1D
        "TEXT": np.resize(np.array(["", "a", "Crab", "4U 1700-377", "with 'quote'", " lead", "x" * 16]), n),  # 16A
        "VEC": rng.normal(size=(n, 3)).astype(np.float32),  # 3E
        "FLAGS": rng.random((n, 4)) > 0.5,  # 4L
        "MATRIX": np.arange(n * 6, dtype=np.int32).reshape(n, 2, 3),  # 6J, TDIM (3,2)
        "USHORT": ints(np.uint16),  # 1I TZERO 32768
        "UINT": ints(np.uint32),  # 1J TZERO 2**31
        "ULONG": ints(np.uint64),  # 1K TZERO 2**63
        "SBYTE": ints(np.int8),  # 1B TZERO -128
        "UVEC": np.arange(n * 2, dtype=np.uint16).reshape(n, 2) + 65000,  # 2I TZERO 32768
    }


EXPECTED_TFORM = {
    "FLAG": ("1L", None), "BYTE": ("1B", None), "SHORT": ("1I", None), "INT": ("1J", None), "LONG": ("1K", None),
    "FLOAT": ("1E", None), "DOUBLE": ("1D", None), "TEXT": ("16A", None), "VEC": ("3E", None), "FLAGS": ("4L", None),
    "MATRIX": ("6J", None), "USHORT": ("1I", 32768), "UINT": ("1J", 2**31), "ULONG": ("1K", 2**63),
    "SBYTE": ("1B", -128), "UVEC": ("2I", 32768),
}


def user_header(**extra) -> fits.Header:
    h = fits.Header()
    h["EXTNAME"] = ("ISGR-EVTS-ALL", "name of this data structure")
    h["SWID"] = ("066500230010", "Science Window identifier")
    h["REVOL"] = (665, "Revolution number")
    h["TSTART"] = (1234.5678901234567, "[d] start (IJD)")
    h["ISDCOK"] = (True, "a logical")
    h["OBJECT"] = ("it's a 'quoted' name", "string with quotes")
    h["LONGSTR"] = ("x" * 100, "a long string (CONTINUE cards)")
    h["COMMENT"] = "a comment card"
    h["HISTORY"] = "a history card"
    for k, v in extra.items():
        h[k] = v
    return h


def assert_equal_values(got: np.ndarray, want: np.ndarray, name: str = ""):
    want = np.asarray(want)
    if want.dtype.kind == "f":
        np.testing.assert_array_equal(got, want, err_msg=name)  # NaN == NaN here, and -0.0 == 0.0 ...
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want), err_msg=name)  # ... so check signs
    else:
        np.testing.assert_array_equal(got, want, err_msg=name)


def astropy_strict(path):
    """astropy's view of a file, verifying every checksum; any astropy warning is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hl = fits.open(path, checksum=True, memmap=False)
        for hdu in hl:
            assert hdu.verify_checksum() == 1 and hdu.verify_datasum() == 1, hdu.name
            hdu.data  # noqa: B018  (decode now, inside the warnings filter)
    return hl


# --------------------------------------------------------------------------- tables

@pytest.mark.parametrize("suffix", SUFFIXES)
def test_table_of_every_type_round_trips_and_astropy_agrees(tmp_path, suffix):
    cols = all_types_columns()
    path = write_fits(tmp_path / f"t{suffix}", [Table(cols, user_header())])
    f = read_fits(path)
    assert [h.xtension for h in f.hdus] == ["PRIMARY", "BINTABLE"]
    t = f.table("ISGR-EVTS-ALL")
    assert list(t.columns) == list(cols) and t.nrows == 7
    for name, want in cols.items():
        got = t[name]
        if want.dtype.kind == "U":
            assert got.tolist() == want.tolist(), name
            continue
        assert got.dtype == want.dtype, (name, got.dtype, want.dtype)  # native, as written
        assert got.dtype.isnative and got.shape == want.shape, name
        assert_equal_values(got, want, name)
        assert got.flags.writeable  # a new array, not a view of the file's buffer

    with astropy_strict(path) as hl:
        h, d = hl[1].header, hl[1].data
        assert len(d) == 7
        for i, (name, want) in enumerate(cols.items(), start=1):
            assert h[f"TTYPE{i}"] == name
            tform, tzero = EXPECTED_TFORM[name]
            assert h[f"TFORM{i}"] == tform and h.get(f"TZERO{i}") == tzero, name
            theirs = np.asarray(d[name])
            if want.dtype.kind == "U":
                assert theirs.tolist() == [s.rstrip() for s in want.tolist()], name
                continue
            assert_equal_values(theirs.reshape(want.shape), want, name)
            if name != "SBYTE":  # astropy returns signed-byte columns as float64
                assert theirs.dtype.newbyteorder("=") == want.dtype, (name, theirs.dtype)
        assert h["TDIM11"] == "(3,2)"
        for key in ("SWID", "REVOL", "TSTART", "ISDCOK", "OBJECT", "LONGSTR"):
            assert h[key] == user_header()[key], key
        assert type(h["TSTART"]) is float and type(h["REVOL"]) is int and h["ISDCOK"] is True
        assert "a comment card" in str(h["COMMENT"]) and "a history card" in str(h["HISTORY"])
        # 1+1+2+4+8+4+8+16 bytes of scalars and text, 12+4+24 of vectors, 2+4+8+1+4 of offset integers
        assert h["NAXIS1"] == 103
    # our reader keeps the user keywords the same way
    assert t.header["TSTART"] == 1234.5678901234567 and t.header["LONGSTR"] == "x" * 100


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_empty_table_round_trips(tmp_path, suffix):
    cols = {k: v[:0] for k, v in all_types_columns().items()}
    path = write_fits(tmp_path / f"empty{suffix}", [Table(cols, {"EXTNAME": "EMPTY"})])
    f = read_fits(path)
    t = f.table("EMPTY")
    assert t.nrows == 0
    for name, want in cols.items():
        assert t[name].shape == want.shape, name
        if want.dtype.kind != "U":
            assert t[name].dtype == want.dtype, name
    assert f.verify_checksum(f.find("EMPTY")) == ("ok", "ok")
    with astropy_strict(path) as hl:
        assert hl[1].header["NAXIS2"] == 0 and len(hl[1].data) == 0


def test_reading_a_subset_of_columns_and_each_column_is_a_new_array(tmp_path):
    cols = all_types_columns()
    path = write_fits(tmp_path / "t.fits", [Table(cols, {"EXTNAME": "T"})])
    t = read_fits(path).table("T", columns=["ULONG", "DOUBLE"])
    # in the file's order
    assert list(t.columns) == ["DOUBLE", "ULONG"] and [s.name for s in t.specs] == ["DOUBLE", "ULONG"]
    assert t["ULONG"].dtype == np.uint64 and t["ULONG"][1] == 2**64 - 1
    t["DOUBLE"][0] = 1.0  # writable, owned
    with pytest.raises(FitsError, match=r"t\.fits: HDU 1 \(T\): no columns \['NOPE'\]"):
        read_fits(path).table("T", columns=["NOPE"])


def test_large_table_spans_many_read_chunks(tmp_path):
    # more rows than one decode chunk (1 MiB): chunk boundaries must not shift rows
    n = 300_001
    rng = np.random.default_rng(1)
    cols = {"TIME": np.cumsum(rng.random(n)), "PHA": rng.integers(0, 2048, n).astype(np.int16),
            "Y": rng.integers(0, 128, n).astype(np.uint8), "U": rng.integers(0, 65535, n).astype(np.uint16)}
    for suffix in SUFFIXES:
        path = write_fits(tmp_path / f"big{suffix}", [Table(cols, {"EXTNAME": "EV"})], durable=False)
        t = read_fits(path).table("EV")
        for k, v in cols.items():
            assert t[k].dtype == v.dtype and np.array_equal(t[k], v), (suffix, k)


def test_long_comments_are_cut_to_the_card_without_warnings(tmp_path):
    long = "On-board time of the correlation point (ticks of 2**-20 s), " * 3
    h = fits.Header([("EXTNAME", "T"), ("SWID", "066500230010", long), ("HIERARCH ISDC LONG KEY", 1, "short"),
                     ("OBJECT", "it's a 'quoted' name", "x" * 45)])
    spec = ColumnSpec("OB_TIME", "1K", unit="tick", comment=long)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = write_fits(tmp_path / "c.fits", [Table({"OB_TIME": np.arange(3)}, h, [spec])])
        hdr = fits.getheader(path, 1)
    assert long.startswith(hdr.comments["TTYPE1"]) and len(hdr.comments["TTYPE1"]) == 80 - 33
    assert long.startswith(hdr.comments["SWID"]) and len(hdr.comments["SWID"]) == 80 - 33
    assert hdr["ISDC LONG KEY"] == 1
    assert hdr["OBJECT"] == "it's a 'quoted' name" and hdr.comments["OBJECT"] == "x" * 42  # 10 + 25 + 3 + 42


def test_column_spec_inference_and_native_dtypes():
    specs = {s.name: s for s in Table(all_types_columns(), {}).specs}
    for name, (tform, tzero) in EXPECTED_TFORM.items():
        assert (specs[name].tform, specs[name].tzero) == (tform, tzero), name
    assert specs["MATRIX"].tdim == (3, 2)
    for name, col in all_types_columns().items():
        if col.dtype.kind != "U":
            assert native_dtype(specs[name]) == col.dtype, name
    assert native_dtype(ColumnSpec("X", "1I", tscal=0.5)) == np.float64  # scaled: physical values
    with pytest.raises(FitsError, match="TDIM"):
        ColumnSpec("X", "5J", tdim=(2, 3)).file_dtype()


def test_scaled_integer_column_round_trips_and_astropy_agrees(tmp_path):
    volts = np.array([-1.5, 0.0, 0.5, 16383.5])  # stored (v - 0.5) / 0.5 = -4, -1, 0, 32766
    spec = ColumnSpec("V", "1I", unit="V", tzero=0.5, tscal=0.5)
    path = write_fits(tmp_path / "s.fits", [Table({"V": volts}, {"EXTNAME": "S"}, [spec])])
    assert np.array_equal(read_fits(path).table("S")["V"], volts)
    with astropy_strict(path) as hl:
        assert np.array_equal(hl[1].data["V"], volts)
        assert hl[1].header["TUNIT1"] == "V"
    with pytest.raises(FitsError, match="scaled values outside -32768..32767"):
        write_fits(tmp_path / "s2.fits", [Table({"V": [1e6]}, {"EXTNAME": "S"}, [spec])])


# --------------------------------------------------------------------------- what the writer refuses

@pytest.mark.parametrize("spec, values, message", [
    (ColumnSpec("C", "1I"), np.array([40000]), r"values 40000..40000 do not fit 1I"),
    (ColumnSpec("C", "1J"), np.array([1.5]), "float64 values in integer column 1J"),
    (ColumnSpec("C", "1I", tzero=32768), np.array([-1]), r"values -1..-1 do not fit 1I \(uint16"),
    (ColumnSpec("C", "1B"), np.array([-1], np.int8), "do not fit 1B"),
    (ColumnSpec("C", "1E"), np.array([1e39]), "overflow 1E"),
    (ColumnSpec("C", "1E"), np.array([1j]), "complex values in real column"),
    (ColumnSpec("C", "1L"), np.array([1]), "int64 values in logical column"),
    (ColumnSpec("C", "4A"), np.array(["ISGRI"]), "text of 5 characters, 4A holds 4"),
    (ColumnSpec("C", "4A"), np.array(["é"]), "not ASCII"),
    (ColumnSpec("C", "4A"), np.array([1, 2]), "int64 values in text column"),
    (ColumnSpec("C", "3E"), np.zeros((1, 2)), r"cells of shape \(2,\), 3E wants \(3,\)"),
    (ColumnSpec("C", "1D"), np.array(["1.0"]), "cannot store <U3 values in 1D"),
])
def test_writer_refuses_values_that_would_change_meaning(tmp_path, spec, values, message):
    with pytest.raises(FitsError, match=message) as err:
        write_fits(tmp_path / "bad.fits", [Table({"C": values}, {"EXTNAME": "BAD"}, [spec])])
    assert str(tmp_path / "bad.fits") in str(err.value) and "HDU 1 (BAD)" in str(err.value)
    assert "column C" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_scalar_columns_are_refused():
    with pytest.raises(FitsError, match=r"columns \['C'\] are scalars"):
        Table({"C": np.float64(1.0)}, {"EXTNAME": "BAD"}, [ColumnSpec("C", "1D")])
    with pytest.raises(FitsError, match="column C: a scalar"):
        native_column(1.0, ColumnSpec("C", "1D"))


def test_writer_accepts_safe_casts():
    assert native_column(np.array([1, 2], np.int64), ColumnSpec("C", "1I")).dtype == np.int16
    assert native_column(np.array([True]), ColumnSpec("C", "1J")).tolist() == [1]
    assert native_column(np.array([3], np.int64), ColumnSpec("C", "1E")).dtype == np.float32
    assert native_column(np.array([65535]), ColumnSpec("C", "1I", tzero=32768)).dtype == np.uint16
    assert native_column(np.array([np.nan, np.inf]), ColumnSpec("C", "1E")).dtype == np.float32
    assert native_column([], ColumnSpec("C", "3J")).shape == (0, 3)


def test_writer_refuses_undeclared_and_missing_columns(tmp_path):
    spec = [ColumnSpec("A", "1J")]
    with pytest.raises(FitsError, match=r"columns \['B'\] have no ColumnSpec"):
        write_fits(tmp_path / "x.fits", [Table({"A": [1], "B": [2]}, {}, spec)])
    with pytest.raises(FitsError, match=r"no data for declared columns \['A'\]"):
        write_fits(tmp_path / "x.fits", [Table({"B": [2]}, {}, [ColumnSpec("A", "1J"), ColumnSpec("B", "1J")])])
    with pytest.raises(FitsError, match="columns of different lengths"):
        Table({"A": [1], "B": [2, 3]})
    with pytest.raises(FitsError, match="is a str, not a Table or Image"):
        write_fits(tmp_path / "x.fits", [Image(), "oops"])
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- images

IMAGE_DTYPES = ["u1", "i1", "i2", "u2", "i4", "u4", "i8", "u8", "f4", "f8"]
BITPIX_BZERO = {"u1": (8, None), "i1": (8, -128), "i2": (16, None), "u2": (16, 32768), "i4": (32, None),
                "u4": (32, 2**31), "i8": (64, None), "u8": (64, 2**63), "f4": (-32, None), "f8": (-64, None)}


def image_values(dt: str, shape=(3, 4, 5)) -> np.ndarray:
    n = int(np.prod(shape))
    if dt[0] == "f":
        a = np.linspace(-1e3, 1e3, n).astype(dt)
        a[0], a[1] = np.nan, -np.inf
    else:
        info = np.iinfo(dt)  # values spread over the whole range, both ends included
        a = np.array([info.min + (info.max - info.min) * k // (n - 1) for k in range(n)], dtype=dt)
    return a.reshape(shape)


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("dt", IMAGE_DTYPES)
def test_images_of_every_bitpix_round_trip_and_astropy_agrees(tmp_path, dt, suffix):
    cube = image_values(dt)  # 3-D in the primary HDU
    plane = cube[0].astype(np.dtype(dt).newbyteorder(">"))  # 2-D extension, given big-endian
    h = fits.Header([("BUNIT", "count", "unit"), ("IMATYPE", "INTENSITY", "map type")])
    path = write_fits(tmp_path / f"im{suffix}", [Image(cube, h), Image(plane, {"EXTNAME": "PLANE"})])
    f = read_fits(path)
    got = f.image(0).data
    assert got.dtype == np.dtype(dt) and got.dtype.isnative and got.shape == (3, 4, 5)
    assert_equal_values(got, cube)
    assert_equal_values(f.image("PLANE").data, cube[0])
    assert f.image("PLANE").data.dtype == np.dtype(dt)
    bitpix, bzero = BITPIX_BZERO[dt]
    raw_header = fits.getheader(path, 0)  # before astropy scales the data and drops BZERO
    assert raw_header["BITPIX"] == bitpix and raw_header.get("BZERO") == bzero
    assert raw_header.get("BSCALE") == (None if bzero is None else 1)
    with astropy_strict(path) as hl:
        assert (hl[0].header["NAXIS"], hl[0].header["NAXIS1"], hl[0].header["NAXIS3"]) == (3, 5, 3)
        assert hl[0].header["IMATYPE"] == "INTENSITY" and hl[1].header["EXTNAME"] == "PLANE"
        assert hl[0].data.dtype.newbyteorder("=") == np.dtype(dt)
        assert_equal_values(hl[0].data, cube)
        assert_equal_values(hl[1].data, cube[0])


def test_empty_primary_and_boolean_image(tmp_path):
    mask = np.eye(4, dtype=bool)
    path = write_fits(tmp_path / "m.fits", [Image(None, {"ORIGIN": "ISDC"}), Image(mask, {"EXTNAME": "MASK"})])
    f = read_fits(path)
    assert f.image(0).data is None and f.header(0)["ORIGIN"] == "ISDC"
    assert f.image("MASK").data.dtype == np.uint8 and np.array_equal(f.image("MASK").data, mask)
    with astropy_strict(path) as hl:
        assert hl[0].header["NAXIS"] == 0 and hl[0].header["EXTEND"] is True
    with pytest.raises(FitsError, match="no FITS BITPIX for dtype complex128"):
        write_fits(tmp_path / "c.fits", [Image(np.zeros(3, complex))])
    with pytest.raises(FitsError, match="0 dimensions"):
        write_fits(tmp_path / "c.fits", [Image(np.float32(1))])
    with pytest.raises(FitsError, match=r"HDU 1 \(MASK\): is a IMAGE, not a BINTABLE"):
        f.table("MASK")
    with pytest.raises(FitsError, match="is a BINTABLE, not an image"):
        read_fits(write_fits(tmp_path / "t.fits", [Table({"A": [1]}, {"EXTNAME": "T"})])).image("T")


def test_scaled_image_read_as_physical_values(tmp_path):
    # written by astropy with BSCALE: our reader applies it
    hdu = fits.PrimaryHDU(np.array([[0, 1], [2, 3]], np.int16))
    hdu.header["BSCALE"], hdu.header["BZERO"] = 0.5, 10.0
    hdu.writeto(tmp_path / "s.fits", checksum=True)
    assert read_fits(tmp_path / "s.fits").image(0).data.tolist() == [[10.0, 10.5], [11.0, 11.5]]


def test_find_by_name_version_and_index(tmp_path):
    hdus = [Image(), Table({"A": [1]}, {"EXTNAME": "T", "EXTVER": 1}), Table({"A": [2]}, {"EXTNAME": "T", "EXTVER": 2})]
    f = read_fits(write_fits(tmp_path / "v.fits", hdus))
    assert f.find("T", 2).index == 2 and f.find("T").index == 1 and f.find(2).extver == 2
    assert f.table("T", 2)["A"].tolist() == [2]
    assert [h.extname for h in f.hdus] == ["PRIMARY", "T", "T"]
    with pytest.raises(FitsError, match=r"v\.fits: no HDU named T version 3"):
        f.find("T", 3)
    with pytest.raises(FitsError, match=r"v\.fits: no HDU 5 \(file has 3\)"):
        f.find(5)


# --------------------------------------------------------------------------- checksums

def test_encode_checksum_matches_the_checksum_papers_example():
    # Seaman, Pence & Rots, FITS checksum proposal, "Encoding Example": an HDU summing to
    # 868229149 gets CHECKSUM = the encoding of its complement 3426738146 (hex CC3FDFE2).
    assert encode_checksum(868229149) == "hcHjjc9ghcEghc9g"
    assert encode_checksum(0xCC3FDFE2, complement=False) == "hcHjjc9ghcEghc9g"


def test_encode_checksum_matches_astropy_for_every_byte_in_every_position():
    enc = fits.PrimaryHDU()._char_encode  # astropy's encoder (the reference implementation here)
    for b in range(256):
        for value in (b * 0x01010101, b << 24, b, (b << 16) | (255 - b)):
            assert encode_checksum(value, complement=False) == enc(value), hex(value)


@given(st.integers(0, 2**32 - 1))
@example(0)
@example(2**32 - 1)
def test_encode_checksum_matches_astropy_and_stays_alphanumeric(value):
    enc = fits.PrimaryHDU()._char_encode
    s = encode_checksum(value, complement=False)
    assert s == enc(value) and len(s) == 16 and s.isalnum() and s.isascii()
    assert encode_checksum(value) == enc(~value & 0xFFFFFFFF)


@given(st.binary(max_size=400), st.integers(0, 2**32 - 1))
def test_ones_complement_sum_matches_astropy(buf, start):
    ref = fits.PrimaryHDU()._compute_checksum(np.frombuffer(buf, np.uint8), start)
    assert ones_complement_sum(buf, start) == int(ref)


@given(st.binary(max_size=200), st.binary(max_size=200))
def test_ones_complement_sum_is_incremental_over_word_aligned_pieces(a, b):
    a = a[: len(a) - len(a) % 4]
    assert ones_complement_sum(a + b) == ones_complement_sum(b, ones_complement_sum(a))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_our_checksums_verify_and_a_flipped_byte_is_found(tmp_path, suffix):
    hdus = [Image(np.arange(12, dtype=np.int32).reshape(3, 4)), Table(all_types_columns(), user_header())]
    path = write_fits(tmp_path / f"c{suffix}", hdus)
    f = read_fits(path)
    assert [f.verify_checksum(h) for h in f.hdus] == [("ok", "ok")] * 2
    raw = bytearray(gzip.decompress(path.read_bytes()) if suffix.endswith(".gz") else path.read_bytes())
    table = f.hdus[1]

    def damaged(offset: int):
        b = bytearray(raw)
        b[offset] ^= 0x01
        p = tmp_path / f"bad{suffix}"
        p.write_bytes(gzip.compress(bytes(b)) if suffix.endswith(".gz") else bytes(b))
        g = read_fits(p)
        return [g.verify_checksum(h) for h in g.hdus]

    # one bit in the table data: DATASUM and CHECKSUM of that HDU are wrong, the image's are not
    assert damaged(table.data_offset + 5) == [("ok", "ok"), ("bad", "bad")]
    # one bit in the zero fill after the data: still inside the checksummed block
    assert damaged(table.data_offset + table.data_size + 3) == [("ok", "ok"), ("bad", "bad")]
    # one bit in a header comment: the data are fine, the HDU is not
    at = bytes(raw).index(b"string with quotes")
    assert damaged(at) == [("ok", "ok"), ("ok", "bad")]
    # one bit in the primary image data
    assert damaged(f.hdus[0].data_offset)[0] == ("bad", "bad")


def test_missing_checksums_are_reported_and_astropy_checksums_verify(tmp_path):
    fits.HDUList([fits.PrimaryHDU(np.ones((2, 2))), fits.BinTableHDU.from_columns(
        [fits.Column("A", "1J", array=np.arange(3))])]).writeto(tmp_path / "plain.fits")
    f = read_fits(tmp_path / "plain.fits")
    assert [f.verify_checksum(h) for h in f.hdus] == [("missing", "missing")] * 2
    fits.HDUList([fits.PrimaryHDU(np.ones((2, 2))), fits.BinTableHDU.from_columns(
        [fits.Column("A", "1J", array=np.arange(3))])]).writeto(tmp_path / "sum.fits", checksum=True)
    f = read_fits(tmp_path / "sum.fits")
    assert [f.verify_checksum(h) for h in f.hdus] == [("ok", "ok")] * 2
    assert f.table(1)["A"].tolist() == [0, 1, 2]


# --------------------------------------------------------------------------- atomic writes

def test_failed_write_leaves_no_target_and_no_temp_file(tmp_path):
    good = Table({"A": np.arange(3)}, {"EXTNAME": "OK"})
    bad = Table({"B": np.array([2**40])}, {"EXTNAME": "BAD"}, [ColumnSpec("B", "1J")])
    for name in ("new.fits", "new.fits.gz"):
        with pytest.raises(FitsError, match=rf"{name}: HDU 2 \(BAD\): .*column B: values"):
            write_fits(tmp_path / name, [Image(), good, bad])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_existing_target_is_replaced_only_by_a_successful_write(tmp_path, suffix, monkeypatch):
    path = tmp_path / f"p{suffix}"
    write_fits(path, [Table({"A": np.arange(3)}, {"EXTNAME": "V1"})])
    before = path.read_bytes()
    bad = Table({"A": np.array(["x"])}, {"EXTNAME": "V2"}, [ColumnSpec("A", "1J")])
    with pytest.raises(FitsError):
        write_fits(path, [bad])
    assert path.read_bytes() == before and sorted(tmp_path.iterdir()) == [path]

    # a crash of the process (here: an interrupt inside os.replace) keeps the old file too,
    # and the temporary file lay beside the target with the same full suffix
    seen = []

    def interrupted(src, dst):
        seen.append(Path(src))
        raise KeyboardInterrupt

    monkeypatch.setattr(fitsfile.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_fits(path, [Table({"A": np.arange(5)}, {"EXTNAME": "V3"})])
    monkeypatch.undo()
    assert seen[0].parent == tmp_path and seen[0].name.endswith(f".tmp{suffix}") and seen[0].name.startswith(".p.")
    assert path.read_bytes() == before and sorted(tmp_path.iterdir()) == [path]

    write_fits(path, [Table({"A": np.arange(4)}, {"EXTNAME": "V4"})])
    assert read_fits(path).table("V4")["A"].tolist() == [0, 1, 2, 3]
    assert (path.stat().st_mode & 0o777) == 0o644
    with pytest.raises(FitsError, match="exists and overwrite=False"):
        write_fits(path, [Image()], overwrite=False)
    with pytest.raises(FitsError, match="does not exist"):
        write_fits(tmp_path / "no" / "x.fits", [Image()])


@pytest.mark.parametrize("durable", [True, False])
def test_durable_and_not_durable_write_the_same_bytes(tmp_path, durable):
    h = user_header(DATE="2026-01-01T00:00:00")  # fixed DATE: the bytes do not depend on the clock
    with fixed_date("2026-01-01T00:00:00"):  # also for the primary HDU written in front of the table
        p = write_fits(tmp_path / "d.fits", [Table(all_types_columns(), h)], durable=durable)
        q = write_fits(tmp_path / "e.fits", [Table(all_types_columns(), h)], durable=True)
    assert p.read_bytes() == q.read_bytes()
    assert len(p.read_bytes()) % 2880 == 0


# --------------------------------------------------------------------------- damaged files

@pytest.fixture
def valid_file(tmp_path) -> Path:
    cols = {"TIME": np.linspace(0, 1, 50), "PHA": np.arange(50, dtype=np.int16), "NAME": np.array(["src"] * 50),
            "U": np.arange(50, dtype=np.uint32), "V": np.ones((50, 2), np.float32)}
    return write_fits(tmp_path / "valid.fits", [Image(np.arange(6, dtype=np.int16).reshape(2, 3)),
                                                Table(cols, {"EXTNAME": "EV", "EXTVER": 1}),
                                                Image(np.ones((4, 4), np.float32), {"EXTNAME": "IMA"})])


def replace_card(raw: bytes, keyword: str, value) -> bytes:
    """`raw` with the card `keyword` of the binary table's header rewritten."""
    start = raw.index(keyword.encode().ljust(8) + b"=", raw.index(b"XTENSION= 'BINTABLE'"))
    return raw[:start] + str(fits.Card(keyword, value)).encode() + raw[start + 80:]


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[: len(raw) - 2880], "truncated"),  # last data block gone
    (lambda raw: raw[:4000], "truncated"),  # cut inside the second header
    (lambda raw: raw[:100], "less than one 2880-byte block"),
    (lambda raw: b"", "less than one 2880-byte block"),
    (lambda raw: b"\x89PNG\r\n\x1a\n" + b"\0" * 5000, "does not start with SIMPLE"),
    (lambda raw: b"hello, world\n" * 400, "does not start with SIMPLE"),
    (lambda raw: raw[:2880].replace(b"END" + b" " * 77, b" " * 80) * 3, "truncated header of HDU 0"),
    (lambda raw: replace_card(raw, "NAXIS2", 10**6), r"HDU 1 \(EV\) declares 25000000 data bytes"),
    (lambda raw: replace_card(raw, "NAXIS2", -5), "negative data size"),
    (lambda raw: replace_card(raw, "NAXIS1", 10), r"HDU 1 \(EV\): columns take 25 bytes, NAXIS1 is 10"),
    (lambda raw: replace_card(raw, "TFORM2", "1Z"), r"HDU 1 \(EV\): unsupported TFORM '1Z'"),
    (lambda raw: replace_card(raw, "EXTVER", "one"), "EXTVER is not an integer"),
    (lambda raw: raw.replace(b"BITPIX  =                   16", b"BITPIX  =                   12"),
     r"HDU 0 \(PRIMARY\): invalid BITPIX 12"),
    (lambda raw: raw.replace(b"BITPIX  =                   16", b"BITPIX  =                 x 16"),
     r"HDU 0: card 2 \(BITPIX\): unparsable value 'x 16'"),
    (lambda raw: raw.replace(b"XTENSION= 'IMAGE", b"XTENSIOM= 'IMAGE"), "does not start with XTENSION"),
])
def test_damaged_files_raise_fits_error_naming_the_file(valid_file, damage, message):
    bad = valid_file.with_name("damaged.fits")
    bad.write_bytes(damage(valid_file.read_bytes()))
    with pytest.raises(FitsError, match=message) as err:
        f = read_fits(bad)
        for h in f.hdus:
            f.verify_checksum(h)
            f.table(h.index) if h.xtension == "BINTABLE" else f.image(h.index)
    assert str(err.value).startswith(str(bad)), err.value


def test_unreadable_paths_raise_fits_error(tmp_path, valid_file):
    with pytest.raises(FitsError, match=r"nothere\.fits: .*No such file"):
        read_fits(tmp_path / "nothere.fits")
    with pytest.raises(FitsError, match=r"nothere\.fits\.gz: cannot read"):
        read_fits(tmp_path / "nothere.fits.gz")
    (tmp_path / "notgz.fits.gz").write_bytes(valid_file.read_bytes())
    with pytest.raises(FitsError, match=r"notgz\.fits\.gz: cannot read: Not a gzipped file"):
        read_fits(tmp_path / "notgz.fits.gz")
    z = gzip.compress(valid_file.read_bytes())
    (tmp_path / "cut.fits.gz").write_bytes(z[: len(z) // 2])
    with pytest.raises(FitsError, match=r"cut\.fits\.gz: cannot read"):
        read_fits(tmp_path / "cut.fits.gz")
    (tmp_path / "crc.fits.gz").write_bytes(z[:-8] + bytes(8))
    with pytest.raises(FitsError, match=r"crc\.fits\.gz: cannot read: CRC check failed"):
        read_fits(tmp_path / "crc.fits.gz")


_VALID: dict[str, bytes] = {}


def small_valid_file() -> bytes:
    if "raw" not in _VALID:
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            cols = {"T": np.linspace(0, 1, 5), "P": np.arange(5, dtype=np.int16), "S": np.array(["ab"] * 5),
                    "U": np.arange(5, dtype=np.uint16), "F": np.array([True, False] * 2 + [True])}
            p = write_fits(Path(d) / "v.fits", [Image(np.arange(6, dtype=np.uint8).reshape(2, 3)),
                                                Table(cols, {"EXTNAME": "EV"}),
                                                Image(np.ones((2, 2), np.float32), {"EXTNAME": "IMA"})])
            _VALID["raw"] = p.read_bytes()
            _VALID["headers"] = [(h.header_offset, h.data_offset) for h in read_fits(p).hdus]
    return _VALID["raw"]


small_valid_file()
# Where to damage: anywhere, or (more often than chance) inside a header, with bytes a
# header is made of.
position = st.one_of(st.integers(0, len(_VALID["raw"]) - 1),
                     *[st.integers(a, b - 1) for a, b in _VALID["headers"]])
new_byte = st.one_of(st.integers(0, 255), st.sampled_from(b"0123456789 '=-.TFEND/ABIJKLXPQ\0"))


def read_everything(path: Path) -> list:
    f = read_fits(path)
    out = []
    for h in f.hdus:
        out.append(f.verify_checksum(h))
        if h.xtension == "BINTABLE":
            f.table(h.index)
        elif h.xtension in ("PRIMARY", "IMAGE"):
            f.image(h.index)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(position, new_byte), min_size=1, max_size=6), st.integers(0, 3))
def test_random_damage_raises_only_fits_error_and_never_passes_the_checksums(tmp_path, edits, cut):
    raw = bytearray(small_valid_file())
    for at, b in edits:
        raw[at] = b
    if cut:  # sometimes also lose the end of the file
        raw = raw[: len(raw) - cut * 1000]
    path = tmp_path / "mutant.fits"
    path.write_bytes(bytes(raw))
    try:
        statuses = read_everything(path)
    except FitsError as exc:
        assert str(exc).startswith(str(path))
        return
    if bytes(raw) != small_valid_file():
        # a damaged file that still reads must not pass every checksum
        assert any(s != ("ok", "ok") for s in statuses), (edits, cut, statuses)
