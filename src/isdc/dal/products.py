"""Reading and writing products: FITS I/O with template validation on both sides.

A product read through `ProductFile` (`open_product`, `Product.read`) is checked whole as
well: the DATASUM/CHECKSUM of each HDU whose data are read must verify, so a damaged file
(a flipped bit on disk, an edit) is a FitsError naming file and HDU, not wrong numbers.
What this process wrote, or already verified unchanged (same path, inode, size and
modification time), is not read twice for that.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from isdc.dal.fitsfile import FitsError, FitsFile, HDUInfo, Image, Table, write_fits
from isdc.dal.templates import validate_hdu

__all__ = ["write_product", "open_product", "ProductFile", "Product"]

# (path, mtime_ns, size, inode) of files whose HDUs' checksums are known good -> HDU indices
_WHOLE: dict[tuple, set[int]] = {}


def _stat_key(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (str(path), st.st_mtime_ns, st.st_size, st.st_ino)


def _remember(key: tuple | None, indices) -> None:
    if key is None:
        return
    if len(_WHOLE) > 20000:
        _WHOLE.clear()
    _WHOLE.setdefault(key, set()).update(indices)


def write_product(path: str | os.PathLike, hdus: Sequence[Table | Image], *, durable: bool = True) -> Path:
    """Validate every HDU made from a template, then write the file atomically."""
    path = Path(path)
    for i, hdu in enumerate(hdus):
        validate_hdu(hdu, f"{path} HDU {hdu.name or i}")
    out = write_fits(path, hdus, durable=durable)
    # the checksums were computed from the bytes just written: reading them back proves nothing
    n = len(hdus) if hdus and isinstance(hdus[0], Image) else len(hdus) + 1  # write_fits adds a primary
    _remember(_stat_key(out), range(n))
    return out


class ProductFile(FitsFile):
    """A FITS file whose tables and images are validated against their templates on read,
    and whose checksums (when present) must verify for every HDU whose data are read."""

    def __init__(self, path: str | os.PathLike):
        self._key = _stat_key(Path(path))  # before reading: a file replaced meanwhile is checked again
        super().__init__(path)

    def _check_whole(self, info: HDUInfo) -> None:
        if self._key is not None and info.index in _WHOLE.get(self._key, ()):
            return
        ds, cs = self.verify_checksum(info)
        if "bad" in (ds, cs):
            raise FitsError(f"{self.path}: HDU {info.index} ({info.extname}): checksum verification failed "
                            f"(DATASUM {ds}, CHECKSUM {cs}): the file is damaged")
        _remember(self._key, (info.index,))

    def table(self, ext=1, extver=None, columns=None) -> Table:
        t = super().table(ext, extver, columns)
        self._check_whole(self.find(ext, extver))
        if columns is None:
            validate_hdu(t, f"{self.path} HDU {t.name}")
        return t

    def image(self, ext=0, extver=None) -> Image:
        im = super().image(ext, extver)
        self._check_whole(self.find(ext, extver))
        validate_hdu(im, f"{self.path} HDU {im.name}")
        return im


def open_product(path: str | os.PathLike) -> ProductFile:
    return ProductFile(path)


class Product:
    """A product in memory: its HDUs (primary first), read whole from a file or made by a task.

    `nowork` is True for the explicit empty product a task writes when there was nothing to
    do (e.g. no good time): its primary header has NOWORK = T and the reason in NOWORKR.
    """

    def __init__(self, hdus: Sequence[Table | Image], path: Path | None = None):
        self.hdus = list(hdus)
        if not self.hdus or not isinstance(self.hdus[0], Image):
            self.hdus.insert(0, Image())
        self.path = path

    @classmethod
    def read(cls, path: str | os.PathLike, validate: bool = True, data: bool = True) -> "Product":
        """The product in `path`. `data=False` reads its headers only (tables without columns,
        images without data, nothing to validate): for tasks that list or group products."""
        if not data:
            f = FitsFile(path)
            return cls([Table({}, info.header, []) if info.xtension == "BINTABLE" else Image(None, info.header)
                        for info in f.hdus if info.xtension in ("BINTABLE", "PRIMARY", "IMAGE")], Path(path))
        f = ProductFile(path) if validate else FitsFile(path)
        hdus = []
        for info in f.hdus:
            if info.xtension == "BINTABLE":
                hdus.append(f.table(info.index))
            elif info.xtension in ("PRIMARY", "IMAGE"):
                hdus.append(f.image(info.index))
        return cls(hdus, Path(path))

    @classmethod
    def empty(cls, reason: str, **keywords) -> "Product":
        img = Image()
        img.header["NOWORK"] = (True, "no work: explicit empty product")
        # The whole reason, however long (CONTINUE cards), and no comment to overflow a card.
        img.header["NOWORKR"] = reason
        for k, v in keywords.items():
            img.header[k] = v
        return cls([img])

    @property
    def header(self):
        return self.hdus[0].header

    @property
    def nowork(self) -> bool:
        return bool(self.header.get("NOWORK", False))

    @property
    def nowork_reason(self) -> str:
        return str(self.header.get("NOWORKR", ""))

    def all(self, extname: str) -> list[Table | Image]:
        return [h for h in self.hdus[1:] if h.name == extname]

    def _one(self, extname: str, kind, **match):
        found = [h for h in self.all(extname) if isinstance(h, kind)
                 and all(str(h.header.get(k, "")).strip() == str(v) for k, v in match.items())]
        if len(found) != 1:
            where = self.path or "product"
            what = f"{extname}" + "".join(f" {k}={v}" for k, v in match.items())
            raise FitsError(f"{where}: expected one {kind.__name__} {what}, found {len(found)}")
        return found[0]

    def table(self, extname: str, **match) -> Table:
        return self._one(extname, Table, **match)

    def image(self, extname: str, **match) -> Image:
        return self._one(extname, Image, **match)

    def write(self, path: str | os.PathLike, durable: bool = True) -> Path:
        self.path = write_product(path, self.hdus, durable=durable)
        return self.path
