"""One graph for OSA and CONS: selection, levels, resumability, staleness, groups, results index."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from isdc.dal.archive import Archive
from isdc.dal.fitsfile import read_fits
from isdc.dal.results import current_results, read_results_index
from isdc.dal.verify import verify

SAMPLE = Path(__file__).resolve().parent.parent / "test_data" / "sim" / "archive"
POINTINGS = ["066500010010.001", "066500020010.001", "066500030010.001"]


def isdc(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "isdc.cli", *map(str, args)], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"isdc-run {' '.join(map(str, args))} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(scope="module")
def osa_run(tmp_path_factory):
    """The sample revolution through every level, as a scientist runs it."""
    base = tmp_path_factory.mktemp("osa")
    archive = base / "archive"
    shutil.copytree(SAMPLE, archive)
    out = base / "out"
    r = isdc("osa", "--archive", archive, "--revolution", 665, "--out", out, "--no-progress")
    return archive, out, r


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*.fits")}


def test_osa_makes_every_level_of_every_pointing_and_the_observation(osa_run):
    archive, out, r = osa_run
    assert "3 done" in r.stdout and "Crab" in r.stdout
    for scw in POINTINGS:
        d = out / "scw" / scw
        for name in ("isgri_events_cor.fits", "ibis_gti.fits", "isgri_dead.fits", "isgri_shadowgrams.fits",
                     "isgri_bkg_shadowgrams.fits", "isgri_sky_ima.fits", "isgri_srcl_res.fits",
                     "isgri_spectrum.fits", "isgri_lc.fits", "swg_isgri.fits"):
            assert (d / name).is_file(), f"{scw}: {name} missing"
    og = read_fits(out / "obs" / "osa" / "og_isgri.fits")
    assert og.hdus[1].header["GRPNAME"] == "GNRL-OBSG-GRP" and og.hdus[1].header["NSCW"] == 3
    srcl = read_fits(out / "obs" / "osa" / "isgri_mosa_res.fits").table("ISGR-SRCL-RES")
    assert "Crab" in " ".join(srcl["NAME"])
    rep = verify([out])
    assert rep.ok, rep.text()[-2000:]


def test_the_mosaic_significance_adds_the_scw_significances_in_quadrature(osa_run):
    archive, out, _ = osa_run
    per = []
    for scw in POINTINGS:
        t = read_fits(out / "scw" / scw / "isgri_srcl_res.fits").table("ISGR-SRCL-RES")
        crab = [i for i in range(len(t)) if "Crab" in t["NAME"][i] and t["E_MIN"][i] == 20.0]
        per.append(float(t["DETSIG"][crab[0]]))
    mos = read_fits(out / "obs" / "osa" / "isgri_mosa_res.fits").table("ISGR-SRCL-RES")
    j = [i for i in range(len(mos)) if "Crab" in mos["NAME"][i] and mos["E_MIN"][i] == 20.0][0]
    assert mos["DETSIG"][j] == pytest.approx(np.sqrt(np.sum(np.square(per))), rel=0.10)


def test_rerun_does_nothing_and_a_config_change_remakes_exactly_what_depends_on_it(osa_run, tmp_path):
    archive, out0, _ = osa_run
    out = tmp_path / "out"
    shutil.copytree(out0, out)
    before = mtimes(out)
    isdc("osa", "--archive", archive, "--revolution", 665, "--out", out, "--no-progress")
    assert mtimes(out) == before
    isdc("osa", "--archive", archive, "--revolution", 665, "--out", out, "--no-progress",
         "--set", "isgri.ima.detection_threshold=7.5")
    after = mtimes(out)
    changed = {k for k in before if after[k] != before[k]}
    for scw in POINTINGS:
        assert f"scw/{scw}/isgri_events_cor.fits" not in changed
        assert f"scw/{scw}/isgri_shadowgrams.fits" not in changed
        assert f"scw/{scw}/isgri_sky_ima.fits" in changed  # IMA reads the threshold
    assert "obs/osa/isgri_mosa_res.fits" in changed


def test_levels_and_bands_choose_what_is_made(osa_run, tmp_path):
    archive, _, _ = osa_run
    out = tmp_path / "out"
    isdc("osa", "--archive", archive, "--scw", POINTINGS[0], "--out", out, "--levels", "COR..BIN",
         "--bands", "25-80", "--no-progress")
    d = out / "scw" / POINTINGS[0]
    assert (d / "isgri_shadowgrams.fits").is_file() and not (d / "isgri_sky_ima.fits").exists()
    shd = read_fits(d / "isgri_shadowgrams.fits")
    bands = {(h.header.get("E_MIN"), h.header.get("E_MAX")) for h in shd.hdus[1:] if "E_MIN" in h.header}
    assert bands == {(25.0, 80.0)}


@pytest.mark.parametrize("args, message", [
    (["--scw", "0665000100100.001"], "invalid ScW ID"),
    (["--scw", "../../etc/passwd"], "invalid ScW ID"),
    (["--revolution", "665", "--bands", "20.3-40"], "multiple of 0.5"),
    (["--revolution", "665", "--set", "isgri.nonsense=1"], "unknown"),
    (["--revolution", "9999"], "no ScW"),
])
def test_bad_requests_exit_non_zero_with_a_clear_message(osa_run, tmp_path, args, message):
    archive, _, _ = osa_run
    r = isdc("osa", "--archive", archive, "--out", tmp_path / "o", "--no-progress", *args, check=False)
    assert r.returncode != 0 and message in (r.stderr + r.stdout)


def test_output_inside_the_archive_input_data_is_refused(osa_run):
    archive, _, _ = osa_run
    r = isdc("osa", "--archive", archive, "--revolution", 665, "--out", archive / "scw" / "x", "--no-progress",
             check=False)
    assert r.returncode == 1 and "input area" in r.stderr


def test_cons_ingests_into_the_archive_and_supersedes_nrt_results(tmp_path):
    archive = tmp_path / "archive"
    for version in ("000", "001"):
        isdc("simulate", "--archive", archive, "--revolution", 665, "--pointings", 2, "--exposure", 100,
             "--sky", SAMPLE.parent / "sky.yaml", "--seed", 5, "--version", version, "--slew-overhead", 10)
    nrt_ids = [s for s in Archive(archive).scws() if s.version.number == 0 and not s.is_slew]
    # quick-look results of the NRT data in the archive, as the NRT daemon keeps them
    isdc("osa", "--archive", archive, "--scw", *map(str, nrt_ids), "--out", archive / "obs" / "nrt.000",
         "--levels", "COR..IMA", "--no-progress")
    r = isdc("cons", "--archive", archive, "--revolution", 665, "--no-progress")
    assert "2 done" in r.stdout
    rows = read_results_index(Archive(archive))
    assert {(r.scw.version.number, r.superseded) for r in rows} == {(0, True), (1, False)}
    cur = current_results(Archive(archive), nrt_ids[0].swid)
    assert cur is not None and cur.scw.version.number == 1 and cur.run == "rev0665.001"
    assert verify([archive]).ok
