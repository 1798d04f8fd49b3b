"""Configuration of the NRT daemon: the `nrt` section of the pipeline configuration.

Declared with `isdc.pipeline.config.declare`, so the daemon's options live in the same
typed, strict, layered configuration as the analysis: defaults < `pipelines/nrt.yaml` <
the `--config` file < `--set key=value`. `settings(config)` turns the effective
configuration into the typed settings objects of the daemon's parts.
"""
from __future__ import annotations

from dataclasses import dataclass

from isdc.instruments.isgri.ibas import TriggerParams
from isdc.nrt.ops import OpsSettings
from isdc.nrt.sources import SourceAlertSettings
from isdc.nrt.trigger import TriggerSettings
from isdc.pipeline.base import config_value
from isdc.pipeline.config import SCHEMA, Option, _non_negative, _positive, declare, load_config

__all__ = ["DaemonSettings", "settings", "nrt_config"]


def _band(v):
    return None if len(v) == 2 and 0 < v[0] < v[1] else "must be two energies E1 < E2 (keV)"


def _increasing(v):
    return None if v and all(x > 0 for x in v) and list(v) == sorted(v) else "must be increasing positive numbers"


declare("nrt", {
    "grace_s": Option("float", 8.0, "on-board seconds the telemetry must move past a science window's end before "
                      "it is closed with the packets that arrived (a complete ScW closes at once)", _non_negative),
    "idle_close_s": Option("float", 20.0, "wall-clock seconds without a new chunk after which the open science "
                           "windows are closed (end of a telemetry stream)", _positive),
    "poll_s": Option("float", 0.2, "seconds between two looks at the inbox when it is empty", _positive),
    "alerts_dir": Option("str", "", "alerts folder ('' = <archive>/nrt/alerts)"),
    "endpoint": Option("str", "", "HTTP(S) URL every alert is POSTed to as VOEvent ('' = none)"),
    "deliver_attempts": Option("int", 3, "POST attempts per alert per delivery round", _positive),
    "deliver_timeout_s": Option("float", 5.0, "timeout of one POST (s)", _positive),
    "deliver_backoff_s": Option("float", 1.0, "wait before the first retry of a POST, doubled after each (s)",
                                _non_negative),
    "quicklook_slews": Option("bool", False, "run the quick-look analysis on slews too (they have no good time "
                              "for imaging: the products are empty)"),
})
declare("nrt.trigger", {
    "enabled": Option("bool", True, "run the burst trigger on the event stream of open pointings"),
    "band": Option("floats", [15.0, 200.0], "energy band of the trigger (keV)", _band),
    "timescales": Option("floats", list(TriggerParams().timescales), "time scales of the rate test (s), "
                         "multiples of bin_s", _increasing),
    "bin_s": Option("float", 0.025, "base time bin (s)", _positive),
    "background_s": Option("float", 30.0, "length of the background window before each test window (s)", _positive),
    "gap_s": Option("float", 2.0, "gap between the background window and the test window (s)", _non_negative),
    "rate_threshold": Option("float", 6.5, "rate-excess significance that makes a candidate (sigma)", _positive),
    "alert_threshold": Option("float", 8.0, "image significance of a burst alert (sigma)", _positive),
    "weak_threshold": Option("float", 6.5, "image significance of a weak-burst alert (sigma)", _positive),
    "holdoff_s": Option("float", 30.0, "no second trigger within this time of an alerted one (s)", _non_negative),
    "lag_s": Option("float", 1.0, "stream seconds of late telemetry waited for before scanning", _non_negative),
    "settle_s": Option("float", 3.0, "stream seconds after a candidate's start before it is imaged", _non_negative),
    "max_event_gap_s": Option("float", 0.05, "an event interval longer than this (or 20 mean intervals) is "
                              "telemetry lost: dead time for the trigger (s)", _positive),
    "min_live": Option("float", 0.8, "smallest live fraction of a test or background window", _positive),
    "images": Option("int", 3, "time scales imaged per candidate (their most significant windows)", _positive),
})
declare("nrt.sources", {
    "new_source_sigma": Option("float", 7.0, "significance of an unidentified detection that raises a "
                               "new-source alert", _positive),
    "flare_sigma": Option("float", 5.0, "significance of a catalogue source's excess over its expected or recent "
                          "flux that raises a flare alert", _positive),
    "quiet_sigma": Option("float", 2.0, "a flaring source whose excess falls below this is quiet again (the next "
                          "flare alerts again)", _non_negative),
    "systematic": Option("float", 0.1, "fractional systematic error of a flux comparison", _non_negative),
    "match_arcmin": Option("float", 6.0, "a new source within this distance (or 3 error radii) of one already "
                           "alerted is the same source", _positive),
    "history": Option("int", 5, "quiet flux measurements kept per source for its recent level", _positive),
})
declare("nrt.ops", {
    "max_temperature_c": Option("float", 5.0, "module temperature above which HK is out of limits (deg C)"),
    "min_abs_bias_v": Option("float", 80.0, "|bias voltage| below which HK is out of limits (V)", _non_negative),
    "max_lost_fraction": Option("float", 0.01, "fraction of a ScW's packets lost that raises an alert",
                                _non_negative),
    "min_gap_s": Option("float", 10.0, "telemetry gap (no events) that raises an alert (s)", _positive),
})


@dataclass(frozen=True)
class DaemonSettings:
    """The daemon's typed settings (from the `nrt` section)."""

    grace_s: float
    idle_close_s: float
    poll_s: float
    alerts_dir: str
    endpoint: str
    deliver_attempts: int
    deliver_timeout_s: float
    deliver_backoff_s: float
    quicklook_slews: bool
    trigger_enabled: bool
    trigger: TriggerSettings
    sources: SourceAlertSettings
    ops: OpsSettings


def settings(config: dict) -> DaemonSettings:
    """Typed settings from an effective configuration (defaults for a missing `nrt` section)."""
    def get(key):
        node = SCHEMA
        for part in key.split("."):
            node = node[part]
        return config_value(config, key, node.default)

    t = "nrt.trigger."
    params = TriggerParams(timescales=tuple(get(t + "timescales")), bin_s=get(t + "bin_s"),
                           background_s=get(t + "background_s"), gap_s=get(t + "gap_s"),
                           rate_threshold=get(t + "rate_threshold"), alert_threshold=get(t + "alert_threshold"),
                           weak_threshold=get(t + "weak_threshold"), holdoff_s=get(t + "holdoff_s"))
    trig = TriggerSettings(band=tuple(get(t + "band")), rise_min=float(get("isgri.cor.rise_time_min")),
                           rise_max=float(get("isgri.cor.rise_time_max")), params=params, lag_s=get(t + "lag_s"),
                           settle_s=get(t + "settle_s"), max_event_gap_s=get(t + "max_event_gap_s"),
                           min_live=get(t + "min_live"), images=get(t + "images"))
    s = "nrt.sources."
    src = SourceAlertSettings(new_source_sigma=get(s + "new_source_sigma"), flare_sigma=get(s + "flare_sigma"),
                              quiet_sigma=get(s + "quiet_sigma"), systematic=get(s + "systematic"),
                              match_arcmin=get(s + "match_arcmin"), history=get(s + "history"))
    o = "nrt.ops."
    ops = OpsSettings(max_temperature_c=get(o + "max_temperature_c"), min_abs_bias_v=get(o + "min_abs_bias_v"),
                      max_lost_fraction=get(o + "max_lost_fraction"), min_gap_s=get(o + "min_gap_s"))
    return DaemonSettings(grace_s=get("nrt.grace_s"), idle_close_s=get("nrt.idle_close_s"), poll_s=get("nrt.poll_s"),
                          alerts_dir=get("nrt.alerts_dir"), endpoint=get("nrt.endpoint"),
                          deliver_attempts=get("nrt.deliver_attempts"),
                          deliver_timeout_s=get("nrt.deliver_timeout_s"),
                          deliver_backoff_s=get("nrt.deliver_backoff_s"),
                          quicklook_slews=get("nrt.quicklook_slews"), trigger_enabled=get("nrt.trigger.enabled"),
                          trigger=trig, sources=src, ops=ops)


def nrt_config(user_file=None, overrides: dict | None = None) -> dict:
    """The effective NRT configuration (pipelines/nrt.yaml + user file + overrides), `nrt` section included."""
    return load_config("nrt", user_file, overrides)
