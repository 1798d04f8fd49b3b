"""`isdc-run mosaic`: combine sky images (ours or OSA's) into a mosaic in the OSA layout."""
from __future__ import annotations

import sys
from pathlib import Path

from isdc.dal.fitsfile import FitsError
from isdc.dal.skyimages import read_sky_images, write_sky_images
from isdc.pipeline.skymaps import mosaic_sets

ORDER = 45


def register(sub):
    p = sub.add_parser("mosaic", help="mosaic sky images (OSA layout, ours or OSA's) -> ISGR-MOSA-IMA",
                       description="Variance-weighted mosaic of sky images reprojected onto one north-up "
                                   "tangent plane, band by band, with summed exposure.")
    p.add_argument("images", type=Path, nargs="+", help="sky image files (ISGR-SKY.-IMA or ISGR-MOSA-IMA)")
    p.add_argument("--out", type=Path, required=True, help="mosaic file to write")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        sets = mosaic_sets([read_sky_images(p) for p in args.images])
        write_sky_images(args.out, sets, "ISGR-MOSA-IMA", {"NIMAGES": (len(args.images), "images in the mosaic")})
    except (FitsError, OSError, ValueError) as exc:
        print(f"isdc-run mosaic: {exc}", file=sys.stderr)
        return 1
    for s in sets:
        sig = s.maps["SIGNIFICANCE"].data
        print(f"{s.e_min:g}-{s.e_max:g} keV: {sig.shape[1]}x{sig.shape[0]} pixels, max significance "
              f"{float(__import__('numpy').nanmax(sig)):.1f}")
    print(f"wrote {args.out}")
    return 0
