"""Alert store and delivery: atomic, once, never lost; VOEvent 2.0 content."""
from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from hypothesis import given, strategies as st

from isdc.dal.alerts import Alert, AlertStore, voevent_xml
from isdc.nrt.delivery import deliver_pending

NS = {"voe": "http://www.ivoa.net/xml/VOEvent/v2.0"}


def grb(subject="T2026-11-23T12:00:01.250"):
    return Alert("GRB", "2026-11-23T12:00:01.250", "066500230010.000", subject, ra=83.6331, dec=22.0145,
                 error_arcmin=2.1, significance=12.3, level="alert", params={"timescale_s": 1.0})


def test_voevent_carries_position_error_significance_and_time():
    root = ET.fromstring(voevent_xml(grb(), "2026-11-23T12:00:05.000"))
    assert root.tag == "{http://www.ivoa.net/xml/VOEvent/v2.0}VOEvent" and root.get("version") == "2.0"
    assert root.get("role") == "observation" and root.get("ivorn").endswith("#" + grb().id)
    pos = root.find("WhereWhen/ObsDataLocation/ObservationLocation/AstroCoords/Position2D")
    assert float(pos.find("Value2/C1").text) == pytest.approx(83.6331)
    assert float(pos.find("Value2/C2").text) == pytest.approx(22.0145)
    assert float(pos.find("Error2Radius").text) == pytest.approx(2.1 / 60, abs=1e-5)
    params = {p.get("name"): p.get("value") for p in root.iter("Param")}
    assert float(params["significance"]) == pytest.approx(12.3) and params["kind"] == "GRB"
    assert root.find("WhereWhen/ObsDataLocation/ObservationLocation/AstroCoords/Time/TimeInstant/ISOTime").text \
        == "2026-11-23T12:00:01.250"
    assert root.find("Who/Date").text == "2026-11-23T12:00:05.000"


def test_publish_is_idempotent_and_survives_a_crash_between_files(tmp_path):
    store = AlertStore(tmp_path / "alerts", deliver=True)
    a = grb()
    assert store.publish(a) is True
    assert store.publish(a) is False  # re-processing after a restart: not duplicated
    assert store.ids() == [a.id] and store.outbox() == [a.id]
    # crash after the JSON, before the VOEvent: the next publish completes it, keeps the creation time
    b = grb("T2026-11-23T13:00:00.000")
    store.publish(b)
    created = (tmp_path / "alerts" / f"{b.id}.json").read_text()
    (tmp_path / "alerts" / f"{b.id}.xml").unlink()
    assert store.publish(b) is True
    assert (tmp_path / "alerts" / f"{b.id}.json").read_text() == created
    assert store.load(b.id) == b
    assert not list((tmp_path / "alerts").glob(".*tmp"))


def test_same_event_same_id_other_event_other_id():
    assert grb().id == grb().id
    assert grb().id != grb("T2026-11-23T12:00:02.000").id
    assert Alert("OPS", "2026-11-23T12:00:00", "", "../../etc/passwd").id.count("/") == 0


@given(st.text(max_size=80))
def test_any_subject_gives_a_safe_file_name(subject):
    from isdc.dal.alerts import _ID

    aid = Alert("NEW_SOURCE", "2026-11-23T12:00:00", "066500230010.000", subject).id
    assert _ID.fullmatch(aid) and "/" not in aid and ".." not in aid
    assert all(c.isascii() and (c.isalnum() or c in "_.+-") for c in aid)


def test_bad_ids_and_kinds_are_refused(tmp_path):
    store = AlertStore(tmp_path)
    with pytest.raises(ValueError):
        store.load("../x")
    with pytest.raises(ValueError):
        Alert("SUPERNOVA", "2026-11-23T12:00:00", "", "x")
    with pytest.raises(ValueError):
        Alert("GRB", "yesterday", "", "x")


class _Endpoint(BaseHTTPRequestHandler):
    fail_first = 0
    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Endpoint.fail_first > 0:
            _Endpoint.fail_first -= 1
            self.send_response(503)
        else:
            _Endpoint.received.append((self.headers["X-Alert-Id"], body))
            self.send_response(200)
        self.end_headers()

    def log_message(self, *a):
        pass


def test_delivery_retries_and_never_loses_an_alert(tmp_path):
    store = AlertStore(tmp_path, deliver=True)
    store.publish(grb())
    store.publish(grb("T2026-11-23T14:00:00.000"))
    # endpoint down: nothing delivered, nothing lost
    assert deliver_pending(store, "http://127.0.0.1:9/alerts", attempts=2, backoff_s=0.01, timeout_s=0.5) == (0, 2)
    srv = HTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        _Endpoint.fail_first, _Endpoint.received = 1, []
        url = f"http://127.0.0.1:{srv.server_address[1]}/alerts"
        assert deliver_pending(store, url, attempts=3, backoff_s=0.01) == (2, 0)
        assert sorted(i for i, _ in _Endpoint.received) == sorted(store.ids())
        assert all(b"VOEvent" in body for _, body in _Endpoint.received)
        assert deliver_pending(store, url) == (0, 0)  # nothing sent twice
    finally:
        srv.shutdown()
