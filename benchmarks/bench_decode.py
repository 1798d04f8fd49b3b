"""Coded-mask imaging speed (ISGRI geometry) against floors measured in the same run.

- `Decoder(isgri_geometry())` set-up (mask resampling, kernel spectra), default and
  OSA-sized (400 x 400) sky images;
- `Decoder.decode` of one 134 x 130 band shadowgram (1e6 counts) with a cached
  efficiency map (bands of a ScW that share the efficiency map), and with a new
  efficiency map each time (uneven module efficiencies, 2% dead pixels: 4 more
  correlations and the balance/normalisation maps), in single and double precision;
  floor: one bare real FFT correlation of the same padded size and precision
  (rfft2 of the shadowgram, one complex product, one irfft2); the decoder needs 1 forward
  and 3 inverse transforms plus ~15 array operations on the sky image;
- `pif` of one source direction, floor: the 134 x 95 x 95 x 130 pair of matrix products
  alone; `fit_sources` for 10 sources + flat background.

Run: .venv/bin/python benchmarks/bench_decode.py [REPEAT]
"""
from __future__ import annotations

import sys
import time

import numpy as np
import scipy.fft

from isdc.imaging.decode import Decoder, fit_sources, model_shadowgram
from isdc.imaging.pif import overlap_fractions, pif, response
from isdc.instruments.isgri.geometry import isgri_geometry


def timings(fn, repeat: int) -> tuple[float, float]:
    """(median, best) wall time of ``fn()`` in seconds."""
    fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return float(np.median(out)), float(np.min(out))


def fmt(name: str, t: tuple[float, float], floor: tuple[float, float] | None = None) -> str:
    line = f"  {name:44s} {t[0] * 1e3:8.3f} ms (best {t[1] * 1e3:6.3f})"
    if floor is not None:
        line += f"   x{t[0] / floor[0]:5.1f} floor"
    return line


def main(repeat: int) -> None:
    geom = isgri_geometry()
    rng = np.random.default_rng(0)
    w = geom.real_pixels.astype(float)
    level = 1e6 / geom.n_pixels
    mu = level * w + model_shadowgram(response(geom, 0.01, -0.02), 50.0, 2000.0, w)
    counts = rng.poisson(mu).astype(float)

    print("set-up:")
    for shape in (None, (400, 400)):
        t = timings(lambda: Decoder(geom, sky_shape=shape), max(3, repeat // 20))
        dec = Decoder(geom, sky_shape=shape)
        print(fmt(f"Decoder, sky {dec.grid.shape}, FFT {dec.fft_shape}", t))

    for precision, real in (("single", np.float32), ("double", np.float64)):
        dec = Decoder(geom, precision=precision)
        fft_shape = dec.fft_shape
        x = counts.astype(real)
        kernel = scipy.fft.rfft2(rng.random(fft_shape).astype(real))
        floor = timings(lambda: scipy.fft.irfft2(scipy.fft.rfft2(x, s=fft_shape) * kernel, s=fft_shape), repeat)
        print(f"decode one band, {precision} precision, sky {dec.grid.shape}, FFT {fft_shape}:")
        print(fmt("floor: bare FFT correlation (1 fwd + 1 inv)", floor))
        print(fmt("decode, cached efficiency map", timings(lambda: dec.decode(counts, w, 2000.0), repeat), floor))
        # per-band efficiency maps: module dead times and ~2% dead pixels, different each time
        module_eff = rng.uniform(0.6, 0.9, (repeat + 1, 8))
        weight_maps = [w * module_eff[i][np.clip(geom.module_map, 0, 7)] * (rng.random(geom.shape) > 0.02)
                       for i in range(repeat + 1)]
        it = iter(weight_maps)
        print(fmt("decode, new efficiency map each time", timings(lambda: dec.decode(counts, next(it), 2000.0), repeat),
                  floor))

    print("pixel illumination fraction (one direction):")
    zc, yc = geom.pixel_centres_mm
    ez, ey = geom.mask_edges_mm
    oz = overlap_fractions(zc + 10.0, geom.pixel_active_mm, ez)
    oyt = np.ascontiguousarray(overlap_fractions(yc - 20.0, geom.pixel_active_mm, ey).T)
    mask = np.ascontiguousarray(geom.mask)
    pfloor = timings(lambda: (oz @ mask) @ oyt, repeat)
    print(fmt("floor: the two matrix products", pfloor))
    print(fmt("pif", timings(lambda: pif(geom, 0.0123, -0.0456), repeat), pfloor))

    resp = np.array([response(geom, *rng.uniform(-0.12, 0.12, 2)) for _ in range(10)])
    data = rng.poisson(level * w + model_shadowgram(resp, rng.uniform(1, 20, 10), 2000.0, w)).astype(float)
    print("PIF fit, 10 sources + flat background (Poisson IRLS):")
    print(fmt("fit_sources", timings(lambda: fit_sources(data, w, resp, w, 2000.0), max(3, repeat // 10))))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
