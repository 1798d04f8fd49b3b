"""Reference catalogues: GNRL-REFR-CAT files to and from a small in-memory `Catalog`.

`read_catalog(path)` reads our GNRL-REFR-CAT (validated against its template) or a
user's catalogue: any FITS binary table with at least the columns NAME, RA_OBJ and
DEC_OBJ (names matched without regard to case; the first such table of the file, or
the HDU named by `ext`). `write_catalog(path, catalog)` writes GNRL-REFR-CAT through
the template; columns the catalogue lacks get documented defaults (`DEFAULTS`).

Coordinates are J2000 degrees. Source identification uses `Catalog.nearest` and
`Catalog.within` (great-circle distances, vectorised).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from isdc.dal import templates
from isdc.dal.archive import angular_separation
from isdc.dal.fitsfile import FitsError, Image, Table, read_fits
from isdc.dal.products import write_product

__all__ = ["CatalogError", "Catalog", "read_catalog", "write_catalog", "catalog_table", "source_id", "DEFAULTS"]

TEMPLATE = "GNRL-REFR-CAT"


class CatalogError(FitsError):
    """A catalogue that cannot be read or written; the message names the file and problem."""


DEFAULTS: dict[str, object] = {
    "DAY_ID": 0.0,
    "CLASS": "",
    "ERR_RAD": 0.0,
    "SPA_MODL": "POINT",
    "SPE_MODL": "",
    "SPE_NPAR": 0,
    "SPE_PARS": np.nan,
    "VAR_MODL": "CONSTANT",
    "ISGR_FLUX_1": np.nan,
    "ISGR_FLUX_2": np.nan,
    "E_MIN": 20.0,
    "E_MAX": 100.0,
    "FLUX": np.nan,
    "FLUX_ERR": np.nan,
    "SEL_FLAG": 1,
    "FLAG": 0,
    "ISGRI_FLAG": 1,
    "ISGRI_FLAG2": 0,
}
"""Values written for GNRL-REFR-CAT columns a catalogue does not have (NaN = unknown)."""


def source_id(ra, dec) -> np.ndarray:
    """ISDC-style identifiers 'Jhhmmss.s+ddmmss' from J2000 coordinates [deg]."""
    ra = np.mod(np.atleast_1d(np.asarray(ra, dtype=float)), 360.0)
    dec = np.atleast_1d(np.asarray(dec, dtype=float))
    out = []
    for a, d in zip(ra, dec):
        t = round(a / 15.0 * 36000.0)  # tenths of a second of time
        t %= 24 * 36000
        h, rest = divmod(t, 36000)
        m, s10 = divmod(rest, 600)
        sign = "-" if d < 0 else "+"
        arc = round(abs(d) * 3600.0)
        dd, rest = divmod(arc, 3600)
        dm, ds = divmod(rest, 60)
        out.append(f"J{h:02d}{m:02d}{s10 // 10:02d}.{s10 % 10:d}{sign}{dd:02d}{dm:02d}{ds:02d}")
    return np.array(out)


@dataclass(frozen=True, eq=False)
class Catalog:
    """Sources: `name`, `ra`, `dec` [deg] and any further columns by their FITS names."""

    name: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)
    cat_name: str = ""

    def __post_init__(self):
        object.__setattr__(self, "name", np.asarray(self.name, dtype=str))
        object.__setattr__(self, "ra", np.asarray(self.ra, dtype=float))
        object.__setattr__(self, "dec", np.asarray(self.dec, dtype=float))
        n = self.name.size
        if self.ra.shape != (n,) or self.dec.shape != (n,):
            raise CatalogError(f"catalogue {self.cat_name!r}: NAME, RA_OBJ, DEC_OBJ must be 1-D of one length")
        cols = {k.upper(): np.asarray(v) for k, v in dict(self.columns).items()}
        for k, v in cols.items():
            if len(v) != n:
                raise CatalogError(f"catalogue {self.cat_name!r}: column {k} has {len(v)} rows, NAME has {n}")
        for k in ("NAME", "RA_OBJ", "DEC_OBJ"):
            cols.pop(k, None)
        object.__setattr__(self, "columns", cols)
        if np.any(~np.isfinite(self.ra)) or np.any(np.abs(self.dec) > 90):
            raise CatalogError(f"catalogue {self.cat_name!r}: coordinates must be finite with |DEC_OBJ| <= 90")

    def __len__(self) -> int:
        return self.name.size

    def __getitem__(self, column: str) -> np.ndarray:
        key = column.upper()
        special = {"NAME": self.name, "RA_OBJ": self.ra, "DEC_OBJ": self.dec}
        if key in special:
            return special[key]
        if key in self.columns:
            return self.columns[key]
        raise KeyError(f"catalogue {self.cat_name!r} has no column {column!r}")

    def has(self, column: str) -> bool:
        return column.upper() in self.columns or column.upper() in ("NAME", "RA_OBJ", "DEC_OBJ")

    def select(self, which) -> "Catalog":
        """Sub-catalogue of a boolean mask or an index array."""
        idx = np.asarray(which)
        return Catalog(self.name[idx], self.ra[idx], self.dec[idx], {k: v[idx] for k, v in self.columns.items()},
                       self.cat_name)

    def for_imaging(self) -> "Catalog":
        """Sources with ISGRI_FLAG > 0 (all of them when the column is absent)."""
        return self.select(self["ISGRI_FLAG"] > 0) if self.has("ISGRI_FLAG") else self

    def bright(self) -> "Catalog":
        """Bright sources for ghost removal: ISGRI_FLAG2 == 5."""
        return self.select(self["ISGRI_FLAG2"] == 5) if self.has("ISGRI_FLAG2") else self.select(np.zeros(len(self), bool))

    def separation(self, ra: float, dec: float) -> np.ndarray:
        """(n,) distance [deg] of every source from (ra, dec)."""
        return angular_separation(ra, dec, self.ra, self.dec)

    def nearest(self, ra, dec) -> tuple[np.ndarray, np.ndarray]:
        """(index, distance [deg]) of the nearest source to each position (arrays of the queries' shape)."""
        if len(self) == 0:
            raise CatalogError(f"catalogue {self.cat_name!r} is empty")
        ra_q, dec_q = np.broadcast_arrays(np.asarray(ra, dtype=float), np.asarray(dec, dtype=float))
        v = _unit(self.ra, self.dec)
        q = _unit(ra_q.ravel(), dec_q.ravel())
        idx = np.empty(q.shape[0], dtype=np.intp)
        for s in range(0, q.shape[0], 4096):  # bounded memory: 4096 x n cosines at a time
            idx[s : s + 4096] = np.argmax(q[s : s + 4096] @ v.T, axis=1)
        dist = angular_separation(ra_q.ravel(), dec_q.ravel(), self.ra[idx], self.dec[idx])
        return idx.reshape(ra_q.shape), dist.reshape(ra_q.shape)

    def within(self, ra: float, dec: float, radius: float) -> np.ndarray:
        """Indices of sources within `radius` deg of (ra, dec), nearest first."""
        d = self.separation(ra, dec)
        idx = np.flatnonzero(d <= radius)
        return idx[np.argsort(d[idx], kind="stable")]


def _unit(ra, dec) -> np.ndarray:
    a, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], axis=-1)


# --------------------------------------------------------------------------- FITS

def read_catalog(path: str | os.PathLike, ext: str | int | None = None) -> Catalog:
    """Read a reference catalogue (GNRL-REFR-CAT or a table with NAME, RA_OBJ, DEC_OBJ)."""
    path = Path(path)
    try:
        f = read_fits(path)
        if ext is None:
            candidates = [h for h in f.hdus if h.extname == TEMPLATE] or [h for h in f.hdus if h.xtension == "BINTABLE"]
            if not candidates:
                raise CatalogError(f"{path}: no binary table: not a catalogue")
            infos = candidates
        else:
            infos = [f.find(ext)]
        problems = []
        for info in infos:
            tab = f.table(info.index)
            upper = {k.upper(): k for k in tab.columns}
            missing = [c for c in ("NAME", "RA_OBJ", "DEC_OBJ") if c not in upper]
            if missing:
                problems.append(f"HDU {info.index} ({info.extname or 'no EXTNAME'}) lacks columns {missing}")
                continue
            if str(tab.header.get("TEMPLATE", "")).strip() == TEMPLATE:
                templates.validate_hdu(tab, f"{path} HDU {info.index}")
            cols = {k.upper(): v for k, v in tab.columns.items()}
            ra = np.asarray(cols.pop("RA_OBJ"), dtype=float)
            dec = np.asarray(cols.pop("DEC_OBJ"), dtype=float)
            name = np.char.strip(np.asarray(cols.pop("NAME"), dtype=str))
            try:
                return Catalog(name, ra, dec, cols, str(tab.header.get("CAT_NAME", path.name)).strip())
            except CatalogError as exc:
                raise CatalogError(f"{path} HDU {info.index}: {exc}") from exc
        raise CatalogError(f"{path}: no catalogue table (NAME, RA_OBJ, DEC_OBJ): " + "; ".join(problems))
    except FitsError as exc:
        if isinstance(exc, CatalogError):
            raise
        raise CatalogError(f"{path}: cannot read catalogue: {exc}") from exc


def catalog_table(cat: Catalog, cat_name: str | None = None, version: int = 1) -> Table:
    """The GNRL-REFR-CAT table of `cat` (missing columns filled from `DEFAULTS`)."""
    t = templates.get(TEMPLATE)
    n = len(cat)
    cols: dict[str, np.ndarray] = {}
    for spec in t.columns:
        key = spec.name
        if key in ("NAME", "RA_OBJ", "DEC_OBJ"):
            cols[key] = cat[key]
        elif key == "SOURCE_ID":
            cols[key] = cat[key] if cat.has(key) else source_id(cat.ra, cat.dec) if n else np.array([], dtype="U16")
        elif cat.has(key):
            cols[key] = cat[key]
        else:
            rep = spec.repeat
            value = DEFAULTS[key]
            shape = (n, rep) if rep > 1 and spec.code != "A" else (n,)
            cols[key] = np.full(shape, value, dtype=object if isinstance(value, str) else None)
            if isinstance(value, str):
                cols[key] = cols[key].astype(str) if n else np.array([], dtype="U1")
    return t.table(cols, CAT_NAME=cat_name or cat.cat_name or "isdc", VERSION=int(version))


def write_catalog(path: str | os.PathLike, cat: Catalog, cat_name: str | None = None, version: int = 1) -> Path:
    """Write `cat` as a GNRL-REFR-CAT file (atomic, checksummed, template-validated)."""
    return write_product(path, [Image(None, {}), catalog_table(cat, cat_name, version)])
