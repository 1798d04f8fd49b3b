"""Alerts: the record, its VOEvent 2.0 form, and the store that writes each alert once, never lost.

An `Alert` is a small immutable record (kind, time, position, significance, error, the
ScW and free parameters). Its ID is derived from what it reports (kind, ScW, trigger
time or source name), so the same event alerted twice — e.g. after a restart that
re-processes a ScW — gets the same ID and the store keeps it once. Kinds: GRB (burst
trigger), NEW_SOURCE (detection not in the reference catalogue), FLARE (a catalogue
source far above its expected flux), OPS (instrument or processing problem).

Layout of an alerts folder:

    <folder>/<id>.json     the alert (written first)
    <folder>/<id>.xml      its VOEvent 2.0 document
    <folder>/outbox/<id>   present while the alert still has to be POSTed somewhere
    <folder>/sent/<id>     delivery receipt (time, HTTP status)

Each file is written to a temporary name in its folder and moved into place with
`os.replace`, after an fsync: a crash leaves either no alert or a whole one. `publish`
is idempotent: an alert whose ID is already stored is not written again, so re-processing
a ScW after a restart never duplicates alerts. IDs are validated before they become file
names.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

from isdc.dal.atomic import atomic_write_bytes

__all__ = ["Alert", "KINDS", "voevent_xml", "IVORN_ROOT", "AlertStore"]


KINDS = ("GRB", "NEW_SOURCE", "FLARE", "OPS")
IVORN_ROOT = "ivo://isdc.integral/nrt"
_VOE_NS = "http://www.ivoa.net/xml/VOEvent/v2.0"
_XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
_SAFE = re.compile(r"[^A-Za-z0-9_.+\-]")


@dataclass(frozen=True)
class Alert:
    """One alert. Times are ISO UTC strings; angles degrees; error radius arcmin (90%)."""

    kind: str
    time_utc: str  # time of the event (trigger time, ScW time)
    scw: str  # ScW ID the event was seen in ('' for processing alerts without one)
    subject: str  # what: trigger time tag, source name, HK parameter...
    ra: float | None = None
    dec: float | None = None
    error_arcmin: float | None = None
    significance: float | None = None
    level: str = ""  # e.g. 'alert' / 'weak' for bursts, 'warning' / 'error' for OPS
    text: str = ""
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"alert kind must be one of {KINDS}, got {self.kind!r}")
        _dt.datetime.fromisoformat(self.time_utc.replace("Z", "+00:00"))  # raises on a bad time

    @property
    def id(self) -> str:
        """Stable identifier: kind, ScW, subject (+ a short hash against name clashes)."""
        key = json.dumps([self.kind, self.scw, self.subject], separators=(",", ":"))
        h = hashlib.sha256(key.encode()).hexdigest()[:8]
        subject = re.sub(r"\.{2,}", ".", _SAFE.sub("_", self.subject))[:40]
        parts = [self.kind.lower(), self.scw or "noscw", subject, h]
        return "-".join(p for p in parts if p)

    def to_json(self) -> dict:
        d = asdict(self)
        d["id"] = self.id
        d["ivorn"] = f"{IVORN_ROOT}#{self.id}"
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Alert":
        d = {k: v for k, v in d.items() if k not in ("id", "ivorn", "created_utc")}
        return cls(**d)


def _param(parent, name, value, unit="", ucd=""):
    attrs = {"name": name, "value": str(value)}
    if unit:
        attrs["unit"] = unit
    if ucd:
        attrs["ucd"] = ucd
    ET.SubElement(parent, "Param", attrs)


def voevent_xml(alert: Alert, created_utc: str, role: str = "observation") -> bytes:
    """The alert as a VOEvent 2.0 document (UTF-8 bytes)."""
    ET.register_namespace("voe", _VOE_NS)
    ET.register_namespace("xsi", _XSI_NS)
    root = ET.Element(f"{{{_VOE_NS}}}VOEvent", {
        "ivorn": f"{IVORN_ROOT}#{alert.id}", "role": role, "version": "2.0",
        f"{{{_XSI_NS}}}schemaLocation": f"{_VOE_NS} http://www.ivoa.net/xml/VOEvent/VOEvent-v2.0.xsd",
    })
    who = ET.SubElement(root, "Who")
    ET.SubElement(who, "AuthorIVORN").text = IVORN_ROOT
    ET.SubElement(who, "Date").text = created_utc
    author = ET.SubElement(who, "Author")
    ET.SubElement(author, "shortName").text = "isdc NRT"
    what = ET.SubElement(root, "What")
    _param(what, "kind", alert.kind)
    _param(what, "scw", alert.scw)
    _param(what, "subject", alert.subject)
    if alert.level:
        _param(what, "level", alert.level)
    if alert.significance is not None:
        _param(what, "significance", f"{alert.significance:.2f}", "sigma", "stat.snr")
    for k, v in sorted(alert.params.items()):
        _param(what, k, v)
    if alert.ra is not None and alert.dec is not None:
        ww = ET.SubElement(root, "WhereWhen")
        odl = ET.SubElement(ww, "ObsDataLocation")
        ET.SubElement(odl, "ObservatoryLocation", {"id": "GEOLUN"})
        loc = ET.SubElement(odl, "ObservationLocation")
        ET.SubElement(loc, "AstroCoordSystem", {"id": "UTC-FK5-GEO"})
        coords = ET.SubElement(loc, "AstroCoords", {"coord_system_id": "UTC-FK5-GEO"})
        t = ET.SubElement(ET.SubElement(coords, "Time", {"unit": "s"}), "TimeInstant")
        ET.SubElement(t, "ISOTime").text = alert.time_utc.replace("Z", "")
        pos = ET.SubElement(coords, "Position2D", {"unit": "deg"})
        ET.SubElement(pos, "Name1").text = "RA"
        ET.SubElement(pos, "Name2").text = "Dec"
        v2 = ET.SubElement(pos, "Value2")
        ET.SubElement(v2, "C1").text = f"{alert.ra:.5f}"
        ET.SubElement(v2, "C2").text = f"{alert.dec:.5f}"
        err = alert.error_arcmin if alert.error_arcmin is not None and math.isfinite(alert.error_arcmin) else 0.0
        ET.SubElement(pos, "Error2Radius").text = f"{err / 60.0:.5f}"
    how = ET.SubElement(root, "How")
    ET.SubElement(how, "Description").text = "INTEGRAL IBIS/ISGRI, isdc near-real-time analysis"
    why = ET.SubElement(root, "Why")
    concept = {"GRB": "process.variation.burst;em.gamma", "NEW_SOURCE": "src;em.X-ray",
               "FLARE": "process.variation;em.X-ray", "OPS": "meta.code.error"}[alert.kind]
    inf = ET.SubElement(why, "Inference")
    ET.SubElement(inf, "Concept").text = concept
    if alert.text:
        ET.SubElement(why, "Description").text = alert.text
    ET.indent(root)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


_ID = re.compile(r"[a-z_]+-[A-Za-z0-9_.+\-]{1,120}")


class AlertStore:
    """Alerts of one NRT installation in a folder (see module docstring)."""

    def __init__(self, folder: str | os.PathLike, deliver: bool = False):
        self.folder = Path(folder)
        self.deliver = deliver
        for d in (self.folder, self.folder / "outbox", self.folder / "sent"):
            d.mkdir(parents=True, exist_ok=True)

    def _path(self, alert_id: str, suffix: str) -> Path:
        if not _ID.fullmatch(alert_id) or ".." in alert_id:
            raise ValueError(f"invalid alert ID {alert_id!r}")
        return self.folder / f"{alert_id}{suffix}"

    def publish(self, alert: Alert) -> bool:
        """Store the alert (JSON then VOEvent, then the outbox entry); False if it was already stored."""
        aid = alert.id
        jpath, xpath = self._path(aid, ".json"), self._path(aid, ".xml")
        if jpath.exists() and xpath.exists():
            # a crash after the XML and before the outbox entry must not lose the delivery
            if self.deliver and not (self.folder / "sent" / aid).exists() and not (self.folder / "outbox" / aid).exists():
                atomic_write_bytes(self.folder / "outbox" / aid, b"")
            return False
        created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        if not jpath.exists():
            doc = alert.to_json()
            doc["created_utc"] = created
            atomic_write_bytes(jpath, json.dumps(doc, indent=1, sort_keys=True).encode())
        else:
            created = json.loads(jpath.read_text()).get("created_utc", created)
        atomic_write_bytes(xpath, voevent_xml(alert, created))
        if self.deliver:
            atomic_write_bytes(self.folder / "outbox" / aid, b"")
        return True

    def ids(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.json") if _ID.fullmatch(p.stem))

    def load(self, alert_id: str) -> Alert:
        return Alert.from_json(json.loads(self._path(alert_id, ".json").read_text()))

    def all(self) -> list[Alert]:
        return [self.load(i) for i in self.ids()]

    def outbox(self) -> list[str]:
        """IDs still to be delivered (oldest first)."""
        items = [p for p in (self.folder / "outbox").iterdir() if _ID.fullmatch(p.name)]
        return [p.name for p in sorted(items, key=lambda p: p.stat().st_mtime_ns)]

    def voevent(self, alert_id: str) -> bytes:
        return self._path(alert_id, ".xml").read_bytes()

    def mark_sent(self, alert_id: str, status: int) -> None:
        """Record delivery, then clear the outbox entry (in this order: never lost)."""
        self._path(alert_id, ".json")  # validates the ID
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        atomic_write_bytes(self.folder / "sent" / alert_id, json.dumps({"time": stamp, "status": status}).encode())
        (self.folder / "outbox" / alert_id).unlink(missing_ok=True)
