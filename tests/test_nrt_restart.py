"""The NRT daemon as a process: kill -9 mid-revolution and restart, SIGTERM, against an
uninterrupted reference run of the same telemetry.

`isdc-run nrt` runs as a subprocess while the feed writes the telemetry of the simulated
revolution (tests/nrt_sim.py) into its inbox at 300x real time; it is killed with SIGKILL
once two science windows are done, the feed completes, and a second daemon finishes the
stream. Every ScW must then be processed once (the ones done before the kill untouched),
its raw data equal to the reference run's, and every alert present once.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import nrt_sim
from isdc.dal.alerts import AlertStore
from isdc.dal.archive import Archive
from isdc.dal.inbox import Inbox
from isdc.dal.nrtstate import DaemonLock, NrtState, state_path
from isdc.dal.products import open_product
from isdc.ids import ScwId
from isdc.nrt.config import nrt_config
from isdc.nrt.daemon import Daemon

FAULTS = "gaps=0.003,dups=0.01,corrupt=0.002,disorder=0.02,truncate=0.02"
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def revolution(tmp_path_factory):
    root = tmp_path_factory.mktemp("restart")
    rev = nrt_sim.simulate(root)
    ref = root / "reference"
    shutil.copytree(rev.archive, ref / "archive")
    nrt_sim.feed(rev, ref / "inbox", FAULTS, seed=5)
    d = Daemon(ref / "archive", ref / "inbox", nrt_config(overrides={"nrt.idle_close_s": "0.5"}), durable=False)
    d.run(idle_exit_s=0.5)
    d.close()
    return rev, ref


def daemon_process(archive: Path, inbox: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "isdc.cli", "nrt", "--archive", str(archive), "--inbox", str(inbox),
                             "--exit-when-idle", "1.0", "--set", "nrt.idle_close_s=0.5", "--log", str(log)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def state(archive: Path) -> NrtState:
    for _ in range(50):
        try:
            return NrtState.load(state_path(Archive(archive)))
        except Exception:  # noqa: BLE001  (a reader may race the atomic replace on some file systems)
            time.sleep(0.02)
    return NrtState.load(state_path(Archive(archive)))


def wait_for(predicate, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    t0 = time.monotonic()
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"daemon exited early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError("timed out")
        time.sleep(0.02)


def done(archive: Path) -> set[str]:
    if not state_path(Archive(archive)).is_file():
        return set()
    return {r.scw for r in state(archive).scws.values() if r.status == "done"}


def events(archive: Path, scw: str) -> dict:
    return open_product(Archive(archive).scw_dir(ScwId.parse(scw)) / "isgri_events.fits").table(
        "ISGR-EVTS-ALL").columns


def assert_like_reference(rev, ref: Path, archive: Path, inbox: Path) -> None:
    final = state(archive)
    assert {r.scw[:12] for r in final.scws.values()} == set(rev.scws)
    assert all(r.status == "done" for r in final.scws.values()), [(r.scw, r.status) for r in final.scws.values()]
    reference = state(ref / "archive")
    for key, rec in final.scws.items():
        assert rec.lost == reference.scws[key].lost, key
        a, b = events(archive, key), events(ref / "archive", key)
        assert all(np.array_equal(a[c], b[c]) for c in b), key
    mine, theirs = AlertStore(archive / "nrt" / "alerts"), AlertStore(ref / "archive" / "nrt" / "alerts")
    assert Counter(a.kind for a in mine.all()) == Counter(a.kind for a in theirs.all())
    assert Counter(a.kind for a in mine.all())["GRB"] == 1
    # the source and operations alerts depend only on the data: the very same IDs
    assert sorted(i for i in mine.ids() if not i.startswith("grb-")) == \
        sorted(i for i in theirs.ids() if not i.startswith("grb-"))
    g = [a for a in mine.all() if a.kind == "GRB"][0]
    assert nrt_sim.separation_arcmin(g.ra, g.dec, rev.grb["ra"], rev.grb["dec"]) <= g.error_arcmin
    ib = Inbox(inbox)
    assert not ib.pending() and len(ib.processed()) + len(ib.quarantined()) == \
        len(Inbox(ref / "inbox").processed()) + len(Inbox(ref / "inbox").quarantined())
    assert not DaemonLock(archive / "nrt" / "daemon.lock").held_by_other()


@pytest.mark.slow
def test_kill_9_mid_revolution_and_restart(revolution, tmp_path):
    rev, ref = revolution
    archive, inbox = tmp_path / "archive", tmp_path / "inbox"
    shutil.copytree(rev.archive, archive)
    proc = daemon_process(archive, inbox, tmp_path / "log1.jsonl")
    fed = {}
    feeder = threading.Thread(target=lambda: fed.update(r=nrt_sim.feed(rev, inbox, FAULTS, seed=5, speed=300.0)))
    feeder.start()
    try:
        wait_for(lambda: len(done(archive)) >= 2, 60.0, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        feeder.join()
    assert proc.returncode == -signal.SIGKILL
    killed = state(archive)
    before = {r.scw for r in killed.scws.values() if r.status == "done"}
    assert 2 <= len(before) < len(rev.scws)  # killed mid-revolution
    products = {p: p.stat().st_mtime_ns for s in before for p in (archive / "obs" / "nrt.000" / "scw" / s).glob("*")}
    raw = {p: p.stat().st_mtime_ns for s in before for p in Archive(archive).scw_dir(ScwId.parse(s)).iterdir()}
    assert DaemonLock(archive / "nrt" / "daemon.lock").held_by_other() is False  # the kernel released it

    proc2 = daemon_process(archive, inbox, tmp_path / "log2.jsonl")
    assert proc2.wait(120) == 0, proc2.stderr.read()[-3000:]
    assert_like_reference(rev, ref, archive, inbox)
    final = state(archive)
    for s in before:  # nothing done before the kill was done again
        assert final.scws[s].attempts == 1
    assert {p: p.stat().st_mtime_ns for p in products} == products
    assert {p: p.stat().st_mtime_ns for p in raw} == raw
    log2 = [json.loads(line) for line in (tmp_path / "log2.jsonl").read_text().splitlines()]
    assert not any(e.get("event") == "scw_closed" and e["scw"] in before for e in log2)
    assert not any(e.get("event", "").startswith("quicklook_") and e["scw"] in before for e in log2)


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_a_restart_finishes(revolution, tmp_path):
    rev, ref = revolution
    archive, inbox = tmp_path / "archive", tmp_path / "inbox"
    shutil.copytree(rev.archive, archive)
    nrt_sim.feed(rev, inbox, FAULTS, seed=5)
    proc = daemon_process(archive, inbox, tmp_path / "log1.jsonl")
    try:
        wait_for(lambda: len(done(archive)) >= 1, 60.0, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.stderr.read()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    st = state(archive)
    assert st.daemon.get("stopped_utc") and not DaemonLock(archive / "nrt" / "daemon.lock").held_by_other()
    assert not any(r.status == "running" for r in st.scws.values())  # the running quick-look was let finish
    log1 = [json.loads(line) for line in (tmp_path / "log1.jsonl").read_text().splitlines()]
    assert log1[-1]["event"] == "daemon_stop"
    proc2 = daemon_process(archive, inbox, tmp_path / "log2.jsonl")
    assert proc2.wait(120) == 0, proc2.stderr.read()[-3000:]
    assert_like_reference(rev, ref, archive, inbox)
    assert all(r.attempts == 1 for r in state(archive).scws.values())
