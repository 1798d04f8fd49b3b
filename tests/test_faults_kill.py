"""kill -9 of `isdc-run osa` (and of a forked luigi worker) at random moments, many seeded trials.

After every kill: each product file that exists passes astropy's checksum verification; each
product the graph takes as complete (`ProductTarget.exists()`) is byte-for-byte, volatile
cards aside, the product an undisturbed run made; no ScW was quarantined for the kill.
Temporary files may remain after a kill; they are never taken as products and the rerun
removes them (`isdc.dal.atomic.remove_stale_temps`). A final uninterrupted rerun exits 0
with data identical to the undisturbed run: nothing lost, nothing half made.

Kill moments: a uniform random delay after start, or the n-th temporary file seen in the
output folder (a kill during a product write, polled from here). The killed runs are
`isdc.cli.main(["osa", ...])` in a forked child of this process (the command without the
1.5 s of interpreter start-up, so more kills fit in the time); the final rerun is the real
`isdc-run osa` command.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from faults_common import (
    astropy_problems, copy_sample, graph_targets, osa_command, product_files, run_osa_inprocess, signatures,
    temp_files,
)

COUNTS = {"kills": 0, "kills_during_write": 0, "checked_products": 0}


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory):
    base = tmp_path_factory.mktemp("kill")
    archive = copy_sample(base / "archive")
    out = base / "reference"
    report, _ = run_osa_inprocess(archive, out)
    assert report.ok, report.summary()
    return archive, out, signatures(out)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


class _Forked:
    """`isdc-run <argv>` run by `isdc.cli.main` in a forked child, output to /dev/null."""

    def __init__(self, argv: list[str]):
        from isdc.cli import main

        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns into pytest
            code = 70
            try:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)
                os.dup2(null, 2)
                code = main(argv)
            finally:
                os._exit(code)
        self.returncode = None

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self):
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self):
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _kill_once(cmd: list[str], out: Path, rng: random.Random, victim: str) -> bool:
    """Start `cmd`, SIGKILL it (or its forked worker) at a random moment; True if killed."""
    proc = _Forked(cmd[3:])
    mode = rng.choice(["delay", "write"])
    killed = during_write = False
    try:
        if mode == "delay":
            deadline = time.monotonic() + rng.uniform(0.1, 2.5)
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
        else:
            skip, seen = rng.randint(0, 6), set(map(str, temp_files(out)))
            while proc.poll() is None:
                new = set(map(str, temp_files(out))) - seen
                if new:
                    seen |= new
                    if skip == 0:
                        during_write = True
                        break
                    skip -= 1
        if proc.poll() is None:
            targets = _children(proc.pid) if victim == "worker" else [proc.pid]
            for pid in targets:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed = True
                except ProcessLookupError:
                    pass
    finally:
        if victim == "worker":
            proc.wait()
        else:
            proc.kill()
            proc.wait()
    COUNTS["kills"] += killed
    COUNTS["kills_during_write"] += killed and during_write
    return killed


def _check_after_kill(archive: Path, out: Path, reference: dict) -> None:
    problems = [p for f in product_files(out) for p in astropy_problems(f)]
    assert not problems, problems
    for task_id, target in graph_targets(archive, out):
        if Path(target.path).is_relative_to(out.resolve()) and target.exists():
            rel = str(Path(target.path).relative_to(out.resolve()))
            assert signatures_of(target.path) == reference[rel], f"{task_id}: {rel} taken as complete but differs"
            COUNTS["checked_products"] += 1
    assert not list((out / "quarantine").glob("*/*.json")), "a kill is not bad input: nothing may be quarantined"


def signatures_of(path) -> list:
    from faults_common import signature

    return signature(Path(path))


def _same_as_reference(out: Path, reference: dict) -> None:
    assert temp_files(out) == [], "the rerun removes the temporary files the killed writers left"
    final = signatures(out)
    assert final.keys() == reference.keys()
    lost = [k for k in reference if final[k] != reference[k]]
    assert lost == [], f"data differ from the undisturbed run: {lost}"


def _trials(undisturbed, tmp_path, seed: int, kills: int, victim: str, workers: int) -> None:
    """Kill runs into one output folder until `kills` kills are done. A run that ends before
    its kill moment has finished the analysis: it is checked against the undisturbed run and
    the next kills start again from an empty folder."""
    archive, _, reference = undisturbed
    out = tmp_path / "out"
    rng = random.Random(seed)
    cmd = osa_command(archive, out, "--workers", workers)
    done = 0
    for _ in range(4 * kills):
        if done == kills:
            break
        if _kill_once(cmd, out, rng, victim):
            done += 1
            _check_after_kill(archive, out, reference)
        else:
            _same_as_reference(out, reference)
            shutil.rmtree(out)
    assert done == kills
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 done" in r.stdout
    _same_as_reference(out, reference)


def test_kill_9_of_the_run_never_leaves_a_product_taken_as_complete_and_the_rerun_completes(undisturbed, tmp_path):
    _trials(undisturbed, tmp_path, seed=20240601, kills=3, victim="run", workers=1)


def test_kill_9_of_a_forked_worker_during_writes(undisturbed, tmp_path):
    _trials(undisturbed, tmp_path, seed=7, kills=1, victim="worker", workers=2)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_many_kills(undisturbed, tmp_path, seed):
    victim = "run" if seed % 2 else "worker"
    _trials(undisturbed, tmp_path, seed=seed, kills=8, victim=victim, workers=2 if victim == "worker" else seed % 4)


def test_a_stale_temporary_file_is_never_a_product_and_a_live_one_is_never_removed(tmp_path):
    """The DAL side of the above: what a killed writer leaves, and what a writer in progress holds."""
    import fcntl

    import numpy as np

    from isdc.dal.atomic import clean_stale_temps, make_temp, remove_stale_temps
    from isdc.dal.fitsfile import Table, write_fits
    from isdc.pipeline.base import ProductTarget

    target = tmp_path / "isgri_events_cor.fits"
    # a writer killed half-way: a temp file with half a product in it, no lock held
    fd, stale = make_temp(tmp_path, ".isgri_events_cor.", ".tmp.fits")
    os.write(fd, b"SIMPLE  =                    T" + b" " * 50)
    os.close(fd)
    assert not ProductTarget(target).exists()
    # a writer alive: its temp file is locked and must survive any cleaning
    live_fd, live = make_temp(tmp_path, ".isgri_events_cor.", ".tmp.fits")
    with pytest.raises(BlockingIOError):
        fcntl.flock(os.open(live, os.O_RDWR), fcntl.LOCK_EX | fcntl.LOCK_NB)
    other_fd, other = make_temp(tmp_path, ".isgri_hk.", ".tmp.fits")
    os.close(other_fd)  # another target's stale temp: not this write's business
    assert remove_stale_temps(target) == [Path(stale)]
    assert Path(live).exists() and Path(other).exists()
    write_fits(target, [Table({"X": np.arange(3)}, {"EXTNAME": "T"})])
    assert Path(live).exists(), "a temp file under write is never removed"
    os.close(live_fd)
    assert sorted(clean_stale_temps(tmp_path)) == sorted([Path(live), Path(other)])
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def teardown_module(module):
    print(f"\nkill trials: {COUNTS}")
