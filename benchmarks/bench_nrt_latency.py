"""NRT latencies: burst alert after the burst's peak arrives, quick-look after a ScW closes.

Simulates a revolution (N pointings of EXPOSURE s in a hex dither around the Crab and the
slews between them; a GRB of 2e-6 erg/cm2, T90 5 s, 4 deg off axis, in every pointing
after the first), starts `isdc-run nrt` as a process on the archive, and feeds the
revolution's telemetry into its inbox with `isdc.sim.feed.emit` at SPEED x real time (4 s
chunks, fsync, as `isdc-run feed` does). Then, from the files alone:

- burst alert latency = the alert's `created_utc` - the arrival (mtime) of the last chunk
  holding event packets within 0.1 s of the burst's peak (FRED peak, from the truth);
- quick-look latency = the ScW's `swg_isgri.fits` (obs/nrt.000, the last product of its
  build) mtime - the arrival of the chunk holding its END mark (the ScW closes then).

Floors measured in the same run: the quick-look work itself (`run_analysis` COR..IMA of
one pointing, in-process, warm); for the burst, the telemetry the trigger must wait for
(settle 3 s + lag 1 s of on-board time, up to one chunk more) divided by SPEED.

Requirements (issue 6): alert <= 10 s after the peak's chunk; quick-look <= 5 s after the
ScW closes (median over the revolution). PASS/FAIL, exit 1 on FAIL.

Run: .venv/bin/python benchmarks/bench_nrt_latency.py [--pointings N] [--exposure S] [--speed X] [--faults SPEC]
(real time: --speed 1, e.g. --pointings 2 --exposure 200: ~10 min)
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from isdc.dal.archive import Archive
from isdc.dal.inbox import Inbox, decode_chunk
from isdc.dal.rawdata import copy_revolution_aux
from isdc.ids import CONS, NRT, ScwId
from isdc.nrt.config import nrt_config
from isdc.pipeline.graph import run_analysis
from isdc.sim.feed import FaultSpec, archive_scws, emit, read_scw_data
from isdc.sim.plan import offset_position, onboard_clock, plan_revolution
from isdc.sim.sky import Sky
from isdc.sim.writer import simulate_revolution
from isdc.telemetry.packets import APID_ISGRI_EVENTS, APID_SCW, MARK_END, decode_mark, parse_headers, split_packets

REV = 665
DAY = 86400.0
ALERT_BUDGET_S = 10.0
QLA_BUDGET_S = 5.0


def sky_for(plans, grb_at: float) -> tuple[Sky, list[dict]]:
    lines = ["name: bench", "sources:", "  - {name: Crab, ra: 83.6332, dec: 22.0145, spectrum: {model: powerlaw, "
             "index: 2.1}, flux: {mcrab: 1000}}", "grbs:"]
    grbs = []
    for k, p in enumerate([p for p in plans if not p.is_slew][1:]):
        ra, dec = (float(v) for v in offset_position(p.ra_x, p.dec_x, 60.0 * k, 4.0))
        onset = p.tstart + grb_at * p.duration_s / DAY
        lines.append(f"  - {{name: GRB{k}, time: {onset!r}, ra: {ra!r}, dec: {dec!r}, fluence: 2.0e-6, spectrum: "
                     f"{{model: band, alpha: -1.0, beta: -2.3, epeak: 250}}, lightcurve: {{shape: fred, "
                     f"duration: 5.0}}}}")
        grbs.append({"name": f"GRB{k}", "onset": onset, "scw": p.scw_id.swid})
    return Sky.loads("\n".join(lines), "bench"), grbs


def chunk_index(folder: Path) -> list[dict]:
    """Every chunk of the inbox (done/ and quarantine/): arrival time, event packet OBTs, END marks."""
    out = []
    for sub in ("done", "quarantine"):
        for p in sorted((folder / sub).glob("TM_*.pkt")):
            data, _, _ = decode_chunk(p.read_bytes(), p.name)
            pk, _ = split_packets(data)
            h = parse_headers(pk)
            ok = h.crc_ok
            ends = []
            for i in np.flatnonzero(ok & (h.apid == APID_SCW)):
                m = decode_mark(pk[i], int(h.obt[i]), int(h.items[i]))
                if m.kind == MARK_END:
                    ends.append(m.swid)
            out.append({"name": p.name, "mtime": p.stat().st_mtime,
                        "events_obt": h.obt[ok & (h.apid == APID_ISGRI_EVENTS)].astype(np.int64), "ends": ends})
    return out


def utc_epoch(text: str) -> float:
    return _dt.datetime.fromisoformat(text.replace("Z", "")).replace(tzinfo=_dt.timezone.utc).timestamp()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pointings", type=int, default=4)
    ap.add_argument("--exposure", type=float, default=300.0)
    ap.add_argument("--speed", type=float, default=10.0, help="telemetry seconds per wall-clock second")
    ap.add_argument("--faults", default="", help="feed faults, e.g. gaps=0.005,dups=0.01,disorder=0.02")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_nrt_"))
    archive = Archive(work / "archive")
    plans = plan_revolution(REV, args.pointings, args.exposure, "hex", 3, "Crab", slew_overhead_s=10.0, slew_rate=0.5)
    sky, grbs = sky_for(plans, 0.6)
    t0 = time.perf_counter()
    simulate_revolution(archive, REV, n_pointings=args.pointings, exposure=args.exposure, sky=sky, seed=3,
                        version=CONS, pattern="hex", target="Crab", slew_overhead_s=10.0, slew_rate=0.5, durable=False)
    copy_revolution_aux(archive, REV, CONS, NRT)
    span = (plans[-1].tstop - plans[0].tstart) * DAY
    print(f"revolution {REV}: {len(plans)} ScWs ({args.pointings} pointings of {args.exposure:g} s), {span:.0f} s "
          f"of telemetry, {len(grbs)} GRBs; simulated in {time.perf_counter() - t0:.1f} s")

    # floor of the quick-look: the build of one pointing, in-process, warm (the second of two runs)
    cfg = nrt_config()
    first = ScwId.parse(next(p for p in plans if not p.is_slew).scw_id.swid + ".001")
    scratch = archive.obs_dir("floor")
    run_analysis(str(archive.root), str(scratch), [first], cfg, progress=False)
    shutil.rmtree(scratch)
    t0 = time.perf_counter()
    rep, _ = run_analysis(str(archive.root), str(scratch), [first], cfg, progress=False)
    qla_floor = time.perf_counter() - t0
    shutil.rmtree(scratch)
    assert rep.ok, rep.summary()

    inbox = work / "inbox"
    Inbox(inbox)
    log = work / "nrt.jsonl"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    proc = subprocess.Popen([sys.executable, "-m", "isdc.cli", "nrt", "--archive", str(archive.root), "--inbox",
                             str(inbox), "--exit-when-idle", f"{max(3.0, 12.0 / args.speed):g}", "--log", str(log)],
                            env=env)  # idle: three 4 s chunk periods without telemetry
    while not log.exists() or "daemon_start" not in log.read_text():
        if proc.poll() is not None:
            print("daemon failed to start", file=sys.stderr)
            return 1
        time.sleep(0.05)
    t0 = time.perf_counter()
    res = emit((read_scw_data(archive, s) for s in archive_scws(archive, REV, CONS)), Inbox(inbox), REV,
               faults=FaultSpec.parse(args.faults), seed=1, speed=args.speed, chunk_seconds=4.0, durable=True)
    fed = time.perf_counter() - t0
    code = proc.wait(600)
    print(f"fed {res.log.chunks} chunks in {fed:.1f} s ({args.speed:g}x real time); daemon exit {code}")

    chunks = chunk_index(inbox)
    tc = onboard_clock(REV)
    alerts = [json.loads(p.read_text()) for p in (archive.root / "nrt" / "alerts").glob("grb-*.json")]
    print("\nburst alerts (latency = alert written - arrival of the last chunk holding the peak)")
    grb_lat = []
    for g in grbs:
        burst = next(b for b in sky.grbs if b.name == g["name"])
        peak = g["onset"] + np.sqrt(burst.rise * burst.decay) / DAY
        obt = int(tc.ijd_to_obt(peak))
        near = [c for c in chunks if np.any(np.abs(c["events_obt"] - obt) <= 0.1 * 2**20)]
        mine = [a for a in alerts if a["scw"][:12] == g["scw"]]
        if not near or not mine:
            print(f"  {g['name']} in {g['scw']}: {'no alert' if not mine else 'peak not in any chunk'}")
            grb_lat.append(np.inf)
            continue
        arrival = max(c["mtime"] for c in near)
        lat = utc_epoch(mine[0]["created_utc"]) - arrival
        grb_lat.append(lat)
        print(f"  {g['name']} in {g['scw']}: {len(mine)} alert(s), {mine[0]['significance']:.1f} sigma, error "
              f"{mine[0]['error_arcmin']:.2f}', latency {lat:6.2f} s")
    floor_grb = (3.0 + 1.0) / args.speed
    print("\nquick-look (latency = swg_isgri.fits written - arrival of the chunk with the END mark)")
    qla_lat = []
    for p in plans:
        if p.is_slew:
            continue
        end = [c["mtime"] for c in chunks if p.scw_id.swid in c["ends"]]
        prod = archive.root / "obs" / "nrt.000" / "scw" / f"{p.scw_id.swid}.000" / "swg_isgri.fits"
        if not end or not prod.exists():
            print(f"  {p.scw_id.swid}: {'END mark lost' if not end else 'no quick-look products'}")
            continue
        lat = prod.stat().st_mtime - max(end)
        qla_lat.append(lat)
        print(f"  {p.scw_id.swid}.000: {lat:6.2f} s")
    st = json.loads((archive.root / "nrt" / "state.json").read_text())
    daemon_lat = [r["latency_s"] for r in st["scws"].values() if r["latency_s"] is not None and r["scw"][11] == "0"]

    worst_grb = max(grb_lat) if grb_lat else np.inf
    med_qla = float(np.median(qla_lat)) if qla_lat else np.inf
    print(f"\nburst alert latency: max {worst_grb:.2f} s, median {np.median(grb_lat):.2f} s (floor {floor_grb:.2f} s "
          f"of telemetry to wait for at {args.speed:g}x; ratio {np.median(grb_lat) / floor_grb:.1f}); "
          f"budget {ALERT_BUDGET_S:g} s: {'PASS' if worst_grb <= ALERT_BUDGET_S else 'FAIL'}")
    print(f"quick-look latency: median {med_qla:.2f} s, max {max(qla_lat, default=np.inf):.2f} s over "
          f"{len(qla_lat)} pointings (daemon's own record: median {np.median(daemon_lat):.2f} s); floor "
          f"{qla_floor:.2f} s (in-process COR..IMA build), ratio {med_qla / qla_floor:.1f}; budget {QLA_BUDGET_S:g} s: "
          f"{'PASS' if med_qla <= QLA_BUDGET_S else 'FAIL'}")
    if args.keep:
        print(f"work folder: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if worst_grb <= ALERT_BUDGET_S and med_qla <= QLA_BUDGET_S and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
