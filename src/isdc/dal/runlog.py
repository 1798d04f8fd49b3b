"""Task run logs: one JSON line per task run, in `<outdir>/log/tasks_<host>.jsonl`.

Each host appends to its own file: an `O_APPEND` write of one line is atomic on a local
file system (lines of concurrent worker processes never interleave) but not over NFS
between hosts, so hosts sharing an output folder never append to the same file. The
lines say which process ran what, when, and how long it read, computed and wrote: how a
scaled-out build is checked (every task ran once) and how benchmarks split wall time.

Keys written by the pipeline (`isdc.pipeline.base`): task (family), data_id, task_id, host,
pid and ppid (a task run in a pool process has the worker process as its parent), start
and stop (Unix seconds), seconds, cpu_s, read_s, process_s and write_s (reading the inputs,
the science, writing the outputs), maxrss_mb (the process's peak RSS so far) and outcome
('done', 'nowork', 'quarantined' or 'failed').
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
from pathlib import Path

__all__ = ["FOLDER", "HOST", "log_path", "append", "read"]

log = logging.getLogger(__name__)

FOLDER = "log"
HOST = socket.gethostname()


def log_path(outdir: str | os.PathLike, host: str = HOST) -> Path:
    """The run log of `host` in `outdir` (the host name reduced to [A-Za-z0-9._-])."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", host).lstrip(".") or "host"
    return Path(outdir) / FOLDER / f"tasks_{name}.jsonl"


def append(outdir: str | os.PathLike, record: dict) -> None:
    """Append `record` as one line to this host's run log; a failure is logged, not raised
    (the log never fails the task it describes)."""
    path = log_path(outdir)
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning("run log %s: %s", path, exc)


def read(outdir: str | os.PathLike) -> list[dict]:
    """Every record of every host's run log in `outdir`, by start time (key 'start')."""
    records = []
    for path in sorted((Path(outdir) / FOLDER).glob("tasks_*.jsonl")):
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash of its writer
                log.warning("%s line %d: not a JSON record, skipped", path, n)
    return sorted(records, key=lambda r: r.get("start", 0.0))
