"""Structured logs of the NRT daemon: one JSON object per line.

`event(logger, name, **fields)` logs an event with fields; `JsonFormatter` writes every
record as {"time", "level", "logger", "event" (or "message"), ...fields}, so the log can be
filtered and aggregated by machines (e.g. latencies per ScW) as well as read.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging

__all__ = ["event", "JsonFormatter"]


def event(logger: logging.Logger, name: str, severity: int = logging.INFO, **fields) -> None:
    """Log event `name` with `fields` (JSON-serialisable values)."""
    logger.log(severity, "%s %s", name, " ".join(f"{k}={v}" for k, v in fields.items()),
               extra={"nrt_event": name, "nrt_fields": fields})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc).strftime(
                   "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
               "level": record.levelname.lower(), "logger": record.name}
        name = getattr(record, "nrt_event", None)
        if name is not None:
            doc["event"] = name
            doc.update(getattr(record, "nrt_fields", {}))
        else:
            doc["message"] = record.getMessage()
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, sort_keys=False)
