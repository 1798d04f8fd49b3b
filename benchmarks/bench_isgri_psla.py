"""ISGRI point-source location accuracy of the IMA level against the PSLA curve.

Many short synthetic science windows (2000 s, 1e6 background counts, live fraction 0.8),
each with one point source at a random position within 45 sky pixels (3.7 deg) of the
axis and a rate log-uniform between 7 and 200 counts/s (SNR ~5-150), detected above 6 sigma, made with PIF +
Poisson and analysed with `ima_band` (detection, detector-space position fit). Per SNR
bin it prints the 90% quantile of the offset from the truth and the PSLA curve
22.1' SNR^-0.95 + 0.16' (Gros et al. 2003) at the bin's median SNR, and the ratio of the
90% quantile of offset / PSLA(SNR) (must be < 1; tests/test_isgri_ima.py asserts it on
220 realisations). `--plot PATH` draws offsets, binned 90% quantiles and the curve
(docs/img/psla.png is made with the default 1200 realisations).

Run: .venv/bin/python benchmarks/bench_isgri_psla.py [N] [--plot docs/img/psla.png]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from isdc.imaging.decode import model_shadowgram
from isdc.imaging.detect import psla_arcmin
from isdc.imaging.pif import response
from isdc.imaging.projection import Attitude, tan_to_radec
from isdc.instruments.isgri.geometry import isgri_geometry
from isdc.instruments.isgri.ima import ImaBand, ima_band

EXPOSURE = 2000.0
LEVEL = 1.0e6 / 16384
BINS = [(6, 8), (8, 12), (12, 20), (20, 35), (35, 60), (60, 100), (100, 200)]
MATCH_ARCMIN = 30.0  # a detection this close to the truth is the source (6 sky pixels)


def offsets(n: int, seed: int = 2003, threshold: float = 6.0) -> tuple[np.ndarray, int]:
    """Rows (true rate, DETSIG, offset arcmin, FLUX, FLUX_ERR) of the sources detected within
    `MATCH_ARCMIN` of the truth, and the number of other (spurious) detections."""
    g = isgri_geometry()
    att = Attitude.from_posangle(83.63, 22.01, 61.5)
    rng = np.random.default_rng(seed)
    w = g.real_pixels * 0.8
    pt = g.pixel_tan
    rows, spurious = [], 0
    for _ in range(n):
        rate = np.exp(rng.uniform(np.log(7.0), np.log(200.0)))
        ty, tz = rng.uniform(-45, 45, 2) * pt
        mu = LEVEL * w + model_shadowgram(response(g, ty, tz), rate, EXPOSURE, w)
        s = ima_band(ImaBand(20, 40, rng.poisson(mu).astype(float), w, EXPOSURE), att, threshold=threshold).sources
        ra, dec = tan_to_radec(att, ty, tz)
        r1, d1 = np.radians([float(ra), float(dec)])
        r2, d2 = np.radians(s.ra), np.radians(s.dec)
        c = np.sin(d1) * np.sin(d2) + np.cos(d1) * np.cos(d2) * np.cos(r1 - r2)
        off = np.degrees(np.arccos(np.minimum(c, 1.0))) * 60
        match = np.flatnonzero(off < MATCH_ARCMIN)
        spurious += len(s) - match.size
        if match.size:
            k = match[np.argmin(off[match])]
            rows.append((rate, s.snr[k], off[k], s.rate[k], s.error[k]))
    return np.array(rows), spurious


def plot(rows: np.ndarray, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    snr, off = rows[:, 1], rows[:, 2]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.scatter(snr, off, s=4, alpha=0.35, color="tab:blue", label="offset from truth (one ScW each)")
    centres, q90 = [], []
    for lo, hi in BINS:
        sel = (snr >= lo) & (snr < hi)
        if sel.sum() >= 10:
            centres.append(np.median(snr[sel]))
            q90.append(np.quantile(off[sel], 0.9))
    ax.plot(centres, q90, "o-", color="tab:red", label="90% quantile per SNR bin")
    x = np.logspace(np.log10(6), np.log10(200), 100)
    ax.plot(x, psla_arcmin(x), "k--", label=r"PSLA 22.1$'$ SNR$^{-0.95}$ + 0.16$'$ (90%)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("detection significance (PIF fit rate / error)")
    ax.set_ylabel("offset from the true position (arcmin)")
    ax.set_title(f"ISGRI IMA positions, {len(rows)} synthetic 2 ks ScWs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=1200, help="realisations (default 1200)")
    ap.add_argument("--plot", metavar="PNG", help="write the figure here")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows, spurious = offsets(args.n)
    dt = time.perf_counter() - t0
    snr, off = rows[:, 1], rows[:, 2]
    print(f"{len(rows)} of {args.n} sources detected above 6 sigma, {spurious} spurious detections, in {dt:.1f} s "
          f"({dt / args.n * 1e3:.0f} ms per ScW band)")
    print(f"{'SNR bin':>10} {'n':>5} {'90% offset':>11} {'PSLA(median)':>13} {'q90(off/PSLA)':>14}")
    ok = True
    for lo, hi in BINS:
        sel = (snr >= lo) & (snr < hi)
        if sel.sum() < 10:
            continue
        q = np.quantile(off[sel], 0.9)
        ratio = np.quantile(off[sel] / psla_arcmin(snr[sel]), 0.9)
        ok &= ratio < 1.0
        print(f"{lo:>4}-{hi:<5} {sel.sum():>5} {q:>10.2f}' {psla_arcmin(np.median(snr[sel])):>12.2f}' {ratio:>14.2f}")
    pull = (rows[:, 3] - rows[:, 0]) / rows[:, 4]
    bright = snr > 50
    print(f"flux/truth - 1 at SNR > 50: {np.mean(rows[bright, 3] / rows[bright, 0]) - 1:+.4f} "
          f"({bright.sum()} sources); pulls: mean {pull.mean():+.3f}, std {pull.std():.3f}")
    print(f"{'PASS' if ok else 'FAIL'}: 90% offsets within the PSLA curve in every bin")
    if args.plot:
        plot(rows, args.plot)
        print(f"wrote {args.plot}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
