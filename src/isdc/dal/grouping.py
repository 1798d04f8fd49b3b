"""FITS Hierarchical Grouping Convention (Jennings, Pence, Folk & Schlesinger), as ISDC used it.

A *grouping table* is a BINTABLE with ``EXTNAME = 'GROUPING'``, an ``EXTVER`` unique in
its file and a ``GRPNAME`` (``GNRL-SCWG-GRP``, ``ISGR-SKY.-IMA-IDX``...). Each row names
one member HDU:

=================  ======  ===================================================
``MEMBER_XTENSION``  8A    ``PRIMARY``, ``IMAGE``, ``BINTABLE``...
``MEMBER_NAME``     32A    EXTNAME of the member (``GROUPING`` for a nested group)
``MEMBER_VERSION``   1J    EXTVER of the member (TNULL 0: not given)
``MEMBER_POSITION``  1J    1-based HDU number, primary = 1 (TNULL 0: not given)
``MEMBER_LOCATION`` 256A   URL of the member's file relative to the grouping's file;
                           blank = the grouping's own file
``MEMBER_URI_TYPE``  3A    ``URL`` (blank when the location is blank)
=================  ======  ===================================================

Further (*auxiliary*) columns such as SWID, REVOL, TSTART, IMATYPE make a grouping an
*index* that can be selected on (`Grouping.select`). Members point back at each group
they belong to with header keywords ``GRPIDn`` (``+EXTVER`` of the group when it is in
the member's file, ``-EXTVER`` when in another file) and ``GRPLCn`` (URL of the group's
file relative to the member's file). ISDC *indices* (GRPNAME ending in ``-IDX``) over a
read-only archive do not modify their members, so their members may lack back-pointers.

Locations come from files, i.e. from strangers: `resolve_location` accepts only relative
file URLs and never returns a path outside the root folder it is given.

Writing: HDUs are collected in `PendingFile` objects (path + HDUs in file order, so every
HDU's position is known before the file exists); `link` adds a member row to a grouping
and the back-pointer to the member's header; `PendingFile.write` writes atomically with
checksums. `write_group_file` does this for the common one-file case.
"""
from __future__ import annotations

import os
import re
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
from astropy.io import fits

from isdc.dal.fitsfile import ColumnSpec, FitsError, FitsFile, HDUInfo, Image, Table, parse_tform, write_fits

__all__ = [
    "GroupingError",
    "LocationError",
    "OutsideRootError",
    "Member",
    "Grouping",
    "GroupPointer",
    "MemberTarget",
    "PendingFile",
    "FileCache",
    "MEMBER_COLUMNS",
    "is_grouping_hdu",
    "is_index",
    "group_pointers",
    "add_back_pointer",
    "points_to",
    "relative_location",
    "resolve_location",
    "resolve_member",
    "member_of_hdu",
    "link",
    "link_existing",
    "write_group_file",
    "walk",
]

EXTNAME = "GROUPING"

# The reserved columns, in the order ISDC's files have them.
MEMBER_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("MEMBER_XTENSION", "8A", comment="type of the member HDU"),
    ColumnSpec("MEMBER_NAME", "32A", comment="EXTNAME of the member HDU"),
    ColumnSpec("MEMBER_VERSION", "1J", comment="EXTVER of the member HDU", tnull=0),
    ColumnSpec("MEMBER_POSITION", "1J", comment="HDU number of the member (primary = 1)", tnull=0),
    ColumnSpec("MEMBER_LOCATION", "256A", comment="URL of the member's file (blank: this file)"),
    ColumnSpec("MEMBER_URI_TYPE", "3A", comment="type of MEMBER_LOCATION"),
)
_RESERVED = {s.name: s for s in MEMBER_COLUMNS}
_WIDTH = {s.name: s.repeat for s in MEMBER_COLUMNS if s.code == "A"}
# Keywords a Grouping keeps as attributes or that belong to the table layout, not to .header.
_OWN_KEYS = re.compile(r"^(EXTNAME|EXTVER|GRPNAME|DATE)$")
_STRUCTURAL = re.compile(
    r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|TFIELDS|EXTEND|T(TYPE|FORM|UNIT|NULL|ZERO|SCAL|DIM|DISP)\d+|"
    r"THEAP|CHECKSUM|DATASUM|END)$"
)
_GRPID = re.compile(r"^GRPID(\d+)$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
# A relative path of safe characters needs no further checks (no scheme: no ':').
_PLAIN = re.compile(r"[A-Za-z0-9._\-][A-Za-z0-9._\-/]*\Z")


class GroupingError(FitsError):
    """A grouping that cannot be built, read or resolved; the message names file and problem."""


class LocationError(GroupingError):
    """A member or group location that is refused: not a relative file URL, or outside the root."""


class OutsideRootError(LocationError):
    """A well-formed relative location that leads (or links) outside the allowed root folder."""


# --------------------------------------------------------------------------- members

@dataclass(frozen=True)
class Member:
    """One row of a grouping table.

    Parameters
    ----------
    xtension : 'PRIMARY', 'IMAGE', 'BINTABLE', ... ('' when the table has no such column)
    name : EXTNAME of the member HDU ('GROUPING' for a nested group)
    version : EXTVER of the member, None when not given (stored as the null value 0)
    position : 1-based HDU number in its file (primary = 1), None when not given
    location : URL of the member's file relative to the grouping's file; '' = same file
    uri_type : 'URL', or '' for members in the grouping's own file
    """

    xtension: str
    name: str
    version: int | None = None
    position: int | None = None
    location: str = ""
    uri_type: str = ""

    @property
    def is_group(self) -> bool:
        """True when the member is itself a grouping table (a nested group)."""
        return self.name == EXTNAME and self.xtension in ("BINTABLE", "")

    @property
    def same_file(self) -> bool:
        return self.location == ""

    def describe(self) -> str:
        v = f" v{self.version}" if self.version is not None else ""
        pos = f" HDU {self.position}" if self.position is not None else ""
        where = f" in {self.location}" if self.location else ""
        return f"{self.xtension or '?'} {self.name or '?'}{v}{pos}{where}"


def _xtension_of(hdu: Table | Image | "Grouping", position: int) -> str:
    if isinstance(hdu, (Table, Grouping)):
        return "BINTABLE"
    return "PRIMARY" if position == 1 else "IMAGE"


def _extver_of(header: fits.Header) -> int | None:
    v = header.get("EXTVER")
    return int(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else None


def member_of_hdu(hdu: Table | Image | "Grouping", position: int, location: str = "") -> Member:
    """The grouping row naming `hdu`, found at 1-based `position` of the file at `location`."""
    if isinstance(hdu, Grouping):
        return Member("BINTABLE", EXTNAME, hdu.extver, position, location, "URL" if location else "")
    name = str(hdu.header.get("EXTNAME", "")).strip()
    return Member(_xtension_of(hdu, position), name, _extver_of(hdu.header), position, location,
                  "URL" if location else "")


# --------------------------------------------------------------------------- the table

def _spec(name: str, spec: str | ColumnSpec) -> ColumnSpec:
    if isinstance(spec, ColumnSpec):
        if spec.name != name:
            raise GroupingError(f"auxiliary column {name!r} declared with a ColumnSpec named {spec.name!r}")
        s = spec
    else:
        s = ColumnSpec(name, str(spec))
    try:
        rep, code, _ = parse_tform(s.tform)
    except FitsError as exc:
        raise GroupingError(f"auxiliary column {name}: {exc}") from exc
    if code in "PQX":
        raise GroupingError(f"auxiliary column {name}: TFORM {s.tform} is not supported")
    if name in _RESERVED:
        raise GroupingError(f"auxiliary column {name} is a reserved grouping column")
    return s


def _cell_array(spec: ColumnSpec, values: Sequence, where: str) -> np.ndarray:
    """Column values as a native array fit for `spec` (strings checked against their width)."""
    rep, code, _ = parse_tform(spec.tform)
    if code == "A":
        arr = np.asarray([("" if v is None else str(v)) for v in values], dtype=str)
        if arr.size == 0:
            return np.zeros(0, dtype=f"U{rep}")
        long = np.char.str_len(arr) > rep
        if long.any():
            i = int(np.flatnonzero(long)[0])
            raise GroupingError(f"{where}: column {spec.name} row {i + 1}: {arr[i]!r} is longer than {rep} characters")
        try:
            np.char.encode(arr, "ascii")
        except UnicodeEncodeError:
            i = next(i for i, v in enumerate(arr) if not v.isascii())
            raise GroupingError(f"{where}: column {spec.name} row {i + 1}: {arr[i]!r} is not ASCII") from None
        return arr
    if code == "L":
        return np.asarray(values, dtype=bool)
    arr = np.asarray(values)
    if code in "BIJK":
        if arr.size and arr.dtype.kind not in "iub":
            raise GroupingError(f"{where}: column {spec.name} ({spec.tform}) needs integers, got {arr.dtype}")
        bits = {"B": 8, "I": 16, "J": 32, "K": 64}[code]
        zero = int(spec.tzero or 0)
        lo, hi = (0, 2**bits - 1) if code == "B" else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        lo, hi = lo + zero, hi + zero
        if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
            raise GroupingError(f"{where}: column {spec.name}: values {arr.min()}..{arr.max()} do not fit {spec.tform}")
        return arr.astype(np.int64 if arr.dtype.kind != "u" else np.uint64).reshape((len(arr),) + (() if rep == 1 else (rep,)))
    if arr.size and arr.dtype.kind not in "iufb":
        raise GroupingError(f"{where}: column {spec.name} ({spec.tform}) needs numbers, got {arr.dtype}")
    return arr.astype(np.float64 if code in "ED" else np.complex128)


class Grouping:
    """A grouping table in memory: its name, version, member rows and auxiliary columns.

    Parameters
    ----------
    grpname : GRPNAME, e.g. 'GNRL-SCWG-GRP' or 'GNRL-SCWG-GRP-IDX'
    extver : EXTVER of the table in its file (unique among the file's groupings)
    aux : auxiliary columns, name -> TFORM ('12A', '1J', '1D'...) or ColumnSpec (for units)
    header : further keywords of the table (SWID, REVOL, TSTART...); back-pointers of a
        nested group (GRPIDn/GRPLCn) live here too

    Rows are stored by column (lists while being appended, arrays once read or selected),
    so an index of 1e5 science windows is selected on with numpy.
    """

    def __init__(self, grpname: str, *, extver: int = 1, aux: Mapping[str, str | ColumnSpec] | None = None,
                 header: fits.Header | Mapping | None = None):
        if not isinstance(grpname, str) or not grpname.strip() or len(grpname) > 68 or not grpname.isascii():
            raise GroupingError(f"GRPNAME must be a non-empty ASCII string of at most 68 characters, got {grpname!r}")
        if not isinstance(extver, (int, np.integer)) or isinstance(extver, bool) or extver < 1:
            raise GroupingError(f"grouping {grpname}: EXTVER must be a positive integer, got {extver!r}")
        self.grpname = grpname.strip()
        self.extver = int(extver)
        self.aux_specs: list[ColumnSpec] = [_spec(k, v) for k, v in (aux or {}).items()]
        self.header = fits.Header()
        for card in fits.Header(header or {}).cards:
            if not (_OWN_KEYS.match(card.keyword) or _STRUCTURAL.match(card.keyword)):
                self.header.append(card, end=True)
        self._cols: dict[str, list | np.ndarray] = {s.name: [] for s in (*MEMBER_COLUMNS, *self.aux_specs)}

    # ---- size and columns
    def __len__(self) -> int:
        return len(self._cols["MEMBER_XTENSION"])

    def __repr__(self) -> str:
        return f"Grouping({self.grpname!r}, extver={self.extver}, {len(self)} members, aux={self.aux_names})"

    @property
    def aux_names(self) -> list[str]:
        return [s.name for s in self.aux_specs]

    @property
    def is_index(self) -> bool:
        return is_index(self.grpname)

    def column(self, name: str) -> np.ndarray:
        """A reserved or auxiliary column as an array (MEMBER_VERSION/POSITION: 0 = null)."""
        if name not in self._cols:
            raise GroupingError(f"grouping {self.grpname}: no column {name!r} (has {list(self._cols)})")
        col = self._cols[name]
        if isinstance(col, list):
            spec = _RESERVED.get(name) or next(s for s in self.aux_specs if s.name == name)
            if name in ("MEMBER_VERSION", "MEMBER_POSITION"):
                col = np.asarray([0 if v is None else v for v in col], dtype=np.int64)
            else:
                col = _cell_array(spec, col, f"grouping {self.grpname}")
            self._cols[name] = col
        return col

    __getitem__ = column

    # ---- rows
    def member(self, i: int) -> Member:
        c = self._cols
        v, p = c["MEMBER_VERSION"][i], c["MEMBER_POSITION"][i]
        return Member(str(c["MEMBER_XTENSION"][i]), str(c["MEMBER_NAME"][i]),
                      None if v in (None, 0) else int(v), None if p in (None, 0) else int(p),
                      str(c["MEMBER_LOCATION"][i]), str(c["MEMBER_URI_TYPE"][i]))

    @property
    def members(self) -> list[Member]:
        return [self.member(i) for i in range(len(self))]

    def __iter__(self) -> Iterator[Member]:
        return (self.member(i) for i in range(len(self)))

    def aux_row(self, i: int) -> dict[str, Any]:
        """Auxiliary values of row `i` (0-based) as Python scalars."""
        out = {}
        for name in self.aux_names:
            v = self._cols[name][i]
            out[name] = v.item() if isinstance(v, np.generic) else v
        return out

    def append(self, member: Member, aux: Mapping[str, Any] | None = None) -> int:
        """Add a member row (every auxiliary column needs a value); return its 0-based row."""
        aux = dict(aux or {})
        unknown = set(aux) - set(self.aux_names)
        if unknown:
            raise GroupingError(f"grouping {self.grpname}: no auxiliary columns {sorted(unknown)} (declared: {self.aux_names})")
        missing = [n for n in self.aux_names if n not in aux]
        if missing:
            raise GroupingError(f"grouping {self.grpname}: member {member.describe()}: no value for {missing}")
        for name, w in _WIDTH.items():
            value = getattr(member, _FIELD[name])
            if not isinstance(value, str) or len(value) > w or not value.isascii():
                raise GroupingError(f"grouping {self.grpname}: {name} {value!r} is not ASCII text of at most {w} characters")
        for name in ("MEMBER_VERSION", "MEMBER_POSITION"):
            value = getattr(member, _FIELD[name])
            if value is not None and (not isinstance(value, (int, np.integer)) or not 0 < value < 2**31):
                raise GroupingError(f"grouping {self.grpname}: {name} {value!r} is not a positive 32-bit integer")
        if member.location:
            _location_path(member.location, f"grouping {self.grpname}")
        row = {**{n: getattr(member, f) for n, f in _FIELD.items()}, **aux}
        for name, col in self._cols.items():
            if not isinstance(col, list):
                col = self._cols[name] = col.tolist()
            col.append(row[name])
        return len(self) - 1

    # ---- selection
    def take(self, rows: Sequence[int] | np.ndarray) -> "Grouping":
        """A new grouping with the given rows (indices or a boolean mask), same name and columns.

        The copy keeps the header's keywords but not its back-pointers (GRPIDn/GRPLCn):
        a selection is not a member of the original's parents.
        """
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if rows.shape != (len(self),):
                raise GroupingError(f"grouping {self.grpname}: mask of shape {rows.shape} for {len(self)} rows")
            rows = np.flatnonzero(rows)
        out = Grouping(self.grpname, extver=self.extver, aux={s.name: s for s in self.aux_specs})
        for card in self.header.cards:
            if not re.match(r"^GRP(ID|LC)\d+$", card.keyword):
                out.header.append(card, end=True)
        for name in self._cols:
            out._cols[name] = self.column(name)[rows.astype(np.int64)]
        return out

    def select(self, **conditions) -> "Grouping":
        """Rows meeting every condition, as a new grouping (see `take`).

        Each keyword names a column; its value is
        - a callable: called with the column array, returns a boolean mask;
        - a 2-tuple ``(lo, hi)``: ``lo <= value <= hi`` (None for an open end);
        - a str or a number: equality (text compared without trailing blanks);
        - any other iterable (list, set, array): membership.

        Example: ``idx.select(SWID={'066500280010', '066500290010'}, TSTART=(3000.0, None))``.
        """
        mask = np.ones(len(self), dtype=bool)
        for name, cond in conditions.items():
            col = self.column(name)
            if callable(cond):
                m = np.asarray(cond(col), dtype=bool)
                if m.shape != mask.shape:
                    raise GroupingError(f"grouping {self.grpname}: condition on {name} returned shape {m.shape}")
            elif isinstance(cond, tuple):
                if len(cond) != 2:
                    raise GroupingError(f"grouping {self.grpname}: range condition on {name} needs (lo, hi), got {cond!r}")
                lo, hi = cond
                m = np.ones(len(self), dtype=bool)
                if lo is not None:
                    m &= col >= lo
                if hi is not None:
                    m &= col <= hi
            elif isinstance(cond, (str, bytes, int, float, np.generic)):
                m = (np.char.rstrip(col) == str(cond).rstrip()) if col.dtype.kind == "U" else (col == cond)
            else:
                m = np.isin(col, list(cond))
            mask &= m
        return self.take(mask)

    # ---- conversion
    def to_table(self) -> Table:
        """The grouping as a BINTABLE HDU (EXTNAME 'GROUPING'), ready for write_fits."""
        where = f"grouping {self.grpname} v{self.extver}"
        h = fits.Header()
        h["EXTNAME"] = (EXTNAME, "HDU contains a Grouping Table")
        h["EXTVER"] = (self.extver, "Grouping Table vers. (this file)")
        if self.grpname:
            h["GRPNAME"] = (self.grpname, "Grouping Table name")
        for card in self.header.cards:
            h.append(card, end=True)
        for i, (loc, uri) in enumerate(zip(self._cols["MEMBER_LOCATION"], self._cols["MEMBER_URI_TYPE"])):
            loc, uri = str(loc).strip(" "), str(uri).strip(" ")
            if loc and not _PLAIN.match(loc):  # most archive paths are plain: skip the full check
                _location_path(loc, f"{where} row {i + 1}")
            if uri not in ("", "URL") or (loc and uri != "URL"):
                raise GroupingError(f"{where} row {i + 1}: MEMBER_URI_TYPE {uri!r} for location {loc!r} (want 'URL')")
        specs = [ColumnSpec(**vars(s)) for s in (*MEMBER_COLUMNS, *self.aux_specs)]
        cols = {s.name: self.column(s.name) for s in specs}
        return Table(cols, h, specs)

    @classmethod
    def from_table(cls, table: Table, where: str = "") -> "Grouping":
        """Read a grouping from a BINTABLE read by FitsFile.table (any subset of the reserved columns).

        The convention allows a table that identifies members by reference (XTENSION,
        NAME, VERSION) or by position only; absent columns read as '' / None. Raises
        GroupingError for a table that is not a grouping or has wrongly typed columns.
        """
        h = table.header
        where = where or "table"
        extname = str(h.get("EXTNAME", "")).strip()
        if extname != EXTNAME:
            raise GroupingError(f"{where}: EXTNAME is {extname!r}, not {EXTNAME!r}")
        extver = h.get("EXTVER", 1)
        if not isinstance(extver, (int, np.integer)) or isinstance(extver, bool) or extver < 1:
            raise GroupingError(f"{where}: EXTVER {extver!r} is not a positive integer")
        grpname = h.get("GRPNAME", "")
        if not isinstance(grpname, str):
            raise GroupingError(f"{where}: GRPNAME {grpname!r} is not a string")
        specs = {s.name: s for s in table.specs}
        if "MEMBER_NAME" not in specs and "MEMBER_POSITION" not in specs:
            raise GroupingError(f"{where}: a grouping table needs MEMBER_NAME or MEMBER_POSITION; columns are {list(specs)}")
        for name, want in _RESERVED.items():
            s = specs.get(name)
            if s is None:
                continue
            if (want.code == "A") != (s.code == "A") or (want.code != "A" and s.code not in "BIJK") or s.repeat != 1 and s.code != "A":
                raise GroupingError(f"{where}: column {name} has TFORM {s.tform}, the convention wants {want.tform}")
        g = cls("GROUPING", extver=int(extver), header=h,
                aux={s.name: s for s in table.specs if s.name not in _RESERVED and s.code not in "PQX"})
        g.grpname = grpname.strip()  # GRPNAME is optional in the convention; we always write one
        n = table.nrows
        for name in _RESERVED:
            if name in specs:
                col = np.asarray(table.columns[name])
                if name in ("MEMBER_VERSION", "MEMBER_POSITION"):
                    null = specs[name].tnull
                    col = col.astype(np.int64)
                    if null not in (None, 0):
                        col = np.where(col == int(null), 0, col)
                else:
                    col = np.char.strip(col.astype(str), " ") if col.size else np.zeros(0, dtype="U1")
            else:
                col = np.zeros(n, dtype=np.int64) if name in ("MEMBER_VERSION", "MEMBER_POSITION") else np.full(n, "", dtype="U1")
            g._cols[name] = col
        for s in g.aux_specs:
            g._cols[s.name] = np.asarray(table.columns[s.name])
        return g

    @classmethod
    def read(cls, source: str | os.PathLike | FitsFile, extver: int | None = None) -> "Grouping":
        """The grouping table of a file (the one with this EXTVER, or the file's only one)."""
        ff = source if isinstance(source, FitsFile) else FitsFile(source)
        infos = grouping_hdus(ff)
        if extver is not None:
            infos = [i for i in infos if _extver_of(i.header) == extver or (extver == 1 and "EXTVER" not in i.header)]
        if not infos:
            raise GroupingError(f"{ff.path}: no GROUPING table" + (f" with EXTVER {extver}" if extver is not None else ""))
        if len(infos) > 1:
            raise GroupingError(f"{ff.path}: {len(infos)} GROUPING tables; give extver "
                                f"(one of {[_extver_of(i.header) for i in infos]})")
        return cls.from_table(ff.table(infos[0].index), f"{ff.path} HDU {infos[0].index + 1}")


_FIELD = {"MEMBER_XTENSION": "xtension", "MEMBER_NAME": "name", "MEMBER_VERSION": "version",
          "MEMBER_POSITION": "position", "MEMBER_LOCATION": "location", "MEMBER_URI_TYPE": "uri_type"}


def is_index(grpname: str) -> bool:
    """True for an ISDC index (GRPNAME '...-IDX'): a grouping that does not modify its members."""
    return str(grpname).strip().upper().endswith("-IDX")


def is_grouping_hdu(info: HDUInfo) -> bool:
    return info.index > 0 and info.xtension == "BINTABLE" and info.extname == EXTNAME


def grouping_hdus(ff: FitsFile) -> list[HDUInfo]:
    """The grouping tables of an open file, in file order."""
    return [i for i in ff.hdus if is_grouping_hdu(i)]


# --------------------------------------------------------------------------- back-pointers

@dataclass(frozen=True)
class GroupPointer:
    """A member's GRPIDn/GRPLCn pair: the group's EXTVER and where its file is.

    ``extver`` is signed as in the header: > 0 the group is in the member's own file,
    < 0 it is in the file at ``location`` (relative to the member's file).
    """

    n: int
    extver: int
    location: str = ""

    @property
    def same_file(self) -> bool:
        return self.extver > 0

    def __str__(self) -> str:
        return f"GRPID{self.n}={self.extver}" + (f", GRPLC{self.n}={self.location!r}" if self.location else "")


def group_pointers(header: fits.Header, where: str = "") -> list[GroupPointer]:
    """Every GRPIDn/GRPLCn pair of a header, by n. GroupingError for malformed pairs."""
    where = where or "header"
    out = []
    for key in header.keys():
        m = _GRPID.match(key)
        if not m:
            continue
        n = int(m.group(1))
        v = header[key]
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v == 0:
            raise GroupingError(f"{where}: {key} = {v!r} is not a non-zero integer")
        loc = header.get(f"GRPLC{n}", "")
        if not isinstance(loc, str):
            raise GroupingError(f"{where}: GRPLC{n} = {loc!r} is not a string")
        loc = loc.strip(" ")
        if v < 0 and not loc:
            raise GroupingError(f"{where}: {key} = {v} names a group in another file but GRPLC{n} is missing")
        out.append(GroupPointer(n, int(v), loc))
    return sorted(out, key=lambda p: p.n)


def add_back_pointer(hdu: Table | Image | Grouping, group_extver: int, group_location: str = "") -> int:
    """Add GRPIDn (and GRPLCn) to an HDU's header before it is written; return n.

    `group_location` is the URL of the group's file relative to the member's file ('' when
    the group is in the same file: GRPIDn = +extver, else GRPIDn = -extver). Adding a
    pointer that is already there changes nothing.
    """
    if group_extver < 1:
        raise GroupingError(f"group EXTVER must be positive, got {group_extver}")
    if group_location:
        _location_path(group_location, "back-pointer")
    h = hdu.header
    want = GroupPointer(0, -group_extver if group_location else group_extver, group_location)
    existing = group_pointers(h, f"HDU {getattr(hdu, 'name', '')}")
    for p in existing:
        if (p.extver, p.location) == (want.extver, want.location):
            return p.n
    n = max((p.n for p in existing), default=0) + 1
    h[f"GRPID{n}"] = (want.extver, "EXTVER of Group containing this HDU")
    if group_location:
        if len(group_location) > 60 and "LONGSTRN" not in h:
            # a long URL takes CONTINUE cards (OGIP long-string convention), which fitsverify
            # wants announced by LONGSTRN
            h["LONGSTRN"] = ("OGIP 1.0", "The OGIP long string convention may be used")
        h[f"GRPLC{n}"] = (group_location, "URL of file containing Group")
    return n


def points_to(header: fits.Header, member_path: Path, group_path: Path, group_extver: int, root: Path,
              where: str = "") -> bool:
    """True when a member HDU in `member_path` has a back-pointer to group `group_extver` of `group_path`."""
    same = _same_path(member_path, group_path)
    for p in group_pointers(header, where):
        if abs(p.extver) != group_extver:
            continue
        if p.same_file:
            if same:
                return True
            continue
        try:
            if _same_path(resolve_location(member_path, p.location, root), group_path):
                return True
        except GroupingError:
            continue
    return False


# --------------------------------------------------------------------------- locations

def _bad_chars(s: str) -> str | None:
    for c in s:
        if ord(c) < 32 or ord(c) == 127:
            return f"control character {c!r}"
    if "\\" in s:
        return "backslash"
    return None


def _location_path(location: str, where: str) -> str:
    """The relative POSIX path a location URL stands for; GroupingError for anything else.

    Only relative file URLs are allowed: no scheme (file:, http:...), no absolute or
    network path ('/x', '//host/x'), no query or fragment, no control characters, NUL or
    backslash; percent escapes are decoded and the decoded path is checked again.
    """
    if not isinstance(location, str):
        raise LocationError(f"{where}: location {location!r} is not text")
    loc = location.strip(" ")  # FITS pads with blanks; other white space is refused below
    try:
        decoded = urllib.parse.unquote(loc, errors="strict")
    except UnicodeDecodeError as exc:
        raise LocationError(f"{where}: location {location!r}: bad percent escape ({exc})") from None
    # URL syntax is judged on the text as written (an escaped ':' or '?' is a plain
    # character of a file name); what the path means is judged again after decoding.
    if _SCHEME.match(loc):
        raise LocationError(f"{where}: location {location!r} is an absolute URL; only relative file locations are allowed")
    if "?" in loc or "#" in loc:
        raise LocationError(f"{where}: location {location!r} has a query or fragment; only plain file locations are allowed")
    for text in (loc, decoded):
        problem = _bad_chars(text)
        if problem:
            raise LocationError(f"{where}: location {location!r} contains a {problem}")
        if text.startswith("/"):
            raise LocationError(f"{where}: location {location!r} is an absolute path; only relative file locations are allowed")
    return decoded


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _root(root: str | os.PathLike) -> str:
    try:
        return os.path.realpath(os.fspath(root))
    except (OSError, ValueError, TypeError) as exc:
        raise GroupingError(f"bad root folder {root!r}: {exc}") from None


def resolve_location(base_file: str | os.PathLike, location: str, root: str | os.PathLike) -> Path:
    """The file a location names, relative to the folder of `base_file`, inside `root`.

    `location` is a MEMBER_LOCATION (base = the grouping's file) or a GRPLCn (base = the
    member's file); '' means `base_file` itself. The result is a real path (symbolic
    links resolved) that lies inside the real `root`; anything else raises GroupingError
    (OutsideRootError for a relative path that climbs or links out of the root). The file
    need not exist.
    """
    r = _root(root)
    where = f"{base_file}"
    rel = _location_path(location, where)
    try:
        base = os.path.realpath(os.fspath(base_file))
        if not _inside(base, r):
            raise OutsideRootError(f"{base_file}: not inside the root folder {r}")
        if rel == "":
            return Path(base)
        lexical = os.path.normpath(os.path.join(os.path.dirname(base), rel))
        if not _inside(lexical, r):
            raise OutsideRootError(f"{where}: location {location!r} leads outside the root folder {r}")
        real = os.path.realpath(lexical)
    except (OSError, ValueError) as exc:
        raise GroupingError(f"{where}: location {location!r}: {exc}") from None
    if not _inside(real, r):
        raise OutsideRootError(f"{where}: location {location!r} links outside the root folder {r}")
    return Path(real)


def relative_location(from_file: str | os.PathLike, to_file: str | os.PathLike, root: str | os.PathLike) -> str:
    """URL of `to_file` relative to the folder of `from_file` ('' when they are the same file).

    Both files must lie inside `root` (GroupingError otherwise); special characters are
    percent-encoded, so `resolve_location(from_file, result, root)` gives back `to_file`.
    """
    r = _root(root)
    a, b = os.path.realpath(os.fspath(from_file)), os.path.realpath(os.fspath(to_file))
    for p, orig in ((a, from_file), (b, to_file)):
        if not _inside(p, r):
            raise OutsideRootError(f"{orig}: not inside the root folder {r}")
    if a == b:
        return ""
    rel = os.path.relpath(b, os.path.dirname(a)).replace(os.sep, "/")
    # ':' is escaped too, so no name reads as a scheme. No length limit here: GRPLCn may
    # continue over several cards; Grouping.append holds MEMBER_LOCATION to 256 characters.
    return urllib.parse.quote(rel, safe="/")


def _same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    return os.path.realpath(os.fspath(a)) == os.path.realpath(os.fspath(b))


# --------------------------------------------------------------------------- resolving

@dataclass(frozen=True)
class MemberTarget:
    """Where a member row leads: the real path of its file and the 0-based HDU index.

    ``by`` is 'position' when MEMBER_POSITION named the HDU, 'name' when it was found
    by MEMBER_NAME/MEMBER_VERSION (``stale_position`` then holds the position the row
    gave, if any, that did not match).
    """

    path: Path
    index: int
    by: str = "position"
    stale_position: int | None = None

    @property
    def position(self) -> int:
        return self.index + 1


class FileCache:
    """Opened FitsFiles by real path, the `size` most recent kept (a .gz is held in memory)."""

    def __init__(self, size: int = 32):
        self.size = size
        self._files: OrderedDict[str, FitsFile] = OrderedDict()

    def __call__(self, path: str | os.PathLike) -> FitsFile:
        key = os.path.realpath(os.fspath(path))
        ff = self._files.pop(key, None)
        if ff is None:
            ff = FitsFile(key)
        self._files[key] = ff
        while len(self._files) > self.size:
            self._files.popitem(last=False)
        return ff


def _hdu_matches(info: HDUInfo, m: Member) -> bool:
    if m.xtension and m.xtension.upper() != info.xtension.upper():
        # ISDC wrote 'IMAGE' for images; a primary array listed as IMAGE is accepted.
        if not (info.index == 0 and m.xtension.upper() == "IMAGE"):
            return False
    if m.name and m.name != info.extname:
        return False
    if m.version is not None and m.version != _extver_of(info.header) and not (
        m.version == 1 and "EXTVER" not in info.header
    ):
        return False
    return True


def resolve_member(group_path: str | os.PathLike, member: Member, root: str | os.PathLike,
                   opener: Callable[[str], FitsFile] | None = None) -> MemberTarget:
    """Find the HDU a grouping row names: the file from MEMBER_LOCATION (inside `root`),
    the HDU at MEMBER_POSITION if it matches MEMBER_XTENSION/NAME/VERSION, else the
    unique HDU with that NAME/VERSION. GroupingError names the file and what is wrong.
    """
    opener = opener or FitsFile
    if member.uri_type not in ("", "URL"):
        raise GroupingError(f"{group_path}: member {member.describe()}: MEMBER_URI_TYPE {member.uri_type!r} is not 'URL'")
    path = resolve_location(group_path, member.location, root)
    if not path.is_file():
        raise GroupingError(f"{group_path}: member {member.describe()}: file {path} does not exist")
    try:
        ff = opener(str(path))
    except FitsError as exc:
        raise GroupingError(f"{group_path}: member {member.describe()}: {exc}") from None
    if member.position is not None:
        if 1 <= member.position <= len(ff.hdus) and _hdu_matches(ff.hdus[member.position - 1], member):
            return MemberTarget(path, member.position - 1)
    if member.name:
        hits = [i for i in ff.hdus if _hdu_matches(i, member)]
        if len(hits) == 1:
            return MemberTarget(path, hits[0].index, "name", member.position)
        if len(hits) > 1:
            raise GroupingError(f"{group_path}: member {member.describe()}: {len(hits)} HDUs of {path} match "
                                f"and MEMBER_POSITION does not pick one")
    if member.position is not None and not 1 <= member.position <= len(ff.hdus):
        raise GroupingError(f"{group_path}: member {member.describe()}: {path} has no HDU {member.position} "
                            f"(it has {len(ff.hdus)})")
    if member.position is not None:
        got = ff.hdus[member.position - 1]
        raise GroupingError(f"{group_path}: member {member.describe()}: HDU {member.position} of {path} is "
                            f"{got.xtension} {got.extname} v{_extver_of(got.header)}, and no HDU matches by name")
    raise GroupingError(f"{group_path}: member {member.describe()}: no HDU of {path} matches")


@dataclass(frozen=True)
class WalkStep:
    """One member met while walking a grouping tree (depth 1 = a member of the top group)."""

    depth: int
    group_path: Path
    grouping: Grouping
    row: int
    member: Member
    target: MemberTarget


def walk(path: str | os.PathLike, root: str | os.PathLike, extver: int | None = None,
         opener: Callable[[str], FitsFile] | None = None) -> Iterator[WalkStep]:
    """Every member of a grouping and, depth first, of the groups nested in it.

    A group met twice (a cycle, or a group listed by two parents) is descended into only
    once. Raises GroupingError at the first member that does not resolve.
    """
    opener = opener or FileCache()
    top = resolve_location(path, "", root)
    seen: set[tuple[str, int]] = set()

    def visit(gpath: Path, g: Grouping, depth: int) -> Iterator[WalkStep]:
        seen.add((str(gpath), g.extver))
        for i, m in enumerate(g):
            t = resolve_member(gpath, m, root, opener)
            yield WalkStep(depth, gpath, g, i, m, t)
            info = opener(str(t.path)).hdus[t.index]
            if is_grouping_hdu(info):
                key = (str(t.path), _extver_of(info.header) or 1)
                if key not in seen:
                    ff = opener(str(t.path))
                    child = Grouping.from_table(ff.table(t.index), f"{t.path} HDU {t.position}")
                    yield from visit(t.path, child, depth + 1)

    yield from visit(top, Grouping.read(opener(str(top)), extver), 1)


# --------------------------------------------------------------------------- writing

class PendingFile:
    """A FITS file about to be written: its path and its HDUs in file order, primary first.

    An HDU's position (1-based, primary = 1) is fixed when it is appended, so grouping
    rows can name it before the file exists; HDUs are only ever appended. `write` turns
    Grouping objects into tables and writes the file atomically with checksums.
    """

    def __init__(self, path: str | os.PathLike, primary: Image | None = None):
        self.path = Path(path)
        if primary is not None and not isinstance(primary, Image):
            raise GroupingError(f"{self.path}: the primary HDU must be an Image")
        self.hdus: list[Table | Image | Grouping] = [primary if primary is not None else Image()]

    def __repr__(self) -> str:
        return f"PendingFile({str(self.path)!r}, {len(self.hdus)} HDUs)"

    def append(self, hdu: Table | Image | Grouping) -> int:
        """Add an HDU at the end; return its 1-based position."""
        if not isinstance(hdu, (Table, Image, Grouping)):
            raise GroupingError(f"{self.path}: cannot hold a {type(hdu).__name__}")
        if any(h is hdu for h in self.hdus):
            raise GroupingError(f"{self.path}: this HDU is already in the file")
        if isinstance(hdu, Grouping):
            used = [g.extver for g in self.hdus if isinstance(g, Grouping)]
            if hdu.extver in used:
                raise GroupingError(f"{self.path}: a grouping with EXTVER {hdu.extver} is already in the file "
                                    f"(give each grouping of a file its own extver)")
        self.hdus.append(hdu)
        return len(self.hdus)

    def position(self, hdu: Table | Image | Grouping) -> int:
        """1-based position of an HDU that was appended (the primary is 1)."""
        for i, h in enumerate(self.hdus):
            if h is hdu:
                return i + 1
        raise GroupingError(f"{self.path}: HDU {getattr(hdu, 'name', '') or hdu!r} was not appended to this file")

    def write(self, *, durable: bool = True) -> Path:
        """Write the file (groupings as GROUPING tables) atomically with checksums."""
        out = [h.to_table() if isinstance(h, Grouping) else h for h in self.hdus]
        return write_fits(self.path, out, durable=durable)


def link(group: Grouping, group_file: PendingFile, member: Table | Image | Grouping,
         member_file: PendingFile | None = None, *, root: str | os.PathLike | None = None,
         aux: Mapping[str, Any] | None = None, back_pointer: bool = True) -> Member:
    """Make `member` (already appended to `member_file`) a member of `group` (appended to
    `group_file`): add its row to the group and, unless `back_pointer` is False, its
    GRPIDn/GRPLCn back-pointer to the member's header. Neither file is written yet.

    `member_file` defaults to `group_file`. Members in another file need `root`, the
    folder both files must lie in; locations are relative URLs between the two files.
    """
    member_file = member_file or group_file
    group_file.position(group)  # the group must live in the file it is said to
    position = member_file.position(member)
    same = member_file is group_file or _same_path(member_file.path, group_file.path)
    if same:
        location = back = ""
    else:
        if root is None:
            raise GroupingError(f"{group_file.path}: member in {member_file.path} needs the archive root to link")
        location = relative_location(group_file.path, member_file.path, root)
        back = relative_location(member_file.path, group_file.path, root)
    row = member_of_hdu(member, position, location)
    group.append(row, aux)
    if back_pointer:
        add_back_pointer(member, group.extver, back)
    return row


def link_existing(group: Grouping, group_file: PendingFile, member_path: str | os.PathLike, ext: str | int,
                  *, root: str | os.PathLike, extver: int | None = None, aux: Mapping[str, Any] | None = None,
                  opener: Callable[[str], FitsFile] | None = None) -> Member:
    """Add an HDU of a file that is already written (e.g. a ScW's swg.fits in the archive)
    to `group`. The member file is not modified, so it gets no back-pointer: use this for
    indices ('...-IDX'), which by ISDC convention leave their members untouched.

    `ext` is an EXTNAME (with `extver`) or a 0-based HDU index.
    """
    group_file.position(group)
    ff = (opener or FitsFile)(str(member_path))
    info = ff.find(ext, extver)
    location = relative_location(group_file.path, member_path, root)
    row = Member(info.xtension, info.extname if info.index or "EXTNAME" in info.header else "",
                 _extver_of(info.header), info.index + 1, location, "URL" if location else "")
    group.append(row, aux)
    return row


def write_group_file(path: str | os.PathLike, grouping: Grouping, members: Sequence[Table | Image] = (),
                     *, aux: Mapping[str, Sequence] | None = None, primary: Image | None = None,
                     durable: bool = True) -> Path:
    """Write [primary, GROUPING, *members] to `path`: the grouping lists each member HDU
    of this file (after any rows it already has) and each member gets GRPIDn = +EXTVER.

    `aux` gives each auxiliary column one value per member, e.g.
    ``aux={'IMATYPE': ['INTENSITY', 'VARIANCE']}``.
    """
    aux = dict(aux or {})
    for name, values in aux.items():
        if len(values) != len(members):
            raise GroupingError(f"{path}: auxiliary column {name} has {len(values)} values for {len(members)} members")
    pf = PendingFile(path, primary)
    pf.append(grouping)
    for i, hdu in enumerate(members):
        pf.append(hdu)
        link(grouping, pf, hdu, aux={k: v[i] for k, v in aux.items()})
    return pf.write(durable=durable)
