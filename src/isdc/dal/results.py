"""The archive's index of analysis results, and which results are current.

Analysis runs write into `obs/<name>.VVV/` folders of the archive (CONS: `obs/revRRRR.001/`,
NRT quick-look: `obs/nrt.000/`). Each analysed ScW there has its analysis group
`scw/<scwid>/swg_isgri.fits`. The results index `idx/obs/ISGR-SCW.-RES-IDX.fits` is a
grouping index with one row per (ScW, run) pointing at that group, with the ScW's data
version and stream, and SUPERSED = 1 when a higher data version of the same ScW has
results too: consolidated (.001) results supersede near-real-time (.000) ones, so
`current_results` hands out CONS products as soon as they exist and NRT products before.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from isdc.dal.archive import Archive
from isdc.dal.fitsfile import FitsError, FitsFile
from isdc.dal.grouping import Grouping, PendingFile, link_existing
from isdc.ids import IdError, ScwId

log = logging.getLogger(__name__)

__all__ = ["RESULTS_INDEX", "ResultRow", "update_results_index", "read_results_index", "current_results"]

RESULTS_INDEX = Path("idx") / "obs" / "ISGR-SCW.-RES-IDX.fits"
_GROUP_FILE = "swg_isgri.fits"


@dataclass(frozen=True)
class ResultRow:
    scw: ScwId
    run: str  # the obs/ folder name, e.g. 'rev0665.001'
    stream: str
    path: Path  # the ScW's analysis group
    superseded: bool


def _scan(archive: Archive) -> list[tuple[ScwId, str, str, Path]]:
    obs = archive.root / "obs"
    found = []
    if not obs.is_dir():
        return found
    for run in sorted(os.listdir(obs)):
        scw_dir = obs / run / "scw"
        if run.startswith(".") or not scw_dir.is_dir():
            continue
        for name in sorted(os.listdir(scw_dir)):
            try:
                scw = ScwId.parse(name)
            except IdError:
                log.warning("results index: ignoring %s/%s: not a ScW ID", scw_dir, name)
                continue
            group = scw_dir / name / _GROUP_FILE
            if not group.is_file():
                continue
            try:
                stream = str(FitsFile(group).hdus[0].header.get("STREAM", "")) or ("nrt" if scw.version.number == 0
                                                                                   else "cons")
            except FitsError as exc:
                log.warning("results index: ignoring %s: %s", group, exc)
                continue
            found.append((scw, run, stream, group))
    return found


def update_results_index(archive: Archive) -> list[ResultRow]:
    """Rescan the archive's analysis results and rewrite the results index atomically."""
    rows = _scan(archive)
    best: dict[str, int] = {}
    for scw, _, _, _ in rows:
        best[scw.swid] = max(best.get(scw.swid, -1), scw.version.number)
    out = [ResultRow(scw, run, stream, path, scw.version.number < best[scw.swid]) for scw, run, stream, path in rows]
    path = archive.root / RESULTS_INDEX
    path.parent.mkdir(parents=True, exist_ok=True)
    g = Grouping("ISGR-SCW.-RES-IDX", aux={"SWID": "12A", "SW_VER": "1J", "STREAM": "8A", "RUN": "64A",
                                            "SUPERSED": "1I"})
    pf = PendingFile(path)
    pf.append(g)
    for r in out:
        link_existing(g, pf, r.path, "GROUPING", root=archive.root,
                      aux={"SWID": r.scw.swid, "SW_VER": r.scw.version.number, "STREAM": r.stream[:8],
                           "RUN": r.run[:64], "SUPERSED": int(r.superseded)})
    pf.write()
    return out


def read_results_index(archive: Archive) -> list[ResultRow]:
    path = archive.root / RESULTS_INDEX
    g = Grouping.read(path)
    rows = []
    for i, m in enumerate(g.members):
        aux = g.aux_row(i)
        try:
            scw = ScwId.parse(str(aux["SWID"]).strip(), version=int(aux["SW_VER"]))
        except IdError as exc:
            raise FitsError(f"{path}: row {i + 1}: {exc}") from exc
        from isdc.dal.grouping import resolve_location

        rows.append(ResultRow(scw, str(aux["RUN"]).strip(), str(aux["STREAM"]).strip(),
                              resolve_location(path, m.location, archive.root), bool(aux["SUPERSED"])))
    return rows


def current_results(archive: Archive, swid: str) -> ResultRow | None:
    """The results of a ScW (12-digit ID) that are current: the highest version, not superseded."""
    rows = [r for r in read_results_index(archive) if r.scw.swid == swid and not r.superseded]
    return max(rows, key=lambda r: r.scw.version.number) if rows else None
