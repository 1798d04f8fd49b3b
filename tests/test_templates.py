"""Templates: products made from them, validated on write and on read, and a strict loader."""
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from isdc.dal import templates
from isdc.dal.fitsfile import ColumnSpec, Table, read_fits, write_fits
from isdc.dal.products import open_product, write_product
from isdc.dal.templates import TemplateError, all_templates, get, load
from isdc.resources import data_dir

# A template written for these tests: every column type and keyword kind.
TEST_TEMPLATE = """\
name: TEST-ALL.-TYP
version: 3
kind: table
description: every column type
keywords:
  TELESCOP: {value: INTEGRAL, comment: Telescope or mission name}
  MJDREF: {value: 51544.0, comment: Modified Julian Date of time origin}
  ISDCOK: {value: true, comment: a fixed logical}
  REVOL: {type: int, comment: Revolution number}
  TSTART: {type: float, unit: d, comment: Start time (IJD)}
  SWID: {type: str, comment: Science Window identifier}
  EXPOSURE: {type: float, unit: s, required: false, comment: Exposure}
columns:
  - {name: TIME, format: 1D, unit: d, comment: Event time}
  - {name: PHA, format: 1I, unit: chan}
  - {name: FLAG, format: 1L}
  - {name: NAME, format: 8A}
  - {name: VEC, format: 3E}
  - {name: U16, format: 1I, zero: 32768}
  - {name: S8, format: 1B, zero: -128}
  - {name: MAT, format: 6J, dim: [3, 2], null: -1}
"""
KEYWORDS = {"REVOL": 665, "TSTART": 1234.5, "SWID": "066500230010"}


@pytest.fixture
def tmpl(tmp_path) -> templates.Template:
    path = tmp_path / "TEST-ALL.-TYP.yaml"
    path.write_text(TEST_TEMPLATE)
    return load(path)


def columns(n: int = 4, **override) -> dict:
    cols = {
        "TIME": np.linspace(1000.0, 1001.0, n),
        "PHA": np.arange(n, dtype=np.int16),
        "FLAG": np.arange(n) % 2 == 0,
        "NAME": np.array(["Crab", "", "GRS 1915", "x"] * n)[:n],
        "VEC": np.ones((n, 3), np.float32),
        "U16": np.arange(n, dtype=np.uint16) + 65000,
        "S8": np.arange(n, dtype=np.int8) - 100,
        "MAT": np.arange(n * 6, dtype=np.int32).reshape(n, 2, 3),
    }
    cols.update(override)
    return cols


# --------------------------------------------------------------------------- making products

def test_table_fills_fixed_keywords_and_stamps_the_template(tmpl):
    t = tmpl.table(columns(), **KEYWORDS, EXPOSURE=1800.0, OBJECT="Crab")
    h = t.header
    assert h["EXTNAME"] == "TEST-ALL.-TYP" and h["TEMPLATE"] == "TEST-ALL.-TYP" and h["TEMPLVER"] == 3
    assert h["TELESCOP"] == "INTEGRAL" and h["MJDREF"] == 51544.0 and h["ISDCOK"] is True
    assert (h["REVOL"], h["TSTART"], h["SWID"], h["EXPOSURE"]) == (665, 1234.5, "066500230010", 1800.0)
    assert h.comments["TSTART"] == "[d] Start time (IJD)"  # the unit goes into the comment
    assert h["OBJECT"] == "Crab"  # extra keywords are kept
    assert [s.tform for s in t.specs] == ["1D", "1I", "1L", "8A", "3E", "1I", "1B", "6J"]
    assert t.spec("MAT").tdim == (3, 2) and t.spec("MAT").tnull == -1 and t.spec("U16").tzero == 32768
    assert t["U16"].dtype == np.uint16 and t["S8"].dtype == np.int8 and t["NAME"].dtype.kind == "U"
    # numpy scalars become plain keyword values
    assert tmpl.table(columns(), **{**KEYWORDS, "REVOL": np.int64(7)}).header["REVOL"] == 7


def test_required_and_fixed_keywords_are_enforced(tmpl):
    with pytest.raises(TemplateError, match=r"template TEST-ALL\.-TYP v3: required keyword TSTART not given"):
        tmpl.table(columns(), REVOL=665, SWID="066500230010")
    with pytest.raises(TemplateError, match=r"keyword TELESCOP is fixed to 'INTEGRAL', got 'XMM'"):
        tmpl.table(columns(), **KEYWORDS, TELESCOP="XMM")
    assert tmpl.table(columns(), **KEYWORDS, TELESCOP="INTEGRAL").header["TELESCOP"] == "INTEGRAL"
    with pytest.raises(TemplateError, match=r"keyword REVOL = '0665' is str, template requires int"):
        tmpl.table(columns(), **{**KEYWORDS, "REVOL": "0665"})
    with pytest.raises(TemplateError, match=r"keyword REVOL = True is bool, template requires int"):
        tmpl.table(columns(), **{**KEYWORDS, "REVOL": True})
    # an int is a valid float keyword (TSTART = 1234)
    assert tmpl.table(columns(), **{**KEYWORDS, "TSTART": 1234}).header["TSTART"] == 1234


def test_unknown_missing_and_ragged_columns_are_refused(tmpl):
    with pytest.raises(TemplateError, match=r"TEST-ALL\.-TYP v3: unknown columns \['ENERGY'\]"):
        tmpl.table(columns(ENERGY=np.ones(4)), **KEYWORDS)
    cols = columns()
    del cols["PHA"]
    with pytest.raises(TemplateError, match="column PHA not given"):
        tmpl.table(cols, **KEYWORDS)
    with pytest.raises(TemplateError, match="column PHA has 3 rows, others have 4"):
        tmpl.table(columns(PHA=np.arange(3)), **KEYWORDS)
    with pytest.raises(TemplateError, match=r"column VEC: cells of shape \(2,\), 3E wants \(3,\)"):
        tmpl.table(columns(VEC=np.ones((4, 2))), **KEYWORDS)
    with pytest.raises(TemplateError, match=r"column MAT: cells of shape \(6,\), 6J wants \(2, 3\)"):
        tmpl.table(columns(MAT=np.ones((4, 6), np.int32)), **KEYWORDS)
    with pytest.raises(TemplateError, match="is a table, not an image"):
        tmpl.image(np.ones((2, 2)))


@pytest.mark.parametrize("column, values, dtype", [
    ("TIME", np.arange(4, dtype=np.int64), np.float64),  # int into float: exact for these values
    ("VEC", np.ones((4, 3), np.int16), np.float32),
    ("PHA", np.array([-32768, 0, 1, 32767]), np.int16),  # int64 values that fit
    ("PHA", np.array([True, False, True, True]), np.int16),
    ("U16", np.array([0, 1, 2, 65535], np.int64), np.uint16),
    ("NAME", np.array([b"ab", b"", b"12345678", b"x"]), np.dtype("U8")),  # bytes become str
    ("MAT", [], np.int32),  # an empty list fits any column (with 0 rows everywhere)
])
def test_safe_casts_are_made(tmpl, column, values, dtype):
    cols = columns(**{column: values})
    if len(values) == 0:
        cols = {k: v[:0] for k, v in cols.items()}
    t = tmpl.table(cols, **KEYWORDS)
    assert t[column].dtype == dtype and len(t[column]) == len(values)
    assert np.array_equal(t[column], np.asarray(values).astype(dtype).reshape(t[column].shape))


@pytest.mark.parametrize("column, values, problem", [
    ("PHA", np.array([0.0, 1.5, 2.0, 3.0]), "float64 values in integer column 1I: round them first"),
    ("PHA", np.array([0, 1, 2, 40000]), r"values 0..40000 do not fit 1I \(int16, -32768..32767\)"),
    ("U16", np.array([-1, 0, 1, 2]), r"values -1..2 do not fit 1I \(uint16, 0..65535\)"),
    ("S8", np.array([0, 1, 2, 128]), r"values 0..128 do not fit 1B \(int8, -128..127\)"),
    ("MAT", np.full((4, 2, 3), 2**31), r"values 2147483648..2147483648 do not fit 6J"),
    ("VEC", np.full((4, 3), 1e300), "values 1e\\+300..1e\\+300 overflow 3E"),
    ("NAME", np.array(["a", "b", "c", "123456789"]), "text of 9 characters, 8A holds 8"),
    ("NAME", np.array(["a", "b", "c", "Ω"]), "text is not ASCII"),
    ("NAME", np.arange(4), "int64 values in text column 8A"),
    ("FLAG", np.arange(4), "int64 values in logical column 1L: give booleans"),
    ("TIME", np.array(["1", "2", "3", "4"]), "cannot store <U1 values in 1D"),
    ("TIME", np.ones(4) * 1j, "complex values in real column 1D"),
])
def test_casts_that_change_meaning_are_refused_naming_template_and_column(tmpl, column, values, problem):
    with pytest.raises(TemplateError, match=rf"template TEST-ALL\.-TYP v3: column {column}: {problem}"):
        tmpl.table(columns(**{column: values}), **KEYWORDS)


def test_image_templates_make_images(synthetic):
    t = get("ISGR-SKY.-IMA")
    img = synthetic(t)
    assert img.header["EXTNAME"] == "ISGR-SKY.-IMA" and img.header["CTYPE1"] == "RA---TAN"
    with pytest.raises(TemplateError, match=r"ISGR-SKY\.-IMA v1 is an image, not a table"):
        t.table({})
    with pytest.raises(TemplateError, match="required keyword IMATYPE not given"):
        t.image(np.ones((2, 2), np.float32))


# --------------------------------------------------------------------------- validation on write and read

def events(n: int = 10, **override):
    cols = {"TIME": np.linspace(1000, 1000.02, n), "OB_TIME": np.arange(n, dtype=np.int64) * 1000,
            "ISGRI_PHA": np.arange(n, dtype=np.int16), "RISE_TIME": np.arange(n, dtype=np.int16),
            "ISGRI_Y": np.arange(n, dtype=np.uint8), "ISGRI_Z": np.arange(n, dtype=np.uint8)}
    return get("ISGR-EVTS-ALL").table({**cols, **override}, REVOL=665, SWID="066500230010", SW_TYPE="POINTING",
                                      TSTART=1000.0, TSTOP=1000.02)


def test_write_product_and_open_product_round_trip(tmp_path):
    ev = events()
    path = write_product(tmp_path / "isgri_events.fits.gz", [ev])
    back = open_product(path).table("ISGR-EVTS-ALL")
    for k, v in ev.columns.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v), k
    assert back.header["TEMPLATE"] == "ISGR-EVTS-ALL" and back.header["SWID"] == "066500230010"


def tamper_keyword(t: Table, key, value=None) -> Table:
    h = t.header.copy()
    if value is None:
        del h[key]
    else:
        h[key] = value
    return Table(t.columns, h, t.specs)


@pytest.mark.parametrize("tamper, problem", [
    (lambda t: tamper_keyword(t, "REVOL"), "keyword REVOL missing"),
    (lambda t: tamper_keyword(t, "TELESCOP", "XMM"), "keyword TELESCOP = 'XMM', template requires 'INTEGRAL'"),
    (lambda t: tamper_keyword(t, "TSTART", "yesterday"), "keyword TSTART = 'yesterday' is str, template requires float"),
    (lambda t: tamper_keyword(t, "EXTNAME", "ISGR-EVTS-COR"), "EXTNAME 'ISGR-EVTS-COR', template requires 'ISGR-EVTS-ALL'"),
    (lambda t: Table(t.columns, t.header, [ColumnSpec(**{**vars(s), "tform": "1J"}) if s.name == "ISGRI_PHA" else s
                                           for s in t.specs]),
     "column ISGRI_PHA has TFORM 1J, template requires 1I"),
    (lambda t: Table(t.columns, t.header, [ColumnSpec(**{**vars(s), "unit": "keV"}) if s.name == "ISGRI_PHA" else s
                                           for s in t.specs]),
     "column ISGRI_PHA has unit 'keV', template requires 'chan'"),
    (lambda t: Table({k: v for k, v in t.columns.items() if k != "RISE_TIME"}, t.header,
                     [s for s in t.specs if s.name != "RISE_TIME"]), "column RISE_TIME missing"),
    (lambda t: Table({**t.columns, "EXTRA": np.zeros(10)}, t.header, t.specs + [ColumnSpec("EXTRA", "1D")]),
     r"columns not in the template: \['EXTRA'\]"),
])
def test_write_product_refuses_what_differs_from_the_template(tmp_path, tamper, problem):
    path = tmp_path / "bad.fits"
    with pytest.raises(TemplateError) as err:
        write_product(path, [tamper(events())])
    msg = str(err.value)
    assert f"{path} HDU " in msg and "(template ISGR-EVTS-ALL v1)" in msg and re.search(problem, msg), msg
    assert not path.exists() and list(tmp_path.iterdir()) == []

    # the same HDU written without validation is refused when it is read as a product
    write_fits(path, [tamper(events())])
    read_fits(path).table(1)  # plain FITS: fine
    with pytest.raises(TemplateError) as err:
        open_product(path).table(1)
    msg = str(err.value)
    assert f"{path} HDU " in msg and "(template ISGR-EVTS-ALL v1)" in msg and re.search(problem, msg), msg


def test_products_of_unknown_template_or_version_are_refused(tmp_path):
    for key, value, problem in [("TEMPLATE", "NO-SUCH-TMPL", "no template named 'NO-SUCH-TMPL'"),
                                ("TEMPLVER", 99, "made from ISGR-EVTS-ALL v99, this code knows v1")]:
        path = tmp_path / f"{key}.fits"
        write_fits(path, [tamper_keyword(events(), key, value)])
        with pytest.raises(TemplateError, match=rf"{path}.*{problem}"):
            open_product(path).table("ISGR-EVTS-ALL")


def test_image_products_are_validated_on_read(tmp_path, synthetic):
    img = synthetic(get("ISGR-SKY.-IMA"))
    path = write_product(tmp_path / "sky.fits", [fits_primary(), img])
    assert open_product(path).image("ISGR-SKY.-IMA").header["IMATYPE"] == "TEST"
    del img.header["E_MIN"]
    write_fits(path, [fits_primary(), img])
    with pytest.raises(TemplateError, match=r"sky\.fits HDU ISGR-SKY\.-IMA \(template ISGR-SKY\.-IMA v1\): keyword E_MIN missing"):
        open_product(path).image("ISGR-SKY.-IMA")


def fits_primary():
    from isdc.dal.fitsfile import Image
    return Image(None, fits.Header([("ORIGIN", "ISDC")]))


# --------------------------------------------------------------------------- the loader

def test_every_shipped_template_loads_and_makes_a_valid_product(tmp_path, synthetic):
    files = sorted(data_dir("templates").glob("*.yaml"))
    loaded = all_templates()
    assert sorted(loaded) == [f.stem for f in files] and len(files) >= 1
    for name, t in loaded.items():
        assert load(data_dir("templates") / f"{name}.yaml") == t
        hdu = synthetic(t, nrows=3)
        path = write_product(tmp_path / f"{name}.fits", [hdu], durable=False)
        f = open_product(path)
        back = f.table(t.extname or name) if t.kind == "table" else f.image(t.extname or name)
        assert back.header["TEMPLATE"] == name
        if t.kind == "table":
            for k, v in hdu.columns.items():
                assert np.array_equal(back[k], v), (name, k)


GOOD = textwrap.dedent("""\
    name: {name}
    version: 1
    kind: table
    keywords:
      REVOL: {{type: int}}
    columns:
      - {{name: A, format: 1J}}
    """)


@pytest.mark.parametrize("edit, problem", [
    (lambda s: s + "colums: []\n", r"unknown keys \['colums'\]"),
    (lambda s: s + "hduclass: OGIP\n", r"unknown keys \['hduclass'\]"),
    (lambda s: s.replace("{name: A, format: 1J}", "{name: A, format: 1J, units: s}"), r"column A: unknown keys \['units'\]"),
    (lambda s: s.replace("{type: int}", "{type: int, default: 3}"), r"keyword REVOL: unknown keys \['default'\]"),
    (lambda s: s.replace("1J", "1Z"), "format '1Z' is not a TFORM we write"),
    (lambda s: s.replace("1J", "1Jx"), "format '1Jx' is not a TFORM we write"),
    (lambda s: s.replace("1J", "1PE(10)"), r"format '1PE\(10\)' is not a TFORM we write"),
    (lambda s: s.replace("1J", "8X"), "format '8X' is not a TFORM we write"),
    (lambda s: s.replace("format: 1J", "form: 1J"), r"column A: unknown keys \['form'\]"),
    (lambda s: s.replace("1J}", "5J, dim: [2, 3]}"), r"TDIM \(2, 3\) holds 6 values, TFORM 5J 5"),
    (lambda s: s.replace("1J}", "1E, null: 0}"), "null .TNULL. is for integer columns"),
    (lambda s: s.replace("1J}", "1J, zero: 100}"), "zero .TZERO. must be the unsigned offset"),
    (lambda s: s.replace("REVOL:", "revol:"), "keyword 'revol' is not a valid FITS keyword"),
    (lambda s: s.replace("REVOL:", "REVOLUTION:"), "keyword 'REVOLUTION' is not a valid FITS keyword"),
    (lambda s: s.replace("{type: int}", "{type: integer}"), "keyword REVOL: type must be one of"),
    (lambda s: s.replace("{type: int}", "{comment: x}"), "keyword REVOL: give a type or a fixed value"),
    (lambda s: s.replace("{type: int}", "{type: int, value: 'x'}"), "keyword REVOL: value 'x' is not of type int"),
    (lambda s: s.replace("version: 1", "version: one"), "version must be a positive integer"),
    (lambda s: s.replace("kind: table", "kind: cube"), "kind must be table or image"),
    (lambda s: s.replace("kind: table", "kind: image"), "an image template has no columns"),
    (lambda s: s.replace("  - {name: A, format: 1J}", "  - {name: A, format: 1J}\n  - {name: A, format: 1E}"),
     "column A declared twice"),
    (lambda s: s.replace("name: A,", "name: 2A,"), "column name '2A'"),
    (lambda s: s.replace("columns:\n  - {name: A, format: 1J}", "columns: []"), "a table template needs columns"),
    (lambda s: "- just\n- a list\n", "must be a mapping"),
    (lambda s: s + "  - {name: B, format: [1J\n", "not valid YAML"),
    (lambda s: s.replace("version: 1\n", ""), "'version' missing"),
])
def test_broken_template_files_are_refused_naming_the_file(tmp_path, edit, problem):
    path = tmp_path / "TEST-BRKN-TPL.yaml"
    path.write_text(edit(GOOD.format(name="TEST-BRKN-TPL")))
    with pytest.raises(TemplateError, match=problem) as err:
        load(path)
    assert str(err.value).startswith(f"template file {path}: ")


def test_the_unbroken_template_loads_and_the_file_name_must_be_the_name(tmp_path):
    good = tmp_path / "TEST-GOOD-TPL.yaml"
    good.write_text(GOOD.format(name="TEST-GOOD-TPL"))
    t = load(good)
    assert (t.name, t.version, t.kind, [c.tform for c in t.columns]) == ("TEST-GOOD-TPL", 1, "table", ["1J"])
    other = tmp_path / "OTHER-NAME.yaml"
    other.write_text(GOOD.format(name="TEST-GOOD-TPL"))
    with pytest.raises(TemplateError, match=rf"template file {other}: file name must be the template name"):
        load(other)
    with pytest.raises(TemplateError, match=r"no template named 'NOPE-NOPE-NOP'"):
        get("NOPE-NOPE-NOP")
    with pytest.raises(TemplateError, match=rf"template file {tmp_path / 'missing.yaml'}: cannot read"):
        load(tmp_path / "missing.yaml")
