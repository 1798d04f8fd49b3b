"""Archive tree: path builders, enumeration of what exists, output guard, ScW index."""
import logging
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given
from hypothesis import strategies as st

from isdc.dal import archive as A
from isdc.dal.archive import Archive, ArchiveError, ScwIndex, ScwInfo
from isdc.dal.fitsfile import read_fits, write_fits
from isdc.dal.grouping import Grouping, Member, write_group_file
from isdc.ids import CONS, NRT, IdError, ObsId, Revolution, ScwId, Version
from isdc.time import TimeCorrelation

CRAB = (83.6331, 22.0145)


# --------------------------------------------------------------------------- path builders

def test_path_builders_follow_the_isdc_layout(tmp_path):
    ar = Archive(tmp_path)
    scw = ScwId.parse("066500230010.001")
    rel = lambda p: p.relative_to(tmp_path.resolve()).as_posix()  # noqa: E731
    assert rel(ar.scw_dir(scw)) == "scw/0665/066500230010.001"
    assert rel(ar.swg(scw)) == "scw/0665/066500230010.001/swg.fits"
    assert rel(ar.rev_dir(Revolution(665), CONS)) == "scw/0665/rev.001"
    assert rel(ar.rev_dir(42, NRT)) == "scw/0042/rev.000"
    assert rel(ar.aux_adp(Revolution(665), NRT)) == "aux/adp/0665.000"
    assert rel(ar.time_correlation(665, CONS)) == "aux/adp/0665.001/time_correlation.fits"
    assert rel(ar.ic_dir("ibis")) == "ic/ibis"
    assert rel(ar.idx_ic()) == "idx/ic/ic_master_file.fits"
    assert rel(ar.idx_scw()) == "idx/scw/GNRL-SCWG-GRP-IDX.fits"
    assert rel(ar.cat_dir()) == "cat"
    assert rel(ar.obs_dir("crab_2003")) == "obs/crab_2003"
    assert rel(ar.obs_scw_dir("crab_2003", scw)) == "obs/crab_2003/scw/066500230010.001"
    assert rel(ar.obs_dir(ObsId("02200010"), CONS)) == "obs/02200010.001"
    assert rel(ar.obs_scw_dir("02200010", scw, 0)) == "obs/02200010.000/scw/066500230010.001"


def test_root_is_resolved_once(tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    monkeypatch.chdir(tmp_path)
    ar = Archive("link")
    assert ar.root == real.resolve() and ar.root.is_absolute()
    monkeypatch.chdir("/")
    assert ar.swg(ScwId.parse("000100010010.000")).parent.parent.parent.parent == real.resolve()


@pytest.mark.parametrize("call", [
    lambda ar: ar.scw_dir("066500230010.001"),
    lambda ar: ar.swg("../../etc"),
    lambda ar: ar.rev_dir("0665", CONS),
    lambda ar: ar.aux_adp(Revolution(665), "001"),
    lambda ar: ar.obs_scw_dir("run", "066500230010.001"),
    lambda ar: ar.obs_dir("run", "001"),
    lambda ar: ar.scws(rev="0665"),
])
def test_raw_strings_are_refused(tmp_path, call):
    with pytest.raises(TypeError, match="parse"):
        call(Archive(tmp_path))


@pytest.mark.parametrize("name", ["../x", "..", "a/b", ".hidden", "x y", "", "a" * 65, "scw/0665/.."])
def test_free_names_are_checked(tmp_path, name):
    ar = Archive(tmp_path)
    with pytest.raises(IdError):
        ar.obs_dir(name)
    with pytest.raises(IdError):
        ar.ic_dir(name)


@given(st.text(max_size=20))
def test_any_accepted_name_stays_inside_obs(name):
    ar = Archive("/tmp/isdc-archive-hypothesis")
    try:
        p = ar.obs_dir(name)
    except IdError:
        return
    assert p.parent == ar.root / "obs" and p.name == name


# --------------------------------------------------------------------------- output guard, read-only

def test_outputs_never_go_into_input_areas(tmp_path):
    ar = Archive(tmp_path)
    scw = ScwId.parse("066500230010.001")
    ar.scw_dir(scw).mkdir(parents=True)
    (tmp_path / "aux").mkdir()
    (tmp_path / "obs").mkdir()
    assert ar.check_output(ar.obs_scw_dir("run1", scw)) == ar.obs_scw_dir("run1", scw)
    assert ar.check_output(tmp_path.parent / "elsewhere") == (tmp_path.parent / "elsewhere").resolve()
    for bad in (ar.scw_dir(scw) / "out", tmp_path / "aux", tmp_path / "obs" / ".." / "scw" / "0665",
                tmp_path / "ic" / "ibis", tmp_path / "idx"):
        with pytest.raises(ArchiveError, match="input area"):
            ar.check_output(bad)
    # a symlink from the output area into the input data is followed
    (tmp_path / "obs" / "sneaky").symlink_to(ar.scw_dir(scw))
    with pytest.raises(ArchiveError, match="input area scw/"):
        ar.make_output_dir(tmp_path / "obs" / "sneaky" / "products")
    made = ar.make_output_dir(ar.obs_dir("run1"))
    assert made.is_dir()


def test_make_read_only(tmp_path):
    d = tmp_path / "scw" / "0665" / "066500230010.001"
    d.mkdir(parents=True)
    for name in ("swg.fits", "isgri_events.fits"):
        (d / name).write_bytes(b"x")
    assert A.make_read_only(d) == 2
    assert all(stat.S_IMODE((d / n).stat().st_mode) == 0o444 for n in ("swg.fits", "isgri_events.fits"))
    assert stat.S_IMODE(d.stat().st_mode) != 0o555
    A.make_read_only(d, dirs=True)
    assert stat.S_IMODE(d.stat().st_mode) == 0o555
    if os.geteuid() != 0:  # the super-user ignores modes
        with pytest.raises(PermissionError):
            write_fits(d / "new.fits", [])
    os.chmod(d, 0o755)


# --------------------------------------------------------------------------- time correlation file

def test_time_correlation_file_round_trip(tmp_path):
    ar = Archive(tmp_path)
    path = ar.time_correlation(665, CONS)
    path.parent.mkdir(parents=True)
    tc = TimeCorrelation.linear(213629501702144, 3377.25, 3.0, drift=3e-7, points=7)
    A.write_time_correlation(path, tc, 665)
    back = A.read_time_correlation(path)
    np.testing.assert_array_equal(back.obt, tc.obt)
    np.testing.assert_array_equal(back.ijd, tc.ijd)
    h = read_fits(path).header("AUXL-TCOR-HIS")
    assert h["REVOL"] == 665 and h["MJDREF"] == 51544.0 and h["TIMESYS"] == "TT" and h["OBTUNIT"] == 2.0**-20
    # a corrupt table (IJD going backwards) is an ArchiveError naming the file
    t = read_fits(path).table("AUXL-TCOR-HIS")
    t.columns["IJD"] = t["IJD"][::-1].copy()
    write_fits(path, [t])
    with pytest.raises(ArchiveError, match="time_correlation.fits.*increase strictly"):
        A.read_time_correlation(path)


# --------------------------------------------------------------------------- a small fake archive

def write_swg(ar: Archive, info: ScwInfo, **override) -> Path:
    """A swg.fits as the simulator writes it: keywords on the GROUPING header."""
    kw = {k: v for k, v in info.keywords().items()}
    for k, v in override.items():
        if v is None:
            kw.pop(k, None)
        else:
            kw[k] = v
    path = ar.swg(info.scw)
    path.parent.mkdir(parents=True, exist_ok=True)
    h = fits.Header()
    for k, v in kw.items():
        h[k] = v
    return write_group_file(path, Grouping("GNRL-SCWG-GRP", header=h))


def offset(ra, dec, dra_deg, ddec_deg):
    return (ra + dra_deg / np.cos(np.radians(dec))) % 360.0, dec + ddec_deg


def fake_infos():
    infos = []
    # rev 665: a hexagonal dither around the Crab (2 deg steps), then a slew
    pts = [(0, 0), (2, 0), (-2, 0), (1, 1.732), (-1, 1.732), (1, -1.732), (-1, -1.732)]
    for k, (dx, dy) in enumerate(pts):
        ra, dec = offset(*CRAB, dx, dy)
        t = 3400.0 + 0.03 * k
        infos.append(ScwInfo(ScwId(665, 23 + k, 1, 0, CONS), t, t + 0.025, ra, dec, 10.0, -60.0, 270.0, "02200010"))
    t = 3400.0 + 0.03 * len(pts)
    infos.append(ScwInfo(ScwId(665, 30, 2, 1, CONS), t, t + 0.01, 200.0, -30.0, 10.0, 40.0, 12.0))
    # rev 666: the Galactic centre, in NRT and CONS versions of the same ScW
    t = 3403.0
    for ver in (NRT, CONS):
        infos.append(ScwInfo(ScwId(666, 5, 1, 0, ver), t, t + 0.02, 266.4168, -29.0078, 0.0, 61.0, 90.0))
    infos.append(ScwInfo(ScwId(666, 6, 1, 0, NRT), t + 0.03, t + 0.05, 266.4168, -27.0078, 0.0, 63.0, 90.0))
    return infos


@pytest.fixture
def fake_archive(tmp_path):
    ar = Archive(tmp_path / "archive")
    infos = fake_infos()
    for info in infos:
        write_swg(ar, info)
    ar.rev_dir(665, CONS).mkdir()  # per-revolution folder: not a ScW, no warning
    return ar, infos


def test_scws_lists_the_tree(fake_archive, caplog):
    ar, infos = fake_archive
    with caplog.at_level(logging.WARNING, logger="isdc.dal.archive"):
        assert ar.scws() == sorted(i.scw for i in infos)
        assert ar.revolutions() == [Revolution(665), Revolution(666)]
        assert ar.scws(rev=666, version=NRT) == [ScwId(666, 5, 1, 0, NRT), ScwId(666, 6, 1, 0, NRT)]
        assert len(ar.scws(rev=Revolution(665))) == 8
    assert not caplog.records


def test_hostile_and_odd_names_are_ignored(fake_archive, tmp_path, caplog):
    ar, infos = fake_archive
    rev = ar.root / "scw" / "0665"
    for name in ("066500230010.001.tmp", "..066500230010.001", "066600230010.001", "066500230010.001 ",
                 "٠٦٦٥00230010.001", "066500230010"):
        (rev / name).mkdir()
    (rev / "066500990010.001").write_bytes(b"a file, not a folder")
    outside = tmp_path / "outside" / "066500980010.001"
    outside.mkdir(parents=True)
    (rev / "066500980010.001").symlink_to(outside)
    for name in ("665", "abcd", "06650"):
        (ar.root / "scw" / name).mkdir()
    with caplog.at_level(logging.WARNING, logger="isdc.dal.archive"):
        assert ar.scws() == sorted(i.scw for i in infos)
        assert ar.revolutions() == [Revolution(665), Revolution(666)]
    text = caplog.text
    for name in ("066500230010.001.tmp", "066600230010.001", "abcd", "outside the archive"):
        assert name in text


def test_names_that_cannot_be_folder_names_are_ignored(fake_archive, monkeypatch, caplog):
    ar, infos = fake_archive
    real = A._listdir
    hostile = ["../x", "scw/0665/..", "..", ".", "066500230010.001/../../..", "/etc", "0665/../0666"]
    monkeypatch.setattr(A, "_listdir", lambda folder: real(folder) + hostile)
    with caplog.at_level(logging.WARNING, logger="isdc.dal.archive"):
        assert ar.revolutions() == [Revolution(665), Revolution(666)]
        assert ar.scws() == sorted(i.scw for i in infos)
    assert "'../x'" in caplog.text and "'scw/0665/..'" in caplog.text


# --------------------------------------------------------------------------- ScW index

def test_build_and_read_scw_index(fake_archive):
    ar, infos = fake_archive
    index = A.build_scw_index(ar)
    assert len(index) == len(infos) and not index.skipped
    assert [r.scw for r in index.rows] == [i.scw for i in sorted(infos, key=lambda i: (i.tstart, i.scw))]
    path = ar.idx_scw()
    back = A.read_scw_index(path, archive=ar)
    assert back.rows == index.rows
    # the file is a checksummed grouping that a standard reader understands
    f = read_fits(path)
    info = f.find("GROUPING")
    assert f.verify_checksum(info) == ("ok", "ok")
    with fits.open(path) as hl:
        h, d = hl["GROUPING"].header, hl["GROUPING"].data
        assert h["GRPNAME"] == "GNRL-SCWG-GRP-IDX"
        row = list(d["SWID"]).index("066500230010")
        assert d["MEMBER_LOCATION"][row] == "../../scw/0665/066500230010.001/swg.fits"
        assert d["MEMBER_POSITION"][row] == 2 and d["MEMBER_NAME"][row] == "GROUPING"
        assert d["MEMBER_XTENSION"][row] == "BINTABLE" and d["MEMBER_URI_TYPE"][row] == "URL"
        assert d["SW_VER"][row] == 1 and d["REVOL"][row] == 665 and d["SW_TYPE"][row] == "POINTING"
        assert d["TSTART"][row] == 3400.0 and d["OBS_ID"][row] == "02200010"
        assert h["TUNIT" + str(list(d.names).index("RA_SCX") + 1)] == "deg"
        # every member location points at an existing swg.fits
        for loc in d["MEMBER_LOCATION"]:
            assert (path.parent / loc).resolve().is_file()


def test_select_by_revolution_time_and_version(fake_archive):
    ar, _ = fake_archive
    index = A.build_scw_index(ar)
    assert len(index.select(revolution=665)) == 8
    assert len(index.select(revolution=[665, Revolution(666)])) == 11
    assert index.select(revolution=666, version=CONS) == [ScwId(666, 5, 1, 0, CONS)]
    assert index.select(revolution=666, latest=True) == [ScwId(666, 5, 1, 0, CONS), ScwId(666, 6, 1, 0, NRT)]
    assert index.select(sw_type="SLEW") == [ScwId(665, 30, 2, 1, CONS)]
    # overlap of [TSTART, TSTOP) with [tstart, tstop): ScW k of rev 665 spans 3400 + 0.03 k + [0, 0.025)
    got = index.select(tstart=3400.03, tstop=3400.09)
    assert [s.pointing for s in got] == [24, 25]  # 26 starts at 3400.09: excluded
    assert [s.pointing for s in index.select(tstart=3400.03, tstop=3400.0901)] == [24, 25, 26]
    assert [s.pointing for s in index.select(tstart=3400.02, tstop=3400.0301)] == [23, 24]
    assert index.select(tstart=3400.0251, tstop=3400.0299) == []  # between two ScWs
    assert A.select_scws(ar.idx_scw(), revolution=665, tstop=3400.001) == [ScwId(665, 23, 1, 0, CONS)]


def test_select_by_sky_cone(fake_archive):
    ar, _ = fake_archive
    index = A.build_scw_index(ar)
    # dither points are 2 deg from the Crab, the centre 0 deg: radius 1 -> centre only
    assert index.select(ra=CRAB[0], dec=CRAB[1], radius_deg=1.0) == [ScwId(665, 23, 1, 0, CONS)]
    assert len(index.select(ra=CRAB[0], dec=CRAB[1], radius_deg=2.01)) == 7
    # the Galactic centre pointings: (266.4168, -29.0078) and 2 deg north of it
    gc = index.select(ra=266.4168, dec=-29.0078, radius_deg=1.999, latest=True)
    assert gc == [ScwId(666, 5, 1, 0, CONS)]
    assert len(index.select(ra=266.4168, dec=-29.0078, radius_deg=2.0001, revolution=666)) == 3
    with pytest.raises(ValueError, match="together"):
        index.select(ra=1.0, dec=2.0)


def test_angular_separation_known_values():
    sep = A.angular_separation
    assert sep(0.0, 0.0, 90.0, 0.0) == pytest.approx(90.0, abs=1e-12)
    assert sep(10.0, 89.9, 190.0, 89.9) == pytest.approx(0.2, abs=1e-9)
    assert sep(0.0, 90.0, 123.0, -90.0) == pytest.approx(180.0, abs=1e-12)
    assert sep(359.9999, 0.0, 0.0001, 0.0) == pytest.approx(2e-4, rel=1e-6)
    assert sep(CRAB[0], CRAB[1], CRAB[0], CRAB[1] + 1e-9) == pytest.approx(1e-9, rel=1e-6)


def test_bad_scws_are_left_out_with_a_reason(fake_archive):
    ar, infos = fake_archive
    bad_kw = ScwInfo(ScwId(667, 1, 1, 0, CONS), 3405.0, 3405.02, 10.0, 10.0, 10.0, 70.0, 0.0)
    write_swg(ar, bad_kw, RA_SCX=None)
    wrong_id = ScwInfo(ScwId(667, 2, 1, 0, CONS), 3405.1, 3405.12, 10.0, 10.0, 10.0, 70.0, 0.0)
    write_swg(ar, wrong_id, SWID="066700030010")
    backwards = ScwInfo(ScwId(667, 3, 1, 0, CONS), 3405.2, 3405.22, 10.0, 10.0, 10.0, 70.0, 0.0)
    write_swg(ar, backwards, TSTOP=3405.1)
    ar.scw_dir(ScwId(667, 4, 1, 0, CONS)).mkdir()  # being ingested: no swg.fits yet
    (ar.swg(ScwId(667, 4, 1, 0, CONS)).parent / "other.fits").write_bytes(b"")
    index = A.build_scw_index(ar)
    assert len(index) == len(infos)
    reasons = {str(s): r for s, r in index.skipped}
    assert "keyword RA_SCX missing" in reasons["066700010010.001"]
    assert "SWID '066700030010' differs" in reasons["066700020010.001"]
    assert "TSTART 3405.2 is not before TSTOP 3405.1" in reasons["066700030010.001"]
    assert "no swg.fits" in reasons["066700040010.001"]
    with pytest.raises(ArchiveError, match="066700010010.001/swg.fits: keyword RA_SCX missing"):
        A.build_scw_index(ar, strict=True, write=False)


def test_index_with_hostile_member_location_is_refused(fake_archive):
    ar, _ = fake_archive
    A.build_scw_index(ar)
    path = ar.idx_scw()
    t = read_fits(path).table("GROUPING")
    for loc, match in (("../../../../etc/passwd", "outside the root"), ("/etc/passwd", "absolute path"),
                       ("../../scw/0665/066500240010.001/swg.fits", "points at")):
        t.columns["MEMBER_LOCATION"] = t["MEMBER_LOCATION"].copy()
        t.columns["MEMBER_LOCATION"][0] = loc
        write_fits(path, [t])
        with pytest.raises(ArchiveError, match=match):
            A.read_scw_index(path, archive=ar)


@pytest.mark.parametrize("column, row, value, match", [
    ("SWID", 2, "../x", "invalid ScW ID '../x'"),
    ("SWID", 0, "066500230012", "invalid ScW ID"),
    ("REVOL", 1, 666, "disagree with SWID"),
    ("SW_TYPE", 0, "SLEW", "disagree with SWID"),
    ("SW_VER", 3, 1000, "version must be an integer 0..999"),
    ("TSTART", 4, np.nan, "TSTART must be a finite number"),
    ("TSTOP", 1, 3000.0, "is not before TSTOP 3000.0"),
    ("DEC_SCX", 5, 95.0, "DEC_SCX 95.0 outside"),
    ("RA_SCZ", 6, 360.0, "RA_SCZ 360.0 outside"),
    ("OBS_ID", 0, "12ab", "OBS_ID"),
])
def test_index_rows_are_validated(fake_archive, column, row, value, match):
    ar, _ = fake_archive
    A.build_scw_index(ar)
    path = ar.idx_scw()
    t = read_fits(path).table("GROUPING")
    t.columns[column] = t[column].copy()
    t.columns[column][row] = value
    write_fits(path, [t])
    with pytest.raises(ArchiveError, match=rf"row {row + 1}: .*{re.escape(match)}"):
        A.read_scw_index(path)


def one_row_index(swid: str, version: int = 1, revol: int | None = None, sw_type: str | None = None) -> ScwIndex:
    g = Grouping(A.SCW_INDEX_GRPNAME, aux={s.name: s for s in A._SCW_AUX_SPECS})
    head = swid[:4]
    g.append(Member("BINTABLE", "GROUPING", 1, 2, "x/swg.fits", "URL"),
             {"SWID": swid, "SW_VER": version, "REVOL": int(head) if head.isascii() and head.isdigit() else 0,
              "SW_TYPE": "SLEW" if swid.endswith("1") else "POINTING", "TSTART": 1.0, "TSTOP": 2.0, "RA_SCX": 1.0,
              "DEC_SCX": 1.0, "RA_SCZ": 1.0, "DEC_SCZ": 1.0, "POSANGLE": 1.0, "OBS_ID": ""})
    return ScwIndex(g)


@given(st.one_of(st.from_regex(r"[0-9]{11}[0-9]", fullmatch=True),
                 st.text(alphabet="0123456789 ./x-", min_size=10, max_size=12)),
       st.integers(min_value=-2, max_value=1001))
def test_vectorised_row_checks_agree_with_scwid_parse(swid, version):
    try:
        want = ScwId.parse(swid, version=version)
    except IdError:
        want = None
    try:
        got = one_row_index(swid, version).scw_ids()[0]
    except ArchiveError as exc:
        assert want is None, f"{swid!r} v{version} refused: {exc}"
    else:
        assert got == want


def test_scw_info_keywords_round_trip():
    info = ScwInfo(ScwId.parse("078900560010.001"), 3377.1, 3377.12, 300.6, -4.19, 30.1, 6.67, -83.31, "06200010",
                   213629501702144, 213631552716800)
    h = fits.Header()
    for k, v in info.keywords().items():
        h[k] = v
    assert h["OBTSTART"] == "00000213629501702144"
    assert ScwInfo.from_header(info.scw, h, "test") == info
    with pytest.raises(ArchiveError, match="DEC_SCX 91.0 outside"):
        ScwInfo(info.scw, 1.0, 2.0, 0.0, 91.0, 0.0, 0.0, 0.0)
