"""Sky images in the OSA layout: one image HDU per map type (IMATYPE) and energy band.

OSA writes `ISGR-SKY.-IMA` (one ScW) and `ISGR-MOSA-IMA` (mosaics) HDUs with IMATYPE =
INTENSITY, VARIANCE, SIGNIFICANCE, EXPOSURE (and RESIDUAL), E_MIN/E_MAX in keV and a
celestial TAN WCS, indexed by a GROUPING table. We read every image HDU that carries an
IMATYPE and group the maps by energy band.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from isdc.dal.fitsfile import FitsError, FitsFile, Image

__all__ = ["SkyImageSet", "sky_image_sets", "read_sky_images", "sky_image_hdus", "write_sky_images", "IMATYPE_UNITS"]


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


def sky_image_sets(hdus, where: str = "") -> list[SkyImageSet]:
    """Group image HDUs that carry an IMATYPE by (E_MIN, E_MAX); FitsError if there are none."""
    sets: dict[tuple, SkyImageSet] = {}
    for i, hdu in enumerate(hdus):
        h = hdu.header
        if not isinstance(hdu, Image) or "IMATYPE" not in h or hdu.data is None or np.ndim(hdu.data) != 2:
            continue
        try:
            key = (float(h.get("E_MIN", 0.0)), float(h.get("E_MAX", 0.0)))
        except (TypeError, ValueError) as exc:
            raise FitsError(f"{where}: HDU {i}: E_MIN/E_MAX are not numbers: {exc}") from exc
        s = sets.setdefault(key, SkyImageSet(key[0], key[1], extname=hdu.name))
        imatype = str(h["IMATYPE"]).strip().upper()
        if imatype in s.maps:
            raise FitsError(f"{where}: two {imatype} maps for {key[0]:g}-{key[1]:g} keV (HDU {i})")
        s.maps[imatype] = hdu
    if not sets:
        raise FitsError(f"{where}: no sky images (image HDUs with an IMATYPE keyword)")
    for s in sets.values():
        if "SIGNIFICANCE" not in s.maps:
            raise FitsError(f"{where}: band {s.e_min:g}-{s.e_max:g} keV has no SIGNIFICANCE map")
    return [sets[k] for k in sorted(sets)]


def read_sky_images(path: str | os.PathLike) -> list[SkyImageSet]:
    """All sky-image maps of a file, grouped by (E_MIN, E_MAX); FitsError if there are none."""
    f = FitsFile(path)
    images = [f.image(info.index) for info in f.hdus
              if "IMATYPE" in info.header and int(info.header.get("NAXIS", 0)) == 2]
    return sky_image_sets(images, str(f.path))


IMATYPE_UNITS = {"INTENSITY": "count/s", "VARIANCE": "(count/s)**2", "SIGNIFICANCE": "sigma", "EXPOSURE": "s",
                 "RESIDUAL": "sigma"}
IMATYPE_ORDER = ("INTENSITY", "VARIANCE", "SIGNIFICANCE", "EXPOSURE", "RESIDUAL")


def sky_image_hdus(sets: list[SkyImageSet], structure: str, primary_keywords: dict | None = None,
                   where: str = "") -> list:
    """The HDUs of a sky-image file in the OSA layout: primary, GROUPING index
    `<structure>-IDX`, one image per map (made from and validated against the template
    `structure`, 'ISGR-SKY.-IMA' or 'ISGR-MOSA-IMA'; WCS and other keywords from each
    map's header), members linked with back-pointers."""
    from isdc.dal.grouping import Grouping, PendingFile, link
    from isdc.dal.templates import get as get_template, validate_hdu

    tmpl = get_template(structure)
    primary = Image()
    for k, v in (primary_keywords or {}).items():
        primary.header[k] = v
    pf = PendingFile(where or "sky_images.fits", primary)
    g = Grouping(f"{structure}-IDX", aux={"IMATYPE": "32A", "E_MIN": "1E", "E_MAX": "1E"})
    pf.append(g)
    n = 0
    for s in sets:
        for imatype in sorted(s.maps, key=lambda k: IMATYPE_ORDER.index(k) if k in IMATYPE_ORDER else 99):
            src = s.maps[imatype]
            kw = {k: src.header[k] for k in src.header if k and k not in ("EXTNAME", "TEMPLATE", "TEMPLVER", "COMMENT",
                                                                          "HISTORY", "EXTVER") and not k.startswith("GRP")}
            n += 1
            kw.update(EXTVER=n, IMATYPE=imatype, E_MIN=float(s.e_min), E_MAX=float(s.e_max),
                      BUNIT=IMATYPE_UNITS.get(imatype, str(src.header.get("BUNIT", ""))))
            img = tmpl.image(np.asarray(src.data, dtype="float32"), **kw)
            validate_hdu(img, f"{where} {imatype} {s.e_min:g}-{s.e_max:g} keV")
            pf.append(img)
            link(g, pf, img, aux={"IMATYPE": imatype, "E_MIN": s.e_min, "E_MAX": s.e_max})
    return [h.to_table() if isinstance(h, Grouping) else h for h in pf.hdus]


def write_sky_images(path: str | os.PathLike, sets: list[SkyImageSet], structure: str,
                     primary_keywords: dict | None = None, durable: bool = True):
    """Write sky images in the OSA layout (see `sky_image_hdus`)."""
    from isdc.dal.fitsfile import write_fits

    return write_fits(path, sky_image_hdus(sets, structure, primary_keywords, str(path)), durable=durable)
