"""Delivery of stored alerts to an HTTP endpoint (VOEvent POST), with retries.

The outbox of the alert store is the queue: an alert leaves it only after the endpoint
answered 2xx and the receipt was written, so a crash or an unreachable endpoint delays
delivery but never loses an alert; a restart resumes from the outbox.
"""
from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request

from isdc.dal.alerts import AlertStore

log = logging.getLogger(__name__)

__all__ = ["deliver_pending"]


def deliver_pending(store: AlertStore, url: str, *, timeout_s: float = 5.0, attempts: int = 3,
                    backoff_s: float = 1.0) -> tuple[int, int]:
    """POST every alert in the outbox to `url`; return (delivered, still pending)."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"alert endpoint must be an http(s) URL, got {url!r}")
    delivered = 0
    pending = store.outbox()
    for aid in pending:
        body = store.voevent(aid)
        for k in range(attempts):
            req = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/xml", "X-Alert-Id": aid})
            try:
                with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                    status = resp.status
                if 200 <= status < 300:
                    store.mark_sent(aid, status)
                    delivered += 1
                    break
                log.warning("alert %s: endpoint answered %s", aid, status)
            except (urllib.error.URLError, OSError) as exc:
                log.warning("alert %s: delivery attempt %d/%d failed: %s", aid, k + 1, attempts, exc)
            if k + 1 < attempts:
                time.sleep(backoff_s * 2**k)
    return delivered, len(store.outbox())
