"""The nightly regression build: the committed sample through the NRT, CONS and OSA configs,
every product compared with its committed reference summary.

Any change of the science shows as a difference beyond the tolerances stated per product
type (`regression/tolerances.yaml`); the build fails until the change is understood and the
references are re-blessed (`isdc-run regression --bless`) in the same commit. The report
(text and HTML, with pictures of the differences of sky images) says what changed, where
and by how much.
"""
from __future__ import annotations

import html
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from isdc.dal.archive import Archive
from isdc.dal.atomic import atomic_write_bytes
from isdc.dal.regression import Difference, compare, load_tolerances, png_bytes, read_summary, summarize, write_summary
from isdc.ids import ScwId
from isdc.pipeline.config import load_config

__all__ = ["STREAMS", "RegressionReport", "run_streams", "check", "bless", "write_report", "checkout_paths"]

STREAMS = ("nrt", "cons", "osa")
_SUFFIX = ".ref.fits.gz"


def checkout_paths() -> tuple[Path, Path]:
    """(sample archive, regression folder) of a source checkout."""
    top = Path(__file__).resolve().parents[3]
    sample, reg = top / "test_data" / "sim" / "archive", top / "regression"
    if not sample.is_dir():
        raise FileNotFoundError(f"the regression build needs a source checkout: no {sample}")
    return sample, reg


@dataclass
class RegressionReport:
    compared: int = 0
    differences: list[Difference] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # reference without product
    unexpected: list[str] = field(default_factory=list)  # product without reference
    build_failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.differences or self.missing or self.unexpected or self.build_failures)

    def text(self) -> str:
        lines = [f"regression: {self.compared} products compared in {self.seconds:.0f} s: "
                 f"{len(self.differences)} differences, {len(self.missing)} missing, "
                 f"{len(self.unexpected)} without reference, {len(self.build_failures)} build failures "
                 f"-> {'PASS' if self.ok else 'FAIL'}"]
        lines += [f"  BUILD FAILED {b}" for b in self.build_failures]
        lines += [f"  MISSING {m}" for m in self.missing]
        lines += [f"  NO REFERENCE {u}" for u in self.unexpected]
        lines += [f"  DIFF {d.line()}" for d in self.differences]
        return "\n".join(lines)


def run_streams(work: Path, sample: Path, quick: bool = False, progress=print) -> dict[str, Path]:
    """Process a fresh copy of the sample archive through the three streams' configs.

    Returns {stream: output folder}. `quick` runs only the first pointing (its ScW
    products are the same as in the full run; observation products are then skipped).
    """
    from isdc.pipeline.graph import run_analysis, run_consolidated, select_run_scws

    archive = work / "archive"
    if archive.exists():
        shutil.rmtree(archive)
    shutil.copytree(sample, archive)
    scws = select_run_scws(str(archive), revolution=665)
    if quick:
        scws = scws[:1]
    outs: dict[str, Path] = {}
    failures = []
    for stream in STREAMS:
        t0 = time.perf_counter()
        cfg = load_config(stream)
        if stream == "cons" and not quick:
            report, _, out = run_consolidated(str(archive), 665, cfg, progress=False)
        else:
            out = work / stream
            if out.exists():
                shutil.rmtree(out)
            groups = {} if quick else {stream: scws}
            report, _ = run_analysis(str(archive), str(out), scws, cfg, groups=groups, progress=False)
        outs[stream] = Path(out)
        if not report.ok:
            failures.append(f"{stream}: {report.summary()}")
        progress(f"  {stream}: {len(scws)} ScW(s) in {time.perf_counter() - t0:.1f} s")
    if failures:
        raise RuntimeError("; ".join(failures))
    return outs


def _products(out: Path) -> dict[str, Path]:
    return {str(p.relative_to(out)): p for p in sorted(out.rglob("*.fits")) if "quarantine" not in p.parts}


def _quick_filter(rel: str, quick_scws: set[str] | None) -> bool:
    if quick_scws is None:
        return True
    parts = rel.split("/")
    return len(parts) > 2 and parts[0] == "scw" and parts[1] in quick_scws


def check(outs: dict[str, Path], references: Path, tolerances: Path, quick_scws: set[str] | None = None) -> RegressionReport:
    """Compare every product of every stream with its reference summary."""
    tols = load_tolerances(tolerances)
    rep = RegressionReport()
    for stream, out in outs.items():
        prods = _products(out)
        refdir = references / stream
        refs = {str(p.relative_to(refdir))[: -len(_SUFFIX)]: p for p in sorted(refdir.rglob(f"*{_SUFFIX}"))}
        refs = {k: v for k, v in refs.items() if _quick_filter(k, quick_scws)}
        for rel in sorted(set(prods) | set(refs)):
            label = f"{stream}/{rel}"
            if rel not in prods:
                rep.missing.append(label)
                continue
            if rel not in refs:
                if _quick_filter(rel, quick_scws):
                    rep.unexpected.append(label)
                continue
            rep.compared += 1
            rep.differences += compare(read_summary(refs[rel]), summarize(prods[rel]), label, tols)
    return rep


def bless(outs: dict[str, Path], references: Path) -> int:
    """Make the products of this run the references (stale reference files removed)."""
    n = 0
    for stream, out in outs.items():
        refdir = references / stream
        if refdir.exists():
            shutil.rmtree(refdir)
        for rel, path in _products(out).items():
            write_summary(refdir / (rel + _SUFFIX), summarize(path))
            n += 1
    return n


def write_report(rep: RegressionReport, folder: Path) -> tuple[Path, Path]:
    """report.txt and report.html (with reference / new / difference pictures of images)."""
    folder.mkdir(parents=True, exist_ok=True)
    txt = atomic_write_bytes(folder / "report.txt", (rep.text() + "\n").encode(), durable=False)
    rows, k = [], 0
    for d in rep.differences:
        pics = ""
        for title, ref, new in d.images:
            k += 1
            names = []
            for what, arr, sym in (("reference", ref, False), ("new", new, False), ("difference", new - ref, True)):
                name = f"diff_{k:03d}_{what}.png"
                atomic_write_bytes(folder / name, png_bytes(arr, symmetric=sym), durable=False)
                names.append(f'<figure><img src="{name}" width="240"><figcaption>{what}</figcaption></figure>')
            pics = "<div style='display:flex'>" + "".join(names) + "</div>"
        rows.append(f"<tr><td>{html.escape(d.file)}</td><td>{html.escape(d.hdu)}</td><td>{html.escape(d.what)}</td>"
                    f"<td>{html.escape(d.detail)}{pics}</td></tr>")
    status = "PASS" if rep.ok else "FAIL"
    lists = "".join(f"<li>{html.escape(x)}</li>" for x in rep.build_failures + [f"missing: {m}" for m in rep.missing]
                    + [f"no reference: {u}" for u in rep.unexpected])
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>isdc regression {status}</title></head><body>"
            f"<h1>isdc regression: {status}</h1><p>{rep.compared} products compared in {rep.seconds:.0f} s; "
            f"{len(rep.differences)} differences.</p><ul>{lists}</ul>"
            f"<table border='1' cellpadding='4'><tr><th>product</th><th>HDU</th><th>what</th><th>detail</th></tr>"
            f"{''.join(rows)}</table></body></html>")
    htm = atomic_write_bytes(folder / "report.html", page.encode(), durable=False)
    return txt, htm


def first_pointing(archive: Path) -> ScwId:
    return min(s for s in Archive(archive).scws() if not s.is_slew)
