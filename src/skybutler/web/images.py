"""Pictures of image datasets in the web view: quicklook PNGs and cut-outs (page and endpoints).

- ``/datasets/{id}/quicklook.png?stretch=zscale|asinh&size=128..1024``: the image binned
  while it is read (``bin`` read parameter: never whole in memory, never sent whole),
  stretched and encoded on the server, cached by dataset ID, stretch and size
  (``datastore/render_cache.py``);
- ``/cutouts?ra=&dec=&size=``: every stored image covering a sky position (the registry's
  spatial index, then each image's WCS), each with its cut-out as PNG and as FITS;
- for scripts, the same under ``/api/v1``: ``/api/v1/cutouts`` (JSON list),
  ``/api/v1/cutouts/{id}.fits`` and ``.png``, ``/api/v1/datasets/{id}/quicklook.png``,
  with JSON errors and bearer tokens.

Every dataset goes through ``server.authz`` first (invisible is missing: 404), before the
cache is looked at; searches run over the collections the user may read, without what an
embargo hides.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ..access import User
from ..butler import Butler
from ..cutouts import check_position, covering_refs, cutout_box
from ..datastore.render_cache import RenderCache
from ..embargo import EmbargoCheck
from ..errors import SkybutlerError
from ..formats.quicklook import SIZES, STRETCHES, bin_factor, png_bytes
from ..formats.wire_objects import encode_object
from ..models import DatasetRef
from ..server import authz
from ..server.state import ServerState
from .session import page_user
from .templating import render, root

router = APIRouter()

NAV = [("Cutouts", "/cutouts")]

IMAGE_CLASSES = ("Image", "MultiExtensionImage")
"""Storage classes that have quicklooks."""

CUTOUT_CLASSES = ("Image",)
"""Storage classes a cut-out is made from (one image HDU with its WCS)."""

MAX_CUTOUT_IMAGES = 200
"""The most covering images one cut-out search lists."""

CUTOUT_PNG_SIZE = 256
"""Cut-out PNGs longer than this a side are binned down to it."""

PNG_HEADERS = {"Cache-Control": "private, max-age=3600"}


def check_stretch(stretch: str, size: Any) -> tuple[str, int]:
    """A stretch and quicklook size the server makes (a precise error otherwise)."""
    if stretch not in STRETCHES:
        raise SkybutlerError(f"unknown stretch {stretch[:40]!r}; choose one of {', '.join(STRETCHES)}")
    try:
        value = int(size)
    except (TypeError, ValueError):
        value = None
    if value not in SIZES:
        raise SkybutlerError(f"quicklook size must be one of {', '.join(map(str, SIZES))} pixels, not {str(size)[:40]!r}")
    return stretch, value


def has_quicklook(ref: DatasetRef) -> bool:
    return ref.dataset_type.storage_class in IMAGE_CLASSES


def render_cache(state: ServerState) -> RenderCache:
    """The server's cache of rendered PNGs (made on first use)."""
    cache = getattr(state, "render_cache", None)
    if cache is None:
        from ..config import BOOKKEEPING_DIR

        cache = state.render_cache = RenderCache(state.root / BOOKKEEPING_DIR / "cache" / "render")
    return cache


def quicklook_png(butler: Butler, ref: DatasetRef, stretch: str, size: int, cache: RenderCache | None) -> bytes:
    """The quicklook of an image dataset: at most ``size`` pixels a side, binned as it is read."""
    if not has_quicklook(ref):
        raise SkybutlerError(f"{ref.dataset_type.name} is a {ref.dataset_type.storage_class}, not an image: "
                             "it has no quicklook")
    key = f"quicklook-{stretch}-{size}"
    cached = None if cache is None else cache.get(ref.id, key)
    if cached is not None:
        return cached
    factor = bin_factor(*_shape(butler, ref), size)
    data = butler.get(ref, component="data", parameters={"bin": factor})
    png = png_bytes(data, stretch)
    if cache is not None:
        cache.put(ref.id, key, png)
    return png


def _shape(butler: Butler, ref: DatasetRef) -> tuple[int, int]:
    """An image's (n_x, n_y): for an Image, from the facts recorded when it was stored, so the
    file is opened once, to read the binned pixels (its header is read then, not twice);
    otherwise, or where no facts were recorded, from the header of the image the reader picks."""
    if ref.dataset_type.storage_class == "Image":
        facts = butler.get_metadata(ref)
        n_x, n_y = facts.get("n_x"), facts.get("n_y")
        if isinstance(n_x, int) and isinstance(n_y, int) and n_x > 0 and n_y > 0:
            return n_x, n_y
        header = butler.get(ref, component="header")
    else:  # a MultiExtensionImage: its first 2-D image
        header = next(h for h in butler.get(ref, component="headers") if h.get("NAXIS") == 2)
    return int(header["NAXIS1"]), int(header["NAXIS2"])


def cutout_types(butler: Butler) -> list[str]:
    """Dataset types a cut-out can be made of."""
    return sorted(t.name for t in butler.query_dataset_types("*") if t.storage_class in CUTOUT_CLASSES)


def find_cutouts(butler: Butler, user: User, ra: float, dec: float, dataset_types: list[str],
                 collections: list[str]) -> tuple[list[DatasetRef], int]:
    """The images of ``dataset_types`` in ``collections`` (default: every one the user may read)
    whose footprint covers the position (the registry's spatial index; each image's WCS places
    the cut-out when it is asked for), and how many more were found than listed."""
    names = collections or [c.name for c in authz.visible_collections(user, butler.collections.query("*"))]
    path = authz.readable_path(butler, user, names)
    check = EmbargoCheck(butler, user) if user.embargoes else None
    out: list[DatasetRef] = []
    seen, more = set(), 0
    for name in dataset_types:
        if not path:
            break
        for ref in covering_refs(butler, name, ra, dec, collections=path, find_first=False):
            if ref.id in seen or (check is not None and check.hidden_ref(ref)):
                continue
            seen.add(ref.id)
            if len(out) >= MAX_CUTOUT_IMAGES:
                more += 1
            else:
                out.append(ref)
    return out, more


def cutout_hdu(butler: Butler, user: User, dataset_id: str, ra: Any, dec: Any, size: Any) -> tuple[DatasetRef, Any]:
    """The cut-out of one image the user may see, as an astropy ImageHDU (WCS sliced to it)."""
    ra, dec, size = check_position(ra, dec, size)
    ref = authz.visible_ref(butler, user, dataset_id)
    if ref.dataset_type.storage_class not in CUTOUT_CLASSES:
        raise SkybutlerError(f"{ref.dataset_type.name} is a {ref.dataset_type.storage_class}: cut-outs are made of "
                             f"{', '.join(CUTOUT_CLASSES)} datasets")
    box = cutout_box(butler, ref, ra, dec, size)
    if box is None:
        raise SkybutlerError(f"RA {ra:g}, Dec {dec:g} is outside {ref.dataset_type.name} {ref.id}")
    return ref, butler.get(ref, parameters={"bbox": box})


def cutout_png(butler: Butler, user: User, dataset_id: str, ra: Any, dec: Any, size: Any, stretch: str,
               cache: RenderCache | None) -> bytes:
    ra, dec, size = check_position(ra, dec, size)
    if stretch not in STRETCHES:
        raise SkybutlerError(f"unknown stretch {stretch[:40]!r}; choose one of {', '.join(STRETCHES)}")
    ref = authz.visible_ref(butler, user, dataset_id)
    key = f"cutout-{ra!r}-{dec!r}-{size}-{stretch}"
    cached = None if cache is None else cache.get(ref.id, key)
    if cached is not None:
        return cached
    _, hdu = cutout_hdu(butler, user, dataset_id, ra, dec, size)
    data = hdu.data
    factor = bin_factor(data.shape[1], data.shape[0], CUTOUT_PNG_SIZE)
    if factor > 1:
        from ..formats.quicklook import binned_pixels

        data = binned_pixels(data, (0, 0, data.shape[1], data.shape[0]), factor)
    png = png_bytes(data, stretch)
    if cache is not None:
        cache.put(ref.id, key, png)
    return png


def _fits_name(ref: DatasetRef, ra: float, dec: float) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in ref.dataset_type.name)
    return f"{safe}-{ref.id.hex[:12]}-{ra:.5f}{dec:+.5f}.fits"


# -- pages ---------------------------------------------------------------------------


@router.get("/datasets/{dataset_id}/quicklook.png", name="web_quicklook")
@router.get("/api/v1/datasets/{dataset_id}/quicklook.png")
def quicklook(request: Request, dataset_id: str, stretch: str = "zscale", size: str = "512",
              user: User = Depends(page_user)) -> Response:
    stretch, pixels = check_stretch(stretch, size)
    state: ServerState = request.app.state.skybutler
    with state.butler() as butler:
        ref = authz.visible_ref(butler, user, dataset_id)
        png = quicklook_png(butler, ref, stretch, pixels, render_cache(state))
    return Response(png, media_type="image/png", headers=PNG_HEADERS)


def _form(request: Request) -> dict[str, Any]:
    query = request.query_params
    return {"ra": query.get("ra", ""), "dec": query.get("dec", ""), "size": query.get("size", "64"),
            "dataset_type": query.get("dataset_type", ""), "collection": query.get("collection", ""),
            "stretch": query.get("stretch", "zscale")}


@router.get("/cutouts", name="web_cutouts")
def cutouts_page(request: Request, user: User = Depends(page_user)) -> Response:
    form = _form(request)
    state: ServerState = request.app.state.skybutler
    found, more, error, searched = [], 0, None, False
    with state.butler() as butler:
        types = cutout_types(butler)
        collections = sorted(c.name for c in authz.visible_collections(user, butler.collections.query("*")))
        if form["ra"] or form["dec"]:
            searched = True
            try:
                ra, dec, size = check_position(form["ra"], form["dec"], form["size"])
                if form["stretch"] not in STRETCHES:
                    raise SkybutlerError(f"unknown stretch {form['stretch'][:40]!r}; choose one of "
                                         f"{', '.join(STRETCHES)}")
                if form["dataset_type"] and form["dataset_type"] not in types:
                    raise SkybutlerError(f"no image dataset type {form['dataset_type'][:80]!r}")
                chosen = [form["dataset_type"]] if form["dataset_type"] else types
                found, more = find_cutouts(butler, user, ra, dec, chosen,
                                           [form["collection"]] if form["collection"] else [])
                form.update(ra=repr(ra), dec=repr(dec), size=str(size))
            except SkybutlerError as err:
                error = str(err)
    status = 422 if error else 200
    return render(request, "cutouts.html", status_code=status, user=user, form=form, types=types,
                  collections=collections, found=found, more=more, error=error, searched=searched,
                  stretches=STRETCHES)


@router.get("/cutouts/{dataset_id}.png", name="web_cutout_png")
@router.get("/api/v1/cutouts/{dataset_id}.png")
def cutout_png_route(request: Request, dataset_id: str, ra: str = "", dec: str = "", size: str = "64",
                     stretch: str = "zscale", user: User = Depends(page_user)) -> Response:
    state: ServerState = request.app.state.skybutler
    with state.butler() as butler:
        png = cutout_png(butler, user, dataset_id, ra, dec, size, stretch, render_cache(state))
    return Response(png, media_type="image/png", headers=PNG_HEADERS)


@router.get("/cutouts/{dataset_id}.fits", name="web_cutout_fits")
@router.get("/api/v1/cutouts/{dataset_id}.fits")
def cutout_fits_route(request: Request, dataset_id: str, ra: str = "", dec: str = "", size: str = "64",
                      user: User = Depends(page_user)) -> Response:
    state: ServerState = request.app.state.skybutler
    with state.butler() as butler:
        ref, hdu = cutout_hdu(butler, user, dataset_id, ra, dec, size)
    _, data = encode_object(hdu)
    name = _fits_name(ref, float(ra), float(dec))
    return Response(data, media_type="application/fits", headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/api/v1/cutouts")
def cutouts_api(request: Request, ra: str = "", dec: str = "", size: str = "64", dataset_type: str = "",
                collection: str = "", user: User = Depends(page_user)) -> dict[str, Any]:
    """The images covering (ra, dec), each with the URLs of its cut-out as FITS and PNG."""
    ra_v, dec_v, size_v = check_position(ra, dec, size)
    state: ServerState = request.app.state.skybutler
    with state.butler() as butler:
        types = cutout_types(butler)
        if dataset_type and dataset_type not in types:
            raise SkybutlerError(f"no image dataset type {dataset_type[:80]!r}")
        found, more = find_cutouts(butler, user, ra_v, dec_v, [dataset_type] if dataset_type else types,
                                   [collection] if collection else [])
    base = f"{str(request.base_url).rstrip('/')}{root(request)}/api/v1/cutouts"
    query = f"ra={ra_v!r}&dec={dec_v!r}&size={size_v}"
    return {"ra": ra_v, "dec": dec_v, "size": size_v, "more": more,
            "message": None if found else f"no stored image you may see covers RA {ra_v:g}, Dec {dec_v:g}",
            "images": [{"id": str(ref.id), "dataset_type": ref.dataset_type.name, "run": ref.run,
                        "data_id": dict(ref.data_id.required),
                        "fits": f"{base}/{ref.id}.fits?{query}", "png": f"{base}/{ref.id}.png?{query}"}
                       for ref in found]}


def image_context(ref: DatasetRef, stored: bool, facts: dict[str, Any]) -> dict[str, Any]:
    """What the dataset page's image block shows: quicklook choices and the WCS footprint map,
    from the dataset's recorded ``facts`` (its metadata: no file is read)."""
    from .sky_map import sky_map

    if not has_quicklook(ref):
        return {"quicklook": False, "footprint": None, "cutout": False}
    region = facts.get("region")
    footprint = None
    if region is not None:
        label = f"{ref.dataset_type.name} footprint"
        footprint = sky_map([(label, None, "footprint", region)])
    corners = []
    if region is not None and hasattr(region, "getVertices"):
        from ..dimensions.regions import vertices_of

        corners = [(ra, dec) for ra, dec in vertices_of(region)]
    centre = (facts.get("ra_center"), facts.get("dec_center"))
    return {"quicklook": stored, "stretches": STRETCHES, "sizes": SIZES, "footprint": footprint, "corners": corners,
            "centre": centre if None not in centre else None, "footprint_problem": facts.get("footprint_problem"),
            "shape": (facts.get("n_x"), facts.get("n_y")),
            "cutout": ref.dataset_type.storage_class in CUTOUT_CLASSES and centre[0] is not None
            and math.isfinite(centre[0])}
