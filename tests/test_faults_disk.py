"""A full disk during product writes: a clear error naming the file, nothing half-written
taken as complete, no ScW quarantined for it (the input is fine), and a rerun with space
completes with the data of an undisturbed run.

Two injections: `isdc-run osa` under RLIMIT_FSIZE (the kernel refuses to grow a file beyond
the limit: EFBIG), and, in-process, every file the pipeline opens for writing through
`os.fdopen` running out of space after a budget of bytes (ENOSPC) — a short write and then
the error, as a real file system does.
"""
from __future__ import annotations

import errno
import logging
import os
import resource
import subprocess

import pytest

from faults_common import (
    astropy_problems, copy_sample, graph_targets, osa_command, product_files, run_osa_inprocess, signature,
    signatures, temp_files,
)

LEVELS = "COR..IMA"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    base = tmp_path_factory.mktemp("disk")
    archive = copy_sample(base / "archive")
    ref = base / "reference"
    report, _ = run_osa_inprocess(archive, ref, levels=LEVELS)
    assert report.ok, report.summary()
    return archive, ref, signatures(ref)


def _nothing_partial_is_complete(archive, out, reference) -> int:
    """Every product file verifies (astropy) and each complete target is the undisturbed one."""
    problems = [p for f in product_files(out) for p in astropy_problems(f)]
    assert not problems, problems
    assert temp_files(out) == [], "a failed write removes its temporary file"
    assert not list((out / "quarantine").glob("*/*.json")), "a full disk is not bad input"
    complete = 0
    for task_id, target in graph_targets(archive, out, levels=LEVELS):
        if target.path.is_relative_to(out.resolve()) and target.exists():
            rel = str(target.path.relative_to(out.resolve()))
            assert signature(target.path) == reference[rel], f"{task_id}: {rel}"
            complete += 1
    return complete


def test_file_size_limit_efbig_names_the_file_and_leaves_no_partial_product(sample, tmp_path):
    archive, ref, reference = sample
    out = tmp_path / "out"
    limit = 1_000_000  # bytes: COR..BKG products fit, a 4.3 MB sky image does not
    cmd = osa_command(archive, out, "--levels", LEVELS)
    r = subprocess.run(cmd, capture_output=True, text=True,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert r.returncode == 1
    for scw in ("066500010010.001", "066500020010.001", "066500030010.001"):
        assert f"File too large (writing a product; nothing written): '{out.resolve()}/scw/{scw}/isgri_sky_ima.fits'" \
            in r.stderr
        assert not (out / "scw" / scw / "isgri_sky_ima.fits").exists()
        assert (out / "scw" / scw / "isgri_bkg_shadowgrams.fits").is_file()
    assert "3 not produced" in r.stdout
    assert _nothing_partial_is_complete(archive, out, reference) == 3 * 5  # COR, GTI, DEAD, BIN, BKG per ScW
    report, _ = run_osa_inprocess(archive, out, levels=LEVELS)  # the limit lifted
    assert report.ok, report.summary()
    assert signatures(out) == reference


class _FillingDisk:
    """`os.fdopen` whose write files share `budget` bytes of free space, then ENOSPC."""

    def __init__(self, budget: int):
        self.left = budget
        self.failures: list[str] = []
        self.real = os.fdopen

    def fdopen(self, fd, *args, **kwargs):
        f = self.real(fd, *args, **kwargs)
        mode = args[0] if args else kwargs.get("mode", "r")
        return _Limited(f, self) if any(c in mode for c in "wa+") else f


class _Limited:
    def __init__(self, f, disk: _FillingDisk):
        self._f, self._disk = f, disk

    def write(self, data) -> int:
        n = len(memoryview(data).cast("B"))
        if n > self._disk.left:
            self._f.write(memoryview(data).cast("B")[: self._disk.left])  # what fits, then the error
            self._disk.left = 0
            self._disk.failures.append(self._f.name)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._disk.left -= n
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@pytest.mark.parametrize("budget", [700_000, 3_000_000, pytest.param(9_000_000, marks=pytest.mark.slow)])
def test_disk_full_enospc_in_process(sample, tmp_path, monkeypatch, caplog, budget):
    archive, ref, reference = sample
    out = tmp_path / "out"
    disk = _FillingDisk(budget)
    monkeypatch.setattr(os, "fdopen", disk.fdopen)
    with caplog.at_level(logging.ERROR):
        report, _ = run_osa_inprocess(archive, out, levels=LEVELS)
    assert not report.ok and disk.failures
    # every task that failed failed on the full disk, and its error names the product file
    errors = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert errors and all(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in errors), errors
    assert all(e.filename.startswith(str(out.resolve())) and e.filename.endswith(".fits") for e in errors)
    assert all("No space left on device (writing a product; nothing written)" in str(e) for e in errors)
    complete = _nothing_partial_is_complete(archive, out, reference)
    assert complete < len(reference)  # something was not made ...
    monkeypatch.setattr(os, "fdopen", disk.real)  # ... until space is freed
    report, _ = run_osa_inprocess(archive, out, levels=LEVELS)
    assert report.ok, report.summary()
    assert signatures(out) == reference
