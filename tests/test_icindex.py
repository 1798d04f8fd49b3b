"""IC index: validity ranges, versions, selection, FITS round trip, provenance, bad trees."""
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from isdc.dal import icindex as I
from isdc.dal.archive import Archive
from isdc.dal.fitsfile import Image, Table, read_fits, write_fits
from isdc.dal.grouping import Grouping
from isdc.dal.icindex import ICError, build_ic_index, read_ic_index, scan_ic_tree
from isdc.dal.verify import verify
from isdc.resources import data_dir

REF = Path(__file__).resolve().parent.parent / "test_data" / "reference"


def write_ic(path: Path, extname: str, version: int, vstart: float, vstop: float, *, image: bool = False,
             seed: int = 0, **extra) -> Path:
    """An IC file: primary + one data HDU with VERSION/VSTART/VSTOP."""
    h = fits.Header()
    h["EXTNAME"] = extname
    h["VERSION"] = version
    h["VSTART"] = vstart
    h["VSTOP"] = vstop
    for k, v in extra.items():
        h[k] = v
    rng = np.random.default_rng(seed)
    hdu = Image(rng.random((8, 8)), h) if image else Table({"GAIN": rng.random(16)}, h)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_fits(path, [Image(), hdu] if image else [hdu])


@pytest.fixture
def archive(tmp_path):
    ar = Archive(tmp_path / "archive")
    ibis = ar.ic_dir("ibis")
    # mask: v1 for the whole mission, v2 for 1000..2000, v3 for 1500..1600
    write_ic(ibis / "mod" / "isgr_mask_mod_0001.fits", "ISGR-MASK-MOD", 1, 0.0, 10000.0, image=True)
    write_ic(ibis / "mod" / "isgr_mask_mod_0002.fits", "ISGR-MASK-MOD", 2, 1000.0, 2000.0, image=True, seed=2)
    write_ic(ibis / "mod" / "isgr_mask_mod_0003.fits", "ISGR-MASK-MOD", 3, 1500.0, 1600.0, image=True, seed=3)
    # gain: version 1 in two pieces with a gap 100..200
    write_ic(ibis / "cal" / "isgr_gain_mod_0001.fits", "ISGR-GAIN-MOD", 1, 0.0, 100.0)
    write_ic(ibis / "cal" / "isgr_gain_mod_0002.fits", "ISGR-GAIN-MOD", 1, 200.0, 300.0)
    write_ic(ar.ic_dir("jemx") / "jmx1_gain_mod_0001.fits", "JMX1-GAIN-MOD", 1, 0.0, 10000.0)
    return ar


def test_highest_valid_version_wins(archive):
    idx = scan_ic_tree(archive.ic_root())
    assert len(idx) == 6
    pick = lambda t: idx.select("ibis", "ISGR-MASK-MOD", t).version  # noqa: E731
    assert [pick(t) for t in (500.0, 999.999, 1000.0, 1200.0, 1499.9, 1500.0, 1550.0, 1600.0, 1999.99, 2000.0)] == \
        [1, 1, 2, 2, 2, 3, 3, 2, 2, 1]
    sel = idx.select("ibis", "ISGR-MASK-MOD", 1550.0)
    assert sel.file == "ibis/mod/isgr_mask_mod_0003.fits" and sel.hdu == 1
    assert (sel.vstart, sel.vstop) == (1500.0, 1600.0)
    assert sel.path == archive.ic_root() / "ibis" / "mod" / "isgr_mask_mod_0003.fits"
    assert idx.select("jemx", "JMX1-GAIN-MOD", 5.0).file == "jemx/jmx1_gain_mod_0001.fits"


def test_validity_boundaries_start_inclusive_stop_exclusive(archive):
    idx = scan_ic_tree(archive.ic_root())
    assert idx.select("ibis", "ISGR-GAIN-MOD", 0.0).file.endswith("0001.fits")
    assert idx.select("ibis", "ISGR-GAIN-MOD", np.nextafter(100.0, 0.0)).file.endswith("0001.fits")
    assert idx.select("ibis", "ISGR-GAIN-MOD", 200.0).file.endswith("0002.fits")
    with pytest.raises(ICError, match="valid at IJD 100.0"):
        idx.select("ibis", "ISGR-GAIN-MOD", 100.0)
    with pytest.raises(ICError, match="valid at IJD 300.0"):
        idx.select("ibis", "ISGR-GAIN-MOD", 300.0)


def test_gap_in_coverage_names_everything(archive):
    idx = scan_ic_tree(archive.ic_root())
    with pytest.raises(ICError) as err:
        idx.select("ibis", "ISGR-GAIN-MOD", 150.0)
    msg = str(err.value)
    for part in ("ISGR-GAIN-MOD", "ibis", "150.0", "v1 [0.0, 100.0)", "v1 [200.0, 300.0)", "VSTART <= t < VSTOP"):
        assert part in msg
    with pytest.raises(ICError, match=r"no IC structure ISGR-DEAD-MOD for instrument ibis.*ISGR-GAIN-MOD, ISGR-MASK-MOD"):
        idx.select("ibis", "ISGR-DEAD-MOD", 150.0)
    with pytest.raises(ICError, match="not finite"):
        idx.select("ibis", "ISGR-GAIN-MOD", float("nan"))


def test_index_round_trips_through_fits(archive):
    built = build_ic_index(archive)
    path = archive.idx_ic()
    back = read_ic_index(path, archive.root)
    assert back.entries == built.entries
    assert back.root == archive.ic_root().resolve()
    assert back.select("ibis", "ISGR-MASK-MOD", 1550.0) == built.select("ibis", "ISGR-MASK-MOD", 1550.0)
    g = Grouping.read(path)
    assert g.grpname == "GNRL-IC..-GRP-IDX" and g.header["ICROOT"] == "../../ic"
    row = list(g["STRUCTURE"]).index("JMX1-GAIN-MOD")
    m = g.member(row)
    assert (m.location, m.position, m.name, m.xtension) == ("../../ic/jemx/jmx1_gain_mod_0001.fits", 2,
                                                            "JMX1-GAIN-MOD", "BINTABLE")
    image_row = list(g["VERSION"]).index(3)
    assert g.member(image_row).xtension == "IMAGE"
    report = verify([path], root=archive.root)
    assert report.ok, report


def test_new_higher_version_supersedes(archive):
    before = build_ic_index(archive).select("ibis", "ISGR-MASK-MOD", 500.0)
    write_ic(archive.ic_dir("ibis") / "mod" / "isgr_mask_mod_0004.fits", "ISGR-MASK-MOD", 4, 0.0, 10000.0,
             image=True, seed=7)
    after = read_ic_index(build_ic_index(archive) and archive.idx_ic(), archive.root).select("ibis", "ISGR-MASK-MOD", 500.0)
    assert (before.version, after.version) == (1, 4)
    assert after.provenance()["datasum"] != before.provenance()["datasum"]
    # the narrower v3 is now superseded inside its range too
    assert read_ic_index(archive.idx_ic(), archive.root).select("ibis", "ISGR-MASK-MOD", 1550.0).version == 4


def test_provenance_record(archive):
    sel = scan_ic_tree(archive.ic_root()).select("ibis", "ISGR-GAIN-MOD", 250.0)
    p = sel.provenance()
    h = read_fits(sel.path).header(1)
    assert p == {"kind": "ic", "instrument": "ibis", "structure": "ISGR-GAIN-MOD",
                 "file": "ibis/cal/isgr_gain_mod_0002.fits", "hdu": 2, "version": 1, "vstart": 200.0,
                 "vstop": 300.0, "datasum": str(h["DATASUM"]).strip()}
    assert json.loads(json.dumps(p)) == p
    sel.check()


def test_changed_ic_file_is_detected(archive):
    sel = scan_ic_tree(archive.ic_root()).select("ibis", "ISGR-GAIN-MOD", 50.0)
    write_ic(sel.path, "ISGR-GAIN-MOD", 1, 0.0, 100.0, seed=99)  # same name and validity, new data
    with pytest.raises(ICError, match="changed since it was indexed"):
        sel.check()


def test_same_version_overlapping_is_ambiguous(archive):
    write_ic(archive.ic_dir("ibis") / "cal" / "isgr_gain_mod_0003.fits", "ISGR-GAIN-MOD", 1, 250.0, 400.0)
    with pytest.raises(ICError, match="version 1 is given twice for overlapping times"):
        scan_ic_tree(archive.ic_root())


@pytest.mark.parametrize("extra, match", [
    ({"VSTART": 5.0, "VSTOP": 5.0}, "VSTART 5.0 is not before VSTOP 5.0"),
    ({"VERSION": "Integer"}, "VERSION = 'Integer' is not an integer"),
    ({"VERSION": 1.5}, "not an integer"),
])
def test_bad_ic_keywords_raise_naming_the_file(tmp_path, extra, match):
    kw = {"VERSION": 1, "VSTART": 0.0, "VSTOP": 10.0, **extra}
    write_ic(tmp_path / "ic" / "ibis" / "bad.fits", "ISGR-GAIN-MOD", kw.pop("VERSION"), kw.pop("VSTART"),
             kw.pop("VSTOP"), **kw)
    with pytest.raises(ICError, match=rf"bad.fits HDU 2 \(ISGR-GAIN-MOD\).*{match}"):
        scan_ic_tree(tmp_path / "ic")


def test_partial_validity_keywords_and_corruption(tmp_path):
    h = fits.Header()
    h["EXTNAME"], h["VSTART"] = "ISGR-GAIN-MOD", 0.0
    (tmp_path / "ic" / "ibis").mkdir(parents=True)
    write_fits(tmp_path / "ic" / "ibis" / "half.fits", [Table({"GAIN": np.ones(3)}, h)])
    with pytest.raises(ICError, match=r"half.fits HDU 2.*needs VERSION, VSTART and VSTOP"):
        scan_ic_tree(tmp_path / "ic")
    (tmp_path / "ic" / "ibis" / "half.fits").unlink()
    path = write_ic(tmp_path / "ic" / "ibis" / "flip.fits", "ISGR-GAIN-MOD", 1, 0.0, 10.0)
    raw = bytearray(path.read_bytes())
    raw[-2880 + 5] ^= 0xFF  # a bit flip in the data
    path.write_bytes(bytes(raw))
    with pytest.raises(ICError, match="checksum verification failed"):
        scan_ic_tree(tmp_path / "ic")


def test_icstruct_names_an_ogip_structure(tmp_path):
    write_ic(tmp_path / "ic" / "ibis" / "rsp" / "isgr_rmf_rsp_0001.fits", "SPECRESP MATRIX", 1, 0.0, 99999.0,
             ICSTRUCT="ISGR-RMF.-RSP")
    sel = scan_ic_tree(tmp_path / "ic").select("ibis", "ISGR-RMF.-RSP", 7000.0)
    assert sel.entry.extname == "SPECRESP MATRIX" and sel.structure == "ISGR-RMF.-RSP"


def test_odd_names_in_the_tree_are_ignored(tmp_path, caplog):
    ic = tmp_path / "ic"
    write_ic(ic / "ibis" / "good.fits", "ISGR-GAIN-MOD", 1, 0.0, 10.0)
    write_ic(ic / "ibis" / ".hidden.fits", "ISGR-GAIN-MOD", 2, 0.0, 10.0)
    write_ic(ic / "ibis" / "with space.fits", "ISGR-GAIN-MOD", 3, 0.0, 10.0)
    write_ic(ic / "bad instrument" / "x.fits", "ISGR-GAIN-MOD", 4, 0.0, 10.0)
    outside = write_ic(tmp_path / "elsewhere" / "evil.fits", "ISGR-GAIN-MOD", 5, 0.0, 10.0)
    (ic / "ibis" / "evil.fits").symlink_to(outside)
    (ic / "ibis" / "notes.txt").write_text("not FITS")
    with caplog.at_level(logging.WARNING, logger="isdc.dal.icindex"):
        idx = scan_ic_tree(ic)
    assert [e.file for e in idx.entries] == ["ibis/good.fits"]
    for name in (".hidden.fits", "with space.fits", "bad instrument", "outside the tree"):
        assert name in caplog.text


def test_hostile_index_locations_are_refused(archive):
    build_ic_index(archive)
    path = archive.idx_ic()
    ff = read_fits(path)
    t = ff.table("GROUPING")
    for loc, match in (("../../../../../etc/passwd", "outside the root"), ("../../scw/x.fits", "outside the IC tree"),
                       ("/etc/passwd", "absolute path")):
        t.columns["MEMBER_LOCATION"] = t["MEMBER_LOCATION"].copy()
        t.columns["MEMBER_LOCATION"][0] = loc
        write_fits(path, [t])
        with pytest.raises(ICError, match=match):
            read_ic_index(path, archive.root)
    t = read_fits(build_ic_index(archive) and path).table("GROUPING")
    t.header["ICROOT"] = "../../../.."
    write_fits(path, [t])
    with pytest.raises(ICError, match="outside the root"):
        read_ic_index(path, archive.root)


@pytest.mark.reference
def test_real_isdc_arf_is_indexed_and_selected(tmp_path):
    """The real ISGRI ARF carries VERSION 17 and validity 1020.209..1207.917 IJD (revolutions 1-63).

    It was edited with fv after its checksums were written (its HISTORY says so): the
    header's DATASUM 3062231629 does not match its data (3062231660, astropy agrees).
    """
    ic = tmp_path / "ic"
    (ic / "ibis" / "rsp").mkdir(parents=True)
    shutil.copy(REF / "isgri_arf_v17_osa5era.fits", ic / "ibis" / "rsp" / "isgr_arf_rsp_0020.fits")
    with pytest.raises(ICError, match=r"isgr_arf_rsp_0020.fits HDU 2 \(SPECRESP\): checksum verification failed.*"
                                      r"now is 3062231660, the header says '3062231629'"):
        scan_ic_tree(ic)
    idx = scan_ic_tree(ic, bad_checksum="warn")
    sel = idx.select("ibis", "SPECRESP", 1100.0)
    assert sel.version == 17 and sel.datasum == "3062231660"
    assert sel.vstart == pytest.approx(1020.2090762037) and sel.vstop == pytest.approx(1207.91740953704)
    with pytest.raises(ICError, match=r"v17 \[1020.2090762037, 1207.91740953704\)"):
        idx.select("ibis", "SPECRESP", 1207.92)
    sel.check()


def test_shipped_ic_files_are_a_valid_tree():
    """Every IC file shipped in ic_files/ has proper VERSION/VSTART/VSTOP and no ambiguity."""
    idx = scan_ic_tree(data_dir("ic_files"))
    for inst, struct in idx.structures():
        assert inst == inst.lower() and struct
