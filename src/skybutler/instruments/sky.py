"""The simulated sky: a deterministic star catalog and telescope pointing geometry.

Stars are generated per HTM trixel (level 9, ~0.14 deg across) from a random
generator seeded by ``(seed, trixel)``, so any two queries agree on the stars they
share, whatever their centres and radii: the simulator renders the stars of one
query, and a test can ask for the stars of a visit region with another.
"""

from __future__ import annotations

import math

import lsst.sphgeom as sphgeom
import numpy as np
from astropy.table import Table
from astropy.time import Time

__all__ = [
    "BAND_COLOR_TERMS",
    "airmass_from_zenith",
    "altaz_of",
    "erf",
    "local_sidereal_time",
    "star_catalog",
]

_HTM_LEVEL = 9
#: mag_band = mag_r + term * (g - r): simple colour terms for main-sequence-like stars.
BAND_COLOR_TERMS = {"u": 2.2, "g": 1.0, "r": 0.0, "i": -0.35, "z": -0.55, "y": -0.65}


def _triangle_area(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """Solid angle (steradians) of the spherical triangle with unit-vector corners a, b, c."""
    numerator = abs(float(np.dot(a, np.cross(b, c))))
    denominator = 1.0 + float(np.dot(a, b) + np.dot(b, c) + np.dot(c, a))
    return 2.0 * math.atan2(numerator, denominator)


def _trixel_stars(seed: int, index: int, pixelization: sphgeom.HtmPixelization, density: float,
                  mag_range: tuple[float, float]) -> dict[str, np.ndarray]:
    """The stars of one trixel: positions uniform in the triangle, power-law magnitudes."""
    corners = np.array([[v.x(), v.y(), v.z()] for v in pixelization.triangle(index).getVertices()])
    area_deg2 = _triangle_area(*corners) * (180.0 / math.pi) ** 2
    rng = np.random.default_rng([seed, index, 0x5EA])
    n = rng.poisson(density * area_deg2)
    r1, r2 = np.sqrt(rng.random(n)), rng.random(n)
    points = (
        (1 - r1)[:, None] * corners[0] + (r1 * (1 - r2))[:, None] * corners[1] + (r1 * r2)[:, None] * corners[2]
    )
    points /= np.linalg.norm(points, axis=1)[:, None]
    ra = np.degrees(np.arctan2(points[:, 1], points[:, 0])) % 360.0
    dec = np.degrees(np.arcsin(np.clip(points[:, 2], -1.0, 1.0)))
    # N(<m) ~ 10^(0.3 m), sampled by inverting its cumulative distribution.
    lo, hi = 10 ** (0.3 * mag_range[0]), 10 ** (0.3 * mag_range[1])
    mag = np.log10(lo + rng.random(n) * (hi - lo)) / 0.3
    color = rng.uniform(0.2, 1.4, n)
    ids = np.int64(index) * 100_000 + np.arange(n, dtype=np.int64)
    return {"id": ids, "ra": ra, "dec": dec, "mag_r": mag, "g_r": color}


def star_catalog(
    seed: int,
    ra: float,
    dec: float,
    radius: float,
    *,
    density: float = 12000.0,
    mag_range: tuple[float, float] = (14.0, 23.0),
) -> Table:
    """Stars within ``radius`` degrees of (``ra``, ``dec``), deterministic in ``seed``.

    Columns: ``id`` (unique, stable), ``ra``, ``dec`` (degrees), ``g_r`` and
    ``mag_<band>`` for the SimCam bands u, g, r, i, z, y.  ``density`` is stars
    per square degree over ``mag_range``.
    """
    pixelization = sphgeom.HtmPixelization(_HTM_LEVEL)
    centre = sphgeom.UnitVector3d(sphgeom.LonLat.fromDegrees(ra, dec))
    circle = sphgeom.Circle(centre, sphgeom.Angle.fromDegrees(radius))
    parts = [
        _trixel_stars(seed, index, pixelization, density, mag_range)
        for begin, end in pixelization.envelope(circle)
        for index in range(begin, end)
    ]
    columns = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    # Exact cut on angular distance (the envelope is a superset).
    ra0, dec0 = math.radians(ra), math.radians(dec)
    ras, decs = np.radians(columns["ra"]), np.radians(columns["dec"])
    cos_sep = np.sin(dec0) * np.sin(decs) + np.cos(dec0) * np.cos(decs) * np.cos(ras - ra0)
    keep = cos_sep >= math.cos(math.radians(radius))
    table = Table({key: value[keep] for key, value in columns.items()})
    for band, term in BAND_COLOR_TERMS.items():
        if band != "r":
            table[f"mag_{band}"] = table["mag_r"] + term * table["g_r"]
    table.sort("id")
    return table


# -- pointing geometry -------------------------------------------------------------


def local_sidereal_time(time: Time, longitude: float) -> float:
    """Local mean sidereal time in degrees (IAU 1982 GMST; good to a fraction of a second)."""
    jd = time.utc.jd
    t = (jd - 2451545.0) / 36525.0
    gmst = 280.46061837 + 360.98564736629 * (jd - 2451545.0) + 0.000387933 * t * t - t**3 / 38710000.0
    return (gmst + longitude) % 360.0


def altaz_of(ra: float, dec: float, time: Time, longitude: float, latitude: float) -> tuple[float, float]:
    """(altitude, azimuth) in degrees of a star, azimuth from north through east.

    Geometric only (no refraction, precession or aberration): ample for simulated headers.
    """
    hour_angle = math.radians(local_sidereal_time(time, longitude) - ra)
    dec_r, lat_r = math.radians(dec), math.radians(latitude)
    sin_alt = math.sin(dec_r) * math.sin(lat_r) + math.cos(dec_r) * math.cos(lat_r) * math.cos(hour_angle)
    alt = math.asin(max(-1.0, min(1.0, sin_alt)))
    y = -math.cos(dec_r) * math.sin(hour_angle)
    x = math.sin(dec_r) * math.cos(lat_r) - math.cos(dec_r) * math.sin(lat_r) * math.cos(hour_angle)
    az = math.degrees(math.atan2(y, x)) % 360.0
    return math.degrees(alt), az


def airmass_from_zenith(zenith_angle: float) -> float:
    """Airmass from zenith angle in degrees (Young 1994 formula, finite at the horizon)."""
    c = math.cos(math.radians(min(zenith_angle, 89.9)))
    return (1.002432 * c * c + 0.148386 * c + 0.0096467) / (
        c**3 + 0.149864 * c * c + 0.0102963 * c + 0.000303978
    )


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, vectorised (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7)."""
    x = np.asarray(x, dtype=float)
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))
