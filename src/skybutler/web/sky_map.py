"""Sky coverage: where selected visits, detectors, patches, tracts or image datasets lie, drawn
as server-made SVG: an all-sky Mollweide map and a gnomonic close-up of the selection.

Regions come from the registry (dimension records' regions, the footprint facts of image
datasets) under the same rights as every query: datasets only from collections the user
may read, without those an embargo hides; dimension records as the query API shows them.
Each region's border is densified along great circles and projected here (the
projections are a few lines of trigonometry; the tests check them against astropy's
``MOL`` and ``TAN`` WCS).  The all-sky map follows the astronomers' convention, RA
increasing to the left, centred on RA 180; a region crossing the map's edge is drawn
twice and clipped to the ellipse.  Nothing is fetched from the network.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ..access import User
from ..butler import Butler
from ..embargo import EmbargoCheck
from ..errors import SkybutlerError
from ..server import authz
from ..server.state import ServerState
from .session import page_user
from .templating import render

router = APIRouter()

NAV = [("Sky", "/sky")]

MAX_REGIONS = 3000
"""The most regions a map draws; the rest are counted in a note."""

SKY_W = 720.0
"""Width of the all-sky map in SVG pixels (its height is half of it)."""

ZOOM_W = 480.0
"""Side of the close-up in SVG pixels."""

SQRT2 = math.sqrt(2.0)

KINDS = {"visit": "visits", "visit_detector_region": "detectors of visits", "tract": "tracts", "patch": "patches",
         "dataset": "image datasets"}
"""What a map may show, and how the page names it."""


# -- projections ------------------------------------------------------------------


def mollweide(lam: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mollweide (x, y) of longitude ``lam`` (radians from the central meridian, positive to
    the left) and latitude ``phi`` (radians); the map is the ellipse |x| <= 2√2, |y| <= √2,
    x to the right.  Longitudes beyond ±π continue the same formula (for clipped copies)."""
    lam, phi = np.asarray(lam, dtype=float), np.asarray(phi, dtype=float)
    target = math.pi * np.sin(phi)
    t = 2.0 * phi  # t = 2θ solves t + sin t = π sin φ
    for _ in range(50):
        step = (t + np.sin(t) - target) / np.maximum(1.0 + np.cos(t), 1e-12)
        t = np.clip(t - step, -math.pi, math.pi)
        if np.all(np.abs(step) < 1e-12):
            break
    theta = t / 2.0
    theta = np.where(np.abs(phi) > math.pi / 2 - 1e-9, np.sign(phi) * math.pi / 2, theta)
    return -2.0 * SQRT2 / math.pi * lam * np.cos(theta), SQRT2 * np.sin(theta)


def gnomonic(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic (tangent-plane) coordinates, degrees, of (ra, dec) around (ra0, dec0): xi grows
    with RA (east), eta with Dec (north); NaN for points 90° or more from the centre."""
    a, d = np.radians(np.asarray(ra, dtype=float) - ra0), np.radians(np.asarray(dec, dtype=float))
    d0 = math.radians(dec0)
    cos_c = math.sin(d0) * np.sin(d) + math.cos(d0) * np.cos(d) * np.cos(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = np.where(cos_c > 1e-6, np.cos(d) * np.sin(a) / cos_c, np.nan)
        eta = np.where(cos_c > 1e-6, (math.cos(d0) * np.sin(d) - math.sin(d0) * np.cos(d) * np.cos(a)) / cos_c,
                       np.nan)
    return np.degrees(xi), np.degrees(eta)


# -- regions as lines on the sphere -------------------------------------------------


def _unit(ra: float, dec: float) -> np.ndarray:
    r, d = math.radians(ra), math.radians(dec)
    return np.array([math.cos(d) * math.cos(r), math.cos(d) * math.sin(r), math.sin(d)])


def _lonlat(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.degrees(np.arctan2(v[..., 1], v[..., 0])) % 360.0, np.degrees(np.arcsin(np.clip(v[..., 2], -1, 1)))


def _arc(a: np.ndarray, b: np.ndarray, step_deg: float) -> np.ndarray:
    """Points along the great circle from unit vector a to b (b excluded), ``step_deg`` apart at most."""
    angle = math.acos(float(np.clip(a @ b, -1.0, 1.0)))
    n = max(1, math.ceil(math.degrees(angle) / step_deg))
    t = np.arange(n)[:, None] / n
    if angle < 1e-12:
        return a[None, :]
    return (np.sin((1 - t) * angle) * a + np.sin(t * angle) * b) / math.sin(angle)


def border(region: Any, step_deg: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(ra, dec) degrees along a region's border: a polygon's edges along great circles; a
    circle (or any other region: its bounding circle) sampled around its centre."""
    from lsst import sphgeom

    if isinstance(region, sphgeom.ConvexPolygon):
        vertices = [np.array([v.x(), v.y(), v.z()]) for v in region.getVertices()]
        points = np.concatenate([_arc(vertices[i], vertices[(i + 1) % len(vertices)], step_deg)
                                 for i in range(len(vertices))])
        return _lonlat(points)
    circle = region if isinstance(region, sphgeom.Circle) else region.getBoundingCircle()
    centre = sphgeom.LonLat(circle.getCenter())
    ra0, dec0 = centre.getLon().asDegrees(), centre.getLat().asDegrees()
    radius = math.radians(circle.getOpeningAngle().asDegrees())
    c = _unit(ra0, dec0)
    east = np.cross([0.0, 0.0, 1.0], c)
    east = east / np.linalg.norm(east) if np.linalg.norm(east) > 1e-9 else np.array([0.0, 1.0, 0.0])
    north = np.cross(c, east)
    angles = np.linspace(0, 2 * math.pi, max(24, math.ceil(math.degrees(2 * math.pi * math.sin(radius)) / step_deg)),
                         endpoint=False)
    points = (math.cos(radius) * c + math.sin(radius) * (np.cos(angles)[:, None] * east
                                                          + np.sin(angles)[:, None] * north))
    return _lonlat(points)


# -- SVG geometry ------------------------------------------------------------------


def _path(xs: Iterable[float], ys: Iterable[float], close: bool = True) -> str:
    points = [f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y)]
    if len(points) < 2:
        return ""
    return "M" + " L".join(points) + (" Z" if close else "")


def sky_paths(ra: np.ndarray, dec: np.ndarray, centre: float = 180.0) -> list[str]:
    """SVG paths of one closed border on the all-sky map (pixels of a ``SKY_W`` wide map): the
    border with its longitudes made continuous, and its copies one turn to either side, for
    the map's clip to cut where it crosses the edge.  A border round a pole is closed along
    the pole."""
    lon = np.degrees(np.unwrap(np.radians(ra)))
    lat = np.asarray(dec, dtype=float)
    turn = lon[-1] - lon[0] + (((lon[0] - lon[-1]) + 180.0) % 360.0 - 180.0)
    if abs(turn) > 180.0:  # the border winds round a pole: go along it to close the shape
        pole = 90.0 if lat.mean() > 0 else -90.0
        lon = np.concatenate([lon, [lon[-1] + (lon[0] + turn - lon[-1]), lon[0] + turn, lon[0]]])
        lat = np.concatenate([lat, [lat[-1], pole, pole]])
    start = ((lon[0] - centre) + 180.0) % 360.0 - 180.0
    lam = start + (lon - lon[0])
    scale = SKY_W / (4 * SQRT2)
    out = []
    for shift in (-360.0, 0.0, 360.0):
        shifted = lam + shift
        if shifted.max() < -180.0 or shifted.min() > 180.0:
            continue
        x, y = mollweide(np.radians(shifted), np.radians(lat))
        out.append(_path(SKY_W / 2 + x * scale, SKY_W / 4 - y * scale))
    return [p for p in out if p]


@functools.cache
def graticule(centre: float = 180.0) -> tuple[tuple[str, ...], tuple[tuple[float, float, str], ...]]:
    """Meridians every 30° and parallels every 30° of the all-sky map, and labels (x, y, text);
    the same for every map, so made once."""
    scale = SKY_W / (4 * SQRT2)
    lines, labels = [], []
    lat = np.linspace(-90, 90, 91)
    for ra in range(0, 360, 30):
        lam = ((ra - centre) + 180.0) % 360.0 - 180.0
        x, y = mollweide(np.radians(np.full_like(lat, lam)), np.radians(lat))
        lines.append(_path(SKY_W / 2 + x * scale, SKY_W / 4 - y * scale, close=False))
        if ra % 60 == 0:
            x0, _ = mollweide(np.radians(lam), 0.0)
            labels.append((float(SKY_W / 2 + x0 * scale), SKY_W / 4 + 12, f"{ra}°"))
    lam = np.linspace(-180, 180, 181)
    for dec in (-60, -30, 0, 30, 60):
        x, y = mollweide(np.radians(lam), np.radians(np.full_like(lam, dec)))
        lines.append(_path(SKY_W / 2 + x * scale, SKY_W / 4 - y * scale, close=False))
        x0, y0 = mollweide(np.radians(180.0), np.radians(dec))
        labels.append((float(SKY_W / 2 + x0 * scale) + 4, float(SKY_W / 4 - y0 * scale) + 4, f"{dec:+d}°"))
    return tuple(lines), tuple(labels)


def _nice(span: float) -> float:
    """A round grid step giving a handful of lines over ``span`` degrees."""
    for step in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30):
        if span / step <= 6:
            return float(step)
    return 30.0


@dataclass
class Shape:
    """One region on the maps: its label, link, group (for colour) and SVG paths."""

    label: str
    href: str | None
    group: str
    sky: list[str] = field(default_factory=list)
    zoom: str = ""


@dataclass
class SkyMap:
    """Everything the template draws."""

    shapes: list[Shape]
    groups: list[str]
    grid: Sequence[str]
    grid_labels: Sequence[tuple[float, float, str]]
    zoom_grid: list[str] = field(default_factory=list)
    zoom_labels: list[tuple[float, float, str, str]] = field(default_factory=list)
    zoom_centre: tuple[float, float] | None = None
    zoom_span: float = 0.0
    omitted: int = 0
    sky_size: float = SKY_W
    zoom_size: float = ZOOM_W
    marker: tuple[float, float] | None = None
    """Where the close-up's centre is on the all-sky map (a ring there finds a small field)."""


def sky_map(items: Sequence[tuple[str, str | None, str, Any]], omitted: int = 0) -> SkyMap:
    """The maps of ``items``: (label, link or None, group, sphgeom region) each."""
    borders = [border(region) for _, _, _, region in items]
    grid, labels = graticule()
    groups = sorted({group for _, _, group, _ in items})
    shapes = [Shape(label, href, group, sky_paths(ra, dec)) for (label, href, group, _), (ra, dec)
              in zip(items, borders)]
    out = SkyMap(shapes, groups, grid, labels, omitted=omitted)
    if borders:
        _zoom(out, borders)
    return out


def _zoom(out: SkyMap, borders: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """The gnomonic close-up around the mean direction of every border point, when it all fits
    within 40° of it."""
    ra = np.concatenate([b[0] for b in borders])
    dec = np.concatenate([b[1] for b in borders])
    vector = np.stack([np.cos(np.radians(dec)) * np.cos(np.radians(ra)), np.cos(np.radians(dec)) * np.sin(np.radians(ra)),
                       np.sin(np.radians(dec))], axis=1).sum(axis=0)
    if np.linalg.norm(vector) < 1e-9:
        return
    ra0, dec0 = (float(v[0]) for v in _lonlat(vector[None, :]))
    xi, eta = gnomonic(ra, dec, ra0, dec0)
    if not np.all(np.isfinite(xi)) or max(np.abs(xi).max(), np.abs(eta).max()) > 40.0:
        return
    half = max(np.abs(xi).max(), np.abs(eta).max(), 1.0 / 3600) * 1.15
    scale = ZOOM_W / (2 * half)

    def to_px(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return ZOOM_W / 2 - x * scale, ZOOM_W / 2 - y * scale  # east (larger RA) to the left

    for shape, (r, d) in zip(out.shapes, borders):
        shape.zoom = _path(*to_px(*gnomonic(r, d, ra0, dec0)))
    out.zoom_centre, out.zoom_span = (ra0, dec0), 2 * half
    sky_scale = SKY_W / (4 * SQRT2)
    mx, my = mollweide(math.radians(((ra0 - 180.0) + 180.0) % 360.0 - 180.0), math.radians(dec0))
    out.marker = (float(SKY_W / 2 + mx * sky_scale), float(SKY_W / 4 - my * sky_scale))
    step = _nice(2 * half)
    dec_span = np.arange(math.floor((dec0 - 1.5 * half) / step) * step, dec0 + 1.5 * half + step, step)
    ra_half = min(180.0, 1.5 * half / max(math.cos(math.radians(min(89.0, abs(dec0) + half))), 1e-3))
    ra_step = _nice(2 * ra_half / 1.5) if ra_half < 180 else 30.0
    ra_lines = np.arange(math.floor((ra0 - ra_half) / ra_step) * ra_step, ra0 + ra_half + ra_step, ra_step)
    fine_dec = np.linspace(dec_span[0], dec_span[-1], 60).clip(-90, 90)
    fine_ra = np.linspace(ra_lines[0], ra_lines[-1], 60)
    for value in ra_lines:
        x, y = to_px(*gnomonic(np.full_like(fine_dec, value), fine_dec, ra0, dec0))
        out.zoom_grid.append(_path(x, y, close=False))
        inside = np.flatnonzero((x > 0) & (x < ZOOM_W) & (y > 0) & (y < ZOOM_W))
        if inside.size:
            out.zoom_labels.append((float(x[inside[-1]]), float(ZOOM_W - 4), f"{value % 360:g}°", "ra"))
    for value in dec_span:
        if abs(value) > 90:
            continue
        x, y = to_px(*gnomonic(fine_ra, np.full_like(fine_ra, value), ra0, dec0))
        out.zoom_grid.append(_path(x, y, close=False))
        inside = np.flatnonzero((x > 0) & (x < ZOOM_W) & (y > 0) & (y < ZOOM_W))
        if inside.size:
            out.zoom_labels.append((4.0, float(y[inside[0]]) - 3, f"{value:+g}°", "dec"))


# -- what the user asked for ---------------------------------------------------------


def _record_label(butler: Butler, element: str, record: Any) -> str:
    names = [n for n in butler.universe[element].identity if n != "instrument"]
    return f"{element} " + " ".join(f"{n}={record[n]}" for n in names)


def selected_regions(butler: Butler, user: User, kind: str, where: str = "", dataset_type: str = "",
                     collections: Sequence[str] = (), root: str = "") -> tuple[list[tuple[str, str | None, str, Any]], int]:
    """The (label, link, group, region) of what the user selected, at most ``MAX_REGIONS``, and
    how many more there were."""
    if kind not in KINDS:
        raise SkybutlerError(f"a sky map shows one of {', '.join(KINDS)}, not {kind[:40]!r}")
    items: list[tuple[str, str | None, str, Any]] = []
    omitted = 0
    if kind == "dataset":
        if not dataset_type:
            raise SkybutlerError("choose the dataset type whose footprints to map")
        names = collections or [c.name for c in authz.visible_collections(user, butler.collections.query("*"))]
        path = authz.readable_path(butler, user, list(names))
        check = EmbargoCheck(butler, user) if user.embargoes else None
        refs: dict[Any, Any] = {}
        for ref in butler.query_datasets(dataset_type, where=where, collections=path, find_first=False) if path else ():
            if ref.id in refs or (check is not None and check.hidden_ref(ref)):
                continue
            if len(refs) >= MAX_REGIONS:
                omitted += 1
                continue
            refs[ref.id] = ref
        storage_class = butler.get_dataset_type(dataset_type).storage_class
        regions = butler.registry.facts_of_many(list(refs), storage_class, "region")
        for ref in refs.values():
            if ref.id in regions:
                text = " ".join(f"{k}={v}" for k, v in ref.data_id.required.items() if k != "instrument")
                items.append((f"{dataset_type} {text} ({ref.run})", f"{root}/datasets/{ref.id}", ref.run,
                              regions[ref.id]))
        return items, omitted
    for record in butler.query_dimension_records(kind, where=where):
        region = record["region"]
        if region is None:
            continue
        if len(items) >= MAX_REGIONS:
            omitted += 1
            continue
        group = {"visit": "physical_filter", "visit_detector_region": "visit", "patch": "tract"}.get(kind)
        items.append((_record_label(butler, kind, record), None, kind if group is None else str(record[group]), region))
    return items, omitted


@router.get("/sky", name="web_sky")
def sky_page(request: Request, what: str = "visit", where: str = "", dataset_type: str = "", collection: str = "",
             user: User = Depends(page_user)) -> Response:
    from .templating import root

    state: ServerState = request.app.state.skybutler
    error, result = None, None
    with state.butler() as butler:
        types = sorted(t.name for t in butler.query_dataset_types("*")
                       if t.storage_class in ("Image", "MultiExtensionImage"))
        collections = sorted(c.name for c in authz.visible_collections(user, butler.collections.query("*")))
        try:
            default = "calexp" if "calexp" in types else types[0] if types else ""
            dataset_type = dataset_type or default
            items, omitted = selected_regions(butler, user, what, where, dataset_type,
                                              [collection] if collection else (), root(request))
            result = sky_map(items, omitted)
        except SkybutlerError as err:
            error = str(err)
    return render(request, "sky_map.html", user=user, kinds=KINDS, what=what, where=where,
                  dataset_type=dataset_type, types=types, collection=collection, collections=collections,
                  error=error, map=result, status_code=200 if error is None else 422)
