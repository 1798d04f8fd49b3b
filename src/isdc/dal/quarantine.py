"""Quarantine records: a data ID whose input is bad, with the reason, kept until the input changes.

One JSON file per (data ID, task) in `<outdir>/quarantine/<data ID>/<task>.json`, written
atomically. Keys and task names are validated before they become path components.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
from pathlib import Path

from isdc.dal.atomic import atomic_write_bytes

__all__ = ["record", "find", "clear", "list_records"]

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+\-]{0,63}")


def _path(qdir: Path, key: str, task: str) -> Path:
    for what, v in (("data ID", key), ("task name", task)):
        if not _KEY.fullmatch(v) or ".." in v:
            raise ValueError(f"invalid quarantine {what} {v!r}")
    return Path(qdir) / key / f"{task}.json"


def record(qdir: Path, key: str, task: str, reason: str, fingerprint: str) -> Path:
    """Write (atomically) the quarantine record of `key` for `task`."""
    path = _path(qdir, key, task)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "data_id": key, "task": task, "reason": reason, "fingerprint": fingerprint,
        "time": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    atomic_write_bytes(path, json.dumps(doc, indent=1).encode())
    return path


def find(qdir: Path, key: str, task: str) -> dict | None:
    path = _path(qdir, key, task)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, OSError):
        return {"reason": f"unreadable quarantine record {path}", "fingerprint": None}


def clear(qdir: Path, key: str, task: str) -> None:
    _path(qdir, key, task).unlink(missing_ok=True)


def list_records(qdir: Path) -> list[dict]:
    """Every quarantine record under `qdir` (for status reports and summaries)."""
    out = []
    for p in sorted(Path(qdir).glob("*/*.json")):
        try:
            out.append(json.loads(p.read_text()))
        except (json.JSONDecodeError, OSError):
            out.append({"data_id": p.parent.name, "task": p.stem, "reason": "unreadable record"})
    return out
