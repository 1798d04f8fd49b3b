"""Identifiers users know: science windows, revolutions, observations.

Every path the project builds goes through these types: a string from a user, a config,
a FITS keyword or an inbox file name becomes a path component only after it has been
parsed here. Parsing is strict (anchored regular expressions, ASCII digits only) and
errors say what was wrong.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["IdError", "ScwId", "Revolution", "ObsId", "Version", "NRT", "CONS"]


class IdError(ValueError):
    """An identifier that does not follow its documented format."""


def _show(value: object) -> str:
    """The offending value for an error message: its repr, shortened when it is long (a
    megabyte of garbage should not become a megabyte of log)."""
    r = repr(value)
    return r if len(r) <= 80 else f"{r[:60]}... ({len(value) if isinstance(value, str) else len(r)} characters)"


# [0-9] rather than \d: \d also matches non-ASCII digits such as '٣'.
_SCW_RE = re.compile(r"([0-9]{4})([0-9]{4})([0-9]{3})([01])(?:\.([0-9]{3}))?")
_VERSION_RE = re.compile(r"[0-9]{3}")
_OBS_RE = re.compile(r"[0-9]{8}")


@dataclass(frozen=True, order=True)
class Version:
    """Data version `.VVV`: 000 = near real time (NRT), 001 = consolidated (CONS)."""

    number: int

    def __post_init__(self):
        if not isinstance(self.number, int) or isinstance(self.number, bool) or not 0 <= self.number <= 999:
            raise IdError(f"version must be an integer 0..999, got {_show(self.number)}")

    @classmethod
    def parse(cls, text: str | int | "Version") -> "Version":
        if isinstance(text, Version):
            return text
        if isinstance(text, int) and not isinstance(text, bool):
            return cls(text)
        s = str(text)
        if s.startswith("."):
            s = s[1:]
        if not _VERSION_RE.fullmatch(s):
            raise IdError(f"invalid data version {_show(text)}: expected three digits such as 000 (NRT) or 001 (CONS)")
        return cls(int(s))

    def __str__(self) -> str:
        return f"{self.number:03d}"

    @property
    def stream(self) -> str:
        return {0: "NRT", 1: "CONS"}.get(self.number, "OTHER")


NRT = Version(0)
CONS = Version(1)


@dataclass(frozen=True, order=True)
class Revolution:
    """A revolution (orbit) number, 0..9999, formatted RRRR."""

    number: int

    def __post_init__(self):
        if not isinstance(self.number, int) or isinstance(self.number, bool) or not 0 <= self.number <= 9999:
            raise IdError(f"revolution must be an integer 0..9999, got {_show(self.number)}")

    @classmethod
    def parse(cls, text: str | int | "Revolution") -> "Revolution":
        if isinstance(text, Revolution):
            return text
        if isinstance(text, int) and not isinstance(text, bool):
            return cls(text)
        s = str(text)
        if not re.fullmatch(r"[0-9]{1,4}", s):
            raise IdError(f"invalid revolution {_show(text)}: expected 1 to 4 digits, e.g. 0665")
        return cls(int(s))

    def __str__(self) -> str:
        return f"{self.number:04d}"


@dataclass(frozen=True, order=True)
class ScwId:
    """Science-window identifier `RRRRPPPPSSSF` with data version `.VVV`.

    RRRR revolution, PPPP pointing number in the revolution, SSS sub-number, F type
    (0 pointing, 1 slew). `ScwId.parse('066500230010.001')`.
    """

    revolution: int
    pointing: int
    subnumber: int
    type: int
    version: Version = CONS

    def __post_init__(self):
        for name, hi in (("revolution", 9999), ("pointing", 9999), ("subnumber", 999), ("type", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= hi:
                raise IdError(f"ScW {name} must be an integer 0..{hi}, got {_show(v)}")
        if not isinstance(self.version, Version):
            object.__setattr__(self, "version", Version.parse(self.version))

    @classmethod
    def parse(cls, text: str | "ScwId", version: str | int | Version | None = None) -> "ScwId":
        """Parse `RRRRPPPPSSSF.VVV` (or `RRRRPPPPSSSF` with `version` given).

        Raises IdError naming the offending text on anything else; surrounding
        whitespace is not accepted (a FITS string keyword is stripped by the reader).
        """
        if isinstance(text, ScwId):
            return text if version is None else text.with_version(version)
        if not isinstance(text, str):
            raise IdError(f"ScW ID must be a string, got {type(text).__name__}")
        m = _SCW_RE.fullmatch(text)
        if not m:
            raise IdError(
                f"invalid ScW ID {_show(text)}: expected RRRRPPPPSSSF.VVV, 12 digits (revolution, "
                "pointing, sub-number, type 0/1) and a 3-digit version, e.g. 066500230010.001"
            )
        rev, pnt, sub, typ, ver = m.groups()
        if ver is None:
            if version is None:
                raise IdError(f"ScW ID {_show(text)} has no version: write RRRRPPPPSSSF.VVV (e.g. {text}.001)")
            v = Version.parse(version)
        else:
            v = Version.parse(ver)
            if version is not None and Version.parse(version) != v:
                raise IdError(f"ScW ID {_show(text)} carries version {ver}, but version {version} was asked for")
        return cls(int(rev), int(pnt), int(sub), int(typ), v)

    @property
    def swid(self) -> str:
        """The 12-digit ScW identifier without version, as in the SWID keyword."""
        return f"{self.revolution:04d}{self.pointing:04d}{self.subnumber:03d}{self.type:d}"

    @property
    def rev(self) -> Revolution:
        return Revolution(self.revolution)

    @property
    def is_slew(self) -> bool:
        return self.type == 1

    @property
    def sw_type(self) -> str:
        """SW_TYPE keyword value."""
        return "SLEW" if self.is_slew else "POINTING"

    def with_version(self, version: str | int | Version) -> "ScwId":
        return ScwId(self.revolution, self.pointing, self.subnumber, self.type, Version.parse(version))

    def __str__(self) -> str:
        return f"{self.swid}.{self.version}"


@dataclass(frozen=True, order=True)
class ObsId:
    """Observation identifier `AAPPPPOO` (AO, proposal, observation); `99…` = user group."""

    text: str

    def __post_init__(self):
        if not isinstance(self.text, str) or not _OBS_RE.fullmatch(self.text):
            raise IdError(f"invalid observation ID {_show(self.text)}: expected 8 digits AAPPPPOO, e.g. 02200010")

    @classmethod
    def parse(cls, text: str | "ObsId") -> "ObsId":
        return text if isinstance(text, ObsId) else cls(text)

    @property
    def ao(self) -> int:
        return int(self.text[:2])

    @property
    def proposal(self) -> int:
        return int(self.text[2:6])

    @property
    def observation(self) -> int:
        return int(self.text[6:])

    @property
    def is_user_group(self) -> bool:
        return self.text.startswith("99")

    def __str__(self) -> str:
        return self.text


_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+\-]{0,63}")


def safe_name(text: str, what: str = "name") -> str:
    """Validate a free name used as one path component (an OSA output name, a group).

    Letters, digits, '_', '+', '-' only, starting with a letter or digit, at most 64
    characters: no '/', no '..', no dots, nothing a shell or a file system treats specially.
    """
    if not isinstance(text, str) or not _NAME_RE.fullmatch(text):
        raise IdError(
            f"invalid {what} {_show(text)}: use 1-64 letters, digits, '_', '+' or '-', starting with a letter or digit"
        )
    return text
