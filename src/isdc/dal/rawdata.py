"""Raw data of a science window in the archive (ScWG1): the ONE writer of its data elements.

Both producers of raw ScW data call it: the simulator (`isdc.sim.writer.write_scw`, data
version .001) and the NRT ingest (`isdc.nrt.ingest`, version .000 decoded from telemetry).

    scw/RRRR/<scwid>.VVV/swg.fits               GNRL-SCWG-GRP grouping, header ScwInfo.header()
    scw/RRRR/<scwid>.VVV/isgri_events.fits      ISGR-EVTS-ALL
    scw/RRRR/<scwid>.VVV/isgri_hk.fits          ISGR-HK..-CNV
    scw/RRRR/<scwid>.VVV/telemetry_report.json  what the telemetry looked like (NRT ingest only)

Each file is written atomically (checksummed FITS, `isdc.dal.fitsfile`); the group file
last, so a ScW folder with a swg.fits is whole. The auxiliary data of a revolution
(attitude, orbit, time correlation in `aux/adp/RRRR.VVV/`, the revolution plan in
`scw/RRRR/rev.VVV/`) are read here too (`read_attitude`, `read_revolution_plan`), and
`copy_revolution_aux` stands for the operations centre delivering them for another data
version (the NRT stream reads `.000`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from isdc.dal import templates
from isdc.dal.archive import Archive, ArchiveError, ScwInfo, read_time_correlation
from isdc.dal.atomic import atomic_write_bytes
from isdc.dal.fitsfile import FitsError
from isdc.dal.grouping import Grouping, PendingFile, link
from isdc.dal.products import open_product
from isdc.dal.templates import TemplateError
from isdc.ids import Revolution, ScwId, Version
from isdc.time import TimeCorrelation

__all__ = ["EVENTS_FILE", "HK_FILE", "TELEMETRY_REPORT_FILE", "ATTITUDE_FILE", "ORBIT_FILE", "TIME_CORRELATION_FILE",
           "PLAN_FILE", "write_raw_scw", "write_telemetry_report", "read_telemetry_report", "read_attitude",
           "read_revolution_plan", "read_aux_time_correlation", "copy_revolution_aux"]

EVENTS_FILE = "isgri_events.fits"
HK_FILE = "isgri_hk.fits"
TELEMETRY_REPORT_FILE = "telemetry_report.json"
ATTITUDE_FILE = "attitude_historic.fits"
ORBIT_FILE = "orbit_historic.fits"
TIME_CORRELATION_FILE = "time_correlation.fits"
PLAN_FILE = "revolution_plan.fits"


def _scw_keywords(info: ScwInfo) -> dict:
    s = info.scw
    return dict(REVOL=s.revolution, SWID=s.swid, SW_TYPE=s.sw_type, TSTART=float(info.tstart),
                TSTOP=float(info.tstop))


def write_raw_scw(archive: Archive, info: ScwInfo, events: dict, hk: dict, *, hk_cycle_s: float, tau_event: float,
                  tau_veto: float, durable: bool = True) -> Path:
    """Write a ScW's raw data: ISGR-EVTS-ALL, ISGR-HK..-CNV and their group swg.fits.

    info : the ScW (its ID and version name the folder) and the group header keywords.
    events : ISGR-EVTS-ALL columns (TIME [IJD], OB_TIME, ISGRI_PHA, RISE_TIME, ISGRI_Y,
        ISGRI_Z), sorted by TIME. hk : ISGR-HK..-CNV columns (one row per HK cycle).
    hk_cycle_s, tau_event, tau_veto : the dead-time constants the HK table carries (s).
    Returns the path of swg.fits. TemplateError/FitsError name the file and the problem.
    """
    folder = archive.scw_dir(info.scw)
    folder.mkdir(parents=True, exist_ok=True)
    kw = _scw_keywords(info)
    ev_table = templates.get("ISGR-EVTS-ALL").table(events, **kw)
    hk_table = templates.get("ISGR-HK..-CNV").table(hk, HK_CYCLE=float(hk_cycle_s), TAU_EVT=float(tau_event),
                                                    TAU_VETO=float(tau_veto), **kw)
    swg = PendingFile(archive.swg(info.scw))
    group = Grouping("GNRL-SCWG-GRP", header=info.header())
    swg.append(group)
    files = []
    for name, table in ((EVENTS_FILE, ev_table), (HK_FILE, hk_table)):
        pf = PendingFile(folder / name)
        pf.append(table)
        link(group, swg, table, pf, root=archive.root)
        files.append(pf)
    for pf in files:
        pf.write(durable=durable)
    return swg.write(durable=durable)


def write_telemetry_report(archive: Archive, scw: ScwId, report: dict, *, durable: bool = True) -> Path:
    """`telemetry_report.json` beside the ScW's raw data (JSON, sorted keys, atomic)."""
    path = archive.scw_dir(scw) / TELEMETRY_REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, json.dumps(report, indent=1, sort_keys=True, default=_plain).encode(),
                              durable=durable)


def read_telemetry_report(archive: Archive, scw: ScwId) -> dict | None:
    """The ScW's telemetry report, or None when it has none (e.g. simulated CONS data)."""
    try:
        return json.loads((archive.scw_dir(scw) / TELEMETRY_REPORT_FILE).read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise ArchiveError(f"ScW {scw}: {TELEMETRY_REPORT_FILE}: not valid JSON: {exc}") from exc


def _plain(x):
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def _aux_table(path: Path, extname: str) -> dict[str, np.ndarray]:
    try:
        t = open_product(path).table(extname)
    except FileNotFoundError:
        raise ArchiveError(f"{path}: missing ({extname})") from None
    except (FitsError, TemplateError, OSError) as exc:
        raise ArchiveError(f"{path}: {exc}") from exc
    return dict(t.columns)


def read_attitude(archive: Archive, rev: Revolution | int, version: Version | int) -> dict[str, np.ndarray]:
    """INTL-ATTI-HIS columns of `aux/adp/RRRR.VVV/attitude_historic.fits` (ArchiveError if absent/bad)."""
    path = archive.aux_adp(Revolution.parse(rev), Version.parse(version)) / ATTITUDE_FILE
    return _aux_table(path, "INTL-ATTI-HIS")


def read_revolution_plan(archive: Archive, rev: Revolution | int, version: Version | int) -> dict[str, np.ndarray]:
    """INTL-PLAN-HIS columns of `scw/RRRR/rev.VVV/revolution_plan.fits` (ArchiveError if absent/bad)."""
    path = archive.rev_dir(Revolution.parse(rev), Version.parse(version)) / PLAN_FILE
    return _aux_table(path, "INTL-PLAN-HIS")


def read_aux_time_correlation(archive: Archive, rev: Revolution | int, version: Version | int) -> TimeCorrelation:
    """The revolution's OBT-IJD correlation (ArchiveError naming the file if absent or bad)."""
    path = archive.time_correlation(Revolution.parse(rev), Version.parse(version))
    if not path.is_file():
        raise ArchiveError(f"{path}: missing (AUXL-TCOR-HIS)")
    return read_time_correlation(path)


def copy_revolution_aux(archive: Archive, rev: Revolution | int, source: Version | int, target: Version | int, *,
                        durable: bool = True) -> list[Path]:
    """Deliver a revolution's auxiliary data of version `source` as version `target`.

    Copies attitude, orbit and time correlation (`aux/adp/RRRR.VVV/`) and the revolution
    plan (`scw/RRRR/rev.VVV/`) byte for byte, atomically; files already present in the
    target are left alone (operations deliver them once). Returns the files written.
    ArchiveError when the source lacks the attitude or the time correlation.
    """
    rev, source, target = Revolution.parse(rev), Version.parse(source), Version.parse(target)
    pairs = [(archive.aux_adp(rev, source) / n, archive.aux_adp(rev, target) / n)
             for n in (ATTITUDE_FILE, ORBIT_FILE, TIME_CORRELATION_FILE)]
    pairs.append((archive.rev_dir(rev, source) / PLAN_FILE, archive.rev_dir(rev, target) / PLAN_FILE))
    for src, _ in pairs[:1] + pairs[2:3]:
        if not src.is_file():
            raise ArchiveError(f"{src}: missing: cannot deliver the auxiliary data of revolution {rev} "
                               f"version {source} as {target}")
    out = []
    for src, dst in pairs:
        if dst.exists() or not src.is_file():
            continue
        if src.is_symlink():
            raise ArchiveError(f"{src} is a symlink: refused")
        dst.parent.mkdir(parents=True, exist_ok=True)
        out.append(atomic_write_bytes(dst, src.read_bytes(), durable=durable))
    return out


def scw_folder_exists(archive: Archive, scw: ScwId) -> bool:
    """True when the ScW's group file exists (its raw data are whole)."""
    return os.path.isfile(archive.swg(scw))
