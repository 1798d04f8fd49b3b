"""The task framework: declared data, completeness by checksum+fingerprint, outcomes, exit status."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import luigi
import numpy as np
import pytest

from isdc.dal.fitsfile import Image, Table, read_fits, write_fits
from isdc.dal.products import Product
from isdc.ids import ScwId
from isdc.pipeline.base import (
    NoWork, ObsTask, PermanentError, ProductTarget, ScwTask, TransientError, raw_input, register_dataset,
)
from isdc.pipeline.runner import run_build

register_dataset("test_raw", "raw", "test_raw.fits")
register_dataset("test_sum", "scw", "test_sum.fits")
register_dataset("test_scaled", "scw", "test_scaled.fits")
raw_input("test_raw")


class SumTask(ScwTask):
    """Sums the X column of the raw table; counts its runs in a side file (the test's probe)."""

    inputs = {"raw": "test_raw"}
    outputs = {"sum": "test_sum"}
    config_keys = ("sum.offset",)

    def process(self, inputs):
        _count_run(self)
        x = inputs["raw"].table("TEST-DATA-RAW")["X"]
        if len(x) == 0:
            raise NoWork("no rows in the raw table")
        if np.any(x < 0):
            raise PermanentError(f"{self.scw}: negative X in {inputs['raw'].path}")
        flaky = Path(self.archive) / "flaky"
        if flaky.exists() and int(flaky.read_text()) > 0:
            flaky.write_text(str(int(flaky.read_text()) - 1))
            raise OSError(errno.EAGAIN, "resource temporarily unavailable")
        total = float(x.sum()) + float(self.config.get("sum", {}).get("offset", 0.0))
        return {"sum": Product([Table({"TOTAL": np.array([total])}, {"EXTNAME": "TEST-SUM.-RES"})])}


class ScaleTask(ScwTask):
    inputs = {"sum": "test_sum"}
    outputs = {"scaled": "test_scaled"}
    config_keys = ("scale.factor",)

    def process(self, inputs):
        _count_run(self)
        total = inputs["sum"].table("TEST-SUM.-RES")["TOTAL"][0]
        factor = self.config.get("scale", {}).get("factor", 1.0)
        return {"scaled": Product([Table({"SCALED": np.array([total * factor])}, {"EXTNAME": "TEST-SCAL-RES"})])}


def _count_run(task):
    p = Path(task.outdir) / f"runs_{task.task_family}_{task.scw}.txt"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(str(int(p.read_text()) + 1 if p.exists() else 1))


def runs(outdir, family, scw):
    p = Path(outdir) / f"runs_{family}_{scw}.txt"
    return int(p.read_text()) if p.exists() else 0


def make_raw(archive: Path, scw: ScwId, x) -> Path:
    d = archive / "scw" / f"{scw.revolution:04d}" / str(scw)
    d.mkdir(parents=True, exist_ok=True)
    return write_fits(d / "test_raw.fits", [Table({"X": np.asarray(x, dtype=float)}, {"EXTNAME": "TEST-DATA-RAW"})])


@pytest.fixture
def setup(tmp_path):
    archive, out = tmp_path / "archive", tmp_path / "out"
    scws = [ScwId.parse(f"06650{i:03d}0010.001") for i in (1, 2)]
    for i, s in enumerate(scws):
        make_raw(archive, s, np.arange(10) + i)
    return archive, out, scws


def build(archive, out, scws, config=None, **kw):
    cfg = config or {"sum": {"offset": 0.0}, "scale": {"factor": 2.0}}
    tasks = [ScaleTask(archive=str(archive), outdir=str(out), scw=s, config=cfg) for s in scws]
    return tasks, run_build(tasks, quarantine_dirs=[out / "quarantine"], **kw)


def scaled_value(out, scw):
    return read_fits(out / "scw" / str(scw) / "test_scaled.fits").table("TEST-SCAL-RES")["SCALED"][0]


def test_build_products_provenance_and_resume(setup):
    archive, out, scws = setup
    tasks, rep = build(archive, out, scws)
    assert rep.ok and rep.exit_code == 0, rep.summary()
    assert scaled_value(out, scws[0]) == 2 * 45.0
    assert scaled_value(out, scws[1]) == 2 * 55.0
    f = read_fits(out / "scw" / str(scws[0]) / "test_scaled.fits")
    assert f.hdus[0].header["ISDCFPRT"] == tasks[0].fingerprint()
    prov = f.table("GNRL-PROV-HIS")
    kinds = list(prov["KIND"])
    assert "input" in kinds and "config" in kinds and "software" in kinds
    assert "scw/066500010010.001/test_sum.fits" in list(prov["LOCATION"])
    # a rerun does nothing
    build(archive, out, scws)
    assert runs(out, "SumTask", scws[0]) == 1 and runs(out, "ScaleTask", scws[0]) == 1


def test_config_change_makes_exactly_the_dependent_products_stale(setup):
    archive, out, scws = setup
    build(archive, out, scws)
    _, rep = build(archive, out, scws, {"sum": {"offset": 0.0}, "scale": {"factor": 3.0}})
    assert rep.ok
    assert runs(out, "SumTask", scws[0]) == 1  # its config keys did not change
    assert runs(out, "ScaleTask", scws[0]) == 2
    assert scaled_value(out, scws[0]) == 3 * 45.0
    # an upstream change propagates downstream
    _, rep = build(archive, out, scws, {"sum": {"offset": 1.0}, "scale": {"factor": 3.0}})
    assert runs(out, "SumTask", scws[0]) == 2 and runs(out, "ScaleTask", scws[0]) == 3
    assert scaled_value(out, scws[0]) == 3 * 46.0


def test_corrupt_product_is_incomplete_and_rebuilt(setup):
    archive, out, scws = setup
    tasks, _ = build(archive, out, scws)
    p = out / "scw" / str(scws[0]) / "test_scaled.fits"
    raw = bytearray(p.read_bytes())
    info = read_fits(p).find("TEST-SCAL-RES")
    raw[info.data_offset] ^= 0x01
    p.write_bytes(bytes(raw))
    target = tasks[0].output()["scaled"]
    assert not target.exists() and "checksum" in target.why_incomplete()
    _, rep = build(archive, out, scws)
    assert rep.ok and runs(out, "ScaleTask", scws[0]) == 2 and runs(out, "SumTask", scws[0]) == 1


def test_changed_raw_input_makes_products_stale(setup):
    archive, out, scws = setup
    build(archive, out, scws)
    make_raw(archive, scws[1], np.arange(20))  # more telemetry arrived
    _, rep = build(archive, out, scws)
    assert rep.ok and runs(out, "SumTask", scws[1]) == 2 and runs(out, "SumTask", scws[0]) == 1
    assert scaled_value(out, scws[1]) == 2 * 190.0


def test_no_work_writes_explicit_empty_products_and_completes(setup):
    archive, out, scws = setup
    make_raw(archive, scws[0], [])
    _, rep = build(archive, out, scws)
    assert rep.ok, rep.summary()
    for name in ("test_sum.fits", "test_scaled.fits"):
        p = Product.read(out / "scw" / str(scws[0]) / name)
        assert p.nowork and "no rows" in p.nowork_reason
    assert scaled_value(out, scws[1]) == 110.0


def test_permanent_error_quarantines_that_scw_and_the_rest_goes_on(setup):
    archive, out, scws = setup
    make_raw(archive, scws[0], [-1.0, 2.0])
    _, rep = build(archive, out, scws)
    assert not rep.ok and rep.exit_code == 1
    assert scaled_value(out, scws[1]) == 110.0
    assert [q["data_id"] for q in rep.quarantined] == [str(scws[0])]
    assert "negative X" in rep.quarantined[0]["reason"] and "test_raw.fits" in rep.quarantined[0]["reason"]
    # never retried while the input is unchanged
    build(archive, out, scws)
    assert runs(out, "SumTask", scws[0]) == 1
    # repaired input: processed, quarantine cleared
    make_raw(archive, scws[0], [1.0, 2.0])
    _, rep = build(archive, out, scws)
    assert rep.ok and not rep.quarantined and scaled_value(out, scws[0]) == 6.0


def test_unreadable_input_is_a_permanent_error_naming_the_file(setup):
    archive, out, scws = setup
    raw = archive / "scw" / "0665" / str(scws[0]) / "test_raw.fits"
    raw.write_bytes(raw.read_bytes()[:3000])  # truncated
    _, rep = build(archive, out, scws)
    assert not rep.ok
    reasons = " ".join(q["reason"] for q in rep.quarantined)
    assert "test_raw.fits" in reasons and "truncated" in reasons


def test_transient_error_is_retried(setup, monkeypatch):
    archive, out, scws = setup
    monkeypatch.setattr("isdc.pipeline.base.RETRY_DELAY_S", 0.01)
    (archive / "flaky").write_text("2")
    _, rep = build(archive, out, scws[:1])
    assert rep.ok and runs(out, "SumTask", scws[0]) == 3


def test_missing_input_gives_nonzero_exit(tmp_path):
    archive, out = tmp_path / "a", tmp_path / "o"
    s = ScwId.parse("066500990010.001")
    _, rep = build(archive, out, [s])
    assert not rep.ok and rep.exit_code == 1
    assert "missing" in rep.incomplete[0][1] or "not produced" in rep.incomplete[0][1]


def test_product_target_requires_fingerprint(tmp_path):
    p = write_fits(tmp_path / "x.fits", [Image(None, {"ISDCFPRT": "abc"})])
    assert ProductTarget(p, "abc").exists()
    assert not ProductTarget(p, "abd").exists()
    assert "stale" in ProductTarget(p, "abd").why_incomplete()
    assert not ProductTarget(tmp_path / "none.fits", "abc").exists()


# --------------------------------------------------------------------------- IC files

register_dataset("test_cal", "scw", "test_cal.fits")


class CalTask(ScwTask):
    """Multiplies the raw sum by a gain read from the IC structure TEST-GAIN-MOD."""

    inputs = {"raw": "test_raw"}
    outputs = {"cal": "test_cal"}
    ic_structures = (("isgri", "TEST-GAIN-MOD"),)

    def process(self, inputs):
        _count_run(self)
        ic = self.ic_file("isgri", "TEST-GAIN-MOD")
        gain = read_fits(ic.path).table(ic.hdu)["GAIN"][0]
        total = inputs["raw"].table("TEST-DATA-RAW")["X"].sum() * gain
        return {"cal": Product([Table({"CAL": np.array([total])}, {"EXTNAME": "TEST-CAL.-RES"})])}


def _write_swg(archive: Path, scw: ScwId, tstart: float):
    from isdc.dal.archive import Archive, ScwInfo
    from isdc.dal.grouping import Grouping, write_group_file

    info = ScwInfo(scw, tstart, tstart + 0.02, 83.6, 22.0, 263.6, 68.0, 0.0)
    write_group_file(Archive(archive).swg(scw), Grouping("GNRL-SCWG-GRP", header=info.header()))


def _write_gain(archive: Path, version: int, gain: float, vstart=0.0, vstop=9999.0):
    d = archive / "ic" / "isgri"
    d.mkdir(parents=True, exist_ok=True)
    hdr = {"EXTNAME": "TEST-GAIN-MOD", "VERSION": version, "VSTART": vstart, "VSTOP": vstop}
    write_fits(d / f"test_gain_{version:04d}.fits", [Table({"GAIN": np.array([gain])}, hdr)])


def test_new_ic_version_makes_exactly_the_products_that_use_it_stale(setup):
    archive, out, scws = setup
    for s in scws:
        _write_swg(archive, s, 3000.0)
    _write_gain(archive, 1, 2.0)
    cfg = {"sum": {"offset": 0.0}, "scale": {"factor": 2.0}}
    tasks = [CalTask(archive=str(archive), outdir=str(out), scw=s, config=cfg) for s in scws]
    other = [ScaleTask(archive=str(archive), outdir=str(out), scw=s, config=cfg) for s in scws]
    assert run_build(tasks + other).ok
    f = read_fits(out / "scw" / str(scws[0]) / "test_cal.fits")
    assert f.table("TEST-CAL.-RES")["CAL"][0] == 90.0
    prov = f.table("GNRL-PROV-HIS")
    assert "isgri/test_gain_0001.fits" in list(prov["LOCATION"]) and 1 in list(prov["VERSION"])
    _write_gain(archive, 2, 3.0)  # the calibration team delivers a new version
    assert not tasks[0].complete() and all(t.complete() for t in other)
    assert run_build(tasks + other).ok
    assert runs(out, "CalTask", scws[0]) == 2 and runs(out, "ScaleTask", scws[0]) == 1
    assert read_fits(out / "scw" / str(scws[0]) / "test_cal.fits").table("TEST-CAL.-RES")["CAL"][0] == 135.0


def test_no_valid_ic_file_quarantines_with_a_clear_reason(setup):
    archive, out, scws = setup
    for s in scws:
        _write_swg(archive, s, 3000.0)
    _write_gain(archive, 1, 2.0, vstart=0.0, vstop=100.0)  # not valid at IJD 3000
    tasks = [CalTask(archive=str(archive), outdir=str(out), scw=s, config={}) for s in scws]
    rep = run_build(tasks, quarantine_dirs=[out / "quarantine"])
    assert not rep.ok and len(rep.quarantined) == 2
    assert "TEST-GAIN-MOD" in rep.quarantined[0]["reason"] and "3000" in rep.quarantined[0]["reason"]


# --------------------------------------------------------------------------- observation groups

register_dataset("test_obs_total", "obs", "test_obs_total.fits")


class ObsTotal(ObsTask):
    scw_inputs = {"scaled": "test_scaled"}
    outputs = {"total": "test_obs_total"}

    def process(self, inputs):
        per = self.per_scw(inputs, "scaled")
        used = [p.table("TEST-SCAL-RES")["SCALED"][0] for p in per.values() if not p.nowork]
        return {"total": Product([Table({"TOTAL": np.array([sum(used)]), "NSCW": np.array([len(used)])},
                                        {"EXTNAME": "TEST-OBS.-RES"})])}


def test_observation_task_combines_scws_and_skips_empty_ones(setup):
    archive, out, scws = setup
    make_raw(archive, scws[0], [])  # no work in the first ScW
    cfg = {"sum": {"offset": 0.0}, "scale": {"factor": 2.0}}
    task = ObsTotal(archive=str(archive), outdir=str(out), config=cfg, group="crab_obs", scws=[str(s) for s in scws])
    rep = run_build([task])
    assert rep.ok, rep.summary()
    t = read_fits(out / "obs" / "crab_obs" / "test_obs_total.fits").table("TEST-OBS.-RES")
    assert t["TOTAL"][0] == 110.0 and t["NSCW"][0] == 1
    # a changed ScW input makes the observation product stale
    make_raw(archive, scws[1], np.arange(11))
    assert not task.complete()
    with pytest.raises(Exception):
        ObsTotal(archive=str(archive), outdir=str(out), config=cfg, group="../etc", scws=[]).output()
