"""Data rights: private ScWs stay out of public exports until their proprietary period ends.

The sample archive, analysed by the consolidated stream (obs/rev0665.001: the three
pointings and their observation mosaic) and by an OSA run over the first and third
pointings only (obs/pair: their own mosaic), with the second pointing private to
'Dr. Private' until IJD P. An export before P must hold no byte of that ScW: its ID
appears in no exported file (headers, grouping members, provenance, indexes, listing;
gzip files decompressed), no exported file or data unit equals one of its files, the
observation products that used it are withheld, those that did not are exported; the
attitude history has no sample inside it, the revolution plan no row of it. From P on
it is exported with everything that was waiting for it.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from faults_common import POINTINGS, copy_sample, signature
from isdc.cli import main
from isdc.dal.archive import Archive, read_scw_index, read_scw_info
from isdc.dal.fitsfile import read_fits
from isdc.dal.products import Product
from isdc.dal.results import read_results_index
from isdc.dal.rights import (
    EXPORT_INFO, LISTING, RightsError, ScwRights, all_rights, export_public, private_swids, proprietary_rights,
    read_rights, rights_path, write_rights,
)
from isdc.dal.templates import get as get_template
from isdc.dal.verify import verify
from isdc.ids import ScwId

PRIVATE = POINTINGS[1]
PAIR = [POINTINGS[0], POINTINGS[2]]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """The sample with CONS results (all pointings) and an OSA run over the public pair, in the archive."""
    from isdc.pipeline.config import load_config
    from isdc.pipeline.graph import run_analysis, run_consolidated

    base = tmp_path_factory.mktemp("rights")
    archive = copy_sample(base / "archive")
    report, _, _ = run_consolidated(str(archive), 665, load_config("cons", None, {"levels": "COR..IMA"}),
                                    progress=False)
    assert report.ok, report.summary()
    arch = Archive(archive)
    report, _ = run_analysis(str(archive), str(arch.obs_dir("pair")), PAIR, load_config("osa", None,
                             {"levels": "COR..IMA"}), groups={"pair": PAIR}, progress=False)
    assert report.ok, report.summary()
    return archive


@pytest.fixture
def archive(analysed, tmp_path):
    """A private copy with the second pointing owned by Dr. Private for a year after its end."""
    root = tmp_path / "archive"
    shutil.copytree(analysed, root)
    arch = Archive(root)
    end = read_scw_info(arch, PRIVATE).tstop
    write_rights(arch, 665, proprietary_rights([(PRIVATE, end)], "Dr. Private", 365.0))
    return root


def _public_date(root) -> float:
    return read_rights(Archive(root), 665)[PRIVATE.swid].public


def _content(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def _private_files(root: Path) -> list[Path]:
    """Every file of the archive that is the private ScW's data or its results."""
    arch = Archive(root)
    dirs = [arch.scw_dir(PRIVATE), arch.obs_scw_dir("rev0665", PRIVATE, 1)]
    return [p for d in dirs for p in sorted(d.rglob("*")) if p.is_file()]


def _data_units(path: Path) -> set[str]:
    """SHA-256 of each non-empty data unit of a FITS file."""
    empty = hashlib.sha256(b"").hexdigest()
    return {h for _, h in signature(path) if h != empty}


def test_rights_table_round_trip_merge_and_the_boundary(tmp_path):
    arch = Archive(tmp_path)
    assert read_rights(arch, 665) == {} and all_rights(arch) == {}  # no table: everything public
    a = ScwRights("066500010010", "Dr. A", 3100.5, "02200010")
    b = ScwRights("066500020010", "Dr. B", 3200.0)
    write_rights(arch, 665, [a])
    write_rights(arch, 665, [b])  # merges: a stays
    assert read_rights(arch, 665) == {a.swid: a, b.swid: b}
    t = read_fits(rights_path(arch, 665)).table("GNRL-RGHT-SCW")
    assert t.header["TEMPLATE"] == "GNRL-RGHT-SCW" and t.header["NSCW"] == 2 and t.header["REVOL"] == 665
    assert a.is_public(3100.5) and not a.is_public(np.nextafter(3100.5, 0))
    assert private_swids(arch, 3150.0) == {b.swid} and private_swids(arch, 3200.0) == set()
    rows = proprietary_rights([(ScwId.parse("066500010010.001"), 3005.5), (ScwId.parse("066500010021.001"), 3005.6)],
                              "PI", 30)
    assert {r.public for r in rows} == {3035.6}


@pytest.mark.parametrize("owner", ["", "   ", "Dr. Jäne", "x" * 65, "a\nb", "tab\there"])
def test_owners_that_a_table_cannot_hold_are_refused(tmp_path, owner):
    with pytest.raises(RightsError, match="printable ASCII"):
        ScwRights("066500010010", owner, 3100.0)


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10, 10) | st.booleans())
def test_a_proprietary_period_is_a_finite_number_of_days(days):
    good = not isinstance(days, bool) and np.isfinite(days) and days >= 0
    try:
        rows = proprietary_rights([(ScwId.parse("066500010010.001"), 3005.5)], "PI", days)
    except RightsError:
        assert not good
    else:
        assert good and rows[0].public == 3005.5 + float(days)


def test_a_table_that_lies_is_refused_naming_the_file(tmp_path):
    arch = Archive(tmp_path)
    hdu = get_template("GNRL-RGHT-SCW").table({"SWID": ["066600010010"], "OBS_ID": [""], "OWNER": ["X"],
                                               "PUBLIC": [3100.0]}, REVOL=665, NSCW=1)
    rights_path(arch, 665).parent.mkdir(parents=True)
    Product([hdu]).write(rights_path(arch, 665))
    with pytest.raises(RightsError, match=r"rights_0665.fits.*not of revolution 0665"):
        read_rights(arch, 665)


def test_simulate_with_an_owner_writes_the_rights_of_every_scw(tmp_path, capsys):
    root = tmp_path / "archive"
    r = subprocess.run([sys.executable, "-m", "isdc.cli", "simulate", "--archive", str(root), "--revolution", "100",
                        "--pointings", "1", "--exposure", "20", "--slew-overhead", "10", "--no-fsync",
                        "--owner", "Dr. Jane Doe", "--proprietary-days", "30"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    arch = Archive(root)
    rights = read_rights(arch, 100)
    scws = arch.scws()
    assert sorted(rights) == sorted(s.swid for s in scws) and len(scws) == 2
    end = max(read_scw_info(arch, s).tstop for s in scws)
    assert {(x.owner, x.public) for x in rights.values()} == {("Dr. Jane Doe", end + 30.0)}
    for bad in (["--owner", "Dr. Jäne"], ["--proprietary-days", "3"], ["--owner", "X", "--proprietary-days", "-1"]):
        code = main(["simulate", "--archive", str(tmp_path / "other"), "--revolution", "100", *bad])
        assert code == 1 and "isdc-run simulate:" in capsys.readouterr().err and not (tmp_path / "other").exists()


def test_an_export_before_the_period_ends_holds_no_private_byte(archive, tmp_path):
    arch = Archive(archive)
    out = tmp_path / "public"
    report = export_public(archive, out, _public_date(archive) - 1.0)
    assert sorted(report.scws) == sorted(s for s in arch.scws() if s != PRIVATE)
    assert report.withheld_scws == 1 and report.withheld_folders == 1  # the CONS observation folder
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == report.files + 2  # + the listing and export.json
    # no exported byte names the private ScW ...
    for p in files:
        assert PRIVATE.swid.encode() not in _content(p), p
    # ... or is one of its files, or one of their data units
    private = _private_files(archive)
    assert len(private) > 10
    private_sums = {hashlib.sha256(p.read_bytes()).hexdigest() for p in private}
    others = [p for p in archive.rglob("*.fits") if p not in private]
    # data units only the private ScW has (a grouping listing isgri_events.fits and isgri_hk.fits
    # is the same table in every ScW's swg.fits: its SWID is in the header)
    private_units = set().union(*(_data_units(p) for p in private if p.suffix == ".fits"))
    private_units -= set().union(*(_data_units(p) for p in others))
    assert len(private_units) > 10
    for p in files:
        assert hashlib.sha256(p.read_bytes()).hexdigest() not in private_sums, p
        if p.name.endswith(".fits"):
            assert not (_data_units(p) & private_units), p
    # observation products: the pair's are public, the revolution's used the private ScW
    assert (out / "obs" / "pair" / "obs" / "pair" / "isgri_mosa_ima.fits").is_file()
    assert not (out / "obs" / "rev0665.001" / "obs").exists()
    assert (out / "obs" / "rev0665.001" / "scw" / str(PAIR[0]) / "isgri_sky_ima.fits").is_file()
    # indexes list what was exported, and every grouping resolves inside the export
    index = read_scw_index(Archive(out).idx_scw(), archive=Archive(out))
    assert sorted(index.scw_ids()) == sorted(report.scws)
    assert {(r.scw, r.run) for r in read_results_index(Archive(out))} == {
        (s, run) for s in PAIR for run in ("rev0665.001", "pair")}
    assert verify([out]).ok
    # aux data without the private pointing
    priv = read_scw_info(arch, PRIVATE)
    plan = read_fits(out / "scw" / "0665" / "rev.001" / "revolution_plan.fits").table("INTL-PLAN-HIS")
    assert PRIVATE.swid not in [s.strip() for s in plan["SWID"]] and plan.header["NSCW"] == len(plan) == 5
    att = read_fits(out / "aux" / "adp" / "0665.001" / "attitude_historic.fits").table("INTL-ATTI-HIS")
    full = read_fits(arch.aux_adp(665, 1) / "attitude_historic.fits").table("INTL-ATTI-HIS")
    inside = (full["TIME"] > priv.tstart) & (full["TIME"] < priv.tstop)
    assert inside.sum() >= 10 and len(att) == len(full) - inside.sum()
    assert not np.any((att["TIME"] > priv.tstart) & (att["TIME"] < priv.tstop))
    # nothing but archive data: no rights table, truth, run logs
    assert not list(out.rglob("rights_*")) and not (out / "sim").exists() and not list(out.rglob("*.jsonl"))
    # the listing is sha256sum's format and true
    listed = dict(reversed(line.split("  ", 1)) for line in (out / LISTING).read_text().splitlines())
    assert len(listed) == report.files
    assert all(hashlib.sha256((out / rel).read_bytes()).hexdigest() == h for rel, h in listed.items())


def test_the_export_is_an_archive_the_pipeline_runs_on(archive, tmp_path):
    from faults_common import run_osa_inprocess

    out = tmp_path / "public"
    export_public(archive, out, _public_date(archive) - 1.0)
    report, rows = run_osa_inprocess(out, tmp_path / "reanalysis", scws=PAIR, levels="COR..GTI")
    assert report.ok, report.summary()
    report, _ = run_osa_inprocess(out, tmp_path / "refused", scws=[PRIVATE], levels="COR")
    assert not report.ok  # its data are not there


def test_a_scw_becomes_exportable_when_its_period_ends_and_a_reexport_follows_the_rights(archive, tmp_path):
    out = tmp_path / "public"
    p = _public_date(archive)
    before = export_public(archive, out, p - 1e-6)
    assert PRIVATE not in before.scws
    after = export_public(archive, out, p)  # the first day public, into the same folder
    assert PRIVATE in after.scws and after.withheld_scws == 0 and after.withheld_folders == 0
    assert (out / "scw" / "0665" / str(PRIVATE) / "isgri_events.fits").read_bytes() == \
        (Archive(archive).scw_dir(PRIVATE) / "isgri_events.fits").read_bytes()
    assert (out / "obs" / "rev0665.001" / "obs" / "rev0665" / "isgri_mosa_ima.fits").is_file()
    assert verify([out]).ok
    # the owner's period is extended: exporting again withdraws the ScW and what used it
    end = read_scw_info(Archive(archive), PRIVATE).tstop
    write_rights(Archive(archive), 665, proprietary_rights([(PRIVATE, end)], "Dr. Private", 730.0))
    again = export_public(archive, out, p)
    assert PRIVATE not in again.scws and again.removed > 10
    assert not any(PRIVATE.swid.encode() in _content(f) for f in out.rglob("*") if f.is_file())
    assert verify([out]).ok


def test_export_command_refuses_folders_it_must_not_write_and_links_on_request(archive, tmp_path, capsys):
    def export(*args):
        code = main(["export", "--archive", str(archive), *map(str, args)])
        return code, capsys.readouterr().err

    for out in (archive / "obs" / "public", archive / "scw", archive.parent):
        code, err = export("--out", out, "--at", "2009-01-01T00:00:00")
        assert code == 1 and "must not contain each other" in err, err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    code, err = export("--out", busy)
    assert code == 1 and "not empty" in err and (busy / "notes.txt").read_text() == "mine"
    r = subprocess.run([sys.executable, "-m", "isdc.cli", "export", "--archive", str(archive), "--out",
                        str(tmp_path / "linked"), "--at", str(_public_date(archive) + 1), "--link"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "exported 6 science window(s)" in r.stdout, r.stderr
    src = Archive(archive).scw_dir(PRIVATE) / "isgri_events.fits"
    dst = tmp_path / "linked" / "scw" / "0665" / str(PRIVATE) / "isgri_events.fits"
    assert os.stat(src).st_ino == os.stat(dst).st_ino
    assert (tmp_path / "linked" / EXPORT_INFO).is_file()
