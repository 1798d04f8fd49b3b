"""Sky geometry: spacecraft attitude, instrument frame <-> (RA, Dec), sky-image grid and WCS.

Attitude
--------
The attitude is the pointing axis X (RA_SCX, DEC_SCX) and the spacecraft Z axis (RA_SCZ,
DEC_SCZ) in equatorial coordinates (the aux file ``INTL-ORBI-SCP`` columns); Y = Z x X
completes the right-handed frame.  ``POSANGLE`` in the same file is the angle of the Z
axis from celestial north measured towards the *west*: ``POSANGLE = -PA(Z)`` where PA is
the astronomical position angle (north through east).  Checked on the reference file
``sc_orbit_param_078900560010.fits.gz`` (POSANGLE -83.31 deg, PA of Z +83.31 deg).

Instrument frame
----------------
A direction is ``(tan_y, tan_z) = (u.Y / u.X, u.Z / u.X)``: the gnomonic (TAN)
projection on the plane tangent at the pointing with axes Y and Z.  Directions with
``u.X <= 0`` (behind the instrument) have no tangent-plane position (NaN).

Sky-image grid
--------------
Decoded images are sampled on a regular grid in (tan_y, tan_z) with one detector pitch
per pixel (``scale = pitch / F`` rad, 4.937' for ISGRI), numpy ``[row, col]``::

    tan_z = (row - row0) * scale        tan_y = -(col - col0) * scale

(row grows with +Z, column with -Y), the layout of OSA's ISGRI sky images: it has the
sky's own handedness (det CD < 0, east to the left of north), so the images are not
mirrored.  Because the grid is linear in the gnomonic coordinates, the celestial WCS is
an exact ``RA---TAN``/``DEC--TAN`` with a CD matrix (pixel scale x rotation by the
position angle), like OSA's ``ISGR-SKY.-IMA`` headers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Attitude",
    "SkyGrid",
    "radec_to_unit",
    "unit_to_radec",
    "radec_to_tan",
    "tan_to_radec",
    "sky_wcs",
    "radec_to_pixel",
    "pixel_to_radec",
]

# Z must be perpendicular to X within this angle (rad) to be accepted (then orthogonalised).
_ORTHOGONALITY_TOL = 1e-3


def radec_to_unit(ra, dec) -> np.ndarray:
    """Unit vectors (..., 3) of equatorial directions ``ra``, ``dec`` (deg)."""
    ra = np.radians(np.asarray(ra, dtype=np.float64))
    dec = np.radians(np.asarray(dec, dtype=np.float64))
    cd = np.cos(dec)
    return np.stack([cd * np.cos(ra), cd * np.sin(ra), np.sin(dec)], axis=-1)


def unit_to_radec(v) -> tuple[np.ndarray, np.ndarray]:
    """(RA, Dec) in deg, RA in [0, 360), of vectors (..., 3) (need not be unit)."""
    v = np.asarray(v, dtype=np.float64)
    ra = np.degrees(np.arctan2(v[..., 1], v[..., 0])) % 360.0
    dec = np.degrees(np.arctan2(v[..., 2], np.hypot(v[..., 0], v[..., 1])))
    return ra, dec


def _east_north(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local east and north unit vectors at direction ``x``."""
    east = np.cross([0.0, 0.0, 1.0], x)
    n = np.linalg.norm(east)
    if n < 1e-12:
        raise ValueError("position angle undefined: pointing at a celestial pole")
    east /= n
    return east, np.cross(x, east)


@dataclass(frozen=True)
class Attitude:
    """Spacecraft attitude: pointing axis X and Z axis, equatorial (J2000) degrees.

    Raises ValueError if X and Z are not perpendicular within 3.4' (Z is then made
    exactly perpendicular to X in its plane).
    """

    ra_x: float
    dec_x: float
    ra_z: float
    dec_z: float

    def __post_init__(self):
        for name in ("ra_x", "dec_x", "ra_z", "dec_z"):
            v = float(getattr(self, name))
            if not np.isfinite(v):
                raise ValueError(f"attitude {name} must be finite, got {v}")
            object.__setattr__(self, name, v)
        for name in ("dec_x", "dec_z"):
            if abs(getattr(self, name)) > 90.0:
                raise ValueError(f"attitude {name} outside [-90, 90]: {getattr(self, name)}")
        x = radec_to_unit(self.ra_x, self.dec_x)
        z = radec_to_unit(self.ra_z, self.dec_z)
        if abs(float(x @ z)) > _ORTHOGONALITY_TOL:
            angle = np.degrees(np.arccos(np.clip(x @ z, -1, 1)))
            raise ValueError(f"attitude X and Z axes are {angle:.4f} deg apart, not perpendicular")

    @classmethod
    def from_posangle(cls, ra_x: float, dec_x: float, posangle: float) -> "Attitude":
        """Attitude from the pointing and ``POSANGLE`` (deg; Z axis from north towards west)."""
        x = radec_to_unit(ra_x, dec_x)
        east, north = _east_north(x)
        pa = np.radians(-float(posangle))
        ra_z, dec_z = unit_to_radec(np.cos(pa) * north + np.sin(pa) * east)
        return cls(float(ra_x), float(dec_x), float(ra_z), float(dec_z))

    @property
    def matrix(self) -> np.ndarray:
        """Rotation (3, 3) whose rows are the X, Y, Z axes in equatorial cartesian
        coordinates: ``matrix @ v`` gives instrument-frame components of ``v``."""
        x = radec_to_unit(self.ra_x, self.dec_x)
        z = radec_to_unit(self.ra_z, self.dec_z)
        z = z - (z @ x) * x
        z /= np.linalg.norm(z)
        return np.stack([x, np.cross(z, x), z])

    @property
    def posangle(self) -> float:
        """``POSANGLE`` (deg, in (-180, 180]): Z axis from north towards west."""
        x, _, z = self.matrix
        east, north = _east_north(x)
        return float(-np.degrees(np.arctan2(z @ east, z @ north)))


def radec_to_tan(attitude: Attitude, ra, dec) -> tuple[np.ndarray, np.ndarray]:
    """Instrument-frame (tan_y, tan_z) of sky directions (deg); NaN behind the instrument."""
    u = radec_to_unit(ra, dec) @ attitude.matrix.T
    with np.errstate(divide="ignore", invalid="ignore"):
        front = u[..., 0] > 0
        ty = np.where(front, u[..., 1] / u[..., 0], np.nan)
        tz = np.where(front, u[..., 2] / u[..., 0], np.nan)
    return ty, tz


def tan_to_radec(attitude: Attitude, tan_y, tan_z) -> tuple[np.ndarray, np.ndarray]:
    """Equatorial (RA, Dec) in deg of instrument-frame directions (tan_y, tan_z)."""
    ty = np.asarray(tan_y, dtype=np.float64)
    tz = np.asarray(tan_z, dtype=np.float64)
    u = np.stack(np.broadcast_arrays(np.ones_like(ty * tz), ty, tz), axis=-1)
    return unit_to_radec(u @ attitude.matrix)


@dataclass(frozen=True)
class SkyGrid:
    """Pixel grid of decoded sky images in the instrument frame.

    Attributes
    ----------
    shape : (int, int)
        Image shape (rows, cols).
    on_axis : (float, float)
        0-based (row, col) of the pointing direction (tan = 0).
    scale : float
        Pixel size in tan units (detector pitch / mask distance).
    """

    shape: tuple[int, int]
    on_axis: tuple[float, float]
    scale: float

    def pixel_to_tan(self, row, col) -> tuple[np.ndarray, np.ndarray]:
        """(tan_y, tan_z) of 0-based pixel coordinates (row, col) (float allowed)."""
        tan_z = (np.asarray(row, dtype=np.float64) - self.on_axis[0]) * self.scale
        tan_y = -(np.asarray(col, dtype=np.float64) - self.on_axis[1]) * self.scale
        return tan_y, tan_z

    def tan_to_pixel(self, tan_y, tan_z) -> tuple[np.ndarray, np.ndarray]:
        """0-based (row, col) (float) of instrument-frame directions."""
        row = self.on_axis[0] + np.asarray(tan_z, dtype=np.float64) / self.scale
        col = self.on_axis[1] - np.asarray(tan_y, dtype=np.float64) / self.scale
        return row, col

    @property
    def pixel_deg(self) -> float:
        """Pixel size at the image centre, deg."""
        return float(np.degrees(np.arctan(self.scale)))


def sky_wcs(grid: SkyGrid, attitude: Attitude):
    """Celestial WCS (``RA---TAN``/``DEC--TAN``, CD matrix, FK5 J2000) of a sky image.

    Returns
    -------
    astropy.wcs.WCS
        Exact for the grid: ``wcs.pixel_to_world(col, row)`` is the direction of sky
        pixel ``[row, col]``.
    """
    from astropy.wcs import WCS

    x, y, z = attitude.matrix
    east, north = _east_north(x)
    s = np.degrees(grid.scale)  # intermediate world coordinates are degrees on the tangent plane
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.crval = [attitude.ra_x, attitude.dec_x]
    w.wcs.crpix = [grid.on_axis[1] + 1.0, grid.on_axis[0] + 1.0]
    # (xi, eta) = s * (-(col - col0) * Y + (row - row0) * Z) . (east, north)
    w.wcs.cd = s * np.array([[-(y @ east), z @ east], [-(y @ north), z @ north]])
    w.wcs.radesys = "FK5"
    w.wcs.equinox = 2000.0
    w.wcs.set()
    return w


def radec_to_pixel(grid: SkyGrid, attitude: Attitude, ra, dec) -> tuple[np.ndarray, np.ndarray]:
    """0-based (row, col) in ``grid`` of sky directions (deg); NaN behind the instrument."""
    return grid.tan_to_pixel(*radec_to_tan(attitude, ra, dec))


def pixel_to_radec(grid: SkyGrid, attitude: Attitude, row, col) -> tuple[np.ndarray, np.ndarray]:
    """(RA, Dec) in deg of 0-based pixel coordinates (row, col) of ``grid``."""
    return tan_to_radec(attitude, *grid.pixel_to_tan(row, col))
