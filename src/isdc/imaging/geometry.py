"""Instrument-independent geometry of a coded-mask telescope with a pixellated detector.

Frame and axes (used by every module of :mod:`isdc.imaging`)
------------------------------------------------------------
The instrument frame is the right-handed spacecraft frame: X along the pointing axis
(towards the sky), Y and Z in the detector plane.  A direction on the sky is given by
``(tan_y, tan_z) = (u_Y / u_X, u_Z / u_X)`` for the unit vector ``u`` towards the
source.  Detector and mask arrays are numpy ``[row, col] = [Z, Y]``: row index grows
with +Z, column index with +Y.  Lengths are millimetres, measured in the detector plane
from the centre of the detector array (with gaps) for the detector and in the mask plane
from the same axis for the mask; the mask plane lies ``mask_distance_mm`` above the
detector along +X.

A photon from direction ``(tan_y, tan_z)`` that reaches detector point ``(z, y)``
crossed the mask plane at ``(z + F tan_z, y + F tan_y)`` (F = mask distance): the mask
shadow of a source at +tan moves towards -Y/-Z on the detector.

Detector layout
---------------
The detector is ``n_modules`` modules of ``module_pixels`` pixels per axis, separated by
dead gaps that are a whole number of pixel pitches wide, so that the detector array
*with gaps* is a uniform grid of pitch ``pixel_pitch_mm`` (what makes the decoding an
FFT correlation).  Each pixel has a square active (sensitive) area of side
``pixel_active_mm`` centred in its pitch cell.  The *logical* detector (event pixel
indices, no gaps) maps into the gapped array by skipping the gap cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["CodedMaskGeometry"]

RAD_TO_ARCMIN = 180.0 * 60.0 / np.pi


def _pair(value, name: str, kind=int) -> tuple:
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (z, y), got {value!r}") from None
    return kind(a), kind(b)


@dataclass(frozen=True, eq=False)
class CodedMaskGeometry:
    """Geometry of a coded-mask telescope: mask, distance, pixellated detector.

    Parameters
    ----------
    mask : numpy.ndarray
        Transmission of each mask element, shape (n_z, n_y) = [Z, Y]; 1 open, 0 closed
        (values in [0, 1] allowed).
    mask_element_mm : float
        Side of a (square) mask element, mm.
    mask_distance_mm : float
        Distance from the detector plane to the mask plane, mm.
    pixel_pitch_mm : float
        Pixel pitch of the detector, mm.
    pixel_active_mm : float
        Side of the square sensitive area of a pixel, mm (<= pitch).
    module_pixels : (int, int)
        Pixels per module along (Z, Y).
    n_modules : (int, int)
        Number of modules along (Z, Y).
    gap_pitches : (int, int)
        Width of the dead gap between adjacent modules along (Z, Y), in pixel pitches.
    mask_offset_mm : (float, float)
        Position of the mask centre relative to the detector-array centre along (Z, Y), mm.
    name : str
        Label used in messages.
    """

    mask: np.ndarray
    mask_element_mm: float
    mask_distance_mm: float
    pixel_pitch_mm: float
    pixel_active_mm: float
    module_pixels: tuple[int, int]
    n_modules: tuple[int, int]
    gap_pitches: tuple[int, int]
    mask_offset_mm: tuple[float, float] = (0.0, 0.0)
    name: str = "coded-mask"

    def __post_init__(self):
        mask = np.array(self.mask, dtype=np.float64)
        if mask.ndim != 2 or min(mask.shape) < 1:
            raise ValueError(f"{self.name}: mask must be a non-empty 2-D array, got shape {mask.shape}")
        if not np.all(np.isfinite(mask)) or mask.min() < 0 or mask.max() > 1:
            raise ValueError(f"{self.name}: mask transmissions must lie in [0, 1]")
        mask.setflags(write=False)
        object.__setattr__(self, "mask", mask)
        for field in ("mask_element_mm", "mask_distance_mm", "pixel_pitch_mm", "pixel_active_mm"):
            v = float(getattr(self, field))
            if not np.isfinite(v) or v <= 0:
                raise ValueError(f"{self.name}: {field} must be positive and finite, got {v}")
            object.__setattr__(self, field, v)
        if self.pixel_active_mm > self.pixel_pitch_mm:
            raise ValueError(
                f"{self.name}: pixel_active_mm {self.pixel_active_mm} exceeds pixel_pitch_mm {self.pixel_pitch_mm}"
            )
        for field in ("module_pixels", "n_modules"):
            v = _pair(getattr(self, field), field)
            if min(v) < 1:
                raise ValueError(f"{self.name}: {field} must be >= 1, got {v}")
            object.__setattr__(self, field, v)
        gaps = _pair(self.gap_pitches, "gap_pitches")
        if min(gaps) < 0:
            raise ValueError(f"{self.name}: gap_pitches must be >= 0, got {gaps}")
        object.__setattr__(self, "gap_pitches", gaps)
        off = _pair(self.mask_offset_mm, "mask_offset_mm", float)
        if not all(np.isfinite(off)):
            raise ValueError(f"{self.name}: mask_offset_mm must be finite, got {off}")
        object.__setattr__(self, "mask_offset_mm", off)

    # ---- detector layout -------------------------------------------------------------
    @property
    def logical_shape(self) -> tuple[int, int]:
        """Shape (Z, Y) of the detector without gaps (event pixel indices)."""
        return tuple(m * n for m, n in zip(self.module_pixels, self.n_modules))

    @property
    def shape(self) -> tuple[int, int]:
        """Shape (Z, Y) of the detector array with gaps (shadowgrams, PIFs)."""
        return tuple(
            m * n + (n - 1) * g for m, n, g in zip(self.module_pixels, self.n_modules, self.gap_pitches)
        )

    @property
    def n_pixels(self) -> int:
        """Number of real pixels (logical detector size)."""
        z, y = self.logical_shape
        return z * y

    def _gapped_index(self, axis: int) -> np.ndarray:
        i = np.arange(self.logical_shape[axis])
        return i + self.gap_pitches[axis] * (i // self.module_pixels[axis])

    @cached_property
    def real_pixels(self) -> np.ndarray:
        """Boolean map, shape :attr:`shape`: True on real pixels, False in gaps."""
        m = np.zeros(self.shape, dtype=bool)
        m[np.ix_(self._gapped_index(0), self._gapped_index(1))] = True
        m.setflags(write=False)
        return m

    @cached_property
    def module_map(self) -> np.ndarray:
        """Module number of each cell of the gapped array, shape :attr:`shape`
        (``module = iz_module * n_modules_y + iy_module``), -1 in gaps."""
        mz = np.full(self.shape[0], -1)
        my = np.full(self.shape[1], -1)
        mz[self._gapped_index(0)] = np.arange(self.logical_shape[0]) // self.module_pixels[0]
        my[self._gapped_index(1)] = np.arange(self.logical_shape[1]) // self.module_pixels[1]
        out = np.where((mz[:, None] >= 0) & (my[None, :] >= 0), mz[:, None] * self.n_modules[1] + my[None, :], -1)
        out.setflags(write=False)
        return out

    def logical_to_gapped(self, z, y) -> tuple[np.ndarray, np.ndarray]:
        """Gapped-array (row, col) of logical pixel indices (z, y) (integers, any shape).

        Raises ValueError for indices outside the logical detector.
        """
        z = np.asarray(z)
        y = np.asarray(y)
        nz, ny = self.logical_shape
        if z.size and (z.min() < 0 or z.max() >= nz):
            raise ValueError(f"{self.name}: Z pixel index outside 0..{nz - 1}")
        if y.size and (y.min() < 0 or y.max() >= ny):
            raise ValueError(f"{self.name}: Y pixel index outside 0..{ny - 1}")
        return (z + self.gap_pitches[0] * (z // self.module_pixels[0]),
                y + self.gap_pitches[1] * (y // self.module_pixels[1]))

    def to_gapped(self, image: np.ndarray, fill=0) -> np.ndarray:
        """Place a logical-detector image (..., Z, Y) into the gapped layout, ``fill`` in gaps."""
        image = np.asarray(image)
        if image.shape[-2:] != self.logical_shape:
            raise ValueError(f"{self.name}: expected trailing shape {self.logical_shape}, got {image.shape}")
        out = np.full(image.shape[:-2] + self.shape, fill, dtype=image.dtype)
        out[..., self._gapped_index(0)[:, None], self._gapped_index(1)[None, :]] = image
        return out

    def to_logical(self, image: np.ndarray) -> np.ndarray:
        """Extract the logical-detector image (..., Z, Y) from a gapped-layout image."""
        image = np.asarray(image)
        if image.shape[-2:] != self.shape:
            raise ValueError(f"{self.name}: expected trailing shape {self.shape}, got {image.shape}")
        return image[..., self._gapped_index(0)[:, None], self._gapped_index(1)[None, :]]

    @cached_property
    def pixel_centres_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Centres (z, y) of the cells of the gapped array, mm from the array centre:
        two 1-D arrays of lengths ``shape[0]`` and ``shape[1]``."""
        out = []
        for n in self.shape:
            c = (np.arange(n) - (n - 1) / 2.0) * self.pixel_pitch_mm
            c.setflags(write=False)
            out.append(c)
        return tuple(out)

    # ---- mask --------------------------------------------------------------------------
    @cached_property
    def mask_edges_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Element edges (z, y) of the mask in the mask plane, mm: 1-D arrays of lengths
        ``mask.shape[0] + 1`` and ``mask.shape[1] + 1``."""
        out = []
        for n, off in zip(self.mask.shape, self.mask_offset_mm):
            e = off + (np.arange(n + 1) - n / 2.0) * self.mask_element_mm
            e.setflags(write=False)
            out.append(e)
        return tuple(out)

    @property
    def open_fraction(self) -> float:
        """Mean transmission of the mask."""
        return float(self.mask.mean())

    # ---- angles ------------------------------------------------------------------------
    @property
    def pixel_tan(self) -> float:
        """Angular size of one detector pitch seen from the mask (tan units): the sky
        pixel of the decoded images."""
        return self.pixel_pitch_mm / self.mask_distance_mm

    @property
    def pixel_arcmin(self) -> float:
        """Sky pixel size on axis, arcmin."""
        return float(np.arctan(self.pixel_tan) * RAD_TO_ARCMIN)

    @property
    def element_arcmin(self) -> float:
        """Angle subtended on axis by one mask element, arcmin (the angular resolution)."""
        return float(np.arctan(self.mask_element_mm / self.mask_distance_mm) * RAD_TO_ARCMIN)

    def _half_extents(self):
        det = [(n * self.pixel_pitch_mm) / 2.0 for n in self.shape]
        mask = [(n * self.mask_element_mm) / 2.0 for n in self.mask.shape]
        return det, mask

    @property
    def fully_coded_half_tan(self) -> tuple[float, float]:
        """Half-width (Z, Y) of the fully coded field of view in tan units: the whole
        detector sees the mask (mask offset ignored)."""
        det, mask = self._half_extents()
        return tuple(max(m - d, 0.0) / self.mask_distance_mm for d, m in zip(det, mask))

    @property
    def partially_coded_half_tan(self) -> tuple[float, float]:
        """Half-width (Z, Y) of the partially coded field of view (zero response beyond)
        in tan units (mask offset ignored)."""
        det, mask = self._half_extents()
        return tuple((m + d) / self.mask_distance_mm for d, m in zip(det, mask))
