"""INTEGRAL time systems: IJD (TT), MJD, UTC, and on-board time (OBT).

IJD, the INTEGRAL Julian Date, is the time of every INTEGRAL product: days since
2000-01-01T00:00:00 TT, so ``IJD = MJD(TT) - 51544.0``. FITS headers say so with
``MJDREF = 51544.0`` (also ``MJDREFI = 51544``, ``MJDREFF = 0.0``), ``TIMESYS = 'TT'``,
``TIMEUNIT = 'd'``. IJD is *not* UTC: TT - UTC = 32.184 s + the leap seconds in force
(64.184 s in 2000, 69.184 s since 2017-01-01). UTC conversions go through astropy.time,
which knows the leap seconds (its table is valid until the date it states; beyond it
conversions still work but ERFA warns of a "dubious year").

OBT, the on-board time, is the spacecraft clock, a 64-bit counter. Our OBT unit is the
one of INTEGRAL's OBT: one tick = 2**-20 s (0.9537 µs). The real ISDC files agree: the
20-digit ``OBTSTART``/``OBTEND`` keywords and the ``OB_TIME`` column (four 16-bit words,
most significant first) of a ScW's auxiliary tables advance by 2**20 per second. The
ISGRI event time resolution, 61.035 µs = 2**-14 s, is exactly 64 ticks.

The time-correlation table maps OBT to IJD with points measured by ground stations;
between them the mapping is linear, which follows the drift of the on-board oscillator
(`TimeCorrelation`). OBT going backwards in the table means the counter was reset: a
new *segment* starts, and an OBT value is then only meaningful together with the
segment it belongs to.

Everything here is pure (no files) and vectorised over numpy arrays: a scalar in gives a
scalar out, an array in gives an array of the same shape out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import erfa
import numpy as np
from astropy.time import Time

__all__ = [
    "TimeError",
    "MJDREF",
    "MJDREFI",
    "MJDREFF",
    "SECONDS_PER_DAY",
    "OBT_TICKS_PER_SECOND",
    "OBT_TICK_SECONDS",
    "ISGRI_TIME_RESOLUTION_TICKS",
    "time_keywords",
    "ijd_to_time",
    "time_to_ijd",
    "ijd_to_mjd",
    "mjd_to_ijd",
    "ijd_to_isot",
    "isot_to_ijd",
    "tt_minus_utc",
    "obt_to_seconds",
    "seconds_to_obt",
    "format_obt",
    "parse_obt",
    "obt_from_words",
    "obt_to_words",
    "TimeCorrelation",
]


class TimeError(ValueError):
    """A time that cannot be converted: outside a correlation table, ambiguous, malformed."""


MJDREF = 51544.0
"""MJD (TT) of IJD 0: 2000-01-01T00:00:00 TT."""
MJDREFI = 51544
MJDREFF = 0.0
SECONDS_PER_DAY = 86400.0
_JD_OF_IJD0 = 2451544.5  # JD of MJD 51544.0; exactly representable

OBT_TICKS_PER_SECOND = 2**20
"""OBT ticks per second (INTEGRAL's on-board clock resolution)."""
OBT_TICK_SECONDS = 2.0**-20
"""Seconds per OBT tick: 0.95367431640625 µs (exact in binary)."""
ISGRI_TIME_RESOLUTION_TICKS = 64
"""ISGRI event time resolution, 2**-14 s = 61.035 µs, in OBT ticks."""

_TICKS_PER_DAY = OBT_TICKS_PER_SECOND * SECONDS_PER_DAY


def time_keywords() -> dict[str, tuple]:
    """FITS keywords (value, comment) declaring IJD times, for any HDU with TIME columns."""
    return {
        "MJDREF": (MJDREF, "Modified Julian Date of time origin"),
        "MJDREFI": (MJDREFI, "Integer part of MJDREF"),
        "MJDREFF": (MJDREFF, "Fractional part of MJDREF"),
        "TIMESYS": ("TT", "Time frame system"),
        "TIMEUNIT": ("d", "Time unit"),
    }


def _out(x: np.ndarray, scalar: bool):
    return x.item() if scalar else x


# --------------------------------------------------------------------------- IJD <-> astropy

def ijd_to_time(ijd) -> Time:
    """IJD (days, TT; scalar or array) as an astropy Time in the TT scale.

    The day count is carried as the second of astropy's two doubles, so no precision is
    lost (IJD ~ 8000 d is resolved to ~0.1 µs by a double, finer inside Time).
    """
    ijd = np.asarray(ijd, dtype=np.float64)
    if not np.all(np.isfinite(ijd)):
        raise TimeError("IJD must be finite (got NaN or infinity)")
    return Time(np.full(ijd.shape, MJDREF) if ijd.shape else MJDREF, ijd, format="mjd", scale="tt")


def time_to_ijd(t: Time):
    """IJD (days, TT) of an astropy Time in any scale (UTC leap seconds handled)."""
    tt = t.tt
    # jd1 is a whole or half day: the difference with 2451544.5 is exact.
    out = (np.asarray(tt.jd1, dtype=np.float64) - _JD_OF_IJD0) + np.asarray(tt.jd2, dtype=np.float64)
    return _out(np.asarray(out), np.ndim(out) == 0)


def ijd_to_mjd(ijd, scale: str = "tt"):
    """MJD in `scale` ('tt' or 'utc', ...) of IJD; IJD + 51544.0 for TT."""
    if scale == "tt":
        ijd = np.asarray(ijd, dtype=np.float64)
        return _out(ijd + MJDREF, ijd.ndim == 0)
    t = getattr(ijd_to_time(ijd), scale)
    return _out(np.asarray(t.mjd), np.ndim(ijd) == 0)


def mjd_to_ijd(mjd, scale: str = "tt"):
    """IJD of an MJD given in `scale` ('tt', 'utc', 'tai', ...)."""
    mjd = np.asarray(mjd, dtype=np.float64)
    if scale == "tt":
        return _out(mjd - MJDREF, mjd.ndim == 0)
    return time_to_ijd(Time(mjd, format="mjd", scale=scale))


def ijd_to_isot(ijd, scale: str = "utc", precision: int = 6):
    """ISO 8601 string(s) 'YYYY-MM-DDThh:mm:ss.ffffff' of IJD in `scale` (UTC by default).

    A time inside a leap second prints as second 60 (e.g. '2016-12-31T23:59:60.500000').
    """
    t = getattr(ijd_to_time(ijd), scale)
    t.precision = precision
    return _out(np.asarray(t.isot), np.ndim(ijd) == 0)


def isot_to_ijd(text, scale: str = "utc"):
    """IJD of ISO 8601 string(s) read in `scale` (UTC by default); TimeError if malformed."""
    try:
        t = Time(text, format="isot", scale=scale)
    except ValueError as exc:
        raise TimeError(f"cannot read {text!r} as an ISO time (YYYY-MM-DDThh:mm:ss[.fff]) in {scale}: {exc}") from exc
    return time_to_ijd(t)


def tt_minus_utc(ijd):
    """TT - UTC in seconds at IJD: 32.184 s + leap seconds (64.184 s in 2000, 69.184 s after 2017)."""
    # The UTC day of the instant and the leap-second count (TAI - UTC) in force on it:
    # a difference of Julian dates would be wrong on a day that has a leap second.
    # Converting to UTC first also makes astropy load its leap-second table into ERFA.
    u = ijd_to_time(ijd).utc.ymdhms
    tai_utc = erfa.dat(u["year"], u["month"], u["day"], np.zeros(np.shape(u["year"])))
    return _out(np.asarray(tai_utc + 32.184, dtype=np.float64), np.ndim(ijd) == 0)


# --------------------------------------------------------------------------- OBT encodings

def obt_to_seconds(obt):
    """OBT ticks (int) to seconds of on-board clock."""
    obt = np.asarray(obt, dtype=np.int64)
    return _out(obt * OBT_TICK_SECONDS, obt.ndim == 0)


def seconds_to_obt(seconds):
    """Seconds of on-board clock to OBT ticks, rounded to the nearest tick (int64)."""
    s = np.asarray(seconds, dtype=np.float64)
    return _out(np.rint(s * OBT_TICKS_PER_SECOND).astype(np.int64), s.ndim == 0)


_OBT_TEXT = re.compile(r"[0-9]{1,20}")


def format_obt(obt: int) -> str:
    """OBT as ISDC writes it in OBTSTART/OBTEND: 20 decimal digits, zero padded."""
    obt = int(obt)
    if not 0 <= obt < 2**63:
        raise TimeError(f"OBT {obt} outside 0..2**63-1")
    return f"{obt:020d}"


def parse_obt(text: str) -> int:
    """OBT from its keyword text (OBTSTART '00000213629501702144'); TimeError otherwise."""
    s = str(text).strip()
    if not _OBT_TEXT.fullmatch(s) or int(s) >= 2**63:
        raise TimeError(f"invalid OBT {text!r}: expected up to 20 decimal digits below 2**63")
    return int(s)


def obt_from_words(words) -> np.ndarray:
    """OBT ticks from ISDC's `OB_TIME` 4I column: shape (..., 4) 16-bit words, most significant first."""
    w = np.asarray(words)
    if w.shape[-1:] != (4,):
        raise TimeError(f"OB_TIME words must have a last axis of 4, got shape {w.shape}")
    w = w.astype(np.int64)
    if np.any((w < 0) | (w > 0xFFFF)):
        raise TimeError("OB_TIME words must be unsigned 16-bit values")
    if np.any(w[..., 0] > 0x7FFF):
        raise TimeError("OB_TIME beyond 2**63 ticks")
    return (w[..., 0] << 48) | (w[..., 1] << 32) | (w[..., 2] << 16) | w[..., 3]


def obt_to_words(obt) -> np.ndarray:
    """The inverse of `obt_from_words`: shape (..., 4) uint16 words, most significant first."""
    o = np.asarray(obt, dtype=np.int64)
    if np.any(o < 0):
        raise TimeError("OBT must not be negative")
    return np.stack([(o >> s) & 0xFFFF for s in (48, 32, 16, 0)], axis=-1).astype(np.uint16)


# --------------------------------------------------------------------------- time correlation

@dataclass(frozen=True)
class _Segment:
    obt: np.ndarray  # int64, strictly increasing
    ijd: np.ndarray  # float64, strictly increasing
    slope: np.ndarray  # days per tick of each interval (len n-1)

    @property
    def obt_range(self) -> tuple[int, int]:
        return int(self.obt[0]), int(self.obt[-1])

    @property
    def ijd_range(self) -> tuple[float, float]:
        return float(self.ijd[0]), float(self.ijd[-1])


class TimeCorrelation:
    """Piecewise-linear OBT -> IJD mapping from a time-correlation table.

    Parameters
    ----------
    obt : int array, shape (n,)
        On-board times of the correlation points, ticks of 2**-20 s.
    ijd : float array, shape (n,)
        IJD (days, TT) of the same instants; must increase strictly through the table.
    max_drift : float
        Largest accepted fractional rate error of the on-board clock between two points
        (default 1e-3, i.e. 86 s/day: a real quartz drifts by ~1e-6); beyond it the
        table is rejected as corrupt.
    name : str
        What to call the table in error messages (e.g. its file name).

    OBT decreasing from one row to the next marks a clock reset and starts a new
    segment; each segment needs at least two points. Conversions never extrapolate:
    a time outside every segment raises TimeError naming it and the covered ranges.
    The ends of a segment are included.
    """

    def __init__(self, obt, ijd, *, max_drift: float = 1e-3, name: str = "time correlation"):
        self.name = name
        obt = np.asarray(obt)
        ijd = np.asarray(ijd, dtype=np.float64)
        if obt.ndim != 1 or obt.shape != ijd.shape:
            raise TimeError(f"{name}: OBT and IJD must be 1-D arrays of one length, got {obt.shape} and {ijd.shape}")
        if obt.size < 2:
            raise TimeError(f"{name}: needs at least 2 correlation points, has {obt.size}")
        if obt.dtype.kind not in "iu":
            raise TimeError(f"{name}: OBT must be integer ticks, got {obt.dtype}")
        obt = obt.astype(np.int64)
        if not np.all(np.isfinite(ijd)):
            raise TimeError(f"{name}: IJD contains NaN or infinity")
        bad = np.flatnonzero(np.diff(ijd) <= 0)
        if bad.size:
            i = int(bad[0])
            raise TimeError(f"{name}: IJD must increase strictly; row {i + 1} (IJD {ijd[i + 1]!r}) "
                            f"is not after row {i} (IJD {ijd[i]!r})")
        dobt = np.diff(obt)
        same = np.flatnonzero(dobt == 0)
        if same.size:
            raise TimeError(f"{name}: rows {int(same[0])} and {int(same[0]) + 1} have the same OBT {int(obt[same[0]])}")
        cuts = np.flatnonzero(dobt < 0) + 1
        segments = []
        for k, (a, b) in enumerate(zip(np.r_[0, cuts], np.r_[cuts, obt.size])):
            if b - a < 2:
                raise TimeError(f"{name}: segment {k} (rows {a}..{b - 1}, after an OBT reset) has a single point: "
                                "cannot measure the clock rate")
            o, t = obt[a:b], ijd[a:b]
            slope = np.diff(t) / np.diff(o).astype(np.float64)
            rate = slope * _TICKS_PER_DAY  # TT seconds per on-board second: 1 = nominal clock
            off = np.flatnonzero(np.abs(rate - 1.0) > max_drift)
            if off.size:
                j = int(off[0]) + a
                raise TimeError(f"{name}: rows {j}..{j + 1}: clock rate {rate[off[0]]:.9f} differs from nominal by more "
                                f"than {max_drift:g} (OBT in ticks of 2**-20 s, IJD in days?)")
            segments.append(_Segment(o, t, slope))
        self.segments: tuple[_Segment, ...] = tuple(segments)

    # ---- construction helpers
    @classmethod
    def linear(cls, obt0: int, ijd0: float, days: float, *, drift: float = 0.0, points: int = 2,
               name: str = "time correlation") -> "TimeCorrelation":
        """A table for a clock that reads `obt0` at `ijd0` and runs fast by `drift` (fractional).

        `points` equally spaced correlation points over `days` days (>= 2).
        """
        if points < 2 or not days > 0:
            raise TimeError("a linear time correlation needs points >= 2 and days > 0")
        t = ijd0 + np.linspace(0.0, days, points)
        o = int(obt0) + np.rint((t - ijd0) * _TICKS_PER_DAY * (1.0 + drift)).astype(np.int64)
        return cls(o, t, name=name, max_drift=max(1e-3, 2 * abs(drift)))

    @property
    def obt(self) -> np.ndarray:
        return np.concatenate([s.obt for s in self.segments])

    @property
    def ijd(self) -> np.ndarray:
        return np.concatenate([s.ijd for s in self.segments])

    @property
    def ijd_range(self) -> tuple[float, float]:
        return self.segments[0].ijd[0].item(), self.segments[-1].ijd[-1].item()

    def __repr__(self):
        lo, hi = self.ijd_range
        return f"TimeCorrelation({self.name!r}, {len(self.segments)} segment(s), IJD {lo}..{hi})"

    def _ranges(self, what: str) -> str:
        if what == "obt":
            return ", ".join(f"segment {k}: OBT {s.obt_range[0]}..{s.obt_range[1]}" for k, s in enumerate(self.segments))
        return ", ".join(f"segment {k}: IJD {s.ijd_range[0]!r}..{s.ijd_range[1]!r}" for k, s in enumerate(self.segments))

    # ---- conversions
    def segment_of_ijd(self, ijd):
        """Index of the segment covering each IJD; TimeError for times in no segment."""
        x = np.asarray(ijd, dtype=np.float64)
        seg = np.full(x.shape, -1, dtype=np.int64)
        for k, s in enumerate(self.segments):
            seg[(x >= s.ijd[0]) & (x <= s.ijd[-1])] = k
        miss = seg < 0
        if np.any(miss):
            bad = x[miss].ravel()
            raise TimeError(f"{self.name}: {bad.size} time(s) outside the table, first IJD {bad[0]!r}; covered: "
                            f"{self._ranges('ijd')}")
        return _out(seg, x.ndim == 0)

    def obt_to_ijd(self, obt, segment: int | None = None):
        """IJD (days, TT) of on-board time(s) `obt` (int ticks).

        `segment` names the clock segment when the table has resets and an OBT value
        falls in more than one of them; otherwise it is found. TimeError for an OBT
        outside the table, in no segment, or ambiguous.
        """
        o = np.asarray(obt)
        if o.dtype.kind not in "iu":
            raise TimeError(f"{self.name}: OBT must be integer ticks, got {o.dtype}")
        o = o.astype(np.int64, copy=False)
        out = np.empty(o.shape, dtype=np.float64)
        if segment is None and len(self.segments) == 1:
            segment = 0  # the usual case: no clock reset, no per-value segment search
        if segment is not None:
            if not 0 <= segment < len(self.segments):
                raise TimeError(f"{self.name}: no segment {segment} (table has {len(self.segments)})")
            seg = segment
            s = self.segments[segment]
            if o.size and (o.min() < s.obt[0] or o.max() > s.obt[-1]):
                bad = o[(o < s.obt[0]) | (o > s.obt[-1])].ravel()
                what = "the table" if len(self.segments) == 1 else f"segment {segment}"
                raise TimeError(f"{self.name}: {bad.size} OBT value(s) outside {what}, first {int(bad[0])}; "
                                f"covered: {self._ranges('obt')}")
        else:
            seg = np.full(o.shape, -1, dtype=np.int64)
            hits = np.zeros(o.shape, dtype=np.int64)
            for k, s in enumerate(self.segments):
                m = (o >= s.obt[0]) & (o <= s.obt[-1])
                seg[m] = k
                hits += m
            if np.any(hits == 0):
                bad = o[hits == 0].ravel()
                raise TimeError(f"{self.name}: {bad.size} OBT value(s) outside the table, first {int(bad[0])}; "
                                f"covered: {self._ranges('obt')}")
            if np.any(hits > 1):
                bad = o[hits > 1].ravel()
                raise TimeError(f"{self.name}: OBT {int(bad[0])} lies in more than one clock segment (the clock was "
                                f"reset); pass segment=; {self._ranges('obt')}")
        self._interpolate(seg, o, out, "obt", lambda s, i, x: s.ijd[i] + (x - s.obt[i]).astype(np.float64) * s.slope[i])
        return _out(out, o.ndim == 0)

    def ijd_to_obt(self, ijd):
        """On-board time(s) (int64 ticks, nearest tick) of IJD (days, TT)."""
        x = np.asarray(ijd, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise TimeError(f"{self.name}: IJD must be finite")
        one = self.segments[0]
        if len(self.segments) == 1 and (x.size == 0 or (x.min() >= one.ijd[0] and x.max() <= one.ijd[-1])):
            seg = 0
        else:
            seg = np.asarray(self.segment_of_ijd(x))
        out = np.empty(x.shape, dtype=np.int64)
        self._interpolate(seg, x, out, "ijd", lambda s, i, y: s.obt[i] + np.rint((y - s.ijd[i]) / s.slope[i]).astype(np.int64))
        return _out(out, x.ndim == 0)

    def time_error(self, obt, ijd):
        """Seconds by which stated times `ijd` (days, TT) differ from the IJD of their on-board
        times `obt` (int ticks) through this table: 0 for times converted with it.

        Each OBT is converted in the clock segment that covers its stated IJD, so a table
        with resets serves data from either side of them. TimeError when a stated time is
        in no segment or an OBT lies outside the segment of its time (a clock reset the
        table does not know).
        """
        x = np.asarray(ijd, dtype=np.float64)
        o = np.asarray(obt)
        if o.shape != x.shape:
            raise TimeError(f"{self.name}: {o.shape} OBT values for {x.shape} times")
        if len(self.segments) == 1:
            return _out((np.asarray(self.obt_to_ijd(o, segment=0)) - x) * SECONDS_PER_DAY, x.ndim == 0)
        seg = np.asarray(self.segment_of_ijd(x))
        out = np.empty(x.shape, dtype=np.float64)
        for k in np.unique(seg):
            m = seg == k
            out[m] = (np.asarray(self.obt_to_ijd(o[m], segment=int(k))) - x[m]) * SECONDS_PER_DAY
        return _out(out, x.ndim == 0)

    def _interpolate(self, seg, x, out, knots: str, convert) -> None:
        """Fill `out` segment by segment: `convert(segment, interval index, values)`.

        `seg` is one segment number for all values, or an array of them.
        """
        def fill(s, v):
            grid = getattr(s, knots)
            i = np.clip(np.searchsorted(grid, v, side="right") - 1, 0, grid.size - 2)
            return convert(s, i, v)

        if isinstance(seg, (int, np.integer)):
            out[...] = fill(self.segments[seg], x)
            return
        for k, s in enumerate(self.segments):
            m = seg == k
            if np.any(m):
                out[m] = fill(s, x[m])
