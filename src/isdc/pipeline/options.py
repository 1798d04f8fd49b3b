"""Configuration sections of the instrument steps (declared once, see pipeline.config)."""
from __future__ import annotations

from isdc.pipeline.config import Option, declare

__all__: list[str] = []


def _positive(v):
    return None if v > 0 else "must be > 0"


def _fraction(v):
    return None if 0 <= v <= 1 else "must be within 0..1"


declare("isgri", {
    "bands": Option("bands", [[20.0, 40.0], [40.0, 100.0]], "energy bands (keV) of images, "
                    "light curves; edges multiples of 0.5 keV"),
})
declare("isgri.cor", {
    "rise_time_min": Option("int", 16, "lowest accepted corrected rise time (0-127 scale; the response's "
                            "RISE_MIN)", _positive),
    "rise_time_max": Option("int", 116, "corrected rise times from this one on are rejected (the response's "
                            "RISE_MAX)", _positive),
    "noisy_pixel_sigma": Option("float", 8.0, "a pixel whose counts in a time bin exceed its expectation from "
                                "its module by this many sigma (Poisson) is noisy for the whole ScW", _positive),
    "noisy_pixel_bin_s": Option("float", 10.0, "time bin for the noisy-pixel search (s; bursts last 0.5-30 s)",
                                _positive),
})
declare("isgri.gti", {
    "max_attitude_offset_arcmin": Option("float", 3.0, "pointing drift that ends good time (arcmin)", _positive),
    "min_abs_bias_v": Option("float", 80.0, "time is bad while a module's |bias voltage| is below this (V; "
                             "ISGRI's nominal bias is -100 V)", _positive),
    "max_temperature_c": Option("float", 5.0, "module temperature above which time is bad (deg C)"),
    "min_interval_s": Option("float", 10.0, "good intervals shorter than this are dropped (s)", _positive),
    "max_event_gap_s": Option("float", 0.5, "a gap in the event stream longer than this (or 40 mean event "
                              "intervals) is a telemetry gap (s)", _positive),
})
declare("isgri.bkg", {
    "clip_sigma": Option("float", 5.0, "pixels further than this (sigma) from the background model are left "
                         "out of its normalisation fit", _positive),
    "flat_term": Option("bool", False, "fit a flat term (x efficiency) beside the background map, so that the "
                        "sources' mean counts stay out of the model (needs a high-statistics IC map; "
                        "docs/isgri.md)"),
})
declare("isgri.ima", {
    "detection_threshold": Option("float", 6.0, "sigma above which sources are listed", _positive),
    "max_sources": Option("int", 50, "most sources fitted and removed per band", _positive),
    "remove_catalog_sources": Option("bool", True, "fit and remove bright catalogue sources (and their "
                                     "ghosts) in detector space before searching"),
})
declare("isgri.spe", {
    "min_significance": Option("float", 3.0, "extract spectra of sources detected above this (sigma)",
                               _positive),
})
declare("isgri.lcr", {
    "time_bin_s": Option("float", 100.0, "light-curve bin (s)", _positive),
})
declare("obs", {
    "mosaic": Option("bool", True, "make observation mosaics"),
    "min_fraction_exposure": Option("float", 0.0, "ignore ScWs with less good-time fraction", _fraction),
})
