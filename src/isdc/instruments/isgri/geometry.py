"""IBIS/ISGRI geometry: the CdTe detector layer under the IBIS coded mask.

Numbers (DESIGN.md §6; Ubertini et al. 2003, A&A 411, L131; Lebrun et al. 2003, A&A
411, L141; Goldwurm et al. 2003, A&A 411, L223):

- ISGRI: 128 x 128 CdTe pixels at a 4.6 mm pitch, each a 4 x 4 mm crystal (0.3 mm dead
  zone on each side), in 8 modules of 64 x 32 pixels.  The modules form 4 rows of 32
  pixels along Z and 2 columns of 64 pixels along Y, separated by dead gaps of two pixel
  pitches, so that detector arrays with gaps are 134 (Z) x 130 (Y) - the layout of
  OSA's ISGRI shadowgrams and PIFs (module boundaries Z: 0, 32, 66, 100, 134; Y: 0, 64,
  130 in gapped-array indices).
- IBIS mask: MURA of order 53 replicated cyclically to 95 x 95 square tungsten elements
  of 11.2 mm, 3203 mm above ISGRI.  One detector pitch subtends 4.937' (the sky pixel:
  OSA's sky images have |CD| = 0.0822858 deg = (4.6/3203) rad), one element 12.0'.

Conventions (ours; the exact OSA IC mask file is not among our references):

- Event columns ISGRI_Z and ISGRI_Y are logical pixel indices 0..127 growing along +Z
  and +Y of the spacecraft frame; gapped-array index = ``i + 2 * (i // 32)`` along Z and
  ``i + 2 * (i // 64)`` along Y; arrays are numpy ``[Z, Y]`` (134 rows, 130 columns).
- Module number ``= 2 * (ISGRI_Z // 32) + ISGRI_Y // 64`` (0..7).
- The mask is centred over the detector (no offset); the 53 x 53 basic pattern fills
  the central elements 21..73 of each axis (``replicate(..., origin=(21, 21))``) and is
  continued cyclically for 21 elements on every side, so the mask is one basic pattern
  plus cyclic borders as in Goldwurm et al. (2003).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from isdc.imaging.geometry import CodedMaskGeometry
from isdc.imaging.mask import mura_pattern, replicate

__all__ = [
    "ISGRI_PIXELS",
    "ISGRI_PIXEL_PITCH_MM",
    "ISGRI_PIXEL_ACTIVE_MM",
    "ISGRI_MODULE_PIXELS",
    "ISGRI_N_MODULES",
    "ISGRI_GAP_PITCHES",
    "ISGRI_GAPPED_SHAPE",
    "IBIS_MASK_ORDER",
    "IBIS_MASK_ELEMENTS",
    "IBIS_MASK_ORIGIN",
    "IBIS_MASK_ELEMENT_MM",
    "IBIS_MASK_DISTANCE_MM",
    "ibis_mask",
    "isgri_geometry",
    "isgri_to_gapped",
    "isgri_module",
]

#: Logical ISGRI detector size (Z, Y): event columns ISGRI_Z, ISGRI_Y run over 0..127.
ISGRI_PIXELS = (128, 128)
#: Pixel pitch, mm.
ISGRI_PIXEL_PITCH_MM = 4.6
#: Side of a CdTe crystal (sensitive area), mm; 0.3 mm dead zone on each side.
ISGRI_PIXEL_ACTIVE_MM = 4.0
#: Pixels per module along (Z, Y): 8 modules of 32 x 64 pixels.
ISGRI_MODULE_PIXELS = (32, 64)
#: Modules along (Z, Y).
ISGRI_N_MODULES = (4, 2)
#: Dead gap between modules along (Z, Y), in pixel pitches.
ISGRI_GAP_PITCHES = (2, 2)
#: Shape (Z, Y) of ISGRI arrays with gaps.
ISGRI_GAPPED_SHAPE = (134, 130)
#: Order of the IBIS MURA basic pattern.
IBIS_MASK_ORDER = 53
#: IBIS mask size in elements per axis.
IBIS_MASK_ELEMENTS = 95
#: Mask element holding the basic pattern's element (0, 0) (centred basic pattern).
IBIS_MASK_ORIGIN = (21, 21)
#: Side of an IBIS mask element, mm.
IBIS_MASK_ELEMENT_MM = 11.2
#: Distance ISGRI - mask, mm.
IBIS_MASK_DISTANCE_MM = 3203.0


def ibis_mask() -> np.ndarray:
    """IBIS mask pattern, uint8 shape (95, 95) = [Z, Y], 1 = open element."""
    return replicate(mura_pattern(IBIS_MASK_ORDER), (IBIS_MASK_ELEMENTS,) * 2, IBIS_MASK_ORIGIN)


@lru_cache(maxsize=1)
def isgri_geometry() -> CodedMaskGeometry:
    """The IBIS/ISGRI :class:`~isdc.imaging.geometry.CodedMaskGeometry` (shared, immutable)."""
    geometry = CodedMaskGeometry(
        mask=ibis_mask(),
        mask_element_mm=IBIS_MASK_ELEMENT_MM,
        mask_distance_mm=IBIS_MASK_DISTANCE_MM,
        pixel_pitch_mm=ISGRI_PIXEL_PITCH_MM,
        pixel_active_mm=ISGRI_PIXEL_ACTIVE_MM,
        module_pixels=ISGRI_MODULE_PIXELS,
        n_modules=ISGRI_N_MODULES,
        gap_pitches=ISGRI_GAP_PITCHES,
        mask_offset_mm=(0.0, 0.0),
        name="IBIS/ISGRI",
    )
    assert geometry.shape == ISGRI_GAPPED_SHAPE and geometry.logical_shape == ISGRI_PIXELS
    return geometry


def isgri_to_gapped(isgri_z, isgri_y) -> tuple[np.ndarray, np.ndarray]:
    """Gapped-array (row, col) of event pixel indices (ISGRI_Z, ISGRI_Y), 0..127.

    Raises ValueError for indices outside 0..127.
    """
    return isgri_geometry().logical_to_gapped(isgri_z, isgri_y)


def isgri_module(isgri_z, isgri_y) -> np.ndarray:
    """Module number 0..7 of event pixels (ISGRI_Z, ISGRI_Y)."""
    row, col = isgri_to_gapped(isgri_z, isgri_y)
    return isgri_geometry().module_map[row, col]
