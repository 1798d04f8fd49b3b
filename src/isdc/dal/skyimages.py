"""Sky images in the OSA layout: one image HDU per map type (IMATYPE) and energy band.

OSA writes `ISGR-SKY.-IMA` (one ScW) and `ISGR-MOSA-IMA` (mosaics) HDUs with IMATYPE =
INTENSITY, VARIANCE, SIGNIFICANCE, EXPOSURE (and RESIDUAL), E_MIN/E_MAX in keV and a
celestial TAN WCS, indexed by a GROUPING table. We read every image HDU that carries an
IMATYPE and group the maps by energy band.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from isdc.dal.fitsfile import FitsError, FitsFile, Image

__all__ = ["SkyImageSet", "read_sky_images"]


@dataclass
class SkyImageSet:
    """The maps of one energy band: {IMATYPE: Image}."""

    e_min: float
    e_max: float
    maps: dict[str, Image] = field(default_factory=dict)
    extname: str = ""

    def get(self, imatype: str) -> Image | None:
        return self.maps.get(imatype)

    @property
    def header(self):
        for key in ("SIGNIFICANCE", "INTENSITY"):
            if key in self.maps:
                return self.maps[key].header
        return next(iter(self.maps.values())).header


def read_sky_images(path: str | os.PathLike) -> list[SkyImageSet]:
    """All sky-image maps of a file, grouped by (E_MIN, E_MAX); FitsError if there are none."""
    f = FitsFile(path)
    sets: dict[tuple, SkyImageSet] = {}
    for info in f.hdus:
        h = info.header
        if "IMATYPE" not in h or int(h.get("NAXIS", 0)) != 2:
            continue
        key = (float(h.get("E_MIN", 0.0)), float(h.get("E_MAX", 0.0)))
        s = sets.setdefault(key, SkyImageSet(key[0], key[1], extname=info.extname))
        imatype = str(h["IMATYPE"]).strip().upper()
        if imatype in s.maps:
            raise FitsError(f"{f.path}: two {imatype} maps for {key[0]:g}-{key[1]:g} keV (HDU {info.index})")
        s.maps[imatype] = f.image(info.index)
    if not sets:
        raise FitsError(f"{f.path}: no sky images (image HDUs with an IMATYPE keyword)")
    for s in sets.values():
        if "SIGNIFICANCE" not in s.maps:
            raise FitsError(f"{f.path}: band {s.e_min:g}-{s.e_max:g} keV has no SIGNIFICANCE map")
    return [sets[k] for k in sorted(sets)]
