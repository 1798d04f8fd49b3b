"""The ISDC archive tree: path builders, what exists in it, and the science-window index.

Layout (DESIGN §2, docs/archive.md)::

    <root>/scw/RRRR/RRRRPPPPSSSF.VVV/     one science window (swg.fits is its group)
    <root>/scw/RRRR/rev.VVV/              per-revolution data
    <root>/aux/adp/RRRR.VVV/              attitude, orbit, time correlation
    <root>/ic/<instrument>/               instrument characteristics (calibration)
    <root>/idx/ic/ic_master_file.fits     IC index
    <root>/idx/scw/GNRL-SCWG-GRP-IDX.fits ScW index
    <root>/cat/                           reference catalogue
    <root>/obs/<name>/                    analysis products (…/scw/<scwid.VVV>/ per ScW)

Every path is built from validated identifiers (`ScwId`, `Revolution`, `Version`) or a
name checked by `safe_name`; a raw string is refused with TypeError. Names found on disk
are parsed before use and anything that does not parse is skipped with a logged warning.
Input areas (`scw/`, `aux/`, `ic/`, `idx/`, `cat/`) are never analysis output folders:
`Archive.check_output` refuses them, symlinks followed.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from astropy.io import fits

from isdc.dal.fitsfile import ColumnSpec, FitsError, FitsFile, read_fits
from isdc.dal.grouping import Grouping, GroupingError, Member, PendingFile, relative_location, resolve_location
from isdc.dal.products import open_product, write_product
from isdc.dal.templates import get as get_template
from isdc.ids import IdError, ObsId, Revolution, ScwId, Version, safe_name
from isdc.time import MJDREF, TimeCorrelation, TimeError, parse_obt

log = logging.getLogger(__name__)

__all__ = [
    "ArchiveError",
    "Archive",
    "INPUT_AREAS",
    "make_read_only",
    "read_time_correlation",
    "write_time_correlation",
    "ScwInfo",
    "ScwIndex",
    "SCW_INDEX_GRPNAME",
    "angular_separation",
    "build_scw_index",
    "read_scw_index",
    "read_scw_info",
    "select_scws",
]


class ArchiveError(Exception):
    """A path outside the archive, an output aimed at input data, or a bad archive file."""


INPUT_AREAS = ("scw", "aux", "ic", "idx", "cat")
"""Top-level folders holding input data: never written by analysis."""

_REV_DIR = re.compile(r"rev\.([0-9]{3})")
_ADP_DIR = re.compile(r"([0-9]{4})\.([0-9]{3})")


def _need(value, cls, what: str):
    """`value` if it is a `cls`; an int is accepted for Revolution/Version. Never a str."""
    if isinstance(value, cls):
        return value
    if cls in (Revolution, Version) and isinstance(value, int) and not isinstance(value, bool):
        return cls(value)
    raise TypeError(f"{what} must be a {cls.__name__} (parse the text with {cls.__name__}.parse first), "
                    f"got {type(value).__name__} {value!r}")


class Archive:
    """An ISDC archive rooted at `root` (resolved once, at construction).

    Path builders do not touch the disk; `scws()`/`revolutions()` list what exists.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()

    def __repr__(self):
        return f"Archive({str(self.root)!r})"

    def _inside(self, *parts: str) -> Path:
        # The components are validated; this is the belt to those braces. Lexical, not
        # resolved: an archive may legitimately keep scw/ on another disk via a symlink.
        p = self.root.joinpath(*parts)
        norm = os.path.normpath(p)
        if norm != str(self.root) and not norm.startswith(str(self.root) + os.sep):
            raise ArchiveError(f"path {norm} is outside the archive {self.root}")
        return p

    # ---- science windows and revolutions
    def scw_dir(self, scw: ScwId) -> Path:
        """`scw/RRRR/RRRRPPPPSSSF.VVV/`."""
        scw = _need(scw, ScwId, "scw")
        return self._inside("scw", str(scw.rev), str(scw))

    def swg(self, scw: ScwId) -> Path:
        """The ScW group file `scw/RRRR/RRRRPPPPSSSF.VVV/swg.fits`."""
        return self.scw_dir(scw) / "swg.fits"

    def rev_dir(self, rev: Revolution, version: Version) -> Path:
        """Per-revolution data `scw/RRRR/rev.VVV/`."""
        rev, version = _need(rev, Revolution, "rev"), _need(version, Version, "version")
        return self._inside("scw", str(rev), f"rev.{version}")

    def aux_adp(self, rev: Revolution, version: Version) -> Path:
        """Auxiliary data (attitude, orbit, time correlation) `aux/adp/RRRR.VVV/`."""
        rev, version = _need(rev, Revolution, "rev"), _need(version, Version, "version")
        return self._inside("aux", "adp", f"{rev}.{version}")

    def time_correlation(self, rev: Revolution, version: Version) -> Path:
        """`aux/adp/RRRR.VVV/time_correlation.fits` (AUXL-TCOR-HIS)."""
        return self.aux_adp(rev, version) / "time_correlation.fits"

    # ---- calibration, indices, catalogue
    def ic_root(self) -> Path:
        """`ic/`: one folder per instrument."""
        return self._inside("ic")

    def ic_dir(self, instrument: str) -> Path:
        """`ic/<instrument>/` (instrument checked by safe_name, e.g. 'ibis')."""
        return self._inside("ic", safe_name(instrument, "instrument"))

    def idx_ic(self) -> Path:
        """The IC index `idx/ic/ic_master_file.fits`."""
        return self._inside("idx", "ic", "ic_master_file.fits")

    def idx_scw(self) -> Path:
        """The ScW index `idx/scw/GNRL-SCWG-GRP-IDX.fits`."""
        return self._inside("idx", "scw", "GNRL-SCWG-GRP-IDX.fits")

    def cat_dir(self) -> Path:
        """`cat/`: reference catalogue."""
        return self._inside("cat")

    # ---- analysis outputs
    def obs_dir(self, name: str | ObsId, version: Version | int | None = None) -> Path:
        """`obs/<name>/` (or ISDC's `obs/<name>.VVV/` with `version`) for an OSA run or an
        observation group; `name` is checked by safe_name."""
        folder = safe_name(str(name) if isinstance(name, ObsId) else name, "output name")
        if version is not None:
            folder = f"{folder}.{_need(version, Version, 'version')}"
        return self._inside("obs", folder)

    def obs_scw_dir(self, name: str | ObsId, scw: ScwId, version: Version | int | None = None) -> Path:
        """`obs/<name>[.VVV]/scw/<RRRRPPPPSSSF.VVV>/`: per-ScW analysis products."""
        scw = _need(scw, ScwId, "scw")
        return self.obs_dir(name, version) / "scw" / str(scw)

    # ---- guard
    def check_output(self, path: str | os.PathLike) -> Path:
        """`path` resolved, or ArchiveError if it lies in an input area of this archive.

        Symlinks are followed on both sides, so a link from `obs/` into `scw/` is caught.
        """
        p = Path(path).expanduser().resolve()
        for area in INPUT_AREAS:
            a = (self.root / area).resolve()
            if p == a or a in p.parents:
                raise ArchiveError(f"output path {path} resolves to {p}, inside the input area {area}/ of "
                                   f"{self.root}: analysis never writes into input data")
        return p

    def make_output_dir(self, path: str | os.PathLike) -> Path:
        """Create an output folder after `check_output`; return it resolved."""
        p = self.check_output(path)
        p.mkdir(parents=True, exist_ok=True)
        return self.check_output(p)  # re-check: a symlink may have appeared on the way

    # ---- what exists
    def revolutions(self) -> list[Revolution]:
        """Revolutions with a `scw/RRRR/` folder, sorted."""
        out = []
        for name in _listdir(self._inside("scw")):
            rev = _parse_rev_dir(name)
            if rev is not None:
                out.append(rev)
            else:
                log.warning("archive %s: ignoring scw/%r: not a revolution folder RRRR", self.root, name)
        return sorted(out)

    def scws(self, rev: Revolution | int | None = None, version: Version | int | None = None) -> list[ScwId]:
        """Science windows with a folder in the tree, sorted; optionally of one revolution/version.

        Folder names are parsed with `ScwId.parse`; a name that does not parse, a ScW filed
        under the wrong revolution, or a symlink leading out of the archive is skipped
        with a logged warning, never used to build a path.
        """
        revs = [_need(rev, Revolution, "rev")] if rev is not None else self.revolutions()
        version = _need(version, Version, "version") if version is not None else None
        out = []
        for r in revs:
            folder = self._inside("scw", str(r))
            for name in _listdir(folder):
                if _REV_DIR.fullmatch(name):
                    continue
                try:
                    scw = ScwId.parse(name)
                except IdError as exc:
                    log.warning("archive %s: ignoring scw/%s/%r: %s", self.root, r, name, exc)
                    continue
                if scw.rev != r:
                    log.warning("archive %s: ignoring scw/%s/%s: ScW of revolution %s", self.root, r, name, scw.rev)
                    continue
                d = self.scw_dir(scw)
                if not d.is_dir():
                    continue
                if d.is_symlink() and self.root not in d.resolve().parents:
                    log.warning("archive %s: ignoring scw/%s/%s: symlink to %s outside the archive",
                                self.root, r, name, d.resolve())
                    continue
                if version is None or scw.version == version:
                    out.append(scw)
        return sorted(out)

    def aux_revolutions(self) -> list[tuple[Revolution, Version]]:
        """(revolution, version) of every `aux/adp/RRRR.VVV/` folder, sorted."""
        out = []
        for name in _listdir(self._inside("aux", "adp")):
            m = _ADP_DIR.fullmatch(name)
            if m:
                out.append((Revolution(int(m.group(1))), Version(int(m.group(2)))))
            else:
                log.warning("archive %s: ignoring aux/adp/%r: not RRRR.VVV", self.root, name)
        return sorted(out)


def _parse_rev_dir(name: str) -> Revolution | None:
    if re.fullmatch(r"[0-9]{4}", name):
        return Revolution(int(name))
    return None


def _listdir(folder: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(folder) if e.is_dir())
    except FileNotFoundError:
        return []


def make_read_only(path: str | os.PathLike, *, dirs: bool = False) -> int:
    """Make input data read-only after ingestion; return the number of files changed.

    Files become 0444. With `dirs=True` folders become 0555 too: only a read-only folder
    stops an atomic replace (`os.replace` ignores the mode of the file it replaces). The
    super-user ignores both, so `Archive.check_output` remains the guard that matters.
    """
    path = Path(path)
    n = 0
    targets = [path] if path.is_file() else sorted(path.rglob("*"))
    for p in targets:
        if p.is_symlink():
            continue
        if p.is_file():
            os.chmod(p, 0o444)
            n += 1
    if dirs and path.is_dir():
        for p in sorted((q for q in path.rglob("*") if q.is_dir() and not q.is_symlink()), reverse=True):
            os.chmod(p, 0o555)
        os.chmod(path, 0o555)
    return n


# --------------------------------------------------------------------------- time correlation files

def write_time_correlation(path: str | os.PathLike, tc: TimeCorrelation, rev: Revolution | int) -> Path:
    """Write a time-correlation table (template AUXL-TCOR-HIS) atomically."""
    rev = _need(rev, Revolution, "rev")
    hdu = get_template("AUXL-TCOR-HIS").table({"OB_TIME": tc.obt, "IJD": tc.ijd}, REVOL=rev.number)
    return write_product(path, [hdu])


def read_time_correlation(path: str | os.PathLike) -> TimeCorrelation:
    """Read an AUXL-TCOR-HIS table; ArchiveError naming the file if it is not a usable table."""
    try:
        t = open_product(path).table("AUXL-TCOR-HIS")
        return TimeCorrelation(t["OB_TIME"], t["IJD"], name=str(path))
    except (FitsError, TimeError) as exc:
        raise ArchiveError(f"time correlation {path}: {exc}") from exc


# --------------------------------------------------------------------------- ScW index

SCW_INDEX_GRPNAME = "GNRL-SCWG-GRP-IDX"


@dataclass(frozen=True)
class ScwInfo:
    """What the ScW index knows of one science window: the keywords of its swg.fits.

    Times are IJD (days, TT); angles are degrees (J2000). `ra_scx/dec_scx` is the
    pointing (X) axis, `ra_scz/dec_scz` the spacecraft Z axis, `posangle` the position
    angle of the Z axis. `obtstart/obtend` are OBT ticks (None when not recorded).
    """

    scw: ScwId
    tstart: float
    tstop: float
    ra_scx: float
    dec_scx: float
    ra_scz: float
    dec_scz: float
    posangle: float
    obs_id: str = ""
    obtstart: int | None = None
    obtend: int | None = None

    def __post_init__(self):
        where = f"ScW {self.scw}"
        for name in ("tstart", "tstop", "ra_scx", "dec_scx", "ra_scz", "dec_scz", "posangle"):
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.floating, np.integer)) or not np.isfinite(v):
                raise ArchiveError(f"{where}: {name.upper()} must be a finite number, got {v!r}")
            object.__setattr__(self, name, float(v))
        if not self.tstart < self.tstop:
            raise ArchiveError(f"{where}: TSTART {self.tstart} is not before TSTOP {self.tstop}")
        for name in ("dec_scx", "dec_scz"):
            if not -90.0 <= getattr(self, name) <= 90.0:
                raise ArchiveError(f"{where}: {name.upper()} {getattr(self, name)} outside -90..90 deg")
        for name in ("ra_scx", "ra_scz"):
            if not 0.0 <= getattr(self, name) < 360.0:
                raise ArchiveError(f"{where}: {name.upper()} {getattr(self, name)} outside 0..360 deg")
        if self.obs_id:
            try:
                ObsId.parse(self.obs_id)
            except IdError as exc:
                raise ArchiveError(f"{where}: OBS_ID: {exc}") from exc

    @property
    def revol(self) -> int:
        return self.scw.revolution

    @property
    def sw_type(self) -> str:
        return self.scw.sw_type

    def keywords(self) -> dict[str, tuple]:
        """Keywords (value, comment) for the GROUPING header of the ScW's swg.fits."""
        kw = {
            "SWID": (self.scw.swid, "Science Window identifier"),
            "SW_TYPE": (self.sw_type, "Type of the Science Window"),
            "REVOL": (self.revol, "Revolution number"),
            "TSTART": (self.tstart, "[d] Start time of the Science Window (IJD)"),
            "TSTOP": (self.tstop, "[d] End time of the Science Window (IJD)"),
            "RA_SCX": (self.ra_scx, "[deg] Right ascension of the pointing (X) axis"),
            "DEC_SCX": (self.dec_scx, "[deg] Declination of the pointing (X) axis"),
            "RA_SCZ": (self.ra_scz, "[deg] Right ascension of the spacecraft Z axis"),
            "DEC_SCZ": (self.dec_scz, "[deg] Declination of the spacecraft Z axis"),
            "POSANGLE": (self.posangle, "[deg] Position angle of the Z axis"),
            "MJDREF": (MJDREF, "Modified Julian Date of time origin"),
            "TIMESYS": ("TT", "Time frame system"),
            "TIMEUNIT": ("d", "Time unit"),
        }
        if self.obs_id:
            kw["OBS_ID"] = (self.obs_id, "Observation identifier")
        if self.obtstart is not None:
            kw["OBTSTART"] = (f"{self.obtstart:020d}", "OBT of the start of the Science Window")
        if self.obtend is not None:
            kw["OBTEND"] = (f"{self.obtend:020d}", "OBT of the end of the Science Window")
        return kw

    def header(self) -> fits.Header:
        """`keywords()` as a header, e.g. for `Grouping('GNRL-SCWG-GRP', header=info.header())`."""
        return _header(self.keywords())

    @classmethod
    def from_header(cls, scw: ScwId, header: fits.Header | dict, where: str) -> "ScwInfo":
        """Read and check the swg.fits keywords of `scw` (the ID its folder name gives)."""
        def get(name, kind):
            if name not in header:
                raise ArchiveError(f"{where}: keyword {name} missing")
            v = header[name]
            if kind is float and isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v)
            if not isinstance(v, kind) or isinstance(v, bool):
                raise ArchiveError(f"{where}: keyword {name} = {v!r} is not {kind.__name__}")
            return v

        swid = get("SWID", str).strip()
        if swid != scw.swid:
            raise ArchiveError(f"{where}: SWID {swid!r} differs from its folder {scw}")
        if get("REVOL", int) != scw.revolution:
            raise ArchiveError(f"{where}: REVOL {header['REVOL']} differs from ScW {scw}")
        sw_type = get("SW_TYPE", str).strip()
        if sw_type != scw.sw_type:
            raise ArchiveError(f"{where}: SW_TYPE {sw_type!r}, but ScW {scw} is a {scw.sw_type}")
        obs = str(header.get("OBS_ID", "")).strip()
        values = [get(k, float) for k in ("TSTART", "TSTOP", "RA_SCX", "DEC_SCX", "RA_SCZ", "DEC_SCZ", "POSANGLE")]
        try:
            obt = [parse_obt(header[k]) if k in header else None for k in ("OBTSTART", "OBTEND")]
            return cls(scw, *values, obs, *obt)
        except (TimeError, ArchiveError) as exc:
            raise ArchiveError(f"{where}: {exc}") from exc


_SCW_AUX_SPECS = (
    ColumnSpec("SWID", "12A", comment="Science Window identifier"),
    ColumnSpec("SW_VER", "1J", comment="Data version of the ScW (0 NRT, 1 CONS)"),
    ColumnSpec("SW_TYPE", "8A", comment="POINTING or SLEW"),
    ColumnSpec("REVOL", "1J", comment="Revolution number"),
    ColumnSpec("TSTART", "1D", unit="d", comment="Start time (IJD)"),
    ColumnSpec("TSTOP", "1D", unit="d", comment="End time (IJD)"),
    ColumnSpec("RA_SCX", "1D", unit="deg", comment="Right ascension of the pointing axis"),
    ColumnSpec("DEC_SCX", "1D", unit="deg", comment="Declination of the pointing axis"),
    ColumnSpec("RA_SCZ", "1D", unit="deg", comment="Right ascension of the Z axis"),
    ColumnSpec("DEC_SCZ", "1D", unit="deg", comment="Declination of the Z axis"),
    ColumnSpec("POSANGLE", "1D", unit="deg", comment="Position angle of the Z axis"),
    ColumnSpec("OBS_ID", "16A", comment="Observation identifier (blank if unknown)"),
)
_FLOAT_COLUMNS = ("TSTART", "TSTOP", "RA_SCX", "DEC_SCX", "RA_SCZ", "DEC_SCZ", "POSANGLE")


def _index_aux(info: ScwInfo) -> dict:
    aux = {k: getattr(info, k.lower()) for k in _FLOAT_COLUMNS}
    aux.update(SWID=info.scw.swid, SW_VER=info.scw.version.number, SW_TYPE=info.sw_type, REVOL=info.revol,
               OBS_ID=info.obs_id)
    return aux


class ScwIndex:
    """The ScW index: a grouping (GRPNAME 'GNRL-SCWG-GRP-IDX') whose rows point at each
    ScW's swg.fits, with auxiliary columns to select on.

    Every row is validated when the index is made (vectorised: a mission of 1e5 ScWs
    takes well under a second): SWID 12 ASCII digits agreeing with REVOL and SW_TYPE,
    SW_VER 0..999, finite times with TSTART < TSTOP, RA in [0, 360), DEC in [-90, 90],
    OBS_ID blank or 8 digits. ArchiveError names the first bad row.
    `rows` gives one `ScwInfo` per row, in index order; `skipped` lists (ScW, reason)
    for science windows left out when it was built.
    """

    def __init__(self, grouping: Grouping, where: str = "ScW index", skipped: Sequence[tuple[ScwId, str]] = ()):
        if grouping.grpname != SCW_INDEX_GRPNAME:
            raise ArchiveError(f"{where}: GRPNAME {grouping.grpname!r}, expected {SCW_INDEX_GRPNAME}")
        missing = [s.name for s in _SCW_AUX_SPECS if s.name not in grouping.aux_names]
        if missing:
            raise ArchiveError(f"{where}: ScW index lacks columns {missing}")
        self.grouping = grouping
        self.skipped = list(skipped)
        self._where = where
        c = self._c = {s.name: grouping.column(s.name) for s in _SCW_AUX_SPECS}
        n = len(grouping)
        swid, good = _digits(c["SWID"], 12)
        self._parts = {"rev": _number_of(swid[:, 0:4]), "pnt": _number_of(swid[:, 4:8]),
                       "sub": _number_of(swid[:, 8:11]), "typ": swid[:, 11].astype(np.int64)}
        self._revol = np.asarray(c["REVOL"], dtype=np.int64)
        self._version = np.asarray(c["SW_VER"], dtype=np.int64)
        self._col = {k: np.asarray(c[k], dtype=np.float64) for k in _FLOAT_COLUMNS}
        typ = self._parts["typ"]
        good &= (typ <= 1) & (self._revol == self._parts["rev"]) & (self._version >= 0) & (self._version <= 999)
        good &= np.char.strip(np.asarray(c["SW_TYPE"], dtype=str)) == np.where(typ == 1, "SLEW", "POINTING")
        good &= np.all(np.isfinite(np.stack([self._col[k] for k in _FLOAT_COLUMNS])), axis=0) if n else good
        good &= self._col["TSTART"] < self._col["TSTOP"]
        for k in ("DEC_SCX", "DEC_SCZ"):
            good &= (self._col[k] >= -90.0) & (self._col[k] <= 90.0)
        for k in ("RA_SCX", "RA_SCZ"):
            good &= (self._col[k] >= 0.0) & (self._col[k] < 360.0)
        obs = np.char.strip(np.asarray(c["OBS_ID"], dtype=str))
        good &= (np.char.str_len(obs) == 0) | _digits(obs, 8)[1]
        if not np.all(good):
            i = int(np.flatnonzero(~good)[0])
            try:
                self._info(i)
            except (IdError, ArchiveError) as exc:
                raise ArchiveError(f"{where}: row {i + 1}: {exc}") from exc
            raise ArchiveError(f"{where}: row {i + 1}: malformed ScW index row")  # not reached for known checks
        self._slew = typ == 1

    def _scw(self, i: int) -> ScwId:
        p = self._parts
        return ScwId(int(p["rev"][i]), int(p["pnt"][i]), int(p["sub"][i]), int(p["typ"][i]), Version(int(self._version[i])))

    def _info(self, i: int) -> ScwInfo:
        """Row `i` as a ScwInfo, checked one value at a time (gives the precise error)."""
        c = self._c
        scw = ScwId.parse(str(c["SWID"][i]), version=int(c["SW_VER"][i]))
        if int(c["REVOL"][i]) != scw.revolution or str(c["SW_TYPE"][i]).strip() != scw.sw_type:
            raise ArchiveError(f"REVOL/SW_TYPE {c['REVOL'][i]}/{c['SW_TYPE'][i]} disagree with SWID {c['SWID'][i]}")
        return ScwInfo(scw, *(float(c[k][i]) for k in _FLOAT_COLUMNS), str(c["OBS_ID"][i]).strip())

    @property
    def rows(self) -> list[ScwInfo]:
        return [self._info(i) for i in range(len(self))]

    def __len__(self) -> int:
        return len(self._revol)

    def __repr__(self):
        return f"ScwIndex({len(self)} ScWs)"

    def scw_ids(self) -> list[ScwId]:
        return [self._scw(i) for i in range(len(self))]

    def select(self, *, revolution=None, tstart: float | None = None, tstop: float | None = None,
               ra: float | None = None, dec: float | None = None, radius_deg: float | None = None,
               version: Version | int | None = None, sw_type: str | None = None, latest: bool = False) -> list[ScwId]:
        """ScwIds matching every criterion given, in index order (TSTART).

        revolution : Revolution/int or a sequence of them.
        tstart, tstop : IJD; a ScW is kept when [TSTART, TSTOP) overlaps [tstart, tstop).
        ra, dec, radius_deg : keep ScWs whose pointing axis (RA_SCX, DEC_SCX) lies within
            `radius_deg` of (ra, dec), degrees, boundary included.
        version : only this data version (0 NRT, 1 CONS).
        sw_type : 'POINTING' or 'SLEW'.
        latest : of several versions of one ScW keep the highest (CONS supersedes NRT).
        """
        keep = np.ones(len(self), dtype=bool)
        if revolution is not None:
            revs = [revolution] if isinstance(revolution, (int, Revolution)) else list(revolution)
            keep &= np.isin(self._revol, [_need(r, Revolution, "revolution").number for r in revs])
        if tstart is not None:
            keep &= self._col["TSTOP"] > float(tstart)
        if tstop is not None:
            keep &= self._col["TSTART"] < float(tstop)
        sky = (ra, dec, radius_deg)
        if any(v is not None for v in sky):
            if any(v is None for v in sky):
                raise ValueError("a sky selection needs ra, dec and radius_deg together")
            if not -90.0 <= float(dec) <= 90.0 or not float(radius_deg) >= 0.0:
                raise ValueError(f"bad sky selection: dec {dec} must be in -90..90 deg, radius {radius_deg} >= 0")
            sep = angular_separation(self._col["RA_SCX"], self._col["DEC_SCX"], float(ra), float(dec))
            keep &= sep <= float(radius_deg)
        if version is not None:
            keep &= self._version == _need(version, Version, "version").number
        if sw_type is not None:
            if sw_type not in ("POINTING", "SLEW"):
                raise ValueError(f"sw_type must be 'POINTING' or 'SLEW', got {sw_type!r}")
            keep &= self._slew == (sw_type == "SLEW")
        rows = np.flatnonzero(keep)
        if latest and rows.size:
            # of the chosen rows, drop any whose ScW has a higher version also chosen
            key = np.stack([self._parts[k][rows] for k in ("rev", "pnt", "sub", "typ")], axis=1)
            _, inverse = np.unique(key, axis=0, return_inverse=True)
            top = np.full(inverse.max() + 1, -1, dtype=np.int64)
            np.maximum.at(top, inverse.ravel(), self._version[rows])
            rows = rows[self._version[rows] == top[inverse.ravel()]]
        return [self._scw(i) for i in rows]

    def check_members(self, index_path: str | os.PathLike, archive: Archive) -> None:
        """ArchiveError unless every row's MEMBER_LOCATION, read from `index_path`, is its ScW's swg.fits."""
        for scw, member in zip(self.scw_ids(), self.grouping):
            try:
                target = resolve_location(index_path, member.location, archive.root)
            except GroupingError as exc:
                raise ArchiveError(f"ScW index {index_path}: row of {scw}: {exc}") from exc
            want = Path(os.path.realpath(archive.swg(scw)))
            if target != want:
                raise ArchiveError(f"ScW index {index_path}: member of {scw} points at {target}, not {want}")


def _digits(text: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Digits (n, width) of strings meant to be `width` ASCII digits, and which rows are."""
    t = np.asarray(text, dtype=str)
    ok = np.char.str_len(t) == width
    codes = np.zeros((t.size, width), dtype=np.int64)
    if t.size:
        cells = t.astype(f"U{width}").view(np.uint32).reshape(t.size, width)
        codes = cells.astype(np.int64) - ord("0")
    ok &= np.all((codes >= 0) & (codes <= 9), axis=1)
    return np.where(ok[:, None], codes, 0), ok


def _number_of(digits: np.ndarray) -> np.ndarray:
    return digits @ (10 ** np.arange(digits.shape[1] - 1, -1, -1, dtype=np.int64))


def angular_separation(ra1, dec1, ra2, dec2):
    """Angle between directions (degrees in, degrees out), stable at 0 and 180 deg (Vincenty)."""
    l1, b1, l2, b2 = (np.radians(np.asarray(x, dtype=np.float64)) for x in (ra1, dec1, ra2, dec2))
    dl = l2 - l1
    num = np.hypot(np.cos(b2) * np.sin(dl), np.cos(b1) * np.sin(b2) - np.sin(b1) * np.cos(b2) * np.cos(dl))
    den = np.sin(b1) * np.sin(b2) + np.cos(b1) * np.cos(b2) * np.cos(dl)
    return np.degrees(np.arctan2(num, den))


def _header(keywords: dict) -> fits.Header:
    """A header from {name: (value, comment)}."""
    h = fits.Header()
    for k, v in keywords.items():
        h[k] = v
    return h


_SWG_KEYWORDS = ("SWID", "REVOL", "SW_TYPE", *_FLOAT_COLUMNS, "OBS_ID", "OBTSTART", "OBTEND")


def _swg_keywords(ff: FitsFile) -> dict:
    """The ScW keywords of a swg.fits: from its GROUPING header, else its primary header."""
    headers = [ff.find("GROUPING").header, ff.hdus[0].header]
    out = {}
    for k in _SWG_KEYWORDS:
        for h in headers:
            if k in h:
                out[k] = h[k]
                break
    return out


def read_scw_info(archive: Archive, scw: ScwId) -> ScwInfo:
    """The ScwInfo of one ScW from its swg.fits (ArchiveError naming the file if unusable)."""
    path = archive.swg(scw)
    try:
        return ScwInfo.from_header(scw, _swg_keywords(FitsFile(path)), str(path))
    except (FitsError, OSError) as exc:
        raise ArchiveError(f"ScW {scw}: {path}: {exc}") from exc


def build_scw_index(archive: Archive, *, strict: bool = False, write: bool = True) -> ScwIndex:
    """Scan every ScW of `archive`, read its swg.fits keywords and (re)write the ScW index.

    A ScW without a readable, consistent swg.fits (with a GROUPING table) is left out
    with a logged warning and listed in `.skipped` (with `strict=True`: ArchiveError).
    The index `idx/scw/GNRL-SCWG-GRP-IDX.fits` is written atomically when `write` is
    true. Its members are not modified (an ISDC index over read-only input data): they
    get no back-pointers.
    """
    found, skipped = [], []
    for scw in archive.scws():
        path = archive.swg(scw)
        try:
            if not path.is_file():
                raise ArchiveError(f"{path}: no swg.fits")
            ff = read_fits(path)
            grp = ff.find("GROUPING")  # FitsError when the ScW group has no grouping table
            if not 0 < grp.extver < 2**31:  # it becomes MEMBER_VERSION of the index row
                raise ArchiveError(f"{path}: GROUPING EXTVER {grp.extver} is not a positive 32-bit integer")
            found.append((ScwInfo.from_header(scw, _swg_keywords(ff), str(path)), path, grp.index + 1, grp.extver))
        except (ArchiveError, FitsError, OSError) as exc:
            if strict:
                raise ArchiveError(str(exc)) from exc
            log.warning("ScW index: leaving out %s: %s", scw, exc)
            skipped.append((scw, str(exc)))
    found.sort(key=lambda x: (x[0].tstart, x[0].scw))  # index order: time, then ScW ID
    index_path = archive.idx_scw()
    header = _header({"MJDREF": (MJDREF, "Modified Julian Date of time origin"), "TIMESYS": ("TT", "Time frame system"),
                      "TIMEUNIT": ("d", "Time unit"), "NSCW": (len(found), "Number of science windows in the index")})
    group = Grouping(SCW_INDEX_GRPNAME, aux={s.name: s for s in _SCW_AUX_SPECS}, header=header)
    pending = PendingFile(index_path)
    pending.append(group)
    for info, path, position, extver in found:
        location = relative_location(index_path, path, archive.root)
        group.append(Member("BINTABLE", "GROUPING", extver, position, location, "URL"), _index_aux(info))
    index = ScwIndex(group, str(index_path), skipped)
    if write:
        index_path.parent.mkdir(parents=True, exist_ok=True)
        pending.write()
    return index


def read_scw_index(path: str | os.PathLike, archive: Archive | None = None) -> ScwIndex:
    """Read a ScW index file. With `archive`, every member must be that ScW's swg.fits in it."""
    path = Path(path)
    try:
        group = Grouping.read(path)
    except FitsError as exc:
        raise ArchiveError(f"ScW index {path}: {exc}") from exc
    index = ScwIndex(group, str(path))
    if archive is not None:
        index.check_members(path, archive)
    return index


def select_scws(index: ScwIndex | str | os.PathLike, **criteria) -> list[ScwId]:
    """ScwIds of an index (object or file) matching `criteria` (see `ScwIndex.select`)."""
    if not isinstance(index, ScwIndex):
        index = read_scw_index(index)
    return index.select(**criteria)
