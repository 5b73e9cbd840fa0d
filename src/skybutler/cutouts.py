"""Cut-outs around a sky position from every stored image that covers it.

The images are found by their footprints (``<type>.region OVERLAPS POINT``); each
one's own WCS, in its own frame, places the position on its pixels; the box around
it is read like any other ``bbox`` (only its rows, or only its tiles).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import SkybutlerError
from .formats.footprints import box_around, sky_to_pixel
from .models import DatasetRef

if TYPE_CHECKING:
    from .butler import Butler


def get_cutouts(butler: Butler, dataset_type: str, ra: float, dec: float, size: int, *,
                collections: str | Sequence[str] | None = None, where: str = "",
                bind: Mapping[str, Any] | None = None) -> list[tuple[DatasetRef, Any]]:
    """See :meth:`Butler.get_cutouts`."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise SkybutlerError(f"cut-out size must be a positive number of pixels, not {size!r}")
    point = f"{dataset_type}.region OVERLAPS POINT({float(ra)!r}, {float(dec)!r})"
    refs = butler.query_datasets(dataset_type, where=f"{point} AND ({where})" if where else point,
                                 collections=collections, bind=bind)
    out = []
    for ref in refs:
        header = butler.get(ref, component="header")
        pixel = sky_to_pixel(butler.get(ref, component="wcs"), ra, dec)
        box = None if pixel is None else box_around(*pixel, size, header["NAXIS1"], header["NAXIS2"])
        if box is not None:
            out.append((ref, butler.get(ref, parameters={"bbox": box})))
    return out
