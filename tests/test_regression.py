"""The regression build passes on main and fails on a deliberate change of the science."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from isdc.pipeline.regression import bless, check, checkout_paths, run_streams, write_report

SAMPLE, REG = checkout_paths()


def test_regression_build_passes_on_the_committed_references(tmp_path):
    r = subprocess.run([sys.executable, "-m", "isdc.cli", "regression", "--work", str(tmp_path / "w"), "--report",
                        str(tmp_path / "report")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 differences, 0 missing, 0 without reference, 0 build failures -> PASS" in r.stdout
    n = int(r.stdout.split("regression: ")[1].split(" products")[0])
    assert n >= 90  # every product of the three streams
    assert (tmp_path / "report" / "report.html").is_file()


@pytest.fixture(scope="module")
def changed_run(tmp_path_factory):
    """The three streams with COR's energies 1% high: a deliberate change of the science."""
    import isdc.instruments.isgri.cor as cor

    work = tmp_path_factory.mktemp("changed")
    original = cor.correct_events

    def one_percent_high(*a, **k):
        res = original(*a, **k)
        return dataclasses.replace(res, energy=(res.energy * np.float32(1.01)).astype(np.float32))

    cor.correct_events = one_percent_high
    try:
        outs = run_streams(work, SAMPLE, progress=lambda *_: None)
    finally:
        cor.correct_events = original
    return work, outs


def test_a_deliberate_change_of_the_science_fails_and_the_report_says_where(changed_run, tmp_path):
    work, outs = changed_run
    rep = check(outs, REG / "reference", REG / "tolerances.yaml")
    assert not rep.ok
    files = {d.file for d in rep.differences}
    assert any(f.endswith("isgri_events_cor.fits") for f in files)
    assert any(f.endswith("isgri_shadowgrams.fits") for f in files)  # band counts move
    assert any(f.endswith("isgri_sky_ima.fits") for f in files)
    txt, htm = write_report(rep, tmp_path / "report")
    page = htm.read_text()
    assert "FAIL" in page and "isgri_events_cor.fits" in page
    pngs = sorted((tmp_path / "report").glob("diff_*_difference.png"))
    assert pngs and pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_blessing_makes_the_new_products_the_references(changed_run, tmp_path):
    work, outs = changed_run
    refs = tmp_path / "refs"
    n = bless(outs, refs)
    assert n >= 90
    assert check(outs, refs, REG / "tolerances.yaml").ok
    # and the committed references then disagree with them
    assert not check(outs, REG / "reference", REG / "tolerances.yaml").ok


def test_a_missing_product_and_an_unreferenced_one_are_reported(changed_run, tmp_path):
    work, outs = changed_run
    refs = tmp_path / "refs"
    bless(outs, refs)
    victim = next((refs / "osa").rglob("isgri_lc.fits.ref.fits.gz"))
    victim.rename(victim.with_name("isgri_lightcurve.fits.ref.fits.gz"))
    rep = check(outs, refs, REG / "tolerances.yaml")
    assert any(m.endswith("isgri_lightcurve.fits") for m in rep.missing)
    assert any(u.endswith("isgri_lc.fits") for u in rep.unexpected)
