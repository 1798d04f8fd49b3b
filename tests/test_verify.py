"""`isdc-run verify`: the real OSA grouping, damaged copies, broken groupings, malformed files."""
from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isdc.cli import main
from isdc.dal import grouping as G
from isdc.dal import templates
from isdc.dal.fitsfile import ColumnSpec, Image, Table, read_fits, write_fits
from isdc.dal.verify import ERROR, WARNING, fits_files, verify
from test_grouping import IMATYPES, REFERENCE, build_archive, events, sky_images


def reference_bytes() -> bytes:
    with gzip.open(REFERENCE, "rb") as f:
        return f.read()


def reference_layout(tmp_path) -> list:
    """HDU offsets of the reference file (from a plain copy)."""
    plain = tmp_path / "plain.fits"
    plain.write_bytes(reference_bytes())
    return read_fits(plain).hdus


def write_gz(path: Path, data: bytes) -> Path:
    with gzip.open(path, "wb") as f:
        f.write(data)
    return path


def run_cli(capsys, *args) -> tuple[int, str]:
    rc = main(["verify", *map(str, args)])
    return rc, capsys.readouterr().out


# --------------------------------------------------------------------------- the real OSA file

@pytest.mark.reference
def test_reference_file_verifies_with_parent_warning(capsys):
    rc, out = run_cli(capsys, REFERENCE)
    assert rc == 0, out
    lines = out.splitlines()
    assert "7 HDUs; checksums 2 ok, 5 missing, 0 bad" in lines[0]
    assert "GROUPING v1 'ISGR-SKY.-IMA-IDX' (HDU 2): 5 members" in lines[1]
    for i, t in enumerate(IMATYPES):  # one line per member, in order, with its IMATYPE and HDU
        row = lines[2 + i].split()
        assert row[:4] == [str(i + 1), "IMAGE", "ISGR-SKY.-IMA", f"v{i + 1}"]
        assert f"HDU {i + 3}" in lines[2 + i] and f"IMATYPE={t}" in row and row[-1] == "ok"
    report = verify(REFERENCE)
    assert report.errors == []
    assert [(w.hdu, w.message) for w in report.warnings] == [
        ("HDU 2 (GROUPING v1)", "GRPID1=-1, GRPLC1='og.fits': parent group file is not present: not checked")]
    assert "WARNING: HDU 2 (GROUPING v1): GRPID1=-1, GRPLC1='og.fits'" in out
    assert lines[-1] == "1 file, 7 HDUs, 1 grouping, 5 members: 0 errors, 1 warning -> OK"


@pytest.mark.reference
def test_isdc_run_program_exit_codes(tmp_path):
    exe = Path(sys.executable).parent / "isdc-run"
    if not exe.exists():
        pytest.skip("isdc-run script not installed next to this python")
    ok = subprocess.run([str(exe), "verify", str(REFERENCE)], capture_output=True, text=True)
    assert ok.returncode == 0 and "IMATYPE=SIGNIFICANCE" in ok.stdout
    bad = subprocess.run([str(exe), "verify", str(tmp_path / "nothing.fits")], capture_output=True, text=True)
    assert bad.returncode == 1 and "does not exist" in bad.stdout


@pytest.mark.reference
def test_flipped_byte_in_significance_is_a_checksum_error(tmp_path, capsys):
    hdus = reference_layout(tmp_path)
    sig = hdus[4]
    assert sig.header["IMATYPE"] == "SIGNIFICANCE"
    data = bytearray(reference_bytes())
    data[sig.data_offset + 4 * (200 * 400 + 200)] ^= 0x01  # a bit of the central pixel
    path = write_gz(tmp_path / "isgri_sky_ima.fits.gz", bytes(data))
    rc, out = run_cli(capsys, path)
    assert rc == 1
    report = verify(path)
    assert len(report.errors) == 1
    e = report.errors[0]
    assert (e.file, e.hdu) == (str(path), "HDU 5 (ISGR-SKY.-IMA v3)")
    assert "checksum bad" in e.message and "DATASUM" in e.message
    assert f"ERROR: HDU 5 (ISGR-SKY.-IMA v3): checksum bad" in out and str(path) in out
    # the same flip in INTENSITY, which OSA left without a checksum, cannot be seen
    data = bytearray(reference_bytes())
    data[hdus[2].data_offset + 4 * (200 * 400 + 200)] ^= 0x01
    assert verify(write_gz(tmp_path / "intensity.fits.gz", bytes(data))).ok


@pytest.mark.reference
def test_removed_member_hdu_is_named(tmp_path, capsys):
    hdus = reference_layout(tmp_path)
    res = hdus[5]
    assert res.header["IMATYPE"] == "RESIDUAL"
    data = reference_bytes()
    path = write_gz(tmp_path / "cut.fits.gz", data[: res.header_offset] + data[res.end:])
    rc, out = run_cli(capsys, path)
    assert rc == 1
    report = verify(path)
    assert len(report.errors) == 1, report.text()
    e = report.errors[0]
    assert e.hdu == "HDU 2 (GROUPING v1)"
    assert e.message.startswith("member 4 (IMAGE ISGR-SKY.-IMA v4 HDU 6) does not resolve")
    # EXPOSURE moved from HDU 7 to 6: found by name, its stale position is a warning
    assert any("member 5" in w.message and "MEMBER_POSITION 7 is stale" in w.message for w in report.warnings)
    assert "MISSING" in out and "6 HDUs" in out


# --------------------------------------------------------------------------- broken groupings

def test_wrong_back_pointer_same_file(tmp_path):
    images = sky_images(3)
    g = G.Grouping("ISGR-SKY.-IMA-GRP")
    pf = G.PendingFile(tmp_path / "sky.fits")
    pf.append(g)
    for im in images:
        pf.append(im)
        G.link(g, pf, im)
    images[1].header["GRPID1"] = 2  # points at a GROUPING v2 that does not exist
    pf.write(durable=False)
    report = verify(pf.path)
    msgs = sorted((e.hdu, e.message) for e in report.errors)
    assert len(msgs) == 2, report.text()
    assert msgs[0][0] == "HDU 2 (GROUPING v1)" and msgs[0][1].startswith(
        "member 2 (IMAGE ISGR-SKY.-IMA v2 HDU 4): the member has no back-pointer to this group")
    assert "GRPID1=2" in msgs[0][1]
    assert msgs[1] == ("HDU 4 (ISGR-SKY.-IMA v2)", "GRPID1=2: this file has no GROUPING table with EXTVER 2")


def test_missing_back_pointer_across_files_is_an_error_except_for_an_index(tmp_path):
    for grpname, errors in (("GNRL-SCWG-GRP", 1), ("GNRL-SCWG-GRP-IDX", 0)):
        d = tmp_path / grpname
        d.mkdir()
        g = G.Grouping(grpname)
        gf, mf = G.PendingFile(d / "swg.fits"), G.PendingFile(d / "sub" / "events.fits")
        (d / "sub").mkdir()
        gf.append(g)
        ev = events()
        mf.append(ev)
        G.link(g, gf, ev, mf, root=d, back_pointer=False)
        gf.write(durable=False)
        mf.write(durable=False)
        report = verify(d)
        assert len(report.errors) == errors, report.text()
        if errors:
            assert "member 1 (BINTABLE ISGR-EVTS-ALL HDU 2 in sub/events.fits): the member has no back-pointer" \
                in report.errors[0].message


def test_back_pointer_to_a_group_that_does_not_list_the_member(tmp_path):
    paths = build_archive(tmp_path, scws=("066500280010",))
    # a second, empty observation group the ScW group claims to belong to
    write_fits(tmp_path / "obs" / "og2.fits", [G.Grouping("GNRL-OBSG-GRP").to_table()], durable=False)
    swg_ff = read_fits(paths["066500280010"])
    swg = G.Grouping.from_table(swg_ff.table(1))
    G.add_back_pointer(swg, 1, "../../og2.fits")
    members = [swg_ff.table(1)]  # rewrite the file with the extra pointer
    members[0].header["GRPID2"], members[0].header["GRPLC2"] = -1, "../../og2.fits"
    write_fits(paths["066500280010"], [members[0]], durable=False)
    report = verify(tmp_path / "obs")
    assert [(e.file.endswith("swg.fits"), e.hdu, e.message) for e in report.errors] == [
        (True, "HDU 2 (GROUPING v1)",
         "GRPID2=-1, GRPLC2='../../og2.fits': group 'GNRL-OBSG-GRP' v1 in ../../og2.fits does not list this HDU")]


def test_missing_member_file_and_missing_parent(tmp_path):
    paths = build_archive(tmp_path, scws=("066500280010",))
    ev = paths["066500280010"].parent / "isgri" / "events.fits.gz"
    ev.unlink()
    report = verify(tmp_path / "obs")
    assert len(report.errors) == 1, report.text()
    assert report.errors[0].message.startswith("member 1 (BINTABLE ISGR-EVTS-ALL HDU 2 in isgri/events.fits.gz) "
                                               "does not resolve:")
    assert f"file {ev.resolve()} does not exist" in report.errors[0].message
    with pytest.raises(G.GroupingError, match="events.fits.gz does not exist"):
        list(G.walk(paths["og"], tmp_path))
    # the ScW folder alone: its group's parent (../../og.fits) is outside that root: a warning
    sub = verify(paths["066500280010"].parent)
    assert [w.message for w in sub.warnings] == [
        f"GRPID1=-1, GRPLC1='../../og.fits': parent group lies outside the root folder "
        f"{paths['066500280010'].parent.resolve()}: not checked"]
    # the observation group's folder with og.fits removed: parent not present, a warning
    paths["og"].unlink()
    ev.parent.joinpath("events.fits.gz").write_bytes(b"")
    assert not any("og.fits" in e.message for e in verify(tmp_path / "obs").errors)
    assert any("parent group file is not present" in w.message for w in verify(tmp_path / "obs").warnings)


def test_hostile_locations_are_reported_not_followed(tmp_path):
    locs = ["../../etc/passwd", "/etc/passwd", "file:///x", "http://x", "../outside.fits"]
    (tmp_path / "outside.fits").write_bytes(write_fits(tmp_path / "o.fits", [events()]).read_bytes())
    root = tmp_path / "root"
    root.mkdir()
    n = len(locs)
    cols = {"MEMBER_XTENSION": np.array(["BINTABLE"] * n), "MEMBER_NAME": np.array(["ISGR-EVTS-ALL"] * n),
            "MEMBER_VERSION": np.zeros(n, np.int32), "MEMBER_POSITION": np.full(n, 2, np.int32),
            "MEMBER_LOCATION": np.array(locs), "MEMBER_URI_TYPE": np.array(["URL"] * n)}
    specs = [ColumnSpec(s.name, s.tform, tnull=s.tnull) for s in G.MEMBER_COLUMNS]
    t = Table(cols, {"EXTNAME": "GROUPING", "GRPNAME": "EVIL-GRP", "GRPID1": -1, "GRPLC1": "/etc/og.fits"}, specs)
    path = write_fits(root / "evil.fits", [t], durable=False)
    report = verify(path)
    assert not report.ok
    msgs = [e.message for e in report.errors]
    assert len(msgs) == n + 1, report.text()
    for i, loc in enumerate(locs):
        assert msgs[i].startswith(f"member {i + 1} ") and "does not resolve" in msgs[i]
        assert ("outside the root" in msgs[i]) if loc.startswith("..") else ("absolute" in msgs[i])
    assert msgs[-1] == ("GRPID1=-1, GRPLC1='/etc/og.fits': location '/etc/og.fits' is an absolute path; "
                        "only relative file locations are allowed")
    assert len(report.files) == 1  # nothing outside the root was opened as a member
    assert report.text().count("REFUSED") == n


# --------------------------------------------------------------------------- templates, structure, robustness

def evts_all(n: int = 4) -> Table:
    cols = {"TIME": np.linspace(3006.1, 3006.2, n), "OB_TIME": np.arange(n, dtype=np.int64),
            "ISGRI_PHA": np.arange(n, dtype=np.int16), "RISE_TIME": np.arange(n, dtype=np.int16),
            "ISGRI_Y": np.arange(n, dtype=np.uint8), "ISGRI_Z": np.arange(n, dtype=np.uint8)}
    return templates.get("ISGR-EVTS-ALL").table(cols, REVOL=665, SWID="066500280010", SW_TYPE="POINTING",
                                               TSTART=3006.1, TSTOP=3006.2)


def test_template_conformance_is_checked(tmp_path):
    good = write_fits(tmp_path / "good.fits", [evts_all()], durable=False)
    assert verify(good).ok
    bad = evts_all()
    del bad.columns["RISE_TIME"]
    bad.specs = [s for s in bad.specs if s.name != "RISE_TIME"]
    path = write_fits(tmp_path / "bad.fits", [bad], durable=False)
    report = verify(path)
    assert len(report.errors) == 1
    assert report.errors[0].hdu == "HDU 2 (ISGR-EVTS-ALL)" and "column RISE_TIME missing" in report.errors[0].message


def test_malformed_grouping_tables_become_findings(tmp_path):
    cols = {"MEMBER_XTENSION": np.array(["IMAGE"]), "MEMBER_NAME": np.array(["X"]),
            "MEMBER_POSITION": np.array(["3"])}  # position as text
    write_fits(tmp_path / "a.fits", [Table(cols, {"EXTNAME": "GROUPING"})], durable=False)
    write_fits(tmp_path / "b.fits", [Table({"X": np.arange(2)}, {"EXTNAME": "GROUPING"})], durable=False)
    g = G.Grouping("C-GRP")
    g.append(G.Member("IMAGE", "X", None, 99))
    write_fits(tmp_path / "c.fits", [g.to_table()], durable=False)
    write_fits(tmp_path / "d.fits", [Table({"X": np.arange(2)}, {"EXTNAME": "X", "GRPID1": "abc"})], durable=False)
    (tmp_path / "e.fits").write_text("not a FITS file\n" * 300)
    dup = [G.Grouping("A-GRP").to_table(), G.Grouping("B-GRP").to_table()]
    write_fits(tmp_path / "f.fits", dup, durable=False)
    report = verify(tmp_path)
    by_file = {Path(e.file).name: e.message for e in report.errors}
    assert "MEMBER_POSITION has TFORM 1A" in by_file["a.fits"]
    assert "needs MEMBER_NAME or MEMBER_POSITION" in by_file["b.fits"]
    assert "has no HDU 99 (it has 2)" in by_file["c.fits"]
    assert "GRPID1 = 'abc' is not a non-zero integer" in by_file["d.fits"]
    assert by_file["e.fits"].startswith(f"{tmp_path / 'e.fits'}: ")  # FitsError naming the file
    assert "2 GROUPING tables share EXTVER 1" in by_file["f.fits"]
    assert len(report.files) == 6


@pytest.fixture(scope="module")
def small_group(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fuzz")
    g = G.Grouping("ISGR-SKY.-IMA-IDX", aux={"IMATYPE": "16A"})
    return G.write_group_file(d / "g.fits", g, sky_images(2), aux={"IMATYPE": IMATYPES[:2]}, durable=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 2 * 2880 + 8 * 80), st.sampled_from(b"0123456789-'= ABXZ\x00\xff")),
                min_size=1, max_size=6))
def test_corrupted_grouping_never_crashes_the_verifier(small_group, tmp_path, edits):
    """Bytes of the primary and GROUPING headers overwritten: always a report, never an exception."""
    original = small_group.read_bytes()
    data = bytearray(original)
    for pos, byte in edits:
        data[pos] = byte
    path = tmp_path / "g.fits"
    path.write_bytes(bytes(data))
    report = verify(path)
    assert isinstance(report.text(), str)
    # a changed byte is always seen, unless it renamed a CHECKSUM or DATASUM keyword away
    # (then the HDU reads as one written without checksums, which is allowed)
    keys = [i for k in (b"CHECKSUM=", b"DATASUM =") for i in range(len(original)) if original.startswith(k, i)]
    renamed = any(k <= pos < k + 8 and byte != original[pos] for pos, byte in edits for k in keys)
    if bytes(data) != original and not renamed:
        assert report.findings


def test_tree_walk_skips_hidden_and_other_files(tmp_path):
    paths = build_archive(tmp_path, scws=("066500280010",))
    (tmp_path / "obs" / ".swg.x.tmp.fits").write_bytes(b"partial")
    (tmp_path / "obs" / "notes.txt").write_text("x")
    names = sorted(p.name for p in fits_files(tmp_path))
    assert names == ["events.fits.gz", "og.fits", "sky_ima.fits", "swg.fits"]
    report = verify([paths["og"], tmp_path / "obs"], root=tmp_path)
    assert report.ok and not report.warnings and len(report.files) == 4
    outside = verify(paths["og"], root=tmp_path / "obs" / "scw")
    assert [e.message for e in outside.errors] == [f"not inside the root folder {tmp_path / 'obs' / 'scw'}"]
