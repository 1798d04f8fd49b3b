"""Observation plan of the simulated INTEGRAL: revolutions, science windows, attitude.

A revolution is one orbit, 71.8 h (INTEGRAL's period until the 2015 manoeuvres),
numbered from perigee; `REVOLUTION_EPOCH` is fitted on real data (revolution 789 at
phase 0.632 on 2009-04-01T02:11:24 UTC, the orbit table of ScW 078900560010; ScW
066500280010 then falls at phase 0.30 of revolution 665, as it should). The instruments
observe between belt exit and belt entry (`BELT_EXIT_PHASE`..`BELT_ENTRY_PHASE`).

Science-window IDs follow INTEGRAL: `RRRRPPPPSSSF`, pointing PPPP = 1, 2, ... of the
revolution with SSS = 001 and F = 0; the slew *after* pointing PPPP is PPPP 002 1 (the
real orbit table of pointing 078900560010 names its predecessor PREVSWID =
078900550021); the slew into the first pointing is 0000 002 1.

Attitude: X is the pointing axis. INTEGRAL keeps its solar panels facing the Sun: the
Z axis is the Sun direction's component perpendicular to X, normalised, and the
ISDC position angle is POSANGLE = -(position angle of Z at X, north through east); both
checked to 0.3 deg on the real orbit table of ScW 078900560010. The angle between X and
the Sun must be within 90 +- `SUN_ASPECT_LIMIT` (40) deg, or the target is not
observable on that date.

Dithers: hexagon (centre + 6 at 2 deg) and 5x5 square (2 deg steps) around a target,
and the Galactic-plane scan (GPS: a saw-tooth inclined at 21 deg to the plane within
|b| <= 10 deg, 6 deg steps). Pure functions; times IJD (TT), angles degrees.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isdc.dal.archive import angular_separation
from isdc.ids import CONS, ScwId, Version

__all__ = [
    "PlanError",
    "REVOLUTION_PERIOD",
    "REVOLUTION_EPOCH",
    "BELT_EXIT_PHASE",
    "BELT_ENTRY_PHASE",
    "SUN_ASPECT_LIMIT",
    "KNOWN_TARGETS",
    "revolution_start",
    "revolution_of",
    "revolution_phase",
    "sun_direction",
    "unit_vector",
    "to_radec",
    "separation",
    "offset_position",
    "position_angle",
    "sun_attitude",
    "sun_aspect_angle",
    "galactic_to_equatorial",
    "equatorial_to_galactic",
    "dither_offsets",
    "dither_positions",
    "galactic_plane_scan",
    "Attitude",
    "ScwPlan",
    "plan_revolution",
    "OBT_EPOCH_IJD",
    "CLOCK_DRIFT",
    "onboard_clock",
    "orbit_state",
]


class PlanError(ValueError):
    """An observation that cannot be planned (Sun constraint, no time left, bad pattern)."""


SECONDS_PER_DAY = 86400.0
REVOLUTION_PERIOD = 71.8 / 24.0
"""Days per revolution (71.8 h, until 2015)."""
REVOLUTION_EPOCH = 1015.7771
"""IJD of the perigee that starts revolution 0 (fitted, see the module docstring)."""
BELT_EXIT_PHASE = 0.06
BELT_ENTRY_PHASE = 0.92
"""Revolution phases between which the instruments observe (outside the radiation belts)."""
SUN_ASPECT_LIMIT = 40.0
"""The X axis must stay within 90 +- this many degrees of the Sun."""

KNOWN_TARGETS = {
    "Crab": (83.6332, 22.0145),
    "Cyg X-1": (299.5903, 35.2016),
    "Galactic Centre": (266.4050, -28.9362),
    "Vela X-1": (135.5286, -40.5547),
    "GX 301-2": (186.6565, -62.7706),
    "4U 1700-377": (255.9866, -37.8441),
}
"""A few targets by name, (RA, Dec) J2000 deg (Swift-BAT catalogue positions)."""


# --------------------------------------------------------------------------- revolutions

def revolution_start(rev) -> np.ndarray:
    """IJD of the perigee that starts revolution `rev`."""
    return REVOLUTION_EPOCH + np.asarray(rev, dtype=float) * REVOLUTION_PERIOD


def revolution_of(ijd) -> np.ndarray:
    """Revolution number (int) at time `ijd`."""
    return np.floor((np.asarray(ijd, dtype=float) - REVOLUTION_EPOCH) / REVOLUTION_PERIOD).astype(int)


def revolution_phase(ijd) -> np.ndarray:
    """Phase 0..1 within the revolution at time `ijd` (0 = perigee)."""
    return np.mod((np.asarray(ijd, dtype=float) - REVOLUTION_EPOCH) / REVOLUTION_PERIOD, 1.0)


# --------------------------------------------------------------------------- spherical helpers

def unit_vector(ra, dec) -> np.ndarray:
    """(..., 3) unit vectors of equatorial directions (deg)."""
    a, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], axis=-1)


def to_radec(v) -> tuple[np.ndarray, np.ndarray]:
    """(RA in 0..360, Dec) in deg of (..., 3) vectors (any length)."""
    v = np.asarray(v, dtype=float)
    n = np.linalg.norm(v, axis=-1)
    ra = np.degrees(np.arctan2(v[..., 1], v[..., 0])) % 360.0
    dec = np.degrees(np.arcsin(np.clip(v[..., 2] / n, -1.0, 1.0)))
    return ra, dec


def separation(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Angular distance [deg] (Vincenty's formula: exact at all distances)."""
    return angular_separation(ra1, dec1, ra2, dec2)


def position_angle(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Position angle [deg, -180..180] of point 2 seen from point 1, north through east."""
    a1, d1, a2, d2 = map(np.radians, (ra1, dec1, ra2, dec2))
    da = a2 - a1
    return np.degrees(np.arctan2(np.sin(da) * np.cos(d2), np.cos(d1) * np.sin(d2) - np.sin(d1) * np.cos(d2) * np.cos(da)))


def offset_position(ra, dec, bearing, distance) -> tuple[np.ndarray, np.ndarray]:
    """The point `distance` deg from (ra, dec) in direction `bearing` (deg, north through east)."""
    a, d, b, r = map(np.radians, (ra, dec, bearing, distance))
    d2 = np.arcsin(np.sin(d) * np.cos(r) + np.cos(d) * np.sin(r) * np.cos(b))
    a2 = a + np.arctan2(np.sin(b) * np.sin(r) * np.cos(d), np.cos(r) - np.sin(d) * np.sin(d2))
    return np.degrees(a2) % 360.0, np.degrees(d2)


def _tangent_to_sky(ra0, dec0, xi, eta) -> tuple[np.ndarray, np.ndarray]:
    """Inverse gnomonic projection: standard coordinates (xi east, eta north; deg) -> sky."""
    a0, d0 = np.radians(ra0), np.radians(dec0)
    x, y = np.radians(xi), np.radians(eta)
    den = np.cos(d0) - y * np.sin(d0)
    ra = a0 + np.arctan2(x, den)
    dec = np.arctan2(np.sin(d0) + y * np.cos(d0), np.hypot(x, den))
    return np.degrees(ra) % 360.0, np.degrees(dec)


# IAU 1958 galactic frame in J2000 equatorial coordinates (rows: galactic X, Y, Z axes).
_GAL = np.array([[-0.0548755604162154, -0.8734370902348850, -0.4838350155487132],
                 [+0.4941094278755837, -0.4448296299600112, +0.7469822444972189],
                 [-0.8676661490190047, -0.1980763734312015, +0.4559837761750669]])


def galactic_to_equatorial(l, b) -> tuple[np.ndarray, np.ndarray]:
    """(RA, Dec) J2000 [deg] of galactic (l, b) [deg]."""
    return to_radec(unit_vector(l, b) @ _GAL)


def equatorial_to_galactic(ra, dec) -> tuple[np.ndarray, np.ndarray]:
    """Galactic (l, b) [deg] of J2000 (RA, Dec) [deg]."""
    return to_radec(unit_vector(ra, dec) @ _GAL.T)


# --------------------------------------------------------------------------- Sun

def sun_direction(ijd) -> tuple[np.ndarray, np.ndarray]:
    """(RA, Dec) J2000 of the Sun [deg] at `ijd`: the Astronomical Almanac low-precision
    formula (~0.01 deg, 1950-2050) with the ecliptic longitude precessed back to J2000
    (50.29"/yr), as the attitude is given in J2000."""
    n = np.asarray(ijd, dtype=float) - 0.5  # days since J2000.0 (JD 2451545.0)
    L = 280.460 + 0.9856474 * n - 50.29 / 3600.0 * n / 365.25
    g = np.radians(357.528 + 0.9856003 * n)
    lam = np.radians(L + 1.915 * np.sin(g) + 0.020 * np.sin(2 * g))
    eps = np.radians(23.439 - 4.0e-7 * n)
    ra = np.degrees(np.arctan2(np.cos(eps) * np.sin(lam), np.cos(lam))) % 360.0
    dec = np.degrees(np.arcsin(np.sin(eps) * np.sin(lam)))
    return ra, dec


def sun_aspect_angle(ra, dec, ijd) -> np.ndarray:
    """Angle [deg] between the direction (ra, dec) and the Sun at `ijd`."""
    return separation(ra, dec, *sun_direction(ijd))


def sun_attitude(ra_x, dec_x, ijd) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(RA_SCZ, DEC_SCZ, POSANGLE) [deg] for pointing axis X at `ijd`, solar panels on the Sun.

    Z = normalised component of the Sun direction perpendicular to X; POSANGLE is minus
    the position angle of Z seen from X (north through east), the ISDC keyword's sign.
    """
    x = unit_vector(ra_x, dec_x)
    s = unit_vector(*sun_direction(ijd))
    s = np.broadcast_to(s, np.broadcast_shapes(x.shape, s.shape))
    z = s - (s * x).sum(-1, keepdims=True) * x
    norm = np.linalg.norm(z, axis=-1)
    if np.any(norm < 1e-6):
        raise PlanError("pointing axis along the Sun direction: the position angle is undefined")
    ra_z, dec_z = to_radec(z)
    pa = -position_angle(ra_x, dec_x, ra_z, dec_z)
    pa = np.where(pa <= -180.0, pa + 360.0, pa)
    return ra_z, dec_z, pa


# --------------------------------------------------------------------------- dither patterns

def dither_offsets(pattern: str, step: float = 2.0) -> np.ndarray:
    """(n, 2) offsets (east, north) [deg] of a dither pattern, in observing order.

    'hex': the centre, then 6 points at `step` on a hexagon (bearings 0, 60, ... deg);
    '5x5': a square grid of 5 x 5 at `step`, row by row (serpentine, so each move is one step);
    'staring': the centre only. `dither_positions` places them on the sphere.
    """
    if pattern == "hex":
        b = np.radians(np.arange(6) * 60.0)
        return np.vstack([[0.0, 0.0], np.column_stack([step * np.sin(b), step * np.cos(b)])])
    if pattern == "5x5":
        out = []
        for j, row in enumerate(range(2, -3, -1)):
            cols = range(-2, 3) if j % 2 == 0 else range(2, -3, -1)
            out += [(i * step, row * step) for i in cols]
        return np.asarray(out, dtype=float)
    if pattern == "staring":
        return np.zeros((1, 2))
    raise PlanError(f"unknown dither pattern {pattern!r}: use 'hex', '5x5', 'staring' or 'gps'")


def dither_positions(ra: float, dec: float, pattern: str, step: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """(RA, Dec) [deg] of the pointings of a dither pattern around (ra, dec).

    Hexagon points are exactly `step` deg from the centre (great-circle offsets). The
    5x5 grid is a spherical grid at the target: point (i, j) is
    cos(j s) [cos(i s) X + sin(i s) E] + sin(j s) N for the local axes X (target),
    E (east), N (north): north-south steps are exactly `step`, east-west ones
    `step` cos(j s) (>= 0.9976 step over the 8 x 8 deg pattern).
    """
    off = dither_offsets(pattern, step)
    if pattern == "hex":
        r = np.hypot(off[:, 0], off[:, 1])
        b = np.degrees(np.arctan2(off[:, 0], off[:, 1]))
        ra_p, dec_p = offset_position(ra, dec, b, r)
        ra_p[0], dec_p[0] = ra % 360.0, dec
        return ra_p, dec_p
    a, d = np.radians(ra), np.radians(dec)
    x = unit_vector(ra, dec)
    e = np.array([-np.sin(a), np.cos(a), 0.0])
    n = np.array([-np.sin(d) * np.cos(a), -np.sin(d) * np.sin(a), np.cos(d)])
    u, v = np.radians(off[:, 0])[:, None], np.radians(off[:, 1])[:, None]
    ra_p, dec_p = to_radec(np.cos(v) * (np.cos(u) * x + np.sin(u) * e) + np.sin(v) * n)
    centre = (off[:, 0] == 0) & (off[:, 1] == 0)
    ra_p[centre], dec_p[centre] = ra % 360.0, dec
    return ra_p, dec_p


def galactic_plane_scan(l_start: float, n: int, step: float = 6.0, b_max: float = 10.0,
                        inclination: float = 21.0, direction: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(RA, Dec) [deg] of `n` Galactic-plane-scan pointings: a saw-tooth in (l, b).

    Consecutive points are `step` deg apart along a path inclined by `inclination` deg to
    the plane, reflected at b = +-b_max (INTEGRAL's GPS: 21 deg, +-10 deg, 6 deg steps),
    starting at (l_start, 0) going to increasing l (`direction` = 1) or decreasing (-1).
    """
    k = np.arange(int(n))
    dl = step * np.cos(np.radians(inclination))
    db = step * np.sin(np.radians(inclination))
    # Triangle wave of amplitude b_max: unfold the path, then reflect.
    s = np.mod(k * db + b_max, 4 * b_max)
    b = np.where(s < 2 * b_max, s - b_max, 3 * b_max - s)
    l_ = np.mod(l_start + direction * k * dl, 360.0)
    return galactic_to_equatorial(l_, b)


# --------------------------------------------------------------------------- attitude

@dataclass(frozen=True)
class Attitude:
    """Attitude samples: time [IJD], X axis, Z axis and POSANGLE [deg], arrays of one shape."""

    time: np.ndarray
    ra_x: np.ndarray
    dec_x: np.ndarray
    ra_z: np.ndarray
    dec_z: np.ndarray
    posangle: np.ndarray


@dataclass(frozen=True)
class ScwPlan:
    """One planned science window.

    For a pointing, (ra_x, dec_x) is the commanded pointing; the attitude jitters around
    it by `jitter_arcsec` (rms per axis). For a slew, the X axis moves along the great
    circle from (start_ra_x, start_dec_x) to (ra_x, dec_x) with a smooth speed profile.
    ra_z, dec_z, posangle are those at the middle of the ScW.
    """

    scw_id: ScwId
    tstart: float
    tstop: float
    ra_x: float
    dec_x: float
    ra_z: float
    dec_z: float
    posangle: float
    target: str = ""
    dither: int = -1
    start_ra_x: float | None = None
    start_dec_x: float | None = None
    jitter_arcsec: float = 3.0
    jitter_seed: int = 0

    @property
    def is_slew(self) -> bool:
        return self.scw_id.is_slew

    @property
    def duration_s(self) -> float:
        return (self.tstop - self.tstart) * SECONDS_PER_DAY

    @property
    def revolution(self) -> int:
        return self.scw_id.revolution

    def attitude(self, t) -> Attitude:
        """Attitude at times `t` [IJD] (clipped to the ScW)."""
        t = np.clip(np.atleast_1d(np.asarray(t, dtype=float)), self.tstart, self.tstop)
        if self.is_slew:
            ra, dec = self._slew_track(t)
        else:
            ra, dec = self._jitter(t)
        ra_z, dec_z, pa = sun_attitude(ra, dec, t)
        return Attitude(t, ra, dec, ra_z, dec_z, pa)

    def sample_attitude(self, step_s: float = 8.0) -> Attitude:
        """Attitude every `step_s` seconds from TSTART to TSTOP (both included)."""
        n = max(2, int(np.ceil(self.duration_s / step_s)) + 1)
        return self.attitude(np.linspace(self.tstart, self.tstop, n))

    def _slew_track(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = unit_vector(self.start_ra_x, self.start_dec_x)
        b = unit_vector(self.ra_x, self.dec_x)
        omega = np.arccos(np.clip(a @ b, -1.0, 1.0))
        tau = (t - self.tstart) / (self.tstop - self.tstart)
        # Smooth profile: zero angular speed at both ends (reaction wheels ramp up and down).
        s = tau - np.sin(2 * np.pi * tau) / (2 * np.pi)
        if omega < 1e-12:
            return np.full_like(t, self.ra_x), np.full_like(t, self.dec_x)
        v = (np.sin((1 - s) * omega)[:, None] * a + np.sin(s * omega)[:, None] * b) / np.sin(omega)
        return to_radec(v)

    def _jitter(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Deterministic smooth jitter: three sinusoids per axis, periods 60-900 s.
        rng = np.random.default_rng(self.jitter_seed)
        periods = rng.uniform(60.0, 900.0, size=(2, 3))
        phases = rng.uniform(0, 2 * np.pi, size=(2, 3))
        ts = (t - self.tstart) * SECONDS_PER_DAY
        amp = self.jitter_arcsec / 3600.0 * np.sqrt(2.0 / 3.0)  # rms of 3 sines = amp sqrt(3/2)
        w = (amp * np.sin(2 * np.pi * ts[:, None, None] / periods + phases)).sum(-1)
        return _tangent_to_sky(self.ra_x, self.dec_x, w[:, 0], w[:, 1])


def _resolve_target(target) -> tuple[str, float, float]:
    if isinstance(target, str):
        if target not in KNOWN_TARGETS:
            raise PlanError(f"unknown target {target!r}: give (name, ra, dec) or one of {sorted(KNOWN_TARGETS)}")
        return (target, *KNOWN_TARGETS[target])
    try:
        if len(target) == 3:
            name, ra, dec = target
        else:
            ra, dec = target
            name = f"RA{float(ra):.2f}_DEC{float(dec):+.2f}"
        ra, dec = float(ra), float(dec)
    except (TypeError, ValueError):
        raise PlanError(f"target must be a name, (ra, dec) or (name, ra, dec), got {target!r}") from None
    if not (-90.0 <= dec <= 90.0):
        raise PlanError(f"target {name}: declination {dec} outside -90..90 deg")
    return str(name), ra % 360.0, dec


def plan_revolution(
    rev: int,
    n_pointings: int | None = None,
    exposure: float | tuple[float, float] = (1800.0, 3600.0),
    pattern: str = "hex",
    seed: int = 0,
    target="Crab",
    *,
    step: float = 2.0,
    version: Version = CONS,
    gps_l_start: float = 0.0,
    start_phase: float = BELT_EXIT_PHASE,
    slew_overhead_s: float = 120.0,
    slew_rate: float = 0.1,
    jitter_arcsec: float = 3.0,
    check_sun: bool = True,
) -> list[ScwPlan]:
    """Science windows of revolution `rev`: slew, pointing, slew, pointing, ...

    Parameters
    ----------
    rev : revolution number.
    n_pointings : pointings to plan; None fills the revolution up to `BELT_ENTRY_PHASE`.
    exposure : pointing duration [s], or (min, max) for a uniform draw per pointing.
    pattern : 'hex' (7), '5x5' (25), 'staring' (target repeated) around `target`, or
        'gps' (Galactic-plane scan from l = `gps_l_start`, `target` ignored); the
        pattern repeats until `n_pointings` are planned.
    seed : makes exposures and attitude jitter reproducible.
    target : a name of `KNOWN_TARGETS`, (ra, dec) or (name, ra, dec), deg.
    slew_overhead_s, slew_rate : a slew lasts overhead + distance / rate [s, deg/s].

    Raises PlanError if a pointing violates the Sun constraint (`check_sun`) or the
    requested pointings do not fit before belt entry.
    """
    rng = np.random.default_rng([int(rev), int(seed)])
    if pattern == "gps":
        name = "GPS"
        count = n_pointings if n_pointings is not None else 200
        ra_p, dec_p = galactic_plane_scan(gps_l_start, count)
        dither = np.arange(count)
    else:
        name, ra0, dec0 = _resolve_target(target)
        ra_p, dec_p = dither_positions(ra0, dec0, pattern, step)
        dither = np.arange(ra_p.size)
    t = float(revolution_start(rev) + start_phase * REVOLUTION_PERIOD)
    t_end = float(revolution_start(rev) + BELT_ENTRY_PHASE * REVOLUTION_PERIOD)
    # The revolution starts with a slew from where the previous one left the spacecraft
    # (unknown here): 20 deg north of the first pointing, or south near the pole.
    first = (ra_p[0], dec_p[0])
    prev = offset_position(*first, 0.0 if first[1] < 60 else 180.0, 20.0)
    plans: list[ScwPlan] = []
    k = 0
    while n_pointings is None or k < n_pointings:
        i = k % ra_p.size
        ra, dec = float(ra_p[i]), float(dec_p[i])
        dist = float(separation(prev[0], prev[1], ra, dec))
        slew_s = slew_overhead_s + dist / slew_rate
        expo = float(exposure) if np.isscalar(exposure) else float(rng.uniform(*exposure))
        t_slew_end = t + slew_s / SECONDS_PER_DAY
        t_point_end = t_slew_end + expo / SECONDS_PER_DAY
        if t_point_end > t_end:
            if n_pointings is None and k > 0:
                break
            raise PlanError(
                f"revolution {rev}: pointing {k + 1} of {name} would end at IJD {t_point_end:.4f}, after belt entry "
                f"at {t_end:.4f}: plan fewer or shorter pointings")
        if k + 1 > 9999:
            raise PlanError(f"revolution {rev}: more than 9999 pointings")
        mid_slew = 0.5 * (t + t_slew_end)
        z = sun_attitude(ra, dec, mid_slew)
        plans.append(ScwPlan(ScwId(int(rev), k, 2, 1, version), t, t_slew_end, ra, dec, *map(float, z),
                             target=name, dither=-1, start_ra_x=float(prev[0]), start_dec_x=float(prev[1]),
                             jitter_arcsec=0.0, jitter_seed=int(rng.integers(2**31))))
        mid = 0.5 * (t_slew_end + t_point_end)
        if check_sun:
            angle = float(sun_aspect_angle(ra, dec, mid))
            if abs(angle - 90.0) > SUN_ASPECT_LIMIT:
                raise PlanError(
                    f"revolution {rev}: {name} pointing {k + 1} at RA {ra:.2f} Dec {dec:.2f} is {angle:.1f} deg from "
                    f"the Sun at IJD {mid:.3f}; INTEGRAL needs 90 +- {SUN_ASPECT_LIMIT:g} deg")
        z = sun_attitude(ra, dec, mid)
        plans.append(ScwPlan(ScwId(int(rev), k + 1, 1, 0, version), t_slew_end, t_point_end, ra, dec,
                             *map(float, z), target=name, dither=int(dither[i]), start_ra_x=ra, start_dec_x=dec,
                             jitter_arcsec=jitter_arcsec, jitter_seed=int(rng.integers(2**31))))
        prev = (ra, dec)
        t = t_point_end
        k += 1
    return plans


# --------------------------------------------------------------------------- clock and orbit

OBT_EPOCH_IJD = 1020.0715
"""IJD at which the simulated on-board clock read 0: OBT counts on-board seconds (ticks of
2**-20 s) since launch. Fitted on the real orbit table of ScW 078900560010 (OBTSTART
213629501702144 ticks at 2009-04-01T02:11:24 UTC); INTEGRAL was launched on 2002-10-17."""
CLOCK_DRIFT = 1.0e-7
"""Fractional rate error of the simulated on-board clock (runs fast by 8.6 ms/day)."""
_TICKS_PER_DAY = 86400.0 * 2**20


def onboard_clock(rev: int, step_h: float = 1.0):
    """The time correlation (`isdc.time.TimeCorrelation`) of revolution `rev`: one point
    every `step_h` hours from its perigee to the next, OBT = (IJD - OBT_EPOCH_IJD) x ticks
    per day x (1 + CLOCK_DRIFT), the same clock for every revolution."""
    from isdc.time import TimeCorrelation

    t0 = float(revolution_start(rev))
    obt0 = int(round((t0 - OBT_EPOCH_IJD) * _TICKS_PER_DAY * (1.0 + CLOCK_DRIFT)))
    points = int(np.ceil(REVOLUTION_PERIOD * 24.0 / step_h)) + 1
    return TimeCorrelation.linear(obt0, t0, REVOLUTION_PERIOD, drift=CLOCK_DRIFT, points=points,
                                  name=f"simulated time correlation of revolution {int(rev)}")


# Keplerian elements of the simulated orbit (INTEGRAL's at launch: perigee 9000 km and apogee
# 153600 km altitude, inclination 52.2 deg); J2000 equatorial axes, perigee at phase 0.
_GM_EARTH = 398600.4418  # km^3/s^2
_PERIGEE_KM = 15378.0
_INCLINATION, _RAAN, _ARG_PERIGEE = 52.2, 102.5, 301.5  # deg


def orbit_state(ijd) -> tuple[np.ndarray, np.ndarray]:
    """Geocentric position [km] and velocity [km/s], shape (n, 3), at times `ijd`.

    A Keplerian orbit of period `REVOLUTION_PERIOD` (semi-major axis 87702 km), perigee
    15378 km from the Earth's centre at the start of each revolution: 152480 km at phase
    0.632, where the real orbit table of ScW 078900560010 says 152873 km.
    """
    t = np.atleast_1d(np.asarray(ijd, dtype=float))
    n = 2.0 * np.pi / (REVOLUTION_PERIOD * SECONDS_PER_DAY)
    a = (_GM_EARTH / n**2) ** (1.0 / 3.0)
    e = 1.0 - _PERIGEE_KM / a
    m = 2.0 * np.pi * revolution_phase(t)
    ecc = m + e * np.sin(m)
    for _ in range(30):  # Newton on Kepler's equation; converges to 1e-15 for e = 0.82
        ecc = ecc - (ecc - e * np.sin(ecc) - m) / (1.0 - e * np.cos(ecc))
    cos_e, sin_e = np.cos(ecc), np.sin(ecc)
    b = a * np.sqrt(1.0 - e * e)
    pos = np.stack([a * (cos_e - e), b * sin_e, np.zeros_like(t)], axis=-1)  # perifocal frame
    edot = n / (1.0 - e * cos_e)
    vel = np.stack([-a * sin_e * edot, b * cos_e * edot, np.zeros_like(t)], axis=-1)
    w, o, i = np.radians([_ARG_PERIGEE, _RAAN, _INCLINATION])
    rot = (_rot_z(o) @ _rot_x(i) @ _rot_z(w))
    return pos @ rot.T, vel @ rot.T


def _rot_z(a: float) -> np.ndarray:
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


def _rot_x(a: float) -> np.ndarray:
    return np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]])
