"""Durable state of the NRT daemon: what each science window went through, and what was alerted.

Layout (in the archive)::

    <archive>/nrt/state.json    the state (JSON, written atomically: temp file, fsync, os.replace)
    <archive>/nrt/daemon.lock   held (flock) by the running daemon: one daemon per archive
    <archive>/nrt/alerts/       the alert store (isdc.dal.alerts), unless configured elsewhere

`state.json` holds one `ScwRecord` per science window seen in the telemetry, the daemon's
counters and heartbeat, and the memory of the source alerts (which new sources and flares
were already alerted). It is rewritten whole on every transition, so after a crash (even
`kill -9`) it is the last committed state; everything after it is redone idempotently
(see docs/nrt.md, "Restart").
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from isdc.dal.archive import Archive
from isdc.dal.atomic import atomic_write_bytes
from isdc.ids import IdError, ScwId

__all__ = ["StateError", "STATUSES", "ScwRecord", "NrtState", "DaemonLock", "nrt_dir", "state_path", "utc_now"]

STATE_FORMAT = 1
STATUSES = ("receiving", "queued", "running", "done", "failed", "quarantined")
"""receiving: telemetry arriving (ScW open); queued: raw data written, quick-look waiting;
running: quick-look build running; done: quick-look products and alerts written; failed: the
build failed (retried at the next start); quarantined: bad input (a quick-look quarantine is
re-submitted at the next start: the pipeline retries it only if its inputs or configuration
changed; a ScW that could not be prepared stays quarantined)."""


class StateError(Exception):
    """A state file that cannot be used (not JSON, wrong format), or a second daemon."""


def nrt_dir(archive: Archive) -> Path:
    """`<archive>/nrt/`: the daemon's state, lock and (by default) alerts."""
    return archive.root / "nrt"


def state_path(archive: Archive) -> Path:
    return nrt_dir(archive) / "state.json"


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class ScwRecord:
    """One science window in the NRT stream. Wall-clock times are Unix seconds.

    obt_start, obt_end : its OBT window (ticks); expected / received / lost packets of the
    data APIDs (None when unknown: no END mark); telemetry_fraction = received / expected;
    first_seen : first packet taken in; closed : raw data written (the ScW closed);
    qla_start, qla_end : quick-look build; latency_s = qla_end - closed.
    """

    scw: str
    status: str = "receiving"
    obt_start: int = 0
    obt_end: int = 0
    tstart: float | None = None
    tstop: float | None = None
    first_seen: float | None = None
    closed: float | None = None
    qla_start: float | None = None
    qla_end: float | None = None
    latency_s: float | None = None
    expected: int | None = None
    received: int = 0
    lost: int | None = None
    telemetry_fraction: float | None = None
    duplicates: int = 0
    out_of_order: int = 0
    corrupt: int = 0
    late_packets: int = 0
    events: int = 0
    hk_rows: int = 0
    gaps: int = 0
    reason: str = ""
    stage: str = ""  # where a failure or quarantine happened: 'preparation' or 'quick-look'
    alerts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    attempts: int = 0

    def __post_init__(self):
        try:
            ScwId.parse(self.scw)
        except IdError as exc:
            raise StateError(f"state: {exc}") from exc
        if self.status not in STATUSES:
            raise StateError(f"state: ScW {self.scw}: unknown status {self.status!r} (one of {', '.join(STATUSES)})")

    @property
    def scw_id(self) -> ScwId:
        return ScwId.parse(self.scw)

    @classmethod
    def from_dict(cls, d: dict) -> "ScwRecord":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise StateError(f"state: ScW record {d.get('scw')!r} has unknown fields {sorted(unknown)}")
        return cls(**d)


class NrtState:
    """The daemon's state document (see module docstring). Not thread-safe: the daemon locks."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.scws: dict[str, ScwRecord] = {}
        self.sources: dict = {}
        self.daemon: dict = {}

    @classmethod
    def load(cls, path: str | os.PathLike) -> "NrtState":
        """Read the state (an empty one when the file does not exist yet)."""
        st = cls(path)
        try:
            doc = json.loads(st.path.read_text())
        except FileNotFoundError:
            return st
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StateError(f"{st.path}: not a valid state file: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
            raise StateError(f"{st.path}: state format {doc.get('format') if isinstance(doc, dict) else None!r}, "
                             f"this code reads format {STATE_FORMAT}")
        st.scws = {k: ScwRecord.from_dict(v) for k, v in doc.get("scws", {}).items()}
        for k, rec in st.scws.items():
            if rec.scw != k:
                raise StateError(f"{st.path}: record {k} holds ScW {rec.scw}")
        st.sources = dict(doc.get("sources", {}))
        st.daemon = dict(doc.get("daemon", {}))
        return st

    def to_dict(self) -> dict:
        return {"format": STATE_FORMAT, "saved_utc": utc_now(), "daemon": self.daemon,
                "scws": {k: asdict(v) for k, v in sorted(self.scws.items())}, "sources": self.sources}

    def save(self, durable: bool = True) -> Path:
        """Write the whole state atomically (a reader or a crash sees the old or the new one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_bytes(self.path, json.dumps(self.to_dict(), indent=1, sort_keys=True).encode(),
                                  durable=durable)

    def record(self, scw: ScwId) -> ScwRecord:
        """The record of a ScW, created ('receiving') if new."""
        key = str(scw)
        rec = self.scws.get(key)
        if rec is None:
            rec = self.scws[key] = ScwRecord(key)
        return rec

    def by_status(self, *status: str) -> list[ScwRecord]:
        """Records with one of these statuses, in OBT order."""
        return sorted((r for r in self.scws.values() if r.status in status), key=lambda r: (r.obt_start, r.scw))

    def closed_windows(self) -> list[tuple[int, int, str]]:
        """(obt_start, obt_end, scw) of every ScW whose raw data were written."""
        return sorted((r.obt_start, r.obt_end, r.scw) for r in self.scws.values() if r.status != "receiving")


class DaemonLock:
    """An exclusive lock on `<archive>/nrt/daemon.lock` (released by the kernel if the process dies)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> "DaemonLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateError(f"{self.path}: another NRT daemon is running on this archive") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def held_by_other(self) -> bool:
        """True when another process holds the lock (a daemon is running on the archive)."""
        if self._fd is not None:
            return False
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
