"""`isdc-run detect`: source detection on any sky image or mosaic in the OSA layout."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from isdc.dal.fitsfile import FitsError
from isdc.dal.products import write_product
from isdc.dal.catalog import read_catalog
from isdc.pipeline.sourcelist import ReferenceSources, source_list

ORDER = 40


def register(sub):
    p = sub.add_parser("detect", help="find sources in a sky image or mosaic (ours or OSA's) -> ISGR-SRCL-RES",
                       description="Detect, fit and identify sources in every energy band of a sky image "
                                   "or mosaic in the OSA layout; write an ISGR-SRCL-RES source list.")
    p.add_argument("image", type=Path, help="sky image or mosaic FITS file (ISGR-SKY.-IMA / ISGR-MOSA-IMA)")
    p.add_argument("--out", type=Path, required=True, help="source list to write (FITS)")
    p.add_argument("--catalog", type=Path, help="reference catalogue (GNRL-REFR-CAT or NAME/RA_OBJ/DEC_OBJ table)")
    p.add_argument("--threshold", type=float, default=6.0, help="detection threshold in sigma (default 6)")
    p.set_defaults(func=run)


def run(args) -> int:
    from isdc.dal.skyimages import read_sky_images

    try:
        sets = read_sky_images(args.image)
        catalog = None
        if args.catalog is not None:
            catalog = ReferenceSources.from_catalog(read_catalog(args.catalog), args.catalog.name)
        tab = source_list(sets, catalog, threshold=args.threshold, image_name=args.image.name)
        for s in sets:
            rows = [i for i in range(len(tab)) if tab["E_MIN"][i] == np.float32(s.e_min)]
            print(f"{s.e_min:g}-{s.e_max:g} keV: {len(rows)} source(s) above {args.threshold:g} sigma")
            for i in rows:
                print(f"  {tab['NAME'][i]:<24s} RA {tab['RA_FIN'][i]:9.4f} Dec {tab['DEC_FIN'][i]:+8.4f} "
                      f"DETSIG {tab['DETSIG'][i]:7.1f} FLUX {tab['FLUX'][i]:9.3f} +- {tab['FLUX_ERR'][i]:.3f}"
                      f" err {tab['ERR_RAD'][i] * 60:.2f}'")
        write_product(args.out, [tab])
    except (FitsError, OSError, ValueError) as exc:
        print(f"isdc-run detect: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0
