"""What the NRT stream of an archive is doing: from the daemon's durable state and alert store.

`status_report(archive)` gathers, without touching the running daemon: whether a daemon
holds the archive's lock, its heartbeat, the chunks waiting in its inbox, one row per
science window (status, fraction of its telemetry received, losses, latency from the
ScW's closing to its quick-look products, alerts) and the counts per status and alert
kind; `status_text` prints it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from isdc.dal.archive import Archive
from isdc.dal.inbox import Inbox, InboxError
from isdc.dal.nrtstate import STATUSES, DaemonLock, NrtState, nrt_dir, state_path

__all__ = ["status_report", "status_text"]


def status_report(archive: Archive) -> dict:
    """The status of the archive's NRT stream as a JSON-ready dict (StateError if the state is unreadable)."""
    st = NrtState.load(state_path(archive))
    running = DaemonLock(nrt_dir(archive) / "daemon.lock").held_by_other()
    pending = None
    inbox = st.daemon.get("inbox")
    if inbox:
        try:
            ib = Inbox(inbox, create=False)
            pending = len(ib.pending())
            quarantined = len(ib.quarantined())
        except (InboxError, OSError):
            pending = quarantined = None
    else:
        quarantined = None
    alerts_dir = Path(st.daemon.get("alerts") or nrt_dir(archive) / "alerts")
    kinds: dict[str, int] = {}
    for p in alerts_dir.glob("*.json"):
        k = p.name.split("-", 1)[0].upper()
        kinds[k] = kinds.get(k, 0) + 1
    outbox = len(list((alerts_dir / "outbox").glob("*"))) if (alerts_dir / "outbox").is_dir() else 0
    rows = []
    for r in sorted(st.scws.values(), key=lambda r: (r.obt_start, r.scw)):
        rows.append({"scw": r.scw, "status": r.status, "received": r.received, "expected": r.expected,
                     "fraction": r.telemetry_fraction, "lost": r.lost, "duplicates": r.duplicates,
                     "out_of_order": r.out_of_order, "corrupt": r.corrupt, "late": r.late_packets,
                     "events": r.events, "latency_s": r.latency_s, "alerts": len(r.alerts), "reason": r.reason})
    lat = [r["latency_s"] for r in rows if r["status"] == "done" and r["latency_s"] is not None]
    return {
        "archive": str(archive.root), "running": running, "daemon": st.daemon,
        "inbox_pending": pending, "inbox_quarantined": quarantined,
        "counts": {s: sum(r["status"] == s for r in rows) for s in STATUSES},
        "pending": sum(r["status"] in ("receiving", "queued") for r in rows),
        "latency_median_s": float(np.median(lat)) if lat else None,
        "latency_max_s": float(np.max(lat)) if lat else None,
        "alerts": kinds, "alerts_outbox": outbox, "scws": rows,
    }


def _f(v, fmt: str, width: int) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:{width}{fmt}}"


def status_text(rep: dict) -> str:
    d = rep["daemon"]
    lines = [f"NRT stream of {rep['archive']}: daemon {'running' if rep['running'] else 'not running'}"
             + (f" (pid {d.get('pid')}, heartbeat {d.get('heartbeat_utc')})" if d else "")]
    if rep["inbox_pending"] is not None:
        lines.append(f"inbox {d.get('inbox')}: {rep['inbox_pending']} chunk(s) waiting, "
                     f"{rep['inbox_quarantined']} quarantined")
    head = (f"{'ScW':<17} {'status':<11} {'received':>9} {'%tlm':>6} {'lost':>5} {'dup':>4} {'late':>4} "
            f"{'bad':>4} {'events':>8} {'latency/s':>9} {'alerts':>6}  reason")
    lines += [head, "-" * len(head)]
    for r in rep["scws"]:
        frac = None if r["fraction"] is None else 100.0 * r["fraction"]
        lines.append(f"{r['scw']:<17} {r['status']:<11} {r['received']:>9} {_f(frac, '.1f', 6)} "
                     f"{_f(r['lost'], 'd', 5)} {r['duplicates']:>4} {r['late']:>4} {r['corrupt']:>4} "
                     f"{r['events']:>8} {_f(r['latency_s'], '.2f', 9)} {r['alerts']:>6}  {r['reason'][:60]}")
    c = rep["counts"]
    lines.append(", ".join(f"{c[s]} {s}" for s in STATUSES))
    if rep["latency_median_s"] is not None:
        lines.append(f"quick-look latency after a ScW closes: median {rep['latency_median_s']:.2f} s, "
                     f"max {rep['latency_max_s']:.2f} s")
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(rep["alerts"].items())) or "none"
    lines.append(f"alerts: {kinds}" + (f"; {rep['alerts_outbox']} waiting for delivery" if rep["alerts_outbox"]
                                       else ""))
    return "\n".join(lines)


def status_json(rep: dict) -> str:
    return json.dumps(rep, indent=1, default=str)
