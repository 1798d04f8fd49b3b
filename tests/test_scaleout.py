"""Scale-out: one build shared by worker processes through luigid, and local worker pools.

The committed sample revolution (3 pointings, 2 slews) runs once in a single process (the
reference), once with `--workers 2` (a pool of two task processes), and once as two
`isdc-run osa` processes sharing a luigid started here on a free loopback port. Every
task must run exactly once (the per-task run log, `<out>/log/tasks_<host>.jsonl`, records
each run with its process ID), every worker process must exit 0, and every HDU's data must
equal the reference (headers hold dates, hosts and process IDs: they are not compared).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from isdc.dal import runlog
from isdc.dal.fitsfile import FitsFile, write_fits, Table
from isdc.dal.products import Product
from isdc.ids import ScwId
from isdc.pipeline.base import ScwTask, raw_input, register_dataset
from isdc.pipeline.runner import run_build

SAMPLE = Path(__file__).resolve().parent.parent / "test_data" / "sim" / "archive"
LUIGID = Path(sys.executable).parent / "luigid"


def isdc_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "isdc.cli", *map(str, args)]


def run(*args) -> subprocess.CompletedProcess:
    r = subprocess.run(isdc_cmd(*args), capture_output=True, text=True)
    assert r.returncode == 0, f"isdc-run {' '.join(map(str, args))} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def luigid(tmp_path):
    """luigid on a free loopback port with its state and log in tmp; stopped whatever happens."""
    port = free_port()
    state = tmp_path / "luigid"
    state.mkdir()
    log = open(state / "luigid.log", "w")
    proc = subprocess.Popen([str(LUIGID), "--address", "127.0.0.1", "--port", str(port), "--state-path",
                             str(state / "state.pickle"), "--logdir", str(state)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"luigid did not start: {(state / 'luigid.log').read_text()[-2000:]}")
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The sample revolution analysed by one process with one worker."""
    base = tmp_path_factory.mktemp("scaleout")
    archive = base / "archive"
    shutil.copytree(SAMPLE, archive)
    out = base / "single"
    run("osa", "--archive", archive, "--revolution", 665, "--out", out, "--no-progress")
    return archive, out


def product_data(outdir: Path) -> dict[str, list]:
    """Every HDU's data of every product in `outdir`: (EXTNAME, {column: array} or array)."""
    out = {}
    for path in sorted(outdir.rglob("*.fits")):
        f = FitsFile(path)
        hdus = []
        for info in f.hdus:
            if info.xtension == "BINTABLE":
                hdus.append((info.extname, f.table(info.index).columns))
            else:
                hdus.append((info.extname, f.image(info.index).data))
        out[str(path.relative_to(outdir))] = hdus
    return out


def assert_same_data(a: Path, b: Path) -> int:
    da, db = product_data(a), product_data(b)
    assert sorted(da) == sorted(db)
    n = 0
    for name in da:
        assert [e for e, _ in da[name]] == [e for e, _ in db[name]], name
        for (ext, x), (_, y) in zip(da[name], db[name]):
            if isinstance(x, dict):
                assert sorted(x) == sorted(y), f"{name} {ext}"
                for col in x:
                    xa, ya = np.asarray(x[col]), np.asarray(y[col])
                    same = np.array_equal(xa, ya, equal_nan=xa.dtype.kind in "fc")
                    assert same, f"{name} {ext} column {col} differs"
            else:
                assert (x is None) == (y is None), f"{name} {ext}"
                if x is not None:
                    assert np.array_equal(x, y, equal_nan=True), f"{name} {ext} image differs"
            n += 1
    return n


def runs_by_task(outdir: Path) -> Counter:
    """Runs per (task, data ID): task IDs hold the output folder, which differs between runs."""
    return Counter((r["task"], r["data_id"]) for r in runlog.read(outdir))


def test_the_reference_run_logs_each_task_once(reference):
    _, out = reference
    records = runlog.read(out)
    counts = Counter(r["task_id"] for r in records)
    assert max(counts.values()) == 1
    families = Counter(r["task"] for r in records)
    # 3 pointings x (COR GTI DEAD BIN BKG IMA SPE LCR + ScW group) + mosaic + observation group
    assert families["IsgriCor"] == 3 and families["ScwGroup"] == 3 and families["ObsMosaic"] == 1
    assert len(records) == 3 * 9 + 2
    assert {r["outcome"] for r in records} == {"done"}
    assert {r["pid"] for r in records} == {records[0]["pid"]}  # one process ran everything
    for r in records:
        assert r["stop"] >= r["start"] and r["seconds"] >= r["read_s"] + r["process_s"] + r["write_s"] - 1e-3


def test_a_revolution_build_has_one_task_per_auxiliary_file(reference):
    """Builds stay small (luigi's cost grows ~quadratically with the tasks of a build): the
    revolution's attitude and time correlation are one task each, not one per ScW."""
    from isdc.pipeline.config import load_config
    from isdc.pipeline.graph import obs_tasks, scw_tasks, select_run_scws, task_config
    from isdc.pipeline.runner import all_tasks

    archive, out = reference
    scws = select_run_scws(str(archive), revolution=665)
    cfg = task_config(load_config("osa"))
    tops = scw_tasks(str(archive), str(out), scws, cfg) + obs_tasks(str(archive), str(out), {"osa": scws}, cfg)
    tasks = all_tasks(tops)
    families = Counter(t.task_family for t in tasks)
    aux = sorted(t.dataset for t in tasks if t.task_family == "AuxData")
    assert aux == ["attitude_historic", "time_correlation"]
    assert families["RawData"] == 2 * len(scws) == 6  # events and HK of each pointing
    assert len(tasks) == 9 * 3 + 2 + 6 + 2


def test_two_local_workers_run_each_task_once_and_make_the_same_data(reference, tmp_path):
    archive, single = reference
    out = tmp_path / "pool"
    run("osa", "--archive", archive, "--revolution", 665, "--out", out, "--workers", 2, "--no-progress")
    counts = runs_by_task(out)
    assert counts.keys() == runs_by_task(single).keys() and max(counts.values()) == 1
    pids = {r["pid"] for r in runlog.read(out)}
    assert len(pids) == 2  # two long-lived task processes, not one process per task
    assert assert_same_data(single, out) > 100


def test_two_worker_processes_share_one_build_through_luigid(reference, luigid, tmp_path):
    archive, single = reference
    out = tmp_path / "shared"
    cmd = isdc_cmd("osa", "--archive", archive, "--revolution", 665, "--out", out, "--no-progress",
                   "--scheduler-host", "127.0.0.1", "--scheduler-port", luigid)
    # the second runs its tasks in a pool of two processes, with a configuration that differs
    # in how it runs only: both must still see the same task IDs
    cmd2 = cmd + ["--workers", "2", "--set", "workers=2"]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in (cmd, cmd2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, f"worker exited {p.returncode}\n{o}\n{e}"
        assert "3 done" in o  # each reports the whole build done, whoever ran what
    records = runlog.read(out)
    counts = runs_by_task(out)
    assert counts.keys() == runs_by_task(single).keys()
    assert max(counts.values()) == 1, [t for t, n in counts.items() if n > 1]
    # the worker process that ran each task: itself, or the parent of its pool process
    worker = Counter(r["pid"] if r["pid"] == procs[0].pid else r["ppid"] for r in records)
    assert set(worker) == {p.pid for p in procs}  # both took part (11-18 of the 29 tasks each, here)
    assert assert_same_data(single, out) > 100
    # a third worker on the finished build finds nothing to do and exits 0
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and len(runlog.read(out)) == len(records)


def test_shared_workers_leave_when_only_a_quarantined_scw_is_left(reference, luigid, tmp_path):
    """luigid retries a failed task after 15 min: workers must not wait for it (both exit 1,
    the other ScWs done, the bad one quarantined once)."""
    archive = tmp_path / "archive"
    shutil.copytree(reference[0], archive)
    bad = "066500020010.001"
    hk = archive / "scw" / "0665" / bad / "isgri_hk.fits"
    f = FitsFile(hk)
    hdus = [f.image(0)] + [f.table(i.index) for i in f.hdus[1:]]
    hdus[1].columns = {k: v[:0] for k, v in hdus[1].columns.items()}  # no HK rows: COR cannot run
    write_fits(hk, hdus)
    out = tmp_path / "shared"
    cmd = isdc_cmd("osa", "--archive", archive, "--revolution", 665, "--out", out, "--no-progress",
                   "--scheduler-host", "127.0.0.1", "--scheduler-port", luigid)
    t0 = time.monotonic()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert time.monotonic() - t0 < 60
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 1, f"{o}\n{e}"
        assert "QUARANTINED 066500020010.001 at IsgriCor" in e and "1 quarantined" in o
    counts = runs_by_task(out)
    assert counts[("IsgriCor", bad)] == 1 and max(counts.values()) == 1
    assert counts[("ScwGroup", "066500010010.001")] == 1 and counts[("ScwGroup", "066500030010.001")] == 1


# --------------------------------------------------------------------------- the pool of task processes

register_dataset("scaleout_raw", "raw", "scaleout_raw.fits")
register_dataset("scaleout_out", "scw", "scaleout_out.fits")
raw_input("scaleout_raw")


class DoubleTask(ScwTask):
    """Doubles the raw values; its process dies (exit 3) for the ScW listed in the archive's
    file 'die', as a task process killed by the system would."""

    inputs = {"raw": "scaleout_raw"}
    outputs = {"out": "scaleout_out"}

    def process(self, inputs):
        die = Path(self.archive) / "die"
        if die.exists() and die.read_text() == str(self.scw):
            os._exit(3)
        x = inputs["raw"].table("TEST-DATA-RAW")["X"]
        return {"out": Product([Table({"Y": 2 * x}, {"EXTNAME": "TEST-DOUB-RES"})])}


def _raw(archive: Path, scw: ScwId, x) -> None:
    d = archive / "scw" / f"{scw.revolution:04d}" / str(scw)
    d.mkdir(parents=True, exist_ok=True)
    write_fits(d / "scaleout_raw.fits", [Table({"X": np.asarray(x, dtype=float)}, {"EXTNAME": "TEST-DATA-RAW"})])


def test_a_dead_task_process_fails_its_task_and_the_pool_goes_on(tmp_path):
    archive, out = tmp_path / "a", tmp_path / "o"
    scws = [ScwId.parse(f"06650{i:03d}0010.001") for i in range(1, 7)]
    for i, s in enumerate(scws):
        _raw(archive, s, np.arange(5) + i)
    (archive / "die").write_text(str(scws[1]))
    tasks = [DoubleTask(archive=str(archive), outdir=str(out), scw=s) for s in scws]
    rep = run_build(tasks, workers=2)
    assert not rep.ok and rep.exit_code == 1
    assert [tid for tid, _ in rep.incomplete] == [tasks[1].task_id]
    for i, s in enumerate(scws):
        if i != 1:
            y = FitsFile(out / "scw" / str(s) / "scaleout_out.fits").table("TEST-DOUB-RES")["Y"]
            assert np.array_equal(y, 2 * (np.arange(5) + i))
    records = runlog.read(out)
    assert len({r["pid"] for r in records}) <= 3  # two processes, one replaced after it died
    (archive / "die").unlink()
    rep = run_build(tasks, workers=2)
    assert rep.ok and Counter(r["task_id"] for r in runlog.read(out))[tasks[1].task_id] == 1
