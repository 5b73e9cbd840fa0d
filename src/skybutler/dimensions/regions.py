"""Sky regions and sky pixels, through the lsst.sphgeom spherical-geometry library.

Regions are ``lsst.sphgeom`` objects (convex polygons, circles, boxes); the registry
stores them in their compact binary encoding and indexes them with a sky-pixel
envelope (HTM or HEALPix ranges) for coarse joins, then checks exact overlap.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import lsst.sphgeom as sphgeom
    from lsst.sphgeom import Region
else:
    class _Sphgeom:
        """``lsst.sphgeom``, imported on first use: it brings numpy, which a command that touches
        no region (``query-collections``) should not pay for."""

        def __getattr__(self, name: str) -> Any:
            module: ModuleType = importlib.import_module("lsst.sphgeom")
            globals()["sphgeom"] = module  # later uses go straight to the module
            return getattr(module, name)

    sphgeom = _Sphgeom()

    def __getattr__(name: str) -> Any:
        """``Region``: sphgeom's base class of regions, imported with sphgeom."""
        if name == "Region":
            return sphgeom.Region
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def point(ra: float, dec: float) -> sphgeom.UnitVector3d:
    """A unit vector at (ra, dec) degrees."""
    return sphgeom.UnitVector3d(sphgeom.LonLat.fromDegrees(ra, dec))


def polygon(vertices: Iterable[tuple[float, float]]) -> sphgeom.ConvexPolygon:
    """The convex hull of (ra, dec) vertices in degrees."""
    return sphgeom.ConvexPolygon.convexHull([point(ra, dec) for ra, dec in vertices])


def polygon_of_arrays(ra: Any, dec: Any) -> sphgeom.ConvexPolygon:
    """The convex hull of vertices given as arrays of (ra, dec) degrees: their unit vectors are
    computed by numpy at once (an image footprint's border, thousands of times at ingest)."""
    import numpy as np

    lon, lat = np.radians(np.asarray(ra, dtype=float)), np.radians(np.asarray(dec, dtype=float))
    cos_lat = np.cos(lat)
    xs, ys, zs = (cos_lat * np.cos(lon)).tolist(), (cos_lat * np.sin(lon)).tolist(), np.sin(lat).tolist()
    return sphgeom.ConvexPolygon.convexHull([sphgeom.UnitVector3d(x, y, z) for x, y, z in zip(xs, ys, zs)])


def circle(ra: float, dec: float, radius_deg: float) -> sphgeom.Circle:
    """A circle of ``radius_deg`` around (ra, dec)."""
    return sphgeom.Circle(point(ra, dec), sphgeom.Angle.fromDegrees(radius_deg))


def tiny_circle(ra: float, dec: float) -> sphgeom.Circle:
    """A point as a region (a circle of 1 milli-arcsecond), for overlap tests."""
    return circle(ra, dec, 1e-3 / 3600 / 1000)


def rectangle(ra: float, dec: float, width_deg: float, height_deg: float) -> sphgeom.ConvexPolygon:
    """A width x height polygon centred on (ra, dec), on the tangent plane (small fields)."""
    import math

    cos_dec = max(math.cos(math.radians(dec)), 1e-6)
    hw, hh = width_deg / 2, height_deg / 2
    return polygon([(ra + dx * hw / cos_dec, dec + dy * hh) for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1))])


def encode(region: Region | None) -> bytes | None:
    return None if region is None else bytes(region.encode())


def decode(data: bytes | None) -> Region | None:
    return None if data is None else sphgeom.Region.decode(data)


def overlaps(a: Region, b: Region) -> bool:
    """Exact overlap of two regions (sphgeom may answer 'maybe' for some pairs: counted as overlap)."""
    return not (a.relate(b) & sphgeom.DISJOINT)


@functools.lru_cache(maxsize=64)
def pixelization(system: str, level: int) -> sphgeom.Pixelization:
    """The sky pixelization of a skypix dimension (``htm`` or ``healpix`` at ``level``); made once
    (a record's envelope is taken for every region inserted)."""
    if system == "htm":
        return sphgeom.HtmPixelization(level)
    if system == "healpix":
        return sphgeom.HealpixPixelization(level)
    raise ValueError(f"unknown sky pixelization {system!r}")


def envelope(region: Region, system: str, level: int) -> list[int]:
    """Sky pixel indices that may overlap ``region`` (a superset: the coarse index)."""
    out: list[int] = []
    for begin, end in pixelization(system, level).envelope(region).ranges():
        out.extend(range(begin, end))
    return out


def vertices_of(region: Region) -> Sequence[tuple[float, float]]:
    """(ra, dec) degrees of a convex polygon's vertices (for display and export)."""
    return [(sphgeom.LonLat(v).getLon().asDegrees(), sphgeom.LonLat(v).getLat().asDegrees())
            for v in region.getVertices()]
