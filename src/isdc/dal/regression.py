"""FITS-aware comparison of products with reference summaries (the nightly regression build).

A *reference summary* of a product file keeps, per data HDU (the provenance extension
aside), the header without its volatile cards (dates, checksums, host, software version,
fingerprints) and the data: whole when small, else a reduced form that still sees any
change — tables as per-column statistics (count, sum, mean, std, min, max, quantiles, a
64-bin histogram) plus their first and last rows; images as statistics plus a 4x4-binned
copy and a full-resolution cutout around the brightest pixel. The same `summarize` makes the reference (`--bless`) and the summary of a new
product, and `compare` lists every difference beyond the stated tolerances, so reference
files stay small enough to commit (a ScW sky image of 2 MB summarises to ~40 kB).
"""
from __future__ import annotations

import fnmatch
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from astropy.io import fits

from isdc.dal.fitsfile import FitsError, FitsFile, Image, Table, write_fits

__all__ = ["Tolerance", "Difference", "summarize", "write_summary", "read_summary", "compare", "load_tolerances",
           "png_bytes", "VOLATILE"]

VOLATILE = {"DATE", "CHECKSUM", "DATASUM", "PRVSTART", "PRVSTOP", "HOSTNAME", "ISDCVERS", "ISDCFPRT", "CONFDIGS",
            "CREATOR", "REFKIND", "REFHDU", "REFNAME", "BINF", "NROWS", "NAXIS1", "NAXIS2", "TEMPLVER"}
_FULL_TABLE_BYTES = 64_000
_FULL_IMAGE_PIXELS = 20_000
_EDGE_ROWS = 50
_BIN = 8
_CUTOUT = 7  # half-size of the full-resolution cutout around the brightest pixel
_QUANTILES = (0.01, 0.1, 0.5, 0.9, 0.99)


@dataclass(frozen=True)
class Tolerance:
    rtol: float = 1e-6
    atol: float = 0.0


@dataclass
class Difference:
    file: str
    hdu: str
    what: str
    detail: str
    max_abs: float = 0.0
    images: list = field(default_factory=list)  # (title, reference 2-D, new 2-D) for reports

    def line(self) -> str:
        return f"{self.file} [{self.hdu}] {self.what}: {self.detail}"


def load_tolerances(path: str | os.PathLike) -> list[tuple[str, Tolerance]]:
    """(EXTNAME pattern, tolerance) pairs, first match wins; strict about keys."""
    doc = yaml.safe_load(Path(path).read_text()) or {}
    out = []
    for item in doc.get("tolerances", []):
        bad = set(item) - {"extname", "rtol", "atol", "why"}
        if bad or "extname" not in item:
            raise ValueError(f"{path}: tolerance entry {item!r}: keys are extname, rtol, atol, why")
        out.append((str(item["extname"]), Tolerance(float(item.get("rtol", 1e-6)), float(item.get("atol", 0.0)))))
    return out


def _tolerance(tols, extname: str) -> Tolerance:
    for pattern, tol in tols:
        if fnmatch.fnmatch(extname, pattern):
            return tol
    return Tolerance()


def _stable_header(h: fits.Header) -> fits.Header:
    out = fits.Header()
    for card in h.cards:
        k = card.keyword
        if not k or k in VOLATILE or k in ("COMMENT", "HISTORY") or k.startswith(("GRPID", "GRPLC")):
            continue
        if k.startswith(("TTYPE", "TFORM", "TUNIT", "TNULL", "TZERO", "TSCAL", "TDIM", "NAXIS", "XTENSION",
                         "BITPIX", "PCOUNT", "GCOUNT", "TFIELDS", "SIMPLE", "EXTEND", "BZERO", "BSCALE")):
            continue
        out.append((k, card.value, card.comment), end=True)
    return out


def _numeric(col: np.ndarray) -> bool:
    return col.dtype.kind in "iufb"


def _column_stats(name: str, col: np.ndarray) -> dict:
    v = np.asarray(col, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        v = np.zeros(1)
    lo, hi = float(v.min()), float(v.max())
    hist, _ = np.histogram(v, bins=64, range=(lo, hi if hi > lo else lo + 1))
    return {"NAME": name, "N": np.int64(col.size), "SUM": float(v.sum()), "MEAN": float(v.mean()),
            "STD": float(v.std()), "MIN": lo, "MAX": hi, "QUANT": np.quantile(v, _QUANTILES),
            "HIST": hist.astype(np.int64), "HLO": lo, "HHI": hi}


def _bin_image(a: np.ndarray, f: int) -> np.ndarray:
    a = np.nan_to_num(np.asarray(a, dtype=np.float64))
    ny, nx = (a.shape[0] // f) * f, (a.shape[1] // f) * f
    return a[:ny, :nx].reshape(ny // f, f, nx // f, f).mean(axis=(1, 3))


def summarize(path: str | os.PathLike) -> list[Table | Image]:
    """The reference summary HDUs of a product file (see module docstring)."""
    f = FitsFile(path)
    out: list[Table | Image] = []
    for info in f.hdus[1:]:
        name = info.extname
        if name == "GNRL-PROV-HIS":
            continue
        hdr = _stable_header(info.header)
        hdr["REFHDU"] = (info.index, "HDU of the product this summarises")
        hdr["REFNAME"] = (name or f"HDU{info.index}", "EXTNAME of that HDU")
        if info.xtension == "BINTABLE":
            t = f.table(info.index)
            if info.data_size <= _FULL_TABLE_BYTES:
                hdr["REFKIND"] = "FULL"
                out.append(Table(dict(t.columns), hdr, t.specs))
                continue
            num = [k for k, v in t.columns.items() if _numeric(np.asarray(v))]
            rows = [_column_stats(k, t.columns[k]) for k in num]
            stats = {k: np.array([r[k] for r in rows]) for k in ("N", "SUM", "MEAN", "STD", "MIN", "MAX", "HLO", "HHI")}
            stats["NAME"] = np.array([r["NAME"] for r in rows], dtype="U32")
            stats["QUANT"] = np.array([r["QUANT"] for r in rows]).reshape(len(rows), len(_QUANTILES))
            stats["HIST"] = np.array([r["HIST"] for r in rows]).reshape(len(rows), 64)
            hdr["REFKIND"] = "STATS"
            hdr["NROWS"] = t.nrows
            out.append(Table(stats, hdr))
            edge = {k: np.concatenate([v[:_EDGE_ROWS], v[-_EDGE_ROWS:]]) for k, v in t.columns.items()}
            eh = fits.Header([("REFKIND", "EDGES"), ("REFHDU", info.index), ("REFNAME", name),
                              ("EXTVER", info.header.get("EXTVER", 1))])
            out.append(Table(edge, eh, t.specs))
        elif info.xtension in ("IMAGE", "PRIMARY"):
            img = f.image(info.index)
            if img.data is None:
                hdr["REFKIND"] = "EMPTY"
                out.append(Image(None, hdr))
                continue
            data = np.asarray(img.data)
            if data.size <= _FULL_IMAGE_PIXELS or data.ndim != 2:
                hdr["REFKIND"] = "FULL"
                out.append(Image(data, hdr))
            else:
                hdr["REFKIND"] = "BINNED"
                hdr["BINF"] = _BIN
                st = _column_stats("DATA", data)
                for k in ("SUM", "MEAN", "STD", "MIN", "MAX"):
                    hdr[f"S_{k}"] = st[k]
                for q, v in zip(_QUANTILES, st["QUANT"]):
                    hdr[f"S_Q{int(q * 100):02d}"] = float(v)
                peak = int(np.nanargmax(np.nan_to_num(data, nan=-np.inf)))
                hdr["S_ARGMAX"] = peak
                out.append(Image(_bin_image(data, _BIN).astype(np.float32), hdr))
                y, x = divmod(peak, data.shape[1])
                cut = data[max(0, y - _CUTOUT) : y + _CUTOUT + 1, max(0, x - _CUTOUT) : x + _CUTOUT + 1]
                ch = fits.Header([("REFKIND", "PEAK"), ("REFHDU", info.index), ("REFNAME", name),
                                  ("EXTVER", info.header.get("EXTVER", 1))])
                out.append(Image(np.asarray(cut, dtype=np.float32), ch))
    return out


def write_summary(path: str | os.PathLike, hdus: list) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_fits(path, [Image(None, fits.Header([("REFFILE", path.name[:68])]))] + list(hdus), durable=False)


def read_summary(path: str | os.PathLike) -> list[Table | Image]:
    f = FitsFile(path)
    out = []
    for info in f.hdus[1:]:
        out.append(f.table(info.index) if info.xtension == "BINTABLE" else f.image(info.index))
    return out


def _close(a, b, tol: Tolerance) -> tuple[bool, float]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False, float("inf")
    if a.dtype.kind in "SUO" or b.dtype.kind in "SUO":
        return bool(np.array_equal(a.astype(str), b.astype(str))), 0.0
    if a.dtype.kind in "iub" and b.dtype.kind in "iub" and tol.atol == 0:
        d = np.abs(a.astype(np.int64) - b.astype(np.int64))
        return bool(np.all(d == 0)), float(d.max()) if d.size else 0.0
    af, bf = a.astype(np.float64), b.astype(np.float64)
    same_nan = np.isnan(af) == np.isnan(bf)
    ok = np.isclose(af, bf, rtol=tol.rtol, atol=tol.atol, equal_nan=True) & same_nan
    d = np.abs(np.nan_to_num(af) - np.nan_to_num(bf))
    return bool(np.all(ok)), float(d.max()) if d.size else 0.0


def _header_diffs(ref: fits.Header, new: fits.Header, tol: Tolerance) -> list[str]:
    out = []
    keys = [k for k in ref.keys() if k not in VOLATILE and not k.startswith("S_")]
    for k in keys:
        if k not in new:
            out.append(f"keyword {k} missing (reference {ref[k]!r})")
            continue
        a, b = ref[k], new[k]
        if isinstance(a, float) or isinstance(b, float):
            try:
                if not np.isclose(float(a), float(b), rtol=tol.rtol, atol=tol.atol, equal_nan=True):
                    out.append(f"keyword {k}: {b!r}, reference {a!r}")
            except (TypeError, ValueError):
                out.append(f"keyword {k}: {b!r}, reference {a!r}")
        elif a != b:
            out.append(f"keyword {k}: {b!r}, reference {a!r}")
    extra = [k for k in new.keys() if k not in ref and k not in VOLATILE and not k.startswith("S_")]
    if extra:
        out.append(f"keywords not in the reference: {extra}")
    return out


def compare(reference: list, new: list, file: str, tolerances=()) -> list[Difference]:
    """Differences between two summaries of the same product (empty when they agree)."""
    diffs: list[Difference] = []
    refs = {(h.header.get("REFNAME"), h.header.get("REFKIND"), h.header.get("EXTVER", 1)): h for h in reference}
    news = {(h.header.get("REFNAME"), h.header.get("REFKIND"), h.header.get("EXTVER", 1)): h for h in new}
    for key in sorted(set(refs) | set(news), key=str):
        name = f"{key[0]} v{key[2]} ({key[1]})"
        if key not in news:
            diffs.append(Difference(file, name, "HDU", "missing in the new product"))
            continue
        if key not in refs:
            diffs.append(Difference(file, name, "HDU", "not in the reference"))
            continue
        r, n = refs[key], news[key]
        tol = _tolerance(tolerances, str(key[0]))
        for line in _header_diffs(_stable_header(r.header), _stable_header(n.header), tol):
            diffs.append(Difference(file, name, "header", line))
        if isinstance(r, Table) != isinstance(n, Table):
            diffs.append(Difference(file, name, "type", "table vs image"))
            continue
        if isinstance(r, Table):
            cols = set(r.columns) | set(n.columns)
            for c in sorted(cols):
                if c not in r.columns or c not in n.columns:
                    diffs.append(Difference(file, name, f"column {c}", "present on one side only"))
                    continue
                ok, dmax = _close(r.columns[c], n.columns[c], tol)
                if not ok:
                    diffs.append(Difference(file, name, f"column {c}", f"values differ (max |diff| {dmax:.4g}, "
                                            f"rtol {tol.rtol:g}, atol {tol.atol:g})", dmax))
        else:
            for k in [k for k in r.header if k.startswith("S_") and k != "S_ARGMAX"]:
                a, b = r.header[k], n.header.get(k)
                if b is None or not np.isclose(float(a), float(b), rtol=tol.rtol, atol=tol.atol):
                    diffs.append(Difference(file, name, f"statistic {k[2:]}", f"{b!r}, reference {a!r}"))
            if r.header.get("S_ARGMAX") != n.header.get("S_ARGMAX"):
                diffs.append(Difference(file, name, "brightest pixel", f"at {n.header.get('S_ARGMAX')}, "
                                        f"reference {r.header.get('S_ARGMAX')}"))
            if r.data is None or n.data is None:
                if (r.data is None) != (n.data is None):
                    diffs.append(Difference(file, name, "data", "empty on one side only"))
                continue
            ok, dmax = _close(r.data, n.data, tol)
            if not ok:
                d = Difference(file, name, "pixels", f"differ (max |diff| {dmax:.4g}, rtol {tol.rtol:g}, "
                               f"atol {tol.atol:g})", dmax)
                if np.ndim(r.data) == 2 and np.shape(r.data) == np.shape(n.data):
                    d.images.append((f"{file} {name}", np.asarray(r.data, float), np.asarray(n.data, float)))
                diffs.append(d)
    return diffs


def png_bytes(image: np.ndarray, symmetric: bool = False) -> bytes:
    """A grey-scale (or blue-white-red when `symmetric`) PNG of a 2-D array, row 0 at the bottom."""
    a = np.nan_to_num(np.asarray(image, dtype=float))[::-1]
    if symmetric:
        m = float(np.max(np.abs(a))) or 1.0
        t = (a / m + 1) / 2
        rgb = np.stack([np.clip(2 * t, 0, 1), np.clip(2 * np.minimum(t, 1 - t), 0, 1), np.clip(2 - 2 * t, 0, 1)], -1)
    else:
        lo, hi = np.percentile(a, [1, 99.5]) if a.size else (0, 1)
        t = np.clip((a - lo) / ((hi - lo) or 1.0), 0, 1)
        rgb = np.stack([t, t, t], -1)
    pix = (rgb * 255).astype(np.uint8)
    h, w = pix.shape[:2]
    raw = b"".join(b"\x00" + pix[i].tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
