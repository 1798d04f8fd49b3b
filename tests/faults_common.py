"""Helpers of the fault-injection tests (tests/test_faults_*.py): the committed sample archive,
the analysis run as a subprocess or in-process, and the checks made after each fault.

The checks do not trust the code under test: product files are verified with astropy's own
checksum code, and a product is compared with the one an undisturbed run made.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import luigi
from astropy.io import fits

from isdc.dal.atomic import temp_target
from isdc.ids import ScwId

SAMPLE = Path(__file__).resolve().parent.parent / "test_data" / "sim" / "archive"
POINTINGS = [ScwId.parse(s) for s in ("066500010010.001", "066500020010.001", "066500030010.001")]
# Header cards that differ between two runs making the same data.
VOLATILE = {"DATE", "CHECKSUM", "PRVSTART", "PRVSTOP"}


def copy_sample(dst: Path) -> Path:
    shutil.copytree(SAMPLE, dst)
    return dst


def osa_command(archive: Path, out: Path, *extra) -> list[str]:
    return [sys.executable, "-m", "isdc.cli", "osa", "--archive", str(archive), "--revolution", "665",
            "--out", str(out), "--no-progress", *map(str, extra)]


def isdc(*args, check: bool = True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "isdc.cli", *map(str, args)], capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"isdc-run {' '.join(map(str, args))} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def run_osa_inprocess(archive: Path, out: Path, scws=POINTINGS, levels: str | None = None, **overrides):
    """`isdc-run osa` without the subprocess: (BuildReport, summary rows)."""
    from isdc.pipeline.config import load_config
    from isdc.pipeline.graph import run_analysis

    ov = dict(overrides)
    if levels:
        ov["levels"] = levels
    config = load_config("osa", None, ov)
    return run_analysis(str(archive), str(out), list(scws), config, groups={"osa": list(scws)}, progress=False)


def product_files(root: Path) -> list[Path]:
    """Every FITS file under `root` a reader would take (hidden names are temporary files)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        out += [Path(dirpath) / f for f in filenames if not f.startswith(".") and f.endswith((".fits", ".fits.gz"))]
    return sorted(out)


def temp_files(root: Path) -> list[Path]:
    """Temporary files of atomic writes under `root`."""
    return sorted(Path(d) / f for d, _, fs in os.walk(root) for f in fs if temp_target(f) is not None)


def astropy_problems(path: Path) -> list[str]:
    """What astropy finds wrong with a file's checksums (its own implementation, not ours)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, checksum=True, memmap=False) as hl:
                for h in hl:
                    h.data  # noqa: B018 (reads the data, which is where astropy checks DATASUM)
                    if "CHECKSUM" not in h.header or "DATASUM" not in h.header:
                        return [f"{path}: HDU {h.name} without CHECKSUM/DATASUM"]
        except Exception as exc:  # any failure to read is a problem to report
            return [f"{path}: {type(exc).__name__}: {exc}"]
    return [f"{path}: {w.message}" for w in caught if "checksum" in str(w.message).lower()]


def signature(path: Path) -> list[tuple]:
    """Per HDU: its header without the volatile cards, and the SHA-256 of its data unit as it
    is on disk (not the DATASUM its header claims)."""
    raw = Path(path).read_bytes()
    if str(path).endswith(".gz"):
        raw = gzip.decompress(raw)
    with fits.open(io.BytesIO(raw), memmap=False) as hl:
        out = []
        for h in hl:
            info = h.fileinfo()
            data = raw[info["datLoc"]: info["datLoc"] + info["datSpan"]]
            out.append((tuple((c.keyword, str(c.value)) for c in h.header.cards if c.keyword not in VOLATILE),
                        hashlib.sha256(data).hexdigest()))
        return out


def signatures(root: Path) -> dict[str, list[tuple]]:
    return {str(p.relative_to(root)): signature(p) for p in product_files(root)}


def graph_targets(archive: Path, out: Path, scws=POINTINGS, levels: str | None = None) -> list[tuple[str, object]]:
    """(task id, ProductTarget) of every output of every task of the osa graph over `scws`."""
    from isdc.pipeline.config import load_config
    from isdc.pipeline.graph import obs_tasks, scw_tasks
    from isdc.pipeline.runner import all_tasks

    config = load_config("osa", None, {"levels": levels} if levels else None)
    out = Path(out).resolve()
    tops = scw_tasks(str(archive), str(out), list(scws), config) + obs_tasks(str(archive), str(out),
                                                                              {"osa": list(scws)}, config)
    return [(t.task_id, target) for t in all_tasks(tops) for target in luigi.task.flatten(t.output())]
