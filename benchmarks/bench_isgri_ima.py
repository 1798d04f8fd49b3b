"""ISGRI IMA level speed: one 2000 s science window, 4 energy bands, against the decode floor.

The synthetic ScW is the Crab field of the simulator's sample sky (docs/simulator.md):
the Crab on axis (a bright catalogue source, fitted first), 1A 0535+262 4.4 deg away at
100 mCrab and a 5 counts/s source, on the simulator's background rates per band, live
fraction 0.77, PIF + Poisson. `ima_scw` does per band: one decode for the variance, the
catalogue fit, the residual decode and search, a fit and decode per source found, the
final joint fit with free positions and the decode of the source models (the central
peaks put back). Floor, same run and data: 4 bare `Decoder.decode` calls (what making
the images alone costs). Target (issue 4): IMA <= 0.4 s of the <= 1 s COR->IMA budget.

Run: .venv/bin/python benchmarks/bench_isgri_ima.py [REPEAT]
"""
from __future__ import annotations

import sys

import numpy as np
from bench_decode import timings  # (median, best) wall time, shared with the decode benchmark

from isdc.imaging.decode import model_shadowgram
from isdc.imaging.pif import response
from isdc.imaging.projection import Attitude, radec_to_tan
from isdc.instruments.isgri.geometry import isgri_geometry
from isdc.instruments.isgri.ima import CatalogSources, ImaBand, ima_scw, isgri_decoder

TARGET_S = 0.4
EXPOSURE = 2000.0
LIVE = 0.77
BANDS = [(20, 40), (40, 100), (25, 80), (100, 200)]
BACKGROUND = [207.0, 266.0, 355.0, 150.0]  # counts/s per band (simulator, Crab-field ScW)
SOURCES = [  # ra, dec, rate per band (counts/s)
    (83.6332, 22.0145, [156.8, 97.3, 179.5, 20.0]),
    (84.7274, 26.3158, [15.2, 6.7, 15.6, 0.8]),
    (86.0, 20.5, [5.0, 3.0, 6.0, 0.5]),
]


def crab_field(seed: int = 0):
    g = isgri_geometry()
    att = Attitude.from_posangle(83.63, 22.01, 92.3)
    w = g.real_pixels * LIVE
    rng = np.random.default_rng(seed)
    bands = []
    for b, (e1, e2) in enumerate(BANDS):
        bkg = BACKGROUND[b] * EXPOSURE * LIVE / g.n_pixels * g.real_pixels
        mu = bkg.copy()
        for ra, dec, rates in SOURCES:
            ty, tz = radec_to_tan(att, ra, dec)
            mu += model_shadowgram(response(g, float(ty), float(tz)), rates[b], EXPOSURE, w)
        bands.append(ImaBand(e1, e2, rng.poisson(mu).astype(float), w, EXPOSURE, bkg))
    cat = CatalogSources(np.array([83.6332, 84.7274]), np.array([22.0145, 26.3158]), np.zeros(2),
                         np.array([True, False]))
    return bands, att, cat


def main(repeat: int) -> int:
    bands, att, cat = crab_field()
    dec = isgri_decoder()
    gapped = [b.gapped() for b in bands]
    floor = timings(lambda: [dec.decode(c, w, EXPOSURE) for c, w, _ in gapped], repeat)
    t = timings(lambda: ima_scw(bands, att, cat), repeat)
    res = ima_scw(bands, att, cat)
    print(f"IMA of one {EXPOSURE:.0f} s ScW, {len(bands)} bands (Crab field), median of {repeat}:")
    print(f"  floor: {len(bands)} bare decodes           {floor[0] * 1e3:8.1f} ms (best {floor[1] * 1e3:6.1f})")
    print(f"  ima_scw                            {t[0] * 1e3:8.1f} ms (best {t[1] * 1e3:6.1f})   "
          f"x{t[0] / floor[0]:4.1f} floor")
    for r in res:
        s = r.sources
        print(f"  {r.e_min:5.0f}-{r.e_max:<4.0f} keV: {r.iros.n_decodes} decodes, {len(s)} sources, DETSIG "
              + ", ".join(f"{v:.1f}" for v in s.snr))
    ok = t[0] <= TARGET_S
    print(f"{'PASS' if ok else 'FAIL'}: IMA {t[0]:.3f} s <= {TARGET_S} s target")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
