"""Verify FITS products and the groupings that tie them together.

fitsverify checks FITS structure only and accepts broken groupings; CFITSIO's group code
can crash on malformed tables. This verifier checks, for every file (a tree is walked
for ``*.fits`` and ``*.fits.gz``):

- it is readable FITS (`FitsFile`), every BINTABLE reads;
- DATASUM/CHECKSUM of every HDU: 'bad' is an error, 'missing' is allowed;
- HDUs naming a template (TEMPLATE keyword) match it (`templates.validate_hdu`);
- every grouping table: each member resolves inside the root folder (file exists, HDU
  at MEMBER_POSITION, or by MEMBER_NAME/MEMBER_VERSION, with the right MEMBER_XTENSION),
  and carries a back-pointer (GRPIDn/GRPLCn) to the group; indices ('...-IDX') leave
  their members untouched, so back-pointers are not required of their members;
- every back-pointer (GRPIDn/GRPLCn of any HDU, groups included) is followed: a parent
  file that is not present (or lies outside the root) is a warning, a parent that is
  present but does not list the HDU is an error.

Member files of a verified grouping are verified too. Any exception raised on a
malformed file becomes an error finding naming the file: the verifier itself does not
fail. HDU numbers in findings are 1-based (primary = 1), as in MEMBER_POSITION and
fitsverify.
"""
from __future__ import annotations

import os
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from isdc.dal.fitsfile import FitsError, FitsFile, HDUInfo, Image
from isdc.dal.grouping import (
    FileCache,
    Grouping,
    GroupingError,
    LocationError,
    Member,
    OutsideRootError,
    group_pointers,
    grouping_hdus,
    is_grouping_hdu,
    points_to,
    resolve_location,
    resolve_member,
)
from isdc.dal.templates import validate_hdu

__all__ = ["ERROR", "WARNING", "INFO", "Finding", "MemberLine", "GroupingLine", "FileResult", "Report",
           "verify", "fits_files"]

ERROR, WARNING, INFO = "error", "warning", "info"
# Auxiliary columns shown in the member listing (when present), besides text columns.
_SHOWN_AUX = ("SWID", "REVOL", "IMATYPE", "E_MIN", "E_MAX", "TSTART", "TSTOP")


@dataclass(frozen=True)
class Finding:
    """One result of verification: level ('error', 'warning', 'info'), file, HDU, message."""

    level: str
    file: str
    hdu: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file} {self.hdu}".strip()
        return f"{self.level.upper()}: {where}: {self.message}"


@dataclass
class MemberLine:
    """One member of a grouping as the report lists it."""

    row: int
    member: Member
    aux: dict[str, Any]
    at: str = ""
    status: str = "ok"


@dataclass
class GroupingLine:
    hdu: int
    extver: int
    grpname: str
    members: list[MemberLine] = field(default_factory=list)


@dataclass
class FileResult:
    path: str
    nhdus: int = 0
    checksums: Counter = field(default_factory=Counter)
    groupings: list[GroupingLine] = field(default_factory=list)


@dataclass
class Report:
    """Everything verification found, file by file, with a text rendering."""

    files: list[FileResult] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def text(self, members: bool = True) -> str:
        """Readable report: per file its HDUs, checksums, groupings (with members) and findings."""
        out = []
        by_file: dict[str, list[Finding]] = {}
        for f in self.findings:
            by_file.setdefault(f.file, []).append(f)
        for fr in self.files:
            cs = fr.checksums
            out.append(f"{fr.path}: {fr.nhdus} HDUs; checksums {cs['ok']} ok, {cs['missing']} missing, {cs['bad']} bad")
            for g in fr.groupings:
                out.append(f"  GROUPING v{g.extver} {g.grpname!r} (HDU {g.hdu}): {len(g.members)} members")
                if members:
                    out += _member_table(g.members)
            for f in by_file.pop(fr.path, []):
                out.append(f"  {f.level.upper()}: {(f.hdu + ': ') if f.hdu else ''}{f.message}")
        for fname, fs in by_file.items():
            out.append(f"{fname}:")
            out += [f"  {f.level.upper()}: {(f.hdu + ': ') if f.hdu else ''}{f.message}" for f in fs]
        nh = sum(f.nhdus for f in self.files)
        ng = sum(len(f.groupings) for f in self.files)
        nm = sum(len(g.members) for f in self.files for g in f.groupings)
        counts = [(len(self.files), "file"), (nh, "HDU"), (ng, "grouping"), (nm, "member")]
        out.append(", ".join(_n(n, w) for n, w in counts) + ": " + _n(len(self.errors), "error") + ", "
                   + _n(len(self.warnings), "warning") + (" -> OK" if self.ok else " -> FAILED"))
        return "\n".join(out)


def _n(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v).strip()


def _member_table(lines: list[MemberLine]) -> list[str]:
    rows = []
    for ml in lines:
        m = ml.member
        shown = [k for k, v in ml.aux.items() if k in _SHOWN_AUX or isinstance(v, str)]
        aux = " ".join(f"{k}={_fmt(ml.aux[k])}" for k in shown)
        desc = f"{m.xtension or '?'} {m.name or '?'}" + (f" v{m.version}" if m.version is not None else "")
        rows.append((str(ml.row), desc, ml.at, aux, ml.status))
    widths = [max([len(r[i]) for r in rows] + [1]) for i in range(4)]
    return ["    " + "  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows]


def fits_files(folder: str | os.PathLike) -> list[Path]:
    """Every *.fits and *.fits.gz below `folder`, sorted; hidden files and folders skipped
    (an atomic write's temporary file is hidden)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and (name.endswith(".fits") or name.endswith(".fits.gz")):
                out.append(Path(dirpath) / name)
    return sorted(out)


def _label(info: HDUInfo) -> str:
    try:
        v = info.header.get("EXTVER")
        ver = f" v{v}" if v is not None else ""
        return f"HDU {info.index + 1} ({info.extname}{ver})"
    except Exception:  # a hostile header must not stop the report
        return f"HDU {info.index + 1}"


def _show(path: Path) -> str:
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else str(path)


class _Verifier:
    def __init__(self, cache_size: int = 32):
        self.report = Report()
        self.open = FileCache(cache_size)
        self.queued: set[str] = set()
        self.queue: deque[tuple[Path, Path, str]] = deque()
        self._parsed: dict[tuple[str, int], Grouping | None] = {}
        self._listed: dict[tuple[str, int], dict[str, list[Member]]] = {}

    def add(self, level: str, file: str, hdu: str, message: str) -> None:
        self.report.findings.append(Finding(level, file, hdu, message))

    def enqueue(self, path: Path, root: Path, shown: str | None = None) -> None:
        real = os.path.realpath(path)
        if real not in self.queued:
            self.queued.add(real)
            self.queue.append((Path(real), root, shown or _show(Path(real))))

    # ---- driver
    def run(self, paths: Iterable[str | os.PathLike], root: str | os.PathLike | None) -> Report:
        for p in paths:
            p = Path(p)
            if not p.exists():
                self.add(ERROR, str(p), "", "does not exist")
                continue
            r = Path(root) if root is not None else (p if p.is_dir() else p.parent)
            real_root = Path(os.path.realpath(r))
            if not (os.path.realpath(p) + os.sep).startswith(str(real_root).rstrip(os.sep) + os.sep):
                self.add(ERROR, str(p), "", f"not inside the root folder {r}")
                continue
            for f in (fits_files(p) if p.is_dir() else [p]):
                self.enqueue(f, real_root, str(f))
        while self.queue:
            path, root_, shown = self.queue.popleft()
            try:
                self.file(path, root_, shown)
            except Exception as exc:  # never let a malformed file stop verification
                self.add(ERROR, shown, "", f"verification failed: {type(exc).__name__}: {exc}")
        return self.report

    def guard(self, shown: str, hdu: str, fn, *args) -> Any:
        try:
            return fn(*args)
        except (FitsError, GroupingError) as exc:
            self.add(ERROR, shown, hdu, str(exc))
        except Exception as exc:  # malformed input may raise anything below us
            self.add(ERROR, shown, hdu, f"{type(exc).__name__}: {exc}")
        return None

    # ---- one file
    def file(self, path: Path, root: Path, shown: str) -> None:
        fr = FileResult(shown)
        self.report.files.append(fr)
        try:
            ff = self.open(path)
        except FitsError as exc:
            self.add(ERROR, shown, "", str(exc))
            return
        fr.nhdus = len(ff.hdus)
        for info in ff.hdus:
            label = _label(info)
            fr.checksums[self.guard(shown, label, self.checksum, ff, info, shown, label) or "bad"] += 1
            self.guard(shown, label, self.structure, ff, info, label)
        versions = Counter(_extver(i) for i in grouping_hdus(ff))
        for v, n in versions.items():
            if n > 1:
                self.add(ERROR, shown, "", f"{n} GROUPING tables share EXTVER {v}")
        for info in grouping_hdus(ff):
            self.guard(shown, _label(info), self.grouping, ff, info, root, shown, fr)
        for info in ff.hdus:
            self.guard(shown, _label(info), self.parents, ff, info, root, shown)

    def checksum(self, ff: FitsFile, info: HDUInfo, shown: str, label: str) -> str:
        ds, cs = ff.verify_checksum(info)
        if ds == "bad" or cs == "bad":
            what = []
            if ds == "bad":
                what.append("data do not match DATASUM")
            if cs == "bad":
                what.append("HDU does not match CHECKSUM")
            self.add(ERROR, shown, label, "checksum bad: " + " and ".join(what) + " (changed after it was written)")
            return "bad"
        return "ok" if "ok" in (ds, cs) else "missing"

    def structure(self, ff: FitsFile, info: HDUInfo, label: str) -> None:
        if info.xtension == "BINTABLE":
            hdu = ff.table(info.index)
        elif info.xtension in ("PRIMARY", "IMAGE"):
            hdu = Image(None, info.header)  # templates check image headers only: no need to read pixels
        else:
            return
        if "TEMPLATE" in info.header:
            validate_hdu(hdu, f"{ff.path} {label}")

    def parsed(self, ff: FitsFile, info: HDUInfo) -> Grouping:
        key = (str(ff.path), _extver(info))
        if key not in self._parsed:
            self._parsed[key] = None
            self._parsed[key] = Grouping.from_table(ff.table(info.index), f"{ff.path} {_label(info)}")
        g = self._parsed[key]
        if g is None:
            raise GroupingError(f"{ff.path} {_label(info)}: not a readable grouping table")
        return g

    # ---- a grouping and its members
    def grouping(self, ff: FitsFile, info: HDUInfo, root: Path, shown: str, fr: FileResult) -> None:
        g = self.parsed(ff, info)
        gl = GroupingLine(info.index + 1, g.extver, g.grpname)
        fr.groupings.append(gl)
        label = _label(info)
        for i, m in enumerate(g):
            ml = MemberLine(i + 1, m, g.aux_row(i))
            gl.members.append(ml)
            where = f"member {i + 1} ({m.describe()})"
            try:
                t = resolve_member(ff.path, m, root, self.open)
            except GroupingError as exc:
                ml.at, ml.status = m.location or "?", "REFUSED" if isinstance(exc, LocationError) else "MISSING"
                self.add(ERROR, shown, label, f"{where} does not resolve: {_strip(str(exc), ff.path)}")
                continue
            other = t.path != ff.path
            ml.at = (f"{os.path.relpath(t.path, ff.path.parent)} " if other else "") + f"HDU {t.position}"
            if t.by == "name" and t.stale_position is not None:
                ml.status = "stale position"
                self.add(WARNING, shown, label, f"{where}: MEMBER_POSITION {t.stale_position} is stale: "
                         f"found by name at HDU {t.position}")
            target = self.open(t.path).hdus[t.index]
            if not g.is_index and not points_to(target.header, t.path, ff.path, g.extver, root, _label(target)):
                ml.status = "NO BACK-POINTER"
                ptrs = [str(p) for p in group_pointers(target.header, _label(target))]
                self.add(ERROR, shown, label, f"{where}: the member has no back-pointer to this group "
                         f"(GRPID=±{g.extver}{', GRPLC to ' + ff.path.name if other else ''}); its pointers: "
                         f"{', '.join(ptrs) or 'none'}")
            if other:
                self.enqueue(t.path, root)

    # ---- back-pointers to parents
    def parents(self, ff: FitsFile, info: HDUInfo, root: Path, shown: str) -> None:
        label = _label(info)
        for p in group_pointers(info.header, label):
            if p.same_file:
                gpath = ff.path
            else:
                try:
                    gpath = resolve_location(ff.path, p.location, root)
                except OutsideRootError:
                    self.add(WARNING, shown, label, f"{p}: parent group lies outside the root folder {root}: not checked")
                    continue
                except GroupingError as exc:
                    self.add(ERROR, shown, label, f"{p}: {_strip(str(exc), ff.path)}")
                    continue
                if not gpath.is_file():
                    self.add(WARNING, shown, label, f"{p}: parent group file is not present: not checked")
                    continue
            gff = self.open(gpath)
            ginfo = [h for h in grouping_hdus(gff) if _extver(h) == abs(p.extver)]
            where = "this file" if gpath == ff.path else p.location
            if not ginfo:
                self.add(ERROR, shown, label, f"{p}: {where} has no GROUPING table with EXTVER {abs(p.extver)}")
                continue
            g = self.parsed(gff, ginfo[0])
            if not self.lists(gpath, g, ff.path, info, root):
                self.add(ERROR, shown, label, f"{p}: group {g.grpname!r} v{g.extver} in {where} does not list this HDU")

    def lists(self, gpath: Path, g: Grouping, path: Path, info: HDUInfo, root: Path) -> bool:
        """True when grouping `g` of `gpath` has a row that resolves to HDU `info` of `path`."""
        key = (str(gpath), g.extver)
        by_file = self._listed.get(key)
        if by_file is None:  # one pass over the rows, so a large index is not rescanned per member
            by_file = {}
            for m in g:
                try:
                    by_file.setdefault(str(resolve_location(gpath, m.location, root)), []).append(m)
                except GroupingError:
                    continue
            self._listed[key] = by_file
        for m in by_file.get(str(path), []):
            try:
                if resolve_member(gpath, m, root, self.open).index == info.index:
                    return True
            except GroupingError:
                continue
        return False


def _extver(info: HDUInfo) -> int:
    v = info.header.get("EXTVER", 1)
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else 0


def _strip(message: str, path: Path) -> str:
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def verify(paths: Iterable[str | os.PathLike] | str | os.PathLike, *, root: str | os.PathLike | None = None,
           cache_size: int = 32) -> Report:
    """Verify files and folders (walked for *.fits, *.fits.gz) and the groupings they hold.

    `root` bounds every location read from the files; by default it is the folder given,
    or the folder of the file given. Returns a Report; never raises for a bad file.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    return _Verifier(cache_size).run(paths, root)
