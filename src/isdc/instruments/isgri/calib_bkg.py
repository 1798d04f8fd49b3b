"""Calibration procedure of the ISGRI background maps (IC structure ISGR-BKG.-MOD).

Pure numpy. As the ISGRI calibration team built background maps from real empty fields:
the shadowgrams of science windows pointed at fields without detectable sources are
stacked per energy slice, and the map of a slice is

    rate[p] = sum over ScWs of counts[p] / sum over ScWs of EFFI[p] x ONTIME    [counts/s]

(0 where no ScW used the pixel), the background rate of pixel p at unit efficiency. The
BKG level scales the map of a band to each ScW (`isdc.instruments.isgri.background`), so
only its shape matters; its statistical noise enters every ScW's background model the same
way, hence the need to stack many ScWs (the relative noise per pixel is
1 / sqrt(counts[p]); `BackgroundStack.relative_noise`).

The driver that reads BIN products and writes the IC file is in the pipeline layer
(`isdc.pipeline.isgri_scw.build_background_ic`).
"""
from __future__ import annotations

import numpy as np

from isdc.instruments.isgri.detector_model import N_PIXELS

__all__ = ["DEFAULT_SLICES", "BackgroundStack"]

DEFAULT_SLICES = (15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0, 60.0, 65.0, 70.0, 80.0, 90.0, 100.0,
                  120.0, 150.0, 200.0, 300.0, 500.0, 1000.0)
"""Edges [keV] of the energy slices of the shipped background maps: 5 keV wide where the
lines (Cd, Te, W, Pb K) and most counts are, wider above. Multiples of 0.5 keV, so every
slice is a valid BIN band."""


class BackgroundStack:
    """Accumulates empty-field shadowgrams per energy slice.

    edges : slice edges [keV] (increasing); `add` one ScW at a time, `maps()` at the end.
    """

    def __init__(self, edges=DEFAULT_SLICES):
        e = np.asarray(edges, dtype=float)
        if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0):
            raise ValueError(f"slice edges must increase, got {edges!r}")
        self.edges = e
        k = e.size - 1
        self.counts = np.zeros((k, N_PIXELS, N_PIXELS))
        self.exposure = np.zeros((k, N_PIXELS, N_PIXELS))
        self.n_scw = 0
        self.ontime = 0.0

    @property
    def e_min(self) -> np.ndarray:
        return self.edges[:-1]

    @property
    def e_max(self) -> np.ndarray:
        return self.edges[1:]

    @property
    def bands(self) -> list[list[float]]:
        """The slices as BIN bands [[e1, e2], ...]."""
        return [[float(a), float(b)] for a, b in zip(self.e_min, self.e_max)]

    def add(self, counts, efficiency, ontime_s: float) -> None:
        """Add one ScW: counts (k, 128, 128) per slice, efficiency (128, 128) or
        (k, 128, 128), good time ONTIME [s]."""
        c = np.asarray(counts, dtype=float)
        w = np.asarray(efficiency, dtype=float)
        if c.shape != self.counts.shape:
            raise ValueError(f"counts must have shape {self.counts.shape}, got {c.shape}")
        if w.shape not in (c.shape, c.shape[1:]):
            raise ValueError(f"efficiency must have shape {c.shape[1:]} or {c.shape}, got {w.shape}")
        if not ontime_s > 0:
            raise ValueError(f"ONTIME must be > 0, got {ontime_s}")
        # Counts of pixels switched off (W = 0) are not background of a used pixel.
        self.counts += np.where(w > 0, c, 0.0)
        self.exposure += np.broadcast_to(w * ontime_s, c.shape)
        self.n_scw += 1
        self.ontime += float(ontime_s)

    def maps(self) -> np.ndarray:
        """(k, 128, 128) rate per pixel at unit efficiency [counts/s]; 0 where unexposed."""
        if self.n_scw == 0:
            raise ValueError("no science window stacked")
        return np.divide(self.counts, self.exposure, out=np.zeros_like(self.counts), where=self.exposure > 0)

    def relative_noise(self) -> np.ndarray:
        """(k,) median over exposed pixels of the maps' relative statistical error 1/sqrt(counts)."""
        out = []
        for c, x in zip(self.counts, self.exposure):
            c = c[x > 0]
            out.append(float(np.median(1.0 / np.sqrt(np.maximum(c, 1.0)))) if c.size else np.inf)
        return np.array(out)
