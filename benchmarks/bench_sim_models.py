"""Simulator models: the per-event sampling a 2000 s ScW needs, against numpy floors.

A Crab ScW has ~1.7e6 events (background ~900 counts/s + Crab ~170 counts/s through the
mask, over ~1550 s of live time). The event generator (next round) draws for each event
an energy, a pixel, a rise time and turns it into PHA: all vectorised here. The target
for the whole ScW is < 2 s; these pieces must leave room for the mask projection (PIF).

Measured in the same run (median of N repeats) for N_EVENTS events:
- floor: `rng.random(n)` + `np.searchsorted` into a 256-channel CDF (the least an
  inverse-CDF draw of a channel can cost), and `rng.random(n)` alone;
- `IsgriResponse.sample_energies` (fold + inverse CDF + position in channel),
- `BackgroundModel.sample` (pixel from the 128x128 map + energy),
- `RiseTimeModel.sample` (depth in CdTe + noise), `rejected_events`,
- `GainModel.pha` + `digitise_pha`, and the COR inverse `GainModel.energy`;
and, once each: `Sky.default()` (strict YAML, 1276 sources), `Sky.rates` (fold all),
`plan_revolution` (a full revolution), `simulate_hk` (a 2000 s ScW).

Run: .venv/bin/python benchmarks/bench_sim_models.py [N_EVENTS] [--repeat N]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from bench_fits_io import median_time  # the benchmarks' shared timer (this folder)

from isdc.instruments.isgri.detector_model import (BackgroundModel, GainModel, RiseTimeModel, digitise_pha,
                                                   simulate_hk)
from isdc.instruments.isgri.response import IsgriResponse
from isdc.sim import sky as sky_mod
from isdc.sim.plan import plan_revolution
from isdc.sim.spectra import CRAB


BUDGET = 1.0
"""Seconds the per-event models may take for a ScW's events: half the 2 s target."""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("n", nargs="?", type=int, default=1_700_000)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    n, rep = a.n, a.repeat
    rng = np.random.default_rng(0)
    resp = IsgriResponse.default()
    bkg = BackgroundModel.default(resp)
    bkg.sample(10, rng)  # build the samplers once, as a generator would
    rt_model, gain = RiseTimeModel(), GainModel()
    cdf = np.cumsum(rng.random(256))
    cdf /= cdf[-1]
    e = resp.sample_energies(CRAB, n, rng)
    m = rng.integers(0, 8, n)
    rt = rt_model.sample(e, rng)

    floor = median_time(lambda: np.searchsorted(cdf, rng.random(n)), rep)
    floor_rand = median_time(lambda: rng.random(n), rep)
    rows = [
        ("floor: rng.random + searchsorted(256)", floor),
        ("floor: rng.random", floor_rand),
        ("IsgriResponse.sample_energies", median_time(lambda: resp.sample_energies(CRAB, n, rng), rep)),
        ("BackgroundModel.sample (pixel+energy)", median_time(lambda: bkg.sample(n, rng), rep)),
        ("RiseTimeModel.sample", median_time(lambda: rt_model.sample(e, rng), rep)),
        ("RiseTimeModel.rejected_events", median_time(lambda: rt_model.rejected_events(e, rng), rep)),
        ("GainModel.pha + digitise_pha", median_time(lambda: digitise_pha(gain.pha(e, rt, m, 3006.0, 1.0)), rep)),
        ("GainModel.energy (COR inverse)", median_time(lambda: gain.energy(e, rt, m, 3006.0, 1.0), rep)),
    ]
    print(f"{n:.3g} events, median of {rep}")
    print(f"{'step':42s} {'time':>9s} {'ns/event':>9s} {'x floor':>8s}")
    per_event = 0.0
    for name, t in rows:
        print(f"{name:42s} {t * 1e3:7.1f} ms {t / n * 1e9:9.1f} {t / floor:8.2f}")
        if not name.startswith("floor"):
            per_event += t
    print(f"{'sum of the per-event models':42s} {per_event * 1e3:7.1f} ms")
    ok = per_event < BUDGET
    print(f"{'PASS' if ok else 'FAIL'}: per-event models {per_event:.2f} s < {BUDGET:.1f} s "
          f"(half of the 2 s a whole ScW may take)")

    sky_mod._default_sky.cache_clear()
    t0 = time.perf_counter()
    sky = sky_mod.Sky.default()
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    sky.rates((25.0, 80.0), response=resp)
    t_rates = time.perf_counter() - t0
    t_plan = median_time(lambda: plan_revolution(665, pattern="5x5", seed=1), rep)
    t_hk = median_time(lambda: simulate_hk(2000.0, 0.3, np.full(8, 130.0), np.full(8, 110.0), rng), rep)
    print(f"{'Sky.default() (1276 sources, strict YAML)':42s} {t_load * 1e3:7.1f} ms")
    print(f"{'Sky.rates, first call (fold 1276 spectra)':42s} {t_rates * 1e3:7.1f} ms")
    print(f"{'plan_revolution (full revolution, 5x5)':42s} {t_plan * 1e3:7.1f} ms")
    print(f"{'simulate_hk (2000 s ScW, 250 cycles)':42s} {t_hk * 1e3:7.1f} ms")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
