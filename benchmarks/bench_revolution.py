"""A simulated revolution through the consolidated analysis: wall time, levels, luigi, memory.

Simulates once a revolution of >= 50 pointings of 2000 s on the Crab field (`isdc-run
simulate`, ~1 min, ~1.5 GB; kept in --archive and reused when its parameters match),
then runs `isdc-run cons` on it from scratch (its output folder obs/revRRRR.001 removed
first) with 1 and with 2 local workers, each as its own process as a user runs it, and
prints:

- wall time of the whole command (process start to exit: imports, graph, luigi, the
  tasks, the final completeness re-check, the results index);
- per level (COR ... LCR, the ScW groups, the observation mosaic and group): tasks run,
  seconds inside the tasks' run() (from the run log each task appends to, in
  obs/revRRRR.001/log/), of which reading inputs, the science (`process`), writing;
- luigi scheduling overhead, defined as the wall time during which no task's run() was
  executing (wall - the union of the tasks' run intervals): process start-up and imports,
  building and checking the graph (fingerprints, completeness), luigi's scheduler and
  the fork of a process per task (2 workers), and the final re-check. With one worker this
  equals wall - sum of task run times. For 2 workers it also prints the idle share of
  the two worker slots, 1 - sum(run) / (2 wall), which adds the time one slot waits for the
  other (dependencies: the mosaic waits for every ScW);
- peak RSS per process: the largest of the command's wait4() ru_maxrss (the command and
  every task process it forked and reaped), /proc VmHWM of each process of the tree
  sampled every 0.1 s, and the run log's per-task ru_maxrss; also the largest sum of the
  RSS over the tree (what the machine must hold at once);
- the floor: the seconds of the science alone (sum of `process` over all tasks, one core)
  and the ratio of the wall time to it;
- the 1-worker / 2-worker ratio, and a check that both runs made the same product data
  (every HDU's DATASUM of every product equal).

PASS/FAIL per target of the scale-out issue: best wall <= 120 s; peak RSS <= 1.5 GB per
process; luigi overhead <= 15 % of the wall (each local run); 2 workers >= 1.6x faster
than 1. Exits 1 if one fails. Numbers move by +-30 % between runs on a shared VM: use
--repeat and --quiet-wait, and read the "other processes" line of each run.

Run: .venv/bin/python benchmarks/bench_revolution.py [--archive DIR] [--pointings N]
     [--workers 1,2] [--repeat N] [--quiet-wait S] [--luigid]
(--luigid also times two `isdc-run cons --workers 1` processes sharing one luigid.)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from isdc.dal import runlog
from isdc.dal.archive import Archive
from isdc.dal.fitsfile import FitsFile
from isdc.ids import CONS

WALL_TARGET_S = 120.0
RSS_TARGET_MB = 1536.0
OVERHEAD_TARGET = 0.15
SPEEDUP_TARGET = 1.6
MARKER = "bench_revolution.json"


# --------------------------------------------------------------------------- archive

def ensure_archive(root: Path, revolution: int, pointings: int, exposure: float, seed: int) -> Archive:
    """The simulated revolution in `root`: reused when made with the same parameters."""
    params = {"revolution": revolution, "pointings": pointings, "exposure": exposure, "seed": seed}
    marker = root / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == params:
        print(f"archive {root}: reusing the simulated revolution {revolution} ({pointings} x {exposure:g} s)")
        return Archive(root)
    if root.exists() and any(root.iterdir()):
        sys.exit(f"{root} is not empty and holds no {MARKER} with these parameters: give an empty or new --archive")
    print(f"simulating revolution {revolution}: {pointings} pointings of {exposure:g} s into {root} ...", flush=True)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "isdc.cli", "simulate", "--archive", str(root), "--revolution",
                        str(revolution), "--pointings", str(pointings), "--exposure", str(exposure), "--pattern",
                        "5x5", "--target", "Crab", "--seed", str(seed), "--no-fsync"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"simulation failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    marker.write_text(json.dumps(params))
    print(f"  {r.stdout.strip().splitlines()[-1]} ({time.perf_counter() - t0:.0f} s)")
    return Archive(root)


# --------------------------------------------------------------------------- memory of a process tree

def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = defaultdict(list)
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids[ppid].append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return kids


def _status_kb(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    k, v = line.split(":")
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


class TreeMemory(threading.Thread):
    """Samples VmHWM (peak RSS) of every process below `pid`, and the sum of their RSS."""

    def __init__(self, pid: int, interval: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.hwm_kb: dict[int, int] = {}
        self.max_sum_kb = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            kids = _children()
            tree, stack = [], [self.pid]
            while stack:
                p = stack.pop()
                tree.append(p)
                stack.extend(kids.get(p, []))
            total = 0
            for p in tree:
                st = _status_kb(p)
                if st:
                    self.hwm_kb[p] = max(self.hwm_kb.get(p, 0), st.get("VmHWM", 0))
                    total += st.get("VmRSS", 0)
            self.max_sum_kb = max(self.max_sum_kb, total)
            self.stop.wait(self.interval)


# --------------------------------------------------------------------------- one run

def level_of(family: str) -> str:
    from isdc.pipeline.graph import LEVEL_FILES, level_task

    for lv in LEVEL_FILES:
        if level_task(lv).__name__ == family:
            return lv
    return {"ScwGroup": "ScW group", "ObsMosaic": "obs mosaic", "ObsGroup": "obs group"}.get(family, family)


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, -float("inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (/proc/stat, all cores)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_quiet(limit_s: float, cores: float = 0.1, span_s: float = 10.0) -> float:
    """Wait (at most `limit_s`) until the machine has been busy with less than `cores` for
    `span_s`; return the load seen last (other users' tests share this VM)."""
    deadline, load = time.time() + limit_s, float("nan")
    while True:
        b0 = busy_seconds()
        time.sleep(span_s)
        load = (busy_seconds() - b0) / span_s
        if load < cores or time.time() > deadline:
            return load


def spawn(cmd: list[str], logdir: Path) -> tuple[subprocess.Popen, TreeMemory]:
    """Start `cmd` with stdout/stderr to files in `logdir`, and a memory sampler on its tree."""
    n = len(list(logdir.glob("*.out")))
    proc = subprocess.Popen(cmd, stdout=open(logdir / f"{n}.out", "w"), stderr=open(logdir / f"{n}.err", "w"))
    mem = TreeMemory(proc.pid)
    mem.start()
    return proc, mem


def reap(proc: subprocess.Popen, mem: TreeMemory) -> tuple[int, float, float]:
    """Wait for `proc`: (exit code, its peak RSS in MB over it and every descendant it
    reaped, the CPU seconds of them all)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    mem.stop.set()
    mem.join()
    return proc.returncode, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def run_cons(archive: Path, revolution: int, workers: int, logdir: Path) -> dict:
    """`isdc-run cons` as a child process from scratch; its wall time, memory and run log."""
    outdir = Archive(archive).obs_dir(f"rev{revolution:04d}", CONS)
    shutil.rmtree(outdir, ignore_errors=True)
    cmd = [sys.executable, "-m", "isdc.cli", "cons", "--archive", str(archive), "--revolution", str(revolution),
           "--workers", str(workers), "--no-progress"]
    t0, b0 = time.time(), busy_seconds()
    proc, mem = spawn(cmd, logdir)
    code, rusage_mb, cpu = reap(proc, mem)
    wall, busy = time.time() - t0, busy_seconds() - b0
    if code != 0:
        sys.exit(f"isdc-run cons --workers {workers} exited {code}; see {logdir}")
    return {"workers": workers, "wall": wall, "t0": t0, "t1": t0 + wall, "outdir": outdir,
            "runs": runlog.read(outdir), "hwm_mb": max(mem.hwm_kb.values(), default=0) / 1024,
            "sum_rss_mb": mem.max_sum_kb / 1024, "rusage_mb": rusage_mb, "cpu": cpu, "others": busy - cpu}


def product_datasums(outdir: Path) -> dict[str, list[str]]:
    """DATASUM of every HDU of every product (data only: headers hold dates and hosts)."""
    out = {}
    for p in sorted(outdir.rglob("*.fits")):
        f = FitsFile(p)
        out[str(p.relative_to(outdir))] = [str(h.header.get("DATASUM", "")) for h in f.hdus]
    return out


def report(res: dict) -> dict:
    runs = res["runs"]
    wall, k = res["wall"], res["workers"]
    busy = sum(r["seconds"] for r in runs)
    covered = union_seconds([(r["start"], r["stop"]) for r in runs])
    first = min(r["start"] for r in runs) - res["t0"]
    last = res["t1"] - max(r["stop"] for r in runs)
    rss_run = max(r["maxrss_mb"] for r in runs)
    print(f"\n--- isdc-run cons --workers {k}: wall {wall:.1f} s, CPU {res['cpu']:.1f} s, {len(runs)} task runs "
          f"({len({r['task_id'] for r in runs})} distinct), {len({r['pid'] for r in runs})} processes ran tasks")
    others = res["others"] / wall
    print(f"other processes on the machine meanwhile: {others:.2f} cores on average"
          + ("  ** the machine was not idle: figures are pessimistic **" if others > 0.1 else ""))
    by = defaultdict(lambda: defaultdict(float))
    order = []
    for r in runs:
        lv = level_of(r["task"])
        if lv not in order:
            order.append(lv)
        d = by[lv]
        d["n"] += 1
        for key in ("seconds", "read_s", "process_s", "write_s"):
            d[key] += r.get(key, 0.0)
        d["rss"] = max(d["rss"], r["maxrss_mb"])
    print(f"{'level':<11} {'tasks':>5} {'run s':>8} {'read s':>7} {'science s':>9} {'write s':>8} {'s/task':>7}"
          f" {'peak RSS MB':>11}")
    for lv in order:
        d = by[lv]
        print(f"{lv:<11} {int(d['n']):>5} {d['seconds']:>8.2f} {d['read_s']:>7.2f} {d['process_s']:>9.2f} "
              f"{d['write_s']:>8.2f} {d['seconds'] / d['n']:>7.3f} {d['rss']:>11.0f}")
    tot = {key: sum(by[lv][key] for lv in order) for key in ("seconds", "read_s", "process_s", "write_s")}
    print(f"{'all':<11} {len(runs):>5} {tot['seconds']:>8.2f} {tot['read_s']:>7.2f} {tot['process_s']:>9.2f} "
          f"{tot['write_s']:>8.2f}")
    overhead = wall - covered
    print(f"luigi scheduling overhead (wall - union of task run intervals): {overhead:.1f} s = "
          f"{overhead / wall:.1%} of the wall  [before the first task {first:.1f} s, after the last "
          f"{last:.1f} s, between tasks {overhead - first - last:.1f} s]")
    if k > 1:
        print(f"worker-slot idle share 1 - sum(run)/({k} x wall): {1 - busy / (k * wall):.1%} "
              f"(sum of run {busy:.1f} s)")
    print(f"floor (the science alone, sum of process(), one core): {tot['process_s']:.1f} s; "
          f"wall / floor = {wall / tot['process_s']:.2f}")
    rss = max(res["hwm_mb"], rss_run, res["rusage_mb"])
    print(f"peak RSS per process: {rss:.0f} MB (/proc VmHWM {res['hwm_mb']:.0f} MB, run log {rss_run:.0f} MB, "
          f"wait4 rusage {res['rusage_mb']:.0f} MB); largest sum over the process tree "
          f"{res['sum_rss_mb']:.0f} MB")
    return {"wall": wall, "overhead": overhead / wall, "rss": rss, "busy": busy}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archive", type=Path, default=Path(tempfile.gettempdir()) / "isdc_bench_revolution",
                    help="archive folder: simulated once, reused (default: $TMPDIR/isdc_bench_revolution)")
    ap.add_argument("--revolution", type=int, default=665, help="revolution (default 665: the Crab is visible)")
    ap.add_argument("--pointings", type=int, default=52, help="pointings (default 52)")
    ap.add_argument("--exposure", type=float, default=2000.0, help="seconds per pointing (default 2000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", default="1,2", help="local worker counts to time (default 1,2)")
    ap.add_argument("--luigid", action="store_true", help="also: two worker processes sharing one luigid")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per worker count; the fastest is reported (a shared VM is seldom idle)")
    ap.add_argument("--quiet-wait", type=float, default=0.0, metavar="S",
                    help="before each run wait up to S seconds for the machine to be idle (< 0.1 core busy)")
    args = ap.parse_args(argv)

    arch = ensure_archive(args.archive, args.revolution, args.pointings, args.exposure, args.seed)
    n_pointings = len([s for s in arch.scws(args.revolution, CONS) if not s.is_slew])
    print(f"{n_pointings} pointings; {os.cpu_count()} cores; host {socket.gethostname()}")
    logdir = Path(tempfile.mkdtemp(prefix="bench_revolution_"))
    results, sums = {}, {}
    for k in [int(x) for x in args.workers.split(",")]:
        tries = []
        for _ in range(args.repeat):
            if args.quiet_wait > 0:
                wait_quiet(args.quiet_wait)
            tries.append(run_cons(args.archive, args.revolution, k, logdir))
        if args.repeat > 1:
            walls = ", ".join(f"{t['wall']:.1f}" for t in tries)
            loads = ", ".join(f"{t['others'] / t['wall']:.2f}" for t in tries)
            print(f"\n--workers {k}: walls {walls} s (other load {loads} cores): the fastest follows")
        res = min(tries, key=lambda t: t["wall"])
        results[k] = report(res)
        n_ids = len({r["task_id"] for r in res["runs"]})
        if n_ids != len(res["runs"]):
            print(f"FAIL: {len(res['runs']) - n_ids} tasks ran more than once")
            return 1
        sums[k] = product_datasums(res["outdir"])
    if len(sums) > 1:
        ks = sorted(sums)
        same = all(sums[k] == sums[ks[0]] for k in ks)
        print(f"\nproduct data of the runs ({', '.join(map(str, ks))} workers) identical (DATASUM of every HDU of "
              f"{len(sums[ks[0]])} files): {same}")
        if not same:
            return 1
    if args.luigid:
        results["luigid"] = run_luigid(args.archive, args.revolution, logdir)

    print("\n=== targets")
    ok = True

    def check(name, good, text):
        nonlocal ok
        ok &= bool(good)
        print(f"{'PASS' if good else 'FAIL'}  {name}: {text}")

    best = min(r["wall"] for r in results.values())
    check("revolution wall time", best <= WALL_TARGET_S,
          f"best {best:.1f} s <= {WALL_TARGET_S:.0f} s for {n_pointings} pointings of {args.exposure:g} s "
          f"(OSA: ~98 min for 104 ScWs)")
    rss = max(r["rss"] for r in results.values())
    check("peak memory per process", rss <= RSS_TARGET_MB, f"{rss:.0f} MB <= {RSS_TARGET_MB:.0f} MB")
    for k, r in results.items():
        if k == "luigid":  # not a target: here luigid and both workers share the 2 cores
            print(f"INFO  luigi overhead with luigid (each worker tells luigid of every task, one request "
                  f"each): {r['overhead']:.1%} of the wall")
            continue
        check(f"luigi overhead ({k} worker{'s' if k != 1 else ''})", r["overhead"] <= OVERHEAD_TARGET,
              f"{r['overhead']:.1%} of the wall <= {OVERHEAD_TARGET:.0%}")
    if 1 in results and 2 in results:
        ratio = results[1]["wall"] / results[2]["wall"]
        check("2 workers vs 1", ratio >= SPEEDUP_TARGET, f"{results[1]['wall']:.1f} s / {results[2]['wall']:.1f} s "
              f"= {ratio:.2f}x >= {SPEEDUP_TARGET}x")
    return 0 if ok else 1


def run_luigid(archive: Path, revolution: int, logdir: Path) -> dict:
    """Two `isdc-run cons --workers 1` processes sharing one luigid on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state = Path(tempfile.mkdtemp(prefix="luigid_"))
    luigid = Path(sys.executable).parent / "luigid"
    daemon = subprocess.Popen([str(luigid) if luigid.exists() else "luigid", "--address", "127.0.0.1", "--port",
                               str(port), "--state-path", str(state / "state.pickle"), "--logdir", str(state)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        outdir = Archive(archive).obs_dir(f"rev{revolution:04d}", CONS)
        shutil.rmtree(outdir, ignore_errors=True)
        cmd = [sys.executable, "-m", "isdc.cli", "cons", "--archive", str(archive), "--revolution", str(revolution),
               "--no-progress", "--scheduler-host", "127.0.0.1", "--scheduler-port", str(port)]
        t0, b0 = time.time(), busy_seconds()
        started = [spawn(cmd, logdir) for _ in range(2)]
        reaped = [reap(p, m) for p, m in started]
        wall, busy = time.time() - t0, busy_seconds() - b0
        if any(code for code, _, _ in reaped):
            sys.exit(f"luigid workers exited {[c for c, _, _ in reaped]}; see {logdir}")
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
        shutil.rmtree(state, ignore_errors=True)
    runs = runlog.read(outdir)
    mems = [m for _, m in started]
    res = {"workers": 2, "wall": wall, "t0": t0, "t1": t0 + wall, "runs": runs,
           "hwm_mb": max(max(m.hwm_kb.values(), default=0) for m in mems) / 1024,
           "sum_rss_mb": sum(m.max_sum_kb for m in mems) / 1024, "rusage_mb": max(mb for _, mb, _ in reaped),
           "cpu": sum(c for _, _, c in reaped)}
    res["others"] = busy - res["cpu"]  # luigid's own CPU counts as other load
    print("\n(two isdc-run processes, one worker each, sharing luigid)")
    out = report(res)
    dup = len(runs) - len({r["task_id"] for r in runs})
    print(f"tasks run more than once: {dup}; tasks per process: "
          f"{sorted(sum(1 for r in runs if r['pid'] == pid) for pid in {r['pid'] for r in runs})}")
    return out


if __name__ == "__main__":
    sys.exit(main())
