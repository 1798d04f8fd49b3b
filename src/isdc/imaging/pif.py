"""Pixel illumination fraction (PIF): the mask shadow of a point source on the detector.

For a source at ``(tan_y, tan_z)`` (see :mod:`isdc.imaging.geometry` for the frame) the
PIF of a detector pixel is the fraction of its *active* area from which the source is
seen through open mask elements (element transmissions weight the area).  Pixels and
mask elements are axis-aligned rectangles and the shadow is a pure translation by
``F * tan``, so the area overlap is separable and exact::

    PIF = Oz @ T @ Oy.T

with ``Oz[r, j]`` (``Oy[c, j]``) the fraction of the active width of pixel row ``r``
(column ``c``) that falls on mask element row (column) ``j`` once shifted into the mask
plane, and ``T`` the mask transmissions.  Rays that miss the mask are taken as blocked
(the IBIS collimator/shield): the PIF is 0 where the shadow falls outside the mask, and
0 for a source beyond the partially coded field of view.

The projected-area factor ``cos(theta) = 1/sqrt(1 + tan_y^2 + tan_z^2)`` (a pixel of
area A presents A cos(theta) to an off-axis beam) is kept separate (:func:`cos_theta`);
:func:`response` combines both.  Mask thickness (vignetting by element walls), the mask
support structure and partial transparency of closed elements are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isdc.imaging.geometry import CodedMaskGeometry

__all__ = ["overlap_fractions", "pif", "cos_theta", "response", "PixelGridMask", "mask_on_pixel_grid"]

# Overlaps below this fraction of the active width are rounding noise of edge arithmetic.
_OVERLAP_EPS = 1e-9


def overlap_fractions(centres: np.ndarray, width: float, edges: np.ndarray) -> np.ndarray:
    """Fraction of each interval ``[c - w/2, c + w/2]`` covered by each bin of ``edges``.

    Parameters
    ----------
    centres : numpy.ndarray
        Interval centres, shape (n,), mm.
    width : float
        Interval width, mm (> 0).
    edges : numpy.ndarray
        Increasing bin edges, shape (m + 1,), mm.

    Returns
    -------
    numpy.ndarray
        Shape (n, m), values in [0, 1]; rows sum to the covered fraction of each interval.
    """
    c = np.asarray(centres, dtype=np.float64)[:, None]
    lo = np.maximum(c - 0.5 * width, edges[None, :-1])
    hi = np.minimum(c + 0.5 * width, edges[None, 1:])
    frac = (hi - lo) / width
    frac[frac < _OVERLAP_EPS] = 0.0
    np.minimum(frac, 1.0, out=frac)
    return frac


def _check_tan(tan_y, tan_z) -> tuple[float, float]:
    ty, tz = float(tan_y), float(tan_z)
    if not (np.isfinite(ty) and np.isfinite(tz)):
        raise ValueError(f"source direction must be finite, got tan_y={tan_y}, tan_z={tan_z}")
    return ty, tz


def pif(geometry: CodedMaskGeometry, tan_y: float, tan_z: float) -> np.ndarray:
    """Pixel illumination fraction of a point source.

    Parameters
    ----------
    geometry : CodedMaskGeometry
        Telescope geometry.
    tan_y, tan_z : float
        Source direction in the instrument frame (tangent of the off-axis angles).

    Returns
    -------
    numpy.ndarray
        float64, shape ``geometry.shape`` (gapped layout): fraction in [0, 1] of each
        pixel's active area that sees the source through the mask; 0 in gaps.
    """
    ty, tz = _check_tan(tan_y, tan_z)
    f = geometry.mask_distance_mm
    zc, yc = geometry.pixel_centres_mm
    ez, ey = geometry.mask_edges_mm
    a = geometry.pixel_active_mm
    oz = overlap_fractions(zc + f * tz, a, ez)
    oy = overlap_fractions(yc + f * ty, a, ey)
    rz = np.flatnonzero(oz.any(axis=0))
    ry = np.flatnonzero(oy.any(axis=0))
    if rz.size == 0 or ry.size == 0:
        return np.zeros(geometry.shape)
    # Only the mask elements under the shifted detector matter: restrict the products.
    sz = slice(rz[0], rz[-1] + 1)
    sy = slice(ry[0], ry[-1] + 1)
    out = (oz[:, sz] @ geometry.mask[sz, sy]) @ np.ascontiguousarray(oy[:, sy].T)
    out[~geometry.real_pixels] = 0.0
    return out


def cos_theta(tan_y, tan_z):
    """Projected-area factor ``cos(theta)`` of a direction (theta = off-axis angle)."""
    ty = np.asarray(tan_y, dtype=np.float64)
    tz = np.asarray(tan_z, dtype=np.float64)
    return 1.0 / np.sqrt(1.0 + ty * ty + tz * tz)


def response(geometry: CodedMaskGeometry, tan_y: float, tan_z: float) -> np.ndarray:
    """Expected fraction of a source's rate recorded by each pixel at unit efficiency.

    ``response = pif * cos(theta) / n_pixels``: a source of rate R (counts/s that the whole
    detector's active area would record on axis through a fully open mask; the OSA
    intensity convention) gives ``R * exposure * efficiency * response`` counts per pixel.

    Returns
    -------
    numpy.ndarray
        float64, shape ``geometry.shape``.
    """
    p = pif(geometry, tan_y, tan_z)
    p *= cos_theta(tan_y, tan_z) / geometry.n_pixels
    return p


@dataclass(frozen=True, eq=False)
class PixelGridMask:
    """The mask resampled on the detector pixel grid (the decoding arrays' source).

    Cell ``(j_z, j_y)`` of the arrays is the pixel-sized cell that detector pixel
    ``(r, c)`` sees for an on-grid source shift of ``(k_z, k_y)`` pitches
    (``F tan = k * pitch``) when ``j = (r + k_z + first[0], c + k_y + first[1])``.

    Attributes
    ----------
    open : numpy.ndarray
        Fraction of a pixel's active area seeing open mask (transmission-weighted): the
        PIF of an on-grid source, shape (J_z, J_y).
    inside : numpy.ndarray
        Fraction of a pixel's active area that sees the mask at all, shape (J_z, J_y).
    first : (int, int)
        Offset ``first`` in the relation above.
    """

    open: np.ndarray
    inside: np.ndarray
    first: tuple[int, int]


def mask_on_pixel_grid(geometry: CodedMaskGeometry) -> PixelGridMask:
    """Resample the mask onto the detector pixel lattice (every cell with any overlap).

    Returns
    -------
    PixelGridMask
        ``open[j] == pif(geometry, k_y*p/F, k_z*p/F)[r, c]`` for real pixels, exactly.
    """
    p = geometry.pixel_pitch_mm
    a = geometry.pixel_active_mm
    overlaps = []
    first = []
    for axis in (0, 1):
        x0 = geometry.pixel_centres_mm[axis][0]
        edges = geometry.mask_edges_mm[axis]
        # lattice cells x0 + m p whose active interval overlaps the mask extent
        m_lo = int(np.floor((edges[0] - 0.5 * a - x0) / p)) + 1
        m_hi = int(np.ceil((edges[-1] + 0.5 * a - x0) / p)) - 1
        centres = x0 + np.arange(m_lo, m_hi + 1) * p
        ov = overlap_fractions(centres, a, edges)
        keep = np.flatnonzero(ov.any(axis=1))
        ov = ov[keep[0]:keep[-1] + 1]
        overlaps.append(ov)
        first.append(-(m_lo + int(keep[0])))
    oz, oy = overlaps
    open_ = oz @ geometry.mask @ oy.T
    inside = np.outer(oz.sum(axis=1), oy.sum(axis=1))
    open_[open_ < _OVERLAP_EPS] = 0.0
    for arr in (open_, inside):
        arr.setflags(write=False)
    return PixelGridMask(open=open_, inside=inside, first=(first[0], first[1]))
