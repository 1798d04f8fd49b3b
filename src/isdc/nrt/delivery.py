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


class Deliverer:
    """Delivers the outbox in a background thread: at start, when `wake()` is called (a new
    alert), and every `interval_s` (retries of an unreachable endpoint), until `stop()`."""

    def __init__(self, store: AlertStore, url: str, *, timeout_s: float = 5.0, attempts: int = 3,
                 backoff_s: float = 1.0, interval_s: float = 30.0):
        import threading

        if not url.startswith(("http://", "https://")):
            raise ValueError(f"alert endpoint must be an http(s) URL, got {url!r}")
        self.store, self.url = store, url
        self.kw = dict(timeout_s=timeout_s, attempts=attempts, backoff_s=backoff_s)
        self.interval_s = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-delivery", daemon=True)
        self.delivered = 0

    def start(self) -> "Deliverer":
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                n, left = deliver_pending(self.store, self.url, **self.kw)
                self.delivered += n
                if n or left:
                    log.info("alert delivery: %d delivered, %d pending", n, left)
            except Exception as exc:  # the thread must survive anything; the outbox keeps the alerts
                log.error("alert delivery to %s failed: %s", self.url, exc)
            self._wake.wait(self.interval_s)
