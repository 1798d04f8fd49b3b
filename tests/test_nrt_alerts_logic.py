"""Source and operations alert logic of the NRT daemon (pure functions), its durable state
and its configuration: new sources and flares alerted once with memory and hysteresis, HK
limits and telemetry losses, the state file and the lock, the nrt configuration section."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, strategies as st

from isdc.dal.nrtstate import DaemonLock, NrtState, ScwRecord, StateError
from isdc.nrt.config import nrt_config, settings
from isdc.nrt.ops import OpsSettings, event_gaps, failure_alert, hk_alerts, telemetry_alerts
from isdc.nrt.sources import SourceAlertSettings, SourceMonitor, expected_rate, iau_name
from isdc.pipeline.config import ConfigError

T = "2008-03-24T10:00:00.000"
CAT = {"Crab": {"ISGR_FLUX_1": 150.0, "ISGR_FLUX_2": 110.0}, "Flarer": {"ISGR_FLUX_1": 6.0, "ISGR_FLUX_2": 4.0}}


def row(name, flux, err, new=0, ra=84.0, dec=22.0, sig=None, e=(20.0, 100.0)):
    return {"NAME": name, "NEW_SOURCE": new, "RA_FIN": ra, "DEC_FIN": dec, "RA_OBJ": ra, "DEC_OBJ": dec,
            "ERR_RAD": 1.5 / 60, "DETSIG": sig if sig is not None else flux / err, "FLUX": flux, "FLUX_ERR": err,
            "E_MIN": e[0], "E_MAX": e[1]}


def run(monitor, lists, bursts=()):
    mem, out = {}, []
    for k, rows in enumerate(lists):
        alerts, mem = monitor.evaluate(mem, f"0665000{k + 1}0010.000", T, rows, CAT, bursts)
        out.append(alerts)
    return out, mem


def test_expected_rate_and_names():
    assert expected_rate(CAT["Crab"], 20, 100) == 260.0 and expected_rate(CAT["Crab"], 20, 40) == 150.0
    assert expected_rate(CAT["Crab"], 40, 100) == 110.0 and expected_rate(CAT["Crab"], 25, 80) is None
    assert iau_name(266.4, -29.0) == "IGR J17456-2900" and iau_name(83.6332, 22.0145) == "IGR J05345+2200"


def test_a_new_source_is_alerted_once_across_scws():
    mon = SourceMonitor()
    lists = [[row("NEW_1", 40, 3, new=1, ra=81.40, dec=21.25)],
             [row("NEW_1", 38, 3, new=1, ra=81.42, dec=21.26)],  # 1.2' away: the same source
             [row("NEW_2", 41, 3, new=1, ra=81.41, dec=21.24), row("NEW_1", 30, 4, new=1, ra=86.9, dec=21.4)]]
    out, mem = run(mon, lists)
    assert [len(a) for a in out] == [1, 0, 1]
    first, other = out[0][0], out[2][0]
    assert first.kind == "NEW_SOURCE" and first.subject == "IGR J05256+2115" and first.significance == pytest.approx(40 / 3)
    assert other.subject.startswith("IGR J0547") and [s["seen"] for s in mem["new_sources"]] == [3, 1]


def test_weak_detections_and_bursts_are_not_new_sources():
    mon = SourceMonitor(SourceAlertSettings(new_source_sigma=7.0))
    out, mem = run(mon, [[row("NEW_1", 20, 3, new=1)], [row("NEW_1", 60, 3, new=1, ra=86.9, dec=21.4)]],
                   bursts=[(86.92, 21.41, 1.3)])
    assert out == [[], []] and mem["new_sources"] == []


def test_a_flare_is_alerted_once_with_hysteresis_and_rearmed_when_quiet():
    mon = SourceMonitor(SourceAlertSettings(flare_sigma=5.0, quiet_sigma=2.0, systematic=0.1))
    fl = lambda f: [row("Flarer", f, 2.0)]
    # catalogue 10 counts/s; quiet, flare x10 over two ScWs, hovering near threshold, back, flare again
    lists = [fl(11), fl(100), fl(120), fl(24), fl(20), fl(10), fl(9), fl(80)]
    out, mem = run(mon, lists)
    kinds = [[a.kind for a in x] for x in out]
    assert kinds == [[], ["FLARE"], [], [], [], [], [], ["FLARE"]]
    a = out[1][0]
    assert a.subject == "Flarer 20-100 keV" and float(a.params["ratio"]) == pytest.approx(100 / 11, rel=1e-3)
    # reference after the first quiet ScW is its measurement (11 +- 2), not the catalogue's 10
    assert float(a.params["reference"]) == pytest.approx(11.0)
    assert mem["catalog"]["Flarer|20-100"]["flaring"] is True


def test_steady_bright_source_within_systematics_never_flares():
    mon = SourceMonitor()
    rng = np.random.default_rng(0)
    lists = [[row("Crab", 260 * (1 + 0.05 * rng.standard_normal()), 4.0)] for _ in range(30)]
    out, _ = run(mon, lists)
    assert sum(len(a) for a in out) == 0


def test_memory_is_not_modified_and_evaluation_is_repeatable():
    """The same memory and source list give the same alerts (IDs): a re-evaluation after a crash."""
    mon = SourceMonitor()
    mem0 = {"new_sources": [], "catalog": {}}
    frozen = json.dumps(mem0)
    a1, m1 = mon.evaluate(mem0, "066500010010.000", T, [row("Flarer", 100, 2)], CAT)
    a2, m2 = mon.evaluate(mem0, "066500010010.000", T, [row("Flarer", 100, 2)], CAT)
    assert json.dumps(mem0) == frozen and [a.id for a in a1] == [a.id for a in a2] and m1 == m2


def test_hk_out_of_limits_one_alert_per_quantity():
    s = OpsSettings(max_temperature_c=5.0, min_abs_bias_v=80.0)
    temp = np.zeros((10, 8))
    bias = np.full((10, 8), -100.0)
    assert hk_alerts("066500010010.000", T, {"MDU_TEMP": temp, "BIAS_V": bias}, s) == []
    temp[3:5, 2] = 7.5
    bias[6, [1, 4]] = -12.0
    alerts = hk_alerts("066500010010.000", T, {"MDU_TEMP": temp, "BIAS_V": bias}, s)
    assert [a.subject for a in alerts] == ["HK MDU_TEMP", "HK BIAS_V"]
    assert alerts[0].params["cycles"] == 2 and alerts[0].params["modules"] == "2" and "7.5" in alerts[0].text
    assert alerts[1].params["modules"] == "1,4" and alerts[1].params["worst"] == "-12"
    assert len({a.id for a in alerts}) == 2


def test_telemetry_alerts():
    s = OpsSettings(max_lost_fraction=0.01, min_gap_s=10.0)
    ok = {"expected": 1000, "lost": 10, "end_mark": True}
    assert telemetry_alerts("066500010010.000", T, ok, [], s) == []
    a = telemetry_alerts("066500010010.000", T, {"expected": 1000, "lost": 11, "end_mark": True}, [], s)
    assert len(a) == 1 and "11 of 1000 packets lost" in a[0].text
    ticks = 2**20
    gaps = event_gaps(np.array([1, 2, 40, 41]) * ticks + 5, 5, 60 * ticks + 5, 10.0)
    assert gaps == [(2.0, 40.0), (41.0, 60.0)]
    a = telemetry_alerts("066500010010.000", T, {"expected": None, "lost": None, "end_mark": False}, gaps, s)
    assert "2 gap(s)" in a[0].text and "END mark not received" in a[0].text
    f = failure_alert("066500010010.000", T, "quick-look", "IsgriBkg: no background map")
    assert f.kind == "OPS" and f.level == "error" and f.subject == "processing"


def test_state_round_trip_and_errors(tmp_path):
    st = NrtState(tmp_path / "state.json")
    rec = st.record(__import__("isdc.ids", fromlist=["ScwId"]).ScwId.parse("066500010010.000"))
    rec.status, rec.received, rec.alerts = "done", 10, ["grb-x"]
    st.sources = {"new_sources": [{"name": "IGR J0"}]}
    st.save(durable=False)
    back = NrtState.load(tmp_path / "state.json")
    assert back.scws["066500010010.000"] == rec and back.sources == st.sources
    assert back.closed_windows() == [(0, 0, "066500010010.000")] and back.by_status("done") == [rec]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(StateError, match="not a valid state file"):
        NrtState.load(tmp_path / "bad.json")
    (tmp_path / "v9.json").write_text(json.dumps({"format": 9}))
    with pytest.raises(StateError, match="format 9"):
        NrtState.load(tmp_path / "v9.json")
    with pytest.raises(StateError, match="unknown status"):
        ScwRecord("066500010010.000", status="lost")
    with pytest.raises(StateError):
        ScwRecord("../etc/passwd")


@given(st.text(max_size=30))
def test_only_scw_ids_become_records(text):
    try:
        ScwRecord(text)
    except StateError:
        return
    assert len(text) == 16 and text[12] == "."


def test_lock_is_exclusive_and_released(tmp_path):
    a = DaemonLock(tmp_path / "daemon.lock").acquire()
    b = DaemonLock(tmp_path / "daemon.lock")
    assert b.held_by_other()
    with pytest.raises(StateError, match="another NRT daemon"):
        b.acquire()
    a.release()
    assert not b.held_by_other()
    with b:
        assert not b.held_by_other() and DaemonLock(tmp_path / "daemon.lock").held_by_other()


def test_nrt_configuration_section():
    cfg = nrt_config(overrides={"nrt.trigger.alert_threshold": "9", "nrt.sources.flare_sigma": "6"})
    s = settings(cfg)
    assert s.trigger.params.alert_threshold == 9.0 and s.sources.flare_sigma == 6.0
    assert s.trigger.band == (15.0, 200.0) and s.trigger.rise_min == 16.0 and cfg["levels"][-1] == "IMA"
    with pytest.raises(ConfigError, match="unknown"):
        nrt_config(overrides={"nrt.trigger.nonsense": "1"})
    with pytest.raises(ConfigError, match="E1 < E2"):
        nrt_config(overrides={"nrt.trigger.band": "200,15"})
    with pytest.raises(ValueError, match="multiple of the base bin"):
        settings(nrt_config(overrides={"nrt.trigger.timescales": "0.11,1"}))
