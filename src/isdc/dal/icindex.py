"""Instrument characteristics (IC, calibration) files and the IC index.

IC files live in an IC tree: `ic/<instrument>/…` of an archive, or the shipped defaults
`ic_files/<instrument>/…` of the source tree (sub-folders allowed, e.g. `ibis/mod/`).
Every IC data structure is one HDU carrying

- ``VERSION`` (int): the version of that calibration; a higher one supersedes;
- ``VSTART``, ``VSTOP`` (IJD, TT): validity, ``VSTART <= t < VSTOP`` (start inclusive,
  stop exclusive, so consecutive ranges can share a boundary without overlapping);
- its structure name: the ``ICSTRUCT`` keyword when present, else ``EXTNAME``
  (``ISGR-MASK-MOD``, ``ISGR-GAIN-MOD``…). ``ICSTRUCT`` lets an OGIP file keep the
  EXTNAME its readers need ('SPECRESP MATRIX') and still be found as 'ISGR-RMF.-RSP'.

Selection rule (`ICIndex.select`): among the HDUs of that instrument and structure valid
at the time, the one with the highest VERSION. Two HDUs with the same instrument,
structure and version whose validity overlaps make the tree ambiguous and are refused
when the index is made.

The IC index file (`idx/ic/ic_master_file.fits` in an archive) is a grouping
(GRPNAME 'GNRL-IC..-GRP-IDX') with one row per IC data structure: MEMBER_* columns point
at the HDU, auxiliary columns INSTRUME, STRUCTURE, VERSION, VSTART, VSTOP, DATASUM say
what it is; keyword ICROOT is the URL of the IC tree relative to the index file.
"""
from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from astropy.io import fits

from isdc.dal.fitsfile import ColumnSpec, FitsError, ones_complement_sum, read_fits
from isdc.dal.grouping import Grouping, GroupingError, Member, PendingFile, relative_location, resolve_location
from isdc.ids import IdError, safe_name

log = logging.getLogger(__name__)

__all__ = ["ICError", "ICEntry", "ICSelection", "ICIndex", "IC_INDEX_GRPNAME", "scan_ic_tree", "build_ic_index",
           "read_ic_index", "ic_index_for", "LayeredICIndex"]

IC_INDEX_GRPNAME = "GNRL-IC..-GRP-IDX"


class ICError(Exception):
    """No valid IC file, an ambiguous IC tree, or a bad IC file / index (message names it)."""


_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+\-]{0,127}")
_FITS_NAME = re.compile(r".*\.fits(\.gz)?")


def _check_relative(rel: str, where: str) -> str:
    """A relative POSIX path of safe components (no '..', no hidden names)."""
    parts = rel.split("/")
    if len(parts) < 2 or any(not _PART.fullmatch(p) or ".." in p for p in parts):
        raise ICError(f"{where}: IC file path {rel!r} is not <instrument>/…/<name>.fits of plain names")
    safe_name(parts[0], "instrument")
    return rel


@dataclass(frozen=True)
class ICEntry:
    """One IC data structure: an HDU of an IC file, with what it is and when it is valid.

    `file` is the POSIX path relative to the IC tree ('ibis/isgr_mask_mod_0001.fits');
    `hdu` the 0-based HDU index (primary = 0), `xtension`/`extname`/`extver` what the
    HDU's header says; `datasum` the FITS DATASUM of that HDU when it was indexed.
    """

    instrument: str
    structure: str
    version: int
    vstart: float
    vstop: float
    file: str
    hdu: int
    xtension: str = "BINTABLE"
    extname: str = ""
    extver: int = 1
    datasum: str = ""

    def valid_at(self, ijd: float) -> bool:
        return self.vstart <= ijd < self.vstop

    def describe(self) -> str:
        return f"v{self.version} [{self.vstart!r}, {self.vstop!r}) {self.file} HDU {self.hdu + 1}"


@dataclass(frozen=True)
class ICSelection:
    """The IC data structure chosen for a time: its entry and the IC tree it is in."""

    entry: ICEntry
    root: Path

    instrument = property(lambda self: self.entry.instrument)
    structure = property(lambda self: self.entry.structure)
    version = property(lambda self: self.entry.version)
    vstart = property(lambda self: self.entry.vstart)
    vstop = property(lambda self: self.entry.vstop)
    file = property(lambda self: self.entry.file)
    hdu = property(lambda self: self.entry.hdu)
    datasum = property(lambda self: self.entry.datasum)

    @property
    def path(self) -> Path:
        return self.root / self.entry.file

    def provenance(self) -> dict:
        """Record for a product's provenance (plain JSON types; `file` relative to the IC tree)."""
        e = self.entry
        return {"kind": "ic", "instrument": e.instrument, "structure": e.structure, "file": e.file,
                "hdu": e.hdu + 1, "version": e.version, "vstart": e.vstart, "vstop": e.vstop, "datasum": e.datasum}

    def check(self) -> None:
        """ICError unless the HDU's data still have the data sum the index recorded."""
        try:
            ff = read_fits(self.path)
            now = _datasum(ff, ff.find(self.entry.hdu))
        except (FitsError, OSError) as exc:
            raise ICError(f"IC {self.entry.structure} {self.path}: {exc}") from exc
        if now != self.entry.datasum:
            raise ICError(f"IC {self.entry.structure} {self.path} HDU {self.entry.hdu + 1} changed since it was "
                          f"indexed (data sum {now}, index says {self.entry.datasum}): rebuild the IC index")


def _number(h: fits.Header, key: str, kind, where: str):
    v = h.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
        raise ICError(f"{where}: keyword {key} = {v!r} is not {'an integer' if kind is int else 'a number'}")
    if kind is float and not math.isfinite(v):
        raise ICError(f"{where}: keyword {key} = {v!r} is not finite")
    return kind(v)


def _datasum(ff, info) -> str:
    """The DATASUM of an HDU's data as it is now (decimal text)."""
    raw = ff.read_bytes(info.data_offset, info.data_size) if info.data_size else b""
    return str(ones_complement_sum(raw) if raw else 0)


def _entries_of_file(path: Path, rel: str, bad_checksum: str) -> list[ICEntry]:
    """IC entries of one file: every extension with VERSION/VSTART/VSTOP (all three)."""
    instrument = rel.split("/")[0]
    try:
        ff = read_fits(path)
    except FitsError as exc:
        raise ICError(f"IC file {path}: {exc}") from exc
    out = []
    for info in ff.hdus[1:]:
        h = info.header
        where = f"IC file {path} HDU {info.index + 1} ({info.extname})"
        have = [k for k in ("VERSION", "VSTART", "VSTOP") if k in h]
        if info.extname == "GROUPING" or not have:
            continue  # not an IC data structure (a grouping, an EBOUNDS companion…)
        if len(have) < 3:
            raise ICError(f"{where}: has {have} but an IC data structure needs VERSION, VSTART and VSTOP")
        version = _number(h, "VERSION", int, where)
        vstart, vstop = _number(h, "VSTART", float, where), _number(h, "VSTOP", float, where)
        if not vstart < vstop:
            raise ICError(f"{where}: VSTART {vstart} is not before VSTOP {vstop}")
        structure = str(h.get("ICSTRUCT", info.extname)).strip()
        if not structure:
            raise ICError(f"{where}: no EXTNAME or ICSTRUCT to name the structure")
        try:
            ds, cs = ff.verify_checksum(info)
            datasum = str(h["DATASUM"]).strip() if ds == "ok" else _datasum(ff, info)
        except (FitsError, OSError) as exc:
            raise ICError(f"{where}: {exc}") from exc
        if "bad" in (ds, cs):
            msg = (f"{where}: checksum verification failed (DATASUM {ds}, CHECKSUM {cs}; the data sum now is "
                   f"{datasum}, the header says {h.get('DATASUM')!r})")
            if bad_checksum != "warn":
                raise ICError(msg + ": corrupt or edited IC file")
            log.warning("%s: indexed with the data sum it has now", msg)
        out.append(ICEntry(instrument, structure, version, vstart, vstop, rel, info.index, info.xtension,
                           info.extname, info.extver, datasum))
    return out


def scan_ic_tree(root: str | os.PathLike, *, bad_checksum: str = "error") -> "ICIndex":
    """Index every IC data structure under `root`/<instrument>/… (*.fits, *.fits.gz).

    Names that are not plain (hidden files, odd characters) and symlinks leading out of
    the tree are skipped with a logged warning; a bad IC file raises ICError naming it.
    An HDU whose DATASUM/CHECKSUM does not verify is an error, or with
    `bad_checksum='warn'` a logged warning (some real ISDC IC files were edited after
    their checksums were written) and the data sum it has now is recorded.
    """
    if bad_checksum not in ("error", "warn"):
        raise ValueError(f"bad_checksum must be 'error' or 'warn', got {bad_checksum!r}")
    root = Path(root).resolve()
    entries = []
    if not root.is_dir():
        raise ICError(f"IC tree {root} is not a folder")
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        here = Path(dirpath)
        for name in sorted(filenames):
            if not _FITS_NAME.fullmatch(name):
                continue
            path = here / name
            rel = path.relative_to(root).as_posix()
            try:
                _check_relative(rel, f"IC tree {root}")
            except (ICError, IdError) as exc:
                log.warning("IC tree %s: ignoring %r: %s", root, rel, exc)
                continue
            if path.is_symlink() and root not in path.resolve().parents:
                log.warning("IC tree %s: ignoring %s: symlink to %s outside the tree", root, rel, path.resolve())
                continue
            entries += _entries_of_file(path, rel, bad_checksum)
    return ICIndex(entries, root)


_AUX = (
    ColumnSpec("INSTRUME", "16A", comment="Instrument folder of the IC tree"),
    ColumnSpec("STRUCTURE", "32A", comment="IC data structure (ICSTRUCT or EXTNAME)"),
    ColumnSpec("VERSION", "1J", comment="Version of the IC data structure"),
    ColumnSpec("VSTART", "1D", unit="d", comment="Start of validity (IJD, inclusive)"),
    ColumnSpec("VSTOP", "1D", unit="d", comment="End of validity (IJD, exclusive)"),
    ColumnSpec("DATASUM", "16A", comment="DATASUM of the IC HDU when indexed"),
)


class ICIndex:
    """IC data structures of one IC tree, selectable by instrument, structure and time.

    Parameters
    ----------
    entries : the IC data structures
    root : the IC tree (`ic/` of an archive, or the shipped `ic_files/`)

    Raises ICError when two entries of the same instrument, structure and version have
    overlapping validity.
    """

    def __init__(self, entries: Iterable[ICEntry], root: str | os.PathLike):
        self.root = Path(root)
        self.entries: list[ICEntry] = sorted(entries, key=lambda e: (e.instrument, e.structure, e.version, e.vstart))
        self._by_key: dict[tuple[str, str], list[ICEntry]] = {}
        for e in self.entries:
            self._by_key.setdefault((e.instrument, e.structure), []).append(e)
        for (inst, struct), group in self._by_key.items():
            for a, b in zip(group, group[1:]):
                if a.version == b.version and b.vstart < a.vstop:
                    raise ICError(f"IC tree {self.root}: {inst} {struct} version {a.version} is given twice for "
                                  f"overlapping times: {a.describe()} and {b.describe()}")

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self):
        return f"ICIndex({str(self.root)!r}, {len(self)} IC structures)"

    def structures(self) -> list[tuple[str, str]]:
        """(instrument, structure) pairs present, sorted."""
        return sorted(self._by_key)

    def select(self, instrument: str, structure: str, ijd: float) -> ICSelection:
        """The IC data structure valid at `ijd` (IJD, TT) with the highest VERSION.

        ICError names instrument, structure and time, and lists the ranges that exist.
        """
        try:
            t = float(ijd)
        except (TypeError, ValueError):
            raise ICError(f"IC {instrument} {structure}: time {ijd!r} is not a number (IJD)") from None
        if not math.isfinite(t):
            raise ICError(f"IC {instrument} {structure}: time {ijd!r} is not finite")
        group = self._by_key.get((instrument, structure))
        if not group:
            have = ", ".join(s for i, s in self.structures() if i == instrument) or "none"
            raise ICError(f"no IC structure {structure} for instrument {instrument} in {self.root} "
                          f"(structures of {instrument}: {have})")
        valid = [e for e in group if e.valid_at(t)]
        if not valid:
            ranges = "; ".join(e.describe() for e in group)
            raise ICError(f"no IC {structure} of {instrument} valid at IJD {t!r} in {self.root} "
                          f"(validity is VSTART <= t < VSTOP; available: {ranges})")
        best = max(valid, key=lambda e: e.version)
        return ICSelection(best, self.root)

    # ---- FITS
    def write(self, path: str | os.PathLike, bound: str | os.PathLike) -> Path:
        """Write the index as a grouping to `path` atomically.

        `bound` is a folder holding both the index and the IC tree (the archive root):
        every location is a relative URL inside it.
        """
        path = Path(path)
        h = fits.Header()
        h["ICROOT"] = (relative_location(path, self.root, bound), "URL of the IC tree relative to this file")
        h["NICSTR"] = (len(self.entries), "Number of IC data structures indexed")
        group = Grouping(IC_INDEX_GRPNAME, aux={s.name: s for s in _AUX}, header=h)
        for e in self.entries:
            loc = relative_location(path, self.root / e.file, bound)
            group.append(Member(e.xtension, e.extname, e.extver, e.hdu + 1, loc, "URL"),
                         {"INSTRUME": e.instrument, "STRUCTURE": e.structure, "VERSION": e.version,
                          "VSTART": e.vstart, "VSTOP": e.vstop, "DATASUM": e.datasum})
        pending = PendingFile(path)
        pending.append(group)
        path.parent.mkdir(parents=True, exist_ok=True)
        return pending.write()


def read_ic_index(path: str | os.PathLike, bound: str | os.PathLike) -> ICIndex:
    """Read an IC index file; every location must lie inside `bound` and the IC tree (ICError)."""
    path = Path(path)
    try:
        g = Grouping.read(path)
        if g.grpname != IC_INDEX_GRPNAME:
            raise ICError(f"IC index {path}: GRPNAME {g.grpname!r}, expected {IC_INDEX_GRPNAME}")
        missing = [s.name for s in _AUX if s.name not in g.aux_names]
        if missing:
            raise ICError(f"IC index {path}: lacks columns {missing}")
        icroot = g.header.get("ICROOT")
        if not isinstance(icroot, str):
            raise ICError(f"IC index {path}: keyword ICROOT missing")
        root = resolve_location(path, icroot, bound)
        entries = []
        for i, m in enumerate(g):
            where = f"IC index {path} row {i + 1}"
            target = resolve_location(path, m.location, bound)
            if root not in target.parents:
                raise ICError(f"{where}: {m.location!r} is outside the IC tree {root}")
            rel = _check_relative(target.relative_to(root).as_posix(), where)
            a = g.aux_row(i)
            if a["INSTRUME"].strip() != rel.split("/")[0]:
                raise ICError(f"{where}: INSTRUME {a['INSTRUME']!r} but the file is in {rel.split('/')[0]}/")
            if m.position is None:
                raise ICError(f"{where}: no MEMBER_POSITION")
            entries.append(ICEntry(a["INSTRUME"].strip(), a["STRUCTURE"].strip(), int(a["VERSION"]), float(a["VSTART"]),
                                   float(a["VSTOP"]), rel, m.position - 1, m.xtension, m.name, m.version or 1,
                                   a["DATASUM"].strip()))
    except (GroupingError, FitsError, IdError) as exc:
        raise ICError(f"IC index {path}: {exc}") from exc
    bad = [e for e in entries if not e.vstart < e.vstop]
    if bad:
        raise ICError(f"IC index {path}: VSTART not before VSTOP for {bad[0].describe()}")
    return ICIndex(entries, root)


def build_ic_index(archive) -> ICIndex:
    """Scan the archive's `ic/` tree and write `idx/ic/ic_master_file.fits`; return the index."""
    index = scan_ic_tree(archive.ic_root())
    index.write(archive.idx_ic(), archive.root)
    return index


_INDEX_CACHE: dict[tuple, ICIndex] = {}


class LayeredICIndex:
    """IC selection over an archive's IC tree with the shipped IC files as defaults.

    A structure is taken from the archive when the archive has any version of it valid
    at the time asked; otherwise from the files shipped with isdc. So an archive can
    override every default (e.g. the simulator's true gain), and needs to hold only what
    it overrides.
    """

    def __init__(self, layers: list[ICIndex]):
        self.layers = layers

    def select(self, instrument: str, structure: str, ijd: float) -> ICSelection:
        errors = []
        for index in self.layers:
            try:
                return index.select(instrument, structure, ijd)
            except ICError as exc:
                errors.append(str(exc))
        raise ICError("; ".join(errors) if errors else f"no IC tree to select {instrument} {structure} from")


def _cached(key, make):
    hit = _INDEX_CACHE.get(key)
    if hit is None:
        if len(_INDEX_CACHE) > 64:
            _INDEX_CACHE.clear()
        hit = _INDEX_CACHE[key] = make()
    return hit


def ic_index_for(archive_root: str | os.PathLike) -> LayeredICIndex:
    """The IC selection a pipeline run uses: the archive's IC files (its `idx/ic` index,
    else a scan of its `ic/` tree) over the IC files shipped with isdc.

    Cached per process by the index file's (or tree's) modification time, so a new IC
    file or a rebuilt index is seen by a long-running daemon.
    """
    from isdc.dal.archive import Archive
    from isdc.resources import data_dir

    archive = Archive(archive_root)
    idx, tree = archive.idx_ic(), archive.ic_root()
    layers = []
    if idx.is_file():
        layers.append(_cached(("idx", str(idx), idx.stat().st_mtime_ns), lambda: read_ic_index(idx, archive.root)))
    elif tree.is_dir():
        stamp = max((p.stat().st_mtime_ns for p in tree.rglob("*")), default=0)
        layers.append(_cached(("tree", str(tree), stamp), lambda: scan_ic_tree(tree)))
    shipped = data_dir("ic_files")
    stamp = max((p.stat().st_mtime_ns for p in shipped.rglob("*")), default=0)
    layers.append(_cached(("shipped", str(shipped), stamp), lambda: scan_ic_tree(shipped)))
    return LayeredICIndex(layers)
