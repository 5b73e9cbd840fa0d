"""Cut-outs around a sky position from every stored image that covers it.

The images are found by their footprints (``<type>.region OVERLAPS POINT``); each
one's own WCS, in its own frame, places the position on its pixels; the box around
it is read like any other ``bbox`` (only its rows, or only its tiles).  The finding
(:func:`covering_refs`) and the box of one image (:func:`cutout_box`) are apart, so the
web view can list the images first and cut each one out when its picture is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import SkybutlerError
from .formats.footprints import box_around, sky_to_pixel
from .models import DatasetRef

if TYPE_CHECKING:
    from .butler import Butler

MAX_SIZE = 4096
"""The largest cut-out side, in pixels."""


def check_position(ra: Any, dec: Any, size: Any) -> tuple[float, float, int]:
    """ICRS degrees and a side in pixels, checked: RA in [0, 360], Dec in [-90, 90], size a whole
    number of pixels in 1..MAX_SIZE; a :class:`SkybutlerError` naming the bad value otherwise."""
    values = []
    for name, value, low, high in (("RA", ra, 0.0, 360.0), ("Dec", dec, -90.0, 90.0)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise SkybutlerError(f"{name} must be a number of degrees, not {value!r}") from None
        if isinstance(value, bool) or not math.isfinite(number) or not low <= number <= high:
            raise SkybutlerError(f"{name} must be between {low:g} and {high:g} degrees, not {value!r}")
        values.append(number)
    if isinstance(size, str) and size.strip().isdigit():
        size = int(size)
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_SIZE:
        raise SkybutlerError(f"cut-out size must be a whole number of pixels from 1 to {MAX_SIZE}, not {size!r}")
    return values[0] % 360.0, values[1], size


def covering_refs(butler: Butler, dataset_type: str, ra: float, dec: float, *,
                  collections: str | Sequence[str] | None = None, where: str = "",
                  bind: Mapping[str, Any] | None = None, find_first: bool = True) -> list[DatasetRef]:
    """The ``dataset_type`` images whose footprint covers ICRS (``ra``, ``dec``) degrees."""
    point = f"{dataset_type}.region OVERLAPS POINT({float(ra)!r}, {float(dec)!r})"
    return list(butler.query_datasets(dataset_type, where=f"{point} AND ({where})" if where else point,
                                      collections=collections, bind=bind, find_first=find_first))


def cutout_box(butler: Butler, ref: DatasetRef, ra: float, dec: float, size: int) -> tuple[int, int, int, int] | None:
    """The ``size`` x ``size`` pixel box of the image ``ref`` centred on (``ra``, ``dec``), clipped at
    its edges; None when the position falls on none of its pixels."""
    wcs = butler.get(ref, component="wcs")
    pixel = sky_to_pixel(wcs, ra, dec)
    if pixel is None:
        return None
    if wcs.pixel_shape is not None:  # NAXISn of the header the WCS was read from
        n_x, n_y = wcs.pixel_shape[:2]
    else:
        header = butler.get(ref, component="header")
        n_x, n_y = header["NAXIS1"], header["NAXIS2"]
    return box_around(*pixel, size, n_x, n_y)


def get_cutouts(butler: Butler, dataset_type: str, ra: float, dec: float, size: int, *,
                collections: str | Sequence[str] | None = None, where: str = "",
                bind: Mapping[str, Any] | None = None) -> list[tuple[DatasetRef, Any]]:
    """See :meth:`Butler.get_cutouts`."""
    ra, dec, size = check_position(ra, dec, size)
    out = []
    for ref in covering_refs(butler, dataset_type, ra, dec, collections=collections, where=where, bind=bind):
        box = cutout_box(butler, ref, ra, dec, size)
        if box is not None:
            out.append((ref, butler.get(ref, parameters={"bbox": box})))
    return out
