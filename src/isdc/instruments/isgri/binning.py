"""ISGRI detector shadowgrams and efficiency maps (level BIN).

Pure numpy. Shadowgrams are counts per logical pixel, (n_bands, 128, 128) numpy
[band, Z, Y], of the selected events with E_min <= energy < E_max. Bands may overlap
(20-40, 25-80): the events are binned once into the elementary slices between all band
edges with one `np.bincount` on a flat (slice, pixel) index, and each band is the sum of
its slices (DESIGN §5: ~30 ms for 2e6 events x 4 bands).

The efficiency map of a pixel is the live fraction of its module over the good time
(ISGR-DEAD-SCP) x its status: 0 for noisy pixels (COR flag bit 2) and for pixels that
recorded nothing while their module's pixels recorded `DEAD_PIXEL_MIN_EXPECTED` counts on
average (P(0) < 2e-9), 1 otherwise. A low-threshold efficiency per pixel is not modelled
(it is part of the response), so the map is the same in every band. The logical 128 x 128
layout has no module gaps; the imaging inserts them (`isgri_geometry().to_gapped`), and the
0.3 mm dead zone around each crystal is in the PIF (active area 4 of 4.6 mm).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isdc.instruments.isgri.cor import N_PIX, pixel_module_map
from isdc.instruments.isgri.detector_model import N_MODULES, N_PIXELS

__all__ = ["DEAD_PIXEL_MIN_EXPECTED", "band_slices", "bin_shadowgrams", "PixelStatus", "pixel_status",
           "efficiency_map"]

DEAD_PIXEL_MIN_EXPECTED = 20.0
"""Mean counts per pixel of a module above which a pixel with no count is dead."""


def band_slices(bands) -> tuple[np.ndarray, np.ndarray]:
    """(edges, member) for bands [[e1, e2], ...] [keV]: the sorted distinct edges and a
    (n_bands, n_edges - 1) bool matrix saying which elementary slices make each band."""
    b = np.asarray(bands, dtype=float).reshape(-1, 2)
    if b.size == 0 or np.any(~(b[:, 0] < b[:, 1])):
        raise ValueError(f"energy bands must be [[E1, E2], ...] with E1 < E2, got {bands!r}")
    edges = np.unique(b.ravel())
    lo, hi = edges[:-1], edges[1:]
    member = (lo[None, :] >= b[:, :1]) & (hi[None, :] <= b[:, 1:])
    return edges, member


def bin_shadowgrams(isgri_z, isgri_y, energy, select, bands) -> np.ndarray:
    """(n_bands, 128, 128) float32 counts of the selected events per band and pixel.

    isgri_z, isgri_y : (n,) pixel (0..127); energy : (n,) keV; select : (n,) bool (good
    events in good time) or None; bands : [[e1, e2], ...] keV, E1 <= E < E2.
    """
    edges, member = band_slices(bands)
    e = np.asarray(energy)
    n_slices = edges.size - 1
    if edges.size <= 32:
        # Slice of each event (-1 below, n_slices above) by counting the edges at or below
        # its energy: a few vectorised comparisons beat a binary search per event.
        s = np.full(e.shape, -1, dtype=np.int8)
        for edge in edges.astype(e.dtype if e.dtype.kind == "f" else float):
            s += e >= edge
    else:
        s = np.searchsorted(edges, e, side="right") - 1
    ok = (s >= 0) & (s < n_slices)
    if select is not None:
        ok &= np.asarray(select, dtype=bool)
    z = np.asarray(isgri_z)[ok].astype(np.int64)
    y = np.asarray(isgri_y)[ok].astype(np.int64)
    flat = (s[ok].astype(np.int64) * N_PIXELS + z) * N_PIXELS + y
    per_slice = np.bincount(flat, minlength=n_slices * N_PIX).reshape(n_slices, N_PIX)
    out = member.astype(np.int64) @ per_slice  # (n_bands, N_PIX) exact integer sums
    return out.reshape(-1, N_PIXELS, N_PIXELS).astype(np.float32)


@dataclass(frozen=True)
class PixelStatus:
    """status : (128, 128) float 1 on / 0 off; noisy, dead : (128, 128) bool."""

    status: np.ndarray
    noisy: np.ndarray
    dead: np.ndarray

    @property
    def n_noisy(self) -> int:
        return int(self.noisy.sum())

    @property
    def n_dead(self) -> int:
        return int(self.dead.sum())


def pixel_status(pixel_counts, noisy, min_expected: float = DEAD_PIXEL_MIN_EXPECTED) -> PixelStatus:
    """Which pixels the shadowgrams use.

    pixel_counts : (128, 128) counts of every valid event of the ScW (any energy, flag or
    time), used to find dead pixels; noisy : (128, 128) bool (pixels with COR flag bit 2).
    """
    counts = np.asarray(pixel_counts, dtype=float).reshape(N_PIX)
    noisy = np.asarray(noisy, dtype=bool).reshape(N_PIX)
    modules = pixel_module_map()
    quiet = ~noisy
    per_module = np.bincount(modules, weights=counts * quiet, minlength=N_MODULES)
    n_quiet = np.bincount(modules, weights=quiet.astype(float), minlength=N_MODULES)
    mean = np.divide(per_module, n_quiet, out=np.zeros(N_MODULES), where=n_quiet > 0)
    dead = (counts == 0) & (mean[modules] >= min_expected) & quiet
    status = (~noisy & ~dead).astype(float)
    shape = (N_PIXELS, N_PIXELS)
    return PixelStatus(status.reshape(shape), noisy.reshape(shape), dead.reshape(shape))


def efficiency_map(live_fraction, status) -> np.ndarray:
    """(128, 128) float32 efficiency: live fraction of the pixel's module x pixel status.

    live_fraction : (8,) per module (ISGR-DEAD-SCP DEADC_n); status : (128, 128).
    """
    live = np.asarray(live_fraction, dtype=float)
    if live.shape != (N_MODULES,):
        raise ValueError(f"live_fraction must have one value per module ({N_MODULES}), got shape {live.shape}")
    return (live[pixel_module_map()].reshape(N_PIXELS, N_PIXELS) * np.asarray(status, dtype=float)).astype(np.float32)
