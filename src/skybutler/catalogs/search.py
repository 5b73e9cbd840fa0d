"""Cone, box and polygon searches over a published HATS catalog.

A search reads only what it needs: the HEALPix pixels the region touches (``cdshealpix``, at
an order fine enough for the region's size) pick the partitions that overlap it, and inside
each the row groups whose ``_healpix_29`` statistics overlap it; the rows read are then tested
exactly against the region (``lsst.sphgeom``).  Works on any HATS catalog (or collection) with a
``_healpix_29`` column, not only on skybutler's.

    from skybutler.catalogs.search import cone_search
    table = cone_search("pub/src", ra=150.1, dec=2.2, radius=0.5)           # pyarrow.Table
    frame = box_search("pub/src", (350, 10), (-5, 5), as_="pandas")         # across RA 0
    table = polygon_search("pub/src", [(10, 0), (12, 0), (11, 2)], as_="astropy")
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import SearchError
from . import hats_files
from .healpix import HEALPIX_ORDER

__all__ = ["SearchError", "box_search", "cone_search", "polygon_search"]


def _finite(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SearchError(f"{name} must be a number of degrees, not {value!r}") from None
    if not math.isfinite(number):
        raise SearchError(f"{name} must be a finite number of degrees, not {value!r}")
    return number


def _latitude(name: str, value: Any) -> float:
    number = _finite(name, value)
    if not -90.0 <= number <= 90.0:
        raise SearchError(f"{name} {number:g} is outside [-90, 90] degrees")
    return number


@dataclass
class SkyRegion:
    """A search region: exact membership by ``lsst.sphgeom``, HEALPix coverage by ``cdshealpix``
    (which never leaves out a pixel the region touches), and its rough size in degrees."""

    region: Any
    cover: Callable[[int], np.ndarray]
    size_deg: float


def _deg(values: Any) -> Any:
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude

    lon, lat = values
    return Longitude(np.asarray(lon, dtype=float) * u.deg), Latitude(np.asarray(lat, dtype=float) * u.deg)


def _flat(found: tuple) -> np.ndarray:
    return np.asarray(found[0], dtype=np.int64)


def cone_region(ra: float, dec: float, radius: float) -> SkyRegion:
    """A circle; radius in (0, 180] degrees."""
    from lsst import sphgeom

    ra, dec = _finite("ra", ra), _latitude("dec", dec)
    radius = _finite("radius", radius)
    if not 0.0 < radius <= 180.0:
        raise SearchError(f"radius {radius:g} must be greater than 0 and at most 180 degrees")
    import astropy.units as u
    import cdshealpix

    circle = sphgeom.Circle(sphgeom.UnitVector3d(sphgeom.LonLat.fromDegrees(ra % 360.0, dec)),
                            sphgeom.Angle.fromDegrees(radius))
    lon, lat = _deg((ra % 360.0, dec))
    if radius >= 90.0:  # cdshealpix covers cones below a hemisphere: cover the whole sky
        return SkyRegion(circle, lambda level: np.arange(12 << (2 * level), dtype=np.int64), 2 * radius)
    return SkyRegion(circle, lambda level: _flat(cdshealpix.nested.cone_search(
        lon, lat, radius * u.deg, level, flat=True)), 2 * radius)


def box_region(ra_range: Sequence[float], dec_range: Sequence[float]) -> SkyRegion:
    """An ``lsst.sphgeom.Box`` from RA ``(start, end)`` -- going east from start to end, so
    ``(350, 10)`` crosses RA 0 -- and Dec ``(min, max)``, in degrees."""
    from lsst import sphgeom

    if len(ra_range) != 2 or len(dec_range) != 2:
        raise SearchError(f"a box needs ra=(start, end) and dec=(min, max), not {ra_range!r} and {dec_range!r}")
    ra0, ra1 = _finite("ra start", ra_range[0]), _finite("ra end", ra_range[1])
    dec0, dec1 = _latitude("dec min", dec_range[0]), _latitude("dec max", dec_range[1])
    if dec0 >= dec1:
        raise SearchError(f"dec min {dec0:g} must be below dec max {dec1:g}")
    import cdshealpix

    if ra1 - ra0 >= 360.0:
        lon = sphgeom.NormalizedAngleInterval.full()
        halves = [(0.0, 200.0), (180.0, 20.0)]
    else:
        start, end = ra0 % 360.0, ra1 % 360.0
        if start == end:
            raise SearchError(f"the box's RA range {ra0:g} to {ra1:g} is empty: give two different values "
                              "(or a span of 360 degrees for all RAs)")
        lon = sphgeom.NormalizedAngleInterval.fromDegrees(start, end)  # start > end: across RA 0
        halves = [(start, end)]

    def cover(level: int) -> np.ndarray:
        found = []
        for a, b in halves:
            (lo_lon, lo_lat), (hi_lon, hi_lat) = _deg((a, dec0)), _deg((b, dec1))
            found.append(_flat(cdshealpix.nested.zone_search(lo_lon, lo_lat, hi_lon, hi_lat, level, flat=True)))
        return np.unique(np.concatenate(found))

    box = sphgeom.Box(lon, sphgeom.AngleInterval.fromDegrees(dec0, dec1))
    return SkyRegion(box, cover, min(dec1 - dec0, lon.getSize().asDegrees()))


def polygon_region(vertices: Sequence[Sequence[float]]) -> SkyRegion:
    """An ``lsst.sphgeom.ConvexPolygon`` from (ra, dec) vertices in degrees, in either winding
    order; edges are great-circle arcs.  A polygon must be convex and smaller than a hemisphere."""
    from lsst import sphgeom

    points = list(vertices)
    if len(points) < 3:
        raise SearchError(f"a polygon needs at least 3 vertices, not {len(points)}")
    vectors = []
    for i, point in enumerate(points):
        if len(point) != 2:
            raise SearchError(f"polygon vertex {i} must be (ra, dec), not {point!r}")
        lon, lat = _finite(f"vertex {i} ra", point[0]), _latitude(f"vertex {i} dec", point[1])
        vectors.append(np.array(sphgeom.UnitVector3d(sphgeom.LonLat.fromDegrees(lon % 360.0, lat))))
    n = len(vectors)
    turns = []
    for i in range(n):
        a, b, c = vectors[i - 1], vectors[i], vectors[(i + 1) % n]
        if np.linalg.norm(b - a) < 1e-12:
            raise SearchError(f"polygon vertices {(i - 1) % n} and {i} are the same point")
        turns.append(float(np.dot(np.cross(a, b), c)))
    for i, turn in enumerate(turns):
        if abs(turn) < 1e-15:
            raise SearchError(f"polygon vertices {(i - 1) % n}, {i} and {(i + 1) % n} lie on one great circle: "
                              "a polygon's corners must turn")
    if len({t > 0 for t in turns}) > 1:
        bad = next(i for i, t in enumerate(turns) if (t > 0) != (sum(x > 0 for x in turns) > n / 2))
        raise SearchError(f"the polygon is not convex (it turns the other way at vertex {bad}): split it into "
                          "convex pieces")
    if turns[0] < 0:
        vectors.reverse()
    polygon = sphgeom.ConvexPolygon([sphgeom.UnitVector3d(*v) for v in vectors])
    hull = [np.array(v) for v in polygon.getVertices()]
    if len(hull) != n or not any(all(np.allclose(hull[(j + k) % n], vectors[k]) for k in range(n))
                                 for j in range(n)):
        raise SearchError("the polygon's edges cross each other (or it is larger than a hemisphere): give its "
                          "vertices in order around it")
    import cdshealpix

    lonlat = [sphgeom.LonLat(sphgeom.Vector3d(*v)) for v in vectors]
    lon, lat = _deg(([p.getLon().asDegrees() for p in lonlat], [p.getLat().asDegrees() for p in lonlat]))
    return SkyRegion(polygon, lambda level: _flat(cdshealpix.nested.polygon_search(lon, lat, level, flat=True)),
                     2 * polygon.getBoundingCircle().getOpeningAngle().asDegrees())


def _search(path: str | os.PathLike[str], sky: SkyRegion, columns: Sequence[str] | None, as_: str) -> Any:
    """Rows of the catalog at ``path`` inside ``sky``."""
    from ..formats.tables import TABLE_KINDS, from_arrow

    if as_ not in TABLE_KINDS:
        raise SearchError(f"as_ must be one of {', '.join(TABLE_KINDS)}, not {as_!r}")
    return from_arrow(pa.concat_tables(list(search_parts(path, sky, columns))), as_)


def search_parts(path: str | os.PathLike[str], sky: SkyRegion, columns: Sequence[str] | None) -> Iterator[pa.Table]:
    """The rows of the catalog at ``path`` inside ``sky``, one table per partition read (a single
    empty table of the wanted columns if none has any), so a server can send them as they come."""
    root, properties, pixels = hats_files.catalog_info(path)
    ra_col, dec_col = properties.get("hats_col_ra", "ra"), properties.get("hats_col_dec", "dec")
    highest = max((o for o, _ in pixels), default=0)
    # An order whose pixels are about a quarter of the region across: a tight envelope, few ranges.
    fine = int(np.clip(math.floor(math.log2(58.6 * 4 / max(sky.size_deg, 1e-9))), 0, 20))
    level = max(highest, fine)
    shift = 2 * (HEALPIX_ORDER - level)
    ranges = _ranges(_dilated(sky.cover(level), level), shift)
    starts = np.array([lo for lo, _ in ranges], dtype=np.int64)
    wanted = None if columns is None else list(dict.fromkeys([*columns, ra_col, dec_col]))
    found = False
    for order, pixel in pixels:
        lo, hi = pixel << 2 * (HEALPIX_ORDER - order), (pixel + 1) << 2 * (HEALPIX_ORDER - order)
        first = max(int(np.searchsorted(starts, lo, side="right")) - 1, 0)
        inside = [(max(a, lo), min(b, hi)) for a, b in ranges[first:int(np.searchsorted(starts, hi))]
                  if b > lo and a < hi]
        if not inside:
            continue
        table = hats_files.read_partition(hats_files.partition_path(root, order, pixel), wanted, inside)
        if table.num_rows:
            lon = np.radians(table[ra_col].to_numpy(zero_copy_only=False).astype(np.float64))
            lat = np.radians(table[dec_col].to_numpy(zero_copy_only=False).astype(np.float64))
            table = table.filter(sky.region.contains(lon, lat))
            if table.num_rows:
                found = True
                yield table if columns is None else table.select(list(columns))
    if not found:
        schema = hats_files.catalog_schema(root)
        empty = schema.empty_table() if wanted is None else schema.empty_table().select(wanted)
        yield empty if columns is None else empty.select(list(columns))


def region_of(shape: dict[str, Any]) -> SkyRegion:
    """The region a search names: ``{"cone": [ra, dec, radius]}``, ``{"box": [[ra0, ra1], [dec0, dec1]]}``
    or ``{"polygon": [[ra, dec], ...]}`` (degrees) -- how a search travels to a server."""
    if not isinstance(shape, dict) or len(shape) != 1:
        raise SearchError("a search region is one of cone, box or polygon")
    (kind, args), = shape.items()
    try:
        if kind == "cone":
            return cone_region(*args)
        if kind == "box":
            return box_region(*args)
        if kind == "polygon":
            return polygon_region(args)
    except TypeError:
        raise SearchError(f"malformed {kind} search region {str(args)[:80]}") from None
    raise SearchError(f"a search region is one of cone, box or polygon, not {str(kind)[:40]!r}")


def _dilated(pixels: np.ndarray, level: int) -> np.ndarray:
    """The pixels and their neighbours: a pixel the region only grazes is never left out, even
    where ``cdshealpix``'s coverage is tight at a meridian (seen for boxes at the pole)."""
    import cdshealpix

    if not len(pixels) or len(pixels) >= 12 << (2 * level):
        return np.unique(pixels)
    around = cdshealpix.nested.neighbours(pixels.astype(np.uint64), level).astype(np.int64).ravel()
    return np.unique(around[around >= 0])


def _ranges(pixels: np.ndarray, shift: int) -> list[tuple[int, int]]:
    """Sorted pixels as merged half-open order-29 ranges."""
    if not len(pixels):
        return []
    breaks = np.flatnonzero(np.diff(pixels) != 1) + 1
    return [(int(run[0]) << shift, (int(run[-1]) + 1) << shift) for run in np.split(pixels, breaks)]


def cone_search(path: str | os.PathLike[str], ra: float, dec: float, radius: float, *,
                columns: Sequence[str] | None = None, as_: str = "arrow") -> Any:
    """Rows within ``radius`` degrees of (``ra``, ``dec``), as Arrow, astropy or pandas (``as_``)."""
    return _search(path, cone_region(ra, dec, radius), columns, as_)


def box_search(path: str | os.PathLike[str], ra: Sequence[float], dec: Sequence[float], *,
               columns: Sequence[str] | None = None, as_: str = "arrow") -> Any:
    """Rows with RA in ``ra=(start, end)`` (eastwards; ``(350, 10)`` crosses RA 0) and Dec in
    ``dec=(min, max)``, degrees."""
    return _search(path, box_region(ra, dec), columns, as_)


def polygon_search(path: str | os.PathLike[str], vertices: Sequence[Sequence[float]], *,
                   columns: Sequence[str] | None = None, as_: str = "arrow") -> Any:
    """Rows inside the convex polygon with these (ra, dec) vertices (degrees, great-circle edges)."""
    return _search(path, polygon_region(vertices), columns, as_)
