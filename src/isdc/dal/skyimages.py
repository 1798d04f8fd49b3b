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

__all__ = ["SkyImageSet", "read_sky_images", "write_sky_images", "IMATYPE_UNITS"]


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


IMATYPE_UNITS = {"INTENSITY": "count/s", "VARIANCE": "(count/s)**2", "SIGNIFICANCE": "sigma", "EXPOSURE": "s",
                 "RESIDUAL": "sigma"}
IMATYPE_ORDER = ("INTENSITY", "VARIANCE", "SIGNIFICANCE", "EXPOSURE", "RESIDUAL")


def write_sky_images(path: str | os.PathLike, sets: list[SkyImageSet], structure: str,
                     primary_keywords: dict | None = None, durable: bool = True):
    """Write sky images in the OSA layout: GROUPING index `<structure>-IDX` + one HDU per map.

    `structure` is 'ISGR-SKY.-IMA' or 'ISGR-MOSA-IMA'; every map is made from (and
    validated against) that template; WCS and other keywords come from each map's header.
    """
    from isdc.dal.grouping import Grouping, write_group_file
    from isdc.dal.templates import get as get_template, validate_hdu

    tmpl = get_template(structure)
    members, imatypes, emins, emaxs = [], [], [], []
    for s in sets:
        for imatype in sorted(s.maps, key=lambda k: IMATYPE_ORDER.index(k) if k in IMATYPE_ORDER else 99):
            src = s.maps[imatype]
            kw = {k: src.header[k] for k in src.header if k and k not in ("EXTNAME", "TEMPLATE", "TEMPLVER", "COMMENT",
                                                                          "HISTORY") and not k.startswith("GRP")}
            kw.update(EXTVER=len(members) + 1, IMATYPE=imatype, E_MIN=float(s.e_min), E_MAX=float(s.e_max),
                      BUNIT=IMATYPE_UNITS.get(imatype, str(src.header.get("BUNIT", ""))))
            img = tmpl.image(src.data.astype("float32"), **kw)
            validate_hdu(img, f"{path} {imatype} {s.e_min:g}-{s.e_max:g} keV")
            members.append(img)
            imatypes.append(imatype)
            emins.append(s.e_min)
            emaxs.append(s.e_max)
    g = Grouping(f"{structure}-IDX", aux={"IMATYPE": "32A", "E_MIN": "1E", "E_MAX": "1E"})
    primary = Image()
    for k, v in (primary_keywords or {}).items():
        primary.header[k] = v
    return write_group_file(path, g, members, aux={"IMATYPE": imatypes, "E_MIN": emins, "E_MAX": emaxs},
                            primary=primary, durable=durable)
