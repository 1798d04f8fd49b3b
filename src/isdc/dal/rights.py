"""Data rights: who owns a science window until its proprietary period ends, and public exports.

INTEGRAL data belonged to the observer (the PI of the observation) for a proprietary period
after they were taken; then they became public. The archive keeps the rights per
revolution in `idx/rights/rights_RRRR.fits` (template GNRL-RGHT-SCW): one row per private
ScW with its SWID, OBS_ID, OWNER and PUBLIC, the IJD from which it is public. A ScW
without a row, or a revolution without a table, is public. Rights belong to the SWID:
the NRT (.000) and CONS (.001) data of a ScW are private together.

`export_public(archive, out, at)` copies what is public at IJD `at` into a new folder laid
out like the archive, for the public:

- raw data: the `scw/RRRR/<scw>.VVV/` folders of ScWs public at `at`;
- per revolution with such a ScW: the revolution plan without the rows of private ScWs,
  the attitude history without its samples inside private ScWs, the orbit and time
  correlation (no pointing information);
- calibration (`ic/`, `idx/ic/`) and the reference catalogue (`cat/`), which are public;
- analysis results `obs/<run>/scw/<scw>/` of public ScWs, and observation-level products
  `obs/<run>/obs/<group>/` only when every ScW they were made from is public;
- the ScW index and the results index rebuilt over what was exported.

Nothing else (rights tables, simulator truth, run logs, quarantine records, unknown
files) is exported. Every file is scanned before it is placed: a folder with any file
that names a private ScW (a SWID in a header, a grouping member, a provenance row, a
JSON document) is withheld whole. Files are copied (or hard-linked, `link=True`) through
temporary files and renames; `SHA256SUMS` (the `sha256sum -c` format) and `export.json`
(date, counts) are written last. An export folder may be exported into again (a later
date): what is no longer in the export is removed from it.
"""
from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import json
import logging
import math
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from isdc.dal.archive import Archive, ArchiveError, build_scw_index, read_scw_info
from isdc.dal.atomic import atomic_write_bytes, fsync_dir, make_temp
from isdc.dal.fitsfile import FitsError, Table
from isdc.dal.products import Product
from isdc.dal.templates import get as get_template
from isdc.ids import IdError, Revolution, ScwId

log = logging.getLogger(__name__)

__all__ = ["RightsError", "ScwRights", "check_owner", "check_period", "rights_path", "read_rights", "write_rights", "all_rights",
           "proprietary_rights", "private_swids", "referenced_swids", "ExportReport", "export_public",
           "LISTING", "EXPORT_INFO"]

TEMPLATE = "GNRL-RGHT-SCW"
LISTING = "SHA256SUMS"
EXPORT_INFO = "export.json"
_RIGHTS_FILE = re.compile(r"rights_([0-9]{4})\.fits")
_OWNER = re.compile(r"[ -~]{1,64}")  # printable ASCII, what a 64A column holds
_RUN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+\-]{0,63}")  # obs/<run> folder names (may carry .VVV)


class RightsError(Exception):
    """A rights table or an export that cannot be used; the message names the file."""


def check_owner(owner: str) -> str:
    """`owner` if it is 1-64 printable ASCII characters, not all blank (what OWNER 64A holds)."""
    if not isinstance(owner, str) or not _OWNER.fullmatch(owner) or not owner.strip():
        raise RightsError(f"owner {owner!r} must be 1-64 printable ASCII characters")
    return owner


def check_period(days: float) -> float:
    """A proprietary period in days: a finite number >= 0."""
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not math.isfinite(days) or days < 0:
        raise RightsError(f"proprietary period {days!r} must be a number of days >= 0")
    return float(days)


@dataclass(frozen=True)
class ScwRights:
    """The rights of one ScW: `owner` until IJD `public` (days, TT), from then on public."""

    swid: str
    owner: str
    public: float
    obs_id: str = ""

    def __post_init__(self):
        ScwId.parse(self.swid, version=0)  # IdError unless 12 digits of a valid ID
        try:
            check_owner(self.owner)
        except RightsError as exc:
            raise RightsError(f"ScW {self.swid}: {exc}") from None
        if not isinstance(self.public, (int, float, np.floating)) or not math.isfinite(self.public):
            raise RightsError(f"ScW {self.swid}: PUBLIC {self.public!r} must be a finite IJD")
        object.__setattr__(self, "public", float(self.public))
        if self.obs_id and not re.fullmatch(r"[0-9]{8}", self.obs_id):
            raise RightsError(f"ScW {self.swid}: OBS_ID {self.obs_id!r} must be blank or 8 digits")

    def is_public(self, at: float) -> bool:
        """True when the proprietary period has ended at IJD `at` (public from PUBLIC on)."""
        return float(at) >= self.public


def rights_path(archive: Archive, rev: Revolution | int) -> Path:
    """`idx/rights/rights_RRRR.fits` of a revolution."""
    rev = Revolution.parse(rev)
    return archive.idx_scw().parent.parent / "rights" / f"rights_{rev}.fits"


def read_rights(archive: Archive, rev: Revolution | int) -> dict[str, ScwRights]:
    """The rights of a revolution by SWID ({} without a table); RightsError naming the file."""
    rev = Revolution.parse(rev)
    path = rights_path(archive, rev)
    if not path.is_file():
        return {}
    try:
        t = Product.read(path).table(TEMPLATE)
        if int(t.header["REVOL"]) != rev.number:
            raise RightsError(f"REVOL {t.header['REVOL']} in the table of revolution {rev}")
        out = {}
        for swid, obs, owner, public in zip(t["SWID"], t["OBS_ID"], t["OWNER"], t["PUBLIC"]):
            r = ScwRights(str(swid).strip(), str(owner).strip(), float(public), str(obs).strip())
            if ScwId.parse(r.swid, version=0).revolution != rev.number:
                raise RightsError(f"ScW {r.swid} is not of revolution {rev}")
            if r.swid in out:
                raise RightsError(f"ScW {r.swid} is listed twice")
            out[r.swid] = r
        return out
    except (FitsError, KeyError, ValueError, IdError, RightsError) as exc:
        raise RightsError(f"rights table {path}: {exc}") from exc


def write_rights(archive: Archive, rev: Revolution | int, rights: Iterable[ScwRights]) -> Path:
    """Set the rights of ScWs of a revolution (rows of other ScWs of the table are kept)."""
    rev = Revolution.parse(rev)
    table = read_rights(archive, rev)
    for r in rights:
        if ScwId.parse(r.swid, version=0).revolution != rev.number:
            raise RightsError(f"ScW {r.swid} is not of revolution {rev}")
        table[r.swid] = r
    rows = [table[k] for k in sorted(table)]
    hdu = get_template(TEMPLATE).table(
        {"SWID": [r.swid for r in rows], "OBS_ID": [r.obs_id for r in rows], "OWNER": [r.owner for r in rows],
         "PUBLIC": np.array([r.public for r in rows], dtype=float)}, REVOL=rev.number, NSCW=len(rows))
    path = rights_path(archive, rev)
    path.parent.mkdir(parents=True, exist_ok=True)
    return Product([hdu]).write(path)


def all_rights(archive: Archive) -> dict[str, ScwRights]:
    """The rights of every revolution that has a table, by SWID."""
    folder = rights_path(archive, 0).parent
    out: dict[str, ScwRights] = {}
    for name in sorted(os.listdir(folder)) if folder.is_dir() else []:
        m = _RIGHTS_FILE.fullmatch(name)
        if m is None:
            if not name.startswith("."):
                log.warning("rights: ignoring %s/%r: not rights_RRRR.fits", folder, name)
            continue
        out.update(read_rights(archive, int(m.group(1))))
    return out


def proprietary_rights(scws: Iterable[tuple[ScwId, float]], owner: str, days: float,
                       obs_id: str = "") -> list[ScwRights]:
    """Rights of the ScWs of one observation, given as (ScwId, TSTOP in IJD): owned by
    `owner` until `days` after the end of the observation's last ScW."""
    check_owner(owner)
    days = check_period(days)
    scws = list(scws)
    if not scws:
        return []
    public = max(float(t) for _, t in scws) + days
    return [ScwRights(s.swid, owner, public, obs_id) for s, _ in scws]


def private_swids(archive: Archive, at: float) -> set[str]:
    """SWIDs of the ScWs still private at IJD `at`."""
    return {swid for swid, r in all_rights(archive).items() if not r.is_public(at)}


def _content(path: Path) -> bytes:
    """A file's bytes, decompressed when it is gzip."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise RightsError(f"{path}: cannot decompress to check it: {exc}") from exc
    return raw


def _twelve_digit_runs(raw: bytes) -> set[bytes]:
    """Every run of exactly 12 ASCII digits in `raw` (vectorised: ~3x a regular expression)."""
    a = np.frombuffer(raw, np.uint8)
    digit = np.zeros(a.size + 2, np.int8)
    digit[1:-1] = (a >= 0x30) & (a <= 0x39)
    edges = np.flatnonzero(np.diff(digit))
    starts, stops = edges[0::2], edges[1::2]
    return {raw[i : i + 12] for i in starts[(stops - starts) == 12]}


def referenced_swids(path: str | os.PathLike) -> set[str]:
    """Every 12-digit ScW ID named anywhere in a file (gzip files decompressed): header
    values, table text (grouping locations, provenance), JSON. Runs of 12 digits that are
    not valid ScW IDs are left out; longer runs of digits (OBT values) are not IDs."""
    out = set()
    for run in _twelve_digit_runs(_content(Path(path))):
        try:
            ScwId.parse(run.decode(), version=0)
        except IdError:
            continue
        out.add(run.decode())
    return out


def _names_any(path: Path, swids: set[str]) -> bool:
    """True when the file names one of `swids` (as a whole run of 12 digits)."""
    if not swids:
        return False
    raw = _content(path)
    if len(swids) > 32:
        return bool({s.encode() for s in swids} & _twelve_digit_runs(raw))
    for s in swids:  # a few IDs: bytes.find runs at memory speed
        needle = s.encode()
        i = raw.find(needle)
        while i >= 0:
            before, after = raw[i - 1 : i] if i else b"", raw[i + 12 : i + 13]
            if not before.isdigit() and not after.isdigit():
                return True
            i = raw.find(needle, i + 1)
    return False


# --------------------------------------------------------------------------- export

@dataclass
class ExportReport:
    """What an export placed: ScWs, files and bytes; what it withheld (counts only: the
    identifiers of private data are not for the public)."""

    out: Path
    at: float
    scws: list[ScwId] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    withheld_scws: int = 0
    withheld_folders: int = 0
    removed: int = 0

    def summary(self) -> str:
        return (f"exported {len(self.scws)} science window(s) public at IJD {self.at:.6f}: {self.files} files, "
                f"{self.bytes} bytes -> {self.out}; withheld {self.withheld_scws} private ScW(s) and "
                f"{self.withheld_folders} folder(s) naming private ScWs"
                + (f"; removed {self.removed} file(s) of an earlier export" if self.removed else ""))


def _files(folder: Path) -> list[Path]:
    """Regular files below `folder`, hidden names and symbolic links left out."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not os.path.islink(os.path.join(dirpath, d)))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if not name.startswith(".") and not p.is_symlink() and p.is_file():
                out.append(p)
    return out


def _place(src: Path, dst: Path, link: bool) -> None:
    """Copy (or hard-link) `src` to `dst` through a temporary file and a rename."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        tmp = dst.parent / f".{dst.name}.{secrets.token_hex(4)}.tmp"
        os.link(src, tmp)
        os.replace(tmp, dst)
        return
    fd, tmp = make_temp(dst.parent, f".{dst.name}.", ".tmp")
    try:
        with os.fdopen(fd, "wb") as f, open(src, "rb") as s:
            shutil.copyfileobj(s, f, 1 << 20)
            f.flush()
            os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _filtered(src: Path, extname: str, keep: Callable[[Table], np.ndarray], count_key: str | None = None):
    """A writer of `src` with only the rows of table `extname` that `keep` selects."""
    def write(dst: Path) -> None:
        prod = Product.read(src)
        t = prod.table(extname)
        mask = np.asarray(keep(t), dtype=bool)
        t.columns = {k: np.asarray(v)[mask] for k, v in t.columns.items()}
        if count_key:
            t.header[count_key] = int(mask.sum())
        dst.parent.mkdir(parents=True, exist_ok=True)
        prod.write(dst)
    return write


class _Plan:
    """Files an export will hold: relative path -> (source, or a writer of the file)."""

    def __init__(self, private: set[str]):
        self.private = private
        self.items: dict[str, Path | Callable[[Path], None]] = {}
        self.withheld_folders = 0

    def folder(self, src: Path, rel: str) -> bool:
        """Every file of a folder, or nothing if one of them names a private ScW."""
        files = _files(src)
        if any(_names_any(f, self.private) for f in files):
            self.withheld_folders += 1
            return False
        for f in files:
            self.items[str(Path(rel) / f.relative_to(src))] = f
        return True


def _private_intervals(arch: Archive, rev: Revolution, private: set[str]) -> list[tuple[float, float]]:
    """(TSTART, TSTOP) IJD of the private ScWs of a revolution with data in the archive."""
    out = []
    for scw in arch.scws(rev):
        if scw.swid in private:
            info = read_scw_info(arch, scw)  # ArchiveError: the caller withholds what needs it
            out.append((info.tstart, info.tstop))
    return out


def _check_out(arch: Archive, out: Path) -> Path:
    out = Path(out).expanduser().resolve()
    if out == arch.root or arch.root in out.parents or out in arch.root.parents:
        raise ArchiveError(f"export folder {out} and archive {arch.root} must not contain each other")
    if out.exists() and any(out.iterdir()) and not (out / EXPORT_INFO).is_file():
        raise ArchiveError(f"export folder {out} is not empty and holds no earlier export ({EXPORT_INFO})")
    return out


def export_public(archive: Archive | str | os.PathLike, out: str | os.PathLike, at: float, *,
                  link: bool = False) -> ExportReport:
    """Export what is public at IJD `at` (days, TT) from `archive` into folder `out`.

    See the module description for what goes into an export. Returns an ExportReport;
    ArchiveError/RightsError for an unusable archive, rights table or export folder.
    """
    arch = archive if isinstance(archive, Archive) else Archive(archive)
    if not math.isfinite(float(at)):
        raise RightsError(f"export date {at!r} is not a finite IJD")
    at = float(at)
    out = _check_out(arch, out)
    private = private_swids(arch, at)
    plan = _Plan(private)
    report = ExportReport(out, at)
    withheld = set()
    revs = set()
    for scw in arch.scws():
        if scw.swid in private:
            withheld.add(scw.swid)
        elif plan.folder(arch.scw_dir(scw), f"scw/{scw.rev}/{scw}"):
            report.scws.append(scw)
            revs.add((scw.rev, scw.version))
    report.withheld_scws = len(withheld)
    for rev, version in sorted(revs):
        _plan_revolution(arch, plan, rev, version, private)
    for area in (arch.ic_root(), arch.cat_dir()):
        if area.is_dir():
            plan.folder(area, area.name)
    if arch.idx_ic().is_file():
        plan.items[str(arch.idx_ic().relative_to(arch.root))] = arch.idx_ic()
    _plan_results(arch, plan)
    out.mkdir(parents=True, exist_ok=True)
    for rel, what in sorted(plan.items.items()):
        dst = out / rel
        if callable(what):
            what(dst)
        else:
            _place(what, dst, link)
    report.withheld_folders = plan.withheld_folders
    exported = Archive(out)
    indexes = {}  # rebuilt over what is exported, once the files of an earlier export are gone
    if report.scws:
        indexes[str(exported.idx_scw().relative_to(exported.root))] = build_scw_index
    if any(rel.startswith("obs/") for rel in plan.items):
        from isdc.dal.results import RESULTS_INDEX, update_results_index

        indexes[str(RESULTS_INDEX)] = update_results_index
    placed = set(plan.items) | set(indexes)
    report.removed = _remove_earlier(out, placed)
    for make in indexes.values():
        make(exported)
    _finish(out, report, private, sorted(placed))
    return report


def _plan_revolution(arch: Archive, plan: _Plan, rev: Revolution, version, private: set[str]) -> None:
    """The revolution plan and aux data of a revolution with exported ScWs, private parts removed."""
    plan_file = arch.rev_dir(rev, version) / "revolution_plan.fits"
    if plan_file.is_file():
        plan.items[str(plan_file.relative_to(arch.root))] = _filtered(
            plan_file, "INTL-PLAN-HIS", lambda t: ~np.isin(np.char.strip(np.asarray(t["SWID"], dtype=str)),
                                                           sorted(private)), "NSCW")
    adp = arch.aux_adp(rev, version)
    for name in ("time_correlation.fits", "orbit_historic.fits"):
        if (adp / name).is_file():
            plan.items[str((adp / name).relative_to(arch.root))] = adp / name
    att = adp / "attitude_historic.fits"
    if att.is_file():
        try:
            spans = _private_intervals(arch, rev, private)
        except ArchiveError as exc:  # times of a private ScW unknown: its attitude cannot be cut out
            log.warning("export: withholding %s: %s", att, exc)
            plan.withheld_folders += 1
            return

        def keep(t):
            time = np.asarray(t["TIME"], dtype=float)
            inside = np.zeros(time.shape, dtype=bool)
            for a, b in spans:
                inside |= (time > a) & (time < b)
            return ~inside
        plan.items[str(att.relative_to(arch.root))] = _filtered(att, "INTL-ATTI-HIS", keep)


def _plan_results(arch: Archive, plan: _Plan) -> None:
    """Analysis results in obs/<run>/: per-ScW folders of public ScWs, observation folders
    whose every file names public ScWs only."""
    obs = arch.root / "obs"
    for run in sorted(os.listdir(obs)) if obs.is_dir() else []:
        if not _RUN.fullmatch(run) or ".." in run or not (obs / run).is_dir() or (obs / run).is_symlink():
            continue
        for kind in ("scw", "obs"):
            folder = obs / run / kind
            for name in sorted(os.listdir(folder)) if folder.is_dir() and not folder.is_symlink() else []:
                src = folder / name
                if name.startswith(".") or src.is_symlink() or not src.is_dir():
                    continue
                if kind == "scw":
                    try:
                        scw = ScwId.parse(name)
                    except IdError:
                        continue
                    if scw.swid in plan.private:
                        continue
                elif not _RUN.fullmatch(name):
                    continue
                plan.folder(src, f"obs/{run}/{kind}/{name}")


def _remove_earlier(out: Path, placed: set[str]) -> int:
    """Remove the files an earlier export listed that this one does not place (a ScW whose
    rights changed, a result since withdrawn), and the folders they leave empty."""
    if not (out / LISTING).is_file():
        return 0
    removed = 0
    for line in (out / LISTING).read_text().splitlines():
        rel = line.split("  ", 1)[1] if "  " in line else ""
        p = out / rel
        if rel and rel not in placed and p.is_file() and not p.is_symlink() and out in p.resolve().parents:
            p.unlink()
            removed += 1
    for dirpath, dirnames, filenames in sorted(os.walk(out), key=lambda x: -len(x[0])):
        if Path(dirpath) != out and not os.listdir(dirpath):
            os.rmdir(dirpath)
    return removed


def _finish(out: Path, report: ExportReport, private: set[str], files: list[str]) -> None:
    """Check that no exported file names a private ScW, then write the listing and export.json."""
    lines = []
    for rel in files:
        p = out / rel
        if _names_any(p, private):  # cannot happen by construction: refuse to publish rather than trust it
            raise RightsError(f"export {out}: {rel} names a private ScW; the listing was not written")
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        lines.append(f"{h.hexdigest()}  {rel}")
        report.files += 1
        report.bytes += p.stat().st_size
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    info = {"public_at_ijd": report.at, "made": when, "science_windows": sorted(map(str, report.scws)),
            "files": report.files, "bytes": report.bytes}
    atomic_write_bytes(out / EXPORT_INFO, (json.dumps(info, indent=1) + "\n").encode())
    atomic_write_bytes(out / LISTING, ("\n".join(lines) + "\n").encode() if lines else b"")
    fsync_dir(out)
