"""Components around sky maps: WCS keywords and mosaics of image sets (OSA layout)."""
from __future__ import annotations

import numpy as np
from astropy.wcs import WCS

from isdc.dal.fitsfile import FitsError, Image
from isdc.dal.skyimages import SkyImageSet
from isdc.imaging.mosaic import mosaic
from isdc.pipeline.sourcelist import celestial_wcs

__all__ = ["wcs_keywords", "mosaic_sets"]


def wcs_keywords(w: WCS) -> dict:
    """CRPIX/CRVAL/CD keywords of a celestial TAN WCS (CD form, as OSA writes them)."""
    cd = w.pixel_scale_matrix
    return {
        "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CUNIT1": "deg", "CUNIT2": "deg",
        "CRPIX1": float(w.wcs.crpix[0]), "CRPIX2": float(w.wcs.crpix[1]),
        "CRVAL1": float(w.wcs.crval[0]), "CRVAL2": float(w.wcs.crval[1]),
        "CD1_1": float(cd[0, 0]), "CD1_2": float(cd[0, 1]), "CD2_1": float(cd[1, 0]), "CD2_2": float(cd[1, 1]),
        "RADESYS": "FK5", "EQUINOX": 2000.0,
    }


def mosaic_sets(images: list[list[SkyImageSet]]) -> list[SkyImageSet]:
    """Mosaic the image sets of several files, band by band (bands matched on E_MIN/E_MAX).

    Every file must hold INTENSITY and VARIANCE maps for a band to take part in it.
    """
    bands: dict[tuple, list[SkyImageSet]] = {}
    for sets in images:
        for s in sets:
            if s.get("INTENSITY") is None or s.get("VARIANCE") is None:
                raise FitsError(f"band {s.e_min:g}-{s.e_max:g} keV has no INTENSITY or VARIANCE map")
            bands.setdefault((s.e_min, s.e_max), []).append(s)
    out = []
    for (e1, e2), group in sorted(bands.items()):
        wcs = [celestial_wcs(s.header) for s in group]
        shapes = [s.maps["INTENSITY"].data.shape for s in group]
        same = all(shapes[0] == sh and wcs[0].wcs.compare(w.wcs, tolerance=1e-9) for sh, w in zip(shapes, wcs))
        # Images on one grid (e.g. a single image) keep it: the mosaic then reproduces them exactly.
        grid = (wcs[0], shapes[0]) if same else (None, None)
        m = mosaic([s.maps["INTENSITY"].data for s in group], [s.maps["VARIANCE"].data for s in group],
                   [s.maps["EXPOSURE"].data if s.get("EXPOSURE") is not None else None for s in group], wcs,
                   *grid)
        kw = wcs_keywords(m.wcs)
        maps = {}
        for imatype, data in (("INTENSITY", m.intensity), ("VARIANCE", m.variance),
                              ("SIGNIFICANCE", m.significance), ("EXPOSURE", m.exposure)):
            maps[imatype] = Image(np.asarray(data, dtype=np.float32), dict(kw))
        out.append(SkyImageSet(e1, e2, maps, "ISGR-MOSA-IMA"))
    return out
