"""FITS Hierarchical Grouping: the real OSA grouping, round trips, nesting, indices, hostile locations."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st

from isdc.dal import grouping as G
from isdc.dal.fitsfile import ColumnSpec, Image, Table, read_fits, write_fits
from isdc.dal.verify import verify

REFERENCE = Path(__file__).parent.parent / "test_data" / "reference" / "isgri_sky_ima_066500280010.fits.gz"
IMATYPES = ["INTENSITY", "VARIANCE", "SIGNIFICANCE", "RESIDUAL", "EXPOSURE"]
HOSTILE = ["../../etc/passwd", "/etc/passwd", "file:///x", "http://x"]


def fitsverify_q(exe: str, path: Path) -> str:
    """`fitsverify -q` output for a file: 'verification OK: <path>' means 0 warnings, 0 errors."""
    return subprocess.run([exe, "-q", str(path)], capture_output=True, text=True, check=False).stdout.strip()


def sky_images(n: int = 4) -> list[Image]:
    return [Image(np.full((8, 8), float(i), np.float32),
                  {"EXTNAME": "ISGR-SKY.-IMA", "EXTVER": i + 1, "IMATYPE": IMATYPES[i]}) for i in range(n)]


def events(n: int = 5) -> Table:
    return Table({"TIME": np.linspace(3006.1, 3006.2, n), "ISGRI_Y": np.arange(n, dtype=np.uint8)},
                 {"EXTNAME": "ISGR-EVTS-ALL"})


def build_archive(root: Path, scws=("066500280010", "066500290010")) -> dict[str, Path]:
    """Three levels of groups across sub-folders, as an observation group over ScW groups:

    obs/og.fits  GNRL-OBSG-GRP -> obs/scw/<swid>.001/swg.fits GNRL-SCWG-GRP
        -> isgri/events.fits.gz (ISGR-EVTS-ALL) and isgri/sky_ima.fits (its own
           ISGR-SKY.-IMA-IDX grouping, 2 images in the same file)
    """
    paths = {"og": root / "obs" / "og.fits"}
    og = G.Grouping("GNRL-OBSG-GRP", aux={"SWID": "12A"})
    ogf = G.PendingFile(paths["og"])
    ogf.append(og)
    files = [ogf]
    for swid in scws:
        d = root / "obs" / "scw" / f"{swid}.001"
        (d / "isgri").mkdir(parents=True)
        swg = G.Grouping("GNRL-SCWG-GRP", header={"SWID": swid})
        swf = G.PendingFile(d / "swg.fits")
        swf.append(swg)
        evf = G.PendingFile(d / "isgri" / "events.fits.gz")
        ev = events()
        evf.append(ev)
        imf = G.PendingFile(d / "isgri" / "sky_ima.fits")
        idx = G.Grouping("ISGR-SKY.-IMA-IDX", aux={"IMATYPE": "32A"})
        imf.append(idx)
        for im in sky_images(2):
            imf.append(im)
            G.link(idx, imf, im, aux={"IMATYPE": im.header["IMATYPE"]})
        G.link(swg, swf, ev, evf, root=root)
        G.link(swg, swf, idx, imf, root=root)
        G.link(og, ogf, swg, swf, root=root, aux={"SWID": swid})
        files += [swf, evf, imf]
        paths[swid] = d / "swg.fits"
    for f in files:
        f.write(durable=False)
    return paths


# --------------------------------------------------------------------------- the real OSA file

@pytest.mark.reference
def test_reference_osa_grouping_reads_and_resolves():
    ff = read_fits(REFERENCE)
    g = G.Grouping.read(ff)
    assert (g.grpname, g.extver, len(g)) == ("ISGR-SKY.-IMA-IDX", 1, 5)
    assert [m.position for m in g] == [3, 4, 5, 6, 7]
    assert [m.version for m in g] == [1, 2, 3, 4, 5]
    assert {m.name for m in g} == {"ISGR-SKY.-IMA"} and {m.location for m in g} == {""}
    assert list(g["IMATYPE"]) == IMATYPES
    np.testing.assert_allclose(g["E_MIN"], 25.0)
    np.testing.assert_allclose(g["E_MAX"], 80.0)
    # CHANMIN is 1I with TZERO 32768 in the file: read back as unsigned 25
    assert g["CHANMIN"].dtype == np.uint16 and int(g["CHANMIN"][0]) == 25
    # the grouping's own parent pointer and the members' back-pointers
    assert G.group_pointers(ff.hdus[1].header) == [G.GroupPointer(1, -1, "og.fits")]
    for i, m in enumerate(g):
        t = G.resolve_member(REFERENCE, m, REFERENCE.parent)
        assert (t.index, t.by) == (i + 2, "position")
        assert ff.hdus[t.index].header["IMATYPE"] == IMATYPES[i]
        assert G.points_to(ff.hdus[t.index].header, REFERENCE, REFERENCE, 1, REFERENCE.parent)
    sig = g.select(IMATYPE="SIGNIFICANCE")
    assert len(sig) == 1 and sig.members[0].position == 5


@pytest.mark.reference
def test_reference_grouping_rewritten_keeps_rows_and_aux(tmp_path):
    g = G.Grouping.read(REFERENCE)
    out = write_fits(tmp_path / "idx.fits", [g.to_table()])
    back = G.Grouping.read(out)
    assert back.members == g.members
    assert back.aux_names == g.aux_names
    for name in g.aux_names:
        np.testing.assert_array_equal(back[name], g[name])
    # the parent pointer travels in the header
    assert G.group_pointers(read_fits(out).hdus[1].header) == [G.GroupPointer(1, -1, "og.fits")]


# --------------------------------------------------------------------------- round trips we write

@pytest.mark.fitsverify
def test_same_file_round_trip(tmp_path, fitsverify):
    images = sky_images(4)
    g = G.Grouping("ISGR-SKY.-IMA-IDX", aux={"IMATYPE": "32A", "E_MIN": ColumnSpec("E_MIN", "1E", unit="keV")})
    path = G.write_group_file(tmp_path / "sky.fits", g, images,
                              aux={"IMATYPE": IMATYPES[:4], "E_MIN": [25.0, 25.0, 80.0, 80.0]}, durable=False)
    ff = read_fits(path)
    assert [h.extname for h in ff.hdus] == ["PRIMARY", "GROUPING"] + ["ISGR-SKY.-IMA"] * 4
    back = G.Grouping.read(ff)
    assert back.members == [G.Member("IMAGE", "ISGR-SKY.-IMA", i + 1, i + 3) for i in range(4)]
    assert list(back["IMATYPE"]) == IMATYPES[:4]
    assert list(back["E_MIN"]) == [25.0, 25.0, 80.0, 80.0]
    assert ff.table("GROUPING").spec("E_MIN").unit == "keV"
    assert ff.table("GROUPING").spec("MEMBER_POSITION").tnull == 0
    for h in ff.hdus[2:]:
        assert G.group_pointers(h.header) == [G.GroupPointer(1, 1, "")]
    assert [G.resolve_member(path, m, tmp_path).position for m in back] == [3, 4, 5, 6]
    report = verify(path)
    assert (len(report.errors), len(report.warnings)) == (0, 0), report.text()
    assert fitsverify_q(fitsverify, path) == f"verification OK: {path}"


@pytest.mark.fitsverify
def test_across_files_in_subfolders(tmp_path, fitsverify):
    paths = build_archive(tmp_path, scws=("066500280010",))
    swg_path = paths["066500280010"]
    swg = G.Grouping.read(swg_path)
    assert swg.members == [
        G.Member("BINTABLE", "ISGR-EVTS-ALL", None, 2, "isgri/events.fits.gz", "URL"),
        G.Member("BINTABLE", "GROUPING", 1, 2, "isgri/sky_ima.fits", "URL"),
    ]
    og = G.Grouping.read(paths["og"])
    assert og.members == [G.Member("BINTABLE", "GROUPING", 1, 2, "scw/066500280010.001/swg.fits", "URL")]
    # back-pointers: relative from the member's file to the group's file, -EXTVER
    ev = read_fits(swg_path.parent / "isgri" / "events.fits.gz")
    assert G.group_pointers(ev.hdus[1].header) == [G.GroupPointer(1, -1, "../swg.fits")]
    assert G.group_pointers(read_fits(swg_path).hdus[1].header) == [G.GroupPointer(1, -1, "../../og.fits")]
    t = G.resolve_member(swg_path, swg.members[0], tmp_path)
    assert t.path == (swg_path.parent / "isgri" / "events.fits.gz").resolve() and t.position == 2
    for p in sorted(tmp_path.rglob("*.fits*")):
        assert fitsverify_q(fitsverify, p) == f"verification OK: {p}"


def test_nested_three_levels_walk_and_verify(tmp_path):
    paths = build_archive(tmp_path)
    steps = [(s.depth, s.member.name, s.target.path.name, s.target.position) for s in G.walk(paths["og"], tmp_path)]
    per_scw = [(1, "GROUPING", "swg.fits", 2), (2, "ISGR-EVTS-ALL", "events.fits.gz", 2),
               (2, "GROUPING", "sky_ima.fits", 2), (3, "ISGR-SKY.-IMA", "sky_ima.fits", 3),
               (3, "ISGR-SKY.-IMA", "sky_ima.fits", 4)]
    assert steps == per_scw * 2
    report = verify(tmp_path / "obs")
    assert (len(report.errors), len(report.warnings)) == (0, 0), report.text()
    assert len(report.files) == 7 and sum(len(f.groupings) for f in report.files) == 5
    # verifying the top group alone reaches every file below it
    assert len(verify(paths["og"], root=tmp_path).files) == 7


def test_walk_stops_on_cycles(tmp_path):
    a, b = G.Grouping("A-GRP"), G.Grouping("B-GRP")
    fa, fb = G.PendingFile(tmp_path / "a.fits"), G.PendingFile(tmp_path / "b.fits")
    fa.append(a)
    fb.append(b)
    G.link(a, fa, b, fb, root=tmp_path)
    G.link(b, fb, a, fa, root=tmp_path)
    fa.write(durable=False)
    fb.write(durable=False)
    assert [(s.depth, s.target.path.name) for s in G.walk(fa.path, tmp_path)] == [(1, "b.fits"), (2, "a.fits")]
    assert verify(tmp_path).ok


@pytest.mark.fitsverify
def test_index_with_aux_columns_and_selection(tmp_path, fitsverify):
    """A ScW index like GNRL-SCWG-GRP-IDX over swg.fits files that are already written."""
    rng = np.random.default_rng(5)
    n = 40
    revs = np.repeat([665, 666, 667, 668], 10)
    swids = [f"{r:04d}{p:04d}0010" for r, p in zip(revs, np.tile(np.arange(1, 11), 4))]
    tstart = 3000.0 + np.arange(n) * 0.05  # IJD, 1.2 h apart
    ra, dec = rng.uniform(80, 90, n), rng.uniform(18, 26, n)
    root = tmp_path
    for s in swids:
        (root / "scw" / s[:4] / f"{s}.001").mkdir(parents=True, exist_ok=True)
        write_fits(root / "scw" / s[:4] / f"{s}.001" / "swg.fits",
                   [G.Grouping("GNRL-SCWG-GRP", header={"SWID": s}).to_table()], durable=False)
    (root / "idx" / "scw").mkdir(parents=True)
    aux = {"SWID": "12A", "REVOL": "1J", "TSTART": ColumnSpec("TSTART", "1D", unit="d"),
           "TSTOP": ColumnSpec("TSTOP", "1D", unit="d"), "RA_SCX": ColumnSpec("RA_SCX", "1D", unit="deg"),
           "DEC_SCX": ColumnSpec("DEC_SCX", "1D", unit="deg")}
    idx = G.Grouping("GNRL-SCWG-GRP-IDX", aux=aux)
    pf = G.PendingFile(root / "idx" / "scw" / "GNRL-SCWG-GRP-IDX.fits")
    pf.append(idx)
    for i, s in enumerate(swids):
        G.link_existing(idx, pf, root / "scw" / s[:4] / f"{s}.001" / "swg.fits", "GROUPING", root=root,
                        aux={"SWID": s, "REVOL": int(revs[i]), "TSTART": tstart[i], "TSTOP": tstart[i] + 0.03,
                             "RA_SCX": ra[i], "DEC_SCX": dec[i]})
    assert idx.members[0] == G.Member("BINTABLE", "GROUPING", 1, 2, f"../../scw/0665/{swids[0]}.001/swg.fits", "URL")
    pf.write(durable=False)
    back = G.Grouping.read(pf.path)
    assert back.is_index and len(back) == n
    want = {swids[3], swids[17], swids[39]}
    assert set(back.select(SWID=want)["SWID"]) == want
    assert list(back.select(REVOL=666)["SWID"]) == swids[10:20]
    # TSTART in [3000.5, 3001.0]: rows 10..20 (0.05 d steps), closed interval
    sel = back.select(TSTART=(3000.5, 3001.0))
    np.testing.assert_array_equal(sel["TSTART"], tstart[10:21])
    both = back.select(TSTART=(3000.5, None), REVOL={666, 668}, DEC_SCX=lambda d: d > 22.0)
    expect = [s for i, s in enumerate(swids) if tstart[i] >= 3000.5 and revs[i] in (666, 668) and dec[i] > 22.0]
    assert list(both["SWID"]) == expect and len(expect) > 0
    # selected rows still resolve to their swg.fits
    for m, s in zip(both, both["SWID"]):
        assert G.resolve_member(pf.path, m, root).path.parent.name == f"{s}.001"
    # a selection is a grouping of its own: no back-pointers copied, writes and reads back
    write_fits(tmp_path / "sel.fits", [both.to_table()], durable=False)
    assert G.Grouping.read(tmp_path / "sel.fits").members == both.members
    report = verify(root / "idx", root=root)  # an index needs no back-pointers in its members
    assert report.ok and not report.warnings, report.text()
    assert fitsverify_q(fitsverify, pf.path) == f"verification OK: {pf.path}"


def test_select_conditions_are_checked(tmp_path):
    g = G.Grouping("X-IDX", aux={"REVOL": "1J"})
    for r in (1, 2, 3):
        g.append(G.Member("IMAGE", "A", r, r + 1), {"REVOL": r})
    assert len(g.select(REVOL=[1, 3])) == 2 and len(g.select(REVOL=(2, None))) == 2
    assert len(g.select(MEMBER_POSITION=3)) == 1
    with pytest.raises(G.GroupingError, match="no column 'SWID'"):
        g.select(SWID="x")
    with pytest.raises(G.GroupingError, match=r"needs \(lo, hi\)"):
        g.select(REVOL=(1, 2, 3))
    assert len(g.take(np.array([True, False, True]))) == 2
    with pytest.raises(G.GroupingError, match="mask"):
        g.take(np.array([True, False]))


# --------------------------------------------------------------------------- building errors

def test_building_refuses_bad_rows(tmp_path):
    with pytest.raises(G.GroupingError, match="GRPNAME"):
        G.Grouping("")
    with pytest.raises(G.GroupingError, match="EXTVER"):
        G.Grouping("A-GRP", extver=0)
    with pytest.raises(G.GroupingError, match="reserved"):
        G.Grouping("A-GRP", aux={"MEMBER_NAME": "8A"})
    g = G.Grouping("A-GRP", aux={"REVOL": "1I", "SWID": "12A"})
    with pytest.raises(G.GroupingError, match="no value for"):
        g.append(G.Member("IMAGE", "X"), {"REVOL": 1})
    with pytest.raises(G.GroupingError, match="no auxiliary columns"):
        g.append(G.Member("IMAGE", "X"), {"REVOL": 1, "SWID": "a", "E_MIN": 2.0})
    with pytest.raises(G.GroupingError, match="MEMBER_NAME"):
        g.append(G.Member("IMAGE", "X" * 33), {"REVOL": 1, "SWID": "a"})
    for loc in HOSTILE[1:]:  # '../..' needs the root to judge: resolve_location and link refuse it
        with pytest.raises(G.GroupingError, match="absolute"):
            g.append(G.Member("IMAGE", "X", None, 2, loc, "URL"), {"REVOL": 1, "SWID": "a"})
    g.append(G.Member("IMAGE", "X"), {"REVOL": 40000, "SWID": "a"})  # does not fit 1I
    with pytest.raises(G.GroupingError, match="do not fit 1I"):
        g.to_table()
    g2 = G.Grouping("B-GRP", aux={"SWID": "12A"})
    g2.append(G.Member("IMAGE", "X"), {"SWID": "0665002800100"})
    with pytest.raises(G.GroupingError, match="longer than 12"):
        g2.to_table()


def test_pending_file_and_link_rules(tmp_path):
    pf = G.PendingFile(tmp_path / "a.fits")
    g1, g2 = G.Grouping("A-GRP"), G.Grouping("B-GRP")
    pf.append(g1)
    with pytest.raises(G.GroupingError, match="EXTVER 1 is already"):
        pf.append(g2)
    im = Image(np.zeros((2, 2), np.float32), {"EXTNAME": "X"})
    with pytest.raises(G.GroupingError, match="was not appended"):
        G.link(g1, pf, im)
    other = G.PendingFile(tmp_path / "sub" / "b.fits")
    other.append(im)
    with pytest.raises(G.GroupingError, match="needs the archive root"):
        G.link(g1, pf, im, other)
    with pytest.raises(G.OutsideRootError):
        G.link(g1, pf, im, other, root=tmp_path / "sub")  # the group's file is outside that root
    deep = tmp_path.joinpath(*(["d" * 100] * 3))
    deep.mkdir(parents=True)
    far = G.PendingFile(deep / "m.fits")
    far_hdu = events()
    far.append(far_hdu)
    with pytest.raises(G.GroupingError, match="MEMBER_LOCATION .* at most 256"):
        G.link(g1, pf, far_hdu, far, root=tmp_path)  # 310 characters do not fit 256A
    assert G.relative_location(tmp_path / "a.fits", tmp_path / "a.fits", tmp_path) == ""
    assert G.relative_location(tmp_path / "x" / "a.fits", tmp_path / "y z" / "b%.fits", tmp_path) == "../y%20z/b%25.fits"
    assert G.relative_location(tmp_path / "a.fits", tmp_path / "c:d.fits", tmp_path) == "c%3Ad.fits"


def test_back_pointer_keywords():
    t = Table({"A": np.arange(2)}, {"EXTNAME": "X"})
    assert G.add_back_pointer(t, 1) == 1
    assert G.add_back_pointer(t, 2, "../og.fits") == 2
    assert G.add_back_pointer(t, 2, "../og.fits") == 2  # idempotent
    assert t.header["GRPID1"] == 1 and t.header["GRPID2"] == -2 and t.header["GRPLC2"] == "../og.fits"
    assert "GRPLC1" not in t.header
    long = "a" * 50 + "/" + "b" * 50 + "/og.fits"
    assert G.add_back_pointer(t, 1, long) == 3 and t.header["LONGSTRN"] == "OGIP 1.0"
    assert G.group_pointers(t.header)[2] == G.GroupPointer(3, -1, long)
    for bad in ({"GRPID1": "x"}, {"GRPID1": 0}, {"GRPID1": -1}, {"GRPID1": -1, "GRPLC1": 5}):
        with pytest.raises(G.GroupingError, match="GRPID1|GRPLC1"):
            G.group_pointers(fits.Header(bad))
    with pytest.raises(G.GroupingError, match="absolute"):
        G.add_back_pointer(t, 1, "/etc/og.fits")


@pytest.mark.fitsverify
def test_long_back_pointer_file_passes_fitsverify(tmp_path, fitsverify):
    deep = tmp_path.joinpath(*(["d" * 20] * 4))
    deep.mkdir(parents=True)
    g = G.Grouping("A-GRP")
    gf = G.PendingFile(deep / "g.fits")
    gf.append(g)
    mf = G.PendingFile(tmp_path / "m.fits")
    t = events()
    mf.append(t)
    G.link(g, gf, t, mf, root=tmp_path)
    assert len(t.header["GRPLC1"]) > 68  # needs CONTINUE cards
    gf.write(durable=False)
    mf.write(durable=False)
    assert fitsverify_q(fitsverify, mf.path) == f"verification OK: {mf.path}"
    assert verify(tmp_path).ok


# --------------------------------------------------------------------------- hostile locations

@pytest.fixture(scope="module")
def jail(tmp_path_factory):
    """root/ with a group file one folder deep, a file outside the root, and a symlink out."""
    base = tmp_path_factory.mktemp("jail")
    root = base / "root"
    (root / "a").mkdir(parents=True)
    (base / "secret.fits").write_bytes(b"x")
    (root / "link").symlink_to(base)
    return root, root / "a" / "grp.fits"


@pytest.mark.parametrize("loc", HOSTILE + [
    "../../secret.fits", "..%2F..%2Fsecret.fits", "%2e%2e/%2e%2e/secret.fits", "a\x00b.fits",
    "%00.fits", "//host/x.fits", "HTTPS://x", "x.fits?y", "x.fits#1", "..\\..\\x", "../link/secret.fits",
    "%ff.fits", "\n../x",
])
def test_hostile_locations_are_refused(jail, loc):
    root, grp = jail
    with pytest.raises(G.GroupingError):
        G.resolve_location(grp, loc, root)


def test_symlink_out_of_root_is_refused(jail):
    root, grp = jail
    with pytest.raises(G.OutsideRootError, match="links outside"):
        G.resolve_location(grp, "../link/secret.fits", root)


def test_legitimate_relative_locations_resolve(jail):
    root, grp = jail
    assert G.resolve_location(grp, "", root) == grp.resolve()
    assert G.resolve_location(grp, "../x.fits", root) == (root / "x.fits").resolve()
    assert G.resolve_location(grp, "b/../../a/x.fits", root) == (root / "a" / "x.fits").resolve()
    assert G.resolve_location(grp, "./c/%20y%3F.fits", root) == (root / "a" / "c" / " y?.fits").resolve()


def test_hostile_member_location_in_a_file(tmp_path):
    """A grouping table written by someone else with locations that leave the root."""
    n = len(HOSTILE)
    cols = {"MEMBER_XTENSION": np.array(["BINTABLE"] * n), "MEMBER_NAME": np.array(["X"] * n),
            "MEMBER_VERSION": np.ones(n, np.int32), "MEMBER_POSITION": np.full(n, 2, np.int32),
            "MEMBER_LOCATION": np.array(HOSTILE), "MEMBER_URI_TYPE": np.array(["URL"] * n)}
    specs = [ColumnSpec(s.name, s.tform, tnull=s.tnull) for s in G.MEMBER_COLUMNS]
    path = write_fits(tmp_path / "evil.fits", [Table(cols, {"EXTNAME": "GROUPING", "GRPNAME": "EVIL-GRP"}, specs)],
                      durable=False)
    g = G.Grouping.read(path)
    assert [m.location for m in g] == HOSTILE
    for m in g:
        with pytest.raises(G.GroupingError, match="outside the root|absolute"):
            G.resolve_member(path, m, tmp_path)
    with pytest.raises(G.GroupingError):
        g.to_table()  # and we never write such a table back


SEGMENTS = st.sampled_from(["..", ".", "", "a", "b", "link", "secret.fits", "%2e%2e", "%2F", "%00", "~",
                            "x:y", "http:", "\\", "%", "..%2f..", "\x00", " "])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(SEGMENTS, max_size=8).map("/".join)))
def test_no_location_resolves_outside_root(jail, loc):
    root, grp = jail
    try:
        p = G.resolve_location(grp, loc, root)
    except G.GroupingError:
        return
    real_root = os.path.realpath(root)
    assert os.path.commonpath([real_root, os.path.realpath(p)]) == real_root


NAMES = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
                min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))


@settings(max_examples=100, deadline=None)
@given(st.lists(NAMES, min_size=1, max_size=3), st.lists(NAMES, min_size=1, max_size=3))
def test_relative_location_round_trips(jail, a, b):
    root, _ = jail
    src, dst = root.joinpath(*a), root.joinpath(*b)
    loc = G.relative_location(src, dst, root)
    if loc:
        assert loc.isascii()
    assert G.resolve_location(src, loc, root) == Path(os.path.realpath(dst))
