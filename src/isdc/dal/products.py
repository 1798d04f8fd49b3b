"""Reading and writing products: FITS I/O with template validation on both sides."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from isdc.dal.fitsfile import FitsFile, Image, Table, write_fits
from isdc.dal.templates import validate_hdu

__all__ = ["write_product", "open_product", "ProductFile"]


def write_product(path: str | os.PathLike, hdus: Sequence[Table | Image], *, durable: bool = True) -> Path:
    """Validate every HDU made from a template, then write the file atomically."""
    path = Path(path)
    for i, hdu in enumerate(hdus):
        validate_hdu(hdu, f"{path} HDU {hdu.name or i}")
    return write_fits(path, hdus, durable=durable)


class ProductFile(FitsFile):
    """A FITS file whose tables and images are validated against their templates on read."""

    def table(self, ext=1, extver=None, columns=None) -> Table:
        t = super().table(ext, extver, columns)
        if columns is None:
            validate_hdu(t, f"{self.path} HDU {t.name}")
        return t

    def image(self, ext=0, extver=None) -> Image:
        im = super().image(ext, extver)
        validate_hdu(im, f"{self.path} HDU {im.name}")
        return im


def open_product(path: str | os.PathLike) -> ProductFile:
    return ProductFile(path)
