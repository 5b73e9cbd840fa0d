"""ICRS sky footprints of images: the centre and a polygon, converted through astropy's frames.

An image's celestial WCS may be in any frame astropy knows (ICRS, FK5, FK4, galactic,
ecliptic, ...); its pixels are turned into sky coordinates in that frame and then
transformed to ICRS by astropy, so a footprint is always RA/Dec.  A frame with no
fixed sky position (helioprojective and other solar or planetary frames) has no
footprint, and says why.  The polygon is the convex hull of points along the pixel
border; an image whose border leaves the projection (an all-sky map) or spans more
than a hemisphere gets a circle around its centre instead.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..dimensions import regions as sky
from .fits_wcs import build_wcs, wcs_keys

SAMPLES_PER_EDGE = 8
"""Points sampled along each edge of the pixel border (the polygon is their convex hull)."""

_NOT_FIXED = ("HPLN", "HPLT", "HGLN", "HGLT", "CRLN", "CRLT", "HCLN", "HCLT", "SOLX", "SOLY")
"""Longitude/latitude CTYPE prefixes of solar frames: they move across the sky."""


@dataclass(frozen=True)
class Footprint:
    """Where an image is on the sky (ICRS degrees), or why that is unknown."""

    ra: float | None = None
    dec: float | None = None
    region: sky.Region | None = None
    frame: str | None = None
    """The WCS's own celestial frame (``icrs``, ``fk5``, ``galactic``, ``helioprojective``...)."""
    problem: str | None = None
    """Why there is no footprint; None when there is one."""


def image_footprint(header: Any, n_x: int, n_y: int, key: str | None = None,
                    built: dict[str, Any] | None = None) -> Footprint:
    """The footprint of an ``n_x`` x ``n_y`` image from the WCS ``key`` of ``header`` (default: the
    primary WCS, else the first alternate); ``built`` holds WCSs of the header already built, by key."""
    keys = [] if header is None else wcs_keys(header)
    if not keys:
        return Footprint(problem="no WCS")
    key = keys[0] if key is None else key
    try:
        wcs = built[key] if built and key in built else build_wcs(header, key)
    except Exception as exc:  # an unreadable WCS only means "position unknown" for facts
        return Footprint(problem=str(exc))
    if not wcs.has_celestial:
        return Footprint(problem="no celestial WCS")
    wcs = celestial_pair(wcs)
    if wcs is None:
        return Footprint(problem="the celestial WCS axes are not the image's pixel axes")
    ctype = wcs.wcs.ctype[wcs.wcs.lng]
    if ctype[:4].upper() in _NOT_FIXED:
        return Footprint(frame=_solar_frame(ctype), problem=f"frame {_solar_frame(ctype)} has no fixed sky position")
    try:
        frame = celestial_frame(wcs)
    except ValueError:
        return Footprint(problem=f"astropy knows no celestial frame for CTYPE {ctype!r}")
    name = frame.name
    xs, ys = _border(int(n_x), int(n_y))
    sky_points = _to_icrs(wcs, frame, xs, ys)
    if sky_points is None or not np.isfinite(sky_points[0][-1]) or not np.isfinite(sky_points[1][-1]):
        return Footprint(frame=name, problem="the image centre is outside the WCS projection")
    ra, dec = float(sky_points[0][-1]) % 360.0, float(sky_points[1][-1])
    border = sky_points[0][:-1], sky_points[1][:-1]
    return Footprint(ra=ra, dec=dec, region=_region(ra, dec, border), frame=name)


def celestial_pair(wcs: Any) -> Any:
    """The 2-axis celestial WCS of a 2-D image: ``wcs`` itself, or its first two axes when the header
    has more (a degenerate frequency axis, say); None when those are not the celestial ones."""
    if wcs.naxis == 2:
        return wcs
    if wcs.wcs.lng > 1 or wcs.wcs.lat > 1:
        return None
    return wcs.sub([1, 2])


def _solar_frame(ctype: str) -> str:
    return {"HP": "helioprojective", "HG": "heliographic", "CR": "heliographic_carrington",
            "HC": "heliocentric", "SO": "solar"}.get(ctype[:2].upper(), ctype[:4].lower())


@functools.lru_cache(maxsize=256)
def _border(n_x: int, n_y: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates along the outer edges of the pixels (0-based centres, edges at -0.5); with
    the centre appended.  Remembered per image size (read-only: every raw of a camera has its size)."""
    t = np.linspace(0.0, 1.0, SAMPLES_PER_EDGE, endpoint=False)
    x0, x1, y0, y1 = -0.5, n_x - 0.5, -0.5, n_y - 0.5
    xs = np.concatenate([x0 + t * (x1 - x0), np.full_like(t, x1), x1 - t * (x1 - x0), np.full_like(t, x0),
                         [(n_x - 1) / 2.0]])
    ys = np.concatenate([np.full_like(t, y0), y0 + t * (y1 - y0), np.full_like(t, y1), y1 - t * (y1 - y0),
                         [(n_y - 1) / 2.0]])
    xs.flags.writeable = ys.flags.writeable = False
    return xs, ys


def celestial_frame(wcs: Any) -> Any:
    """The astropy frame of a celestial WCS.  Ecliptic axes (ELON/ELAT) are the mean ecliptic of
    EQUINOX (default J2000) seen from the barycentre, as FITS defines them; astropy's own lookup
    would take them for ICRS."""
    from astropy.coordinates import BarycentricMeanEcliptic
    from astropy.time import Time
    from astropy.wcs.utils import wcs_to_celestial_frame

    prm = wcs.wcs
    if prm.ctype[prm.lng][:4].upper() == "ELON":
        equinox = prm.equinox
        return BarycentricMeanEcliptic(equinox=Time(2000.0 if np.isnan(equinox) else equinox, format="jyear"))
    if prm.ctype[prm.lng][:4] == "RA--" and prm.ctype[prm.lat][:4] == "DEC-" and (
            prm.radesys == "ICRS" or (prm.radesys == "" and np.isnan(prm.equinox))):
        return _icrs()  # what astropy's lookup answers for these cards (most raws'), without its ~0.2 ms
    return wcs_to_celestial_frame(wcs)


@functools.cache
def _icrs() -> Any:
    from astropy.coordinates import ICRS

    return ICRS()


def _to_icrs(wcs: Any, frame: Any, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """ICRS (ra, dec) degrees of pixels: astropy's world coordinates in the WCS's own frame,
    transformed by astropy."""
    from astropy.coordinates import SkyCoord

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            world = wcs.all_pix2world(xs, ys, 0)
            lon, lat = np.asarray(world[wcs.wcs.lng]), np.asarray(world[wcs.wcs.lat])
            if frame.name == "icrs":  # already there: astropy's transformation would be the identity
                return lon, lat
            coords = SkyCoord(lon, lat, unit="deg", frame=frame).icrs
        except Exception:  # pixels outside the projection, a distortion that does not converge
            return None
    return np.asarray(coords.ra.deg), np.asarray(coords.dec.deg)


def _region(ra: float, dec: float, border: tuple[np.ndarray, np.ndarray] | None) -> sky.Region:
    """The convex hull of the border; a circle round the centre when no hull describes the image."""
    centre = sky.point(ra, dec)
    if border is None:
        return sky.circle(ra, dec, 180.0)
    finite = np.isfinite(border[0]) & np.isfinite(border[1])
    points = list(zip(border[0][finite].tolist(), border[1][finite].tolist()))
    if finite.all() and len(points) >= 3:
        try:
            hull = sky.polygon_of_arrays(border[0], border[1])
            if hull.contains(centre):
                return hull
        except Exception:  # points not within one hemisphere: no convex hull
            pass
    radius = max((_separation(ra, dec, p_ra, p_dec) for p_ra, p_dec in points), default=180.0)
    if not finite.all():
        radius = 180.0  # part of the image lies outside the projection: an all-sky map
    return sky.circle(ra, dec, min(180.0, radius * 1.01 + 1.0 / 3600))


def _separation(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Great-circle distance in degrees (haversine)."""
    p1, p2 = math.radians(dec1), math.radians(dec2)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(ra2 - ra1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))


def sky_to_pixel(wcs: Any, ra: float, dec: float) -> tuple[float, float] | None:
    """0-based pixel (x, y) of ICRS (ra, dec) degrees in a celestial ``wcs``, through its own frame;
    None when the position has no pixel (outside the projection, a frame with no fixed sky position)."""
    from astropy.coordinates import SkyCoord

    if not wcs.has_celestial or wcs.wcs.ctype[wcs.wcs.lng][:4].upper() in _NOT_FIXED:
        return None
    wcs = celestial_pair(wcs)
    if wcs is None:
        return None
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            frame = celestial_frame(wcs)
            native = SkyCoord(ra, dec, unit="deg", frame="icrs").transform_to(frame).spherical
            world = [0.0, 0.0]
            world[wcs.wcs.lng], world[wcs.wcs.lat] = native.lon.deg, native.lat.deg
            x, y = wcs.all_world2pix([world[0]], [world[1]], 0)
        except Exception:  # no convergence of the inverse distortion, an unknown frame
            return None
    if not (np.isfinite(x[0]) and np.isfinite(y[0])):
        return None
    return float(x[0]), float(y[0])


def box_around(x: float, y: float, size: int, n_x: int, n_y: int) -> tuple[int, int, int, int] | None:
    """The ``size`` x ``size`` pixel box centred on pixel (x, y), clipped to an ``n_x`` x ``n_y``
    image; None when nothing of it is inside."""
    x_min, y_min = int(np.floor(x + 0.5)) - size // 2, int(np.floor(y + 0.5)) - size // 2
    box = max(0, x_min), max(0, y_min), min(n_x, x_min + size), min(n_y, y_min + size)
    return box if box[0] < box[2] and box[1] < box[3] else None
